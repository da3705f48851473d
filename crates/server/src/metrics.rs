//! The server's Prometheus metrics, with milvus-cdc's names and labels so existing dashboards
//! keep working: task counts per state, each task's state, and request counts and latencies.
//! They live in the engine's process-wide registry, next to the pipeline metrics.

use std::sync::OnceLock;

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
};

use crate::task::TaskState;

/// Request status labels of `milvus_cdc_request_total` (milvus-cdc's values).
pub mod status {
    /// Every request that named a type.
    pub const TOTAL: &str = "total";
    /// Answered with code 200.
    pub const SUCCESS: &str = "success";
    /// Answered with an error code.
    pub const FAIL: &str = "fail";
    /// Not a POST.
    pub const INVALID_METHOD: &str = "invalid_method";
    /// The body could not be read.
    pub const READ_ERROR: &str = "read_error";
    /// The body is not a valid envelope.
    pub const UNMARSHAL_ERROR: &str = "unmarshal_error";
}

/// Request type label used before the type is known.
pub const UNKNOWN_TYPE: &str = "unknown";

struct ServerMetrics {
    task_num: IntGaugeVec,
    task_state: IntGaugeVec,
    requests: IntCounterVec,
    latency: HistogramVec,
    owned: IntGauge,
    takeovers: IntCounter,
    fenced: IntCounter,
    token_reloads: IntCounterVec,
}

fn metrics() -> &'static ServerMetrics {
    static M: OnceLock<ServerMetrics> = OnceLock::new();
    M.get_or_init(|| ServerMetrics {
        task_num: cdc_engine::metrics::register(
            IntGaugeVec::new(
                Opts::new("milvus_cdc_task_num", "cdc task number"),
                &["task_state"],
            )
            .expect("valid metric"),
        ),
        task_state: cdc_engine::metrics::register(
            IntGaugeVec::new(
                Opts::new(
                    "milvus_cdc_task_state",
                    "cdc task state (0 Initial, 1 Running, 2 Paused, -1 deleted)",
                ),
                &["task_id"],
            )
            .expect("valid metric"),
        ),
        requests: cdc_engine::metrics::register(
            IntCounterVec::new(
                Opts::new("milvus_cdc_request_total", "cdc request count"),
                &["request_type", "request_status"],
            )
            .expect("valid metric"),
        ),
        latency: cdc_engine::metrics::register(
            HistogramVec::new(
                HistogramOpts::new(
                    "milvus_cdc_request_latency",
                    "cdc request latency in milliseconds",
                )
                .buckets(prometheus::exponential_buckets(1.0, 2.0, 8).expect("valid buckets")),
                &["request_type"],
            )
            .expect("valid metric"),
        ),
        owned: cdc_engine::metrics::register(
            IntGauge::new(
                "milvus_cdc_cluster_owned_tasks",
                "tasks this cluster instance owns (holds the etcd ownership key of)",
            )
            .expect("valid metric"),
        ),
        takeovers: cdc_engine::metrics::register(
            IntCounter::new(
                "milvus_cdc_cluster_acquired_tasks_total",
                "task ownership keys this cluster instance took (creates, resumes, takeovers)",
            )
            .expect("valid metric"),
        ),
        fenced: cdc_engine::metrics::register(
            IntCounter::new(
                "milvus_cdc_cluster_fenced_commits_total",
                "checkpoint commits etcd refused because this instance no longer owned the task",
            )
            .expect("valid metric"),
        ),
        token_reloads: cdc_engine::metrics::register(
            IntCounterVec::new(
                Opts::new(
                    "milvus_cdc_auth_token_reloads_total",
                    "re-reads of auth.tokens_file (result ok, or error: previous tokens kept)",
                ),
                &["result"],
            )
            .expect("valid metric"),
        ),
    })
}

/// Set the number of fenced (refused) checkpoint commits so far (from the state store).
pub fn cluster_fenced(total: u64) {
    let c = &metrics().fenced;
    let now = c.get();
    if total > now {
        c.inc_by(total - now);
    }
}

/// Count a re-read of the tokens file (`ok` or `error`).
pub fn token_reload(result: &str) {
    metrics().token_reloads.with_label_values(&[result]).inc();
}

/// Set the number of tasks this cluster instance owns.
pub fn cluster_owned(n: usize) {
    metrics().owned.set(n as i64);
}

/// Count a task ownership taken.
pub fn cluster_takeover() {
    metrics().takeovers.inc();
}

/// Set the per-state task counts.
pub fn set_task_counts(counts: [(TaskState, usize); 3]) {
    for (state, n) in counts {
        metrics()
            .task_num
            .with_label_values(&[state.name()])
            .set(n as i64);
    }
}

/// Record a task's state; `None` marks it deleted (-1).
pub fn set_task_state(task_id: &str, state: Option<TaskState>) {
    metrics()
        .task_state
        .with_label_values(&[task_id])
        .set(state.map_or(-1, TaskState::code));
}

/// Count a request outcome.
pub fn request(request_type: &str, status: &str) {
    metrics()
        .requests
        .with_label_values(&[request_type, status])
        .inc();
}

/// Record the latency of a successful request.
pub fn latency(request_type: &str, ms: f64) {
    metrics()
        .latency
        .with_label_values(&[request_type])
        .observe(ms);
}
