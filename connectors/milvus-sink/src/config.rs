//! User configuration of the Milvus sink (`sinks: { <id>: { milvus: {...} } }`), its defaults
//! and its pure validation.
//!
//! Databases are selected per call with the gRPC metadata header `dbName` (the Milvus SDK
//! convention), so one connection serves every database; credentials travel in the
//! `authorization` header as base64 of `user:password` or of the API key.

pub use cdc_state::TlsConfig;
use serde::{Deserialize, Serialize};

use cdc_engine::EngineError;

/// Connection and write settings of a sink that writes to a target Milvus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MilvusSinkConfig {
    /// Address of the target Milvus gRPC endpoint, `http://host:port` or `https://host:port`
    /// (e.g. `http://127.0.0.1:19530`). `https://` turns TLS on.
    pub uri: String,
    /// Credentials as `user:password`, or a Zilliz Cloud API key. Mutually exclusive with
    /// `username`/`password`. Leave unset for a target without authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// User name; requires `password`. Equivalent to `token: "<username>:<password>"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Password of `username`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// TLS settings for an `https://` target. Without this section an `https://` target is
    /// verified against the system's root certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// Seconds to wait for the TCP/TLS connection to the target before giving up.
    #[serde(default = "default_connect_timeout_secs")]
    pub connect_timeout_secs: u64,
    /// Seconds one RPC (insert, delete, DDL...) may take before it is cancelled and retried.
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: u64,
    /// How changes are applied: `api` (normal Milvus RPCs; works with any Milvus, including
    /// milvus-lite) or `replicate` (raw `ReplicateMessage` to a standby target started with
    /// `common.ttMsgEnabled: false`).
    #[serde(default)]
    pub mode: SinkMode,
    /// In `api` mode, the RPC used for source inserts: `upsert` (replays after a crash never
    /// duplicate rows) or `insert` (see `replay_window_secs` for how duplicates are avoided).
    #[serde(default)]
    pub write: WriteMode,
    /// With `write: insert`, changes whose source timestamp is older than the sink's start
    /// time plus this many seconds are written with `upsert`, because a previous run may have
    /// written them already (after the last checkpoint, before a crash); newer changes use
    /// `insert`. Covers clock skew between the source Milvus and this host. In `replicate`
    /// mode such inserts are sent as a delete of their keys followed by the insert.
    #[serde(default = "default_replay_window_secs")]
    pub replay_window_secs: u64,
    /// Merging of consecutive inserts into one request (`api` mode); in `replicate` mode the
    /// limits of one `ReplicateMessage` pack (the changes queued on one target channel while
    /// its previous pack was in flight; each keeps its own messages).
    #[serde(default)]
    pub batch: BatchConfig,
    /// Retries of failed requests that may succeed later (target unreachable, rate limited...).
    #[serde(default)]
    pub retry: RetryConfig,
    /// Skip partition operations (create/drop/load/release partition) and write every row to
    /// the target's default partition, for targets that deny partition RPCs.
    #[serde(default)]
    pub ignore_partition: bool,
    /// DDL operations to log and skip when the target refuses them (not retriable), instead
    /// of stopping: e.g. `[create_index, load_partitions, release_partitions]` for milvus-lite,
    /// which implements few index types and no partition-level load. Rows still replicate.
    /// Names: see [`SKIPPABLE_DDL`].
    #[serde(default)]
    pub skip_refused: Vec<String>,
    /// Changes queued per writer (one writer per target collection and source shard; in
    /// `replicate` mode one per target physical channel) before `write` waits; bounds memory
    /// together with `batch`.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// Settings of `mode: replicate`.
    #[serde(default)]
    pub replicate: ReplicateConfig,
    /// Access control (roles, grants, users), applied when the source sends it (source
    /// `enable_user_role`).
    #[serde(
        default,
        skip_serializing_if = "crate::ddl_rbac::RbacConfig::is_default"
    )]
    pub rbac: crate::ddl_rbac::RbacConfig,
}

