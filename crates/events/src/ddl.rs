//! JSON descriptions of schema and control operations, so a consumer learns what changed
//! (the new schema, index parameters, loaded partitions...) without Milvus protobufs.

use cdc_engine::{CollectionDef, Ddl};
use cdc_protocol::common::KeyValuePair;
use cdc_protocol::schema::{CollectionSchema, DataType, FieldSchema};
use serde_json::{json, Map, Value as Json};

fn rbac_json(r: &cdc_engine::rbac::RbacOp) -> Json {
    use cdc_engine::rbac::RbacOp;
    match r {
        RbacOp::CreateRole { role } | RbacOp::DropRole { role } => json!({ "role": role }),
        RbacOp::Grant(g) | RbacOp::Revoke(g) => json!({
            "role": g.role,
            "object_type": g.object_type,
            "object_name": g.object_name,
            "db_name": g.db,
            "privilege": g.privilege,
        }),
        RbacOp::CreateUser { user } | RbacOp::DropUser { user } => json!({ "user": user }),
        RbacOp::AddUserToRole { user, role } | RbacOp::RemoveUserFromRole { user, role } => {
            json!({ "user": user, "role": role })
        }
    }
}

/// The description of `ddl` (always a JSON object).
///
/// | kind | description |
/// |---|---|
/// | `create_database` | `{"properties": {..}}` |
/// | `create_collection` | [`collection_json`] |
/// | `create_partition`, `drop_partition` | `{"partition": name}` |
/// | `create_index` | `{"field_name", "index_name", "params": {..}}` |
/// | `drop_index` | `{"field_name", "index_name"}` |
/// | `alter_index` | `{"index_name", "params": {..}, "delete_keys": [..]}` |
/// | `load_collection` | `{"replica_number", "resource_groups", "load_fields", "refresh"}` |
/// | `load_partitions` | the same plus `"partitions"` |
/// | `release_partitions` | `{"partitions": [..]}` |
/// | `create_alias`, `alter_alias`, `drop_alias` | `{"alias": name}` (the event names the collection) |
/// | `alter_collection` | `{"properties": {..}, "delete_keys": [..]}` |
/// | `create_role`, `drop_role` | `{"role"}` |
/// | `grant_privilege`, `revoke_privilege` | `{"role", "object_type", "object_name", "db_name", "privilege"}` |
/// | `create_user`, `drop_user` | `{"user"}` (never a password or its hash) |
/// | `add_user_to_role`, `remove_user_from_role` | `{"user", "role"}` |
/// | others | `{}` |
///
/// Index `params`: the request's key/value pairs; a value that is itself a JSON object (the
/// `params` entry pymilvus sends) is embedded as JSON.
pub fn describe(ddl: &Ddl) -> Json {
    match ddl {
        Ddl::CreateDatabase { properties } => json!({ "properties": kv_object(properties) }),
        Ddl::CreateCollection(def) => collection_json(def),
        Ddl::CreatePartition { partition } | Ddl::DropPartition { partition } => {
            json!({ "partition": partition })
        }
        Ddl::CreateIndex(r) => json!({
            "field_name": r.field_name,
            "index_name": r.index_name,
            "params": params_object(&r.extra_params),
        }),
        Ddl::DropIndex(r) => json!({ "field_name": r.field_name, "index_name": r.index_name }),
        Ddl::AlterIndex(r) => json!({
            "index_name": r.index_name,
            "params": params_object(&r.extra_params),
            "delete_keys": r.delete_keys,
        }),
        Ddl::LoadCollection(r) => json!({
            "replica_number": r.replica_number,
            "resource_groups": r.resource_groups,
            "load_fields": r.load_fields,
            "refresh": r.refresh,
        }),
        Ddl::LoadPartitions(r) => json!({
            "partitions": r.partition_names,
            "replica_number": r.replica_number,
            "resource_groups": r.resource_groups,
            "load_fields": r.load_fields,
            "refresh": r.refresh,
        }),
        Ddl::ReleasePartitions(r) => json!({ "partitions": r.partition_names }),
        Ddl::CreateAlias { alias } | Ddl::AlterAlias { alias } | Ddl::DropAlias { alias } => {
            json!({ "alias": alias })
        }
        Ddl::Rbac(r) => rbac_json(r),
        Ddl::AlterCollection {
            properties,
            delete_keys,
        } => json!({ "properties": kv_object(properties), "delete_keys": delete_keys }),
        Ddl::DropDatabase | Ddl::DropCollection | Ddl::ReleaseCollection | Ddl::Flush => {
            json!({})
        }
    }
}

/// A collection definition: `{"schema": {..}, "shards_num", "consistency_level",
/// "properties", "num_partitions"}`.
pub fn collection_json(def: &CollectionDef) -> Json {
    json!({
        "schema": schema_json(&def.schema),
        "shards_num": def.shards_num,
        "consistency_level": consistency_name(def.consistency_level),
        "properties": kv_object(&def.properties),
        "num_partitions": def.num_partitions,
    })
}

