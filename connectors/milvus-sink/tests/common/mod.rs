//! Shared helpers of the Milvus sink integration tests: the skip rule, hand-built change events
//! and column data, and a small verifier that queries the target with our own gRPC client.

#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;

use cdc_connector_milvus_sink::MilvusSinkConfig;
use cdc_engine::config::BuildContext;
use cdc_engine::metrics::ComponentMetrics;
use cdc_engine::{
    ChangeEvent, CollectionDef, Ddl, DeleteBatch, Op, RowBatch, Sink, SinkContext, SourcePosition,
};
use cdc_protocol::common::KeyValuePair;
use cdc_protocol::milvus::milvus_service_client::MilvusServiceClient;
use cdc_protocol::milvus::*;
use cdc_protocol::schema::{
    field_data::Field, i_ds::IdField, scalar_field::Data as Scalar, vector_field, ArrayArray,
    CollectionSchema, DataType, FieldData, FieldSchema, FloatArray, IDs, JsonArray, LongArray,
    ScalarField, StringArray, VectorField,
};
use tonic::transport::Channel;

/// True when the end-to-end tests should run; prints why a test is skipped otherwise.
pub fn e2e(test: &str) -> bool {
    if std::env::var_os("MCDC_E2E").is_some() {
        return true;
    }
    println!(
        "SKIPPED {test}: set MCDC_E2E=1 after `scripts/dev-env up etcd kafka target lite` \
         (and `eval \"$(scripts/dev-env env)\"`) to run it against real Milvus services"
    );
    false
}

/// URI of the target Milvus 2.3.5.
pub fn target_uri() -> String {
    std::env::var("MCDC_TARGET_URI").unwrap_or_else(|_| "http://127.0.0.1:19531".into())
}

/// URI of milvus-lite.
pub fn lite_uri() -> String {
    std::env::var("MCDC_LITE_URI").unwrap_or_else(|_| "http://127.0.0.1:19533".into())
}

/// A unique name for this test run.
pub fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}_{}", n % 1_000_000_000_000)
}

/// A sink context for tests.
pub fn ctx(name: &str) -> SinkContext {
    SinkContext {
        pipeline: name.to_string(),
        sink_id: "target".into(),
        committed: Arc::new(Default::default()),
        metrics: ComponentMetrics::new(name, &cdc_engine::ComponentId::sink("target")),
    }
}

/// Build and open a sink on `uri`.
pub async fn open_sink(cfg: &MilvusSinkConfig, name: &str) -> Box<dyn Sink> {
    let mut s = cdc_engine::config::SinkConfig::build(cfg, &BuildContext::new(name, "target"))
        .await
        .expect("sink builds (is the target up?)");
    s.open(&ctx(name)).await.expect("sink opens");
    s
}

/// A hybrid timestamp of now plus `logical`.
pub fn ts_now(logical: u64) -> u64 {
    cdc_protocol::ts::compose(cdc_engine::metrics::now_ms(), logical)
}

/// Builds events with increasing offsets for one source channel.
pub struct Events {
    pub db: String,
    pub coll: String,
    pub def: Option<Arc<CollectionDef>>,
    pub shard: String,
    next_offset: u64,
    pub ts: u64,
}

impl Events {
    pub fn new(db: &str, coll: &str, def: Option<CollectionDef>) -> Self {
        Self {
            db: db.into(),
            coll: coll.into(),
            def: def.map(Arc::new),
            shard: "by-dev-rootcoord-dml_0_1v0".into(),
            next_offset: 0,
            ts: 0,
        }
    }

    /// An event with the next offset. `ts` 0 means "now".
    pub fn event(&mut self, op: Op) -> Arc<ChangeEvent> {
        self.next_offset += 1;
        Arc::new(ChangeEvent {
            position: SourcePosition {
                channel: "by-dev-rootcoord-dml_0".into(),
                offset: self.next_offset.to_be_bytes().to_vec(),
                ts: if self.ts == 0 {
                    ts_now(self.next_offset)
                } else {
                    self.ts
                },
            },
            database: self.db.clone(),
            collection: self.coll.clone(),
            collection_id: 4242,
            collection_def: self.def.clone(),
            op,
        })
    }

    pub fn ddl(&mut self, d: Ddl) -> Arc<ChangeEvent> {
        self.event(Op::Ddl(d))
    }

