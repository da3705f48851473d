//! Access-control operations (RBAC): roles, grants of privileges on objects, users and the
//! user-to-role bindings, as [`crate::Ddl::Rbac`] carries them. They are cluster-wide: the
//! event has no collection (and no database; a grant names its own), every filter passes them
//! and the rename transform leaves them as they are.
//!
//! Users carry no password: a source keeps only a hash, and a sink that creates users takes
//! the password from its operator (see the Milvus sink's `rbac.passwords_file`).

/// A grant: `privilege` on `object_type`/`object_name` in `db` for `role` (Milvus
/// `milvus.proto.milvus.GrantEntity`, privilege names without the `Privilege` prefix of the
/// source's etcd keys, e.g. `Search`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Grant {
    /// The role granted to.
    pub role: String,
    /// `Global`, `Collection` or `User`.
    pub object_type: String,
    /// The object's name (`*`: every object of the type).
    pub object_name: String,
    /// The database (`*`: every database).
    pub db: String,
    /// The privilege (`Search`, `Insert`, `*` ...).
    pub privilege: String,
}

/// One access-control change.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RbacOp {
    /// A role was created.
    CreateRole {
        /// The role.
        role: String,
    },
    /// A role was dropped.
    DropRole {
        /// The role.
        role: String,
    },
    /// A privilege was granted.
    Grant(Grant),
    /// A privilege was revoked.
    Revoke(Grant),
    /// A user was created (the password is not part of the change).
    CreateUser {
        /// The user name.
        user: String,
    },
    /// A user was deleted.
    DropUser {
        /// The user name.
        user: String,
    },
    /// A user was bound to a role.
    AddUserToRole {
        /// The user name.
        user: String,
        /// The role.
        role: String,
    },
    /// A user was unbound from a role.
    RemoveUserFromRole {
        /// The user name.
        user: String,
        /// The role.
        role: String,
    },
}

impl RbacOp {
    /// Short snake-case name of the operation.
    pub fn kind(&self) -> &'static str {
        match self {
            RbacOp::CreateRole { .. } => "create_role",
            RbacOp::DropRole { .. } => "drop_role",
            RbacOp::Grant(_) => "grant_privilege",
            RbacOp::Revoke(_) => "revoke_privilege",
            RbacOp::CreateUser { .. } => "create_user",
            RbacOp::DropUser { .. } => "drop_user",
            RbacOp::AddUserToRole { .. } => "add_user_to_role",
            RbacOp::RemoveUserFromRole { .. } => "remove_user_from_role",
        }
    }

    /// A short human description, for logs and reports (`role r`, `user u`, ...).
    pub fn subject(&self) -> String {
        match self {
            RbacOp::CreateRole { role } | RbacOp::DropRole { role } => format!("role {role}"),
            RbacOp::Grant(g) | RbacOp::Revoke(g) => format!(
                "{} on {} {}.{} for role {}",
                g.privilege, g.object_type, g.db, g.object_name, g.role
            ),
            RbacOp::CreateUser { user } | RbacOp::DropUser { user } => format!("user {user}"),
            RbacOp::AddUserToRole { user, role } | RbacOp::RemoveUserFromRole { user, role } => {
                format!("user {user} in role {role}")
            }
        }
    }
}
