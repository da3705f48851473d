//! Partition-level load state of the source, from QueryCoord's etcd keys.
//!
//! Milvus 2.3 writes no message for LoadPartitions / ReleasePartitions (LoadCollection and
//! ReleaseCollection do reach the replicate channel; 2.4+ proxies also publish
//! LoadPartitions / ReleasePartitions there, and the converter emits each load or release
//! once whichever way reports it first, see the `convert` module). QueryCoord persists its load
//! state under the meta root:
//!
//! * `{meta_root}/querycoord-collection-loadinfo/{collectionID}` → `querypb.CollectionLoadInfo`
//! * `{meta_root}/querycoord-partition-loadinfo/{collectionID}/{partitionID}` →
//!   `querypb.PartitionLoadInfo`
//!
//! [`LoadState`] mirrors those keys and turns a batch of watched changes into
//! [`LoadChange`]s, only for collections loaded with `load_type == LoadPartition` (the others
//! are loaded by LoadCollection, which the message queue already carries). The replica number
//! of a load is the collection's `replica_number` (the partition's is deprecated):
//!
//! * a partition key that appears → its partitions were loaded;
//! * a partition key that disappears while the collection stays partition-loaded → released;
//! * the collection key that disappears (QueryCoord removes it first, then its partition keys)
//!   → every partition still loaded is released, marked [`LoadChange::Released::whole`]:
//!   QueryCoord does that both for a ReleasePartitions that covers every loaded partition (no
//!   message anywhere: the release must be emitted) and for a ReleaseCollection (whose own
//!   message reaches the replicate channel: the converter drops the partition release when it
//!   already emitted that ReleaseCollection; otherwise the extra release is harmless, the
//!   target releases partitions of a released collection without error).
//!
//! Nothing is emitted for a collection that is not live in RootCoord's metadata (dropping,
//! dropped) nor for a partition that is not in state Created (being dropped): the target gets
//! DropCollection / DropPartition from the message queue, and a release naming a partition
//! that no longer exists would fail there.
//!
//! The initial scan fills the state without emitting (start = latest semantics: only the
//! changes made while the source runs are replicated, also on resume and with `earliest`).
//!
//! QueryCoord's keys carry no timestamp: the watcher stamps a change with its own wall clock
//! when it first sees it (so it assumes the source's and this host's clocks agree to well
//! under a second), holds changes briefly to merge the partitions of one call
//! ([`HeldLoads`]; 0.5 s of quiet, 2 s when a whole collection was released, at most 5 s),
//! and answers no probe while it holds any, so the merger cannot release past them.
//! Known limits: a LoadCollection issued within those 2 s after a ReleasePartitions of the
//! last loaded partitions is still ordered correctly (timestamps), but a ReleaseCollection
//! message written more than 2 s after QueryCoord removed the load info makes the partition
//! release appear too (harmless on the target).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use cdc_protocol::etcd::PartitionState;

use super::cache::MetaCache;

/// `querypb.LoadType`.
pub mod load_type {
    /// UnKnownType.
    pub const UNKNOWN: i32 = 0;
    /// Loaded with LoadPartitions.
    pub const LOAD_PARTITION: i32 = 1;
    /// Loaded with LoadCollection.
    pub const LOAD_COLLECTION: i32 = 2;
}

/// `querypb.CollectionLoadInfo` (Milvus 2.3 `query_coord.proto`; the fields used here).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct CollectionLoadInfo {
    /// Collection ID.
    #[prost(int64, tag = "1")]
    pub collection_id: i64,
    /// Released partitions (unused since 2.2).
    #[prost(int64, repeated, tag = "2")]
    pub released_partitions: Vec<i64>,
    /// Replicas: the replica number of LoadPartitions events.
    #[prost(int32, tag = "3")]
    pub replica_number: i32,
    /// `LoadStatus`: Invalid 0, Loading 1, Loaded 2.
    #[prost(int32, tag = "4")]
    pub status: i32,
    /// Field ID to index ID.
    #[prost(map = "int64, int64", tag = "5")]
    pub field_index_id: ::std::collections::HashMap<i64, i64>,
    /// [`load_type`].
    #[prost(int32, tag = "6")]
    pub load_type: i32,
}

