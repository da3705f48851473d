//! Initial snapshot ("snapshot + incremental"): before the change stream, copy what the source
//! already holds — databases, collections, partitions, indexes, load state and rows — so that
//! a new pipeline starts from a full copy instead of from an empty target.
//!
//! ```text
//!  open: channel positions fixed (start barrier) ─► etcd scan ─► plan (live collections)
//!  next: ── snapshot events (per collection: DDL, then pk-ordered query pages) ──►
//!        ── then the stream from the positions fixed before the copy ──►
//! ```
//!
//! * The positions of every channel are fixed in `open` before anything is read, and stored
//!   by the engine's start barrier together with one pseudo-channel per collection to copy
//!   ([`progress`]); every change after those positions is replayed after the copy. A row
//!   read by the snapshot is therefore either unchanged since the start or changed again by
//!   the stream (upserts and deletes are idempotent on the sinks), so the target converges to
//!   the source.
//! * Progress is the pseudo-channels' offsets, checkpointed with every barrier: a restart
//!   resumes each collection after its last emitted page (never from zero), and sinks skip
//!   what they already committed.
//! * Collections are copied `parallelism` at a time ([`copy`]); their events go through one
//!   bounded channel, so memory stays bounded by a few pages.
//! * `load: temporary`: a collection that is not loaded is loaded for the copy and released
//!   after; the stream's LoadCollection/ReleaseCollection of that collection between the two
//!   are dropped ([`Snapshot::suppressed`]).

pub mod config;

mod client;
mod copy;
mod progress;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use cdc_engine::{ChangeEvent, Ddl, EngineError, Offset, Op};
use cdc_state::Offsets;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use self::client::SourceClient;
use self::config::SnapshotConfig;
use self::copy::Item;
use self::progress::Progress;
use crate::config::{MilvusSourceConfig, COMPONENT};
use crate::meta::MetaCache;
use crate::metrics::SourceMetrics;

/// Widening of a temporary load's window on both sides (see [`Shared::suppress_begin`]).
const SUPPRESS_MARGIN_MS: u64 = 2000;

fn now_ms() -> u64 {
    cdc_engine::metrics::now_ms()
}

/// How often the snapshot logs its progress.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// What a copy task reports.
pub(crate) enum SnapMsg {
    /// A change to return.
    Event(Box<ChangeEvent>),
    /// The collection of that pseudo-channel is copied.
    Done { channel: Arc<str> },
    /// The copy failed.
    Failed(EngineError),
}

/// What the copy tasks share.
pub(crate) struct Shared {
    pub(crate) client: SourceClient,
    pub(crate) cfg: SnapshotConfig,
    /// Temporary loads: (collection id, from ts, until ts once released).
    suppress: Mutex<Vec<(i64, u64, Option<u64>)>>,
}

impl Shared {
    /// A temporary load of collection `id` begins now. Milvus' timestamp oracle can lag the
    /// wall clock by its update step (50 ms), so the window opens [`SUPPRESS_MARGIN_MS`]
    /// earlier and closes as much later.
    pub(crate) fn suppress_begin(&self, id: i64) {
        let from = cdc_protocol::ts::compose(now_ms().saturating_sub(SUPPRESS_MARGIN_MS), 0);
        if let Ok(mut s) = self.suppress.lock() {
            s.push((id, from, None));
        }
    }

    /// The temporary load of collection `id` was released just now.
    pub(crate) fn suppress_end(&self, id: i64) {
        let until = cdc_protocol::ts::compose(now_ms() + SUPPRESS_MARGIN_MS, 0);
        if let Ok(mut s) = self.suppress.lock() {
            for w in s.iter_mut().filter(|w| w.0 == id && w.2.is_none()) {
                w.2 = Some(until);
            }
        }
    }
}

/// Per collection rows copied and total, for progress lines.
#[derive(Debug, Clone)]
pub struct CollectionProgress {
    /// `db.collection`.
    pub name: String,
    /// Rows copied in this run.
    pub copied: u64,
    /// `count(*)` when the copy of its rows began (0 before).
    pub total: u64,
    /// Copied (in this or an earlier run).
    pub done: bool,
}

