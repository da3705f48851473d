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

use cdc_engine::{EngineError, Sink};

impl KafkaSinkConfig {
    /// Validate, check that the brokers answer (an unreachable broker is a `Connect` error
    /// naming the addresses), and return the sink; it connects its producer in `open`.
    pub async fn build(&self, sink_id: &str) -> Result<Box<dyn Sink>, EngineError> {
        Ok(Box::new(self.connect(sink_id).await?))
    }

    /// Like [`KafkaSinkConfig::build`], returning the concrete sink.
    pub async fn connect(&self, sink_id: &str) -> Result<KafkaSink, EngineError> {
        self.validate()?;
        client::check_brokers(self, &format!("sink {sink_id}")).await?;
        KafkaSink::new(self.clone(), sink_id)
    }
}
