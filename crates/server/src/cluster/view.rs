//! What the rest of the server reads and writes through the cluster: `GET /cluster`, and a
//! task document read fresh from etcd or written only if unchanged (for `pause`/`resume`).

use serde_json::{json, Value};

use super::Cluster;
use crate::envelope::ApiError;
use crate::manager::TaskManager;

impl Cluster {
    /// The stored document of a task, fresh from etcd (`None`: deleted).
    pub(crate) async fn read_doc(&self, task: &str) -> Result<Option<Vec<u8>>, ApiError> {
        let (store, id) = (self.store.clone(), task.to_string());
        tokio::task::spawn_blocking(move || cdc_state::StateStore::get_task(&*store, &id))
            .await
            .map_err(|e| ApiError::internal(format!("state store task failed: {e}")))?
            .map_err(ApiError::from)
    }

    /// Store a task document only if the stored one is still `expected`; `Ok(false)` when
    /// another instance changed it meanwhile.
    pub(crate) async fn put_doc_if(
        &self,
        task: &str,
        doc: Vec<u8>,
        expected: Option<Vec<u8>>,
    ) -> Result<bool, ApiError> {
        let (store, id) = (self.store.clone(), task.to_string());
        tokio::task::spawn_blocking(move || store.put_task_if(&id, &doc, expected.as_deref()))
            .await
            .map_err(|e| ApiError::internal(format!("state store task failed: {e}")))?
            .map_err(ApiError::from)
    }

    /// `GET /cluster`: instances, task owners, this instance's lease.
    pub async fn describe(&self, mgr: &TaskManager) -> Result<Value, ApiError> {
        let owners = self.owners().await?;
        let instances = self.instances().await?;
        let (lease, renewed) = {
            let i = self.inner();
            (i.lease, i.renewed.map(|t| t.elapsed().as_millis() as u64))
        };
        let list: Vec<Value> = instances
            .iter()
            .map(|(id, reg)| {
                let tasks: Vec<&String> = owners
                    .iter()
                    .filter(|(_, (o, _))| o == id)
                    .map(|(t, _)| t)
                    .collect();
                json!({ "instance_id": id, "url": reg.get("url"), "tasks": tasks })
            })
            .collect();
        let tasks: Vec<Value> = mgr
            .list()
            .into_iter()
            .map(|t| {
                let owner = owners.get(&t.task_id).map(|(o, _)| o.clone());
                json!({ "task_id": t.task_id, "state": t.state, "owner": owner })
            })
            .collect();
        Ok(json!({
            "mode": "etcd",
            "instance_id": self.id,
            "ttl_secs": self.ttl,
            "lease": { "id": lease, "held": lease.is_some(), "renewed_ms_ago": renewed },
            "fenced_commits": self.store.fenced_commits(),
            "instances": list,
            "tasks": tasks,
        }))
    }
}
