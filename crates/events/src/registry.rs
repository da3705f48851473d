//! Schema versions and ids: a small in-process schema registry.
//!
//! Every distinct (collection id, Avro schema) pair of a collection is a **version**, numbered
//! 1, 2, ... in the order they are first seen: re-creating a collection (new collection id) or
//! changing its fields gives a new version. The generic DDL envelope has version 0.
//!
//! Each schema has a 32-bit **schema id** for the Confluent wire format (magic byte 0 + the id
//! big-endian + the Avro datum). No schema registry service runs here, so ids are assigned
//! locally: a static mapping `fingerprint → id` from the configuration wins; otherwise the id
//! is the low 31 bits of the schema's Rabin fingerprint (read little-endian, 0 becomes 1). Ids
//! are thus stable across restarts and processes without coordination; to use a real
//! registry's ids, register the published schema there and put its id in the static mapping.
//!
//! The registry state is a list of [`SchemaRecord`]s. Sinks publish each new record next to
//! their data (Kafka: a schema topic; files: a state file) and give the records back with
//! [`SchemaRegistry::restore`] on restart so version numbers do not restart at 1.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use apache_avro::rabin::Rabin;
use apache_avro::GenericSingleObjectWriter;
use serde::{Deserialize, Serialize};

use crate::avro_schema::{envelope, field_names};
use crate::error::EventError;
use crate::schema::RowSchema;

/// A registered schema: the row layout, its Avro envelope and identifiers.
pub struct EventSchema {
    /// The row layout.
    pub row: RowSchema,
    /// Version of the collection's schema (0 for the generic DDL envelope).
    pub version: u32,
    /// The Avro envelope schema.
    pub avro: apache_avro::Schema,
    /// The Avro envelope schema as JSON text (what is published).
    pub avro_json: String,
    /// Avro field name of each row field.
    pub avro_names: Vec<String>,
    /// Rabin fingerprint (CRC-64-AVRO) of the schema's canonical form, as written in the
    /// single-object header.
    pub fingerprint: [u8; 8],
    /// Id for the Confluent wire format.
    pub schema_id: u32,
    pub(crate) writer: Mutex<GenericSingleObjectWriter>,
}

impl std::fmt::Debug for EventSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSchema")
            .field("database", &self.row.database)
            .field("collection", &self.row.collection)
            .field("version", &self.version)
            .field("fingerprint", &self.fingerprint_hex())
            .field("schema_id", &self.schema_id)
            .finish()
    }
}

impl EventSchema {
    /// The fingerprint as 16 lowercase hex digits (header byte order).
    pub fn fingerprint_hex(&self) -> String {
        hex(&self.fingerprint)
    }

    /// What is published about this schema.
    pub fn record(&self) -> SchemaRecord {
        SchemaRecord {
            database: self.row.database.clone(),
            collection: self.row.collection.clone(),
            collection_id: self.row.collection_id,
            version: self.version,
            fingerprint: self.fingerprint_hex(),
            schema_id: self.schema_id,
            schema: self.avro_json.clone(),
        }
    }
}

/// A published schema: enough to decode messages and to restore version numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaRecord {
    /// Database.
    pub database: String,
    /// Collection (empty for the generic DDL envelope).
    pub collection: String,
    /// Source collection id.
    pub collection_id: i64,
    /// Schema version of the collection.
    pub version: u32,
    /// Rabin fingerprint, 16 hex digits.
    pub fingerprint: String,
    /// Confluent schema id.
    pub schema_id: u32,
    /// The Avro schema (JSON text).
    pub schema: String,
}

#[derive(Debug, Clone)]
struct VersionEntry {
    collection_id: i64,
    fingerprint: String,
    version: u32,
}

/// Assigns versions and ids to collection schemas; see the module documentation.
#[derive(Default)]
pub struct SchemaRegistry {
    versions: HashMap<(String, String), Vec<VersionEntry>>,
    static_ids: BTreeMap<String, u32>,
    live: HashMap<(String, String, i64, String), Arc<EventSchema>>,
    records: BTreeMap<(String, String, u32, String), SchemaRecord>,
    new: Vec<Arc<EventSchema>>,
}

impl SchemaRegistry {
    /// A registry with static `fingerprint (16 hex digits) → schema id` assignments.
    pub fn new(static_ids: BTreeMap<String, u32>) -> Self {
        Self {
            static_ids: static_ids
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
            ..Default::default()
        }
    }

    /// Take back records published earlier so that known schemas keep their versions (they
    /// are not reported as new again).
    pub fn restore(&mut self, records: impl IntoIterator<Item = SchemaRecord>) {
        for r in records {
            self.records.insert(
                (
                    r.database.clone(),
                    r.collection.clone(),
                    r.version,
                    r.fingerprint.clone(),
                ),
                r.clone(),
            );
            let entries = self
                .versions
                .entry((r.database.clone(), r.collection.clone()))
                .or_default();
            let known = entries
                .iter()
                .any(|e| e.collection_id == r.collection_id && e.fingerprint == r.fingerprint);
            if !known {
                entries.push(VersionEntry {
                    collection_id: r.collection_id,
                    fingerprint: r.fingerprint,
                    version: r.version,
                });
                entries.sort_by_key(|e| e.version);
            }
        }
    }

