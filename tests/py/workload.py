#!/usr/bin/env python3
"""Deterministic Milvus workload for CDC tests (pymilvus 2.4.15, written against Milvus 2.3.5).

Scenarios:
  ddl-dml   create database cdc_db1, six collections (two databases, shards_num 2-3; int64 / varchar /
            autoID primary keys; dynamic field; JSON, ARRAY, float and binary vectors; a partition-key
            collection), partitions, inserts (default and named partitions), indexes (float, binary and
            scalar, with params), flush, deletes (by PK expression, by partition, by a non-PK filter),
            upserts, load/release of collections and partitions, then the drops that leave a checkable
            state: drop partition, drop index (+ re-create), drop of a scratch collection.
            Leaves the final state in place, for compare.py.
  teardown  release and drop everything ddl-dml created: partitions, indexes, collections, database cdc_db1.
  clean     drop whatever an earlier failed run left (collections with the prefix, database db1), if anything.
  all       ddl-dml then teardown: every operation; `--keep` skips the teardown.
  dml       one more round of inserts/deletes/upserts (no DDL) into the collections ddl-dml created;
            `--round N` (N >= 1) picks fresh primary keys, so rounds can be repeated.

Every step is printed. Data comes from random.Random seeded by (--seed, collection, round, batch), so the
same arguments always produce the same rows (autoID primary keys excepted: the server assigns them).

  $MCDC_PYTHON tests/py/workload.py --uri http://127.0.0.1:19530 --scenario all
  $MCDC_PYTHON tests/py/workload.py --scenario ddl-dml            # then compare.py SOURCE TARGET
  $MCDC_PYTHON tests/py/workload.py --scenario all --before-first-drop 'scripts/snapshot-etcd ...'
"""

from __future__ import annotations

import argparse
import random
import shlex
import string
import subprocess
import sys
import time

from mcdc_common import DEFAULT_SOURCE_URI, connect, log

DB1 = "cdc_db1"


