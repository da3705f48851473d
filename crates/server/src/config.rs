//! The server configuration file (`milvus-cdc serve --config server.yaml`): where to listen,
//! where to keep state, the source Milvus every task reads, and the API's compatibility knobs.
//!
//! Parsing is strict (unknown keys are errors naming the key) and [`ServerConfig::validate`]
//! checks values without any I/O, naming the offending field.

use std::path::{Path, PathBuf};

use cdc_connector_milvus_source::MilvusSourceConfig;
use cdc_pipeline::spec::CheckpointSpec;
use serde::{Deserialize, Serialize};

/// The whole server configuration.
///
/// ```yaml
/// address: 127.0.0.1:8444
/// state_dir: .milvus-cdc/server
/// max_task_num: 100
/// source:
///   etcd: { endpoints: ["127.0.0.1:2379"], root_path: by-dev }
///   mq: { kafka: { brokers: ["127.0.0.1:19092"] } }
///   cluster_prefix: by-dev
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// `host:port` the HTTP API listens on. The original milvus-cdc listens on `0.0.0.0:8444`;
    /// the default here is loopback only, because without `auth` the API is open.
    #[serde(default = "default_address")]
    pub address: String,
    /// Directory of the embedded state store (task documents and checkpoints). Created if
    /// missing; only one server may use it at a time.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Most tasks the server keeps (in any state). A create beyond it is refused.
    #[serde(default = "default_max_task_num")]
    pub max_task_num: usize,
    /// Longest accepted database or collection name in a create request (milvus-cdc
    /// `maxNameLength`).
    #[serde(default = "default_max_name_length")]
    pub max_name_length: usize,
    /// Initial log filter: `error`, `warn`, `info`, `debug`, `trace` or a tracing directive such
    /// as `info,cdc_engine=debug`. Changed at run time with the `maintenance` request
    /// (`set_log_level`). The `--log-level` command-line flag overrides it.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// The source Milvus every task created with `POST /cdc` reads: its etcd, its message queue
    /// and its channel names (same keys as `source: { milvus: ... }` in a pipeline file).
    /// Positions given in a create request are added per task.
    pub source: MilvusSourceConfig,
    /// Checkpointing of the tasks created with `POST /cdc` (`interval_ms`, `channel_capacity`).
    #[serde(default)]
    pub checkpoint: CheckpointSpec,
    /// HTTP status of `POST /cdc` responses: `always_200` (like the original: the status line
    /// is always 200 and the outcome is the body's `code`) or `mirror` (the status line is the
    /// body's `code`).
    #[serde(default)]
    pub http_status: HttpStatusMode,
    /// Store target credentials (tokens, passwords) with the task in the state store. With
    /// `false` they are kept in memory only: after a restart such tasks come back `Paused`,
    /// with a reason naming the credentials to send with `resume`.
    #[serde(default = "default_true")]
    pub persist_credentials: bool,
    /// Seconds to wait for the pipelines to commit their final checkpoint when the server
    /// stops (Ctrl-C / SIGTERM). Pipelines still running after it are abandoned; they resume
    /// from their last committed checkpoint on the next start.
    #[serde(default = "default_shutdown_timeout_secs")]
    pub shutdown_timeout_secs: u64,
    /// Bearer-token authentication of the API (`tokens_file`: `TOKEN ROLE` lines). Without it
    /// the API is open to anyone who reaches the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<crate::auth::AuthConfig>,
    /// Built-in HTTPS (`tls: { cert_path, key_path }`, PEM files): the API port then speaks
    /// only TLS. Without it the API is plain HTTP (terminate TLS in front, or keep `address`
    /// on loopback or a private network).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::tls::TlsConfig>,
    /// Largest accepted request body in bytes; larger requests get 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Where tasks and checkpoints are kept: absent (or without `etcd`) for the embedded store
    /// in `state_dir`; `state: { etcd: { endpoints, prefix, user, password, tls } }` for etcd,
    /// which also makes the instances on one prefix a cluster (see `cluster`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<StateConfig>,
    /// Cluster behaviour when `state.etcd` is set.
    #[serde(default)]
    pub cluster: ClusterConfig,
}

/// `state:` in server.yaml.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// Keep tasks and checkpoints in etcd under `prefix`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<cdc_state::EtcdStateConfig>,
}