    pub fn insert(&mut self, partition: &str, columns: Vec<FieldData>) -> Arc<ChangeEvent> {
        let num_rows = rows_of(&columns);
        self.event(Op::Insert(RowBatch {
            partition: partition.into(),
            shard: self.shard.clone(),
            num_rows,
            columns,
        }))
    }

    pub fn delete_int(&mut self, keys: &[i64]) -> Arc<ChangeEvent> {
        self.event(Op::Delete(DeleteBatch {
            partition: None,
            shard: self.shard.clone(),
            num_rows: keys.len(),
            primary_keys: int_ids(keys),
        }))
    }

    pub fn delete_str(&mut self, keys: &[&str]) -> Arc<ChangeEvent> {
        self.event(Op::Delete(DeleteBatch {
            partition: None,
            shard: self.shard.clone(),
            num_rows: keys.len(),
            primary_keys: IDs {
                id_field: Some(IdField::StrId(StringArray {
                    data: keys.iter().map(|s| s.to_string()).collect(),
                })),
            },
        }))
    }

    pub fn upsert_int(&mut self, partition: &str, columns: Vec<FieldData>) -> Arc<ChangeEvent> {
        let keys = int_column_values(&columns[0]);
        let num_rows = rows_of(&columns);
        self.event(Op::Upsert {
            delete: DeleteBatch {
                partition: Some(partition.into()),
                shard: self.shard.clone(),
                num_rows: keys.len(),
                primary_keys: int_ids(&keys),
            },
            insert: RowBatch {
                partition: partition.into(),
                shard: self.shard.clone(),
                num_rows,
                columns,
            },
        })
    }
}

pub fn int_ids(keys: &[i64]) -> IDs {
    IDs {
        id_field: Some(IdField::IntId(LongArray {
            data: keys.to_vec(),
        })),
    }
}

fn rows_of(columns: &[FieldData]) -> usize {
    match columns.first().and_then(|c| c.field.as_ref()) {
        Some(Field::Scalars(s)) => match &s.data {
            Some(Scalar::LongData(a)) => a.data.len(),
            Some(Scalar::StringData(a)) => a.data.len(),
            _ => 0,
        },
        _ => 0,
    }
}

pub fn int_column_values(c: &FieldData) -> Vec<i64> {
    match &c.field {
        Some(Field::Scalars(ScalarField {
            data: Some(Scalar::LongData(a)),
        })) => a.data.clone(),
        _ => vec![],
    }
}

// ------------------------------------------------------------------- schemas and columns

pub fn field(name: &str, dt: DataType) -> FieldSchema {
    FieldSchema {
        name: name.into(),
        data_type: dt as i32,
        ..Default::default()
    }
}

pub fn kv(k: &str, v: &str) -> KeyValuePair {
    KeyValuePair {
        key: k.into(),
        value: v.into(),
    }
}

/// `id` int64 primary key (autoID on the source), `vec` float vector of `dim`, `title`
/// varchar, optionally `tag` JSON, and the dynamic field when `dynamic`.
pub fn int_def(name: &str, dim: usize, extra: bool, dynamic: bool) -> CollectionDef {
    let mut id = field("id", DataType::Int64);
    id.is_primary_key = true;
    id.auto_id = true;
    id.field_id = 100;
    let mut v = field("vec", DataType::FloatVector);
    v.type_params = vec![kv("dim", &dim.to_string())];
    let mut title = field("title", DataType::VarChar);
    title.type_params = vec![kv("max_length", "256")];
    let mut fields = vec![id, v, title];
    if extra {
        fields.push(field("tag", DataType::Json));
    }
    if dynamic {
        let mut m = field("$meta", DataType::Json);
        m.is_dynamic = true;
        fields.push(m);
    }
    CollectionDef {
        schema: CollectionSchema {
            name: name.into(),
            fields,
            enable_dynamic_field: dynamic,
            ..Default::default()
        },
        shards_num: 2,
        consistency_level: 0,
        ..Default::default()
    }
}

pub fn long_col(name: &str, v: Vec<i64>) -> FieldData {
    FieldData {
        r#type: DataType::Int64 as i32,
        field_name: name.into(),
        field: Some(Field::Scalars(ScalarField {
            data: Some(Scalar::LongData(LongArray { data: v })),
        })),
        ..Default::default()
    }
}

