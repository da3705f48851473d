//! RootCoord metadata in the source Milvus etcd.
//!
//! Keys live under a *meta root*, `{rootPath}/{metaSubPath}` (`by-dev/meta` by default):
//!
//! | key below the meta root                                     | value                    |
//! |-------------------------------------------------------------|--------------------------|
//! | `root-coord/database/db-info/{dbID}`                        | [`etcd::DatabaseInfo`]   |
//! | `root-coord/database/collection-info/{dbID}/{collectionID}` | [`etcd::CollectionInfo`] |
//! | `root-coord/collection/{collectionID}` (before 2.2.9)       | [`etcd::CollectionInfo`] |
//! | `root-coord/fields/{collectionID}/{fieldID}`                | [`schema::FieldSchema`]  |
//! | `root-coord/partitions/{collectionID}/{partitionID}`        | [`etcd::PartitionInfo`]  |
//! | `root-coord/functions/{collectionID}/{functionID}` (2.5)    | [`schema::FunctionSchema`] |
//! | `root-coord/database/aliases/{dbID}/{alias}` (2.2.9+)       | [`etcd::AliasInfo`] ([`parse_alias_key`]) |
//!
//! A deleted object's key is not removed: its value becomes the tombstone `E2 9B BC` (UTF-8
//! "⛼").

use prost::Message as _;

use crate::{etcd, schema};

/// Value that marks a deleted key.
pub const TOMBSTONE: [u8; 3] = [0xE2, 0x9B, 0xBC];

/// Default `etcd.rootPath` of Milvus.
pub const DEFAULT_ROOT_PATH: &str = "by-dev";
/// Default `etcd.metaSubPath` of Milvus.
pub const DEFAULT_META_SUB_PATH: &str = "meta";

const ROOT_COORD: &str = "root-coord";

/// Whether an etcd value is the deletion tombstone.
#[must_use]
pub fn is_tombstone(value: &[u8]) -> bool {
    value == TOMBSTONE
}

/// The meta root `{root_path}/{meta_sub_path}`, e.g. `by-dev/meta`.
#[must_use]
pub fn meta_root(root_path: &str, meta_sub_path: &str) -> String {
    format!(
        "{}/{}",
        root_path.trim_end_matches('/'),
        meta_sub_path.trim_matches('/')
    )
}

/// The key of the TSO that RootCoord persists: `{root_path}/kv/gid/timestamp` (outside the meta
/// root).
#[must_use]
pub fn tso_key(root_path: &str) -> String {
    format!("{}/kv/gid/timestamp", root_path.trim_end_matches('/'))
}

/// The value of [`tso_key`]: 8 bytes, big-endian, Unix time in nanoseconds. `None` when the
/// value is not 8 bytes long.
#[must_use]
pub fn decode_tso_nanos(value: &[u8]) -> Option<u64> {
    value.try_into().ok().map(u64::from_be_bytes)
}

/// A parsed RootCoord metadata key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetaKey {
    /// `root-coord/database/db-info/{db_id}`.
    Database {
        /// Database ID (the default database is 1).
        db_id: i64,
    },
    /// `root-coord/database/collection-info/{db_id}/{collection_id}`.
    Collection {
        /// Database ID.
        db_id: i64,
        /// Collection ID.
        collection_id: i64,
    },
    /// `root-coord/collection/{collection_id}`: collections created before 2.2.9
    /// (database ID 0). milvus-cdc ignores these.
    LegacyCollection {
        /// Collection ID.
        collection_id: i64,
    },
    /// `root-coord/fields/{collection_id}/{field_id}`.
    Field {
        /// Collection ID.
        collection_id: i64,
        /// Field ID (0 and 1 are the system fields RowID and Timestamp; user fields start at 100).
        field_id: i64,
    },
    /// `root-coord/partitions/{collection_id}/{partition_id}`.
    Partition {
        /// Collection ID.
        collection_id: i64,
        /// Partition ID.
        partition_id: i64,
    },
    /// `root-coord/functions/{collection_id}/{function_id}` (2.5).
    Function {
        /// Collection ID.
        collection_id: i64,
        /// Function ID.
        function_id: i64,
    },
}

