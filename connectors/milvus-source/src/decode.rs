//! Turns one raw message-queue message into what the merger needs: a time tick, a change to
//! order, or a message consumed without a change.
//!
//! Runs in the channel's reader task, so protobuf decoding of different channels happens in
//! parallel. Two formats:
//!
//! * **msgstream** (Milvus 2.3.2 - 2.5): Milvus 2.5 message properties (`msg_type`,
//!   `timestamp`) are used when present; otherwise the `MsgBase` at the head of the payload
//!   gives the type and timestamp.
//! * **streaming service** (Milvus 2.5 with streaming enabled), recognised by a non-empty `_v`
//!   property as Milvus' `CheckIfMessageFromStreaming` ([`cdc_protocol::streaming`]): the type
//!   is `_t`, the timestamp `_tt`, the shard `_vc`. TimeTick, Insert, Delete,
//!   Create/DropCollection, Create/DropPartition and Import bodies are decoded like msgstream
//!   payloads and re-stamped with `_tt` (rows too, as Milvus' `adaptor/message.go` does);
//!   Flush, ManualFlush, CreateSegment and the transaction markers are control messages,
//!   consumed without a change (`Decoded::Control`); other streaming types (2.6 DDL with
//!   their own header/body protos) are not replicated. Transaction roles (`Txn`) are
//!   reported to the reader, which holds a transaction's bodies until its commit
//!   (the `reader` module).
//!
//! With `skip_replicated`, changes that the source Milvus received by replication (a
//! non-empty `replicate_id` property, `MsgBase.replicateInfo`, or a streaming `_rh` header)
//! become `Decoded::Replicated`. Time ticks are never skipped.

use bytes::Bytes;
use cdc_engine::{EngineError, ErrorKind, Offset};
use cdc_protocol::common::MsgType;
use cdc_protocol::header::{self, MqMessage};
use cdc_protocol::msg::InsertDataVersion;
use cdc_protocol::streaming::{self, Kind, MessageType};

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
    /// An alias was created, altered or dropped in etcd (see [`crate::meta::alias`]).
    Alias(crate::meta::alias::AliasChange),
    /// An access-control change in etcd (see [`crate::meta::rbac`]).
    Rbac(cdc_engine::rbac::RbacOp),
    /// A collection's properties changed in etcd (see [`crate::meta::props`]).
    Properties(crate::meta::props::PropsChange),
}

impl Payload {
    /// Name of the change, for logs and errors (`"DropPartition"`, `"CreatePartition (etcd)"`).
    pub(crate) fn kind(&self) -> String {
        match self {
            Payload::Mq(m) => type_label(m.msg_type()),
            Payload::PartitionCreated { .. } => "CreatePartition (etcd)".into(),
            Payload::PartitionsLoaded { .. } => "LoadPartitions (etcd)".into(),
            Payload::PartitionsReleased { .. } => "ReleasePartitions (etcd)".into(),
            Payload::Alias(a) => format!("{:?}Alias (etcd)", a.op),
            Payload::Rbac(r) => format!("{} (etcd)", r.kind()),
            Payload::Properties(_) => "AlterCollection (etcd)".into(),
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
        /// Raw `msg_type` (for streaming messages: the raw `_t`).
        msg_type: i32,
        /// Whether skipping it loses user data or schema (logged at WARN rather than DEBUG).
        lossy: bool,
    },
    /// A streaming control message (Flush, ManualFlush, CreateSegment, Begin/Commit/
    /// RollbackTxn): no data, counted and skipped.
    Control,
    /// A change the source Milvus received by replication, skipped (`skip_replicated`).
    Replicated,
}

/// The transaction role of a streaming message (`_tx` property).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Txn {
    /// BeginTxn at time tick `tt`.
    Begin {
        /// Transaction ID.
        id: i64,
        /// Keepalive, milliseconds.
        keepalive_ms: i64,
        /// Its time tick.
        tt: u64,
    },
    /// A message of the transaction.
    Body {
        /// Transaction ID.
        id: i64,
        /// Keepalive, milliseconds.
        keepalive_ms: i64,
    },
    /// CommitTxn: the bodies take its time tick.
    Commit {
        /// Transaction ID.
        id: i64,
        /// Its time tick (`None` when absent).
        tt: Option<u64>,
    },
    /// RollbackTxn: the bodies are dropped.
    Rollback {
        /// Transaction ID.
        id: i64,
    },
}