/// `cluster:` in server.yaml (used with `state.etcd`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Seconds an instance's etcd lease lives without renewal: a dead instance's tasks are
    /// taken over after about this long.
    #[serde(default = "default_ttl_secs")]
    pub ttl_secs: u64,
    /// This instance's name in the cluster (default: host name and port of `address`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// URL other instances and clients can reach this instance's API at (shown in
    /// `GET /cluster`; default `http://{address}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise_url: Option<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            ttl_secs: default_ttl_secs(),
            instance_id: None,
            advertise_url: None,
        }
    }
}

fn default_ttl_secs() -> u64 {
    10
}

/// How the HTTP status line of `POST /cdc` responses is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum HttpStatusMode {
    /// Always 200; the outcome is the body's `code` (milvus-cdc behaviour).
    #[default]
    #[serde(rename = "always_200")]
    Always200,
    /// The status line equals the body's `code` (200, 400, 405 or 500).
    #[serde(rename = "mirror")]
    Mirror,
}

fn default_address() -> String {
    "127.0.0.1:8444".to_string()
}
fn default_state_dir() -> PathBuf {
    PathBuf::from(".milvus-cdc/server")
}
fn default_max_task_num() -> usize {
    100
}
fn default_max_name_length() -> usize {
    256
}
fn default_log_level() -> String {
    "info".to_string()
}
fn default_true() -> bool {
    true
}
fn default_shutdown_timeout_secs() -> u64 {
    60
}
fn default_max_body_bytes() -> usize {
    crate::http::DEFAULT_MAX_BODY_BYTES
}

