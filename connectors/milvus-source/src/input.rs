//! What channel tasks (message-queue readers and the etcd watcher) send to the source, in
//! order, over their bounded channel.

use cdc_engine::{EngineError, Offset};

use crate::decode::Payload;
use crate::merger::PairKey;
use crate::meta::MetaChange;

/// One in-band input of a channel.
// Boxing the change would cost an allocation per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Input {
    /// A time tick.
    Tick {
        /// Its offset.
        offset: Offset,
        /// Its timestamp.
        ts: u64,
    },
    /// A change to order.
    Change {
        /// Its offset (for the etcd watch: timestamp and partition ID, big-endian).
        offset: Offset,
        /// Its timestamp.
        ts: u64,
        /// Serialized size, for memory accounting.
        bytes: usize,
        /// Upsert pairing key.
        pair: Option<PairKey>,
        /// The change.
        payload: Payload,
    },
    /// A message consumed without a change.
    Skipped {
        /// Its offset.
        offset: Offset,
    },
    /// Everything the broker held when probe `round` arrived has been sent before this.
    ProbeOk {
        /// The round.
        round: u64,
    },
    /// A collection was added or changed state (etcd watch).
    Collection(MetaChange),
    /// The task failed and stopped.
    Failed(EngineError),
}
