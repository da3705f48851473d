//! Column helpers on [`FieldData`] and [`IDs`], for sinks that batch inserts and deletes.
//!
//! A `FieldData` holds one column of an insert. Row counts are derived from the data:
//! scalars and JSON/array/sparse columns hold one entry per row; dense vectors are flat and
//! dimension-aware (float: `len / dim` values, binary: `bytes / (dim / 8)`, float16 and bfloat16:
//! `bytes / (2 * dim)`, int8: `bytes / dim`).
//!
//! Nullable fields (2.5+) carry `valid_data`, one flag per row. The values are either stored for
//! every row ("full", what the 2.5 proxy writes to the message queue) or only for the valid rows
//! ("compact", what clients send and what 2.6 uses for nullable vectors). When `valid_data` is
//! set, it gives the row count; [`append`] and [`slice_rows`] handle both layouts.

use std::ops::Range;

use bytes::{Bytes, BytesMut};

use crate::schema::{
    field_data::Field, i_ds::IdField, scalar_field::Data as Scalar, vector_field::Data as Vector,
    ArrayArray, BoolArray, BytesArray, DoubleArray, FieldData, FloatArray, GeometryArray,
    GeometryWktArray, IDs, IntArray, JsonArray, LongArray, ScalarField, SparseFloatArray,
    StringArray, StructArrayField, TimestamptzArray, VectorArray, VectorField,
};

/// Errors of the column helpers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldDataError {
    /// A dense vector column whose size is not a whole number of rows of its dimension.
    #[error("field {field}: {len} {unit} of {kind} data do not make whole rows of dim {dim}")]
    Dim {
        /// Field name (or `#id`).
        field: String,
        /// Vector kind, e.g. `float`.
        kind: &'static str,
        /// The column's `dim`.
        dim: i64,
        /// Number of values or bytes.
        len: usize,
        /// `values` or `bytes`.
        unit: &'static str,
    },
    /// Two columns that cannot be concatenated.
    #[error("cannot append field {src} to field {dst}: {reason}")]
    Incompatible {
        /// Destination field.
        dst: String,
        /// Appended field.
        src: String,
        /// Why.
        reason: String,
    },
    /// A column whose `valid_data` does not match its values.
    #[error("field {field}: {reason}")]
    Inconsistent {
        /// Field name (or `#id`).
        field: String,
        /// Why.
        reason: String,
    },
    /// A row range outside the column.
    #[error("field {field}: rows {start}..{end} out of range for {rows} rows")]
    OutOfRange {
        /// Field name (or `#id`).
        field: String,
        /// Range start.
        start: usize,
        /// Range end.
        end: usize,
        /// Rows in the column.
        rows: usize,
    },
    /// IDs of different kinds (int vs string) or a bad range.
    #[error("IDs: {0}")]
    Ids(String),
}

fn field_label(fd: &FieldData) -> String {
    if fd.field_name.is_empty() {
        format!("#{}", fd.field_id)
    } else {
        format!("`{}`", fd.field_name)
    }
}

/// Number of rows of a column (see the module docs).
///
/// # Errors
/// [`FieldDataError::Dim`] for a dense vector column that is not whole rows of its `dim`, and
/// [`FieldDataError::Inconsistent`] for struct-array sub-fields of different lengths.
pub fn num_rows(fd: &FieldData) -> Result<usize, FieldDataError> {
    if !fd.valid_data.is_empty() {
        return Ok(fd.valid_data.len());
    }
    stored_rows(fd)
}

/// Number of rows whose values are stored (differs from [`num_rows`] only for compact nullable
/// columns).
///
/// # Errors
/// As [`num_rows`].
pub fn stored_rows(fd: &FieldData) -> Result<usize, FieldDataError> {
    match &fd.field {
        None => Ok(0),
        Some(Field::Scalars(s)) => Ok(s.data.as_ref().map_or(0, scalar_len)),
        Some(Field::Vectors(v)) => vector_rows(fd, v),
        Some(Field::StructArrays(s)) => {
            let mut rows = None;
            for sub in &s.fields {
                let n = num_rows(sub)?;
                if *rows.get_or_insert(n) != n {
                    return Err(FieldDataError::Inconsistent {
                        field: field_label(fd),
                        reason: format!(
                            "struct sub-fields have {} and {n} rows",
                            rows.unwrap_or(0)
                        ),
                    });
                }
            }
            Ok(rows.unwrap_or(0))
        }
    }
}

