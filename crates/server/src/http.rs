//! The HTTP routes: milvus-cdc's `POST /cdc`, the REST aliases under `/tasks`, `/metrics`
//! (also at milvus-cdc's `/cdc/metrics`), `/healthz` and `/openapi.json`.
//!
//! Every route is listed once in [`ROUTES`]; [`configure`] registers exactly those, and a test
//! checks that `openapi.json` documents exactly those.

use std::sync::Arc;
use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use tracing::{debug, warn};

use crate::config::HttpStatusMode;
use crate::envelope::{ApiError, CdcResponse};
use crate::manager::TaskManager;
use crate::metrics::{self, status};
use crate::request::{
    CdcRequest, CreateRequest, DeleteRequest, ListRequest, MaintenanceRequest, ResumeRequest,
    TaskIdRequest,
};

/// The OpenAPI 3 description of these routes.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Every route the server registers: (method, path).
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/cdc"),
    ("GET", "/metrics"),
    ("GET", "/cdc/metrics"),
    ("GET", "/healthz"),
    ("GET", "/openapi.json"),
    ("GET", "/tasks"),
    ("POST", "/tasks"),
    ("GET", "/tasks/{task_id}"),
    ("DELETE", "/tasks/{task_id}"),
    ("POST", "/tasks/{task_id}/pause"),
    ("POST", "/tasks/{task_id}/resume"),
    ("GET", "/tasks/{task_id}/position"),
    ("GET", "/cluster"),
];

/// The request types of `POST /cdc`.
pub const REQUEST_TYPES: &[&str] = &[
    "create",
    "delete",
    "pause",
    "resume",
    "get",
    "list",
    "position",
    "maintenance",
];

/// Shared state of the handlers.
pub struct AppState {
    /// The tasks.
    pub manager: Arc<TaskManager>,
    /// Status line policy of `POST /cdc`.
    pub mode: HttpStatusMode,
    /// Bearer tokens (`auth.tokens_file`, reloaded while running); `None` leaves the API
    /// open.
    pub auth: Option<Arc<crate::auth::TokenStore>>,
    /// Largest accepted request body (`max_body_bytes`).
    pub max_body_bytes: usize,
}

/// Default of `max_body_bytes`.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// Register [`ROUTES`] on an actix app.
pub fn configure(cfg: &mut web::ServiceConfig) {
    configure_limited(cfg, DEFAULT_MAX_BODY_BYTES);
}

/// Register [`ROUTES`] with bodies limited to `max_body_bytes` (larger ones get 413).
pub fn configure_limited(cfg: &mut web::ServiceConfig, max_body_bytes: usize) {
    cfg.app_data(web::PayloadConfig::new(max_body_bytes));
    // A malformed query string or path gets the JSON envelope like every other refusal,
    // not actix's plain-text body.
    cfg.app_data(web::QueryConfig::default().error_handler(|e, _| {
        let body = CdcResponse::error(&ApiError::bad_request(format!("the query string: {e}")));
        actix_web::error::InternalError::from_response(e, respond(&body, 400)).into()
    }));
    cfg.app_data(web::PathConfig::default().error_handler(|e, _| {
        let body = CdcResponse::error(&ApiError::bad_request(format!("the path: {e}")));
        actix_web::error::InternalError::from_response(e, respond(&body, 400)).into()
    }));
    // One resource per path with all of its methods, so that another method on a known path
    // gets 405 with an `Allow` header (POST /cdc keeps milvus-cdc's 405 envelope).
    let mut paths: Vec<&str> = Vec::new();
    for (_, path) in ROUTES {
        if !paths.contains(path) {
            paths.push(path);
        }
    }
    for path in paths {
        let methods: Vec<&str> = ROUTES
            .iter()
            .filter(|(_, p)| *p == path)
            .map(|(m, _)| *m)
            .collect();
        let mut res = web::resource(path);
        for method in &methods {
            res = match (*method, path) {
                ("POST", "/cdc") => res.route(web::post().to(cdc_post)),
                ("GET", "/metrics") | ("GET", "/cdc/metrics") => {
                    res.route(web::get().to(metrics_text))
                }
                ("GET", "/healthz") => res.route(web::get().to(healthz)),
                ("GET", "/openapi.json") => res.route(web::get().to(openapi)),
                ("GET", "/tasks") => res.route(web::get().to(tasks_list)),
                ("POST", "/tasks") => res.route(web::post().to(tasks_create)),
                ("GET", "/tasks/{task_id}") => res.route(web::get().to(tasks_get)),
                ("DELETE", "/tasks/{task_id}") => res.route(web::delete().to(tasks_delete)),
                ("POST", "/tasks/{task_id}/pause") => res.route(web::post().to(tasks_pause)),
                ("POST", "/tasks/{task_id}/resume") => res.route(web::post().to(tasks_resume)),
                ("GET", "/tasks/{task_id}/position") => res.route(web::get().to(tasks_position)),
                ("GET", "/cluster") => res.route(web::get().to(cluster_info)),
                (m, p) => {
                    warn!(
                        message = "Route without a handler; not registered.",
                        method = m,
                        path = p
                    );
                    res
                }
            };
        }
        res = if path == "/cdc" {
            res.default_service(web::to(cdc_wrong_method))
        } else {
            let allow = methods.join(", ");
            res.default_service(web::to(move || {
                let allow = allow.clone();
                async move {
                    HttpResponse::MethodNotAllowed()
                        .insert_header((actix_web::http::header::ALLOW, allow))
                        .finish()
                }
            }))
        };
        cfg.service(res);
    }
}

