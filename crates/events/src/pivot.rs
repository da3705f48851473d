//! Milvus column batches (`FieldData`) pivoted to rows, one pass per column.
//!
//! Nullable columns are accepted in both layouts Milvus uses: full length with placeholder
//! values at null positions (what the proxy writes to the message queue), or compacted to the
//! valid rows only (what some SDK paths send).

use cdc_protocol::schema::field_data::Field;
use cdc_protocol::schema::scalar_field::Data as Scalar;
use cdc_protocol::schema::vector_field::Data as Vector;
use cdc_protocol::schema::{DataType, FieldData, ScalarField, VectorField};
use tracing::debug;

use crate::schema::{FieldInfo, RowSchema};
use crate::value::Value;
use crate::vector::{bf16_to_f32, f16_to_f32, half_words_to_f32, sparse_row};

/// Pivot `columns` of `num_rows` rows into rows laid out as `schema.fields`. Columns of
/// unknown fields are skipped; a missing column is an error unless its field is nullable.
/// Errors name the field.
pub fn pivot(
    schema: &RowSchema,
    columns: &[FieldData],
    num_rows: usize,
) -> Result<Vec<Vec<Value>>, String> {
    let width = schema.fields.len();
    let mut rows: Vec<Vec<Value>> = (0..num_rows).map(|_| vec![Value::Null; width]).collect();
    let mut seen = vec![false; width];
    for col in columns {
        let Some(slot) = schema.slot_of(col.field_id, &col.field_name, col.is_dynamic) else {
            debug!(
                message = "Skipping a column that is not in the collection schema.",
                collection = %schema.collection,
                field = %col.field_name,
                field_id = col.field_id
            );
            continue;
        };
        let info = &schema.fields[slot];
        fill_column(&mut rows, slot, info, col)
            .map_err(|m| format!("field {:?}: {m}", info.name))?;
        seen[slot] = true;
    }
    if let Some(missing) = schema
        .fields
        .iter()
        .zip(&seen)
        .find(|(f, seen)| !**seen && !f.nullable)
    {
        return Err(format!(
            "field {:?}: the insert has no column for this non-nullable field",
            missing.0.name
        ));
    }
    Ok(rows)
}

/// Write `len` values produced by `get` into `rows[..][slot]`, honouring `valid` flags.
fn fill(
    rows: &mut [Vec<Value>],
    slot: usize,
    valid: &[bool],
    len: usize,
    mut get: impl FnMut(usize) -> Result<Value, String>,
) -> Result<(), String> {
    let n = rows.len();
    let dense = if valid.is_empty() {
        if len != n {
            return Err(format!("the column has {len} values for {n} rows"));
        }
        true
    } else {
        if valid.len() != n {
            return Err(format!("valid_data has {} flags for {n} rows", valid.len()));
        }
        let present = valid.iter().filter(|v| **v).count();
        if len != n && len != present {
            return Err(format!(
                "the column has {len} values for {n} rows of which {present} are not null"
            ));
        }
        len == n
    };
    let mut k = 0;
    for (i, row) in rows.iter_mut().enumerate() {
        if !valid.is_empty() && !valid[i] {
            continue;
        }
        let idx = if dense { i } else { k };
        k += 1;
        row[slot] = get(idx)?;
    }
    Ok(())
}

fn fill_column(
    rows: &mut [Vec<Value>],
    slot: usize,
    info: &FieldInfo,
    col: &FieldData,
) -> Result<(), String> {
    let valid = col.valid_data.as_slice();
    match &col.field {
        Some(Field::Scalars(s)) => fill_scalars(rows, slot, info, valid, s),
        Some(Field::Vectors(v)) => fill_vectors(rows, slot, info, valid, v),
        Some(Field::StructArrays(_)) => Err("struct array columns are not supported".into()),
        None => Err("the column carries no data".into()),
    }
}

fn mismatch(info: &FieldInfo, got: &str) -> String {
    format!(
        "the column holds {got} but the schema declares {}",
        info.data_type.as_str_name()
    )
}

