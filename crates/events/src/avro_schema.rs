//! Avro schemas of row events, generated from a collection's [`RowSchema`].
//!
//! One record per collection version: the envelope `<collection>_event` in namespace
//! `milvus.<database>`, whose nullable `row` field is the record `<collection>` with one field
//! per Milvus field. Deletes and DDL leave `row` null, DDL also `pk`. Names that are not valid
//! Avro names are rewritten (`[A-Za-z_][A-Za-z0-9_]*`, other characters become `_`); the
//! dynamic `$meta` field is `_meta` (JSON text). Every row field carries its Milvus type and
//! original name as the custom attributes `milvus_type` and `milvus_name`.
//!
//! | Milvus | Avro |
//! |---|---|
//! | Bool | boolean |
//! | Int8, Int16, Int32 | int |
//! | Int64, Timestamptz | long |
//! | Float / Double | float / double |
//! | VarChar, String, Text | string |
//! | JSON, `$meta` | string (JSON text) |
//! | Array | array of the element type |
//! | Geometry | union of bytes (WKB) and string (WKT) |
//! | FloatVector, Float16Vector, BFloat16Vector | array of float |
//! | BinaryVector | bytes |
//! | Int8Vector | array of int |
//! | SparseFloatVector | map of float (keys: the indices in decimal) |
//!
//! Nullable fields (and `$meta`) are `["null", T]` with default null. Sparse vector map
//! entries are written in no particular order (Avro maps are unordered).

use cdc_protocol::schema::DataType;
use serde_json::{json, Value as Json};

use crate::schema::{FieldInfo, RowSchema};

/// Namespace and name of the envelope used for DDL of objects without a known schema
/// (database DDL, drops of unknown collections).
pub const DDL_ENVELOPE: (&str, &str) = ("milvus_cdc", "ddl_event");

/// A valid Avro name for `s`.
pub fn avro_name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// Avro field names of `rs.fields`, in order, unique.
pub fn field_names(rs: &RowSchema) -> Vec<String> {
    let mut names: Vec<String> = Vec::with_capacity(rs.fields.len());
    for f in &rs.fields {
        let mut n = if f.dynamic {
            "_meta".to_string()
        } else {
            avro_name(&f.name)
        };
        while names.contains(&n) {
            n.push('_');
        }
        names.push(n);
    }
    names
}

/// The Avro type of a Milvus type that is not nullable; `Err` lists union branches (Geometry).
fn base_type(f: &FieldInfo) -> Result<Json, Vec<Json>> {
    use DataType as T;
    Ok(match f.data_type {
        T::Bool => json!("boolean"),
        T::Int8 | T::Int16 | T::Int32 => json!("int"),
        T::Int64 | T::Timestamptz => json!("long"),
        T::Float => json!("float"),
        T::Double => json!("double"),
        T::VarChar | T::String | T::Text | T::Json => json!("string"),
        T::Array => json!({"type": "array", "items": element_type(f.element_type)}),
        T::Geometry => return Err(vec![json!("bytes"), json!("string")]),
        T::FloatVector | T::Float16Vector | T::BFloat16Vector => {
            json!({"type": "array", "items": "float"})
        }
        T::BinaryVector => json!("bytes"),
        T::Int8Vector => json!({"type": "array", "items": "int"}),
        T::SparseFloatVector => json!({"type": "map", "values": "float"}),
        // Rejected when the RowSchema is built.
        T::None | T::ArrayOfVector | T::ArrayOfStruct | T::Struct => json!("null"),
    })
}

fn element_type(t: DataType) -> &'static str {
    use DataType as T;
    match t {
        T::Bool => "boolean",
        T::Int8 | T::Int16 | T::Int32 => "int",
        T::Int64 => "long",
        T::Float => "float",
        T::Double => "double",
        _ => "string",
    }
}

/// The Avro type of a field, with null first when it is nullable.
pub fn field_type(f: &FieldInfo) -> Json {
    match (base_type(f), f.nullable) {
        (Ok(t), false) => t,
        (Ok(t), true) => json!(["null", t]),
        (Err(branches), false) => Json::Array(branches),
        (Err(mut branches), true) => {
            branches.insert(0, json!("null"));
            Json::Array(branches)
        }
    }
}

