//! Durable state for milvus-cdc: the acknowledged source offsets of every pipeline sink, and
//! the task documents of the HTTP server.
//!
//! Offsets are opaque, order-preserving byte strings chosen by the source (for Kafka the
//! big-endian MQ offset), keyed per pipeline, per sink and per source channel. A commit writes
//! one epoch's offsets for one sink atomically and durably (fsync) before returning, so a
//! restart after `kill -9` resumes exactly after the last acknowledged write.
//!
//! The [`StateStore`] trait keeps the backend swappable; [`SledStore`] is the embedded default,
//! [`EtcdStore`] keeps the same in etcd for several instances (see `etcd_store`).

mod etcd_store;
mod offsets;
mod sled_store;
#[doc(hidden)]
pub mod testing;
mod tls;

use std::collections::BTreeMap;

pub use etcd_store::{EtcdStateConfig, EtcdStore, Fence};
pub use offsets::{checkpoint_from_hex, hex_offsets, render_offset};
pub use sled_store::SledStore;
pub use tls::TlsConfig;

/// Offsets of one sink: source channel name to the last offset whose changes the sink has
/// durably written (resume is exclusive of it).
pub type Offsets = BTreeMap<String, Vec<u8>>;

/// What went wrong in the state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The backend failed (I/O, corruption, lock held by another process, ...).
    #[error("state store {path}: {message}")]
    Backend { path: String, message: String },
    /// A fenced commit: this instance lost the task's ownership, nothing was written.
    #[error("state store: pipeline {pipeline}: {message}")]
    Fenced { pipeline: String, message: String },
    /// A stored value could not be read back.
    #[error("state store: corrupt value under key {key:?}: {message}")]
    Corrupt { key: String, message: String },
}

/// A committed checkpoint of one sink.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkCheckpoint {
    /// The last committed epoch (0 when nothing was ever committed).
    pub epoch: u64,
    /// The offsets of that epoch.
    pub offsets: Offsets,
}

/// Storage for checkpoints and task documents.
///
/// Implementations must make [`StateStore::commit`] atomic (all channels of the epoch or none)
/// and durable before it returns.
pub trait StateStore: Send + Sync + 'static {
    /// The checkpoint of one sink of one pipeline (empty when none was committed).
    fn load(&self, pipeline: &str, sink: &str) -> Result<SinkCheckpoint, StateError>;
    /// Sinks of a pipeline that have a committed checkpoint.
    fn sinks(&self, pipeline: &str) -> Result<Vec<String>, StateError>;
    /// Atomically and durably record an epoch's offsets for one sink. Channels not named in
    /// `offsets` keep their previous value.
    fn commit(
        &self,
        pipeline: &str,
        sink: &str,
        epoch: u64,
        offsets: &Offsets,
    ) -> Result<(), StateError>;
    /// Forget every checkpoint of a pipeline.
    fn delete_pipeline(&self, pipeline: &str) -> Result<(), StateError>;

    /// Store a task document (JSON or any bytes) under its id.
    fn put_task(&self, task_id: &str, doc: &[u8]) -> Result<(), StateError>;
    /// A task document.
    fn get_task(&self, task_id: &str) -> Result<Option<Vec<u8>>, StateError>;
    /// All task documents, ordered by id.
    fn list_tasks(&self) -> Result<Vec<(String, Vec<u8>)>, StateError>;
    /// Remove a task document and every checkpoint of the pipeline of the same id, atomically.
    fn delete_task(&self, task_id: &str) -> Result<(), StateError>;
}