impl MetaKey {
    /// The key below the meta root, e.g. `root-coord/fields/7/100`.
    #[must_use]
    pub fn relative_key(&self) -> String {
        match *self {
            Self::Database { db_id } => format!("{ROOT_COORD}/database/db-info/{db_id}"),
            Self::Collection {
                db_id,
                collection_id,
            } => {
                format!("{ROOT_COORD}/database/collection-info/{db_id}/{collection_id}")
            }
            Self::LegacyCollection { collection_id } => {
                format!("{ROOT_COORD}/collection/{collection_id}")
            }
            Self::Field {
                collection_id,
                field_id,
            } => {
                format!("{ROOT_COORD}/fields/{collection_id}/{field_id}")
            }
            Self::Partition {
                collection_id,
                partition_id,
            } => {
                format!("{ROOT_COORD}/partitions/{collection_id}/{partition_id}")
            }
            Self::Function {
                collection_id,
                function_id,
            } => {
                format!("{ROOT_COORD}/functions/{collection_id}/{function_id}")
            }
        }
    }

    /// The full key `{meta_root}/{relative_key}`.
    #[must_use]
    pub fn key(&self, meta_root: &str) -> String {
        format!(
            "{}/{}",
            meta_root.trim_end_matches('/'),
            self.relative_key()
        )
    }

    /// The collection this key belongs to, if any.
    #[must_use]
    pub fn collection_id(&self) -> Option<i64> {
        match *self {
            Self::Database { .. } => None,
            Self::Collection { collection_id, .. }
            | Self::LegacyCollection { collection_id }
            | Self::Field { collection_id, .. }
            | Self::Partition { collection_id, .. }
            | Self::Function { collection_id, .. } => Some(collection_id),
        }
    }
}

/// Parses a full etcd key under `meta_root` (e.g. `by-dev/meta`). Returns `None` for keys that
/// are not one of the [`MetaKey`] shapes (other RootCoord objects, snapshots, other roots).
#[must_use]
pub fn parse_meta_key(meta_root: &str, key: &str) -> Option<MetaKey> {
    let rest = key
        .strip_prefix(meta_root.trim_end_matches('/'))?
        .strip_prefix('/')?;
    parse_relative_key(rest)
}

/// Parses a key below the meta root, such as `root-coord/partitions/7/8`.
#[must_use]
pub fn parse_relative_key(key: &str) -> Option<MetaKey> {
    let parts: Vec<&str> = key
        .strip_prefix(ROOT_COORD)?
        .strip_prefix('/')?
        .split('/')
        .collect();
    let id = |s: &str| -> Option<i64> {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        }
    };
    match parts.as_slice() {
        ["database", "db-info", db] => Some(MetaKey::Database { db_id: id(db)? }),
        ["database", "collection-info", db, coll] => Some(MetaKey::Collection {
            db_id: id(db)?,
            collection_id: id(coll)?,
        }),
        ["collection", coll] => Some(MetaKey::LegacyCollection {
            collection_id: id(coll)?,
        }),
        ["fields", coll, field] => Some(MetaKey::Field {
            collection_id: id(coll)?,
            field_id: id(field)?,
        }),
        ["partitions", coll, part] => Some(MetaKey::Partition {
            collection_id: id(coll)?,
            partition_id: id(part)?,
        }),
        ["functions", coll, func] => Some(MetaKey::Function {
            collection_id: id(coll)?,
            function_id: id(func)?,
        }),
        _ => None,
    }
}

/// Prefix of every database key: `{meta_root}/root-coord/database/db-info/`.
#[must_use]
pub fn database_prefix(meta_root: &str) -> String {
    prefix(meta_root, "database/db-info/")
}

/// Prefix of every (database-aware) collection key:
/// `{meta_root}/root-coord/database/collection-info/`.
#[must_use]
pub fn collection_prefix(meta_root: &str) -> String {
    prefix(meta_root, "database/collection-info/")
}

/// Prefix of the collection keys of one database.
#[must_use]
pub fn database_collections_prefix(meta_root: &str, db_id: i64) -> String {
    prefix(meta_root, &format!("database/collection-info/{db_id}/"))
}

