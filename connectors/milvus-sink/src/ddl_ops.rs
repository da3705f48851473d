//! Alias operations on the target, "check then act" like the rest of [`crate::ddl`]: where
//! the alias points is read first (DescribeCollection resolves an alias to its collection, on
//! Milvus 2.3 as on 2.5), so a replay is a no-op. Both modes use the normal API (a standby in
//! replicate mode accepts these calls).
//!
//! Collection properties (AlterCollection) are compared with the target's (DescribeCollection)
//! and set only when they differ.
//!
//! CreateAlias and AlterAlias converge: the alias ends up on the event's collection whichever
//! state the target was in (missing: CreateAlias; elsewhere: AlterAlias). A DropAlias of an
//! alias the target does not have does nothing. Alias names are not renamed; the rename
//! transform maps the database and collection they point to.

use cdc_engine::{ChangeEvent, EngineError};
use cdc_protocol::common::KeyValuePair;
use cdc_protocol::milvus::{
    AlterAliasRequest, AlterCollectionRequest, CreateAliasRequest, DropAliasRequest,
};
use tracing::debug;

use crate::client::DdlCall;
use crate::ddl::{ensure_collection, Base, Shared};
use crate::meta::MetaCache;

/// The target collection `alias` points to in `db`, `None` when it does not exist.
async fn resolve(sh: &Shared, db: &str, alias: &str) -> Result<Option<String>, EngineError> {
    let c = &sh.client;
    let r = sh
        .retry(db, alias, "describe_alias", || {
            c.describe_collection(db, alias)
        })
        .await?;
    Ok(r.map(|r| {
        if r.collection_name.is_empty() {
            r.schema.map(|s| s.name).unwrap_or_default()
        } else {
            r.collection_name
        }
    }))
}

/// Makes `alias` point to the event's collection (CreateAlias or AlterAlias).
pub(crate) async fn set_alias(
    sh: &Shared,
    cache: &mut MetaCache,
    ev: &ChangeEvent,
    alias: &str,
    base: Base,
) -> Result<(), EngineError> {
    let (db, coll) = (ev.database.as_str(), ev.collection.as_str());
    let op = match &ev.op {
        cdc_engine::Op::Ddl(d) => d.kind(),
        _ => "alias",
    };
    ensure_collection(
        sh,
        cache,
        db,
        coll,
        ev.collection_def.as_deref(),
        base.clone(),
    )
    .await?;
    let now = resolve(sh, db, alias).await?;
    let call = match now.as_deref() {
        Some(c) if c == coll => {
            debug!(
                message = "Alias already in place.",
                database = db,
                alias,
                collection = coll
            );
            return Ok(());
        }
        Some(_) => DdlCall::AlterAlias(AlterAliasRequest {
            base,
            db_name: db.to_string(),
            collection_name: coll.to_string(),
            alias: alias.to_string(),
        }),
        None => DdlCall::CreateAlias(CreateAliasRequest {
            base,
            db_name: db.to_string(),
            collection_name: coll.to_string(),
            alias: alias.to_string(),
        }),
    };
    sh.ddl(db, coll, op, call).await
}

/// Drops `alias` from the event's database if the target has it.
pub(crate) async fn drop_alias(
    sh: &Shared,
    ev: &ChangeEvent,
    alias: &str,
    base: Base,
) -> Result<(), EngineError> {
    let db = ev.database.as_str();
    if resolve(sh, db, alias).await?.is_none() {
        return Ok(());
    }
    let call = DdlCall::DropAlias(DropAliasRequest {
        base,
        db_name: db.to_string(),
        alias: alias.to_string(),
    });
    sh.ddl(db, &ev.collection, "drop_alias", call).await
}

/// Gives the event's collection the source's `properties` (and removes `delete_keys`) unless
/// the target has them already.
pub(crate) async fn alter_properties(
    sh: &Shared,
    ev: &ChangeEvent,
    properties: &[KeyValuePair],
    delete_keys: &[String],
    base: Base,
) -> Result<(), EngineError> {
    let (db, coll) = (ev.database.as_str(), ev.collection.as_str());
    let c = &sh.client;
    let now = sh
        .retry(db, coll, "describe_collection", || {
            c.describe_collection(db, coll)
        })
        .await?
        .map(|r| r.properties)
        .unwrap_or_default();
    let has = |kv: &KeyValuePair| now.iter().any(|n| n.key == kv.key && n.value == kv.value);
    let stale = |k: &String| now.iter().any(|n| &n.key == k);
    if properties.iter().all(has) && !delete_keys.iter().any(stale) {
        debug!(
            message = "Collection properties already set.",
            database = db,
            collection = coll
        );
        return Ok(());
    }
    let call = DdlCall::AlterCollection(AlterCollectionRequest {
        base,
        db_name: db.to_string(),
        collection_name: coll.to_string(),
        collection_id: 0,
        properties: properties.to_vec(),
        delete_keys: delete_keys.to_vec(),
    });
    sh.ddl(db, coll, "alter_collection", call).await
}
