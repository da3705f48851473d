//! A sample collection with a field of every Milvus data type that row events support, and
//! hand-built change events on it, with the values each row must decode to.
//!
//! Used by this crate's tests and by the sinks' integration tests; also handy to drive a sink
//! by hand. Values are deterministic functions of the primary key `k`.

use std::sync::Arc;

use cdc_engine::{ChangeEvent, CollectionDef, Ddl, DeleteBatch, Op, RowBatch, SourcePosition};
use cdc_protocol::common::KeyValuePair;
use cdc_protocol::schema::field_data::Field;
use cdc_protocol::schema::i_ds::IdField;
use cdc_protocol::schema::scalar_field::Data as Scalar;
use cdc_protocol::schema::vector_field::Data as Vector;
use cdc_protocol::schema::{
    ArrayArray, BoolArray, CollectionSchema, DataType, DoubleArray, FieldData, FieldSchema,
    FloatArray, IDs, IntArray, JsonArray, LongArray, ScalarField, SparseFloatArray, StringArray,
    VectorField,
};
use serde_json::json;

use crate::vector::encode_sparse_row;

/// Database of the sample events.
pub const DATABASE: &str = "default";
/// Collection of the sample events.
pub const COLLECTION: &str = "all_types";
/// Collection id of the sample events.
pub const COLLECTION_ID: i64 = 4242;

fn kv(k: &str, v: &str) -> KeyValuePair {
    KeyValuePair {
        key: k.into(),
        value: v.into(),
    }
}

fn field(id: i64, name: &str, t: DataType) -> FieldSchema {
    FieldSchema {
        field_id: id,
        name: name.into(),
        data_type: t as i32,
        ..Default::default()
    }
}

fn vector(id: i64, name: &str, t: DataType, dim: usize) -> FieldSchema {
    FieldSchema {
        type_params: vec![kv("dim", &dim.to_string())],
        ..field(id, name, t)
    }
}

fn array(id: i64, name: &str, element: DataType) -> FieldSchema {
    FieldSchema {
        element_type: element as i32,
        type_params: vec![kv("max_capacity", "8")],
        ..field(id, name, DataType::Array)
    }
}

/// The sample schema: `id` (Int64 primary key), one field per scalar and vector type, a
/// nullable Int32, and the dynamic field.
pub fn schema() -> CollectionSchema {
    let mut fields = vec![
        FieldSchema {
            is_primary_key: true,
            ..field(100, "id", DataType::Int64)
        },
        field(101, "b", DataType::Bool),
        field(102, "i8", DataType::Int8),
        field(103, "i16", DataType::Int16),
        field(104, "i32", DataType::Int32),
        field(105, "f", DataType::Float),
        field(106, "d", DataType::Double),
        FieldSchema {
            type_params: vec![kv("max_length", "64")],
            ..field(107, "s", DataType::VarChar)
        },
        field(108, "j", DataType::Json),
        array(109, "arr_i64", DataType::Int64),
        array(110, "arr_s", DataType::VarChar),
        vector(111, "fv", DataType::FloatVector, 4),
        vector(112, "bv", DataType::BinaryVector, 16),
        vector(113, "f16v", DataType::Float16Vector, 2),
        vector(114, "bf16v", DataType::BFloat16Vector, 2),
        field(115, "sv", DataType::SparseFloatVector),
        vector(116, "i8v", DataType::Int8Vector, 3),
        FieldSchema {
            nullable: true,
            ..field(117, "n", DataType::Int32)
        },
    ];
    fields.push(FieldSchema {
        is_dynamic: true,
        ..field(118, "$meta", DataType::Json)
    });
    CollectionSchema {
        name: COLLECTION.into(),
        description: "every data type".into(),
        fields,
        enable_dynamic_field: true,
        ..Default::default()
    }
}

