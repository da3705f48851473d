//! The etcd backend: checkpoints and task documents in an etcd cluster (usually the one the
//! source Milvus already runs), so several `milvus-cdc serve` instances share them and a task
//! survives the loss of any one machine.
//!
//! Layout under the configured prefix `P` (path components percent-encode `/` and `%`):
//! `P/tasks/{task_id}` → document; `P/checkpoints/{pipeline}/{sink}/epoch` → epoch (u64
//! big-endian); `P/checkpoints/{pipeline}/{sink}/offsets/{channel}` → offset bytes. A commit is
//! one etcd transaction (epoch and every channel, or nothing), acknowledged by etcd only once a
//! quorum has it on disk.
//!
//! Fencing: [`EtcdStore::set_fence`] makes every commit of a pipeline conditional on a key
//! still having the create revision its owner got when it took the key (the per-task
//! ownership key of [`cdc-server`'s cluster]); once that key expired or changed hands the
//! transaction fails with [`StateError::Fenced`] and writes nothing. A fenced commit also
//! writes `P/checkpoints/{pipeline}/{sink}/committed_by` (the fence's holder) in the same
//! transaction, so etcd's history shows which instance wrote every checkpoint; refusals are
//! counted ([`EtcdStore::fenced_commits`]).
//!
//! The [`StateStore`] trait is synchronous; the store runs its own small tokio runtime and
//! waits for each request, like the sled backend waits for its fsync.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, Txn, TxnOp,
};
use serde::{Deserialize, Serialize};

use crate::{Offsets, SinkCheckpoint, StateError, StateStore};

/// `state: { etcd: { ... } }` (server.yaml) and `--state-etcd` (run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdStateConfig {
    /// `host:port` (or URL) of each etcd member.
    pub endpoints: Vec<String>,
    /// Key prefix of everything this store writes (one prefix per milvus-cdc cluster).
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// etcd user (with `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Password of `user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// TLS to etcd (PEM files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::TlsConfig>,
    /// Timeout of connecting and of each request, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_prefix() -> String {
    "milvus-cdc".into()
}
fn default_timeout_ms() -> u64 {
    5000
}

impl EtcdStateConfig {
    /// A configuration with defaults for `endpoints`.
    pub fn new(endpoints: Vec<String>) -> Self {
        Self {
            endpoints,
            prefix: default_prefix(),
            user: None,
            password: None,
            tls: None,
            timeout_ms: default_timeout_ms(),
        }
    }

    /// Check values without I/O; the error is `(field, message)` relative to `etcd.`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |f: &str, m: &str| Err((f.to_string(), m.to_string()));
        if self.endpoints.is_empty() || self.endpoints.iter().any(|e| e.trim().is_empty()) {
            return err("endpoints", "needs at least one non-empty host:port");
        }
        let p = self.prefix.trim_matches('/');
        if p.is_empty() {
            return err("prefix", "must not be empty (e.g. milvus-cdc)");
        }
        if self.password.is_some() && self.user.is_none() {
            return err("password", "is set but `user` is not");
        }
        if self.timeout_ms < 100 {
            return err("timeout_ms", "must be at least 100");
        }
        if let Some((f, m)) = self.tls.iter().flat_map(|t| t.problems()).next() {
            return Err((format!("tls.{f}"), m));
        }
        Ok(())
    }
}

/// A condition for a pipeline's commits: `key` must still exist with this create revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The ownership key (full etcd key).
    pub key: Vec<u8>,
    /// Its create revision when the owner took it.
    pub create_revision: i64,
    /// Who holds it (an instance id), written as `committed_by` with every commit.
    pub holder: String,
}

