//! What the cluster loop ([`crate::cluster`]) asks of the task manager: mirror the task
//! documents stored by other instances, take a task over, stop a task that was lost, paused
//! or deleted elsewhere.
//!
//! And what `pause`/`resume` need in a cluster: they act on the stored document read fresh
//! from etcd (the local mirror may be a second old), and a resume stores `Running` only if
//! the document is still the one it read: a pause sent to another instance while the
//! pipeline was starting wins, instead of being overwritten.

use std::collections::HashMap;

use tracing::{info, warn};

use crate::envelope::ApiError;
use crate::manager::{Slot, SlotOp, TaskManager};
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

    /// Cluster mode: replace the slot's document by the stored one and return its bytes
    /// (`Ok(None)` without a cluster).
    ///
    /// # Errors
    /// Not found when another instance deleted the task; etcd failures.
    pub(crate) async fn refresh_doc(&self, slot: &Slot) -> Result<Option<Vec<u8>>, ApiError> {
        let Some(c) = self.cluster.get() else {
            return Ok(None);
        };
        let bytes = c
            .read_doc(&slot.id)
            .await?
            .ok_or_else(|| ApiError::not_found(&slot.id))?;
        if let Ok(doc) = serde_json::from_slice::<TaskDoc>(&bytes) {
            if let Ok(mut d) = slot.doc.write() {
                *d = doc;
            }
        }
        Ok(Some(bytes))
    }

    /// Store a new state and reason. In a cluster the write is conditional on the stored
    /// document still being `read` (what the operation began from); `Ok(false)` when another
    /// instance changed or deleted it meanwhile (nothing written, the mirror refreshed).
    pub(crate) async fn set_state_if(
        &self,
        slot: &Slot,
        state: TaskState,
        reason: &str,
        read: Option<Vec<u8>>,
    ) -> Result<bool, ApiError> {
        let Some(c) = self.cluster.get() else {
            return self.set_state(slot, state, reason).await.map(|()| true);
        };
        let mut doc = slot.snapshot();
        doc.state = state;
        doc.reason = reason.to_string();
        doc.updated_ms = cdc_engine::metrics::now_ms();
        let bytes = serde_json::to_vec(&doc)
            .map_err(|e| ApiError::internal(format!("cannot encode task {}: {e}", slot.id)))?;
        let written = c.put_doc_if(&slot.id, bytes, read).await?;
        if written {
            if let Ok(mut d) = slot.doc.write() {
                *d = doc;
            }
        } else {
            let _ = self.refresh_doc(slot).await;
        }
        self.refresh_metrics();
        Ok(written)
    }

    /// Mark a just-started task `Running`, unless another instance paused or deleted it
    /// while it started (see [`TaskManager::set_state_if`]): then the pipeline is stopped
    /// again, the ownership key released, and the answer says why.
    pub(crate) async fn set_running(
        &self,
        slot: &Slot,
        op: &mut SlotOp,
        read: Option<Vec<u8>>,
    ) -> Result<(), ApiError> {
        if self
            .set_state_if(slot, TaskState::Running, "", read)
            .await?
        {
            return Ok(());
        }
        warn!(message = "The task was changed through another instance while it started; \
                         stopping it again.", task_id = %slot.id);
        self.stop_run(op).await;
        if let Some(c) = self.cluster.get() {
            c.release(&slot.id).await;
        }
        Err(ApiError::bad_request(format!(
            "task {} was paused or deleted through another cluster instance while it started; \
             it was not resumed (see its state)",
            slot.id
        )))
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
