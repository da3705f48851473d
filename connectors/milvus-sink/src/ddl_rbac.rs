//! Access control on the target (roles, grants, users, user-to-role bindings), "check then
//! act" like [`crate::ddl`]: the target's state is read first (SelectRole, SelectGrant,
//! ListCredUsers, SelectUser), so a replay, or the whole state the source sends again on
//! every start, changes nothing.
//!
//! Users: the source keeps only a password hash, which no Milvus API takes. A user is created
//! only when `rbac.passwords_file` gives its password; every other one is reported (warn log,
//! `milvus_cdc_not_replicated{kind="create_user"}` and the task's `not_replicated` list), and
//! so is a binding of a user the target does not have. Nothing is invented.
//!
//! Grants: Milvus 2.3 records the calling user as the grantor and refuses OperatePrivilege
//! from a call without credentials ("fail to get authorization from the md"), even when the
//! target runs with `authorizationEnabled: false`. So grants need the sink's `token` (or
//! `username`/`password`); without them the sink stops with an error that says so.

use std::collections::BTreeMap;

use cdc_engine::metrics::ComponentMetrics;
use cdc_engine::rbac::{Grant, RbacOp};
use cdc_engine::EngineError;
use cdc_protocol::milvus::*;
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use crate::client::DdlCall;
use crate::ddl::{Base, Shared};

/// The sink's `rbac` settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RbacConfig {
    /// A JSON file `{"user": "password", ...}` with the passwords of the users to create on
    /// the target (read when a user is to be created, so it can be completed while running).
    /// Users not in it are not created, and reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passwords_file: Option<String>,
}

impl RbacConfig {
    pub(crate) fn is_default(&self) -> bool {
        self == &Self::default()
    }
}

/// The password of `user` from the passwords file: `Err(reason)` when there is none.
fn password(cfg: &RbacConfig, user: &str) -> Result<String, String> {
    let Some(path) = &cfg.passwords_file else {
        return Err(
            "the source keeps only a password hash and the sink has no rbac.passwords_file; \
             add the user's password there (or create the user on the target by hand)"
                .into(),
        );
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("rbac.passwords_file {path:?} cannot be read: {e}"))?;
    let map: BTreeMap<String, String> = serde_json::from_str(&text).map_err(|e| {
        format!("rbac.passwords_file {path:?} is not a JSON object of user to password: {e}")
    })?;
    map.get(user).cloned().ok_or_else(|| {
        format!(
            "the source keeps only a password hash and rbac.passwords_file {path:?} has no \
             password for this user"
        )
    })
}

fn grant_entity(g: &Grant, grantor: &str) -> GrantEntity {
    GrantEntity {
        role: Some(RoleEntity {
            name: g.role.clone(),
        }),
        object: Some(ObjectEntity {
            name: g.object_type.clone(),
        }),
        object_name: g.object_name.clone(),
        grantor: Some(GrantorEntity {
            user: Some(UserEntity {
                name: grantor.into(),
            }),
            privilege: Some(PrivilegeEntity {
                name: g.privilege.clone(),
            }),
        }),
        db_name: g.db.clone(),
    }
}

