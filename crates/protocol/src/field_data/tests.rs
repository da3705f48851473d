use super::*;
use crate::schema::DataType;

fn scalar(t: DataType, name: &str, data: Scalar) -> FieldData {
    FieldData {
        r#type: t as i32,
        field_name: name.into(),
        field_id: 100,
        field: Some(Field::Scalars(ScalarField { data: Some(data) })),
        ..Default::default()
    }
}

fn vector(t: DataType, dim: i64, data: Vector) -> FieldData {
    FieldData {
        r#type: t as i32,
        field_name: "v".into(),
        field_id: 101,
        field: Some(Field::Vectors(VectorField {
            dim,
            data: Some(data),
        })),
        ..Default::default()
    }
}

fn bytes(n: usize, seed: u8) -> Bytes {
    (0..n)
        .map(|i| seed.wrapping_add(u8::try_from(i % 251).unwrap()))
        .collect()
}

fn sparse_row(pairs: &[(u32, f32)]) -> Bytes {
    pairs
        .iter()
        .flat_map(|(i, v)| [i.to_le_bytes(), v.to_le_bytes()].concat())
        .collect()
}

/// One column of `rows` rows (seeded so that two columns differ) for every data kind.
fn columns(rows: usize, seed: u8) -> Vec<FieldData> {
    let n = rows;
    let s = i64::from(seed);
    let strings: Vec<String> = (0..n).map(|i| format!("s{seed}-{i}")).collect();
    let blobs: Vec<Bytes> = (0..n)
        .map(|i| bytes(3, seed.wrapping_add(i as u8)))
        .collect();
    vec![
        scalar(
            DataType::Bool,
            "b",
            Scalar::BoolData(BoolArray {
                data: vec![seed & 1 == 0; n],
            }),
        ),
        scalar(
            DataType::Int8,
            "i8",
            Scalar::IntData(IntArray {
                data: (0..n).map(|i| i as i32 + s as i32).collect(),
            }),
        ),
        scalar(
            DataType::Int64,
            "i64",
            Scalar::LongData(LongArray {
                data: (0..n).map(|i| i as i64 + s).collect(),
            }),
        ),
        scalar(
            DataType::Float,
            "f",
            Scalar::FloatData(FloatArray { data: vec![0.5; n] }),
        ),
        scalar(
            DataType::Double,
            "d",
            Scalar::DoubleData(DoubleArray { data: vec![1.5; n] }),
        ),
        scalar(
            DataType::VarChar,
            "s",
            Scalar::StringData(StringArray {
                data: strings.clone(),
            }),
        ),
        scalar(
            DataType::None,
            "raw",
            Scalar::BytesData(BytesArray {
                data: blobs.clone(),
            }),
        ),
        scalar(
            DataType::Array,
            "arr",
            Scalar::ArrayData(ArrayArray {
                data: (0..n)
                    .map(|i| ScalarField {
                        data: Some(Scalar::LongData(LongArray {
                            data: vec![i as i64; i % 3],
                        })),
                    })
                    .collect(),
                element_type: DataType::Int64 as i32,
            }),
        ),
        scalar(
            DataType::Json,
            "$meta",
            Scalar::JsonData(JsonArray {
                data: blobs.clone(),
            }),
        ),
        scalar(
            DataType::Geometry,
            "g",
            Scalar::GeometryData(GeometryArray { data: blobs }),
        ),
        scalar(
            DataType::Timestamptz,
            "tz",
            Scalar::TimestamptzData(TimestamptzArray { data: vec![s; n] }),
        ),
        scalar(
            DataType::Geometry,
            "wkt",
            Scalar::GeometryWktData(GeometryWktArray { data: strings }),
        ),
        vector(
            DataType::FloatVector,
            4,
            Vector::FloatVector(FloatArray {
                data: (0..n * 4).map(|i| i as f32).collect(),
            }),
        ),
        vector(
            DataType::BinaryVector,
            16,
            Vector::BinaryVector(bytes(n * 2, seed)),
        ),
        vector(
            DataType::Float16Vector,
            3,
            Vector::Float16Vector(bytes(n * 6, seed)),
        ),
        vector(
            DataType::BFloat16Vector,
            3,
            Vector::Bfloat16Vector(bytes(n * 6, seed)),
        ),
        vector(
            DataType::Int8Vector,
            5,
            Vector::Int8Vector(bytes(n * 5, seed)),
        ),
        vector(
            DataType::SparseFloatVector,
            1000,
            Vector::SparseFloatVector(SparseFloatArray {
                contents: (0..n)
                    .map(|i| sparse_row(&[(i as u32, 1.0), (999, 2.0)]))
                    .collect(),
                dim: 1000,
            }),
        ),
        vector(
            DataType::ArrayOfVector,
            2,
            Vector::VectorArray(VectorArray {
                dim: 2,
                data: (0..n)
                    .map(|_| VectorField {
                        dim: 2,
                        data: Some(Vector::FloatVector(FloatArray { data: vec![1.0; 4] })),
                    })
                    .collect(),
                element_type: DataType::FloatVector as i32,
            }),
        ),
        FieldData {
            r#type: DataType::ArrayOfStruct as i32,
            field_name: "st".into(),
            field_id: 102,
            field: Some(Field::StructArrays(StructArrayField {
                fields: vec![scalar(
                    DataType::Array,
                    "st.a",
                    Scalar::ArrayData(ArrayArray {
                        data: vec![ScalarField::default(); n],
                        element_type: DataType::Int32 as i32,
                    }),
                )],
            })),
            ..Default::default()
        },
    ]
}

