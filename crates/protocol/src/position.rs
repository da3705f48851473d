//! Message IDs and channel positions.
//!
//! - A Kafka message ID, as Milvus stores it in `MsgPosition.msgID`, is the partition offset as
//!   an 8-byte **little-endian** `i64` (`kafka_id.go`; Milvus `common.Endian`).
//! - The CDC HTTP API and the task store exchange positions as standard base64 (with padding, as
//!   Go's `base64.StdEncoding`) of a serialized [`MsgPosition`]. `ReplicateMessageResponse.position`
//!   is standard base64 of a bare message ID.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use bytes::Bytes;
use prost::Message as _;

use crate::msg::MsgPosition;

/// Encodes with padding; decodes with or without it.
const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Errors of the decoding functions in this module.
#[derive(Debug, thiserror::Error)]
pub enum PositionError {
    /// A Kafka message ID that is not 8 bytes long.
    #[error("a Kafka message ID is 8 bytes (little-endian offset), got {0} bytes")]
    KafkaIdLength(usize),
    /// Text that is not standard base64.
    #[error("invalid base64 in {what}: {source}")]
    Base64 {
        /// What was being decoded.
        what: &'static str,
        /// The base64 error.
        #[source]
        source: base64::DecodeError,
    },
    /// Bytes that are not a serialized `msg.MsgPosition`.
    #[error("base64 text is not a serialized msg.MsgPosition: {0}")]
    Protobuf(#[from] prost::DecodeError),
}

/// The Milvus message ID of a Kafka offset.
#[must_use]
pub fn kafka_msg_id(offset: i64) -> [u8; 8] {
    offset.to_le_bytes()
}

/// The Kafka offset of a Milvus message ID.
///
/// # Errors
/// [`PositionError::KafkaIdLength`] when `msg_id` is not 8 bytes long.
pub fn kafka_offset(msg_id: &[u8]) -> Result<i64, PositionError> {
    let bytes: [u8; 8] = msg_id
        .try_into()
        .map_err(|_| PositionError::KafkaIdLength(msg_id.len()))?;
    Ok(i64::from_le_bytes(bytes))
}

/// A position in a Kafka-backed channel.
#[must_use]
pub fn kafka_position(channel_name: &str, offset: i64, timestamp: u64) -> MsgPosition {
    MsgPosition {
        channel_name: channel_name.to_owned(),
        msg_id: Bytes::copy_from_slice(&kafka_msg_id(offset)),
        msg_group: String::new(),
        timestamp,
    }
}

/// Standard base64 (padded) of the serialized position.
#[must_use]
pub fn encode_position_b64(position: &MsgPosition) -> String {
    B64.encode(position.encode_to_vec())
}

/// Decodes [`encode_position_b64`] output (padding optional).
///
/// # Errors
/// [`PositionError::Base64`] or [`PositionError::Protobuf`].
pub fn decode_position_b64(text: &str) -> Result<MsgPosition, PositionError> {
    let raw = B64
        .decode(text.trim())
        .map_err(|source| PositionError::Base64 {
            what: "a position",
            source,
        })?;
    Ok(MsgPosition::decode(Bytes::from(raw))?)
}

/// Standard base64 (padded) of a bare message ID.
#[must_use]
pub fn encode_msg_id_b64(msg_id: &[u8]) -> String {
    B64.encode(msg_id)
}

/// Decodes a base64 message ID, such as `ReplicateMessageResponse.position`.
///
/// # Errors
/// [`PositionError::Base64`].
pub fn decode_msg_id_b64(text: &str) -> Result<Bytes, PositionError> {
    B64.decode(text.trim())
        .map(Bytes::from)
        .map_err(|source| PositionError::Base64 {
            what: "a message ID",
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_ids_are_little_endian() {
        assert_eq!(kafka_msg_id(1), [1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(kafka_msg_id(0x0102), [2, 1, 0, 0, 0, 0, 0, 0]);
        for offset in [0, 1, 255, 256, 1 << 40, i64::MAX, -1] {
            assert_eq!(kafka_offset(&kafka_msg_id(offset)).unwrap(), offset);
        }
        assert!(matches!(
            kafka_offset(&[1, 2, 3]),
            Err(PositionError::KafkaIdLength(3))
        ));
    }

    #[test]
    fn position_base64_round_trip() {
        let pos = kafka_position("by-dev-rootcoord-dml_0", 42, 449_534_118_316_441_601);
        let text = encode_position_b64(&pos);
        assert_eq!(decode_position_b64(&text).unwrap(), pos);
        assert_eq!(
            decode_position_b64(text.trim_end_matches('=')).unwrap(),
            pos
        );
        assert_eq!(kafka_offset(&pos.msg_id).unwrap(), 42);
    }

    #[test]
    fn position_errors() {
        let err = decode_position_b64("not base64!").unwrap_err();
        assert!(matches!(err, PositionError::Base64 { .. }), "{err}");
        // Valid base64, but a truncated protobuf (field 1, length 10, no data).
        let err = decode_position_b64(&B64.encode([0x0a, 10])).unwrap_err();
        assert!(matches!(err, PositionError::Protobuf(_)), "{err}");
    }

    #[test]
    fn msg_id_base64() {
        let id = kafka_msg_id(7);
        let text = encode_msg_id_b64(&id);
        assert_eq!(text, "BwAAAAAAAAA=");
        assert_eq!(decode_msg_id_b64(&text).unwrap().as_ref(), &id);
    }
}
