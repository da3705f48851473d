//! Runs a pipeline: a source (with its fused operators) feeding every sink through bounded
//! channels, with checkpoint barriers flowing in-band.
//!
//! ```text
//!  source ─► operators ─►┬─ bounded ─► sink A ── flush ─► commit A's offsets ─► A.commit()
//!                        └─ bounded ─► sink B ── flush ─► commit B's offsets ─► B.commit()
//! ```
//!
//! * Every `checkpoint_interval` the source task asks the source for its offsets and sends a
//!   [`Barrier`] after the changes they cover. Each sink, on receiving it, flushes, stores the
//!   barrier's offsets as its own checkpoint and then commits. Sinks therefore keep separate
//!   positions: one sink being down or slow never loses another's progress.
//! * On start, each channel resumes after the smallest offset any sink committed; a sink skips
//!   the changes at or before its own committed offset, so none is written twice by the engine.
//! * Two-phase-commit sinks (exactly-once) get the barrier's offsets in `pre_commit` before
//!   `flush` and publish them with their output in `commit`; on start the engine asks them for
//!   that checkpoint (`committed_checkpoint`) and prefers it over the state store's, which may
//!   be one epoch ahead after a crash between the two commits.
//! * A full sink channel blocks the source (backpressure): memory stays bounded by the channel
//!   capacities.
//! * Start: right after the source opened (its start positions resolved to concrete offsets),
//!   the source task cuts a *start barrier* at once. When every sink committed it, the start is
//!   stored ([`RunningPipeline::wait_started`] returns): a crash from then on resumes there,
//!   and changes made after that moment are never behind the start. Without it, a crash
//!   before the first periodic checkpoint would restart from `latest` again and skip what
//!   came in between.
//! * Stop: the source cuts a final barrier, sinks flush and commit it, then the pipeline ends.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cdc_state::{Offsets, StateStore};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::component::{ComponentId, Operator, Sink, SinkContext, Source, SourceProgress};
use crate::error::EngineError;
use crate::event::ChangeEvent;
use crate::metrics::ComponentMetrics;

/// How long the other components get to finish after one failed, before they are aborted.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A checkpoint barrier: every change sent before it is covered by `offsets`.
#[derive(Debug, Clone)]
pub struct Barrier {
    /// Increasing checkpoint number.
    pub epoch: u64,
    /// Source offsets (per channel) that the changes before the barrier reach.
    pub offsets: Arc<Offsets>,
    /// The pipeline stops after this barrier.
    pub then_stop: bool,
}

/// What flows from the source to the sinks.
#[derive(Debug, Clone)]
pub enum Message {
    /// A change.
    Change(Arc<ChangeEvent>),
    /// A checkpoint barrier.
    Barrier(Barrier),
}

/// Tuning of a pipeline run.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// How often a checkpoint is cut.
    pub checkpoint_interval: Duration,
    /// Capacity (in changes) of each channel between source and a sink.
    pub channel_capacity: usize,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        Self {
            checkpoint_interval: Duration::from_secs(1),
            channel_capacity: 16,
        }
    }
}

/// A pipeline ready to run.
pub struct Pipeline {
    /// Name, also the key of its checkpoints in the state store.
    pub name: String,
    /// Where changes come from.
    pub source: Box<dyn Source>,
    /// Transforms applied in order.
    pub operators: Vec<Box<dyn Operator>>,
    /// Sinks by id; every sink receives every change.
    pub sinks: Vec<(String, Box<dyn Sink>)>,
    /// Tuning.
    pub options: PipelineOptions,
}

/// Live counters of a running pipeline, for progress lines and the task API.
#[derive(Debug, Default)]
pub struct PipelineStatus {
    /// Changes read from the source.
    pub events_read: AtomicU64,
    /// Rows in the changes read.
    pub rows_read: AtomicU64,
    /// Hybrid timestamp of the last change read.
    pub last_read_ts: AtomicU64,
    /// Last epoch committed by every sink.
    pub committed_epoch: AtomicU64,
    committed: Mutex<BTreeMap<String, Offsets>>,
    progress: Mutex<Option<SourceProgress>>,
}

