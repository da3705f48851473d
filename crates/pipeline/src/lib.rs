//! Declarative pipelines: the YAML document model ([`spec::PipelineSpec`]), its strict parsing
//! and validation, and [`build`], which connects every component and returns an engine
//! [`cdc_engine::Pipeline`] ready to run.

pub mod builtin;
pub mod connectors;
pub mod env;
pub mod spec;

use std::time::Duration;

use cdc_engine::transforms::{Filter, Rename};
use cdc_engine::{EngineError, Operator, Pipeline, PipelineOptions};

pub use spec::{PipelineSpec, SinkSpec, SourceSpec, SpecError, TransformSpec};

/// Connect every component of a validated spec. Sinks connect first, so an unreachable target
/// fails here, before anything is read.
pub async fn build(spec: &PipelineSpec) -> Result<Pipeline, EngineError> {
    let mut sinks = Vec::new();
    for (id, s) in &spec.sinks {
        sinks.push((id.clone(), connectors::build_sink(s, id).await?));
    }
    let mut operators: Vec<Box<dyn Operator>> = Vec::new();
    for t in &spec.transforms {
        operators.push(match t {
            TransformSpec::Filter(f) => Box::new(Filter::new(f)?),
            TransformSpec::Rename(r) => Box::new(Rename::new(&r.rules)?),
        });
    }
    let scope: Vec<_> = spec
        .transforms
        .iter()
        .map_while(|t| match t {
            TransformSpec::Filter(f) => Some(f.clone()),
            TransformSpec::Rename(_) => None,
        })
        .collect();
    let source = connectors::build_source(&spec.source, &spec.name, &scope).await?;
    Ok(Pipeline {
        name: spec.name.clone(),
        source,
        operators,
        sinks,
        options: PipelineOptions {
            checkpoint_interval: Duration::from_millis(spec.checkpoint.interval_ms),
            channel_capacity: spec.checkpoint.channel_capacity,
        },
    })
}
