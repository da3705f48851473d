#!/usr/bin/env python3
"""Baseline insert throughput: N rows of 128-d float vectors (int64 PK) inserted directly with pymilvus.

The CDC's replication rate is compared against this number (same machine, same Milvus).

  $MCDC_PYTHON tests/py/insert_bench.py --uri http://127.0.0.1:19530 --rows 100000 --batch 1000
  prints progress and a final line:  insert_bench: rows=100000 seconds=12.3 rows_per_s=8130 ...

The collection (default `bench_insert`) is dropped and re-created first (--keep-existing to append instead),
and is left in place afterwards so a CDC test can compare source and target (--drop-after to remove it).
Rows are generated up front (seeded numpy), so the timing covers the pymilvus insert calls only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from mcdc_common import DEFAULT_SOURCE_URI, connect


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--uri", default=DEFAULT_SOURCE_URI)
    ap.add_argument("--db", default="default")
    ap.add_argument("--collection", default="bench_insert")
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--start-pk", type=int, default=0)
    ap.add_argument("--keep-existing", action="store_true", help="append to an existing collection")
    ap.add_argument("--flush", action="store_true", help="flush at the end (timed separately)")
    ap.add_argument("--drop-after", action="store_true")
    ap.add_argument("--json", action="store_true", help="print the result as one JSON line")
    ap.add_argument("--rate", type=float, default=0,
                    help="pace inserts to this many rows/s (0: as fast as possible), for lag measurements")
    args = ap.parse_args()

    from pymilvus import DataType, MilvusClient

    client = connect(args.uri, args.db)
    name = args.collection
    if client.has_collection(name) and not args.keep_existing:
        client.drop_collection(name)
    if not client.has_collection(name):
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vec", DataType.FLOAT_VECTOR, dim=args.dim)
        client.create_collection(name, schema=schema, shards_num=args.shards, consistency_level="Bounded")

    rng = np.random.default_rng(args.seed)
    vectors = rng.random((args.rows, args.dim), dtype=np.float32)
    pks = np.arange(args.start_pk, args.start_pk + args.rows, dtype=np.int64)

    batches = [
        [{"id": int(pks[i]), "vec": vectors[i]} for i in range(s, min(s + args.batch, args.rows))]
        for s in range(0, args.rows, args.batch)
    ]
    done = 0
    last_report = t0 = time.perf_counter()
    for batch in batches:
        if args.rate > 0:  # steady rate: wait until this batch is due
            due = t0 + done / args.rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        client.insert(name, batch)
        done += len(batch)
        now = time.perf_counter()
        if now - last_report >= 5 and not args.json:
            print(f"insert_bench: {done}/{args.rows} rows, {done / (now - t0):.0f} rows/s", flush=True)
            last_report = now
    seconds = time.perf_counter() - t0
    flush_s = None
    if args.flush:
        f0 = time.perf_counter()
        client.flush(name)
        flush_s = time.perf_counter() - f0
    result = {
        "uri": args.uri, "collection": f"{args.db}.{name}", "rows": args.rows, "batch": args.batch,
        "dim": args.dim, "seconds": round(seconds, 3), "rows_per_s": round(args.rows / seconds, 1),
        "mb_per_s": round(args.rows * (args.dim * 4 + 8) / seconds / 1e6, 2),
        "flush_seconds": None if flush_s is None else round(flush_s, 3),
    }
    if args.drop_after:
        client.drop_collection(name)
    client.close()
    if args.json:
        print(json.dumps(result))
    else:
        print("insert_bench: " + " ".join(f"{k}={v}" for k, v in result.items() if v is not None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
