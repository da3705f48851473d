//! Inserts, deletes and upserts through the sink in api mode against the real target Milvus
//! 2.3.5 and milvus-lite: column types, merging, replays (idempotence), partition keys,
//! dynamic fields, and a rejected write.

#![allow(clippy::unwrap_used)]

mod common;

use cdc_connector_milvus_sink::{MilvusSinkConfig, WriteMode};
use cdc_engine::{Ddl, ErrorKind};
use cdc_protocol::schema::{CollectionSchema, DataType};
use common::*;

/// Create, index and load a collection through the sink, then run DML events twice (the
/// second run is a replay after a crash) and check the same state both times.
async fn dml_round(uri: &str, write: WriteMode) {
    let mut cfg = MilvusSinkConfig::new(uri);
    cfg.write = write;
    let v = Verifier::connect(uri).await;
    let coll = unique("sink_dml");
    let def = int_def(&coll, 8, false, false);
    let mut ev = Events::new("default", &coll, Some(def.clone()));
    let setup = [
        ev.ddl(Ddl::CreateCollection(Box::new(def))),
        ev.ddl(Ddl::CreatePartition {
            partition: "p1".into(),
        }),
        ev.ddl(flat_index("vec", "L2")),
        ev.ddl(load()),
    ];
    let dml = [
        ev.insert("_default", int_rows(&[1, 2, 3], 8, "a")),
        ev.insert("_default", int_rows(&[4, 5], 8, "a")),
        ev.insert("p1", int_rows(&[10, 11], 8, "a")),
        ev.delete_int(&[2, 10]),
        ev.upsert_int("_default", int_rows(&[3, 6], 8, "b")),
        ev.insert("_default", int_rows(&[7], 8, "a")),
        ev.delete_int(&[7]),
        ev.insert("_default", int_rows(&[7], 8, "c")),
    ];
    for pass in 0..2 {
        let mut sink = open_sink(&cfg, "dml").await;
        for e in setup.iter().chain(&dml) {
            sink.write(e.clone())
                .await
                .unwrap_or_else(|err| panic!("pass {pass}, {}: {err}", e.op.kind()));
        }
        sink.flush().await.unwrap();
        sink.close().await;
        assert_eq!(
            v.int_keys("default", &coll, "id > 0").await,
            vec![1, 3, 4, 5, 6, 7, 11],
            "pass {pass}: rows after inserts, deletes and upserts"
        );
        let titles = v
            .strings("default", &coll, "id in [3, 6, 7]", "title")
            .await;
        assert_eq!(
            titles,
            vec![(3, "b-3".into()), (6, "b-6".into()), (7, "c-7".into())],
            "pass {pass}: upserted values"
        );
        assert_eq!(v.int_keys("default", &coll, "id == 11").await, vec![11]);
    }
    let mut sink = open_sink(&cfg, "dml").await;
    sink.write(ev.ddl(Ddl::DropCollection)).await.unwrap();
    sink.flush().await.unwrap();
}

#[tokio::test]
async fn insert_delete_upsert_and_replay_on_milvus_2_3_with_upsert() {
    if !e2e("insert_delete_upsert_and_replay_on_milvus_2_3_with_upsert") {
        return;
    }
    dml_round(&target_uri(), WriteMode::Upsert).await;
}

#[tokio::test]
async fn insert_delete_upsert_and_replay_on_milvus_2_3_with_insert() {
    if !e2e("insert_delete_upsert_and_replay_on_milvus_2_3_with_insert") {
        return;
    }
    // Events are stamped "now", inside the replay window, so the second pass upserts.
    dml_round(&target_uri(), WriteMode::Insert).await;
}

#[tokio::test]
async fn insert_delete_upsert_and_replay_on_milvus_lite() {
    if !e2e("insert_delete_upsert_and_replay_on_milvus_lite") {
        return;
    }
    dml_round(&lite_uri(), WriteMode::Upsert).await;
}

