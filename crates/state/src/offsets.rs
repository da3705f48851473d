//! The text forms of [`Offsets`], shared by every component that shows or stores them outside
//! the state store: sinks that keep their own checkpoint next to their output (files, the
//! Kafka offsets topic) store each offset as lowercase hex; logs, row events and `stdout` show
//! it with [`render_offset`].

use std::collections::BTreeMap;

use crate::{Offsets, SinkCheckpoint};

/// Lowercase hex of every offset (`{channel: "000000000000002a"}`).
pub fn hex_offsets(offsets: &Offsets) -> BTreeMap<String, String> {
    offsets
        .iter()
        .map(|(ch, o)| (ch.clone(), o.iter().map(|b| format!("{b:02x}")).collect()))
        .collect()
}

/// The checkpoint of `epoch` whose offsets are `hex` (as written by [`hex_offsets`]); `Err`
/// names the channel whose offset is not hex.
pub fn checkpoint_from_hex(
    epoch: u64,
    hex: &BTreeMap<String, String>,
) -> Result<SinkCheckpoint, String> {
    let mut offsets = Offsets::new();
    for (ch, text) in hex {
        let bytes = (0..text.len())
            .step_by(2)
            .map(|i| {
                text.get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("offset {text:?} of channel {ch} is not hex"))
            })
            .collect::<Result<Vec<u8>, String>>()?;
        offsets.insert(ch.clone(), bytes);
    }
    Ok(SinkCheckpoint { epoch, offsets })
}

/// How an offset is shown to people: 8 bytes (a Kafka offset, big-endian `i64`) as the decimal
/// number; anything else (a Pulsar message id) as `0x` + hex; the empty offset (before the
/// first message of a channel) as `-`.
pub fn render_offset(offset: &[u8]) -> String {
    match <[u8; 8]>::try_from(offset) {
        Ok(b) => i64::from_be_bytes(b).to_string(),
        Err(_) if offset.is_empty() => "-".to_string(),
        Err(_) => {
            let mut s = String::with_capacity(2 + offset.len() * 2);
            s.push_str("0x");
            for b in offset {
                s.push_str(&format!("{b:02x}"));
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_names_a_bad_channel() {
        let mut o = Offsets::new();
        o.insert("a".into(), 42i64.to_be_bytes().to_vec());
        o.insert("b".into(), vec![]);
        let hex = hex_offsets(&o);
        assert_eq!(hex["a"], "000000000000002a");
        let back = checkpoint_from_hex(7, &hex).unwrap();
        assert_eq!(
            back,
            SinkCheckpoint {
                epoch: 7,
                offsets: o
            }
        );
        let mut bad = hex;
        bad.insert("c".into(), "zz".into());
        assert!(checkpoint_from_hex(1, &bad)
            .unwrap_err()
            .contains("channel c"));
    }

    #[test]
    fn renders_kafka_pulsar_and_empty_offsets() {
        assert_eq!(render_offset(&42i64.to_be_bytes()), "42");
        assert_eq!(render_offset(&(-1i64).to_be_bytes()), "-1");
        assert_eq!(render_offset(&[1, 2]), "0x0102");
        assert_eq!(render_offset(&[]), "-");
    }
}
