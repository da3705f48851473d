//! User configuration of the initial snapshot (`source.milvus.snapshot`) and of the source
//! Milvus gRPC endpoint it reads rows from (`source.milvus.uri`, `token`, `tls`).
//!
//! Every field is documented here because these comments are the user documentation.

use serde::{Deserialize, Serialize};

/// `source.milvus.snapshot`: copy what the source holds before streaming its changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    /// `never` (default): only changes made after the start are replicated. `initial`: when
    /// the pipeline has no checkpoint yet, copy every database, collection (schema, shards,
    /// consistency, properties), partition, index, load state and row first, then continue
    /// with the change stream from the positions fixed before the copy. `only`: the copy, then
    /// the pipeline stops (a one-shot migration).
    #[serde(default)]
    pub mode: SnapshotMode,
    /// What to do with a collection that is not loaded on the source (Milvus 2.3 - 2.5 can
    /// query only loaded collections): `never` (default) stops with an error naming the
    /// collection; `temporary` loads it for the copy and releases it after (that load and
    /// release are not replayed to the sinks).
    #[serde(default)]
    pub load: SnapshotLoad,
    /// Rows per query page (and per change event). Default 2000; at most 16384 (Milvus'
    /// `quotaAndLimits.limits.maxQueryResultWindow` default).
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// Collections copied at the same time. Default 2.
    #[serde(default = "default_parallelism")]
    pub parallelism: usize,
}

/// When the snapshot runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotMode {
    /// No snapshot (only changes after the start).
    #[default]
    Never,
    /// Snapshot when the pipeline has no checkpoint, then the stream.
    Initial,
    /// Snapshot, then stop.
    Only,
}

/// Handling of collections that are not loaded on the source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotLoad {
    /// Fail with an error naming the collection.
    #[default]
    Never,
    /// Load for the copy, release after.
    Temporary,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        Self {
            mode: SnapshotMode::Never,
            load: SnapshotLoad::Never,
            batch_rows: default_batch_rows(),
            parallelism: default_parallelism(),
        }
    }
}

impl SnapshotConfig {
    /// True unless `mode: never`.
    pub fn enabled(&self) -> bool {
        self.mode != SnapshotMode::Never
    }

    /// True when `snapshot` is all defaults (not written back when serialized).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Largest `batch_rows` (Milvus' default query result window).
pub const MAX_BATCH_ROWS: usize = 16384;

fn default_batch_rows() -> usize {
    2000
}
fn default_parallelism() -> usize {
    2
}
