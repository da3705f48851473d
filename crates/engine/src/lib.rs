//! The milvus-cdc dataflow engine.
//!
//! A pipeline is one [`Source`] whose changes pass through fused [`Operator`]s and fan out to
//! one or more [`Sink`]s over bounded channels. Checkpoint barriers travel in-band with the
//! changes; a sink stores the barrier's source offsets only after the target durably accepted
//! everything before it, and a restart resumes exactly there. See [`pipeline`] for the details.

pub mod component;
pub mod config;
pub mod error;
pub mod event;
pub mod metrics;
pub mod notices;
pub mod pipeline;
pub mod rbac;
pub mod retry;
pub mod transforms;

pub use component::{
    ComponentId, DeliveryGuarantee, Operator, Sink, SinkContext, Source, SourceProgress,
};
pub use error::{EngineError, ErrorKind};
pub use event::{
    ChangeEvent, CollectionDef, Ddl, DeleteBatch, Offset, Op, RowBatch, SourcePosition,
    SNAPSHOT_CHANNEL_PREFIX, SNAPSHOT_SHARD,
};
pub use pipeline::{Barrier, Message, Pipeline, PipelineOptions, PipelineStatus, RunningPipeline};