/// How the sink applies changes to the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SinkMode {
    /// Normal Milvus RPCs (Insert/Upsert/Delete, CreateCollection...).
    #[default]
    Api,
    /// `ReplicateMessage` to a standby target (Milvus 2.3.2+ with `common.ttMsgEnabled:
    /// false`).
    Replicate,
}

/// DDL operations `skip_refused` may name (creations of collections, databases and partitions
/// are left out: rows written after them would fail).
pub const SKIPPABLE_DDL: [&str; 7] = [
    "create_index",
    "drop_index",
    "alter_index",
    "load_collection",
    "release_collection",
    "load_partitions",
    "release_partitions",
];

/// The RPC used for source inserts in `api` mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    /// Upsert by primary key: idempotent, replays never duplicate rows.
    #[default]
    Upsert,
    /// Insert, with upsert for changes a previous run may have written (`replay_window_secs`).
    Insert,
}

/// Limits of one merged write request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Most rows in one insert/upsert/delete request.
    #[serde(default = "default_max_rows")]
    pub max_rows: usize,
    /// Most bytes (protobuf size of the columns) in one request. Milvus 2.3 turns a request
    /// into one message-queue message per target shard without splitting it below the
    /// broker's message limit (Kafka's default is 1 MB), so big values cost a refused attempt
    /// before the sink splits the batch and lowers its limit. Must also stay below the
    /// target's `proxy.grpc.serverMaxRecvSize`.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    /// Milliseconds a partial batch may wait for more rows before it is sent.
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
}

/// Exponential backoff for retriable failures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts per request, the first included; when exhausted the task stops with the last
    /// error.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Milliseconds before the first retry; doubles after each attempt.
    #[serde(default = "default_initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    /// Upper bound of the wait between two attempts, in milliseconds.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
}

/// Settings of `mode: replicate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicateConfig {
    /// Milliseconds between synthetic time ticks sent on every target channel (a standby
    /// target cannot make progress, e.g. finish loading, without them).
    #[serde(default = "default_time_tick_interval_ms")]
    pub time_tick_interval_ms: u64,
}

fn default_connect_timeout_secs() -> u64 {
    10
}
fn default_request_timeout_secs() -> u64 {
    60
}
fn default_replay_window_secs() -> u64 {
    60
}
fn default_queue_capacity() -> usize {
    16
}
fn default_max_rows() -> usize {
    20_000
}
fn default_max_bytes() -> usize {
    4 * 1024 * 1024
}
fn default_linger_ms() -> u64 {
    100
}
fn default_max_attempts() -> u32 {
    60
}
fn default_initial_backoff_ms() -> u64 {
    200
}
fn default_max_backoff_ms() -> u64 {
    10_000
}
fn default_time_tick_interval_ms() -> u64 {
    500
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_rows: default_max_rows(),
            max_bytes: default_max_bytes(),
            linger_ms: default_linger_ms(),
        }
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: default_max_attempts(),
            initial_backoff_ms: default_initial_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
        }
    }
}

impl Default for ReplicateConfig {
    fn default() -> Self {
        Self {
            time_tick_interval_ms: default_time_tick_interval_ms(),
        }
    }
}

impl MilvusSinkConfig {
    /// A configuration with every default, for `uri`.
    pub fn new(uri: impl Into<String>) -> Self {
        Self {
            uri: uri.into(),
            token: None,
            username: None,
            password: None,
            tls: None,
            connect_timeout_secs: default_connect_timeout_secs(),
            request_timeout_secs: default_request_timeout_secs(),
            mode: SinkMode::default(),
            write: WriteMode::default(),
            replay_window_secs: default_replay_window_secs(),
            batch: BatchConfig::default(),
            retry: RetryConfig::default(),
            ignore_partition: false,
            skip_refused: Vec::new(),
            queue_capacity: default_queue_capacity(),
            replicate: ReplicateConfig::default(),
            rbac: crate::ddl_rbac::RbacConfig::default(),
        }
    }

