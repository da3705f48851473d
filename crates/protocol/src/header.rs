//! Decoding message-queue payloads of Milvus 2.3.2 - 2.5 (msgstream).
//!
//! Every payload is one serialized protobuf whose field 1 is `common.MsgBase base`, so the
//! minimal `common.MsgHeader { MsgBase base = 1 }` gives the message type
//! ([`peek_msg_type`]); [`decode`] then decodes the typed message. DML channels carry the
//! `msg.*` messages (Insert, Delete, TimeTick, ...); the replicate channel carries the
//! `milvus.*Request` of the DDL that Milvus replicates (CreateDatabase, Flush, CreateIndex, ...).
//!
//! Message types without a typed variant are not an error: they decode to
//! [`MqMessage::Other`] with the raw `msg_type` (which may be a value unknown to
//! [`MsgType`]).

use bytes::{Buf, Bytes};
use prost::Message as _;

use crate::common::{MsgBase, MsgHeader, MsgType};
use crate::{milvus, msg};

/// Why a payload could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum MqDecodeError {
    /// The payload is not even a `MsgHeader`.
    #[error("cannot decode the common.MsgHeader of a {len}-byte payload: {source}")]
    Header {
        /// Payload length.
        len: usize,
        /// The protobuf error.
        #[source]
        source: prost::DecodeError,
    },
    /// The header decoded, but has no `MsgBase` (e.g. an empty payload).
    #[error("the {len}-byte payload has no common.MsgBase (field 1), so its type is unknown")]
    MissingBase {
        /// Payload length.
        len: usize,
    },
    /// The header names a type whose message failed to decode.
    #[error(
        "cannot decode a {name} payload (msg_type {msg_type}, {len} bytes) as {proto}: {source}"
    )]
    Body {
        /// `MsgBase.msg_type` of the payload.
        msg_type: i32,
        /// Name of that type.
        name: &'static str,
        /// Full name of the protobuf message tried.
        proto: &'static str,
        /// Payload length.
        len: usize,
        /// The protobuf error.
        #[source]
        source: prost::DecodeError,
    },
}

/// Decodes only the `MsgBase` of a payload.
///
/// # Errors
/// [`MqDecodeError::Header`] or [`MqDecodeError::MissingBase`].
pub fn peek_base(payload: &[u8]) -> Result<MsgBase, MqDecodeError> {
    let len = payload.len();
    MsgHeader::decode(payload)
        .map_err(|source| MqDecodeError::Header { len, source })?
        .base
        .ok_or(MqDecodeError::MissingBase { len })
}

/// The raw `MsgBase.msg_type` of a payload (compare with `MsgType::X as i32`, or convert with
/// `MsgType::try_from`; values unknown to [`MsgType`] are returned as they are).
///
/// # Errors
/// [`MqDecodeError::Header`] or [`MqDecodeError::MissingBase`].
pub fn peek_msg_type(payload: &[u8]) -> Result<i32, MqDecodeError> {
    peek_base(payload).map(|base| base.msg_type)
}

/// The Milvus name of a message type (`"Insert"`, `"TimeTick"`, ...), as written in the
/// `msg_type` message property by Milvus <= 2.4. `None` for values unknown to [`MsgType`].
#[must_use]
pub fn msg_type_name(msg_type: i32) -> Option<&'static str> {
    MsgType::try_from(msg_type).ok().map(|t| t.as_str_name())
}

/// The value of a message type name (inverse of [`msg_type_name`]).
#[must_use]
pub fn msg_type_from_name(name: &str) -> Option<i32> {
    MsgType::from_str_name(name).map(|t| t as i32)
}

/// Decodes a payload into its typed message.
///
/// Bytes fields are copied out of `payload`; use [`decode_bytes`] to share the buffer.
///
/// # Errors
/// [`MqDecodeError`] when the header or the typed message cannot be decoded. An unknown or
/// unsupported type is not an error ([`MqMessage::Other`]).
pub fn decode(payload: &[u8]) -> Result<MqMessage, MqDecodeError> {
    let msg_type = peek_msg_type(payload)?;
    decode_as(msg_type, payload)
}

/// Like [`decode`], but bytes fields (vectors, JSON, ...) share `payload` instead of being copied.
///
/// # Errors
/// As [`decode`].
pub fn decode_bytes(payload: Bytes) -> Result<MqMessage, MqDecodeError> {
    let msg_type = peek_msg_type(&payload)?;
    decode_as(msg_type, payload)
}

