//! Turns released messages into engine [`ChangeEvent`]s, naming them from the message or the
//! etcd cache and attaching the collection's definition.
//!
//! No per-row work: insert columns and delete keys are moved, except that an upsert split
//! into several messages of one timestamp has its parts concatenated column by column.
//! Collection-level DDL written once per shard channel (create/drop collection, drop
//! partition) is emitted once. A release of every partition that a ReleaseCollection message
//! already covered is not emitted twice.
//!
//! # Partition loads and releases, from two ways
//!
//! LoadPartitions / ReleasePartitions reach the converter in two ways: derived from
//! QueryCoord's etcd keys ([`crate::meta::load`]; the only way on Milvus 2.3, which writes no
//! message), and as the requests that 2.4+ proxies publish on the replicate channel
//! (`internal/proxy/util.go: SendReplicateMessagePack`). Both are ordered by the merger with
//! the other changes, each at its own timestamp (the request's: allocated before QueryCoord
//! ran; the etcd one: when the watch saw QueryCoord's keys), and the converter sees them in
//! that order. Each load or release is emitted once, by whichever way comes first:
//!
//! * per collection, the converter keeps the partitions of the last load (or release) it
//!   emitted that the *other* way has not reported yet, with the way and the timestamp;
//! * a change of the same kind coming the other way within [`CONFIRM_WINDOW_MS`] (30 s of source time) drops the
//!   partitions already emitted and emits only the rest (nothing when none is left);
//! * a change the same way adds its partitions; a change of the other kind (a release after a
//!   load), a LoadCollection, ReleaseCollection, DropCollection or DropPartition of the
//!   collection starts afresh.
//!
//! So the first report keeps its place in timestamp order, and when one way is missing (2.3
//! writes no message; a load of partitions already loaded writes no etcd key; a message
//! filtered away) the other one is emitted alone: no source of truth is lost. The cost of the
//! window: a second identical request through the other way within it (no state change in
//! between, so a no-op on the target) is not repeated.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use cdc_engine::{
    ChangeEvent, CollectionDef, Ddl, DeleteBatch, EngineError, Op, RowBatch, SourcePosition,
};
use cdc_protocol::field_data;
use cdc_protocol::header::MqMessage;
use cdc_protocol::milvus::{LoadPartitionsRequest, ReleasePartitionsRequest};
use cdc_protocol::msg::{DeleteRequest, InsertRequest};
use cdc_protocol::schema::{i_ds::IdField, IDs, LongArray};
use tracing::warn;

use crate::config::COMPONENT;
use crate::decode::Payload;
use crate::merger::Released;
use crate::meta::cache::{MetaCache, DEFAULT_DB, DEFAULT_PARTITION};
use crate::meta::def::def_from_create_message;

/// The collection a change is about when neither the message nor the metadata cache can
/// name it (`Some(collection id)`, 0 when the message has no id), or `None` when it can be
/// attributed (or is not about one collection). See [`crate::attribution`] for the messages
/// Milvus sends without names.
///
/// A DML-channel message (it has a collection ID) is attributed when the cache knows its
/// collection, or when it names both database and collection itself: an empty database there
/// does not mean `default` (RootCoord leaves it out everywhere). A replicate-channel request
/// (names only) needs its collection name; an empty database name there is `default`.
pub(crate) fn unattributed(payload: &Payload, cache: &MetaCache) -> Option<i64> {
    let known = |id: i64| cache.collection_names(id).is_some();
    match payload {
        Payload::Mq(m) => {
            let name = m.collection_name()?;
            match m.collection_id() {
                Some(id) if known(id) => None,
                Some(_) if !name.is_empty() && m.db_name().is_some_and(|d| !d.is_empty()) => None,
                Some(id) => Some(id),
                None if name.is_empty() => Some(0),
                None => None,
            }
        }
        Payload::PartitionCreated { collection_id, .. }
        | Payload::PartitionsLoaded { collection_id, .. }
        | Payload::PartitionsReleased { collection_id, .. } => {
            (!known(*collection_id)).then_some(*collection_id)
        }
        // A drop of an alias whose collection the cache no longer names goes by database.
        Payload::Alias(a) => (a.op != crate::meta::alias::AliasOp::Drop && !known(a.collection_id))
            .then_some(a.collection_id),
        Payload::Rbac(_) => None,
        Payload::Properties(p) => (!known(p.collection_id)).then_some(p.collection_id),
    }
}

