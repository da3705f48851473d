//! Decodes, orders and converts the messages captured from a real Milvus 2.3.5 running the
//! workload (`crates/protocol/tests/fixtures/milvus-2.3.5`), and checks that the events are the
//! workload's operations, in order, each collection DDL exactly once.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use cdc_protocol::etcd_meta;
use serde_json::Value;

use super::*;
use crate::decode::{decode, Decoded, RawMessage};
use crate::merger::{ChannelKind, Merger};
use crate::meta::watcher::change_input;
use crate::meta::MetaCache;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../crates/protocol/tests/fixtures/milvus-2.3.5")
}

fn lines(name: &str) -> Vec<Value> {
    let path = fixture_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("fixture {} is missing: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn b64(v: &Value) -> Bytes {
    Bytes::from(STANDARD.decode(v.as_str().unwrap()).unwrap())
}

fn load_cache(name: &str) -> MetaCache {
    let mut cache = MetaCache::default();
    apply_file(&mut cache, name);
    cache
}

fn apply_file(cache: &mut MetaCache, name: &str) {
    for l in lines(name) {
        let key = l["key"].as_str().unwrap();
        let Some(k) = etcd_meta::parse_meta_key("by-dev/meta", key) else {
            continue;
        };
        let v = etcd_meta::decode_meta_value(k, &b64(&l["value_b64"])).unwrap();
        cache.apply(k, v);
    }
}

/// The key an event is compared by: operation and object.
pub(crate) fn event_key(e: &ChangeEvent) -> (String, String) {
    let fq = format!("{}.{}", e.database, e.collection);
    let part = |p: &str| {
        if p.starts_with("_default_") {
            "_default".to_string()
        } else {
            p.to_string()
        }
    };
    let obj = match &e.op {
        Op::Insert(b) => format!("{fq} {}", part(&b.partition)),
        Op::Ddl(Ddl::CreateDatabase { .. } | Ddl::DropDatabase) => e.database.clone(),
        Op::Ddl(Ddl::CreatePartition { partition } | Ddl::DropPartition { partition }) => {
            format!("{fq} {partition}")
        }
        Op::Ddl(Ddl::CreateIndex(r)) => format!("{fq} {}", r.index_name),
        Op::Ddl(Ddl::DropIndex(r)) => format!("{fq} {}", r.index_name),
        _ => fq,
    };
    (e.op.kind().to_string(), obj)
}

/// Expected keys from the workload's step lines (load/release of partitions write nothing in
/// Milvus 2.3.5 and are left out).
pub(crate) fn step_keys(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix("[step ") else {
            continue;
        };
        let Some((_, body)) = rest.split_once("] ") else {
            continue;
        };
        let w: Vec<&str> = body.split_whitespace().collect();
        let arg = |p: &str| {
            w.iter()
                .find_map(|x| x.strip_prefix(p))
                .unwrap_or_default()
                .to_string()
        };
        let key = match w[0] {
            "create_database" | "drop_database" => (w[0], w[1].to_string()),
            "create_collection" | "drop_collection" | "flush" | "load_collection"
            | "release_collection" | "delete" | "upsert" => (w[0], w[1].to_string()),
            "create_partition" | "drop_partition" | "drop_index" => {
                (w[0], format!("{} {}", w[1], w[2]))
            }
            "create_index" => (w[0], format!("{} {}", w[1], arg("name="))),
            "insert" => (w[0], format!("{} {}", w[1], arg("partition="))),
            _ => continue,
        };
        out.push((key.0.to_string(), key.1));
    }
    out
}

fn collapse(keys: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for k in keys {
        if out.last() != Some(k) {
            out.push(k.clone());
        }
    }
    out
}

/// The object an operation is about: the database for database DDL, else `db.collection`.
fn object(key: &(String, String)) -> String {
    match key.0.as_str() {
        "create_database" | "drop_database" => key.1.clone(),
        _ => key.1.split(' ').next().unwrap_or_default().to_string(),
    }
}

