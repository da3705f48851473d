//! Turns one raw message-queue message into what the merger needs: a time tick, a change to
//! order, or a message consumed without a change.
//!
//! Runs in the channel's reader task, so protobuf decoding of different channels happens in
//! parallel. Milvus 2.5 message properties (`msg_type`, `timestamp`) are used when present;
//! otherwise the `MsgBase` at the head of the payload gives the type and timestamp.

use bytes::Bytes;
use cdc_engine::{EngineError, ErrorKind, Offset};
use cdc_protocol::common::MsgType;
use cdc_protocol::header::{self, MqMessage};
use cdc_protocol::msg::InsertDataVersion;

use crate::config::COMPONENT;
use crate::merger::PairKey;

/// One message as read from a channel.
#[derive(Debug, Clone)]
pub struct RawMessage {
    /// Engine offset (order-preserving bytes).
    pub offset: Offset,
    /// The serialized Milvus message.
    pub payload: Bytes,
    /// Kafka headers or Pulsar properties.
    pub properties: Vec<(String, Vec<u8>)>,
}

/// A decoded change waiting to be ordered.
// Boxing the decoded message would cost an allocation per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Payload {
    /// A message-queue message with an event.
    Mq(MqMessage),
    /// A partition reached state Created in etcd (Milvus 2.3 writes no CreatePartition
    /// message to the DML channels).
    PartitionCreated {
        /// Collection ID.
        collection_id: i64,
        /// Partition ID.
        partition_id: i64,
        /// Partition name.
        name: String,
    },
    /// Partitions of a partition-loaded collection were loaded (QueryCoord's etcd keys;
    /// Milvus 2.3 writes no LoadPartitions message). See [`crate::meta::load`].
    PartitionsLoaded {
        /// Collection ID.
        collection_id: i64,
        /// Partition names.
        partitions: Vec<String>,
        /// Replica number.
        replica_number: i32,
    },
    /// Partitions of a partition-loaded collection were released (no message either).
    PartitionsReleased {
        /// Collection ID.
        collection_id: i64,
        /// Partition names.
        partitions: Vec<String>,
        /// The collection's whole load info went away (ReleaseCollection, or a release of
        /// every loaded partition).
        whole: bool,
    },
}

impl Payload {
    /// Name of the change, for logs and errors (`"DropPartition"`, `"CreatePartition (etcd)"`).
    pub(crate) fn kind(&self) -> String {
        match self {
            Payload::Mq(m) => type_label(m.msg_type()),
            Payload::PartitionCreated { .. } => "CreatePartition (etcd)".into(),
            Payload::PartitionsLoaded { .. } => "LoadPartitions (etcd)".into(),
            Payload::PartitionsReleased { .. } => "ReleasePartitions (etcd)".into(),
        }
    }
}

/// What the reader makes of one message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Decoded {
    /// A TimeTick: advances the channel's watermark.
    Tick {
        /// Tick timestamp.
        ts: u64,
    },
    /// A change.
    Change {
        /// Its timestamp.
        ts: u64,
        /// Upsert pairing key (Insert and Delete).
        pair: Option<PairKey>,
        /// The message.
        msg: MqMessage,
    },
    /// A message type without an engine event (RBAC, aliases, ...): counted and skipped.
    NotReplicated {
        /// Raw `msg_type`.
        msg_type: i32,
        /// Whether skipping it loses user data or schema (logged at WARN rather than DEBUG).
        lossy: bool,
    },
}

/// Name of a message type for logs and metrics (`"Insert"`, or the number when unknown).
pub(crate) fn type_label(msg_type: i32) -> String {
    header::msg_type_name(msg_type).map_or_else(|| msg_type.to_string(), str::to_string)
}

fn property<'a>(raw: &'a RawMessage, key: &str) -> Option<&'a [u8]> {
    raw.properties
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_slice())
}

/// A decode error naming the channel, offset and type.
pub(crate) fn decode_error(
    channel: &str,
    offset: i64,
    msg_type: &str,
    what: String,
) -> EngineError {
    EngineError::new(
        COMPONENT,
        ErrorKind::Decode,
        format!(
            "channel {channel} offset {offset}: cannot decode a {msg_type} message: {what}. \
             Set `on_decode_error: skip` to skip such messages, or check that the source \
             Milvus version is supported (2.3.2 - 2.5)"
        ),
    )
}

