//! Failure classification and retries: which failures of a target call may succeed later
//! (transport errors, overload, rate limits, Milvus `retriable` statuses), exponential backoff
//! for those, and the operator-facing error once retrying stops.

use std::future::Future;
use std::time::Duration;

use cdc_engine::{EngineError, ErrorKind};
use cdc_protocol::common::Status;
use tracing::warn;

use crate::config::RetryConfig;

/// Why one call to the target failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The gRPC call itself failed (connection refused, timeout, unimplemented...).
    Grpc {
        /// gRPC status code.
        code: tonic::Code,
        /// gRPC status message.
        message: String,
    },
    /// Milvus answered with a non-success status.
    Milvus {
        /// `Status.code` (Milvus 2.3+ error code; 0 when only the legacy code is set).
        code: i32,
        /// Legacy `Status.error_code`.
        error_code: i32,
        /// `Status.reason`.
        reason: String,
        /// `Status.retriable`.
        retriable: bool,
    },
    /// The answer was not what the protocol promises (e.g. no status).
    Protocol(String),
}

/// Legacy `ErrorCode`s that mean "busy, try later": RateLimit, MemoryQuotaExhausted,
/// DiskQuotaExhausted, TimeTickLongDelay, NotReadyServe, NotReadyCoordActivating,
/// NotShardLeader, NoReplicaAvailable, DataCoordNA.
const RETRIABLE_LEGACY: [i32; 9] = [49, 53, 54, 55, 56, 57, 45, 46, 100];

/// Milvus 2.3+ `merr` codes that mean "busy or not ready, try later": service not ready (1),
/// unavailable (2), memory limit (3), request limit (4), disk limit (7), rate limit (8),
/// quota exceeded (9), time tick long delay (11), replica/channel not available (401, 503).
const RETRIABLE_CODES: [i32; 10] = [1, 2, 3, 4, 7, 8, 9, 11, 401, 503];

impl Failure {
    /// Failure from a gRPC error.
    pub(crate) fn grpc(s: &tonic::Status) -> Self {
        Failure::Grpc {
            code: s.code(),
            message: s.message().to_string(),
        }
    }

    /// True when the same call may succeed later.
    pub(crate) fn retriable(&self) -> bool {
        match self {
            Failure::Grpc { code, message } => grpc_retriable(*code, message),
            Failure::Milvus {
                code,
                error_code,
                retriable,
                reason,
            } => {
                *retriable
                    || RETRIABLE_CODES.contains(code)
                    || RETRIABLE_LEGACY.contains(error_code)
                    // Milvus' own internal retries gave up (`retry.Do`: "attempt #0: ..."), as a
                    // just-restarted target's coordinators do for a while (seen on flush).
                    || reason.contains("attempt #")
            }
            Failure::Protocol(_) => false,
        }
    }

    /// True when Milvus said the object already exists (used by check-then-act DDL to
    /// tolerate a race with another writer).
    pub(crate) fn reason_contains(&self, needle: &str) -> bool {
        match self {
            Failure::Milvus { reason, .. } => reason.to_lowercase().contains(needle),
            Failure::Grpc { message, .. } => message.to_lowercase().contains(needle),
            Failure::Protocol(m) => m.contains(needle),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Grpc { code, message } => {
                write!(f, "gRPC error {code:?}: {message}")
            }
            Failure::Milvus {
                code,
                error_code,
                reason,
                ..
            } => write!(
                f,
                "Milvus refused: {reason} (code {code}, error_code {error_code})"
            ),
            Failure::Protocol(m) => write!(f, "unexpected answer: {m}"),
        }
    }
}

/// gRPC codes worth retrying: the target is down, restarting, overloaded or slow.
fn grpc_retriable(code: tonic::Code, message: &str) -> bool {
    use tonic::Code;
    match code {
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::ResourceExhausted
        | Code::Aborted
        | Code::Cancelled => true,
        // hyper/h2 connection failures surface as Unknown or Internal.
        Code::Unknown | Code::Internal => {
            let m = message.to_lowercase();
            m.contains("transport")
                || m.contains("connection")
                || m.contains("broken pipe")
                || m.contains("h2 protocol")
        }
        _ => false,
    }
}

