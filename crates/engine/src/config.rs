//! How a connector plugs in: its configuration struct implements [`SourceConfig`] or
//! [`SinkConfig`] (pure validation, declared delivery, health check, build), and its crate
//! exports one [`SourceKind`] / [`SinkKind`] naming the key it answers to in a pipeline
//! document (`sinks: { target: { milvus: {...} } }`). The pipeline crate keeps the one list of
//! kinds (its registry) and does all dispatch through these traits, so adding a connector is a
//! new crate plus one registry line.
//!
//! Validation is split in two, both without I/O: [`SinkConfig::validate`] checks the
//! component alone, [`SinkConfig::validate_in`] checks it against the rest of the pipeline
//! (for instance a transaction timeout against the checkpoint interval). Errors carry the
//! dotted path of the field inside the component; the pipeline prefixes the component's own
//! path (`sinks.target.milvus`).

use std::any::Any;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::component::{DeliveryGuarantee, Sink, Source};
use crate::error::EngineError;

/// One problem in a component's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the field inside the component (`tls.ca_pem_path`); empty when the
    /// problem is the component as a whole.
    pub path: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl ConfigError {
    /// A problem of field `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }

    /// The error with `prefix` put before its path (`prefix.path`).
    pub fn under(self, prefix: &str) -> Self {
        let path = match (prefix.is_empty(), self.path.is_empty()) {
            (true, _) => self.path,
            (false, true) => prefix.to_string(),
            (false, false) => format!("{prefix}.{}", self.path),
        };
        Self { path, ..self }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// What a component may check about the pipeline around it.
#[derive(Debug, Clone, Copy)]
pub struct PipelineFacts {
    /// Time between checkpoints (`checkpoint.interval_ms`).
    pub checkpoint_interval: Duration,
    /// The source sends snapshot reads (rows that existed before the start) ahead of the
    /// stream ([`SourceConfig::snapshot_reads`]).
    pub snapshot_reads: bool,
}

/// What a component is built with.
#[derive(Debug, Clone, Copy)]
pub struct BuildContext<'a> {
    /// Pipeline (task) name: the key of its checkpoints.
    pub pipeline: &'a str,
    /// The component's id in the pipeline (the sink id; `source` for the source).
    pub id: &'a str,
    /// The rest of the pipeline.
    pub facts: PipelineFacts,
    /// The pipeline's filters that see source names (those before the first rename): a source
    /// limits work it does on its own, such as an initial snapshot, to what they keep.
    pub filters: &'a [crate::transforms::FilterConfig],
}

impl<'a> BuildContext<'a> {
    /// The context of component `id` of `pipeline`, with default pipeline facts (tools and
    /// tests that build one component alone).
    pub fn new(pipeline: &'a str, id: &'a str) -> Self {
        Self {
            pipeline,
            id,
            facts: PipelineFacts {
                checkpoint_interval: Duration::from_secs(1),
                snapshot_reads: false,
            },
            filters: &[],
        }
    }
}

/// Configuration of a source connector: a factory that validates purely and builds.
#[async_trait]
pub trait SourceConfig: erased_serde::Serialize + fmt::Debug + Send + Sync + 'static {
    /// The key this configuration answers to (`milvus`).
    fn kind(&self) -> &'static str;
    /// Problems of the configuration alone, without any I/O (empty when valid).
    fn validate(&self) -> Vec<ConfigError>;
    /// Problems against the rest of the pipeline, without any I/O. The default finds none.
    fn validate_in(&self, _facts: &PipelineFacts) -> Vec<ConfigError> {
        Vec::new()
    }
    /// Whether the source sends snapshot reads (the rows that existed before its start) ahead
    /// of the stream; sinks check they can take them. The default: no.
    fn snapshot_reads(&self) -> bool {
        false
    }
    /// Reach the external system once (used when a task is created). The default does nothing.
    async fn healthcheck(&self) -> Result<(), EngineError> {
        Ok(())
    }
    /// The source, not yet opened.
    async fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Source>, EngineError>;
    /// A copy behind a new box.
    fn clone_box(&self) -> Box<dyn SourceConfig>;
    /// For callers that know the concrete type (e.g. the server's `POST /cdc` translation).
    fn as_any(&self) -> &dyn Any;
}

