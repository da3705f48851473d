//! The request and response models of `POST /cdc`, field for field as milvus-cdc documents them
//! (`server/model/request/*.go`, `server/model/common.go`).
//!
//! Differences on purpose: unknown keys are rejected (the original ignores them), and JSON
//! `null` is accepted wherever the original's Go zero value would be.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// `null` reads as the type's default (Go clients marshal empty slices and maps as `null`).
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The `POST /cdc` envelope.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CdcRequest {
    /// `create`, `delete`, `pause`, `resume`, `get`, `list`, `position` or `maintenance`.
    pub request_type: String,
    /// The typed request, depending on `request_type`.
    #[serde(default)]
    pub request_data: serde_json::Value,
}

/// `create`: a task replicating one collection (or `*`) of the source to a target.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// Target Milvus connection.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub milvus_connect_param: Option<MilvusConnectParam>,
    /// Target Kafka connection (instead of a Milvus target).
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub kafka_connect_param: Option<KafkaConnectParam>,
    /// Legacy form: exactly one collection of database `default` (or `*`).
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub collection_infos: Vec<CollectionInfo>,
    /// Database name (or `*`) to exactly one collection; exactly one entry.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub db_collections: BTreeMap<String, Vec<CollectionInfo>>,
    /// The source replicate channel and an optional start position on it.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub rpc_channel_info: Option<ChannelInfo>,
    /// Extra features (`enable_user_role`).
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub extra_info: Option<ExtraInfo>,
    /// Write buffering (stored; unused, as in milvus-cdc HEAD).
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub buffer_config: Option<BufferConfig>,
    /// Database and collection renames on the target.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub name_mapping: Vec<NameMapping>,
    /// After a server restart the task stays paused instead of being started.
    #[serde(default, deserialize_with = "nullable")]
    pub disable_auto_start: bool,
    /// Caller-chosen task id; creating an id that exists returns it unchanged.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub task_id: Option<String>,
    /// Deprecated top-level positions (must be empty; give them per collection).
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub positions: BTreeMap<String, String>,
    /// Extension of this implementation: the initial snapshot of the task's collections
    /// (`source.milvus.snapshot` of a pipeline: `{"mode": "initial", "load": "temporary",
    /// "batch_rows": 2000, "parallelism": 2}`). Needs `source.uri` in the server
    /// configuration (the snapshot reads rows through the source Milvus API).
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub snapshot: Option<serde_json::Value>,
}

/// Target Milvus connection (`milvus_connect_param`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MilvusConnectParam {
    /// `http://host:port` or `https://host:port`.
    #[serde(default, deserialize_with = "nullable")]
    pub uri: String,
    /// `user:password` or an API key.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub token: String,
    /// Seconds allowed to connect (0: the default, 10).
    #[serde(default, deserialize_with = "nullable")]
    pub connect_timeout: i64,
    /// TLS files.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "DialConfig::is_empty"
    )]
    pub dial_config: DialConfig,
    /// DML channel count of the target (accepted; not needed by the API-mode sink).
    #[serde(default, deserialize_with = "nullable")]
    pub channel_num: i64,
    /// Skip partition operations on the target.
    #[serde(default, deserialize_with = "nullable")]
    pub ignore_partition: bool,
    /// Deprecated: host (with `port`) when `uri` is empty.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub host: String,
    /// Deprecated: port (with `host`).
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_zero"
    )]
    pub port: i64,
    /// Deprecated: TLS for `host`/`port`.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_false"
    )]
    pub enable_tls: bool,
    /// Deprecated: user name (with `password`) when `token` is empty.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub username: String,
    /// Deprecated: password of `username`.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub password: String,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}
fn is_false(v: &bool) -> bool {
    !*v
}