/// `querypb.PartitionLoadInfo` (Milvus 2.3 `query_coord.proto`; the fields used here).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct PartitionLoadInfo {
    /// Collection ID.
    #[prost(int64, tag = "1")]
    pub collection_id: i64,
    /// Partition ID.
    #[prost(int64, tag = "2")]
    pub partition_id: i64,
    /// Replicas. Deprecated in newer `query_coord.proto` and may be unset (0): the
    /// collection's `replica_number` is used instead.
    #[prost(int32, tag = "3")]
    pub replica_number: i32,
    /// `LoadStatus`.
    #[prost(int32, tag = "4")]
    pub status: i32,
}

const COLLECTION_PREFIX: &str = "querycoord-collection-loadinfo";
const PARTITION_PREFIX: &str = "querycoord-partition-loadinfo";

/// A QueryCoord load-info key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoadKey {
    /// `querycoord-collection-loadinfo/{collectionID}`.
    Collection {
        /// Collection ID.
        collection_id: i64,
    },
    /// `querycoord-partition-loadinfo/{collectionID}/{partitionID}`.
    Partition {
        /// Collection ID.
        collection_id: i64,
        /// Partition ID.
        partition_id: i64,
    },
}

/// The etcd key range `[start, end)` that holds the load-info keys and RootCoord's metadata
/// (`querycoord-collection-loadinfo/` … `root-coord/`; in between only the few
/// `querycoord-partition-loadinfo` and `querycoord-replica` keys), so one watch sees both in
/// revision order.
pub fn key_range(meta_root: &str) -> (String, String) {
    let root = meta_root.trim_end_matches('/');
    (
        format!("{root}/{COLLECTION_PREFIX}/"),
        // '0' follows '/': the end of the `root-coord/` prefix.
        format!("{root}/root-coord0"),
    )
}

/// Parses a full etcd key under `meta_root`.
pub fn parse_load_key(meta_root: &str, key: &str) -> Option<LoadKey> {
    let rest = key
        .strip_prefix(meta_root.trim_end_matches('/'))?
        .strip_prefix('/')?;
    let id = |s: &str| -> Option<i64> {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        }
    };
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        [COLLECTION_PREFIX, c] => Some(LoadKey::Collection {
            collection_id: id(c)?,
        }),
        [PARTITION_PREFIX, c, p] => Some(LoadKey::Partition {
            collection_id: id(c)?,
            partition_id: id(p)?,
        }),
        _ => None,
    }
}

/// A change of partition load state to replicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadChange {
    /// Partitions were loaded (LoadPartitions).
    Loaded {
        /// Collection ID.
        collection_id: i64,
        /// `(partition ID, name)`, in ID order.
        partitions: Vec<(i64, String)>,
        /// Replica number.
        replica_number: i32,
    },
    /// Partitions were released.
    Released {
        /// Collection ID.
        collection_id: i64,
        /// `(partition ID, name)`, in ID order.
        partitions: Vec<(i64, String)>,
        /// The collection's load info was removed (every partition released, by
        /// ReleasePartitions or ReleaseCollection).
        whole: bool,
    },
}

#[derive(Debug, Default, Clone)]
struct CollectionLoad {
    load_type: i32,
    replica_number: i32,
    /// Partition ID to its (deprecated) replica number.
    partitions: BTreeMap<i64, i32>,
}

impl CollectionLoad {
    /// The replica number of a load: `CollectionLoadInfo.replica_number`, the one QueryCoord
    /// keeps current; the deprecated `PartitionLoadInfo.replica_number` only when the
    /// collection's is unset (0).
    fn replicas_or(&self, deprecated: i32) -> i32 {
        if self.replica_number > 0 {
            self.replica_number
        } else {
            deprecated
        }
    }
}

/// One watched change of a load-info key (`None` value: deleted).
#[derive(Debug, Clone)]
pub struct LoadEvent {
    /// The key.
    pub key: LoadKey,
    /// The new value, `None` when deleted.
    pub value: Option<Vec<u8>>,
}

/// The load state mirrored from etcd.
#[derive(Debug, Default)]
pub struct LoadState {
    collections: HashMap<i64, CollectionLoad>,
    /// Partition keys seen before their collection key (same transaction, any order).
    orphans: HashMap<i64, BTreeMap<i64, i32>>,
}

#[derive(Default)]
struct Group {
    loaded: BTreeSet<i64>,
    released: BTreeSet<i64>,
    whole: bool,
    replica_number: i32,
}

impl LoadState {
    /// Applies one key without reporting anything (initial scan). Undecodable values are
    /// returned as errors and leave the state unchanged.
    pub fn apply_scan(&mut self, key: LoadKey, value: &[u8]) -> Result<(), prost::DecodeError> {
        self.apply(key, Some(value), &mut Group::default())
            .map(|_| ())
    }

