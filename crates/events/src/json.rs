//! The JSON encoding of row events (one JSON object per event).
//!
//! ```json
//! {"op":"c","database":"default","collection":"books","partition":"_default",
//!  "pk":1,"row":{"id":1,"title":"...","vec":[0.1,0.2]},
//!  "ddl":null,"description":null,
//!  "ts":449012345678901248,"ts_ms":1712820000000,
//!  "source":{"channel":"by-dev-rootcoord-dml_0","offset":"42","index":0},
//!  "schema_version":1}
//! ```
//!
//! Fields keep the schema order. `row` is null for deletes and DDL; DDL events set `ddl` (the
//! kind) and `description` (a JSON object). Value forms are those of [`Value`]. Dynamic
//! fields are merged into `row` ([`DynamicFields::Merge`], the default, like Milvus query
//! results; a declared field wins over a dynamic key of the same name) or kept as the object
//! `row["$meta"]` ([`DynamicFields::Nested`]).

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use crate::error::EventError;
use crate::event::RowEvent;
use crate::schema::DYNAMIC_FIELD;
use crate::value::Value;

/// How the dynamic `$meta` field appears in JSON rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DynamicFields {
    /// Its keys become row fields.
    #[default]
    Merge,
    /// It stays one object under `$meta`.
    Nested,
}

/// Append the JSON encoding of `ev` to `out`.
pub fn encode_json(
    ev: &RowEvent,
    dynamic: DynamicFields,
    out: &mut Vec<u8>,
) -> Result<(), EventError> {
    serde_json::to_writer(&mut *out, &JsonEvent { ev, dynamic })
        .map_err(|e| EventError::internal(format!("cannot encode a row event as JSON: {e}")))
}

struct JsonEvent<'a> {
    ev: &'a RowEvent,
    dynamic: DynamicFields,
}

struct JsonRow<'a> {
    ev: &'a RowEvent,
    row: &'a [Value],
    dynamic: DynamicFields,
}

struct JsonSource<'a>(&'a RowEvent);

impl Serialize for JsonEvent<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let ev = self.ev;
        let m = &ev.meta;
        let mut map = s.serialize_map(Some(12))?;
        map.serialize_entry("op", ev.op.code())?;
        map.serialize_entry("database", &m.database)?;
        map.serialize_entry("collection", &m.collection)?;
        map.serialize_entry("partition", &m.partition)?;
        map.serialize_entry("pk", &ev.pk)?;
        match &ev.row {
            Some(row) => map.serialize_entry(
                "row",
                &JsonRow {
                    ev,
                    row,
                    dynamic: self.dynamic,
                },
            )?,
            None => map.serialize_entry("row", &())?,
        }
        map.serialize_entry("ddl", &m.ddl.as_ref().map(|d| d.kind))?;
        map.serialize_entry("description", &m.ddl.as_ref().map(|d| &d.description))?;
        map.serialize_entry("ts", &m.ts)?;
        map.serialize_entry("ts_ms", &m.ts_ms)?;
        map.serialize_entry("source", &JsonSource(ev))?;
        map.serialize_entry("schema_version", &m.schema.version)?;
        map.end()
    }
}

impl Serialize for JsonRow<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let fields = &self.ev.meta.schema.row.fields;
        let mut map = s.serialize_map(None)?;
        let mut dynamic_value = None;
        for (f, v) in fields.iter().zip(self.row) {
            if f.dynamic {
                dynamic_value = Some(v);
                continue;
            }
            map.serialize_entry(&f.name, v)?;
        }
        match (dynamic_value, self.dynamic) {
            (None | Some(Value::Null), _) => {}
            (Some(Value::Json(serde_json::Value::Object(obj))), DynamicFields::Merge) => {
                for (k, v) in obj {
                    if !fields.iter().any(|f| !f.dynamic && f.name == *k) {
                        map.serialize_entry(k, v)?;
                    }
                }
            }
            (Some(v), _) => map.serialize_entry(DYNAMIC_FIELD, v)?,
        }
        map.end()
    }
}

impl Serialize for JsonSource<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(3))?;
        map.serialize_entry("channel", &*self.0.meta.channel)?;
        map.serialize_entry("offset", &self.0.meta.offset)?;
        map.serialize_entry("index", &self.0.index)?;
        map.end()
    }
}
