//! [`MilvusSource`]: the engine [`Source`] that reads a Milvus 2.3.2 - 2.5 source.
//!
//! ```text
//!  etcd ──scan+watch──► cache ◄─────────────────────────┐ names, definitions
//!    └── partitions, loads, collections ─┐              │
//!  dml_0 ─► reader task (decode) ─► bounded ─┤          │
//!  dml_N ─► reader task (decode) ─► bounded ─┼─► merger ─► convert ─► next()
//!  replicate ─► reader task ──────► bounded ─┘   (timestamp order, probe rounds)
//! ```
//!
//! `open` first lists the existing `{cluster}-rootcoord-dml_N` topics and fixes where each is
//! read from (the checkpoint, a user position, or `latest`/`earliest` resolved to a concrete
//! offset now), then scans etcd, and only then returns: the positions it reports are the
//! task's start, stored by the engine's start barrier before any change flows. A channel
//! whose topic does not exist yet is read from its beginning. A collection that appears in
//! etcd later on a physical channel not yet read starts a reader there at the collection's
//! start position, so its first rows are not missed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::poll_fn;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cdc_engine::metrics::ComponentMetrics;
use cdc_engine::{ChangeEvent, EngineError, Offset, Source};
use cdc_protocol::{channel, position};
use cdc_state::Offsets;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::attribution::{Attribution, Decision};
use crate::config::{MilvusSourceConfig, MqConfig, StartFrom, COMPONENT};
use crate::convert::{self, Converter, Ctx};
use crate::decode::{DecodeOptions, Payload};
use crate::input::Input;
use crate::merger::{ChannelKind, Merger, Released};
use crate::meta::load::LoadState;
use crate::meta::watcher::{self, WatchTask};
use crate::meta::{MetaCache, MetaChange};
use crate::metrics::SourceMetrics;
use crate::mq::budget::{Budget, Gate};
use crate::mq::kafka::KafkaClient;
use crate::mq::pulsar::PulsarClient;
use crate::mq::{MqClient, Resolved, StartAt, BEFORE_FIRST};
use crate::reader::{ReaderTask, TxnHold};
use crate::snapshot::{self, Snapshot};

/// Shortest time between two probe rounds while changes arrive.
const ROUND_MIN_GAP: Duration = Duration::from_millis(20);
/// Longest time between two probe rounds while changes wait (lets idle channels be seen).
const ROUND_MAX_GAP: Duration = Duration::from_millis(100);
/// A round whose probes have not all answered by then is abandoned and started again.
const ROUND_TIMEOUT: Duration = Duration::from_secs(3);
/// How long `next` sleeps when nothing arrives, before re-checking rounds and idleness.
const POLL_SLEEP: Duration = Duration::from_millis(20);
/// How long a change whose collection nobody can name yet is held (with everything after
/// it) for the etcd watch to name it, before the `on_decode_error` policy decides (see
/// [`crate::attribution`]): RootCoord writes a new collection's etcd entry milliseconds after
/// its CreateCollection message, seconds on a loaded machine.
const UNATTRIBUTED_WAIT: Duration = Duration::from_secs(10);

/// Reads change events from a source Milvus (etcd metadata plus its message queue), in
/// hybrid-timestamp order across channels. See the crate documentation.
pub struct MilvusSource {
    cfg: MilvusSourceConfig,
    metrics: ComponentMetrics,
    source_metrics: SourceMetrics,
    group: String,
    run: Option<Running>,
    /// Filters the snapshot's collections must pass (the pipeline's, before any rename).
    scope: Vec<cdc_engine::transforms::Filter>,
}

struct Chan {
    /// The reader's view of the memory budget (`None` for the etcd watch, which takes none).
    gate: Option<Arc<Gate>>,
    rx: mpsc::Receiver<Input>,
    probe: mpsc::UnboundedSender<u64>,
    task: JoinHandle<()>,
}

struct Ready {
    event: Option<ChangeEvent>,
    marks: Vec<(usize, Offset)>,
}

