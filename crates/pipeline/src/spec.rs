//! The pipeline document: what a YAML file under `pipelines/` (or a task created over HTTP)
//! declares.
//!
//! ```yaml
//! name: dr-default
//! source:
//!   milvus: { etcd: { endpoints: ["127.0.0.1:2379"] }, mq: { kafka: { brokers: "127.0.0.1:19092" } } }
//! transforms:
//!   - filter: { include: ["default.*"] }
//!   - rename: { rules: [ { source_db: default, target_db: backup } ] }
//! sinks:
//!   target: { milvus: { uri: "http://127.0.0.1:19531" } }
//!   audit:  { stdout: {} }
//! checkpoint: { interval_ms: 1000 }
//! ```
//!
//! Parsing is strict: unknown keys, wrong types and missing fields are errors that name the
//! file, the line and the field.

use std::collections::BTreeMap;
use std::path::Path;

use cdc_engine::transforms::{FilterConfig, NameMappingRule};
use serde::{Deserialize, Serialize};

use crate::builtin::{BlackholeConfig, StdoutConfig};
use crate::connectors::{FileSinkConfig, KafkaSinkConfig, SinkConnector, SourceConnector};

/// A whole pipeline.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    /// Name of the pipeline; its checkpoints are stored under this name, so renaming a
    /// pipeline starts it afresh.
    pub name: String,
    /// Where changes come from (exactly one source).
    pub source: SourceSpec,
    /// Operators applied in order to every change before the sinks.
    #[serde(default)]
    pub transforms: Vec<TransformSpec>,
    /// Sinks by id. Every sink receives every change and keeps its own checkpoint.
    pub sinks: BTreeMap<String, SinkSpec>,
    /// Checkpointing and buffering.
    #[serde(default)]
    pub checkpoint: CheckpointSpec,
}

/// The source of a pipeline, keyed by its kind.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceSpec {
    /// A source Milvus: etcd metadata plus its message queue.
    Milvus(Box<SourceConnector>),
}

/// One transform, keyed by its kind.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TransformSpec {
    /// Keep only some databases and collections (`db.collection` patterns with `*`).
    Filter(FilterConfig),
    /// Rename databases and collections on the way to the sinks.
    Rename(RenameConfig),
}

/// Name mapping rules.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RenameConfig {
    /// One rule per source database.
    pub rules: Vec<NameMappingRule>,
}

/// A sink, keyed by its kind.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkSpec {
    /// Replay on a target Milvus.
    Milvus(Box<SinkConnector>),
    /// Publish row-level change events (JSON or Avro) to Kafka topics.
    Kafka(Box<KafkaSinkConfig>),
    /// Write row-level change events to JSON Lines or Avro files, published at checkpoints.
    File(Box<FileSinkConfig>),
    /// Print one line per change on standard output (demos, debugging).
    Stdout(StdoutConfig),
    /// Count and drop every change (benchmarks).
    Blackhole(BlackholeConfig),
}

/// Checkpointing and buffering options.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSpec {
    /// Milliseconds between checkpoints (each stores the acknowledged source offsets).
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// Changes buffered between the source and each sink; a full buffer slows the source.
    #[serde(default = "default_capacity")]
    pub channel_capacity: usize,
}

fn default_interval_ms() -> u64 {
    1000
}

fn default_capacity() -> usize {
    16
}

impl Default for CheckpointSpec {
    fn default() -> Self {
        Self {
            interval_ms: default_interval_ms(),
            channel_capacity: default_capacity(),
        }
    }
}

