use super::*;
use cdc_protocol::etcd::{CollectionInfo, CollectionState, PartitionInfo};
use cdc_protocol::etcd_meta::{MetaKey, MetaValue};
use cdc_protocol::schema::CollectionSchema;
use prost::Message as _;

const ROOT: &str = "by-dev/meta";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Values read from a live Milvus 2.3.5 (`etcdctl get --prefix by-dev/meta/querycoord`).
#[test]
fn decodes_real_milvus_2_3_5_values() {
    // load_partitions: replica 1, Loaded, one field index, load_type LoadPartition.
    let c = CollectionLoadInfo::decode(&*hex(
        "08b58c909ee5a895c406180120022a0c087010eca79c9ee5a895c4062a0c086810f1a79c9ee5a895c4063001",
    ))
    .unwrap();
    assert_eq!(c.collection_id, 470719921601644085);
    assert_eq!(c.replica_number, 1);
    assert_eq!(c.status, 2);
    assert_eq!(c.load_type, load_type::LOAD_PARTITION);
    assert_eq!(c.field_index_id.len(), 2);
    // load_collection.
    let c = CollectionLoadInfo::decode(&*hex(
        "08cec0d8cda49f94c406180120022a0c086510d3c0d8cda49f94c4063002",
    ))
    .unwrap();
    assert_eq!(c.load_type, load_type::LOAD_COLLECTION);
    let p = PartitionLoadInfo::decode(&*hex(
        "08b58c909ee5a895c40610d48c909ee5a895c406180120022a0c087010eca79c9ee5a895c4062a0c086810f1a79c9ee5a895c406",
    ))
    .unwrap();
    assert_eq!(p.collection_id, 470719921601644085);
    assert_eq!(p.partition_id, 470719921601644116);
    assert_eq!(p.replica_number, 1);
    assert_eq!(p.status, 2);
}

#[test]
fn keys() {
    assert_eq!(
        parse_load_key(ROOT, "by-dev/meta/querycoord-collection-loadinfo/7"),
        Some(LoadKey::Collection { collection_id: 7 })
    );
    assert_eq!(
        parse_load_key(ROOT, "by-dev/meta/querycoord-partition-loadinfo/7/8"),
        Some(LoadKey::Partition {
            collection_id: 7,
            partition_id: 8
        })
    );
    assert_eq!(
        parse_load_key(ROOT, "by-dev/meta/querycoord-replica/7/8"),
        None
    );
    assert_eq!(
        parse_load_key(ROOT, "by-dev/meta/root-coord/partitions/7/8"),
        None
    );
    assert_eq!(
        parse_load_key(ROOT, "other/meta/querycoord-collection-loadinfo/7"),
        None
    );
    let (start, end) = key_range(ROOT);
    for k in [
        "by-dev/meta/querycoord-collection-loadinfo/7",
        "by-dev/meta/querycoord-partition-loadinfo/7/8",
        "by-dev/meta/root-coord/partitions/7/8",
    ] {
        assert!(start.as_str() <= k && k < end.as_str(), "{k}");
    }
    for k in [
        "by-dev/meta/segment-index/1",
        "by-dev/meta/queryCoord-ResourceGroup/x",
    ] {
        assert!(!(start.as_str() <= k && k < end.as_str()), "{k}");
    }
}

fn cache() -> MetaCache {
    let mut c = MetaCache::default();
    c.apply(
        MetaKey::Collection {
            db_id: 1,
            collection_id: 10,
        },
        MetaValue::Collection(CollectionInfo {
            id: 10,
            schema: Some(CollectionSchema {
                name: "c".into(),
                ..Default::default()
            }),
            create_time: 100,
            state: CollectionState::CollectionCreated as i32,
            ..Default::default()
        }),
    );
    for (id, name) in [(11, "_default"), (12, "p1"), (13, "p2")] {
        c.apply(
            MetaKey::Partition {
                collection_id: 10,
                partition_id: id,
            },
            MetaValue::Partition(PartitionInfo {
                partition_id: id,
                partition_name: name.into(),
                partition_created_timestamp: 100 + id as u64,
                collection_id: 10,
                state: PartitionState::PartitionCreated as i32,
            }),
        );
    }
    c
}

fn coll_put(id: i64, lt: i32) -> LoadEvent {
    LoadEvent {
        key: LoadKey::Collection { collection_id: id },
        value: Some(
            CollectionLoadInfo {
                collection_id: id,
                replica_number: 1,
                status: 1,
                load_type: lt,
                ..Default::default()
            }
            .encode_to_vec(),
        ),
    }
}

fn coll_del(id: i64) -> LoadEvent {
    LoadEvent {
        key: LoadKey::Collection { collection_id: id },
        value: None,
    }
}