/// The snapshot of one source run.
pub(crate) struct Snapshot {
    /// Progress of every planned collection, by pseudo-channel.
    offsets: BTreeMap<String, Offset>,
    items: Vec<Item>,
    rx: Option<mpsc::Receiver<SnapMsg>>,
    task: Option<JoinHandle<()>>,
    shared: Option<Arc<Shared>>,
    started: Instant,
    last_log: Instant,
    finished: bool,
    metrics: Option<SourceMetrics>,
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// True for a pseudo-channel of this source's snapshot.
pub(crate) fn is_snapshot_channel(meta_root: &str, name: &str) -> bool {
    progress::parse_channel(meta_root, name).is_some()
}

impl Snapshot {
    /// The snapshot to run, if any: on a fresh start (`resume` empty) every live collection of
    /// `cache`; on a resume, the collections whose pseudo-channel is stored and not done.
    /// `None` when there is nothing to copy (snapshot off, or resumed after it finished).
    pub(crate) fn plan(
        cfg: &MilvusSourceConfig,
        resume: &Offsets,
        cache: &mut MetaCache,
        in_scope: &dyn Fn(&str, &str) -> bool,
    ) -> Result<Option<Self>, EngineError> {
        if !cfg.snapshot.enabled() {
            return Ok(None);
        }
        let meta_root = cfg.meta_root();
        let mut planned: Vec<(i64, Progress)> = Vec::new();
        if resume.is_empty() {
            planned = cache
                .live_collection_ids()
                .into_iter()
                .filter(|id| {
                    cache
                        .collection_names(*id)
                        .is_some_and(|(db, name)| in_scope(&db, &name))
                })
                .map(|id| (id, Progress::Planned))
                .collect();
        } else {
            for (ch, off) in resume {
                let Some(id) = progress::parse_channel(&meta_root, ch) else {
                    continue;
                };
                let p = Progress::decode(off).ok_or_else(|| {
                    EngineError::internal(
                        COMPONENT,
                        format!("stored snapshot progress of {ch} is not readable: {off:?}"),
                    )
                })?;
                planned.push((id, p));
            }
            if planned.is_empty() {
                return Ok(None);
            }
        }
        let mut items = Vec::new();
        let mut offsets = BTreeMap::new();
        for (id, p) in planned {
            let channel = progress::channel_name(&meta_root, id);
            offsets.insert(channel.clone(), p.encode());
            if p == Progress::Done {
                continue;
            }
            let (Some((db, name)), Some(def)) =
                (cache.collection_names(id), cache.collection_def(id))
            else {
                warn!(
                    message = "A collection of the snapshot no longer exists; skipped.",
                    collection_id = id
                );
                offsets.insert(channel, Progress::Done.encode());
                continue;
            };
            items.push(Item {
                id,
                db,
                name,
                def,
                partitions: cache.partitions_of(id),
                user_partitions: cache.user_partitions_of(id),
                channel: channel.into(),
                progress: p,
                copied: Arc::new(AtomicU64::new(0)),
                total: Arc::new(AtomicU64::new(0)),
            });
        }
        if !resume.is_empty() {
            info!(
                message = "Resuming the snapshot where it stood.",
                collections_left = items.len(),
                progress = ?items.iter().map(|i| format!("{}.{}: {:?}", i.db, i.name, i.progress)).collect::<Vec<_>>(),
            );
        } else {
            info!(
                message = "Snapshot planned: copying the existing collections before the stream.",
                collections = items.len()
            );
        }
        Ok(Some(Self {
            offsets,
            items,
            rx: None,
            task: None,
            shared: None,
            started: Instant::now(),
            last_log: Instant::now(),
            finished: false,
            metrics: None,
        }))
    }

    /// Connects to the source API and starts the copy tasks.
    pub(crate) async fn start(
        &mut self,
        cfg: &MilvusSourceConfig,
        metrics: SourceMetrics,
    ) -> Result<(), EngineError> {
        self.metrics = Some(metrics);
        let client = SourceClient::connect(cfg).await?;
        let shared = Arc::new(Shared {
            client,
            cfg: cfg.snapshot.clone(),
            suppress: Mutex::new(Vec::new()),
        });
        let (tx, rx) = mpsc::channel(cfg.snapshot.parallelism * 2);
        let items = self.items.clone();
        let sh = shared.clone();
        let parallelism = cfg.snapshot.parallelism;
        self.task = Some(tokio::spawn(async move {
            let sem = Arc::new(Semaphore::new(parallelism));
            let mut set = tokio::task::JoinSet::new();
            for item in items {
                let Ok(permit) = sem.clone().acquire_owned().await else {
                    return;
                };
                let (sh, tx) = (sh.clone(), tx.clone());
                set.spawn(async move {
                    copy::run(sh, item, tx).await;
                    drop(permit);
                });
            }
            drop(tx);
            while set.join_next().await.is_some() {}
        }));
        self.rx = Some(rx);
        self.shared = Some(shared);
        self.started = Instant::now();
        Ok(())
    }

    /// The progress of every planned collection (part of the source's offsets).
    pub(crate) fn offsets(&self) -> &BTreeMap<String, Offset> {
        &self.offsets
    }