/// Configuration of a sink connector: a factory that validates purely and builds.
#[async_trait]
pub trait SinkConfig: erased_serde::Serialize + fmt::Debug + Send + Sync + 'static {
    /// The key this configuration answers to (`milvus`, `kafka`, ...).
    fn kind(&self) -> &'static str;
    /// The guarantee the sink built from this configuration gives; the pipeline checks the
    /// built sink declares the same.
    fn delivery(&self) -> DeliveryGuarantee;
    /// Problems of the configuration alone, without any I/O (empty when valid).
    fn validate(&self) -> Vec<ConfigError>;
    /// Problems against the rest of the pipeline, without any I/O. The default finds none.
    fn validate_in(&self, _facts: &PipelineFacts) -> Vec<ConfigError> {
        Vec::new()
    }
    /// Reach the external system once and check the credentials (used when a task is
    /// created, so that a wrong target is refused at once). The default does nothing.
    async fn healthcheck(&self) -> Result<(), EngineError> {
        Ok(())
    }
    /// Connect and return the sink.
    async fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Sink>, EngineError>;
    /// A copy behind a new box.
    fn clone_box(&self) -> Box<dyn SinkConfig>;
    /// For callers that know the concrete type.
    fn as_any(&self) -> &dyn Any;
}

erased_serde::serialize_trait_object!(SourceConfig);
erased_serde::serialize_trait_object!(SinkConfig);

type ParseFn<T> = fn(&mut dyn erased_serde::Deserializer<'_>) -> Result<T, erased_serde::Error>;

/// A component kind: its key in a pipeline document and how a configuration of it is read into
/// the trait object `C` (`dyn SourceConfig` or `dyn SinkConfig`).
pub struct Kind<C: ?Sized + 'static> {
    /// The key (`milvus`, `kafka`, ...).
    pub name: &'static str,
    /// One line for `--help` and error messages.
    pub doc: &'static str,
    parse: ParseFn<Box<C>>,
}

/// A source kind.
pub type SourceKind = Kind<dyn SourceConfig>;
/// A sink kind.
pub type SinkKind = Kind<dyn SinkConfig>;

impl<C: ?Sized> Clone for Kind<C> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<C: ?Sized> Copy for Kind<C> {}

/// A concrete configuration put behind the trait object `C`.
pub trait IntoConfig<C: ?Sized> {
    /// The boxed trait object.
    fn into_config(self) -> Box<C>;
}

impl<T: SourceConfig> IntoConfig<dyn SourceConfig> for T {
    fn into_config(self) -> Box<dyn SourceConfig> {
        Box::new(self)
    }
}

impl<T: SinkConfig> IntoConfig<dyn SinkConfig> for T {
    fn into_config(self) -> Box<dyn SinkConfig> {
        Box::new(self)
    }
}

impl<C: ?Sized> Kind<C> {
    /// The kind `name` whose configuration is `T`.
    pub const fn of<T>(name: &'static str, doc: &'static str) -> Self
    where
        T: IntoConfig<C> + serde::de::DeserializeOwned,
    {
        Self {
            name,
            doc,
            parse: |d| erased_serde::deserialize::<T>(d).map(IntoConfig::into_config),
        }
    }

    /// Read a configuration of this kind.
    pub fn parse(
        &self,
        d: &mut dyn erased_serde::Deserializer<'_>,
    ) -> Result<Box<C>, erased_serde::Error> {
        (self.parse)(d)
    }
}

/// The error of a component's validation as one [`EngineError`] (kind `Config`) naming
/// `component` and every problem; `Ok` when there is none.
pub fn check(component: &str, errors: Vec<ConfigError>) -> Result<(), EngineError> {
    if errors.is_empty() {
        return Ok(());
    }
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    Err(EngineError::config(component, text.join("; ")))
}

/// The problem of a validation that stops at its first one (its message names the field),
/// as a list for [`SinkConfig::validate`] / [`SourceConfig::validate`].
pub fn first_problem(r: Result<(), EngineError>) -> Vec<ConfigError> {
    r.err()
        .map(|e| ConfigError::new("", e.message))
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_nest_and_display() {
        let e = ConfigError::new("tls.ca", "missing").under("sinks.t.milvus");
        assert_eq!(e.to_string(), "sinks.t.milvus.tls.ca: missing");
        assert_eq!(ConfigError::new("", "bad").under("x").to_string(), "x: bad");
    }
}
