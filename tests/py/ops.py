#!/usr/bin/env python3
"""Operations beyond data and schema, done on a source Milvus for tests/ops.rs. Run with the dev venv
($MCDC_PYTHON).

  ops.py aliases --uri U --prefix P --step N
        step 1: collections P_a and P_b (quick setup, 10 rows each), aliases P_x -> P_a, P_y -> P_a,
                P_z -> P_b.
        step 2: alter P_x -> P_b, drop P_y, create P_w -> P_a.
        step 3: alter P_z -> P_a, alter P_w -> P_b, drop P_x.
  ops.py clean --uri U --prefix P
        Drop the aliases of collections named P* in `default`, then the collections.
  ops.py aliases-of --uri U --coll C
        One JSON line: the aliases of C.
"""

from __future__ import annotations

import argparse
import json

from mcdc_common import connect, die


def create(c, coll: str) -> None:
    if not c.has_collection(coll):
        c.create_collection(coll, dimension=8, shards_num=2)
        c.insert(coll, [{"id": i, "vector": [float(i)] * 8} for i in range(10)])


def aliases(a) -> None:
    c = connect(a.uri)
    p = a.prefix
    if a.step == 1:
        create(c, f"{p}a")
        create(c, f"{p}b")
        c.create_alias(f"{p}a", f"{p}x")
        c.create_alias(f"{p}a", f"{p}y")
        c.create_alias(f"{p}b", f"{p}z")
    elif a.step == 2:
        c.alter_alias(f"{p}b", f"{p}x")
        c.drop_alias(f"{p}y")
        c.create_alias(f"{p}a", f"{p}w")
    elif a.step == 3:
        c.alter_alias(f"{p}a", f"{p}z")
        c.alter_alias(f"{p}b", f"{p}w")
        c.drop_alias(f"{p}x")
    else:
        die(f"no step {a.step}")


def clean(a) -> None:
    c = connect(a.uri)
    for coll in c.list_collections():
        if coll.startswith(a.prefix):
            for al in c.describe_collection(coll).get("aliases") or []:
                c.drop_alias(al)
            c.drop_collection(coll)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cmd", choices=["aliases", "clean", "aliases-of"])
    ap.add_argument("--uri", required=True)
    ap.add_argument("--prefix", default="")
    ap.add_argument("--coll")
    ap.add_argument("--step", type=int, default=1)
    a = ap.parse_args()
    if a.cmd == "aliases":
        aliases(a)
    elif a.cmd == "clean":
        clean(a)
    else:
        print(json.dumps(sorted(connect(a.uri).describe_collection(a.coll).get("aliases") or [])))


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001
        die(str(e), 1)