impl PipelineStatus {
    /// The source's progress through a bounded phase (snapshot), as of the last checkpoint
    /// tick; `None` when there is none.
    pub fn progress(&self) -> Option<SourceProgress> {
        self.progress.lock().ok().and_then(|p| p.clone())
    }

    fn set_progress(&self, p: Option<SourceProgress>) {
        if let Ok(mut g) = self.progress.lock() {
            *g = p;
        }
    }

    /// The last committed offsets of each sink.
    pub fn committed_offsets(&self) -> BTreeMap<String, Offsets> {
        self.committed.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

/// Whether the pipeline's start positions are stored yet.
#[derive(Debug, Clone)]
enum StartState {
    /// Sinks and source are opening, or the start barrier is not committed by every sink yet.
    Pending,
    /// Every sink committed the start barrier.
    Stored,
    /// The pipeline ended before that, with this error (or `None`: it ended cleanly).
    Ended(Option<EngineError>),
}

/// Counts the sinks that committed the start barrier and announces when all did.
struct StartTracker {
    epoch: AtomicU64,
    remaining: std::sync::atomic::AtomicUsize,
    tx: watch::Sender<StartState>,
}

impl StartTracker {
    fn committed(&self, epoch: u64) {
        if epoch != self.epoch.load(Ordering::Relaxed) {
            return;
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            info!(
                message = "Start positions stored; a restart resumes from here.",
                epoch
            );
            self.tx.send_replace(StartState::Stored);
        }
    }

    fn ended(&self, result: &Result<(), EngineError>) {
        self.tx.send_if_modified(|s| {
            if matches!(s, StartState::Pending) {
                *s = StartState::Ended(result.as_ref().err().cloned());
                true
            } else {
                false
            }
        });
    }
}

/// Handle on a running pipeline.
pub struct RunningPipeline {
    stop: CancellationToken,
    /// Live counters.
    pub status: Arc<PipelineStatus>,
    started: watch::Receiver<StartState>,
    join: tokio::task::JoinHandle<Result<(), EngineError>>,
}

impl RunningPipeline {
    /// Ask the pipeline to stop after a final checkpoint.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Wait until the pipeline's start is stored: every sink opened and committed the start
    /// barrier (the source's positions right after it opened). From then on a restart resumes
    /// at or before those positions, so every change made after this returns is replicated.
    ///
    /// # Errors
    /// The pipeline ended before that: the error that ended it (a clean end before the start
    /// was stored is reported as an internal error).
    pub async fn wait_started(&self) -> Result<(), EngineError> {
        let mut rx = self.started.clone();
        let state = rx
            .wait_for(|s| !matches!(s, StartState::Pending))
            .await
            .map(|s| s.clone())
            .unwrap_or(StartState::Ended(None));
        match state {
            StartState::Stored => Ok(()),
            StartState::Ended(Some(e)) => Err(e),
            StartState::Ended(None) | StartState::Pending => Err(EngineError::internal(
                "pipeline",
                "the pipeline ended before its start positions were stored",
            )),
        }
    }

    /// True once the pipeline has ended (stopped or failed).
    pub fn is_finished(&self) -> bool {
        self.join.is_finished()
    }

    /// Wait for the end; the error is the first failure of any component.
    pub async fn join(self) -> Result<(), EngineError> {
        match self.join.await {
            Ok(r) => r,
            Err(e) => Err(EngineError::internal(
                "pipeline",
                format!("pipeline task ended abnormally: {e}"),
            )),
        }
    }
}

impl Pipeline {
    /// Start the pipeline on the current tokio runtime.
    pub fn spawn(self, store: Arc<dyn StateStore>) -> RunningPipeline {
        let stop = CancellationToken::new();
        let status = Arc::new(PipelineStatus::default());
        let (tx, started) = watch::channel(StartState::Pending);
        let join = tokio::spawn(run(self, store, stop.clone(), status.clone(), tx));
        RunningPipeline {
            stop,
            status,
            started,
            join,
        }
    }

    /// Run to completion (until `stop` is cancelled, the source ends, or a component fails).
    pub async fn run(
        self,
        store: Arc<dyn StateStore>,
        stop: CancellationToken,
    ) -> Result<(), EngineError> {
        let (tx, _) = watch::channel(StartState::Pending);
        run(self, store, stop, Arc::new(PipelineStatus::default()), tx).await
    }
}

/// Per channel, the smallest offset committed by any sink that has one.
fn resume_offsets(checkpoints: &[Offsets]) -> Offsets {
    let mut out = Offsets::new();
    for cp in checkpoints {
        for (ch, off) in cp {
            out.entry(ch.clone())
                .and_modify(|cur| {
                    if off < cur {
                        *cur = off.clone();
                    }
                })
                .or_insert_with(|| off.clone());
        }
    }
    out
}

async fn run(
    p: Pipeline,
    store: Arc<dyn StateStore>,
    stop: CancellationToken,
    status: Arc<PipelineStatus>,
    started: watch::Sender<StartState>,
) -> Result<(), EngineError> {
    let tracker = Arc::new(StartTracker {
        epoch: AtomicU64::new(0),
        remaining: std::sync::atomic::AtomicUsize::new(p.sinks.len()),
        tx: started,
    });
    let result = run_pipeline(p, store, stop, status, tracker.clone()).await;
    tracker.ended(&result);
    result
}

async fn run_pipeline(
    p: Pipeline,
    store: Arc<dyn StateStore>,
    stop: CancellationToken,
    status: Arc<PipelineStatus>,
    tracker: Arc<StartTracker>,
) -> Result<(), EngineError> {
    let Pipeline {
        name,
        mut source,
        mut operators,
        sinks,
        options,
    } = p;
    if sinks.is_empty() {
        return Err(EngineError::config(
            "pipeline",
            "a pipeline needs at least one sink",
        ));
    }

    // Load every sink's checkpoint (blocking I/O off the runtime threads).
    let mut checkpoints = Vec::new();
    let sink_ids: Vec<String> = sinks.iter().map(|(id, _)| id.clone()).collect();
    for sid in sink_ids {
        let (st, pipe) = (store.clone(), name.clone());
        let cp = tokio::task::spawn_blocking(move || st.load(&pipe, &sid))
            .await
            .map_err(|e| EngineError::internal("state", e.to_string()))??;
        checkpoints.push(cp);
    }
    // Epochs keep increasing past every checkpoint ever stored.
    let mut first_epoch = checkpoints.iter().map(|c| c.epoch).max().unwrap_or(0) + 1;
    let mut sink_tasks = Vec::new();
    info!(
        message = "Starting pipeline.",
        pipeline = %name,
        sinks = sinks.len()
    );

    // Sinks first, so a sink that cannot connect fails the start before the source reads.
    let mut tasks: JoinSet<Result<(), EngineError>> = JoinSet::new();
    let mut senders = Vec::new();
    let mut resume_from = Vec::new();
    for ((id, mut sink), mut cp) in sinks.into_iter().zip(checkpoints) {
        let mut ctx = SinkContext {
            pipeline: name.clone(),
            sink_id: id.clone(),
            committed: Arc::new(cp.offsets.clone()),
            metrics: ComponentMetrics::new(&name, &ComponentId::sink(id.as_str())),
        };
        sink.open(&ctx).await?;
        if let Some(own) = sink.committed_checkpoint().await? {
            info!(
                message = "Sink keeps its own checkpoint; resuming it from there.",
                pipeline = %name,
                sink = %id,
                own_epoch = own.epoch,
                state_store_epoch = cp.epoch
            );
            first_epoch = first_epoch.max(own.epoch + 1);
            ctx.committed = Arc::new(own.offsets.clone());
            cp = own;
        }
        info!(
            message = "Sink opened.",
            pipeline = %name,
            sink = %id,
            delivery = ?sink.delivery(),
            committed_epoch = cp.epoch
        );
        resume_from.push(cp.offsets);
        let (tx, rx) = mpsc::channel(options.channel_capacity.max(1));
        senders.push(tx);
        sink_tasks.push((sink, ctx, rx));
    }
    // The start barrier's epoch is known only now (a sink's own checkpoint may raise it).
    tracker.epoch.store(first_epoch, Ordering::Relaxed);
    for (sink, ctx, rx) in sink_tasks {
        let (store, status, tracker) = (store.clone(), status.clone(), tracker.clone());
        tasks.spawn(run_sink(sink, ctx, rx, store, status, tracker));
    }
    let resume = resume_offsets(&resume_from);
    debug!(
        message = "Resuming the source.",
        pipeline = %name,
        resume_channels = resume.len(),
        first_epoch
    );
    // Errors a component returns are counted here, once, by their kind (components count only
    // the errors they handle themselves).
    let src_metrics = ComponentMetrics::new(&name, &ComponentId::Source);
    if let Err(e) = source.open(&resume).await {
        src_metrics.error(e.kind);
        return Err(e);
    }
    info!(message = "Source opened; reading changes.", pipeline = %name);
    let source_stop = stop.clone();
    let interval = options.checkpoint_interval;
    let src_status = status.clone();
    tasks.spawn(async move {
        let r = run_source(
            &mut *source,
            &mut operators,
            senders,
            source_stop,
            interval,
            first_epoch,
            src_metrics.clone(),
            src_status,
        )
        .await;
        if let Err(e) = &r {
            src_metrics.error(e.kind);
        }
        source.close().await;
        r
    });

    // The first failure stops everything; its error is the pipeline's.
    let mut result = Ok(());
    while let Some(joined) = tasks.join_next().await {
        let r = joined.unwrap_or_else(|e| {
            Err(EngineError::internal(
                "pipeline",
                format!("task ended abnormally: {e}"),
            ))
        });
        if let Err(e) = r {
            if result.is_ok() {
                warn!(message = "Pipeline component failed; stopping.", pipeline = %name, error = %e);
                result = Err(e);
            }
            // Let the other components finish cleanly (healthy sinks commit the final
            // barrier the source cuts on stop); abort whatever is stuck, e.g. a sink retrying
            // against a target that is down.
            stop.cancel();
            let grace = tokio::time::sleep(STOP_GRACE);
            tokio::pin!(grace);
            loop {
                tokio::select! {
                    next = tasks.join_next() => match next {
                        None => break,
                        Some(Ok(Err(e2))) => {
                            debug!(message = "Another component failed while stopping.", error = %e2)
                        }
                        Some(_) => {}
                    },
                    _ = &mut grace => {
                        tasks.abort_all();
                        while tasks.join_next().await.is_some() {}
                        break;
                    }
                }
            }
        }
    }
    info!(message = "Pipeline ended.", pipeline = %name, ok = result.is_ok());
    result
}

#[allow(clippy::too_many_arguments)]
async fn run_source(
    source: &mut dyn Source,
    operators: &mut [Box<dyn Operator>],
    senders: Vec<mpsc::Sender<Message>>,
    stop: CancellationToken,
    interval: Duration,
    first_epoch: u64,
    metrics: ComponentMetrics,
    status: Arc<PipelineStatus>,
) -> Result<(), EngineError> {
    let mut epoch = first_epoch;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut changed_since_barrier = false;

    // Deliver to every sink still running; Err only when none is left (a sink that ended
    // reports its own error through its task).
    let send_all = |msg: Message| {
        let senders = &senders;
        async move {
            let mut delivered = false;
            for tx in senders {
                delivered |= tx.send(msg.clone()).await.is_ok();
            }
            if delivered {
                Ok(())
            } else {
                Err(())
            }
        }
    };

    // The start barrier: the positions the source resolved in `open`, stored before any change.
    let start = source.offsets();
    info!(
        message = "Storing the start positions.",
        epoch,
        channels = start.len()
    );
    let b = Barrier {
        epoch,
        offsets: Arc::new(start.clone()),
        then_stop: false,
    };
    if send_all(Message::Barrier(b)).await.is_err() {
        return Ok(());
    }
    let mut last_offsets = Some(start);
    epoch += 1;

    'outer: loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => {
                let offsets = source.offsets();
                let b = Barrier { epoch, offsets: Arc::new(offsets), then_stop: true };
                let _ = send_all(Message::Barrier(b)).await;
                return Ok(());
            }
            _ = ticker.tick() => {
                status.set_progress(source.progress());
                let offsets = source.offsets();
                if !changed_since_barrier && last_offsets.as_ref() == Some(&offsets) {
                    continue;
                }
                debug!(message = "Cutting checkpoint barrier.", epoch);
                let b = Barrier { epoch, offsets: Arc::new(offsets.clone()), then_stop: false };
                if send_all(Message::Barrier(b)).await.is_err() {
                    return Ok(());
                }
                last_offsets = Some(offsets);
                changed_since_barrier = false;
                epoch += 1;
            }
            next = source.next() => {
                let Some(mut event) = next? else {
                    // End of data: a final barrier so everything read is committed.
                    let b = Barrier { epoch, offsets: Arc::new(source.offsets()), then_stop: true };
                    let _ = send_all(Message::Barrier(b)).await;
                    return Ok(());
                };
                metrics.events_in.inc();
                status.events_read.fetch_add(1, Ordering::Relaxed);
                status.rows_read.fetch_add(event.op.rows() as u64, Ordering::Relaxed);
                status.last_read_ts.store(event.position.ts, Ordering::Relaxed);
                changed_since_barrier = true;
                for op in operators.iter_mut() {
                    match op.process(event)? {
                        Some(e) => event = e,
                        None => continue 'outer,
                    }
                }
                metrics.events_out.inc();
                if send_all(Message::Change(Arc::new(event))).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
}

async fn run_sink(
    mut sink: Box<dyn Sink>,
    ctx: SinkContext,
    mut rx: mpsc::Receiver<Message>,
    store: Arc<dyn StateStore>,
    status: Arc<PipelineStatus>,
    tracker: Arc<StartTracker>,
) -> Result<(), EngineError> {
    let r = sink_loop(&mut *sink, &ctx, &mut rx, &store, &status, &tracker).await;
    if let Err(e) = &r {
        ctx.metrics.error(e.kind);
    }
    sink.close().await;
    r
}

async fn sink_loop(
    sink: &mut dyn Sink,
    ctx: &SinkContext,
    rx: &mut mpsc::Receiver<Message>,
    store: &Arc<dyn StateStore>,
    status: &PipelineStatus,
    tracker: &StartTracker,
) -> Result<(), EngineError> {
    let tick = sink.tick_interval();
    let mut ticker = tokio::time::interval(tick.unwrap_or(Duration::from_secs(3600)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    // Changes handed to the sink since its last flush: they count as sent once the flush made
    // them durable (the same for every sink, so no sink counts them itself).
    let mut unflushed = 0u64;
    loop {
        let msg = tokio::select! {
            m = rx.recv() => m,
            _ = ticker.tick(), if tick.is_some() => {
                sink.tick().await?;
                continue;
            }
        };
        let Some(msg) = msg else { return Ok(()) };
        match msg {
            Message::Change(ev) => {
                if let Some(done) = ctx.committed.get(&*ev.position.channel) {
                    if ev.position.offset <= *done {
                        debug!(message = "Skipping change already committed by this sink.",
                               sink = %ctx.sink_id, channel = %ev.position.channel);
                        continue;
                    }
                }
                ctx.metrics.events_in.inc();
                unflushed += 1;
                sink.write(ev).await?;
            }
            Message::Barrier(b) => {
                let started = Instant::now();
                sink.pre_commit(b.epoch, &b.offsets).await?;
                sink.flush().await?;
                ctx.metrics
                    .events_out
                    .inc_by(std::mem::take(&mut unflushed));
                let (st, pipe, sid, offsets) = (
                    store.clone(),
                    ctx.pipeline.clone(),
                    ctx.sink_id.clone(),
                    b.offsets.clone(),
                );
                tokio::task::spawn_blocking(move || st.commit(&pipe, &sid, b.epoch, &offsets))
                    .await
                    .map_err(|e| EngineError::internal("state", e.to_string()))??;
                sink.commit(b.epoch).await?;
                ctx.metrics
                    .checkpoint_seconds
                    .observe(started.elapsed().as_secs_f64());
                ctx.metrics.epoch.set(b.epoch as i64);
                status.committed_epoch.store(b.epoch, Ordering::Relaxed);
                if let Ok(mut m) = status.committed.lock() {
                    let e = m.entry(ctx.sink_id.clone()).or_default();
                    for (k, v) in b.offsets.iter() {
                        e.insert(k.clone(), v.clone());
                    }
                }
                tracker.committed(b.epoch);
                debug!(message = "Checkpoint committed.", sink = %ctx.sink_id, epoch = b.epoch);
                if b.then_stop {
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
