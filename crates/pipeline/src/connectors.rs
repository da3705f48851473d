//! The connector crates linked into pipelines, and how each spec entry is built.

use cdc_engine::transforms::FilterConfig;
use cdc_engine::{EngineError, Sink, Source};

pub use cdc_connector_file::FileSinkConfig;
pub use cdc_connector_kafka::KafkaSinkConfig;
pub use cdc_connector_milvus_sink::MilvusSinkConfig as SinkConnector;
pub use cdc_connector_milvus_source::MilvusSourceConfig as SourceConnector;

use crate::builtin::{BlackholeSink, StdoutSink};
use crate::spec::{SinkSpec, SourceSpec};

/// Connect the source of a pipeline. `scope`: the pipeline's filters that see source names
/// (those before any rename); a source's initial snapshot copies only what they keep.
pub async fn build_source(
    spec: &SourceSpec,
    pipeline: &str,
    scope: &[FilterConfig],
) -> Result<Box<dyn Source>, EngineError> {
    match spec {
        SourceSpec::Milvus(cfg) => cfg.build_scoped(pipeline, scope).await,
    }
}

/// Connect one sink of a pipeline.
pub async fn build_sink(spec: &SinkSpec, sink_id: &str) -> Result<Box<dyn Sink>, EngineError> {
    match spec {
        SinkSpec::Milvus(cfg) => cfg.build(sink_id).await,
        SinkSpec::Kafka(cfg) => cfg.build(sink_id).await,
        SinkSpec::File(cfg) => cfg.build(sink_id),
        SinkSpec::Stdout(_) => Ok(Box::new(StdoutSink::new())),
        SinkSpec::Blackhole(_) => Ok(Box::<BlackholeSink>::default()),
    }
}