fn scalar_len(d: &Scalar) -> usize {
    match d {
        Scalar::BoolData(a) => a.data.len(),
        Scalar::IntData(a) => a.data.len(),
        Scalar::LongData(a) => a.data.len(),
        Scalar::FloatData(a) => a.data.len(),
        Scalar::DoubleData(a) => a.data.len(),
        Scalar::StringData(a) => a.data.len(),
        Scalar::BytesData(a) => a.data.len(),
        Scalar::ArrayData(a) => a.data.len(),
        Scalar::JsonData(a) => a.data.len(),
        Scalar::GeometryData(a) => a.data.len(),
        Scalar::TimestamptzData(a) => a.data.len(),
        Scalar::GeometryWktData(a) => a.data.len(),
    }
}

/// Per-row width of a dense vector: (kind, unit, values or bytes per row).
fn dense_width(fd: &FieldData, v: &VectorField) -> Result<Option<usize>, FieldDataError> {
    let (kind, unit, len, per_dim_num, per_dim_den): (_, _, usize, i64, i64) = match &v.data {
        None | Some(Vector::SparseFloatVector(_)) | Some(Vector::VectorArray(_)) => {
            return Ok(None)
        }
        Some(Vector::FloatVector(a)) => ("float", "values", a.data.len(), 1, 1),
        Some(Vector::BinaryVector(b)) => ("binary", "bytes", b.len(), 1, 8),
        Some(Vector::Float16Vector(b)) => ("float16", "bytes", b.len(), 2, 1),
        Some(Vector::Bfloat16Vector(b)) => ("bfloat16", "bytes", b.len(), 2, 1),
        Some(Vector::Int8Vector(b)) => ("int8", "bytes", b.len(), 1, 1),
    };
    let err = || FieldDataError::Dim {
        field: field_label(fd),
        kind,
        dim: v.dim,
        len,
        unit,
    };
    if v.dim <= 0 || v.dim % per_dim_den != 0 {
        return if len == 0 { Ok(Some(0)) } else { Err(err()) };
    }
    let width = usize::try_from(v.dim / per_dim_den * per_dim_num).map_err(|_| err())?;
    if len % width != 0 {
        return Err(err());
    }
    Ok(Some(width))
}

fn vector_rows(fd: &FieldData, v: &VectorField) -> Result<usize, FieldDataError> {
    Ok(match &v.data {
        None => 0,
        Some(Vector::SparseFloatVector(s)) => s.contents.len(),
        Some(Vector::VectorArray(a)) => a.data.len(),
        Some(
            Vector::FloatVector(_)
            | Vector::BinaryVector(_)
            | Vector::Float16Vector(_)
            | Vector::Bfloat16Vector(_)
            | Vector::Int8Vector(_),
        ) => {
            let width = dense_width(fd, v)?.unwrap_or(0);
            dense_len(v).checked_div(width).unwrap_or(0)
        }
    })
}

fn dense_len(v: &VectorField) -> usize {
    match &v.data {
        Some(Vector::FloatVector(a)) => a.data.len(),
        Some(
            Vector::BinaryVector(b)
            | Vector::Float16Vector(b)
            | Vector::Bfloat16Vector(b)
            | Vector::Int8Vector(b),
        ) => b.len(),
        _ => 0,
    }
}

/// How the values of a nullable column are laid out.
#[derive(Debug, Clone, Copy)]
struct Layout {
    rows: usize,
    /// Values stored for every row.
    full: bool,
    /// Values stored for the valid rows only.
    compact: bool,
}

