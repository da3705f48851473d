//! Access control from the source etcd: roles, grants, users and user-to-role bindings, as
//! RootCoord's kv catalog stores them (Milvus `internal/metastore/kv/rootcoord/
//! rootcoord_constant.go` and `kv_catalog.go`, 2.3.5; keys seen live, tenant empty):
//!
//! | key under `{meta_root}/root-coord/credential/` | value |
//! |---|---|
//! | `roles/{role}` | empty |
//! | `users/{user}` | JSON `{"encrypted_password": bcrypt hash}` (never read here) |
//! | `user-role-mapping/{user}/{role}` | empty |
//! | `grantee-privileges/{role}/{objectType}/{db}.{objectName}` | a grantee id |
//! | `grantee-id/{granteeId}/Privilege{Name}` | the grantor's user name |
//!
//! Deletions remove keys (no tombstones); a revoke removes the `grantee-id` key and leaves the
//! `grantee-privileges` one. So the state is kept as the keys are, and every change is the
//! difference of the derived state ([`RbacOp`] creations) before and after the key changed.
//! The built-in roles `admin` and `public` and the user `root` exist on every Milvus and are
//! neither created nor dropped (grants to `public` are replicated).

use std::collections::{BTreeMap, BTreeSet};

use cdc_engine::rbac::{Grant, RbacOp};
use etcd_client::KeyValue;

use crate::decode::Payload;
use crate::input::Input;

/// Roles and users every Milvus has.
const BUILTIN_ROLES: [&str; 2] = ["admin", "public"];
const BUILTIN_USER: &str = "root";

/// A parsed credential key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RbacKey {
    /// `roles/{role}`.
    Role(String),
    /// `users/{user}`.
    User(String),
    /// `user-role-mapping/{user}/{role}`.
    Binding(String, String),
    /// `grantee-privileges/{role}/{objectType}/{db}.{objectName}`: everything of the grant
    /// but the privilege.
    Grantee(Grant),
    /// `grantee-id/{id}/{privilege}` (privilege without its `Privilege` prefix).
    GranteeId(String, String),
}

/// Parses a full etcd key under `meta_root`; `None` for keys that are not access control.
pub fn parse_key(meta_root: &str, key: &str) -> Option<RbacKey> {
    let base = format!("{}/root-coord/credential/", meta_root.trim_end_matches('/'));
    let rest = key.strip_prefix(&base)?;
    let (kind, rest) = rest.split_once('/')?;
    let parts: Vec<&str> = rest.split('/').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    match (kind, parts.as_slice()) {
        ("roles", [r]) => Some(RbacKey::Role((*r).into())),
        ("users", [u]) => Some(RbacKey::User((*u).into())),
        ("user-role-mapping", [u, r]) => Some(RbacKey::Binding((*u).into(), (*r).into())),
        ("grantee-privileges", [role, object_type, name]) => {
            // `CombineObjectName(db, name)`; before databases (2.2) the name alone.
            let (db, object_name) = name.split_once('.').unwrap_or(("default", name));
            Some(RbacKey::Grantee(Grant {
                role: (*role).into(),
                object_type: (*object_type).into(),
                object_name: object_name.into(),
                db: db.into(),
                privilege: String::new(),
            }))
        }
        ("grantee-id", [id, privilege]) => {
            let p = privilege.strip_prefix("Privilege").unwrap_or(privilege);
            let p = if p == "All" { "*" } else { p };
            Some(RbacKey::GranteeId((*id).into(), p.into()))
        }
        _ => None,
    }
}

/// The source's access control, as its keys are.
#[derive(Debug, Default)]
pub struct Rbac {
    roles: BTreeSet<String>,
    users: BTreeSet<String>,
    bindings: BTreeSet<(String, String)>,
    /// Grant without privilege (from the key) to grantee id (the value).
    grantees: BTreeMap<Grant, String>,
    /// Grantee id to its privileges.
    privileges: BTreeMap<String, BTreeSet<String>>,
}

impl Rbac {
    /// Applies one key (`value`: `None` for a deletion) without reporting.
    pub fn apply(&mut self, key: RbacKey, value: Option<&[u8]>) {
        let live = value.is_some();
        let set = |s: &mut BTreeSet<_>, v| {
            if live {
                s.insert(v);
            } else {
                s.remove(&v);
            }
        };
        match key {
            RbacKey::Role(r) => set(&mut self.roles, r),
            RbacKey::User(u) => set(&mut self.users, u),
            RbacKey::Binding(u, r) => {
                if live {
                    self.bindings.insert((u, r));
                } else {
                    self.bindings.remove(&(u, r));
                }
            }
            RbacKey::Grantee(g) => match value {
                Some(v) => {
                    self.grantees
                        .insert(g, String::from_utf8_lossy(v).into_owned());
                }
                None => {
                    self.grantees.remove(&g);
                }
            },
            RbacKey::GranteeId(id, p) => {
                let ps = self.privileges.entry(id.clone()).or_default();
                if live {
                    ps.insert(p);
                } else {
                    ps.remove(&p);
                    if ps.is_empty() {
                        self.privileges.remove(&id);
                    }
                }
            }
        }
    }