#[test]
fn num_rows_of_every_kind() {
    for rows in [0, 1, 3] {
        for col in columns(rows, 1) {
            assert_eq!(num_rows(&col).unwrap(), rows, "{col:?}");
            assert_eq!(stored_rows(&col).unwrap(), rows, "{col:?}");
        }
    }
    assert_eq!(num_rows(&FieldData::default()).unwrap(), 0);
    let no_scalar_data = FieldData {
        field: Some(Field::Scalars(ScalarField { data: None })),
        ..Default::default()
    };
    assert_eq!(num_rows(&no_scalar_data).unwrap(), 0);
}

#[test]
fn dense_vector_dims_are_checked() {
    let bad = [
        vector(
            DataType::FloatVector,
            4,
            Vector::FloatVector(FloatArray { data: vec![0.0; 6] }),
        ),
        vector(
            DataType::FloatVector,
            0,
            Vector::FloatVector(FloatArray { data: vec![0.0; 4] }),
        ),
        vector(
            DataType::BinaryVector,
            12,
            Vector::BinaryVector(bytes(3, 0)),
        ),
        vector(
            DataType::BinaryVector,
            16,
            Vector::BinaryVector(bytes(3, 0)),
        ),
        vector(
            DataType::Float16Vector,
            3,
            Vector::Float16Vector(bytes(7, 0)),
        ),
        vector(
            DataType::BFloat16Vector,
            -1,
            Vector::Bfloat16Vector(bytes(2, 0)),
        ),
        vector(DataType::Int8Vector, 5, Vector::Int8Vector(bytes(6, 0))),
    ];
    for col in bad {
        let err = num_rows(&col).unwrap_err();
        assert!(matches!(err, FieldDataError::Dim { .. }), "{err}");
        assert!(err.to_string().contains("`v`"), "{err}");
    }
    // No data: zero rows whatever the dim.
    let empty = vector(
        DataType::FloatVector,
        0,
        Vector::FloatVector(FloatArray::default()),
    );
    assert_eq!(num_rows(&empty).unwrap(), 0);
}

