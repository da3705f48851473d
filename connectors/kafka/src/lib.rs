//! Kafka sink of milvus-cdc: publishes row-level change events ([`cdc_events`]) so stream
//! processors (Flink, Arroyo, Spark, plain consumers) use Milvus changes without Milvus
//! protobufs.
//!
//! - One message per inserted/upserted/deleted row and per DDL, JSON or Avro (single-object or
//!   Confluent framing), to a topic per collection (`milvus.{database}.{collection}`) or a
//!   fixed topic.
//! - Key: the primary key as a string (DDL: the collection), so a compacted topic keeps the
//!   latest row and a key's events stay in order on one partition. Headers: `op`,
//!   `source_channel`, `source_offset`, `ts`, `schema_version`.
//! - Schema versions are published to a schema topic ([`schemas`]) before first use.
//! - Delivery: `at_least_once` (idempotent producer, acks=all, every delivery report awaited at
//!   each checkpoint) or `exactly_once` (one transaction per checkpoint epoch holding the
//!   events and the sink's offsets, [`offsets`]; see [`sink`] for the protocol).

pub mod client;
pub mod config;
pub mod offsets;
pub mod producer;
pub mod schemas;
pub mod sink;
pub mod topic;

pub use config::{Delivery, Format, KafkaSinkConfig, KeyMode, SecurityConfig};
pub use sink::KafkaSink;

use async_trait::async_trait;
use cdc_engine::config::{BuildContext, ConfigError, PipelineFacts, SinkConfig, SinkKind};
use cdc_engine::{DeliveryGuarantee, EngineError, Sink};

/// The `kafka` sink kind of pipeline documents.
pub const SINK: SinkKind = SinkKind::of::<KafkaSinkConfig>(
    KIND,
    "publish row-level change events (JSON or Avro) to Kafka topics",
);
const KIND: &str = "kafka";

#[async_trait]
impl SinkConfig for KafkaSinkConfig {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn delivery(&self) -> DeliveryGuarantee {
        match self.delivery {
            Delivery::AtLeastOnce => DeliveryGuarantee::AtLeastOnce,
            Delivery::ExactlyOnce => DeliveryGuarantee::ExactlyOnce,
        }
    }

    fn validate(&self) -> Vec<ConfigError> {
        cdc_engine::config::first_problem(KafkaSinkConfig::validate(self))
    }

    /// A transaction stays open for a whole checkpoint interval: a timeout that is not longer
    /// makes the broker abort every transaction.
    fn validate_in(&self, facts: &PipelineFacts) -> Vec<ConfigError> {
        let interval = facts.checkpoint_interval.as_millis() as u64;
        if self.delivery == Delivery::ExactlyOnce && self.transaction_timeout_ms <= interval {
            return vec![ConfigError::new(
                "transaction_timeout_ms",
                format!(
                    "{} ms is not longer than checkpoint.interval_ms ({interval} ms): every                      transaction would time out; raise it (default 60000) or checkpoint more                      often",
                    self.transaction_timeout_ms
                ),
            )];
        }
        Vec::new()
    }

    /// The brokers answer a metadata request.
    async fn healthcheck(&self) -> Result<(), EngineError> {
        client::check_brokers(self, "sink kafka").await
    }

    /// Validate, check that the brokers answer (an unreachable broker is a `Connect` error
    /// naming the addresses), and return the sink; it connects its producer in `open`.
    async fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Sink>, EngineError> {
        Ok(Box::new(self.connect(ctx.id).await?))
    }

    fn clone_box(&self) -> Box<dyn SinkConfig> {
        Box::new(self.clone())
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl KafkaSinkConfig {
    /// Validate, check that the brokers answer, and return the concrete sink.
    pub async fn connect(&self, sink_id: &str) -> Result<KafkaSink, EngineError> {
        self.validate()?;
        client::check_brokers(self, &format!("sink {sink_id}")).await?;
        KafkaSink::new(self.clone(), sink_id)
    }
}
