//! User configuration of the Milvus source (`source: { milvus: {...} }` in a pipeline file).
//!
//! Every field is documented here because these comments are the user documentation.
//! [`MilvusSourceConfig::validate`] is pure (no I/O) and names the offending field;
//! [`MilvusSourceConfig::build`] connects nothing yet: the connections are made in
//! [`cdc_engine::Source::open`].

pub use cdc_state::TlsConfig;
use std::collections::BTreeMap;

use cdc_engine::EngineError;
use cdc_protocol::{channel, etcd_meta, position};
use serde::{Deserialize, Serialize};

pub use crate::snapshot::config::{SnapshotConfig, SnapshotLoad, SnapshotMode, MAX_BATCH_ROWS};

/// Component name used in errors and logs.
pub(crate) const COMPONENT: &str = "source milvus";

/// Where the source Milvus keeps its metadata, which message queue it writes to, and where to
/// start reading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MilvusSourceConfig {
    /// The etcd of the source Milvus (databases, collections, fields and partitions are read
    /// and watched there).
    pub etcd: EtcdConfig,
    /// The message queue the source Milvus writes its channels to (`mq.type` of Milvus).
    pub mq: MqConfig,
    /// `msgChannel.chanNamePrefix.cluster` of the source Milvus. DML channels are
    /// `{cluster_prefix}-rootcoord-dml_{i}` and the replicate channel is
    /// `{cluster_prefix}-replicate-msg`.
    #[serde(default = "default_cluster_prefix")]
    pub cluster_prefix: String,
    /// Name of the replicate channel, when it is not `{cluster_prefix}-replicate-msg` (Milvus
    /// `msgChannel.chanNamePrefix.replicateMsg` changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicate_channel: Option<String>,
    /// Where to start reading a channel that has no checkpoint and no entry in `positions`:
    /// `latest` (only changes made from now on) or `earliest` (everything the message queue
    /// still holds).
    #[serde(default)]
    pub start: StartFrom,
    /// Start positions given by the user, as in milvus-cdc's create request: virtual channel
    /// name (e.g. `by-dev-rootcoord-dml_0_449534118316441601v0`) to the standard base64 of a
    /// serialized `msg.MsgPosition` (for instance a `channel_cps` entry of a Flush response).
    /// Reading starts just after that position (the message itself is not read again).
    /// Several virtual channels of one physical channel start at the earliest of them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub positions: BTreeMap<String, String>,
    /// What to do with a message that cannot be decoded: `pause` (stop with an error naming
    /// the channel, offset and message type; the default) or `skip` (log it at WARN, count it
    /// and go on).
    #[serde(default)]
    pub on_decode_error: OnDecodeError,
    /// Skip the messages that the source Milvus itself received by replication (from
    /// milvus-cdc or another replicator), so that two-way or chained setups do not loop:
    /// a non-empty `replicate_id` message property (Milvus 2.5), a `MsgBase.replicateInfo`
    /// with `isReplicate` or a `replicateID` (2.3.2+ / 2.5), or a streaming replicate header
    /// (`_rh`, 2.6). Skipped messages are counted in
    /// `milvus_cdc_source_skipped_messages_total{reason="replicated"}`. Changes that come
    /// from etcd (CreatePartition, partition loads derived from QueryCoord's keys) carry no
    /// such mark and are never skipped; nor are messages whose replicator did not mark them.
    /// Default `false`.
    #[serde(default)]
    pub skip_replicated: bool,
    /// A DML channel that neither carries a live collection (per etcd) nor delivered any
    /// message for this many milliseconds is idle: Milvus stopped sending it time ticks, so it
    /// no longer holds back the ordering of the other channels. Milvus ticks every 200 ms.
    #[serde(default = "default_idle_channel_ms")]
    pub idle_channel_ms: u64,
    /// Messages buffered between each channel reader and the merger (per channel).
    #[serde(default = "default_channel_buffer")]
    pub channel_buffer: usize,
    /// Memory budget, in MiB, of the changes the source has read and not yet handed on, over
    /// all channels: those buffered between the readers and the merger and those held back
    /// waiting for the other channels' time ticks. A reader over it stops reading and pauses
    /// its consumer (Kafka: `pause` on the partition) until half of it is free, unless the
    /// ordering waits on its channel; the decoded backlog in memory therefore stays near this
    /// bound however long the outage was (`milvus_cdc_source_pending_bytes`). Also the most
    /// one channel may hold back, and the largest streaming transaction held before its
    /// commit. Default 32.
    #[serde(default = "default_max_pending_mib")]
    pub max_pending_mib: usize,
    /// The source Milvus gRPC endpoint, `http://host:port` or `https://host:port` (e.g.
    /// `http://127.0.0.1:19530`; `https://` turns TLS on). Needed by `snapshot`, which reads
    /// the rows that existed before the start through the Milvus API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// Credentials for `uri`: `user:password`, or an API key (keep it in `${VAR}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// TLS settings for an `https://` `uri` (system roots when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// Initial snapshot: copy what the source holds before the start, then stream (see
    /// [`SnapshotConfig`]). Default `mode: never`.
    #[serde(default, skip_serializing_if = "SnapshotConfig::is_default")]
    pub snapshot: SnapshotConfig,
    /// How the source rides out an outage of its etcd or message queue (a restart, a network
    /// cut): it reconnects with exponential backoff and resumes exactly where it was (the etcd
    /// watch from its revision, each channel after its last message). Faults that cannot heal
    /// (an offset the broker no longer holds, refused credentials) stop the task at once.
    #[serde(default)]
    pub reconnect: ReconnectConfig,
    /// Replicate access control: roles, grants, users and user-to-role bindings, read from
    /// the source etcd (`root-coord/credential/...`) and sent as DDL events (`create_role`,
    /// `grant_privilege`, `create_user`, ...). On every start the whole state is sent again
    /// (a Milvus sink applies it check-then-act). Users carry no password: see the Milvus
    /// sink's `rbac.passwords_file`. Default `false`, as in milvus-cdc (`enable_user_role`).
    #[serde(default)]
    pub enable_user_role: bool,
}

