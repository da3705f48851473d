//! The row layout of a collection, derived once from its Milvus `CollectionSchema` and shared by
//! every row event of that collection.

use cdc_protocol::schema::{CollectionSchema, DataType, FieldSchema};

use crate::error::EventError;

/// Name Milvus gives the dynamic field.
pub const DYNAMIC_FIELD: &str = "$meta";

/// One field of a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldInfo {
    /// Milvus field name (`$meta` for the dynamic field).
    pub name: String,
    /// Milvus field id (0 when the schema had none).
    pub field_id: i64,
    /// Milvus data type.
    pub data_type: DataType,
    /// Element type of an Array field (`None` otherwise).
    pub element_type: DataType,
    /// Vector dimension from the `dim` type parameter (0 when not a dense vector).
    pub dim: usize,
    /// Values may be missing: nullable fields, function outputs and the dynamic field.
    pub nullable: bool,
    /// The primary key.
    pub primary: bool,
    /// The dynamic `$meta` field.
    pub dynamic: bool,
}

/// The row layout of one collection: fields in schema order (the dynamic field last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowSchema {
    /// Database name.
    pub database: String,
    /// Collection name.
    pub collection: String,
    /// Source collection id (0 when unknown).
    pub collection_id: i64,
    /// Fields of a row, in schema order.
    pub fields: Vec<FieldInfo>,
    /// Index of the primary key in `fields`.
    pub primary: Option<usize>,
    /// Index of the dynamic field in `fields`.
    pub dynamic: Option<usize>,
}

impl RowSchema {
    /// Derive the layout from a Milvus schema. System fields (`RowID`, `Timestamp`) are left
    /// out; types row events cannot represent (struct and vector arrays) are an error naming
    /// the field.
    pub fn from_milvus(
        database: &str,
        collection: &str,
        collection_id: i64,
        schema: &CollectionSchema,
    ) -> Result<Self, EventError> {
        let mut fields = Vec::with_capacity(schema.fields.len() + 1);
        let mut dynamic_field = None;
        for f in &schema.fields {
            if is_system_field(f) {
                continue;
            }
            let info = field_info(f).map_err(|m| {
                EventError::decode(format!(
                    "collection {database}.{collection}, field {:?}: {m}",
                    f.name
                ))
            })?;
            if info.dynamic {
                dynamic_field = Some(info);
            } else {
                fields.push(info);
            }
        }
        if dynamic_field.is_none() && schema.enable_dynamic_field {
            dynamic_field = Some(FieldInfo {
                name: DYNAMIC_FIELD.into(),
                field_id: 0,
                data_type: DataType::Json,
                element_type: DataType::None,
                dim: 0,
                nullable: true,
                primary: false,
                dynamic: true,
            });
        }
        let dynamic = dynamic_field.map(|d| {
            fields.push(d);
            fields.len() - 1
        });
        let primary = fields.iter().position(|f| f.primary);
        Ok(Self {
            database: database.into(),
            collection: collection.into(),
            collection_id,
            fields,
            primary,
            dynamic,
        })
    }

    /// A layout without fields, for DDL events of objects whose schema is unknown.
    pub fn empty(database: &str, collection: &str) -> Self {
        Self {
            database: database.into(),
            collection: collection.into(),
            collection_id: 0,
            fields: Vec::new(),
            primary: None,
            dynamic: None,
        }
    }

    /// The primary key field.
    pub fn primary_field(&self) -> Option<&FieldInfo> {
        self.primary.map(|i| &self.fields[i])
    }

    /// Index of the field a column belongs to: by id when both have one, else by name; the
    /// dynamic column by its flag.
    pub fn slot_of(&self, field_id: i64, name: &str, is_dynamic: bool) -> Option<usize> {
        if is_dynamic || name == DYNAMIC_FIELD {
            return self.dynamic;
        }
        if field_id != 0 {
            if let Some(i) = self.fields.iter().position(|f| f.field_id == field_id) {
                return Some(i);
            }
        }
        self.fields
            .iter()
            .position(|f| f.name == name && !f.dynamic)
    }
}

fn is_system_field(f: &FieldSchema) -> bool {
    (f.field_id == 0 && f.name == "RowID") || (f.field_id == 1 && f.name == "Timestamp")
}

