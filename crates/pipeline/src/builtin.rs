//! Sinks built into every pipeline: `stdout` for demos and debugging, `blackhole` for
//! benchmarks.

use std::io::Write;
use std::sync::Arc;

use async_trait::async_trait;
use cdc_engine::{ChangeEvent, DeliveryGuarantee, EngineError, Op, Sink, SinkContext};
use serde::{Deserialize, Serialize};

/// Options of the `stdout` sink.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutConfig {}

/// Options of the `blackhole` sink.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BlackholeConfig {}

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
