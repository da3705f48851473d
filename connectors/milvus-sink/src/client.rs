//! The gRPC connection to the target Milvus: endpoint (timeouts, TLS), the `authorization`
//! and `dbName` headers on every call, and thin wrappers that turn each RPC's answer into
//! `Result<_, Failure>` so callers only deal with one failure type.

use std::time::Duration;

use base64::Engine as _;
use cdc_engine::{EngineError, ErrorKind};
use cdc_protocol::milvus::milvus_service_client::MilvusServiceClient;
use cdc_protocol::milvus::*;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use crate::config::MilvusSinkConfig;
use crate::retry::{check_status, Failure};

/// Largest answer accepted from the target (query results in tests, big describe answers).
const MAX_DECODE_BYTES: usize = 256 * 1024 * 1024;

/// A cheap-to-clone handle on the target: the gRPC channel plus the headers every call needs.
#[derive(Clone)]
pub(crate) struct TargetClient {
    inner: MilvusServiceClient<Channel>,
    auth: Option<AsciiMetadataValue>,
    timeout: Duration,
    /// The URI, for messages.
    pub(crate) uri: String,
}

/// Build the endpoint described by `cfg` (reads the TLS files).
fn endpoint(cfg: &MilvusSinkConfig, component: &str) -> Result<Endpoint, EngineError> {
    let cfg_err = |m: String| EngineError::config(component, m);
    let mut ep = Endpoint::from_shared(cfg.uri.clone())
        .map_err(|e| cfg_err(format!("milvus.uri: {:?} is not a valid URI: {e}", cfg.uri)))?
        .connect_timeout(Duration::from_secs(cfg.connect_timeout_secs))
        .tcp_nodelay(true)
        .tcp_keepalive(Some(Duration::from_secs(30)))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true)
        .http2_adaptive_window(true);
    if cfg.uri.starts_with("https://") {
        let tls = cfg
            .tls
            .clone()
            .unwrap_or_default()
            .client_config("milvus.tls")
            .map_err(cfg_err)?;
        ep = ep.tls_config(tls).map_err(|e| {
            cfg_err(format!(
                "milvus.tls: invalid TLS settings for {}: {e}",
                cfg.uri
            ))
        })?;
    }
    Ok(ep)
}

impl TargetClient {
    /// Connect to the target; fails (retriable, kind Connect) when it cannot be reached.
    pub(crate) async fn connect(
        cfg: &MilvusSinkConfig,
        component: &str,
    ) -> Result<Self, EngineError> {
        let ep = endpoint(cfg, component)?;
        let channel = ep.connect().await.map_err(|e| {
            EngineError::new(
                component,
                ErrorKind::Connect,
                format!(
                    "cannot connect to target Milvus {} within {} s: {}; check that it is \
                     running and reachable from this host",
                    cfg.uri,
                    cfg.connect_timeout_secs,
                    error_chain(&e)
                ),
            )
            .retriable()
        })?;
        let auth = match cfg.effective_token() {
            Some(t) => {
                let b64 = base64::engine::general_purpose::STANDARD.encode(t);
                Some(MetadataValue::try_from(b64).map_err(|e| {
                    EngineError::config(component, format!("milvus.token: not usable: {e}"))
                })?)
            }
            None => None,
        };
        let inner = MilvusServiceClient::new(channel)
            .max_decoding_message_size(MAX_DECODE_BYTES)
            .max_encoding_message_size(usize::MAX);
        Ok(Self {
            inner,
            auth,
            timeout: Duration::from_secs(cfg.request_timeout_secs),
            uri: cfg.uri.clone(),
        })
    }

    /// A request carrying the auth and database headers and the per-call timeout.
    fn req<T>(&self, db: &str, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.set_timeout(self.timeout);
        if let Some(a) = &self.auth {
            r.metadata_mut().insert("authorization", a.clone());
        }
        if !db.is_empty() {
            if let Ok(v) = MetadataValue::try_from(db) {
                // gRPC metadata keys are lowercase on the wire; Milvus looks up `dbName`
                // case-insensitively.
                r.metadata_mut().insert("dbname", v);
            }
        }
        r
    }

    fn svc(&self) -> MilvusServiceClient<Channel> {
        self.inner.clone()
    }

    /// Server version (`GetVersion`).
    pub(crate) async fn version(&self) -> Result<String, Failure> {
        let r = self
            .svc()
            .get_version(self.req("", GetVersionRequest {}))
            .await
            .map_err(|e| Failure::grpc(&e))?
            .into_inner();
        check_status(r.status.as_ref().or(Some(&Default::default())))?;
        Ok(r.version)
    }

    /// Database names.
    pub(crate) async fn list_databases(&self) -> Result<Vec<String>, Failure> {
        let r = self
            .svc()
            .list_databases(self.req("", ListDatabasesRequest::default()))
            .await
            .map_err(|e| Failure::grpc(&e))?
            .into_inner();
        check_status(r.status.as_ref())?;
        Ok(r.db_names)
    }