fn field_info(f: &FieldSchema) -> Result<FieldInfo, String> {
    let data_type = DataType::try_from(f.data_type)
        .map_err(|_| format!("unknown Milvus data type {}", f.data_type))?;
    let element_type = DataType::try_from(f.element_type).unwrap_or(DataType::None);
    match data_type {
        DataType::None | DataType::ArrayOfVector | DataType::ArrayOfStruct | DataType::Struct => {
            return Err(format!(
                "data type {} is not supported by row events",
                data_type.as_str_name()
            ))
        }
        DataType::Array if !is_array_element(element_type) => {
            return Err(format!(
                "array element type {} is not supported by row events",
                element_type.as_str_name()
            ))
        }
        _ => {}
    }
    let dim = if matches!(
        data_type,
        DataType::FloatVector
            | DataType::BinaryVector
            | DataType::Float16Vector
            | DataType::BFloat16Vector
            | DataType::Int8Vector
    ) {
        let raw = f
            .type_params
            .iter()
            .find(|kv| kv.key == "dim")
            .map(|kv| kv.value.as_str())
            .ok_or("vector field has no `dim` type parameter")?;
        raw.trim()
            .parse::<usize>()
            .ok()
            .filter(|d| *d > 0)
            .ok_or_else(|| format!("vector field has an invalid `dim` {raw:?}"))?
    } else {
        0
    };
    let dynamic = f.is_dynamic;
    Ok(FieldInfo {
        name: if dynamic && f.name.is_empty() {
            DYNAMIC_FIELD.into()
        } else {
            f.name.clone()
        },
        field_id: f.field_id,
        data_type: if dynamic { DataType::Json } else { data_type },
        element_type: if data_type == DataType::Array {
            element_type
        } else {
            DataType::None
        },
        dim,
        nullable: dynamic || f.nullable || f.is_function_output,
        primary: f.is_primary_key,
        dynamic,
    })
}

/// Types Milvus allows as array elements.
pub fn is_array_element(t: DataType) -> bool {
    matches!(
        t,
        DataType::Bool
            | DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::Float
            | DataType::Double
            | DataType::String
            | DataType::VarChar
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdc_protocol::common::KeyValuePair;

    fn field(id: i64, name: &str, t: DataType) -> FieldSchema {
        FieldSchema {
            field_id: id,
            name: name.into(),
            data_type: t as i32,
            ..Default::default()
        }
    }

    #[test]
    fn derives_fields_primary_and_dynamic() {
        let mut pk = field(100, "id", DataType::Int64);
        pk.is_primary_key = true;
        let mut vec = field(101, "v", DataType::FloatVector);
        vec.type_params = vec![KeyValuePair {
            key: "dim".into(),
            value: "4".into(),
        }];
        let schema = CollectionSchema {
            name: "c".into(),
            fields: vec![field(0, "RowID", DataType::Int64), pk, vec],
            enable_dynamic_field: true,
            ..Default::default()
        };
        let rs = RowSchema::from_milvus("db", "c", 7, &schema).unwrap();
        assert_eq!(
            rs.fields
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>(),
            ["id", "v", "$meta"]
        );
        assert_eq!(rs.primary, Some(0));
        assert_eq!(rs.dynamic, Some(2));
        assert_eq!(rs.fields[1].dim, 4);
        assert_eq!(rs.slot_of(101, "whatever", false), Some(1));
        assert_eq!(rs.slot_of(0, "v", false), Some(1));
        assert_eq!(rs.slot_of(102, "$meta", true), Some(2));
        assert_eq!(rs.slot_of(0, "nope", false), None);
    }

    #[test]
    fn rejects_vectors_without_dim_and_unsupported_types() {
        let schema = CollectionSchema {
            fields: vec![field(100, "v", DataType::FloatVector)],
            ..Default::default()
        };
        let e = RowSchema::from_milvus("db", "c", 1, &schema).unwrap_err();
        assert!(
            e.message.contains("field \"v\"") && e.message.contains("dim"),
            "{e}"
        );
        let schema = CollectionSchema {
            fields: vec![field(100, "s", DataType::Struct)],
            ..Default::default()
        };
        let e = RowSchema::from_milvus("db", "c", 1, &schema).unwrap_err();
        assert!(e.message.contains("Struct"), "{e}");
    }
}
