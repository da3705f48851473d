//! Turns a milvus-cdc `create` request into a pipeline document ([`PipelineSpec`]), applying
//! milvus-cdc's validation rules on the way. A task created over `POST /cdc` is therefore the
//! same thing as a task created from YAML: one model.
//!
//! The document built for a request:
//!
//! ```yaml
//! name: <task id>
//! source: { milvus: <server source> + positions / start from the request }
//! transforms:
//!   - filter: { include: ["<db>.<collection>"], exclude: [<collections owned by other tasks>] }
//!   - rename: { rules: <name_mapping> }          # when given
//! sinks:
//!   target: { milvus: { uri, token, tls, connect_timeout_secs, ignore_partition } }
//! checkpoint: <server checkpoint>
//! ```

use std::collections::BTreeMap;

use cdc_connector_milvus_sink::{MilvusSinkConfig, TlsConfig};
use cdc_pipeline::PipelineSpec;
use serde_json::{json, Value};

use crate::config::ServerConfig;
use crate::envelope::ApiError;
use crate::overlap::{kafka_target_key, milvus_target_key, Coverage};
use crate::request::{CollectionInfo, CreateRequest, KafkaConnectParam, MilvusConnectParam};

/// Id of the only sink of a task created with `POST /cdc`.
pub const TARGET_SINK: &str = "target";

/// A validated create request, ready to be checked for duplicates and persisted.
#[derive(Debug, Clone)]
pub struct TaskPlan {
    /// The pipeline document (JSON of a [`PipelineSpec`]), named after the task id.
    pub spec: Value,
    /// What the task covers, for the duplicate check.
    pub coverage: Coverage,
    /// The target to test before anything is stored.
    pub target: Option<MilvusSinkConfig>,
    /// Things the caller should know (returned in the response `message`).
    pub warnings: Vec<String>,
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(msg)
}

/// Validate `req` and build its pipeline document for task `task_id`.
pub fn plan(req: &CreateRequest, cfg: &ServerConfig, task_id: &str) -> Result<TaskPlan, ApiError> {
    let mut warnings = Vec::new();
    let milvus = req.milvus_connect_param.as_ref().filter(|m| {
        !(m.uri.is_empty() && m.host.is_empty() && m == &&MilvusConnectParam::default())
    });
    let kafka = req
        .kafka_connect_param
        .as_ref()
        .filter(|k| *k != &KafkaConnectParam::default());
    let (sink, target_key, check) =
        match (milvus, kafka) {
            (Some(_), Some(_)) => return Err(bad(
                "give either milvus_connect_param or kafka_connect_param, not both: a task has \
                 one target",
            )),
            (None, None) => {
                return Err(bad(
                    "milvus_connect_param is missing: give the target Milvus (uri, token) or a \
                 kafka_connect_param",
                ))
            }
            (Some(m), None) => {
                let sink = milvus_sink(m)?;
                let key = milvus_target_key(&sink.uri);
                let json = serde_json::to_value(&sink)
                    .map_err(|e| ApiError::internal(format!("cannot encode the sink: {e}")))?;
                (json!({ "milvus": json }), key, Some(sink))
            }
            (None, Some(k)) => {
                let key = kafka_target(k)?;
                (json!({ "kafka": kafka_sink(k) }), key, None)
            }
        };

    let (db, info) = collection(req, cfg.max_name_length)?;
    let pattern = format!("{db}.{}", info.name);
    let mut source = serde_json::to_value(&cfg.source)
        .map_err(|e| ApiError::internal(format!("cannot encode the source: {e}")))?;
    if let Value::Object(src) = &mut source {
        if !info.positions.is_empty() {
            src.insert("positions".into(), json!(info.positions));
        }
        if info.use_start_position {
            src.insert("start".into(), json!("earliest"));
        }
        if let Some(s) = &req.snapshot {
            src.insert("snapshot".into(), s.clone());
        }
    }
    if let Some(rpc) = &req.rpc_channel_info {
        let expected = cfg.source.replicate_channel_name();
        if !rpc.name.is_empty() && rpc.name != expected {
            return Err(bad(format!(
                "rpc_channel_info.name: the rpc channel is invalid, the channel name should be \
                 the same as the source config ({expected}), got {:?}",
                rpc.name
            )));
        }
        if !rpc.position.is_empty() {
            return Err(bad(
                "rpc_channel_info.position: a start position for the replicate channel is not \
                 supported yet; leave it empty (the replicate channel then starts with the task)",
            ));
        }
    }
    if let Some(b) = &req.buffer_config {
        if b.period < 0 {
            return Err(bad(
                "buffer_config.period: the cache period is less than zero",
            ));
        }
        if b.size < 0 {
            return Err(bad("buffer_config.size: the cache size is less than zero"));
        }
    }
    if !req.positions.is_empty() {
        return Err(bad(
            "positions: the top-level positions field is deprecated; give the positions in \
             collection_infos[0].positions (or in db_collections)",
        ));
    }
    if req.extra_info.as_ref().is_some_and(|e| e.enable_user_role) {
        // Roles, grants and bindings replicate; users need a password the source does not
        // keep, and a request has no place for the sink's `rbac.passwords_file`.
        if let Value::Object(src) = &mut source {
            src.insert("enable_user_role".into(), json!(true));
        }
        warnings.push(
            "extra_info.enable_user_role: roles, grants and user-role bindings are replicated; \
             users are not created on the target (their passwords are not replicable and a \
             request cannot give a passwords file): each is listed in the task's \
             not_replicated, or use a pipeline document with the sink's rbac.passwords_file"
                .to_string(),
        );
    }

    let mut transforms = vec![json!({ "filter": { "include": [pattern.clone()] } })];
    let rules = name_mapping(req, cfg.max_name_length)?;
    if !rules.is_empty() {
        transforms.push(json!({ "rename": { "rules": rules } }));
    }
    let spec = json!({
        "name": task_id,
        "source": { "milvus": source },
        "transforms": transforms,
        "sinks": { TARGET_SINK: sink },
        "checkpoint": cfg.checkpoint,
    });
    parse_spec(&spec, task_id)?;
    Ok(TaskPlan {
        spec,
        coverage: Coverage {
            targets: vec![target_key],
            include: vec![pattern],
            exclude: Vec::new(),
        },
        target: check,
        warnings,
    })
}

