//! User configuration of the Kafka sink (`sinks: { <id>: { kafka: {...} } }`), its defaults and
//! its pure validation.
//!
//! ```yaml
//! sinks:
//!   events:
//!     kafka:
//!       brokers: 127.0.0.1:19092
//!       topic: "milvus.{database}.{collection}"
//!       format: avro
//!       delivery: exactly_once
//! ```

use std::collections::BTreeMap;

use cdc_engine::EngineError;
use cdc_events::{AvroWire, DynamicFields};
use serde::{Deserialize, Serialize};

use crate::topic::TopicTemplate;

/// Settings of a sink that publishes row-level change events to Kafka.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// Bootstrap brokers, `host:port[,host:port...]` (e.g. `127.0.0.1:19092`).
    pub brokers: String,
    /// Topic of the events: a fixed name, or a template with `{database}` and `{collection}`
    /// (e.g. `milvus.{database}.{collection}`). Characters Kafka does not allow in topic names
    /// become `_`; database-level DDL renders `{collection}` as `_database`.
    #[serde(default = "default_topic")]
    pub topic: String,
    /// Value encoding: `json` (one JSON object per event) or `avro`.
    #[serde(default)]
    pub format: Format,
    /// Framing of Avro values: `single_object` (Avro single-object encoding: `C3 01` + 8-byte
    /// schema fingerprint) or `confluent` (byte 0 + 4-byte schema id).
    #[serde(default)]
    pub avro_wire: AvroWire,
    /// Static schema ids for the Confluent framing: schema fingerprint (16 hex digits, as
    /// published in the schema topic) → id. Schemas not listed get an id derived from their
    /// fingerprint (stable across restarts).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub schema_ids: BTreeMap<String, u32>,
    /// Topic where every schema version is published (key: fingerprint, value: JSON with the
    /// Avro schema, its version and id) before the first event that uses it; read back on start
    /// so versions continue. `null` disables it (versions then restart at 1 with the process).
    #[serde(default = "default_schema_topic")]
    pub schema_topic: Option<String>,
    /// Message key: `pk` (the primary key as a string, so a compacted topic keeps the latest
    /// version of each row; DDL events are keyed by collection) or `none`.
    #[serde(default)]
    pub key: KeyMode,
    /// JSON only: dynamic fields merged into the row (`merge`) or kept under `$meta`
    /// (`nested`).
    #[serde(default)]
    pub dynamic_fields: DynamicFields,
    /// `at_least_once` (idempotent producer, acks=all, every delivery confirmed at each
    /// checkpoint; a crash may repeat the events after the last checkpoint) or `exactly_once`
    /// (Kafka transactions committed with each checkpoint; consumers must read with
    /// `isolation.level=read_committed`).
    #[serde(default)]
    pub delivery: Delivery,
    /// `exactly_once`: the producer's `transactional.id`, unique per sink and stable across
    /// restarts. Default: `milvus-cdc.<pipeline>.<sink id>`. The sink's committed offsets live
    /// in the compacted topic `<transactional_id>.offsets`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transactional_id: Option<String>,
    /// `exactly_once`: transaction timeout in milliseconds; must exceed the checkpoint
    /// interval and stay below the broker's `transaction.max.timeout.ms`.
    #[serde(default = "default_transaction_timeout_ms")]
    pub transaction_timeout_ms: u64,
    /// Create missing topics (events, schema and offsets topics) with `topic_partitions`
    /// partitions and `replication_factor` replicas.
    #[serde(default = "default_true")]
    pub create_topics: bool,
    /// Partitions of topics the sink creates.
    #[serde(default = "default_topic_partitions")]
    pub topic_partitions: i32,
    /// Replication factor of topics the sink creates.
    #[serde(default = "default_replication_factor")]
    pub replication_factor: i32,
    /// Seconds to wait for the brokers when connecting and for metadata requests.
    #[serde(default = "default_connect_timeout_secs")]
    pub connect_timeout_secs: u64,
    /// Seconds a checkpoint may wait for every delivery report (or a transaction commit)
    /// before the sink fails.
    #[serde(default = "default_flush_timeout_secs")]
    pub flush_timeout_secs: u64,
    /// Authentication and encryption.
    #[serde(default)]
    pub security: SecurityConfig,
    /// Extra librdkafka producer settings (e.g. `compression.type: zstd`, `linger.ms: "20"`).
    /// Settings the sink manages itself (`bootstrap.servers`, `acks`, `enable.idempotence`,
    /// `transactional.id`) cannot be overridden.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// Encoding of event values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// One JSON object per event.
    #[default]
    Json,
    /// Avro, framed as `avro_wire`.
    Avro,
}

