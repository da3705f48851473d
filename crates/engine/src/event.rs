//! The change stream: what a source emits and every sink consumes.
//!
//! DML keeps Milvus's own column data ([`FieldData`]) so a Milvus sink forwards it without any
//! per-row conversion; row-level sinks pivot columns to rows themselves.

use std::sync::Arc;

use cdc_protocol::common::KeyValuePair;
use cdc_protocol::milvus;
use cdc_protocol::schema::{CollectionSchema, FieldData, IDs};

/// An opaque, order-preserving position inside one source channel (for Kafka: the offset as
/// 8 big-endian bytes). Comparing two offsets of the same channel compares their bytes.
pub type Offset = Vec<u8>;

/// Where a change was read: the source channel, its position there and its hybrid timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePosition {
    /// Source channel (for Milvus: the physical channel, e.g. `by-dev-rootcoord-dml_0`, or the
    /// replicate channel).
    pub channel: Arc<str>,
    /// Position of the message in that channel.
    pub offset: Offset,
    /// Milvus hybrid timestamp of the change (physical ms << 18 | logical).
    pub ts: u64,
}

/// Prefix of the pseudo-channels that carry a source's initial snapshot (rows that existed
/// before the pipeline started, read from the source rather than from its change stream).
/// Their changes are *snapshot reads*: inserts that row-level sinks publish as `op: "r"` and
/// that a Milvus sink always upserts.
pub const SNAPSHOT_CHANNEL_PREFIX: &str = "snapshot:";
/// Shard ([`RowBatch::shard`]) of snapshot reads. A Milvus sink writes them out before the
/// first later change of their collection.
pub const SNAPSHOT_SHARD: &str = "snapshot";

/// One change of the source, scoped to a database and (except database DDL) a collection.
#[derive(Debug, Clone)]
pub struct ChangeEvent {
    /// Where it was read.
    pub position: SourcePosition,
    /// Database name (`default` for the default database).
    pub database: String,
    /// Collection name; empty for database-level DDL.
    pub collection: String,
    /// Source collection id (0 when unknown or not applicable).
    pub collection_id: i64,
    /// The collection's definition as the source knew it when the change was read (set for DML
    /// and collection-level DDL when known). Lets sinks create a missing target collection,
    /// find the primary key and derive row schemas without asking the source again.
    pub collection_def: Option<Arc<CollectionDef>>,
    /// What happened.
    pub op: Op,
}

impl ChangeEvent {
    /// True for a change of the initial snapshot (see [`SNAPSHOT_CHANNEL_PREFIX`]).
    pub fn is_snapshot_read(&self) -> bool {
        self.position.channel.starts_with(SNAPSHOT_CHANNEL_PREFIX)
    }
}

/// The operation of a change.
#[derive(Debug, Clone)]
pub enum Op {
    /// Rows inserted, as Milvus columns.
    Insert(RowBatch),
    /// Rows deleted by primary key.
    Delete(DeleteBatch),
    /// A source upsert: the delete and the insert Milvus wrote with one timestamp, kept together
    /// (delete first).
    Upsert {
        /// Primary keys replaced.
        delete: DeleteBatch,
        /// New rows.
        insert: RowBatch,
    },
    /// A schema or control operation.
    Ddl(Ddl),
}

/// Inserted rows in Milvus column layout.
#[derive(Debug, Clone, Default)]
pub struct RowBatch {
    /// Partition name (`_default` for the default partition).
    pub partition: String,
    /// Source virtual channel (shard) the rows were written to.
    pub shard: String,
    /// Number of rows.
    pub num_rows: usize,
    /// One column per field (including the primary key and, if any, the dynamic `$meta` field).
    pub columns: Vec<FieldData>,
}

/// Deleted primary keys.
#[derive(Debug, Clone, Default)]
pub struct DeleteBatch {
    /// Partition name, or `None` when the delete applies to every partition.
    pub partition: Option<String>,
    /// Source virtual channel (shard).
    pub shard: String,
    /// Number of keys.
    pub num_rows: usize,
    /// The keys (int64 or varchar).
    pub primary_keys: IDs,
}

/// Full definition of a collection, as needed to create it elsewhere.
#[derive(Debug, Clone, Default)]
pub struct CollectionDef {
    /// The schema, with user fields only (system fields removed) and `enable_dynamic_field`
    /// set when the source has a `$meta` field.
    pub schema: CollectionSchema,
    /// Number of shards (virtual channels).
    pub shards_num: i32,
    /// Consistency level (`milvus.proto.common.ConsistencyLevel` value).
    pub consistency_level: i32,
    /// Collection properties.
    pub properties: Vec<KeyValuePair>,
    /// Source virtual channel names, one per shard.
    pub virtual_channels: Vec<String>,
    /// Source physical channel names, one per shard.
    pub physical_channels: Vec<String>,
    /// Partitions that exist at creation time besides `_default` (partition-key collections
    /// create many).
    pub num_partitions: i64,
}