    /// The keys of the load state (collections, and the partitions of each).
    pub fn keys(&self) -> Vec<LoadKey> {
        let mut keys = Vec::new();
        for (&collection_id, c) in &self.collections {
            keys.push(LoadKey::Collection { collection_id });
            keys.extend(c.partitions.keys().map(|&partition_id| LoadKey::Partition {
                collection_id,
                partition_id,
            }));
        }
        for (&collection_id, parts) in &self.orphans {
            keys.extend(parts.keys().map(|&partition_id| LoadKey::Partition {
                collection_id,
                partition_id,
            }));
        }
        keys
    }

    /// Applies one key; the partitions that changed go into `g`.
    fn apply(
        &mut self,
        key: LoadKey,
        value: Option<&[u8]>,
        g: &mut Group,
    ) -> Result<bool, prost::DecodeError> {
        use prost::Message as _;
        match (key, value) {
            (LoadKey::Collection { collection_id }, Some(v)) => {
                let info = CollectionLoadInfo::decode(v)?;
                let c = self.collections.entry(collection_id).or_default();
                c.load_type = info.load_type;
                c.replica_number = info.replica_number;
                if let Some(parts) = self.orphans.remove(&collection_id) {
                    if c.load_type == load_type::LOAD_PARTITION {
                        g.loaded
                            .extend(parts.keys().filter(|p| !c.partitions.contains_key(p)));
                        let deprecated = parts.values().copied().max().unwrap_or(0);
                        g.replica_number = g.replica_number.max(c.replicas_or(deprecated));
                    }
                    c.partitions.extend(parts);
                }
                Ok(true)
            }
            (LoadKey::Collection { collection_id }, None) => {
                self.orphans.remove(&collection_id);
                if let Some(c) = self.collections.remove(&collection_id) {
                    if c.load_type == load_type::LOAD_PARTITION {
                        g.released.extend(c.partitions.keys());
                        g.whole = true;
                    }
                }
                Ok(true)
            }
            (
                LoadKey::Partition {
                    collection_id,
                    partition_id,
                },
                Some(v),
            ) => {
                let info = PartitionLoadInfo::decode(v)?;
                let replicas = info.replica_number;
                match self.collections.get_mut(&collection_id) {
                    Some(c) => {
                        let new = c.partitions.insert(partition_id, replicas).is_none();
                        if new && c.load_type == load_type::LOAD_PARTITION {
                            g.released.remove(&partition_id);
                            g.loaded.insert(partition_id);
                            g.replica_number = g.replica_number.max(c.replicas_or(replicas));
                        }
                    }
                    None => {
                        self.orphans
                            .entry(collection_id)
                            .or_default()
                            .insert(partition_id, replicas);
                    }
                }
                Ok(true)
            }
            (
                LoadKey::Partition {
                    collection_id,
                    partition_id,
                },
                None,
            ) => {
                if let Some(o) = self.orphans.get_mut(&collection_id) {
                    o.remove(&partition_id);
                }
                if let Some(c) = self.collections.get_mut(&collection_id) {
                    if c.partitions.remove(&partition_id).is_some()
                        && c.load_type == load_type::LOAD_PARTITION
                        && !g.loaded.remove(&partition_id)
                    {
                        g.released.insert(partition_id);
                    }
                }
                Ok(true)
            }
        }
    }

