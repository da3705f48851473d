//! Messages of the Milvus streaming service (Milvus 2.5 with streaming enabled, the 2.6 WAL)
//! as they appear on the message queue.
//!
//! A streaming-node message is one message-queue message whose properties carry reserved
//! short keys (Milvus `pkg/streaming/util/message/properties.go`): `_v` version, `_t` type,
//! `_tt` time tick, `_vc` vchannel, `_tx` transaction context, `_h` specialized header, `_lc`
//! last confirmed message ID, ... Milvus recognises them by a non-empty `_v`
//! (`CheckIfMessageFromStreaming`); [`is_from_streaming`] does the same.
//!
//! * `_t` is the **decimal** value of `messages.MessageType` ([`MessageType`],
//!   `pkg/proto/messages.proto`), not a `common.MsgType`.
//! * `_tt` is the hybrid time tick in **base 36** (`encoder.go: EncodeUint64`); it is the
//!   message's timestamp: the payload's `MsgBase.timestamp` and row timestamps are the ones the
//!   proxy wrote before the streaming node assigned the tick (`adaptor/message.go`
//!   overwrites them with `_tt`, and the shard name with `_vc`).
//! * `_tx` is standard base64 of a serialized `messages.TxnContext` ([`TxnContext`]).
//! * Payloads: TimeTick, Insert, Delete, Create/DropCollection, Create/DropPartition and Import
//!   keep the msgstream payload of `msg.proto` (with its `MsgBase`), decoded by
//!   [`crate::header`] as the [`MessageType::legacy_msg_type`]; Flush, ManualFlush,
//!   CreateSegment and Begin/Commit/RollbackTxn have empty bodies
//!   (`FlushMessageBody {}`, ...): they are [`Kind::Control`]. The other types (2.6 DDL with
//!   dedicated header and body protos) are [`Kind::Other`].
//! * A transaction is not one message on the queue: the streaming node writes a BeginTxn, the
//!   body messages (each with the same `_tx`), then a CommitTxn or a RollbackTxn. Milvus'
//!   consumer (`internal/streamingnode/server/wal/utility/txn_buffer.go`) holds the bodies
//!   until the commit and gives them the commit's time tick, drops them on rollback, and drops
//!   a transaction whose keepalive expired (last time tick of the transaction plus
//!   `keepalive_milliseconds`, `ImmutableTxnMessageBuilder.ExpiredTimeTick`). `Txn` (999) is
//!   only built on the consumer side and never appears on the queue.

use base64::Engine as _;
use prost::Message as _;

use crate::common::MsgType;

/// Reserved property keys.
pub mod keys {
    /// Message version (`"1"`, `"2"`, ...): present and non-empty on streaming messages.
    pub const VERSION: &str = "_v";
    /// Message type, decimal `messages.MessageType`.
    pub const TYPE: &str = "_t";
    /// Time tick, base 36.
    pub const TIME_TICK: &str = "_tt";
    /// Virtual channel.
    pub const VCHANNEL: &str = "_vc";
    /// Transaction context, base64 `messages.TxnContext`.
    pub const TXN: &str = "_tx";
    /// Specialized header, base64 of the type's header proto.
    pub const HEADER: &str = "_h";
    /// Replicate header (2.6): the message was written by replication from another cluster.
    pub const REPLICATE_HEADER: &str = "_rh";
}

macro_rules! message_types {
    ($($name:ident = $v:literal,)*) => {
        /// `messages.MessageType` (`pkg/proto/messages.proto`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[allow(missing_docs)]
        pub enum MessageType {
            $($name = $v,)*
        }

        impl MessageType {
            /// The type of a raw `_t` value (`None` when unknown here).
            #[must_use]
            pub fn from_i32(v: i32) -> Option<Self> {
                match v {
                    $($v => Some(Self::$name),)*
                    _ => None,
                }
            }

            /// The Milvus name (`"Insert"`, `"BeginTxn"`, ...).
            #[must_use]
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$name => stringify!($name),)*
                }
            }
        }
    };
}

