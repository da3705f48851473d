//! One writer task per (target collection, source shard): applies that shard's inserts,
//! upserts and deletes in order, merging consecutive ones into bigger requests, with retries.
//! Writers of different collections or shards run in parallel; a primary key always lives in
//! one source shard, so per-key order is kept.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cdc_engine::metrics::ComponentMetrics;
use cdc_engine::{ChangeEvent, EngineError, Op};
use cdc_protocol::milvus::{DeleteRequest, InsertRequest, UpsertRequest};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::batch::{self, Batcher, DeleteBatch, Item, KeySet, RowsBatch, WriteKind};
use crate::config::WriteMode;
use crate::ddl::Shared;
use crate::expr;
use crate::meta::CollectionInfo;
use crate::retry::Failure;

/// What the sink sends to a writer.
#[derive(Debug)]
pub(crate) enum WriterMsg {
    /// A DML change of this writer's collection and shard.
    Event(Arc<ChangeEvent>),
    /// Send everything pending, then answer.
    Flush(oneshot::Sender<()>),
}

/// The first failure of any writer; once set, the sink reports it and stops.
pub(crate) type FailSlot = Arc<Mutex<Option<EngineError>>>;

/// The failure recorded in `slot`, if any.
pub(crate) fn recorded_failure(slot: &FailSlot) -> Option<EngineError> {
    slot.lock().ok().and_then(|s| s.clone())
}

/// `Err` with the recorded failure once there is one.
pub(crate) fn check_failure(slot: &FailSlot) -> Result<(), EngineError> {
    recorded_failure(slot).map_or(Ok(()), Err)
}

/// Record `e` unless an earlier failure is already recorded.
pub(crate) fn record_failure(slot: &FailSlot, e: EngineError) {
    if let Ok(mut s) = slot.lock() {
        if s.is_none() {
            *s = Some(e);
        }
    }
}

/// A writer's fixed settings.
pub(crate) struct Writer {
    /// Connection and configuration.
    pub sh: Arc<Shared>,
    /// Target database.
    pub db: String,
    /// Target collection.
    pub coll: String,
    /// Source collection id (metric label).
    pub source_collection_id: i64,
    /// The target collection.
    pub info: Arc<CollectionInfo>,
    /// Metrics of the sink.
    pub metrics: ComponentMetrics,
    /// With `write: insert`: changes at or before this physical time (ms) use upsert.
    pub replay_until_ms: u64,
    /// Where a failure is reported.
    pub failed: FailSlot,
}