    /// Check the configuration without any I/O; the error names the offending field.
    pub fn validate(&self) -> Result<(), EngineError> {
        let err = |field: &str, msg: &str| {
            Err(EngineError::config(
                "sink milvus",
                format!("milvus.{field}: {msg}"),
            ))
        };
        let rest = match self
            .uri
            .strip_prefix("http://")
            .or_else(|| self.uri.strip_prefix("https://"))
        {
            Some(r) => r,
            None => {
                return err(
                    "uri",
                    &format!(
                        "{:?} must start with http:// or https:// (e.g. http://127.0.0.1:19530)",
                        self.uri
                    ),
                )
            }
        };
        let host = rest.split('/').next().unwrap_or_default();
        if host.is_empty() {
            return err("uri", &format!("{:?} has no host", self.uri));
        }
        if self.uri.parse::<tonic::transport::Uri>().is_err() {
            return err("uri", &format!("{:?} is not a valid URI", self.uri));
        }
        if self.token.is_some() && (self.username.is_some() || self.password.is_some()) {
            return err("token", "give either token or username/password, not both");
        }
        if let Some(t) = &self.token {
            if t.is_empty() {
                return err(
                    "token",
                    "is empty; remove it for a target without authentication",
                );
            }
        }
        match (&self.username, &self.password) {
            (Some(u), Some(_)) if u.is_empty() => return err("username", "is empty"),
            (Some(_), None) => return err("password", "is required with username"),
            (None, Some(_)) => return err("username", "is required with password"),
            _ => {}
        }
        if let Some(tls) = &self.tls {
            if self.uri.starts_with("http://") {
                return err(
                    "tls",
                    "is set but uri starts with http://; use https:// to connect with TLS",
                );
            }
            if let Some((f, m)) = tls.problems().into_iter().next() {
                return err(&format!("tls.{f}"), &m);
            }
        }
        if self.connect_timeout_secs == 0 {
            return err("connect_timeout_secs", "must be at least 1");
        }
        if self.request_timeout_secs == 0 {
            return err("request_timeout_secs", "must be at least 1");
        }
        if self.batch.max_rows == 0 {
            return err("batch.max_rows", "must be at least 1");
        }
        if self.batch.max_bytes < 1024 {
            return err("batch.max_bytes", "must be at least 1024");
        }
        if self.batch.linger_ms > 60_000 {
            return err("batch.linger_ms", "must be at most 60000 (one minute)");
        }
        if self.retry.max_attempts == 0 {
            return err("retry.max_attempts", "must be at least 1");
        }
        if self.retry.initial_backoff_ms == 0 {
            return err("retry.initial_backoff_ms", "must be at least 1");
        }
        if self.retry.max_backoff_ms < self.retry.initial_backoff_ms {
            return err(
                "retry.max_backoff_ms",
                "must be at least retry.initial_backoff_ms",
            );
        }
        if let Some(bad) = self
            .skip_refused
            .iter()
            .find(|o| !SKIPPABLE_DDL.contains(&o.as_str()))
        {
            return err(
                "skip_refused",
                &format!(
                    "{bad:?} is not an operation that can be skipped; use some of: {}",
                    SKIPPABLE_DDL.join(", ")
                ),
            );
        }
        if self.queue_capacity == 0 {
            return err("queue_capacity", "must be at least 1");
        }
        if self.replicate.time_tick_interval_ms == 0
            || self.replicate.time_tick_interval_ms > 10_000
        {
            return err(
                "replicate.time_tick_interval_ms",
                "must be between 1 and 10000",
            );
        }
        Ok(())
    }

