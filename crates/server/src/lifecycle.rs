//! Running tasks: building a task's pipeline, watching it, stopping it, reloading every task
//! when the server starts and stopping them all when it ends.
//!
//! A pipeline that fails moves its task to `Paused` with the error as `reason` (milvus-cdc
//! does the same). On start, `Running` tasks resume from their committed checkpoints;
//! `Paused` tasks stay paused (milvus-cdc restarts them); tasks with `disable_auto_start`, and
//! tasks whose credentials were not stored, come back `Paused` with a reason saying so.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cdc_engine::{PipelineStatus, RunningPipeline};
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::envelope::ApiError;
use crate::manager::{Slot, SlotOp, TaskManager};
use crate::secrets::{self, Secret};
use crate::task::{Origin, TaskDoc, TaskState};
use crate::translate;

/// A running pipeline of a task, as the manager holds it.
pub(crate) struct RunHandle {
    /// Distinguishes this run from later ones of the same task.
    generation: u64,
    /// Cancelled to ask for a stop after a final checkpoint.
    stop: CancellationToken,
    /// Becomes true when the pipeline has ended.
    done: watch::Receiver<bool>,
    /// Live counters.
    #[allow(dead_code)]
    pub(crate) status: Arc<PipelineStatus>,
}

/// How long a new task may take to open its source and sinks and store its start.
const START_TIMEOUT: Duration = Duration::from_secs(120);

fn next_generation() -> u64 {
    static GEN: AtomicU64 = AtomicU64::new(1);
    GEN.fetch_add(1, Ordering::Relaxed)
}