/// A Milvus schema as JSON: `{"name", "description", "enable_dynamic_field", "fields": [..]}`,
/// each field `{"name", "field_id", "data_type", "is_primary_key", "auto_id", "nullable",
/// "is_partition_key", "is_clustering_key", "is_dynamic", "params": {..}}` plus
/// `"element_type"` for arrays.
pub fn schema_json(schema: &CollectionSchema) -> Json {
    json!({
        "name": schema.name,
        "description": schema.description,
        "enable_dynamic_field": schema.enable_dynamic_field,
        "fields": schema.fields.iter().map(field_json).collect::<Vec<_>>(),
    })
}

fn field_json(f: &FieldSchema) -> Json {
    let mut o = json!({
        "name": f.name,
        "field_id": f.field_id,
        "data_type": type_name(f.data_type),
        "description": f.description,
        "is_primary_key": f.is_primary_key,
        "auto_id": f.auto_id,
        "nullable": f.nullable,
        "is_partition_key": f.is_partition_key,
        "is_clustering_key": f.is_clustering_key,
        "is_dynamic": f.is_dynamic,
        "params": kv_object(&f.type_params),
    });
    if f.data_type == DataType::Array as i32 {
        o["element_type"] = json!(type_name(f.element_type));
    }
    o
}

/// The Milvus name of a data type number (`"Int64"`, `"FloatVector"`...).
pub fn type_name(t: i32) -> String {
    DataType::try_from(t)
        .map(|d| d.as_str_name().to_string())
        .unwrap_or_else(|_| format!("Unknown({t})"))
}

fn consistency_name(level: i32) -> String {
    match level {
        0 => "Strong".into(),
        1 => "Session".into(),
        2 => "Bounded".into(),
        3 => "Eventually".into(),
        4 => "Customized".into(),
        n => format!("Unknown({n})"),
    }
}

fn kv_object(kvs: &[KeyValuePair]) -> Json {
    Json::Object(
        kvs.iter()
            .map(|kv| (kv.key.clone(), Json::String(kv.value.clone())))
            .collect::<Map<_, _>>(),
    )
}

fn params_object(kvs: &[KeyValuePair]) -> Json {
    Json::Object(
        kvs.iter()
            .map(|kv| {
                let v = match serde_json::from_str::<Json>(&kv.value) {
                    Ok(obj @ Json::Object(_)) => obj,
                    _ => Json::String(kv.value.clone()),
                };
                (kv.key.clone(), v)
            })
            .collect::<Map<_, _>>(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdc_protocol::milvus::CreateIndexRequest;

    #[test]
    fn create_collection_lists_fields_with_types() {
        let d = describe(&Ddl::CreateCollection(Box::new(
            crate::sample::collection_def(),
        )));
        assert_eq!(d["consistency_level"], "Bounded");
        let fields = d["schema"]["fields"].as_array().unwrap();
        assert_eq!(fields[0]["name"], "id");
        assert_eq!(fields[0]["data_type"], "Int64");
        assert_eq!(fields[0]["is_primary_key"], true);
        let arr = fields.iter().find(|f| f["name"] == "arr_i64").unwrap();
        assert_eq!(arr["element_type"], "Int64");
        let fv = fields.iter().find(|f| f["name"] == "fv").unwrap();
        assert_eq!(fv["params"]["dim"], "4");
    }

    #[test]
    fn index_params_embed_json() {
        let r = CreateIndexRequest {
            field_name: "fv".into(),
            index_name: "idx".into(),
            extra_params: vec![
                KeyValuePair {
                    key: "index_type".into(),
                    value: "HNSW".into(),
                },
                KeyValuePair {
                    key: "params".into(),
                    value: r#"{"M": 8}"#.into(),
                },
            ],
            ..Default::default()
        };
        let d = describe(&Ddl::CreateIndex(r));
        assert_eq!(d["params"]["index_type"], "HNSW");
        assert_eq!(d["params"]["params"]["M"], 8);
        assert_eq!(describe(&Ddl::Flush), json!({}));
        assert_eq!(
            describe(&Ddl::AlterAlias {
                alias: "current".into()
            }),
            json!({ "alias": "current" })
        );
        let grant = cdc_engine::rbac::Grant {
            role: "reader".into(),
            object_type: "Collection".into(),
            object_name: "orders".into(),
            db: "default".into(),
            privilege: "Search".into(),
        };
        let d = describe(&Ddl::Rbac(cdc_engine::rbac::RbacOp::Revoke(grant)));
        assert_eq!(d["privilege"], "Search");
        assert_eq!(d["db_name"], "default");
        assert_eq!(
            describe(&Ddl::Rbac(cdc_engine::rbac::RbacOp::CreateUser {
                user: "alice".into()
            })),
            json!({ "user": "alice" })
        );
    }
}
