//! The engine [`Sink`]: routes DML to one writer per (target collection, source shard), runs
//! DDL alone once every writer is drained (DDL is rare; this gives one global order), and
//! answers `flush` only when the target acknowledged every write accepted so far.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cdc_engine::metrics::{now_ms, ComponentMetrics};
use cdc_engine::{
    ChangeEvent, DeliveryGuarantee, EngineError, Op, Sink, SinkContext, SNAPSHOT_SHARD,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::info;

use crate::ddl::{self, Shared};
use crate::meta::MetaCache;
use crate::writer::{FailSlot, Writer, WriterMsg};

/// (database, collection, source shard).
type WriterKey = (String, String, String);

struct WriterHandle {
    tx: mpsc::Sender<WriterMsg>,
    join: JoinHandle<()>,
}

/// Writes the change stream to a target Milvus with the normal RPCs (`mode: api`).
pub struct MilvusSink {
    sh: Arc<Shared>,
    cache: MetaCache,
    writers: HashMap<WriterKey, WriterHandle>,
    failed: FailSlot,
    metrics: ComponentMetrics,
    replay_until_ms: u64,
}

impl MilvusSink {
    pub(crate) fn new(sh: Arc<Shared>) -> Self {
        let metrics = ComponentMetrics::new("", &sh.id);
        Self {
            sh,
            cache: MetaCache::default(),
            writers: HashMap::new(),
            failed: FailSlot::default(),
            metrics,
            replay_until_ms: now_ms(),
        }
    }

    /// The first writer failure, if any.
    fn failure(&self) -> Option<EngineError> {
        crate::writer::recorded_failure(&self.failed)
    }

    fn check(&self) -> Result<(), EngineError> {
        crate::writer::check_failure(&self.failed)
    }

    /// Wait until every writer has sent and the target acknowledged all it was given.
    async fn drain(&mut self) -> Result<(), EngineError> {
        let mut waits = Vec::with_capacity(self.writers.len());
        for w in self.writers.values() {
            let (tx, rx) = oneshot::channel();
            if w.tx.send(WriterMsg::Flush(tx)).await.is_ok() {
                waits.push(rx);
            }
        }
        for rx in waits {
            // A dropped answer means the writer failed; its error is in the slot.
            let _ = rx.await;
        }
        self.check()?;
        if self.writers.values().any(|w| w.join.is_finished()) {
            return Err(self.failure().unwrap_or_else(|| {
                EngineError::internal(&self.sh.component, "a writer task ended unexpectedly")
            }));
        }
        Ok(())
    }

    /// Before the first stream change of a collection, write out its snapshot rows (they are
    /// on a writer of their own, [`SNAPSHOT_SHARD`], and must not overtake later changes).
    async fn finish_snapshot_writer(&mut self, db: &str, coll: &str) -> Result<(), EngineError> {
        let key = (db.to_string(), coll.to_string(), SNAPSHOT_SHARD.to_string());
        let Some(w) = self.writers.remove(&key) else {
            return Ok(());
        };
        let (tx, rx) = oneshot::channel();
        if w.tx.send(WriterMsg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
        self.check()?;
        Ok(())
    }

    /// Stop the (drained) writers of a collection, or of a database when `coll` is empty.
    fn forget_writers(&mut self, db: &str, coll: &str) {
        self.writers
            .retain(|(d, c, _), _| !(d == db && (coll.is_empty() || c == coll)));
    }

    async fn write_dml(&mut self, ev: Arc<ChangeEvent>) -> Result<(), EngineError> {
        let shard = match &ev.op {
            Op::Insert(b) => b.shard.clone(),
            Op::Delete(d) => d.shard.clone(),
            Op::Upsert { insert, .. } => insert.shard.clone(),
            Op::Ddl(_) => return Ok(()),
        };
        let key = (ev.database.clone(), ev.collection.clone(), shard);
        if !ev.is_snapshot_read() {
            self.finish_snapshot_writer(&ev.database, &ev.collection)
                .await?;
        }
        if !self.writers.contains_key(&key) {
            let info = ddl::ensure_collection(
                &self.sh,
                &mut self.cache,
                &ev.database,
                &ev.collection,
                ev.collection_def.as_deref(),
                None,
            )
            .await?;
            let (tx, rx) = mpsc::channel(self.sh.cfg.queue_capacity);
            let writer = Writer {
                sh: self.sh.clone(),
                db: ev.database.clone(),
                coll: ev.collection.clone(),
                source_collection_id: ev.collection_id,
                info,
                metrics: self.metrics.clone(),
                replay_until_ms: self.replay_until_ms,
                failed: self.failed.clone(),
            };
            let join = tokio::spawn(writer.run(rx));
            self.writers.insert(key.clone(), WriterHandle { tx, join });
        }
        let Some(w) = self.writers.get(&key) else {
            return Err(EngineError::internal(&self.sh.component, "writer vanished"));
        };
        if w.tx.send(WriterMsg::Event(ev)).await.is_err() {
            self.check()?;
            return Err(EngineError::internal(
                &self.sh.component,
                "a writer task ended unexpectedly",
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl Sink for MilvusSink {
    fn delivery(&self) -> DeliveryGuarantee {
        // Upserts, idempotent deletes and check-then-act DDL make replays harmless; with
        // `write: insert`, changes a previous run may have written are upserted too.
        DeliveryGuarantee::ExactlyOnceInEffect
    }

    async fn open(&mut self, ctx: &SinkContext) -> Result<(), EngineError> {
        self.metrics = ctx.metrics.clone();
        // Everything a previous run wrote was read before now; the window covers clock skew.
        self.replay_until_ms = now_ms() + self.sh.cfg.replay_window_secs * 1000;
        info!(
            message = "Milvus sink opened.",
            sink = %ctx.sink_id,
            uri = %self.sh.client.uri,
            write = ?self.sh.cfg.write,
            committed_channels = ctx.committed.len()
        );
        Ok(())
    }

    async fn write(&mut self, event: Arc<ChangeEvent>) -> Result<(), EngineError> {
        self.check()?;
        match &event.op {
            Op::Ddl(d) => {
                self.drain().await?;
                let r = ddl::apply(&self.sh, &mut self.cache, &self.metrics, &event, d, None).await;
                if matches!(
                    d,
                    cdc_engine::Ddl::DropCollection | cdc_engine::Ddl::DropDatabase
                ) {
                    self.forget_writers(&event.database, &event.collection);
                }
                // A failed DDL is returned and counted once, by the engine.
                if r.is_ok() {
                    self.metrics.written(d.kind(), 0, event.position.ts);
                }
                r
            }
            _ => self.write_dml(event).await,
        }
    }

    async fn flush(&mut self) -> Result<(), EngineError> {
        self.drain().await
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some(Duration::from_millis(
            self.sh.cfg.batch.linger_ms.clamp(50, 1000),
        ))
    }

    async fn tick(&mut self) -> Result<(), EngineError> {
        // Writers send lingering batches themselves; surface their failures promptly.
        self.check()
    }

    async fn close(&mut self) {
        // Unflushed work is replayed from the last checkpoint; do not wait for a slow target.
        for (_, w) in self.writers.drain() {
            w.join.abort();
        }
    }
}