/// Reconnecting to etcd and the message queue after they went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconnectConfig {
    /// Delay, in milliseconds, before the first reconnect attempt; it doubles after each
    /// failed attempt (with jitter). Default 200.
    #[serde(default = "default_reconnect_initial_ms")]
    pub initial_ms: u64,
    /// Largest delay, in milliseconds, between two attempts. Default 10000.
    #[serde(default = "default_reconnect_max_ms")]
    pub max_ms: u64,
    /// Stop the task with an error once a dependency stayed unreachable this many seconds.
    /// Absent (the default): retry for ever, logging a warning every 30 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub give_up_after_s: Option<u64>,
}

impl Default for ReconnectConfig {
    fn default() -> Self {
        Self {
            initial_ms: default_reconnect_initial_ms(),
            max_ms: default_reconnect_max_ms(),
            give_up_after_s: None,
        }
    }
}

impl ReconnectConfig {
    /// The engine retry policy of this configuration.
    pub fn policy(&self) -> cdc_engine::retry::RetryPolicy {
        cdc_engine::retry::RetryPolicy {
            initial: std::time::Duration::from_millis(self.initial_ms),
            max: std::time::Duration::from_millis(self.max_ms),
            give_up_after: self.give_up_after_s.map(std::time::Duration::from_secs),
        }
    }

    fn validate(&self) -> Result<(), EngineError> {
        if self.initial_ms == 0 {
            return Err(field_err("reconnect.initial_ms", "must be greater than 0"));
        }
        if self.max_ms < self.initial_ms {
            return Err(field_err(
                "reconnect.max_ms",
                format!(
                    "{} is less than `reconnect.initial_ms` ({})",
                    self.max_ms, self.initial_ms
                ),
            ));
        }
        if self.give_up_after_s == Some(0) {
            return Err(field_err(
                "reconnect.give_up_after_s",
                "must be greater than 0 (leave it out to retry for ever)",
            ));
        }
        Ok(())
    }
}

/// Connection to the source Milvus etcd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdConfig {
    /// etcd endpoints, e.g. `["127.0.0.1:2379"]` (`http://` or `https://` may be given).
    pub endpoints: Vec<String>,
    /// `etcd.rootPath` of the source Milvus.
    #[serde(default = "default_root_path")]
    pub root_path: String,
    /// `etcd.metaSubPath` of the source Milvus.
    #[serde(default = "default_meta_sub_path")]
    pub meta_sub_path: String,
    /// User name, when etcd authentication is enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Password of `username`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// TLS settings, when etcd is served over TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// Timeout, in milliseconds, of connecting and of each etcd request.
    #[serde(default = "default_etcd_timeout_ms")]
    pub timeout_ms: u64,
}

/// The message queue of the source Milvus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum MqConfig {
    /// Kafka (`mq.type: kafka`).
    Kafka(KafkaConfig),
    /// Pulsar (`mq.type: pulsar`).
    Pulsar(PulsarConfig),
}

