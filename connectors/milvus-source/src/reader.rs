//! The task that reads one message-queue channel: it decodes each message (so channels decode
//! in parallel), applies the decode-error policy, answers probes, and feeds the merger through
//! a bounded channel (backpressure when the source is behind).
//!
//! # Streaming transactions
//!
//! On the message queue a streaming-service transaction is a BeginTxn, its body messages and
//! a CommitTxn or RollbackTxn, each its own message with the transaction's `_tx` context
//! ([`cdc_protocol::streaming`]). Like Milvus' own consumer (`txn_buffer.go`), the reader
//! holds the bodies until the commit, gives them the commit's time tick, and drops them on a
//! rollback or when the transaction expires (a time tick at or past the last message's time
//! tick plus the keepalive). While any transaction is open, *everything* read after its
//! BeginTxn is held in read order (ticks and other changes too) and no probe is answered, so
//! offsets stay in order and a checkpoint never passes an open BeginTxn: a restart re-reads
//! the whole transaction. Held inputs are capped at `max_pending_mib`; a transaction larger
//! than that stops the task with an error. Not done: a transaction whose BeginTxn lies before
//! the start position (a `positions` entry or `latest` start in the middle of it) cannot be
//! rebuilt; its bodies and commit are skipped and counted (`txn_unknown`), as Milvus' buffer
//! does. Milvus 2.5 itself opens transactions only in tests (found no production caller of
//! `streaming.WAL().Txn`); upsert transactions are a 2.6 feature.

use std::collections::HashMap;
use std::sync::Arc;

use cdc_engine::metrics::ComponentMetrics;
use cdc_engine::retry::RetryPolicy;
use cdc_engine::{EngineError, ErrorKind};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::config::{OnDecodeError, COMPONENT};
use crate::decode::{self, DecodeOptions, Decoded, Payload, RawMessage, Txn};
use crate::input::Input;
use crate::metrics::{SkipReason, SourceMetrics};
use crate::mq::budget::Gate;
use crate::mq::resilient::ResilientReader;
use crate::mq::{reached, MqClient, MqReader, StartAt};

/// Everything a reader task needs.
pub(crate) struct ReaderTask {
    /// Opens the reader.
    pub client: Arc<dyn MqClient>,
    /// Channel (topic) name.
    pub channel: String,
    /// Start position.
    pub start: StartAt,
    /// To the source.
    pub tx: mpsc::Sender<Input>,
    /// Probe requests (round numbers).
    pub probes: mpsc::UnboundedReceiver<u64>,
    /// Decode-error policy.
    pub on_decode_error: OnDecodeError,
    /// Metrics of the source.
    pub metrics: ComponentMetrics,
    /// Source-specific metrics.
    pub source_metrics: SourceMetrics,
    /// Decode options (`skip_replicated`).
    pub decode: DecodeOptions,
    /// Open streaming transactions and what is held behind them.
    pub hold: TxnHold,
    /// How the reader reconnects after the message queue went away.
    pub reconnect: RetryPolicy,
    /// The source's memory budget: the reader pauses while it is spent ([`Gate`]).
    pub gate: Arc<Gate>,
}

impl ReaderTask {
    /// Runs until the source goes away or the reader fails for good (the failure is sent
    /// in-band). Broker outages are ridden out by [`ResilientReader`]: nothing is skipped or
    /// read twice, and a streaming transaction held across an outage stays held.
    pub async fn run(mut self) {
        let mut reader = ResilientReader::new(
            self.client.clone(),
            &self.channel,
            self.start.clone(),
            self.reconnect,
            self.source_metrics.pipeline(),
        );
        let mut waiting: Vec<(u64, Option<Vec<u8>>)> = Vec::new();
        let mut paused = false;
        loop {
            let pause = self.gate.must_pause();
            if pause != paused {
                if let Err(e) = reader.set_paused(pause) {
                    let _ = self.tx.send(Input::Failed(e)).await;
                    return;
                }
                self.gate.set_paused(pause);
                paused = pause;
                debug!(message = "Reader paused or resumed by the memory budget.", channel = %self.channel, paused, pending_bytes = self.gate.budget().used());
            }
            tokio::select! {
                biased;
                probe = self.probes.recv() => {
                    let Some(round) = probe else { return };
                    match reader.last_available().await {
                        Ok(target) => waiting.push((round, target)),
                        Err(e) => {
                            debug!(message = "Probe not answered.", channel = %self.channel, error = %e);
                        }
                    }
                }
                _ = self.gate.budget().changed(), if paused => {}
                msg = reader.recv(), if !paused => {
                    let raw = match msg {
                        Ok(raw) => raw,
                        Err(e) => {
                            let _ = self.tx.send(Input::Failed(e)).await;
                            return;
                        }
                    };
                    for input in self.handle(raw) {
                        let fatal = matches!(input, Input::Failed(_));
                        if let Input::Change { bytes, .. } = &input {
                            // Given back by the source when the change is released.
                            self.gate.budget().take(*bytes);
                        }
                        if self.tx.send(input).await.is_err() || fatal {
                            return;
                        }
                    }
                }
            }
            // Held inputs are not delivered yet: no probe is answered while holding.
            if !waiting.is_empty()
                && !self.hold.is_holding()
                && !self.answer(&mut waiting, reader.last_read()).await
            {
                return;
            }
        }
    }

