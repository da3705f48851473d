//! The source Milvus's metadata in etcd: a cache ([`cache`]), the collection definitions built
//! from it ([`def`]), collection aliases ([`alias`]), QueryCoord's partition load state
//! ([`load`]), access control ([`rbac`]), collection property changes ([`props`]), and the etcd scan and watch that keep them current ([`watcher`]), with the
//! rescan that catches up after the watch lost revisions to a compaction ([`reconcile`]).

pub mod alias;
pub mod cache;
pub mod def;
pub mod load;
pub mod props;
pub mod rbac;
pub mod reconcile;
pub mod watcher;

pub use cache::{MetaCache, MetaChange};