/// Decodes a payload whose type is already known (from [`peek_msg_type`], or from the `msg_type`
/// property of Milvus 2.5 messages).
///
/// # Errors
/// [`MqDecodeError::Body`] when the payload is not the message of that type.
pub fn decode_as<B: Buf>(msg_type: i32, payload: B) -> Result<MqMessage, MqDecodeError> {
    MqMessage::decode_body(msg_type, payload)
}

macro_rules! mq_messages {
    ($(
        $(#[$doc:meta])*
        $variant:ident($ty:ty) = $msg_type:ident, $proto:literal;
    )*) => {
        /// A decoded message-queue payload.
        #[derive(Debug, Clone, PartialEq)]
        #[allow(clippy::large_enum_variant)] // Boxing would cost an allocation per message.
        pub enum MqMessage {
            $(
                $(#[$doc])*
                $variant($ty),
            )*
            /// A type without a typed variant here (not an error).
            Other {
                /// The raw `MsgBase.msg_type`.
                msg_type: i32,
            },
        }

        impl MqMessage {
            /// The `MsgBase.msg_type` value of this message.
            #[must_use]
            pub fn msg_type(&self) -> i32 {
                match self {
                    $(Self::$variant(_) => MsgType::$msg_type as i32,)*
                    Self::Other { msg_type } => *msg_type,
                }
            }

            /// Full name of the protobuf message, e.g. `milvus.proto.msg.InsertRequest`
            /// (`None` for [`MqMessage::Other`]).
            #[must_use]
            pub fn proto_name(&self) -> Option<&'static str> {
                match self {
                    $(Self::$variant(_) => Some($proto),)*
                    Self::Other { .. } => None,
                }
            }

            /// The message's `MsgBase` (`None` for [`MqMessage::Other`], or when absent).
            #[must_use]
            pub fn base(&self) -> Option<&MsgBase> {
                match self {
                    $(Self::$variant(m) => m.base.as_ref(),)*
                    Self::Other { .. } => None,
                }
            }

            /// Mutable access to the message's `MsgBase`, e.g. to rewrite its timestamp.
            pub fn base_mut(&mut self) -> Option<&mut MsgBase> {
                match self {
                    $(Self::$variant(m) => m.base.as_mut(),)*
                    Self::Other { .. } => None,
                }
            }

            /// Serializes the message again (`None` for [`MqMessage::Other`]). Fields that are
            /// not declared in `proto/milvus` are not kept.
            #[must_use]
            pub fn encode_to_vec(&self) -> Option<Vec<u8>> {
                match self {
                    $(Self::$variant(m) => Some(m.encode_to_vec()),)*
                    Self::Other { .. } => None,
                }
            }

            fn decode_body<B: Buf>(msg_type: i32, payload: B) -> Result<Self, MqDecodeError> {
                let Ok(known) = MsgType::try_from(msg_type) else {
                    return Ok(Self::Other { msg_type });
                };
                let len = payload.remaining();
                match known {
                    $(
                        MsgType::$msg_type => <$ty>::decode(payload)
                            .map(Self::$variant)
                            .map_err(|source| MqDecodeError::Body {
                                msg_type,
                                name: known.as_str_name(),
                                proto: $proto,
                                len,
                                source,
                            }),
                    )*
                    _ => Ok(Self::Other { msg_type }),
                }
            }
        }
    };
}

mq_messages! {
    /// Insert (400), DML channel: column-based rows.
    Insert(msg::InsertRequest) = Insert, "milvus.proto.msg.InsertRequest";
    /// Delete (401), DML channel: primary keys.
    Delete(msg::DeleteRequest) = Delete, "milvus.proto.msg.DeleteRequest";
    /// TimeTick (1200), DML channel.
    TimeTick(msg::TimeTickMsg) = TimeTick, "milvus.proto.msg.TimeTickMsg";
    /// CreateCollection (100), DML channel.
    CreateCollection(msg::CreateCollectionRequest) = CreateCollection,
        "milvus.proto.msg.CreateCollectionRequest";
    /// DropCollection (101), DML channel.
    DropCollection(msg::DropCollectionRequest) = DropCollection,
        "milvus.proto.msg.DropCollectionRequest";
    /// CreatePartition (200), DML channel.
    CreatePartition(msg::CreatePartitionRequest) = CreatePartition,
        "milvus.proto.msg.CreatePartitionRequest";
    /// DropPartition (201), DML channel.
    DropPartition(msg::DropPartitionRequest) = DropPartition,
        "milvus.proto.msg.DropPartitionRequest";
    /// Import (408), DML channel (2.5+).
    Import(msg::ImportMsg) = Import, "milvus.proto.msg.ImportMsg";
    /// Replicate (1212), 2.5.
    Replicate(msg::ReplicateMsg) = Replicate, "milvus.proto.msg.ReplicateMsg";
    /// DataNodeTt (1208), DataNode time-tick channel.
    DataNodeTt(msg::DataNodeTtMsg) = DataNodeTt, "milvus.proto.msg.DataNodeTtMsg";
    /// CreateDatabase (1801), replicate channel.
    CreateDatabase(milvus::CreateDatabaseRequest) = CreateDatabase,
        "milvus.proto.milvus.CreateDatabaseRequest";
    /// DropDatabase (1802), replicate channel.
    DropDatabase(milvus::DropDatabaseRequest) = DropDatabase,
        "milvus.proto.milvus.DropDatabaseRequest";
    /// AlterDatabase (1804), replicate channel (2.5).
    AlterDatabase(milvus::AlterDatabaseRequest) = AlterDatabase,
        "milvus.proto.milvus.AlterDatabaseRequest";
    /// Flush (402), replicate channel.
    Flush(milvus::FlushRequest) = Flush, "milvus.proto.milvus.FlushRequest";
    /// CreateIndex (300), replicate channel.
    CreateIndex(milvus::CreateIndexRequest) = CreateIndex,
        "milvus.proto.milvus.CreateIndexRequest";
    /// DropIndex (302), replicate channel.
    DropIndex(milvus::DropIndexRequest) = DropIndex, "milvus.proto.milvus.DropIndexRequest";
    /// AlterIndex (304), replicate channel (2.4+).
    AlterIndex(milvus::AlterIndexRequest) = AlterIndex, "milvus.proto.milvus.AlterIndexRequest";
    /// LoadCollection (106), replicate channel.
    LoadCollection(milvus::LoadCollectionRequest) = LoadCollection,
        "milvus.proto.milvus.LoadCollectionRequest";
    /// ReleaseCollection (107), replicate channel.
    ReleaseCollection(milvus::ReleaseCollectionRequest) = ReleaseCollection,
        "milvus.proto.milvus.ReleaseCollectionRequest";
    /// LoadPartitions (205), replicate channel.
    LoadPartitions(milvus::LoadPartitionsRequest) = LoadPartitions,
        "milvus.proto.milvus.LoadPartitionsRequest";
    /// ReleasePartitions (206), replicate channel.
    ReleasePartitions(milvus::ReleasePartitionsRequest) = ReleasePartitions,
        "milvus.proto.milvus.ReleasePartitionsRequest";
    /// CreateAlias (108), replicate channel (2.4+; `pkg/mq/msgstream/msg_for_alias.go`
    /// marshals the proxy's `milvuspb.CreateAliasRequest`).
    CreateAlias(milvus::CreateAliasRequest) = CreateAlias,
        "milvus.proto.milvus.CreateAliasRequest";
    /// DropAlias (109), replicate channel (2.4+).
    DropAlias(milvus::DropAliasRequest) = DropAlias, "milvus.proto.milvus.DropAliasRequest";
    /// AlterAlias (110), replicate channel (2.4+).
    AlterAlias(milvus::AlterAliasRequest) = AlterAlias, "milvus.proto.milvus.AlterAliasRequest";
}

impl MqMessage {
    /// The Milvus name of the message type (`"Insert"`, ...), `None` if unknown to [`MsgType`].
    #[must_use]
    pub fn msg_type_name(&self) -> Option<&'static str> {
        msg_type_name(self.msg_type())
    }

    /// Whether the message's `MsgBase` says a Milvus received it by replication:
    /// `replicateInfo.isReplicate` (2.3.2+) or a non-empty `replicateInfo.replicateID` (2.5;
    /// the `replicate_id` message property carries the same value, `msgstream_util.go:
    /// GetPorperties`).
    #[must_use]
    pub fn is_replicated(&self) -> bool {
        self.base()
            .and_then(|b| b.replicate_info.as_ref())
            .is_some_and(|r| r.is_replicate || !r.replicate_id.is_empty())
    }

    /// `MsgBase.timestamp` (hybrid), if the message has a base.
    #[must_use]
    pub fn timestamp(&self) -> Option<u64> {
        self.base().map(|b| b.timestamp)
    }

    /// The collection ID carried by DML-channel messages (Insert, Delete, Create/DropCollection,
    /// Create/DropPartition, Import). Replicate-channel requests carry names only.
    #[must_use]
    pub fn collection_id(&self) -> Option<i64> {
        match self {
            Self::Insert(m) => Some(m.collection_id),
            Self::Delete(m) => Some(m.collection_id),
            Self::CreateCollection(m) => Some(m.collection_id),
            Self::DropCollection(m) => Some(m.collection_id),
            Self::CreatePartition(m) => Some(m.collection_id),
            Self::DropPartition(m) => Some(m.collection_id),
            Self::Import(m) => Some(m.collection_id),
            _ => None,
        }
    }

    /// The vchannel (`shardName`) of an Insert or Delete.
    #[must_use]
    pub fn shard_name(&self) -> Option<&str> {
        match self {
            Self::Insert(m) => Some(&m.shard_name),
            Self::Delete(m) => Some(&m.shard_name),
            _ => None,
        }
    }

    /// The database name of the message, when it has one (may be empty: the default database).
    #[must_use]
    pub fn db_name(&self) -> Option<&str> {
        Some(match self {
            Self::Insert(m) => &m.db_name,
            Self::Delete(m) => &m.db_name,
            Self::CreateCollection(m) => &m.db_name,
            Self::DropCollection(m) => &m.db_name,
            Self::CreatePartition(m) => &m.db_name,
            Self::DropPartition(m) => &m.db_name,
            Self::Import(m) => &m.db_name,
            Self::Replicate(m) => &m.database,
            Self::CreateDatabase(m) => &m.db_name,
            Self::DropDatabase(m) => &m.db_name,
            Self::AlterDatabase(m) => &m.db_name,
            Self::Flush(m) => &m.db_name,
            Self::CreateIndex(m) => &m.db_name,
            Self::DropIndex(m) => &m.db_name,
            Self::AlterIndex(m) => &m.db_name,
            Self::LoadCollection(m) => &m.db_name,
            Self::ReleaseCollection(m) => &m.db_name,
            Self::LoadPartitions(m) => &m.db_name,
            Self::ReleasePartitions(m) => &m.db_name,
            Self::CreateAlias(m) => &m.db_name,
            Self::DropAlias(m) => &m.db_name,
            Self::AlterAlias(m) => &m.db_name,
            Self::TimeTick(_) | Self::DataNodeTt(_) | Self::Other { .. } => return None,
        })
    }

    /// The collection name of messages about one collection (Flush, which names several,
    /// gives `None`: read `collection_names`).
    #[must_use]
    pub fn collection_name(&self) -> Option<&str> {
        Some(match self {
            Self::Insert(m) => &m.collection_name,
            Self::Delete(m) => &m.collection_name,
            Self::CreateCollection(m) => &m.collection_name,
            Self::DropCollection(m) => &m.collection_name,
            Self::CreatePartition(m) => &m.collection_name,
            Self::DropPartition(m) => &m.collection_name,
            Self::Import(m) => &m.collection_name,
            Self::Replicate(m) => &m.collection,
            Self::CreateIndex(m) => &m.collection_name,
            Self::DropIndex(m) => &m.collection_name,
            Self::AlterIndex(m) => &m.collection_name,
            Self::LoadCollection(m) => &m.collection_name,
            Self::ReleaseCollection(m) => &m.collection_name,
            Self::LoadPartitions(m) => &m.collection_name,
            Self::ReleasePartitions(m) => &m.collection_name,
            Self::CreateAlias(m) => &m.collection_name,
            Self::AlterAlias(m) => &m.collection_name,
            Self::TimeTick(_)
            | Self::DropAlias(_)
            | Self::DataNodeTt(_)
            | Self::CreateDatabase(_)
            | Self::DropDatabase(_)
            | Self::AlterDatabase(_)
            | Self::Flush(_)
            | Self::Other { .. } => return None,
        })
    }
}

#[cfg(test)]
mod tests;