struct Running {
    client: Arc<dyn MqClient>,
    cache: Arc<Mutex<MetaCache>>,
    merger: Merger<Payload>,
    chans: Vec<Chan>,
    converter: Converter,
    ready: VecDeque<Ready>,
    rr: usize,
    max_pending: usize,
    /// Bytes of changes read and not released, over all channels (`max_pending_mib`).
    budget: Arc<Budget>,
    buffer: usize,
    on_decode_error: crate::config::OnDecodeError,
    decode: DecodeOptions,
    metrics: ComponentMetrics,
    source_metrics: SourceMetrics,
    cluster: String,
    /// Where each channel's reader started (the first offset it reads).
    starts: BTreeMap<String, Offset>,
    /// Holds a released group whose collection cannot be named yet.
    attribution: Attribution,
    /// How readers reconnect.
    reconnect: cdc_engine::retry::RetryPolicy,
    /// The initial snapshot, returned before any stream change (`snapshot.mode`).
    snapshot: Option<Snapshot>,
    /// `snapshot.mode: only`: the source ends after the snapshot.
    snapshot_only: bool,
}

impl Drop for Running {
    fn drop(&mut self) {
        for c in &self.chans {
            c.task.abort();
        }
    }
}

impl MilvusSource {
    /// A source for `cfg` (validated here; nothing is connected before `open`). `pipeline`
    /// labels the metrics and names the (never committed) Kafka consumer group.
    ///
    /// # Errors
    /// The errors of [`MilvusSourceConfig::validate`].
    pub fn new(cfg: MilvusSourceConfig, pipeline: &str) -> Result<Self, EngineError> {
        cfg.validate()?;
        Ok(Self {
            cfg,
            metrics: ComponentMetrics::new(pipeline, &cdc_engine::ComponentId::Source),
            source_metrics: SourceMetrics::new(pipeline),
            group: format!("milvus-cdc-{pipeline}"),
            run: None,
            scope: Vec::new(),
        })
    }

    /// The snapshot copies only collections that every filter of `scope` keeps.
    pub fn set_snapshot_scope(&mut self, scope: Vec<cdc_engine::transforms::Filter>) {
        self.scope = scope;
    }

    /// Name of the pseudo-channel of etcd partition changes: CreatePartition, and the
    /// LoadPartitions / ReleasePartitions derived from QueryCoord's load info. Checkpointed
    /// as the offset of the last delivered change.
    pub fn meta_channel_name(&self) -> String {
        format!("etcd:{}", self.cfg.meta_root())
    }

    fn is_dml(&self, name: &str) -> bool {
        channel::parse_pchannel(name).is_some_and(|(c, _)| c == self.cfg.cluster_prefix)
    }

    /// Start of a DML or replicate channel: checkpoint, else user position, else `start`.
    fn start_of(
        &self,
        name: &str,
        resume: &Offsets,
        client: &dyn MqClient,
    ) -> Result<StartAt, EngineError> {
        if let Some(o) = resume.get(name) {
            return Ok(StartAt::After(o.clone()));
        }
        let mut user: Option<Offset> = None;
        for (vchannel, text) in &self.cfg.positions {
            if channel::pchannel_of(vchannel) != Some(name) {
                continue;
            }
            let field = format!("positions.{vchannel}");
            let pos = position::decode_position_b64(text)
                .map_err(|e| EngineError::config(COMPONENT, format!("field `{field}`: {e}")))?;
            let o = client
                .offset_of_msg_id(&pos.msg_id)
                .map_err(|e| EngineError::config(COMPONENT, format!("field `{field}`: {e}")))?;
            if user.as_ref().is_none_or(|u| o < *u) {
                user = Some(o);
            }
        }
        Ok(match (user, self.cfg.start) {
            (Some(o), _) => StartAt::After(o),
            // A resumed pipeline stored every channel it read at its start; a channel without
            // a checkpoint came into being after that start, so all of it is new.
            (None, _) if !resume.is_empty() => StartAt::After(BEFORE_FIRST.to_vec()),
            (None, StartFrom::Latest) => StartAt::Latest,
            (None, StartFrom::Earliest) => StartAt::Earliest,
        })
    }

