//! Schema and control operations on the target, each "check then act" so that replaying a
//! change after a crash is harmless: create only what is missing, drop only what exists, skip
//! an index that is already there.
//!
//! Collections are created with the source schema but with `autoID = false` on the primary
//! key, so the source's primary keys are preserved on the target and later upserts and deletes
//! by primary key hit the same rows.

use std::sync::Arc;

use cdc_engine::{ChangeEvent, CollectionDef, Ddl, EngineError, ErrorKind};
use cdc_protocol::common::MsgBase;
use cdc_protocol::milvus::*;
use prost::Message;
use tracing::{info, warn};

use crate::client::{DdlCall, TargetClient};
use crate::config::MilvusSinkConfig;
use crate::meta::{CollectionInfo, MetaCache};
use crate::retry::{with_retry, CallContext, Failure};

/// What every part of the sink shares: the connection and the configuration.
pub(crate) struct Shared {
    /// Target connection.
    pub client: TargetClient,
    /// Configuration.
    pub cfg: MilvusSinkConfig,
    /// Component name used in errors (`sink <id>`).
    pub component: String,
    /// The same, typed (metric labels).
    pub id: cdc_engine::ComponentId,
    /// Largest request (bytes of columns) the target is known to accept: lowered when it
    /// refuses a batch as too large, so later batches are cut smaller up front.
    pub learned_max_bytes: std::sync::atomic::AtomicUsize,
}

impl Shared {
    /// The batch limits in force: the configured ones, with `max_bytes` lowered to what the
    /// target was seen to accept.
    pub(crate) fn batch_limits(&self) -> crate::config::BatchConfig {
        let learned = self
            .learned_max_bytes
            .load(std::sync::atomic::Ordering::Relaxed);
        crate::config::BatchConfig {
            max_bytes: self.cfg.batch.max_bytes.min(learned),
            ..self.cfg.batch.clone()
        }
    }

    /// Remember that a request of `bytes` was refused as too large.
    pub(crate) fn refused_bytes(&self, bytes: usize) {
        self.learned_max_bytes
            .fetch_min((bytes / 2).max(1024), std::sync::atomic::Ordering::Relaxed);
    }

    /// Context of a call, for retries and errors.
    pub(crate) fn ctx<'a>(&'a self, db: &'a str, coll: &'a str, op: &'a str) -> CallContext<'a> {
        CallContext {
            component: &self.component,
            uri: &self.client.uri,
            database: db,
            collection: coll,
            op,
        }
    }

    /// Run `call` with the configured retries.
    pub(crate) async fn retry<T, F, Fut>(
        &self,
        db: &str,
        coll: &str,
        op: &str,
        call: F,
    ) -> Result<T, EngineError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        with_retry(&self.cfg.retry, &self.ctx(db, coll, op), call).await
    }

    /// A DDL call with retries that treats "already exists" as success, and a refusal of an
    /// operation listed in `skip_refused` as done (logged).
    pub(crate) async fn ddl(
        &self,
        db: &str,
        coll: &str,
        op: &str,
        call: DdlCall,
    ) -> Result<(), EngineError> {
        let skippable = self.cfg.skip_refused.iter().any(|o| o == op);
        let c = &self.client;
        // Ok(true): applied (or already there); Ok(false): refused and skipped.
        let applied = with_retry(&self.cfg.retry, &self.ctx(db, coll, op), || {
            let call = call.clone();
            async move {
                match c.ddl(db, call).await {
                    Ok(()) => Ok(true),
                    Err(f) if f.reason_contains("already exist") => Ok(true),
                    Err(f) if skippable && !f.retriable() => {
                        warn!(
                            message = "Target refused the DDL; skipped (skip_refused).",
                            op,
                            database = db,
                            collection = coll,
                            uri = %c.uri,
                            reason = %f
                        );
                        Ok(false)
                    }
                    Err(f) => Err(f),
                }
            }
        })
        .await?;
        if applied {
            info!(
                message = "Applied DDL to target.",
                op,
                database = db,
                collection = coll
            );
        }
        Ok(())
    }
}

/// The request-level base: `None` in api mode; in replicate mode marks the call as a
/// replicated one so a standby target accepts it.
pub(crate) type Base = Option<MsgBase>;

