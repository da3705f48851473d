//! What the source knows of the source Milvus's metadata: databases, collections (with their
//! fields and functions), and partitions, kept from the etcd scan and watch.
//!
//! Deleted objects (tombstones) stay in the cache, marked removed, so changes read late from
//! the message queue can still be named.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use cdc_engine::CollectionDef;
use cdc_protocol::etcd::{
    CollectionInfo, CollectionState, DatabaseState, PartitionInfo, PartitionState,
};
use cdc_protocol::etcd_meta::{MetaKey, MetaValue};
use cdc_protocol::schema::{FieldSchema, FunctionSchema};

use super::def::build_collection_def;

/// Name of the default database.
pub const DEFAULT_DB: &str = "default";
/// Name of the default partition.
pub const DEFAULT_PARTITION: &str = "_default";

/// A database.
#[derive(Debug, Clone)]
pub struct DatabaseEntry {
    /// Name.
    pub name: String,
    /// `DatabaseState` value.
    pub state: i32,
    /// A tombstone was seen.
    pub removed: bool,
}

/// A collection and the schema parts stored under separate keys.
#[derive(Debug, Clone, Default)]
pub struct CollectionEntry {
    /// Database ID (from the key).
    pub db_id: i64,
    /// The last value of its `collection-info` key.
    pub info: CollectionInfo,
    /// Fields by ID (all of them, system fields included).
    pub fields: BTreeMap<i64, FieldSchema>,
    /// Functions by ID (2.5).
    pub functions: BTreeMap<i64, FunctionSchema>,
    /// A tombstone was seen.
    pub removed: bool,
    def: Option<Arc<CollectionDef>>,
}

impl CollectionEntry {
    /// Created or Creating, and not removed: Milvus ticks its channels.
    pub fn is_live(&self) -> bool {
        !self.removed
            && (self.info.state == CollectionState::CollectionCreated as i32
                || self.info.state == CollectionState::CollectionCreating as i32)
    }
}

/// A partition.
#[derive(Debug, Clone)]
pub struct PartitionEntry {
    /// Owning collection.
    pub collection_id: i64,
    /// Last value of its key.
    pub info: PartitionInfo,
    /// A tombstone was seen.
    pub removed: bool,
}

/// What changed, for the source to act on.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaChange {
    /// A partition reached state Created.
    PartitionCreated {
        /// Collection ID.
        collection_id: i64,
        /// Partition ID.
        partition_id: i64,
        /// Partition name.
        name: String,
        /// `partition_created_timestamp`.
        ts: u64,
    },
    /// A collection was added or its state changed.
    Collection {
        /// Collection ID.
        id: i64,
        /// Its physical channels.
        pchannels: Vec<String>,
        /// Start positions (channel name to message ID of its CreateCollection message).
        start_positions: Vec<(String, Bytes)>,
        /// Whether it is live (Created or Creating).
        live: bool,
    },
}

/// The metadata cache.
#[derive(Debug, Default)]
pub struct MetaCache {
    databases: HashMap<i64, DatabaseEntry>,
    collections: HashMap<i64, CollectionEntry>,
    partitions: HashMap<i64, PartitionEntry>,
    /// Collection aliases.
    pub aliases: super::alias::Aliases,
    /// Access control (roles, grants, users).
    pub rbac: super::rbac::Rbac,
    /// Property changes of live collections not yet taken ([`MetaCache::take_props`]).
    props: Vec<super::props::PropsChange>,
}

impl MetaCache {
    /// Applies one key's new value and reports what changed.
    pub fn apply(&mut self, key: MetaKey, value: MetaValue) -> Option<MetaChange> {
        match (key, value) {
            (MetaKey::Database { db_id }, MetaValue::Database(info)) => {
                self.databases.insert(
                    db_id,
                    DatabaseEntry {
                        name: info.name,
                        state: info.state,
                        removed: false,
                    },
                );
                None
            }
            (MetaKey::Database { db_id }, MetaValue::Tombstone) => {
                if let Some(d) = self.databases.get_mut(&db_id) {
                    d.removed = true;
                }
                None
            }
            (
                MetaKey::Collection {
                    db_id,
                    collection_id,
                },
                MetaValue::Collection(info),
            ) => Some(self.put_collection(db_id, collection_id, info)),
            (MetaKey::LegacyCollection { collection_id }, MetaValue::Collection(info)) => {
                Some(self.put_collection(0, collection_id, info))
            }
            (
                MetaKey::Collection { collection_id, .. }
                | MetaKey::LegacyCollection { collection_id },
                MetaValue::Tombstone,
            ) => {
                let c = self.collections.get_mut(&collection_id)?;
                c.removed = true;
                c.def = None;
                Some(collection_change(collection_id, c))
            }
            (
                MetaKey::Field {
                    collection_id,
                    field_id,
                },
                MetaValue::Field(f),
            ) => {
                let c = self.collections.entry(collection_id).or_default();
                c.fields.insert(field_id, f);
                c.def = None;
                None
            }
            (
                MetaKey::Function {
                    collection_id,
                    function_id,
                },
                MetaValue::Function(f),
            ) => {
                let c = self.collections.entry(collection_id).or_default();
                c.functions.insert(function_id, f);
                c.def = None;
                None
            }
            (MetaKey::Field { .. } | MetaKey::Function { .. }, MetaValue::Tombstone) => None,
            (
                MetaKey::Partition {
                    collection_id,
                    partition_id,
                },
                MetaValue::Partition(info),
            ) => {
                let created = info.state == PartitionState::PartitionCreated as i32;
                let was_created = self.partitions.get(&partition_id).is_some_and(|p| {
                    !p.removed && p.info.state == PartitionState::PartitionCreated as i32
                });
                let change = (created && !was_created).then(|| MetaChange::PartitionCreated {
                    collection_id,
                    partition_id,
                    name: info.partition_name.clone(),
                    ts: info.partition_created_timestamp,
                });
                self.partitions.insert(
                    partition_id,
                    PartitionEntry {
                        collection_id,
                        info,
                        removed: false,
                    },
                );
                if let Some(c) = self.collections.get_mut(&collection_id) {
                    c.def = None;
                }
                change
            }
            (MetaKey::Partition { partition_id, .. }, MetaValue::Tombstone) => {
                if let Some(p) = self.partitions.get_mut(&partition_id) {
                    p.removed = true;
                }
                None
            }
            _ => None,
        }
    }

