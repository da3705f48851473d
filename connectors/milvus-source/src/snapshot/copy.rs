//! Copies one collection: its DDL (database, collection, partitions, indexes, load state),
//! then its rows in primary-key order pages, as change events on the collection's snapshot
//! pseudo-channel (see [`super::progress`]), resuming after a stored [`Progress`].
//!
//! Pages are `pk > last` with `limit = batch_rows`, consistency Strong: Milvus 2.3 - 2.5
//! merge query results by primary key and return the smallest keys first (pymilvus'
//! `query_iterator` relies on the same); each page is checked to be ascending and after the
//! previous one, and a page that is not stops the copy with an error instead of skipping rows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cdc_engine::{
    ChangeEvent, CollectionDef, Ddl, EngineError, ErrorKind, Op, RowBatch, SourcePosition,
    SNAPSHOT_SHARD,
};
use cdc_protocol::common::LoadState;
use cdc_protocol::milvus::{CreateIndexRequest, LoadCollectionRequest};
use cdc_protocol::schema::{field_data::Field, scalar_field::Data, FieldData};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::client::is_not_found;
use super::progress::{Pk, Progress};
use super::{Shared, SnapMsg};
use crate::config::{SnapshotLoad, COMPONENT};
use crate::meta::cache::DEFAULT_DB;

/// How long a temporary load may take.
const LOAD_WAIT: Duration = Duration::from_secs(600);

/// One collection to copy.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub(crate) id: i64,
    pub(crate) db: String,
    pub(crate) name: String,
    pub(crate) def: Arc<CollectionDef>,
    /// Every partition (ID, name), in ID order.
    pub(crate) partitions: Vec<(i64, String)>,
    /// Partitions created after the collection (a CreatePartition is emitted for each).
    pub(crate) user_partitions: Vec<String>,
    pub(crate) channel: Arc<str>,
    pub(crate) progress: Progress,
    /// Rows copied so far in this run, and the total from `count(*)`.
    pub(crate) copied: Arc<AtomicU64>,
    pub(crate) total: Arc<AtomicU64>,
}

fn now_ts() -> u64 {
    cdc_protocol::ts::from_system_time(std::time::SystemTime::now())
}

impl Item {
    fn event(&self, progress: &Progress, collection: &str, op: Op) -> ChangeEvent {
        ChangeEvent {
            position: SourcePosition {
                channel: self.channel.clone(),
                offset: progress.encode(),
                ts: now_ts(),
            },
            database: self.db.clone(),
            collection: collection.to_string(),
            collection_id: if collection.is_empty() { 0 } else { self.id },
            collection_def: (!collection.is_empty()).then(|| self.def.clone()),
            op,
        }
    }

    fn pk_field(&self) -> Result<&str, EngineError> {
        self.def
            .schema
            .fields
            .iter()
            .find(|f| f.is_primary_key)
            .map(|f| f.name.as_str())
            .ok_or_else(|| {
                EngineError::internal(
                    COMPONENT,
                    format!(
                        "collection {}.{} has no primary key in its schema",
                        self.db, self.name
                    ),
                )
            })
    }

    fn output_fields(&self) -> Vec<String> {
        let s = &self.def.schema;
        let mut out: Vec<String> = s.fields.iter().map(|f| f.name.clone()).collect();
        if s.enable_dynamic_field && !s.fields.iter().any(|f| f.is_dynamic) {
            out.push("$meta".into());
        }
        out
    }

    fn partition_key(&self) -> bool {
        self.def.schema.fields.iter().any(|f| f.is_partition_key)
    }
}

/// Copies `item`, sending its events and then `Done` to `tx`.
pub(crate) async fn run(sh: Arc<Shared>, mut item: Item, tx: mpsc::Sender<SnapMsg>) {
    let channel = item.channel.clone();
    let r = copy(&sh, &mut item, &tx).await;
    let msg = match r {
        Ok(()) => SnapMsg::Done { channel },
        Err(e) if is_not_found(&e) => {
            warn!(message = "Collection vanished during the snapshot (dropped?); the stream \
                             replays what happened to it.", database = %item.db,
                  collection = %item.name, error = %e);
            SnapMsg::Done { channel }
        }
        Err(e) => SnapMsg::Failed(e),
    };
    let _ = tx.send(msg).await;
}

