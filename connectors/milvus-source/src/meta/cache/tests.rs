use super::*;
use cdc_protocol::common::{KeyDataPair, KeyValuePair};
use cdc_protocol::etcd::DatabaseInfo;
use cdc_protocol::schema::{CollectionSchema, DataType};

fn field(id: i64, name: &str, dt: DataType) -> FieldSchema {
    FieldSchema {
        field_id: id,
        name: name.into(),
        data_type: dt as i32,
        is_dynamic: name == "$meta",
        ..Default::default()
    }
}

fn coll(id: i64, name: &str, state: CollectionState, create_time: u64) -> CollectionInfo {
    CollectionInfo {
        id,
        schema: Some(CollectionSchema {
            name: name.into(),
            ..Default::default()
        }),
        create_time,
        virtual_channel_names: vec![format!("by-dev-rootcoord-dml_0_{id}v0")],
        physical_channel_names: vec!["by-dev-rootcoord-dml_0".into()],
        shards_num: 1,
        state: state as i32,
        start_positions: vec![KeyDataPair {
            key: "by-dev-rootcoord-dml_0".into(),
            data: Bytes::from_static(&[3, 0, 0, 0, 0, 0, 0, 0]),
        }],
        db_id: 1,
        ..Default::default()
    }
}

fn part(id: i64, coll: i64, name: &str, ts: u64, state: PartitionState) -> PartitionInfo {
    PartitionInfo {
        partition_id: id,
        partition_name: name.into(),
        partition_created_timestamp: ts,
        collection_id: coll,
        state: state as i32,
    }
}

fn cache_with_collection() -> MetaCache {
    let mut c = MetaCache::default();
    c.apply(
        MetaKey::Database { db_id: 1 },
        MetaValue::Database(DatabaseInfo {
            name: "default".into(),
            id: 1,
            state: DatabaseState::DatabaseCreated as i32,
            ..Default::default()
        }),
    );
    c.apply(
        MetaKey::Database { db_id: 2 },
        MetaValue::Database(DatabaseInfo {
            name: "db2".into(),
            id: 2,
            state: DatabaseState::DatabaseCreated as i32,
            ..Default::default()
        }),
    );
    let change = c.apply(
        MetaKey::Collection {
            db_id: 2,
            collection_id: 10,
        },
        MetaValue::Collection(coll(10, "c", CollectionState::CollectionCreated, 100)),
    );
    assert_eq!(
        change,
        Some(MetaChange::Collection {
            id: 10,
            pchannels: vec!["by-dev-rootcoord-dml_0".into()],
            start_positions: vec![(
                "by-dev-rootcoord-dml_0".into(),
                Bytes::from_static(&[3, 0, 0, 0, 0, 0, 0, 0])
            )],
            live: true,
        })
    );
    for f in [
        field(0, "RowID", DataType::Int64),
        field(1, "Timestamp", DataType::Int64),
        field(101, "vec", DataType::FloatVector),
        field(100, "pk", DataType::Int64),
        field(102, "$meta", DataType::Json),
    ] {
        c.apply(
            MetaKey::Field {
                collection_id: 10,
                field_id: f.field_id,
            },
            MetaValue::Field(f),
        );
    }
    c
}

#[test]
fn names_and_definition() {
    let mut c = cache_with_collection();
    assert_eq!(c.collection_names(10), Some(("db2".into(), "c".into())));
    assert_eq!(c.find_collection("db2", "c"), Some(10));
    assert_eq!(c.find_collection("default", "c"), None);
    assert!(c.database_exists("db2"));
    let def = c.collection_def(10).unwrap();
    let names: Vec<_> = def.schema.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        ["pk", "vec"],
        "system fields and $meta removed, sorted by id"
    );
    assert!(def.schema.enable_dynamic_field);
    assert_eq!(def.shards_num, 1);
    assert_eq!(def.physical_channels, ["by-dev-rootcoord-dml_0"]);
    // Cached until the metadata changes.
    assert!(Arc::ptr_eq(&def, &c.collection_def(10).unwrap()));
    c.apply(
        MetaKey::Field {
            collection_id: 10,
            field_id: 103,
        },
        MetaValue::Field(field(103, "extra", DataType::Int32)),
    );
    assert_eq!(c.collection_def(10).unwrap().schema.fields.len(), 3);
}