#[test]
fn append_every_kind() {
    for (a, b) in columns(2, 1).into_iter().zip(columns(3, 7)) {
        let mut dst = a.clone();
        append(&mut dst, &b).unwrap();
        assert_eq!(num_rows(&dst).unwrap(), 5, "{dst:?}");
        // The rows are the rows of `a` then those of `b`.
        assert_eq!(slice_rows(&dst, 0..2).unwrap(), a, "{a:?}");
        assert_eq!(slice_rows(&dst, 2..5).unwrap(), b, "{b:?}");
        // concat gives the same column.
        assert_eq!(concat([&a, &b]).unwrap(), dst);
        // Appending to an empty column copies.
        let mut empty = FieldData::default();
        append(&mut empty, &b).unwrap();
        assert_eq!(empty, b);
        // Appending an empty column of the same field changes nothing.
        let mut same = a.clone();
        append(&mut same, &slice_rows(&b, 0..0).unwrap()).unwrap();
        assert_eq!(same, a);
    }
}

#[test]
fn append_checks_the_field() {
    let cols = columns(2, 1);
    let (int64, float) = (&cols[2], &cols[3]);
    let mut dst = int64.clone();
    let err = append(&mut dst, float).unwrap_err();
    assert!(matches!(err, FieldDataError::Incompatible { .. }), "{err}");
    assert_eq!(&dst, int64, "dst changed after an error");

    let mut other_id = int64.clone();
    other_id.field_id = 999;
    assert!(append(&mut dst, &other_id).is_err());

    // Same type, different dims.
    let v4 = &cols[12];
    let mut v8 = v4.clone();
    if let Some(Field::Vectors(v)) = &mut v8.field {
        v.dim = 8;
    }
    let mut dst = v4.clone();
    let err = append(&mut dst, &v8).unwrap_err();
    assert!(err.to_string().contains("dim 4 vs 8"), "{err}");

    // Same type tag, different scalar kinds.
    let mut longs_as_ints = int64.clone();
    longs_as_ints.field = cols[1].field.clone();
    let mut dst = int64.clone();
    assert!(append(&mut dst, &longs_as_ints).is_err());
}

#[test]
fn sparse_dim_is_the_max() {
    let cols = columns(1, 1);
    let a = cols[17].clone();
    let mut b = a.clone();
    if let Some(Field::Vectors(v)) = &mut b.field {
        v.dim = 5000;
        if let Some(Vector::SparseFloatVector(s)) = &mut v.data {
            s.dim = 5000;
        }
    }
    let mut dst = a;
    append(&mut dst, &b).unwrap();
    let Some(Field::Vectors(v)) = &dst.field else {
        panic!()
    };
    assert_eq!(v.dim, 5000);
    let Some(Vector::SparseFloatVector(s)) = &v.data else {
        panic!()
    };
    assert_eq!((s.dim, s.contents.len()), (5000, 2));
}

#[test]
fn valid_data_is_concatenated() {
    let cols = columns(2, 1);
    let mut nullable = cols[2].clone();
    nullable.valid_data = vec![true, false];
    let plain = cols[2].clone();

    let mut dst = plain.clone();
    append(&mut dst, &nullable).unwrap();
    assert_eq!(dst.valid_data, vec![true, true, true, false]);
    assert_eq!(num_rows(&dst).unwrap(), 4);

    let mut dst = nullable.clone();
    append(&mut dst, &plain).unwrap();
    assert_eq!(dst.valid_data, vec![true, false, true, true]);

    let mut dst = plain.clone();
    append(&mut dst, &plain).unwrap();
    assert!(dst.valid_data.is_empty());
}

#[test]
fn compact_nullable_columns() {
    // Three rows, the middle one null, only two values stored.
    let mut compact = columns(2, 1)[12].clone();
    compact.valid_data = vec![true, false, true];
    assert_eq!(num_rows(&compact).unwrap(), 3);
    assert_eq!(stored_rows(&compact).unwrap(), 2);

    let tail = slice_rows(&compact, 1..3).unwrap();
    assert_eq!(tail.valid_data, vec![false, true]);
    assert_eq!(stored_rows(&tail).unwrap(), 1);
    let Some(Field::Vectors(v)) = &tail.field else {
        panic!()
    };
    let Some(Vector::FloatVector(f)) = &v.data else {
        panic!()
    };
    assert_eq!(f.data, vec![4.0, 5.0, 6.0, 7.0]);

    let mut dst = compact.clone();
    append(&mut dst, &compact).unwrap();
    assert_eq!(num_rows(&dst).unwrap(), 6);
    assert_eq!(stored_rows(&dst).unwrap(), 4);

    // A full column with nulls cannot be mixed with a compact one.
    let mut full = columns(3, 1)[12].clone();
    full.valid_data = vec![true, false, true];
    let mut dst = full.clone();
    assert!(append(&mut dst, &compact).is_err());

    // valid_data that matches neither layout.
    let mut broken = columns(2, 1)[2].clone();
    broken.valid_data = vec![false, false, false];
    assert!(matches!(
        slice_rows(&broken, 0..1),
        Err(FieldDataError::Inconsistent { .. })
    ));
}