    /// Describe a collection; `Ok(None)` when it does not exist.
    pub(crate) async fn describe_collection(
        &self,
        db: &str,
        collection: &str,
    ) -> Result<Option<DescribeCollectionResponse>, Failure> {
        let req = DescribeCollectionRequest {
            db_name: db.to_string(),
            collection_name: collection.to_string(),
            ..Default::default()
        };
        let r = self
            .svc()
            .describe_collection(self.req(db, req))
            .await
            .map_err(|e| Failure::grpc(&e))?
            .into_inner();
        let found = found(r.status.as_ref())?;
        Ok(found.then_some(r))
    }

    /// Whether a collection exists.
    pub(crate) async fn has_collection(&self, db: &str, collection: &str) -> Result<bool, Failure> {
        let req = HasCollectionRequest {
            db_name: db.to_string(),
            collection_name: collection.to_string(),
            ..Default::default()
        };
        let r = self
            .svc()
            .has_collection(self.req(db, req))
            .await
            .map_err(|e| Failure::grpc(&e))?
            .into_inner();
        // A missing database means a missing collection.
        Ok(found(r.status.as_ref())? && r.value)
    }

    /// Partition names of a collection.
    pub(crate) async fn show_partitions(
        &self,
        db: &str,
        collection: &str,
    ) -> Result<ShowPartitionsResponse, Failure> {
        let req = ShowPartitionsRequest {
            db_name: db.to_string(),
            collection_name: collection.to_string(),
            ..Default::default()
        };
        let r = self
            .svc()
            .show_partitions(self.req(db, req))
            .await
            .map_err(|e| Failure::grpc(&e))?
            .into_inner();
        check_status(r.status.as_ref())?;
        Ok(r)
    }

    /// Index descriptions of a collection (empty when it has none).
    pub(crate) async fn describe_index(
        &self,
        db: &str,
        collection: &str,
        index_name: &str,
    ) -> Result<Vec<IndexDescription>, Failure> {
        let req = DescribeIndexRequest {
            db_name: db.to_string(),
            collection_name: collection.to_string(),
            index_name: index_name.to_string(),
            ..Default::default()
        };
        let r = self
            .svc()
            .describe_index(self.req(db, req))
            .await
            .map_err(|e| Failure::grpc(&e))?
            .into_inner();
        match check_status(r.status.as_ref()) {
            Ok(()) => Ok(r.index_descriptions),
            Err(f) if is_index_not_found(&f) => Ok(vec![]),
            Err(f) => Err(f),
        }
    }

    /// Insert rows.
    pub(crate) async fn insert(
        &self,
        db: &str,
        req: InsertRequest,
    ) -> Result<MutationResult, Failure> {
        let r = self
            .svc()
            .insert(self.req(db, req))
            .await
            .map_err(|e| Failure::grpc(&e))?
            .into_inner();
        check_status(r.status.as_ref())?;
        Ok(r)
    }

    /// Upsert rows.
    pub(crate) async fn upsert(
        &self,
        db: &str,
        req: UpsertRequest,
    ) -> Result<MutationResult, Failure> {
        let r = self
            .svc()
            .upsert(self.req(db, req))
            .await
            .map_err(|e| Failure::grpc(&e))?
            .into_inner();
        check_status(r.status.as_ref())?;
        Ok(r)
    }

    /// Delete rows by expression.
    pub(crate) async fn delete(
        &self,
        db: &str,
        req: DeleteRequest,
    ) -> Result<MutationResult, Failure> {
        let r = self
            .svc()
            .delete(self.req(db, req))
            .await
            .map_err(|e| Failure::grpc(&e))?
            .into_inner();
        check_status(r.status.as_ref())?;
        Ok(r)
    }

    /// Flush collections.
    pub(crate) async fn flush(
        &self,
        db: &str,
        req: FlushRequest,
    ) -> Result<FlushResponse, Failure> {
        let r = self
            .svc()
            .flush(self.req(db, req))
            .await
            .map_err(|e| Failure::grpc(&e))?
            .into_inner();
        check_status(r.status.as_ref())?;
        Ok(r)
    }

    /// Produce raw message-queue payloads on a target channel (standby targets only).
    pub(crate) async fn replicate_message(
        &self,
        req: ReplicateMessageRequest,
    ) -> Result<ReplicateMessageResponse, Failure> {
        let r = self
            .svc()
            .replicate_message(self.req("", req))
            .await
            .map_err(|e| Failure::grpc(&e))?
            .into_inner();
        check_status(r.status.as_ref())?;
        Ok(r)
    }