/// Prefix of every partition key: `{meta_root}/root-coord/partitions/`.
#[must_use]
pub fn partition_prefix(meta_root: &str) -> String {
    prefix(meta_root, "partitions/")
}

/// Prefix of the partition keys of one collection.
#[must_use]
pub fn collection_partitions_prefix(meta_root: &str, collection_id: i64) -> String {
    prefix(meta_root, &format!("partitions/{collection_id}/"))
}

/// Prefix of the field keys of one collection.
#[must_use]
pub fn collection_fields_prefix(meta_root: &str, collection_id: i64) -> String {
    prefix(meta_root, &format!("fields/{collection_id}/"))
}

/// Prefix of the function keys of one collection.
#[must_use]
pub fn collection_functions_prefix(meta_root: &str, collection_id: i64) -> String {
    prefix(meta_root, &format!("functions/{collection_id}/"))
}

fn prefix(meta_root: &str, rest: &str) -> String {
    format!("{}/{ROOT_COORD}/{rest}", meta_root.trim_end_matches('/'))
}

/// A parsed alias key `root-coord/database/aliases/{db_id}/{alias}` (Milvus
/// `internal/metastore/kv/rootcoord/rootcoord_constant.go`: `AliasMetaPrefix`; seen live on
/// 2.3.5). Kept apart from [`MetaKey`], which is `Copy`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AliasKey {
    /// Database ID.
    pub db_id: i64,
    /// The alias.
    pub alias: String,
}

/// Prefix of every alias key: `{meta_root}/root-coord/database/aliases/`.
#[must_use]
pub fn alias_prefix(meta_root: &str) -> String {
    prefix(meta_root, "database/aliases/")
}

/// Parses a full etcd alias key under `meta_root`; `None` for any other key.
#[must_use]
pub fn parse_alias_key(meta_root: &str, key: &str) -> Option<AliasKey> {
    let rest = key.strip_prefix(&alias_prefix(meta_root))?;
    let (db, alias) = rest.split_once('/')?;
    if db.is_empty() || !db.bytes().all(|b| b.is_ascii_digit()) || alias.is_empty() {
        return None;
    }
    Some(AliasKey {
        db_id: db.parse().ok()?,
        alias: alias.to_string(),
    })
}

/// Decodes an alias value: `None` for the tombstone.
///
/// # Errors
/// The protobuf error when the value is not an [`etcd::AliasInfo`].
pub fn decode_alias_value(value: &[u8]) -> Result<Option<etcd::AliasInfo>, prost::DecodeError> {
    if is_tombstone(value) {
        return Ok(None);
    }
    etcd::AliasInfo::decode(value).map(Some)
}

/// A decoded metadata value.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // Decoded once per etcd event; boxing buys nothing.
pub enum MetaValue {
    /// Value of a [`MetaKey::Database`] key.
    Database(etcd::DatabaseInfo),
    /// Value of a [`MetaKey::Collection`] or [`MetaKey::LegacyCollection`] key.
    Collection(etcd::CollectionInfo),
    /// Value of a [`MetaKey::Field`] key.
    Field(schema::FieldSchema),
    /// Value of a [`MetaKey::Partition`] key.
    Partition(etcd::PartitionInfo),
    /// Value of a [`MetaKey::Function`] key.
    Function(schema::FunctionSchema),
    /// The deletion tombstone.
    Tombstone,
}

/// Error of [`decode_meta_value`].
#[derive(Debug, thiserror::Error)]
#[error("cannot decode the value of {key:?} ({len} bytes) as {proto}: {source}")]
pub struct MetaDecodeError {
    /// The key whose value failed to decode.
    pub key: MetaKey,
    /// The protobuf message expected for that key.
    pub proto: &'static str,
    /// Length of the value.
    pub len: usize,
    /// The protobuf error.
    #[source]
    pub source: prost::DecodeError,
}

