//! The source Milvus's metadata in etcd: a cache ([`cache`]), the collection definitions built
//! from it ([`def`]), and the etcd scan and watch that keep it current ([`watcher`]).

pub mod cache;
pub mod def;
pub mod watcher;

pub use cache::{MetaCache, MetaChange};
