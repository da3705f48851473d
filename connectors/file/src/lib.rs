//! File sink of milvus-cdc: row-level change events ([`cdc_events`]) written to JSON-lines or
//! Avro object container files, published atomically at each checkpoint, exactly once.
//!
//! - Files are written in a hidden pending directory, one per collection and schema version,
//!   closed when they reach `max_bytes` or `max_age_secs`, and at every checkpoint.
//! - At a checkpoint the sink records the source offsets together with the names the epoch's
//!   files get, then renames them into place ([`state`] describes the protocol, [`sink`] why it
//!   is exactly-once). Readers never see partial files.
//! - On start, leftover files of an uncommitted epoch are deleted (their changes are replayed)
//!   and renames of a committed epoch are finished.

pub mod avro_file;
pub mod config;
pub mod sink;
pub mod state;
pub mod template;
pub mod writer;

pub use config::{FileFormat, FileSinkConfig};
pub use sink::FileSink;

use async_trait::async_trait;
use cdc_engine::config::{BuildContext, ConfigError, SinkConfig, SinkKind};
use cdc_engine::{DeliveryGuarantee, EngineError, Sink};

/// The `file` sink kind of pipeline documents.
pub const SINK: SinkKind = SinkKind::of::<FileSinkConfig>(
    KIND,
    "write row-level change events to JSON Lines or Avro files, published at checkpoints",
);
const KIND: &str = "file";

#[async_trait]
impl SinkConfig for FileSinkConfig {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn delivery(&self) -> DeliveryGuarantee {
        DeliveryGuarantee::ExactlyOnce
    }

    fn validate(&self) -> Vec<ConfigError> {
        cdc_engine::config::first_problem(FileSinkConfig::validate(self))
    }

    /// Validate and return the sink (it creates its directories in `open`).
    async fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Sink>, EngineError> {
        Ok(Box::new(FileSink::new(self.clone(), ctx.id)?))
    }

    fn clone_box(&self) -> Box<dyn SinkConfig> {
        Box::new(self.clone())
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
