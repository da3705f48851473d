//! The task that reads one message-queue channel: it decodes each message (so channels decode
//! in parallel), applies the decode-error policy, answers probes, and feeds the merger through
//! a bounded channel (backpressure when the source is behind).

use std::sync::Arc;

use cdc_engine::metrics::ComponentMetrics;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::config::OnDecodeError;
use crate::decode::{self, Decoded, Payload, RawMessage};
use crate::input::Input;
use crate::mq::{reached, MqClient, StartAt};

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
}

impl ReaderTask {
    /// Runs until the source goes away or the reader fails (the failure is sent in-band).
    pub async fn run(mut self) {
        let mut reader = match self.client.open(&self.channel, self.start.clone()).await {
            Ok(r) => r,
            Err(e) => {
                let _ = self.tx.send(Input::Failed(e)).await;
                return;
            }
        };
        let mut waiting: Vec<(u64, Option<Vec<u8>>)> = Vec::new();
        loop {
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
                msg = reader.recv() => {
                    let raw = match msg {
                        Ok(raw) => raw,
                        Err(e) => {
                            let _ = self.tx.send(Input::Failed(e)).await;
                            return;
                        }
                    };
                    let input = self.handle(raw);
                    let fatal = matches!(input, Input::Failed(_));
                    if self.tx.send(input).await.is_err() || fatal {
                        return;
                    }
                }
            }
            if !waiting.is_empty() && !self.answer(&mut waiting, reader.last_read()).await {
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

    /// Decodes one message into its input ([`Input::Failed`] stops the task).
    fn handle(&self, raw: RawMessage) -> Input {
        let bytes = raw.payload.len();
        match decode::decode(&self.channel, &raw) {
            Ok((decoded, label)) => {
                self.metrics.replicate_bytes(&self.channel, &label, bytes);
                match decoded {
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
                        let offset = decode::offset_label(&raw.offset);
                        if lossy {
                            warn!(
                                message = "Message type not replicated; skipped.",
                                channel = %self.channel, offset, msg_type = %label, code = msg_type,
                            );
                        } else {
                            debug!(
                                message = "Message type not replicated; skipped.",
                                channel = %self.channel, offset, msg_type = %label, code = msg_type,
                            );
                        }
                        Input::Skipped { offset: raw.offset }
                    }
                }
            }
            Err(e) => {
                self.metrics.error("decode");
                self.metrics
                    .replicate_bytes(&self.channel, "undecodable", bytes);
                match self.on_decode_error {
                    OnDecodeError::Skip => {
                        warn!(message = "Undecodable message skipped.", channel = %self.channel, error = %e);
                        Input::Skipped { offset: raw.offset }
                    }
                    OnDecodeError::Pause => Input::Failed(e),
                }
            }
        }
    }
}
