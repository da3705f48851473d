//! Prometheus metrics of the engine, registered once in a process-wide registry that the HTTP
//! server and `milvus-cdc run --metrics-addr` expose.
//!
//! Names follow `milvus_cdc_<what>_<unit>`; where the original milvus-cdc had a metric with the
//! same meaning (`milvus_cdc_replicate_tt`, `milvus_cdc_replicate_data_cnt`,
//! `milvus_cdc_replicate_data_size`) its name and labels are kept.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::component::ComponentId;
use crate::error::ErrorKind;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The process-wide registry.
pub fn registry() -> &'static Registry {
    static REG: OnceLock<Registry> = OnceLock::new();
    REG.get_or_init(Registry::new)
}

/// Render every registered metric in the Prometheus text format.
pub fn render() -> String {
    let mut buf = Vec::new();
    let families = registry().gather();
    if TextEncoder::new().encode(&families, &mut buf).is_err() {
        return String::new();
    }
    String::from_utf8(buf).unwrap_or_default()
}

/// Register a collector, tolerating a second registration of the same family.
pub fn register<C: prometheus::core::Collector + Clone + 'static>(c: C) -> C {
    let _ = registry().register(Box::new(c.clone()));
    c
}

struct Families {
    events_in: IntCounterVec,
    events_out: IntCounterVec,
    rows: IntCounterVec,
    writes: IntCounterVec,
    bytes: IntCounterVec,
    errors: IntCounterVec,
    checkpoint_seconds: HistogramVec,
    epoch: IntGaugeVec,
    lag_ms: IntGaugeVec,
    lag_seconds: HistogramVec,
    batch_rows: HistogramVec,
    replicate_tt: IntGaugeVec,
    replicate_cnt: IntCounterVec,
    replicate_size: IntCounterVec,
}

fn families() -> &'static Families {
    static F: OnceLock<Families> = OnceLock::new();
    F.get_or_init(|| {
        let lbl = &["pipeline", "component"];
        let counter = |name: &str, help: &str, labels: &[&str]| {
            register(IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            register(IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"))
        };
        let hist = |name: &str, help: &str, buckets: Vec<f64>| {
            register(
                HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), lbl)
                    .expect("valid metric"),
            )
        };
        Families {
            events_in: counter(
                "milvus_cdc_component_received_events_total",
                "Changes received by a component.",
                lbl,
            ),
            events_out: counter(
                "milvus_cdc_component_sent_events_total",
                "Changes a source emitted or a sink made durable (counted at each flush).",
                lbl,
            ),
            rows: counter(
                "milvus_cdc_component_rows_total",
                "Rows written by a sink, by operation.",
                &["pipeline", "component", "op"],
            ),
            writes: counter(
                "milvus_cdc_component_writes_total",
                "Write requests or DDL calls a sink completed, by operation.",
                &["pipeline", "component", "op"],
            ),
            bytes: counter(
                "milvus_cdc_component_bytes_total",
                "Bytes read by a source or written by a sink.",
                lbl,
            ),
            errors: counter(
                "milvus_cdc_component_errors_total",
                "Errors of a component, by kind.",
                &["pipeline", "component", "kind"],
            ),
            checkpoint_seconds: hist(
                "milvus_cdc_checkpoint_duration_seconds",
                "Time from a barrier reaching a sink to its checkpoint being stored.",
                vec![
                    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ],
            ),
            epoch: gauge(
                "milvus_cdc_checkpoint_epoch",
                "Last committed checkpoint epoch of a sink.",
                lbl,
            ),
            lag_ms: gauge(
                "milvus_cdc_lag_ms",
                "Milliseconds between the source time tick of the last written change and now.",
                lbl,
            ),
            lag_seconds: hist(
                "milvus_cdc_write_lag_seconds",
                "Per write: seconds between the source timestamp of a change and its write.",
                vec![
                    0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0, 60.0,
                ],
            ),
            batch_rows: hist(
                "milvus_cdc_batch_rows",
                "Rows per write request of a sink.",
                prometheus::exponential_buckets(1.0, 4.0, 10).expect("valid buckets"),
            ),
            replicate_tt: gauge(
                "milvus_cdc_replicate_tt",
                "Physical time (ms) of the last read or written message (milvus-cdc name).",
                &["task_id", "vchannel_name", "op_type"],
            ),
            replicate_cnt: counter(
                "milvus_cdc_replicate_data_cnt",
                "Rows replicated (milvus-cdc name).",
                &[
                    "task_id",
                    "collection_id",
                    "collection_name",
                    "op_type",
                    "api_type",
                ],
            ),
            replicate_size: counter(
                "milvus_cdc_replicate_data_size",
                "Bytes replicated (milvus-cdc name).",
                &["task_id", "vchannel_name", "op_type", "msg_type"],
            ),
        }
    })
}