#[test]
fn slice_bounds_and_sharing() {
    let col = columns(3, 1)[13].clone();
    assert!(matches!(
        slice_rows(&col, 2..4),
        Err(FieldDataError::OutOfRange { rows: 3, .. })
    ));
    #[allow(clippy::reversed_empty_ranges)]
    let reversed = slice_rows(&col, 2..1);
    assert!(reversed.is_err());
    let part = slice_rows(&col, 1..2).unwrap();
    let (Some(Field::Vectors(all)), Some(Field::Vectors(one))) = (&col.field, &part.field) else {
        panic!()
    };
    let (Some(Vector::BinaryVector(all)), Some(Vector::BinaryVector(one))) = (&all.data, &one.data)
    else {
        panic!()
    };
    assert_eq!(one.as_ref(), &all[2..4]);
    assert_eq!(
        one.as_ptr(),
        all[2..].as_ptr(),
        "binary vector slice was copied"
    );
}

#[test]
fn bytes_append_reuses_unique_buffers() {
    let mut dst = Bytes::from(vec![1, 2, 3]);
    append_bytes(&mut dst, &Bytes::from_static(&[4]));
    append_bytes(&mut dst, &Bytes::from_static(&[5, 6]));
    assert_eq!(dst.as_ref(), &[1, 2, 3, 4, 5, 6]);
    let shared = Bytes::from_static(&[9]);
    let mut dst = shared.clone();
    append_bytes(&mut dst, &Bytes::from_static(&[8]));
    assert_eq!((dst.as_ref(), shared.as_ref()), (&[9, 8][..], &[9][..]));
}

#[test]
fn ids_helpers() {
    let ints = |v: &[i64]| IDs {
        id_field: Some(IdField::IntId(LongArray { data: v.to_vec() })),
    };
    let strs = |v: &[&str]| IDs {
        id_field: Some(IdField::StrId(StringArray {
            data: v.iter().map(|s| (*s).to_owned()).collect(),
        })),
    };
    assert_eq!(ids_len(&IDs::default()), 0);
    assert_eq!(ids_len(&ints(&[1, 2])), 2);
    assert_eq!(ids_len(&strs(&["a"])), 1);

    let mut dst = IDs::default();
    ids_append(&mut dst, &ints(&[1, 2])).unwrap();
    ids_append(&mut dst, &ints(&[3])).unwrap();
    ids_append(&mut dst, &IDs::default()).unwrap();
    assert_eq!(dst, ints(&[1, 2, 3]));
    let err = ids_append(&mut dst, &strs(&["x"])).unwrap_err();
    assert!(matches!(err, FieldDataError::Ids(_)), "{err}");
    assert_eq!(dst, ints(&[1, 2, 3]));
    // An empty key list of the other kind is fine.
    ids_append(&mut dst, &strs(&[])).unwrap();

    let mut s = strs(&["a"]);
    ids_append(&mut s, &strs(&["b", "c"])).unwrap();
    assert_eq!(s, strs(&["a", "b", "c"]));
    assert_eq!(ids_slice(&s, 1..3).unwrap(), strs(&["b", "c"]));
    assert_eq!(ids_slice(&dst, 0..1).unwrap(), ints(&[1]));
    assert!(ids_slice(&dst, 2..4).is_err());
}