    /// The property changes seen since the last call (see [`super::props`]).
    pub fn take_props(&mut self) -> Vec<super::props::PropsChange> {
        std::mem::take(&mut self.props)
    }

    fn put_collection(&mut self, db_id: i64, id: i64, info: CollectionInfo) -> MetaChange {
        let created = CollectionState::CollectionCreated as i32;
        if let Some(old) = self
            .collections
            .get(&id)
            .filter(|c| !c.removed && c.info.state == created && info.state == created)
        {
            self.props.extend(super::props::diff(
                id,
                &old.info.properties,
                &info.properties,
            ));
        }
        let c = self.collections.entry(id).or_default();
        c.db_id = if db_id > 0 { db_id } else { info.db_id };
        c.info = info;
        c.removed = false;
        c.def = None;
        collection_change(id, c)
    }

    /// Database name by ID (`default` for the default database and for ID 0).
    pub fn database_name(&self, db_id: i64) -> String {
        match self.databases.get(&db_id) {
            Some(d) if !d.name.is_empty() => d.name.clone(),
            _ => DEFAULT_DB.to_string(),
        }
    }

    /// Whether a database of that name exists (and is not being dropped).
    pub fn database_exists(&self, name: &str) -> bool {
        self.databases.values().any(|d| {
            !d.removed && d.name == name && d.state == DatabaseState::DatabaseCreated as i32
        })
    }

    /// A collection by ID.
    pub fn collection(&self, id: i64) -> Option<&CollectionEntry> {
        self.collections
            .get(&id)
            .filter(|c| c.info.id != 0 || !c.fields.is_empty())
    }

    /// `(database, collection)` names of a collection.
    pub fn collection_names(&self, id: i64) -> Option<(String, String)> {
        let c = self.collections.get(&id)?;
        let name = c.info.schema.as_ref()?.name.clone();
        Some((self.database_name(c.db_id), name))
    }

    /// The collection's definition (built once per change of its metadata).
    pub fn collection_def(&mut self, id: i64) -> Option<Arc<CollectionDef>> {
        let c = self.collections.get(&id)?;
        if c.info.id == 0 && c.info.schema.is_none() {
            return None;
        }
        if let Some(def) = &c.def {
            return Some(def.clone());
        }
        let partitions: Vec<&PartitionInfo> = self
            .partitions
            .values()
            .filter(|p| p.collection_id == id && !p.removed)
            .map(|p| &p.info)
            .collect();
        let def = Arc::new(build_collection_def(c, &partitions));
        if let Some(c) = self.collections.get_mut(&id) {
            c.def = Some(def.clone());
        }
        Some(def)
    }

    /// The collection named `name` in database `db`: the newest live one, else the newest.
    pub fn find_collection(&self, db: &str, name: &str) -> Option<i64> {
        let db = if db.is_empty() { DEFAULT_DB } else { db };
        let mut best: Option<(bool, u64, i64)> = None;
        for (id, c) in &self.collections {
            let Some(schema) = &c.info.schema else {
                continue;
            };
            if schema.name != name || self.database_name(c.db_id) != db {
                continue;
            }
            let cand = (c.is_live(), c.info.create_time, *id);
            if best.is_none_or(|b| cand > b) {
                best = Some(cand);
            }
        }
        best.map(|b| b.2)
    }

    /// `(id, name)` of the collections of a database that are no longer live (dropping or
    /// removed).
    pub fn dropped_collections_of(&self, db: &str) -> Vec<(i64, String)> {
        let mut out: Vec<(i64, String)> = self
            .collections
            .iter()
            .filter(|(_, c)| !c.is_live() && self.database_name(c.db_id) == db)
            .filter_map(|(id, c)| Some((*id, c.info.schema.as_ref()?.name.clone())))
            .collect();
        out.sort();
        out
    }