/// TLS files for the target connection (`dial_config`); they must exist on this host.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DialConfig {
    /// Name expected in the server certificate.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub server_name: String,
    /// Server certificate to trust (one-way TLS).
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub server_pem_path: String,
    /// CA certificate (mutual TLS).
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub ca_pem_path: String,
    /// Client certificate (mutual TLS).
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub client_pem_path: String,
    /// Client key (mutual TLS).
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub client_key_path: String,
}

impl DialConfig {
    /// True when no field is set.
    pub fn is_empty(&self) -> bool {
        self == &DialConfig::default()
    }
}

/// Target Kafka connection (`kafka_connect_param`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConnectParam {
    /// Bootstrap brokers, `host:port[,host:port]`.
    #[serde(default, deserialize_with = "nullable")]
    pub address: String,
    /// Topic the changes are written to (required with `address`).
    #[serde(default, deserialize_with = "nullable")]
    pub topic: String,
    /// Authenticate with SASL.
    #[serde(default, deserialize_with = "nullable")]
    pub enable_sasl: bool,
    /// SASL settings.
    #[serde(default, deserialize_with = "nullable")]
    pub sasl: KafkaSasl,
}

/// SASL settings of a Kafka target.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSasl {
    /// User name.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub username: String,
    /// Password.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub password: String,
    /// SASL mechanism (e.g. `PLAIN`, `SCRAM-SHA-256`).
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub mechanisms: String,
    /// `SASL_PLAINTEXT` or `SASL_SSL`.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub security_protocol: String,
}

/// One collection of a create request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionInfo {
    /// Collection name, or `*` for every collection.
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    /// Start positions: virtual channel to base64 `msg.MsgPosition`.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub positions: BTreeMap<String, String>,
    /// Read channels without a position from the earliest message the queue holds.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_false"
    )]
    pub use_start_position: bool,
}

/// The replicate channel of a create request (`rpc_channel_info`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelInfo {
    /// Must be empty or the source's replicate channel.
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    /// Base64 `msg.MsgPosition` to start the replicate channel from.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub position: String,
}

/// `extra_info` of a create request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraInfo {
    /// Replicate users and roles (accepted, not implemented: the response says so).
    #[serde(default, deserialize_with = "nullable")]
    pub enable_user_role: bool,
}

/// `buffer_config` of a create request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferConfig {
    /// Flush period (stored only).
    #[serde(default, deserialize_with = "nullable")]
    pub period: i64,
    /// Buffer size (stored only).
    #[serde(default, deserialize_with = "nullable")]
    pub size: i64,
}

/// One `name_mapping` entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameMapping {
    /// Source database.
    #[serde(default, deserialize_with = "nullable")]
    pub source_db: String,
    /// Target database (empty: same name).
    #[serde(default, deserialize_with = "nullable")]
    pub target_db: String,
    /// Source collection to target collection; empty maps the whole database.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub collection_mapping: BTreeMap<String, String>,
}

/// `get`, `pause` and `position`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskIdRequest {
    /// The task.
    #[serde(default, deserialize_with = "nullable")]
    pub task_id: String,
}

/// `delete`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteRequest {
    /// The task.
    #[serde(default, deserialize_with = "nullable")]
    pub task_id: String,
    /// Succeed when the task does not exist.
    #[serde(default, deserialize_with = "nullable")]
    pub ignore_not_found: bool,
}

/// `resume` (and the body of `POST /tasks/{id}/resume`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResumeRequest {
    /// The task (taken from the path for `POST /tasks/{id}/resume`).
    #[serde(default, deserialize_with = "nullable")]
    pub task_id: String,
    /// Credentials that were not stored (`persist_credentials: false`), by the path the pause
    /// reason names, e.g. `{"sinks.target.milvus.token": "root:Milvus"}`.
    #[serde(default, deserialize_with = "nullable")]
    pub credentials: BTreeMap<String, String>,
}

/// `list` takes no fields.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListRequest {}

