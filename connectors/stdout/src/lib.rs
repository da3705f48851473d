//! Two small sinks: `stdout` prints one line per change (demos, debugging), `blackhole`
//! counts and drops every change (benchmarks). They are also the smallest complete example of
//! a connector: a configuration struct implementing [`SinkConfig`], a [`SinkKind`] constant
//! the pipeline registry lists, and the [`Sink`] it builds.

use std::io::Write;
use std::sync::Arc;

use async_trait::async_trait;
use cdc_engine::config::{BuildContext, ConfigError, SinkConfig, SinkKind};
use cdc_engine::{ChangeEvent, DeliveryGuarantee, EngineError, Op, Sink, SinkContext};
use serde::{Deserialize, Serialize};

/// The `stdout` sink kind.
pub const STDOUT: SinkKind = SinkKind::of::<StdoutConfig>(
    "stdout",
    "print one line per change on standard output (demos, debugging)",
);

/// The `blackhole` sink kind.
pub const BLACKHOLE: SinkKind =
    SinkKind::of::<BlackholeConfig>("blackhole", "count and drop every change (benchmarks)");

/// Options of the `stdout` sink.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutConfig {}

/// Options of the `blackhole` sink.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BlackholeConfig {}

#[async_trait]
impl SinkConfig for StdoutConfig {
    fn kind(&self) -> &'static str {
        STDOUT.name
    }

    fn delivery(&self) -> DeliveryGuarantee {
        DeliveryGuarantee::AtLeastOnce
    }

    fn validate(&self) -> Vec<ConfigError> {
        Vec::new()
    }

    async fn build(&self, _ctx: &BuildContext<'_>) -> Result<Box<dyn Sink>, EngineError> {
        Ok(Box::new(StdoutSink::new()))
    }

    fn clone_box(&self) -> Box<dyn SinkConfig> {
        Box::new(self.clone())
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[async_trait]
impl SinkConfig for BlackholeConfig {
    fn kind(&self) -> &'static str {
        BLACKHOLE.name
    }

    fn delivery(&self) -> DeliveryGuarantee {
        DeliveryGuarantee::AtLeastOnce
    }

    fn validate(&self) -> Vec<ConfigError> {
        Vec::new()
    }

    async fn build(&self, _ctx: &BuildContext<'_>) -> Result<Box<dyn Sink>, EngineError> {
        Ok(Box::<BlackholeSink>::default())
    }

    fn clone_box(&self) -> Box<dyn SinkConfig> {
        Box::new(self.clone())
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Prints one line per change: time, operation, database.collection, rows, channel@offset.
pub struct StdoutSink {
    metrics: Option<cdc_engine::metrics::ComponentMetrics>,
}

impl StdoutSink {
    /// A new stdout sink.
    pub fn new() -> Self {
        Self { metrics: None }
    }
}

impl Default for StdoutSink {
    fn default() -> Self {
        Self::new()
    }
}

/// One human-readable line describing a change.
pub fn describe(ev: &ChangeEvent) -> String {
    let target = if ev.collection.is_empty() {
        ev.database.clone()
    } else {
        format!("{}.{}", ev.database, ev.collection)
    };
    let detail = match &ev.op {
        Op::Insert(b) => format!("rows={} partition={}", b.num_rows, b.partition),
        Op::Delete(d) => format!(
            "rows={} partition={}",
            d.num_rows,
            d.partition.as_deref().unwrap_or("*")
        ),
        Op::Upsert { insert, .. } => {
            format!("rows={} partition={}", insert.num_rows, insert.partition)
        }
        Op::Ddl(_) => String::new(),
    };
    format!(
        "{} {:<18} {:<32} {:<24} {}@{}",
        cdc_protocol::ts::physical_ms(ev.position.ts),
        ev.op.kind(),
        target,
        detail,
        ev.position.channel,
        cdc_state::render_offset(&ev.position.offset)
    )
}

#[async_trait]
impl Sink for StdoutSink {
    fn delivery(&self) -> DeliveryGuarantee {
        DeliveryGuarantee::AtLeastOnce
    }

    async fn open(&mut self, ctx: &SinkContext) -> Result<(), EngineError> {
        self.metrics = Some(ctx.metrics.clone());
        Ok(())
    }

    async fn write(&mut self, event: Arc<ChangeEvent>) -> Result<(), EngineError> {
        let line = describe(&event);
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}").map_err(|e| {
            EngineError::new("sink stdout", cdc_engine::ErrorKind::Write, e.to_string())
        })?;
        if let Some(m) = &self.metrics {
            m.written(event.op.kind(), event.op.rows(), event.position.ts);
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), EngineError> {
        std::io::stdout().flush().map_err(|e| {
            EngineError::new("sink stdout", cdc_engine::ErrorKind::Write, e.to_string())
        })
    }
}

/// Drops every change after counting it (rows and lag still show in metrics).
#[derive(Default)]
pub struct BlackholeSink {
    metrics: Option<cdc_engine::metrics::ComponentMetrics>,
}

#[async_trait]
impl Sink for BlackholeSink {
    fn delivery(&self) -> DeliveryGuarantee {
        DeliveryGuarantee::AtLeastOnce
    }

    async fn open(&mut self, ctx: &SinkContext) -> Result<(), EngineError> {
        self.metrics = Some(ctx.metrics.clone());
        Ok(())
    }

    async fn write(&mut self, event: Arc<ChangeEvent>) -> Result<(), EngineError> {
        if let Some(m) = &self.metrics {
            m.written(event.op.kind(), event.op.rows(), event.position.ts);
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), EngineError> {
        Ok(())
    }
}
