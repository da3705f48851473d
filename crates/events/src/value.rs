//! Field values of one row, free of Milvus protobuf types.
//!
//! A [`Value`] is typed closely enough to be written as Avro without guessing (32 vs 64-bit
//! integers, bytes vs strings) and serializes to the documented JSON form.

use base64::Engine as _;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

/// One field value of a row.
///
/// JSON form: numbers and strings as themselves, [`Value::Bytes`] as standard base64,
/// [`Value::Json`] as the JSON document, vectors as arrays of numbers, sparse vectors as an
/// object `{"<index>": value}`, arrays as arrays. Non-finite floats become `null` in JSON.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Missing value (nullable field, deleted row, DDL).
    Null,
    /// Bool field.
    Bool(bool),
    /// Int8, Int16 and Int32 fields.
    Int(i32),
    /// Int64 field (and Timestamptz).
    Long(i64),
    /// Float field.
    Float(f32),
    /// Double field.
    Double(f64),
    /// VarChar, String and Text fields (and Geometry as WKT).
    String(String),
    /// Binary vectors (one bit per dimension, first dimension in the most significant bit of
    /// the first byte, as Milvus stores them) and Geometry as WKB.
    Bytes(Vec<u8>),
    /// JSON field, or the dynamic `$meta` field.
    Json(serde_json::Value),
    /// Float vectors, and float16 / bfloat16 vectors converted to 32-bit floats.
    FloatVector(Vec<f32>),
    /// Int8 vectors.
    Int8Vector(Vec<i8>),
    /// Sparse float vector: (index, value) pairs in the order Milvus stored them.
    SparseVector(Vec<(u32, f32)>),
    /// Array field.
    Array(Vec<Value>),
}

impl Value {
    /// The value as a message key: integers in decimal, strings as themselves; `None` for
    /// types that cannot be a Milvus primary key.
    pub fn key_string(&self) -> Option<String> {
        match self {
            Value::Long(v) => Some(v.to_string()),
            Value::Int(v) => Some(v.to_string()),
            Value::String(s) => Some(s.clone()),
            _ => None,
        }
    }

    /// True for [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(v) => s.serialize_i32(*v),
            Value::Long(v) => s.serialize_i64(*v),
            Value::Float(v) => s.serialize_f32(*v),
            Value::Double(v) => s.serialize_f64(*v),
            Value::String(v) => s.serialize_str(v),
            Value::Bytes(b) => {
                s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b))
            }
            Value::Json(j) => j.serialize(s),
            Value::FloatVector(v) => v.serialize(s),
            Value::Int8Vector(v) => v.serialize(s),
            Value::SparseVector(pairs) => {
                let mut m = s.serialize_map(Some(pairs.len()))?;
                for (i, v) in pairs {
                    m.serialize_entry(&i.to_string(), v)?;
                }
                m.end()
            }
            Value::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for it in items {
                    seq.serialize_element(it)?;
                }
                seq.end()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_forms() {
        let j = |v: &Value| serde_json::to_string(v).unwrap();
        assert_eq!(j(&Value::Null), "null");
        assert_eq!(j(&Value::Long(-7)), "-7");
        assert_eq!(j(&Value::Bytes(vec![0xff, 0x00])), "\"/wA=\"");
        assert_eq!(
            j(&Value::SparseVector(vec![(3, 0.5), (10, 1.0)])),
            r#"{"3":0.5,"10":1.0}"#
        );
        assert_eq!(j(&Value::Int8Vector(vec![-1, 2])), "[-1,2]");
        assert_eq!(j(&Value::Float(f32::NAN)), "null");
        assert_eq!(
            j(&Value::Array(vec![Value::String("a".into()), Value::Null])),
            r#"["a",null]"#
        );
    }

    #[test]
    fn keys() {
        assert_eq!(Value::Long(42).key_string().as_deref(), Some("42"));
        assert_eq!(Value::String("k".into()).key_string().as_deref(), Some("k"));
        assert_eq!(Value::FloatVector(vec![]).key_string(), None);
    }
}
