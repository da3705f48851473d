use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use actix_web::test::{self, TestRequest};
use actix_web::App;
use serde_json::{json, Value};

use super::*;
use crate::config::ServerConfig;

fn config(extra: &str) -> ServerConfig {
    ServerConfig::parse(
        &format!(
            "source:\n  etcd: {{ endpoints: [\"127.0.0.1:1\"], timeout_ms: 300 }}\n  \
             mq: {{ kafka: {{ brokers: [\"127.0.0.1:1\"] }} }}\n{extra}"
        ),
        "test",
    )
    .unwrap()
}

fn manager(dir: &std::path::Path, extra: &str) -> Arc<TaskManager> {
    let store: Arc<dyn cdc_state::StateStore> = Arc::new(cdc_state::SledStore::open(dir).unwrap());
    TaskManager::new(config(extra), store)
}

macro_rules! app {
    ($mgr:expr, $mode:expr) => {
        test::init_service(
            App::new()
                .app_data(web::Data::new(AppState {
                    manager: $mgr.clone(),
                    mode: $mode,
                    auth: None,
                    max_body_bytes: DEFAULT_MAX_BODY_BYTES,
                }))
                .configure(configure),
        )
        .await
    };
}

macro_rules! cdc {
    ($app:expr, $body:expr $(,)?) => {{
        let req = TestRequest::post()
            .uri("/cdc")
            .insert_header(("content-type", "application/json"))
            .set_payload($body.to_string())
            .to_request();
        let resp = test::call_service($app, req).await;
        let status = resp.status().as_u16();
        let bytes = test::read_body(resp).await;
        (
            status,
            serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
        )
    }};
}

#[::core::prelude::v1::test]
fn openapi_documents_exactly_the_registered_routes() {
    let doc: Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut documented = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let registered: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, registered);
}

#[actix_web::test]
async fn every_route_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let mgr = manager(dir.path(), "");
    let app = app!(mgr, HttpStatusMode::Always200);
    for (method, path) in ROUTES {
        let uri = path.replace("{task_id}", "missing");
        let req = TestRequest::default()
            .method(actix_web::http::Method::from_bytes(method.as_bytes()).unwrap())
            .uri(&uri)
            .to_request();
        let resp = test::call_service(&app, req).await;
        let body = test::read_body(resp).await;
        // Actix's own 404 has an empty body; every handler answers something.
        assert!(!body.is_empty(), "{method} {path} is not served");
    }
}

