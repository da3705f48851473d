//! What a task is: its stored document ([`TaskDoc`], one JSON value per task in the state
//! store) and what `get`/`list` show of it ([`TaskView`], credentials removed).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::request::{CollectionInfo, CreateRequest, KafkaConnectParam, MilvusConnectParam};
use crate::secrets;

/// Lifecycle state of a task, with milvus-cdc's names and numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskState {
    /// Stored, not started yet (only while a create is in progress).
    Initial,
    /// Its pipeline runs.
    Running,
    /// Stopped, by request or because its pipeline failed (see the reason).
    Paused,
}

impl TaskState {
    /// milvus-cdc's number for the state (`milvus_cdc_task_state`).
    pub fn code(self) -> i64 {
        match self {
            TaskState::Initial => 0,
            TaskState::Running => 1,
            TaskState::Paused => 2,
        }
    }

    /// The name used in responses and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            TaskState::Initial => "Initial",
            TaskState::Running => "Running",
            TaskState::Paused => "Paused",
        }
    }

    /// Every state, in code order.
    pub const ALL: [TaskState; 3] = [TaskState::Initial, TaskState::Running, TaskState::Paused];
}

/// How a task was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// `POST /cdc` `create`: the source is the server's `source` (re-read at every start).
    Cdc,
    /// `POST /tasks` with a pipeline document: the document is used as given.
    Pipeline,
}

/// The stored form of a task (JSON under its id in the state store).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskDoc {
    /// 32 lowercase hex characters (or the id given at creation).
    pub task_id: String,
    /// How it was created.
    pub origin: Origin,
    /// Name of the pipeline document (for `POST /tasks` tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The create request, without credentials (for `POST /cdc` tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<CreateRequest>,
    /// The pipeline document (a `PipelineSpec` as JSON, named after the task id). Without
    /// credentials when `persist_credentials` is off.
    pub spec: Value,
    /// Current state.
    pub state: TaskState,
    /// Why it is paused (empty when running).
    #[serde(default)]
    pub reason: String,
    /// Keep it paused after a server restart.
    #[serde(default)]
    pub disable_auto_start: bool,
    /// Credentials left out of `spec` (paths), to be supplied again after a restart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub withheld: Vec<Vec<String>>,
    /// Creation time, ms since the Unix epoch.
    #[serde(default)]
    pub created_ms: u64,
    /// Last state change, ms since the Unix epoch.
    #[serde(default)]
    pub updated_ms: u64,
}

/// A task as `get`, `list` and `GET /tasks` show it: milvus-cdc's fields plus this
/// implementation's (`name`, `pipeline`, ...). Credentials are blank or absent.
#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    /// Task id.
    pub task_id: String,
    /// Pipeline document name, for tasks created with `POST /tasks`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Target Milvus (token, username and password blank).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub milvus_connect_param: Option<MilvusConnectParam>,
    /// Target Kafka (SASL credentials blank).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka_connect_param: Option<KafkaConnectParam>,
    /// Collections, legacy form (database `default`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub collection_infos: Vec<CollectionInfo>,
    /// Collections by database.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub db_collections: BTreeMap<String, Vec<CollectionInfo>>,
    /// `Initial`, `Running` or `Paused`.
    pub state: &'static str,
    /// Why the task is paused; omitted when empty.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Stays paused after a restart.
    pub disable_auto_start: bool,
    /// The pipeline document the task runs (credentials removed).
    pub pipeline: Value,
    /// Outages the running task rides out now (etcd or broker unreachable); omitted when
    /// none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reconnecting: Vec<cdc_engine::retry::Reconnecting>,
    /// Counters of the pipeline while it runs on the instance that answers; omitted otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<LiveView>,
    /// What the running task could not replicate and why (users without a password, ...);
    /// omitted when nothing.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_replicated: Vec<cdc_engine::notices::Notice>,
}

/// Live counters of a running task (`live` in `GET /tasks/{id}`).
#[derive(Debug, Clone, Serialize)]
pub struct LiveView {
    /// Changes read from the source since the pipeline started.
    pub changes_read: u64,
    /// Rows in them.
    pub rows_read: u64,
    /// Last checkpoint epoch every sink committed.
    pub committed_epoch: u64,
    /// Milliseconds between the source time of the last change read and now (`None` before
    /// the first change).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_lag_ms: Option<u64>,
    /// The initial snapshot's progress while it runs: rows copied in this run of rows counted,
    /// collections finished of collections planned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<cdc_engine::SourceProgress>,
}