/// The sample collection definition.
pub fn collection_def() -> CollectionDef {
    CollectionDef {
        schema: schema(),
        shards_num: 1,
        consistency_level: 2,
        properties: vec![kv("collection.ttl.seconds", "0")],
        virtual_channels: vec!["by-dev-rootcoord-dml_0_4242v0".into()],
        physical_channels: vec!["by-dev-rootcoord-dml_0".into()],
        num_partitions: 0,
    }
}

/// Exact f32 → f16 for values representable in half precision (the sample values are).
fn f16_bits(v: f32) -> u16 {
    let b = v.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    if v == 0.0 {
        return sign;
    }
    let exp = ((b >> 23) & 0xff) as i32 - 127 + 15;
    sign | ((exp as u16) << 10) | ((b & 0x7f_ffff) >> 13) as u16
}

fn f16_row(k: i64) -> [f32; 2] {
    [(k % 1000) as f32, -0.5]
}

fn bf16_row(k: i64) -> [f32; 2] {
    [(k % 200) as f32, 0.25]
}

fn fv_row(k: i64) -> [f32; 4] {
    [k as f32, k as f32 + 0.5, -(k as f32), 0.25]
}

fn sv_row(k: i64) -> Vec<(u32, f32)> {
    vec![(k as u32, 1.5), (k as u32 + 100, -0.25)]
}

fn i8v_row(k: i64) -> [i8; 3] {
    [1, -2, (k % 100) as i8]
}

fn meta_row(k: i64) -> serde_json::Value {
    json!({"extra": format!("e{k}"), "score": k})
}

fn j_row(k: i64) -> serde_json::Value {
    json!({"k": k, "tags": ["a", "b"], "nested": {"x": k * 2}})
}

fn scalars(name: &str, id: i64, t: DataType, data: Scalar) -> FieldData {
    FieldData {
        r#type: t as i32,
        field_name: name.into(),
        field_id: id,
        field: Some(Field::Scalars(ScalarField { data: Some(data) })),
        ..Default::default()
    }
}

fn vectors(name: &str, id: i64, t: DataType, dim: i64, data: Vector) -> FieldData {
    FieldData {
        r#type: t as i32,
        field_name: name.into(),
        field_id: id,
        field: Some(Field::Vectors(VectorField {
            dim,
            data: Some(data),
        })),
        ..Default::default()
    }
}