/// Remembers what was already emitted, for DDL that Milvus writes once per channel.
#[derive(Debug, Default)]
pub(crate) struct Converter {
    created: HashSet<i64>,
    dropped: HashSet<i64>,
    partitions_created: HashSet<(i64, String)>,
    partitions_dropped: HashSet<(i64, String)>,
    /// Collections a ReleaseCollection was emitted for, and not loaded since: the partition
    /// release QueryCoord's etcd keys show for the same release is not emitted again.
    released_collections: HashSet<i64>,
    /// Per collection, the emitted partition load or release the other way has not confirmed
    /// yet (see the module documentation).
    unconfirmed: HashMap<i64, Unconfirmed>,
    /// Alias states emitted (aliases come two ways as well).
    aliases: alias::EmittedAliases,
    /// Emit access-control changes (source `enable_user_role`; off: counted and dropped).
    rbac: bool,
}

/// How long (source time) a partition load or release waits to be confirmed the other way.
/// The etcd way holds changes up to 5 s ([`crate::meta::load::HeldLoads`]); a request's
/// timestamp precedes QueryCoord's work, which may take longer under load.
pub(crate) const CONFIRM_WINDOW_MS: u64 = 30_000;

/// The way a partition load or release came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// A request on the replicate channel (Milvus 2.4+).
    Request,
    /// QueryCoord's etcd keys.
    Etcd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoadKind {
    Load,
    Release,
}

#[derive(Debug)]
struct Unconfirmed {
    via: Via,
    kind: LoadKind,
    partitions: BTreeSet<String>,
    ts: u64,
}

fn db_or_default(name: &str) -> String {
    if name.is_empty() {
        DEFAULT_DB.to_string()
    } else {
        name.to_string()
    }
}

/// The context of one released group.
pub(crate) struct Ctx<'a> {
    /// Channel name.
    pub channel: Arc<str>,
    /// The metadata cache.
    pub cache: &'a mut MetaCache,
}

impl Converter {
    /// A converter; `rbac`: emit access-control changes (source `enable_user_role`).
    pub(crate) fn new(rbac: bool) -> Self {
        Self {
            rbac,
            ..Self::default()
        }
    }

    /// The partitions of a load or release to emit (empty: nothing), and the bookkeeping of
    /// the two ways (see the module documentation).
    fn confirm(
        &mut self,
        collection_id: i64,
        via: Via,
        kind: LoadKind,
        partitions: Vec<String>,
        ts: u64,
    ) -> Vec<String> {
        if collection_id <= 0 {
            return partitions;
        }
        let physical = cdc_protocol::ts::physical_ms;
        match self.unconfirmed.get_mut(&collection_id) {
            Some(u)
                if u.kind == kind
                    && u.via != via
                    && physical(ts).abs_diff(physical(u.ts)) <= CONFIRM_WINDOW_MS =>
            {
                let rest: Vec<String> = partitions
                    .into_iter()
                    .filter(|p| !u.partitions.remove(p))
                    .collect();
                if !rest.is_empty() {
                    *u = Unconfirmed {
                        via,
                        kind,
                        partitions: rest.iter().cloned().collect(),
                        ts,
                    };
                } else if u.partitions.is_empty() {
                    self.unconfirmed.remove(&collection_id);
                }
                rest
            }
            Some(u) if u.kind == kind && u.via == via => {
                u.partitions.extend(partitions.iter().cloned());
                u.ts = ts;
                partitions
            }
            _ => {
                self.unconfirmed.insert(
                    collection_id,
                    Unconfirmed {
                        via,
                        kind,
                        partitions: partitions.iter().cloned().collect(),
                        ts,
                    },
                );
                partitions
            }
        }
    }

