//! `mode: replicate`: writes to a standby target (Milvus 2.3.2+ with `common.ttMsgEnabled:
//! false`), which refuses normal inserts ("deny to write the message to mq", code 1303).
//!
//! - DML is re-encoded as `msg.InsertRequest` / `msg.DeleteRequest` with the target's
//!   collection, partition and field IDs and vchannel, and produced on the target physical
//!   channel with `ReplicateMessage`, followed by a time tick.
//! - Timestamps are strictly increasing per target channel: a message gets
//!   `max(source ts, last ts of the channel + 1, collection creation ts + 1)` (deletes),
//!   inserts one more, the pack's time tick two more.
//! - A background task sends a time tick on every known target channel every
//!   `replicate.time_tick_interval_ms` (a standby produces none itself, and cannot finish
//!   loading or answer strong-consistency queries without them).
//! - DDL goes through the normal RPCs; drops are marked `isReplicate` (see [`ddl_base`]).
//!
//! - Every produced message has its own `msgID` (see [`msg_base`]); the standby drops
//!   repeated IDs.
//!
//! DML goes through one sender task per target physical channel ([`pack`]): channels are
//! written in parallel, and the changes queued on a channel while its previous pack was in
//! flight go as one pack. DDL waits until every sender is drained.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cdc_engine::metrics::{now_ms, ComponentMetrics};
use cdc_engine::{ChangeEvent, DeliveryGuarantee, EngineError, ErrorKind, Op, Sink, SinkContext};
use cdc_protocol::common::{MsgBase, MsgType, ReplicateInfo};
use cdc_protocol::milvus::ReplicateMessageRequest;
use cdc_protocol::msg::{self, MsgPosition};
use prost::Message;
use tokio::sync::Mutex as AsyncMutex;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::ddl::{self, Shared};
use crate::meta::{CollectionInfo, MetaCache};
use crate::writer::FailSlot;

mod pack;

/// Last timestamp sent on each target physical channel; one lock per channel keeps data and
/// time ticks of a channel in timestamp order on the wire.
#[derive(Default)]
struct Channels {
    map: std::sync::Mutex<HashMap<String, Arc<AsyncMutex<u64>>>>,
    /// Where a channel's timestamps start: this host's time when the sink opened. A previous
    /// run (killed or stopped) stamped up to about its own "now", so starting here keeps the
    /// channel increasing across restarts, and a replayed change's delete (see
    /// `replay_until_ms`) lands after the copy the previous run wrote.
    floor: std::sync::atomic::AtomicU64,
}

impl Channels {
    fn get(&self, pchannel: &str) -> Arc<AsyncMutex<u64>> {
        let mut m = match self.map.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        let floor = self.floor.load(std::sync::atomic::Ordering::Relaxed);
        m.entry(pchannel.to_string())
            .or_insert_with(|| Arc::new(AsyncMutex::new(floor)))
            .clone()
    }