/// The `CreateCollection` request for `def`, named `coll` in `db`.
///
/// `keep_auto_id` (replicate mode): the schema keeps the source's `autoID` exactly. Replicated
/// inserts carry their keys as raw messages, which a standby stores whatever the schema says,
/// and a standby is what users promote after a disaster: its applications insert without keys.
/// Otherwise (api mode) `autoID` is turned off, since the target must keep the source's keys
/// for upserts and deletes by primary key to work (README: "promoting an api-mode target").
pub(crate) fn create_collection_request(
    db: &str,
    coll: &str,
    def: &CollectionDef,
    base: Base,
    keep_auto_id: bool,
) -> CreateCollectionRequest {
    let mut schema = def.schema.clone();
    schema.name = coll.to_string();
    // The target adds `$meta` itself when `enable_dynamic_field` is set and refuses an explicit
    // dynamic field; system fields (RowID 0, Timestamp 1) are never user-created.
    schema
        .fields
        .retain(|f| !f.is_dynamic && !is_system_field(f));
    if def.schema.fields.iter().any(|f| f.is_dynamic) {
        schema.enable_dynamic_field = true;
    }
    if !keep_auto_id {
        schema.auto_id = false;
        for f in &mut schema.fields {
            if f.is_primary_key {
                // Keep the source's keys: upsert and delete by primary key need them.
                f.auto_id = false;
            }
        }
    }
    let partition_key = schema.fields.iter().any(|f| f.is_partition_key);
    CreateCollectionRequest {
        base,
        db_name: db.to_string(),
        collection_name: coll.to_string(),
        schema: schema.encode_to_vec().into(),
        shards_num: def.shards_num,
        consistency_level: def.consistency_level,
        properties: def.properties.clone(),
        num_partitions: if partition_key { def.num_partitions } else { 0 },
    }
}

/// Milvus's own per-row fields (RowID = 0, Timestamp = 1), never part of a user schema.
fn is_system_field(f: &cdc_protocol::schema::FieldSchema) -> bool {
    (f.field_id == 0 && f.name == "RowID") || (f.field_id == 1 && f.name == "Timestamp")
}

/// Create `db` on the target if it is missing.
pub(crate) async fn ensure_database(sh: &Shared, db: &str, base: Base) -> Result<(), EngineError> {
    if db.is_empty() || db == "default" {
        return Ok(());
    }
    let c = &sh.client;
    let dbs = sh
        .retry(db, "", "list_databases", || c.list_databases())
        .await?;
    if dbs.iter().any(|d| d == db) {
        return Ok(());
    }
    let req = CreateDatabaseRequest {
        base,
        db_name: db.to_string(),
        properties: vec![],
    };
    sh.ddl(db, "", "create_database", DdlCall::CreateDatabase(req))
        .await
}

/// The target collection, created from `def` when it is missing (pre-existing source
/// collections, or a replay of its creation). Caches what was learned.
pub(crate) async fn ensure_collection(
    sh: &Shared,
    cache: &mut MetaCache,
    db: &str,
    coll: &str,
    def: Option<&CollectionDef>,
    base: Base,
) -> Result<Arc<CollectionInfo>, EngineError> {
    if let Some(i) = cache.get(db, coll) {
        return Ok(i);
    }
    let c = &sh.client;
    let found = sh
        .retry(db, coll, "describe_collection", || {
            c.describe_collection(db, coll)
        })
        .await?;
    let (desc, created_here) = match found {
        Some(d) => (d, false),
        None => {
            let Some(def) = def else {
                return Err(EngineError::new(
                    &sh.component,
                    ErrorKind::Write,
                    format!(
                        "collection {coll:?} of database {db:?} does not exist on target {} and \
                         the change carries no definition to create it; create it on the target \
                         (with the source schema) and resume the task",
                        sh.client.uri
                    ),
                ));
            };
            ensure_database(sh, db, base.clone()).await?;
            let keep_auto_id = sh.cfg.mode == crate::config::SinkMode::Replicate;
            let req = create_collection_request(db, coll, def, base, keep_auto_id);
            sh.ddl(
                db,
                coll,
                "create_collection",
                DdlCall::CreateCollection(req),
            )
            .await?;
            let d = sh
                .retry(db, coll, "describe_collection", || {
                    c.describe_collection(db, coll)
                })
                .await?
                .ok_or_else(|| {
                    EngineError::new(
                        &sh.component,
                        ErrorKind::Write,
                        format!(
                            "collection {coll:?} of database {db:?} was created on target {} \
                             but cannot be described; check the target's logs",
                            sh.client.uri
                        ),
                    )
                    .retriable()
                })?;
            (d, true)
        }
    };
    let info = Arc::new(CollectionInfo::from_describe(&desc, created_here));
    cache.put(db, coll, info.clone());
    Ok(info)
}

/// True when partition `p` must not be touched on the target for this collection.
fn skip_partition(sh: &Shared, info: Option<&CollectionInfo>, p: &str) -> bool {
    sh.cfg.ignore_partition
        || p.is_empty()
        || p == "_default"
        || info.is_some_and(|i| i.partition_key)
}

/// Does the collection exist on the target? (Known without a call once cached.)
pub(crate) async fn exists(
    sh: &Shared,
    cache: &MetaCache,
    db: &str,
    coll: &str,
) -> Result<bool, EngineError> {
    if cache.get(db, coll).is_some() {
        return Ok(true);
    }
    let c = &sh.client;
    sh.retry(db, coll, "has_collection", || c.has_collection(db, coll))
        .await
}