pub fn str_col(name: &str, v: Vec<String>) -> FieldData {
    FieldData {
        r#type: DataType::VarChar as i32,
        field_name: name.into(),
        field: Some(Field::Scalars(ScalarField {
            data: Some(Scalar::StringData(StringArray { data: v })),
        })),
        ..Default::default()
    }
}

pub fn json_col(name: &str, docs: Vec<String>, dynamic: bool) -> FieldData {
    FieldData {
        r#type: DataType::Json as i32,
        field_name: name.into(),
        field: Some(Field::Scalars(ScalarField {
            data: Some(Scalar::JsonData(JsonArray {
                data: docs.into_iter().map(|d| d.into_bytes().into()).collect(),
            })),
        })),
        is_dynamic: dynamic,
        ..Default::default()
    }
}

pub fn int_array_col(name: &str, rows: Vec<Vec<i64>>) -> FieldData {
    FieldData {
        r#type: DataType::Array as i32,
        field_name: name.into(),
        field: Some(Field::Scalars(ScalarField {
            data: Some(Scalar::ArrayData(ArrayArray {
                data: rows
                    .into_iter()
                    .map(|r| ScalarField {
                        data: Some(Scalar::LongData(LongArray { data: r })),
                    })
                    .collect(),
                element_type: DataType::Int64 as i32,
            })),
        })),
        ..Default::default()
    }
}

pub fn float_vec_col(name: &str, dim: usize, keys: &[i64]) -> FieldData {
    FieldData {
        r#type: DataType::FloatVector as i32,
        field_name: name.into(),
        field: Some(Field::Vectors(VectorField {
            dim: dim as i64,
            data: Some(vector_field::Data::FloatVector(FloatArray {
                data: keys
                    .iter()
                    .flat_map(|k| {
                        (0..dim).map(move |i| ((*k as usize * 31 + i) % 97) as f32 / 97.0)
                    })
                    .collect(),
            })),
        })),
        ..Default::default()
    }
}

pub fn binary_vec_col(name: &str, dim: usize, keys: &[i64]) -> FieldData {
    let bytes_per = dim / 8;
    FieldData {
        r#type: DataType::BinaryVector as i32,
        field_name: name.into(),
        field: Some(Field::Vectors(VectorField {
            dim: dim as i64,
            data: Some(vector_field::Data::BinaryVector(
                keys.iter()
                    .flat_map(|k| (0..bytes_per).map(move |i| (*k as u8).wrapping_add(i as u8)))
                    .collect::<Vec<u8>>()
                    .into(),
            )),
        })),
        ..Default::default()
    }
}

/// Columns for `int_def(.., extra=false, dynamic=false)`.
pub fn int_rows(keys: &[i64], dim: usize, title: &str) -> Vec<FieldData> {
    vec![
        long_col("id", keys.to_vec()),
        float_vec_col("vec", dim, keys),
        str_col(
            "title",
            keys.iter().map(|k| format!("{title}-{k}")).collect(),
        ),
    ]
}

// ---------------------------------------------------------------------------- DDL helpers

pub fn flat_index(field: &str, metric: &str) -> Ddl {
    Ddl::CreateIndex(CreateIndexRequest {
        field_name: field.into(),
        index_name: format!("{field}_idx"),
        extra_params: vec![
            kv(
                "index_type",
                if metric == "HAMMING" {
                    "BIN_FLAT"
                } else {
                    "FLAT"
                },
            ),
            kv("metric_type", metric),
            kv("params", "{}"),
        ],
        ..Default::default()
    })
}

pub fn load() -> Ddl {
    Ddl::LoadCollection(LoadCollectionRequest {
        replica_number: 1,
        ..Default::default()
    })
}

// ------------------------------------------------------------------------------- verifier

/// Reads the target with our own client, to check what the sink wrote.
pub struct Verifier {
    client: MilvusServiceClient<Channel>,
}

impl Verifier {
    pub async fn connect(uri: &str) -> Self {
        let ch = tonic::transport::Endpoint::from_shared(uri.to_string())
            .unwrap()
            .connect()
            .await
            .unwrap_or_else(|e| panic!("verifier cannot connect to {uri}: {e}"));
        Self {
            client: MilvusServiceClient::new(ch).max_decoding_message_size(256 << 20),
        }
    }