    /// Applies the load-info changes of one watch response (in revision order) and reports
    /// what to replicate: per collection, at most one Loaded and one Released change, in the
    /// order their collections first changed. Undecodable values are skipped (and returned
    /// as errors for logging). `cache` (already updated with the same response's RootCoord
    /// changes) names the partitions and tells which collections and partitions still exist.
    pub fn apply_batch(
        &mut self,
        events: Vec<LoadEvent>,
        cache: &MetaCache,
    ) -> (Vec<LoadChange>, Vec<(LoadKey, prost::DecodeError)>) {
        // Keys written in one transaction share a revision and come in any order: collection
        // puts first, so that the partitions of a first LoadPartitions see their load type.
        let mut events = events;
        events.sort_by_key(|e| !matches!((e.key, &e.value), (LoadKey::Collection { .. }, Some(_))));
        let mut order: Vec<i64> = Vec::new();
        let mut groups: HashMap<i64, Group> = HashMap::new();
        let mut errors = Vec::new();
        for e in events {
            let id = match e.key {
                LoadKey::Collection { collection_id }
                | LoadKey::Partition { collection_id, .. } => collection_id,
            };
            if !groups.contains_key(&id) {
                order.push(id);
            }
            let g = groups.entry(id).or_default();
            if let Err(err) = self.apply(e.key, e.value.as_deref(), g) {
                errors.push((e.key, err));
            }
        }
        let mut out = Vec::new();
        for id in order {
            let Some(g) = groups.remove(&id) else {
                continue;
            };
            if !cache.collection(id).is_some_and(|c| c.is_live()) {
                continue;
            }
            let named = |ids: &BTreeSet<i64>| -> Vec<(i64, String)> {
                ids.iter()
                    .filter_map(|p| {
                        let entry = cache.partition(*p)?;
                        (!entry.removed
                            && entry.info.state == PartitionState::PartitionCreated as i32)
                            .then(|| (*p, entry.info.partition_name.clone()))
                    })
                    .collect()
            };
            let loaded = named(&g.loaded);
            if !loaded.is_empty() {
                out.push(LoadChange::Loaded {
                    collection_id: id,
                    partitions: loaded,
                    replica_number: g.replica_number.max(1),
                });
            }
            let released = named(&g.released);
            if !released.is_empty() {
                out.push(LoadChange::Released {
                    collection_id: id,
                    partitions: released,
                    whole: g.whole,
                });
            }
        }
        (out, errors)
    }
}

/// Load changes held until the source's load state settles.
///
/// Milvus 2.3.5 writes the partitions of one LoadPartitions call in separate revisions (a
/// few hundred milliseconds apart under load), and the ReleaseCollection message of a release
/// reaches the replicate channel only after QueryCoord removed the load info: holding changes
/// until no new one came for a moment gives one event per call, stamped after that message.
/// A change is merged into the collection's last held change when both are of the same kind
/// (loads, partial releases, whole releases); otherwise it follows it, so the sequence of
/// calls is kept.
#[derive(Debug, Default)]
pub struct HeldLoads {
    /// Changes and the hybrid timestamp (wall clock) they were first seen at.
    changes: Vec<(LoadChange, u64)>,
    first: Option<std::time::Instant>,
    last: Option<std::time::Instant>,
}

/// The collection of a change.
pub fn collection_of(c: &LoadChange) -> i64 {
    match c {
        LoadChange::Loaded { collection_id, .. } | LoadChange::Released { collection_id, .. } => {
            *collection_id
        }
    }
}

impl HeldLoads {
    /// Nothing held.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Whether a release of a whole collection is held.
    pub fn has_whole_release(&self) -> bool {
        self.changes
            .iter()
            .any(|(c, _)| matches!(c, LoadChange::Released { whole: true, .. }))
    }

    /// Adds a change, seen at `now` (hybrid timestamp `now_ts`).
    pub fn add(&mut self, change: LoadChange, now: std::time::Instant, now_ts: u64) {
        self.first.get_or_insert(now);
        self.last = Some(now);
        let id = collection_of(&change);
        let last = self
            .changes
            .iter_mut()
            .rev()
            .find(|(c, _)| collection_of(c) == id)
            .map(|(c, _)| c);
        let merged = match (last, change) {
            (
                Some(LoadChange::Loaded {
                    partitions,
                    replica_number,
                    ..
                }),
                LoadChange::Loaded {
                    partitions: more,
                    replica_number: r,
                    ..
                },
            ) => {
                *replica_number = (*replica_number).max(r);
                merge(partitions, more);
                None
            }
            (
                Some(LoadChange::Released {
                    partitions, whole, ..
                }),
                LoadChange::Released {
                    partitions: more,
                    whole: w,
                    ..
                },
            ) if *whole == w => {
                merge(partitions, more);
                None
            }
            (_, change) => Some(change),
        };
        if let Some(c) = merged {
            self.changes.push((c, now_ts));
        }
    }

    /// When the held changes are due: `quiet` after the last one, at most `max` after the
    /// first.
    pub fn due(
        &self,
        quiet: std::time::Duration,
        max: std::time::Duration,
    ) -> Option<std::time::Instant> {
        Some((self.last? + quiet).min(self.first? + max))
    }

    /// Takes the held changes, in order, with the timestamp each was first seen at.
    pub fn take(&mut self) -> Vec<(LoadChange, u64)> {
        self.first = None;
        self.last = None;
        std::mem::take(&mut self.changes)
    }
}

fn merge(into: &mut Vec<(i64, String)>, more: Vec<(i64, String)>) {
    for p in more {
        if !into.iter().any(|q| q.0 == p.0) {
            into.push(p);
        }
    }
    into.sort();
}

#[cfg(test)]
mod tests;