    /// Run one of the DDL RPCs that answer a bare `Status`.
    pub(crate) async fn ddl(&self, db: &str, call: DdlCall) -> Result<(), Failure> {
        let mut c = self.svc();
        let r = match call {
            DdlCall::CreateDatabase(m) => c.create_database(self.req(db, m)).await,
            DdlCall::DropDatabase(m) => c.drop_database(self.req(db, m)).await,
            DdlCall::CreateCollection(m) => c.create_collection(self.req(db, m)).await,
            DdlCall::DropCollection(m) => c.drop_collection(self.req(db, m)).await,
            DdlCall::CreatePartition(m) => c.create_partition(self.req(db, m)).await,
            DdlCall::DropPartition(m) => c.drop_partition(self.req(db, m)).await,
            DdlCall::CreateIndex(m) => c.create_index(self.req(db, m)).await,
            DdlCall::DropIndex(m) => c.drop_index(self.req(db, m)).await,
            DdlCall::AlterIndex(m) => c.alter_index(self.req(db, m)).await,
            DdlCall::LoadCollection(m) => c.load_collection(self.req(db, m)).await,
            DdlCall::ReleaseCollection(m) => c.release_collection(self.req(db, m)).await,
            DdlCall::LoadPartitions(m) => c.load_partitions(self.req(db, m)).await,
            DdlCall::ReleasePartitions(m) => c.release_partitions(self.req(db, m)).await,
            DdlCall::CreateAlias(m) => c.create_alias(self.req(db, m)).await,
            DdlCall::AlterAlias(m) => c.alter_alias(self.req(db, m)).await,
            DdlCall::DropAlias(m) => c.drop_alias(self.req(db, m)).await,
            DdlCall::AlterCollection(m) => c.alter_collection(self.req(db, m)).await,
            DdlCall::CreateRole(m) => c.create_role(self.req(db, m)).await,
            DdlCall::DropRole(m) => c.drop_role(self.req(db, m)).await,
            DdlCall::OperatePrivilege(m) => c.operate_privilege(self.req(db, m)).await,
            DdlCall::OperateUserRole(m) => c.operate_user_role(self.req(db, m)).await,
            DdlCall::CreateCredential(m) => c.create_credential(self.req(db, m)).await,
            DdlCall::DeleteCredential(m) => c.delete_credential(self.req(db, m)).await,
        }
        .map_err(|e| Failure::grpc(&e))?
        .into_inner();
        check_status(Some(&r))
    }
}

/// A DDL RPC answering a bare `Status`.
#[derive(Debug, Clone)]
pub(crate) enum DdlCall {
    CreateDatabase(CreateDatabaseRequest),
    DropDatabase(DropDatabaseRequest),
    CreateCollection(CreateCollectionRequest),
    DropCollection(DropCollectionRequest),
    CreatePartition(CreatePartitionRequest),
    DropPartition(DropPartitionRequest),
    CreateIndex(CreateIndexRequest),
    DropIndex(DropIndexRequest),
    AlterIndex(AlterIndexRequest),
    LoadCollection(LoadCollectionRequest),
    ReleaseCollection(ReleaseCollectionRequest),
    LoadPartitions(LoadPartitionsRequest),
    ReleasePartitions(ReleasePartitionsRequest),
    CreateAlias(CreateAliasRequest),
    AlterAlias(AlterAliasRequest),
    DropAlias(DropAliasRequest),
    AlterCollection(AlterCollectionRequest),
    CreateRole(CreateRoleRequest),
    DropRole(DropRoleRequest),
    OperatePrivilege(OperatePrivilegeRequest),
    OperateUserRole(OperateUserRoleRequest),
    /// Holds a password (base64): a `DdlCall` is never logged.
    CreateCredential(CreateCredentialRequest),
    DeleteCredential(DeleteCredentialRequest),
}

/// `Ok(true)` for a success status, `Ok(false)` for one saying the object (collection,
/// database...) does not exist, the failure otherwise.
fn found(status: Option<&cdc_protocol::common::Status>) -> Result<bool, Failure> {
    match check_status(status) {
        Ok(()) => Ok(true),
        Err(f) if is_not_found(&f) => Ok(false),
        Err(f) => Err(f),
    }
}

/// True when Milvus says the collection or database does not exist (2.3+ codes 100 and 800,
/// legacy CollectionNotExists / CollectionNameNotFound, or the usual wording).
pub(crate) fn is_not_found(f: &Failure) -> bool {
    match f {
        Failure::Milvus {
            code, error_code, ..
        } => {
            matches!(code, 100 | 800)
                || matches!(error_code, 4 | 28)
                || f.reason_contains("not found")
                || f.reason_contains("not exist")
        }
        _ => false,
    }
}

/// True when Milvus says the index does not exist (2.3+ code 700, legacy IndexNotExist,
/// or the usual wording).
fn is_index_not_found(f: &Failure) -> bool {
    match f {
        Failure::Milvus {
            code, error_code, ..
        } => {
            *code == 700
                || *error_code == 25
                || f.reason_contains("index not exist")
                || f.reason_contains("index not found")
                || f.reason_contains("no index")
        }
        _ => false,
    }
}

/// Display an error with its sources (tonic's transport errors hide the cause otherwise).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

mod rbac;