fn layout(fd: &FieldData) -> Result<Layout, FieldDataError> {
    let stored = stored_rows(fd)?;
    if fd.valid_data.is_empty() {
        return Ok(Layout {
            rows: stored,
            full: true,
            compact: true,
        });
    }
    let rows = fd.valid_data.len();
    let valid = fd.valid_data.iter().filter(|v| **v).count();
    let (full, compact) = (stored == rows, stored == valid);
    if !full && !compact {
        return Err(FieldDataError::Inconsistent {
            field: field_label(fd),
            reason: format!(
                "{stored} values stored for {rows} rows of which {valid} are valid (valid_data)"
            ),
        });
    }
    Ok(Layout {
        rows,
        full,
        compact,
    })
}

/// Appends the rows of `src` to `dst`, two columns of the same field (same type, name and ID),
/// e.g. to batch consecutive inserts. `valid_data` is concatenated too (a side without it counts
/// as all valid). An empty `dst` (`FieldData::default()`) becomes a copy of `src`.
///
/// Vectors stored as bytes are re-allocated only when `dst`'s buffer is shared.
///
/// # Errors
/// [`FieldDataError::Incompatible`] for different fields, data kinds, dims or array element
/// types (`dst` is unchanged then), and the errors of [`num_rows`].
pub fn append(dst: &mut FieldData, src: &FieldData) -> Result<(), FieldDataError> {
    if *dst == FieldData::default() {
        *dst = src.clone();
        return Ok(());
    }
    let incompatible = |reason: String| FieldDataError::Incompatible {
        dst: field_label(dst),
        src: field_label(src),
        reason,
    };
    if dst.r#type != src.r#type {
        return Err(incompatible(format!(
            "data type {} vs {}",
            dst.r#type, src.r#type
        )));
    }
    if dst.field_id != src.field_id || dst.field_name != src.field_name {
        return Err(incompatible("different field IDs or names".into()));
    }
    let (dl, sl) = (layout(dst)?, layout(src)?);
    if !(dl.full && sl.full || dl.compact && sl.compact) {
        return Err(incompatible(
            "one column stores values for null rows and the other does not".into(),
        ));
    }
    check_compatible(dst, src).map_err(incompatible)?;

    match (&mut dst.field, &src.field) {
        (_, None) => {}
        (d @ None, Some(s)) => *d = Some(s.clone()),
        (Some(Field::Scalars(d)), Some(Field::Scalars(s))) => append_scalar(d, s),
        (Some(Field::Vectors(d)), Some(Field::Vectors(s))) => append_vector(d, s),
        (Some(Field::StructArrays(d)), Some(Field::StructArrays(s))) => {
            for (d, s) in d.fields.iter_mut().zip(&s.fields) {
                append(d, s)?;
            }
        }
        _ => unreachable!("checked by check_compatible"),
    }
    if !dst.valid_data.is_empty() || !src.valid_data.is_empty() {
        if dst.valid_data.is_empty() {
            dst.valid_data = vec![true; dl.rows];
        }
        if src.valid_data.is_empty() {
            dst.valid_data.resize(dl.rows + sl.rows, true);
        } else {
            dst.valid_data.extend_from_slice(&src.valid_data);
        }
    }
    Ok(())
}

/// Concatenates several columns of the same field (see [`append`]).
///
/// # Errors
/// As [`append`].
pub fn concat<'a>(
    parts: impl IntoIterator<Item = &'a FieldData>,
) -> Result<FieldData, FieldDataError> {
    let mut out = FieldData::default();
    for part in parts {
        append(&mut out, part)?;
    }
    Ok(out)
}