/// Display form of an engine offset in errors (the Kafka offset when it is 8 bytes).
pub(crate) fn offset_label(offset: &[u8]) -> i64 {
    <[u8; 8]>::try_from(offset).map_or(-1, i64::from_be_bytes)
}

/// Decodes one message. Returns the decoded message and the label of its type.
///
/// # Errors
/// A [`ErrorKind::Decode`] error naming the channel, offset and message type.
pub(crate) fn decode(channel: &str, raw: &RawMessage) -> Result<(Decoded, String), EngineError> {
    let at = offset_label(&raw.offset);
    let hinted = property(raw, "msg_type")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(header::msg_type_from_name);
    let msg_type = match hinted {
        Some(t) => t,
        None => header::peek_msg_type(&raw.payload)
            .map_err(|e| decode_error(channel, at, "message-queue", e.to_string()))?,
    };
    let label = type_label(msg_type);
    let msg = header::decode_as(msg_type, raw.payload.clone())
        .map_err(|e| decode_error(channel, at, &label, e.to_string()))?;
    let ts_of = |msg: &MqMessage| -> Result<u64, EngineError> {
        match msg.timestamp() {
            Some(ts) if ts > 0 => Ok(ts),
            // The Insert half of an upsert has MsgBase.timestamp 0 (Milvus 2.3): its rows
            // carry the upsert's timestamp, the one of the Delete half.
            _ if row_ts(msg) > 0 => Ok(row_ts(msg)),
            _ => property(raw, "timestamp")
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| decode_error(channel, at, &label, "it has no timestamp".into())),
        }
    };
    let ts = match &msg {
        MqMessage::Other { .. }
        | MqMessage::Import(_)
        | MqMessage::AlterDatabase(_)
        | MqMessage::Replicate(_)
        | MqMessage::DataNodeTt(_) => 0,
        m => ts_of(m)?,
    };
    let decoded = match msg {
        MqMessage::TimeTick(_) => Decoded::Tick { ts },
        MqMessage::Insert(ref m) => {
            if m.version == InsertDataVersion::RowBased as i32 && !m.row_data.is_empty() {
                return Err(decode_error(
                    channel,
                    at,
                    &label,
                    "row-based insert data (written by Milvus before 2.2) is not supported"
                        .to_string(),
                ));
            }
            let pair = Some(PairKey {
                collection_id: m.collection_id,
                shard: m.shard_name.clone(),
            });
            Decoded::Change { ts, pair, msg }
        }
        MqMessage::Delete(ref m) => {
            let pair = Some(PairKey {
                collection_id: m.collection_id,
                shard: m.shard_name.clone(),
            });
            Decoded::Change { ts, pair, msg }
        }
        MqMessage::CreateCollection(_)
        | MqMessage::DropCollection(_)
        | MqMessage::CreatePartition(_)
        | MqMessage::DropPartition(_)
        | MqMessage::CreateDatabase(_)
        | MqMessage::DropDatabase(_)
        | MqMessage::Flush(_)
        | MqMessage::CreateIndex(_)
        | MqMessage::DropIndex(_)
        | MqMessage::AlterIndex(_)
        | MqMessage::LoadCollection(_)
        | MqMessage::ReleaseCollection(_)
        | MqMessage::LoadPartitions(_)
        | MqMessage::ReleasePartitions(_) => Decoded::Change {
            ts,
            pair: None,
            msg,
        },
        MqMessage::Import(_) | MqMessage::AlterDatabase(_) => Decoded::NotReplicated {
            msg_type,
            lossy: true,
        },
        MqMessage::Replicate(_) | MqMessage::DataNodeTt(_) => Decoded::NotReplicated {
            msg_type,
            lossy: false,
        },
        MqMessage::Other { msg_type } => Decoded::NotReplicated {
            msg_type,
            lossy: is_lossy_other(msg_type),
        },
    };
    Ok((decoded, label))
}

/// The largest per-row timestamp of an Insert or Delete (0 for other messages).
fn row_ts(msg: &MqMessage) -> u64 {
    let rows = match msg {
        MqMessage::Insert(m) => &m.timestamps,
        MqMessage::Delete(m) => &m.timestamps,
        _ => return 0,
    };
    rows.iter().copied().max().unwrap_or(0)
}