/// Columns of rows with primary keys `pks`, one per schema field (in schema order).
pub fn columns(pks: &[i64]) -> Vec<FieldData> {
    use DataType as T;
    let map_i32 = |f: fn(i64) -> i32| pks.iter().map(|k| f(*k)).collect::<Vec<_>>();
    let json_bytes = |f: fn(i64) -> serde_json::Value| {
        pks.iter()
            .map(|k| serde_json::to_vec(&f(*k)).unwrap_or_default().into())
            .collect::<Vec<_>>()
    };
    let mut bv = Vec::new();
    let mut f16 = Vec::new();
    let mut bf16 = Vec::new();
    let mut i8v = Vec::new();
    for k in pks {
        bv.extend_from_slice(&[*k as u8, 0xA5]);
        for x in f16_row(*k) {
            f16.extend_from_slice(&f16_bits(x).to_le_bytes());
        }
        for x in bf16_row(*k) {
            bf16_push(&mut bf16, x);
        }
        i8v.extend(i8v_row(*k).iter().map(|x| *x as u8));
    }
    let mut nullable = scalars(
        "n",
        117,
        T::Int32,
        Scalar::IntData(IntArray {
            data: pks
                .iter()
                .map(|k| if k % 2 == 0 { *k as i32 } else { 0 })
                .collect(),
        }),
    );
    nullable.valid_data = pks.iter().map(|k| k % 2 == 0).collect();
    let mut meta = scalars(
        "$meta",
        118,
        T::Json,
        Scalar::JsonData(JsonArray {
            data: json_bytes(meta_row),
        }),
    );
    meta.is_dynamic = true;
    vec![
        scalars(
            "id",
            100,
            T::Int64,
            Scalar::LongData(LongArray { data: pks.to_vec() }),
        ),
        scalars(
            "b",
            101,
            T::Bool,
            Scalar::BoolData(BoolArray {
                data: pks.iter().map(|k| k % 2 == 0).collect(),
            }),
        ),
        scalars(
            "i8",
            102,
            T::Int8,
            Scalar::IntData(IntArray {
                data: map_i32(|k| (k % 100) as i32 - 50),
            }),
        ),
        scalars(
            "i16",
            103,
            T::Int16,
            Scalar::IntData(IntArray {
                data: map_i32(|k| (k * 3) as i32),
            }),
        ),
        scalars(
            "i32",
            104,
            T::Int32,
            Scalar::IntData(IntArray {
                data: map_i32(|k| (k * 1000) as i32),
            }),
        ),
        scalars(
            "f",
            105,
            T::Float,
            Scalar::FloatData(FloatArray {
                data: pks.iter().map(|k| *k as f32 * 0.5).collect(),
            }),
        ),
        scalars(
            "d",
            106,
            T::Double,
            Scalar::DoubleData(DoubleArray {
                data: pks.iter().map(|k| *k as f64 * 0.25).collect(),
            }),
        ),
        scalars(
            "s",
            107,
            T::VarChar,
            Scalar::StringData(StringArray {
                data: pks.iter().map(|k| format!("row-{k}")).collect(),
            }),
        ),
        scalars(
            "j",
            108,
            T::Json,
            Scalar::JsonData(JsonArray {
                data: json_bytes(j_row),
            }),
        ),
        scalars(
            "arr_i64",
            109,
            T::Array,
            Scalar::ArrayData(ArrayArray {
                element_type: T::Int64 as i32,
                data: pks
                    .iter()
                    .map(|k| ScalarField {
                        data: Some(Scalar::LongData(LongArray {
                            data: vec![*k, k + 1],
                        })),
                    })
                    .collect(),
            }),
        ),
        scalars(
            "arr_s",
            110,
            T::Array,
            Scalar::ArrayData(ArrayArray {
                element_type: T::VarChar as i32,
                data: pks
                    .iter()
                    .map(|k| ScalarField {
                        data: Some(Scalar::StringData(StringArray {
                            data: vec![format!("x{k}")],
                        })),
                    })
                    .collect(),
            }),
        ),
        vectors(
            "fv",
            111,
            T::FloatVector,
            4,
            Vector::FloatVector(FloatArray {
                data: pks.iter().flat_map(|k| fv_row(*k)).collect(),
            }),
        ),
        vectors(
            "bv",
            112,
            T::BinaryVector,
            16,
            Vector::BinaryVector(bv.into()),
        ),
        vectors(
            "f16v",
            113,
            T::Float16Vector,
            2,
            Vector::Float16Vector(f16.into()),
        ),
        vectors(
            "bf16v",
            114,
            T::BFloat16Vector,
            2,
            Vector::Bfloat16Vector(bf16.into()),
        ),
        vectors(
            "sv",
            115,
            T::SparseFloatVector,
            0,
            Vector::SparseFloatVector(SparseFloatArray {
                contents: pks
                    .iter()
                    .map(|k| encode_sparse_row(&sv_row(*k)).into())
                    .collect(),
                dim: 0,
            }),
        ),
        vectors("i8v", 116, T::Int8Vector, 3, Vector::Int8Vector(i8v.into())),
        nullable,
        meta,
    ]
}

/// Exact f32 → bfloat16 for values representable in bfloat16 (the sample values are).
fn bf16_push(out: &mut Vec<u8>, x: f32) {
    out.extend_from_slice(&((x.to_bits() >> 16) as u16).to_le_bytes());
}