impl TaskManager {
    /// The document a task runs: its stored spec plus in-memory credentials; for `POST /cdc`
    /// tasks the source and checkpoint come from the current server configuration.
    fn runnable_spec(&self, doc: &TaskDoc, secrets: &[Secret]) -> Result<Value, ApiError> {
        let missing: Vec<String> = doc
            .withheld
            .iter()
            .filter(|p| !secrets.iter().any(|s| &s.path == *p))
            .map(|p| secrets::path_text(p))
            .collect();
        if !missing.is_empty() {
            return Err(ApiError::bad_request(format!(
                "credentials are not stored (persist_credentials: false); resume the task with \
                 \"credentials\": {{{}}}",
                missing
                    .iter()
                    .map(|p| format!("\"{p}\": \"...\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let mut spec = doc.spec.clone();
        secrets::inject(&mut spec, secrets);
        if doc.origin == Origin::Cdc {
            let stored = spec
                .pointer("/source/milvus")
                .cloned()
                .unwrap_or(Value::Null);
            let mut src = serde_json::to_value(&self.cfg.source)
                .map_err(|e| ApiError::internal(format!("cannot encode the source: {e}")))?;
            if let Value::Object(m) = &mut src {
                for key in ["positions", "start"] {
                    match stored.get(key) {
                        Some(v) => {
                            m.insert(key.into(), v.clone());
                        }
                        None => {
                            m.remove(key);
                        }
                    }
                }
            }
            spec["source"] = serde_json::json!({ "milvus": src });
            spec["checkpoint"] = serde_json::to_value(&self.cfg.checkpoint)
                .map_err(|e| ApiError::internal(format!("cannot encode checkpoint: {e}")))?;
        }
        Ok(spec)
    }

    /// Build and spawn the task's pipeline (the caller holds the task's operation lock and
    /// records the new state). With `fix_start`, return only once the pipeline stored its start
    /// positions (a new task: everything the source does after the caller's answer is then
    /// replicated); a pipeline that fails before that is an error here.
    pub(crate) async fn start(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        op: &mut SlotOp,
        fix_start: bool,
    ) -> Result<(), ApiError> {
        if op.run.is_some() {
            return Ok(());
        }
        let doc = slot.snapshot();
        let value = self.runnable_spec(&doc, &op.secrets)?;
        if let Some(c) = self.cluster.get() {
            c.acquire(&doc.task_id).await?;
        }
        let spec = translate::parse_spec(&value, &doc.task_id)?;
        let pipeline = cdc_pipeline::build(&spec)
            .await
            .map_err(|e| ApiError::from_engine(&e))?;
        let running = pipeline.spawn(self.store.clone());
        if fix_start {
            let started = tokio::time::timeout(START_TIMEOUT, running.wait_started()).await;
            let failure = match started {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(ApiError::from_engine(&e)),
                Err(_) => Some(ApiError::internal(format!(
                    "the task did not store its start positions within {} s (source or \
                     target too slow to open?); see the server log",
                    START_TIMEOUT.as_secs()
                ))),
            };
            if let Some(e) = failure {
                running.stop();
                let _ = tokio::time::timeout(START_TIMEOUT, running.join()).await;
                return Err(e);
            }
            info!(message = "Task start positions stored.", task_id = %doc.task_id);
        }
        let generation = next_generation();
        let stop = CancellationToken::new();
        let (done_tx, done_rx) = watch::channel(false);
        if let Ok(mut live) = slot.live.write() {
            *live = Arc::downgrade(&running.status);
        }
        op.run = Some(RunHandle {
            generation,
            stop: stop.clone(),
            done: done_rx,
            status: running.status.clone(),
        });
        tokio::spawn(watch_pipeline(
            self.clone(),
            slot.clone(),
            running,
            stop,
            done_tx,
            generation,
        ));
        info!(message = "Task pipeline started.", task_id = %doc.task_id, generation);
        Ok(())
    }

    /// Ask the running pipeline (if any) to stop after a final checkpoint and wait for it.
    pub(crate) async fn stop_run(&self, op: &mut SlotOp) {
        if let Some(run) = op.run.take() {
            run.stop.cancel();
            let mut done = run.done;
            let _ = done.wait_for(|d| *d).await;
        }
    }

    /// Load every stored task (called once at start, before serving). Returns the tasks to
    /// start, which [`TaskManager::start_loaded`] starts.
    pub fn load(self: &Arc<Self>) -> Result<Vec<String>, ApiError> {
        let mut to_start = Vec::new();
        for (id, bytes) in self.store.list_tasks()? {
            let mut doc = match serde_json::from_slice::<TaskDoc>(&bytes) {
                Ok(d) => d,
                Err(e) => {
                    error!(message = "Stored task cannot be read; it is shown paused.", task_id = %id, error = %e);
                    self.register(unreadable(&id, &e.to_string()), Vec::new());
                    continue;
                }
            };
            let mut secrets = Vec::new();
            if !self.cfg.persist_credentials {
                // Credentials stored by an earlier run with persist_credentials on: move them
                // to memory and rewrite the document without them.
                let (spec, found, withheld) = self.split_secrets(doc.spec.clone(), doc.origin);
                if !found.is_empty() {
                    doc.spec = spec;
                    for p in withheld {
                        if !doc.withheld.contains(&p) {
                            doc.withheld.push(p);
                        }
                    }
                    if let Ok(b) = serde_json::to_vec(&doc) {
                        self.store.put_task(&id, &b)?;
                    }
                    secrets = found;
                }
            }
            if matches!(doc.state, TaskState::Running | TaskState::Initial) {
                to_start.push(id.clone());
            }
            self.register(doc, secrets);
        }
        info!(
            message = "Tasks loaded.",
            tasks = self.len(),
            to_start = to_start.len()
        );
        Ok(to_start)
    }

    /// Start the tasks [`TaskManager::load`] returned, one after the other. A task that cannot
    /// start is paused with the reason.
    pub async fn start_loaded(self: &Arc<Self>, ids: Vec<String>) {
        for id in ids {
            let Some(slot) = self.slot(&id) else { continue };
            let mut op = slot.op.lock().await;
            if op.deleted || op.run.is_some() {
                continue;
            }
            let doc = slot.snapshot();
            if doc.disable_auto_start {
                let _ = self
                    .set_state(
                        &slot,
                        TaskState::Paused,
                        "disable_auto_start is set: the task was not started after the server \
                         restart; resume it to start it",
                    )
                    .await;
                continue;
            }
            match self.start(&slot, &mut op, false).await {
                Ok(()) => {
                    let _ = self.set_state(&slot, TaskState::Running, "").await;
                }
                Err(e) => {
                    warn!(message = "Task could not be started after the restart; paused.", task_id = %id, error = %e.message);
                    let reason = format!("fail to start task, err: {}", e.message);
                    let _ = self.set_state(&slot, TaskState::Paused, &reason).await;
                }
            }
        }
    }

    /// Stop every pipeline after a final checkpoint, waiting at most `shutdown_timeout_secs`.
    /// Stored states are kept, so running tasks resume on the next start.
    pub async fn shutdown(&self) {
        let slots = self.all_slots();
        let mut waits = Vec::new();
        for slot in &slots {
            let mut op = slot.op.lock().await;
            if let Some(run) = op.run.take() {
                run.stop.cancel();
                let mut done = run.done;
                waits.push(async move {
                    let _ = done.wait_for(|d| *d).await;
                });
            }
        }
        let n = waits.len();
        let all = futures::future::join_all(waits);
        let limit = Duration::from_secs(self.cfg.shutdown_timeout_secs);
        if tokio::time::timeout(limit, all).await.is_err() {
            warn!(
                message =
                    "Some pipelines did not stop in time; they resume from their last checkpoint.",
                timeout_secs = limit.as_secs()
            );
        } else {
            info!(
                message = "Every pipeline stopped with a final checkpoint.",
                pipelines = n
            );
        }
    }
}

fn unreadable(id: &str, err: &str) -> TaskDoc {
    TaskDoc {
        task_id: id.to_string(),
        origin: Origin::Pipeline,
        name: None,
        request: None,
        spec: Value::Null,
        state: TaskState::Paused,
        reason: format!("the stored task cannot be read ({err}); delete it and create it again"),
        disable_auto_start: true,
        withheld: Vec::new(),
        created_ms: 0,
        updated_ms: 0,
    }
}

/// Owns a running pipeline: stops it on request, and when it ends by itself (failure or end
/// of data) pauses its task with the reason.
async fn watch_pipeline(
    mgr: Arc<TaskManager>,
    slot: Arc<Slot>,
    running: RunningPipeline,
    stop: CancellationToken,
    done: watch::Sender<bool>,
    generation: u64,
) {
    tokio::select! {
        _ = stop.cancelled() => running.stop(),
        _ = wait_finished(&running) => {}
    }
    let result = running.join().await;
    let _ = done.send(true);
    if stop.is_cancelled() {
        if let Err(e) = &result {
            warn!(message = "Pipeline ended with an error while stopping.", task_id = %slot.id, error = %e);
        }
        return;
    }
    let reason = match &result {
        Ok(()) => "the pipeline ended: its source has no more data".to_string(),
        Err(e) => e.to_string(),
    };
    let mut op = slot.op.lock().await;
    if op.deleted || op.run.as_ref().map(|r| r.generation) != Some(generation) {
        return;
    }
    op.run = None;
    if let Some(c) = mgr.cluster.get() {
        if !c.owns(&slot.id) || reason.contains("no longer owns the task") {
            // fenced: another instance runs it now; its document is not ours to change
            warn!(message = "Task pipeline stopped: this instance lost the task.", task_id = %slot.id, reason = %reason);
            c.forget(&slot.id);
            return;
        }
        if reason.contains("state store") {
            // etcd unreachable or failing: keep the task running in the cluster; the cluster
            // loop (here or elsewhere) starts it again from its last committed checkpoint
            warn!(message = "Task pipeline stopped by a state store error; releasing it to the cluster.", task_id = %slot.id, reason = %reason);
            drop(op);
            c.release(&slot.id).await;
            return;
        }
    }
    warn!(message = "Task pipeline ended; pausing the task.", task_id = %slot.id, reason = %reason);
    if let Err(e) = mgr.set_state(&slot, TaskState::Paused, &reason).await {
        error!(message = "Cannot store the paused state of a failed task.", task_id = %slot.id, error = %e.message);
    }
}

async fn wait_finished(running: &RunningPipeline) {
    while !running.is_finished() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
