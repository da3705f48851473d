//! What the sink needs to know about a target collection (primary key, partition key, IDs and
//! channels for replicate mode), learned from `DescribeCollection` on the target and cached
//! until a DDL changes it.

use std::collections::HashMap;
use std::sync::Arc;

use cdc_protocol::milvus::DescribeCollectionResponse;
use cdc_protocol::schema::CollectionSchema;

/// A target collection as the writers see it.
#[derive(Debug, Clone, Default)]
pub(crate) struct CollectionInfo {
    /// Primary key field name.
    pub pk_name: String,
    /// True when a field is the partition key (rows may not name a partition).
    pub partition_key: bool,
    /// True when the primary key is auto-generated on the target (upsert is then refused).
    pub auto_id: bool,
    /// True when this sink created the collection in this run: nothing was written to it
    /// before, so plain inserts cannot duplicate rows of an earlier run.
    pub created_here: bool,
    /// Target collection ID.
    pub collection_id: i64,
    /// Target virtual channels, one per shard.
    pub vchannels: Vec<String>,
    /// Target physical channels, one per shard.
    pub pchannels: Vec<String>,
    /// Target field IDs by field name (replicate mode rewrites column IDs with them).
    pub field_ids: HashMap<String, i64>,
    /// Hybrid timestamp of the collection's creation on the target (replicate mode never
    /// stamps data before it).
    pub created_ts: u64,
}

impl CollectionInfo {
    /// From a target `DescribeCollection` answer.
    pub(crate) fn from_describe(d: &DescribeCollectionResponse, created_here: bool) -> Self {
        let mut info = d.schema.as_ref().map(Self::from_schema).unwrap_or_default();
        info.created_here = created_here;
        info.collection_id = d.collection_id;
        info.vchannels = d.virtual_channel_names.clone();
        info.pchannels = d.physical_channel_names.clone();
        info.created_ts = d.created_timestamp;
        info
    }

    /// Key facts of a schema.
    pub(crate) fn from_schema(s: &CollectionSchema) -> Self {
        let pk = s.fields.iter().find(|f| f.is_primary_key);
        Self {
            pk_name: pk.map(|f| f.name.clone()).unwrap_or_default(),
            partition_key: s.fields.iter().any(|f| f.is_partition_key),
            auto_id: pk.is_some_and(|f| f.auto_id),
            field_ids: s
                .fields
                .iter()
                .map(|f| (f.name.clone(), f.field_id))
                .collect(),
            ..Self::default()
        }
    }
}

/// Target collections by (database, collection).
#[derive(Debug, Default)]
pub(crate) struct MetaCache {
    map: HashMap<(String, String), Arc<CollectionInfo>>,
}

impl MetaCache {
    /// The cached info.
    pub(crate) fn get(&self, db: &str, coll: &str) -> Option<Arc<CollectionInfo>> {
        self.map.get(&(db.to_string(), coll.to_string())).cloned()
    }

    /// Remember a collection.
    pub(crate) fn put(&mut self, db: &str, coll: &str, info: Arc<CollectionInfo>) {
        self.map.insert((db.to_string(), coll.to_string()), info);
    }

    /// Forget one collection (`coll` given) or a whole database (`coll` empty).
    pub(crate) fn forget(&mut self, db: &str, coll: &str) {
        if coll.is_empty() {
            self.map.retain(|(d, _), _| d != db);
        } else {
            self.map.remove(&(db.to_string(), coll.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdc_protocol::schema::{DataType, FieldSchema};

    #[test]
    fn schema_facts() {
        let s = CollectionSchema {
            fields: vec![
                FieldSchema {
                    name: "pk".into(),
                    is_primary_key: true,
                    data_type: DataType::VarChar as i32,
                    auto_id: true,
                    ..Default::default()
                },
                FieldSchema {
                    name: "tenant".into(),
                    is_partition_key: true,
                    data_type: DataType::Int64 as i32,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let i = CollectionInfo::from_schema(&s);
        assert_eq!(i.pk_name, "pk");
        assert!(i.partition_key);
        assert!(i.auto_id);
    }

    #[test]
    fn cache_forgets_databases() {
        let mut c = MetaCache::default();
        c.put("a", "x", Arc::default());
        c.put("a", "y", Arc::default());
        c.put("b", "x", Arc::default());
        c.forget("a", "x");
        assert!(c.get("a", "x").is_none());
        assert!(c.get("a", "y").is_some());
        c.forget("a", "");
        assert!(c.get("a", "y").is_none());
        assert!(c.get("b", "x").is_some());
    }
}