    fn all(&self) -> Vec<(String, Arc<AsyncMutex<u64>>)> {
        let m = match self.map.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// The base of replicated drops: `isReplicate` with `msgTimestamp` = this host's current
/// hybrid time (strictly increasing). A standby accepts unmarked DDL, but an unmarked drop
/// loops forever in its root coordinator ("deny to write the message to mq" when it broadcasts
/// the drop); a marked one leaves the broadcast to the sink ([`ReplicateSink`] sends the drop
/// messages itself). Milvus 2.3.5 requires `msgTimestamp` with `isReplicate` and reads its
/// meta at that time: a *source* timestamp, older than what the standby created itself, fails
/// with "collection not found", hence local time.
///
/// `floor` is a target timestamp the call must come after (the collection's creation time on
/// the target: the standby's own clock may run ahead of this host's).
fn ddl_base(floor: u64) -> Option<MsgBase> {
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = cdc_protocol::ts::compose(now_ms(), 0).max(floor);
    let prev = LAST
        .fetch_update(
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
            |l| Some(now.max(l + 1)),
        )
        .unwrap_or(0);
    Some(replicate_base(MsgType::Undefined, now.max(prev + 1)))
}

/// The request-level base of `ReplicateMessage` calls.
fn replicate_base(msg_type: MsgType, ts: u64) -> MsgBase {
    MsgBase {
        msg_type: msg_type as i32,
        timestamp: ts,
        source_id: -1,
        replicate_info: Some(ReplicateInfo {
            is_replicate: true,
            msg_timestamp: ts,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The base of a message produced on a target channel. Its `msgID` is its timestamp: the
/// standby's message streams drop every Insert/Delete whose `msgID` was already seen in the
/// same time-tick window ("mqTtMsgStream, found duplicated msg"), across all collections of
/// the physical channel, so a constant ID (0) silently loses rows whenever two DML messages
/// share a window (an upsert's delete and insert; packs merged after a seek or while the
/// stream catches up). Timestamps are unique per channel (deletes `ts`, inserts `ts + 1`,
/// ticks `ts + 2`; a retried pack gets new ones, see [`send_pack`]).
fn msg_base(msg_type: MsgType, ts: u64) -> Option<MsgBase> {
    Some(MsgBase {
        msg_type: msg_type as i32,
        msg_id: ts as i64,
        timestamp: ts,
        source_id: -1,
        ..Default::default()
    })
}

fn time_tick(ts: u64) -> Bytes {
    msg::TimeTickMsg {
        base: msg_base(MsgType::TimeTick, ts),
    }
    .encode_to_vec()
    .into()
}

/// Produce `build(ts, again)` (plus a time tick at `ts + span - 1`) on `pchannel` at a
/// timestamp of at least `min_ts`, strictly after everything sent there before; `build` uses
/// the timestamps `ts .. ts + span - 1`. A change's delete goes at its `ts` and its insert at
/// `ts + 1`: the standby's query nodes apply a delete to rows with a timestamp up to and
/// including its own, so an upsert's insert at the delete's timestamp would be deleted too.
///
/// A failed attempt may still have been produced, so each retry gets fresh timestamps after
/// it and `again = true`, on which `build` adds a delete of the keys it inserts: the retry
/// then replaces the rows of a copy that landed instead of doubling them.
async fn send_pack(
    sh: &Shared,
    chans: &Channels,
    pchannel: &str,
    (db, coll, op): (&str, &str, &str),
    min_ts: u64,
    span: u64,
    build: impl Fn(u64, bool) -> Vec<Bytes>,
) -> Result<u64, EngineError> {
    let lock = chans.get(pchannel);
    let mut last = lock.lock().await;
    let mut next = min_ts.max(*last + 1);
    let mut attempts = 0u32;
    let c = &sh.client;
    let res = sh
        .retry(db, coll, op, || {
            let ts = next;
            next = ts + span;
            attempts += 1;
            let mut msgs = build(ts, attempts > 1);
            let end = ts + span - 1;
            msgs.push(time_tick(end));
            let pos = MsgPosition {
                channel_name: pchannel.to_string(),
                timestamp: ts,
                ..Default::default()
            };
            let req = ReplicateMessageRequest {
                base: Some(replicate_base(MsgType::Replicate, ts)),
                channel_name: pchannel.to_string(),
                begin_ts: ts,
                end_ts: end,
                msgs,
                start_positions: vec![pos.clone()],
                end_positions: vec![pos],
            };
            async move { c.replicate_message(req).await.map(|_| ts) }
        })
        .await;
    // Whatever the outcome, the last attempt's time tick may be on the channel.
    *last = next - 1;
    res
}

/// Index in `vchannels` of the vchannel of shard `idx` (`..._{collection}v{idx}`).
fn shard_position(vchannels: &[String], idx: usize) -> Option<usize> {
    vchannels.iter().position(|v| {
        cdc_protocol::channel::parse_vchannel(v).is_ok_and(|p| p.shard as usize == idx)
    })
}

/// Writes the change stream to a standby target with `ReplicateMessage` (`mode: replicate`).
pub struct ReplicateSink {
    sh: Arc<Shared>,
    cache: MetaCache,
    partitions: HashMap<(String, String), HashMap<String, i64>>,
    chans: Arc<Channels>,
    ticker: Option<JoinHandle<()>>,
    metrics: ComponentMetrics,
    /// Inserts with a source time (ms) up to this one may have been written by a previous
    /// run: they are sent as delete + insert (see `replay_window_secs` and `write_part`).
    replay_until_ms: u64,
    /// DML senders by target physical channel.
    senders: HashMap<String, pack::Sender>,
    /// The first failure of a sender.
    failed: FailSlot,
}

impl ReplicateSink {
    pub(crate) fn new(sh: Arc<Shared>) -> Self {
        let metrics = ComponentMetrics::new("", &sh.id);
        Self {
            sh,
            cache: MetaCache::default(),
            partitions: HashMap::new(),
            chans: Arc::default(),
            ticker: None,
            metrics,
            replay_until_ms: 0,
            senders: HashMap::new(),
            failed: FailSlot::default(),
        }
    }

    fn check(&self) -> Result<(), EngineError> {
        crate::writer::check_failure(&self.failed)
    }

    /// Waits until every sender has produced and the standby acknowledged all it was given.
    async fn drain(&mut self) -> Result<(), EngineError> {
        let mut waits = Vec::with_capacity(self.senders.len());
        for s in self.senders.values() {
            if let Some(rx) = s.flush().await {
                waits.push(rx);
            }
        }
        for rx in waits {
            // A dropped answer means the sender failed; its error is in the slot.
            let _ = rx.await;
        }
        self.check()?;
        if self.senders.values().any(|s| s.is_finished()) {
            return Err(crate::writer::recorded_failure(&self.failed)
                .unwrap_or_else(|| self.err("a replicate sender stopped".to_string())));
        }
        Ok(())
    }

    fn err(&self, msg: String) -> EngineError {
        EngineError::new(&self.sh.component, ErrorKind::Write, msg)
    }

    async fn info(&mut self, ev: &ChangeEvent) -> Result<Arc<CollectionInfo>, EngineError> {
        let base = None;
        let info = ddl::ensure_collection(
            &self.sh,
            &mut self.cache,
            &ev.database,
            &ev.collection,
            ev.collection_def.as_deref(),
            base,
        )
        .await?;
        for p in &info.pchannels {
            self.chans.get(p);
        }
        Ok(info)
    }

    /// The target's creation timestamp of the event's collection (0 when none or missing).
    async fn created_ts(&mut self, ev: &ChangeEvent) -> Result<u64, EngineError> {
        if ev.collection.is_empty() {
            return Ok(0);
        }
        if let Some(i) = self.cache.get(&ev.database, &ev.collection) {
            return Ok(i.created_ts);
        }
        let (db, coll) = (ev.database.as_str(), ev.collection.as_str());
        let c = &self.sh.client;
        let d = self
            .sh
            .retry(db, coll, "describe_collection", || {
                c.describe_collection(db, coll)
            })
            .await?;
        Ok(d.map(|d| d.created_timestamp).unwrap_or(0))
    }

    /// Target partition ID of `name` (refreshed from the target when unknown).
    async fn partition_id(&mut self, db: &str, coll: &str, name: &str) -> Result<i64, EngineError> {
        let key = (db.to_string(), coll.to_string());
        if let Some(id) = self.partitions.get(&key).and_then(|m| m.get(name)) {
            return Ok(*id);
        }
        let c = &self.sh.client;
        let r = self
            .sh
            .retry(db, coll, "show_partitions", || c.show_partitions(db, coll))
            .await?;
        let m: HashMap<String, i64> = r
            .partition_names
            .into_iter()
            .zip(r.partition_i_ds)
            .collect();
        let id = m.get(name).copied();
        self.partitions.insert(key, m);
        id.ok_or_else(|| {
            self.err(format!(
                "partition {name:?} of collection {coll:?} (database {db:?}) does not exist on \
                 target {}; replicate its creation first",
                self.sh.client.uri
            ))
        })
    }

    /// Target (vchannel, pchannel) for a source shard (same shard index).
    fn route(
        &self,
        info: &CollectionInfo,
        ev: &ChangeEvent,
        shard: &str,
    ) -> Result<(String, String), EngineError> {
        let idx = cdc_protocol::channel::parse_vchannel(shard)
            .map(|v| v.shard as usize)
            .map_err(|e| {
                self.err(format!(
                    "source shard {shard:?} is not a vchannel name: {e:?}"
                ))
            })?;
        let pos = shard_position(&info.vchannels, idx)
            .filter(|p| *p < info.pchannels.len())
            .ok_or_else(|| {
                self.err(format!(
                    "collection {:?} (database {:?}) has no shard {idx} on target {} (it has {}); \
                     the target collection must have the source's shard count",
                    ev.collection,
                    ev.database,
                    self.sh.client.uri,
                    info.vchannels.len()
                ))
            })?;
        Ok((info.vchannels[pos].clone(), info.pchannels[pos].clone()))
    }

    /// Apply one DML change; a source upsert goes as one pack (delete, then insert), which
    /// needs distinct message IDs (see [`msg_base`]).
    async fn write_dml(&mut self, ev: &ChangeEvent) -> Result<(), EngineError> {
        match &ev.op {
            Op::Insert(b) => self.write_part(ev, None, Some(b)).await?,
            Op::Delete(d) => self.write_part(ev, Some(d), None).await?,
            Op::Upsert { delete, insert } => {
                self.write_part(ev, Some(delete), Some(insert)).await?
            }
            Op::Ddl(_) => return Ok(()),
        }
        Ok(())
    }

    /// Queue the deletes and/or inserts of one change on the sender of its target channel.
    async fn write_part(
        &mut self,
        ev: &ChangeEvent,
        delete: Option<&cdc_engine::DeleteBatch>,
        insert: Option<&cdc_engine::RowBatch>,
    ) -> Result<(), EngineError> {
        let info = self.info(ev).await?;
        let (db, coll) = (ev.database.as_str(), ev.collection.as_str());
        let shard = insert
            .map(|b| b.shard.as_str())
            .or(delete.map(|d| d.shard.as_str()))
            .unwrap_or_default();
        let (vch, pch) = self.route(&info, ev, shard)?;
        let del_pid = match delete.and_then(|d| d.partition.as_deref()) {
            Some(p) if !info.partition_key => self.partition_id(db, coll, p).await?,
            _ => -1,
        };
        let ins_pid = match insert {
            Some(b) => {
                let p = if b.partition.is_empty() {
                    "_default"
                } else {
                    &b.partition
                };
                self.partition_id(db, coll, p).await?
            }
            None => 0,
        };
        // Columns with the target's field IDs.
        let columns = insert.map(|b| {
            let mut cols = b.columns.clone();
            for c in &mut cols {
                if let Some(id) = info.field_ids.get(&c.field_name) {
                    c.field_id = *id;
                }
            }
            cols
        });
        // An insert that may repeat an earlier write goes after a delete of its keys, so one
        // copy of each row remains: a change a crashed previous run may already have written
        // (`replay_until_ms`), or any retry (see `send_pack`). An upsert's own delete covers
        // its keys.
        let replay = !info.created_here
            && cdc_protocol::ts::physical_ms(ev.position.ts) <= self.replay_until_ms;
        let redelete = insert
            .filter(|_| delete.is_none())
            .and_then(|b| crate::batch::pk_ids(&b.columns, &info.pk_name));
        let bytes = columns
            .as_ref()
            .map_or(0, |c| c.iter().map(Message::encoded_len).sum());
        let part = pack::Part {
            vchannel: vch,
            db: db.to_string(),
            coll: coll.to_string(),
            collection_id: info.collection_id,
            delete: delete.map(|d| pack::PartDelete {
                keys: d.primary_keys.clone(),
                partition: d.partition.clone(),
                partition_id: del_pid,
            }),
            redelete,
            replay,
            insert: insert.zip(columns).map(|(b, columns)| pack::PartInsert {
                columns,
                partition: b.partition.clone(),
                partition_id: ins_pid,
                num_rows: b.num_rows,
            }),
            min_ts: ev.position.ts.max(info.created_ts + 1),
            op: ev.op.kind(),
            rows: ev.op.rows(),
            source_ts: ev.position.ts,
            source_collection_id: ev.collection_id,
            source_collection: ev.collection.clone(),
            bytes,
        };
        self.check()?;
        let sender = match self.senders.entry(pch.clone()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(pack::Sender::spawn(
                self.sh.clone(),
                self.chans.clone(),
                pch,
                self.failed.clone(),
                self.metrics.clone(),
            )),
        };
        if !sender.send(part).await {
            self.check()?;
            return Err(self.err("a replicate sender stopped".to_string()));
        }
        Ok(())
    }

    /// Tell the standby's data and query nodes that a collection (or one of its partitions)
    /// is dropped: its root coordinator does not broadcast drops of replicated calls, so, like
    /// milvus-cdc, the sink produces a `DropCollection` (`DropPartition`) message on each of
    /// the collection's channels before the RPC.
    async fn announce_drop(
        &mut self,
        ev: &ChangeEvent,
        partition: Option<&str>,
    ) -> Result<(), EngineError> {
        let (db, coll) = (ev.database.as_str(), ev.collection.as_str());
        let c = &self.sh.client;
        let Some(d) = self
            .sh
            .retry(db, coll, "describe_collection", || {
                c.describe_collection(db, coll)
            })
            .await?
        else {
            return Ok(());
        };
        let partition_id = match partition {
            Some(p) if p != "_default" => {
                let r = self
                    .sh
                    .retry(db, coll, "show_partitions", || c.show_partitions(db, coll))
                    .await?;
                match r.partition_names.iter().position(|n| n == p) {
                    Some(i) => r.partition_i_ds.get(i).copied().unwrap_or_default(),
                    None => return Ok(()),
                }
            }
            Some(_) => return Ok(()),
            None => 0,
        };
        for pch in &d.physical_channel_names {
            let build = |ts: u64, _again: bool| {
                if let Some(p) = partition {
                    return vec![Bytes::from(
                        msg::DropPartitionRequest {
                            base: msg_base(MsgType::DropPartition, ts),
                            db_name: db.to_string(),
                            collection_name: coll.to_string(),
                            partition_name: p.to_string(),
                            collection_id: d.collection_id,
                            partition_id,
                            ..Default::default()
                        }
                        .encode_to_vec(),
                    )];
                }
                vec![Bytes::from(
                    msg::DropCollectionRequest {
                        base: msg_base(MsgType::DropCollection, ts),
                        db_name: db.to_string(),
                        collection_name: coll.to_string(),
                        collection_id: d.collection_id,
                        ..Default::default()
                    }
                    .encode_to_vec(),
                )]
            };
            let min_ts = ev.position.ts.max(d.created_timestamp + 1);
            let op = if partition.is_some() {
                "drop_partition"
            } else {
                "drop_collection"
            };
            send_pack(&self.sh, &self.chans, pch, (db, coll, op), min_ts, 3, build).await?;
        }
        Ok(())
    }

    fn start_ticker(&mut self) {
        let (sh, chans) = (self.sh.clone(), self.chans.clone());
        let every = Duration::from_millis(self.sh.cfg.replicate.time_tick_interval_ms);
        self.ticker = Some(tokio::spawn(async move {
            let mut iv = tokio::time::interval(every);
            iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                iv.tick().await;
                for (pch, lock) in chans.all() {
                    let mut last = lock.lock().await;
                    let tt = cdc_protocol::ts::compose(now_ms(), 0).max(*last + 1);
                    let req = ReplicateMessageRequest {
                        base: Some(replicate_base(MsgType::Replicate, tt)),
                        channel_name: pch.clone(),
                        begin_ts: tt,
                        end_ts: tt,
                        msgs: vec![time_tick(tt)],
                        ..Default::default()
                    };
                    match sh.client.replicate_message(req).await {
                        Ok(_) => *last = tt,
                        Err(e) => warn!(
                            message = "Time tick to standby target failed; will try again.",
                            uri = %sh.client.uri,
                            channel = %pch,
                            error = %e
                        ),
                    }
                }
            }
        }));
    }
}

#[async_trait]
impl Sink for ReplicateSink {
    fn delivery(&self) -> DeliveryGuarantee {
        // Replayed inserts go as delete + insert of their keys, deletes are idempotent and
        // DDL is check-then-act (see `replay_until_ms`).
        DeliveryGuarantee::ExactlyOnceInEffect
    }

    async fn open(&mut self, ctx: &SinkContext) -> Result<(), EngineError> {
        self.metrics = ctx.metrics.clone();
        self.replay_until_ms = now_ms() + self.sh.cfg.replay_window_secs * 1000;
        self.chans.floor.store(
            cdc_protocol::ts::compose(now_ms(), 0),
            std::sync::atomic::Ordering::Relaxed,
        );
        info!(
            message = "Milvus sink opened in replicate mode.",
            sink = %ctx.sink_id,
            uri = %self.sh.client.uri
        );
        self.start_ticker();
        Ok(())
    }

    async fn write(&mut self, event: Arc<ChangeEvent>) -> Result<(), EngineError> {
        match &event.op {
            Op::Ddl(d) => {
                // DDL after every DML before it (one global order).
                self.drain().await?;
                match d {
                    cdc_engine::Ddl::DropCollection => self.announce_drop(&event, None).await?,
                    cdc_engine::Ddl::DropPartition { partition } => {
                        self.announce_drop(&event, Some(partition)).await?
                    }
                    _ => {}
                }
                // Only drops are marked as replicated (see `ddl_base`): the standby's root
                // coordinator then leaves their broadcast to the sink. Marked creations were
                // seen to fail now and then with "collection not found".
                let base = match d {
                    cdc_engine::Ddl::DropCollection | cdc_engine::Ddl::DropPartition { .. } => {
                        let floor = self.created_ts(&event).await? + 1;
                        ddl_base(floor)
                    }
                    _ => None,
                };
                ddl::apply(&self.sh, &mut self.cache, &self.metrics, &event, d, base).await?;
                if matches!(
                    d,
                    cdc_engine::Ddl::DropCollection | cdc_engine::Ddl::DropDatabase
                ) || matches!(
                    d,
                    cdc_engine::Ddl::CreatePartition { .. } | cdc_engine::Ddl::DropPartition { .. }
                ) {
                    self.partitions
                        .remove(&(event.database.clone(), event.collection.clone()));
                }
                if let Some(info) = self.cache.get(&event.database, &event.collection) {
                    for p in &info.pchannels {
                        self.chans.get(p);
                    }
                }
                self.metrics.written(d.kind(), 0, event.position.ts);
                Ok(())
            }
            _ => self.write_dml(&event).await,
        }
    }

    async fn flush(&mut self) -> Result<(), EngineError> {
        self.drain().await
    }

    async fn close(&mut self) {
        for s in self.senders.values() {
            s.abort();
        }
        if let Some(t) = self.ticker.take() {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_map_by_index() {
        let v: Vec<String> = [
            "t-rootcoord-dml_2_9v1",
            "t-rootcoord-dml_1_9v0",
            "t-rootcoord-dml_3_9v11",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(shard_position(&v, 0), Some(1));
        assert_eq!(shard_position(&v, 1), Some(0));
        assert_eq!(shard_position(&v, 11), Some(2));
        assert_eq!(shard_position(&v, 2), None);
    }

    #[test]
    fn ddl_timestamps_increase_and_mark_replication() {
        let a = ddl_base(0).unwrap();
        let b = ddl_base(0).unwrap();
        let (ia, ib) = (a.replicate_info.unwrap(), b.replicate_info.unwrap());
        assert!(ia.is_replicate && ib.is_replicate);
        assert!(ib.msg_timestamp > ia.msg_timestamp);
        assert!(cdc_protocol::ts::physical_ms(ia.msg_timestamp) > 0);
    }

    #[test]
    fn time_tick_is_a_timetick_message() {
        let b = time_tick(42);
        let m = msg::TimeTickMsg::decode(b).unwrap();
        let base = m.base.unwrap();
        assert_eq!(base.msg_type, MsgType::TimeTick as i32);
        assert_eq!(base.timestamp, 42);
    }

    #[test]
    fn channels_start_at_the_floor_set_when_the_sink_opened() {
        let c = Channels::default();
        c.floor.store(1_000, std::sync::atomic::Ordering::Relaxed);
        let ch = c.get("t-rootcoord-dml_0");
        assert_eq!(*ch.try_lock().unwrap(), 1_000);
    }

    #[test]
    fn messages_of_a_pack_have_distinct_msg_ids() {
        // An upsert's delete (ts), insert (ts + 1) and the closing tick (ts + 2).
        let ids: Vec<i64> = [
            msg_base(MsgType::Delete, 100),
            msg_base(MsgType::Insert, 101),
            msg_base(MsgType::TimeTick, 102),
        ]
        .into_iter()
        .map(|b| b.unwrap().msg_id)
        .collect();
        assert_eq!(ids, vec![100, 101, 102]);
    }
}
