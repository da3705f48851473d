//! Row events: one per inserted, upserted or deleted row and one per DDL, built from engine
//! [`ChangeEvent`]s by a [`RowConverter`].

use std::collections::HashMap;
use std::sync::Arc;

use cdc_engine::{ChangeEvent, CollectionDef, Ddl, Op, RowBatch};
use cdc_protocol::schema::i_ds::IdField;
use cdc_protocol::schema::{DataType, IDs};

use crate::ddl::describe;
use crate::error::EventError;
use crate::pivot::pivot;
use crate::registry::{EventSchema, SchemaRegistry};
use crate::schema::RowSchema;
use crate::value::Value;

/// What happened to a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RowOp {
    /// Inserted (`c`).
    Insert,
    /// Replaced by an upsert (`u`).
    Upsert,
    /// Deleted (`d`); the event carries only the primary key.
    Delete,
    /// Read by the source's initial snapshot (`r`, Debezium's convention): the row existed
    /// before the pipeline started.
    Read,
    /// A schema or control operation (`ddl`).
    Ddl,
}

impl RowOp {
    /// The code written in events and headers: `c`, `u`, `d`, `r` or `ddl`.
    pub fn code(self) -> &'static str {
        match self {
            RowOp::Insert => "c",
            RowOp::Upsert => "u",
            RowOp::Delete => "d",
            RowOp::Read => "r",
            RowOp::Ddl => "ddl",
        }
    }
}

/// A DDL carried by a row event.
#[derive(Debug, Clone, PartialEq)]
pub struct DdlInfo {
    /// Operation kind (`create_collection`, `drop_index`, ...: [`Ddl::kind`]).
    pub kind: &'static str,
    /// What changed, as JSON ([`crate::ddl::describe`]).
    pub description: serde_json::Value,
}

/// What the rows of one change share.
#[derive(Debug)]
pub struct EventMeta {
    /// Database name.
    pub database: String,
    /// Collection name (empty for database DDL).
    pub collection: String,
    /// Partition name; `None` for deletes that apply to all partitions and for DDL.
    pub partition: Option<String>,
    /// Milvus hybrid timestamp of the change.
    pub ts: u64,
    /// Physical part of `ts`: milliseconds since the Unix epoch.
    pub ts_ms: u64,
    /// Source channel the change was read from.
    pub channel: Arc<str>,
    /// Position in that channel: the Kafka offset in decimal for 8-byte offsets, else
    /// `0x` + hex.
    pub offset: String,
    /// Set on DDL events.
    pub ddl: Option<DdlInfo>,
    /// The collection's schema version (the generic DDL envelope when unknown).
    pub schema: Arc<EventSchema>,
}

/// One row-level change.
#[derive(Debug, Clone)]
pub struct RowEvent {
    /// What happened.
    pub op: RowOp,
    /// Shared with the other rows of the same change.
    pub meta: Arc<EventMeta>,
    /// Primary key value ([`Value::Null`] for DDL).
    pub pk: Value,
    /// The row, laid out as `meta.schema.row.fields`; `None` for deletes and DDL.
    pub row: Option<Vec<Value>>,
    /// Position of the row inside its change (0 for DDL); with the source channel and offset it
    /// identifies the event uniquely.
    pub index: u32,
}

impl RowEvent {
    /// The message key: the primary key as a string for rows, the collection for collection
    /// DDL, the database for database DDL.
    pub fn key(&self) -> String {
        match self.pk.key_string() {
            Some(k) => k,
            None if !self.meta.collection.is_empty() => self.meta.collection.clone(),
            None => self.meta.database.clone(),
        }
    }

    /// The schema version of the event.
    pub fn schema(&self) -> &EventSchema {
        &self.meta.schema
    }
}

struct Cached {
    def: Arc<CollectionDef>,
    collection_id: i64,
    schema: Arc<EventSchema>,
}

/// Turns engine changes into row events, caching each collection's derived schema and
/// assigning schema versions through its [`SchemaRegistry`].
pub struct RowConverter {
    registry: SchemaRegistry,
    cache: HashMap<(String, String), Cached>,
}

impl RowConverter {
    /// A converter using `registry` for versions and ids.
    pub fn new(registry: SchemaRegistry) -> Self {
        Self {
            registry,
            cache: HashMap::new(),
        }
    }

    /// The registry (for [`SchemaRegistry::take_new`] and persistence).
    pub fn registry_mut(&mut self) -> &mut SchemaRegistry {
        &mut self.registry
    }

