//! The three kinds of components a pipeline is made of, and what they promise.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cdc_state::{Offsets, SinkCheckpoint};

use crate::error::EngineError;
use crate::event::ChangeEvent;
use crate::metrics::ComponentMetrics;

/// Which component of a pipeline something happened in. The one way to name a component:
/// its [`Display`](std::fmt::Display) form (`source`, `sink target`) names it in errors and
/// logs, [`ComponentId::label`] (`source`, `sink.target`) in metric labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ComponentId {
    /// The pipeline's source.
    Source,
    /// The sink with this id (its key under `sinks:`).
    Sink(String),
}

impl ComponentId {
    /// The sink with id `id`.
    pub fn sink(id: impl Into<String>) -> Self {
        ComponentId::Sink(id.into())
    }

    /// The `component` label of metrics.
    pub fn label(&self) -> String {
        match self {
            ComponentId::Source => "source".to_string(),
            ComponentId::Sink(id) => format!("sink.{id}"),
        }
    }
}

impl std::fmt::Display for ComponentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ComponentId::Source => f.write_str("source"),
            ComponentId::Sink(id) => write!(f, "sink {id}"),
        }
    }
}

impl From<ComponentId> for String {
    fn from(c: ComponentId) -> String {
        c.to_string()
    }
}

impl From<&ComponentId> for String {
    fn from(c: &ComponentId) -> String {
        c.to_string()
    }
}

/// What a sink guarantees about the changes it receives, given that the engine replays
/// everything after the last committed checkpoint on restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryGuarantee {
    /// Each change reaches the target at least once; a crash may repeat changes after the last
    /// checkpoint.
    AtLeastOnce,
    /// Replays are harmless: the target ends up as if every change was applied once (idempotent
    /// writes such as upsert by primary key).
    ExactlyOnceInEffect,
    /// Each change is published exactly once (transactions committed with the checkpoint).
    ExactlyOnce,
}

/// Reads changes from an external system.
///
/// The engine drives it: `open` once, then `next` repeatedly; between calls it asks for
/// [`Source::offsets`] to cut a checkpoint barrier.
#[async_trait]
pub trait Source: Send {
    /// Connect and position every channel just after `resume` (exclusive), or at the configured
    /// start for channels that have no resume offset.
    async fn open(&mut self, resume: &Offsets) -> Result<(), EngineError>;

    /// The next change, or `None` when the source has no more data (bounded sources only).
    ///
    /// Must be cancel-safe: the engine may drop the future to cut a barrier and call again.
    async fn next(&mut self) -> Result<Option<ChangeEvent>, EngineError>;

    /// Per channel, the offset up to which every change has already been returned by `next`.
    /// A checkpoint stores these; a restart resumes after them.
    fn offsets(&self) -> Offsets;

    /// How far a bounded phase of the source (an initial snapshot) has come; `None` (the
    /// default) when it has none or it is over. The engine copies it into
    /// [`PipelineStatus`](crate::PipelineStatus) at every checkpoint tick, for progress lines
    /// and the task API.
    fn progress(&self) -> Option<SourceProgress> {
        None
    }

    /// Release connections. Called once at the end.
    async fn close(&mut self) {}
}

/// Progress of a bounded phase of a source, e.g. `snapshot`: units (rows) done of a total
/// known so far, over parts (collections) of which some are finished.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SourceProgress {
    /// What the phase is (`snapshot`).
    pub phase: &'static str,
    /// Units done in this run.
    pub done: u64,
    /// Units known to be there (grows while parts start).
    pub total: u64,
    /// Parts finished (in this or an earlier run).
    pub parts_done: usize,
    /// Parts planned.
    pub parts: usize,
}

impl std::fmt::Display for SourceProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}={}/{} rows ({}/{} collections)",
            self.phase, self.done, self.total, self.parts_done, self.parts
        )
    }
}

/// Transforms changes one at a time (filters, name mapping). Runs fused in the source task.
pub trait Operator: Send {
    /// Identifier used in logs and metrics.
    fn name(&self) -> &str;

    /// Return the (possibly changed) change, or `None` to drop it.
    fn process(&mut self, event: ChangeEvent) -> Result<Option<ChangeEvent>, EngineError>;
}

/// Information a sink gets from the engine.
#[derive(Clone)]
pub struct SinkContext {
    /// Pipeline (task) name.
    pub pipeline: String,
    /// This sink's id in the pipeline.
    pub sink_id: String,
    /// The sink's last committed offsets (changes at or before them are not delivered again).
    pub committed: Arc<Offsets>,
    /// The sink's metrics; call [`ComponentMetrics::written`] after every successful write.
    pub metrics: ComponentMetrics,
}

/// Writes changes to an external system.
///
/// Order of calls: `open`, then any number of `write` and `tick`; at every checkpoint barrier
/// `flush` (after which everything written must be durable on the target), the engine stores
/// the checkpoint, then `commit`. Errors are returned, never panicked; a returned error stops
/// the pipeline with that error as its reason.
#[async_trait]
pub trait Sink: Send {
    /// The guarantee this sink gives, shown to operators and checked against configuration.
    fn delivery(&self) -> DeliveryGuarantee;

    /// Connect and prepare. The default does nothing.
    async fn open(&mut self, _ctx: &SinkContext) -> Result<(), EngineError> {
        Ok(())
    }

    /// Accept one change. The sink may buffer it; order per source channel must be kept.
    async fn write(&mut self, event: Arc<ChangeEvent>) -> Result<(), EngineError>;

    /// Make every change accepted so far durable on the target.
    async fn flush(&mut self) -> Result<(), EngineError>;

    /// The checkpoint of `epoch` is stored: finish what depends on it (e.g. commit a
    /// transaction, publish files). The default does nothing.
    async fn commit(&mut self, _epoch: u64) -> Result<(), EngineError> {
        Ok(())
    }

    /// Called at a barrier just before `flush`, with the offsets the barrier covers. A sink that
    /// commits its offsets atomically with its output (two-phase commit: Kafka transactions,
    /// atomically published files) records them here as part of the pending output of `epoch`,
    /// so that `commit` makes output and offsets visible together. The default does nothing.
    async fn pre_commit(&mut self, _epoch: u64, _offsets: &Offsets) -> Result<(), EngineError> {
        Ok(())
    }

    /// The checkpoint this sink committed in the target itself (see [`Sink::pre_commit`]),
    /// read once after `open`; `None` (the default) when it keeps none. When `Some`, the engine
    /// resumes this sink from it instead of from the state store: a crash between the state
    /// store commit and [`Sink::commit`] leaves the state store ahead of what the target
    /// published, and only the target knows which of the two happened.
    async fn committed_checkpoint(&mut self) -> Result<Option<SinkCheckpoint>, EngineError> {
        Ok(None)
    }

    /// How often `tick` is called while no change arrives (for time-based batch flushes).
    fn tick_interval(&self) -> Option<Duration> {
        None
    }

    /// Periodic work such as flushing a batch that has waited long enough.
    async fn tick(&mut self) -> Result<(), EngineError> {
        Ok(())
    }

    /// Release connections. Called once when the pipeline stops.
    async fn close(&mut self) {}
}