fn respond(body: &CdcResponse, status: u16) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .content_type("application/json")
        .json(body)
}

async fn cdc_wrong_method(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    metrics::request(metrics::UNKNOWN_TYPE, status::INVALID_METHOD);
    debug!(message = "Rejected a non-POST request on /cdc.", method = %req.method());
    let body = CdcResponse::error(&ApiError {
        code: 405,
        message: "only support the POST method".into(),
        not_found: false,
    });
    let mut resp = respond(&body, body.http_status(state.mode));
    resp.headers_mut().insert(
        actix_web::http::header::ALLOW,
        actix_web::http::header::HeaderValue::from_static("POST"),
    );
    resp
}

async fn cdc_post(state: web::Data<AppState>, http: HttpRequest, body: web::Bytes) -> HttpResponse {
    let started = Instant::now();
    let req: CdcRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            metrics::request(metrics::UNKNOWN_TYPE, status::UNMARSHAL_ERROR);
            let body = CdcResponse::error(&ApiError::bad_request(format!(
                "fail to unmarshal the request, error: {e}; the body must be {{\"request_type\": \
                 \"...\", \"request_data\": {{...}}}}"
            )));
            return respond(&body, body.http_status(state.mode));
        }
    };
    let rtype = req.request_type.clone();
    let label = if REQUEST_TYPES.contains(&rtype.as_str()) {
        rtype.as_str()
    } else {
        metrics::UNKNOWN_TYPE
    };
    metrics::request(label, status::TOTAL);
    if http.extensions().get::<crate::auth::Role>() == Some(&crate::auth::Role::Read)
        && !crate::auth::READ_REQUEST_TYPES.contains(&rtype.as_str())
    {
        metrics::request(label, status::FAIL);
        return crate::auth::forbidden(&format!("the {label} request"));
    }
    let body = match dispatch(&state.manager, &req).await {
        Ok((data, warnings)) => {
            metrics::request(label, status::SUCCESS);
            metrics::latency(label, started.elapsed().as_secs_f64() * 1000.0);
            let mut r = CdcResponse::ok(data);
            r.message = warnings.join("; ");
            r
        }
        Err(e) => {
            metrics::request(label, status::FAIL);
            warn!(message = "Request failed.", request_type = %label, code = e.code, error = %e.message);
            CdcResponse::error(&e)
        }
    };
    respond(&body, body.http_status(state.mode))
}

fn decode<T: serde::de::DeserializeOwned + Default>(
    rtype: &str,
    data: &Value,
) -> Result<T, ApiError> {
    if data.is_null() {
        return Ok(T::default());
    }
    serde_json::from_value(data.clone()).map_err(|e| {
        ApiError::bad_request(format!("fail to decode the {rtype} request, error: {e}"))
    })
}

fn handled(rtype: &str) -> impl Fn(ApiError) -> ApiError + '_ {
    move |e| e.context(&format!("fail to handle the {rtype} request, error: "))
}

type Outcome = Result<(Value, Vec<String>), ApiError>;