/// Types the engine has no event for whose loss changes the target's data or schema.
fn is_lossy_other(msg_type: i32) -> bool {
    [
        MsgType::AlterCollection,
        MsgType::RenameCollection,
        MsgType::Upsert,
    ]
    .iter()
    .any(|t| *t as i32 == msg_type)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdc_protocol::common::MsgBase;
    use cdc_protocol::msg;
    use prost::Message as _;

    fn raw(payload: Vec<u8>) -> RawMessage {
        RawMessage {
            offset: 7i64.to_be_bytes().to_vec(),
            payload: Bytes::from(payload),
            properties: Vec::new(),
        }
    }

    fn base(t: MsgType, ts: u64) -> Option<MsgBase> {
        Some(MsgBase {
            msg_type: t as i32,
            timestamp: ts,
            ..Default::default()
        })
    }

    #[test]
    fn time_tick() {
        let p = msg::TimeTickMsg {
            base: base(MsgType::TimeTick, 42),
        };
        let (d, label) = decode("ch", &raw(p.encode_to_vec())).unwrap();
        assert!(matches!(d, Decoded::Tick { ts: 42 }));
        assert_eq!(label, "TimeTick");
    }

    #[test]
    fn insert_gets_a_pair_key() {
        let p = msg::InsertRequest {
            base: base(MsgType::Insert, 9),
            shard_name: "dml_0_1v0".into(),
            collection_id: 1,
            version: InsertDataVersion::ColumnBased as i32,
            ..Default::default()
        };
        let (d, _) = decode("ch", &raw(p.encode_to_vec())).unwrap();
        match d {
            Decoded::Change { ts, pair, .. } => {
                assert_eq!(ts, 9);
                assert_eq!(pair.unwrap().shard, "dml_0_1v0");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_upsert_insert_without_base_timestamp_uses_its_row_timestamps() {
        let p = msg::InsertRequest {
            base: base(MsgType::Insert, 0),
            timestamps: vec![77, 77],
            version: InsertDataVersion::ColumnBased as i32,
            ..Default::default()
        };
        let (d, _) = decode("ch", &raw(p.encode_to_vec())).unwrap();
        assert!(matches!(d, Decoded::Change { ts: 77, .. }), "{d:?}");
    }

    #[test]
    fn properties_of_2_5_are_used_when_present() {
        // A payload whose MsgBase has no timestamp: the `timestamp` property gives it.
        let p = msg::TimeTickMsg {
            base: base(MsgType::TimeTick, 0),
        };
        let mut r = raw(p.encode_to_vec());
        r.properties.push(("msg_type".into(), b"TimeTick".to_vec()));
        r.properties.push(("timestamp".into(), b"1234".to_vec()));
        let (d, _) = decode("ch", &r).unwrap();
        assert!(matches!(d, Decoded::Tick { ts: 1234 }));
    }

    #[test]
    fn garbage_is_a_decode_error_naming_channel_and_offset() {
        let err = decode("by-dev-rootcoord-dml_0", &raw(vec![0xff, 0xff, 0xff])).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Decode);
        assert!(err.message.contains("by-dev-rootcoord-dml_0"), "{err}");
        assert!(err.message.contains("offset 7"), "{err}");
    }

    #[test]
    fn a_wrong_body_names_the_type() {
        // Insert header, then a field 13 that is not a FieldData.
        let mut bytes = msg::TimeTickMsg {
            base: base(MsgType::Insert, 1),
        }
        .encode_to_vec();
        // Field 13 (fields_data, a message) written as a varint: the header skips it, the
        // InsertRequest decoder rejects it.
        bytes.extend_from_slice(&[0x68, 0x01]);
        let err = decode("ch", &raw(bytes)).unwrap_err();
        assert!(err.message.contains("Insert"), "{err}");
    }

    #[test]
    fn unsupported_types_are_not_errors() {
        let p = msg::TimeTickMsg {
            base: base(MsgType::CreateCredential, 3),
        };
        let (d, label) = decode("ch", &raw(p.encode_to_vec())).unwrap();
        assert!(matches!(d, Decoded::NotReplicated { lossy: false, .. }));
        assert_eq!(label, "CreateCredential");
    }
}