/// `maintenance`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceRequest {
    /// `set_log_level`.
    #[serde(default, deserialize_with = "nullable")]
    pub operation: String,
    /// Parameters of the operation (`log_level` for `set_log_level`).
    #[serde(default, deserialize_with = "nullable")]
    pub params: serde_json::Map<String, serde_json::Value>,
}

/// A channel position in a `position` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// Collection id; -10 for the replicate channel, 0 for a physical DML channel (this
    /// implementation checkpoints per channel, not per collection).
    pub collection_id: i64,
    /// Source channel name.
    pub channel_name: String,
    /// Physical time (ms) of the position, 0 when unknown.
    pub time: i64,
    /// Hybrid timestamp `(time + 1) << 18`, 0 when unknown.
    pub tt: u64,
    /// Base64 of a `msg.MsgPosition{channel_name, msgID}`.
    pub msg_id: String,
}

impl CreateRequest {
    /// A copy without credentials, as stored and shown (`get`/`list` blank them like the
    /// original).
    pub fn redacted(&self) -> CreateRequest {
        let mut r = self.clone();
        if let Some(m) = r.milvus_connect_param.as_mut() {
            m.token.clear();
            m.username.clear();
            m.password.clear();
        }
        if let Some(k) = r.kafka_connect_param.as_mut() {
            k.sasl.username.clear();
            k.sasl.password.clear();
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_create_bodies_parse() {
        let a: CreateRequest = serde_json::from_str(
            r#"{"milvus_connect_param":{"uri":"http://target:19530","token":"root:Milvus",
                "connect_timeout":120,"channel_num":16},
               "db_collections":{"*":[{"name":"*"}]},"extra_info":{"enable_user_role":true}}"#,
        )
        .unwrap();
        assert_eq!(a.db_collections["*"][0].name, "*");
        let b: CreateRequest = serde_json::from_str(
            r#"{"milvus_connect_param":{"host":"localhost","port":19530,"username":"root",
                "password":"Milvus","enable_tls":false,"connect_timeout":10,
                "dial_config":{"server_name":"localhost","ca_pem_path":"/c/ca.pem"}},
               "collection_infos":[{"name":"hello_milvus","positions":{}}],
               "rpc_channel_info":{"name":"by-dev-replicate-msg"},
               "buffer_config":{"period":0,"size":0},"disable_auto_start":true,
               "kafka_connect_param":null,"name_mapping":null,"task_id":"abc"}"#,
        )
        .unwrap();
        assert_eq!(b.milvus_connect_param.as_ref().unwrap().port, 19530);
        assert!(b.disable_auto_start);
        assert!(b.kafka_connect_param.is_none());
        assert_eq!(b.task_id.as_deref(), Some("abc"));
    }

    #[test]
    fn unknown_and_mistyped_keys_are_named() {
        let e = serde_json::from_str::<CreateRequest>(r#"{"milvus_conect_param":{}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("milvus_conect_param"), "{e}");
        let e = serde_json::from_str::<CreateRequest>(
            r#"{"milvus_connect_param":{"uri":"http://h:1","prot":1}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("prot"), "{e}");
        let e = serde_json::from_str::<CreateRequest>(
            r#"{"milvus_connect_param":{"connect_timeout":"ten"}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("invalid type"), "{e}");
    }

    #[test]
    fn redaction_blanks_credentials() {
        let r = CreateRequest {
            milvus_connect_param: Some(MilvusConnectParam {
                uri: "http://h:1".into(),
                token: "root:Milvus".into(),
                username: "u".into(),
                password: "p".into(),
                ..Default::default()
            }),
            kafka_connect_param: Some(KafkaConnectParam {
                sasl: KafkaSasl {
                    password: "s".into(),
                    ..Default::default()
                },
                ..Default::default()
            }),
            ..Default::default()
        };
        let text = serde_json::to_string(&r.redacted()).unwrap();
        assert!(!text.contains("Milvus") && !text.contains("\"p\"") && !text.contains("\"s\""));
    }
}
