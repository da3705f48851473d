//! Exactly-once bookkeeping: the sink's committed source offsets, written as one record per
//! epoch into the compacted topic `<transactional_id>.offsets` inside the same Kafka
//! transaction as the epoch's events, and read back (committed records only) on start.
//!
//! A transaction therefore commits events and offsets together or not at all, whatever happens
//! to the engine's own state store around it.

use std::collections::BTreeMap;
use std::time::Duration;

use cdc_state::{Offsets, SinkCheckpoint};
use rdkafka::error::KafkaError;
use serde::{Deserialize, Serialize};

use crate::client::read_to_end;
use crate::config::KafkaSinkConfig;

/// Value of an offsets record (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetsRecord {
    /// Pipeline that wrote it.
    pub pipeline: String,
    /// Sink id.
    pub sink: String,
    /// Checkpoint epoch.
    pub epoch: u64,
    /// Source channel → offset bytes in lowercase hex.
    pub offsets: BTreeMap<String, String>,
}

impl OffsetsRecord {
    /// The record of a checkpoint.
    pub fn new(pipeline: &str, sink: &str, epoch: u64, offsets: &Offsets) -> Self {
        Self {
            pipeline: pipeline.into(),
            sink: sink.into(),
            epoch,
            offsets: cdc_state::hex_offsets(offsets),
        }
    }

    /// Back to a checkpoint; `Err` names what is malformed.
    pub fn checkpoint(&self) -> Result<SinkCheckpoint, String> {
        cdc_state::checkpoint_from_hex(self.epoch, &self.offsets)
    }
}

/// The last committed record keyed `key` in `topic`, scanning backwards from the end in
/// growing windows (the topic is compacted but the broker may not have compacted it yet).
pub fn read_last(
    cfg: &KafkaSinkConfig,
    topic: &str,
    key: &str,
    timeout: Duration,
) -> Result<Option<(i64, OffsetsRecord)>, ReadError> {
    let mut window: i64 = 64;
    loop {
        let covered_all = std::cell::Cell::new(true);
        let from = |_: i32, low: i64, high: i64| {
            let start = (high - window).max(low);
            if start > low {
                covered_all.set(false);
            }
            start
        };
        let msgs = read_to_end(cfg, topic, Some(&from), timeout).map_err(ReadError::Kafka)?;
        let mut last: Option<(i64, OffsetsRecord)> = None;
        for m in &msgs {
            if m.key.as_deref() != Some(key.as_bytes()) {
                continue;
            }
            let Some(p) = &m.payload else { continue };
            let rec: OffsetsRecord = serde_json::from_slice(p).map_err(|e| {
                ReadError::Malformed(format!(
                    "record at offset {} of {topic} is not an offsets record: {e}",
                    m.offset
                ))
            })?;
            if last.as_ref().is_none_or(|(o, _)| m.offset > *o) {
                last = Some((m.offset, rec));
            }
        }
        if last.is_some() || covered_all.get() || window > (1 << 40) {
            return Ok(last);
        }
        // Nothing of ours near the end: look further back.
        window *= 8;
    }
}

/// Why the offsets could not be read back.
#[derive(Debug)]
pub enum ReadError {
    /// The brokers failed the read.
    Kafka(KafkaError),
    /// A record could not be decoded.
    Malformed(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip() {
        let mut o = Offsets::new();
        o.insert("dml_0".into(), 42u64.to_be_bytes().to_vec());
        o.insert("replicate".into(), vec![0xab]);
        let r = OffsetsRecord::new("p", "s", 7, &o);
        assert_eq!(r.offsets["replicate"], "ab");
        let back: OffsetsRecord = serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
        assert_eq!(
            back.checkpoint().unwrap(),
            SinkCheckpoint {
                epoch: 7,
                offsets: o
            }
        );
        let mut bad = r;
        bad.offsets.insert("x".into(), "zz".into());
        assert!(bad.checkpoint().unwrap_err().contains("channel x"));
    }
}
