#!/usr/bin/env python3
"""Check rows rebuilt from a stream sink's change events against the source Milvus.

  $MCDC_PYTHON tests/py/check_events.py SOURCE_URI --state STATE.json --prefix P [--name kafka]

STATE.json is what a consumer of the events ends up with after applying them in order:
{"<database>": {"<collection>": {"<pk as string>": {<row fields>}}}} (insert/upsert set the row,
delete removes it, drop_partition removes the partition's rows, drop_collection/drop_database
remove the collection/database). Compared with the source, restricted to collections named
with the prefix (and databases `default` and `<prefix>*`): the same collections, the same
primary keys, and every field value equal. Event value forms are accepted where they
legitimately differ from pymilvus results: JSON as JSON text (Avro), binary vectors as bytes
lists (Avro) or base64 text (JSON). Collections are loaded on the source to read rows (left
loaded): run it with no CDC replicating to a Milvus target, or accept those Load messages.

Exit status: 0 equal, 1 different, 2 error.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys

from compare import Compare, Diff, load_states, pk_field, short, values_equal


def event_value(src, ev):
    """`ev` in the form pymilvus (normalised by compare.norm) gives for `src`."""
    if isinstance(ev, str) and not isinstance(src, str):
        try:
            return json.loads(ev)
        except ValueError:
            return ev
    if isinstance(src, str) and isinstance(ev, list) and all(isinstance(x, int) for x in ev):
        return bytes(ev).hex()
    if isinstance(src, str) and isinstance(ev, str) and src != ev:
        try:
            return base64.b64decode(ev, validate=True).hex()
        except ValueError:
            return ev
    return ev


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source_uri")
    ap.add_argument("--state", required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--name", default="stream", help="what the state came from, for messages")
    ap.add_argument("--float-tol", type=float, default=1e-6)
    ap.add_argument("--batch", type=int, default=16384)
    ap.add_argument("--timeout", type=float, default=180)
    ap.add_argument("--max-row-diffs", type=int, default=10)
    args = ap.parse_args()
    with open(args.state) as f:
        state = json.load(f)
    ns = argparse.Namespace(source_uri=args.source_uri, target_uri=args.source_uri, ignore=[], load="keep",
                            float_tol=args.float_tol, batch=args.batch, timeout=args.timeout,
                            max_row_diffs=args.max_row_diffs, db=None, collection=None, prefix=args.prefix)
    cmp = Compare(ns)
    d = Diff()
    cmp.d = d
    src = cmp.src
    dbs = [x for x in src.c("default").list_databases() if x == "default" or x.startswith(args.prefix)]
    for db in sorted(set(dbs) | set(state)):
        colls_src = set()
        if db in dbs:
            colls_src = {c for c in src.c(db).list_collections() if c.startswith(args.prefix)}
        colls_ev = set(state.get(db, {}))
        for c in sorted(colls_src - colls_ev):
            d.add(f"{db}.{c}", f"collection on the source, not in the {args.name} events")
        for c in sorted(colls_ev - colls_src):
            d.add(f"{db}.{c}", f"collection in the {args.name} events, not on the source")
        for c in sorted(colls_src & colls_ev):
            where = f"{db}.{c}"
            client = src.c(db)
            desc = client.describe_collection(c)
            pk, pk_type = pk_field(desc)
            parts = set(client.list_partitions(c))
            states = load_states(client, c)
            got = cmp.read_rows(src, db, c, pk, pk_type, states, parts)
            if got is None:
                continue
            rows = got[0]
            src_rows = {str(k): v for k, v in rows.items()}
            ev_rows = state[db][c]
            only_s, only_e = sorted(set(src_rows) - set(ev_rows)), sorted(set(ev_rows) - set(src_rows))
            if only_s:
                d.add(where, f"{len(only_s)} row(s) on the source only, PKs {short(only_s[:20])}")
            if only_e:
                d.add(where, f"{len(only_e)} row(s) in the {args.name} events only, PKs {short(only_e[:20])}")
            bad = 0
            for k in sorted(set(src_rows) & set(ev_rows)):
                a, b = src_rows[k], ev_rows[k]
                diffs = [f for f in sorted(set(a) | set(b))
                         if not (f in a and f in b and values_equal(a[f], event_value(a[f], b[f]), args.float_tol))]
                if diffs:
                    bad += 1
                    if bad <= args.max_row_diffs:
                        d.add(where, f"row {pk}={k}: " + "; ".join(
                            f"{f}: {short(a.get(f, '<absent>'), 60)} != {short(b.get(f, '<absent>'), 60)}" for f in diffs))
            if not (only_s or only_e or bad):
                d.note(where, f"{len(src_rows)} rows equal")
    src.close()
    for line in d.notes:
        print(line)
    for line in d.lines:
        print(line)
    if d.lines:
        print(f"check_events: {args.name} events and source DIFFER ({len(d.lines)} difference(s))")
        return 1
    print(f"check_events: {args.name} events equal the source")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # noqa: BLE001
        print(f"check_events: error: {e}", file=sys.stderr)
        sys.exit(2)