/// Current wall-clock time in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Metric handles bound to one component of one pipeline.
#[derive(Clone)]
pub struct ComponentMetrics {
    pipeline: String,
    component: String,
    /// Changes received.
    pub events_in: IntCounter,
    /// Changes a source emitted, or a sink made durable (counted by the engine at each flush;
    /// sinks do not count them).
    pub events_out: IntCounter,
    /// Bytes read or written.
    pub bytes: IntCounter,
    /// Checkpoint duration.
    pub checkpoint_seconds: Histogram,
    /// Last committed epoch.
    pub epoch: IntGauge,
    /// Lag of the last write.
    pub lag_ms: IntGauge,
    lag_seconds: Histogram,
    batch_rows: Histogram,
}

impl ComponentMetrics {
    /// Handles for `component` of `pipeline`.
    pub fn new(pipeline: &str, component: &ComponentId) -> Self {
        let f = families();
        let component = component.label();
        let l = [pipeline, component.as_str()];
        Self {
            pipeline: pipeline.to_string(),
            component: component.clone(),
            events_in: f.events_in.with_label_values(&l),
            events_out: f.events_out.with_label_values(&l),
            bytes: f.bytes.with_label_values(&l),
            checkpoint_seconds: f.checkpoint_seconds.with_label_values(&l),
            epoch: f.epoch.with_label_values(&l),
            lag_ms: f.lag_ms.with_label_values(&l),
            lag_seconds: f.lag_seconds.with_label_values(&l),
            batch_rows: f.batch_rows.with_label_values(&l),
        }
    }

    /// Record a successful write of `rows` rows of operation `op` whose newest source hybrid
    /// timestamp is `ts` (0 when unknown).
    pub fn written(&self, op: &str, rows: usize, ts: u64) {
        let f = families();
        let labels = [self.pipeline.as_str(), self.component.as_str(), op];
        f.rows.with_label_values(&labels).inc_by(rows as u64);
        f.writes.with_label_values(&labels).inc();
        if rows > 0 {
            self.batch_rows.observe(rows as f64);
        }
        if ts > 0 {
            let lag = now_ms().saturating_sub(cdc_protocol::ts::physical_ms(ts));
            self.lag_ms.set(lag as i64);
            self.lag_seconds.observe(lag as f64 / 1000.0);
        }
    }

    /// Reports that `subject` of `kind` was not replicated, and why (see [`crate::notices`]).
    pub fn not_replicated(&self, kind: &str, subject: &str, reason: &str) {
        crate::notices::report(&self.pipeline, &self.component, kind, subject, reason);
    }

    /// Withdraws a [`ComponentMetrics::not_replicated`] report.
    pub fn replicated(&self, kind: &str, subject: &str) {
        crate::notices::clear(&self.pipeline, &self.component, kind, subject);
    }

    /// Count an error of `kind` that the component handled itself (skipped, logged, retried
    /// later). An error a component *returns* is counted once by the engine when the
    /// component's task ends with it; counting it here too would count it twice.
    pub fn error(&self, kind: ErrorKind) {
        families()
            .errors
            .with_label_values(&[&self.pipeline, &self.component, kind.label()])
            .inc();
    }

    /// milvus-cdc compatible per-channel time tick gauge (`op_type` = `read` or `write`).
    pub fn replicate_tt(&self, channel: &str, op_type: &str, ts: u64) {
        families()
            .replicate_tt
            .with_label_values(&[&self.pipeline, channel, op_type])
            .set(cdc_protocol::ts::physical_ms(ts) as i64);
    }

    /// milvus-cdc compatible row counter.
    pub fn replicate_rows(&self, collection_id: i64, collection: &str, op: &str, rows: usize) {
        families()
            .replicate_cnt
            .with_label_values(&[
                &self.pipeline,
                &collection_id.to_string(),
                collection,
                "write",
                op,
            ])
            .inc_by(rows as u64);
    }

    /// milvus-cdc compatible byte counter (read side).
    pub fn replicate_bytes(&self, channel: &str, msg_type: &str, bytes: usize) {
        families()
            .replicate_size
            .with_label_values(&[&self.pipeline, channel, "read", msg_type])
            .inc_by(bytes as u64);
        self.bytes.inc_by(bytes as u64);
    }
}