/// Parse and validate a stored or built pipeline document.
pub fn parse_spec(spec: &Value, origin: &str) -> Result<PipelineSpec, ApiError> {
    let parsed: PipelineSpec = serde_json::from_value(spec.clone())
        .map_err(|e| bad(format!("the pipeline document is invalid: {e}")))?;
    parsed
        .validate(origin)
        .map_err(|e| bad(format!("the pipeline document is invalid: {e}")))?;
    Ok(parsed)
}

/// Add `excludes` to the first filter of a document (the one [`plan`] builds).
pub fn add_excludes(spec: &mut Value, excludes: &[String]) {
    if excludes.is_empty() {
        return;
    }
    let Some(transforms) = spec.get_mut("transforms").and_then(Value::as_array_mut) else {
        return;
    };
    for t in transforms {
        if let Some(Value::Object(filter)) = t.get_mut("filter") {
            let list = filter
                .entry("exclude")
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(items) = list {
                items.extend(excludes.iter().map(|e| json!(e)));
            }
            return;
        }
    }
}

/// What a pipeline document covers: its sinks' targets and its first filter's patterns.
pub fn coverage_of(spec: &PipelineSpec) -> Coverage {
    let mut cov = Coverage::default();
    let v = serde_json::to_value(spec).unwrap_or(Value::Null);
    if let Some(sinks) = v.get("sinks").and_then(Value::as_object) {
        for s in sinks.values() {
            if let Some(uri) = s.pointer("/milvus/uri").and_then(Value::as_str) {
                cov.targets.push(milvus_target_key(uri));
            } else if let Some(Value::Object(k)) = s.get("kafka") {
                let brokers = k
                    .get("brokers")
                    .map(|b| match b {
                        Value::Array(a) => a
                            .iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(","),
                        Value::String(s) => s.clone(),
                        _ => String::new(),
                    })
                    .unwrap_or_default();
                if !brokers.is_empty() {
                    cov.targets.push(kafka_target_key(&brokers));
                }
            }
        }
    }
    for t in &spec.transforms {
        if let cdc_pipeline::TransformSpec::Filter(f) = t {
            cov.include = f.include.clone();
            cov.exclude = f.exclude.clone();
            break;
        }
    }
    if cov.include.is_empty() {
        cov.include.push("*.*".into());
    }
    cov
}

