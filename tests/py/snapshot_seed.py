#!/usr/bin/env python3
"""Seed a source Milvus with data for the snapshot tests, or write to it while a snapshot runs.

  $MCDC_PYTHON tests/py/snapshot_seed.py seed   [--uri URI] [--prefix P] [--rows N]
  $MCDC_PYTHON tests/py/snapshot_seed.py writer [--uri URI] [--prefix P] [--seconds S]
  $MCDC_PYTHON tests/py/snapshot_seed.py drop   [--uri URI] [--prefix P]

`seed` (re)creates, under names starting with the prefix: in database `default`, `{p}int` (int64 keys, a
partition `{p}part` holding the keys k % 3 == 1, JSON, ARRAY and dynamic fields, some rows deleted), `{p}auto` (autoID int64 keys) and
`{p}bin` (binary vectors, left *not loaded* unless --load-all); in database `{p}db`, `{p}str` (varchar keys).
`--rows N` is the total over all collections (split 40/20/10/30 %). `writer` inserts, upserts and deletes
rows in `{p}int` and `{p}str` for S seconds (keys above the seeded ones, and some seeded ones), printing
a count of each. `drop` removes all of it.
"""

from __future__ import annotations

import argparse
import random
import time

from mcdc_common import DEFAULT_SOURCE_URI, connect, log

DIM = 8


def vec(rng):
    return [rng.random() for _ in range(DIM)]


def row_int(i, rng):
    r = {"id": i, "v": vec(rng), "title": f"t{i}", "meta": {"k": i % 7, "s": f"m{i}"}, "tags": [i % 5, i % 3]}
    if i % 3 == 0:
        r["extra"] = f"dyn{i}"  # dynamic field
    return r


def partition_of(prefix, i):
    """The partition of key i in `{prefix}int` (an upsert must name it: Milvus 2.3 keeps the old row of
    another partition)."""
    return f"{prefix}part" if i % 3 == 1 else "_default"


def row_str(i, rng):
    return {"pk": f"k{i:08d}", "v": vec(rng), "n": i, "doc": {"i": i}}


def create(prefix, uri, load_all):
    from pymilvus import DataType
    c = connect(uri)
    db = f"{prefix}db"
    if db not in c.list_databases():
        c.create_database(db)
    for name in (f"{prefix}int", f"{prefix}auto", f"{prefix}bin"):
        if c.has_collection(name):
            c.drop_collection(name)
    s = c.create_schema(auto_id=False, enable_dynamic_field=True)
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("v", DataType.FLOAT_VECTOR, dim=DIM)
    s.add_field("title", DataType.VARCHAR, max_length=64)
    s.add_field("meta", DataType.JSON)
    s.add_field("tags", DataType.ARRAY, element_type=DataType.INT64, max_capacity=8)
    ip = c.prepare_index_params()
    ip.add_index("v", index_type="IVF_FLAT", metric_type="L2", params={"nlist": 16})
    c.create_collection(f"{prefix}int", schema=s, index_params=ip, shards_num=2)
    c.create_partition(f"{prefix}int", f"{prefix}part")

    s = c.create_schema(auto_id=True)
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("v", DataType.FLOAT_VECTOR, dim=DIM)
    s.add_field("x", DataType.INT32)
    ip = c.prepare_index_params()
    ip.add_index("v", index_type="FLAT", metric_type="IP")
    c.create_collection(f"{prefix}auto", schema=s, index_params=ip)

    s = c.create_schema(auto_id=False)
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("b", DataType.BINARY_VECTOR, dim=64)
    ip = c.prepare_index_params()
    ip.add_index("b", index_type="BIN_FLAT", metric_type="HAMMING")
    c.create_collection(f"{prefix}bin", schema=s, index_params=ip)
    if not load_all:
        c.release_collection(f"{prefix}bin")

    c2 = connect(uri, db)
    if c2.has_collection(f"{prefix}str"):
        c2.drop_collection(f"{prefix}str")
    s = c2.create_schema(auto_id=False)
    s.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=32)
    s.add_field("v", DataType.FLOAT_VECTOR, dim=DIM)
    s.add_field("n", DataType.INT64)
    s.add_field("doc", DataType.JSON)
    ip = c2.prepare_index_params()
    ip.add_index("v", index_type="FLAT", metric_type="L2")
    c2.create_collection(f"{prefix}str", schema=s, index_params=ip)
    return c, c2


