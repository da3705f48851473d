//! Declarative pipelines: the YAML document model ([`spec::PipelineSpec`]), its strict parsing
//! and validation, and [`build`], which connects every component and returns an engine
//! [`cdc_engine::Pipeline`] ready to run.

pub mod env;
pub mod registry;
pub mod spec;

use std::time::Duration;

use cdc_engine::config::BuildContext;
use cdc_engine::transforms::{Filter, Rename};
use cdc_engine::{EngineError, Operator, Pipeline, PipelineOptions};

pub use spec::{PipelineSpec, SinkSpec, SourceSpec, SpecError, TransformSpec};

/// Connect every component of a validated spec. Sinks connect first, so an unreachable target
/// fails here, before anything is read. Each built sink must give the delivery guarantee its
/// configuration declares.
pub async fn build(spec: &PipelineSpec) -> Result<Pipeline, EngineError> {
    let facts = spec.facts();
    let mut sinks = Vec::new();
    for (id, s) in &spec.sinks {
        let ctx = BuildContext {
            pipeline: &spec.name,
            id,
            facts,
            filters: &[],
        };
        let sink = s.0.build(&ctx).await?;
        let (declared, built) = (s.0.delivery(), sink.delivery());
        if declared != built {
            return Err(EngineError::internal(
                format!("sink {id}"),
                format!(
                    "the {} configuration declares {declared:?} delivery but its sink gives                      {built:?}",
                    s.0.kind()
                ),
            ));
        }
        sinks.push((id.clone(), sink));
    }
    let mut operators: Vec<Box<dyn Operator>> = Vec::new();
    for t in &spec.transforms {
        operators.push(match t {
            TransformSpec::Filter(f) => Box::new(Filter::new(f)?),
            TransformSpec::Rename(r) => Box::new(Rename::new(&r.rules)?),
        });
    }
    let filters: Vec<_> = spec
        .transforms
        .iter()
        .map_while(|t| match t {
            TransformSpec::Filter(f) => Some(f.clone()),
            TransformSpec::Rename(_) => None,
        })
        .collect();
    let ctx = BuildContext {
        pipeline: &spec.name,
        id: "source",
        facts,
        filters: &filters,
    };
    let source = spec.source.0.build(&ctx).await?;
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
