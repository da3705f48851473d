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

use cdc_engine::{EngineError, Sink};

impl FileSinkConfig {
    /// Validate and return the sink (it creates its directories in `open`).
    pub fn build(&self, sink_id: &str) -> Result<Box<dyn Sink>, EngineError> {
        Ok(Box::new(FileSink::new(self.clone(), sink_id)?))
    }
}