/// Checks, without changing anything, that `src` can be appended to `dst`.
fn check_compatible(dst: &FieldData, src: &FieldData) -> Result<(), String> {
    match (&dst.field, &src.field) {
        (None, _) | (_, None) => Ok(()),
        (Some(Field::Scalars(d)), Some(Field::Scalars(s))) => match (&d.data, &s.data) {
            (None, _) | (_, None) => Ok(()),
            (Some(Scalar::ArrayData(a)), Some(Scalar::ArrayData(b))) => {
                if a.element_type != b.element_type && !a.data.is_empty() && !b.data.is_empty() {
                    Err(format!(
                        "array element type {} vs {}",
                        a.element_type, b.element_type
                    ))
                } else {
                    Ok(())
                }
            }
            (Some(a), Some(b)) if std::mem::discriminant(a) == std::mem::discriminant(b) => Ok(()),
            _ => Err("different scalar data kinds".into()),
        },
        (Some(Field::Vectors(d)), Some(Field::Vectors(s))) => match (&d.data, &s.data) {
            (None, _) | (_, None) => Ok(()),
            (Some(Vector::SparseFloatVector(_)), Some(Vector::SparseFloatVector(_))) => Ok(()),
            (Some(Vector::VectorArray(a)), Some(Vector::VectorArray(b))) => {
                if a.dim != b.dim || a.element_type != b.element_type {
                    Err(format!("vector arrays of dim {} and {}", a.dim, b.dim))
                } else {
                    Ok(())
                }
            }
            (Some(a), Some(b)) if std::mem::discriminant(a) == std::mem::discriminant(b) => {
                if d.dim == s.dim || dense_len(d) == 0 || dense_len(s) == 0 {
                    Ok(())
                } else {
                    Err(format!("vector dim {} vs {}", d.dim, s.dim))
                }
            }
            _ => Err("different vector data kinds".into()),
        },
        (Some(Field::StructArrays(d)), Some(Field::StructArrays(s))) => {
            if d.fields.len() != s.fields.len() {
                return Err(format!(
                    "{} vs {} struct sub-fields",
                    d.fields.len(),
                    s.fields.len()
                ));
            }
            for (d, s) in d.fields.iter().zip(&s.fields) {
                if d.r#type != s.r#type || d.field_id != s.field_id {
                    return Err("different struct sub-fields".into());
                }
                check_compatible(d, s)?;
            }
            Ok(())
        }
        _ => Err("scalar, vector and struct columns cannot be mixed".into()),
    }
}

fn append_scalar(dst: &mut ScalarField, src: &ScalarField) {
    let Some(s) = &src.data else { return };
    let Some(d) = &mut dst.data else {
        dst.data = Some(s.clone());
        return;
    };
    match (d, s) {
        (Scalar::BoolData(a), Scalar::BoolData(b)) => a.data.extend_from_slice(&b.data),
        (Scalar::IntData(a), Scalar::IntData(b)) => a.data.extend_from_slice(&b.data),
        (Scalar::LongData(a), Scalar::LongData(b)) => a.data.extend_from_slice(&b.data),
        (Scalar::FloatData(a), Scalar::FloatData(b)) => a.data.extend_from_slice(&b.data),
        (Scalar::DoubleData(a), Scalar::DoubleData(b)) => a.data.extend_from_slice(&b.data),
        (Scalar::StringData(a), Scalar::StringData(b)) => a.data.extend_from_slice(&b.data),
        (Scalar::BytesData(a), Scalar::BytesData(b)) => a.data.extend_from_slice(&b.data),
        (Scalar::ArrayData(a), Scalar::ArrayData(b)) => {
            if a.data.is_empty() {
                a.element_type = b.element_type;
            }
            a.data.extend_from_slice(&b.data);
        }
        (Scalar::JsonData(a), Scalar::JsonData(b)) => a.data.extend_from_slice(&b.data),
        (Scalar::GeometryData(a), Scalar::GeometryData(b)) => a.data.extend_from_slice(&b.data),
        (Scalar::TimestamptzData(a), Scalar::TimestamptzData(b)) => {
            a.data.extend_from_slice(&b.data);
        }
        (Scalar::GeometryWktData(a), Scalar::GeometryWktData(b)) => {
            a.data.extend_from_slice(&b.data);
        }
        _ => unreachable!("checked by check_compatible"),
    }
}

fn append_bytes(dst: &mut Bytes, src: &Bytes) {
    if src.is_empty() {
        return;
    }
    if dst.is_empty() {
        *dst = src.clone();
        return;
    }
    // No copy of `dst` when its buffer is not shared.
    let mut buf = BytesMut::from(std::mem::take(dst));
    buf.extend_from_slice(src);
    *dst = buf.freeze();
}

