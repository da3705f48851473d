//! The gRPC connection to the source Milvus used by the snapshot: endpoint (timeouts, TLS),
//! the `authorization` and `dbName` headers, and the few calls the copy needs (query pages,
//! `count(*)`, index descriptions, load state, load and release).

use std::time::Duration;

use base64::Engine as _;
use cdc_engine::{EngineError, ErrorKind};
use cdc_protocol::common::{ConsistencyLevel, KeyValuePair, LoadState, Status};
use cdc_protocol::milvus::milvus_service_client::MilvusServiceClient;
use cdc_protocol::milvus::*;
use cdc_protocol::schema::FieldData;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use crate::config::{MilvusSourceConfig, COMPONENT};

/// Largest answer accepted (one page of wide rows).
const MAX_DECODE_BYTES: usize = 512 * 1024 * 1024;
/// Timeout of one call (a Strong query waits for the collection's time tick).
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// A cheap-to-clone handle on the source Milvus API.
#[derive(Clone)]
pub(crate) struct SourceClient {
    inner: MilvusServiceClient<Channel>,
    auth: Option<AsciiMetadataValue>,
}

fn err(kind: ErrorKind, what: String) -> EngineError {
    EngineError::new(COMPONENT, kind, what)
}

fn endpoint(cfg: &MilvusSourceConfig, uri: &str) -> Result<Endpoint, EngineError> {
    let cfg_err = |m: String| EngineError::config(COMPONENT, m);
    let mut ep = Endpoint::from_shared(uri.to_string())
        .map_err(|e| cfg_err(format!("field `uri`: {uri:?} is not a valid URI: {e}")))?
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true)
        .http2_adaptive_window(true);
    if uri.starts_with("https://") {
        let tls = cfg
            .tls
            .clone()
            .unwrap_or_default()
            .client_config("tls")
            .map_err(cfg_err)?;
        ep = ep
            .tls_config(tls)
            .map_err(|e| cfg_err(format!("field `tls`: invalid TLS settings for {uri}: {e}")))?;
    }
    Ok(ep)
}

/// `Ok` for a success status, else the failure naming `what`.
fn check(status: Option<&Status>, what: &str) -> Result<(), EngineError> {
    let Some(s) = status else { return Ok(()) };
    if s.code == 0 && s.error_code == 0 {
        return Ok(());
    }
    let e = err(
        ErrorKind::Read,
        format!(
            "{what}: the source Milvus answered code {} ({}): {}",
            s.code, s.error_code, s.reason
        ),
    );
    Err(if s.retriable { e.retriable() } else { e })
}

/// True when an error says the collection does not exist (dropped during the copy).
pub(crate) fn is_not_found(e: &EngineError) -> bool {
    let m = e.to_string().to_lowercase();
    m.contains("code 100 ") || m.contains("not found") || m.contains("not exist")
}

fn grpc(what: &str, e: &tonic::Status) -> EngineError {
    err(
        ErrorKind::Read,
        format!("{what}: gRPC {:?}: {}", e.code(), e.message()),
    )
    .retriable()
}

impl SourceClient {
    /// Connect to `uri` of `cfg`.
    pub(crate) async fn connect(cfg: &MilvusSourceConfig) -> Result<Self, EngineError> {
        let uri = cfg
            .uri
            .clone()
            .ok_or_else(|| EngineError::config(COMPONENT, "field `uri` is not set"))?;
        let channel = endpoint(cfg, &uri)?.connect().await.map_err(|e| {
            err(
                ErrorKind::Connect,
                format!(
                    "cannot connect to the source Milvus API {uri} (field `uri`) for the \
                     snapshot: {e}; check that it is running and reachable from this host"
                ),
            )
            .retriable()
        })?;
        let auth = match &cfg.token {
            Some(t) => {
                let b64 = base64::engine::general_purpose::STANDARD.encode(t);
                Some(MetadataValue::try_from(b64).map_err(|e| {
                    EngineError::config(COMPONENT, format!("field `token`: not usable: {e}"))
                })?)
            }
            None => None,
        };
        let inner = MilvusServiceClient::new(channel)
            .max_decoding_message_size(MAX_DECODE_BYTES)
            .max_encoding_message_size(usize::MAX);
        Ok(Self { inner, auth })
    }

    fn req<T>(&self, db: &str, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.set_timeout(CALL_TIMEOUT);
        if let Some(a) = &self.auth {
            r.metadata_mut().insert("authorization", a.clone());
        }
        if let Ok(v) = MetadataValue::try_from(db) {
            r.metadata_mut().insert("dbname", v);
        }
        r
    }