/// Options of [`decode_with`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct DecodeOptions {
    /// Skip changes received by replication.
    pub skip_replicated: bool,
}

/// One decoded message, with what the reader needs besides the change.
#[derive(Debug)]
pub(crate) struct DecodedMessage {
    /// The message.
    pub decoded: Decoded,
    /// Name of its type for logs and metrics.
    pub label: String,
    /// Whether it came in the streaming-service format.
    pub streaming: bool,
    /// Its transaction role (streaming only).
    pub txn: Option<Txn>,
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

/// Decodes one message with the default options. Returns the decoded message and the label of
/// its type.
///
/// # Errors
/// As [`decode_with`].
#[cfg(test)]
pub(crate) fn decode(channel: &str, raw: &RawMessage) -> Result<(Decoded, String), EngineError> {
    decode_with(channel, raw, DecodeOptions::default()).map(|d| (d.decoded, d.label))
}

/// Decodes one message.
///
/// # Errors
/// A [`ErrorKind::Decode`] error naming the channel, offset and message type.
pub(crate) fn decode_with(
    channel: &str,
    raw: &RawMessage,
    opts: DecodeOptions,
) -> Result<DecodedMessage, EngineError> {
    let at = offset_label(&raw.offset);
    if streaming::is_from_streaming(&raw.properties) {
        return decode_streaming(channel, raw, at, opts);
    }
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
    let replicated =
        property(raw, "replicate_id").is_some_and(|v| !v.is_empty()) || msg.is_replicated();
    let decoded = classify(channel, at, &label, msg_type, ts, msg)?;
    Ok(DecodedMessage {
        decoded: skip_replicated(decoded, replicated, opts),
        label,
        streaming: false,
        txn: None,
    })
}

fn skip_replicated(decoded: Decoded, replicated: bool, opts: DecodeOptions) -> Decoded {
    if opts.skip_replicated && replicated && matches!(decoded, Decoded::Change { .. }) {
        Decoded::Replicated
    } else {
        decoded
    }
}

/// A message in the streaming-service format (see the module documentation).
fn decode_streaming(
    channel: &str,
    raw: &RawMessage,
    at: i64,
    opts: DecodeOptions,
) -> Result<DecodedMessage, EngineError> {
    let props = streaming::parse(&raw.properties)
        .map_err(|e| decode_error(channel, at, "streaming", e.to_string()))?;
    let label = props.type_name();
    let ctx = props
        .txn
        .as_ref()
        .map(|c| (c.txn_id, c.keepalive_milliseconds));
    let done = |decoded: Decoded, txn: Option<Txn>| DecodedMessage {
        decoded,
        label: label.clone(),
        streaming: true,
        txn,
    };
    let Some(t) = props.known_type() else {
        return Ok(done(
            Decoded::NotReplicated {
                msg_type: props.message_type,
                lossy: true,
            },
            None,
        ));
    };
    match t.kind() {
        Kind::Control => {
            let txn = ctx.and_then(|(id, keepalive_ms)| match t {
                MessageType::BeginTxn => Some(Txn::Begin {
                    id,
                    keepalive_ms,
                    tt: props.time_tick.unwrap_or(0),
                }),
                MessageType::CommitTxn => Some(Txn::Commit {
                    id,
                    tt: props.time_tick,
                }),
                MessageType::RollbackTxn => Some(Txn::Rollback { id }),
                _ => None,
            });
            Ok(done(Decoded::Control, txn))
        }
        Kind::Other => Ok(done(
            Decoded::NotReplicated {
                msg_type: props.message_type,
                lossy: !matches!(t, MessageType::Txn | MessageType::Unknown),
            },
            None,
        )),
        Kind::Body(msg_type) => {
            let mut msg = header::decode_as(msg_type as i32, raw.payload.clone())
                .map_err(|e| decode_error(channel, at, &label, e.to_string()))?;
            let ts = props.time_tick.ok_or_else(|| {
                decode_error(
                    channel,
                    at,
                    &label,
                    "the streaming message has no `_tt` time tick".into(),
                )
            })?;
            restamp(&mut msg, ts);
            if let Some(vc) = &props.vchannel {
                match &mut msg {
                    MqMessage::Insert(m) => m.shard_name.clone_from(vc),
                    MqMessage::Delete(m) => m.shard_name.clone_from(vc),
                    _ => {}
                }
            }
            let replicated = props.replicated || msg.is_replicated();
            let decoded = classify(channel, at, &label, msg_type as i32, ts, msg)?;
            let txn = ctx.map(|(id, keepalive_ms)| Txn::Body { id, keepalive_ms });
            Ok(done(skip_replicated(decoded, replicated, opts), txn))
        }
    }
}

/// Gives a message timestamp `ts`: `MsgBase.timestamp` and, for Insert and Delete, every
/// row's (as Milvus' `adaptor/message.go` does for streaming messages and a transaction's
/// commit).
pub(crate) fn restamp(msg: &mut MqMessage, ts: u64) {
    if let Some(b) = msg.base_mut() {
        b.timestamp = ts;
    }
    match msg {
        MqMessage::Insert(m) => m.timestamps = vec![ts; m.num_rows as usize],
        MqMessage::Delete(m) => m.timestamps.iter_mut().for_each(|t| *t = ts),
        _ => {}
    }
}

/// What a decoded message becomes.
fn classify(
    channel: &str,
    at: i64,
    label: &str,
    msg_type: i32,
    ts: u64,
    msg: MqMessage,
) -> Result<Decoded, EngineError> {
    Ok(match msg {
        MqMessage::TimeTick(_) => Decoded::Tick { ts },
        MqMessage::Insert(ref m) => {
            if m.version == InsertDataVersion::RowBased as i32 && !m.row_data.is_empty() {
                return Err(decode_error(
                    channel,
                    at,
                    label,
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
        | MqMessage::ReleasePartitions(_)
        | MqMessage::CreateAlias(_)
        | MqMessage::DropAlias(_)
        | MqMessage::AlterAlias(_) => Decoded::Change {
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
    })
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

    fn streaming_raw(t: i32, tick: &str, payload: Vec<u8>) -> RawMessage {
        // pkg/streaming/util/message/properties.go keys; `_tt` is base 36 (encoder.go).
        let mut r = raw(payload);
        r.properties = vec![
            ("_v".into(), b"1".to_vec()),
            ("_t".into(), t.to_string().into_bytes()),
            ("_tt".into(), tick.as_bytes().to_vec()),
            ("_vc".into(), b"by-dev-rootcoord-dml_3_10v1".to_vec()),
        ];
        r
    }

    #[test]
    fn streaming_insert_takes_the_time_tick_and_vchannel_of_its_properties() {
        // pkg/streaming/util/message/adaptor/message.go: recoverInsertMsgFromHeader sets every
        // row timestamp and Base.Timestamp to the time tick and ShardName to the vchannel.
        let tick = (1_700_000_000_000u64 << 18) | 3;
        let p = msg::InsertRequest {
            base: base(MsgType::Insert, 1),
            collection_id: 10,
            num_rows: 2,
            timestamps: vec![1, 1],
            version: InsertDataVersion::ColumnBased as i32,
            ..Default::default()
        };
        let r = streaming_raw(
            2,
            &cdc_protocol::streaming::encode_base36(tick),
            p.encode_to_vec(),
        );
        let d = decode_with("ch", &r, DecodeOptions::default()).unwrap();
        assert!(d.streaming);
        assert_eq!(d.label, "Insert");
        match d.decoded {
            Decoded::Change {
                ts,
                pair,
                msg: MqMessage::Insert(m),
            } => {
                assert_eq!(ts, tick);
                assert_eq!(m.timestamps, vec![tick, tick]);
                assert_eq!(m.base.unwrap().timestamp, tick);
                assert_eq!(m.shard_name, "by-dev-rootcoord-dml_3_10v1");
                assert_eq!(pair.unwrap().shard, "by-dev-rootcoord-dml_3_10v1");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn streaming_time_ticks_and_ddl_bodies_are_decoded() {
        // TimeTick (1) and CreateCollection (5) keep their msg.proto payloads (messages.proto:
        // "Some message payload is defined at msg.proto").
        let tt = msg::TimeTickMsg {
            base: base(MsgType::TimeTick, 0),
        };
        let (d, _) = decode("ch", &streaming_raw(1, "zz", tt.encode_to_vec())).unwrap();
        assert!(
            matches!(d, Decoded::Tick { ts } if ts == 36 * 36 - 1),
            "{d:?}"
        );
        let cc = msg::CreateCollectionRequest {
            base: base(MsgType::CreateCollection, 0),
            collection_id: 10,
            ..Default::default()
        };
        let (d, label) = decode("ch", &streaming_raw(5, "100", cc.encode_to_vec())).unwrap();
        assert!(
            matches!(
                d,
                Decoded::Change {
                    ts: 1296,
                    msg: MqMessage::CreateCollection(_),
                    ..
                }
            ),
            "{d:?}"
        );
        assert_eq!(label, "CreateCollection");
    }

    #[test]
    fn empty_streaming_control_messages_are_recognised() {
        // Flush 4, ManualFlush 9, CreateSegment 10, BeginTxn 900, CommitTxn 901,
        // RollbackTxn 902: empty bodies (pkg/proto/messages.proto), which the msgstream
        // decoder rejects as having no MsgBase.
        assert!(decode("ch", &raw(Vec::new())).is_err());
        for t in [4, 9, 10, 900, 901, 902] {
            let d = decode_with(
                "ch",
                &streaming_raw(t, "1", Vec::new()),
                DecodeOptions::default(),
            )
            .unwrap();
            assert!(matches!(d.decoded, Decoded::Control), "{t}: {d:?}");
            assert!(d.streaming);
            assert!(d.txn.is_none(), "no `_tx`, no role");
        }
    }

    #[test]
    fn bad_streaming_properties_are_decode_errors() {
        let err = decode("ch", &streaming_raw(2, "not base36!", Vec::new())).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Decode);
        assert!(err.message.contains("_tt"), "{err}");
        // A data message without a time tick.
        let mut r = streaming_raw(2, "1", Vec::new());
        r.properties.retain(|(k, _)| k != "_tt");
        assert!(decode("ch", &r).unwrap_err().message.contains("_tt"));
    }

    #[test]
    fn replicated_changes_are_skipped_only_when_asked() {
        use cdc_protocol::common::ReplicateInfo;
        use cdc_protocol::milvus::CreateIndexRequest;
        let skip = DecodeOptions {
            skip_replicated: true,
        };
        // internal/proxy/util.go SendReplicateMessagePack publishes the request with its
        // MsgBase, whose replicateInfo.isReplicate a replicator set.
        let req = CreateIndexRequest {
            base: Some(MsgBase {
                msg_type: MsgType::CreateIndex as i32,
                timestamp: 5,
                replicate_info: Some(ReplicateInfo {
                    is_replicate: true,
                    msg_timestamp: 5,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let r = raw(req.encode_to_vec());
        let d = decode_with("ch", &r, DecodeOptions::default()).unwrap();
        assert!(matches!(d.decoded, Decoded::Change { .. }));
        let d = decode_with("ch", &r, skip).unwrap();
        assert!(matches!(d.decoded, Decoded::Replicated));
        // Time ticks are never skipped, even with a `replicate_id` property.
        let mut r = raw(msg::TimeTickMsg {
            base: base(MsgType::TimeTick, 9),
        }
        .encode_to_vec());
        r.properties.push(("replicate_id".into(), b"a".to_vec()));
        let d = decode_with("ch", &r, skip).unwrap();
        assert!(matches!(d.decoded, Decoded::Tick { ts: 9 }));
        // An empty `replicate_id` (GetPorperties always sets the key) is no mark.
        let mut r = raw(msg::InsertRequest {
            base: base(MsgType::Insert, 9),
            version: InsertDataVersion::ColumnBased as i32,
            ..Default::default()
        }
        .encode_to_vec());
        r.properties.push(("replicate_id".into(), Vec::new()));
        let d = decode_with("ch", &r, skip).unwrap();
        assert!(matches!(d.decoded, Decoded::Change { .. }));
        // Streaming (2.6) replicate header.
        let mut r = streaming_raw(
            2,
            "1",
            msg::InsertRequest {
                base: base(MsgType::Insert, 0),
                version: InsertDataVersion::ColumnBased as i32,
                ..Default::default()
            }
            .encode_to_vec(),
        );
        r.properties.push(("_rh".into(), b"x".to_vec()));
        let d = decode_with("ch", &r, skip).unwrap();
        assert!(matches!(d.decoded, Decoded::Replicated));
    }
}
