//! The Avro encoding of row events, in one of two message framings:
//!
//! - **single object** ([`AvroWire::SingleObject`], the Avro specification's framing): `C3 01`,
//!   the 8-byte Rabin fingerprint of the writer schema, then the datum;
//! - **Confluent** ([`AvroWire::Confluent`]): byte `0`, the 4-byte big-endian schema id (see
//!   [`crate::registry`] for how ids are assigned without a registry service), then the datum.
//!
//! Values follow the mapping documented in [`crate::avro_schema`]; [`avro_value`] also feeds
//! Avro object container files.

use std::collections::HashMap;

use apache_avro::types::Value as Avro;
use cdc_protocol::schema::DataType;
use serde::{Deserialize, Serialize};

use crate::error::EventError;
use crate::event::RowEvent;
use crate::schema::FieldInfo;
use crate::value::Value;

/// Framing of Avro messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AvroWire {
    /// Avro single-object encoding (fingerprint header).
    #[default]
    SingleObject,
    /// Confluent wire format (schema id header).
    Confluent,
}

/// What identifies the writer schema of an Avro message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AvroHeader {
    /// Single-object encoding: the Rabin fingerprint.
    Fingerprint([u8; 8]),
    /// Confluent framing: the schema id.
    SchemaId(u32),
}

/// Split an Avro message into its header and datum; `None` when it has neither framing.
pub fn split_avro_message(msg: &[u8]) -> Option<(AvroHeader, &[u8])> {
    match msg {
        [0xC3, 0x01, rest @ ..] if rest.len() >= 8 => {
            let mut fp = [0u8; 8];
            fp.copy_from_slice(&rest[..8]);
            Some((AvroHeader::Fingerprint(fp), &rest[8..]))
        }
        [0x00, a, b, c, d, rest @ ..] => Some((
            AvroHeader::SchemaId(u32::from_be_bytes([*a, *b, *c, *d])),
            rest,
        )),
        _ => None,
    }
}

/// Append the Avro encoding of `ev`, framed as `wire`, to `out`.
pub fn encode_avro(ev: &RowEvent, wire: AvroWire, out: &mut Vec<u8>) -> Result<(), EventError> {
    let value = avro_value(ev)?;
    let schema = ev.schema();
    let start = out.len();
    {
        let mut w = schema
            .writer
            .lock()
            .map_err(|_| EventError::internal("the Avro writer lock is poisoned"))?;
        w.write_value_ref(&value, out).map_err(|e| {
            EventError::internal(format!(
                "row event of {}.{} does not match its Avro schema (version {}): {e}",
                ev.meta.database, ev.meta.collection, schema.version
            ))
        })?;
    }
    if wire == AvroWire::Confluent {
        // Replace the 10-byte single-object header by the 5-byte Confluent header.
        let mut header = [0u8; 5];
        header[1..].copy_from_slice(&schema.schema_id.to_be_bytes());
        out.splice(start..start + 10, header);
    }
    Ok(())
}

/// Append the bare Avro datum of `ev` (no framing) to `out`, e.g. for an object container
/// file whose header holds the schema.
pub fn encode_avro_datum(ev: &RowEvent, out: &mut Vec<u8>) -> Result<(), EventError> {
    let start = out.len();
    encode_avro(ev, AvroWire::SingleObject, out)?;
    out.drain(start..start + 10);
    Ok(())
}

fn nullable(f_nullable: bool, v: Avro) -> Avro {
    if !f_nullable {
        return v;
    }
    match v {
        Avro::Null => Avro::Union(0, Box::new(Avro::Null)),
        other => Avro::Union(1, Box::new(other)),
    }
}

/// The Avro value of `ev` for its envelope schema.
pub fn avro_value(ev: &RowEvent) -> Result<Avro, EventError> {
    let m = &ev.meta;
    let schema = &m.schema;
    let opt_string = |s: Option<String>| nullable(true, s.map(Avro::String).unwrap_or(Avro::Null));
    let pk = match &ev.pk {
        Value::Null => Avro::Null,
        v => plain(v),
    };
    let row = match &ev.row {
        None => {
            if schema.row.fields.is_empty() {
                Avro::Null
            } else {
                Avro::Union(0, Box::new(Avro::Null))
            }
        }
        Some(values) => {
            let mut fields = Vec::with_capacity(values.len());
            for ((f, v), name) in schema.row.fields.iter().zip(values).zip(&schema.avro_names) {
                fields.push((name.clone(), field_value(f, v)?));
            }
            Avro::Union(1, Box::new(Avro::Record(fields)))
        }
    };
    let description = m
        .ddl
        .as_ref()
        .map(|d| serde_json::to_string(&d.description).unwrap_or_default());
    Ok(Avro::Record(vec![
        ("op".into(), Avro::String(ev.op.code().into())),
        ("database".into(), Avro::String(m.database.clone())),
        ("collection".into(), Avro::String(m.collection.clone())),
        ("partition".into(), opt_string(m.partition.clone())),
        ("pk".into(), nullable(true, pk)),
        ("row".into(), row),
        (
            "ddl".into(),
            opt_string(m.ddl.as_ref().map(|d| d.kind.to_string())),
        ),
        ("description".into(), opt_string(description)),
        ("ts".into(), Avro::Long(m.ts as i64)),
        ("ts_ms".into(), Avro::TimestampMillis(m.ts_ms as i64)),
        (
            "source".into(),
            Avro::Record(vec![
                ("channel".into(), Avro::String(m.channel.to_string())),
                ("offset".into(), Avro::String(m.offset.clone())),
                ("index".into(), Avro::Int(ev.index as i32)),
            ]),
        ),
        ("schema_version".into(), Avro::Int(schema.version as i32)),
    ]))
}

fn field_value(f: &FieldInfo, v: &Value) -> Result<Avro, EventError> {
    if v.is_null() {
        if !f.nullable {
            return Err(EventError::decode(format!(
                "field {:?} is null but not nullable",
                f.name
            )));
        }
        return Ok(Avro::Union(0, Box::new(Avro::Null)));
    }
    if f.data_type == DataType::Geometry {
        // Union of bytes and string, after null when nullable.
        let base = u32::from(f.nullable);
        return Ok(match v {
            Value::String(s) => Avro::Union(base + 1, Box::new(Avro::String(s.clone()))),
            other => Avro::Union(base, Box::new(plain(other))),
        });
    }
    Ok(nullable(f.nullable, plain(v)))
}

/// A value without union wrapping.
fn plain(v: &Value) -> Avro {
    match v {
        Value::Null => Avro::Null,
        Value::Bool(b) => Avro::Boolean(*b),
        Value::Int(i) => Avro::Int(*i),
        Value::Long(i) => Avro::Long(*i),
        Value::Float(x) => Avro::Float(*x),
        Value::Double(x) => Avro::Double(*x),
        Value::String(s) => Avro::String(s.clone()),
        Value::Bytes(b) => Avro::Bytes(b.clone()),
        Value::Json(j) => Avro::String(j.to_string()),
        Value::FloatVector(xs) => Avro::Array(xs.iter().map(|x| Avro::Float(*x)).collect()),
        Value::Int8Vector(xs) => Avro::Array(xs.iter().map(|x| Avro::Int(i32::from(*x))).collect()),
        Value::SparseVector(pairs) => Avro::Map(
            pairs
                .iter()
                .map(|(i, x)| (i.to_string(), Avro::Float(*x)))
                .collect::<HashMap<_, _>>(),
        ),
        Value::Array(items) => Avro::Array(items.iter().map(plain).collect()),
    }
}

#[cfg(test)]
#[path = "avro_tests.rs"]
mod tests;