/// Checks that, per collection, the operations come in the workload's order (Milvus orders
/// operations on different collections by timestamps that need not follow the client's call
/// order: DropCollection is broadcast after the call returns), and that a database is created
/// before and dropped after everything in it.
pub(crate) fn check_order(got: &[(String, String)], want: &[(String, String)]) {
    let mut objects: Vec<String> = want.iter().map(object).collect();
    objects.sort();
    objects.dedup();
    for obj in &objects {
        let of = |keys: &[(String, String)]| {
            collapse(
                &keys
                    .iter()
                    .filter(|k| object(k) == *obj)
                    .cloned()
                    .collect::<Vec<_>>(),
            )
        };
        assert_eq!(of(got), of(want), "operations on {obj}");
    }
    for (i, k) in got.iter().enumerate() {
        let Some(db) =
            k.1.split('.')
                .next()
                .filter(|_| !matches!(k.0.as_str(), "create_database" | "drop_database"))
        else {
            continue;
        };
        let created = got
            .iter()
            .position(|x| x.0 == "create_database" && x.1 == db);
        let dropped = got.iter().position(|x| x.0 == "drop_database" && x.1 == db);
        assert!(
            created.is_none_or(|c| c < i),
            "{k:?} before create_database {db}"
        );
        assert!(
            dropped.is_none_or(|d| d > i),
            "{k:?} after drop_database {db}"
        );
    }
    let total = |keys: &[(String, String)]| {
        objects
            .iter()
            .map(|o| {
                collapse(
                    &keys
                        .iter()
                        .filter(|k| object(k) == *o)
                        .cloned()
                        .collect::<Vec<_>>(),
                )
                .len()
            })
            .sum::<usize>()
    };
    assert_eq!(total(got), total(want));
}

/// Every captured message through decode, the merger and the converter.
fn replay() -> Vec<ChangeEvent> {
    let mut cache = load_cache("etcd-meta.jsonl");
    let t0 = Instant::now();
    let mut merger: Merger<Payload> = Merger::new(Duration::from_secs(3600));
    let meta = merger.add_channel("etcd", ChannelKind::Meta, t0);
    let mut topics: BTreeMap<String, usize> = BTreeMap::new();
    for l in lines("kafka-messages.jsonl") {
        let topic = l["topic"].as_str().unwrap().to_string();
        let kind = if topic.ends_with("replicate-msg") {
            ChannelKind::Replicate
        } else {
            ChannelKind::Dml
        };
        let ch = *topics
            .entry(topic.clone())
            .or_insert_with(|| merger.add_channel(&topic, kind, t0));
        let headers = l["headers"].as_object().cloned().unwrap_or_default();
        let raw = RawMessage {
            offset: l["offset"].as_i64().unwrap().to_be_bytes().to_vec(),
            payload: b64(&l["payload_b64"]),
            properties: headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().unwrap_or_default().as_bytes().to_vec(),
                    )
                })
                .collect(),
        };
        let (decoded, _) = decode(&topic, &raw).unwrap_or_else(|e| panic!("{e}"));
        match decoded {
            Decoded::Change { ts, pair, msg } => merger.push(
                ch,
                raw.offset,
                ts,
                raw.payload.len(),
                pair,
                Payload::Mq(msg),
                t0,
            ),
            Decoded::Tick { ts } => merger.tick(ch, raw.offset, ts, t0),
            Decoded::NotReplicated { .. } | Decoded::Control | Decoded::Replicated => {
                merger.skip(ch, raw.offset, t0)
            }
        }
    }
    // The partitions, as the etcd watch reports them (this capture was taken before the drops).
    for change in cache.user_partitions() {
        if let crate::input::Input::Change {
            offset,
            ts,
            bytes,
            pair,
            payload,
        } = change_input(change)
        {
            merger.push(meta, offset, ts, bytes, pair, payload, t0);
        }
    }
    for &ch in topics.values() {
        merger.set_live(ch, true);
        merger.tick(ch, u64::MAX.to_be_bytes().to_vec(), u64::MAX, t0);
    }
    let req = merger.start_round(t0).unwrap();
    for ch in req.channels {
        merger.probe_ok(ch, req.round);
    }
    // By the time the drops are released, etcd shows the collections dropping.
    apply_file(&mut cache, "etcd-meta-final.jsonl");
    let mut conv = Converter::default();
    let mut out = Vec::new();
    while let Some(group) = merger.pop_releasable() {
        let channel = merger.channel_name(group[0].channel);
        let marks: Vec<_> = group
            .iter()
            .map(|r| (r.channel, r.offset.clone()))
            .collect();
        let mut ctx = Ctx {
            channel,
            cache: &mut cache,
        };
        conv.convert(group, &mut ctx, &mut out).unwrap();
        for (ch, o) in marks {
            merger.delivered(ch, &o);
        }
    }
    out
}