#[actix_web::test]
async fn envelope_errors_are_clear_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mgr = manager(dir.path(), "");
    let app = app!(mgr, HttpStatusMode::Always200);
    let cases: &[(&str, u64, &str)] = &[
        ("{not json", 400, "fail to unmarshal the request"),
        (r#"{"request_data":{}}"#, 400, "request_type"),
        (
            r#"{"request_type":"explode"}"#,
            400,
            "invalid 'request_type' param",
        ),
        (
            r#"{"request_type":"create","request_data":{}}"#,
            400,
            "milvus_connect_param is missing",
        ),
        (
            r#"{"request_type":"create","request_data":{"milvus_connect_param":{"uri":"http://127.0.0.1:1"}}}"#,
            400,
            "empty collection info",
        ),
        (
            r#"{"request_type":"create","request_data":{"milvus_connect_param":{"uri":5}}}"#,
            400,
            "fail to decode the create request",
        ),
        (
            r#"{"request_type":"create","request_data":{"milvus_connect_param":{"uri":"http://h:1"},"colection_infos":[]}}"#,
            400,
            "colection_infos",
        ),
        (
            r#"{"request_type":"get","request_data":{"task_id":"nope"}}"#,
            400,
            "not found the task",
        ),
        (
            r#"{"request_type":"get","request_data":{}}"#,
            400,
            "task_id is empty",
        ),
        (
            r#"{"request_type":"pause","request_data":{"task_id":"nope"}}"#,
            400,
            "not found",
        ),
        (
            r#"{"request_type":"resume","request_data":{"task_id":"nope"}}"#,
            400,
            "not found",
        ),
        (
            r#"{"request_type":"delete","request_data":{"task_id":"nope"}}"#,
            400,
            "not found",
        ),
        (
            r#"{"request_type":"position","request_data":{"task_id":"nope"}}"#,
            400,
            "not found",
        ),
        (
            r#"{"request_type":"maintenance","request_data":{"operation":"reboot"}}"#,
            400,
            "unsupported operation",
        ),
        (
            r#"{"request_type":"maintenance","request_data":{"operation":"set_log_level","params":{}}}"#,
            400,
            "log_level is required",
        ),
        (
            // nothing listens on port 1: the test connection fails before anything is stored
            r#"{"request_type":"create","request_data":{"milvus_connect_param":{"uri":"http://127.0.0.1:1","connect_timeout":2},"collection_infos":[{"name":"*"}]}}"#,
            500,
            "fail to connect the target milvus",
        ),
    ];
    for (body, code, needle) in cases {
        let (status, v) = cdc!(&app, body);
        assert_eq!(status, 200, "{body}");
        assert_eq!(v["code"], *code, "{body}: {v}");
        let msg = v["message"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "{body}: {needle:?} not in {msg:?}");
        assert!(v.get("data").is_none(), "{body}: {v}");
    }
    let (_, v) = cdc!(&app, r#"{"request_type":"list"}"#);
    assert_eq!(v, json!({"code": 200, "data": {"tasks": []}}));
    let (_, v) = cdc!(
        &app,
        r#"{"request_type":"delete","request_data":{"task_id":"nope","ignore_not_found":true}}"#,
    );
    assert_eq!(v, json!({"code": 200}));
    assert!(mgr.store.list_tasks().unwrap().is_empty());
}

#[actix_web::test]
async fn wrong_method_and_status_modes() {
    let dir = tempfile::tempdir().unwrap();
    let mgr = manager(dir.path(), "");
    let app = app!(mgr, HttpStatusMode::Always200);
    let resp = test::call_service(&app, TestRequest::get().uri("/cdc").to_request()).await;
    assert_eq!(resp.status().as_u16(), 200);
    let v: Value = serde_json::from_slice(&test::read_body(resp).await).unwrap();
    assert_eq!(
        v,
        json!({"code": 405, "message": "only support the POST method"})
    );
    let mirror = app!(mgr, HttpStatusMode::Mirror);
    let resp = test::call_service(&mirror, TestRequest::put().uri("/cdc").to_request()).await;
    assert_eq!(resp.status().as_u16(), 405);
    let (status, v) = cdc!(
        &mirror,
        r#"{"request_type":"get","request_data":{"task_id":"x"}}"#
    );
    assert_eq!((status, v["code"].as_u64()), (400, Some(400)));
    // REST: not found is 404
    let resp = test::call_service(&app, TestRequest::get().uri("/tasks/x").to_request()).await;
    assert_eq!(resp.status().as_u16(), 404);
    let resp = test::call_service(&app, TestRequest::get().uri("/metrics").to_request()).await;
    let text = String::from_utf8(test::read_body(resp).await.to_vec()).unwrap();
    assert!(text.contains("milvus_cdc_request_total"), "{text}");
}

fn stdout_pipeline(name: &str, password: Option<&str>) -> String {
    let auth = password
        .map(|p| format!(", username: root, password: \"{p}\""))
        .unwrap_or_default();
    format!(
        "name: {name}\nsource:\n  milvus:\n    etcd: {{ endpoints: [\"127.0.0.1:1\"], timeout_ms: 200{auth} }}\n    \
         mq: {{ kafka: {{ brokers: [\"127.0.0.1:1\"] }} }}\n\
         transforms:\n  - filter: {{ include: [\"db1.*\"] }}\nsinks:\n  out: {{ stdout: {{}} }}\n"
    )
}

async fn wait_paused(mgr: &TaskManager, id: &str) -> crate::task::TaskView {
    for _ in 0..300 {
        let t = mgr.get(id).unwrap();
        if t.state == "Paused" {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("task {id} did not pause: {:?}", mgr.get(id));
}

/// Stores a task document the way `POST /tasks` does (secrets split off as configured), as
/// if an earlier server had created it: a create now fails when the source cannot be reached,
/// since the start positions must be stored before it answers.
fn store_task(mgr: &TaskManager, id: &str, yaml: &str) {
    let spec: cdc_pipeline::PipelineSpec = serde_saphyr::from_str(yaml).unwrap();
    let mut value = serde_json::to_value(&spec).unwrap();
    value["name"] = Value::String(id.into());
    let (spec_value, _secrets, withheld) = mgr.split_secrets(value, crate::task::Origin::Pipeline);
    let doc = crate::task::TaskDoc {
        task_id: id.into(),
        origin: crate::task::Origin::Pipeline,
        name: Some(spec.name.clone()),
        request: None,
        spec: spec_value,
        state: crate::task::TaskState::Running,
        reason: String::new(),
        disable_auto_start: false,
        withheld,
        created_ms: 0,
        updated_ms: 0,
    };
    mgr.store
        .put_task(id, &serde_json::to_vec(&doc).unwrap())
        .unwrap();
}

#[actix_web::test]
async fn a_task_whose_start_cannot_be_stored_is_refused_and_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mgr = manager(dir.path(), "");
    let app = app!(mgr, HttpStatusMode::Always200);
    let req = TestRequest::post()
        .uri("/tasks?task_id=doc1")
        .insert_header(("content-type", "application/yaml"))
        .set_payload(stdout_pipeline("unreachable", None))
        .to_request();
    let resp = test::call_service(&app, req).await;
    let v: Value = serde_json::from_slice(&test::read_body(resp).await).unwrap();
    // the source cannot be reached, so no start position can be fixed: refused, and why
    let msg = v["message"].as_str().unwrap_or_default();
    assert_eq!(v["code"], 500, "{v}");
    assert!(msg.contains("fail to start the task"), "{v}");
    assert!(msg.contains("127.0.0.1:1"), "{v}");
    assert!(mgr.list().is_empty());
    assert!(mgr.store.list_tasks().unwrap().is_empty());
}

#[actix_web::test]
async fn a_failing_pipeline_pauses_its_task_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mgr = manager(dir.path(), "");
    store_task(&mgr, "doc1", &stdout_pipeline("unreachable", None));
    let to_start = mgr.load().unwrap();
    assert_eq!(to_start, vec!["doc1".to_string()]);
    mgr.start_loaded(to_start).await;
    let app = app!(mgr, HttpStatusMode::Always200);
    // the source cannot reach etcd: the pipeline fails and the task is paused with the error
    let t = wait_paused(&mgr, "doc1").await;
    assert!(!t.reason.is_empty());
    assert_eq!(t.name.as_deref(), Some("unreachable"));
    let (_, v) = cdc!(
        &app,
        r#"{"request_type":"pause","request_data":{"task_id":"doc1"}}"#
    );
    assert!(v["message"].as_str().unwrap().contains("has paused"), "{v}");
    // same name again: refused
    let req = TestRequest::post()
        .uri("/tasks")
        .set_payload(stdout_pipeline("unreachable", None))
        .to_request();
    let resp = test::call_service(&app, req).await;
    assert_eq!(resp.status().as_u16(), 400);
    // a restart keeps it paused with its reason
    drop(app);
    let reason = t.reason.clone();
    let store = mgr.store.clone();
    drop(mgr);
    let mgr2 = TaskManager::new(config(""), store);
    assert!(mgr2.load().unwrap().is_empty());
    let t2 = mgr2.get("doc1").unwrap();
    assert_eq!((t2.state, t2.reason.as_str()), ("Paused", reason.as_str()));
    mgr2.delete("doc1", false).await.unwrap();
    assert!(mgr2.store.list_tasks().unwrap().is_empty());
}

#[actix_web::test]
async fn credentials_can_stay_out_of_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let mgr = manager(dir.path(), "persist_credentials: false\n");
    store_task(
        &mgr,
        "t-secret",
        &stdout_pipeline("secretive", Some("s3cr3t")),
    );
    let stored = mgr.store.get_task("t-secret").unwrap().unwrap();
    assert!(!String::from_utf8_lossy(&stored).contains("s3cr3t"));
    // after a restart the credential is gone: resume says which one to send
    let store = mgr.store.clone();
    drop(mgr);
    let mgr2 = TaskManager::new(config("persist_credentials: false\n"), store);
    mgr2.load().unwrap();
    let shown = serde_json::to_string(&mgr2.get("t-secret").unwrap()).unwrap();
    assert!(!shown.contains("s3cr3t"), "{shown}");
    let e = mgr2
        .resume("t-secret", &Default::default())
        .await
        .unwrap_err();
    assert!(
        e.message.contains("source.milvus.etcd.password"),
        "{}",
        e.message
    );
    let bad = [("sinks.x.token".to_string(), "v".to_string())].into();
    assert!(mgr2
        .resume("t-secret", &bad)
        .await
        .unwrap_err()
        .message
        .contains("does not need"));
    let good = [(
        "source.milvus.etcd.password".to_string(),
        "s3cr3t".to_string(),
    )]
    .into();
    // it starts (and fails again later, etcd being unreachable)
    mgr2.resume("t-secret", &good).await.unwrap();
    wait_paused(&mgr2, "t-secret").await;
    let stored = mgr2.store.get_task("t-secret").unwrap().unwrap();
    assert!(!String::from_utf8_lossy(&stored).contains("s3cr3t"));
}

