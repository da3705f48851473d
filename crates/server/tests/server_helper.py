#!/usr/bin/env python3
"""Small pymilvus helper for the cdc-server end-to-end test (run with the dev venv: $MCDC_PYTHON).

  server_helper.py setup  --uri U --db D --coll C       create database D (if missing) and collection C
                                                        (id INT64 primary key, vec FLOAT_VECTOR dim 4),
                                                        with an index, loaded
  server_helper.py insert --uri U --db D --coll C --start N --count M   insert ids N..N+M-1, then flush
  server_helper.py count  --uri U --db D --coll C       print "<rows> <distinct ids>" (loads the collection
                                                        if it has to; prints "missing" when it does not exist)
  server_helper.py drop   --uri U --db D                drop every collection of D, then D
"""

from __future__ import annotations

import argparse
import sys

from pymilvus import DataType, MilvusClient


def client(uri: str, db: str = "default") -> MilvusClient:
    return MilvusClient(uri=uri, db_name=db, timeout=30)


def setup(a) -> None:
    default = client(a.uri)
    if a.db not in default.list_databases():
        default.create_database(a.db)
    c = client(a.uri, a.db)
    if not c.has_collection(a.coll):
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vec", DataType.FLOAT_VECTOR, dim=4)
        c.create_collection(a.coll, schema=schema, shards_num=2, consistency_level="Strong")
        ip = c.prepare_index_params()
        ip.add_index(field_name="vec", index_type="FLAT", metric_type="L2")
        c.create_index(a.coll, ip)
    c.load_collection(a.coll)


def insert(a) -> None:
    c = client(a.uri, a.db)
    rows = [{"id": i, "vec": [float(i), 1.0, 2.0, 3.0]} for i in range(a.start, a.start + a.count)]
    c.insert(a.coll, rows)
    c.flush(a.coll)


def count(a) -> None:
    default = client(a.uri)
    if a.db not in default.list_databases():
        print("missing")
        return
    c = client(a.uri, a.db)
    if not c.has_collection(a.coll):
        print("missing")
        return
    state = c.get_load_state(a.coll).get("state")
    if "Loaded" not in str(state):
        if not c.list_indexes(a.coll):
            ip = c.prepare_index_params()
            ip.add_index(field_name="vec", index_type="FLAT", metric_type="L2")
            c.create_index(a.coll, ip)
        c.load_collection(a.coll)
    total = c.query(a.coll, filter="", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"]
    ids = c.query(a.coll, filter="id >= 0", output_fields=["id"], limit=16384, consistency_level="Strong")
    print(f"{total} {len({r['id'] for r in ids})}")


def drop(a) -> None:
    default = client(a.uri)
    if a.db not in default.list_databases():
        return
    c = client(a.uri, a.db)
    for coll in c.list_collections():
        c.drop_collection(coll)
    default.drop_database(a.db)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["setup", "insert", "count", "drop"])
    ap.add_argument("--uri", required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--coll", default="c1")
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--count", type=int, default=10)
    a = ap.parse_args()
    {"setup": setup, "insert": insert, "count": count, "drop": drop}[a.cmd](a)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
