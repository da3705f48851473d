//! Milvus sink connector: writes the engine's change stream to a target Milvus over gRPC.
//!
//! This is what operators run for disaster recovery. Two modes:
//!
//! - **`api`** (default, any Milvus including milvus-lite): DDL through the normal RPCs, each
//!   "check then act" so replays are harmless; DML with `Upsert`/`Insert` carrying the source's
//!   column data as-is and `Delete` by primary key (`pk in [...]`). Collections are created
//!   with the source schema but **`autoID = false` on the primary key**, so the source's keys
//!   are kept and upsert/delete by key hit the same rows.
//! - **`replicate`**: DML as raw `ReplicateMessage` to a standby target (`common.ttMsgEnabled:
//!   false`) with rewritten IDs, channels and timestamps plus synthetic time ticks; DDL through
//!   the RPCs marked as replicated. See [`ReplicateSink`].
//!
//! Order and parallelism (api mode): one writer task per (target collection, source shard),
//! ordered within, parallel across; consecutive inserts merge into one request up to the batch
//! limits; a DDL waits until every writer is drained. See [`MilvusSinkConfig`] for the
//! settings.
//!
//! Idempotence (api mode): with `write: upsert` (default) a replay never duplicates rows (note
//! that source rows that share a primary key collapse into one on the target). With
//! `write: insert`, changes whose source timestamp is at or before the sink's start plus
//! `replay_window_secs` (those a crashed previous run may already have written) and every retry
//! of a failed insert are sent as upserts; later changes, and all changes of a collection this
//! sink created in this run, use plain inserts. Deletes and DDL are idempotent by construction.
//! Replicate mode (`ReplicateMessage` has no upsert): inserts within the same replay window
//! are sent as a delete of their keys followed by the insert (the delete is stamped just before
//! the insert, so it removes only an earlier copy); later inserts, and those into collections
//! this sink created in this run, go as they are.

mod batch;
mod client;
mod config;
mod ddl;
mod ddl_ops;
pub mod ddl_rbac;
mod expr;
mod meta;
mod replicate;
mod retry;
mod sink;
mod writer;

use std::sync::Arc;

use async_trait::async_trait;
use cdc_engine::config::{BuildContext, ConfigError, PipelineFacts, SinkConfig, SinkKind};
use cdc_engine::{DeliveryGuarantee, EngineError, ErrorKind, Sink};

pub use config::{
    BatchConfig, MilvusSinkConfig, ReplicateConfig, RetryConfig, SinkMode, TlsConfig, WriteMode,
};
pub use replicate::ReplicateSink;
pub use sink::MilvusSink;

/// Component name used in errors and logs.
fn component(sink_id: &str) -> String {
    cdc_engine::ComponentId::sink(sink_id).to_string()
}

/// The `milvus` sink kind of pipeline documents.
pub const SINK: SinkKind = SinkKind::of::<MilvusSinkConfig>(
    KIND,
    "replay every change on a target Milvus (api or replicate mode)",
);
const KIND: &str = "milvus";

#[async_trait]
impl SinkConfig for MilvusSinkConfig {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn delivery(&self) -> DeliveryGuarantee {
        // Both modes: upserts/deletes by primary key and idempotent DDL make replays harmless.
        DeliveryGuarantee::ExactlyOnceInEffect
    }

    fn validate(&self) -> Vec<ConfigError> {
        cdc_engine::config::first_problem(MilvusSinkConfig::validate(self))
    }

    /// Snapshot reads are rows read through the source's API: replicate mode cannot send them
    /// (it forwards message-queue messages), and plain inserts would double the rows the
    /// stream replays after the snapshot read them.
    fn validate_in(&self, facts: &PipelineFacts) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        if facts.snapshot_reads && self.mode == SinkMode::Replicate {
            problems.push(ConfigError::new(
                "mode",
                "`mode: replicate` cannot receive an initial snapshot (its rows are read through \
                 the API, not from the message queue); use `mode: api` for this sink, or set \
                 `source.milvus.snapshot.mode: never`",
            ));
        }
        if facts.snapshot_reads && self.write == WriteMode::Insert {
            problems.push(ConfigError::new(
                "write",
                "`write: insert` would insert twice the rows the stream replays after the \
                 snapshot read them; use `write: upsert` with a snapshot",
            ));
        }
        problems
    }

    /// Reach the target and check the credentials: a wrong target is refused when a task is
    /// created, with the URI in the error.
    async fn healthcheck(&self) -> Result<(), EngineError> {
        self.check_connection()
            .await
            .map(|_| ())
            .map_err(|e| EngineError {
                message: format!(
                    "fail to connect the target milvus {}: {}",
                    self.uri, e.message
                ),
                ..e
            })
    }

    /// Validate, connect to the target and return the sink. A target that cannot be reached
    /// fails here with an error naming the URI.
    async fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Sink>, EngineError> {
        let sh = Arc::new(self.connect(ctx.id).await?);
        Ok(match self.mode {
            SinkMode::Api => Box::new(MilvusSink::new(sh)),
            SinkMode::Replicate => Box::new(ReplicateSink::new(sh)),
        })
    }

    fn clone_box(&self) -> Box<dyn SinkConfig> {
        Box::new(self.clone())
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl MilvusSinkConfig {
    /// Check that the target is reachable and accepts the credentials (used when a task is
    /// created). Returns the target's version string.
    pub async fn check_connection(&self) -> Result<String, EngineError> {
        let sh = self.connect("check").await?;
        let version = sh.client.version().await.unwrap_or_default();
        Ok(version)
    }

    async fn connect(&self, sink_id: &str) -> Result<ddl::Shared, EngineError> {
        let component = component(sink_id);
        self.validate().map_err(|e| EngineError {
            component: component.clone(),
            ..e
        })?;
        let client = client::TargetClient::connect(self, &component).await?;
        // One authenticated round trip: a wrong token or an endpoint that is not Milvus fails
        // here rather than at the first write.
        client.list_databases().await.map_err(|f| {
            let retriable = f.retriable();
            let e = EngineError::new(
                &component,
                ErrorKind::Connect,
                format!(
                    "target Milvus {} does not answer ListDatabases: {f}; check the URI, the \
                     credentials and that the target is a Milvus 2.3.2+ server",
                    self.uri
                ),
            );
            if retriable {
                e.retriable()
            } else {
                e
            }
        })?;
        Ok(ddl::Shared {
            client,
            cfg: self.clone(),
            component,
            id: cdc_engine::ComponentId::sink(sink_id),
            learned_max_bytes: usize::MAX.into(),
        })
    }
}
