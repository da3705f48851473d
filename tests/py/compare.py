#!/usr/bin/env python3
"""Compare two Milvus instances (e.g. a CDC source and its target); exit 1 with a readable diff if they differ.

  $MCDC_PYTHON tests/py/compare.py SOURCE_URI TARGET_URI [--db DB ...] [--collection NAME ...] [--prefix P] [--wait SECONDS]

Compared, per database (all databases unless --db): the database list, collections, schemas (fields, types,
type params, primary key, partition key, dynamic field, description, shards, consistency, properties), aliases,
partitions, indexes (field, type, metric, params), load state (collection and per partition), and rows:
every row is read by primary key with consistency Strong, paging with `pk > last` (results come back in PK
order), and PK sets and all field values (dynamic fields and vectors too) are compared; floats with a
relative/absolute tolerance (--float-tol).

autoID is reported separately and does not fail the comparison (a CDC target may keep the source's PKs with
autoID off) unless --strict-autoid. If the PK sets of an autoID collection do not overlap at all, its rows are
compared as a multiset of values without the PK.

Reading rows needs a loaded collection. By default (--load restore) a collection that is not fully loaded is
loaded for the read and put back afterwards (released, or its partitions reloaded). On a CDC source this
emits Load/Release messages that the CDC replicates: use --load never (skip rows of unloaded collections)
while a CDC is running, or compare after stopping it. Load state is always recorded before any loading.

--ignore takes a comma list of aspects not to compare: databases, shards, consistency, description,
properties, aliases, partitions, indexes, load, rows, autoid, array_length (max_length of ARRAY fields),
key_partitions (the internal partitions of partition-key collections). milvus-lite, for instance, reports
1 shard, cannot load partitions, drops descriptions and ARRAY max_length, names partition-key partitions
its own way and implements few index types:
--ignore shards,load,consistency,description,array_length,key_partitions,indexes.

--rbac also compares access control (off by default: RBAC replicates only with the source's enable_user_role):
roles, the grants of each role (object type, object name, database, privilege), users, and the roles of each
user; with --prefix only roles and users whose name starts with it. --rbac-no-user NAME (repeatable) names a
user the CDC must NOT have created on the target (no password given): present there is a difference, and the
user's bindings are not expected either. Reads use the token in $MCDC_RBAC_TOKEN (default root:Milvus):
Milvus 2.3 answers grant reads and writes only with credentials, even with authorization disabled.

Exit status: 0 equal, 1 different, 2 error.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from mcdc_common import DEFAULT_SOURCE_URI, DEFAULT_TARGET_URI, connect

INDEX_RUNTIME_KEYS = {"total_rows", "indexed_rows", "pending_index_rows", "state", "index_state_fail_reason"}
ASPECTS = {"databases", "shards", "consistency", "description", "properties", "partitions", "indexes", "load",
           "rows", "autoid", "array_length", "key_partitions", "aliases"}


class Diff:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.notes: list[str] = []

    def add(self, where: str, msg: str) -> None:
        self.lines.append(f"DIFF  {where}: {msg}")

    def note(self, where: str, msg: str) -> None:
        self.notes.append(f"NOTE  {where}: {msg}")


def norm(v):
    """Make pymilvus values comparable: numpy scalars -> python, bytes lists -> hex, dict keys sorted."""
    if hasattr(v, "item") and not isinstance(v, (bytes, bytearray)):
        try:
            return v.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    if isinstance(v, dict):
        return {str(k): norm(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        if len(v) == 1 and isinstance(v[0], (bytes, bytearray)):  # binary vector: [b'...']
            return bytes(v[0]).hex()
        return [norm(x) for x in v]
    if hasattr(v, "tolist"):
        return norm(v.tolist())
    return v


def values_equal(a, b, tol: float) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, int) and isinstance(b, int):
            return a == b
        if math.isnan(a) and math.isnan(b):
            return True
        return math.isclose(a, b, rel_tol=tol, abs_tol=tol)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(values_equal(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(values_equal(a[k], b[k], tol) for k in a)
    return a == b


def short(v, n: int = 120) -> str:
    s = json.dumps(v, default=str, sort_keys=True)
    return s if len(s) <= n else s[: n - 3] + "..."


class Side:
    def __init__(self, name: str, uri: str, timeout: float):
        self.name, self.uri, self.timeout = name, uri, timeout
        self.clients: dict[str, object] = {}

    def c(self, db: str):
        if db not in self.clients:
            self.clients[db] = connect(self.uri, db, self.timeout)
        return self.clients[db]

    def close(self) -> None:
        for c in self.clients.values():
            try:
                c.close()
            except Exception:  # noqa: BLE001
                pass
        self.clients.clear()


def load_states(client, coll: str) -> dict[str, str]:
    """{'': collection state, partition: state}"""
    out = {"": str(client.get_load_state(coll)["state"]).split(".")[-1]}
    for p in client.list_partitions(coll):
        out[p] = str(client.get_load_state(coll, partition_name=p)["state"]).split(".")[-1]
    return out


def schema_view(desc: dict) -> dict:
    fields = {}
    for f in desc["fields"]:
        fields[f["name"]] = {
            "type": str(f["type"]).split(".")[-1],
            "params": {k: str(v) for k, v in (f.get("params") or {}).items()},
            "element_type": str(f.get("element_type", "")).split(".")[-1] or None,
            "is_primary": bool(f.get("is_primary", False)),
            "is_partition_key": bool(f.get("is_partition_key", False)),
            "description": f.get("description", ""),
            "auto_id": bool(f.get("auto_id", False)),
        }
    return {
        "fields": fields,
        "field_order": [f["name"] for f in desc["fields"]],
        "auto_id": bool(desc.get("auto_id", False)),
        "enable_dynamic_field": bool(desc.get("enable_dynamic_field", False)),
        "num_shards": desc.get("num_shards"),
        "consistency_level": desc.get("consistency_level"),
        "description": desc.get("description", ""),
        "properties": {k: str(v) for k, v in (desc.get("properties") or {}).items()},
        "num_partitions": desc.get("num_partitions"),
    }


def pk_field(desc: dict) -> tuple[str, str]:
    for f in desc["fields"]:
        if f.get("is_primary"):
            return f["name"], str(f["type"]).split(".")[-1]
    raise RuntimeError("no primary key field")


def pk_literal(v, pk_type: str) -> str:
    return json.dumps(v) if pk_type == "VARCHAR" else str(int(v))


class Compare:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.ignore = set(args.ignore)
        self.src = Side("source", args.source_uri, args.timeout)
        self.dst = Side("target", args.target_uri, args.timeout)
        self.d = Diff()

    def run(self) -> Diff:
        self.d = Diff()
        a, b = self.src.c("default"), self.dst.c("default")
        dbs_a, dbs_b = set(a.list_databases()), set(b.list_databases())
        if self.args.db:
            want = set(self.args.db)
            for db in sorted(want - dbs_a):
                self.d.add(f"db {db}", "missing on source")
            for db in sorted(want - dbs_b):
                self.d.add(f"db {db}", "missing on target")
            dbs = sorted(want & dbs_a & dbs_b)
        else:
            if self.args.prefix:  # only databases of this run (named with the prefix) must match
                dbs_a = {d for d in dbs_a if d == "default" or d.startswith(self.args.prefix)}
                dbs_b = {d for d in dbs_b if d == "default" or d.startswith(self.args.prefix)}
            if "databases" not in self.ignore:
                for db in sorted(dbs_a - dbs_b):
                    self.d.add(f"db {db}", "exists on source only")
                for db in sorted(dbs_b - dbs_a):
                    self.d.add(f"db {db}", "exists on target only")
            dbs = sorted(dbs_a & dbs_b)
        for db in dbs:
            self.compare_db(db)
        if self.args.rbac:
            self.compare_rbac()
        return self.d

    def rbac_view(self, uri: str) -> dict:
        from pymilvus import MilvusClient

        c = MilvusClient(uri=uri, token=os.environ.get("MCDC_RBAC_TOKEN", "root:Milvus"), timeout=self.args.timeout)
        try:
            mine = (lambda n: n.startswith(self.args.prefix)) if self.args.prefix else (lambda n: True)
            roles = {r for r in c.list_roles() if mine(r)}
            grants = {}
            for r in roles:
                grants[r] = sorted(
                    (g["object_type"], g["object_name"], g["db_name"], g["privilege"])
                    for g in c.describe_role(r)["privileges"])
            users = {}
            for u in c.list_users():
                if mine(u):
                    users[u] = sorted(c.describe_user(u).get("roles") or [])
            return {"roles": roles, "grants": grants, "users": users}
        finally:
            c.close()

    def compare_rbac(self) -> None:
        a, b = self.rbac_view(self.args.source_uri), self.rbac_view(self.args.target_uri)
        for r in sorted(a["roles"] - b["roles"]):
            self.d.add(f"role {r}", "missing on target")
        for r in sorted(b["roles"] - a["roles"]):
            self.d.add(f"role {r}", "exists on target only")
        for r in sorted(a["roles"] & b["roles"]):
            if a["grants"][r] != b["grants"][r]:
                self.d.add(f"role {r}", f"grants differ: source {short(a['grants'][r], 400)} "
                                        f"target {short(b['grants'][r], 400)}")
        skip = set(self.args.rbac_no_user)
        for u in sorted(skip):
            if u in b["users"]:
                self.d.add(f"user {u}", "created on target although it has no password")
            elif u in a["users"]:
                self.d.note(f"user {u}", "on source only, as expected (no password)")
        for u in sorted(set(a["users"]) - set(b["users"]) - skip):
            self.d.add(f"user {u}", "missing on target")
        for u in sorted(set(b["users"]) - set(a["users"]) - skip):
            self.d.add(f"user {u}", "exists on target only")
        for u in sorted((set(a["users"]) & set(b["users"])) - skip):
            if a["users"][u] != b["users"][u]:
                self.d.add(f"user {u}", f"roles differ: source {a['users'][u]} target {b['users'][u]}")

    def compare_db(self, db: str) -> None:
        a, b = self.src.c(db), self.dst.c(db)
        ca, cb = set(a.list_collections()), set(b.list_collections())
        if self.args.collection:
            ca &= set(self.args.collection)
            cb &= set(self.args.collection)
        if self.args.prefix:
            ca = {c for c in ca if c.startswith(self.args.prefix)}
            cb = {c for c in cb if c.startswith(self.args.prefix)}
        skip = {c for c in ca | cb if f"{db}.{c}" in self.args.skip_collection}
        ca, cb = ca - skip, cb - skip
        for c in sorted(ca - cb):
            self.d.add(f"{db}.{c}", "collection exists on source only")
        for c in sorted(cb - ca):
            self.d.add(f"{db}.{c}", "collection exists on target only")
        for c in sorted(ca & cb):
            try:
                self.compare_collection(db, c)
            except Exception as e:  # noqa: BLE001 - keep going, report it as a difference
                self.d.add(f"{db}.{c}", f"comparison failed: {type(e).__name__}: {e}")

    def compare_collection(self, db: str, coll: str) -> None:
        where = f"{db}.{coll}"
        a, b = self.src.c(db), self.dst.c(db)
        da, db_ = a.describe_collection(coll), b.describe_collection(coll)
        sa, sb = schema_view(da), schema_view(db_)

        # schema
        for f in sorted(set(sa["fields"]) - set(sb["fields"])):
            self.d.add(where, f"field {f} exists on source only")
        for f in sorted(set(sb["fields"]) - set(sa["fields"])):
            self.d.add(where, f"field {f} exists on target only")
        for f in [x for x in sa["field_order"] if x in sb["fields"]]:
            fa, fb = dict(sa["fields"][f]), dict(sb["fields"][f])
            aa, ab = fa.pop("auto_id"), fb.pop("auto_id")
            if "description" in self.ignore:
                fa.pop("description"), fb.pop("description")
            if "array_length" in self.ignore and fa["type"] in ("ARRAY", "22"):  # DataType.ARRAY
                fa["params"].pop("max_length", None), fb["params"].pop("max_length", None)
            for k in fa:
                if fa[k] != fb[k]:
                    self.d.add(where, f"field {f}: {k} {short(fa[k])} != {short(fb[k])}")
            if aa != ab:
                self.autoid_diff(where, f"field {f}: autoID {aa} != {ab}")
        if sa["field_order"] != sb["field_order"] and set(sa["field_order"]) == set(sb["field_order"]):
            self.d.add(where, f"field order {sa['field_order']} != {sb['field_order']}")
        if sa["auto_id"] != sb["auto_id"]:
            self.autoid_diff(where, f"collection autoID {sa['auto_id']} != {sb['auto_id']}")
        key_partitions = any(f["is_partition_key"] for f in sa["fields"].values())
        skip_partitions = "partitions" in self.ignore or (key_partitions and "key_partitions" in self.ignore)
        checks = [("enable_dynamic_field", None), ("num_shards", "shards"), ("consistency_level", "consistency"),
                  ("description", "description"), ("properties", "properties"), ("num_partitions", "partitions")]
        for key, aspect in checks:
            if aspect in self.ignore or (aspect == "partitions" and skip_partitions):
                continue
            if sa[key] != sb[key]:
                self.d.add(where, f"{key} {short(sa[key])} != {short(sb[key])}")

        # aliases (DescribeCollection lists the aliases of a collection)
        if "aliases" not in self.ignore:
            aa, ab = set(da.get("aliases") or []), set(db_.get("aliases") or [])
            for x in sorted(aa - ab):
                self.d.add(where, f"alias {x} exists on source only")
            for x in sorted(ab - aa):
                self.d.add(where, f"alias {x} exists on target only")

        # partitions
        pa, pb = set(a.list_partitions(coll)), set(b.list_partitions(coll))
        if not skip_partitions:
            for p in sorted(pa - pb):
                self.d.add(where, f"partition {p} exists on source only")
            for p in sorted(pb - pa):
                self.d.add(where, f"partition {p} exists on target only")

        # indexes
        if "indexes" not in self.ignore:
            ia = {i: self.index_view(a, coll, i) for i in a.list_indexes(coll)}
            ib = {i: self.index_view(b, coll, i) for i in b.list_indexes(coll)}
            for i in sorted(set(ia) - set(ib)):
                self.d.add(where, f"index {i} exists on source only: {short(ia[i])}")
            for i in sorted(set(ib) - set(ia)):
                self.d.add(where, f"index {i} exists on target only: {short(ib[i])}")
            for i in sorted(set(ia) & set(ib)):
                for k in sorted(set(ia[i]) | set(ib[i])):
                    if ia[i].get(k) != ib[i].get(k):
                        self.d.add(where, f"index {i}: {k} {ia[i].get(k, '<absent>')!r} != {ib[i].get(k, '<absent>')!r}")

        # load state (recorded before anything here loads)
        la, lb = load_states(a, coll), load_states(b, coll)
        if "load" not in self.ignore:
            for p in sorted(set(la) & set(lb)):
                if la[p] != lb[p]:
                    self.d.add(where, f"load state{' of partition ' + p if p else ''} {la[p]} != {lb[p]}")

        # rows
        if "rows" in self.ignore:
            return
        pk, pk_type = pk_field(da)
        # both sides at once: loading is the slow part (seconds per collection)
        with ThreadPoolExecutor(max_workers=2) as pool:
            fa = pool.submit(self.read_rows, self.src, db, coll, pk, pk_type, la, pa)
            fb = pool.submit(self.read_rows, self.dst, db, coll, pk, pk_type, lb, pb)
            got_a, got_b = fa.result(), fb.result()
        if got_a is None or got_b is None:
            return
        (rows_a, count_a), (rows_b, count_b) = got_a, got_b
        if count_a == len(rows_a) and count_b != len(rows_b):
            # Milvus counts every stored copy of a PK but a query returns one: the target
            # holds duplicates (e.g. a replayed insert) or rows a delete missed.
            self.d.add(where, f"target count(*) is {count_b} but a query returns {len(rows_b)} rows "
                              f"(source: {count_a} and {len(rows_a)}): duplicate or undeleted rows on the target")
        autoid = sa["auto_id"] or sb["auto_id"]
        self.compare_rows(where, pk, rows_a, rows_b, autoid)

    def autoid_diff(self, where: str, msg: str) -> None:
        if "autoid" in self.ignore:
            return
        if self.args.strict_autoid:
            self.d.add(where, msg)
        else:
            self.d.note(where, msg + " (autoID difference, not counted)")

    @staticmethod
    def index_view(client, coll: str, name: str) -> dict:
        d = client.describe_index(coll, name)
        return {k: str(v) for k, v in d.items() if k not in INDEX_RUNTIME_KEYS}

    def read_rows(self, side: Side, db: str, coll: str, pk: str, pk_type: str, states: dict, parts: set):
        """(all rows keyed by PK, count(*)), loading the collection temporarily when needed
        (see --load); None when rows are not compared."""
        where = f"{db}.{coll} ({side.name})"
        client = side.c(db)
        loaded_parts = sorted(p for p in parts if states.get(p) == "Loaded")
        fully = states.get("") == "Loaded" and len(loaded_parts) == len(parts)
        restore = None
        if not fully:
            if self.args.load == "never":
                self.d.note(where, f"rows not compared: collection not fully loaded (state {states}); --load never")
                return None
            if not client.list_indexes(coll):
                self.d.note(where, "rows not compared: collection has no index, cannot be loaded")
                return None
            try:
                if loaded_parts:
                    client.release_collection(coll)  # 2.3 cannot widen a partition load to the whole collection
                client.load_collection(coll, timeout=self.args.timeout)
            except Exception as e:  # noqa: BLE001
                self.d.add(where, f"rows not compared: cannot load collection: {e}")
                return None
            restore = loaded_parts
            if self.args.load == "restore":
                self.d.note(where, f"loaded for reading rows, then restored (was {'partitions ' + str(loaded_parts) if loaded_parts else 'not loaded'})")
        try:
            return self.query_all(client, coll, pk, pk_type)
        finally:
            if restore is not None and self.args.load == "restore":
                client.release_collection(coll)
                if restore:
                    client.load_partitions(coll, restore, timeout=self.args.timeout)

    def query_all(self, client, coll: str, pk: str, pk_type: str) -> tuple[dict, int]:
        total = client.query(coll, filter="", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"]
        rows: dict = {}
        if total <= 16384:  # Milvus' largest query window: one query, no paging needed
            page = client.query(coll, filter="", output_fields=["*"], limit=16384,
                                consistency_level="Strong")
            for r in page:
                rows[norm(r[pk])] = {k: norm(v) for k, v in r.items()}
            if len(rows) != total:
                # Milvus 2.3's count(*) can include rows a later upsert/delete replaced (seen
                # on the source itself); the query result is what a reader sees.
                self.d.note(coll, f"count(*) says {total}, a query returns {len(rows)} rows; compared the query")
            return rows, total
        # Larger: page by `pk > last`. Results come back in PK order per segment only, so
        # pages are as large as Milvus allows and the count check below catches a miss.
        last = None
        while True:
            flt = "" if last is None else f"{pk} > {pk_literal(last, pk_type)}"
            page = client.query(coll, filter=flt, output_fields=["*"], limit=self.args.batch,
                                consistency_level="Strong")
            if not page:
                break
            for r in page:
                rows[norm(r[pk])] = {k: norm(v) for k, v in r.items()}
            keys = [norm(r[pk]) for r in page]
            last = max(keys)
            if len(page) < self.args.batch:
                break
        if len(rows) != total:
            raise RuntimeError(f"read {len(rows)} rows by PK paging but count(*) says {total}")
        return rows, total

    def compare_rows(self, where: str, pk: str, ra: dict, rb: dict, autoid: bool) -> None:
        tol = self.args.float_tol
        ka, kb = set(ra), set(rb)
        if autoid and ka and kb and not (ka & kb):
            ma = Counter(json.dumps({k: v for k, v in r.items() if k != pk}, sort_keys=True) for r in ra.values())
            mb = Counter(json.dumps({k: v for k, v in r.items() if k != pk}, sort_keys=True) for r in rb.values())
            if ma != mb:
                self.d.add(where, f"autoID collection, PKs differ entirely; row values differ as a multiset "
                                  f"({sum((ma - mb).values())} source-only, {sum((mb - ma).values())} target-only)")
            else:
                self.d.note(where, f"autoID collection: target assigned its own PKs; {len(ra)} rows match by value")
            return
        only_a, only_b = sorted(ka - kb, key=str), sorted(kb - ka, key=str)
        if only_a:
            self.d.add(where, f"{len(only_a)} row(s) on source only, PKs {short(only_a[:20])}")
        if only_b:
            self.d.add(where, f"{len(only_b)} row(s) on target only, PKs {short(only_b[:20])}")
        shown = 0
        bad = 0
        for k in sorted(ka & kb, key=str):
            a, b = ra[k], rb[k]
            fields = sorted(set(a) | set(b))
            diffs = [f for f in fields if not (f in a and f in b and values_equal(a[f], b[f], tol))]
            if diffs:
                bad += 1
                if shown < self.args.max_row_diffs:
                    shown += 1
                    parts = [f"{f}: {short(a.get(f, '<absent>'), 60)} != {short(b.get(f, '<absent>'), 60)}" for f in diffs]
                    self.d.add(where, f"row {pk}={short(k)}: " + "; ".join(parts))
        if bad > shown:
            self.d.add(where, f"... {bad - shown} more row(s) with different values")
        if not (only_a or only_b or bad):
            self.d.note(where, f"{len(ka)} rows equal")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source_uri", nargs="?", default=DEFAULT_SOURCE_URI)
    ap.add_argument("target_uri", nargs="?", default=DEFAULT_TARGET_URI)
    ap.add_argument("--db", action="append", help="only this database (repeatable)")
    ap.add_argument("--collection", action="append", help="only this collection name (repeatable)")
    ap.add_argument("--skip-collection", action="append", default=[], metavar="DB.NAME",
                    help="leave this collection out on both sides, e.g. one the pipeline excludes (repeatable)")
    ap.add_argument("--prefix", default="", help="only collections (and databases other than default) whose name starts with this prefix")
    ap.add_argument("--ignore", type=lambda s: [x for x in s.split(",") if x], default=[],
                    help=f"comma list of aspects not to compare: {','.join(sorted(ASPECTS))}")
    ap.add_argument("--strict-autoid", action="store_true", help="count autoID differences as differences")
    ap.add_argument("--load", choices=["restore", "keep", "never"], default="restore",
                    help="collections not fully loaded: load, read, restore (default) / load and keep / skip rows")
    ap.add_argument("--float-tol", type=float, default=1e-6)
    ap.add_argument("--batch", type=int, default=16384, help="rows per query page (collections over 16384 rows)")
    ap.add_argument("--max-row-diffs", type=int, default=10, help="row differences shown per collection")
    ap.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                    help="repeat until equal or this many seconds have passed (for a CDC catching up)")
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--rbac", action="store_true", help="also compare roles, grants, users and their roles")
    ap.add_argument("--rbac-no-user", action="append", default=[], metavar="USER",
                    help="a user that must not be on the target (no password given); repeatable")
    ap.add_argument("-v", "--verbose", action="store_true", help="also print notes when equal")
    args = ap.parse_args()
    bad = set(args.ignore) - ASPECTS
    if bad:
        ap.error(f"unknown --ignore aspect(s): {', '.join(sorted(bad))}")

    cmp_ = Compare(args)
    deadline = time.time() + args.wait
    attempt = 0
    try:
        while True:
            attempt += 1
            try:
                d = cmp_.run()
            except Exception as e:  # noqa: BLE001 - an instance not answering is an error, unless waiting
                if time.time() >= deadline:
                    print(f"compare: error: {type(e).__name__}: {e}", file=sys.stderr)
                    return 2
                print(f"compare: attempt {attempt}: error {type(e).__name__}: {e}; retrying…", file=sys.stderr)
                cmp_.src.close()
                cmp_.dst.close()
                time.sleep(2.0)
                continue
            if not d.lines or time.time() >= deadline:
                break
            print(f"compare: attempt {attempt}: {len(d.lines)} difference(s); retrying…", file=sys.stderr, flush=True)
            time.sleep(min(2.0, max(0.0, deadline - time.time())))
    finally:
        cmp_.src.close()
        cmp_.dst.close()

    if d.lines or args.verbose:
        for line in d.notes:
            print(line)
    for line in d.lines:
        print(line)
    if d.lines:
        print(f"compare: {args.source_uri} and {args.target_uri} DIFFER ({len(d.lines)} difference(s))")
        return 1
    print(f"compare: {args.source_uri} and {args.target_uri} are equal"
          f"{' (' + str(len(d.notes)) + ' note(s), -v shows them)' if d.notes and not args.verbose else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
