//! The response envelope of `POST /cdc` and the API error type.
//!
//! `{"code": 200, "message": "...", "data": {...}}`: `message` is omitted when empty and `data`
//! when it is empty, exactly as milvus-cdc encodes it. The HTTP status line is 200 unless the
//! server runs with `http_status: mirror`.

use serde::Serialize;
use serde_json::Value;

use crate::config::HttpStatusMode;

/// An API failure: the body `code` and a message saying what failed and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// 400 (the request is wrong), 404 (REST only), 405 or 500 (the server or an external
    /// system failed).
    pub code: u16,
    /// Human-readable cause.
    pub message: String,
    /// The task does not exist (REST endpoints answer 404).
    pub not_found: bool,
}

impl ApiError {
    /// A client error (400).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            code: 400,
            message: message.into(),
            not_found: false,
        }
    }

    /// The task does not exist (400 on `POST /cdc`, like milvus-cdc; 404 on `/tasks`).
    pub fn not_found(task_id: &str) -> Self {
        Self {
            code: 400,
            message: format!("not found the task, task_id: {task_id}"),
            not_found: true,
        }
    }

    /// A server-side error (500).
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            code: 500,
            message: message.into(),
            not_found: false,
        }
    }

    /// The message prefixed with context.
    pub fn context(mut self, prefix: &str) -> Self {
        self.message = format!("{prefix}{}", self.message);
        self
    }

    /// Map an engine error: configuration problems are the caller's (400), anything else
    /// (connection, state store...) is 500.
    pub fn from_engine(e: &cdc_engine::EngineError) -> Self {
        let code = if e.kind == cdc_engine::ErrorKind::Config {
            400
        } else {
            500
        };
        Self {
            code,
            message: e.to_string(),
            not_found: false,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.message)
    }
}

impl From<cdc_state::StateError> for ApiError {
    fn from(e: cdc_state::StateError) -> Self {
        ApiError::internal(e.to_string())
    }
}

/// The JSON body of every `POST /cdc` response.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CdcResponse {
    /// 200 on success, else the error code.
    pub code: u16,
    /// Error text, or a warning on success; omitted when empty.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The response data; omitted when empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl CdcResponse {
    /// A success carrying `data` (an empty object or `null` is dropped).
    pub fn ok(data: Value) -> Self {
        let data = match &data {
            Value::Null => None,
            Value::Object(m) if m.is_empty() => None,
            _ => Some(data),
        };
        Self {
            code: 200,
            message: String::new(),
            data,
        }
    }

    /// A failure.
    pub fn error(e: &ApiError) -> Self {
        Self {
            code: e.code,
            message: e.message.clone(),
            data: None,
        }
    }

    /// The HTTP status line for this body.
    pub fn http_status(&self, mode: HttpStatusMode) -> u16 {
        match mode {
            HttpStatusMode::Always200 => 200,
            HttpStatusMode::Mirror => self.code,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn empty_fields_are_omitted() {
        let ok = serde_json::to_string(&CdcResponse::ok(json!({}))).unwrap();
        assert_eq!(ok, r#"{"code":200}"#);
        let ok = serde_json::to_string(&CdcResponse::ok(json!({"task_id": "x"}))).unwrap();
        assert_eq!(ok, r#"{"code":200,"data":{"task_id":"x"}}"#);
        let e = CdcResponse::error(&ApiError::bad_request("nope"));
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"code":400,"message":"nope"}"#
        );
        assert_eq!(e.http_status(HttpStatusMode::Always200), 200);
        assert_eq!(e.http_status(HttpStatusMode::Mirror), 400);
    }

    #[test]
    fn engine_errors_map_to_codes() {
        let c = cdc_engine::EngineError::config("sink", "bad uri");
        assert_eq!(ApiError::from_engine(&c).code, 400);
        let n = cdc_engine::EngineError::new("sink", cdc_engine::ErrorKind::Connect, "down");
        assert_eq!(ApiError::from_engine(&n).code, 500);
    }
}