    /// Converts a released group (one change, or the Delete and Insert parts of an upsert).
    pub fn convert(
        &mut self,
        group: Vec<Released<Payload>>,
        ctx: &mut Ctx<'_>,
        out: &mut Vec<ChangeEvent>,
    ) -> Result<(), EngineError> {
        let has_delete = group
            .iter()
            .any(|r| matches!(r.payload, Payload::Mq(MqMessage::Delete(_))));
        let has_insert = group
            .iter()
            .any(|r| matches!(r.payload, Payload::Mq(MqMessage::Insert(_))));
        if has_delete && has_insert {
            return self.upsert(group, ctx, out);
        }
        for r in group {
            let pos = SourcePosition {
                channel: ctx.channel.clone(),
                offset: r.offset,
                ts: r.ts,
            };
            self.one(pos, r.payload, ctx, out);
        }
        Ok(())
    }

    fn upsert(
        &mut self,
        group: Vec<Released<Payload>>,
        ctx: &mut Ctx<'_>,
        out: &mut Vec<ChangeEvent>,
    ) -> Result<(), EngineError> {
        let mut deletes = Vec::new();
        let mut inserts = Vec::new();
        let mut pos = None;
        for r in group {
            pos.get_or_insert_with(|| SourcePosition {
                channel: ctx.channel.clone(),
                offset: r.offset.clone(),
                ts: r.ts,
            })
            .offset = r.offset.clone();
            match r.payload {
                Payload::Mq(MqMessage::Delete(d)) => deletes.push(d),
                Payload::Mq(MqMessage::Insert(i)) => inserts.push(i),
                _ => {}
            }
        }
        let (Some(pos), Some(first)) = (pos, inserts.first()) else {
            return Ok(());
        };
        let collection_id = first.collection_id;
        let (database, collection) = names(
            ctx.cache,
            &first.db_name,
            &first.collection_name,
            collection_id,
        );
        let mut insert = row_batch(ctx.cache, inserts.remove(0));
        for more in inserts {
            let extra = row_batch(ctx.cache, more);
            append_rows(&mut insert, extra).map_err(|e| {
                EngineError::new(
                    COMPONENT,
                    cdc_engine::ErrorKind::Decode,
                    format!(
                        "channel {} offset {:?}: cannot join the parts of an upsert into \
                         collection {collection}: {e}",
                        pos.channel, pos.offset
                    ),
                )
            })?;
        }
        let mut delete = delete_batch(ctx.cache, deletes.remove(0));
        for more in deletes {
            let extra = delete_batch(ctx.cache, more);
            append_ids(&mut delete, extra).map_err(|e| {
                EngineError::new(
                    COMPONENT,
                    cdc_engine::ErrorKind::Decode,
                    format!(
                        "channel {} offset {:?}: cannot join the deleted keys of an upsert \
                         into collection {collection}: {e}",
                        pos.channel, pos.offset
                    ),
                )
            })?;
        }
        out.push(ChangeEvent {
            position: pos,
            database,
            collection,
            collection_id,
            collection_def: ctx.cache.collection_def(collection_id),
            op: Op::Upsert { delete, insert },
        });
        Ok(())
    }

