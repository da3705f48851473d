//! Where the copy of one collection stands, as the offset of its snapshot pseudo-channel.
//!
//! Each collection of the snapshot has its own pseudo-channel
//! (`snapshot:{meta_root}/{collection_id}`), checkpointed like any channel: the offset of
//! the last change `next` returned. The encoding keeps byte order equal to progress order,
//! so the engine's per-channel skip (a sink ignores a change at or before its committed
//! offset) and "smallest offset of all sinks" resume work unchanged:
//!
//! ```text
//!  [0]                                  planned, nothing emitted (stored by the start barrier)
//!  [1, k:u16]                           the k-th DDL of the collection emitted (k from 1)
//!  [2, partition:i64, 1, pk:i64]        rows emitted up to pk (int64 key) in that partition
//!  [2, partition:i64, 2, pk bytes]      rows emitted up to pk (varchar key)
//!  [3]                                  copied
//! ```
//!
//! Integers are big-endian with the sign bit flipped, so they compare as signed numbers;
//! varchar keys compare by bytes, as Milvus orders them. Partitions are copied in ID order.

use cdc_engine::SNAPSHOT_CHANNEL_PREFIX;

/// A primary key value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Pk {
    /// An INT64 key.
    Int(i64),
    /// A VARCHAR key.
    Str(String),
}

impl Pk {
    /// The filter selecting keys after this one, for field `field`.
    pub(crate) fn after_expr(&self, field: &str) -> String {
        match self {
            Pk::Int(v) => format!("{field} > {v}"),
            Pk::Str(s) => {
                let mut q = String::with_capacity(s.len() + 2);
                q.push('"');
                for c in s.chars() {
                    if c == '"' || c == '\\' {
                        q.push('\\');
                    }
                    q.push(c);
                }
                q.push('"');
                format!("{field} > {q}")
            }
        }
    }
}

/// Progress of one collection.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Progress {
    /// Nothing emitted yet.
    Planned,
    /// DDL number `k` (from 1) emitted.
    Ddl(u16),
    /// Rows emitted up to `pk` in partition `partition`.
    Rows {
        /// Partition ID.
        partition: i64,
        /// Last key emitted.
        pk: Pk,
    },
    /// Everything emitted.
    Done,
}

fn flip(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

fn unflip(b: &[u8]) -> Option<i64> {
    let a: [u8; 8] = b.try_into().ok()?;
    Some((u64::from_be_bytes(a) ^ (1 << 63)) as i64)
}

impl Progress {
    /// The offset bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        match self {
            Progress::Planned => vec![0],
            Progress::Ddl(k) => {
                let mut v = vec![1];
                v.extend_from_slice(&k.to_be_bytes());
                v
            }
            Progress::Rows { partition, pk } => {
                let mut v = vec![2];
                v.extend_from_slice(&flip(*partition));
                match pk {
                    Pk::Int(x) => {
                        v.push(1);
                        v.extend_from_slice(&flip(*x));
                    }
                    Pk::Str(s) => {
                        v.push(2);
                        v.extend_from_slice(s.as_bytes());
                    }
                }
                v
            }
            Progress::Done => vec![3],
        }
    }

    /// Reads offset bytes back; `None` when they are not a snapshot offset.
    pub(crate) fn decode(b: &[u8]) -> Option<Self> {
        match b.first()? {
            0 if b.len() == 1 => Some(Progress::Planned),
            1 if b.len() == 3 => Some(Progress::Ddl(u16::from_be_bytes([b[1], b[2]]))),
            2 if b.len() >= 10 => {
                let partition = unflip(&b[1..9])?;
                let pk = match b[9] {
                    1 => Pk::Int(unflip(&b[10..])?),
                    2 => Pk::Str(String::from_utf8(b[10..].to_vec()).ok()?),
                    _ => return None,
                };
                Some(Progress::Rows { partition, pk })
            }
            3 if b.len() == 1 => Some(Progress::Done),
            _ => None,
        }
    }
}

/// The pseudo-channel of collection `id`.
pub(crate) fn channel_name(meta_root: &str, id: i64) -> String {
    format!("{SNAPSHOT_CHANNEL_PREFIX}{meta_root}/{id}")
}

/// The collection ID of a pseudo-channel of this source (`None` for any other channel).
pub(crate) fn parse_channel(meta_root: &str, name: &str) -> Option<i64> {
    let rest = name.strip_prefix(SNAPSHOT_CHANNEL_PREFIX)?;
    let id = rest.strip_prefix(meta_root)?.strip_prefix('/')?;
    id.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Progress> {
        let rows = |partition, pk| Progress::Rows { partition, pk };
        vec![
            Progress::Planned,
            Progress::Ddl(1),
            Progress::Ddl(2),
            Progress::Ddl(300),
            rows(-5, Pk::Int(i64::MAX)),
            rows(7, Pk::Int(i64::MIN)),
            rows(7, Pk::Int(-1)),
            rows(7, Pk::Int(0)),
            rows(7, Pk::Int(42)),
            rows(449_000_000_000_000_001, Pk::Int(i64::MIN)),
            rows(449_000_000_000_000_002, Pk::Str(String::new())),
            rows(449_000_000_000_000_002, Pk::Str("a".into())),
            rows(449_000_000_000_000_002, Pk::Str("ab".into())),
            rows(449_000_000_000_000_002, Pk::Str("b".into())),
            rows(449_000_000_000_000_002, Pk::Str("é".into())),
            Progress::Done,
        ]
    }

    #[test]
    fn byte_order_is_progress_order_and_round_trips() {
        let all = all();
        for w in all.windows(2) {
            assert!(w[0] < w[1], "{:?} < {:?}", w[0], w[1]);
            assert!(w[0].encode() < w[1].encode(), "{:?} vs {:?}", w[0], w[1]);
        }
        for p in all {
            assert_eq!(Progress::decode(&p.encode()), Some(p));
        }
    }

    #[test]
    fn foreign_bytes_are_not_progress() {
        assert_eq!(Progress::decode(&[]), None);
        assert_eq!(Progress::decode(&[0, 0, 0, 0, 0, 0, 0, 5]), None);
        assert_eq!(Progress::decode(&[2, 1, 2]), None);
        assert_eq!(Progress::decode(&[9]), None);
    }

    #[test]
    fn channel_names_round_trip() {
        let n = channel_name("by-dev/meta", 449);
        assert_eq!(n, "snapshot:by-dev/meta/449");
        assert_eq!(parse_channel("by-dev/meta", &n), Some(449));
        assert_eq!(parse_channel("other/meta", &n), None);
        assert_eq!(parse_channel("by-dev/meta", "by-dev-rootcoord-dml_0"), None);
    }

    #[test]
    fn filters_quote_varchar_keys() {
        assert_eq!(Pk::Int(-3).after_expr("id"), "id > -3");
        assert_eq!(
            Pk::Str(r#"a"b\c"#.into()).after_expr("pk"),
            r#"pk > "a\"b\\c""#
        );
    }
}
