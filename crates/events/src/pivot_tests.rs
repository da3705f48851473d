//! Pivot tests: every data type, both nullable layouts, and the errors.

use cdc_protocol::schema::field_data::Field;
use cdc_protocol::schema::scalar_field::Data as Scalar;
use cdc_protocol::schema::vector_field::Data as Vector;
use cdc_protocol::schema::{FieldData, IntArray, ScalarField};

use super::*;
use crate::sample;

fn schema() -> RowSchema {
    RowSchema::from_milvus("default", "all_types", 1, &sample::schema()).unwrap()
}

fn get<'a>(rs: &RowSchema, row: &'a [Value], name: &str) -> &'a Value {
    let i = rs.fields.iter().position(|f| f.name == name).unwrap();
    &row[i]
}

#[test]
fn every_type_is_pivoted() {
    let rs = schema();
    let rows = pivot(&rs, &sample::columns(&[4, 7]), 2).unwrap();
    assert_eq!(rows.len(), 2);
    let r = &rows[1];
    assert_eq!(get(&rs, r, "id"), &Value::Long(7));
    assert_eq!(get(&rs, r, "b"), &Value::Bool(false));
    assert_eq!(get(&rs, r, "i8"), &Value::Int(-43));
    assert_eq!(get(&rs, r, "i16"), &Value::Int(21));
    assert_eq!(get(&rs, r, "i32"), &Value::Int(7000));
    assert_eq!(get(&rs, r, "f"), &Value::Float(3.5));
    assert_eq!(get(&rs, r, "d"), &Value::Double(1.75));
    assert_eq!(get(&rs, r, "s"), &Value::String("row-7".into()));
    assert_eq!(
        get(&rs, r, "j"),
        &Value::Json(serde_json::json!({"k": 7, "tags": ["a", "b"], "nested": {"x": 14}}))
    );
    assert_eq!(
        get(&rs, r, "arr_i64"),
        &Value::Array(vec![Value::Long(7), Value::Long(8)])
    );
    assert_eq!(
        get(&rs, r, "arr_s"),
        &Value::Array(vec![Value::String("x7".into())])
    );
    assert_eq!(
        get(&rs, r, "fv"),
        &Value::FloatVector(vec![7.0, 7.5, -7.0, 0.25])
    );
    assert_eq!(get(&rs, r, "bv"), &Value::Bytes(vec![7, 0xA5]));
    assert_eq!(get(&rs, r, "f16v"), &Value::FloatVector(vec![7.0, -0.5]));
    assert_eq!(get(&rs, r, "bf16v"), &Value::FloatVector(vec![7.0, 0.25]));
    assert_eq!(
        get(&rs, r, "sv"),
        &Value::SparseVector(vec![(7, 1.5), (107, -0.25)])
    );
    assert_eq!(get(&rs, r, "i8v"), &Value::Int8Vector(vec![1, -2, 7]));
    assert_eq!(get(&rs, r, "n"), &Value::Null);
    assert_eq!(get(&rs, &rows[0], "n"), &Value::Int(4));
    assert_eq!(
        get(&rs, r, "$meta"),
        &Value::Json(serde_json::json!({"extra": "e7", "score": 7}))
    );
}

fn nullable_column(data: Vec<i32>, valid: Vec<bool>) -> FieldData {
    FieldData {
        field_name: "n".into(),
        field_id: 117,
        field: Some(Field::Scalars(ScalarField {
            data: Some(Scalar::IntData(IntArray { data })),
        })),
        valid_data: valid,
        ..Default::default()
    }
}

fn with_column(pks: &[i64], replace: FieldData) -> Vec<FieldData> {
    let mut cols = sample::columns(pks);
    let i = cols
        .iter()
        .position(|c| c.field_name == replace.field_name)
        .unwrap();
    cols[i] = replace;
    cols
}

#[test]
fn nullable_columns_in_both_layouts() {
    let rs = schema();
    let valid = vec![false, true, false, true];
    // Full length, placeholders at null positions.
    let full = with_column(
        &[1, 2, 3, 4],
        nullable_column(vec![0, 20, 0, 40], valid.clone()),
    );
    // Compacted to the valid rows.
    let compact = with_column(&[1, 2, 3, 4], nullable_column(vec![20, 40], valid));
    for cols in [full, compact] {
        let rows = pivot(&rs, &cols, 4).unwrap();
        let n: Vec<_> = rows.iter().map(|r| get(&rs, r, "n").clone()).collect();
        assert_eq!(
            n,
            [Value::Null, Value::Int(20), Value::Null, Value::Int(40)]
        );
    }
    // A missing nullable column is all nulls.
    let mut cols = sample::columns(&[1]);
    cols.retain(|c| c.field_name != "n");
    assert_eq!(
        get(&rs, &pivot(&rs, &cols, 1).unwrap()[0], "n"),
        &Value::Null
    );
}

#[test]
fn errors_name_the_field_and_the_problem() {
    let rs = schema();
    // Wrong number of values.
    let e = pivot(&rs, &sample::columns(&[1, 2]), 3).unwrap_err();
    assert!(
        e.contains("field \"id\"") && e.contains("2 values for 3 rows"),
        "{e}"
    );
    // Missing non-nullable column.
    let mut cols = sample::columns(&[1]);
    cols.retain(|c| c.field_name != "fv");
    let e = pivot(&rs, &cols, 1).unwrap_err();
    assert!(e.contains("\"fv\"") && e.contains("no column"), "{e}");
    // Type mismatch.
    let mut bad = nullable_column(vec![1], vec![]);
    bad.field_name = "s".into();
    bad.field_id = 107;
    let e = pivot(&rs, &with_column(&[1], bad), 1).unwrap_err();
    assert!(
        e.contains("\"s\"") && e.contains("int data") && e.contains("VarChar"),
        "{e}"
    );
    // Truncated vector data.
    let mut cols = sample::columns(&[1]);
    let fv = cols.iter_mut().find(|c| c.field_name == "fv").unwrap();
    if let Some(Field::Vectors(v)) = &mut fv.field {
        if let Some(Vector::FloatVector(a)) = &mut v.data {
            a.data.pop();
        }
    }
    let e = pivot(&rs, &cols, 1).unwrap_err();
    assert!(
        e.contains("\"fv\"") && e.contains("not a multiple of 4"),
        "{e}"
    );
    // Invalid JSON.
    let mut cols = sample::columns(&[1]);
    let j = cols.iter_mut().find(|c| c.field_name == "j").unwrap();
    if let Some(Field::Scalars(ScalarField {
        data: Some(Scalar::JsonData(a)),
    })) = &mut j.field
    {
        a.data[0] = b"{not json".to_vec().into();
    }
    let e = pivot(&rs, &cols, 1).unwrap_err();
    assert!(
        e.contains("\"j\"") && e.contains("row 0 is not valid JSON"),
        "{e}"
    );
}

#[test]
fn unknown_columns_are_skipped() {
    let rs = schema();
    let mut cols = sample::columns(&[1]);
    let mut extra = nullable_column(vec![5], vec![]);
    extra.field_name = "not_in_schema".into();
    extra.field_id = 999;
    cols.push(extra);
    assert_eq!(pivot(&rs, &cols, 1).unwrap().len(), 1);
}
