//! The API with `auth` on: every route but `/healthz` refuses missing and wrong tokens with a
//! bare 401, a read token cannot change anything, bodies are bounded, and tokens appear in no
//! response and no log line.

use std::io::Write;
use std::sync::{Arc, Mutex};

use actix_web::http::Method;
use actix_web::test::{self, TestRequest};
use actix_web::App;
use serde_json::json;

use super::*;
use crate::auth::Tokens;
use crate::config::ServerConfig;

const ADMIN: &str = "admin-0123456789abcdef";
const READ: &str = "read-0123456789abcdef";

fn manager(dir: &std::path::Path) -> Arc<TaskManager> {
    let cfg = ServerConfig::parse(
        "source:\n  etcd: { endpoints: [\"127.0.0.1:1\"], timeout_ms: 300 }\n  \
         mq: { kafka: { brokers: [\"127.0.0.1:1\"] } }\n",
        "test",
    )
    .unwrap();
    let store: Arc<dyn cdc_state::StateStore> = Arc::new(cdc_state::SledStore::open(dir).unwrap());
    TaskManager::new(cfg, store)
}

macro_rules! app {
    ($mgr:expr, $limit:expr) => {
        test::init_service(
            App::new()
                .app_data(web::Data::new(AppState {
                    manager: $mgr.clone(),
                    mode: HttpStatusMode::Mirror,
                    auth: Some(Arc::new(crate::auth::TokenStore::fixed(
                        Tokens::parse(&format!("{ADMIN} admin\n{READ} read\n")).unwrap(),
                    ))),
                    max_body_bytes: $limit,
                }))
                .wrap(actix_web::middleware::from_fn(crate::auth::check))
                .configure(|c| configure_limited(c, $limit)),
        )
        .await
    };
}

/// Log lines written while the test runs.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

macro_rules! call {
    ($app:expr, $method:expr, $path:expr, $auth:expr, $body:expr) => {{
        let mut req = TestRequest::default()
            .method(Method::from_bytes($method.as_bytes()).unwrap())
            .uri($path)
            .insert_header(("content-type", "application/json"))
            .set_payload($body.to_string());
        if let Some(a) = $auth {
            req = req.insert_header(("authorization", a.to_string()));
        }
        let resp = test::call_service($app, req.to_request()).await;
        let status = resp.status().as_u16();
        let bytes = test::read_body(resp).await;
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }};
}

#[actix_web::test]
async fn tokens_guard_every_route_but_healthz() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    let mgr = manager(dir.path());
    let app = app!(mgr, 4096);
    let mut responses = String::new();
    let wrong = [
        None,
        Some("Bearer".to_string()),
        Some("Bearer ".to_string()),
        Some(format!("Bearer {ADMIN}x")),
        Some(format!("Bearer {}", &ADMIN[..ADMIN.len() - 1])),
        Some(format!("Basic {ADMIN}")),
        Some(ADMIN.to_string()),
    ];
    for (method, path) in ROUTES {
        let uri = path.replace("{task_id}", "missing");
        for a in &wrong {
            let (status, body) = call!(&app, method, &uri, a.as_deref(), "{}");
            if *path == "/healthz" {
                assert_eq!(status, 200, "{method} {path} must stay open");
            } else {
                assert_eq!(status, 401, "{method} {path} with {:?}", a.is_some());
                assert!(body.is_empty(), "401 with detail: {body}");
            }
        }
        // the admin token passes everywhere (the handler answers, whatever it says)
        let admin = format!("Bearer {ADMIN}");
        let (status, body) = call!(&app, method, &uri, Some(&admin), "{}");
        assert!(
            status != 401 && status != 403,
            "{method} {path}: {status} {body}"
        );
        responses.push_str(&body);
        // the read token passes GET routes only
        let read = format!("bearer {READ}");
        let (status, body) = call!(&app, method, &uri, Some(&read), "{}");
        if *method == "GET" || *path == "/cdc" {
            assert_ne!(status, 401, "{method} {path}");
            assert_ne!(status, 403, "{method} {path}: {body}");
        } else {
            assert_eq!(status, 403, "{method} {path}: {body}");
        }
        responses.push_str(&body);
    }

    // POST /cdc: read types pass a read token, the others need admin
    let read = format!("Bearer {READ}");
    for rtype in crate::http::REQUEST_TYPES {
        let body = json!({ "request_type": rtype, "request_data": {} }).to_string();
        let (status, text) = call!(&app, "POST", "/cdc", Some(&read), &body);
        if crate::auth::READ_REQUEST_TYPES.contains(rtype) {
            assert_ne!(status, 403, "{rtype}: {text}");
        } else {
            assert_eq!(status, 403, "{rtype}: {text}");
            assert!(text.contains("admin token"), "{text}");
        }
        responses.push_str(&text);
    }
    let list = json!({ "request_type": "list" }).to_string();
    let (status, text) = call!(&app, "POST", "/cdc", Some(&read), &list);
    assert_eq!(status, 200, "{text}");

    // bodies are bounded (refused before any handler reads them)
    let big = format!(
        "{{\"request_type\":\"list\",\"pad\":\"{}\"}}",
        "x".repeat(8192)
    );
    let admin = format!("Bearer {ADMIN}");
    let (status, _) = call!(&app, "POST", "/cdc", Some(&admin), &big);
    assert_eq!(status, 413);
    let (status, _) = call!(&app, "POST", "/tasks", Some(&admin), &big);
    assert_eq!(status, 413);
    assert_eq!(mgr.len(), 0);

    let logged = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(
        logged.contains("Refused a request without a valid token"),
        "{logged}"
    );
    for secret in [ADMIN, READ, &ADMIN[..ADMIN.len() - 1]] {
        assert!(!logged.contains(secret), "token in the log");
        assert!(!responses.contains(secret), "token in a response");
    }
}