fn fill_scalars(
    rows: &mut [Vec<Value>],
    slot: usize,
    info: &FieldInfo,
    valid: &[bool],
    s: &ScalarField,
) -> Result<(), String> {
    use DataType as T;
    let Some(data) = &s.data else {
        return fill(rows, slot, valid, 0, |_| Ok(Value::Null));
    };
    match (info.data_type, data) {
        (T::Bool, Scalar::BoolData(a)) => fill(rows, slot, valid, a.data.len(), |i| {
            Ok(Value::Bool(a.data[i]))
        }),
        (T::Int8 | T::Int16 | T::Int32, Scalar::IntData(a)) => {
            fill(rows, slot, valid, a.data.len(), |i| {
                Ok(Value::Int(a.data[i]))
            })
        }
        (T::Int64, Scalar::LongData(a)) => fill(rows, slot, valid, a.data.len(), |i| {
            Ok(Value::Long(a.data[i]))
        }),
        (T::Timestamptz, Scalar::TimestamptzData(a)) => {
            fill(rows, slot, valid, a.data.len(), |i| {
                Ok(Value::Long(a.data[i]))
            })
        }
        (T::Float, Scalar::FloatData(a)) => fill(rows, slot, valid, a.data.len(), |i| {
            Ok(Value::Float(a.data[i]))
        }),
        (T::Double, Scalar::DoubleData(a)) => fill(rows, slot, valid, a.data.len(), |i| {
            Ok(Value::Double(a.data[i]))
        }),
        (T::VarChar | T::String | T::Text, Scalar::StringData(a)) => {
            fill(rows, slot, valid, a.data.len(), |i| {
                Ok(Value::String(a.data[i].clone()))
            })
        }
        (T::Json, Scalar::JsonData(a)) => fill(rows, slot, valid, a.data.len(), |i| {
            serde_json::from_slice(&a.data[i])
                .map(Value::Json)
                .map_err(|e| format!("row {i} is not valid JSON: {e}"))
        }),
        (T::Array, Scalar::ArrayData(a)) => fill(rows, slot, valid, a.data.len(), |i| {
            scalar_list(&a.data[i], info.element_type)
                .map(Value::Array)
                .map_err(|m| format!("row {i}: {m}"))
        }),
        (T::Geometry, Scalar::GeometryData(a)) => fill(rows, slot, valid, a.data.len(), |i| {
            Ok(Value::Bytes(a.data[i].to_vec()))
        }),
        (T::Geometry, Scalar::GeometryWktData(a)) => fill(rows, slot, valid, a.data.len(), |i| {
            Ok(Value::String(a.data[i].clone()))
        }),
        (_, other) => Err(mismatch(info, scalar_name(other))),
    }
}

fn scalar_name(d: &Scalar) -> &'static str {
    match d {
        Scalar::BoolData(_) => "bool data",
        Scalar::IntData(_) => "int data",
        Scalar::LongData(_) => "long data",
        Scalar::FloatData(_) => "float data",
        Scalar::DoubleData(_) => "double data",
        Scalar::StringData(_) => "string data",
        Scalar::BytesData(_) => "bytes data",
        Scalar::ArrayData(_) => "array data",
        Scalar::JsonData(_) => "JSON data",
        Scalar::GeometryData(_) => "geometry data",
        Scalar::TimestamptzData(_) => "timestamptz data",
        Scalar::GeometryWktData(_) => "geometry WKT data",
    }
}

/// The elements of one array cell.
fn scalar_list(s: &ScalarField, element: DataType) -> Result<Vec<Value>, String> {
    use DataType as T;
    let Some(data) = &s.data else {
        return Ok(Vec::new());
    };
    Ok(match (element, data) {
        (T::Bool, Scalar::BoolData(a)) => a.data.iter().map(|v| Value::Bool(*v)).collect(),
        (T::Int8 | T::Int16 | T::Int32, Scalar::IntData(a)) => {
            a.data.iter().map(|v| Value::Int(*v)).collect()
        }
        (T::Int64, Scalar::LongData(a)) => a.data.iter().map(|v| Value::Long(*v)).collect(),
        (T::Float, Scalar::FloatData(a)) => a.data.iter().map(|v| Value::Float(*v)).collect(),
        (T::Double, Scalar::DoubleData(a)) => a.data.iter().map(|v| Value::Double(*v)).collect(),
        (T::VarChar | T::String, Scalar::StringData(a)) => {
            a.data.iter().map(|v| Value::String(v.clone())).collect()
        }
        (_, other) => {
            return Err(format!(
                "array elements are {} but the schema declares element type {}",
                scalar_name(other),
                element.as_str_name()
            ))
        }
    })
}

