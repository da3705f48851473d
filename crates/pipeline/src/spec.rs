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

use cdc_engine::config::{ConfigError, PipelineFacts};
use cdc_engine::transforms::{FilterConfig, NameMappingRule};
use serde::{Deserialize, Serialize};

pub use crate::registry::{SinkSpec, SourceSpec};

/// A whole pipeline.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    /// Name of the pipeline; its checkpoints are stored under this name, so renaming a
    /// pipeline starts it afresh.
    pub name: String,
    /// Where changes come from (exactly one source), keyed by its kind
    /// ([`crate::registry::SOURCES`]).
    pub source: SourceSpec,
    /// Operators applied in order to every change before the sinks.
    #[serde(default)]
    pub transforms: Vec<TransformSpec>,
    /// Sinks by id, each keyed by its kind ([`crate::registry::SINKS`]). Every sink receives
    /// every change and keeps its own checkpoint.
    pub sinks: BTreeMap<String, SinkSpec>,
    /// Checkpointing and buffering.
    #[serde(default)]
    pub checkpoint: CheckpointSpec,
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
        let facts = self.facts();
        let src = &self.source.0;
        let problems = src.validate().into_iter().chain(src.validate_in(&facts));
        if let Some(e) = first(problems, &format!("source.{}", src.kind())) {
            return Err(invalid(&e.path, e.message));
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
            let sink = &s.0;
            let problems = sink.validate().into_iter().chain(sink.validate_in(&facts));
            if let Some(e) = first(problems, &format!("sinks.{id}.{}", sink.kind())) {
                return Err(invalid(&e.path, e.message));
            }
        }
        Ok(())
    }
}

impl PipelineSpec {
    /// What components may check about this pipeline.
    pub fn facts(&self) -> PipelineFacts {
        PipelineFacts {
            checkpoint_interval: std::time::Duration::from_millis(self.checkpoint.interval_ms),
            snapshot_reads: self.source.0.snapshot_reads(),
        }
    }
}

/// The first of a component's problems, its path put under the component's own (`prefix`).
fn first(problems: impl IntoIterator<Item = ConfigError>, prefix: &str) -> Option<ConfigError> {
    problems.into_iter().next().map(|e| e.under(prefix))
}
