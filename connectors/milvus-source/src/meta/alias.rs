//! Collection aliases from the source etcd (`root-coord/database/aliases/{dbID}/{alias}`,
//! values [`AliasInfo`]; the only record of aliases on Milvus 2.3, whose proxy writes no alias
//! message).
//!
//! RootCoord writes the key on CreateAlias and again on AlterAlias (with the new collection
//! and a new `created_time`), and the tombstone on DropAlias. The cache keeps each alias's last
//! value, so a put is told apart as a creation (no live alias before) or an alteration (the
//! alias pointed to another collection), and a drop still knows its collection. A put that
//! changes nothing (same collection) reports nothing.

use std::collections::HashMap;

use cdc_engine::metrics::ComponentMetrics;
use cdc_protocol::etcd::{AliasInfo, AliasState};
use cdc_protocol::etcd_meta::{self, AliasKey};
use etcd_client::KeyValue;
use tracing::warn;

use crate::decode::Payload;
use crate::input::Input;

/// What happened to an alias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AliasOp {
    /// CreateAlias.
    Create,
    /// AlterAlias (moved to another collection).
    Alter,
    /// DropAlias.
    Drop,
}

/// An alias change seen in etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasChange {
    /// Database ID.
    pub db_id: i64,
    /// The alias.
    pub alias: String,
    /// The collection it points to now (for a drop: the one it pointed to; 0 if unknown).
    pub collection_id: i64,
    /// What happened.
    pub op: AliasOp,
    /// `created_time` of the new value (hybrid timestamp); `None` for a drop (a tombstone
    /// carries no time).
    pub ts: Option<u64>,
}

/// The aliases known, by key.
#[derive(Debug, Default)]
pub struct Aliases {
    by_key: HashMap<AliasKey, AliasInfo>,
}

fn live(info: &AliasInfo) -> bool {
    info.state == AliasState::AliasCreated as i32
}

impl Aliases {
    /// Applies one key's value (`None`: the tombstone or a deletion) and reports the change.
    pub fn apply(&mut self, key: AliasKey, value: Option<AliasInfo>) -> Option<AliasChange> {
        let before = self.by_key.get(&key).filter(|i| live(i)).cloned();
        match value {
            Some(info) => {
                let change = if !live(&info) {
                    None
                } else {
                    let op = match &before {
                        None => Some(AliasOp::Create),
                        Some(b) if b.collection_id != info.collection_id => Some(AliasOp::Alter),
                        Some(_) => None,
                    };
                    op.map(|op| AliasChange {
                        db_id: key.db_id,
                        alias: key.alias.clone(),
                        collection_id: info.collection_id,
                        op,
                        ts: Some(info.created_time),
                    })
                };
                self.by_key.insert(key, info);
                change
            }
            None => {
                self.by_key.remove(&key);
                before.map(|b| AliasChange {
                    db_id: key.db_id,
                    alias: key.alias,
                    collection_id: b.collection_id,
                    op: AliasOp::Drop,
                    ts: None,
                })
            }
        }
    }

    /// Live aliases as `(db_id, alias, collection_id, created_time)`, oldest first.
    pub fn live(&self) -> Vec<(i64, String, i64, u64)> {
        let mut v: Vec<_> = self
            .by_key
            .iter()
            .filter(|(_, i)| live(i))
            .map(|(k, i)| (k.db_id, k.alias.clone(), i.collection_id, i.created_time))
            .collect();
        v.sort_by_key(|a| a.3);
        v
    }
}

