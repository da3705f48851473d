//! The task manager: every task of the server, its stored document and its running pipeline.
//!
//! Concurrency: each task has its own operation lock, held for a whole operation (pause waits
//! for the final checkpoint under it), so a slow task never blocks requests on other tasks;
//! reads (`get`, `list`) use a snapshot of the document and never wait. Creates are serialised
//! by one lock so the duplicate and task-count checks see every task.
//!
//! Starting, stopping and watching pipelines is in [`crate::lifecycle`].

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use cdc_state::StateStore;
use serde_json::Value;
use tracing::{info, warn};

use crate::config::ServerConfig;
use crate::envelope::ApiError;
use crate::lifecycle::RunHandle;
use crate::overlap::{self, Coverage};
use crate::positions::{self, PositionsResponse};
use crate::request::CreateRequest;
use crate::secrets::{self, Secret};
use crate::task::{self, Origin, TaskDoc, TaskState, TaskView};
use crate::translate;

/// One task: its document snapshot and its operation lock.
pub(crate) struct Slot {
    /// Task id.
    pub(crate) id: String,
    /// Latest document (what reads see).
    pub(crate) doc: RwLock<TaskDoc>,
    /// Held for the whole of an operation on this task.
    pub(crate) op: tokio::sync::Mutex<SlotOp>,
    /// Counters of the pipeline running the task here, while it runs (reads need no lock
    /// that an operation holds).
    pub(crate) live: RwLock<std::sync::Weak<cdc_engine::PipelineStatus>>,
}

/// What an operation on a task may change besides its document.
#[derive(Default)]
pub(crate) struct SlotOp {
    /// The running pipeline, if any.
    pub(crate) run: Option<RunHandle>,
    /// Credentials kept in memory only (`persist_credentials: false`).
    pub(crate) secrets: Vec<Secret>,
    /// The task was deleted while the operation waited for the lock.
    pub(crate) deleted: bool,
}