    fn one(
        &mut self,
        pos: SourcePosition,
        payload: Payload,
        ctx: &mut Ctx<'_>,
        out: &mut Vec<ChangeEvent>,
    ) {
        let cache = &mut *ctx.cache;
        let msg = match payload {
            Payload::Mq(m) => m,
            Payload::Alias(change) => {
                out.extend(alias::from_etcd(&mut self.aliases, cache, pos, change));
                return;
            }
            Payload::Properties(p) => {
                let id = p.collection_id;
                let Some((db, coll)) = cache.collection_names(id) else {
                    return;
                };
                let def = cache.collection_def(id);
                let op = Op::Ddl(Ddl::AlterCollection {
                    properties: p.properties,
                    delete_keys: p.removed,
                });
                out.push(event(pos, db, coll, id, def, op));
                return;
            }
            Payload::Rbac(op) => {
                if self.rbac {
                    let op = Op::Ddl(Ddl::Rbac(op));
                    out.push(event(pos, String::new(), String::new(), 0, None, op));
                } else {
                    tracing::debug!(
                        message = "Access-control change not replicated (enable_user_role off).",
                        change = ?op
                    );
                }
                return;
            }
            Payload::PartitionCreated {
                collection_id,
                partition_id,
                name,
            } => {
                let user = cache
                    .partition(partition_id)
                    .is_none_or(|p| cache.is_user_partition(collection_id, &p.info));
                if !user
                    || !self
                        .partitions_created
                        .insert((collection_id, name.clone()))
                {
                    return;
                }
                let Some((database, collection)) = cache.collection_names(collection_id) else {
                    warn!(message = "Partition of an unknown collection skipped.", collection_id, partition = %name);
                    return;
                };
                out.push(event(
                    pos,
                    database,
                    collection,
                    collection_id,
                    cache.collection_def(collection_id),
                    Op::Ddl(Ddl::CreatePartition { partition: name }),
                ));
                return;
            }
            Payload::PartitionsLoaded {
                collection_id,
                partitions,
                replica_number,
            } => {
                self.released_collections.remove(&collection_id);
                let partitions =
                    self.confirm(collection_id, Via::Etcd, LoadKind::Load, partitions, pos.ts);
                if partitions.is_empty() {
                    return;
                }
                let Some((database, collection)) = cache.collection_names(collection_id) else {
                    warn!(message = "Partition load of an unknown collection skipped.", collection_id, partitions = ?partitions);
                    return;
                };
                let req = LoadPartitionsRequest {
                    db_name: database.clone(),
                    collection_name: collection.clone(),
                    partition_names: partitions,
                    replica_number,
                    ..Default::default()
                };
                out.push(event(
                    pos,
                    database,
                    collection,
                    collection_id,
                    cache.collection_def(collection_id),
                    Op::Ddl(Ddl::LoadPartitions(req)),
                ));
                return;
            }
            Payload::PartitionsReleased {
                collection_id,
                partitions,
                whole,
            } => {
                if whole && self.released_collections.remove(&collection_id) {
                    // The ReleaseCollection message already released them.
                    return;
                }
                let partitions = self.confirm(
                    collection_id,
                    Via::Etcd,
                    LoadKind::Release,
                    partitions,
                    pos.ts,
                );
                if partitions.is_empty() {
                    return;
                }
                let Some((database, collection)) = cache.collection_names(collection_id) else {
                    warn!(message = "Partition release of an unknown collection skipped.", collection_id, partitions = ?partitions);
                    return;
                };
                let req = ReleasePartitionsRequest {
                    db_name: database.clone(),
                    collection_name: collection.clone(),
                    partition_names: partitions,
                    ..Default::default()
                };
                out.push(event(
                    pos,
                    database,
                    collection,
                    collection_id,
                    cache.collection_def(collection_id),
                    Op::Ddl(Ddl::ReleasePartitions(req)),
                ));
                return;
            }
        };
        let coll_event =
            |cache: &mut MetaCache, pos: SourcePosition, db: &str, name: &str, op: Op| {
                let db = db_or_default(db);
                let id = cache.find_collection(&db, name).unwrap_or(0);
                let def = if id > 0 {
                    cache.collection_def(id)
                } else {
                    None
                };
                event(pos, db, name.to_string(), id, def, op)
            };
        match msg {
            MqMessage::Insert(m) => {
                let id = m.collection_id;
                let (database, collection) = names(cache, &m.db_name, &m.collection_name, id);
                let def = cache.collection_def(id);
                let rows = row_batch(cache, m);
                out.push(event(pos, database, collection, id, def, Op::Insert(rows)));
            }
            MqMessage::Delete(m) => {
                let id = m.collection_id;
                let (database, collection) = names(cache, &m.db_name, &m.collection_name, id);
                let def = cache.collection_def(id);
                let keys = delete_batch(cache, m);
                out.push(event(pos, database, collection, id, def, Op::Delete(keys)));
            }
            MqMessage::CreateCollection(m) => {
                if !self.created.insert(m.collection_id) {
                    return;
                }
                let id = m.collection_id;
                let (database, collection) = names(cache, &m.db_name, &m.collection_name, id);
                let def = cache.collection_def(id).or_else(|| match def_from_create_message(&m) {
                    Ok(d) => Some(Arc::new(d)),
                    Err(e) => {
                        warn!(message = "Collection schema not decodable; created without it.", collection = %collection, error = %e);
                        None
                    }
                });
                let ddl_def: CollectionDef = def.as_deref().cloned().unwrap_or_default();
                out.push(event(
                    pos,
                    database,
                    collection,
                    id,
                    def,
                    Op::Ddl(Ddl::CreateCollection(Box::new(ddl_def))),
                ));
            }
            MqMessage::DropCollection(m) => {
                self.unconfirmed.remove(&m.collection_id);
                if !self.dropped.insert(m.collection_id) {
                    return;
                }
                let id = m.collection_id;
                let (database, collection) = names(cache, &m.db_name, &m.collection_name, id);
                let def = cache.collection_def(id);
                out.push(event(
                    pos,
                    database,
                    collection,
                    id,
                    def,
                    Op::Ddl(Ddl::DropCollection),
                ));
            }
            MqMessage::CreatePartition(m) => {
                if !self
                    .partitions_created
                    .insert((m.collection_id, m.partition_name.clone()))
                {
                    return;
                }
                let id = m.collection_id;
                let (database, collection) = names(cache, &m.db_name, &m.collection_name, id);
                let def = cache.collection_def(id);
                out.push(event(
                    pos,
                    database,
                    collection,
                    id,
                    def,
                    Op::Ddl(Ddl::CreatePartition {
                        partition: m.partition_name,
                    }),
                ));
            }
            MqMessage::DropPartition(m) => {
                self.unconfirmed.remove(&m.collection_id);
                let name = if m.partition_name.is_empty() {
                    cache
                        .partition_name(m.partition_id)
                        .unwrap_or_default()
                        .to_string()
                } else {
                    m.partition_name.clone()
                };
                if !self
                    .partitions_dropped
                    .insert((m.collection_id, name.clone()))
                {
                    return;
                }
                // The same name may be created again later.
                self.partitions_created
                    .remove(&(m.collection_id, name.clone()));
                let id = m.collection_id;
                let (database, collection) = names(cache, &m.db_name, &m.collection_name, id);
                let def = cache.collection_def(id);
                out.push(event(
                    pos,
                    database,
                    collection,
                    id,
                    def,
                    Op::Ddl(Ddl::DropPartition { partition: name }),
                ));
            }
            MqMessage::CreateDatabase(r) => out.push(event(
                pos,
                db_or_default(&r.db_name),
                String::new(),
                0,
                None,
                Op::Ddl(Ddl::CreateDatabase {
                    properties: r.properties,
                }),
            )),
            MqMessage::DropDatabase(r) => {
                let db = db_or_default(&r.db_name);
                // Milvus broadcasts DropCollection asynchronously, with a timestamp taken after
                // the drop returned: a DropDatabase that follows can be older. Its collections
                // are already dropping (etcd): drop them first; their late messages are then
                // duplicates and skipped.
                for (id, name) in cache.dropped_collections_of(&db) {
                    let live_namesake = cache
                        .find_collection(&db, &name)
                        .and_then(|i| cache.collection(i))
                        .is_some_and(|c| c.is_live());
                    if !live_namesake && self.dropped.insert(id) {
                        let def = cache.collection_def(id);
                        let op = Op::Ddl(Ddl::DropCollection);
                        out.push(event(pos.clone(), db.clone(), name, id, def, op));
                    }
                }
                out.push(event(
                    pos,
                    db,
                    String::new(),
                    0,
                    None,
                    Op::Ddl(Ddl::DropDatabase),
                ));
            }
            MqMessage::Flush(r) => {
                for name in &r.collection_names {
                    out.push(coll_event(
                        cache,
                        pos.clone(),
                        &r.db_name,
                        name,
                        Op::Ddl(Ddl::Flush),
                    ));
                }
            }
            MqMessage::CreateIndex(r) => {
                let (db, name) = (r.db_name.clone(), r.collection_name.clone());
                out.push(coll_event(
                    cache,
                    pos,
                    &db,
                    &name,
                    Op::Ddl(Ddl::CreateIndex(r)),
                ));
            }
            MqMessage::DropIndex(r) => {
                let (db, name) = (r.db_name.clone(), r.collection_name.clone());
                out.push(coll_event(
                    cache,
                    pos,
                    &db,
                    &name,
                    Op::Ddl(Ddl::DropIndex(r)),
                ));
            }
            MqMessage::AlterIndex(r) => {
                let (db, name) = (r.db_name.clone(), r.collection_name.clone());
                out.push(coll_event(
                    cache,
                    pos,
                    &db,
                    &name,
                    Op::Ddl(Ddl::AlterIndex(r)),
                ));
            }
            MqMessage::LoadCollection(r) => {
                let (db, name) = (r.db_name.clone(), r.collection_name.clone());
                let ev = coll_event(cache, pos, &db, &name, Op::Ddl(Ddl::LoadCollection(r)));
                self.released_collections.remove(&ev.collection_id);
                self.unconfirmed.remove(&ev.collection_id);
                out.push(ev);
            }
            MqMessage::ReleaseCollection(r) => {
                let ev = coll_event(
                    cache,
                    pos,
                    &r.db_name,
                    &r.collection_name,
                    Op::Ddl(Ddl::ReleaseCollection),
                );
                self.released_collections.insert(ev.collection_id);
                self.unconfirmed.remove(&ev.collection_id);
                out.push(ev);
            }
            MqMessage::LoadPartitions(mut r) => {
                let (db, name) = (r.db_name.clone(), r.collection_name.clone());
                let id = cache
                    .find_collection(&db_or_default(&db), &name)
                    .unwrap_or(0);
                let ts = pos.ts;
                r.partition_names = self.confirm(
                    id,
                    Via::Request,
                    LoadKind::Load,
                    std::mem::take(&mut r.partition_names),
                    ts,
                );
                if r.partition_names.is_empty() {
                    return;
                }
                let ev = coll_event(cache, pos, &db, &name, Op::Ddl(Ddl::LoadPartitions(r)));
                self.released_collections.remove(&ev.collection_id);
                out.push(ev);
            }
            MqMessage::ReleasePartitions(mut r) => {
                let (db, name) = (r.db_name.clone(), r.collection_name.clone());
                let id = cache
                    .find_collection(&db_or_default(&db), &name)
                    .unwrap_or(0);
                let ts = pos.ts;
                r.partition_names = self.confirm(
                    id,
                    Via::Request,
                    LoadKind::Release,
                    std::mem::take(&mut r.partition_names),
                    ts,
                );
                if r.partition_names.is_empty() {
                    return;
                }
                out.push(coll_event(
                    cache,
                    pos,
                    &db,
                    &name,
                    Op::Ddl(Ddl::ReleasePartitions(r)),
                ));
            }
            MqMessage::CreateAlias(m) => {
                let db = db_or_default(&m.db_name);
                if self.aliases.is_new(&db, &m.alias, Some(&m.collection_name)) {
                    let op = Op::Ddl(Ddl::CreateAlias { alias: m.alias });
                    out.push(coll_event(cache, pos, &db, &m.collection_name, op));
                }
            }
            MqMessage::AlterAlias(m) => {
                let db = db_or_default(&m.db_name);
                if self.aliases.is_new(&db, &m.alias, Some(&m.collection_name)) {
                    let op = Op::Ddl(Ddl::AlterAlias { alias: m.alias });
                    out.push(coll_event(cache, pos, &db, &m.collection_name, op));
                }
            }
            MqMessage::DropAlias(m) => {
                let db = db_or_default(&m.db_name);
                // An alias this run never saw set: its collection is unknown here (a filter
                // may then drop the event), so the etcd way is left free to emit it named.
                let coll = self.aliases.target(&db, &m.alias);
                let emit = match &coll {
                    Some(_) => self.aliases.is_new(&db, &m.alias, None),
                    None => true,
                };
                let coll = coll.unwrap_or_default();
                if emit {
                    let op = Op::Ddl(Ddl::DropAlias { alias: m.alias });
                    out.push(coll_event(cache, pos, &db, &coll, op));
                }
            }
            // Filtered out by the reader; nothing to emit.
            _ => {}
        }
    }
}