fn milvus_sink(m: &MilvusConnectParam) -> Result<MilvusSinkConfig, ApiError> {
    let tls_wanted = m.enable_tls || !m.dial_config.is_empty();
    let uri = if !m.uri.is_empty() {
        if m.uri.contains("://") {
            m.uri.clone()
        } else if tls_wanted {
            format!("https://{}", m.uri)
        } else {
            format!("http://{}", m.uri)
        }
    } else if !m.host.is_empty() {
        if m.port <= 0 || m.port > 65_535 {
            return Err(bad(format!(
                "milvus_connect_param.port: the milvus port must be between 1 and 65535, got {}",
                m.port
            )));
        }
        let scheme = if tls_wanted { "https" } else { "http" };
        format!("{scheme}://{}:{}", m.host, m.port)
    } else {
        return Err(bad(
            "milvus_connect_param.uri: the target uri is empty (give uri, or the deprecated host \
             and port)",
        ));
    };
    if !m.dial_config.is_empty() && uri.starts_with("http://") {
        return Err(bad(format!(
            "milvus_connect_param.dial_config: TLS files are given but uri {uri:?} starts with \
             http://; use https://"
        )));
    }
    let mut sink = MilvusSinkConfig::new(uri);
    if !m.token.is_empty() {
        sink.token = Some(m.token.clone());
    } else if !m.username.is_empty() || !m.password.is_empty() {
        if m.username.is_empty() || m.password.is_empty() {
            return Err(bad(
                "milvus_connect_param: cannot set only one of the milvus username and password",
            ));
        }
        sink.token = Some(format!("{}:{}", m.username, m.password));
    }
    if m.connect_timeout < 0 {
        return Err(bad(
            "milvus_connect_param.connect_timeout: the milvus connect timeout is less than zero",
        ));
    }
    if m.connect_timeout > 0 {
        sink.connect_timeout_secs = m.connect_timeout as u64;
    }
    if m.channel_num < 0 {
        return Err(bad(
            "milvus_connect_param.channel_num: must not be negative",
        ));
    }
    sink.ignore_partition = m.ignore_partition;
    if !m.dial_config.is_empty() {
        let d = &m.dial_config;
        if !d.server_pem_path.is_empty() && !d.ca_pem_path.is_empty() {
            return Err(bad(
                "milvus_connect_param.dial_config: give server_pem_path (one-way TLS) or \
                 ca_pem_path with client_pem_path and client_key_path (mutual TLS), not both",
            ));
        }
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        for (field, path) in [
            ("server_pem_path", &d.server_pem_path),
            ("ca_pem_path", &d.ca_pem_path),
            ("client_pem_path", &d.client_pem_path),
            ("client_key_path", &d.client_key_path),
        ] {
            if !path.is_empty() && !std::path::Path::new(path).is_file() {
                return Err(bad(format!(
                    "milvus_connect_param.dial_config.{field}: {path:?} is not a file on the \
                     milvus-cdc host"
                )));
            }
        }
        sink.tls = Some(TlsConfig {
            server_name: opt(&d.server_name),
            ca_path: opt(&d.ca_pem_path).or_else(|| opt(&d.server_pem_path)),
            cert_path: opt(&d.client_pem_path),
            key_path: opt(&d.client_key_path),
        });
    }
    sink.validate()
        .map_err(|e| bad(format!("milvus_connect_param: {}", e.message)))?;
    Ok(sink)
}

/// The Kafka sink of a `kafka_connect_param` target: row-level JSON change events on the
/// given topic, keyed by primary key, at-least-once (as milvus-cdc's Kafka target).
fn kafka_sink(k: &KafkaConnectParam) -> Value {
    let mut security = serde_json::Map::new();
    if k.enable_sasl {
        let protocol = if k.sasl.security_protocol.is_empty() {
            "SASL_PLAINTEXT"
        } else {
            k.sasl.security_protocol.as_str()
        };
        let mechanism = if k.sasl.mechanisms.is_empty() {
            "PLAIN"
        } else {
            k.sasl.mechanisms.as_str()
        };
        security.insert("protocol".into(), json!(protocol));
        security.insert("sasl_mechanism".into(), json!(mechanism));
        security.insert("sasl_username".into(), json!(k.sasl.username));
        security.insert("sasl_password".into(), json!(k.sasl.password));
    }
    json!({
        "brokers": k.address.trim(),
        "topic": k.topic.trim(),
        "format": "json",
        "delivery": "at_least_once",
        "security": Value::Object(security),
    })
}