/// Varchar keys with characters that need escaping in the delete expression; JSON, array and
/// dynamic columns forwarded as-is; a collection that did not exist is created from the
/// change's definition.
async fn varchar_json_array_dynamic(uri: &str) {
    let cfg = MilvusSinkConfig::new(uri);
    let v = Verifier::connect(uri).await;
    let coll = unique("sink_str");
    let mut pk = field("pk", DataType::VarChar);
    pk.is_primary_key = true;
    pk.type_params = vec![kv("max_length", "64")];
    let mut vecf = field("vec", DataType::FloatVector);
    vecf.type_params = vec![kv("dim", "4")];
    let mut arr = field("nums", DataType::Array);
    arr.element_type = DataType::Int64 as i32;
    arr.type_params = vec![kv("max_capacity", "8")];
    let mut meta = field("$meta", DataType::Json);
    meta.is_dynamic = true;
    let def = cdc_engine::CollectionDef {
        schema: CollectionSchema {
            name: coll.clone(),
            fields: vec![pk, vecf, field("doc", DataType::Json), arr, meta],
            enable_dynamic_field: true,
            ..Default::default()
        },
        shards_num: 1,
        ..Default::default()
    };
    let keys = [
        "plain",
        "quo\"te",
        "back\\slash",
        "new\nline",
        "ü-漢",
        "it's",
    ];
    let n = keys.len();
    let ids: Vec<i64> = (0..n as i64).collect();
    let columns = vec![
        str_col("pk", keys.iter().map(|s| s.to_string()).collect()),
        float_vec_col("vec", 4, &ids),
        json_col(
            "doc",
            ids.iter().map(|i| format!("{{\"i\":{i}}}")).collect(),
            false,
        ),
        int_array_col("nums", ids.iter().map(|i| vec![*i, i * 2]).collect()),
        json_col(
            "$meta",
            ids.iter().map(|i| format!("{{\"extra\":{i}}}")).collect(),
            true,
        ),
    ];
    let mut ev = Events::new("default", &coll, Some(def));
    let mut sink = open_sink(&cfg, "str").await;
    // No CreateCollection event: the first insert creates the collection (pre-existing source
    // collection); index and load come after, like a source that replays its DDL.
    sink.write(ev.insert("_default", columns)).await.unwrap();
    sink.flush().await.unwrap();
    for e in [ev.ddl(flat_index("vec", "L2")), ev.ddl(load())] {
        sink.write(e).await.unwrap();
    }
    sink.flush().await.unwrap();
    let mut want: Vec<String> = keys.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(v.str_keys("default", &coll, "pk != \"\"").await, want);
    assert_eq!(
        v.str_keys("default", &coll, "extra >= 3").await.len(),
        3,
        "dynamic field kept"
    );
    assert_eq!(
        v.str_keys("default", &coll, "doc[\"i\"] == 2").await.len(),
        1,
        "json kept"
    );
    assert_eq!(
        v.str_keys("default", &coll, "array_contains(nums, 10)")
            .await
            .len(),
        1,
        "array kept"
    );
    sink.write(ev.delete_str(&keys[1..])).await.unwrap();
    sink.flush().await.unwrap();
    assert_eq!(
        v.str_keys("default", &coll, "pk != \"\"").await,
        vec!["plain".to_string()]
    );
    sink.write(ev.ddl(Ddl::DropCollection)).await.unwrap();
    sink.flush().await.unwrap();
}

#[tokio::test]
async fn varchar_keys_json_array_dynamic_on_milvus_2_3() {
    if !e2e("varchar_keys_json_array_dynamic_on_milvus_2_3") {
        return;
    }
    varchar_json_array_dynamic(&target_uri()).await;
}

#[tokio::test]
async fn varchar_keys_json_array_dynamic_on_milvus_lite() {
    if !e2e("varchar_keys_json_array_dynamic_on_milvus_lite") {
        return;
    }
    varchar_json_array_dynamic(&lite_uri()).await;
}

#[tokio::test]
async fn binary_vectors_and_partition_key() {
    if !e2e("binary_vectors_and_partition_key") {
        return;
    }
    let uri = target_uri();
    let cfg = MilvusSinkConfig::new(&uri);
    let v = Verifier::connect(&uri).await;
    let coll = unique("sink_bin");
    let mut id = field("id", DataType::Int64);
    id.is_primary_key = true;
    let mut bv = field("bv", DataType::BinaryVector);
    bv.type_params = vec![kv("dim", "16")];
    let mut tenant = field("tenant", DataType::Int64);
    tenant.is_partition_key = true;
    let def = cdc_engine::CollectionDef {
        schema: CollectionSchema {
            name: coll.clone(),
            fields: vec![id, bv, tenant],
            ..Default::default()
        },
        shards_num: 1,
        num_partitions: 4,
        ..Default::default()
    };
    let mut ev = Events::new("default", &coll, Some(def.clone()));
    let mut sink = open_sink(&cfg, "bin").await;
    let keys: Vec<i64> = (1..=50).collect();
    for e in [
        ev.ddl(Ddl::CreateCollection(Box::new(def))),
        ev.ddl(flat_index("bv", "HAMMING")),
        ev.ddl(load()),
        // A partition-key collection: the source names the physical partition; the sink drops
        // the name and lets the target route by key.
        ev.insert(
            "_default_3",
            vec![
                long_col("id", keys.clone()),
                binary_vec_col("bv", 16, &keys),
                long_col("tenant", keys.iter().map(|k| k % 5).collect()),
            ],
        ),
        ev.upsert_int(
            "_default_1",
            vec![
                long_col("id", vec![1]),
                binary_vec_col("bv", 16, &[1]),
                long_col("tenant", vec![9]),
            ],
        ),
    ] {
        sink.write(e).await.unwrap();
    }
    sink.flush().await.unwrap();
    assert_eq!(v.int_keys("default", &coll, "id > 0").await, keys);
    assert_eq!(v.int_keys("default", &coll, "tenant == 9").await, vec![1]);
    let d = v.describe("default", &coll).await.unwrap();
    assert_eq!(d.num_partitions, 4, "partition count kept");
    sink.write(ev.ddl(Ddl::DropCollection)).await.unwrap();
    sink.flush().await.unwrap();
}

