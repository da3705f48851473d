//! Milvus source connector of milvus-cdc: reads a source Milvus 2.3.2 - 2.5 (msgstream era)
//! as a stream of engine [`ChangeEvent`](cdc_engine::ChangeEvent)s, in hybrid-timestamp order.
//!
//! * **Metadata** comes from the source's etcd ([`meta`]): databases, collections (fields,
//!   functions), partitions, read once and then watched. It names changes, gives each its
//!   [`CollectionDef`](cdc_engine::CollectionDef), tells which channels carry live collections,
//!   and is where CreatePartition comes from (Milvus 2.3 writes no message for it).
//! * **Changes** come from the message queue ([`mq`]; Kafka, or Pulsar — built but untested
//!   against a real broker): every `{cluster}-rootcoord-dml_N` topic and the replicate channel
//!   `{cluster}-replicate-msg`, one reader task per channel that decodes in parallel
//!   ([`decode`]). Both msgstream messages and the streaming-service format of Milvus 2.5 with
//!   streaming enabled (`_v`/`_t`/`_tt` properties; control messages skipped, transactions
//!   held until their commit) are read; with `skip_replicated`, messages the source itself
//!   received by replication are skipped.
//! * **Order**: a merger ([`merger`]) releases changes by timestamp using the channels' time
//!   ticks and probe rounds for the channels without ticks; its module documentation explains
//!   why that order holds. Upserts (a Delete and an Insert with one timestamp) stay together.
//! * **Offsets** are per channel (Kafka: big-endian offset) and cover only what `next` already
//!   returned; a restart resumes just after them (at-least-once).
//!
//! Entry points: [`SOURCE`] (the `milvus` source kind), [`MilvusSourceConfig`] (its
//! [`SourceConfig`] factory) and [`MilvusSource`].

pub mod config;
pub mod decode;
pub mod meta;
pub mod mq;

mod attribution;
mod convert;
mod input;
mod merger;
mod metrics;
mod reader;
pub mod snapshot;
mod source;

pub use config::{
    EtcdConfig, KafkaConfig, MilvusSourceConfig, MqConfig, OnDecodeError, PulsarConfig,
    SnapshotConfig, SnapshotLoad, SnapshotMode, StartFrom, TlsConfig,
};
pub use source::MilvusSource;

use async_trait::async_trait;
use cdc_engine::config::{BuildContext, ConfigError, SourceConfig, SourceKind};
use cdc_engine::{EngineError, Source};

/// The `milvus` source kind of pipeline documents.
pub const SOURCE: SourceKind = SourceKind::of::<MilvusSourceConfig>(
    KIND,
    "a source Milvus: its etcd metadata and its message queue (Kafka or Pulsar)",
);
const KIND: &str = "milvus";

#[async_trait]
impl SourceConfig for MilvusSourceConfig {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn validate(&self) -> Vec<ConfigError> {
        cdc_engine::config::first_problem(MilvusSourceConfig::validate(self))
    }

    fn snapshot_reads(&self) -> bool {
        self.snapshot.enabled()
    }

    /// Validates the configuration and returns the (not yet opened) source; the pipeline name
    /// labels its metrics, and the initial snapshot copies only the collections every filter
    /// of `ctx.filters` keeps.
    async fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Source>, EngineError> {
        let mut s = MilvusSource::new(self.clone(), ctx.pipeline)?;
        s.set_snapshot_scope(
            ctx.filters
                .iter()
                .map(cdc_engine::transforms::Filter::new)
                .collect::<Result<_, _>>()?,
        );
        Ok(Box::new(s))
    }

    fn clone_box(&self) -> Box<dyn SourceConfig> {
        Box::new(self.clone())
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
