#!/usr/bin/env python3
"""Helpers for scripts/dev-env (not meant to be run by hand).

Subcommands:
  render-milvus-conf  render configs/milvus.yaml from the Milvus wheel's config.yaml.template
  milvus-ready        one real gRPC round trip (pymilvus list_collections) against a Milvus URI
  kafka-ready         one real Kafka metadata round trip (confluent-kafka) against a broker

render-milvus-conf only needs the standard library; the readiness checks need the dev venv.
"""

from __future__ import annotations

import argparse
import re
import sys

# {{ name }}, {{ name: default }}, {{ name(type): default }}
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*(?:\(\s*\w+\s*\))?\s*(?::\s*([^}]*?))?\s*\}\}")
KEY_LINE = re.compile(r"^(\s*)([A-Za-z0-9_.\-]+):(.*)$")


def fill_placeholders(text: str, values: dict[str, str]) -> str:
    def repl(m: re.Match) -> str:
        name, default = m.group(1), m.group(2)
        if name in values:
            return values[name]
        return default if default is not None else ""

    return PLACEHOLDER.sub(repl, text)


def yaml_scalar(value: str) -> str:
    """Quote a value when YAML would otherwise misread it (empty, or containing ': ' / '#')."""
    if value == "":
        return '""'
    if re.search(r"(:\s)|(\s#)|^[\[{&*!|>'\"%@`]", value):
        return "'" + value.replace("'", "''") + "'"
    return value


def set_key(lines: list[str], dotted: str, value: str) -> bool:
    """Set an existing block-style mapping key (a.b.c) in place. Returns False if absent."""
    want = dotted.split(".")
    stack: list[tuple[int, str]] = []  # (indent, key)
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.startswith("- "):
            continue
        m = KEY_LINE.match(line)
        if not m:
            continue
        indent = len(m.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, m.group(2)))
        if [k for _, k in stack] == want:
            lines[i] = f"{m.group(1)}{m.group(2)}: {yaml_scalar(value)}"
            return True
    return False


def append_block(lines: list[str], dotted: str, value: str) -> None:
    """Append a new top-level block for a key the template does not have."""
    parts = dotted.split(".")
    lines.append("")
    for depth, part in enumerate(parts[:-1]):
        lines.append("  " * depth + f"{part}:")
    lines.append("  " * (len(parts) - 1) + f"{parts[-1]}: {yaml_scalar(value)}")


def cmd_render(args: argparse.Namespace) -> int:
    with open(args.template, encoding="utf-8") as f:
        text = f.read()
    placeholders = dict(kv.split("=", 1) for kv in args.placeholder)
    lines = fill_placeholders(text, placeholders).splitlines()
    missing = []
    for kv in args.set:
        key, value = kv.split("=", 1)
        if not set_key(lines, key, value):
            missing.append(key)
    for kv in args.add:
        key, value = kv.split("=", 1)
        if not set_key(lines, key, value):
            append_block(lines, key, value)
    if missing:
        print(f"render-milvus-conf: keys not found in template: {', '.join(missing)}", file=sys.stderr)
        return 1
    leftover = PLACEHOLDER.search("\n".join(lines))
    if leftover:
        print(f"render-milvus-conf: unrendered placeholder {leftover.group(0)}", file=sys.stderr)
        return 1
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return 0


def cmd_milvus_ready(args: argparse.Namespace) -> int:
    from pymilvus import MilvusClient

    try:
        client = MilvusClient(uri=args.uri, timeout=args.timeout)
        colls = client.list_collections(timeout=args.timeout)
        client.close()
    except Exception as e:  # noqa: BLE001 - report any failure as "not ready"
        print(f"not ready: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", file=sys.stderr)
        return 1
    if args.verbose:
        print(f"ok: {len(colls)} collection(s) in default db")
    return 0


def cmd_kafka_ready(args: argparse.Namespace) -> int:
    from confluent_kafka.admin import AdminClient

    try:
        md = AdminClient({"bootstrap.servers": args.bootstrap}).list_topics(timeout=args.timeout)
    except Exception as e:  # noqa: BLE001
        print(f"not ready: {e}", file=sys.stderr)
        return 1
    if args.verbose:
        print(f"ok: {len(md.brokers)} broker(s), {len(md.topics)} topic(s)")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("render-milvus-conf")
    r.add_argument("--template", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--placeholder", action="append", default=[], metavar="NAME=VALUE",
                   help="value for a {{ name }} placeholder (others take their default)")
    r.add_argument("--set", action="append", default=[], metavar="a.b.c=VALUE",
                   help="set a key that must exist in the template")
    r.add_argument("--add", action="append", default=[], metavar="a.b.c=VALUE",
                   help="set a key, appending a new top-level block when absent")
    r.set_defaults(func=cmd_render)

    m = sub.add_parser("milvus-ready")
    m.add_argument("uri")
    m.add_argument("--timeout", type=float, default=5.0)
    m.add_argument("-v", "--verbose", action="store_true")
    m.set_defaults(func=cmd_milvus_ready)

    k = sub.add_parser("kafka-ready")
    k.add_argument("bootstrap")
    k.add_argument("--timeout", type=float, default=5.0)
    k.add_argument("-v", "--verbose", action="store_true")
    k.set_defaults(func=cmd_kafka_ready)

    args = p.parse_args()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