impl LiveView {
    /// Read `status` now.
    pub fn of(status: &cdc_engine::PipelineStatus) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        let ts = status.last_read_ts.load(Relaxed);
        Self {
            changes_read: status.events_read.load(Relaxed),
            rows_read: status.rows_read.load(Relaxed),
            committed_epoch: status.committed_epoch.load(Relaxed),
            source_lag_ms: (ts > 0).then(|| {
                cdc_engine::metrics::now_ms().saturating_sub(cdc_protocol::ts::physical_ms(ts))
            }),
            snapshot: status.progress(),
        }
    }
}

impl TaskDoc {
    /// What `get`/`list` show.
    pub fn view(&self) -> TaskView {
        let mut v = TaskView {
            task_id: self.task_id.clone(),
            name: self.name.clone(),
            milvus_connect_param: None,
            kafka_connect_param: None,
            collection_infos: Vec::new(),
            db_collections: BTreeMap::new(),
            state: self.state.name(),
            reason: self.reason.clone(),
            disable_auto_start: self.disable_auto_start,
            pipeline: secrets::redacted(&self.spec),
            // The task's pipeline is named after the task.
            reconnecting: cdc_engine::retry::reconnecting(&self.task_id),
            live: None,
            not_replicated: cdc_engine::notices::list(&self.task_id),
        };
        if let Some(req) = &self.request {
            let r = req.redacted();
            v.milvus_connect_param = r.milvus_connect_param;
            v.kafka_connect_param = r.kafka_connect_param;
            v.collection_infos = r.collection_infos;
            v.db_collections = r.db_collections;
        } else {
            // A pipeline document: show its first Milvus sink and its filter like a request.
            if let Some(sinks) = self.spec.get("sinks").and_then(Value::as_object) {
                if let Some(uri) = sinks
                    .values()
                    .find_map(|s| s.pointer("/milvus/uri").and_then(Value::as_str))
                {
                    v.milvus_connect_param = Some(MilvusConnectParam {
                        uri: uri.to_string(),
                        ..Default::default()
                    });
                }
            }
            let include = self
                .spec
                .get("transforms")
                .and_then(Value::as_array)
                .and_then(|ts| ts.iter().find_map(|t| t.pointer("/filter/include")))
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>())
                .unwrap_or_default();
            let include = if include.is_empty() {
                vec!["*.*"]
            } else {
                include
            };
            for p in include {
                let (db, coll) = p.split_once('.').unwrap_or((p, "*"));
                v.db_collections
                    .entry(db.to_string())
                    .or_default()
                    .push(CollectionInfo {
                        name: coll.to_string(),
                        ..Default::default()
                    });
            }
        }
        v
    }
}

/// Is `id` acceptable as a task id (it keys the state store and labels metrics)?
pub fn valid_task_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A new task id: a UUIDv4 without dashes (32 lowercase hex characters), like milvus-cdc.
pub fn new_task_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_look_like_milvus_cdc() {
        let id = new_task_id();
        assert_eq!(id.len(), 32);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert!(valid_task_id(&id));
        assert!(!valid_task_id("a/b") && !valid_task_id("") && !valid_task_id(&"x".repeat(65)));
    }

    #[test]
    fn view_of_a_pipeline_task_has_no_credentials() {
        let doc = TaskDoc {
            task_id: "t1".into(),
            origin: Origin::Pipeline,
            name: Some("dr".into()),
            request: None,
            spec: json!({"name": "t1", "sinks": {"target": {"milvus": {
                "uri": "http://h:19531", "token": "root:Milvus"}}},
                "transforms": [{"filter": {"include": ["db1.*", "default.a"]}}]}),
            state: TaskState::Paused,
            reason: "manually pause through http interface".into(),
            disable_auto_start: false,
            withheld: vec![],
            created_ms: 1,
            updated_ms: 2,
        };
        let v = serde_json::to_value(doc.view()).unwrap();
        assert!(!v.to_string().contains("root:Milvus"));
        assert_eq!(v["state"], "Paused");
        assert_eq!(v["milvus_connect_param"]["uri"], "http://h:19531");
        assert_eq!(v["db_collections"]["db1"][0]["name"], "*");
        assert_eq!(v["db_collections"]["default"][0]["name"], "a");
    }
}
