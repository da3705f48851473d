//! Builds a collection's [`CollectionDef`] from its etcd metadata, the way milvus-cdc rebuilds
//! the schema it creates on the target: user fields only (IDs from 100), `$meta` turned into
//! `enable_dynamic_field`, functions (2.5) attached.

use cdc_engine::CollectionDef;
use cdc_protocol::etcd::PartitionInfo;
use cdc_protocol::schema::{CollectionSchema, FieldSchema};

use super::cache::CollectionEntry;

/// First ID of a user field (0 and 1 are RowID and Timestamp).
pub const FIRST_USER_FIELD_ID: i64 = 100;
/// Name of the field that holds dynamic fields.
pub const DYNAMIC_FIELD: &str = "$meta";

/// Whether a field is the dynamic-field holder.
pub fn is_dynamic_field(f: &FieldSchema) -> bool {
    f.is_dynamic || f.name == DYNAMIC_FIELD
}

/// Strips system fields and the `$meta` field from `fields`; returns whether `$meta` was there.
pub fn user_fields(fields: impl IntoIterator<Item = FieldSchema>) -> (Vec<FieldSchema>, bool) {
    let mut dynamic = false;
    let mut out: Vec<FieldSchema> = fields
        .into_iter()
        .filter(|f| f.field_id >= FIRST_USER_FIELD_ID)
        .filter(|f| {
            let d = is_dynamic_field(f);
            dynamic |= d;
            !d
        })
        .collect();
    out.sort_by_key(|f| f.field_id);
    (out, dynamic)
}

/// The definition of a collection from its cache entry and its partitions.
pub fn build_collection_def(c: &CollectionEntry, partitions: &[&PartitionInfo]) -> CollectionDef {
    let mut schema: CollectionSchema = c.info.schema.clone().unwrap_or_default();
    // Since 2.2.9 the fields live under their own keys; older values embed them.
    let source_fields = if c.fields.is_empty() {
        std::mem::take(&mut schema.fields)
    } else {
        c.fields.values().cloned().collect()
    };
    let (fields, dynamic) = user_fields(source_fields);
    schema.fields = fields;
    schema.enable_dynamic_field |= dynamic;
    if !c.functions.is_empty() {
        schema.functions = c.functions.values().cloned().collect();
    }
    let has_partition_key = schema.fields.iter().any(|f| f.is_partition_key);
    let num_partitions = if has_partition_key {
        partitions
            .iter()
            .filter(|p| p.partition_created_timestamp <= c.info.create_time)
            .count() as i64
    } else {
        0
    };
    CollectionDef {
        schema,
        shards_num: if c.info.shards_num > 0 {
            c.info.shards_num
        } else {
            c.info.virtual_channel_names.len() as i32
        },
        consistency_level: c.info.consistency_level,
        properties: c.info.properties.clone(),
        virtual_channels: c.info.virtual_channel_names.clone(),
        physical_channels: c.info.physical_channel_names.clone(),
        num_partitions,
    }
}

/// A definition from a DML-channel CreateCollection message, for when etcd does not know the
/// collection (its schema is serialized in the message).
pub fn def_from_create_message(
    m: &cdc_protocol::msg::CreateCollectionRequest,
) -> Result<CollectionDef, prost::DecodeError> {
    use prost::Message as _;
    let mut schema = CollectionSchema::decode(m.schema.clone())?;
    let (fields, dynamic) = user_fields(std::mem::take(&mut schema.fields));
    schema.fields = fields;
    schema.enable_dynamic_field |= dynamic;
    Ok(CollectionDef {
        schema,
        shards_num: m.virtual_channel_names.len() as i32,
        consistency_level: 0,
        properties: Vec::new(),
        virtual_channels: m.virtual_channel_names.clone(),
        physical_channels: m.physical_channel_names.clone(),
        num_partitions: 0,
    })
}