/// Applies one access-control change to the target.
pub(crate) async fn apply(
    sh: &Shared,
    metrics: &ComponentMetrics,
    op: &RbacOp,
    base: Base,
) -> Result<(), EngineError> {
    let c = &sh.client;
    let kind = op.kind();
    let roles = || sh.retry("", "", "select_role", || c.list_roles());
    let users = || sh.retry("", "", "list_users", || c.list_users());
    let call = match op {
        RbacOp::CreateRole { role } | RbacOp::DropRole { role } => {
            let create = matches!(op, RbacOp::CreateRole { .. });
            if roles().await?.contains(role) == create {
                debug!(message = "Role already as on the source.", role, op = kind);
                return Ok(());
            }
            if create {
                DdlCall::CreateRole(CreateRoleRequest {
                    base,
                    entity: Some(RoleEntity { name: role.clone() }),
                })
            } else {
                DdlCall::DropRole(DropRoleRequest {
                    base,
                    role_name: role.clone(),
                })
            }
        }
        RbacOp::Grant(g) | RbacOp::Revoke(g) => {
            let grant = matches!(op, RbacOp::Grant(_));
            if sh.cfg.effective_token().is_none() {
                return Err(EngineError::config(
                    &sh.component,
                    format!(
                        "cannot {kind} {}: the target records the calling user as the grantor \
                         and refuses grants from a call without credentials, even with \
                         authorization disabled; give the sink a token (user:password) or \
                         username/password",
                        op.subject()
                    ),
                ));
            }
            if grant && !roles().await?.contains(&g.role) {
                // The role comes first in every stream; missing here means it was dropped on
                // the target, where the grant cannot go.
                return Err(EngineError::internal(
                    &sh.component,
                    format!(
                        "cannot grant {}: the target has no role {}",
                        op.subject(),
                        g.role
                    ),
                ));
            }
            let held = sh
                .retry(&g.db, &g.object_name, "select_grant", || {
                    c.privileges_of(&g.role, &g.object_type, &g.object_name, &g.db)
                })
                .await?;
            if held.contains(&g.privilege) == grant {
                debug!(message = "Grant already as on the source.", grant = %op.subject());
                return Ok(());
            }
            let user = sh
                .cfg
                .effective_token()
                .and_then(|t| t.split_once(':').map(|(u, _)| u.to_string()))
                .unwrap_or_default();
            DdlCall::OperatePrivilege(OperatePrivilegeRequest {
                base,
                entity: Some(grant_entity(g, &user)),
                r#type: if grant {
                    OperatePrivilegeType::Grant
                } else {
                    OperatePrivilegeType::Revoke
                } as i32,
            })
        }
        RbacOp::CreateUser { user } => {
            let subject = op.subject();
            if users().await?.contains(user) {
                metrics.replicated(kind, &subject);
                return Ok(());
            }
            match password(&sh.cfg.rbac, user) {
                Ok(pw) => {
                    use base64::Engine as _;
                    let now = cdc_engine::metrics::now_ms();
                    let call = DdlCall::CreateCredential(CreateCredentialRequest {
                        base,
                        username: user.clone(),
                        password: base64::engine::general_purpose::STANDARD.encode(pw),
                        created_utc_timestamps: now,
                        modified_utc_timestamps: now,
                    });
                    sh.ddl("", "", kind, call).await?;
                    metrics.replicated(kind, &subject);
                    return Ok(());
                }
                Err(reason) => {
                    warn!(message = "User not created on the target.", user, reason);
                    metrics.not_replicated(kind, &subject, &reason);
                    return Ok(());
                }
            }
        }
        RbacOp::DropUser { user } => {
            metrics.replicated("create_user", &op.subject());
            if !users().await?.contains(user) {
                return Ok(());
            }
            DdlCall::DeleteCredential(DeleteCredentialRequest {
                base,
                username: user.clone(),
            })
        }
        RbacOp::AddUserToRole { user, role } | RbacOp::RemoveUserFromRole { user, role } => {
            let add = matches!(op, RbacOp::AddUserToRole { .. });
            let subject = op.subject();
            let has = sh
                .retry("", user, "select_user", || c.roles_of(user))
                .await?;
            let Some(has) = has else {
                if add {
                    let reason = format!("the target has no user {user} (see create_user)");
                    warn!(
                        message = "User-role binding not applied.",
                        user, role, reason
                    );
                    metrics.not_replicated(kind, &subject, &reason);
                }
                return Ok(());
            };
            metrics.replicated("add_user_to_role", &subject);
            if has.contains(role) == add {
                return Ok(());
            }
            DdlCall::OperateUserRole(OperateUserRoleRequest {
                base,
                username: user.clone(),
                role_name: role.clone(),
                r#type: if add {
                    OperateUserRoleType::AddUserToRole
                } else {
                    OperateUserRoleType::RemoveUserFromRole
                } as i32,
            })
        }
    };
    sh.ddl("", "", kind, call).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_come_only_from_the_file() {
        let none = RbacConfig::default();
        assert!(password(&none, "alice")
            .unwrap_err()
            .contains("passwords_file"));
        let dir = std::env::temp_dir().join(format!("mcdc-rbac-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("pw.json");
        std::fs::write(&f, r#"{"alice": "s3cret"}"#).unwrap();
        let cfg = RbacConfig {
            passwords_file: Some(f.display().to_string()),
        };
        assert_eq!(password(&cfg, "alice").unwrap(), "s3cret");
        assert!(password(&cfg, "bob").unwrap_err().contains("no password"));
        std::fs::write(&f, "alice: x").unwrap();
        assert!(password(&cfg, "alice").unwrap_err().contains("JSON object"));
        let missing = RbacConfig {
            passwords_file: Some(dir.join("nope.json").display().to_string()),
        };
        assert!(password(&missing, "alice")
            .unwrap_err()
            .contains("cannot be read"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn grants_name_the_grantor_and_the_privilege() {
        let g = Grant {
            role: "reader".into(),
            object_type: "Collection".into(),
            object_name: "orders".into(),
            db: "sales".into(),
            privilege: "Search".into(),
        };
        let e = grant_entity(&g, "root");
        assert_eq!(e.db_name, "sales");
        assert_eq!(e.object.unwrap().name, "Collection");
        let gr = e.grantor.unwrap();
        assert_eq!(gr.user.unwrap().name, "root");
        assert_eq!(gr.privilege.unwrap().name, "Search");
    }
}
