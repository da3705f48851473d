//! Catching up after the etcd watch lost revisions: when the watch reconnects after an
//! outage and etcd compacted past the last revision it delivered, the changes in between
//! can no longer be watched. The watcher then rescans the key range and reconciles it with
//! the cache: keys changed after the last delivered revision are applied like watch events,
//! in their revision order (creations, state changes, tombstone values), and objects the cache
//! holds that the rescan lacks were deleted in the gap and get a tombstone. Deletions are
//! applied first: they carry no revision any more, and an object dropped and created again
//! under the same name has a new ID, so its drop belongs before its creation.

use std::collections::HashSet;

use cdc_protocol::etcd_meta::MetaKey;

use super::cache::MetaCache;
use super::load::{LoadKey, LoadState};

/// What a rescan holds, by object.
#[derive(Debug, Default)]
pub struct Scanned {
    databases: HashSet<i64>,
    collections: HashSet<i64>,
    partitions: HashSet<i64>,
    loads: HashSet<LoadKey>,
}

impl Scanned {
    /// Records a RootCoord key of the rescan.
    pub fn meta(&mut self, key: MetaKey) {
        match key {
            MetaKey::Database { db_id } => {
                self.databases.insert(db_id);
            }
            MetaKey::Collection { collection_id, .. }
            | MetaKey::LegacyCollection { collection_id } => {
                self.collections.insert(collection_id);
            }
            MetaKey::Partition { partition_id, .. } => {
                self.partitions.insert(partition_id);
            }
            MetaKey::Field { .. } | MetaKey::Function { .. } => {}
        }
    }

    /// Records a load-info key of the rescan.
    pub fn load(&mut self, key: LoadKey) {
        self.loads.insert(key);
    }
}

/// The keys that exist for the cache and the load state but not in the rescan: deleted
/// while the watch was away.
pub fn vanished(
    cache: &MetaCache,
    loads: &LoadState,
    scanned: &Scanned,
) -> (Vec<MetaKey>, Vec<LoadKey>) {
    let meta = cache
        .existing_keys()
        .into_iter()
        .filter(|k| match *k {
            MetaKey::Database { db_id } => !scanned.databases.contains(&db_id),
            MetaKey::Collection { collection_id, .. }
            | MetaKey::LegacyCollection { collection_id } => {
                !scanned.collections.contains(&collection_id)
            }
            MetaKey::Partition { partition_id, .. } => !scanned.partitions.contains(&partition_id),
            MetaKey::Field { .. } | MetaKey::Function { .. } => false,
        })
        .collect();
    let mut load: Vec<LoadKey> = loads
        .keys()
        .into_iter()
        .filter(|k| !scanned.loads.contains(k))
        .collect();
    // Partitions before their collection, as QueryCoord removes them.
    load.sort_by_key(|k| matches!(k, LoadKey::Collection { .. }));
    (meta, load)
}

#[cfg(test)]
mod tests {
    use cdc_protocol::etcd::{CollectionInfo, CollectionState, PartitionInfo, PartitionState};
    use cdc_protocol::etcd_meta::MetaValue;

    use super::super::cache::MetaChange;
    use super::*;

    fn cache_with(collections: &[i64]) -> MetaCache {
        let mut cache = MetaCache::default();
        for &id in collections {
            let info = CollectionInfo {
                id,
                state: CollectionState::CollectionCreated as i32,
                physical_channel_names: vec![format!("by-dev-rootcoord-dml_{id}")],
                ..Default::default()
            };
            cache.apply(
                MetaKey::Collection {
                    db_id: 1,
                    collection_id: id,
                },
                MetaValue::Collection(info),
            );
            let p = PartitionInfo {
                partition_id: id * 10,
                partition_name: "_default".into(),
                collection_id: id,
                state: PartitionState::PartitionCreated as i32,
                ..Default::default()
            };
            cache.apply(
                MetaKey::Partition {
                    collection_id: id,
                    partition_id: id * 10,
                },
                MetaValue::Partition(p),
            );
        }
        cache
    }

    #[test]
    fn objects_missing_from_the_rescan_vanished_and_their_tombstones_drop_them() {
        let mut cache = cache_with(&[1, 2, 3]);
        let mut scanned = Scanned::default();
        for id in [1, 3] {
            scanned.meta(MetaKey::Collection {
                db_id: 1,
                collection_id: id,
            });
            scanned.meta(MetaKey::Partition {
                collection_id: id,
                partition_id: id * 10,
            });
        }
        let (meta, load) = vanished(&cache, &LoadState::default(), &scanned);
        assert!(load.is_empty());
        assert_eq!(
            meta,
            [
                MetaKey::Collection {
                    db_id: 1,
                    collection_id: 2
                },
                MetaKey::Partition {
                    collection_id: 2,
                    partition_id: 20
                }
            ]
        );
        let change = cache.apply(meta[0], MetaValue::Tombstone);
        assert!(
            matches!(
                change,
                Some(MetaChange::Collection {
                    id: 2,
                    live: false,
                    ..
                })
            ),
            "{change:?}"
        );
        assert!(!cache.live_pchannels().contains("by-dev-rootcoord-dml_2"));
        // Once tombstoned, it does not vanish again.
        let (meta, _) = vanished(&cache, &LoadState::default(), &scanned);
        assert_eq!(meta.len(), 1, "only the partition is left: {meta:?}");
    }

    #[test]
    fn nothing_vanished_when_the_rescan_has_everything() {
        let cache = cache_with(&[5]);
        let mut scanned = Scanned::default();
        for k in cache.existing_keys() {
            scanned.meta(k);
        }
        let (meta, load) = vanished(&cache, &LoadState::default(), &scanned);
        assert!(meta.is_empty() && load.is_empty());
    }
}
