//! Message-queue readers: one [`MqReader`] per channel (topic), created by an [`MqClient`].
//!
//! Offsets given to the engine are order-preserving byte strings: for Kafka the partition
//! offset as 8 big-endian bytes; for Pulsar `ledgerId`, `entryId` and `batchIndex + 1` as
//! big-endian integers. Milvus's own message IDs (in start positions) are converted with
//! [`MqClient::offset_of_msg_id`].
//!
//! A start position is *resolved* before the source reports that it opened
//! ([`MqClient::resolve`]): `latest` and `earliest` become a concrete offset, so the start can
//! be checkpointed at once and does not depend on when a reader task gets to run. The empty
//! offset ([`BEFORE_FIRST`]) stands for "before the first message of the channel" (an empty
//! channel, or a topic that does not exist yet); it sorts before every real offset.
//!
//! Readers are used through [`resilient::ResilientReader`], which reopens them after a broker
//! outage.

use async_trait::async_trait;
use cdc_engine::{EngineError, Offset};

use crate::decode::RawMessage;

pub mod budget;
pub mod kafka;
pub mod pulsar;
pub mod resilient;

/// Where a reader starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartAt {
    /// After the last message present when the reader opens.
    Latest,
    /// At the oldest message the queue holds.
    Earliest,
    /// Just after this offset (resume from a checkpoint or a user position).
    After(Offset),
    /// At this offset, included (a collection's start position).
    At(Offset),
}

/// The offset just before the first message of a channel: resuming after it reads the
/// channel from its beginning.
pub const BEFORE_FIRST: &[u8] = &[];

/// A start position fixed to a place in the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Where the reader starts (never `Latest`/`Earliest` once resolved by a broker that can).
    pub start: StartAt,
    /// The offset up to which the channel counts as already consumed: a checkpoint of it
    /// resumes exactly at `start`. `None` when the broker cannot tell before reading.
    pub done: Option<Offset>,
}

/// Reads one channel in order.
///
/// A failure whose [`EngineError::retriable`] is set is transient (the broker is away for a
/// while): [`resilient::ResilientReader`] drops the reader and opens a new one after
/// [`MqReader::last_read`], with backoff. Any other failure stops the task.
#[async_trait]
pub trait MqReader: Send {
    /// The next message. Cancel-safe: dropping the future loses no message.
    async fn recv(&mut self) -> Result<RawMessage, EngineError>;

    /// Offset of the newest message the broker holds now (`None` when the channel is empty
    /// or does not exist yet).
    async fn last_available(&mut self) -> Result<Option<Offset>, EngineError>;

    /// Offset of the newest message consumed, or of the one just before the start position.
    fn last_read(&self) -> Option<Offset>;

    /// Stops (`true`) or restarts fetching from the broker while the source's memory budget
    /// is spent ([`budget`]); `recv` is not called while paused. The default does nothing
    /// (the client then buffers what its own settings allow).
    fn set_paused(&mut self, _paused: bool) -> Result<(), EngineError> {
        Ok(())
    }
}

/// Whether a reader whose last read offset is `last_read` has consumed `target`.
pub fn reached(last_read: Option<&Offset>, target: Option<&Offset>) -> bool {
    match (target, last_read) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(t), Some(r)) => r >= t,
    }
}

/// Opens readers on one message queue.
#[async_trait]
pub trait MqClient: Send + Sync {
    /// Names of the existing channels (topics).
    async fn list_channels(&self) -> Result<Vec<String>, EngineError>;

    /// A reader of `channel` positioned at `start`.
    async fn open(&self, channel: &str, start: StartAt) -> Result<Box<dyn MqReader>, EngineError>;

    /// The engine offset of a Milvus message ID (`MsgPosition.msgID`).
    fn offset_of_msg_id(&self, msg_id: &[u8]) -> Result<Offset, String>;

    /// What the readers depend on, for logs and metrics (`kafka`, `pulsar`).
    fn dependency(&self) -> &'static str;

    /// Fixes `start` to a concrete place in `channel` now (see the module documentation).
    /// The default keeps `latest`/`earliest` for the reader to resolve when it opens, and
    /// knows what is consumed only for [`StartAt::After`].
    async fn resolve(&self, _channel: &str, start: StartAt) -> Result<Resolved, EngineError> {
        let done = match &start {
            StartAt::After(o) => Some(o.clone()),
            _ => None,
        };
        Ok(Resolved { start, done })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reached_compares_offsets() {
        let o = |n: i64| n.to_be_bytes().to_vec();
        assert!(reached(None, None));
        assert!(reached(Some(&o(3)), None));
        assert!(!reached(None, Some(&o(0))));
        assert!(reached(Some(&o(5)), Some(&o(5))));
        assert!(!reached(Some(&o(4)), Some(&o(5))));
        assert!(
            reached(Some(&o(256)), Some(&o(255))),
            "big-endian keeps the order"
        );
    }
}
