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
    /// Whether `alias` of `database` now pointing to `collection` (`None`: dropped) is a new
    /// state to emit; records it.
    pub(crate) fn is_new(&mut self, database: &str, alias: &str, collection: Option<&str>) -> bool {
        let now = collection.map(str::to_string);
        let key = (database.to_string(), alias.to_string());
        if self.state.get(&key) == Some(&now) {
            return false;
        }
        self.state.insert(key, now);
        true
    }
}

impl EmittedAliases {
    /// The collection an emitted alias points to (for a DropAlias request, which names none).
    pub(crate) fn target(&self, database: &str, alias: &str) -> Option<String> {
        self.state
            .get(&(database.to_string(), alias.to_string()))
            .cloned()
            .flatten()
    }
}

/// The DDL of an alias operation.
fn ddl(op: AliasOp, alias: String) -> Ddl {
    match op {
        AliasOp::Create => Ddl::CreateAlias { alias },
        AliasOp::Alter => Ddl::AlterAlias { alias },
        AliasOp::Drop => Ddl::DropAlias { alias },
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
    let target = (change.op != AliasOp::Drop).then_some(collection.as_str());
    if !emitted.is_new(&database, &change.alias, target) {
        return None;
    }
    let def = cache.collection_def(change.collection_id);
    Some(event(
        pos,
        database,
        collection,
        change.collection_id,
        def,
        Op::Ddl(ddl(change.op, change.alias)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_state_is_emitted_once() {
        let mut e = EmittedAliases::default();
        assert!(e.is_new("default", "x", Some("a")));
        assert!(
            !e.is_new("default", "x", Some("a")),
            "the other way, same state"
        );
        assert!(e.is_new("db1", "x", Some("a")), "another database");
        assert!(e.is_new("default", "x", Some("b")));
        assert!(e.is_new("default", "x", None));
        assert!(!e.is_new("default", "x", None));
        assert!(e.is_new("default", "x", Some("b")), "re-created");
        assert_eq!(e.target("default", "x").as_deref(), Some("b"));
        assert_eq!(e.target("default", "nope"), None);
    }
}