fn append_vector(dst: &mut VectorField, src: &VectorField) {
    let Some(s) = &src.data else { return };
    let dst_empty = dense_len(dst) == 0;
    let Some(d) = &mut dst.data else {
        dst.data = Some(s.clone());
        dst.dim = src.dim;
        return;
    };
    match (d, s) {
        (Vector::FloatVector(a), Vector::FloatVector(b)) => a.data.extend_from_slice(&b.data),
        (Vector::BinaryVector(a), Vector::BinaryVector(b))
        | (Vector::Float16Vector(a), Vector::Float16Vector(b))
        | (Vector::Bfloat16Vector(a), Vector::Bfloat16Vector(b))
        | (Vector::Int8Vector(a), Vector::Int8Vector(b)) => append_bytes(a, b),
        (Vector::SparseFloatVector(a), Vector::SparseFloatVector(b)) => {
            a.contents.extend_from_slice(&b.contents);
            a.dim = a.dim.max(b.dim);
            dst.dim = dst.dim.max(src.dim);
            return;
        }
        (Vector::VectorArray(a), Vector::VectorArray(b)) => a.data.extend_from_slice(&b.data),
        _ => unreachable!("checked by check_compatible"),
    }
    if dst_empty {
        dst.dim = src.dim;
    }
}

/// Copies rows `range` of a column into a new column (bytes-backed vectors share the buffer).
///
/// # Errors
/// [`FieldDataError::OutOfRange`], and the errors of [`num_rows`].
pub fn slice_rows(fd: &FieldData, range: Range<usize>) -> Result<FieldData, FieldDataError> {
    let lay = layout(fd)?;
    if range.start > range.end || range.end > lay.rows {
        return Err(FieldDataError::OutOfRange {
            field: field_label(fd),
            start: range.start,
            end: range.end,
            rows: lay.rows,
        });
    }
    // Rows `range` of a compact column are the stored values of the valid rows before them.
    let stored = if lay.full || fd.valid_data.is_empty() {
        range.clone()
    } else {
        let valid_before = |i: usize| fd.valid_data[..i].iter().filter(|v| **v).count();
        valid_before(range.start)..valid_before(range.end)
    };
    let field = match &fd.field {
        None => None,
        Some(Field::Scalars(s)) => Some(Field::Scalars(ScalarField {
            data: s.data.as_ref().map(|d| slice_scalar(d, stored)),
        })),
        Some(Field::Vectors(v)) => Some(Field::Vectors(slice_vector(fd, v, stored)?)),
        Some(Field::StructArrays(s)) => Some(Field::StructArrays(StructArrayField {
            fields: s
                .fields
                .iter()
                .map(|sub| slice_rows(sub, stored.clone()))
                .collect::<Result<_, _>>()?,
        })),
    };
    Ok(FieldData {
        r#type: fd.r#type,
        field_name: fd.field_name.clone(),
        field_id: fd.field_id,
        is_dynamic: fd.is_dynamic,
        valid_data: if fd.valid_data.is_empty() {
            Vec::new()
        } else {
            fd.valid_data[range].to_vec()
        },
        field,
    })
}

fn slice_scalar(d: &Scalar, r: Range<usize>) -> Scalar {
    match d {
        Scalar::BoolData(a) => Scalar::BoolData(BoolArray {
            data: a.data[r].to_vec(),
        }),
        Scalar::IntData(a) => Scalar::IntData(IntArray {
            data: a.data[r].to_vec(),
        }),
        Scalar::LongData(a) => Scalar::LongData(LongArray {
            data: a.data[r].to_vec(),
        }),
        Scalar::FloatData(a) => Scalar::FloatData(FloatArray {
            data: a.data[r].to_vec(),
        }),
        Scalar::DoubleData(a) => Scalar::DoubleData(DoubleArray {
            data: a.data[r].to_vec(),
        }),
        Scalar::StringData(a) => Scalar::StringData(StringArray {
            data: a.data[r].to_vec(),
        }),
        Scalar::BytesData(a) => Scalar::BytesData(BytesArray {
            data: a.data[r].to_vec(),
        }),
        Scalar::ArrayData(a) => Scalar::ArrayData(ArrayArray {
            data: a.data[r].to_vec(),
            element_type: a.element_type,
        }),
        Scalar::JsonData(a) => Scalar::JsonData(JsonArray {
            data: a.data[r].to_vec(),
        }),
        Scalar::GeometryData(a) => Scalar::GeometryData(GeometryArray {
            data: a.data[r].to_vec(),
        }),
        Scalar::TimestamptzData(a) => Scalar::TimestamptzData(TimestamptzArray {
            data: a.data[r].to_vec(),
        }),
        Scalar::GeometryWktData(a) => Scalar::GeometryWktData(GeometryWktArray {
            data: a.data[r].to_vec(),
        }),
    }
}