class Workload:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.uri = args.uri
        self.p = args.prefix
        self.dim = args.dim
        self.bin_dim = args.bin_dim
        self.rows = args.rows
        self.seed = args.seed
        self.step_no = 0
        self.clients: dict[str, object] = {}
        self.drop_hook_done = False
        self.t0 = time.time()
        self.db1 = args.db1
        # collection key -> (db, name)
        p = self.p
        self.colls = {
            "int64": ("default", f"{p}int64"),
            "varchar": ("default", f"{p}varchar"),
            "autoid": ("default", f"{p}autoid"),
            "scratch": ("default", f"{p}scratch"),
            "items": (self.db1, f"{p}items"),
            "pkey": (self.db1, f"{p}pkey"),
        }

    # ------------------------------------------------------------------ plumbing

    def client(self, db: str):
        if db not in self.clients:
            self.clients[db] = connect(self.uri, db)
        return self.clients[db]

    def c(self, key: str):
        db, name = self.colls[key]
        return self.client(db), name

    def fq(self, key: str) -> str:
        db, name = self.colls[key]
        return f"{db}.{name}"

    def step(self, what: str) -> None:
        self.step_no += 1
        log(f"[step {self.step_no:3d} t={time.time() - self.t0:5.1f}s] {what}")

    def before_drop(self) -> None:
        """Runs --before-first-drop once, right before the first drop of any kind."""
        if self.drop_hook_done:
            return
        self.drop_hook_done = True
        if self.args.before_first_drop:
            self.step(f"hook before first drop: {self.args.before_first_drop}")
            subprocess.run(self.args.before_first_drop, shell=True, check=True)

    def rng(self, key: str, rnd: int, batch: int) -> random.Random:
        return random.Random(f"{self.seed}/{key}/{rnd}/{batch}")

    def fvec(self, r: random.Random) -> list[float]:
        return [round(r.uniform(-1, 1), 6) for _ in range(self.dim)]

    def bvec(self, r: random.Random) -> bytes:
        return bytes(r.getrandbits(8) for _ in range(self.bin_dim // 8))

    @staticmethod
    def word(r: random.Random, n: int = 8) -> str:
        return "".join(r.choice(string.ascii_lowercase) for _ in range(n))

    # ------------------------------------------------------------------ rows

    def rows_int64(self, rnd: int, batch: int, pks: list[int]) -> list[dict]:
        r = self.rng("int64", rnd, batch)
        out = []
        for pk in pks:
            out.append({
                "id": pk,
                "f_bool": r.random() < 0.5,
                "f_int8": r.randint(-128, 127),
                "f_int16": r.randint(-32768, 32767),
                "f_int32": r.randint(-(2**31), 2**31 - 1),
                "f_int64": r.randint(-(2**63), 2**63 - 1),
                "f_float": round(r.uniform(-1000, 1000), 3),
                "f_double": r.uniform(-1e6, 1e6),
                "f_varchar": self.word(r, r.randint(0, 20)),
                "f_json": {"k": pk, "s": self.word(r, 4), "nested": {"x": r.randint(0, 9), "l": [1, 2, r.randint(0, 9)]}},
                "f_array": [r.randint(-100, 100) for _ in range(r.randint(0, 8))],
                "f_array_str": [self.word(r, r.randint(1, 8)) for _ in range(r.randint(0, 4))],
                "fvec": self.fvec(r),
            })
        return out

    def rows_varchar(self, rnd: int, batch: int, pks: list[str]) -> list[dict]:
        r = self.rng("varchar", rnd, batch)
        out = []
        for pk in pks:
            row = {"id": pk, "tag": r.randint(0, 9), "bvec": self.bvec(r)}
            # dynamic fields (stored in $meta)
            row["color"] = r.choice(["red", "green", "blue"])
            if r.random() < 0.5:
                row["n"] = r.randint(0, 1000)
            if r.random() < 0.3:
                row["extra"] = {"deep": [self.word(r, 3), r.randint(0, 5)]}
            out.append(row)
        return out

    def rows_autoid(self, rnd: int, batch: int, n: int) -> list[dict]:
        r = self.rng("autoid", rnd, batch)
        return [{"f_varchar": self.word(r, 6), "fvec": self.fvec(r)} for _ in range(n)]

    def rows_items(self, rnd: int, batch: int, pks: list[int]) -> list[dict]:
        r = self.rng("items", rnd, batch)
        out = []
        for pk in pks:
            row = {
                "id": pk,
                "f_double": r.uniform(0, 1),
                "f_json": {"pk": pk, "tags": [self.word(r, 3) for _ in range(2)]} if r.random() < 0.8 else {"list": [pk, None, "x"], "n": None},
                "f_array": [round(r.uniform(0, 1), 3) for _ in range(r.randint(0, 5))],
                "fvec": self.fvec(r),
            }
            if r.random() < 0.5:
                row["dyn_score"] = r.randint(0, 100)
            out.append(row)
        return out

    def rows_pkey(self, rnd: int, batch: int, pks: list[int]) -> list[dict]:
        r = self.rng("pkey", rnd, batch)
        return [{"id": pk, "tenant": r.choice(["t_a", "t_b", "t_c", "t_d"]), "fvec": self.fvec(r)} for pk in pks]

    def rows_scratch(self, rnd: int, batch: int, pks: list[int]) -> list[dict]:
        r = self.rng("scratch", rnd, batch)
        return [{"id": pk, "fvec": self.fvec(r)} for pk in pks]

    # ------------------------------------------------------------------ operations

    def create_collections(self) -> None:
        from pymilvus import DataType

        def sch(**kw):
            from pymilvus import MilvusClient

            return MilvusClient.create_schema(**kw)

        # int64 PK, every scalar type, JSON, two ARRAYs, float vector
        s = sch(auto_id=False, enable_dynamic_field=False, description="int64 pk, all scalar types")
        s.add_field("id", DataType.INT64, is_primary=True)
        s.add_field("f_bool", DataType.BOOL)
        s.add_field("f_int8", DataType.INT8)
        s.add_field("f_int16", DataType.INT16)
        s.add_field("f_int32", DataType.INT32)
        s.add_field("f_int64", DataType.INT64)
        s.add_field("f_float", DataType.FLOAT)
        s.add_field("f_double", DataType.DOUBLE)
        s.add_field("f_varchar", DataType.VARCHAR, max_length=64, description="a varchar")
        s.add_field("f_json", DataType.JSON)
        s.add_field("f_array", DataType.ARRAY, element_type=DataType.INT64, max_capacity=8)
        s.add_field("f_array_str", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=4, max_length=16)
        s.add_field("fvec", DataType.FLOAT_VECTOR, dim=self.dim)
        self._create("int64", s, shards=2, consistency="Strong")

        # varchar PK, dynamic field, binary vector
        s = sch(auto_id=False, enable_dynamic_field=True, description="varchar pk, dynamic, binary vector")
        s.add_field("id", DataType.VARCHAR, is_primary=True, max_length=32)
        s.add_field("tag", DataType.INT32)
        s.add_field("bvec", DataType.BINARY_VECTOR, dim=self.bin_dim)
        self._create("varchar", s, shards=2, consistency="Session")

        # autoID int64 PK
        s = sch(auto_id=True, enable_dynamic_field=False, description="autoID pk")
        s.add_field("id", DataType.INT64, is_primary=True, auto_id=True)
        s.add_field("f_varchar", DataType.VARCHAR, max_length=16)
        s.add_field("fvec", DataType.FLOAT_VECTOR, dim=self.dim)
        self._create("autoid", s, shards=2, consistency="Bounded")

        # scratch: created, written, dropped within ddl-dml
        s = sch(auto_id=False, enable_dynamic_field=False, description="dropped by the workload")
        s.add_field("id", DataType.INT64, is_primary=True)
        s.add_field("fvec", DataType.FLOAT_VECTOR, dim=self.dim)
        self._create("scratch", s, shards=2, consistency="Strong")

        # cdc_db1: dynamic + JSON + ARRAY(float) + float vector, three shards
        s = sch(auto_id=False, enable_dynamic_field=True, description="db1 items")
        s.add_field("id", DataType.INT64, is_primary=True)
        s.add_field("f_double", DataType.DOUBLE)
        s.add_field("f_json", DataType.JSON)
        s.add_field("f_array", DataType.ARRAY, element_type=DataType.FLOAT, max_capacity=5)
        s.add_field("fvec", DataType.FLOAT_VECTOR, dim=self.dim)
        self._create("items", s, shards=3, consistency="Strong")

        # cdc_db1: partition key collection (Milvus creates its partitions)
        s = sch(auto_id=False, enable_dynamic_field=False, description="partition key")
        s.add_field("id", DataType.INT64, is_primary=True)
        s.add_field("tenant", DataType.VARCHAR, max_length=16, is_partition_key=True)
        s.add_field("fvec", DataType.FLOAT_VECTOR, dim=self.dim)
        self._create("pkey", s, shards=2, consistency="Strong", num_partitions=4)

    def _create(self, key: str, schema, shards: int, consistency: str, **kw) -> None:
        client, name = self.c(key)
        extra = "".join(f", {k}={v}" for k, v in kw.items())
        self.step(f"create_collection {self.fq(key)} shards_num={shards} consistency={consistency}{extra} "
                  f"fields=[{', '.join(f.name for f in schema.fields)}]")
        client.create_collection(name, schema=schema, shards_num=shards, consistency_level=consistency, **kw)

    def create_partition(self, key: str, part: str) -> None:
        client, name = self.c(key)
        self.step(f"create_partition {self.fq(key)} {part}")
        client.create_partition(name, part)

    def insert(self, key: str, rows: list[dict], partition: str = "") -> dict:
        client, name = self.c(key)
        pks = [r["id"] for r in rows if "id" in r]
        pk_txt = f" pks={pks[0]}..{pks[-1]}" if pks else ""
        self.step(f"insert {self.fq(key)} partition={partition or '_default'} rows={len(rows)}{pk_txt}")
        return client.insert(name, rows, partition_name=partition)

    def upsert(self, key: str, rows: list[dict], partition: str = "") -> None:
        client, name = self.c(key)
        self.step(f"upsert {self.fq(key)} partition={partition or '_default'} rows={len(rows)} pks={[r['id'] for r in rows]}")
        client.upsert(name, rows, partition_name=partition)

    def delete(self, key: str, expr: str, partition: str | None = None) -> None:
        client, name = self.c(key)
        self.step(f"delete {self.fq(key)} partition={partition or '*'} filter={expr!r}")
        res = client.delete(name, filter=expr, partition_name=partition)
        log(f"           -> {res}")

    def create_index(self, key: str, field: str, index_name: str, index_type: str, metric: str | None, params: dict) -> None:
        client, name = self.c(key)
        self.step(f"create_index {self.fq(key)} field={field} name={index_name} type={index_type} metric={metric} params={params}")
        ip = client.prepare_index_params()
        kw = {"metric_type": metric} if metric else {}
        ip.add_index(field_name=field, index_type=index_type, index_name=index_name, params=params, **kw)
        client.create_index(name, ip)

    def drop_index(self, key: str, index_name: str) -> None:
        self.before_drop()
        client, name = self.c(key)
        self.step(f"drop_index {self.fq(key)} {index_name}")
        client.drop_index(name, index_name)

    def flush(self, key: str) -> None:
        client, name = self.c(key)
        self.step(f"flush {self.fq(key)}")
        client.flush(name)

    def load(self, key: str) -> None:
        client, name = self.c(key)
        self.step(f"load_collection {self.fq(key)}")
        client.load_collection(name)

    def release(self, key: str) -> None:
        client, name = self.c(key)
        self.step(f"release_collection {self.fq(key)}")
        client.release_collection(name)

    def load_parts(self, key: str, parts: list[str]) -> None:
        client, name = self.c(key)
        self.step(f"load_partitions {self.fq(key)} {parts}")
        client.load_partitions(name, parts)

    def release_parts(self, key: str, parts: list[str]) -> None:
        client, name = self.c(key)
        self.step(f"release_partitions {self.fq(key)} {parts}")
        client.release_partitions(name, parts)

    def drop_partition(self, key: str, part: str) -> None:
        self.before_drop()
        client, name = self.c(key)
        self.step(f"drop_partition {self.fq(key)} {part}")
        client.drop_partition(name, part)

    def drop_collection(self, key: str) -> None:
        self.before_drop()
        client, name = self.c(key)
        self.step(f"drop_collection {self.fq(key)}")
        client.drop_collection(name)

    # ------------------------------------------------------------------ scenarios

    def pks(self, rnd: int, start: int, n: int) -> list[int]:
        return list(range(rnd * 100000 + start, rnd * 100000 + start + n))

    def ddl_dml(self) -> None:
        n = self.rows
        default = self.client("default")
        self.step(f"create_database {self.db1}")
        default.create_database(self.db1)

        self.create_collections()
        for part in ("p1", "p2", "p_scratch"):
            self.create_partition("int64", part)
        for part in ("pa", "pb"):
            self.create_partition("items", part)

        # inserts into the default and named partitions
        self.insert("int64", self.rows_int64(0, 0, self.pks(0, 0, n)))
        self.insert("int64", self.rows_int64(0, 1, self.pks(0, 100, n)), partition="p1")
        self.insert("int64", self.rows_int64(0, 2, self.pks(0, 200, n)), partition="p2")
        self.insert("int64", self.rows_int64(0, 3, self.pks(0, 300, n)), partition="p_scratch")
        self.insert("varchar", self.rows_varchar(0, 0, [f"v{i:04d}" for i in range(n * 2)]))
        auto_ids = self.insert("autoid", self.rows_autoid(0, 0, n))["ids"]
        log(f"           -> autoID pks {list(auto_ids)}")
        self.insert("scratch", self.rows_scratch(0, 0, self.pks(0, 0, n)))
        self.insert("items", self.rows_items(0, 0, self.pks(0, 0, n)), partition="pa")
        self.insert("items", self.rows_items(0, 1, self.pks(0, 100, n)))
        self.insert("pkey", self.rows_pkey(0, 0, self.pks(0, 0, n * 2)))

        # indexes: float, binary and scalar, with params
        self.create_index("int64", "fvec", "fvec_ivf", "IVF_FLAT", "L2", {"nlist": 16})
        self.create_index("int64", "f_int32", "f_int32_sort", "STL_SORT", None, {})
        self.create_index("varchar", "bvec", "bvec_ivf", "BIN_IVF_FLAT", "HAMMING", {"nlist": 4})
        self.create_index("autoid", "fvec", "fvec_hnsw", "HNSW", "IP", {"M": 8, "efConstruction": 32})
        self.create_index("scratch", "fvec", "fvec_flat", "FLAT", "L2", {})
        self.create_index("items", "fvec", "fvec_sq8", "IVF_SQ8", "COSINE", {"nlist": 8})
        self.create_index("pkey", "fvec", "fvec_ivf", "IVF_FLAT", "L2", {"nlist": 4})

        self.flush("int64")
        self.flush("varchar")

        # deletes by PK expression (collections not loaded), one restricted to a partition
        i0 = self.pks(0, 0, n)
        self.delete("int64", f"id in [{i0[0]}, {i0[1]}]")
        self.delete("varchar", 'id in ["v0000", "v0001"]')
        self.delete("autoid", f"id in [{auto_ids[0]}]")
        i_pa = self.pks(0, 0, n)
        self.delete("items", f"id in [{i_pa[0]}]", partition="pa")
        self.delete("pkey", f"id in [{self.pks(0, 0, 2)[1]}]")

        # upserts: existing + new PKs (Milvus 2.3 sends Delete + Insert)
        self.upsert("int64", self.rows_int64(0, 10, [i0[2], i0[3], self.pks(0, 50, 1)[0]]))
        self.upsert("varchar", self.rows_varchar(0, 10, ["v0002", "v9000"]))
        self.upsert("items", self.rows_items(0, 10, [self.pks(0, 100, 1)[0], self.pks(0, 150, 1)[0]]))

        # load / release, collections and partitions
        self.load("int64")
        self.release("int64")
        self.load_parts("int64", ["p1", "p2"])
        self.release_parts("int64", ["p2"])  # final: only p1 loaded
        self.load("varchar")
        self.load("autoid")
        self.release("autoid")  # final: released
        self.load_parts("items", ["pa"])  # final: partially loaded
        self.load("pkey")
        self.load("scratch")

        # writes into loaded collections (growing segments) and a delete by a non-PK filter
        self.insert("int64", self.rows_int64(0, 4, self.pks(0, 400, n)), partition="p1")
        self.insert("varchar", self.rows_varchar(0, 1, [f"w{i:04d}" for i in range(n)]))
        self.insert("pkey", self.rows_pkey(0, 1, self.pks(0, 500, n)))
        self.delete("varchar", "tag in [0, 1]")

        # drops that leave a checkable state
        self.drop_partition("int64", "p_scratch")
        self.drop_index("autoid", "fvec_hnsw")
        self.create_index("autoid", "fvec", "fvec_ivf", "IVF_FLAT", "IP", {"nlist": 8})
        self.release("scratch")
        self.drop_collection("scratch")

        for key in ("int64", "varchar", "autoid", "items", "pkey"):
            self.flush(key)

    def dml(self, rnd: int) -> None:
        if rnd < 1:
            raise SystemExit("--round must be >= 1 for the dml scenario")
        n = self.rows
        s = max(n, 100)  # PK ranges of a round must not overlap, whatever --rows is
        self.insert("int64", self.rows_int64(rnd, 0, self.pks(rnd, 0, n)))
        self.insert("int64", self.rows_int64(rnd, 1, self.pks(rnd, s, n)), partition="p1")
        self.insert("varchar", self.rows_varchar(rnd, 0, [f"r{rnd}_{i:04d}" for i in range(n)]))
        self.insert("autoid", self.rows_autoid(rnd, 0, n))
        self.insert("items", self.rows_items(rnd, 0, self.pks(rnd, 0, n)), partition="pb")
        self.insert("pkey", self.rows_pkey(rnd, 0, self.pks(rnd, 0, n)))
        k = self.pks(rnd, 0, n)
        self.delete("int64", f"id in [{k[0]}]")
        self.delete("varchar", f'id in ["r{rnd}_0000"]')
        self.delete("items", f"id in [{k[1]}]")
        self.upsert("int64", self.rows_int64(rnd, 10, [k[1], self.pks(rnd, 2 * s, 1)[0]]))
        self.upsert("pkey", self.rows_pkey(rnd, 10, [k[2]]))
        for key in ("int64", "varchar", "autoid", "items", "pkey"):
            self.flush(key)

    def teardown(self) -> None:
        default = self.client("default")
        self.release_parts("int64", ["p1"])
        self.release("varchar")
        self.release("items")
        self.release("pkey")
        self.drop_index("int64", "fvec_ivf")
        self.drop_index("int64", "f_int32_sort")
        self.drop_partition("int64", "p1")
        self.drop_partition("int64", "p2")
        self.drop_partition("items", "pa")
        for key in ("int64", "varchar", "autoid", "items", "pkey"):
            self.drop_collection(key)
        self.step(f"drop_database {self.db1}")
        default.drop_database(self.db1)

    def clean(self) -> None:
        """Drop whatever an earlier (failed) run left: collections named with the prefix in
        `default` and in db1, then db1. Quiet when there is nothing to drop."""
        default = self.client("default")
        dbs = set(default.list_databases())
        for db in ("default", self.db1):
            if db not in dbs:
                continue
            client = self.client(db)
            for name in client.list_collections():
                if name.startswith(self.p) or db == self.db1:
                    self.step(f"clean: drop_collection {db}.{name}")
                    client.drop_collection(name)
        if self.db1 in dbs:
            self.step(f"clean: drop_database {self.db1}")
            default.drop_database(self.db1)

    def run(self) -> None:
        sc = self.args.scenario
        log(f"workload: scenario={sc} uri={self.uri} seed={self.seed} rows={self.rows} dim={self.dim} "
            f"bin_dim={self.bin_dim} prefix={self.p!r}{' keep' if self.args.keep else ''}")
        if sc == "clean":
            self.clean()
        if sc in ("ddl-dml", "all"):
            self.ddl_dml()
        if sc == "dml":
            self.dml(self.args.round)
        if sc == "teardown" or (sc == "all" and not self.args.keep):
            self.teardown()
        log(f"workload: done, {self.step_no} steps in {time.time() - self.t0:.1f}s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--uri", default=DEFAULT_SOURCE_URI, help="Milvus URI (default: $MCDC_SOURCE_URI or the source)")
    ap.add_argument("--scenario", choices=["all", "ddl-dml", "dml", "teardown", "clean"], default="all")
    ap.add_argument("--keep", action="store_true", help="with 'all': skip the teardown, leave the final state")
    ap.add_argument("--round", type=int, default=1, help="dml scenario: round number (>= 1), picks fresh PKs")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--rows", type=int, default=5, help="rows per insert batch (default 5: fixture-sized)")
    ap.add_argument("--dim", type=int, default=8, help="float vector dim (8 for fixtures, 128 for benches)")
    ap.add_argument("--bin-dim", type=int, default=16, help="binary vector dim in bits (multiple of 8)")
    ap.add_argument("--prefix", default="cdc_", help="collection name prefix")
    ap.add_argument("--db1", default=DB1, help=f"name of the extra database (default {DB1}); lets concurrent runs "
                    "on one Milvus stay apart")
    ap.add_argument("--before-first-drop", metavar="CMD",
                    help="shell command run once right before the first drop (e.g. to snapshot etcd)")
    args = ap.parse_args()
    if args.bin_dim % 8:
        ap.error("--bin-dim must be a multiple of 8")
    if args.rows < 4:
        ap.error("--rows must be >= 4")
    Workload(args).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