#[test]
fn captured_workload_becomes_its_operations_in_order() {
    let events = replay();
    let got: Vec<_> = events.iter().map(event_key).collect();
    let steps = std::fs::read_to_string(fixture_dir().join("workload-steps.txt")).unwrap();
    let want = step_keys(&steps);
    assert_eq!(want.len(), 74, "{want:?}");
    // 79 steps, minus the drop hook and the 4 load/release_partitions (no message in 2.3.5).
    check_order(&got, &want);
    // DDL exactly once.
    for (k, o) in &got {
        if !matches!(k.as_str(), "insert" | "delete" | "upsert") {
            let n = got.iter().filter(|x| x.0 == *k && x.1 == *o).count();
            let expected = want.iter().filter(|x| x.0 == *k && x.1 == *o).count();
            assert_eq!(n, expected, "{k} {o}");
        }
    }
}

#[test]
fn captured_events_carry_names_definitions_and_data() {
    let events = replay();
    let create = events
        .iter()
        .find(|e| e.collection == "cdc_varchar" && e.op.kind() == "create_collection")
        .unwrap();
    let Op::Ddl(Ddl::CreateCollection(def)) = &create.op else {
        unreachable!()
    };
    let fields: Vec<_> = def.schema.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(fields, ["id", "tag", "bvec"]);
    assert!(def.schema.enable_dynamic_field);
    assert_eq!(def.shards_num, 2);
    assert_eq!(def.consistency_level, 1, "Session");
    let pkey = events
        .iter()
        .find(|e| e.collection == "cdc_pkey" && e.op.kind() == "create_collection")
        .unwrap();
    assert_eq!(pkey.database, "cdc_db1");
    let Op::Ddl(Ddl::CreateCollection(def)) = &pkey.op else {
        unreachable!()
    };
    assert_eq!(def.num_partitions, 4);

    // Every DML event knows its collection's definition and has whole columns.
    for e in &events {
        match &e.op {
            Op::Insert(b) => {
                assert!(e.collection_def.is_some(), "{}", e.collection);
                assert!(b.num_rows > 0 && !b.columns.is_empty());
                for c in &b.columns {
                    assert_eq!(cdc_protocol::field_data::num_rows(c).unwrap(), b.num_rows);
                }
            }
            Op::Upsert { delete, insert } => {
                assert_eq!(delete.num_rows, insert.num_rows, "{}", e.collection);
                assert_eq!(delete.partition.as_deref(), Some("_default"));
            }
            Op::Delete(d) => assert!(d.num_rows > 0),
            _ => {}
        }
    }
    // A plain delete applies to every partition; one with a partition names it.
    let deletes: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.op {
            Op::Delete(d) => Some((e.collection.as_str(), d.partition.clone())),
            _ => None,
        })
        .collect();
    assert!(deletes.contains(&("cdc_int64", None)));
    assert!(deletes.contains(&("cdc_items", Some("pa".to_string()))));
    // Offsets and timestamps are those of the source.
    let mut last = 0;
    for e in &events {
        assert!(e.position.ts >= last, "timestamp order");
        last = e.position.ts;
    }
}

