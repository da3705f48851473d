//! Collection property changes (AlterCollection: `collection.ttl.seconds`, `mmap.enabled`,
//! ...) from the source etcd. Milvus 2.3 publishes no message for them: RootCoord rewrites
//! the collection's `collection-info` key with the new `properties`. The cache compares the
//! properties of a live collection before and after each rewrite ([`diff`]); a difference is
//! sent in band, stamped with the wall clock like the other etcd changes without a time.
//!
//! Milvus 2.3.5 persists one AlterCollection late (seen live): the key rewritten by an
//! AlterCollection holds the properties as they were *before* it (DescribeCollection answers
//! the new ones from RootCoord's memory). So from a 2.3.5 source the target gets each change
//! one AlterCollection later, and what etcd keeps (what the source itself has after a
//! restart) rather than what it answers now (README).
//!
//! Not replayed after a restart: a change made while the CDC was stopped reaches the target
//! with the collection's definition when the sink creates it, not for a collection that is
//! there already (README).

use std::collections::BTreeMap;

use cdc_protocol::common::KeyValuePair;

use crate::decode::Payload;
use crate::input::Input;

/// The properties of a collection changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropsChange {
    /// Collection ID.
    pub collection_id: i64,
    /// Every property now (AlterCollection sets the given keys and keeps the others).
    pub properties: Vec<KeyValuePair>,
    /// Keys that were removed (2.5's `delete_keys`).
    pub removed: Vec<String>,
}

fn as_map(kvs: &[KeyValuePair]) -> BTreeMap<&str, &str> {
    kvs.iter()
        .map(|kv| (kv.key.as_str(), kv.value.as_str()))
        .collect()
}

/// The change from `before` to `after` of collection `id`, `None` when they are the same set.
pub fn diff(id: i64, before: &[KeyValuePair], after: &[KeyValuePair]) -> Option<PropsChange> {
    let (b, a) = (as_map(before), as_map(after));
    if a == b {
        return None;
    }
    Some(PropsChange {
        collection_id: id,
        properties: after.to_vec(),
        removed: b
            .keys()
            .filter(|k| !a.contains_key(*k))
            .map(|k| (*k).to_string())
            .collect(),
    })
}

/// The in-band input of a property change at `ts` (offset: `ts` and the collection ID,
/// big-endian).
pub(crate) fn props_input(change: PropsChange, ts: u64) -> Input {
    let mut offset = ts.to_be_bytes().to_vec();
    offset.extend_from_slice(&change.collection_id.to_be_bytes());
    Input::Change {
        offset,
        ts,
        bytes: 0,
        pair: None,
        payload: Payload::Properties(change),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: &str) -> KeyValuePair {
        KeyValuePair {
            key: k.into(),
            value: v.into(),
        }
    }

    #[test]
    fn only_real_changes_are_reported() {
        let ttl = kv("collection.ttl.seconds", "60");
        let mmap = kv("mmap.enabled", "true");
        assert_eq!(diff(1, &[], &[]), None);
        assert_eq!(
            diff(
                1,
                &[ttl.clone(), mmap.clone()],
                &[mmap.clone(), ttl.clone()]
            ),
            None,
            "same set, other order"
        );
        let c = diff(1, &[], std::slice::from_ref(&ttl)).unwrap();
        assert_eq!((c.properties.len(), c.removed.len()), (1, 0));
        let c = diff(
            1,
            std::slice::from_ref(&ttl),
            &[kv("collection.ttl.seconds", "120")],
        )
        .unwrap();
        assert_eq!(c.properties[0].value, "120");
        let c = diff(1, &[ttl, mmap.clone()], &[mmap]).unwrap();
        assert_eq!(c.removed, vec!["collection.ttl.seconds".to_string()]);
    }
}