/// [`StateStore`] on etcd.
pub struct EtcdStore {
    client: Client,
    rt: Option<tokio::runtime::Runtime>,
    prefix: String,
    endpoints: String,
    timeout: Duration,
    fences: Mutex<HashMap<String, Fence>>,
    fenced: AtomicU64,
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        // may be dropped inside another runtime, where a blocking shutdown would panic
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Percent-encode `/` and `%` so a name is one key path component.
fn enc(s: &str) -> String {
    s.replace('%', "%25").replace('/', "%2F")
}

fn dec(s: &str) -> String {
    s.replace("%2F", "/").replace("%25", "%")
}

impl EtcdStore {
    /// Connect to etcd and check it answers.
    ///
    /// # Errors
    /// Unreadable TLS files, or etcd not reachable within `timeout_ms`.
    pub fn connect(cfg: &EtcdStateConfig) -> Result<Self, StateError> {
        let endpoints_text = cfg.endpoints.join(",");
        let be = |m: String| StateError::Backend {
            path: format!("etcd {endpoints_text}"),
            message: m,
        };
        cfg.validate()
            .map_err(|(f, m)| be(format!("state.etcd.{f}: {m}")))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("cdc-state-etcd")
            .enable_all()
            .build()
            .map_err(|e| be(format!("cannot start the etcd client runtime: {e}")))?;
        let timeout = Duration::from_millis(cfg.timeout_ms);
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_timeout(timeout)
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3));
        if let Some(user) = &cfg.user {
            opts = opts.with_user(user.clone(), cfg.password.clone().unwrap_or_default());
        }
        let mut endpoints = cfg.endpoints.clone();
        if let Some(tls) = &cfg.tls {
            let t = tls.client_config("state.etcd.tls").map_err(be)?;
            opts = opts.with_tls(t);
            for e in &mut endpoints {
                if !e.contains("://") {
                    *e = format!("https://{e}");
                }
            }
        }
        let eps = endpoints.clone();
        let connect = async move {
            let mut c = Client::connect(&eps, Some(opts)).await?;
            c.status().await?;
            Ok::<_, etcd_client::Error>(c)
        };
        // block_on would panic on a thread that already runs a runtime: wait on another one
        let client = std::thread::scope(|s| {
            s.spawn(|| rt.block_on(connect))
                .join()
                .unwrap_or_else(|_| Err(etcd_client::Error::InvalidArgs("connect panicked".into())))
        })
        .map_err(|e| {
            be(format!(
                "cannot reach etcd: {e}; check state.etcd.endpoints and that etcd runs"
            ))
        })?;
        Ok(Self {
            client,
            rt: Some(rt),
            prefix: cfg.prefix.trim_matches('/').to_string(),
            endpoints: endpoints_text,
            timeout,
            fences: Mutex::new(HashMap::new()),
            fenced: AtomicU64::new(0),
        })
    }

    /// The etcd client (shares the connection; for leases and ownership keys).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The normalised key prefix (no trailing `/`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Make every later commit of `pipeline` conditional on `fence` (or lift it with `None`).
    pub fn set_fence(&self, pipeline: &str, fence: Option<Fence>) {
        if let Ok(mut m) = self.fences.lock() {
            match fence {
                Some(f) => m.insert(pipeline.to_string(), f),
                None => m.remove(pipeline),
            };
        }
    }

    /// Commits refused by a fence since the store was opened.
    pub fn fenced_commits(&self) -> u64 {
        self.fenced.load(Ordering::Relaxed)
    }

    fn backend(&self, what: &str, e: impl std::fmt::Display) -> StateError {
        StateError::Backend {
            path: format!("etcd {} (prefix {})", self.endpoints, self.prefix),
            message: format!("{what}: {e}"),
        }
    }

    /// Run one request on the store's runtime and wait for it (callable from any thread).
    fn run<T: Send + 'static>(
        &self,
        what: &str,
        fut: impl std::future::Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
    ) -> Result<T, StateError> {
        let rt = self
            .rt
            .as_ref()
            .ok_or_else(|| self.backend(what, "store closed"))?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let limit = self.timeout;
        rt.spawn(async move {
            let r = tokio::time::timeout(limit, fut).await;
            let _ = tx.send(r);
        });
        match rx.recv_timeout(limit + Duration::from_secs(1)) {
            Ok(Ok(r)) => r.map_err(|e| self.backend(what, e)),
            Ok(Err(_)) | Err(_) => {
                Err(self.backend(what, format!("no answer within {} ms", limit.as_millis())))
            }
        }
    }

    /// Store a task document only if the stored one is still `expected` (`None`: absent).
    /// `Ok(false)` when it changed meanwhile (another instance wrote it); nothing is written
    /// then.
    ///
    /// # Errors
    /// etcd fails or cannot be reached.
    pub fn put_task_if(
        &self,
        task_id: &str,
        doc: &[u8],
        expected: Option<&[u8]>,
    ) -> Result<bool, StateError> {
        let key = self.task_key(task_id);
        let cmp = match expected {
            Some(v) => Compare::value(key.clone(), CompareOp::Equal, v.to_vec()),
            None => Compare::create_revision(key.clone(), CompareOp::Equal, 0),
        };
        let txn = Txn::new()
            .when([cmp])
            .and_then([TxnOp::put(key, doc.to_vec(), None)]);
        let mut kv = self.client.kv_client();
        let resp = self.run("store a task", async move { kv.txn(txn).await })?;
        Ok(resp.succeeded())
    }

    fn task_key(&self, id: &str) -> String {
        format!("{}/tasks/{}", self.prefix, enc(id))
    }
    fn pipeline_prefix(&self, pipeline: &str) -> String {
        format!("{}/checkpoints/{}/", self.prefix, enc(pipeline))
    }
    fn sink_prefix(&self, pipeline: &str, sink: &str) -> String {
        format!("{}{}/", self.pipeline_prefix(pipeline), enc(sink))
    }

    fn get_prefix(&self, what: &str, prefix: String) -> Result<Vec<(String, Vec<u8>)>, StateError> {
        let mut kv = self.client.kv_client();
        let resp = self.run(what, async move {
            kv.get(prefix, Some(GetOptions::new().with_prefix())).await
        })?;
        Ok(resp
            .kvs()
            .iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(kv.key()).into_owned(),
                    kv.value().to_vec(),
                )
            })
            .collect())
    }
}

