//! The DML path of `mode: replicate`: one sender task per target physical channel.
//!
//! [`super::ReplicateSink::write`] turns each change into a [`Part`] (target IDs resolved,
//! columns re-labelled) and queues it on the sender of its target channel; it waits only
//! when that queue is full (`queue_capacity`). A sender takes every part queued behind the one
//! it was sending, up to `batch.max_rows` rows / `batch.max_bytes` bytes, and produces them as
//! one `ReplicateMessage` pack (each part keeps its own messages and timestamps; one time tick
//! closes the pack). Channels are written in parallel; within a channel, parts keep their
//! order. Before, every change waited for its own round trip, one channel after another
//! (README "Benchmarks").
//!
//! `flush` (and every DDL) waits until each sender has sent and the standby acknowledged all
//! it was given. The first failure stops the sink (reported by the next `write` or `flush`).

use std::sync::Arc;

use bytes::Bytes;
use cdc_engine::metrics::ComponentMetrics;
use cdc_engine::EngineError;
use cdc_protocol::common::MsgType;
use cdc_protocol::msg::{self, InsertDataVersion};
use cdc_protocol::schema::{FieldData, IDs};
use prost::Message;
use tokio::sync::{mpsc, oneshot};

use super::{msg_base, send_pack, Channels};
use crate::ddl::Shared;
use crate::writer::{record_failure, FailSlot};

/// The delete of a part.
pub(crate) struct PartDelete {
    pub keys: IDs,
    pub partition: Option<String>,
    pub partition_id: i64,
}

/// The insert of a part.
pub(crate) struct PartInsert {
    pub columns: Vec<FieldData>,
    pub partition: String,
    pub partition_id: i64,
    pub num_rows: usize,
}

/// One change, ready to be stamped and produced on its target channel.
pub(crate) struct Part {
    pub vchannel: String,
    pub db: String,
    pub coll: String,
    pub collection_id: i64,
    pub delete: Option<PartDelete>,
    /// Keys deleted before the insert when the change may repeat an earlier write (replay
    /// window) or the pack is sent again (see [`send_pack`]).
    pub redelete: Option<IDs>,
    pub replay: bool,
    pub insert: Option<PartInsert>,
    /// The part's timestamps are at least this.
    pub min_ts: u64,
    /// For the metrics once written.
    pub op: &'static str,
    pub rows: usize,
    pub source_ts: u64,
    pub source_collection_id: i64,
    pub source_collection: String,
    /// Protobuf size of the insert columns.
    pub bytes: usize,
}

impl Part {
    /// Timestamps a part uses: its delete at `ts`, its insert at `ts + 1` (the standby's
    /// query nodes apply a delete to rows up to and including its timestamp).
    const SPAN: u64 = 2;

    /// Appends the messages of this part stamped from `ts`.
    fn messages(&self, ts: u64, again: bool, out: &mut Vec<Bytes>) {
        let del = match &self.delete {
            Some(d) => Some((&d.keys, d.partition.clone(), d.partition_id)),
            None if self.replay || again => self.redelete.as_ref().map(|k| (k, None, -1)),
            None => None,
        };
        if let Some((keys, partition, partition_id)) = del {
            let n = crate::expr::ids_len(keys);
            if n > 0 {
                out.push(Bytes::from(
                    msg::DeleteRequest {
                        base: msg_base(MsgType::Delete, ts),
                        shard_name: self.vchannel.clone(),
                        db_name: self.db.clone(),
                        collection_name: self.coll.clone(),
                        partition_name: partition.unwrap_or_default(),
                        collection_id: self.collection_id,
                        partition_id,
                        timestamps: vec![ts; n],
                        num_rows: n as i64,
                        primary_keys: Some(keys.clone()),
                        ..Default::default()
                    }
                    .encode_to_vec(),
                ));
            }
        }
        if let Some(b) = self.insert.as_ref().filter(|b| b.num_rows > 0) {
            let n = b.num_rows;
            out.push(Bytes::from(
                msg::InsertRequest {
                    base: msg_base(MsgType::Insert, ts + 1),
                    shard_name: self.vchannel.clone(),
                    db_name: self.db.clone(),
                    collection_name: self.coll.clone(),
                    partition_name: b.partition.clone(),
                    collection_id: self.collection_id,
                    partition_id: b.partition_id,
                    timestamps: vec![ts + 1; n],
                    // Row IDs are internal to Milvus; any unique values do.
                    row_i_ds: (0..n as i64)
                        .map(|i| (ts as i64 + 1).wrapping_add(i))
                        .collect(),
                    fields_data: b.columns.clone(),
                    num_rows: n as u64,
                    version: InsertDataVersion::ColumnBased as i32,
                    ..Default::default()
                }
                .encode_to_vec(),
            ));
        }
    }
}

/// The messages of `parts` stamped from `ts` (part `i` from `ts + 2i`); the pack's time tick
/// follows at `ts + span - 1`.
pub(crate) fn pack_messages(parts: &[Part], ts: u64, again: bool) -> Vec<Bytes> {
    let mut out = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        p.messages(ts + Part::SPAN * i as u64, again, &mut out);
    }
    out
}

/// Timestamps a pack of `n` parts uses, its time tick included.
pub(crate) fn pack_span(n: usize) -> u64 {
    Part::SPAN * n as u64 + 1
}

enum Job {
    Part(Box<Part>),
    Flush(oneshot::Sender<()>),
}

/// The sender of one target channel.
pub(crate) struct Sender {
    tx: mpsc::Sender<Job>,
    join: tokio::task::JoinHandle<()>,
}