#[tokio::test]
async fn rejected_write_gives_a_clear_error() {
    if !e2e("rejected_write_gives_a_clear_error") {
        return;
    }
    let uri = target_uri();
    let mut cfg = MilvusSinkConfig::new(&uri);
    cfg.retry.max_attempts = 3;
    let coll = unique("sink_bad");
    let def = int_def(&coll, 8, false, false);
    let mut ev = Events::new("default", &coll, Some(def.clone()));
    let mut sink = open_sink(&cfg, "bad").await;
    sink.write(ev.ddl(Ddl::CreateCollection(Box::new(def))))
        .await
        .unwrap();
    // Vectors of dimension 4 for a dimension-8 field.
    sink.write(ev.insert("_default", int_rows(&[1, 2], 4, "x")))
        .await
        .unwrap();
    let err = sink.flush().await.expect_err("the target refuses the rows");
    println!("error as the operator sees it: {err}");
    assert_eq!(err.kind, ErrorKind::Write);
    assert!(!err.retriable, "a refused write is not retried: {err}");
    for part in [uri.as_str(), "default", coll.as_str(), "upsert", "code"] {
        assert!(err.message.contains(part), "{part:?} missing from: {err}");
    }
    // The sink stays failed: later writes report the same error instead of going on.
    let again = sink
        .write(ev.insert("_default", int_rows(&[3], 8, "x")))
        .await
        .expect_err("sink stays failed");
    assert_eq!(again.message, err.message);
    let mut cleanup = open_sink(&MilvusSinkConfig::new(&uri), "bad").await;
    cleanup.write(ev.ddl(Ddl::DropCollection)).await.unwrap();
}

#[tokio::test]
async fn missing_collection_without_definition_is_a_clear_error() {
    if !e2e("missing_collection_without_definition_is_a_clear_error") {
        return;
    }
    let uri = target_uri();
    let coll = unique("sink_nodef");
    let mut ev = Events::new("default", &coll, None);
    let mut sink = open_sink(&MilvusSinkConfig::new(&uri), "nodef").await;
    let err = sink
        .write(ev.insert("_default", int_rows(&[1], 8, "x")))
        .await
        .expect_err("nothing to create the collection from");
    assert!(
        err.message.contains(&coll) && err.message.contains("does not exist"),
        "{err}"
    );
}

#[tokio::test]
async fn batch_too_large_for_the_message_queue_is_split() {
    if !e2e("batch_too_large_for_the_message_queue_is_split") {
        return;
    }
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    // Incompressible 128-d vectors: 6000 rows are ~3 MB, ~1.5 MB per target shard message,
    // above the dev broker's 1 MB message limit ("Broker: Message size too large").
    let uri = target_uri();
    let v = Verifier::connect(&uri).await;
    let coll = unique("sink_big");
    let def = int_def(&coll, 128, false, false);
    let mut ev = Events::new("default", &coll, Some(def.clone()));
    let keys: Vec<i64> = (1..=6000).collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut cols = int_rows(&keys, 128, "r");
    if let Some(cdc_protocol::schema::field_data::Field::Vectors(vf)) = &mut cols[1].field {
        if let Some(cdc_protocol::schema::vector_field::Data::FloatVector(a)) = &mut vf.data {
            for f in a.data.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *f = (x >> 40) as f32 / (1u64 << 24) as f32;
            }
        }
    }
    for write in [WriteMode::Insert, WriteMode::Upsert] {
        let mut cfg = MilvusSinkConfig::new(&uri);
        cfg.write = write;
        let mut sink = open_sink(&cfg, "big").await;
        for e in [
            ev.ddl(Ddl::CreateCollection(Box::new(def.clone()))),
            ev.ddl(flat_index("vec", "L2")),
            ev.ddl(load()),
            ev.insert("_default", cols.clone()),
        ] {
            sink.write(e).await.unwrap();
        }
        sink.flush().await.unwrap();
        assert_eq!(
            v.int_keys("default", &coll, "id > 0").await,
            keys,
            "{write:?}"
        );
        sink.write(ev.ddl(Ddl::DropCollection)).await.unwrap();
        sink.flush().await.unwrap();
    }
}