/// The DropPartition that RootCoord's garbage collector broadcasts names neither database nor
/// collection (Milvus 2.3.5 `internal/rootcoord/garbage_collector.go`, `notifyPartitionGc`:
/// only `PartitionName`, `CollectionID`, `PartitionID` are set). It is attributed from etcd when
/// the cache knows the collection, and reported unattributed otherwise, never named "".
#[test]
fn a_gc_drop_partition_is_named_from_etcd_or_reported_unattributed() {
    use cdc_protocol::common::{MsgBase, MsgType};
    use cdc_protocol::etcd::CollectionInfo;
    use cdc_protocol::etcd_meta::{MetaKey, MetaValue};
    use cdc_protocol::msg::DropPartitionRequest;
    use cdc_protocol::schema::CollectionSchema;

    let gc_drop = |collection_id: i64| {
        Payload::Mq(MqMessage::DropPartition(DropPartitionRequest {
            base: Some(MsgBase {
                msg_type: MsgType::DropPartition as i32,
                timestamp: 7,
                ..Default::default()
            }),
            partition_name: "p1".into(),
            collection_id,
            partition_id: 900,
            ..Default::default()
        }))
    };
    let mut cache = MetaCache::default();
    cache.apply(
        MetaKey::Collection {
            db_id: 1,
            collection_id: 42,
        },
        MetaValue::Collection(CollectionInfo {
            id: 42,
            schema: Some(CollectionSchema {
                name: "hx_known".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    );
    assert_eq!(unattributed(&gc_drop(42), &cache), None);
    assert_eq!(unattributed(&gc_drop(43), &cache), Some(43));

    // Named from the cache when it is converted.
    let mut conv = Converter::default();
    let mut out = Vec::new();
    let mut ctx = Ctx {
        channel: Arc::from("by-dev-rootcoord-dml_0"),
        cache: &mut cache,
    };
    let group = vec![Released {
        channel: 0,
        offset: vec![0; 8],
        ts: 7,
        bytes: 0,
        payload: gc_drop(42),
    }];
    conv.convert(group, &mut ctx, &mut out).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].collection, "hx_known");
    assert_eq!(out[0].database, "default");
}

mod partition_loads {
    //! LoadPartitions / ReleasePartitions reported both as replicate-channel requests (Milvus
    //! 2.4+ `internal/proxy/util.go: SendReplicateMessagePack`, cases
    //! `*milvuspb.LoadPartitionsRequest` / `*milvuspb.ReleasePartitionsRequest`) and from
    //! QueryCoord's etcd keys.
    use super::*;
    use cdc_protocol::common::{MsgBase, MsgType};
    use cdc_protocol::etcd::{CollectionInfo, CollectionState, PartitionInfo, PartitionState};
    use cdc_protocol::etcd_meta::{MetaKey, MetaValue};
    use cdc_protocol::milvus::{LoadPartitionsRequest, ReleasePartitionsRequest};
    use cdc_protocol::schema::CollectionSchema;

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
        for (id, name) in [(12, "p1"), (13, "p2")] {
            c.apply(
                MetaKey::Partition {
                    collection_id: 10,
                    partition_id: id,
                },
                MetaValue::Partition(PartitionInfo {
                    partition_id: id,
                    partition_name: name.into(),
                    partition_created_timestamp: 100,
                    collection_id: 10,
                    state: PartitionState::PartitionCreated as i32,
                }),
            );
        }
        c
    }

    /// Hybrid timestamp of `s` seconds (plus a logical counter).
    fn at(s: u64) -> u64 {
        cdc_protocol::ts::compose(1_700_000_000_000 + s * 1000, 0)
    }

    fn base(t: MsgType, ts: u64) -> Option<MsgBase> {
        Some(MsgBase {
            msg_type: t as i32,
            timestamp: ts,
            ..Default::default()
        })
    }

    fn names(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    fn load_req(ts: u64, p: &[&str]) -> Payload {
        Payload::Mq(MqMessage::LoadPartitions(LoadPartitionsRequest {
            base: base(MsgType::LoadPartitions, ts),
            collection_name: "c".into(),
            partition_names: names(p),
            replica_number: 1,
            ..Default::default()
        }))
    }

    fn release_req(ts: u64, p: &[&str]) -> Payload {
        Payload::Mq(MqMessage::ReleasePartitions(ReleasePartitionsRequest {
            base: base(MsgType::ReleasePartitions, ts),
            collection_name: "c".into(),
            partition_names: names(p),
            ..Default::default()
        }))
    }

    fn load_etcd(p: &[&str]) -> Payload {
        Payload::PartitionsLoaded {
            collection_id: 10,
            partitions: names(p),
            replica_number: 1,
        }
    }

    fn release_etcd(p: &[&str], whole: bool) -> Payload {
        Payload::PartitionsReleased {
            collection_id: 10,
            partitions: names(p),
            whole,
        }
    }

    /// Converts changes in the given (timestamp) order; returns what was emitted.
    fn run(changes: Vec<(u64, Payload)>) -> Vec<(String, Vec<String>)> {
        let mut cache = cache();
        let mut conv = Converter::default();
        let mut out = Vec::new();
        for (i, (ts, payload)) in changes.into_iter().enumerate() {
            let mut ctx = Ctx {
                channel: Arc::from("ch"),
                cache: &mut cache,
            };
            let group = vec![Released {
                channel: 0,
                offset: (i as i64).to_be_bytes().to_vec(),
                ts,
                bytes: 0,
                payload,
            }];
            conv.convert(group, &mut ctx, &mut out).unwrap();
        }
        out.into_iter()
            .map(|e| match e.op {
                Op::Ddl(Ddl::LoadPartitions(r)) => ("load".to_string(), r.partition_names),
                Op::Ddl(Ddl::ReleasePartitions(r)) => ("release".to_string(), r.partition_names),
                other => (other.kind().to_string(), Vec::new()),
            })
            .collect()
    }

    fn ev(kind: &str, p: &[&str]) -> (String, Vec<String>) {
        (kind.to_string(), names(p))
    }

    #[test]
    fn the_same_load_reported_both_ways_is_emitted_once_whichever_comes_first() {
        // Request first (its timestamp precedes QueryCoord's keys), then etcd.
        let got = run(vec![
            (at(1), load_req(at(1), &["p1", "p2"])),
            (at(2), load_etcd(&["p1", "p2"])),
        ]);
        assert_eq!(got, vec![ev("load", &["p1", "p2"])]);
        // etcd first (the request was read late), then the request.
        let got = run(vec![
            (at(2), load_etcd(&["p1", "p2"])),
            (at(1), load_req(at(1), &["p1", "p2"])),
        ]);
        assert_eq!(got, vec![ev("load", &["p1", "p2"])]);
        // Releases too.
        let got = run(vec![
            (at(1), release_req(at(1), &["p2"])),
            (at(2), release_etcd(&["p2"], false)),
        ]);
        assert_eq!(got, vec![ev("release", &["p2"])]);
    }

    #[test]
    fn a_load_then_a_release_keep_their_order_and_are_each_emitted_once() {
        let got = run(vec![
            (at(1), load_req(at(1), &["p1"])),
            (at(2), load_etcd(&["p1"])),
            (at(3), release_req(at(3), &["p1"])),
            (at(4), release_etcd(&["p1"], true)),
            (at(5), load_req(at(5), &["p1"])),
            (at(6), load_etcd(&["p1"])),
        ]);
        assert_eq!(
            got,
            vec![
                ev("load", &["p1"]),
                ev("release", &["p1"]),
                ev("load", &["p1"])
            ]
        );
    }

    #[test]
    fn one_way_alone_loses_nothing() {
        // Milvus 2.3: etcd only, the same partitions loaded and released repeatedly.
        let got = run(vec![
            (at(1), load_etcd(&["p1"])),
            (at(2), release_etcd(&["p1"], false)),
            (at(3), load_etcd(&["p1"])),
        ]);
        assert_eq!(
            got,
            vec![
                ev("load", &["p1"]),
                ev("release", &["p1"]),
                ev("load", &["p1"])
            ]
        );
        // Requests only (partitions already loaded: QueryCoord writes no new key).
        let got = run(vec![
            (at(1), load_req(at(1), &["p1"])),
            (at(2), load_req(at(2), &["p1"])),
        ]);
        assert_eq!(got, vec![ev("load", &["p1"]), ev("load", &["p1"])]);
    }

    #[test]
    fn partitions_the_other_way_did_not_report_are_still_emitted() {
        // Two requests merged into one etcd change (HeldLoads), plus a partition no request
        // named: only that one is new.
        let got = run(vec![
            (at(1), load_req(at(1), &["p1"])),
            (at(1) + 1, load_req(at(1) + 1, &["p2"])),
            (at(2), load_etcd(&["p1", "p2", "p3"])),
        ]);
        assert_eq!(
            got,
            vec![
                ev("load", &["p1"]),
                ev("load", &["p2"]),
                ev("load", &["p3"])
            ]
        );
    }

    #[test]
    fn a_late_report_outside_the_window_is_not_taken_for_a_duplicate() {
        let late = at(1) + cdc_protocol::ts::compose(CONFIRM_WINDOW_MS + 1, 0);
        let got = run(vec![
            (at(1), load_req(at(1), &["p1"])),
            (late, load_etcd(&["p1"])),
        ]);
        assert_eq!(got, vec![ev("load", &["p1"]), ev("load", &["p1"])]);
    }
}