fn event(
    position: SourcePosition,
    database: String,
    collection: String,
    collection_id: i64,
    collection_def: Option<Arc<CollectionDef>>,
    op: Op,
) -> ChangeEvent {
    ChangeEvent {
        position,
        database,
        collection,
        collection_id,
        collection_def,
        op,
    }
}

/// `(database, collection)` from the message, completed from the cache.
fn names(cache: &MetaCache, db: &str, collection: &str, id: i64) -> (String, String) {
    let cached = if db.is_empty() || collection.is_empty() {
        cache.collection_names(id)
    } else {
        None
    };
    let db = if db.is_empty() {
        cached
            .as_ref()
            .map_or_else(|| DEFAULT_DB.to_string(), |c| c.0.clone())
    } else {
        db.to_string()
    };
    let collection = if collection.is_empty() {
        cached.map(|c| c.1).unwrap_or_default()
    } else {
        collection.to_string()
    };
    (db, collection)
}

fn row_batch(cache: &MetaCache, m: InsertRequest) -> RowBatch {
    let partition = if !m.partition_name.is_empty() {
        m.partition_name
    } else {
        cache
            .partition_name(m.partition_id)
            .unwrap_or(DEFAULT_PARTITION)
            .to_string()
    };
    RowBatch {
        partition,
        shard: m.shard_name,
        num_rows: m.num_rows as usize,
        columns: m.fields_data,
    }
}

