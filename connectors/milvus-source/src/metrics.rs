//! Metrics of the Milvus source that the engine's [`ComponentMetrics`] has no family for:
//! messages read in the streaming-service format, and messages consumed without a change,
//! both labelled by message type.
//!
//! * `milvus_cdc_source_streaming_messages_total{pipeline, channel, msg_type}`: streaming
//!   messages (Milvus 2.5 with streaming enabled), data and control alike; `msg_type` is the
//!   streaming type name (`Insert`, `Flush`, `BeginTxn`, ...).
//! * `milvus_cdc_source_skipped_messages_total{pipeline, channel, reason, msg_type}`:
//!   messages consumed without a change. `reason`: `not_replicated` (a type without an engine
//!   event), `control` (a streaming control message: Flush, ManualFlush, CreateSegment,
//!   transaction markers), `replicated` (`skip_replicated`), `txn_aborted` (the body of a
//!   rolled-back or expired transaction), `txn_unknown` (the body or commit of a transaction
//!   whose BeginTxn was not read, e.g. before the start position).
//! * `milvus_cdc_snapshot_rows{pipeline, collection, kind}`: the initial snapshot's rows per
//!   collection (`db.collection`), `kind` `copied` (this run) or `total` (`count(*)`).
//!
//! [`ComponentMetrics`]: cdc_engine::metrics::ComponentMetrics

use std::sync::OnceLock;

use prometheus::{IntCounterVec, IntGaugeVec, Opts};

struct Families {
    streaming: IntCounterVec,
    skipped: IntCounterVec,
    snapshot: IntGaugeVec,
}

fn families() -> &'static Families {
    static F: OnceLock<Families> = OnceLock::new();
    F.get_or_init(|| {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            cdc_engine::metrics::register(
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        Families {
            streaming: counter(
                "milvus_cdc_source_streaming_messages_total",
                "Streaming-service messages read by the Milvus source, by type.",
                &["pipeline", "channel", "msg_type"],
            ),
            skipped: counter(
                "milvus_cdc_source_skipped_messages_total",
                "Messages the Milvus source consumed without a change, by reason and type.",
                &["pipeline", "channel", "reason", "msg_type"],
            ),
            snapshot: cdc_engine::metrics::register(
                IntGaugeVec::new(
                    Opts::new(
                        "milvus_cdc_snapshot_rows",
                        "Rows of the initial snapshot per collection: copied (this run) and total.",
                    ),
                    &["pipeline", "collection", "kind"],
                )
                .expect("valid metric"),
            ),
        }
    })
}

/// Why a message was consumed without a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SkipReason {
    /// A type without an engine event.
    NotReplicated,
    /// A streaming control message.
    Control,
    /// Received by replication, and `skip_replicated` is on.
    Replicated,
    /// Body of a rolled-back or expired transaction.
    TxnAborted,
    /// Part of a transaction whose BeginTxn was not read.
    TxnUnknown,
}

impl SkipReason {
    /// The `reason` label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::NotReplicated => "not_replicated",
            Self::Control => "control",
            Self::Replicated => "replicated",
            Self::TxnAborted => "txn_aborted",
            Self::TxnUnknown => "txn_unknown",
        }
    }
}

/// Handles bound to one pipeline.
#[derive(Debug, Clone)]
pub(crate) struct SourceMetrics {
    pipeline: String,
}

impl SourceMetrics {
    /// Handles for `pipeline`.
    pub(crate) fn new(pipeline: &str) -> Self {
        let _ = families();
        Self {
            pipeline: pipeline.to_string(),
        }
    }

    /// The pipeline name.
    pub(crate) fn pipeline(&self) -> &str {
        &self.pipeline
    }

    /// One streaming message of type `msg_type` read on `channel`.
    pub(crate) fn streaming(&self, channel: &str, msg_type: &str) {
        families()
            .streaming
            .with_label_values(&[self.pipeline.as_str(), channel, msg_type])
            .inc();
    }

    /// Rows of the snapshot of `collection` copied so far and its total.
    pub(crate) fn snapshot_rows(&self, collection: &str, copied: u64, total: u64) {
        let f = &families().snapshot;
        let p = self.pipeline.as_str();
        f.with_label_values(&[p, collection, "copied"])
            .set(i64::try_from(copied).unwrap_or(i64::MAX));
        f.with_label_values(&[p, collection, "total"])
            .set(i64::try_from(total).unwrap_or(i64::MAX));
    }

    /// One message consumed without a change.
    pub(crate) fn skipped(&self, channel: &str, reason: SkipReason, msg_type: &str) {
        families()
            .skipped
            .with_label_values(&[self.pipeline.as_str(), channel, reason.label(), msg_type])
            .inc();
    }

    /// Current value of a skipped counter (tests).
    #[cfg(test)]
    pub(crate) fn skipped_count(&self, channel: &str, reason: SkipReason, msg_type: &str) -> u64 {
        families()
            .skipped
            .with_label_values(&[self.pipeline.as_str(), channel, reason.label(), msg_type])
            .get()
    }

    /// Current value of a streaming counter (tests).
    #[cfg(test)]
    pub(crate) fn streaming_count(&self, channel: &str, msg_type: &str) -> u64 {
        families()
            .streaming
            .with_label_values(&[self.pipeline.as_str(), channel, msg_type])
            .get()
    }
}