    async fn answer(
        &self,
        waiting: &mut Vec<(u64, Option<Vec<u8>>)>,
        last: Option<Vec<u8>>,
    ) -> bool {
        let mut i = 0;
        while i < waiting.len() {
            if reached(last.as_ref(), waiting[i].1.as_ref()) {
                let (round, _) = waiting.remove(i);
                if self.tx.send(Input::ProbeOk { round }).await.is_err() {
                    return false;
                }
            } else {
                i += 1;
            }
        }
        true
    }

    /// Decodes one message into the inputs to send ([`Input::Failed`] stops the task).
    fn handle(&mut self, raw: RawMessage) -> Vec<Input> {
        let (input, txn) = self.decode_one(raw);
        let ch = self.channel.clone();
        let metrics = self.source_metrics.clone();
        self.hold.push(input, txn, &mut |reason, label| {
            metrics.skipped(&ch, reason, label)
        })
    }

    fn skipped(&self, offset: &[u8], reason: SkipReason, label: &str, code: i32, lossy: bool) {
        self.source_metrics.skipped(&self.channel, reason, label);
        let offset = decode::offset_label(offset);
        let message = match reason {
            SkipReason::Replicated => "Message received by replication; skipped.",
            SkipReason::Control => "Streaming control message; skipped.",
            _ => "Message type not replicated; skipped.",
        };
        if lossy {
            warn!(message, channel = %self.channel, offset, msg_type = %label, code);
        } else {
            debug!(message, channel = %self.channel, offset, msg_type = %label, code);
        }
    }

    fn decode_one(&self, raw: RawMessage) -> (Input, Option<Txn>) {
        let bytes = raw.payload.len();
        match decode::decode_with(&self.channel, &raw, self.decode) {
            Ok(d) => {
                let label = d.label;
                self.metrics.replicate_bytes(&self.channel, &label, bytes);
                if d.streaming {
                    self.source_metrics.streaming(&self.channel, &label);
                }
                let input = match d.decoded {
                    Decoded::Tick { ts } => {
                        self.metrics.replicate_tt(&self.channel, "read", ts);
                        Input::Tick {
                            offset: raw.offset,
                            ts,
                        }
                    }
                    Decoded::Change { ts, pair, msg } => {
                        self.metrics.replicate_tt(&self.channel, "read", ts);
                        Input::Change {
                            offset: raw.offset,
                            ts,
                            bytes,
                            pair,
                            payload: Payload::Mq(msg),
                        }
                    }
                    Decoded::NotReplicated { msg_type, lossy } => {
                        self.skipped(
                            &raw.offset,
                            SkipReason::NotReplicated,
                            &label,
                            msg_type,
                            lossy,
                        );
                        Input::Skipped { offset: raw.offset }
                    }
                    Decoded::Control => {
                        self.skipped(&raw.offset, SkipReason::Control, &label, 0, false);
                        Input::Skipped { offset: raw.offset }
                    }
                    Decoded::Replicated => {
                        self.skipped(&raw.offset, SkipReason::Replicated, &label, 0, false);
                        Input::Skipped { offset: raw.offset }
                    }
                };
                (input, d.txn)
            }
            Err(e) => {
                self.metrics
                    .replicate_bytes(&self.channel, "undecodable", bytes);
                let input = match self.on_decode_error {
                    OnDecodeError::Skip => {
                        self.metrics.error(cdc_engine::ErrorKind::Decode);
                        warn!(message = "Undecodable message skipped.", channel = %self.channel, error = %e);
                        Input::Skipped { offset: raw.offset }
                    }
                    OnDecodeError::Pause => Input::Failed(e),
                };
                (input, None)
            }
        }
    }
}

/// Streaming transactions open on one channel, and the inputs held behind them (see the
/// module documentation).
#[derive(Debug, Default)]
pub(crate) struct TxnHold {
    /// Open transactions: ID to (expiry time tick, keepalive ms).
    open: HashMap<i64, (u64, i64)>,
    /// Inputs in read order, with the transaction of a body.
    held: Vec<(Option<i64>, Input)>,
    bytes: usize,
    /// Upper bound of `bytes`.
    pub max_bytes: usize,
}

