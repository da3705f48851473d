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
//! Entry points: [`MilvusSourceConfig`] (`validate`, `build`) and [`MilvusSource`].

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
