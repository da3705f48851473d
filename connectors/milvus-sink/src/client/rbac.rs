//! The access-control reads of the target (roles, users, grants), for the check-then-act of
//! [`crate::ddl_rbac`]. The writes are [`super::DdlCall`]s.

use cdc_protocol::milvus::*;

use super::TargetClient;
use crate::retry::{check_status, Failure};

impl TargetClient {
    /// Every role of the target.
    pub(crate) async fn list_roles(&self) -> Result<Vec<String>, Failure> {
        let r = self
            .svc()
            .select_role(self.req("", SelectRoleRequest::default()))
            .await
            .map_err(|e| Failure::grpc(&e))?
            .into_inner();
        check_status(r.status.as_ref())?;
        Ok(r.results
            .into_iter()
            .filter_map(|x| x.role.map(|r| r.name))
            .collect())
    }

    /// Every user of the target.
    pub(crate) async fn list_users(&self) -> Result<Vec<String>, Failure> {
        let r = self
            .svc()
            .list_cred_users(self.req("", ListCredUsersRequest::default()))
            .await
            .map_err(|e| Failure::grpc(&e))?
            .into_inner();
        check_status(r.status.as_ref())?;
        Ok(r.usernames)
    }

    /// The roles of `user` (`Ok(None)`: no such user).
    pub(crate) async fn roles_of(&self, user: &str) -> Result<Option<Vec<String>>, Failure> {
        let req = SelectUserRequest {
            base: None,
            user: Some(UserEntity { name: user.into() }),
            include_role_info: true,
        };
        let r = self
            .svc()
            .select_user(self.req("", req))
            .await
            .map_err(|e| Failure::grpc(&e))?
            .into_inner();
        match check_status(r.status.as_ref()) {
            Ok(()) => {}
            Err(f) if f.reason_contains("not found") || f.reason_contains("not exist") => {
                return Ok(None)
            }
            Err(f) => return Err(f),
        }
        let found = r
            .results
            .into_iter()
            .find(|u| u.user.as_ref().is_some_and(|e| e.name == user));
        Ok(found.map(|u| u.roles.into_iter().map(|r| r.name).collect()))
    }

    /// The privileges `role` holds on `object_type` `object_name` in `db`.
    pub(crate) async fn privileges_of(
        &self,
        role: &str,
        object_type: &str,
        object_name: &str,
        db: &str,
    ) -> Result<Vec<String>, Failure> {
        let req = SelectGrantRequest {
            base: None,
            entity: Some(GrantEntity {
                role: Some(RoleEntity { name: role.into() }),
                object: Some(ObjectEntity {
                    name: object_type.into(),
                }),
                object_name: object_name.into(),
                grantor: None,
                db_name: db.into(),
            }),
        };
        let r = self
            .svc()
            .select_grant(self.req(db, req))
            .await
            .map_err(|e| Failure::grpc(&e))?
            .into_inner();
        check_status(r.status.as_ref())?;
        Ok(r.entities
            .into_iter()
            .filter(|e| e.object_name == object_name)
            .filter_map(|e| e.grantor.and_then(|g| g.privilege).map(|p| p.name))
            .collect())
    }
}