    /// One page: rows matching `expr` in `partitions`, `limit` at most, all `fields`.
    pub(crate) async fn query(
        &self,
        db: &str,
        coll: &str,
        partitions: &[String],
        expr: &str,
        fields: &[String],
        limit: usize,
    ) -> Result<Vec<FieldData>, EngineError> {
        let what = format!("query of {db}.{coll}");
        let req = QueryRequest {
            db_name: db.to_string(),
            collection_name: coll.to_string(),
            expr: expr.to_string(),
            output_fields: fields.to_vec(),
            partition_names: partitions.to_vec(),
            query_params: vec![KeyValuePair {
                key: "limit".into(),
                value: limit.to_string(),
            }],
            consistency_level: ConsistencyLevel::Strong as i32,
            ..Default::default()
        };
        let r = self
            .inner
            .clone()
            .query(self.req(db, req))
            .await
            .map_err(|e| grpc(&what, &e))?
            .into_inner();
        check(r.status.as_ref(), &what)?;
        Ok(r.fields_data)
    }

    /// `count(*)` of the rows in `partitions` (all when empty).
    pub(crate) async fn count(
        &self,
        db: &str,
        coll: &str,
        partitions: &[String],
    ) -> Result<u64, EngineError> {
        let what = format!("count(*) of {db}.{coll}");
        let req = QueryRequest {
            db_name: db.to_string(),
            collection_name: coll.to_string(),
            output_fields: vec!["count(*)".into()],
            partition_names: partitions.to_vec(),
            consistency_level: ConsistencyLevel::Strong as i32,
            ..Default::default()
        };
        let r = self
            .inner
            .clone()
            .query(self.req(db, req))
            .await
            .map_err(|e| grpc(&what, &e))?
            .into_inner();
        check(r.status.as_ref(), &what)?;
        use cdc_protocol::schema::{field_data::Field, scalar_field::Data};
        let n = r
            .fields_data
            .first()
            .and_then(|f| match &f.field {
                Some(Field::Scalars(s)) => match &s.data {
                    Some(Data::LongData(l)) => l.data.first().copied(),
                    _ => None,
                },
                _ => None,
            })
            .unwrap_or(0);
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The collection's index descriptions (empty when it has none).
    pub(crate) async fn indexes(
        &self,
        db: &str,
        coll: &str,
    ) -> Result<Vec<IndexDescription>, EngineError> {
        let what = format!("describe_index of {db}.{coll}");
        let req = DescribeIndexRequest {
            db_name: db.to_string(),
            collection_name: coll.to_string(),
            ..Default::default()
        };
        let r = self
            .inner
            .clone()
            .describe_index(self.req(db, req))
            .await
            .map_err(|e| grpc(&what, &e))?
            .into_inner();
        match check(r.status.as_ref(), &what) {
            Ok(()) => Ok(r.index_descriptions),
            Err(e) if e.to_string().to_lowercase().contains("index") => Ok(vec![]),
            Err(e) => Err(e),
        }
    }

    /// The collection's load state.
    pub(crate) async fn load_state(&self, db: &str, coll: &str) -> Result<LoadState, EngineError> {
        let what = format!("get_load_state of {db}.{coll}");
        let req = GetLoadStateRequest {
            db_name: db.to_string(),
            collection_name: coll.to_string(),
            ..Default::default()
        };
        let r = self
            .inner
            .clone()
            .get_load_state(self.req(db, req))
            .await
            .map_err(|e| grpc(&what, &e))?
            .into_inner();
        check(r.status.as_ref(), &what)?;
        Ok(LoadState::try_from(r.state).unwrap_or(LoadState::NotExist))
    }

    /// Load the collection (returns when Milvus accepted the request).
    pub(crate) async fn load(&self, db: &str, coll: &str) -> Result<(), EngineError> {
        let what = format!("load_collection of {db}.{coll}");
        let req = LoadCollectionRequest {
            db_name: db.to_string(),
            collection_name: coll.to_string(),
            ..Default::default()
        };
        let r = self
            .inner
            .clone()
            .load_collection(self.req(db, req))
            .await
            .map_err(|e| grpc(&what, &e))?
            .into_inner();
        check(Some(&r), &what)
    }

    /// Release the collection.
    pub(crate) async fn release(&self, db: &str, coll: &str) -> Result<(), EngineError> {
        let what = format!("release_collection of {db}.{coll}");
        let req = ReleaseCollectionRequest {
            db_name: db.to_string(),
            collection_name: coll.to_string(),
            ..Default::default()
        };
        let r = self
            .inner
            .clone()
            .release_collection(self.req(db, req))
            .await
            .map_err(|e| grpc(&what, &e))?
            .into_inner();
        check(Some(&r), &what)
    }
}