    /// Every version known, as records (for sinks that persist the registry themselves).
    pub fn records(&self) -> Vec<SchemaRecord> {
        self.records.values().cloned().collect()
    }

    /// The registered schema of `row` (registering it, with the next version, when new).
    pub fn register(&mut self, row: RowSchema) -> Result<Arc<EventSchema>, EventError> {
        let json = envelope(&row);
        let avro = apache_avro::Schema::parse(&json).map_err(|e| {
            EventError::internal(format!(
                "generated Avro schema of {}.{} is invalid: {e}",
                row.database, row.collection
            ))
        })?;
        let fp_bytes = avro.fingerprint::<Rabin>().bytes;
        let mut fingerprint = [0u8; 8];
        for (d, s) in fingerprint.iter_mut().zip(&fp_bytes) {
            *d = *s;
        }
        let fp_hex = hex(&fingerprint);
        let live_key = (
            row.database.clone(),
            row.collection.clone(),
            row.collection_id,
            fp_hex.clone(),
        );
        if let Some(s) = self.live.get(&live_key) {
            return Ok(s.clone());
        }
        let generic = row.fields.is_empty();
        let entries = self
            .versions
            .entry((row.database.clone(), row.collection.clone()))
            .or_default();
        let (version, is_new) = if generic {
            (0, entries.is_empty())
        } else if let Some(e) = entries
            .iter()
            .find(|e| e.collection_id == row.collection_id && e.fingerprint == fp_hex)
        {
            (e.version, false)
        } else {
            (
                entries.iter().map(|e| e.version).max().unwrap_or(0) + 1,
                true,
            )
        };
        if is_new {
            entries.push(VersionEntry {
                collection_id: row.collection_id,
                fingerprint: fp_hex.clone(),
                version,
            });
        }
        let schema_id = self
            .static_ids
            .get(&fp_hex)
            .copied()
            .unwrap_or_else(|| derived_id(&fingerprint));
        let writer = GenericSingleObjectWriter::new_with_capacity(&avro, 1024)
            .map_err(|e| EventError::internal(format!("cannot prepare the Avro writer: {e}")))?;
        let schema = Arc::new(EventSchema {
            avro_names: field_names(&row),
            row,
            version,
            avro,
            avro_json: json.to_string(),
            fingerprint,
            schema_id,
            writer: Mutex::new(writer),
        });
        self.live.insert(live_key, schema.clone());
        let rec = schema.record();
        self.records.insert(
            (
                rec.database.clone(),
                rec.collection.clone(),
                rec.version,
                rec.fingerprint.clone(),
            ),
            rec,
        );
        if is_new {
            self.new.push(schema.clone());
        }
        Ok(schema)
    }

    /// Schemas registered (with a new version) since the last call, oldest first: the sink
    /// publishes them before the first message that uses them.
    pub fn take_new(&mut self) -> Vec<Arc<EventSchema>> {
        std::mem::take(&mut self.new)
    }
}

fn derived_id(fp: &[u8; 8]) -> u32 {
    let id = u32::from_le_bytes([fp[0], fp[1], fp[2], fp[3]]) & 0x7fff_ffff;
    id.max(1)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample;

    fn rs(id: i64) -> RowSchema {
        RowSchema::from_milvus("default", "all_types", id, &sample::schema()).unwrap()
    }

    #[test]
    fn versions_follow_recreation_and_changes() {
        let mut reg = SchemaRegistry::default();
        let a = reg.register(rs(1)).unwrap();
        assert_eq!(a.version, 1);
        assert_eq!(reg.register(rs(1)).unwrap().version, 1);
        // Re-created: new collection id, same fields.
        assert_eq!(reg.register(rs(2)).unwrap().version, 2);
        // Changed: a field less.
        let mut changed = rs(2);
        changed.fields.remove(1);
        changed.primary = Some(0);
        changed.dynamic = Some(changed.fields.len() - 1);
        let c = reg.register(changed).unwrap();
        assert_eq!(c.version, 3);
        assert_ne!(c.fingerprint, a.fingerprint);
        assert_eq!(reg.take_new().len(), 3);
        assert!(reg.take_new().is_empty());
        assert_eq!(reg.register(RowSchema::empty("db", "")).unwrap().version, 0);
    }

    #[test]
    fn restore_keeps_versions_and_static_ids_win() {
        let mut reg = SchemaRegistry::default();
        reg.register(rs(1)).unwrap();
        let second = reg.register(rs(2)).unwrap();
        let records = reg.records();
        assert_eq!(records.len(), 2);

        let mut ids = BTreeMap::new();
        ids.insert(second.fingerprint_hex().to_uppercase(), 77);
        let mut again = SchemaRegistry::new(ids);
        again.restore(records);
        let s = again.register(rs(2)).unwrap();
        assert_eq!(s.version, 2);
        assert_eq!(s.schema_id, 77);
        assert!(again.take_new().is_empty(), "restored schemas are not new");
        assert_eq!(again.register(rs(3)).unwrap().version, 3);
        // Derived ids are stable and positive.
        let d = SchemaRegistry::default().register(rs(1)).unwrap();
        assert_eq!(d.schema_id, derived_id(&d.fingerprint));
        assert!(d.schema_id > 0 && d.schema_id <= i32::MAX as u32);
    }
}
