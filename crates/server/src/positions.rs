//! The `position` request: a task's committed source positions in milvus-cdc's shape.
//!
//! This implementation checkpoints per source channel (not per collection), one checkpoint per
//! sink; the reported position of a channel is the smallest one any sink committed, which is
//! where the task resumes. Kafka offsets are stored big-endian and reported as Milvus message
//! IDs (8-byte little-endian) inside a base64 `msg.MsgPosition`. The checkpoint keeps no
//! timestamp, so `time` and `tt` are 0; `op_positions` repeats `positions`, and
//! `target_positions` is empty (the API-mode sink has no target message IDs).

use cdc_state::{Offsets, StateStore};
use serde::Serialize;

use crate::request::Position;

/// Collection id milvus-cdc uses for the replicate channel.
pub const REPLICATE_COLLECTION_ID: i64 = -10;

/// Response data of `position`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PositionsResponse {
    /// Last committed position per source channel.
    pub positions: Vec<Position>,
    /// Same as `positions` (see the module documentation).
    pub op_positions: Vec<Position>,
    /// Always empty.
    pub target_positions: Vec<Position>,
}

/// Per channel, the smallest offset committed by any sink of `pipeline`.
pub fn committed(store: &dyn StateStore, pipeline: &str) -> Result<Offsets, cdc_state::StateError> {
    let mut out = Offsets::new();
    for sink in store.sinks(pipeline)? {
        for (ch, off) in store.load(pipeline, &sink)?.offsets {
            out.entry(ch)
                .and_modify(|cur| {
                    if off < *cur {
                        *cur = off.clone();
                    }
                })
                .or_insert(off);
        }
    }
    Ok(out)
}

/// Build the response from committed offsets; `replicate_channel` gets collection id -10.
pub fn response(offsets: &Offsets, replicate_channel: Option<&str>) -> PositionsResponse {
    let positions: Vec<Position> = offsets
        .iter()
        // The etcd pseudo-channel of partition changes is ours, not a Milvus MQ position.
        .filter(|(channel, _)| !channel.starts_with("etcd:"))
        .map(|(channel, offset)| {
            let msg_id: Vec<u8> = match <[u8; 8]>::try_from(offset.as_slice()) {
                Ok(be) => cdc_protocol::position::kafka_msg_id(i64::from_be_bytes(be)).to_vec(),
                Err(_) => offset.clone(),
            };
            let pos = cdc_protocol::msg::MsgPosition {
                channel_name: channel.clone(),
                msg_id: msg_id.into(),
                msg_group: String::new(),
                timestamp: 0,
            };
            Position {
                collection_id: if Some(channel.as_str()) == replicate_channel {
                    REPLICATE_COLLECTION_ID
                } else {
                    0
                },
                channel_name: channel.clone(),
                time: 0,
                tt: 0,
                msg_id: cdc_protocol::position::encode_position_b64(&pos),
            }
        })
        .collect();
    PositionsResponse {
        op_positions: positions.clone(),
        positions,
        target_positions: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smallest_offset_per_channel_as_milvus_positions() {
        let dir = tempfile::tempdir().unwrap();
        let store = cdc_state::SledStore::open(dir.path()).unwrap();
        let mut a = Offsets::new();
        a.insert("by-dev-rootcoord-dml_0".into(), 7i64.to_be_bytes().to_vec());
        a.insert("by-dev-replicate-msg".into(), 3i64.to_be_bytes().to_vec());
        let mut b = Offsets::new();
        b.insert("by-dev-rootcoord-dml_0".into(), 5i64.to_be_bytes().to_vec());
        store.commit("t", "a", 1, &a).unwrap();
        store.commit("t", "b", 1, &b).unwrap();
        let off = committed(&store, "t").unwrap();
        let r = response(&off, Some("by-dev-replicate-msg"));
        assert_eq!(r.positions.len(), 2);
        let dml = r
            .positions
            .iter()
            .find(|p| p.channel_name == "by-dev-rootcoord-dml_0")
            .unwrap();
        let pos = cdc_protocol::position::decode_position_b64(&dml.msg_id).unwrap();
        assert_eq!(pos.channel_name, "by-dev-rootcoord-dml_0");
        assert_eq!(
            cdc_protocol::position::kafka_offset(&pos.msg_id).unwrap(),
            5
        );
        assert_eq!(dml.collection_id, 0);
        let rep = r
            .positions
            .iter()
            .find(|p| p.channel_name == "by-dev-replicate-msg")
            .unwrap();
        assert_eq!(rep.collection_id, REPLICATE_COLLECTION_ID);
        assert_eq!(r.op_positions, r.positions);
        assert!(r.target_positions.is_empty());
        assert_eq!(
            response(&Offsets::new(), None),
            PositionsResponse::default()
        );
    }
}