/// The JSON row event `row` object expected for primary key `k`, with dynamic fields merged
/// (`merged`) or kept under `$meta`.
pub fn expected_row(k: i64, merged: bool) -> serde_json::Value {
    let bv = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode([k as u8, 0xA5])
    };
    let sv: serde_json::Map<String, serde_json::Value> = sv_row(k)
        .into_iter()
        .map(|(i, v)| (i.to_string(), json!(v)))
        .collect();
    let mut row = json!({
        "id": k,
        "b": k % 2 == 0,
        "i8": (k % 100) - 50,
        "i16": k * 3,
        "i32": k * 1000,
        "f": k as f32 * 0.5,
        "d": k as f64 * 0.25,
        "s": format!("row-{k}"),
        "j": j_row(k),
        "arr_i64": [k, k + 1],
        "arr_s": [format!("x{k}")],
        "fv": fv_row(k),
        "bv": bv,
        "f16v": f16_row(k),
        "bf16v": bf16_row(k),
        "sv": sv,
        "i8v": i8v_row(k),
        "n": if k % 2 == 0 { json!(k) } else { json!(null) },
    });
    if let Some(obj) = row.as_object_mut() {
        if merged {
            if let Some(m) = meta_row(k).as_object() {
                obj.extend(m.clone());
            }
        } else {
            obj.insert("$meta".into(), meta_row(k));
        }
    }
    row
}

fn position(channel: &str, offset: u64, ts: u64) -> SourcePosition {
    SourcePosition {
        channel: channel.into(),
        offset: offset.to_be_bytes().to_vec(),
        ts,
    }
}

fn event(channel: &str, offset: u64, ts: u64, op: Op) -> ChangeEvent {
    ChangeEvent {
        position: position(channel, offset, ts),
        database: DATABASE.into(),
        collection: COLLECTION.into(),
        collection_id: COLLECTION_ID,
        collection_def: Some(Arc::new(collection_def())),
        op,
    }
}

fn rows(pks: &[i64]) -> RowBatch {
    RowBatch {
        partition: "_default".into(),
        shard: "by-dev-rootcoord-dml_0_4242v0".into(),
        num_rows: pks.len(),
        columns: columns(pks),
    }
}

fn keys(pks: &[i64]) -> DeleteBatch {
    DeleteBatch {
        partition: None,
        shard: "by-dev-rootcoord-dml_0_4242v0".into(),
        num_rows: pks.len(),
        primary_keys: IDs {
            id_field: Some(IdField::IntId(LongArray { data: pks.to_vec() })),
        },
    }
}

/// An insert of rows `pks` read at `offset` of `channel` (hybrid ts built from `ts_ms`).
pub fn insert(channel: &str, offset: u64, ts_ms: u64, pks: &[i64]) -> ChangeEvent {
    event(channel, offset, ts_ms << 18, Op::Insert(rows(pks)))
}

/// An upsert of rows `pks`.
pub fn upsert(channel: &str, offset: u64, ts_ms: u64, pks: &[i64]) -> ChangeEvent {
    event(
        channel,
        offset,
        ts_ms << 18,
        Op::Upsert {
            delete: keys(pks),
            insert: rows(pks),
        },
    )
}

/// A delete of `pks` (all partitions).
pub fn delete(channel: &str, offset: u64, ts_ms: u64, pks: &[i64]) -> ChangeEvent {
    event(channel, offset, ts_ms << 18, Op::Delete(keys(pks)))
}

/// A create-collection DDL of the sample collection.
pub fn create_collection(channel: &str, offset: u64, ts_ms: u64) -> ChangeEvent {
    event(
        channel,
        offset,
        ts_ms << 18,
        Op::Ddl(Ddl::CreateCollection(Box::new(collection_def()))),
    )
}

/// A DDL `ddl` on the sample collection (the collection definition attached).
pub fn ddl(channel: &str, offset: u64, ts_ms: u64, ddl: Ddl) -> ChangeEvent {
    event(channel, offset, ts_ms << 18, Op::Ddl(ddl))
}

/// A database-level DDL (no collection, no definition).
pub fn database_ddl(
    channel: &str,
    offset: u64,
    ts_ms: u64,
    database: &str,
    ddl: Ddl,
) -> ChangeEvent {
    ChangeEvent {
        position: position(channel, offset, ts_ms << 18),
        database: database.into(),
        collection: String::new(),
        collection_id: 0,
        collection_def: None,
        op: Op::Ddl(ddl),
    }
}
