#!/usr/bin/env python3
"""What an ordinary user script does right after starting a CDC task (issue: changes made right after
`create` answered were lost). Run with the dev venv ($MCDC_PYTHON).

  quick.py create-insert --uri U --coll C [--rows N]
        MilvusClient.create_collection(C, dimension=8, shards_num=2) in database `default` (quick setup:
        id INT64 primary key, 8-d `vector`, an AUTOINDEX, loaded), then one insert of N rows (ids 0..N-1).
  quick.py race --cdc-port P --target T --uri U --coll C [--rows N]
        POST /cdc `create` for default.C to the task server on 127.0.0.1:P (target Milvus T), then, the
        moment it answers, `create-insert`. Prints the create answer and how many ms after the answer the
        collection was created.
  quick.py inspect --uri U --coll C
        One JSON line, changing nothing on the instance: {"exists", "loaded", "indexes", "rows", "ids"}
        (rows/ids only when loaded).
  quick.py other-client --uri U --prefix P --round K
        Another client's activity, outside a pipeline's scope: database P_dbK with a collection, both
        dropped, then at once a 2-shard collection P_otherK in `default` with 100 rows (the sequence after
        which a filtered pipeline once received a change with an empty collection name).
  quick.py drop --uri U --prefix P
        Drop every collection of `default` whose name starts with P (and databases named P*).
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.request

from mcdc_common import connect, die


def vec(i: int) -> list[float]:
    return [float(i % 97) / 97.0 + k for k in range(8)]


def create_insert(c, coll: str, rows: int) -> float:
    t = time.perf_counter()
    c.create_collection(coll, dimension=8, shards_num=2)
    c.insert(coll, [{"id": i, "vector": vec(i)} for i in range(rows)])
    return t


def race(a) -> None:
    c = connect(a.uri)  # connected before the request, so only the create call stands between
    body = {
        "request_type": "create",
        "request_data": {
            "milvus_connect_param": {"uri": a.target, "token": "root:Milvus", "connect_timeout": 10},
            "db_collections": {"default": [{"name": a.coll}]},
        },
    }
    req = urllib.request.Request(
        f"http://127.0.0.1:{a.cdc_port}/cdc",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=300) as r:
        answer = json.loads(r.read())
    answered = time.perf_counter()
    if answer.get("code") != 200:
        die(f"create failed: {answer}")
    started = create_insert(c, a.coll, a.rows)
    print(json.dumps({"answer": answer, "gap_ms": round((started - answered) * 1000, 1)}))


def inspect(a) -> None:
    c = connect(a.uri)
    out = {"exists": c.has_collection(a.coll)}
    if out["exists"]:
        out["indexes"] = c.list_indexes(a.coll)
        out["loaded"] = "Loaded" in str(c.get_load_state(a.coll).get("state"))
        if out["loaded"]:
            out["rows"] = c.query(a.coll, filter="", output_fields=["count(*)"], consistency_level="Strong")[0][
                "count(*)"
            ]
            ids = c.query(a.coll, filter="id >= 0", output_fields=["id"], limit=16384, consistency_level="Strong")
            out["ids"] = len({r["id"] for r in ids})
    print(json.dumps(out))


def other_client(a) -> None:
    db = f"{a.prefix}db{a.round}"
    default = connect(a.uri)
    if db not in default.list_databases():
        default.create_database(db)
    c = connect(a.uri, db)
    c.create_collection("tmp", dimension=8, shards_num=2)
    c.insert("tmp", [{"id": i, "vector": vec(i)} for i in range(10)])
    c.drop_collection("tmp")
    default.drop_database(db)
    create_insert(default, f"{a.prefix}other{a.round}", 100)


def drop(a) -> None:
    c = connect(a.uri)
    for coll in c.list_collections():
        if coll.startswith(a.prefix):
            c.drop_collection(coll)
    for db in c.list_databases():
        if db.startswith(a.prefix):
            d = connect(a.uri, db)
            for coll in d.list_collections():
                d.drop_collection(coll)
            c.drop_database(db)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cmd", choices=["create-insert", "race", "inspect", "other-client", "drop"])
    ap.add_argument("--uri", required=True)
    ap.add_argument("--coll")
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--cdc-port", type=int)
    ap.add_argument("--target")
    ap.add_argument("--prefix")
    ap.add_argument("--round", type=int, default=0)
    a = ap.parse_args()
    if a.cmd == "create-insert":
        create_insert(connect(a.uri), a.coll, a.rows)
    elif a.cmd == "race":
        race(a)
    elif a.cmd == "inspect":
        inspect(a)
    elif a.cmd == "other-client":
        other_client(a)
    else:
        drop(a)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001
        die(str(e), 1)