    /// Everything as creations, in the order a target needs them: roles and users, then
    /// grants and bindings (of roles that exist).
    pub fn state(&self) -> Vec<RbacOp> {
        let role_ok = |r: &str| self.roles.contains(r);
        let mut v: Vec<RbacOp> = self
            .roles
            .iter()
            .filter(|r| !BUILTIN_ROLES.contains(&r.as_str()))
            .map(|role| RbacOp::CreateRole { role: role.clone() })
            .collect();
        v.extend(
            self.users
                .iter()
                .filter(|u| u.as_str() != BUILTIN_USER)
                .map(|user| RbacOp::CreateUser { user: user.clone() }),
        );
        for (g, id) in &self.grantees {
            if !role_ok(&g.role) {
                continue;
            }
            for p in self.privileges.get(id).into_iter().flatten() {
                v.push(RbacOp::Grant(Grant {
                    privilege: p.clone(),
                    ..g.clone()
                }));
            }
        }
        v.extend(
            self.bindings
                .iter()
                .filter(|(u, r)| role_ok(r) && (self.users.contains(u) || u == BUILTIN_USER))
                .map(|(user, role)| RbacOp::AddUserToRole {
                    user: user.clone(),
                    role: role.clone(),
                }),
        );
        v
    }

    /// Applies one key and reports the changes it makes: creations in [`Rbac::state`]'s
    /// order, then removals in the reverse order (revokes and unbindings before drops).
    pub fn apply_and_diff(&mut self, key: RbacKey, value: Option<&[u8]>) -> Vec<RbacOp> {
        let before: BTreeSet<RbacOp> = self.state().into_iter().collect();
        self.apply(key, value);
        let after = self.state();
        let after_set: BTreeSet<&RbacOp> = after.iter().collect();
        let mut out: Vec<RbacOp> = after
            .iter()
            .filter(|op| !before.contains(op))
            .cloned()
            .collect();
        let mut gone: Vec<RbacOp> = before
            .into_iter()
            .filter(|op| !after_set.contains(op))
            .map(inverse)
            .collect();
        gone.sort_by_key(|op| match op {
            RbacOp::Revoke(_) | RbacOp::RemoveUserFromRole { .. } => 0,
            _ => 1,
        });
        out.extend(gone);
        out
    }
}

/// The removal of a creation.
fn inverse(op: RbacOp) -> RbacOp {
    match op {
        RbacOp::CreateRole { role } => RbacOp::DropRole { role },
        RbacOp::CreateUser { user } => RbacOp::DropUser { user },
        RbacOp::Grant(g) => RbacOp::Revoke(g),
        RbacOp::AddUserToRole { user, role } => RbacOp::RemoveUserFromRole { user, role },
        other => other,
    }
}

/// Applies `kv` when it is an access-control key: `None` for other keys, the changes it
/// makes otherwise (`report: false`, during the initial scan: none).
pub(crate) fn apply_kv(
    rbac: &mut Rbac,
    meta_root: &str,
    kv: &KeyValue,
    deleted: bool,
    report: bool,
) -> Option<Vec<RbacOp>> {
    let key = parse_key(meta_root, std::str::from_utf8(kv.key()).ok()?)?;
    let value = (!deleted).then(|| kv.value());
    if report {
        Some(rbac.apply_and_diff(key, value))
    } else {
        rbac.apply(key, value);
        Some(Vec::new())
    }
}

/// The in-band input of an access-control change at timestamp `ts` (offset: `ts`, then a
/// hash of the change, big-endian, like the alias inputs).
pub(crate) fn rbac_input(op: RbacOp, ts: u64) -> Input {
    let mut offset = ts.to_be_bytes().to_vec();
    let h = super::alias::name_hash(&format!("{} {}", op.kind(), op.subject()));
    offset.extend_from_slice(&h.to_be_bytes());
    Input::Change {
        offset,
        ts,
        bytes: 0,
        pair: None,
        payload: Payload::Rbac(op),
    }
}

/// On every open with access control on: the whole state as creations, stamped after `done`
/// (the etcd pseudo-channel's committed offset) and now. etcd keeps no time for these keys,
/// so what was replicated before cannot be told apart; the Milvus sink's check-then-act makes
/// the repeat a no-op. A deletion while the CDC was stopped is not seen (README).
pub(crate) fn replay(rbac: &Rbac, done: Option<&Vec<u8>>) -> Vec<Input> {
    let done_ts = done
        .and_then(|d| d.get(..8))
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_be_bytes);
    let now = cdc_protocol::ts::from_system_time(std::time::SystemTime::now());
    let start = now.max(done_ts + 1);
    rbac.state()
        .into_iter()
        .enumerate()
        .map(|(i, op)| rbac_input(op, start + i as u64))
        .collect()
}

#[cfg(test)]
mod tests;