/// Kafka connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, e.g. `["127.0.0.1:9092"]`.
    pub brokers: Vec<String>,
    /// Extra librdkafka consumer settings (e.g. `security.protocol`, `sasl.mechanisms`,
    /// `sasl.username`, `sasl.password`, `fetch.wait.max.ms`). They override the source's own
    /// settings, except that offsets are never committed to the broker.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// Pulsar connection. Topics are `persistent://{tenant}/{namespace}/{channel}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PulsarConfig {
    /// Service URL, e.g. `pulsar://127.0.0.1:6650`.
    pub url: String,
    /// Pulsar tenant of the Milvus topics.
    #[serde(default = "default_pulsar_tenant")]
    pub tenant: String,
    /// Pulsar namespace of the Milvus topics.
    #[serde(default = "default_pulsar_namespace")]
    pub namespace: String,
    /// Authentication token, when the broker requires one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// Where to start a channel without a checkpoint or user position.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartFrom {
    /// Only messages written after the source opened.
    #[default]
    Latest,
    /// Every message the queue still holds.
    Earliest,
}

/// Policy for messages that cannot be decoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDecodeError {
    /// Return the error: the pipeline pauses with it as reason.
    #[default]
    Pause,
    /// Log the message at WARN, count it in the errors metric, and continue.
    Skip,
}

fn default_cluster_prefix() -> String {
    channel::DEFAULT_CLUSTER.to_string()
}
fn default_root_path() -> String {
    etcd_meta::DEFAULT_ROOT_PATH.to_string()
}
fn default_meta_sub_path() -> String {
    etcd_meta::DEFAULT_META_SUB_PATH.to_string()
}
fn default_pulsar_tenant() -> String {
    "public".to_string()
}
fn default_pulsar_namespace() -> String {
    "default".to_string()
}
fn default_idle_channel_ms() -> u64 {
    600
}
fn default_channel_buffer() -> usize {
    32
}
fn default_max_pending_mib() -> usize {
    32
}
fn default_etcd_timeout_ms() -> u64 {
    10_000
}
fn default_reconnect_initial_ms() -> u64 {
    200
}
fn default_reconnect_max_ms() -> u64 {
    10_000
}

fn field_err(field: &str, what: impl std::fmt::Display) -> EngineError {
    EngineError::config(COMPONENT, format!("field `{field}`: {what}"))
}

fn check_name(field: &str, value: &str) -> Result<(), EngineError> {
    if value.trim().is_empty() {
        return Err(field_err(field, "must not be empty"));
    }
    if value.chars().any(char::is_whitespace) {
        return Err(field_err(
            field,
            format!("`{value}` must not contain whitespace"),
        ));
    }
    Ok(())
}

impl MilvusSourceConfig {
    /// A configuration with every default, reading `etcd_endpoint` and the Kafka `broker`.
    pub fn kafka(etcd_endpoint: &str, broker: &str) -> Self {
        Self {
            etcd: EtcdConfig {
                endpoints: vec![etcd_endpoint.to_string()],
                root_path: default_root_path(),
                meta_sub_path: default_meta_sub_path(),
                username: None,
                password: None,
                tls: None,
                timeout_ms: default_etcd_timeout_ms(),
            },
            mq: MqConfig::Kafka(KafkaConfig {
                brokers: vec![broker.to_string()],
                options: BTreeMap::new(),
            }),
            cluster_prefix: default_cluster_prefix(),
            replicate_channel: None,
            start: StartFrom::Latest,
            positions: BTreeMap::new(),
            on_decode_error: OnDecodeError::Pause,
            skip_replicated: false,
            idle_channel_ms: default_idle_channel_ms(),
            channel_buffer: default_channel_buffer(),
            max_pending_mib: default_max_pending_mib(),
            reconnect: ReconnectConfig::default(),
            enable_user_role: false,
            uri: None,
            token: None,
            tls: None,
            snapshot: SnapshotConfig::default(),
        }
    }

    /// The replicate channel name (`replicate_channel`, or `{cluster_prefix}-replicate-msg`).
    pub fn replicate_channel_name(&self) -> String {
        self.replicate_channel
            .clone()
            .unwrap_or_else(|| channel::replicate_channel_name(&self.cluster_prefix))
    }

    /// The meta root `{root_path}/{meta_sub_path}`.
    pub fn meta_root(&self) -> String {
        etcd_meta::meta_root(&self.etcd.root_path, &self.etcd.meta_sub_path)
    }

    /// Checks the configuration without connecting anywhere.
    ///
    /// # Errors
    /// A [`cdc_engine::ErrorKind::Config`] error naming the field and what is wrong with it.
    pub fn validate(&self) -> Result<(), EngineError> {
        self.etcd.validate()?;
        match &self.mq {
            MqConfig::Kafka(k) => k.validate()?,
            MqConfig::Pulsar(p) => p.validate()?,
        }
        check_name("cluster_prefix", &self.cluster_prefix)?;
        if let Some(r) = &self.replicate_channel {
            check_name("replicate_channel", r)?;
        }
        for (vchannel, text) in &self.positions {
            let field = format!("positions.{vchannel}");
            channel::parse_vchannel(vchannel).map_err(|e| field_err(&field, e))?;
            let pos = position::decode_position_b64(text).map_err(|e| field_err(&field, e))?;
            if matches!(self.mq, MqConfig::Kafka(_)) {
                position::kafka_offset(&pos.msg_id).map_err(|e| field_err(&field, e))?;
            } else if pos.msg_id.is_empty() {
                return Err(field_err(&field, "the position has an empty msgID"));
            }
        }
        if self.idle_channel_ms == 0 {
            return Err(field_err("idle_channel_ms", "must be greater than 0"));
        }
        if self.channel_buffer == 0 {
            return Err(field_err("channel_buffer", "must be greater than 0"));
        }
        if self.max_pending_mib == 0 {
            return Err(field_err("max_pending_mib", "must be greater than 0"));
        }
        self.reconnect.validate()?;
        self.validate_snapshot()
    }