def seed(a):
    rng = random.Random(14)
    c, c2 = create(a.prefix, a.uri, a.load_all)
    n_int, n_auto, n_bin = a.rows * 4 // 10, a.rows * 2 // 10, a.rows // 10
    n_str = a.rows - n_int - n_auto - n_bin
    B = 5000
    ids = list(range(n_int))
    rng.shuffle(ids)  # keys arrive out of order
    for i in range(0, n_int, B):
        chunk = ids[i:i + B]
        for part in ("_default", f"{a.prefix}part"):
            rows = [row_int(k, rng) for k in chunk if partition_of(a.prefix, k) == part]
            c.insert(f"{a.prefix}int", rows, partition_name=part)
    c.delete(f"{a.prefix}int", filter=f"id < {max(n_int // 50, 1)}")
    for i in range(0, n_auto, B):
        c.insert(f"{a.prefix}auto", [{"v": vec(rng), "x": k} for k in range(i, min(i + B, n_auto))])
    for i in range(0, n_bin, B):
        c.insert(f"{a.prefix}bin", [{"id": k, "b": bytes(rng.getrandbits(8) for _ in range(8))}
                                    for k in range(i, min(i + B, n_bin))])
    for i in range(0, n_str, B):
        c2.insert(f"{a.prefix}str", [row_str(k, rng) for k in range(i, min(i + B, n_str))])
    c2.delete(f"{a.prefix}str", filter='pk like "k0000001%"')
    for name in (f"{a.prefix}int", f"{a.prefix}auto", f"{a.prefix}bin"):
        c.flush(name)
    c2.flush(f"{a.prefix}str")
    log(f"seeded {a.rows} rows: int {n_int}, auto {n_auto}, bin {n_bin}, str {n_str}")


def writer(a):
    rng = random.Random(41)
    c = connect(a.uri)
    c2 = connect(a.uri, f"{a.prefix}db")
    base = 10_000_000
    end = time.time() + a.seconds
    k = 0
    counts = {"insert": 0, "upsert": 0, "delete": 0}
    while time.time() < end:
        c.insert(f"{a.prefix}int", [row_int(base + k * 10 + j, rng) for j in range(10)])
        c2.insert(f"{a.prefix}str", [row_str(base + k * 10 + j, rng) for j in range(10)])
        counts["insert"] += 20
        old = rng.randrange(1000, 5000)
        c.upsert(f"{a.prefix}int", [dict(row_int(old, rng), title=f"up{k}")],
                 partition_name=partition_of(a.prefix, old))
        c2.upsert(f"{a.prefix}str", [dict(row_str(old, rng), n=-k)])
        counts["upsert"] += 2
        gone = rng.randrange(5000, 9000)
        c.delete(f"{a.prefix}int", ids=[gone, base + k * 10])
        c2.delete(f"{a.prefix}str", ids=[f"k{gone:08d}"])
        counts["delete"] += 3
        k += 1
        time.sleep(0.05)
    log(f"writer: {counts}")


def drop(a):
    c = connect(a.uri)
    for name in (f"{a.prefix}int", f"{a.prefix}auto", f"{a.prefix}bin"):
        if c.has_collection(name):
            c.drop_collection(name)
    db = f"{a.prefix}db"
    if db in c.list_databases():
        c2 = connect(a.uri, db)
        for name in c2.list_collections():
            c2.drop_collection(name)
        c.drop_database(db)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cmd", choices=["seed", "writer", "drop"])
    ap.add_argument("--uri", default=DEFAULT_SOURCE_URI)
    ap.add_argument("--prefix", default="s14_")
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--load-all", action="store_true", help="leave every collection loaded")
    a = ap.parse_args()
    {"seed": seed, "writer": writer, "drop": drop}[a.cmd](a)


if __name__ == "__main__":
    main()
