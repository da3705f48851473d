//! Several `milvus-cdc serve` instances on one etcd prefix (`state.etcd`): a cluster.
//!
//! * Every instance holds one etcd lease (`cluster.ttl_secs`), renewed every third of it, and
//!   registers `P/cluster/instances/{id}` under it.
//! * A task is run by the instance that holds `P/cluster/owners/{task_id}` (created under its
//!   lease, only if absent: a campaign per task). Every commit of the task's checkpoints is
//!   fenced on that key's create revision ([`cdc_state::Fence`]), so an instance that lost the
//!   key (lease expired, network cut) cannot commit any more, even before it notices.
//! * Each tick every instance re-reads the task documents (so any instance answers `get` and
//!   `list` for every task), gives up tasks it lost, stops tasks paused or deleted through
//!   another instance (writes act through etcd: the document is the request), and takes
//!   unowned running tasks up to its fair share (running tasks / live instances, rounded up);
//!   an instance above its share hands one task back per tick (final checkpoint, then the key
//!   is deleted), so tasks spread when instances join.
//! * When an instance dies its lease expires after `ttl_secs`, its keys vanish, and the others
//!   take its tasks at their next tick, resuming from the last committed checkpoint.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cdc_state::{EtcdStore, Fence};
use etcd_client::{Client, Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::envelope::ApiError;
use crate::manager::TaskManager;
use crate::task::{TaskDoc, TaskState};

/// This instance's membership of the cluster.
pub struct Cluster {
    store: Arc<EtcdStore>,
    client: Client,
    /// Instance id.
    pub id: String,
    url: String,
    ttl: i64,
    inner: Mutex<Inner>,
    stop: CancellationToken,
}

#[derive(Default)]
struct Inner {
    lease: Option<i64>,
    renewed: Option<Instant>,
    /// Owned tasks and the create revision of their ownership key.
    owned: HashMap<String, i64>,
}

fn etcd_err(what: &str, e: etcd_client::Error) -> ApiError {
    ApiError::internal(format!("cluster: {what}: {e}"))
}

impl Cluster {
    /// Membership for this instance (the lease is taken by the first tick of [`Cluster::run`]).
    pub fn new(store: Arc<EtcdStore>, id: String, url: String, ttl_secs: u64) -> Arc<Self> {
        Arc::new(Self {
            client: store.client(),
            store,
            id,
            url,
            ttl: ttl_secs as i64,
            inner: Mutex::new(Inner::default()),
            stop: CancellationToken::new(),
        })
    }

    fn owners_prefix(&self) -> String {
        format!("{}/cluster/owners/", self.store.prefix())
    }
    fn owner_key(&self, task: &str) -> String {
        format!("{}{task}", self.owners_prefix())
    }
    fn instances_prefix(&self) -> String {
        format!("{}/cluster/instances/", self.store.prefix())
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True when this instance holds the task's ownership key (as far as it knows).
    pub fn owns(&self, task: &str) -> bool {
        self.inner().owned.contains_key(task)
    }

    /// Forget a task locally after it was lost. Its fence stays (until this instance takes
    /// the task again): a commit still under way, such as the final checkpoint of the pipeline
    /// being stopped, is refused instead of overwriting the new owner's checkpoint.
    pub fn forget(&self, task: &str) {
        self.inner().owned.remove(task);
    }

    /// Take the task's ownership key (no-op when already ours).
    ///
    /// # Errors
    /// Another instance owns the task, this instance has no lease (cut from etcd), or etcd
    /// fails.
    pub async fn acquire(&self, task: &str) -> Result<(), ApiError> {
        if self.owns(task) {
            return Ok(());
        }
        let lease = self.inner().lease.ok_or_else(|| {
            ApiError::internal("cluster: this instance has no etcd lease (etcd unreachable?)")
        })?;
        let key = self.owner_key(task);
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.clone(),
                self.id.clone(),
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else([TxnOp::get(key.clone(), None)]);
        let resp = self
            .client
            .clone()
            .txn(txn)
            .await
            .map_err(|e| etcd_err("take a task", e))?;
        let rev = if resp.succeeded() {
            resp.header().map(|h| h.revision()).unwrap_or_default()
        } else {
            let held = match resp.op_responses().into_iter().next() {
                Some(etcd_client::TxnOpResponse::Get(g)) => g.kvs().first().map(|kv| {
                    (
                        String::from_utf8_lossy(kv.value()).into_owned(),
                        kv.lease(),
                        kv.create_revision(),
                    )
                }),
                _ => None,
            };
            match held {
                // our own key, under our live lease: this instance owns the task already
                // (it had forgotten it); take it back with that key's revision
                Some((_, l, rev)) if l == lease => {
                    info!(message = "The task's ownership key is already this instance's; \
                                     taking it back.", task_id = %task);
                    rev
                }
                other => {
                    let holder = other.map(|(h, _, _)| h).unwrap_or_default();
                    return Err(ApiError::bad_request(format!(
                        "task {task} is run by cluster instance {holder:?}; send the request \
                         there or pause it first"
                    )));
                }
            }
        };
        self.store.set_fence(
            task,
            Some(Fence {
                key: key.into_bytes(),
                create_revision: rev,
                holder: self.id.clone(),
            }),
        );
        self.inner().owned.insert(task.to_string(), rev);
        crate::metrics::cluster_takeover();
        info!(message = "Took ownership of the task.", task_id = %task, instance = %self.id);
        Ok(())
    }

    /// Delete the task's ownership key if it is still ours, and forget it.
    pub async fn release(&self, task: &str) {
        let rev = self.inner().owned.remove(task);
        if let Some(rev) = rev {
            // ours until the key is deleted; a lost task keeps its (refusing) fence
            self.store.set_fence(task, None);
            let key = self.owner_key(task);
            let txn = Txn::new()
                .when([Compare::create_revision(key.clone(), CompareOp::Equal, rev)])
                .and_then([TxnOp::delete(key, None)]);
            if let Err(e) = self.client.clone().txn(txn).await {
                warn!(message = "Cannot release a task's ownership key; it expires with the lease.",
                      task_id = %task, error = %e);
            }
        }
    }

    /// Every key under `prefix`: (the key after the prefix, value, create revision).
    async fn scan(
        &self,
        prefix: &str,
        what: &str,
    ) -> Result<Vec<(String, Vec<u8>, i64)>, ApiError> {
        let resp = self
            .client
            .clone()
            .get(prefix, Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| etcd_err(what, e))?;
        Ok(resp
            .kvs()
            .iter()
            .map(|kv| {
                let k = String::from_utf8_lossy(kv.key());
                (
                    k[prefix.len()..].to_string(),
                    kv.value().to_vec(),
                    kv.create_revision(),
                )
            })
            .collect())
    }

    /// Owner of every owned task: task id → (instance id, create revision).
    async fn owners(&self) -> Result<HashMap<String, (String, i64)>, ApiError> {
        let kvs = self.scan(&self.owners_prefix(), "read the owners").await?;
        Ok(kvs
            .into_iter()
            .map(|(task, v, rev)| (task, (String::from_utf8_lossy(&v).into_owned(), rev)))
            .collect())
    }

    /// Live instances: id → registration.
    async fn instances(&self) -> Result<BTreeMap<String, Value>, ApiError> {
        let kvs = self
            .scan(&self.instances_prefix(), "read the instances")
            .await?;
        Ok(kvs
            .into_iter()
            .map(|(id, v, _)| (id, serde_json::from_slice(&v).unwrap_or(Value::Null)))
            .collect())
    }

    /// Grant a lease and register this instance under it.
    async fn join(&self) -> Result<i64, ApiError> {
        let mut c = self.client.clone();
        let lease = c
            .lease_grant(self.ttl, None)
            .await
            .map_err(|e| etcd_err("grant a lease", e))?
            .id();
        let me = json!({ "url": self.url, "ttl_secs": self.ttl,
                         "started_ms": cdc_engine::metrics::now_ms() });
        c.put(
            format!("{}{}", self.instances_prefix(), self.id),
            me.to_string(),
            Some(PutOptions::new().with_lease(lease)),
        )
        .await
        .map_err(|e| etcd_err("register the instance", e))?;
        let mut i = self.inner();
        i.lease = Some(lease);
        i.renewed = Some(Instant::now());
        info!(message = "Joined the cluster.", instance = %self.id, lease, ttl_secs = self.ttl);
        Ok(lease)
    }

    /// Renew the lease once. `Ok(false)` when etcd says it expired.
    async fn renew(&self, lease: i64) -> Result<bool, ApiError> {
        let (mut keeper, mut stream) = self
            .client
            .clone()
            .lease_keep_alive(lease)
            .await
            .map_err(|e| etcd_err("renew the lease", e))?;
        keeper
            .keep_alive()
            .await
            .map_err(|e| etcd_err("renew the lease", e))?;
        let resp = stream
            .message()
            .await
            .map_err(|e| etcd_err("renew the lease", e))?;
        Ok(resp.is_some_and(|r| r.ttl() > 0))
    }

    /// The cluster loop: renew, reconcile, until [`Cluster::shutdown`].
    pub async fn run(self: Arc<Self>, mgr: Arc<TaskManager>) {
        let tick = Duration::from_millis((self.ttl as u64 * 1000 / 3).clamp(300, 1000));
        loop {
            let lease = self.inner().lease;
            match lease {
                None => {
                    if let Err(e) = self.join().await {
                        warn!(message = "Cannot join the cluster; retrying.", error = %e.message);
                    }
                }
                Some(l) => {
                    let renewed = tokio::time::timeout(tick * 2, self.renew(l)).await;
                    match renewed {
                        Ok(Ok(true)) => self.inner().renewed = Some(Instant::now()),
                        Ok(Ok(false)) => {
                            warn!(message = "The cluster lease expired; giving up every task.",
                                  instance = %self.id);
                            self.lose_all(&mgr).await;
                        }
                        Ok(Err(e)) => warn!(message = "Lease renewal failed.", error = %e.message),
                        Err(_) => warn!(message = "Lease renewal timed out."),
                    }
                    let stale = self
                        .inner()
                        .renewed
                        .is_none_or(|t| t.elapsed() >= Duration::from_secs(self.ttl as u64));
                    if stale && self.inner().lease.is_some() {
                        warn!(message = "No lease renewal for a whole TTL (cut from etcd?); \
                                         giving up every task.", instance = %self.id);
                        self.lose_all(&mgr).await;
                    }
                }
            }
            if self.inner().lease.is_some() {
                if let Err(e) = self.reconcile(&mgr).await {
                    warn!(message = "Cluster reconcile failed; retrying.", error = %e.message);
                }
            }
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(tick) => {}
            }
        }
    }

    async fn lose_all(&self, mgr: &Arc<TaskManager>) {
        let owned: Vec<String> = {
            let mut i = self.inner();
            i.lease = None;
            i.renewed = None;
            i.owned.keys().cloned().collect()
        };
        for task in owned {
            self.forget(&task);
            mgr.abandon(&task).await;
        }
    }

    async fn reconcile(&self, mgr: &Arc<TaskManager>) -> Result<(), ApiError> {
        let store = self.store.clone();
        let docs = tokio::task::spawn_blocking(move || cdc_state::StateStore::list_tasks(&*store))
            .await
            .map_err(|e| ApiError::internal(format!("state store task failed: {e}")))??;
        let docs: HashMap<String, TaskDoc> = docs
            .into_iter()
            .filter_map(|(id, b)| serde_json::from_slice(&b).ok().map(|d| (id, d)))
            .collect();
        // what this instance owned before the owners are read: a task taken while they are
        // read (a create) is not in the scan and must not count as lost
        let owned: Vec<(String, i64)> = self.inner().owned.clone().into_iter().collect();
        let owners = self.owners().await?;
        let instances = self.instances().await?;
        // tasks lost (their key expired or changed hands)
        for (task, rev) in &owned {
            let still = self.inner().owned.get(task) == Some(rev);
            if still && owners.get(task) != Some(&(self.id.clone(), *rev)) {
                warn!(message = "Lost the ownership of a task; stopping it here.", task_id = %task);
                self.forget(task);
                mgr.abandon(task).await;
            }
        }
        // documents changed through other instances
        for removed in mgr.sync_docs(&docs) {
            if self.owns(&removed) {
                mgr.stop_deleted(&removed).await;
                self.release(&removed).await;
            }
        }
        for (task, doc) in &docs {
            if self.owns(task) && doc.state == TaskState::Paused {
                mgr.stop_paused(task).await;
                self.release(task).await;
            }
        }
        // take unowned running tasks up to the fair share; hand back one above it
        let running: Vec<&String> = docs
            .iter()
            .filter(|(_, d)| d.state == TaskState::Running)
            .map(|(id, _)| id)
            .collect();
        let live = instances.len().max(1);
        let fair = running.len().div_ceil(live);
        let mut mine = self.inner().owned.len();
        for task in running.iter().filter(|t| !owners.contains_key(**t)) {
            if mine >= fair {
                break;
            }
            match mgr.take_over(task).await {
                Ok(true) => mine += 1,
                Ok(false) => {}
                Err(e) => warn!(message = "Could not take a task over.", task_id = %task,
                                error = %e.message),
            }
        }
        let mut counts: HashMap<&str, usize> = instances.keys().map(|k| (k.as_str(), 0)).collect();
        for (o, _) in owners.values() {
            if let Some(n) = counts.get_mut(o.as_str()) {
                *n += 1;
            }
        }
        let someone_below = counts.iter().any(|(i, n)| *i != self.id && *n < fair);
        if mine > fair && someone_below {
            let first = self.inner().owned.keys().next().cloned();
            if let Some(task) = first {
                info!(message = "Handing a task back to spread the load.", task_id = %task,
                      owned = mine, fair_share = fair);
                mgr.stop_paused(&task).await;
                self.release(&task).await;
            }
        }
        crate::metrics::cluster_owned(self.inner().owned.len());
        crate::metrics::cluster_fenced(self.store.fenced_commits());
        Ok(())
    }

    /// Stop the loop and revoke the lease (others take the tasks over at once). Call after
    /// the pipelines stopped with their final checkpoints.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        let lease = self.inner().lease.take();
        if let Some(l) = lease {
            match self.client.clone().lease_revoke(l).await {
                Ok(_) => info!(message = "Left the cluster (lease revoked).", instance = %self.id),
                Err(e) => warn!(message = "Cannot revoke the lease; it expires by itself.",
                                error = %e),
            }
        }
    }

    /// Stop the loop only (tests simulating a crash keep the lease to expire by itself).
    pub fn stop_loop(&self) {
        self.stop.cancel();
    }
}

mod view;

#[cfg(test)]
mod tests;
