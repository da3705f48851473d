//! Keys as a live Milvus 2.3.5 wrote them (`etcdctl get --prefix by-dev/meta/root-coord/credential`
//! after pymilvus `create_role`, `grant_privilege`, `create_user`, `grant_role`, then the
//! revokes and drops).

use super::*;

const ROOT: &str = "by-dev/meta";

fn k(rest: &str) -> RbacKey {
    parse_key(ROOT, &format!("{ROOT}/root-coord/credential/{rest}")).unwrap()
}

fn grant(role: &str, object_type: &str, db: &str, name: &str, p: &str) -> Grant {
    Grant {
        role: role.into(),
        object_type: object_type.into(),
        object_name: name.into(),
        db: db.into(),
        privilege: p.into(),
    }
}

#[test]
fn parses_the_credential_keys() {
    assert_eq!(
        k("roles/hops_probe_role"),
        RbacKey::Role("hops_probe_role".into())
    );
    assert_eq!(
        k("users/hops_probe_user"),
        RbacKey::User("hops_probe_user".into())
    );
    assert_eq!(
        k("user-role-mapping/hops_probe_user/hops_probe_role"),
        RbacKey::Binding("hops_probe_user".into(), "hops_probe_role".into())
    );
    assert_eq!(
        k("grantee-privileges/hops_probe_role/Collection/default.hops_coll"),
        RbacKey::Grantee(grant(
            "hops_probe_role",
            "Collection",
            "default",
            "hops_coll",
            ""
        ))
    );
    assert_eq!(
        k("grantee-privileges/public/Global/*.*"),
        RbacKey::Grantee(grant("public", "Global", "*", "*", ""))
    );
    assert_eq!(
        k("grantee-id/30593cd4b7cbacbb/PrivilegeCreateCollection"),
        RbacKey::GranteeId("30593cd4b7cbacbb".into(), "CreateCollection".into())
    );
    assert_eq!(
        k("grantee-id/1/PrivilegeAll"),
        RbacKey::GranteeId("1".into(), "*".into())
    );
    for other in [
        "by-dev/meta/root-coord/credential/roles/",
        "by-dev/meta/root-coord/credential/roles",
        "by-dev/meta/root-coord/credential/users/a/b",
        "by-dev/meta/root-coord/credential/other/a",
        "by-dev/meta/root-coord/database/aliases/1/a",
        "other/meta/root-coord/credential/roles/a",
    ] {
        assert_eq!(parse_key(ROOT, other), None, "{other}");
    }
}

#[test]
fn every_change_is_reported_once_in_order() {
    let mut r = Rbac::default();
    // The scan of a fresh Milvus: built-ins only, nothing to create.
    r.apply(k("roles/admin"), Some(b""));
    r.apply(k("roles/public"), Some(b""));
    r.apply(k("users/root"), Some(b"{}"));
    assert!(r.state().is_empty());

    let role = "reader".to_string();
    assert_eq!(
        r.apply_and_diff(k("roles/reader"), Some(b"")),
        vec![RbacOp::CreateRole { role: role.clone() }]
    );
    // A grant is two keys: the grantee (nothing yet), then its privilege.
    assert!(r
        .apply_and_diff(
            k("grantee-privileges/reader/Collection/default.c"),
            Some(b"id1")
        )
        .is_empty());
    let g = grant("reader", "Collection", "default", "c", "Search");
    assert_eq!(
        r.apply_and_diff(k("grantee-id/id1/PrivilegeSearch"), Some(b"root")),
        vec![RbacOp::Grant(g.clone())]
    );
    assert_eq!(
        r.apply_and_diff(k("users/alice"), Some(b"{\"encrypted_password\":\"x\"}")),
        vec![RbacOp::CreateUser {
            user: "alice".into()
        }]
    );
    let bind = RbacOp::AddUserToRole {
        user: "alice".into(),
        role: role.clone(),
    };
    assert_eq!(
        r.apply_and_diff(k("user-role-mapping/alice/reader"), Some(b"")),
        vec![bind.clone()]
    );
    // The same value again (a replayed watch event) changes nothing.
    assert!(r
        .apply_and_diff(k("user-role-mapping/alice/reader"), Some(b""))
        .is_empty());
    assert_eq!(
        r.state(),
        vec![
            RbacOp::CreateRole { role: role.clone() },
            RbacOp::CreateUser {
                user: "alice".into()
            },
            RbacOp::Grant(g.clone()),
            bind,
        ]
    );

    // Revoke: the grantee-id key goes, the grantee key stays.
    assert_eq!(
        r.apply_and_diff(k("grantee-id/id1/PrivilegeSearch"), None),
        vec![RbacOp::Revoke(g.clone())]
    );
    // Dropping a role with a binding: the unbinding first, then the drop.
    assert_eq!(
        r.apply_and_diff(k("roles/reader"), None),
        vec![
            RbacOp::RemoveUserFromRole {
                user: "alice".into(),
                role: role.clone()
            },
            RbacOp::DropRole { role: role.clone() },
        ]
    );
    assert!(r
        .apply_and_diff(k("user-role-mapping/alice/reader"), None)
        .is_empty());
    assert_eq!(
        r.apply_and_diff(k("users/alice"), None),
        vec![RbacOp::DropUser {
            user: "alice".into()
        }]
    );
    // Re-created with the orphan grantee key still there: no grant comes back by itself.
    assert_eq!(
        r.apply_and_diff(k("roles/reader"), Some(b"")),
        vec![RbacOp::CreateRole { role }]
    );
}

#[test]
fn grants_to_public_are_replicated_but_built_ins_are_not_created() {
    let mut r = Rbac::default();
    r.apply(k("roles/public"), Some(b""));
    r.apply(
        k("grantee-privileges/public/Global/*.*"),
        Some(b"250dd41b686083b0"),
    );
    r.apply(
        k("grantee-id/250dd41b686083b0/PrivilegeDescribeCollection"),
        Some(b"root"),
    );
    assert_eq!(
        r.state(),
        vec![RbacOp::Grant(grant(
            "public",
            "Global",
            "*",
            "*",
            "DescribeCollection"
        ))]
    );
    r.apply(k("user-role-mapping/root/public"), Some(b""));
    assert_eq!(r.state().len(), 2, "root is bound although never created");
}