fn fill_vectors(
    rows: &mut [Vec<Value>],
    slot: usize,
    info: &FieldInfo,
    valid: &[bool],
    v: &VectorField,
) -> Result<(), String> {
    use DataType as T;
    let Some(data) = &v.data else {
        return fill(rows, slot, valid, 0, |_| Ok(Value::Null));
    };
    if let Vector::SparseFloatVector(sp) = data {
        if info.data_type != T::SparseFloatVector {
            return Err(mismatch(info, "a sparse float vector"));
        }
        return fill(rows, slot, valid, sp.contents.len(), |i| {
            sparse_row(&sp.contents[i])
                .map(Value::SparseVector)
                .map_err(|m| format!("row {i}: {m}"))
        });
    }
    let dim = match (info.dim, usize::try_from(v.dim).unwrap_or(0)) {
        (0, 0) => return Err("the vector dimension is unknown (0 in schema and column)".into()),
        (d, 0) | (0, d) => d,
        (s, c) if s == c => s,
        (s, c) => return Err(format!("the column has dim {c} but the schema says {s}")),
    };
    // (bytes or floats per row, name) of each dense encoding.
    let (per_row, total, name) = match (info.data_type, data) {
        (T::FloatVector, Vector::FloatVector(a)) => (dim, a.data.len(), "floats"),
        (T::BinaryVector, Vector::BinaryVector(b)) => {
            if dim % 8 != 0 {
                return Err(format!("binary vector dim {dim} is not a multiple of 8"));
            }
            (dim / 8, b.len(), "bytes")
        }
        (T::Float16Vector, Vector::Float16Vector(b)) => (dim * 2, b.len(), "bytes"),
        (T::BFloat16Vector, Vector::Bfloat16Vector(b)) => (dim * 2, b.len(), "bytes"),
        (T::Int8Vector, Vector::Int8Vector(b)) => (dim, b.len(), "bytes"),
        (_, Vector::VectorArray(_)) => return Err("vector array columns are not supported".into()),
        (_, other) => return Err(mismatch(info, vector_name(other))),
    };
    if total % per_row != 0 {
        return Err(format!(
            "the column has {total} {name}, not a multiple of {per_row} per row (dim {dim})"
        ));
    }
    let len = total / per_row;
    let range = |i: usize| i * per_row..(i + 1) * per_row;
    match data {
        Vector::FloatVector(a) => fill(rows, slot, valid, len, |i| {
            Ok(Value::FloatVector(a.data[range(i)].to_vec()))
        }),
        Vector::BinaryVector(b) => fill(rows, slot, valid, len, |i| {
            Ok(Value::Bytes(b[range(i)].to_vec()))
        }),
        Vector::Float16Vector(b) => fill(rows, slot, valid, len, |i| {
            Ok(Value::FloatVector(half_words_to_f32(
                &b[range(i)],
                f16_to_f32,
            )))
        }),
        Vector::Bfloat16Vector(b) => fill(rows, slot, valid, len, |i| {
            Ok(Value::FloatVector(half_words_to_f32(
                &b[range(i)],
                bf16_to_f32,
            )))
        }),
        Vector::Int8Vector(b) => fill(rows, slot, valid, len, |i| {
            Ok(Value::Int8Vector(
                b[range(i)].iter().map(|x| *x as i8).collect(),
            ))
        }),
        Vector::SparseFloatVector(_) | Vector::VectorArray(_) => {
            Err("internal: unexpected vector encoding".into())
        }
    }
}

fn vector_name(d: &Vector) -> &'static str {
    match d {
        Vector::FloatVector(_) => "a float vector",
        Vector::BinaryVector(_) => "a binary vector",
        Vector::Float16Vector(_) => "a float16 vector",
        Vector::Bfloat16Vector(_) => "a bfloat16 vector",
        Vector::SparseFloatVector(_) => "a sparse float vector",
        Vector::Int8Vector(_) => "an int8 vector",
        Vector::VectorArray(_) => "a vector array",
    }
}

#[cfg(test)]
#[path = "pivot_tests.rs"]
mod tests;