fn part_put(c: i64, p: i64, status: i32) -> LoadEvent {
    LoadEvent {
        key: LoadKey::Partition {
            collection_id: c,
            partition_id: p,
        },
        value: Some(
            PartitionLoadInfo {
                collection_id: c,
                partition_id: p,
                replica_number: 1,
                status,
            }
            .encode_to_vec(),
        ),
    }
}

fn part_del(c: i64, p: i64) -> LoadEvent {
    LoadEvent {
        key: LoadKey::Partition {
            collection_id: c,
            partition_id: p,
        },
        value: None,
    }
}

fn loaded(names: &[(i64, &str)]) -> LoadChange {
    LoadChange::Loaded {
        collection_id: 10,
        partitions: names.iter().map(|(i, n)| (*i, n.to_string())).collect(),
        replica_number: 1,
    }
}

fn released(names: &[(i64, &str)], whole: bool) -> LoadChange {
    LoadChange::Released {
        collection_id: 10,
        partitions: names.iter().map(|(i, n)| (*i, n.to_string())).collect(),
        whole,
    }
}

#[test]
fn load_then_release_partitions() {
    let cache = cache();
    let mut s = LoadState::default();
    // One transaction, partition keys first: still one Loaded with both partitions.
    let (out, errs) = s.apply_batch(
        vec![
            part_put(10, 13, 1),
            part_put(10, 12, 1),
            coll_put(10, load_type::LOAD_PARTITION),
        ],
        &cache,
    );
    assert!(errs.is_empty());
    assert_eq!(out, vec![loaded(&[(12, "p1"), (13, "p2")])]);
    // Status updates (Loading → Loaded) are not loads.
    let (out, _) = s.apply_batch(
        vec![
            part_put(10, 12, 2),
            part_put(10, 13, 2),
            coll_put(10, load_type::LOAD_PARTITION),
        ],
        &cache,
    );
    assert!(out.is_empty(), "{out:?}");
    // Partial release.
    let (out, _) = s.apply_batch(vec![part_del(10, 13)], &cache);
    assert_eq!(out, vec![released(&[(13, "p2")], false)]);
    // Loading more partitions later.
    let (out, _) = s.apply_batch(vec![part_put(10, 13, 1)], &cache);
    assert_eq!(out, vec![loaded(&[(13, "p2")])]);
    // Releasing the last ones: QueryCoord removes the collection key, then the partitions.
    let (out, _) = s.apply_batch(vec![coll_del(10)], &cache);
    assert_eq!(out, vec![released(&[(12, "p1"), (13, "p2")], true)]);
    let (out, _) = s.apply_batch(vec![part_del(10, 12), part_del(10, 13)], &cache);
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn load_collection_type_is_left_to_the_message_queue() {
    let cache = cache();
    let mut s = LoadState::default();
    let (out, _) = s.apply_batch(
        vec![
            coll_put(10, load_type::LOAD_COLLECTION),
            part_put(10, 11, 1),
            part_put(10, 12, 1),
        ],
        &cache,
    );
    assert!(out.is_empty(), "{out:?}");
    // A partition created later is loaded automatically; its release too.
    let (out, _) = s.apply_batch(vec![part_put(10, 13, 1)], &cache);
    assert!(out.is_empty(), "{out:?}");
    let (out, _) = s.apply_batch(vec![coll_del(10), part_del(10, 11)], &cache);
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn the_initial_scan_emits_nothing_and_is_the_base_of_later_changes() {
    let cache = cache();
    let mut s = LoadState::default();
    s.apply_scan(
        LoadKey::Collection { collection_id: 10 },
        &coll_put(10, load_type::LOAD_PARTITION).value.unwrap(),
    )
    .unwrap();
    s.apply_scan(
        LoadKey::Partition {
            collection_id: 10,
            partition_id: 12,
        },
        &part_put(10, 12, 2).value.unwrap(),
    )
    .unwrap();
    let (out, _) = s.apply_batch(vec![part_put(10, 12, 2), part_put(10, 13, 1)], &cache);
    assert_eq!(out, vec![loaded(&[(13, "p2")])]);
    let (out, _) = s.apply_batch(vec![part_del(10, 12)], &cache);
    assert_eq!(out, vec![released(&[(12, "p1")], false)]);
}

#[test]
fn nothing_for_dropped_collections_or_partitions() {
    let mut cache = cache();
    let mut s = LoadState::default();
    s.apply_batch(
        vec![
            coll_put(10, load_type::LOAD_PARTITION),
            part_put(10, 12, 1),
            part_put(10, 13, 1),
        ],
        &cache,
    );
    // p2 being dropped.
    cache.apply(
        MetaKey::Partition {
            collection_id: 10,
            partition_id: 13,
        },
        MetaValue::Partition(PartitionInfo {
            partition_id: 13,
            partition_name: "p2".into(),
            partition_created_timestamp: 113,
            collection_id: 10,
            state: PartitionState::PartitionDropping as i32,
        }),
    );
    let (out, _) = s.apply_batch(vec![part_del(10, 13)], &cache);
    assert!(out.is_empty(), "{out:?}");
    // The collection being dropped (DropCollection releases it).
    cache.apply(
        MetaKey::Collection {
            db_id: 1,
            collection_id: 10,
        },
        MetaValue::Tombstone,
    );
    let (out, _) = s.apply_batch(vec![coll_del(10), part_del(10, 12)], &cache);
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn undecodable_values_are_reported_and_skipped() {
    let cache = cache();
    let mut s = LoadState::default();
    let bad = LoadEvent {
        key: LoadKey::Collection { collection_id: 10 },
        value: Some(vec![0xff, 0xff]),
    };
    let (out, errs) = s.apply_batch(vec![bad, part_put(10, 12, 1)], &cache);
    assert!(out.is_empty());
    assert_eq!(errs.len(), 1);
}

#[test]
fn held_changes_merge_per_collection() {
    use std::time::{Duration, Instant};
    let t = Instant::now();
    let mut h = HeldLoads::default();
    assert!(h.is_empty());
    assert_eq!(
        h.due(Duration::from_millis(5), Duration::from_millis(50)),
        None
    );
    h.add(loaded(&[(12, "p1")]), t, 1);
    h.add(loaded(&[(13, "p2")]), t + Duration::from_millis(10), 2);
    assert_eq!(
        h.due(Duration::from_millis(5), Duration::from_millis(50)),
        Some(t + Duration::from_millis(15))
    );
    assert_eq!(
        h.due(Duration::from_millis(100), Duration::from_millis(50)),
        Some(t + Duration::from_millis(50))
    );
    assert_eq!(h.take(), vec![(loaded(&[(12, "p1"), (13, "p2")]), 1)]);
    assert!(h.is_empty());
    // Kinds alternate: the sequence of calls is kept.
    h.add(loaded(&[(12, "p1")]), t, 1);
    h.add(loaded(&[(13, "p2")]), t, 4);
    h.add(released(&[(13, "p2")], false), t, 5);
    h.add(released(&[(12, "p1")], true), t, 6);
    assert!(h.has_whole_release());
    assert_eq!(
        h.take(),
        vec![
            (loaded(&[(12, "p1"), (13, "p2")]), 1),
            (released(&[(13, "p2")], false), 5),
            (released(&[(12, "p1")], true), 6),
        ]
    );
}

/// The replica number comes from `CollectionLoadInfo.replica_number`: the partition's is
/// deprecated in the newest `internal/proto/query_coord.proto` / `pkg/proto/query_coord.proto`
/// and may be unset (0) or stale.
#[test]
fn replica_number_comes_from_the_collection_load_info() {
    let cache = cache();
    let coll = |replicas: i32| LoadEvent {
        key: LoadKey::Collection { collection_id: 10 },
        value: Some(
            CollectionLoadInfo {
                collection_id: 10,
                replica_number: replicas,
                status: 1,
                load_type: load_type::LOAD_PARTITION,
                ..Default::default()
            }
            .encode_to_vec(),
        ),
    };
    let part = |p: i64, replicas: i32| LoadEvent {
        key: LoadKey::Partition {
            collection_id: 10,
            partition_id: p,
        },
        value: Some(
            PartitionLoadInfo {
                collection_id: 10,
                partition_id: p,
                replica_number: replicas,
                status: 1,
            }
            .encode_to_vec(),
        ),
    };
    let replicas_of = |out: &[LoadChange]| match out {
        [LoadChange::Loaded { replica_number, .. }] => *replica_number,
        other => panic!("{other:?}"),
    };
    // Partition key without a replica number (deprecated field unset).
    let mut s = LoadState::default();
    let (out, _) = s.apply_batch(vec![coll(2), part(12, 0)], &cache);
    assert_eq!(replicas_of(&out), 2);
    // A stale partition value does not override the collection's.
    let (out, _) = s.apply_batch(vec![part(13, 1)], &cache);
    assert_eq!(replicas_of(&out), 2);
    // Partition keys seen before their collection key (orphans).
    let mut s = LoadState::default();
    let (out, _) = s.apply_batch(vec![part(12, 0)], &cache);
    assert!(out.is_empty(), "{out:?}");
    let (out, _) = s.apply_batch(vec![coll(3)], &cache);
    assert_eq!(replicas_of(&out), 3);
    // Only when the collection's is unset, the partition's is used.
    let mut s = LoadState::default();
    let (out, _) = s.apply_batch(vec![coll(0), part(12, 2)], &cache);
    assert_eq!(replicas_of(&out), 2);
}
