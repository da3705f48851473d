#!/usr/bin/env python3
"""Fixture capture helpers for scripts/capture-fixtures (run with the dev venv's python).

  capture_fixtures.py etcd   --out FILE [--prefix by-dev/meta/root-coord/] [--extra-key by-dev/kv/gid/timestamp]
  capture_fixtures.py kafka  --out FILE [--root by-dev] [--keep-timeticks 3]
  capture_fixtures.py readme --dir FIXTURE_DIR

etcd:  every key under the prefix (read with `etcdctl get --prefix -w json`), one JSON object per line:
       {"key": ..., "value_b64": ...}; credential keys (users, roles, grants) are left out.
kafka: every message of the topics {root}-rootcoord-dml_N and {root}-replicate-msg from offset 0, one JSON
       object per line: {"topic", "partition", "offset", "timestamp_ms", "key_b64", "headers", "msg_type",
       "msg_name", "payload_b64"}. msg_type is decoded by hand from the payload (field 1 = MsgBase, whose field 1
       is the varint msg_type). Only the first --keep-timeticks TimeTick (1200) messages of each topic are kept;
       the totals are written to a sidecar FILE.counts.json for the README.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import subprocess
import sys
from collections import Counter, defaultdict

MSG_TYPES = {
    0: "Undefined", 100: "CreateCollection", 101: "DropCollection", 102: "HasCollection", 103: "DescribeCollection",
    104: "ShowCollections", 105: "GetSystemConfigs", 106: "LoadCollection", 107: "ReleaseCollection",
    108: "CreateAlias", 109: "DropAlias", 110: "AlterAlias", 111: "AlterCollection", 112: "RenameCollection",
    200: "CreatePartition", 201: "DropPartition", 202: "HasPartition", 203: "DescribePartition",
    204: "ShowPartitions", 205: "LoadPartitions", 206: "ReleasePartitions", 300: "CreateIndex",
    301: "DescribeIndex", 302: "DropIndex", 304: "AlterIndex", 400: "Insert", 401: "Delete", 402: "Flush",
    403: "ResendSegmentStats", 404: "Upsert", 1200: "TimeTick", 1208: "DataNodeTt", 1212: "Replicate",
    1500: "CreateCredential", 1502: "DeleteCredential", 1503: "UpdateCredential", 1600: "CreateRole",
    1601: "DropRole", 1602: "OperateUserRole", 1606: "OperatePrivilege", 1801: "CreateDatabase",
    1802: "DropDatabase", 1803: "ListDatabases", 1804: "AlterDatabase",
}

# The replicated operations the workload performs, with the MsgType each could produce.
OPERATIONS = [
    (1801, "create_database"), (100, "create_collection"), (200, "create_partition"), (400, "insert"),
    (401, "delete"), (404, "upsert"), (300, "create_index"), (402, "flush"), (106, "load_collection"),
    (107, "release_collection"), (205, "load_partitions"), (206, "release_partitions"), (302, "drop_index"),
    (201, "drop_partition"), (101, "drop_collection"), (1802, "drop_database"),
]


# ------------------------------------------------------------------------------------------ protobuf


def read_varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def fields(buf: bytes):
    """Yield (field_number, wire_type, value) for one protobuf message (value: int or bytes)."""
    i = 0
    while i < len(buf):
        tag, i = read_varint(buf, i)
        num, wt = tag >> 3, tag & 7
        if wt == 0:
            v, i = read_varint(buf, i)
        elif wt == 1:
            v, i = buf[i:i + 8], i + 8
        elif wt == 2:
            n, i = read_varint(buf, i)
            v, i = buf[i:i + n], i + n
        elif wt == 5:
            v, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"unsupported wire type {wt}")
        yield num, wt, v


def msg_type_of(payload: bytes) -> int | None:
    """payload field 1 (MsgBase, length-delimited) -> its field 1 (varint msg_type)."""
    try:
        for num, wt, v in fields(payload):
            if num == 1 and wt == 2:
                for n2, w2, v2 in fields(v):
                    if n2 == 1 and w2 == 0:
                        return v2
                return 0  # MsgBase present, msg_type left at its default
    except ValueError:
        return None
    return None


# ------------------------------------------------------------------------------------------ etcd


def cmd_etcd(args: argparse.Namespace) -> int:
    env = dict(os.environ, ETCDCTL_API="3")

    def get(key: str, prefix: bool) -> list[dict]:
        cmd = ["etcdctl", f"--endpoints={args.endpoints}", "get", key, "-w", "json"]
        if prefix:
            cmd.insert(3, "--prefix")
        out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
        return json.loads(out).get("kvs", [])

    kvs = get(args.prefix, True)
    for k in args.extra_key:
        kvs += get(k, False)
    rows, skipped = [], Counter()
    for kv in kvs:
        key = base64.b64decode(kv["key"]).decode()
        if "/snapshots/" in key or "/credential/" in key:
            skipped[key.split("/")[3] if key.count("/") > 3 else key] += 1
            continue
        rows.append({"key": key, "value_b64": kv.get("value", "")})
    rows.sort(key=lambda r: r["key"])
    with open(args.out, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    kinds = Counter(re.sub(r"/\d+", "/{id}", r["key"]) for r in rows)
    print(f"capture etcd: {len(rows)} keys -> {args.out} (skipped: {dict(skipped) or 'none'})")
    for k, n in sorted(kinds.items()):
        print(f"  {n:4d}  {k}")
    return 0


# ------------------------------------------------------------------------------------------ kafka


def header_value(v: bytes | None):
    if v is None:
        return None
    try:
        s = v.decode("utf-8")
        if s.isprintable():
            return s
    except UnicodeDecodeError:
        pass
    return {"base64": base64.b64encode(v).decode()}


def cmd_kafka(args: argparse.Namespace) -> int:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    c = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": f"mcdc-capture-{os.getpid()}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
    })
    md = c.list_topics(timeout=10)
    pat = re.compile(rf"^{re.escape(args.root)}-(rootcoord-dml_\d+|replicate-msg)$")
    topics = sorted(t for t in md.topics if pat.match(t))
    if not topics:
        print(f"capture kafka: no {args.root}-* topics on {args.bootstrap}", file=sys.stderr)
        return 1
    tps, ends = [], {}
    for t in topics:
        for p in sorted(md.topics[t].partitions):
            lo, hi = c.get_watermark_offsets(TopicPartition(t, p), timeout=10)
            ends[(t, p)] = hi
            if hi > lo:
                tps.append(TopicPartition(t, p, OFFSET_BEGINNING))
    c.assign(tps)
    remaining = {(tp.topic, tp.partition) for tp in tps}
    by_tp: dict = defaultdict(list)
    idle = 0
    while remaining:
        m = c.poll(1.0)
        if m is None:
            idle += 1
            if idle > 30:
                raise SystemExit(f"capture kafka: timed out, still waiting for {sorted(remaining)}")
            continue
        idle = 0
        key = (m.topic(), m.partition())
        if m.error():
            if m.error().code() == -191:  # _PARTITION_EOF
                if m.offset() >= ends[key]:
                    remaining.discard(key)
                continue
            raise SystemExit(f"capture kafka: {m.error()}")
        if m.offset() < ends[key]:
            by_tp[key].append(m)
        if m.offset() + 1 >= ends[key]:
            remaining.discard(key)
    c.close()

    totals: dict[str, Counter] = {}
    kept = 0
    with open(args.out, "w", encoding="utf-8") as f:
        for (topic, part) in sorted(by_tp):
            counts: Counter = Counter()
            for m in sorted(by_tp[(topic, part)], key=lambda m: m.offset()):
                payload = m.value() or b""
                mt = msg_type_of(payload)
                counts[mt] += 1
                if mt == 1200 and counts[mt] > args.keep_timeticks:
                    continue
                headers = {}
                for hk, hv in m.headers() or []:
                    val = header_value(hv)
                    if hk in headers:  # repeated header key: keep all values, in order
                        prev = headers[hk]
                        headers[hk] = (prev if isinstance(prev, list) else [prev]) + [val]
                    else:
                        headers[hk] = val
                row = {
                    "topic": topic, "partition": part, "offset": m.offset(),
                    "timestamp_ms": m.timestamp()[1],
                    "key_b64": None if m.key() is None else base64.b64encode(m.key()).decode(),
                    "headers": headers, "msg_type": mt, "msg_name": MSG_TYPES.get(mt, str(mt)),
                    "payload_b64": base64.b64encode(payload).decode(),
                }
                f.write(json.dumps(row) + "\n")
                kept += 1
            totals[topic] = counts
    with open(args.out + ".counts.json", "w", encoding="utf-8") as f:
        json.dump({t: {str(k): v for k, v in sorted(c.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))}
                   for t, c in totals.items()}, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"capture kafka: {sum(sum(c.values()) for c in totals.values())} messages on {len(totals)} topics, "
          f"kept {kept} -> {args.out}")
    for t, cnt in totals.items():
        print(f"  {t}: " + ", ".join(f"{MSG_TYPES.get(k, k)}({k})x{v}" for k, v in sorted(cnt.items(), key=lambda kv: kv[0] or 0)))
    return 0


# ------------------------------------------------------------------------------------------ readme


def cmd_readme(args: argparse.Namespace) -> int:
    d = args.dir
    kafka_path = os.path.join(d, "kafka-messages.jsonl")
    with open(kafka_path + ".counts.json", encoding="utf-8") as f:
        totals = {t: {int(k): v for k, v in c.items()} for t, c in json.load(f).items()}
    rows = [json.loads(line) for line in open(kafka_path, encoding="utf-8")]
    etcd_rows = [json.loads(line) for line in open(os.path.join(d, "etcd-meta.jsonl"), encoding="utf-8")]

    header_keys: dict[str, set] = defaultdict(set)
    for r in rows:
        header_keys[r["msg_name"]].update(r["headers"].keys())
    seen = set()
    for c in totals.values():
        seen.update(c)

    out = []
    w = out.append
    w("# Milvus 2.3.5 wire fixtures (Kafka MQ + etcd meta)")
    w("")
    w("Produced by `scripts/capture-fixtures` (do not edit by hand; re-run it to refresh):")
    w("")
    w("1. `scripts/dev-env reset`, then `scripts/dev-env up etcd kafka source`: a clean real Milvus 2.3.5 standalone")
    w("   (PyPI wheel) with `mq.type: kafka` on the noida-db broker, `etcd.rootPath`/cluster prefix `by-dev`,")
    w("   `rootCoord.dmlChannelNum: 4`.")
    w("2. `tests/py/workload.py --scenario all` against it (pymilvus 2.4.15; 5 rows per insert, float dim 8,")
    w("   binary dim 16, seed 42). Its printed steps are in `workload-steps.txt`.")
    w("3. `etcd-meta.jsonl`: taken by the workload's `--before-first-drop` hook, i.e. after every database,")
    w("   collection, partition and index exists and before any drop: every key under `by-dev/meta/root-coord/`")
    w("   except `credential/` (default users/roles), plus `by-dev/kv/gid/timestamp` (the TSO, 8 bytes big-endian).")
    w("   `etcd-meta-final.jsonl`: the same keys once the workload has finished (after every drop).")
    w("   Line format: `{\"key\": ..., \"value_b64\": ...}`; a value `4pu8` (\"⛼\") is a tombstone.")
    w("4. `kafka-messages.jsonl`: after the workload, every message of `by-dev-rootcoord-dml_*` and")
    w("   `by-dev-replicate-msg` read from offset 0 with confluent-kafka; only the first 3 TimeTick (1200)")
    w("   messages of each topic are kept. Line format: `{\"topic\", \"partition\", \"offset\", \"timestamp_ms\",")
    w("   \"key_b64\", \"headers\", \"msg_type\", \"msg_name\", \"payload_b64\"}`. `msg_type` is decoded from the payload")
    w("   (field 1 = MsgBase, its field 1 = msg_type); `headers` maps a key to its UTF-8 string value, or to")
    w("   `{\"base64\": ...}` when the value is not printable UTF-8.")
    w("")
    w("## Messages per topic (before the TimeTick cut)")
    w("")
    w("| topic | msg_type counts |")
    w("|---|---|")
    for t in sorted(totals):
        cells = ", ".join(f"{v}× {MSG_TYPES.get(k, k)} ({k})" for k, v in sorted(totals[t].items()))
        w(f"| `{t}` | {cells} |")
    w("")
    w(f"Kept in `kafka-messages.jsonl`: {len(rows)} messages. `etcd-meta.jsonl`: {len(etcd_rows)} keys.")
    w("")
    w("## Kafka headers seen, by message type")
    w("")
    for name in sorted(header_keys):
        w(f"- {name}: {', '.join(f'`{k}`' for k in sorted(header_keys[name])) or '(none)'}")
    w("")
    w("## Workload operations without an MQ message of their own")
    w("")
    missing = [(mt, op) for mt, op in OPERATIONS if mt not in seen]
    if missing:
        for mt, op in missing:
            w(f"- `{op}`: no {MSG_TYPES[mt]} ({mt}) message on any topic.")
    else:
        w("- none: every operation produced its own message type.")
    w("")
    notes = os.path.join(d, "NOTES.md")
    if os.path.exists(notes):
        w(open(notes, encoding="utf-8").read().rstrip())
        w("")
    with open(os.path.join(d, "README.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(out))
    print(f"capture readme: {os.path.join(d, 'README.md')}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("etcd")
    e.add_argument("--endpoints", default=os.environ.get("MCDC_ETCD", "127.0.0.1:2379"))
    e.add_argument("--prefix", default="by-dev/meta/root-coord/")
    e.add_argument("--extra-key", action="append", default=[])
    e.add_argument("--out", required=True)
    e.set_defaults(func=cmd_etcd)
    k = sub.add_parser("kafka")
    k.add_argument("--bootstrap", default=os.environ.get("MCDC_KAFKA", "127.0.0.1:19092"))
    k.add_argument("--root", default="by-dev")
    k.add_argument("--keep-timeticks", type=int, default=3)
    k.add_argument("--out", required=True)
    k.set_defaults(func=cmd_kafka)
    r = sub.add_parser("readme")
    r.add_argument("--dir", required=True)
    r.set_defaults(func=cmd_readme)
    args = ap.parse_args()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