/// Decodes the value stored under `key` (a tombstone gives [`MetaValue::Tombstone`]).
///
/// # Errors
/// [`MetaDecodeError`] when the value is not the protobuf message of that key.
pub fn decode_meta_value(key: MetaKey, value: &[u8]) -> Result<MetaValue, MetaDecodeError> {
    if is_tombstone(value) {
        return Ok(MetaValue::Tombstone);
    }
    let err = |proto: &'static str| {
        move |source| MetaDecodeError {
            key,
            proto,
            len: value.len(),
            source,
        }
    };
    Ok(match key {
        MetaKey::Database { .. } => MetaValue::Database(
            etcd::DatabaseInfo::decode(value).map_err(err("milvus.proto.etcd.DatabaseInfo"))?,
        ),
        MetaKey::Collection { .. } | MetaKey::LegacyCollection { .. } => MetaValue::Collection(
            etcd::CollectionInfo::decode(value).map_err(err("milvus.proto.etcd.CollectionInfo"))?,
        ),
        MetaKey::Field { .. } => MetaValue::Field(
            schema::FieldSchema::decode(value).map_err(err("milvus.proto.schema.FieldSchema"))?,
        ),
        MetaKey::Partition { .. } => MetaValue::Partition(
            etcd::PartitionInfo::decode(value).map_err(err("milvus.proto.etcd.PartitionInfo"))?,
        ),
        MetaKey::Function { .. } => MetaValue::Function(
            schema::FunctionSchema::decode(value)
                .map_err(err("milvus.proto.schema.FunctionSchema"))?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "by-dev/meta";

    #[test]
    fn tombstone() {
        assert!(is_tombstone(&[0xE2, 0x9B, 0xBC]));
        assert!(is_tombstone("⛼".as_bytes()));
        assert!(!is_tombstone(&[0xE2, 0x9B]));
        assert!(!is_tombstone(b""));
        assert_eq!(
            decode_meta_value(MetaKey::Database { db_id: 1 }, &TOMBSTONE).unwrap(),
            MetaValue::Tombstone
        );
    }

    #[test]
    fn tso() {
        assert_eq!(tso_key("by-dev/"), "by-dev/kv/gid/timestamp");
        assert_eq!(decode_tso_nanos(&[0, 0, 0, 0, 0, 0, 1, 2]), Some(258));
        assert_eq!(decode_tso_nanos(&[1, 2]), None);
    }

    #[test]
    fn parses_keys() {
        let cases = [
            (
                "by-dev/meta/root-coord/database/db-info/1",
                MetaKey::Database { db_id: 1 },
            ),
            (
                "by-dev/meta/root-coord/database/collection-info/1/449534118316441601",
                MetaKey::Collection {
                    db_id: 1,
                    collection_id: 449_534_118_316_441_601,
                },
            ),
            (
                "by-dev/meta/root-coord/collection/5",
                MetaKey::LegacyCollection { collection_id: 5 },
            ),
            (
                "by-dev/meta/root-coord/fields/7/100",
                MetaKey::Field {
                    collection_id: 7,
                    field_id: 100,
                },
            ),
            (
                "by-dev/meta/root-coord/partitions/7/8",
                MetaKey::Partition {
                    collection_id: 7,
                    partition_id: 8,
                },
            ),
            (
                "by-dev/meta/root-coord/functions/7/9",
                MetaKey::Function {
                    collection_id: 7,
                    function_id: 9,
                },
            ),
        ];
        for (key, want) in cases {
            assert_eq!(parse_meta_key(ROOT, key), Some(want), "{key}");
            assert_eq!(parse_meta_key("by-dev/meta/", key), Some(want), "{key}");
            assert_eq!(want.key(ROOT), key);
        }
        assert_eq!(MetaKey::Database { db_id: 1 }.collection_id(), None);
        assert_eq!(
            MetaKey::Field {
                collection_id: 7,
                field_id: 100
            }
            .collection_id(),
            Some(7)
        );
    }

    #[test]
    fn ignores_other_keys() {
        for key in [
            "by-dev/meta/root-coord/database/db-info/x",
            "by-dev/meta/root-coord/database/db-info/1/2",
            "by-dev/meta/root-coord/fields/7",
            "by-dev/meta/root-coord/fields/7/",
            "by-dev/meta/root-coord/aliases/a",
            "by-dev/meta/snapshots/root-coord/fields/7/100_ts449534118316441601",
            "by-dev/meta/root-coord/credential/users/root",
            "by-dev/kv/gid/timestamp",
            "other/meta/root-coord/fields/7/100",
            "by-dev/metax/root-coord/fields/7/100",
        ] {
            assert_eq!(parse_meta_key(ROOT, key), None, "{key}");
        }
    }

    #[test]
    fn parses_alias_keys() {
        // Key and value as read from a live Milvus 2.3.5 after `utility.create_alias`.
        let key = "by-dev/meta/root-coord/database/aliases/1/o15_probe_alias";
        assert_eq!(
            parse_alias_key(ROOT, key),
            Some(AliasKey {
                db_id: 1,
                alias: "o15_probe_alias".into()
            })
        );
        assert_eq!(parse_meta_key(ROOT, key), None);
        for other in [
            "by-dev/meta/root-coord/database/aliases/x/a",
            "by-dev/meta/root-coord/database/aliases/1/",
            "by-dev/meta/root-coord/database/aliases/1",
            "by-dev/meta/root-coord/aliases/a",
            "by-dev/meta/root-coord/database/db-info/1",
        ] {
            assert_eq!(parse_alias_key(ROOT, other), None, "{other}");
        }
        let value = base64_decode("Cg9vMTVfcHJvYmVfYWxpYXMQ646J5O/1tsQGGISA8K35hrfEBigB");
        let info = decode_alias_value(&value).unwrap().unwrap();
        assert_eq!(info.alias_name, "o15_probe_alias");
        assert_eq!(info.collection_id, 470_867_705_667_405_675);
        assert_eq!(info.db_id, 1);
        assert!(info.created_time > 0);
        assert_eq!(decode_alias_value(&TOMBSTONE).unwrap(), None);
        assert!(decode_alias_value(&[0x0a, 0xff]).is_err());
    }

    fn base64_decode(s: &str) -> Vec<u8> {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.decode(s).unwrap()
    }

    #[test]
    fn prefixes() {
        assert_eq!(meta_root("by-dev/", "/meta"), "by-dev/meta");
        assert_eq!(
            database_prefix(ROOT),
            "by-dev/meta/root-coord/database/db-info/"
        );
        assert_eq!(
            collection_prefix(ROOT),
            "by-dev/meta/root-coord/database/collection-info/"
        );
        assert_eq!(
            database_collections_prefix(ROOT, 1),
            "by-dev/meta/root-coord/database/collection-info/1/"
        );
        assert_eq!(partition_prefix(ROOT), "by-dev/meta/root-coord/partitions/");
        assert_eq!(
            collection_partitions_prefix(ROOT, 7),
            "by-dev/meta/root-coord/partitions/7/"
        );
        assert_eq!(
            collection_fields_prefix(ROOT, 7),
            "by-dev/meta/root-coord/fields/7/"
        );
        assert_eq!(
            collection_functions_prefix(ROOT, 7),
            "by-dev/meta/root-coord/functions/7/"
        );
        let key = MetaKey::Partition {
            collection_id: 7,
            partition_id: 8,
        }
        .key(ROOT);
        assert!(key.starts_with(&collection_partitions_prefix(ROOT, 7)));
    }

    #[test]
    fn decodes_values() {
        let db = etcd::DatabaseInfo {
            name: "db1".into(),
            id: 3,
            state: etcd::DatabaseState::DatabaseCreated as i32,
            ..Default::default()
        };
        let got = decode_meta_value(MetaKey::Database { db_id: 3 }, &db.encode_to_vec()).unwrap();
        assert_eq!(got, MetaValue::Database(db));

        let field = schema::FieldSchema {
            field_id: 100,
            name: "pk".into(),
            is_primary_key: true,
            data_type: schema::DataType::Int64 as i32,
            ..Default::default()
        };
        let key = MetaKey::Field {
            collection_id: 7,
            field_id: 100,
        };
        let got = decode_meta_value(key, &field.encode_to_vec()).unwrap();
        assert_eq!(got, MetaValue::Field(field));

        let err = decode_meta_value(key, &[0x0a, 0xff]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("FieldSchema") && text.contains("2 bytes"),
            "{text}"
        );
    }
}