impl StateStore for EtcdStore {
    fn load(&self, pipeline: &str, sink: &str) -> Result<SinkCheckpoint, StateError> {
        let prefix = self.sink_prefix(pipeline, sink);
        let mut cp = SinkCheckpoint::default();
        for (k, v) in self.get_prefix("load a checkpoint", prefix.clone())? {
            let rest = &k[prefix.len()..];
            if rest == "epoch" {
                let arr: [u8; 8] = v.as_slice().try_into().map_err(|_| StateError::Corrupt {
                    key: k.clone(),
                    message: format!("epoch has {} bytes, expected 8", v.len()),
                })?;
                cp.epoch = u64::from_be_bytes(arr);
            } else if let Some(ch) = rest.strip_prefix("offsets/") {
                cp.offsets.insert(dec(ch), v);
            }
        }
        Ok(cp)
    }

    fn sinks(&self, pipeline: &str) -> Result<Vec<String>, StateError> {
        let prefix = self.pipeline_prefix(pipeline);
        let mut out = Vec::new();
        for (k, _) in self.get_prefix("list the sinks of a pipeline", prefix.clone())? {
            if let Some(sink) = k[prefix.len()..].strip_suffix("/epoch") {
                if !sink.contains('/') {
                    out.push(dec(sink));
                }
            }
        }
        Ok(out)
    }

    fn commit(
        &self,
        pipeline: &str,
        sink: &str,
        epoch: u64,
        offsets: &Offsets,
    ) -> Result<(), StateError> {
        let prefix = self.sink_prefix(pipeline, sink);
        let mut ops = vec![TxnOp::put(
            format!("{prefix}epoch"),
            epoch.to_be_bytes().to_vec(),
            None,
        )];
        for (ch, off) in offsets {
            ops.push(TxnOp::put(
                format!("{prefix}offsets/{}", enc(ch)),
                off.clone(),
                None,
            ));
        }
        let fence = self
            .fences
            .lock()
            .ok()
            .and_then(|m| m.get(pipeline).cloned());
        let mut txn = Txn::new();
        if let Some(f) = &fence {
            txn = txn.when([Compare::create_revision(
                f.key.clone(),
                CompareOp::Equal,
                f.create_revision,
            )]);
            ops.push(TxnOp::put(
                format!("{prefix}committed_by"),
                f.holder.clone(),
                None,
            ));
        }
        let txn = txn.and_then(ops);
        let mut kv = self.client.kv_client();
        let resp = self.run("commit a checkpoint", async move { kv.txn(txn).await })?;
        if !resp.succeeded() {
            self.fenced.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                message = "Checkpoint commit refused: this instance no longer owns the task.",
                pipeline,
                sink,
                epoch
            );
            return Err(StateError::Fenced {
                pipeline: pipeline.to_string(),
                message: format!(
                    "this instance no longer owns the task (its ownership key {} changed or \
                     expired); checkpoint epoch {epoch} of sink {sink} was not written",
                    fence
                        .map(|f| String::from_utf8_lossy(&f.key).into_owned())
                        .unwrap_or_default()
                ),
            });
        }
        Ok(())
    }

    fn delete_pipeline(&self, pipeline: &str) -> Result<(), StateError> {
        let prefix = self.pipeline_prefix(pipeline);
        let mut kv = self.client.kv_client();
        self.run("delete the checkpoints of a pipeline", async move {
            kv.delete(prefix, Some(DeleteOptions::new().with_prefix()))
                .await
        })
        .map(|_| ())
    }

    fn put_task(&self, task_id: &str, doc: &[u8]) -> Result<(), StateError> {
        let (key, doc) = (self.task_key(task_id), doc.to_vec());
        let mut kv = self.client.kv_client();
        self.run("store a task", async move { kv.put(key, doc, None).await })
            .map(|_| ())
    }

    fn get_task(&self, task_id: &str) -> Result<Option<Vec<u8>>, StateError> {
        let key = self.task_key(task_id);
        let mut kv = self.client.kv_client();
        let resp = self.run("read a task", async move { kv.get(key, None).await })?;
        Ok(resp.kvs().first().map(|kv| kv.value().to_vec()))
    }

    fn list_tasks(&self) -> Result<Vec<(String, Vec<u8>)>, StateError> {
        let prefix = format!("{}/tasks/", self.prefix);
        let mut out: Vec<(String, Vec<u8>)> = self
            .get_prefix("list the tasks", prefix.clone())?
            .into_iter()
            .map(|(k, v)| (dec(&k[prefix.len()..]), v))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    fn delete_task(&self, task_id: &str) -> Result<(), StateError> {
        let txn = Txn::new().and_then([
            TxnOp::delete(self.task_key(task_id), None),
            TxnOp::delete(
                self.pipeline_prefix(task_id),
                Some(DeleteOptions::new().with_prefix()),
            ),
        ]);
        let mut kv = self.client.kv_client();
        self.run("delete a task", async move { kv.txn(txn).await })
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests;