/// Schema and control operations. Requests that Milvus itself publishes on its replicate
/// channel are kept as the Milvus request so a sink can replay them field for field.
#[derive(Debug, Clone)]
pub enum Ddl {
    /// A database was created.
    CreateDatabase {
        /// Database properties.
        properties: Vec<KeyValuePair>,
    },
    /// A database was dropped.
    DropDatabase,
    /// A collection was created.
    CreateCollection(Box<CollectionDef>),
    /// A collection was dropped.
    DropCollection,
    /// A partition was created.
    CreatePartition {
        /// Partition name.
        partition: String,
    },
    /// A partition was dropped.
    DropPartition {
        /// Partition name.
        partition: String,
    },
    /// An index was created.
    CreateIndex(milvus::CreateIndexRequest),
    /// An index was dropped.
    DropIndex(milvus::DropIndexRequest),
    /// Index parameters were changed.
    AlterIndex(milvus::AlterIndexRequest),
    /// The collection was loaded.
    LoadCollection(milvus::LoadCollectionRequest),
    /// The collection was released.
    ReleaseCollection,
    /// Partitions were loaded.
    LoadPartitions(milvus::LoadPartitionsRequest),
    /// Partitions were released.
    ReleasePartitions(milvus::ReleasePartitionsRequest),
    /// The collection was flushed.
    Flush,
    /// An alias was created for the event's collection.
    CreateAlias {
        /// The alias (in the event's database).
        alias: String,
    },
    /// An alias was moved to the event's collection.
    AlterAlias {
        /// The alias.
        alias: String,
    },
    /// An alias of the event's collection was dropped (the collection is the one it pointed
    /// to, empty when the source no longer knew it).
    DropAlias {
        /// The alias.
        alias: String,
    },
    /// The collection's properties changed (AlterCollection: TTL, mmap...).
    AlterCollection {
        /// Every property now.
        properties: Vec<KeyValuePair>,
        /// Properties removed.
        delete_keys: Vec<String>,
    },
    /// An access-control change (cluster-wide: no database or collection, see
    /// [`crate::rbac`]).
    Rbac(crate::rbac::RbacOp),
}

impl Op {
    /// Short lowercase name, used in logs, metrics and row events.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Insert(_) => "insert",
            Op::Delete(_) => "delete",
            Op::Upsert { .. } => "upsert",
            Op::Ddl(d) => d.kind(),
        }
    }

    /// True for operations on a whole database (they carry no collection).
    pub fn is_database_level(&self) -> bool {
        matches!(self, Op::Ddl(d) if d.is_database_level())
    }

    /// True for cluster-wide operations (access control): no database, no collection; every
    /// filter passes them and the rename transform leaves them alone.
    pub fn is_cluster_level(&self) -> bool {
        matches!(self, Op::Ddl(Ddl::Rbac(_)))
    }

    /// Rows affected (0 for DDL).
    pub fn rows(&self) -> usize {
        match self {
            Op::Insert(b) => b.num_rows,
            Op::Delete(d) => d.num_rows,
            Op::Upsert { insert, .. } => insert.num_rows,
            Op::Ddl(_) => 0,
        }
    }
}

impl Ddl {
    /// Short snake-case name of the operation.
    pub fn kind(&self) -> &'static str {
        match self {
            Ddl::CreateDatabase { .. } => "create_database",
            Ddl::DropDatabase => "drop_database",
            Ddl::CreateCollection(_) => "create_collection",
            Ddl::DropCollection => "drop_collection",
            Ddl::CreatePartition { .. } => "create_partition",
            Ddl::DropPartition { .. } => "drop_partition",
            Ddl::CreateIndex(_) => "create_index",
            Ddl::DropIndex(_) => "drop_index",
            Ddl::AlterIndex(_) => "alter_index",
            Ddl::LoadCollection(_) => "load_collection",
            Ddl::ReleaseCollection => "release_collection",
            Ddl::LoadPartitions(_) => "load_partitions",
            Ddl::ReleasePartitions(_) => "release_partitions",
            Ddl::Flush => "flush",
            Ddl::CreateAlias { .. } => "create_alias",
            Ddl::AlterAlias { .. } => "alter_alias",
            Ddl::DropAlias { .. } => "drop_alias",
            Ddl::AlterCollection { .. } => "alter_collection",
            Ddl::Rbac(r) => r.kind(),
        }
    }

    /// True for operations on a whole database.
    pub fn is_database_level(&self) -> bool {
        matches!(self, Ddl::CreateDatabase { .. } | Ddl::DropDatabase)
    }
}