/// The envelope schema of `rs` as JSON. An `rs` without fields gives the generic DDL envelope.
pub fn envelope(rs: &RowSchema) -> Json {
    let generic = rs.fields.is_empty();
    let (namespace, name, base) = if generic {
        (
            DDL_ENVELOPE.0.to_string(),
            DDL_ENVELOPE.1.to_string(),
            String::new(),
        )
    } else {
        let base = avro_name(&rs.collection);
        (
            format!("milvus.{}", avro_name(&rs.database)),
            format!("{base}_event"),
            base,
        )
    };
    let pk_type = rs
        .primary_field()
        .and_then(|f| base_type(f).ok())
        .unwrap_or_else(|| json!("string"));
    let row_type = if generic {
        json!("null")
    } else {
        let names = field_names(rs);
        let fields: Vec<Json> = rs
            .fields
            .iter()
            .zip(&names)
            .map(|(f, n)| {
                let mut o = json!({
                    "name": n,
                    "type": field_type(f),
                    "milvus_type": if f.dynamic { "$meta" } else { f.data_type.as_str_name() },
                    "milvus_name": f.name,
                });
                if f.nullable {
                    o["default"] = Json::Null;
                }
                o
            })
            .collect();
        json!(["null", {
            "type": "record",
            "name": base,
            "doc": format!("A row of Milvus collection {}.{}.", rs.database, rs.collection),
            "fields": fields,
        }])
    };
    let source_name = if generic {
        "source".to_string()
    } else {
        format!("{base}_source")
    };
    json!({
        "type": "record",
        "name": name,
        "namespace": namespace,
        "doc": "A row-level change of a Milvus collection, or a DDL (milvus-cdc).",
        "fields": [
            {"name": "op", "type": "string",
             "doc": "c = insert, u = upsert, d = delete, ddl = schema/control operation"},
            {"name": "database", "type": "string"},
            {"name": "collection", "type": "string"},
            {"name": "partition", "type": ["null", "string"], "default": null},
            {"name": "pk", "type": ["null", pk_type], "default": null},
            {"name": "row", "type": row_type, "default": null},
            {"name": "ddl", "type": ["null", "string"], "default": null},
            {"name": "description", "type": ["null", "string"], "default": null,
             "doc": "DDL description as JSON text"},
            {"name": "ts", "type": "long", "doc": "Milvus hybrid timestamp"},
            {"name": "ts_ms", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "source", "type": {
                "type": "record",
                "name": source_name,
                "fields": [
                    {"name": "channel", "type": "string"},
                    {"name": "offset", "type": "string"},
                    {"name": "index", "type": "int"}
                ]
            }},
            {"name": "schema_version", "type": "int"}
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_valid() {
        assert_eq!(avro_name("my-coll"), "my_coll");
        assert_eq!(avro_name("1abc"), "_1abc");
        assert_eq!(avro_name(""), "_");
        assert_eq!(avro_name("ok_Name9"), "ok_Name9");
    }

    #[test]
    fn sample_schema_parses_and_maps_types() {
        let def = crate::sample::collection_def();
        let rs = RowSchema::from_milvus("default", "all_types", 1, &def.schema).unwrap();
        let j = envelope(&rs);
        apache_avro::Schema::parse(&j).unwrap();
        let row = &j["fields"][5]["type"][1];
        let ty = |name: &str| {
            row["fields"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["name"] == name)
                .unwrap()["type"]
                .clone()
        };
        assert_eq!(ty("id"), json!("long"));
        assert_eq!(ty("i8"), json!("int"));
        assert_eq!(ty("sv"), json!({"type": "map", "values": "float"}));
        assert_eq!(ty("bv"), json!("bytes"));
        assert_eq!(ty("n"), json!(["null", "int"]));
        assert_eq!(ty("_meta"), json!(["null", "string"]));
        assert_eq!(j["fields"][4]["type"], json!(["null", "long"]));
    }

    #[test]
    fn generic_ddl_envelope_parses() {
        let j = envelope(&RowSchema::empty("db", ""));
        let s = apache_avro::Schema::parse(&j).unwrap();
        assert!(s.canonical_form().contains("milvus_cdc.ddl_event"));
    }
}
