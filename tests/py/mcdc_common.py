"""Shared helpers for the Python test tools in tests/py (run them with the dev venv: $MCDC_PYTHON)."""

from __future__ import annotations

import os
import sys
import time

DEFAULT_SOURCE_URI = os.environ.get("MCDC_SOURCE_URI", "http://127.0.0.1:19530")
DEFAULT_TARGET_URI = os.environ.get("MCDC_TARGET_URI", "http://127.0.0.1:19531")
DEFAULT_KAFKA = os.environ.get("MCDC_KAFKA", "127.0.0.1:19092")
DEFAULT_ETCD = os.environ.get("MCDC_ETCD", "127.0.0.1:2379")


def connect(uri: str, db_name: str = "default", timeout: float = 30.0):
    """A pymilvus MilvusClient bound to one database."""
    from pymilvus import MilvusClient

    return MilvusClient(uri=uri, db_name=db_name, timeout=timeout)


def log(msg: str) -> None:
    print(msg, flush=True)


def die(msg: str, code: int = 2) -> None:
    print(f"error: {msg}", file=sys.stderr, flush=True)
    sys.exit(code)


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.elapsed = time.perf_counter() - self.t0
        return False