    /// True once every collection is copied.
    pub(crate) fn is_finished(&self) -> bool {
        self.finished
    }

    /// The next snapshot change; `None` when the copy is complete. Cancel-safe.
    pub(crate) async fn next(&mut self) -> Result<Option<ChangeEvent>, EngineError> {
        loop {
            let Some(rx) = self.rx.as_mut() else {
                self.finished = true;
                return Ok(None);
            };
            let msg = rx.recv().await;
            match msg {
                Some(SnapMsg::Event(ev)) => {
                    self.maybe_log();
                    self.update_metrics(&ev.position.channel);
                    self.offsets
                        .insert(ev.position.channel.to_string(), ev.position.offset.clone());
                    return Ok(Some(*ev));
                }
                Some(SnapMsg::Done { channel }) => {
                    self.update_metrics(&channel);
                    self.offsets
                        .insert(channel.to_string(), Progress::Done.encode());
                }
                Some(SnapMsg::Failed(e)) => return Err(e),
                None => {
                    let rows: u64 = self
                        .items
                        .iter()
                        .map(|i| i.copied.load(Ordering::Relaxed))
                        .sum();
                    let secs = self.started.elapsed().as_secs_f64().max(0.001);
                    info!(
                        message =
                            "Snapshot complete; streaming from the positions fixed before it.",
                        collections = self.items.len(),
                        rows,
                        seconds = secs as u64,
                        rows_per_sec = (rows as f64 / secs) as u64
                    );
                    self.rx = None;
                    self.finished = true;
                    return Ok(None);
                }
            }
        }
    }

    /// Per collection progress.
    pub(crate) fn progress(&self) -> Vec<CollectionProgress> {
        self.items
            .iter()
            .map(|i| CollectionProgress {
                name: format!("{}.{}", i.db, i.name),
                copied: i.copied.load(Ordering::Relaxed),
                total: i.total.load(Ordering::Relaxed),
                done: self
                    .offsets
                    .get(&*i.channel)
                    .is_some_and(|o| Progress::decode(o) == Some(Progress::Done)),
            })
            .collect()
    }

    /// The whole snapshot's progress for the engine (`None` once it finished).
    pub(crate) fn summary(&self) -> Option<cdc_engine::SourceProgress> {
        if self.finished {
            return None;
        }
        let parts = self.progress();
        Some(cdc_engine::SourceProgress {
            phase: "snapshot",
            done: parts.iter().map(|p| p.copied).sum(),
            total: parts.iter().map(|p| p.total).sum(),
            parts_done: parts.iter().filter(|p| p.done).count(),
            parts: parts.len(),
        })
    }

    /// True for a stream LoadCollection/ReleaseCollection that the snapshot's temporary load
    /// caused (not replayed).
    pub(crate) fn suppressed(&self, ev: &ChangeEvent) -> bool {
        if !matches!(
            ev.op,
            Op::Ddl(Ddl::LoadCollection(_) | Ddl::ReleaseCollection)
        ) {
            return false;
        }
        let Some(sh) = &self.shared else { return false };
        let Ok(s) = sh.suppress.lock() else {
            return false;
        };
        s.iter().any(|(id, from, until)| {
            *id == ev.collection_id
                && ev.position.ts >= *from
                && until.is_none_or(|u| ev.position.ts <= u)
        })
    }

    fn update_metrics(&self, channel: &str) {
        let (Some(m), Some(i)) = (
            &self.metrics,
            self.items.iter().find(|i| &*i.channel == channel),
        ) else {
            return;
        };
        m.snapshot_rows(
            &format!("{}.{}", i.db, i.name),
            i.copied.load(Ordering::Relaxed),
            i.total.load(Ordering::Relaxed),
        );
    }

    /// Logs rows copied / total per collection, rate and ETA, every [`PROGRESS_EVERY`].
    fn maybe_log(&mut self) {
        if self.last_log.elapsed() < PROGRESS_EVERY {
            return;
        }
        self.last_log = Instant::now();
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let (mut copied, mut total) = (0u64, 0u64);
        let mut parts = Vec::new();
        for p in self.progress() {
            copied += p.copied;
            total += p.total;
            if !p.done && p.total > 0 {
                parts.push(format!("{} {}/{}", p.name, p.copied, p.total));
            }
        }
        let rate = copied as f64 / secs;
        let eta = if rate > 0.0 && total > copied {
            ((total - copied) as f64 / rate) as u64
        } else {
            0
        };
        info!(message = "Snapshot progress.", rows = copied, total, rows_per_sec = rate as u64,
              eta_secs = eta, collections = %parts.join(", "));
    }
}
