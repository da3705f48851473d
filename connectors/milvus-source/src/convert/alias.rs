//! Alias changes to engine events, each emitted once whichever way it came: from the etcd
//! alias keys ([`crate::meta::alias`]; the only way on Milvus 2.3) or as the CreateAlias /
//! DropAlias / AlterAlias requests that newer proxies publish on the replicate channel
//! (`internal/proxy/task_alias.go`, `pkg/mq/msgstream/msg_for_alias.go`).
//!
//! The converter remembers the last alias state it emitted per `(database, alias)`: a change
//! that would emit the same state again (the other way reporting what was already applied) is
//! dropped. A state is the target collection, or none after a drop.

use std::collections::HashMap;

use cdc_engine::{ChangeEvent, Ddl, Op, SourcePosition};
use tracing::warn;

use super::event;
use crate::meta::alias::{AliasChange, AliasOp};
use crate::meta::cache::MetaCache;

/// The alias states already emitted (see the module documentation).
#[derive(Debug, Default)]
pub(crate) struct EmittedAliases {
    /// `(database, alias)` to the collection name it points to (`None`: dropped).
    state: HashMap<(String, String), Option<String>>,
}

impl EmittedAliases {
    /// The event for an alias change named `(database, collection)`, or `None` when this
    /// state was emitted already.
    pub(crate) fn event(
        &mut self,
        pos: SourcePosition,
        database: String,
        collection: String,
        collection_id: i64,
        def: Option<std::sync::Arc<cdc_engine::CollectionDef>>,
        op: AliasOp,
        alias: String,
    ) -> Option<ChangeEvent> {
        let now = (op != AliasOp::Drop).then(|| collection.clone());
        let key = (database.clone(), alias.clone());
        if self.state.get(&key) == Some(&now) {
            return None;
        }
        self.state.insert(key, now);
        let ddl = match op {
            AliasOp::Create => Ddl::CreateAlias { alias },
            AliasOp::Alter => Ddl::AlterAlias { alias },
            AliasOp::Drop => Ddl::DropAlias { alias },
        };
        Some(event(
            pos,
            database,
            collection,
            collection_id,
            def,
            Op::Ddl(ddl),
        ))
    }
}

/// The event of an etcd alias change, named from the cache.
pub(crate) fn from_etcd(
    emitted: &mut EmittedAliases,
    cache: &mut MetaCache,
    pos: SourcePosition,
    change: AliasChange,
) -> Option<ChangeEvent> {
    let (database, collection) = match cache.collection_names(change.collection_id) {
        Some(names) => names,
        None if change.op == AliasOp::Drop => (cache.database_name(change.db_id), String::new()),
        None => {
            warn!(message = "Alias of an unknown collection skipped.", alias = %change.alias, collection_id = change.collection_id);
            return None;
        }
    };
    let def = cache.collection_def(change.collection_id);
    emitted.event(
        pos,
        database,
        collection,
        change.collection_id,
        def,
        change.op,
        change.alias,
    )
}