    /// The starts of `names`, resolved by the broker in parallel.
    async fn resolve_all(
        &self,
        names: impl IntoIterator<Item = String>,
        resume: &Offsets,
        client: &dyn MqClient,
    ) -> Result<Vec<(String, Resolved)>, EngineError> {
        let mut wanted = Vec::new();
        for name in names {
            let start = self.start_of(&name, resume, client)?;
            wanted.push((name, start));
        }
        futures::future::try_join_all(wanted.into_iter().map(|(name, start)| async move {
            let r = client.resolve(&name, start).await?;
            Ok::<_, EngineError>((name, r))
        }))
        .await
    }
}

/// Milliseconds between a hybrid timestamp and now.
fn lag_ms(ts: u64) -> u64 {
    cdc_engine::metrics::now_ms().saturating_sub(cdc_protocol::ts::physical_ms(ts))
}

impl Running {
    fn spawn_reader(&mut self, name: &str, kind: ChannelKind, start: Resolved) {
        let (tx, rx) = mpsc::channel(self.buffer);
        let (probe, probes) = mpsc::unbounded_channel();
        let gate = Gate::new(self.budget.clone());
        info!(message = "Reading source channel.", channel = name, start = ?start.start);
        if let StartAt::At(o) = &start.start {
            self.starts.insert(name.to_string(), o.clone());
        }
        let task = ReaderTask {
            client: self.client.clone(),
            channel: name.to_string(),
            start: start.start,
            tx,
            probes,
            on_decode_error: self.on_decode_error,
            metrics: self.metrics.clone(),
            source_metrics: self.source_metrics.clone(),
            decode: self.decode,
            hold: TxnHold::new(self.max_pending),
            reconnect: self.reconnect,
            gate: gate.clone(),
        };
        let task = tokio::spawn(task.run());
        let i = self.merger.add_channel(name, kind, Instant::now());
        if let Some(done) = start.done {
            self.merger.set_start(i, done);
        }
        self.chans.push(Chan {
            gate: Some(gate),
            rx,
            probe,
            task,
        });
    }

    /// Tells each reader whether the ordering waits on its channel (it then reads even with
    /// the memory budget spent).
    fn update_needed(&self, now: Instant) {
        for (i, c) in self.chans.iter().enumerate() {
            if let Some(g) = &c.gate {
                g.set_needed(self.merger.is_needed(i, now));
            }
        }
    }

    fn refresh_live(&mut self) -> Result<(), EngineError> {
        let live = self.lock_cache()?.live_pchannels();
        for i in 0..self.merger.len() {
            let name = self.merger.channel_name(i);
            self.merger.set_live(i, live.contains(&*name));
        }
        Ok(())
    }