async fn dispatch(mgr: &Arc<TaskManager>, req: &CdcRequest) -> Outcome {
    let rtype = req.request_type.as_str();
    let data = &req.request_data;
    let ok = |v: Value| Ok((v, Vec::new()));
    match rtype {
        "create" => {
            let r: CreateRequest = decode(rtype, data)?;
            let c = mgr.create(r).await.map_err(handled(rtype))?;
            Ok((json!({ "task_id": c.task_id }), c.warnings))
        }
        "delete" => {
            let r: DeleteRequest = decode(rtype, data)?;
            if r.task_id.is_empty() {
                return Err(ApiError::bad_request("task_id is empty")).map_err(handled(rtype));
            }
            mgr.delete(&r.task_id, r.ignore_not_found)
                .await
                .map_err(handled(rtype))?;
            ok(json!({}))
        }
        "pause" => {
            let r: TaskIdRequest = decode(rtype, data)?;
            mgr.pause(&r.task_id).await.map_err(handled(rtype))?;
            ok(json!({}))
        }
        "resume" => {
            let r: ResumeRequest = decode(rtype, data)?;
            mgr.resume(&r.task_id, &r.credentials)
                .await
                .map_err(handled(rtype))?;
            ok(json!({}))
        }
        "get" => {
            let r: TaskIdRequest = decode(rtype, data)?;
            let t = mgr.get(&r.task_id).map_err(handled(rtype))?;
            ok(json!({ "task": t }))
        }
        "list" => {
            let _: ListRequest = decode(rtype, data)?;
            ok(json!({ "tasks": mgr.list() }))
        }
        "position" => {
            let r: TaskIdRequest = decode(rtype, data)?;
            let p = mgr.position(&r.task_id).await.map_err(handled(rtype))?;
            ok(serde_json::to_value(p).unwrap_or(Value::Null))
        }
        "maintenance" => {
            let r: MaintenanceRequest = decode(rtype, data)?;
            maintenance(&r).map_err(handled(rtype)).and_then(ok)
        }
        other => Err(ApiError::bad_request(format!(
            "invalid 'request_type' param {other:?}, can be set {REQUEST_TYPES:?}"
        ))),
    }
}

fn maintenance(r: &MaintenanceRequest) -> Result<Value, ApiError> {
    match r.operation.as_str() {
        "set_log_level" => {
            let level = match r.params.get("log_level") {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => return Err(ApiError::bad_request("params.log_level is required")),
            };
            crate::logging::set_level(&level).map_err(ApiError::bad_request)?;
            Ok(json!({ "State": format!("set log level to {level}") }))
        }
        other => Err(ApiError::bad_request(format!(
            "unsupported operation: {other:?}; supported: [\"set_log_level\"]"
        ))),
    }
}

/// REST responses use the same body as `POST /cdc`, with the status line mirroring `code`
/// (404 for a task that does not exist).
fn rest(result: Result<Value, ApiError>) -> HttpResponse {
    match result {
        Ok(v) => respond(&CdcResponse::ok(v), 200),
        Err(e) => {
            let code = if e.not_found { 404 } else { e.code };
            let mut body = CdcResponse::error(&e);
            body.code = code;
            respond(&body, code)
        }
    }
}

async fn metrics_text() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(cdc_engine::metrics::render())
}

async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok", "tasks": state.manager.len() }))
}

async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI)
}

async fn tasks_list(state: web::Data<AppState>) -> HttpResponse {
    rest(Ok(json!({ "tasks": state.manager.list() })))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateQuery {
    task_id: Option<String>,
}

async fn tasks_create(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<CreateQuery>,
    body: web::Bytes,
) -> HttpResponse {
    let text = match std::str::from_utf8(&body) {
        Ok(t) => t,
        Err(e) => {
            return rest(Err(ApiError::bad_request(format!(
                "the body is not UTF-8: {e}"
            ))))
        }
    };
    let json = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    let r = state
        .manager
        .create_from_document(text, json, query.into_inner().task_id)
        .await
        .map(|c| json!({ "task_id": c.task_id }));
    rest(r)
}

async fn tasks_get(state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    rest(state.manager.get(&path).map(|t| json!({ "task": t })))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteQuery {
    #[serde(default)]
    ignore_not_found: bool,
}

async fn tasks_delete(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<DeleteQuery>,
) -> HttpResponse {
    rest(
        state
            .manager
            .delete(&path, query.ignore_not_found)
            .await
            .map(|()| json!({})),
    )
}

async fn tasks_pause(state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    rest(state.manager.pause(&path).await.map(|()| json!({})))
}

async fn tasks_resume(
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let r: ResumeRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ResumeRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return rest(Err(ApiError::bad_request(format!(
                    "the body must be {{\"credentials\": {{...}}}} or empty: {e}"
                ))))
            }
        }
    };
    if !r.task_id.is_empty() && r.task_id != *path {
        return rest(Err(ApiError::bad_request(
            "task_id in the body differs from the one in the path",
        )));
    }
    rest(
        state
            .manager
            .resume(&path, &r.credentials)
            .await
            .map(|()| json!({})),
    )
}

async fn cluster_info(state: web::Data<AppState>) -> HttpResponse {
    let mgr = &state.manager;
    let r = match mgr.cluster.get() {
        Some(c) => c.describe(mgr).await,
        None => Ok(json!({
            "mode": "single",
            "instances": [{ "instance_id": "local", "tasks": mgr.list().iter().map(|t| t.task_id.clone()).collect::<Vec<_>>() }],
        })),
    };
    rest(r)
}

async fn tasks_position(state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    rest(
        state
            .manager
            .position(&path)
            .await
            .map(|p| serde_json::to_value(p).unwrap_or(Value::Null)),
    )
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod auth_tests;