fn slice_vector(
    fd: &FieldData,
    v: &VectorField,
    r: Range<usize>,
) -> Result<VectorField, FieldDataError> {
    let width = dense_width(fd, v)?.unwrap_or(0);
    let flat = r.start * width..r.end * width;
    let data = v.data.as_ref().map(|d| match d {
        Vector::FloatVector(a) => Vector::FloatVector(FloatArray {
            data: a.data[flat].to_vec(),
        }),
        Vector::BinaryVector(b) => Vector::BinaryVector(b.slice(flat)),
        Vector::Float16Vector(b) => Vector::Float16Vector(b.slice(flat)),
        Vector::Bfloat16Vector(b) => Vector::Bfloat16Vector(b.slice(flat)),
        Vector::Int8Vector(b) => Vector::Int8Vector(b.slice(flat)),
        Vector::SparseFloatVector(s) => Vector::SparseFloatVector(SparseFloatArray {
            contents: s.contents[r].to_vec(),
            dim: s.dim,
        }),
        Vector::VectorArray(a) => Vector::VectorArray(VectorArray {
            dim: a.dim,
            data: a.data[r].to_vec(),
            element_type: a.element_type,
        }),
    });
    Ok(VectorField { dim: v.dim, data })
}

/// Number of primary keys in `ids`.
#[must_use]
pub fn ids_len(ids: &IDs) -> usize {
    match &ids.id_field {
        None => 0,
        Some(IdField::IntId(a)) => a.data.len(),
        Some(IdField::StrId(a)) => a.data.len(),
    }
}

/// Appends the keys of `src` to `dst` (an empty `dst` takes `src`'s kind).
///
/// # Errors
/// [`FieldDataError::Ids`] when one holds int64 keys and the other string keys.
pub fn ids_append(dst: &mut IDs, src: &IDs) -> Result<(), FieldDataError> {
    if ids_len(src) == 0 {
        return Ok(());
    }
    if ids_len(dst) == 0 {
        dst.id_field.clone_from(&src.id_field);
        return Ok(());
    }
    match (&mut dst.id_field, &src.id_field) {
        (Some(IdField::IntId(a)), Some(IdField::IntId(b))) => a.data.extend_from_slice(&b.data),
        (Some(IdField::StrId(a)), Some(IdField::StrId(b))) => a.data.extend_from_slice(&b.data),
        _ => {
            return Err(FieldDataError::Ids(
                "cannot mix int64 and string primary keys".into(),
            ))
        }
    }
    Ok(())
}

/// Keys `range` of `ids`.
///
/// # Errors
/// [`FieldDataError::Ids`] when the range is out of bounds.
pub fn ids_slice(ids: &IDs, range: Range<usize>) -> Result<IDs, FieldDataError> {
    let len = ids_len(ids);
    if range.start > range.end || range.end > len {
        return Err(FieldDataError::Ids(format!(
            "range {}..{} out of bounds for {len} keys",
            range.start, range.end
        )));
    }
    Ok(IDs {
        id_field: ids.id_field.as_ref().map(|f| match f {
            IdField::IntId(a) => IdField::IntId(LongArray {
                data: a.data[range].to_vec(),
            }),
            IdField::StrId(a) => IdField::StrId(StringArray {
                data: a.data[range].to_vec(),
            }),
        }),
    })
}

#[cfg(test)]
mod tests;