fn delete_batch(cache: &MetaCache, m: DeleteRequest) -> DeleteBatch {
    let partition = if m.partition_id == -1 {
        None
    } else if !m.partition_name.is_empty() {
        Some(m.partition_name)
    } else {
        cache.partition_name(m.partition_id).map(str::to_string)
    };
    let primary_keys = match m.primary_keys {
        Some(ids) if ids.id_field.is_some() => ids,
        _ => IDs {
            id_field: Some(IdField::IntId(LongArray {
                data: m.int64_primary_keys,
            })),
        },
    };
    let num_rows = if m.num_rows > 0 {
        m.num_rows as usize
    } else {
        match &primary_keys.id_field {
            Some(IdField::IntId(a)) => a.data.len(),
            Some(IdField::StrId(a)) => a.data.len(),
            None => 0,
        }
    };
    DeleteBatch {
        partition,
        shard: m.shard_name,
        num_rows,
        primary_keys,
    }
}

fn append_ids(into: &mut DeleteBatch, more: DeleteBatch) -> Result<(), String> {
    field_data::ids_append(&mut into.primary_keys, &more.primary_keys)
        .map_err(|e| e.to_string())?;
    into.num_rows += more.num_rows;
    Ok(())
}

/// Appends the rows of `more` to `into`, column by column (matched by field ID).
fn append_rows(into: &mut RowBatch, more: RowBatch) -> Result<(), String> {
    if into.columns.len() != more.columns.len() {
        return Err(format!(
            "{} columns vs {}",
            into.columns.len(),
            more.columns.len()
        ));
    }
    for src in &more.columns {
        let dst = into
            .columns
            .iter_mut()
            .find(|c| c.field_id == src.field_id && c.field_name == src.field_name)
            .ok_or_else(|| format!("field {} is missing from one part", src.field_name))?;
        field_data::append(dst, src).map_err(|e| e.to_string())?;
    }
    into.num_rows += more.num_rows;
    Ok(())
}

mod alias;
#[cfg(test)]
mod tests;