/// `Ok` for a success status, the failure otherwise (a missing status is a protocol error).
pub(crate) fn check_status(status: Option<&Status>) -> Result<(), Failure> {
    let Some(s) = status else {
        return Err(Failure::Protocol("response without status".into()));
    };
    if s.code == 0 && s.error_code == 0 {
        return Ok(());
    }
    Err(Failure::Milvus {
        code: s.code,
        error_code: s.error_code,
        reason: s.reason.clone(),
        retriable: s.retriable,
    })
}

/// What a call was about, for logs and the final error.
#[derive(Debug, Clone)]
pub(crate) struct CallContext<'a> {
    /// Component name for the error (`sink <id>`).
    pub component: &'a str,
    /// Target URI.
    pub uri: &'a str,
    /// Database.
    pub database: &'a str,
    /// Collection (empty for database operations).
    pub collection: &'a str,
    /// Operation (`insert`, `create_collection`...).
    pub op: &'a str,
}

impl CallContext<'_> {
    /// The operator-facing error for `failure` after `attempts` attempts.
    pub(crate) fn error(&self, failure: &Failure, attempts: u32) -> EngineError {
        let retriable = failure.retriable();
        let hint = if self.op.starts_with("load_") && failure.reason_contains("index not found") {
            "the collection has no index on the target: its CreateIndex was not replicated \
             (made before the task's start position, or outside its filter); create the index \
             on the target as on the source, then resume the task"
                .to_string()
        } else if retriable {
            format!(
                "still failing after {attempts} attempts; check that the target is up and \
                 not overloaded, then resume the task"
            )
        } else {
            "the target rejected the request; fix the cause (schema, permissions, target \
             configuration) and resume the task"
                .to_string()
        };
        let e = EngineError::new(
            self.component,
            ErrorKind::Write,
            format!(
                "{} on target {} (database {:?}, collection {:?}) failed: {failure}; {hint}",
                self.op, self.uri, self.database, self.collection
            ),
        );
        if retriable {
            e.retriable()
        } else {
            e
        }
    }
}

/// Backoff before attempt `attempt + 1` (attempt counts from 1).
pub(crate) fn backoff(policy: &RetryConfig, attempt: u32) -> Duration {
    let shift = attempt.saturating_sub(1).min(30);
    let ms = policy
        .initial_backoff_ms
        .saturating_mul(1u64 << shift)
        .min(policy.max_backoff_ms);
    Duration::from_millis(ms)
}