    fn lock_cache(&self) -> Result<std::sync::MutexGuard<'_, MetaCache>, EngineError> {
        self.cache
            .lock()
            .map_err(|_| EngineError::internal(COMPONENT, "metadata cache lock poisoned"))
    }

    fn on_collection(&mut self, change: MetaChange) -> Result<(), EngineError> {
        if let MetaChange::Collection {
            id,
            pchannels,
            start_positions,
            live,
        } = change
        {
            for p in pchannels {
                let is_ours = channel::parse_pchannel(&p).is_some_and(|(c, _)| c == self.cluster);
                if !live || !is_ours {
                    continue;
                }
                let first = start_positions
                    .iter()
                    .find(|(k, _)| *k == p || channel::pchannel_of(k) == Some(p.as_str()))
                    .and_then(|(_, id)| self.client.offset_of_msg_id(id).ok());
                if self.merger.channel_index(&p).is_some() {
                    // Read already. Its reader started before the collection's first message,
                    // unless the collection was being created while the source opened.
                    if let (Some(first), Some(start)) = (&first, self.starts.get(&p)) {
                        if first < start {
                            self.metrics.error(cdc_engine::ErrorKind::Read);
                            warn!(
                                message = "A collection was created while the source opened; \
                                           its first messages precede the start position and \
                                           are not replicated.",
                                collection_id = id,
                                channel = %p,
                            );
                        }
                    }
                    continue;
                }
                // Not resolved here (`next` must stay cancel-safe): a checkpoint cut before
                // its first message lacks it, and a resume then reads this channel, which did
                // not exist when the source opened, from its beginning.
                let start = Resolved {
                    start: first.map_or(StartAt::After(BEFORE_FIRST.to_vec()), StartAt::At),
                    done: None,
                };
                info!(message = "New collection on an unread channel; reading it from the collection's start.", collection_id = id, channel = %p);
                self.spawn_reader(&p, ChannelKind::Dml, start);
            }
        }
        self.refresh_live()
    }

    fn poll_inputs(&mut self, cx: &mut Context<'_>, now: Instant) -> Poll<(usize, Option<Input>)> {
        let n = self.chans.len();
        for k in 0..n {
            let i = (self.rr + k) % n;
            if self.merger.pending_bytes(i) >= self.max_pending && !self.merger.is_needed(i, now) {
                continue;
            }
            if let Poll::Ready(x) = self.chans[i].rx.poll_recv(cx) {
                self.rr = i + 1;
                return Poll::Ready((i, x));
            }
        }
        Poll::Pending
    }

    fn handle(&mut self, i: usize, input: Option<Input>) -> Result<(), EngineError> {
        let now = Instant::now();
        let Some(input) = input else {
            return Err(EngineError::internal(
                COMPONENT,
                format!(
                    "the reader of channel {} stopped",
                    self.merger.channel_name(i)
                ),
            ));
        };
        match input {
            Input::Tick { offset, ts } => self.merger.tick(i, offset, ts, now),
            Input::Skipped { offset } => self.merger.skip(i, offset, now),
            Input::Change {
                offset,
                ts,
                bytes,
                pair,
                payload,
            } => {
                debug!(
                    message = "Change received.",
                    channel = %self.merger.channel_name(i),
                    lag_ms = lag_ms(ts),
                );
                self.merger.push(i, offset, ts, bytes, pair, payload, now)
            }
            Input::ProbeOk { round } => {
                let age = self.merger.round_age(now);
                self.merger.probe_ok(i, round);
                if self.merger.round_age(now).is_none() {
                    debug!(message = "Probe round answered.", round, channel = %self.merger.channel_name(i), took_ms = age.map_or(0, |a| a.as_millis() as u64));
                }
            }
            Input::Collection(change) => self.on_collection(change)?,
            // Returned: the engine counts it.
            Input::Failed(e) => return Err(e),
        }
        Ok(())
    }

    fn maybe_round(&mut self, now: Instant) {
        if self
            .merger
            .round_age(now)
            .is_some_and(|a| a > ROUND_TIMEOUT)
        {
            debug!(message = "Probe round timed out; starting another.");
            self.merger.abandon_round();
        }
        if !self.merger.wants_round(now, ROUND_MIN_GAP, ROUND_MAX_GAP) {
            return;
        }
        if let Some(req) = self.merger.start_round(now) {
            for ch in req.channels {
                // A reader that stopped reports it in-band; the round then times out.
                let _ = self.chans[ch].probe.send(req.round);
            }
        }
    }

    /// Converts the next releasable group; false when none is releasable (or the next one
    /// waits for its collection to be named).
    fn release(&mut self) -> Result<bool, EngineError> {
        let (group, since, fresh) = match self.attribution.take_held() {
            Some((g, since)) => (g, since, false),
            None => match self.merger.pop_releasable() {
                Some(g) => {
                    for r in &g {
                        if self.chans.get(r.channel).is_some_and(|c| c.gate.is_some()) {
                            self.budget.give(r.bytes);
                        }
                    }
                    (g, Instant::now(), true)
                }
                None => return Ok(false),
            },
        };
        let decision = {
            let cache = self.cache.clone();
            let cache = cache
                .lock()
                .map_err(|_| EngineError::internal(COMPONENT, "metadata cache lock poisoned"))?;
            self.attribution
                .decide(group, since, &cache, Instant::now())
        };
        let (mut group, gave_up) = match decision {
            Decision::Release(g) => (g, None),
            Decision::Hold => {
                if fresh {
                    info!(message = "Change held until the etcd watch names its collection.");
                }
                return Ok(false);
            }
            Decision::GaveUp {
                group,
                index,
                collection_id,
            } => (group, Some((index, collection_id))),
        };
        let marks: Vec<(usize, Offset)> = group
            .iter()
            .map(|r| (r.channel, r.offset.clone()))
            .collect();
        if let Some((k, id)) = gave_up {
            self.unattributed(&mut group, k, id)?;
        }
        let mut events = Vec::new();
        if let Some(first) = group.first() {
            let channel = self.merger.channel_name(first.channel);
            let cache = self.cache.clone();
            let mut cache = cache
                .lock()
                .map_err(|_| EngineError::internal(COMPONENT, "metadata cache lock poisoned"))?;
            let mut ctx = Ctx {
                channel,
                cache: &mut cache,
            };
            self.converter.convert(group, &mut ctx, &mut events)?;
        }
        let n = events.len();
        for (k, ev) in events.into_iter().enumerate() {
            let marks = if k + 1 == n {
                marks.clone()
            } else {
                Vec::new()
            };
            self.ready.push_back(Ready {
                event: Some(ev),
                marks,
            });
        }
        if n == 0 {
            self.ready.push_back(Ready { event: None, marks });
        }
        Ok(true)
    }

    /// `group[k]` is about collection `id`, which nothing names: counted, logged, then
    /// skipped (the caller still marks its offsets consumed) or, with `on_decode_error:
    /// pause`, an error that stops the pipeline.
    fn unattributed(
        &mut self,
        group: &mut Vec<Released<Payload>>,
        k: usize,
        id: i64,
    ) -> Result<(), EngineError> {
        let r = &group[k];
        let channel = self.merger.channel_name(r.channel);
        let offset = crate::decode::offset_label(&r.offset);
        let kind = r.payload.kind();
        let what = format!(
            "channel {channel} offset {offset}: a {kind} change of collection id {id} cannot be \
             attributed: neither the message nor the source's etcd metadata names its \
             collection (waited {} s; e.g. a garbage-collection message of a collection \
             removed from etcd before the task started)",
            self.attribution.wait().as_secs()
        );
        match self.on_decode_error {
            crate::config::OnDecodeError::Pause => Err(EngineError::new(
                COMPONENT,
                cdc_engine::ErrorKind::Decode,
                format!("{what}. Set `on_decode_error: skip` to skip such changes"),
            )),
            crate::config::OnDecodeError::Skip => {
                self.metrics.error(cdc_engine::ErrorKind::Decode);
                warn!(message = "Unattributed change skipped.", channel = %channel, offset, kind = %kind, collection_id = id);
                let cache = self.lock_cache()?;
                group.retain(|r| convert::unattributed(&r.payload, &cache).is_none());
                Ok(())
            }
        }
    }
}