    /// The token sent in the `authorization` header (`user:password` or the API key).
    pub(crate) fn effective_token(&self) -> Option<String> {
        match (&self.token, &self.username, &self.password) {
            (Some(t), _, _) => Some(t.clone()),
            (None, Some(u), Some(p)) => Some(format!("{u}:{p}")),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<MilvusSinkConfig, String> {
        serde_saphyr::from_str::<MilvusSinkConfig>(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_from_minimal_yaml() {
        let c = parse("uri: http://127.0.0.1:19530\n").unwrap();
        assert_eq!(c, MilvusSinkConfig::new("http://127.0.0.1:19530"));
        assert_eq!(c.mode, SinkMode::Api);
        assert_eq!(c.write, WriteMode::Upsert);
        assert_eq!(c.batch.max_rows, 20_000);
        assert_eq!(c.batch.linger_ms, 100);
        c.validate().unwrap();
    }

    #[test]
    fn full_yaml_parses() {
        let c = parse(
            "uri: https://h:19530\ntoken: root:Milvus\ntls: {server_name: h, ca_pem_path: /c/ca.pem}\n\
             mode: api\nwrite: insert\nbatch: {max_rows: 5, max_bytes: 4096, linger_ms: 0}\n\
             retry: {max_attempts: 3, initial_backoff_ms: 10, max_backoff_ms: 20}\n\
             ignore_partition: true\nskip_refused: [create_index, load_partitions]\n\
             replicate: {time_tick_interval_ms: 100}\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.write, WriteMode::Insert);
        assert_eq!(c.effective_token().as_deref(), Some("root:Milvus"));
        assert!(c.ignore_partition);
        assert_eq!(c.skip_refused, ["create_index", "load_partitions"]);
        assert_eq!(c.replicate.time_tick_interval_ms, 100);
    }

    #[test]
    fn only_ddl_can_be_skipped() {
        let c = parse("uri: http://h:1\nskip_refused: [insert]\n").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("skip_refused") && e.contains("insert"), "{e}");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let e = parse("uri: http://h:1\nbatch_size: 3\n").unwrap_err();
        assert!(e.contains("batch_size"), "{e}");
    }

    #[test]
    fn validation_names_the_field() {
        type Mutation = Box<dyn Fn(&mut MilvusSinkConfig)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|c| c.uri = "127.0.0.1:19530".into()), "milvus.uri"),
            (Box::new(|c| c.uri = "http://".into()), "milvus.uri"),
            (
                Box::new(|c| {
                    c.token = Some("a:b".into());
                    c.username = Some("a".into());
                }),
                "milvus.token",
            ),
            (
                Box::new(|c| c.username = Some("a".into())),
                "milvus.password",
            ),
            (
                Box::new(|c| c.password = Some("a".into())),
                "milvus.username",
            ),
            (
                Box::new(|c| c.tls = Some(TlsConfig::default())),
                "milvus.tls",
            ),
            (Box::new(|c| c.batch.max_rows = 0), "milvus.batch.max_rows"),
            (
                Box::new(|c| c.batch.max_bytes = 10),
                "milvus.batch.max_bytes",
            ),
            (
                Box::new(|c| c.retry.max_attempts = 0),
                "milvus.retry.max_attempts",
            ),
            (
                Box::new(|c| c.retry.max_backoff_ms = 1),
                "milvus.retry.max_backoff_ms",
            ),
            (
                Box::new(|c| c.connect_timeout_secs = 0),
                "milvus.connect_timeout_secs",
            ),
        ];
        for (mutate, field) in cases {
            let mut c = MilvusSinkConfig::new("http://127.0.0.1:19530");
            mutate(&mut c);
            let e = c.validate().unwrap_err();
            assert!(e.message.starts_with(field), "{field}: {e}");
            assert_eq!(e.kind, cdc_engine::ErrorKind::Config);
        }
    }

    #[test]
    fn mutual_tls_needs_both_files() {
        let mut c = MilvusSinkConfig::new("https://h:19530");
        c.tls = Some(TlsConfig {
            cert_path: Some("/c.pem".into()),
            ..TlsConfig::default()
        });
        let e = c.validate().unwrap_err();
        assert!(e.message.contains("key_path"), "{e}");
    }

    #[test]
    fn username_password_make_the_token() {
        let mut c = MilvusSinkConfig::new("http://h:19530");
        c.username = Some("root".into());
        c.password = Some("Milvus".into());
        c.validate().unwrap();
        assert_eq!(c.effective_token().as_deref(), Some("root:Milvus"));
    }
}