/// Run `call` until it succeeds, fails with a non-retriable failure, or the attempts run out.
pub(crate) async fn with_retry<T, F, Fut>(
    policy: &RetryConfig,
    ctx: &CallContext<'_>,
    mut call: F,
) -> Result<T, EngineError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(f) if f.retriable() && attempt < policy.max_attempts => {
                let wait = backoff(policy, attempt);
                warn!(
                    message = "Call to target Milvus failed; retrying.",
                    op = ctx.op,
                    uri = ctx.uri,
                    database = ctx.database,
                    collection = ctx.collection,
                    attempt,
                    backoff_ms = wait.as_millis() as u64,
                    error = %f
                );
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            Err(f) => return Err(ctx.error(&f, attempt)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn milvus(code: i32, error_code: i32, retriable: bool) -> Failure {
        Failure::Milvus {
            code,
            error_code,
            reason: "r".into(),
            retriable,
        }
    }

    #[test]
    fn classification() {
        let g = |c, m: &str| Failure::Grpc {
            code: c,
            message: m.into(),
        };
        assert!(g(tonic::Code::Unavailable, "connection refused").retriable());
        assert!(g(tonic::Code::DeadlineExceeded, "").retriable());
        assert!(g(tonic::Code::Unknown, "transport error").retriable());
        assert!(!g(tonic::Code::Unknown, "bad schema").retriable());
        assert!(!g(tonic::Code::Unimplemented, "").retriable());
        assert!(!g(tonic::Code::InvalidArgument, "").retriable());
        assert!(!g(tonic::Code::Unauthenticated, "").retriable());
        assert!(milvus(8, 0, false).retriable(), "rate limit");
        assert!(milvus(0, 49, false).retriable(), "legacy rate limit");
        assert!(milvus(5, 1, true).retriable(), "retriable flag");
        assert!(!milvus(1100, 5, false).retriable(), "invalid parameter");
        assert!(!milvus(100, 4, false).retriable(), "collection not found");
        assert!(!Failure::Protocol("x".into()).retriable());
    }

    #[test]
    fn status_check() {
        assert!(check_status(Some(&Status::default())).is_ok());
        assert!(check_status(None).is_err());
        let s = Status {
            code: 1100,
            reason: "invalid".into(),
            ..Status::default()
        };
        assert_eq!(
            check_status(Some(&s)).unwrap_err(),
            milvus(1100, 0, false).with_reason("invalid")
        );
        let legacy = Status {
            error_code: 5,
            ..Status::default()
        };
        assert!(check_status(Some(&legacy)).is_err());
    }

    impl Failure {
        fn with_reason(self, r: &str) -> Self {
            match self {
                Failure::Milvus {
                    code,
                    error_code,
                    retriable,
                    ..
                } => Failure::Milvus {
                    code,
                    error_code,
                    reason: r.into(),
                    retriable,
                },
                other => other,
            }
        }
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryConfig {
            max_attempts: 10,
            initial_backoff_ms: 100,
            max_backoff_ms: 1000,
        };
        let v: Vec<u64> = (1..=6).map(|a| backoff(&p, a).as_millis() as u64).collect();
        assert_eq!(v, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff(&p, 200).as_millis(), 1000);
    }

    #[test]
    fn error_names_everything() {
        let ctx = CallContext {
            component: "sink t",
            uri: "http://h:1",
            database: "db1",
            collection: "c1",
            op: "insert",
        };
        let e = ctx.error(&milvus(1100, 5, false).with_reason("field x missing"), 1);
        assert_eq!(e.kind, ErrorKind::Write);
        assert!(!e.retriable);
        for s in [
            "insert",
            "http://h:1",
            "db1",
            "c1",
            "field x missing",
            "1100",
        ] {
            assert!(e.message.contains(s), "{s} in {}", e.message);
        }
        assert!(ctx.error(&milvus(8, 0, false), 5).retriable);
    }

    #[test]
    fn an_internal_retry_that_gave_up_is_retriable() {
        let f = milvus(1, 1, false).with_reason("attempt #0: stack trace: tracer.StackTrace");
        assert!(f.retriable());
    }

    /// Issue 12: a load that fails for want of an index says what was missed.
    #[test]
    fn a_load_without_an_index_says_what_was_missed() {
        let ctx = CallContext {
            component: "sink t",
            uri: "http://h:1",
            database: "default",
            collection: "c1",
            op: "load_collection",
        };
        let e = ctx.error(
            &milvus(700, 0, false).with_reason("index not found[collection=c1]"),
            1,
        );
        assert!(
            e.message.contains("CreateIndex was not replicated"),
            "{}",
            e.message
        );
        assert!(
            e.message.contains("create the index on the target"),
            "{}",
            e.message
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retries_until_success_or_exhaustion() {
        let p = RetryConfig {
            max_attempts: 3,
            initial_backoff_ms: 10,
            max_backoff_ms: 10,
        };
        let ctx = CallContext {
            component: "sink t",
            uri: "u",
            database: "d",
            collection: "c",
            op: "op",
        };
        let mut n = 0;
        let r: Result<u32, _> = with_retry(&p, &ctx, || {
            n += 1;
            let v = n;
            async move {
                if v < 3 {
                    Err(milvus(8, 0, false))
                } else {
                    Ok(v)
                }
            }
        })
        .await;
        assert_eq!(r.unwrap(), 3);
        let mut n = 0;
        let r: Result<(), _> = with_retry(&p, &ctx, || {
            n += 1;
            async { Err(milvus(8, 0, false)) }
        })
        .await;
        assert!(r.unwrap_err().message.contains("after 3 attempts"));
        assert_eq!(n, 3);
        let mut n = 0;
        let r: Result<(), _> = with_retry(&p, &ctx, || {
            n += 1;
            async { Err(milvus(1100, 0, false)) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(n, 1, "non-retriable failures are not retried");
    }
}