message_types! {
    Unknown = 0,
    TimeTick = 1,
    Insert = 2,
    Delete = 3,
    Flush = 4,
    CreateCollection = 5,
    DropCollection = 6,
    CreatePartition = 7,
    DropPartition = 8,
    ManualFlush = 9,
    CreateSegment = 10,
    Import = 11,
    SchemaChange = 12,
    AlterCollection = 13,
    AlterLoadConfig = 14,
    DropLoadConfig = 15,
    CreateDatabase = 16,
    AlterDatabase = 17,
    DropDatabase = 18,
    AlterAlias = 19,
    DropAlias = 20,
    RestoreRBAC = 21,
    AlterUser = 22,
    DropUser = 23,
    AlterRole = 24,
    DropRole = 25,
    AlterUserRole = 26,
    DropUserRole = 27,
    AlterPrivilege = 28,
    DropPrivilege = 29,
    AlterPrivilegeGroup = 30,
    DropPrivilegeGroup = 31,
    AlterResourceGroup = 32,
    DropResourceGroup = 33,
    CreateIndex = 34,
    AlterIndex = 35,
    DropIndex = 36,
    FlushAll = 37,
    TruncateCollection = 38,
    AlterWAL = 700,
    AlterReplicateConfig = 800,
    BeginTxn = 900,
    CommitTxn = 901,
    RollbackTxn = 902,
    Txn = 999,
}

/// What a streaming message type carries, for a reader of the message queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The payload is the msgstream message of this `common.MsgType` (`MsgBase` first).
    Body(MsgType),
    /// No data: Flush, ManualFlush, CreateSegment (segment management of the streaming node)
    /// and BeginTxn / CommitTxn / RollbackTxn (transaction markers).
    Control,
    /// A type with its own header and body protos (2.6 DDL, ...), or unknown here.
    Other,
}

impl MessageType {
    /// The msgstream type whose payload this streaming type keeps (Milvus
    /// `adaptor/message_type.go`, the types decoded by `fromMessageToTsMsgV1`).
    #[must_use]
    pub fn legacy_msg_type(self) -> Option<MsgType> {
        Some(match self {
            Self::TimeTick => MsgType::TimeTick,
            Self::Insert => MsgType::Insert,
            Self::Delete => MsgType::Delete,
            Self::CreateCollection => MsgType::CreateCollection,
            Self::DropCollection => MsgType::DropCollection,
            Self::CreatePartition => MsgType::CreatePartition,
            Self::DropPartition => MsgType::DropPartition,
            Self::Import => MsgType::Import,
            _ => return None,
        })
    }

    /// What the type carries.
    #[must_use]
    pub fn kind(self) -> Kind {
        if let Some(t) = self.legacy_msg_type() {
            return Kind::Body(t);
        }
        match self {
            Self::Flush
            | Self::ManualFlush
            | Self::CreateSegment
            | Self::BeginTxn
            | Self::CommitTxn
            | Self::RollbackTxn => Kind::Control,
            _ => Kind::Other,
        }
    }
}

/// `messages.TxnContext` (Milvus 2.5 `pkg/proto/messages.proto`).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct TxnContext {
    /// Transaction ID, the same on every message of the transaction.
    #[prost(int64, tag = "1")]
    pub txn_id: i64,
    /// Keepalive: the transaction expires this long after its last message's time tick.
    #[prost(int64, tag = "2")]
    pub keepalive_milliseconds: i64,
}

/// The reserved properties of one streaming message.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamingProps {
    /// `_v`.
    pub version: i64,
    /// `_t`, raw (see [`MessageType::from_i32`]).
    pub message_type: i32,
    /// `_tt`, when present.
    pub time_tick: Option<u64>,
    /// `_vc`, when present and non-empty.
    pub vchannel: Option<String>,
    /// `_tx`, when present.
    pub txn: Option<TxnContext>,
    /// Whether `_rh` is present (the message came by replication, 2.6).
    pub replicated: bool,
}

impl StreamingProps {
    /// The message type, when known here.
    #[must_use]
    pub fn known_type(&self) -> Option<MessageType> {
        MessageType::from_i32(self.message_type)
    }