impl Slot {
    pub(crate) fn snapshot(&self) -> TaskDoc {
        self.doc
            .read()
            .map(|d| d.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// What `get`/`list` show: the document and, while it runs here, its live counters.
    fn view(&self) -> TaskView {
        let mut v = self.snapshot().view();
        let live = self.live.read().ok().and_then(|w| w.upgrade());
        v.live = live.map(|s| task::LiveView::of(&s));
        v
    }
}

/// Owns every task of the server.
pub struct TaskManager {
    pub(crate) cfg: Arc<ServerConfig>,
    pub(crate) store: Arc<dyn StateStore>,
    slots: RwLock<BTreeMap<String, Arc<Slot>>>,
    create_lock: tokio::sync::Mutex<()>,
    /// Cluster membership (`state.etcd`), set once by [`crate::serve`].
    pub(crate) cluster: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
}

/// Result of a create: the task id and warnings for the response `message`.
#[derive(Debug, Clone)]
pub struct Created {
    /// The task id (existing one for an idempotent re-create).
    pub task_id: String,
    /// Things the caller should know.
    pub warnings: Vec<String>,
}

impl TaskManager {
    /// A manager over `store` (tasks are loaded by [`TaskManager::load`]).
    pub fn new(cfg: ServerConfig, store: Arc<dyn StateStore>) -> Arc<Self> {
        Arc::new(Self {
            cfg: Arc::new(cfg),
            store,
            slots: RwLock::new(BTreeMap::new()),
            create_lock: tokio::sync::Mutex::new(()),
            cluster: std::sync::OnceLock::new(),
        })
    }

    /// The server configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.cfg
    }

    pub(crate) fn slot(&self, id: &str) -> Option<Arc<Slot>> {
        self.slots.read().ok().and_then(|m| m.get(id).cloned())
    }

    pub(crate) fn all_slots(&self) -> Vec<Arc<Slot>> {
        self.slots
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    pub(crate) fn register(&self, doc: TaskDoc, secrets: Vec<Secret>) -> Arc<Slot> {
        let slot = Arc::new(Slot {
            id: doc.task_id.clone(),
            doc: RwLock::new(doc),
            op: tokio::sync::Mutex::new(SlotOp {
                secrets,
                ..Default::default()
            }),
            live: RwLock::new(std::sync::Weak::new()),
        });
        if let Ok(mut m) = self.slots.write() {
            m.insert(slot.id.clone(), slot.clone());
        }
        self.refresh_metrics();
        slot
    }

    pub(crate) fn unregister(&self, id: &str) {
        if let Ok(mut m) = self.slots.write() {
            m.remove(id);
        }
        crate::metrics::set_task_state(id, None);
        self.refresh_metrics();
    }

    pub(crate) fn refresh_metrics(&self) {
        let mut counts = [0usize; 3];
        for s in self.all_slots() {
            let doc = s.snapshot();
            counts[doc.state.code() as usize] += 1;
            crate::metrics::set_task_state(&s.id, Some(doc.state));
        }
        crate::metrics::set_task_counts([
            (TaskState::Initial, counts[0]),
            (TaskState::Running, counts[1]),
            (TaskState::Paused, counts[2]),
        ]);
    }

    /// Write a document to the store (off the async threads), then publish it to readers.
    pub(crate) async fn save(&self, slot: &Slot, mut doc: TaskDoc) -> Result<(), ApiError> {
        doc.updated_ms = cdc_engine::metrics::now_ms();
        let bytes = serde_json::to_vec(&doc)
            .map_err(|e| ApiError::internal(format!("cannot encode task {}: {e}", doc.task_id)))?;
        let (store, id) = (self.store.clone(), doc.task_id.clone());
        let written = tokio::task::spawn_blocking(move || store.put_task(&id, &bytes))
            .await
            .map_err(|e| ApiError::internal(format!("state store task failed: {e}")))
            .and_then(|r| r.map_err(ApiError::from));
        if let Ok(mut d) = slot.doc.write() {
            *d = doc;
        }
        self.refresh_metrics();
        written.map_err(|e| e.context("fail to store the task state: "))
    }

    /// Change state and reason, and store the document.
    pub(crate) async fn set_state(
        &self,
        slot: &Slot,
        state: TaskState,
        reason: &str,
    ) -> Result<(), ApiError> {
        let mut doc = slot.snapshot();
        doc.state = state;
        doc.reason = reason.to_string();
        self.save(slot, doc).await
    }

    /// Split the credentials of a new document according to `persist_credentials`: returns
    /// the document to store, the credentials to keep in memory and the withheld paths. For
    /// `POST /cdc` tasks the source's credentials are never stored: the source is re-read from
    /// the server configuration at every start.
    pub(crate) fn split_secrets(
        &self,
        mut spec: Value,
        origin: Origin,
    ) -> (Value, Vec<Secret>, Vec<Vec<String>>) {
        let all = secrets::extract(&mut spec);
        let keep: Vec<Secret> = all
            .into_iter()
            .filter(|s| {
                origin == Origin::Pipeline || s.path.first().map(String::as_str) != Some("source")
            })
            .collect();
        if self.cfg.persist_credentials {
            secrets::inject(&mut spec, &keep);
            (spec, Vec::new(), Vec::new())
        } else {
            let paths = keep.iter().map(|s| s.path.clone()).collect();
            (spec, keep, paths)
        }
    }

    /// Coverage of every task but `except`, for the duplicate check.
    fn coverages(&self, except: &str) -> Vec<(String, Coverage)> {
        self.all_slots()
            .into_iter()
            .filter(|s| s.id != except)
            .filter_map(|s| {
                let doc = s.snapshot();
                let mut spec = doc.spec.clone();
                // placeholders so documents without their credentials still parse
                let placeholders: Vec<Secret> = doc
                    .withheld
                    .iter()
                    .map(|p| Secret {
                        path: p.clone(),
                        value: Value::String("withheld".into()),
                    })
                    .collect();
                secrets::inject(&mut spec, &placeholders);
                let parsed = translate::parse_spec(&spec, &s.id).ok()?;
                Some((s.id.clone(), translate::coverage_of(&parsed)))
            })
            .collect()
    }

    fn check_capacity(&self) -> Result<(), ApiError> {
        let n = self.all_slots().len();
        if n >= self.cfg.max_task_num {
            return Err(ApiError::bad_request(format!(
                "the task num has reached the limit ({}, max_task_num); delete a task first",
                self.cfg.max_task_num
            )));
        }
        Ok(())
    }

    /// `create`: validate, check duplicates, test the target, store, start.
    pub async fn create(self: &Arc<Self>, req: CreateRequest) -> Result<Created, ApiError> {
        let task_id = match &req.task_id {
            Some(id) if !id.is_empty() => {
                if !task::valid_task_id(id) {
                    return Err(ApiError::bad_request(format!(
                        "task_id: {id:?} must be 1 to 64 letters, digits, '-' or '_'"
                    )));
                }
                id.clone()
            }
            _ => task::new_task_id(),
        };
        let _create = self.create_lock.lock().await;
        if self.slot(&task_id).is_some() {
            info!(message = "Create of an existing task id; returning it unchanged.", task_id = %task_id);
            return Ok(Created {
                task_id,
                warnings: Vec::new(),
            });
        }
        self.check_capacity()?;
        let mut plan = translate::plan(&req, &self.cfg, &task_id)?;
        let excludes = overlap::check(
            &plan.coverage,
            self.coverages(&task_id)
                .iter()
                .map(|(id, c)| (id.as_str(), c)),
        )
        .map_err(|c| ApiError::bad_request(c.to_string()))?;
        translate::add_excludes(&mut plan.spec, &excludes);
        if let Some(sink) = &plan.target {
            sink.check_connection().await.map_err(|e| {
                let mut err = ApiError::from_engine(&e);
                err.message = format!("fail to connect the target milvus {}: {}", sink.uri, e);
                err
            })?;
        }
        let (spec, secrets, withheld) = self.split_secrets(plan.spec, Origin::Cdc);
        let now = cdc_engine::metrics::now_ms();
        let doc = TaskDoc {
            task_id: task_id.clone(),
            origin: Origin::Cdc,
            name: None,
            request: Some(req.redacted()),
            spec,
            state: TaskState::Initial,
            reason: String::new(),
            disable_auto_start: req.disable_auto_start,
            withheld,
            created_ms: now,
            updated_ms: now,
        };
        self.insert_and_start(doc, secrets).await?;
        info!(message = "Task created.", task_id = %task_id, excluded = excludes.len());
        Ok(Created {
            task_id,
            warnings: plan.warnings,
        })
    }

    /// `POST /tasks`: a task from a pipeline document (YAML, or JSON when `json`).
    pub async fn create_from_document(
        self: &Arc<Self>,
        text: &str,
        json: bool,
        task_id: Option<String>,
    ) -> Result<Created, ApiError> {
        let spec: cdc_pipeline::PipelineSpec = if json {
            serde_json::from_str(text)
                .map_err(|e| ApiError::bad_request(format!("the pipeline document: {e}")))?
        } else {
            // No `${ENV}` substitution here: it would expose the server's environment.
            serde_saphyr::from_str(text)
                .map_err(|e| ApiError::bad_request(format!("the pipeline document: {e}")))?
        };
        spec.validate("the pipeline document")
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let task_id = match task_id {
            Some(id) if !task::valid_task_id(&id) => {
                return Err(ApiError::bad_request(format!(
                    "task_id: {id:?} must be 1 to 64 letters, digits, '-' or '_'"
                )))
            }
            Some(id) => id,
            None => task::new_task_id(),
        };
        let _create = self.create_lock.lock().await;
        if self.slot(&task_id).is_some() {
            return Err(ApiError::bad_request(format!(
                "task {task_id} already exists"
            )));
        }
        if let Some(other) = self
            .all_slots()
            .into_iter()
            .find(|s| s.snapshot().name.as_deref() == Some(spec.name.as_str()))
        {
            return Err(ApiError::bad_request(format!(
                "a task named {:?} already exists (task_id {}); delete it or rename the pipeline",
                spec.name, other.id
            )));
        }
        self.check_capacity()?;
        let coverage = translate::coverage_of(&spec);
        let excludes = overlap::check(
            &coverage,
            self.coverages(&task_id)
                .iter()
                .map(|(id, c)| (id.as_str(), c)),
        )
        .map_err(|c| ApiError::bad_request(c.to_string()))?;
        if !excludes.is_empty() {
            return Err(ApiError::bad_request(format!(
                "the pipeline's filter overlaps collections other tasks write to the same \
                 target: add them to the filter's exclude list: {excludes:?}"
            )));
        }
        for (id, s) in &spec.sinks {
            s.0.healthcheck().await.map_err(|e| {
                let mut err = ApiError::from_engine(&e);
                err.message = format!("sink {id}: {}", e.message);
                err
            })?;
        }
        let name = spec.name.clone();
        let mut value = serde_json::to_value(&spec)
            .map_err(|e| ApiError::internal(format!("cannot encode the pipeline: {e}")))?;
        value["name"] = Value::String(task_id.clone());
        let (value, secrets, withheld) = self.split_secrets(value, Origin::Pipeline);
        let now = cdc_engine::metrics::now_ms();
        let doc = TaskDoc {
            task_id: task_id.clone(),
            origin: Origin::Pipeline,
            name: Some(name),
            request: None,
            spec: value,
            state: TaskState::Initial,
            reason: String::new(),
            disable_auto_start: false,
            withheld,
            created_ms: now,
            updated_ms: now,
        };
        self.insert_and_start(doc, secrets).await?;
        info!(message = "Task created from a pipeline document.", task_id = %task_id);
        Ok(Created {
            task_id,
            warnings: Vec::new(),
        })
    }

    /// Store a new task as Initial, start it and mark it Running; on failure remove it again.
    async fn insert_and_start(
        self: &Arc<Self>,
        doc: TaskDoc,
        secrets: Vec<Secret>,
    ) -> Result<(), ApiError> {
        let id = doc.task_id.clone();
        let slot = self.register(doc.clone(), secrets);
        let mut op = slot.op.lock().await;
        if let Err(e) = self.save(&slot, doc).await {
            self.unregister(&id);
            return Err(e);
        }
        match self.start(&slot, &mut op, true).await {
            Ok(()) => self.set_state(&slot, TaskState::Running, "").await,
            Err(e) => {
                warn!(message = "Task failed to start; removing it.", task_id = %id, error = %e.message);
                let (store, tid) = (self.store.clone(), id.clone());
                let _ = tokio::task::spawn_blocking(move || store.delete_task(&tid)).await;
                op.deleted = true;
                self.unregister(&id);
                Err(e.context("fail to start the task: "))
            }
        }
    }

    /// `pause`: stop the pipeline after a final checkpoint.
    pub async fn pause(&self, task_id: &str) -> Result<(), ApiError> {
        let slot = self
            .slot(task_id)
            .ok_or_else(|| ApiError::not_found(task_id))?;
        let mut op = slot.op.lock().await;
        if op.deleted {
            return Err(ApiError::not_found(task_id));
        }
        let read = self.refresh_doc(&slot).await?;
        if slot.snapshot().state == TaskState::Paused {
            return Err(ApiError::bad_request(format!(
                "the task has paused, task_id: {task_id}"
            )));
        }
        self.stop_run(&mut op).await;
        info!(message = "Task paused.", task_id = %task_id);
        let stored = self
            .set_state_if(
                &slot,
                TaskState::Paused,
                "manually pause through http interface",
                read,
            )
            .await;
        if let Some(c) = self.cluster.get() {
            c.release(task_id).await;
        }
        match stored? {
            true => Ok(()),
            false => Err(ApiError::bad_request(format!(
                "task {task_id} was changed through another cluster instance meanwhile \
                 (resumed or deleted there); see its state and send the pause again"
            ))),
        }
    }

    /// `resume`: start the pipeline again from the committed checkpoint. `credentials` supply
    /// withheld credentials by path.
    pub async fn resume(
        self: &Arc<Self>,
        task_id: &str,
        credentials: &BTreeMap<String, String>,
    ) -> Result<(), ApiError> {
        let slot = self
            .slot(task_id)
            .ok_or_else(|| ApiError::not_found(task_id))?;
        let mut op = slot.op.lock().await;
        if op.deleted {
            return Err(ApiError::not_found(task_id));
        }
        let read = self.refresh_doc(&slot).await?;
        let doc = slot.snapshot();
        if doc.state == TaskState::Running && op.run.is_some() {
            return Err(ApiError::bad_request(format!(
                "the task has running, task_id: {task_id}"
            )));
        }
        for (path, value) in credentials {
            let Some(p) = doc.withheld.iter().find(|p| secrets::path_text(p) == *path) else {
                let expected: Vec<String> =
                    doc.withheld.iter().map(|p| secrets::path_text(p)).collect();
                return Err(ApiError::bad_request(format!(
                    "credentials.{path}: task {task_id} does not need this credential; it \
                     needs: {expected:?}"
                )));
            };
            op.secrets.retain(|s| &s.path != p);
            op.secrets.push(Secret {
                path: p.clone(),
                value: Value::String(value.clone()),
            });
        }
        match self.start(&slot, &mut op, false).await {
            Ok(()) => {
                self.set_running(&slot, &mut op, read).await?;
                info!(message = "Task resumed.", task_id = %task_id);
                Ok(())
            }
            Err(e) if e.message.contains("is run by cluster instance") => Err(e),
            Err(e) => {
                let reason = format!("fail to start task, err: {}", e.message);
                let _ = self.set_state(&slot, TaskState::Paused, &reason).await;
                Err(e.context(&format!("fail to start the task, task_id: {task_id}: ")))
            }
        }
    }

    /// `delete`: stop the pipeline, then remove the task and its checkpoints.
    pub async fn delete(&self, task_id: &str, ignore_not_found: bool) -> Result<(), ApiError> {
        let Some(slot) = self.slot(task_id) else {
            return if ignore_not_found {
                Ok(())
            } else {
                Err(ApiError::not_found(task_id))
            };
        };
        let mut op = slot.op.lock().await;
        if op.deleted {
            return if ignore_not_found {
                Ok(())
            } else {
                Err(ApiError::not_found(task_id))
            };
        }
        self.stop_run(&mut op).await;
        let (store, id) = (self.store.clone(), task_id.to_string());
        tokio::task::spawn_blocking(move || store.delete_task(&id))
            .await
            .map_err(|e| ApiError::internal(format!("state store task failed: {e}")))?
            .map_err(|e| ApiError::from(e).context("fail to delete the task meta: "))?;
        op.deleted = true;
        op.secrets.clear();
        self.unregister(task_id);
        if let Some(c) = self.cluster.get() {
            c.release(task_id).await;
        }
        info!(message = "Task deleted.", task_id = %task_id);
        Ok(())
    }

    /// `get`.
    pub fn get(&self, task_id: &str) -> Result<TaskView, ApiError> {
        if task_id.is_empty() {
            return Err(ApiError::bad_request("task_id is empty"));
        }
        self.slot(task_id)
            .map(|s| s.view())
            .ok_or_else(|| ApiError::not_found(task_id))
    }

    /// `list`, ordered by task id.
    pub fn list(&self) -> Vec<TaskView> {
        self.all_slots().iter().map(|s| s.view()).collect()
    }

    /// Number of tasks.
    pub fn len(&self) -> usize {
        self.all_slots().len()
    }

    /// True when there is no task.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `position`: committed source positions.
    pub async fn position(&self, task_id: &str) -> Result<PositionsResponse, ApiError> {
        if task_id.is_empty() {
            return Err(ApiError::bad_request("task_id is empty"));
        }
        let slot = self
            .slot(task_id)
            .ok_or_else(|| ApiError::not_found(task_id))?;
        let doc = slot.snapshot();
        let replicate = match doc.origin {
            Origin::Cdc => Some(self.cfg.source.replicate_channel_name()),
            Origin::Pipeline => doc
                .spec
                .pointer("/source/milvus/replicate_channel")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| {
                    doc.spec
                        .pointer("/source/milvus/cluster_prefix")
                        .and_then(Value::as_str)
                        .map(cdc_protocol::channel::replicate_channel_name)
                }),
        };
        let (store, id) = (self.store.clone(), task_id.to_string());
        let offsets = tokio::task::spawn_blocking(move || positions::committed(&*store, &id))
            .await
            .map_err(|e| ApiError::internal(format!("state store task failed: {e}")))??;
        Ok(positions::response(&offsets, replicate.as_deref()))
    }
}