async fn copy(sh: &Shared, item: &mut Item, tx: &mpsc::Sender<SnapMsg>) -> Result<(), EngineError> {
    let c = &sh.client;
    let (db, name) = (item.db.clone(), item.name.clone());
    let state = c.load_state(&db, &name).await?;
    let loaded = state == LoadState::Loaded;
    let mut temporary = false;
    if !loaded {
        if sh.cfg.load != SnapshotLoad::Temporary {
            return Err(EngineError::new(
                COMPONENT,
                ErrorKind::Config,
                format!(
                    "collection {db}.{name} is not loaded on the source ({state:?}); Milvus can \
                     query only loaded collections. Load it on the source, or set \
                     `snapshot.load: temporary` to load it for the copy and release it after"
                ),
            ));
        }
        sh.suppress_begin(item.id);
        info!(message = "Loading a collection temporarily for the snapshot.", database = %db, collection = %name);
        c.load(&db, &name).await?;
        let started = Instant::now();
        while c.load_state(&db, &name).await? != LoadState::Loaded {
            if started.elapsed() > LOAD_WAIT {
                return Err(EngineError::new(
                    COMPONENT,
                    ErrorKind::Read,
                    format!(
                        "collection {db}.{name} did not load on the source within {} s",
                        LOAD_WAIT.as_secs()
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        temporary = true;
    }
    let r = copy_loaded(sh, item, tx, loaded).await;
    if temporary {
        let released = c.release(&db, &name).await;
        sh.suppress_end(item.id);
        info!(message = "Released the temporarily loaded collection.", database = %db, collection = %name);
        released?;
    }
    r
}

async fn copy_loaded(
    sh: &Shared,
    item: &mut Item,
    tx: &mpsc::Sender<SnapMsg>,
    loaded: bool,
) -> Result<(), EngineError> {
    let c = &sh.client;
    let (db, name) = (item.db.clone(), item.name.clone());
    let send = |ev: ChangeEvent| async {
        tx.send(SnapMsg::Event(Box::new(ev)))
            .await
            .map_err(|_| EngineError::internal(COMPONENT, "snapshot receiver gone"))
    };
    if item.progress
        < (Progress::Rows {
            partition: i64::MIN,
            pk: Pk::Int(i64::MIN),
        })
    {
        let mut ddl: Vec<(String, Op)> = Vec::new();
        if db != DEFAULT_DB {
            ddl.push((
                String::new(),
                Op::Ddl(Ddl::CreateDatabase { properties: vec![] }),
            ));
        }
        ddl.push((
            name.clone(),
            Op::Ddl(Ddl::CreateCollection(Box::new((*item.def).clone()))),
        ));
        for p in &item.user_partitions {
            ddl.push((
                name.clone(),
                Op::Ddl(Ddl::CreatePartition {
                    partition: p.clone(),
                }),
            ));
        }
        for ix in c.indexes(&db, &name).await? {
            ddl.push((
                name.clone(),
                Op::Ddl(Ddl::CreateIndex(CreateIndexRequest {
                    db_name: db.clone(),
                    collection_name: name.clone(),
                    field_name: ix.field_name,
                    extra_params: ix.params,
                    index_name: ix.index_name,
                    ..Default::default()
                })),
            ));
        }
        if loaded {
            ddl.push((
                name.clone(),
                Op::Ddl(Ddl::LoadCollection(LoadCollectionRequest {
                    db_name: db.clone(),
                    collection_name: name.clone(),
                    ..Default::default()
                })),
            ));
        }
        for (k, (coll, op)) in ddl.into_iter().enumerate() {
            let p = Progress::Ddl(u16::try_from(k + 1).unwrap_or(u16::MAX));
            if p <= item.progress {
                continue;
            }
            send(item.event(&p, &coll, op)).await?;
        }
    }

    let pk_field = item.pk_field()?.to_string();
    let fields = item.output_fields();
    // A partition-key collection is read as a whole (the target routes rows by key).
    let parts: Vec<(i64, String, Vec<String>)> = if item.partition_key() {
        vec![(0, "_default".to_string(), vec![])]
    } else {
        item.partitions
            .iter()
            .map(|(id, n)| (*id, n.clone(), vec![n.clone()]))
            .collect()
    };
    let total = c.count(&db, &name, &[]).await?;
    item.total.store(total, Ordering::Relaxed);
    let started = Instant::now();
    let resumed = item.progress.clone();
    for (pid, pname, filter) in parts {
        let mut last = match &resumed {
            Progress::Rows { partition, .. } if *partition > pid => continue,
            Progress::Rows { partition, pk } if *partition == pid => Some(pk.clone()),
            Progress::Done => return Ok(()),
            _ => None,
        };
        loop {
            let expr = last
                .as_ref()
                .map(|l| l.after_expr(&pk_field))
                .unwrap_or_default();
            let cols = c
                .query(&db, &name, &filter, &expr, &fields, sh.cfg.batch_rows)
                .await?;
            let (n, page_last) = check_page(&cols, &pk_field, last.as_ref()).map_err(|m| {
                EngineError::new(
                    COMPONENT,
                    ErrorKind::Read,
                    format!("snapshot of {db}.{name}, partition {pname}, after {last:?}: {m}"),
                )
            })?;
            let Some(page_last) = page_last else { break };
            let p = Progress::Rows {
                partition: pid,
                pk: page_last.clone(),
            };
            let batch = RowBatch {
                partition: pname.clone(),
                shard: SNAPSHOT_SHARD.to_string(),
                num_rows: n,
                columns: cols,
            };
            send(item.event(&p, &name, Op::Insert(batch))).await?;
            item.copied.fetch_add(n as u64, Ordering::Relaxed);
            last = Some(page_last);
            if n < sh.cfg.batch_rows {
                break;
            }
        }
    }
    let n = item.copied.load(Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64().max(0.001);
    info!(message = "Snapshot of a collection read.", database = %db, collection = %name,
          rows = n, total, rows_per_sec = (n as f64 / secs) as u64);
    Ok(())
}

/// Number of rows of a page and its last key; checks that keys ascend after `after`.
fn check_page(
    cols: &[FieldData],
    pk: &str,
    after: Option<&Pk>,
) -> Result<(usize, Option<Pk>), String> {
    let col = cols
        .iter()
        .find(|c| c.field_name == pk)
        .ok_or_else(|| format!("the answer has no primary key column `{pk}`"))?;
    let keys: Vec<Pk> = match &col.field {
        Some(Field::Scalars(s)) => match &s.data {
            Some(Data::LongData(a)) => a.data.iter().map(|v| Pk::Int(*v)).collect(),
            Some(Data::StringData(a)) => a.data.iter().map(|v| Pk::Str(v.clone())).collect(),
            _ => {
                return Err(format!(
                    "primary key column `{pk}` is neither int64 nor varchar"
                ))
            }
        },
        None => vec![],
        _ => return Err(format!("primary key column `{pk}` is not scalar")),
    };
    let mut prev = after;
    for k in &keys {
        if prev.is_some_and(|p| k <= p) {
            return Err(format!(
                "the source returned keys out of primary-key order ({prev:?} then {k:?}); \
                 paging by key would miss rows"
            ));
        }
        prev = Some(k);
    }
    Ok((keys.len(), keys.last().cloned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdc_protocol::schema::{LongArray, ScalarField};

    fn ints(v: Vec<i64>) -> Vec<FieldData> {
        vec![FieldData {
            field_name: "id".into(),
            field: Some(Field::Scalars(ScalarField {
                data: Some(Data::LongData(LongArray { data: v })),
            })),
            ..Default::default()
        }]
    }

    #[test]
    fn pages_must_ascend_after_the_last_key() {
        assert_eq!(
            check_page(&ints(vec![1, 2, 5]), "id", None),
            Ok((3, Some(Pk::Int(5))))
        );
        assert_eq!(
            check_page(&ints(vec![]), "id", Some(&Pk::Int(3))),
            Ok((0, None))
        );
        assert!(check_page(&ints(vec![1, 3, 2]), "id", None).is_err());
        assert!(check_page(&ints(vec![3, 4]), "id", Some(&Pk::Int(3))).is_err());
        assert!(check_page(&ints(vec![1]), "pk", None)
            .unwrap_err()
            .contains("`pk`"));
    }
}