#[async_trait]
impl Source for MilvusSource {
    async fn open(&mut self, resume: &Offsets) -> Result<(), EngineError> {
        let cfg = &self.cfg;
        let client: Arc<dyn MqClient> = match &cfg.mq {
            MqConfig::Kafka(k) => Arc::new(KafkaClient::new(k, &self.group)),
            MqConfig::Pulsar(p) => Arc::new(PulsarClient::new(p, &self.group)),
        };
        let replicate = cfg.replicate_channel_name();
        let meta_channel = self.meta_channel_name();

        // 1. Fix the start of every channel that exists now, before the metadata is read: a
        //    collection that the scan below misses wrote its first messages after these.
        let topics = client.list_channels().await?;
        let mut dml: BTreeSet<String> = topics.into_iter().filter(|t| self.is_dml(t)).collect();
        dml.extend(
            resume
                .keys()
                .filter(|k| {
                    **k != replicate
                        && **k != meta_channel
                        && !snapshot::is_snapshot_channel(&cfg.meta_root(), k)
                })
                .cloned(),
        );
        for v in cfg.positions.keys() {
            if let Some(p) = channel::pchannel_of(v) {
                dml.insert(p.to_string());
            }
        }
        let mut starts = self
            .resolve_all(
                dml.iter().cloned().chain([replicate.clone()]),
                resume,
                client.as_ref(),
            )
            .await?;

        // 2. The metadata; channels of live collections whose topic did not exist in step 1
        //    are read from their beginning (everything in them is newer than the start).
        let meta_root = cfg.meta_root();
        let mut etcd = watcher::connect(&cfg.etcd).await?;
        let mut cache = MetaCache::default();
        let mut loads = LoadState::default();
        let revision =
            watcher::scan(&mut etcd, &meta_root, &mut cache, &mut loads, &self.metrics).await?;
        let scope = &self.scope;
        let in_scope = |db: &str, coll: &str| scope.iter().all(|f| f.accepts(db, Some(coll)));
        let mut snap = Snapshot::plan(cfg, resume, &mut cache, &in_scope)?;
        if let Some(s) = snap.as_mut() {
            s.start(cfg, self.source_metrics.clone()).await?;
        }
        let late: Vec<String> = cache
            .live_pchannels()
            .into_iter()
            .filter(|p| self.is_dml(p) && !dml.contains(p))
            .collect();
        for p in late {
            let start = match resume.get(&p) {
                Some(o) => StartAt::After(o.clone()),
                None => StartAt::After(BEFORE_FIRST.to_vec()),
            };
            starts.push((p.clone(), client.resolve(&p, start).await?));
            dml.insert(p);
        }

        let replay_partitions = !resume.is_empty() || cfg.start == StartFrom::Earliest;
        // Partition creations are replayed from etcd on resume, except those at or before
        // the committed position of the etcd pseudo-channel (already written by every sink).
        let meta_done = resume.get(&meta_channel);
        let partitions = if replay_partitions {
            cache
                .user_partitions()
                .into_iter()
                .filter(|c| match (c, meta_done) {
                    (
                        MetaChange::PartitionCreated {
                            partition_id, ts, ..
                        },
                        Some(done),
                    ) => watcher::partition_offset(*ts, *partition_id) > *done,
                    _ => true,
                })
                .collect()
        } else {
            Vec::new()
        };
        // Aliases set after the committed position are replayed the same way (as creations:
        // the sink converges, see `meta::alias`).
        let aliases = if replay_partitions {
            crate::meta::alias::replay(&cache.aliases, meta_done)
        } else {
            Vec::new()
        };
        // Access control (when asked for): the whole state on every open, see `meta::rbac`.
        let rbac = if cfg.enable_user_role {
            crate::meta::rbac::replay(&cache.rbac, meta_done)
        } else {
            Vec::new()
        };
        // The pseudo-channel's start: on a fresh `latest` start the partitions that exist
        // now are part of the past; on a resume, its checkpoint.
        let meta_start = match (meta_done, cfg.start) {
            (Some(done), _) => Some(done.clone()),
            (None, _) if !resume.is_empty() => None,
            (None, StartFrom::Earliest) => Some(BEFORE_FIRST.to_vec()),
            (None, StartFrom::Latest) => Some(
                cache
                    .user_partitions()
                    .iter()
                    .filter_map(|c| match c {
                        MetaChange::PartitionCreated {
                            partition_id, ts, ..
                        } => Some(watcher::partition_offset(*ts, *partition_id)),
                        MetaChange::Collection { .. } => None,
                    })
                    .max()
                    .unwrap_or_default(),
            ),
        };

        let mut run = Running {
            client: client.clone(),
            cache: Arc::new(Mutex::new(cache)),
            merger: Merger::new(Duration::from_millis(cfg.idle_channel_ms)),
            chans: Vec::new(),
            converter: Converter::new(cfg.enable_user_role),
            ready: VecDeque::new(),
            rr: 0,
            max_pending: cfg.max_pending_mib.saturating_mul(1 << 20),
            budget: Budget::new(
                cfg.max_pending_mib.saturating_mul(1 << 20),
                self.source_metrics.pipeline(),
            ),
            buffer: cfg.channel_buffer,
            on_decode_error: cfg.on_decode_error,
            decode: DecodeOptions {
                skip_replicated: cfg.skip_replicated,
            },
            metrics: self.metrics.clone(),
            source_metrics: self.source_metrics.clone(),
            cluster: cfg.cluster_prefix.clone(),
            starts: BTreeMap::new(),
            attribution: Attribution::new(UNATTRIBUTED_WAIT),
            reconnect: cfg.reconnect.policy(),
            snapshot: snap,
            snapshot_only: cfg.snapshot.mode == crate::config::SnapshotMode::Only,
        };

        // The etcd watch is channel 0.
        let (tx, rx) = mpsc::channel(cfg.channel_buffer);
        let (probe, probes) = mpsc::unbounded_channel();
        let watch = WatchTask {
            client: etcd,
            meta_root,
            from_revision: revision + 1,
            etcd: cfg.etcd.clone(),
            reconnect: cfg.reconnect.policy(),
            pipeline: self.source_metrics.pipeline().to_string(),
            cache: run.cache.clone(),
            loads,
            last_load_ts: 0,
            held: Default::default(),
            tx,
            probes,
            metrics: self.metrics.clone(),
        };
        let task = tokio::spawn(watch.run());
        let meta_idx = run
            .merger
            .add_channel(&meta_channel, ChannelKind::Meta, Instant::now());
        if let Some(done) = meta_start {
            run.merger.set_start(meta_idx, done);
        }
        run.chans.push(Chan {
            gate: None,
            rx,
            probe,
            task,
        });

        for (name, start) in starts {
            let kind = if name == replicate {
                ChannelKind::Replicate
            } else {
                ChannelKind::Dml
            };
            run.spawn_reader(&name, kind, start);
        }
        run.refresh_live()?;
        let now = Instant::now();
        for change in partitions {
            if let Input::Change {
                offset,
                ts,
                bytes,
                pair,
                payload,
            } = watcher::change_input(change)
            {
                run.merger
                    .push(meta_idx, offset, ts, bytes, pair, payload, now);
            }
        }
        for input in aliases.into_iter().chain(rbac) {
            if let Input::Change {
                offset,
                ts,
                bytes,
                pair,
                payload,
            } = input
            {
                run.merger
                    .push(meta_idx, offset, ts, bytes, pair, payload, now);
            }
        }
        info!(
            message = "Milvus source opened.",
            dml_channels = dml.len(),
            replicate_channel = %replicate,
            start = ?self.cfg.start,
            resumed_channels = resume.len(),
        );
        self.run = Some(run);
        Ok(())
    }