    fn validate_snapshot(&self) -> Result<(), EngineError> {
        if let Some(uri) = &self.uri {
            if !(uri.starts_with("http://") || uri.starts_with("https://")) {
                return Err(field_err(
                    "uri",
                    format!("`{uri}` must start with http:// or https://"),
                ));
            }
        }
        if matches!(&self.token, Some(t) if t.is_empty()) {
            return Err(field_err("token", "must not be empty when set"));
        }
        if let Some((f, m)) = self.tls.iter().flat_map(|t| t.problems()).next() {
            return Err(field_err(&format!("tls.{f}"), &m));
        }
        let s = &self.snapshot;
        if s.batch_rows == 0 || s.batch_rows > MAX_BATCH_ROWS {
            return Err(field_err(
                "snapshot.batch_rows",
                format!("must be between 1 and {MAX_BATCH_ROWS}"),
            ));
        }
        if s.parallelism == 0 {
            return Err(field_err("snapshot.parallelism", "must be greater than 0"));
        }
        if !s.enabled() {
            return Ok(());
        }
        if self.uri.is_none() {
            return Err(field_err(
                "uri",
                "is required with `snapshot.mode` initial or only: the snapshot reads the \
                 existing rows through the source Milvus gRPC API (e.g. http://127.0.0.1:19530)",
            ));
        }
        if self.start != StartFrom::Latest || !self.positions.is_empty() {
            return Err(field_err(
                "snapshot.mode",
                "a snapshot starts the stream where the copy begins; remove `start: earliest` \
                 and `positions`, or set `snapshot.mode: never`",
            ));
        }
        Ok(())
    }
}

impl EtcdConfig {
    fn validate(&self) -> Result<(), EngineError> {
        if self.endpoints.is_empty() {
            return Err(field_err("etcd.endpoints", "give at least one endpoint"));
        }
        for (i, e) in self.endpoints.iter().enumerate() {
            check_name(&format!("etcd.endpoints[{i}]"), e)?;
        }
        check_name("etcd.root_path", &self.root_path)?;
        check_name("etcd.meta_sub_path", &self.meta_sub_path)?;
        match (&self.username, &self.password) {
            (None, Some(_)) => {
                return Err(field_err(
                    "etcd.password",
                    "is set but `etcd.username` is not",
                ))
            }
            (Some(u), _) if u.is_empty() => {
                return Err(field_err("etcd.username", "must not be empty when set"))
            }
            _ => {}
        }
        if let Some((f, m)) = self.tls.iter().flat_map(|t| t.problems()).next() {
            return Err(field_err(&format!("etcd.tls.{f}"), &m));
        }
        if self.timeout_ms == 0 {
            return Err(field_err("etcd.timeout_ms", "must be greater than 0"));
        }
        Ok(())
    }
}

impl KafkaConfig {
    fn validate(&self) -> Result<(), EngineError> {
        if self.brokers.is_empty() {
            return Err(field_err("mq.kafka.brokers", "give at least one broker"));
        }
        for (i, b) in self.brokers.iter().enumerate() {
            check_name(&format!("mq.kafka.brokers[{i}]"), b)?;
        }
        for key in self.options.keys() {
            if matches!(key.as_str(), "enable.auto.commit" | "group.id") {
                return Err(field_err(
                    &format!("mq.kafka.options.{key}"),
                    "is managed by the source (offsets are never committed to Kafka)",
                ));
            }
        }
        Ok(())
    }
}

impl PulsarConfig {
    fn validate(&self) -> Result<(), EngineError> {
        if !(self.url.starts_with("pulsar://") || self.url.starts_with("pulsar+ssl://")) {
            return Err(field_err(
                "mq.pulsar.url",
                format!("`{}` must start with pulsar:// or pulsar+ssl://", self.url),
            ));
        }
        check_name("mq.pulsar.tenant", &self.tenant)?;
        check_name("mq.pulsar.namespace", &self.namespace)?;
        if matches!(&self.token, Some(t) if t.is_empty()) {
            return Err(field_err("mq.pulsar.token", "must not be empty when set"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