/// Why a pipeline document was rejected.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read.
    #[error("{file}: cannot read: {message}")]
    Read {
        /// File name.
        file: String,
        /// OS error.
        message: String,
    },
    /// YAML syntax or shape error (the message names the line, column and field).
    #[error("{file}: {message}")]
    Parse {
        /// File name.
        file: String,
        /// Parser message with location.
        message: String,
    },
    /// The document is well-formed but a value is not acceptable.
    #[error("{file}: {field}: {message}")]
    Invalid {
        /// File name.
        file: String,
        /// Dotted path of the offending field.
        field: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

impl PipelineSpec {
    /// Read and parse a pipeline file (with `${ENV_VAR}` substitution), then validate it.
    pub fn load(path: &Path) -> Result<Self, SpecError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| SpecError::Read {
            file: file.clone(),
            message: e.to_string(),
        })?;
        Self::parse(&text, &file)
    }

    /// Parse a pipeline document; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, SpecError> {
        let text = crate::env::substitute(text).map_err(|message| SpecError::Parse {
            file: origin.to_string(),
            message,
        })?;
        let spec: PipelineSpec = serde_saphyr::from_str(&text).map_err(|e| SpecError::Parse {
            file: origin.to_string(),
            message: e.to_string(),
        })?;
        spec.validate(origin)?;
        Ok(spec)
    }

    /// Check values the parser cannot: names, ids, patterns, and each component's own rules.
    pub fn validate(&self, origin: &str) -> Result<(), SpecError> {
        let invalid = |field: &str, message: String| SpecError::Invalid {
            file: origin.to_string(),
            field: field.to_string(),
            message,
        };
        if self.name.is_empty() || self.name.len() > 128 || self.name.contains('\0') {
            return Err(invalid(
                "name",
                "must be 1 to 128 characters without NUL".into(),
            ));
        }
        if self.sinks.is_empty() {
            return Err(invalid("sinks", "at least one sink is required".into()));
        }
        if self.checkpoint.interval_ms < 10 {
            return Err(invalid(
                "checkpoint.interval_ms",
                "must be at least 10 (milliseconds)".into(),
            ));
        }
        if self.checkpoint.channel_capacity == 0 {
            return Err(invalid(
                "checkpoint.channel_capacity",
                "must be at least 1".into(),
            ));
        }
        match &self.source {
            SourceSpec::Milvus(c) => c
                .validate()
                .map_err(|e| invalid("source.milvus", e.message))?,
        }
        for (i, t) in self.transforms.iter().enumerate() {
            let r = match t {
                TransformSpec::Filter(f) => cdc_engine::transforms::Filter::new(f).map(|_| ()),
                TransformSpec::Rename(r) => {
                    cdc_engine::transforms::Rename::new(&r.rules).map(|_| ())
                }
            };
            r.map_err(|e| invalid(&format!("transforms[{i}]"), e.message))?;
        }
        for (id, s) in &self.sinks {
            if id.is_empty()
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(invalid(
                    &format!("sinks.{id}"),
                    "sink ids use letters, digits, '_' and '-'".into(),
                ));
            }
            let r = match s {
                SinkSpec::Milvus(c) => c.validate().map_err(|e| ("milvus", e.message)),
                SinkSpec::Kafka(c) => c.validate().map_err(|e| ("kafka", e.message)),
                SinkSpec::File(c) => c.validate().map_err(|e| ("file", e.message)),
                SinkSpec::Stdout(_) | SinkSpec::Blackhole(_) => Ok(()),
            };
            r.map_err(|(kind, m)| invalid(&format!("sinks.{id}.{kind}"), m))?;
            let SourceSpec::Milvus(src) = &self.source;
            if let SinkSpec::Milvus(c) = s {
                if src.snapshot.enabled()
                    && c.mode == cdc_connector_milvus_sink::SinkMode::Replicate
                {
                    return Err(invalid(
                        &format!("sinks.{id}.milvus.mode"),
                        "`mode: replicate` cannot receive an initial snapshot (its rows are read \
                         through the API, not from the message queue); use `mode: api` for this \
                         sink, or set `source.milvus.snapshot.mode: never`"
                            .into(),
                    ));
                }
                if src.snapshot.enabled() && c.write == cdc_connector_milvus_sink::WriteMode::Insert
                {
                    return Err(invalid(
                        &format!("sinks.{id}.milvus.write"),
                        "`write: insert` would insert twice the rows the stream replays after \
                         the snapshot read them; use `write: upsert` with a snapshot"
                            .into(),
                    ));
                }
            }
        }
        Ok(())
    }
}