#[actix_web::test]
async fn restart_keeps_disable_auto_start_tasks_paused_and_reports_unreadable_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mgr = manager(dir.path(), "");
    let doc = crate::task::TaskDoc {
        task_id: "t1".into(),
        origin: crate::task::Origin::Pipeline,
        name: Some("n".into()),
        request: None,
        spec: json!({}),
        state: crate::task::TaskState::Running,
        reason: String::new(),
        disable_auto_start: true,
        withheld: vec![],
        created_ms: 0,
        updated_ms: 0,
    };
    mgr.store
        .put_task("t1", &serde_json::to_vec(&doc).unwrap())
        .unwrap();
    mgr.store.put_task("t2", b"{not a task").unwrap();
    let to_start = mgr.load().unwrap();
    assert_eq!(to_start, vec!["t1".to_string()]);
    mgr.start_loaded(to_start).await;
    let t1 = mgr.get("t1").unwrap();
    assert_eq!(t1.state, "Paused");
    assert!(t1.reason.contains("disable_auto_start"), "{}", t1.reason);
    let t2 = mgr.get("t2").unwrap();
    assert_eq!(t2.state, "Paused");
    assert!(t2.reason.contains("cannot be read"), "{}", t2.reason);
    // the unreadable document is left as it was, and can be deleted
    mgr.delete("t2", false).await.unwrap();
    assert!(mgr.store.get_task("t2").unwrap().is_none());
}