/// What the message key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyMode {
    /// The primary key as a string (DDL: the collection, database DDL: the database).
    #[default]
    Pk,
    /// No key (events spread over partitions; no per-key order).
    None,
}

/// Delivery guarantee of the sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Idempotent producer, acks=all, every delivery report awaited at each checkpoint.
    #[default]
    AtLeastOnce,
    /// One Kafka transaction per checkpoint epoch, with the sink's offsets inside it.
    ExactlyOnce,
}

/// Authentication and TLS, passed to librdkafka as the settings named in brackets.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityConfig {
    /// `plaintext` (default), `ssl`, `sasl_plaintext` or `sasl_ssl` [`security.protocol`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`, ... [`sasl.mechanism`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl_mechanism: Option<String>,
    /// SASL user [`sasl.username`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl_username: Option<String>,
    /// SASL password [`sasl.password`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl_password: Option<String>,
    /// PEM file of the CA that signed the brokers' certificates [`ssl.ca.location`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_ca_location: Option<String>,
    /// PEM file of the client certificate for mutual TLS [`ssl.certificate.location`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_certificate_location: Option<String>,
    /// PEM file of the client key for mutual TLS [`ssl.key.location`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_key_location: Option<String>,
    /// Password of the client key [`ssl.key.password`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_key_password: Option<String>,
}