    /// The row events of one change, in row order. Errors name the collection, field, channel
    /// and offset.
    pub fn convert(&mut self, ev: &ChangeEvent) -> Result<Vec<RowEvent>, EventError> {
        let offset = cdc_state::render_offset(&ev.position.offset);
        let at = || {
            format!(
                "collection {}.{}, channel {}, offset {}",
                ev.database, ev.collection, ev.position.channel, offset
            )
        };
        let meta = |partition: Option<String>, ddl: Option<DdlInfo>, schema| {
            Arc::new(EventMeta {
                database: ev.database.clone(),
                collection: ev.collection.clone(),
                partition,
                ts: ev.position.ts,
                ts_ms: cdc_protocol::ts::physical_ms(ev.position.ts),
                channel: ev.position.channel.clone(),
                offset: offset.clone(),
                ddl,
                schema,
            })
        };
        match &ev.op {
            Op::Insert(b) => {
                let schema = self.dml_schema(ev).map_err(|e| e.context(at()))?;
                rows(
                    if ev.is_snapshot_read() {
                        RowOp::Read
                    } else {
                        RowOp::Insert
                    },
                    b,
                    meta(Some(b.partition.clone()), None, schema),
                )
                .map_err(|e| e.context(at()))
            }
            Op::Upsert { insert, .. } => {
                let schema = self.dml_schema(ev).map_err(|e| e.context(at()))?;
                rows(
                    RowOp::Upsert,
                    insert,
                    meta(Some(insert.partition.clone()), None, schema),
                )
                .map_err(|e| e.context(at()))
            }
            Op::Delete(d) => {
                let schema = self.dml_schema(ev).map_err(|e| e.context(at()))?;
                let keys = primary_keys(&d.primary_keys, &schema.row).map_err(|m| {
                    EventError::decode(format!("delete of {} keys: {m}", d.num_rows)).context(at())
                })?;
                let m = meta(d.partition.clone(), None, schema);
                Ok(keys
                    .into_iter()
                    .enumerate()
                    .map(|(i, pk)| RowEvent {
                        op: RowOp::Delete,
                        meta: m.clone(),
                        pk,
                        row: None,
                        index: i as u32,
                    })
                    .collect())
            }
            Op::Ddl(ddl) => {
                let schema = self.ddl_schema(ev, ddl).map_err(|e| e.context(at()))?;
                let info = DdlInfo {
                    kind: ddl.kind(),
                    description: describe(ddl),
                };
                Ok(vec![RowEvent {
                    op: RowOp::Ddl,
                    meta: meta(None, Some(info), schema),
                    pk: Value::Null,
                    row: None,
                    index: 0,
                }])
            }
        }
    }

    fn dml_schema(&mut self, ev: &ChangeEvent) -> Result<Arc<EventSchema>, EventError> {
        let Some(def) = &ev.collection_def else {
            return Err(EventError::decode(
                "the source gave no collection definition with this change; row events need \
                 the schema to find the primary key and the field types",
            ));
        };
        self.schema_of(&ev.database, &ev.collection, ev.collection_id, def)
    }

    fn ddl_schema(&mut self, ev: &ChangeEvent, ddl: &Ddl) -> Result<Arc<EventSchema>, EventError> {
        if let Ddl::CreateCollection(def) = ddl {
            let def = Arc::new((**def).clone());
            return self.schema_of(&ev.database, &ev.collection, ev.collection_id, &def);
        }
        match &ev.collection_def {
            Some(def) if !ev.collection.is_empty() => {
                self.schema_of(&ev.database, &ev.collection, ev.collection_id, def)
            }
            _ => self.registry.register(RowSchema::empty("", "")),
        }
    }

    fn schema_of(
        &mut self,
        database: &str,
        collection: &str,
        collection_id: i64,
        def: &Arc<CollectionDef>,
    ) -> Result<Arc<EventSchema>, EventError> {
        let key = (database.to_string(), collection.to_string());
        if let Some(c) = self.cache.get(&key) {
            if c.collection_id == collection_id
                && (Arc::ptr_eq(&c.def, def) || c.def.schema == def.schema)
            {
                return Ok(c.schema.clone());
            }
        }
        let row = RowSchema::from_milvus(database, collection, collection_id, &def.schema)?;
        let schema = self.registry.register(row)?;
        self.cache.insert(
            key,
            Cached {
                def: def.clone(),
                collection_id,
                schema: schema.clone(),
            },
        );
        Ok(schema)
    }
}

fn rows(op: RowOp, b: &RowBatch, meta: Arc<EventMeta>) -> Result<Vec<RowEvent>, EventError> {
    let schema = &meta.schema.row;
    let Some(pk_slot) = schema.primary else {
        return Err(EventError::decode(
            "the collection schema has no primary key field",
        ));
    };
    let rows = pivot(schema, &b.columns, b.num_rows)
        .map_err(|m| EventError::decode(format!("insert of {} rows: {m}", b.num_rows)))?;
    Ok(rows
        .into_iter()
        .enumerate()
        .map(|(i, row)| RowEvent {
            op,
            meta: meta.clone(),
            pk: row[pk_slot].clone(),
            row: Some(row),
            index: i as u32,
        })
        .collect())
}

fn primary_keys(ids: &IDs, schema: &RowSchema) -> Result<Vec<Value>, String> {
    let pk_type = schema.primary_field().map(|f| f.data_type);
    match (&ids.id_field, pk_type) {
        (None, _) => Ok(Vec::new()),
        (Some(IdField::IntId(a)), Some(DataType::Int64) | None) => {
            Ok(a.data.iter().map(|k| Value::Long(*k)).collect())
        }
        (Some(IdField::StrId(a)), Some(DataType::VarChar | DataType::String) | None) => {
            Ok(a.data.iter().map(|k| Value::String(k.clone())).collect())
        }
        (Some(IdField::IntId(_)), Some(t)) | (Some(IdField::StrId(_)), Some(t)) => Err(format!(
            "the keys' type does not match the primary key type {}",
            t.as_str_name()
        )),
    }
}

#[cfg(test)]
#[path = "event_tests.rs"]
mod tests;