    fn req<T>(db: &str, m: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(m);
        r.metadata_mut().insert("dbname", db.parse().unwrap());
        r
    }

    pub async fn databases(&self) -> Vec<String> {
        let r = self
            .client
            .clone()
            .list_databases(Self::req("default", ListDatabasesRequest::default()))
            .await
            .unwrap()
            .into_inner();
        r.db_names
    }

    pub async fn describe(&self, db: &str, coll: &str) -> Option<DescribeCollectionResponse> {
        let r = self
            .client
            .clone()
            .describe_collection(Self::req(
                db,
                DescribeCollectionRequest {
                    db_name: db.into(),
                    collection_name: coll.into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        let st = r.status.clone().unwrap_or_default();
        (st.code == 0 && st.error_code == 0).then_some(r)
    }

    pub async fn partitions(&self, db: &str, coll: &str) -> Vec<String> {
        let r = self
            .client
            .clone()
            .show_partitions(Self::req(
                db,
                ShowPartitionsRequest {
                    db_name: db.into(),
                    collection_name: coll.into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        r.partition_names
    }

    pub async fn indexes(&self, db: &str, coll: &str) -> Vec<IndexDescription> {
        let r = self
            .client
            .clone()
            .describe_index(Self::req(
                db,
                DescribeIndexRequest {
                    db_name: db.into(),
                    collection_name: coll.into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        r.index_descriptions
    }

    pub async fn load_state(&self, db: &str, coll: &str, parts: &[&str]) -> i32 {
        let r = self
            .client
            .clone()
            .get_load_state(Self::req(
                db,
                GetLoadStateRequest {
                    db_name: db.into(),
                    collection_name: coll.into(),
                    partition_names: parts.iter().map(|p| p.to_string()).collect(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        r.state
    }

    /// Query `expr` with strong consistency, returning the columns.
    pub async fn query(&self, db: &str, coll: &str, expr: &str, out: &[&str]) -> Vec<FieldData> {
        let r = self
            .client
            .clone()
            .query(Self::req(
                db,
                QueryRequest {
                    db_name: db.into(),
                    collection_name: coll.into(),
                    expr: expr.into(),
                    output_fields: out.iter().map(|s| s.to_string()).collect(),
                    consistency_level: 0,
                    query_params: vec![kv("limit", "16384")],
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        let st = r.status.clone().unwrap_or_default();
        assert_eq!(st.code, 0, "query {expr} on {db}.{coll}: {}", st.reason);
        r.fields_data
    }

    /// Sorted int64 primary keys matching `expr`.
    pub async fn int_keys(&self, db: &str, coll: &str, expr: &str) -> Vec<i64> {
        let cols = self.query(db, coll, expr, &["id"]).await;
        let mut v = cols
            .iter()
            .find(|c| c.field_name == "id")
            .map(int_column_values)
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Sorted varchar primary keys `pk` matching `expr`.
    pub async fn str_keys(&self, db: &str, coll: &str, expr: &str) -> Vec<String> {
        let cols = self.query(db, coll, expr, &["pk"]).await;
        let mut v: Vec<String> = cols
            .iter()
            .find(|c| c.field_name == "pk")
            .and_then(|c| match &c.field {
                Some(Field::Scalars(ScalarField {
                    data: Some(Scalar::StringData(a)),
                })) => Some(a.data.clone()),
                _ => None,
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// A varchar column of the rows matching `expr`, in key order.
    pub async fn strings(
        &self,
        db: &str,
        coll: &str,
        expr: &str,
        name: &str,
    ) -> Vec<(i64, String)> {
        let cols = self.query(db, coll, expr, &["id", name]).await;
        let ids = cols
            .iter()
            .find(|c| c.field_name == "id")
            .map(int_column_values)
            .unwrap_or_default();
        let vals: Vec<String> = cols
            .iter()
            .find(|c| c.field_name == name)
            .and_then(|c| match &c.field {
                Some(Field::Scalars(ScalarField {
                    data: Some(Scalar::StringData(a)),
                })) => Some(a.data.clone()),
                _ => None,
            })
            .unwrap_or_default();
        let mut v: Vec<_> = ids.into_iter().zip(vals).collect();
        v.sort();
        v
    }
}