#[test]
fn partitions_created_once_and_default_skipped() {
    let mut c = cache_with_collection();
    let key = MetaKey::Partition {
        collection_id: 10,
        partition_id: 20,
    };
    assert_eq!(
        c.apply(
            key,
            MetaValue::Partition(part(20, 10, "p1", 200, PartitionState::PartitionCreating))
        ),
        None
    );
    let change = c.apply(
        key,
        MetaValue::Partition(part(20, 10, "p1", 200, PartitionState::PartitionCreated)),
    );
    assert!(matches!(
        change,
        Some(MetaChange::PartitionCreated {
            partition_id: 20,
            ts: 200,
            ..
        })
    ));
    assert_eq!(
        c.apply(
            key,
            MetaValue::Partition(part(20, 10, "p1", 200, PartitionState::PartitionCreated))
        ),
        None,
        "the same state again is not a new partition"
    );
    c.apply(
        MetaKey::Partition {
            collection_id: 10,
            partition_id: 21,
        },
        MetaValue::Partition(part(
            21,
            10,
            "_default",
            100,
            PartitionState::PartitionCreated,
        )),
    );
    assert_eq!(c.partition_name(20), Some("p1"));
    let user = c.user_partitions();
    assert_eq!(user.len(), 1, "{user:?}");
    c.apply(key, MetaValue::Tombstone);
    assert!(c.user_partitions().is_empty());
    assert_eq!(
        c.partition_name(20),
        Some("p1"),
        "tombstoned partitions keep their name"
    );
}

#[test]
fn tombstones_keep_names_and_end_liveness() {
    let mut c = cache_with_collection();
    assert!(c.live_pchannels().contains("by-dev-rootcoord-dml_0"));
    let change = c.apply(
        MetaKey::Collection {
            db_id: 2,
            collection_id: 10,
        },
        MetaValue::Tombstone,
    );
    assert!(matches!(
        change,
        Some(MetaChange::Collection { live: false, .. })
    ));
    assert!(c.live_pchannels().is_empty());
    assert_eq!(c.collection_names(10), Some(("db2".into(), "c".into())));
    assert!(c.all_pchannels().contains("by-dev-rootcoord-dml_0"));
}

#[test]
fn dropping_collections_are_not_live_and_newest_wins_by_name() {
    let mut c = cache_with_collection();
    c.apply(
        MetaKey::Collection {
            db_id: 2,
            collection_id: 10,
        },
        MetaValue::Collection(coll(10, "c", CollectionState::CollectionDropping, 100)),
    );
    assert!(c.live_pchannels().is_empty());
    c.apply(
        MetaKey::Collection {
            db_id: 2,
            collection_id: 11,
        },
        MetaValue::Collection(coll(11, "c", CollectionState::CollectionCreated, 300)),
    );
    assert_eq!(c.find_collection("db2", "c"), Some(11));
    assert_eq!(c.database_name(0), "default");
    assert_eq!(c.database_name(99), "default");
}

#[test]
fn property_changes_of_live_collections_are_kept_for_the_watch() {
    let mut c = MetaCache::default();
    let key = MetaKey::Collection {
        db_id: 1,
        collection_id: 7,
    };
    let put = |c: &mut MetaCache, state, ttl: Option<&str>| {
        let mut info = coll(7, "c", state, 100);
        info.properties = ttl
            .map(|t| KeyValuePair {
                key: "collection.ttl.seconds".into(),
                value: t.into(),
            })
            .into_iter()
            .collect();
        c.apply(key, MetaValue::Collection(info));
    };
    put(&mut c, CollectionState::CollectionCreating, None);
    put(&mut c, CollectionState::CollectionCreated, None);
    assert!(
        c.take_props().is_empty(),
        "creation is not a property change"
    );
    put(&mut c, CollectionState::CollectionCreated, Some("3600"));
    let p = c.take_props();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].properties[0].value, "3600");
    put(&mut c, CollectionState::CollectionCreated, Some("3600"));
    assert!(c.take_props().is_empty(), "the same value again");
}