impl Writer {
    /// Run until the sink drops the sender or a write fails for good.
    pub(crate) async fn run(self, mut rx: mpsc::Receiver<WriterMsg>) {
        let mut batcher = Batcher::default();
        let linger = Duration::from_millis(self.sh.cfg.batch.linger_ms);
        loop {
            let deadline = batcher
                .since()
                .map(|t| tokio::time::Instant::from_std(t + linger));
            let msg = tokio::select! {
                m = rx.recv() => m,
                _ = sleep_until(deadline), if deadline.is_some() => {
                    if let Some(item) = batcher.take() {
                        if let Err(e) = self.send(item).await {
                            return self.fail(e);
                        }
                    }
                    continue;
                }
            };
            match msg {
                None => return,
                Some(WriterMsg::Flush(done)) => {
                    if let Some(item) = batcher.take() {
                        if let Err(e) = self.send(item).await {
                            return self.fail(e);
                        }
                    }
                    let _ = done.send(());
                }
                Some(WriterMsg::Event(ev)) => {
                    for item in self.items(&ev) {
                        let mut ready = batcher.push(item, &self.sh.batch_limits());
                        if linger.is_zero() {
                            ready.extend(batcher.take());
                        }
                        for b in ready {
                            if let Err(e) = self.send(b).await {
                                return self.fail(e);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Keep `e` for the sink to return (the engine counts it then).
    fn fail(&self, e: EngineError) {
        record_failure(&self.failed, e);
    }

    /// The RPC for source inserts with timestamp `ts`.
    fn insert_kind(&self, ts: u64) -> WriteKind {
        if self.info.auto_id {
            // The target generates keys and refuses upserts; only inserts can work.
            return WriteKind::Insert;
        }
        match self.sh.cfg.write {
            WriteMode::Upsert => WriteKind::Upsert,
            WriteMode::Insert => {
                if self.info.created_here
                    || cdc_protocol::ts::physical_ms(ts) > self.replay_until_ms
                {
                    WriteKind::Insert
                } else {
                    WriteKind::Upsert
                }
            }
        }
    }

    /// Target partition name for a source partition (`None`: every partition).
    fn partition(&self, p: Option<&str>) -> String {
        if self.sh.cfg.ignore_partition || self.info.partition_key {
            return String::new();
        }
        p.unwrap_or_default().to_string()
    }

    /// The work items of one change (a source upsert whose deleted keys are not all
    /// re-inserted becomes a delete followed by an upsert).
    fn items(&self, ev: &ChangeEvent) -> Vec<Item> {
        let ts = ev.position.ts;
        let pk = self.info.pk_name.as_str();
        match &ev.op {
            Op::Insert(b) if b.num_rows > 0 => vec![Item::Rows(RowsBatch::new(
                // A snapshot read may repeat a row the stream writes again: always upsert.
                if ev.is_snapshot_read() && !self.info.auto_id {
                    WriteKind::Upsert
                } else {
                    self.insert_kind(ts)
                },
                self.partition(Some(&b.partition)),
                b.columns.clone(),
                b.num_rows,
                ts,
                pk,
            ))],
            Op::Delete(d) => self.delete_item(d, ts).into_iter().collect(),
            Op::Upsert { delete, insert } => {
                let rows = RowsBatch::new(
                    if self.info.auto_id {
                        WriteKind::Insert
                    } else {
                        WriteKind::Upsert
                    },
                    self.partition(Some(&insert.partition)),
                    insert.columns.clone(),
                    insert.num_rows,
                    ts,
                    pk,
                );
                let covered = match (&rows.keys, KeySet::of_ids(&delete.primary_keys)) {
                    (_, KeySet::None) => true,
                    (have, want) => have.contains_all(&want),
                };
                let mut out = Vec::new();
                if !covered || rows.kind == WriteKind::Insert {
                    out.extend(self.delete_item(delete, ts));
                }
                if insert.num_rows > 0 {
                    out.push(Item::Rows(rows));
                }
                out
            }
            _ => vec![],
        }
    }

    fn delete_item(&self, d: &cdc_engine::DeleteBatch, ts: u64) -> Option<Item> {
        let n = expr::ids_len(&d.primary_keys);
        (n > 0).then(|| {
            Item::Delete(DeleteBatch {
                partition: self.partition(d.partition.as_deref()),
                ids: d.primary_keys.clone(),
                rows: n,
                max_ts: ts,
                min_ts: ts,
                events: 1,
            })
        })
    }

    /// Send one batch with retries. A failed insert is retried as an upsert (when the target
    /// allows it) because the failed attempt may have been applied.
    async fn send(&self, item: Item) -> Result<(), EngineError> {
        let (db, coll) = (self.db.as_str(), self.coll.as_str());
        let c = &self.sh.client;
        match item {
            Item::Rows(b) => {
                // Milvus 2.3.5 stores an upserted row of a partition-key collection outside
                // the partition of its key (queries filtering on the key miss it), so there an
                // upsert is a delete by key followed by an insert, both in one attempt.
                let replace = if self.info.partition_key {
                    let ids = batch::pk_ids(&b.columns, &self.info.pk_name);
                    ids.and_then(|ids| expr::pk_in(&self.info.pk_name, &ids))
                        .map(Rpc::DeleteInsert)
                        .unwrap_or(Rpc::Insert)
                } else {
                    Rpc::Upsert
                };
                let first_rpc = match b.kind {
                    WriteKind::Upsert => replace.clone(),
                    WriteKind::Insert => Rpc::Insert,
                };
                // A failed insert may have been applied: retry it as a replacement.
                let retry_rpc = if self.info.auto_id {
                    first_rpc.clone()
                } else {
                    replace
                };
                self.send_rows(b, first_rpc, retry_rpc).await?;
            }
            Item::Delete(d) => {
                let Some(expr) = expr::pk_in(&self.info.pk_name, &d.ids) else {
                    return Ok(());
                };
                let req = DeleteRequest {
                    db_name: db.to_string(),
                    collection_name: coll.to_string(),
                    partition_name: d.partition.clone(),
                    expr,
                    ..Default::default()
                };
                self.sh
                    .retry(db, coll, "delete", || c.delete(db, req.clone()))
                    .await?;
                self.record("delete", d.rows, 0, d.min_ts, d.events);
            }
        }
        Ok(())
    }

    /// Send a row batch with retries; a batch the target's message queue refuses as too large
    /// ("Message size too large": Milvus 2.3 produces one message per target shard and does
    /// not split it below the broker's limit) is split in two halves, each sent the same way.
    /// The halves use the replacing RPC: the refused attempt may have reached some shards.
    fn send_rows(
        &self,
        b: RowsBatch,
        first_rpc: Rpc,
        retry_rpc: Rpc,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), EngineError>> + Send + '_>>
    {
        Box::pin(async move {
            let (db, coll) = (self.db.as_str(), self.coll.as_str());
            let op = b.kind.name();
            if b.bytes > self.sh.batch_limits().max_bytes {
                if let Some((left, right)) = split_rows(&b) {
                    self.send_rows(left, first_rpc.clone(), retry_rpc.clone())
                        .await?;
                    return self.send_rows(right, first_rpc, retry_rpc).await;
                }
            }
            let attempts = AtomicU32::new(0);
            let too_large = std::sync::atomic::AtomicBool::new(false);
            let r = self
                .sh
                .retry(db, coll, op, || {
                    let first = attempts.fetch_add(1, Ordering::Relaxed) == 0;
                    let rpc = if first { &first_rpc } else { &retry_rpc };
                    let too_large = &too_large;
                    let b = &b;
                    async move {
                        let r = self.rows_rpc(rpc, b).await;
                        if let Err(f) = &r {
                            if f.reason_contains("too large") && b.rows > 1 {
                                too_large.store(true, Ordering::Relaxed);
                            }
                        }
                        r
                    }
                })
                .await;
            match r {
                Ok(()) => {
                    self.record(op, b.rows, b.bytes, b.min_ts, b.events);
                    Ok(())
                }
                Err(e) if too_large.load(Ordering::Relaxed) => {
                    let Some((left, right)) = split_rows(&b) else {
                        return Err(e);
                    };
                    self.sh.refused_bytes(b.bytes);
                    warn!(
                        message = "Target refused a batch as too large; sending it in two halves.",
                        database = db,
                        collection = coll,
                        rows = b.rows,
                        bytes = b.bytes
                    );
                    self.send_rows(left, retry_rpc.clone(), retry_rpc.clone())
                        .await?;
                    self.send_rows(right, retry_rpc.clone(), retry_rpc).await
                }
                Err(e) => Err(e),
            }
        })
    }

    /// One attempt at writing a row batch.
    async fn rows_rpc(&self, rpc: &Rpc, b: &RowsBatch) -> Result<(), Failure> {
        let (db, coll) = (self.db.as_str(), self.coll.as_str());
        let c = &self.sh.client;
        let insert = || InsertRequest {
            db_name: db.to_string(),
            collection_name: coll.to_string(),
            partition_name: b.partition.clone(),
            fields_data: b.columns.clone(),
            num_rows: b.rows as u32,
            ..Default::default()
        };
        match rpc {
            Rpc::Insert => c.insert(db, insert()).await.map(drop),
            Rpc::Upsert => {
                let i = insert();
                let req = UpsertRequest {
                    db_name: i.db_name,
                    collection_name: i.collection_name,
                    partition_name: i.partition_name,
                    fields_data: i.fields_data,
                    num_rows: i.num_rows,
                    ..Default::default()
                };
                c.upsert(db, req).await.map(drop)
            }
            Rpc::DeleteInsert(expr) => {
                let del = DeleteRequest {
                    db_name: db.to_string(),
                    collection_name: coll.to_string(),
                    expr: expr.clone(),
                    ..Default::default()
                };
                c.delete(db, del).await?;
                c.insert(db, insert()).await.map(drop)
            }
        }
    }

    /// Count a written batch; `ts` is its oldest source timestamp (so the lag is the worst row's).
    fn record(&self, op: &str, rows: usize, bytes: usize, ts: u64, events: usize) {
        debug!(
            message = "Wrote batch to target.",
            op,
            database = %self.db,
            collection = %self.coll,
            rows,
            events
        );
        self.metrics.written(op, rows, ts);
        self.metrics
            .replicate_rows(self.source_collection_id, &self.coll, op, rows);
        self.metrics.bytes.inc_by(bytes as u64);
    }
}

/// The two halves of a row batch (`None` when it cannot be split).
fn split_rows(b: &RowsBatch) -> Option<(RowsBatch, RowsBatch)> {
    use cdc_protocol::field_data::slice_rows;
    if b.rows < 2 {
        return None;
    }
    let mid = b.rows / 2;
    let half = |range: std::ops::Range<usize>, events: usize| -> Option<RowsBatch> {
        let columns = b
            .columns
            .iter()
            .map(|c| slice_rows(c, range.clone()).ok())
            .collect::<Option<Vec<_>>>()?;
        let rows = range.len();
        Some(RowsBatch {
            kind: b.kind,
            partition: b.partition.clone(),
            bytes: b.bytes * rows / b.rows,
            columns,
            rows,
            max_ts: b.max_ts,
            min_ts: b.min_ts,
            keys: KeySet::None,
            events,
        })
    };
    Some((half(0..mid, b.events)?, half(mid..b.rows, 0)?))
}

/// How a row batch is written.
#[derive(Debug, Clone)]
enum Rpc {
    Insert,
    Upsert,
    /// Delete by the given expression, then insert.
    DeleteInsert(String),
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