impl Sender {
    /// Starts the sender of `pchannel`.
    pub(crate) fn spawn(
        sh: Arc<Shared>,
        chans: Arc<Channels>,
        pchannel: String,
        failed: FailSlot,
        metrics: ComponentMetrics,
    ) -> Self {
        let (tx, rx) = mpsc::channel(sh.cfg.queue_capacity.max(1));
        let join = tokio::spawn(run(sh, chans, pchannel, rx, failed, metrics));
        Self { tx, join }
    }

    /// Queues a part; false when the sender stopped (its failure is in the slot).
    pub(crate) async fn send(&self, part: Part) -> bool {
        self.tx.send(Job::Part(Box::new(part))).await.is_ok()
    }

    /// Asks for an answer once everything queued before is acknowledged.
    pub(crate) async fn flush(&self) -> Option<oneshot::Receiver<()>> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Job::Flush(tx)).await.ok().map(|_| rx)
    }

    /// Whether the task ended (after a failure).
    pub(crate) fn is_finished(&self) -> bool {
        self.join.is_finished()
    }

    /// Stops the task.
    pub(crate) fn abort(&self) {
        self.join.abort();
    }
}

async fn run(
    sh: Arc<Shared>,
    chans: Arc<Channels>,
    pchannel: String,
    mut rx: mpsc::Receiver<Job>,
    failed: FailSlot,
    metrics: ComponentMetrics,
) {
    let (max_rows, max_bytes) = (sh.cfg.batch.max_rows, sh.cfg.batch.max_bytes);
    let mut carry: Option<Job> = None;
    loop {
        let first = match carry.take() {
            Some(j) => j,
            None => match rx.recv().await {
                Some(j) => j,
                None => return,
            },
        };
        let mut parts: Vec<Part> = Vec::new();
        let mut flushes = Vec::new();
        let (mut rows, mut bytes) = (0usize, 0usize);
        let mut job = Some(first);
        while let Some(j) = job.take() {
            match j {
                Job::Flush(f) => {
                    flushes.push(f);
                    break;
                }
                Job::Part(p) => {
                    if !parts.is_empty()
                        && (rows + p.rows > max_rows || bytes + p.bytes > max_bytes)
                    {
                        carry = Some(Job::Part(p));
                        break;
                    }
                    rows += p.rows;
                    bytes += p.bytes;
                    parts.push(*p);
                }
            }
            job = rx.try_recv().ok();
        }
        if !parts.is_empty() {
            if let Err(e) = send_parts(&sh, &chans, &pchannel, &parts).await {
                record_failure(&failed, e);
                return;
            }
            for p in &parts {
                metrics.written(p.op, p.rows, p.source_ts);
                metrics.replicate_rows(p.source_collection_id, &p.source_collection, p.op, p.rows);
            }
        }
        for f in flushes {
            let _ = f.send(());
        }
    }
}

async fn send_parts(
    sh: &Shared,
    chans: &Channels,
    pchannel: &str,
    parts: &[Part],
) -> Result<(), EngineError> {
    let first = &parts[0];
    let min_ts = parts.iter().map(|p| p.min_ts).max().unwrap_or(0);
    let span = pack_span(parts.len());
    let labels = (first.db.as_str(), first.coll.as_str(), first.op);
    send_pack(sh, chans, pchannel, labels, min_ts, span, |ts, again| {
        pack_messages(parts, ts, again)
    })
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdc_protocol::schema::i_ds::IdField;
    use cdc_protocol::schema::LongArray;

    fn part(keys: Vec<i64>, upsert: bool) -> Part {
        let ids = IDs {
            id_field: Some(IdField::IntId(LongArray { data: keys.clone() })),
        };
        Part {
            vchannel: "t-rootcoord-dml_0_9v0".into(),
            db: "default".into(),
            coll: "c".into(),
            collection_id: 9,
            delete: upsert.then(|| PartDelete {
                keys: ids.clone(),
                partition: None,
                partition_id: -1,
            }),
            redelete: Some(ids),
            replay: false,
            insert: Some(PartInsert {
                columns: Vec::new(),
                partition: "_default".into(),
                partition_id: 1,
                num_rows: keys.len(),
            }),
            min_ts: 0,
            op: if upsert { "upsert" } else { "insert" },
            rows: keys.len(),
            source_ts: 0,
            source_collection_id: 9,
            source_collection: "c".into(),
            bytes: 0,
        }
    }

    /// (msg type, timestamp) of each message.
    fn stamps(msgs: &[Bytes]) -> Vec<(i32, u64)> {
        msgs.iter()
            .map(|b| {
                let h = cdc_protocol::common::MsgHeader::decode(b.clone()).unwrap();
                let base = h.base.unwrap();
                assert_eq!(base.msg_id, base.timestamp as i64, "msgID is the timestamp");
                (base.msg_type, base.timestamp)
            })
            .collect()
    }

    #[test]
    fn parts_of_a_pack_get_increasing_distinct_timestamps_before_its_tick() {
        let parts = vec![
            part(vec![1, 2], true),
            part(vec![3], false),
            part(vec![4], true),
        ];
        let (d, i) = (MsgType::Delete as i32, MsgType::Insert as i32);
        assert_eq!(
            stamps(&pack_messages(&parts, 100, false)),
            vec![(d, 100), (i, 101), (i, 103), (d, 104), (i, 105)]
        );
        assert_eq!(pack_span(parts.len()), 7, "the tick goes at 106");
        // Sent again: the plain insert deletes its keys first.
        assert_eq!(
            stamps(&pack_messages(&parts, 200, true)),
            vec![(d, 200), (i, 201), (d, 202), (i, 203), (d, 204), (i, 205)]
        );
    }
}