    /// A partition's name by ID.
    pub fn partition_name(&self, id: i64) -> Option<&str> {
        self.partitions
            .get(&id)
            .map(|p| p.info.partition_name.as_str())
    }

    /// A partition by ID.
    pub fn partition(&self, id: i64) -> Option<&PartitionEntry> {
        self.partitions.get(&id)
    }

    /// The keys of the databases, collections and partitions that exist (no tombstone seen),
    /// ordered; fields and functions are left out (their removal changes nothing here).
    pub fn existing_keys(&self) -> Vec<MetaKey> {
        let mut keys: Vec<MetaKey> =
            self.databases
                .iter()
                .filter(|(_, d)| !d.removed)
                .map(|(&db_id, _)| MetaKey::Database { db_id })
                .chain(self.collections.iter().filter(|(_, c)| !c.removed).map(
                    |(&collection_id, c)| MetaKey::Collection {
                        db_id: c.db_id,
                        collection_id,
                    },
                ))
                .chain(self.partitions.iter().filter(|(_, p)| !p.removed).map(
                    |(&partition_id, p)| MetaKey::Partition {
                        collection_id: p.collection_id,
                        partition_id,
                    },
                ))
                .collect();
        keys.sort_by_key(|k| format!("{k:?}"));
        keys
    }

    /// IDs of the live collections, in ID order (the snapshot's plan).
    pub fn live_collection_ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self
            .collections
            .iter()
            .filter(|(_, c)| c.is_live() && c.info.schema.is_some())
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// `(id, name)` of a collection's partitions in state Created, in ID order.
    pub fn partitions_of(&self, collection_id: i64) -> Vec<(i64, String)> {
        let mut out: Vec<(i64, String)> = self
            .partitions
            .iter()
            .filter(|(_, p)| p.collection_id == collection_id && !p.removed)
            .filter(|(_, p)| p.info.state == PartitionState::PartitionCreated as i32)
            .map(|(id, p)| (*id, p.info.partition_name.clone()))
            .collect();
        out.sort();
        out
    }

    /// Names of a collection's partitions created after it (see [`Self::is_user_partition`]),
    /// in ID order.
    pub fn user_partitions_of(&self, collection_id: i64) -> Vec<String> {
        self.partitions_of(collection_id)
            .into_iter()
            .filter(|(id, _)| {
                self.partitions
                    .get(id)
                    .is_some_and(|p| self.is_user_partition(collection_id, &p.info))
            })
            .map(|(_, n)| n)
            .collect()
    }

    /// Physical channels used by live collections.
    pub fn live_pchannels(&self) -> HashSet<String> {
        self.collections
            .values()
            .filter(|c| c.is_live())
            .flat_map(|c| c.info.physical_channel_names.iter().cloned())
            .collect()
    }

    /// Physical channels of every known collection.
    pub fn all_pchannels(&self) -> HashSet<String> {
        self.collections
            .values()
            .flat_map(|c| c.info.physical_channel_names.iter().cloned())
            .collect()
    }

    /// Partitions created after their collection, in state Created, of live collections:
    /// the ones a CreatePartition event is due for on replay.
    pub fn user_partitions(&self) -> Vec<MetaChange> {
        let mut out: Vec<MetaChange> = self
            .partitions
            .iter()
            .filter(|(_, p)| !p.removed && p.info.state == PartitionState::PartitionCreated as i32)
            .filter(|(_, p)| {
                self.collections
                    .get(&p.collection_id)
                    .is_some_and(|c| c.is_live())
            })
            .filter(|(_, p)| self.is_user_partition(p.collection_id, &p.info))
            .map(|(id, p)| MetaChange::PartitionCreated {
                collection_id: p.collection_id,
                partition_id: *id,
                name: p.info.partition_name.clone(),
                ts: p.info.partition_created_timestamp,
            })
            .collect();
        out.sort_by_key(|c| match c {
            MetaChange::PartitionCreated { ts, .. } => *ts,
            MetaChange::Collection { .. } => 0,
        });
        out
    }

    /// Whether a partition was created by the user after its collection (not `_default`, not
    /// one of the partitions a partition-key collection creates with itself).
    pub fn is_user_partition(&self, collection_id: i64, p: &PartitionInfo) -> bool {
        if p.partition_name == DEFAULT_PARTITION {
            return false;
        }
        match self.collections.get(&collection_id) {
            Some(c) => p.partition_created_timestamp > c.info.create_time,
            None => true,
        }
    }
}

fn collection_change(id: i64, c: &CollectionEntry) -> MetaChange {
    MetaChange::Collection {
        id,
        pchannels: c.info.physical_channel_names.clone(),
        start_positions: c
            .info
            .start_positions
            .iter()
            .map(|kd| (kd.key.clone(), kd.data.clone()))
            .collect(),
        live: c.is_live(),
    }
}

#[cfg(test)]
mod tests;
