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
  ops.py rbac --uri U --prefix P --step N        (token root:Milvus: Milvus 2.3 grants need credentials)
        step 1: roles P_reader, P_writer, P_temp; reader: Search on Collection P_a, Query on Collection *;
                writer: Insert on Collection P_a, CreateCollection on Global *; temp: Flush on Collection *;
                users P_alice, P_bob; alice in reader and writer, bob in reader.
        step 2: revoke reader Query, grant reader Load on P_a, alice out of writer, revoke temp's grant and
                drop P_temp, user P_carol in reader.
        step 3: revoke writer's grants and drop P_writer, drop user P_bob, grant reader Flush on P_a.
  ops.py rbac-clean --uri U --prefix P
        Drop the users and roles named P* (revoking the roles' grants first).
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


def rbac_client(uri: str):
    from pymilvus import MilvusClient

    return MilvusClient(uri=uri, token="root:Milvus")


def rbac(a) -> None:
    c = rbac_client(a.uri)
    p = a.prefix
    reader, writer, temp = f"{p}reader", f"{p}writer", f"{p}temp"
    coll = f"{p}a"
    if a.step == 1:
        for r in (reader, writer, temp):
            c.create_role(r)
        c.grant_privilege(reader, "Collection", "Search", coll, db_name="default")
        c.grant_privilege(reader, "Collection", "Query", "*", db_name="default")
        c.grant_privilege(writer, "Collection", "Insert", coll, db_name="default")
        c.grant_privilege(writer, "Global", "CreateCollection", "*", db_name="default")
        c.grant_privilege(temp, "Collection", "Flush", "*", db_name="default")
        c.create_user(f"{p}alice", "Alice-pw-1")
        c.create_user(f"{p}bob", "Bob-pw-1")
        c.grant_role(f"{p}alice", reader)
        c.grant_role(f"{p}alice", writer)
        c.grant_role(f"{p}bob", reader)
    elif a.step == 2:
        c.revoke_privilege(reader, "Collection", "Query", "*", db_name="default")
        c.grant_privilege(reader, "Collection", "Load", coll, db_name="default")
        c.revoke_role(f"{p}alice", writer)
        c.revoke_privilege(temp, "Collection", "Flush", "*", db_name="default")
        c.drop_role(temp)
        c.create_user(f"{p}carol", "Carol-pw-1")
        c.grant_role(f"{p}carol", reader)
    elif a.step == 3:
        c.revoke_privilege(writer, "Collection", "Insert", coll, db_name="default")
        c.revoke_privilege(writer, "Global", "CreateCollection", "*", db_name="default")
        c.drop_role(writer)
        c.drop_user(f"{p}bob")
        c.grant_privilege(reader, "Collection", "Flush", coll, db_name="default")
    else:
        die(f"no step {a.step}")


def rbac_clean(a) -> None:
    c = rbac_client(a.uri)
    for u in c.list_users():
        if u.startswith(a.prefix):
            for r in c.describe_user(u).get("roles") or []:
                c.revoke_role(u, r)
            c.drop_user(u)
    for r in c.list_roles():
        if r.startswith(a.prefix):
            for g in c.describe_role(r)["privileges"]:
                c.revoke_privilege(r, g["object_type"], g["privilege"], g["object_name"], db_name=g["db_name"])
            c.drop_role(r)


def clean(a) -> None:
    c = connect(a.uri)
    for coll in c.list_collections():
        if coll.startswith(a.prefix):
            for al in c.describe_collection(coll).get("aliases") or []:
                c.drop_alias(al)
            c.drop_collection(coll)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cmd", choices=["aliases", "clean", "aliases-of", "rbac", "rbac-clean"])
    ap.add_argument("--uri", required=True)
    ap.add_argument("--prefix", default="")
    ap.add_argument("--coll")
    ap.add_argument("--step", type=int, default=1)
    a = ap.parse_args()
    if a.cmd == "aliases":
        aliases(a)
    elif a.cmd == "clean":
        clean(a)
    elif a.cmd == "rbac":
        rbac(a)
    elif a.cmd == "rbac-clean":
        rbac_clean(a)
    else:
        print(json.dumps(sorted(connect(a.uri).describe_collection(a.coll).get("aliases") or [])))


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001
        die(str(e), 1)