    /// Name of the type for logs and metrics (`"Insert"`, or the number when unknown).
    #[must_use]
    pub fn type_name(&self) -> String {
        self.known_type()
            .map_or_else(|| self.message_type.to_string(), |t| t.as_str().to_string())
    }
}

/// Why the reserved properties of a streaming message are unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StreamingError {
    /// A property is not valid.
    #[error("streaming message property `{key}` = {value:?} is not valid: {what}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// Its value (lossy UTF-8).
        value: String,
        /// What is wrong.
        what: &'static str,
    },
    /// A required property is missing.
    #[error("streaming message has no `{key}` property")]
    Missing {
        /// The key.
        key: &'static str,
    },
}

fn find<'a>(props: &'a [(String, Vec<u8>)], key: &str) -> Option<&'a [u8]> {
    props
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_slice())
}

/// Whether a message comes from the streaming service (a non-empty `_v`, as Milvus'
/// `CheckIfMessageFromStreaming`).
#[must_use]
pub fn is_from_streaming(props: &[(String, Vec<u8>)]) -> bool {
    find(props, keys::VERSION).is_some_and(|v| !v.is_empty())
}

/// Decodes a base-36 unsigned integer (Milvus `message.DecodeUint64`).
#[must_use]
pub fn decode_base36(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    u64::from_str_radix(s, 36).ok()
}

