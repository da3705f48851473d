//! What the cluster loop ([`crate::cluster`]) asks of the task manager: mirror the task
//! documents stored by other instances, take a task over, stop a task that was lost, paused
//! or deleted elsewhere.

use std::collections::HashMap;

use tracing::{info, warn};

use crate::envelope::ApiError;
use crate::manager::TaskManager;
use crate::task::{TaskDoc, TaskState};

impl TaskManager {
    /// Make the local view equal the stored documents; returns the ids of tasks whose
    /// document disappeared (deleted through another instance), still registered locally.
    pub(crate) fn sync_docs(&self, docs: &HashMap<String, TaskDoc>) -> Vec<String> {
        for (id, doc) in docs {
            match self.slot(id) {
                None => {
                    self.register(doc.clone(), Vec::new());
                }
                Some(slot) => {
                    let cur = slot.snapshot();
                    if cur.updated_ms != doc.updated_ms || cur.state != doc.state {
                        if let Ok(mut d) = slot.doc.write() {
                            *d = doc.clone();
                        }
                    }
                }
            }
        }
        self.refresh_metrics();
        let mut removed = Vec::new();
        for slot in self.all_slots() {
            if !docs.contains_key(&slot.id) && slot.snapshot().state != TaskState::Initial {
                removed.push(slot.id.clone());
            }
        }
        for id in &removed {
            if !self.cluster.get().is_some_and(|c| c.owns(id)) {
                self.unregister(id);
            }
        }
        removed
    }

    /// Take a running, unowned task over and start it from its committed checkpoint.
    /// `Ok(false)` when there was nothing to do.
    pub(crate) async fn take_over(self: &std::sync::Arc<Self>, id: &str) -> Result<bool, ApiError> {
        let Some(slot) = self.slot(id) else {
            return Ok(false);
        };
        let mut op = slot.op.lock().await;
        if op.deleted || op.run.is_some() || slot.snapshot().state != TaskState::Running {
            return Ok(false);
        }
        let started = std::time::Instant::now();
        match self.start(&slot, &mut op, false).await {
            Ok(()) => {
                info!(message = "Task taken over; it resumes from its committed checkpoint.",
                      task_id = %id, start_ms = started.elapsed().as_millis() as u64);
                Ok(true)
            }
            Err(e) if e.message.contains("is run by cluster instance") => Ok(false),
            Err(e) => {
                let reason = format!("fail to start task, err: {}", e.message);
                let _ = self.set_state(&slot, TaskState::Paused, &reason).await;
                if let Some(c) = self.cluster.get() {
                    c.release(id).await;
                }
                Err(e)
            }
        }
    }

    /// The task is no longer ours: stop its pipeline without storing anything (its commits
    /// are fenced anyway; the new owner resumes from the last committed checkpoint).
    pub(crate) async fn abandon(&self, id: &str) {
        let Some(slot) = self.slot(id) else { return };
        let mut op = slot.op.lock().await;
        if op.run.is_some() {
            warn!(message = "Stopping a task this instance no longer owns.", task_id = %id);
            self.stop_run(&mut op).await;
        }
    }

    /// Paused through another instance (or handed back): stop with a final checkpoint.
    pub(crate) async fn stop_paused(&self, id: &str) {
        let Some(slot) = self.slot(id) else { return };
        let mut op = slot.op.lock().await;
        if op.run.is_some() {
            info!(message = "Stopping a task paused or handed back through the cluster.", task_id = %id);
            self.stop_run(&mut op).await;
        }
    }

    /// Deleted through another instance: stop it, remove what its last checkpoint wrote.
    pub(crate) async fn stop_deleted(&self, id: &str) {
        if let Some(slot) = self.slot(id) {
            let mut op = slot.op.lock().await;
            self.stop_run(&mut op).await;
            op.deleted = true;
            op.secrets.clear();
        }
        let (store, tid) = (self.store.clone(), id.to_string());
        match tokio::task::spawn_blocking(move || store.delete_pipeline(&tid)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                warn!(message = "Cannot remove a deleted task's checkpoints.", task_id = %id, error = %e)
            }
            Err(e) => {
                warn!(message = "Cannot remove a deleted task's checkpoints.", task_id = %id, error = %e)
            }
        }
        self.unregister(id);
        info!(message = "Task deleted through another instance; stopped here.", task_id = %id);
    }
}