/// A configuration problem, naming the field.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {field}: {message}")]
pub struct ConfigError {
    /// File (or other origin) of the configuration.
    pub origin: String,
    /// Dotted path of the offending field (or `-` for a syntax error).
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl ServerConfig {
    /// Read, parse and validate a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            origin: origin.clone(),
            field: "-".into(),
            message: format!("cannot read the file: {e}"),
        })?;
        Self::parse(&text, &origin)
    }

    /// Parse and validate YAML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let cfg: ServerConfig = serde_saphyr::from_str(text).map_err(|e| ConfigError {
            origin: origin.to_string(),
            field: "-".into(),
            message: e.to_string(),
        })?;
        cfg.validate().map_err(|(field, message)| ConfigError {
            origin: origin.to_string(),
            field,
            message,
        })?;
        Ok(cfg)
    }

    /// Check values without any I/O. The error is `(field, message)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |f: &str, m: String| Err((f.to_string(), m));
        match self.address.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
            _ => {
                return err(
                    "address",
                    format!("{:?} must be host:port, e.g. 127.0.0.1:8444", self.address),
                )
            }
        }
        if self.state_dir.as_os_str().is_empty() {
            return err("state_dir", "must not be empty".into());
        }
        if self.max_task_num == 0 {
            return err("max_task_num", "must be at least 1".into());
        }
        if self.max_name_length == 0 || self.max_name_length > 65_535 {
            return err("max_name_length", "must be between 1 and 65535".into());
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log_level) {
            return err(
                "log_level",
                format!(
                    "{:?} is not a log filter ({e}); use e.g. info or debug",
                    self.log_level
                ),
            );
        }
        if let Err(e) = self.source.validate() {
            return err("source", e.message);
        }
        if self.checkpoint.interval_ms < 10 {
            return err(
                "checkpoint.interval_ms",
                "must be at least 10 (milliseconds)".into(),
            );
        }
        if self.checkpoint.channel_capacity == 0 {
            return err("checkpoint.channel_capacity", "must be at least 1".into());
        }
        if self.shutdown_timeout_secs == 0 {
            return err("shutdown_timeout_secs", "must be at least 1".into());
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.max_body_bytes) {
            return err(
                "max_body_bytes",
                "must be between 1024 and 67108864 (64 MiB)".into(),
            );
        }
        if let Some(e) = self.state.as_ref().and_then(|s| s.etcd.as_ref()) {
            if let Err((f, m)) = e.validate() {
                return err(&format!("state.etcd.{f}"), m);
            }
        }
        if !(2..=300).contains(&self.cluster.ttl_secs) {
            return err("cluster.ttl_secs", "must be between 2 and 300".into());
        }
        if let Some(id) = &self.cluster.instance_id {
            if !crate::task::valid_task_id(id) {
                return err(
                    "cluster.instance_id",
                    "must be 1 to 64 letters, digits, '-' or '_'".into(),
                );
            }
        }
        if let Some(a) = &self.auth {
            if a.tokens_file.as_os_str().is_empty() {
                return err("auth.tokens_file", "must not be empty".into());
            }
            if a.reload_secs > 3600 {
                return err(
                    "auth.reload_secs",
                    "must be between 0 (SIGHUP only) and 3600".into(),
                );
            }
        }
        if let Some(t) = &self.tls {
            if let Err((f, m)) = t.validate() {
                return err(&format!("tls.{f}"), m);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = "source:\n  etcd: { endpoints: [\"127.0.0.1:2379\"] }\n  \
                       mq: { kafka: { brokers: [\"127.0.0.1:19092\"] } }\n";

    #[test]
    fn minimal_config_gets_defaults() {
        let c = ServerConfig::parse(MIN, "t.yaml").unwrap();
        assert_eq!(c.address, "127.0.0.1:8444");
        assert_eq!(c.max_name_length, 256);
        assert_eq!(c.max_task_num, 100);
        assert_eq!(c.http_status, HttpStatusMode::Always200);
        assert!(c.persist_credentials);
        assert_eq!(c.checkpoint.interval_ms, 1000);
    }

    #[test]
    fn full_config_parses() {
        let text = format!(
            "{MIN}address: 0.0.0.0:9000\nstate_dir: /tmp/x\nmax_task_num: 3\nmax_name_length: 10\n\
             log_level: debug\nhttp_status: mirror\npersist_credentials: false\n\
             checkpoint: {{ interval_ms: 200 }}\nshutdown_timeout_secs: 5\n"
        );
        let c = ServerConfig::parse(&text, "t.yaml").unwrap();
        assert_eq!(c.http_status, HttpStatusMode::Mirror);
        assert!(!c.persist_credentials);
        assert_eq!(c.checkpoint.interval_ms, 200);
        assert_eq!(c.max_task_num, 3);
        let text = format!(
            "{MIN}state:\n  etcd: {{ endpoints: [\"127.0.0.1:2379\"], prefix: cdc-a, user: u, \
             password: p, tls: {{ ca_path: /ca.pem }} }}\ncluster: {{ ttl_secs: 5 }}\n\
             auth: {{ tokens_file: /etc/t, reload_secs: 5 }}\n\
             tls: {{ cert_path: /etc/c.pem, key_path: /etc/k.pem }}\n"
        );
        let c = ServerConfig::parse(&text, "t.yaml").unwrap();
        assert_eq!(c.auth.as_ref().map(|a| a.reload_secs), Some(5));
        assert_eq!(
            c.tls.as_ref().map(|t| t.key_path.clone()),
            Some(PathBuf::from("/etc/k.pem"))
        );
        let e = c.state.unwrap().etcd.unwrap();
        assert_eq!((e.prefix.as_str(), e.user.as_deref()), ("cdc-a", Some("u")));
        assert_eq!(c.cluster.ttl_secs, 5);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_field() {
        let e = ServerConfig::parse(&format!("{MIN}maxTaskNum: 3\n"), "t.yaml").unwrap_err();
        assert!(e.to_string().contains("maxTaskNum"), "{e}");
        for (extra, field) in [
            ("address: nowhere\n", "address"),
            ("max_task_num: 0\n", "max_task_num"),
            ("log_level: \"info,[\"\n", "log_level"),
            ("http_status: sometimes\n", "http_status"),
            ("checkpoint: { interval_ms: 1 }\n", "checkpoint.interval_ms"),
            ("tls: { cert_path: /c.pem }\n", "key_path"),
            ("tls: { cert_path: /c.pem, key: /k.pem }\n", "key"),
            ("tls: { cert_path: \"\", key_path: /k }\n", "tls.cert_path"),
            (
                "auth: { tokens_file: /t, reload_secs: 4000 }\n",
                "auth.reload_secs",
            ),
        ] {
            let e = ServerConfig::parse(&format!("{MIN}{extra}"), "t.yaml").unwrap_err();
            assert!(e.to_string().contains(field), "{field}: {e}");
        }
        let e = ServerConfig::parse(
            &format!("{MIN}state: {{ etcd: {{ endpoints: [] }} }}\n"),
            "t.yaml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("state.etcd.endpoints"), "{e}");
        let e = ServerConfig::parse("address: 1.2.3.4:1\n", "t.yaml").unwrap_err();
        assert!(e.to_string().contains("source"), "{e}");
    }
}