impl SecurityConfig {
    /// The librdkafka settings of the fields that are set.
    pub fn settings(&self) -> Vec<(&'static str, &str)> {
        [
            ("security.protocol", &self.protocol),
            ("sasl.mechanism", &self.sasl_mechanism),
            ("sasl.username", &self.sasl_username),
            ("sasl.password", &self.sasl_password),
            ("ssl.ca.location", &self.ssl_ca_location),
            ("ssl.certificate.location", &self.ssl_certificate_location),
            ("ssl.key.location", &self.ssl_key_location),
            ("ssl.key.password", &self.ssl_key_password),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
        .collect()
    }
}

fn default_topic() -> String {
    "milvus.{database}.{collection}".into()
}
fn default_schema_topic() -> Option<String> {
    Some("milvus-cdc.schemas".into())
}
fn default_transaction_timeout_ms() -> u64 {
    60_000
}
fn default_true() -> bool {
    true
}
fn default_topic_partitions() -> i32 {
    1
}
fn default_replication_factor() -> i32 {
    1
}
fn default_connect_timeout_secs() -> u64 {
    10
}
fn default_flush_timeout_secs() -> u64 {
    60
}

/// librdkafka settings the sink sets itself.
pub const MANAGED_OPTIONS: [&str; 4] = [
    "bootstrap.servers",
    "acks",
    "enable.idempotence",
    "transactional.id",
];

impl KafkaSinkConfig {
    /// A configuration with every default, publishing to `brokers`.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            topic: default_topic(),
            format: Format::default(),
            avro_wire: AvroWire::default(),
            schema_ids: BTreeMap::new(),
            schema_topic: default_schema_topic(),
            key: KeyMode::default(),
            dynamic_fields: DynamicFields::default(),
            delivery: Delivery::default(),
            transactional_id: None,
            transaction_timeout_ms: default_transaction_timeout_ms(),
            create_topics: true,
            topic_partitions: default_topic_partitions(),
            replication_factor: default_replication_factor(),
            connect_timeout_secs: default_connect_timeout_secs(),
            flush_timeout_secs: default_flush_timeout_secs(),
            security: SecurityConfig::default(),
            options: BTreeMap::new(),
        }
    }

    /// Check the configuration without connecting; the error names the field.
    pub fn validate(&self) -> Result<(), EngineError> {
        let err = |m: String| Err(EngineError::config("kafka sink", m));
        if self.brokers.split(',').all(|b| b.trim().is_empty()) {
            return err("`brokers` is empty; give `host:port[,host:port...]`".into());
        }
        for b in self
            .brokers
            .split(',')
            .map(str::trim)
            .filter(|b| !b.is_empty())
        {
            if !b
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
            {
                return err(format!("`brokers`: {b:?} is not `host:port`"));
            }
        }
        TopicTemplate::parse(&self.topic).map_err(|m| EngineError::config("kafka sink", m))?;
        if let Some(t) = &self.schema_topic {
            crate::topic::check_topic_name(t)
                .map_err(|m| EngineError::config("kafka sink", format!("`schema_topic`: {m}")))?;
        }
        if let Some(id) = &self.transactional_id {
            if id.trim().is_empty() {
                return err("`transactional_id` is empty; remove it to use the default".into());
            }
            crate::topic::check_topic_name(&format!("{id}.offsets")).map_err(|m| {
                EngineError::config(
                    "kafka sink",
                    format!("`transactional_id` must also name the offsets topic: {m}"),
                )
            })?;
        }
        if self.transaction_timeout_ms < 1000 {
            return err(format!(
                "`transaction_timeout_ms` is {} ms; use at least 1000 (and more than the \
                 checkpoint interval)",
                self.transaction_timeout_ms
            ));
        }
        for (fp, id) in &self.schema_ids {
            if fp.len() != 16 || !fp.chars().all(|c| c.is_ascii_hexdigit()) {
                return err(format!(
                    "`schema_ids`: key {fp:?} is not a schema fingerprint of 16 hex digits"
                ));
            }
            if *id == 0 || *id > i32::MAX as u32 {
                return err(format!(
                    "`schema_ids`: id {id} of {fp} must be in 1..=2147483647"
                ));
            }
        }
        if self.topic_partitions < 1 {
            return err("`topic_partitions` must be at least 1".into());
        }
        if self.replication_factor < 1 {
            return err("`replication_factor` must be at least 1".into());
        }
        if self.connect_timeout_secs == 0 || self.flush_timeout_secs == 0 {
            return err("`connect_timeout_secs` and `flush_timeout_secs` must be positive".into());
        }
        if let Some(k) = self
            .options
            .keys()
            .find(|k| MANAGED_OPTIONS.contains(&k.as_str()))
        {
            return err(format!(
                "`options.{k}` is managed by the sink (see `brokers` and `delivery`)"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<KafkaSinkConfig, String> {
        serde_saphyr::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_yaml() {
        let c = parse("brokers: 127.0.0.1:19092\nformat: avro\ndelivery: exactly_once\n").unwrap();
        assert_eq!(c.topic, "milvus.{database}.{collection}");
        assert_eq!(c.format, Format::Avro);
        assert_eq!(c.delivery, Delivery::ExactlyOnce);
        assert_eq!(c.key, KeyMode::Pk);
        assert_eq!(c.schema_topic.as_deref(), Some("milvus-cdc.schemas"));
        c.validate().unwrap();
        assert_eq!(
            KafkaSinkConfig::new("127.0.0.1:19092"),
            parse("brokers: 127.0.0.1:19092").unwrap()
        );
        let c =
            parse("brokers: b:1\nschema_topic: null\noptions: {compression.type: zstd}").unwrap();
        assert_eq!(c.schema_topic, None);
        assert_eq!(c.options["compression.type"], "zstd");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(parse("brokers: b:1\ntopics: x")
            .unwrap_err()
            .contains("topics"));
    }

    #[test]
    fn validation_names_the_field() {
        let bad = |f: &dyn Fn(&mut KafkaSinkConfig), field: &str| {
            let mut c = KafkaSinkConfig::new("127.0.0.1:19092");
            f(&mut c);
            let e = c.validate().unwrap_err();
            assert!(e.message.contains(field), "{field}: {e}");
        };
        bad(&|c| c.brokers = " ".into(), "`brokers`");
        bad(&|c| c.brokers = "localhost".into(), "`brokers`");
        bad(&|c| c.topic = "m.{db}".into(), "{db}");
        bad(&|c| c.topic = String::new(), "topic");
        bad(&|c| c.schema_topic = Some("a b".into()), "`schema_topic`");
        bad(
            &|c| c.transactional_id = Some("x/y".into()),
            "`transactional_id`",
        );
        bad(
            &|c| c.transaction_timeout_ms = 10,
            "`transaction_timeout_ms`",
        );
        bad(
            &|c| {
                c.schema_ids.insert("xyz".into(), 1);
            },
            "`schema_ids`",
        );
        bad(
            &|c| {
                c.options.insert("acks".into(), "1".into());
            },
            "`options.acks`",
        );
        bad(&|c| c.topic_partitions = 0, "`topic_partitions`");
    }

    #[test]
    fn security_settings_pass_through() {
        let c = parse(
            "brokers: b:1\nsecurity: {protocol: sasl_ssl, sasl_mechanism: PLAIN, sasl_username: u, sasl_password: p}",
        )
        .unwrap();
        assert_eq!(
            c.security.settings(),
            vec![
                ("security.protocol", "sasl_ssl"),
                ("sasl.mechanism", "PLAIN"),
                ("sasl.username", "u"),
                ("sasl.password", "p")
            ]
        );
    }
}