/// Applies `kv` to `aliases` when it is an alias key: `None` for other keys, `Some(change)`
/// otherwise. An undecodable value is logged, counted (`errors_total{kind="decode"}`)
/// and skipped.
pub(crate) fn apply_kv(
    aliases: &mut Aliases,
    meta_root: &str,
    kv: &KeyValue,
    deleted: bool,
    metrics: &ComponentMetrics,
) -> Option<Option<AliasChange>> {
    let key = std::str::from_utf8(kv.key()).ok()?;
    let parsed = etcd_meta::parse_alias_key(meta_root, key)?;
    let value = if deleted {
        None
    } else {
        match etcd_meta::decode_alias_value(kv.value()) {
            Ok(v) => v,
            Err(e) => {
                metrics.error(cdc_engine::ErrorKind::Decode);
                warn!(message = "Undecodable etcd alias skipped.", key, error = %e);
                return Some(None);
            }
        }
    };
    Some(aliases.apply(parsed, value))
}

/// The in-band input of an alias change at timestamp `ts` (its offset: `ts` and a hash of
/// the alias, big-endian, after the etcd pseudo-channel's partition offsets' layout).
pub(crate) fn alias_input(change: AliasChange, ts: u64) -> Input {
    let mut offset = ts.to_be_bytes().to_vec();
    offset.extend_from_slice(&name_hash(&change.alias).to_be_bytes());
    Input::Change {
        offset,
        ts,
        bytes: 0,
        pair: None,
        payload: Payload::Alias(change),
    }
}

/// On a resume (or an `earliest` start): the inputs of the live aliases set after `done`,
/// the committed offset of the etcd pseudo-channel (all of them without one), as creations.
/// A drop while the CDC was stopped leaves no time in etcd and is not replayed.
pub(crate) fn replay(aliases: &Aliases, done: Option<&Vec<u8>>) -> Vec<Input> {
    aliases
        .live()
        .into_iter()
        .map(|(db_id, alias, collection_id, ts)| {
            alias_input(
                AliasChange {
                    db_id,
                    alias,
                    collection_id,
                    op: AliasOp::Create,
                    ts: Some(ts),
                },
                ts,
            )
        })
        .filter(|i| match (i, done) {
            (Input::Change { offset, .. }, Some(d)) => offset > d,
            _ => true,
        })
        .collect()
}

/// FNV-1a: stable across runs (offsets are stored in checkpoints).
pub(crate) fn name_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(a: &str) -> AliasKey {
        AliasKey {
            db_id: 1,
            alias: a.into(),
        }
    }

    fn info(coll: i64, ts: u64) -> AliasInfo {
        AliasInfo {
            alias_name: "a".into(),
            collection_id: coll,
            created_time: ts,
            state: AliasState::AliasCreated as i32,
            db_id: 1,
        }
    }

    #[test]
    fn create_alter_drop() {
        let mut a = Aliases::default();
        let c = a.apply(key("a"), Some(info(7, 10))).unwrap();
        assert_eq!(
            (c.op, c.collection_id, c.ts),
            (AliasOp::Create, 7, Some(10))
        );
        assert_eq!(a.apply(key("a"), Some(info(7, 11))), None, "same target");
        let c = a.apply(key("a"), Some(info(8, 12))).unwrap();
        assert_eq!((c.op, c.collection_id, c.ts), (AliasOp::Alter, 8, Some(12)));
        assert_eq!(a.live(), vec![(1, "a".to_string(), 8, 12)]);
        let c = a.apply(key("a"), None).unwrap();
        assert_eq!((c.op, c.collection_id, c.ts), (AliasOp::Drop, 8, None));
        assert_eq!(a.apply(key("a"), None), None, "dropped twice");
        assert!(a.live().is_empty());
        let c = a.apply(key("a"), Some(info(9, 13))).unwrap();
        assert_eq!(c.op, AliasOp::Create, "re-created after a drop");
    }

    #[test]
    fn states_other_than_created_are_not_live() {
        let mut a = Aliases::default();
        let mut i = info(7, 10);
        i.state = AliasState::AliasCreating as i32;
        assert_eq!(a.apply(key("a"), Some(i)), None);
        assert!(a.live().is_empty());
        assert_eq!(
            a.apply(key("a"), Some(info(7, 11))).unwrap().op,
            AliasOp::Create
        );
    }
}