/// Apply one DDL change. `base` is `None` in api mode.
pub(crate) async fn apply(
    sh: &Shared,
    cache: &mut MetaCache,
    metrics: &cdc_engine::metrics::ComponentMetrics,
    ev: &ChangeEvent,
    ddl: &Ddl,
    base: Base,
) -> Result<(), EngineError> {
    let (db, coll) = (ev.database.as_str(), ev.collection.as_str());
    let c = &sh.client;
    let op = ddl.kind();
    let def = ev.collection_def.as_deref();
    match ddl {
        Ddl::CreateDatabase { .. } => ensure_database(sh, db, base).await,
        Ddl::DropDatabase => {
            cache.forget(db, "");
            if db == "default" {
                warn!(
                    message = "Not dropping the target's default database.",
                    database = db
                );
                return Ok(());
            }
            let dbs = sh
                .retry(db, "", "list_databases", || c.list_databases())
                .await?;
            if !dbs.iter().any(|d| d == db) {
                return Ok(());
            }
            let req = DropDatabaseRequest {
                base,
                db_name: db.to_string(),
            };
            sh.ddl(db, "", op, DdlCall::DropDatabase(req)).await
        }
        Ddl::CreateCollection(d) => {
            ensure_collection(sh, cache, db, coll, Some(d), base).await?;
            Ok(())
        }
        Ddl::DropCollection => {
            cache.forget(db, coll);
            if !exists(sh, cache, db, coll).await? {
                return Ok(());
            }
            let req = DropCollectionRequest {
                base,
                db_name: db.to_string(),
                collection_name: coll.to_string(),
            };
            sh.ddl(db, coll, op, DdlCall::DropCollection(req)).await
        }
        Ddl::CreatePartition { partition } | Ddl::DropPartition { partition } => {
            let create = matches!(ddl, Ddl::CreatePartition { .. });
            let info = if create || exists(sh, cache, db, coll).await? {
                ensure_collection(sh, cache, db, coll, def, base.clone()).await?
            } else {
                return Ok(());
            };
            if skip_partition(sh, Some(&info), partition) {
                return Ok(());
            }
            let parts = sh
                .retry(db, coll, "show_partitions", || c.show_partitions(db, coll))
                .await?;
            let present = parts.partition_names.iter().any(|p| p == partition);
            if present == create {
                return Ok(());
            }
            let (d, cn, pn) = (db.to_string(), coll.to_string(), partition.clone());
            let call = if create {
                DdlCall::CreatePartition(CreatePartitionRequest {
                    base,
                    db_name: d,
                    collection_name: cn,
                    partition_name: pn,
                })
            } else {
                DdlCall::DropPartition(DropPartitionRequest {
                    base,
                    db_name: d,
                    collection_name: cn,
                    partition_name: pn,
                })
            };
            sh.ddl(db, coll, op, call).await
        }
        Ddl::CreateIndex(r) => {
            ensure_collection(sh, cache, db, coll, def, base.clone()).await?;
            let existing = sh
                .retry(db, coll, "describe_index", || {
                    c.describe_index(db, coll, &r.index_name)
                })
                .await?;
            // One index per field (Milvus 2.3-2.5): an index on the field, or one of that name,
            // means this change was applied already (milvus-lite names indexes after fields).
            let same = |i: &IndexDescription| {
                (!r.index_name.is_empty() && i.index_name == r.index_name)
                    || (!r.field_name.is_empty() && i.field_name == r.field_name)
            };
            if existing.iter().any(same) {
                return Ok(());
            }
            let req = CreateIndexRequest {
                base,
                db_name: db.to_string(),
                collection_name: coll.to_string(),
                ..r.clone()
            };
            sh.ddl(db, coll, op, DdlCall::CreateIndex(req)).await
        }
        Ddl::DropIndex(r) => {
            if !exists(sh, cache, db, coll).await? {
                return Ok(());
            }
            let existing = sh
                .retry(db, coll, "describe_index", || {
                    c.describe_index(db, coll, &r.index_name)
                })
                .await?;
            if existing.is_empty() {
                return Ok(());
            }
            let req = DropIndexRequest {
                base,
                db_name: db.to_string(),
                collection_name: coll.to_string(),
                ..r.clone()
            };
            sh.ddl(db, coll, op, DdlCall::DropIndex(req)).await
        }
        Ddl::AlterIndex(r) => {
            ensure_collection(sh, cache, db, coll, def, base.clone()).await?;
            let req = AlterIndexRequest {
                base,
                db_name: db.to_string(),
                collection_name: coll.to_string(),
                ..r.clone()
            };
            sh.ddl(db, coll, op, DdlCall::AlterIndex(req)).await
        }
        Ddl::LoadCollection(r) => {
            ensure_collection(sh, cache, db, coll, def, base.clone()).await?;
            // Resource groups are the source cluster's; the target uses its default.
            let req = LoadCollectionRequest {
                base,
                db_name: db.to_string(),
                collection_name: coll.to_string(),
                resource_groups: vec![],
                ..r.clone()
            };
            sh.ddl(db, coll, op, DdlCall::LoadCollection(req)).await
        }
        Ddl::ReleaseCollection => {
            if !exists(sh, cache, db, coll).await? {
                return Ok(());
            }
            let req = ReleaseCollectionRequest {
                base,
                db_name: db.to_string(),
                collection_name: coll.to_string(),
            };
            sh.ddl(db, coll, op, DdlCall::ReleaseCollection(req)).await
        }
        Ddl::LoadPartitions(r) => {
            if sh.cfg.ignore_partition {
                return Ok(());
            }
            ensure_collection(sh, cache, db, coll, def, base.clone()).await?;
            let req = LoadPartitionsRequest {
                base,
                db_name: db.to_string(),
                collection_name: coll.to_string(),
                resource_groups: vec![],
                ..r.clone()
            };
            sh.ddl(db, coll, op, DdlCall::LoadPartitions(req)).await
        }
        Ddl::ReleasePartitions(r) => {
            if sh.cfg.ignore_partition || !exists(sh, cache, db, coll).await? {
                return Ok(());
            }
            let req = ReleasePartitionsRequest {
                base,
                db_name: db.to_string(),
                collection_name: coll.to_string(),
                ..r.clone()
            };
            sh.ddl(db, coll, op, DdlCall::ReleasePartitions(req)).await
        }
        Ddl::CreateAlias { alias } | Ddl::AlterAlias { alias } => {
            crate::ddl_ops::set_alias(sh, cache, ev, alias, base).await
        }
        Ddl::DropAlias { alias } => crate::ddl_ops::drop_alias(sh, ev, alias, base).await,
        Ddl::Rbac(r) => crate::ddl_rbac::apply(sh, metrics, r, base).await,
        Ddl::AlterCollection {
            properties,
            delete_keys,
        } => {
            if !exists(sh, cache, db, coll).await? {
                // Its properties come with its definition when the sink creates it.
                return Ok(());
            }
            crate::ddl_ops::alter_properties(sh, ev, properties, delete_keys, base).await
        }
        Ddl::Flush => {
            if !exists(sh, cache, db, coll).await? {
                return Ok(());
            }
            let req = FlushRequest {
                base,
                db_name: db.to_string(),
                collection_names: vec![coll.to_string()],
            };
            sh.retry(db, coll, op, || c.flush(db, req.clone())).await?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdc_protocol::schema::{CollectionSchema, DataType, FieldSchema};

    fn field(id: i64, name: &str, dt: DataType) -> FieldSchema {
        FieldSchema {
            field_id: id,
            name: name.into(),
            data_type: dt as i32,
            ..Default::default()
        }
    }

    #[test]
    fn create_request_keeps_source_keys() {
        let mut pk = field(100, "id", DataType::Int64);
        pk.is_primary_key = true;
        pk.auto_id = true;
        let mut meta = field(102, "$meta", DataType::Json);
        meta.is_dynamic = true;
        let def = CollectionDef {
            schema: CollectionSchema {
                name: "src".into(),
                auto_id: true,
                fields: vec![
                    field(0, "RowID", DataType::Int64),
                    pk,
                    field(101, "v", DataType::FloatVector),
                    meta,
                ],
                ..Default::default()
            },
            shards_num: 2,
            consistency_level: 2,
            num_partitions: 16,
            ..Default::default()
        };
        let r = create_collection_request("db", "dst", &def, None, false);
        assert_eq!(r.collection_name, "dst");
        assert_eq!(r.shards_num, 2);
        assert_eq!(r.consistency_level, 2);
        assert_eq!(
            r.num_partitions, 0,
            "only partition-key collections pass num_partitions"
        );
        let s = CollectionSchema::decode(r.schema).unwrap();
        assert_eq!(s.name, "dst");
        assert!(!s.auto_id);
        assert!(s.enable_dynamic_field);
        let names: Vec<_> = s.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, vec!["id", "v"]);
        assert!(!s.fields[0].auto_id);

        // Replicate mode: the standby keeps the schema exactly, autoID included.
        let r = create_collection_request("db", "dst", &def, None, true);
        let s = CollectionSchema::decode(r.schema).unwrap();
        assert!(s.fields[0].auto_id, "the primary key stays autoID");
        let names: Vec<_> = s.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, vec!["id", "v"]);
    }
}