fn kafka_target(k: &KafkaConnectParam) -> Result<String, ApiError> {
    if k.address.trim().is_empty() {
        return Err(bad(
            "kafka_connect_param.address: the kafka address is empty",
        ));
    }
    if k.topic.trim().is_empty() {
        return Err(bad(
            "kafka_connect_param.topic: the topic is required when the address is set",
        ));
    }
    if k.enable_sasl && (k.sasl.username.is_empty() || k.sasl.password.is_empty()) {
        return Err(bad(
            "kafka_connect_param.sasl: enable_sasl needs sasl.username and sasl.password",
        ));
    }
    Ok(kafka_target_key(&k.address))
}

fn check_name(field: &str, name: &str, max: usize) -> Result<(), ApiError> {
    if name.is_empty() {
        return Err(bad(format!("{field}: there is a name that is empty")));
    }
    if name.chars().count() > max {
        return Err(bad(format!(
            "{field}: the name {name:?} exceeds {max} characters (max_name_length)"
        )));
    }
    if name != "*"
        && (name.contains('*') || name.contains('.') || name.contains(char::is_whitespace))
    {
        return Err(bad(format!(
            "{field}: {name:?} is not a valid name: `*` alone means every one, and names have \
             no '.', '*' or spaces"
        )));
    }
    Ok(())
}

/// The single `(database, collection)` of the request.
fn collection(req: &CreateRequest, max: usize) -> Result<(String, CollectionInfo), ApiError> {
    let (db, infos, field) = match (req.collection_infos.is_empty(), req.db_collections.len()) {
        (false, 0) => (
            "default".to_string(),
            &req.collection_infos,
            "collection_infos".to_string(),
        ),
        (true, 1) => {
            let (db, infos) = req.db_collections.iter().next().expect("one entry");
            check_name("db_collections", db, max)?;
            (db.clone(), infos, format!("db_collections.{db}"))
        }
        (true, 0) => {
            return Err(bad(
                "collection_infos: empty collection info; give collection_infos [{\"name\": \
                 ...}] or db_collections {\"<db>\": [{\"name\": ...}]}",
            ))
        }
        (true, _) => {
            return Err(bad(
                "db_collections: give exactly one database entry (a task replicates one \
                 collection or `*`)",
            ))
        }
        (false, _) => {
            return Err(bad(
                "give either collection_infos or db_collections, not both",
            ))
        }
    };
    if infos.len() != 1 {
        return Err(bad(format!(
            "{field}: the collection info should be only one, got {}",
            infos.len()
        )));
    }
    let info = infos[0].clone();
    check_name(&format!("{field}[0].name"), &info.name, max)?;
    if info.name == "*" && !info.positions.is_empty() {
        return Err(bad(format!(
            "{field}[0].positions: the collection name is `*`, the positions should be empty"
        )));
    }
    let mut collection_id = None;
    for (vchannel, text) in &info.positions {
        let pfield = format!("{field}[0].positions.{vchannel}");
        let vc = cdc_protocol::channel::parse_vchannel(vchannel).map_err(|e| {
            bad(format!(
                "{pfield}: the position channel name is not a virtual channel \
                 (<pchannel>_<collectionID>v<shard>): {e}"
            ))
        })?;
        let id = vc.collection_id;
        if *collection_id.get_or_insert(id) != id {
            return Err(bad(format!(
                "{field}[0].positions: the channel positions should be in the same collection"
            )));
        }
        cdc_protocol::position::decode_position_b64(text)
            .map_err(|e| bad(format!("{pfield}: fail to decode the position data: {e}")))?;
    }
    Ok((db, info))
}

fn name_mapping(req: &CreateRequest, max: usize) -> Result<Vec<Value>, ApiError> {
    let mut rules = Vec::new();
    for (i, m) in req.name_mapping.iter().enumerate() {
        let field = format!("name_mapping[{i}]");
        check_name(&format!("{field}.source_db"), &m.source_db, max)?;
        if !m.target_db.is_empty() {
            check_name(&format!("{field}.target_db"), &m.target_db, max)?;
        }
        for (s, t) in &m.collection_mapping {
            check_name(&format!("{field}.collection_mapping"), s, max)?;
            check_name(&format!("{field}.collection_mapping.{s}"), t, max)?;
        }
        let mapping: BTreeMap<&String, &String> = m.collection_mapping.iter().collect();
        let mut rule = json!({ "source_db": m.source_db, "collection_mapping": mapping });
        if !m.target_db.is_empty() {
            rule["target_db"] = json!(m.target_db);
        }
        rules.push(rule);
    }
    Ok(rules)
}

#[cfg(test)]
mod tests;