    async fn next(&mut self) -> Result<Option<ChangeEvent>, EngineError> {
        let run = self
            .run
            .as_mut()
            .ok_or_else(|| EngineError::internal(COMPONENT, "next() called before open()"))?;
        if let Some(snap) = run.snapshot.as_mut().filter(|s| !s.is_finished()) {
            if let Some(ev) = snap.next().await? {
                return Ok(Some(ev));
            }
        }
        if run.snapshot_only {
            return Ok(None);
        }
        loop {
            if let Some(ready) = run.ready.pop_front() {
                for (ch, offset) in &ready.marks {
                    run.merger.delivered(*ch, offset);
                }
                match ready.event {
                    Some(ev) if run.snapshot.as_ref().is_some_and(|s| s.suppressed(&ev)) => {
                        info!(
                            message = "Skipped the snapshot's own temporary load/release.",
                            collection = %ev.collection,
                            kind = ev.op.kind(),
                        );
                        continue;
                    }
                    Some(ev) => {
                        debug!(
                            message = "Change released.",
                            channel = %ev.position.channel,
                            kind = ev.op.kind(),
                            lag_ms = lag_ms(ev.position.ts),
                        );
                        return Ok(Some(ev));
                    }
                    None => continue,
                }
            }
            if run.release()? {
                continue;
            }
            let now = Instant::now();
            run.maybe_round(now);
            run.update_needed(now);
            let input = tokio::select! {
                x = poll_fn(|cx| run.poll_inputs(cx, now)) => Some(x),
                _ = tokio::time::sleep(POLL_SLEEP) => None,
            };
            if let Some((i, input)) = input {
                run.handle(i, input)?;
                // Drain what is already buffered before the next release check.
                let now = Instant::now();
                for _ in 0..256 {
                    let polled = poll_fn(|cx| Poll::Ready(run.poll_inputs(cx, now))).await;
                    match polled {
                        Poll::Ready((i, input)) => run.handle(i, input)?,
                        Poll::Pending => break,
                    }
                }
            }
        }
    }

    fn offsets(&self) -> Offsets {
        let Some(r) = self.run.as_ref() else {
            return Offsets::default();
        };
        let mut o = r.merger.offsets();
        if let Some(s) = &r.snapshot {
            o.extend(s.offsets().iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        o
    }

    fn progress(&self) -> Option<cdc_engine::SourceProgress> {
        self.run.as_ref()?.snapshot.as_ref()?.summary()
    }

    async fn close(&mut self) {
        if let Some(run) = self.run.take() {
            for c in &run.chans {
                c.task.abort();
            }
        }
    }
}