#[actix_web::test]
async fn another_method_on_a_known_path_is_405_with_allow() {
    let dir = tempfile::tempdir().unwrap();
    let mgr = manager(dir.path(), "");
    let app = app!(mgr, HttpStatusMode::Always200);
    for (method, path, allow) in [
        ("PUT", "/tasks", "GET, POST"),
        ("TRACE", "/healthz", "GET"),
        ("PATCH", "/tasks/abc", "GET, DELETE"),
    ] {
        let req = TestRequest::default()
            .method(actix_web::http::Method::from_bytes(method.as_bytes()).unwrap())
            .uri(path)
            .to_request();
        let resp = test::call_service(&app, req).await;
        assert_eq!(resp.status().as_u16(), 405, "{method} {path}");
        assert_eq!(
            resp.headers().get("allow").and_then(|v| v.to_str().ok()),
            Some(allow),
            "{method} {path}"
        );
    }
    let req = TestRequest::get().uri("/nowhere").to_request();
    assert_eq!(test::call_service(&app, req).await.status().as_u16(), 404);
}

#[actix_web::test]
async fn a_malformed_query_string_gets_the_json_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let mgr = manager(dir.path(), "");
    let app = app!(mgr, HttpStatusMode::Always200);
    let req = TestRequest::post()
        .uri("/tasks?task_id=a&task_id=b")
        .set_payload("x")
        .to_request();
    let resp = test::call_service(&app, req).await;
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = serde_json::from_slice(&test::read_body(resp).await).unwrap();
    assert_eq!(body["code"], 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("query string"),
        "{body}"
    );
}