/// Encodes a base-36 unsigned integer (Milvus `message.EncodeUint64`, lowercase digits).
#[must_use]
pub fn encode_base36(mut v: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    if v == 0 {
        return "0".to_string();
    }
    let mut out = Vec::new();
    while v > 0 {
        out.push(DIGITS[(v % 36) as usize]);
        v /= 36;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

fn invalid(key: &'static str, value: &[u8], what: &'static str) -> StreamingError {
    StreamingError::Invalid {
        key,
        value: String::from_utf8_lossy(value).into_owned(),
        what,
    }
}

fn text<'a>(key: &'static str, v: &'a [u8]) -> Result<&'a str, StreamingError> {
    std::str::from_utf8(v).map_err(|_| invalid(key, v, "not UTF-8"))
}

/// Reads the reserved properties of a streaming message.
///
/// # Errors
/// [`StreamingError`] when `_v` or `_t` is missing or not a number, or `_tt` / `_tx` is not
/// valid. A missing `_tt` is not an error here (the caller decides).
pub fn parse(props: &[(String, Vec<u8>)]) -> Result<StreamingProps, StreamingError> {
    let raw_v = find(props, keys::VERSION).ok_or(StreamingError::Missing { key: keys::VERSION })?;
    let version = text(keys::VERSION, raw_v)?
        .parse()
        .map_err(|_| invalid(keys::VERSION, raw_v, "not a decimal number"))?;
    let raw_t = find(props, keys::TYPE).ok_or(StreamingError::Missing { key: keys::TYPE })?;
    let message_type = text(keys::TYPE, raw_t)?
        .parse()
        .map_err(|_| invalid(keys::TYPE, raw_t, "not a decimal number"))?;
    let time_tick = match find(props, keys::TIME_TICK) {
        None => None,
        Some(v) => Some(
            decode_base36(text(keys::TIME_TICK, v)?)
                .ok_or_else(|| invalid(keys::TIME_TICK, v, "not a base-36 number"))?,
        ),
    };
    let vchannel = match find(props, keys::VCHANNEL) {
        Some(v) if !v.is_empty() => Some(text(keys::VCHANNEL, v)?.to_string()),
        _ => None,
    };
    let txn = match find(props, keys::TXN) {
        None => None,
        Some(v) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(v)
                .map_err(|_| invalid(keys::TXN, v, "not standard base64"))?;
            Some(
                TxnContext::decode(bytes.as_slice())
                    .map_err(|_| invalid(keys::TXN, v, "not a messages.TxnContext"))?,
            )
        }
    };
    Ok(StreamingProps {
        version,
        message_type,
        time_tick,
        vchannel,
        txn,
        replicated: find(props, keys::REPLICATE_HEADER).is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(kv: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn recognised_like_check_if_message_from_streaming() {
        // pkg/streaming/util/message/properties.go: CheckIfMessageFromStreaming is true
        // exactly when `_v` is non-empty.
        assert!(!is_from_streaming(&[]));
        assert!(!is_from_streaming(&props(&[("_v", "")])));
        assert!(!is_from_streaming(&props(&[("msg_type", "Insert")])));
        assert!(is_from_streaming(&props(&[("_v", "1")])));
    }

    #[test]
    fn base36_matches_go_format_uint() {
        // pkg/streaming/util/message/encoder.go: strconv.FormatUint(v, 36).
        // A hybrid timestamp: physical 1_700_000_000_000 ms << 18 | 5.
        let ts = (1_700_000_000_000u64 << 18) | 5;
        let s = encode_base36(ts);
        assert_eq!(decode_base36(&s), Some(ts));
        assert_eq!(encode_base36(35), "z");
        assert_eq!(encode_base36(36), "10");
        assert_eq!(decode_base36("Z"), Some(35)); // ParseUint accepts upper case too
        assert_eq!(decode_base36(""), None);
        assert_eq!(decode_base36("-1"), None);
    }

    #[test]
    fn parses_the_reserved_properties() {
        // pkg/streaming/util/message/message_impl.go: WithTimeTick (EncodeUint64),
        // WithTxnContext (EncodeProto: base64 of messages.TxnContext); `_t` is
        // MessageType.marshal (decimal).
        let txn = TxnContext {
            txn_id: 42,
            keepalive_milliseconds: 500,
        };
        let b64 = base64::engine::general_purpose::STANDARD.encode(txn.encode_to_vec());
        let p = parse(&props(&[
            ("_v", "1"),
            ("_t", "2"),
            ("_tt", &encode_base36(123_456)),
            ("_vc", "by-dev-rootcoord-dml_0_1v0"),
            ("_tx", &b64),
        ]))
        .unwrap();
        assert_eq!(p.version, 1);
        assert_eq!(p.known_type(), Some(MessageType::Insert));
        assert_eq!(p.type_name(), "Insert");
        assert_eq!(p.time_tick, Some(123_456));
        assert_eq!(p.vchannel.as_deref(), Some("by-dev-rootcoord-dml_0_1v0"));
        assert_eq!(p.txn, Some(txn));
        assert!(!p.replicated);
    }

    #[test]
    fn bad_properties_are_errors_not_panics() {
        assert!(matches!(
            parse(&props(&[("_v", "x"), ("_t", "2")])),
            Err(StreamingError::Invalid { key: "_v", .. })
        ));
        assert_eq!(
            parse(&props(&[("_v", "1")])),
            Err(StreamingError::Missing { key: "_t" })
        );
        assert!(matches!(
            parse(&props(&[("_v", "1"), ("_t", "2"), ("_tt", "!!")])),
            Err(StreamingError::Invalid { key: "_tt", .. })
        ));
        assert!(matches!(
            parse(&props(&[("_v", "1"), ("_t", "900"), ("_tx", "%%%")])),
            Err(StreamingError::Invalid { key: "_tx", .. })
        ));
        let mut p = props(&[("_v", "1"), ("_t", "2")]);
        p.push(("_vc".into(), vec![0xff]));
        assert!(parse(&p).is_err());
    }

    #[test]
    fn kinds_follow_the_milvus_adaptor() {
        // pkg/streaming/util/message/adaptor/message_type.go and pkg/proto/messages.proto.
        assert_eq!(MessageType::Insert.kind(), Kind::Body(MsgType::Insert));
        assert_eq!(MessageType::TimeTick.kind(), Kind::Body(MsgType::TimeTick));
        assert_eq!(MessageType::Import.kind(), Kind::Body(MsgType::Import));
        for t in [
            MessageType::Flush,
            MessageType::ManualFlush,
            MessageType::CreateSegment,
            MessageType::BeginTxn,
            MessageType::CommitTxn,
            MessageType::RollbackTxn,
        ] {
            assert_eq!(t.kind(), Kind::Control, "{t:?}");
        }
        assert_eq!(MessageType::CreateIndex.kind(), Kind::Other);
        assert_eq!(MessageType::from_i32(901), Some(MessageType::CommitTxn));
        assert_eq!(MessageType::from_i32(12345), None);
    }
}