/// `tt` plus `ms` milliseconds of physical time (Milvus `tsoutil.AddPhysicalDurationOnTs`).
fn add_ms(tt: u64, ms: i64) -> u64 {
    let ms = u64::try_from(ms).unwrap_or(0);
    tt.saturating_add(ms.saturating_mul(1 << cdc_protocol::ts::LOGICAL_BITS))
}

impl TxnHold {
    /// A hold of at most `max_bytes` of changes.
    pub(crate) fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            ..Default::default()
        }
    }

    /// Whether inputs are held.
    pub(crate) fn is_holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// Takes one input and its transaction role; returns the inputs ready to send, in order.
    /// `skipped` counts the bodies and commits dropped.
    pub(crate) fn push(
        &mut self,
        input: Input,
        txn: Option<Txn>,
        skipped: &mut dyn FnMut(SkipReason, &str),
    ) -> Vec<Input> {
        let input = match (txn, input) {
            (_, input @ Input::Failed(_)) => input,
            (None, Input::Tick { offset, ts }) => {
                self.expire(ts, skipped);
                Input::Tick { offset, ts }
            }
            (None, input) => input,
            (
                Some(Txn::Begin {
                    id,
                    keepalive_ms,
                    tt,
                }),
                input,
            ) => {
                self.open
                    .insert(id, (add_ms(tt, keepalive_ms), keepalive_ms));
                self.held.push((None, input));
                return Vec::new();
            }
            (Some(Txn::Body { id, keepalive_ms }), input) => match self.open.get_mut(&id) {
                Some(open) => {
                    if let Input::Change { ts, bytes, .. } = &input {
                        *open = (add_ms(*ts, keepalive_ms), keepalive_ms);
                        self.bytes += *bytes;
                    }
                    self.held.push((Some(id), input));
                    if self.bytes > self.max_bytes {
                        return vec![Input::Failed(EngineError::new(
                            COMPONENT,
                            ErrorKind::Decode,
                            format!(
                                "streaming transaction {id} holds more than {} MiB of \
                                 changes before its commit; raise `max_pending_mib`",
                                self.max_bytes >> 20
                            ),
                        ))];
                    }
                    return Vec::new();
                }
                None => {
                    skipped(SkipReason::TxnUnknown, "txn_body");
                    skip_of(input)
                }
            },
            (Some(Txn::Commit { id, tt }), input) => {
                if self.open.remove(&id).is_some() {
                    for (txn, held) in &mut self.held {
                        if *txn != Some(id) {
                            continue;
                        }
                        *txn = None;
                        if let (
                            Some(tt),
                            Input::Change {
                                ts,
                                bytes,
                                payload: Payload::Mq(msg),
                                ..
                            },
                        ) = (tt, held)
                        {
                            *ts = tt;
                            self.bytes = self.bytes.saturating_sub(*bytes);
                            decode::restamp(msg, tt);
                        }
                    }
                } else {
                    skipped(SkipReason::TxnUnknown, "CommitTxn");
                }
                input
            }
            (Some(Txn::Rollback { id }), input) => {
                self.open.remove(&id);
                self.abort(id, skipped);
                input
            }
        };
        if self.open.is_empty() {
            let mut out: Vec<Input> = std::mem::take(&mut self.held)
                .into_iter()
                .map(|(_, i)| i)
                .collect();
            self.bytes = 0;
            out.push(input);
            out
        } else {
            self.held.push((None, input));
            Vec::new()
        }
    }

    /// Drops the transactions expired at time tick `ts`.
    fn expire(&mut self, ts: u64, skipped: &mut dyn FnMut(SkipReason, &str)) {
        let expired: Vec<i64> = self
            .open
            .iter()
            .filter(|(_, (at, _))| *at <= ts)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.open.remove(&id);
            warn!(message = "Streaming transaction expired before its commit; its messages are dropped, as Milvus does.", txn_id = id);
            self.abort(id, skipped);
        }
    }

    /// Turns the held bodies of transaction `id` into skips.
    fn abort(&mut self, id: i64, skipped: &mut dyn FnMut(SkipReason, &str)) {
        for (txn, held) in &mut self.held {
            if *txn != Some(id) {
                continue;
            }
            *txn = None;
            if let Input::Change { bytes, .. } = held {
                self.bytes = self.bytes.saturating_sub(*bytes);
            }
            let input = std::mem::replace(held, Input::Skipped { offset: Vec::new() });
            *held = skip_of(input);
            skipped(SkipReason::TxnAborted, "txn_body");
        }
    }
}

/// The skip of a change (same offset).
fn skip_of(input: Input) -> Input {
    match input {
        Input::Change { offset, .. } | Input::Tick { offset, .. } | Input::Skipped { offset } => {
            Input::Skipped { offset }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests;
