//! `mode: replicate` against the real standby Milvus 2.3.5 (`common.ttMsgEnabled: false`,
//! `scripts/dev-env up standby`): DDL through RPCs, DML with ReplicateMessage, time ticks so
//! the standby can load and answer strong-consistency queries.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use cdc_connector_milvus_sink::{MilvusSinkConfig, SinkMode};
use cdc_engine::Ddl;
use common::*;

fn standby_uri() -> String {
    std::env::var("MCDC_STANDBY_URI").unwrap_or_else(|_| "http://127.0.0.1:19532".into())
}

/// Create, index and load through the sink, write DML (before or after the standby finished
/// loading), check the rows, then release, drop a partition and drop the collection.
async fn replicate_round(dml_before_load: bool) {
    let uri = standby_uri();
    let mut cfg = MilvusSinkConfig::new(&uri);
    cfg.mode = SinkMode::Replicate;
    cfg.replicate.time_tick_interval_ms = 200;
    let v = Verifier::connect(&uri).await;
    let coll = unique("sink_repl");
    let def = int_def(&coll, 8, false, false);
    let mut ev = Events::new("default", &coll, Some(def.clone()));
    let mut sink = open_sink(&cfg, "repl").await;
    for e in [
        ev.ddl(Ddl::CreateCollection(Box::new(def))),
        ev.ddl(Ddl::CreatePartition {
            partition: "p1".into(),
        }),
        ev.ddl(flat_index("vec", "L2")),
        ev.ddl(load()),
    ] {
        sink.write(e).await.unwrap();
    }
    if dml_before_load {
        write_dml(&mut *sink, &mut ev).await;
    }
    // Loading finishes only because the sink sends time ticks.
    let t = Instant::now();
    while v.load_state("default", &coll, &[]).await != 3 {
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "standby did not finish loading in 90 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("standby loaded in {:?}", t.elapsed());
    if !dml_before_load {
        write_dml(&mut *sink, &mut ev).await;
    }
    let t = Instant::now();
    let mut keys = v.int_keys("default", &coll, "id > 0").await;
    while keys != vec![1, 2, 3, 4] && t.elapsed() < Duration::from_secs(10) {
        let titles = v.strings("default", &coll, "id > 0", "title").await;
        println!("keys {keys:?} titles {titles:?}");
        tokio::time::sleep(Duration::from_secs(1)).await;
        keys = v.int_keys("default", &coll, "id > 0").await;
    }
    assert_eq!(keys, vec![1, 2, 3, 4]);
    println!("strong query answered in {:?}", t.elapsed());
    let titles = v.strings("default", &coll, "id > 0", "title").await;
    println!("titles {titles:?}");
    assert_eq!(titles[1], (2, "b-2".to_string()), "upserted row");
    println!(
        "id == 2: {:?}",
        v.strings("default", &coll, "id == 2", "title").await
    );

    for e in [
        ev.ddl(Ddl::ReleaseCollection),
        ev.ddl(Ddl::DropPartition {
            partition: "p1".into(),
        }),
        ev.ddl(Ddl::DropCollection),
    ] {
        sink.write(e).await.unwrap();
    }
    sink.flush().await.unwrap();
    assert!(v.describe("default", &coll).await.is_none());
    // The standby's root coordinator must not be left retrying a broadcast it may not do.
    sink.close().await;
}

async fn write_dml(sink: &mut dyn cdc_engine::Sink, ev: &mut Events) {
    ev.shard = "by-dev-rootcoord-dml_0_4242v0".into();
    sink.write(ev.insert("_default", int_rows(&[1, 2, 3], 8, "a")))
        .await
        .unwrap();
    ev.shard = "by-dev-rootcoord-dml_1_4242v1".into();
    sink.write(ev.insert("p1", int_rows(&[4, 5], 8, "a")))
        .await
        .unwrap();
    sink.write(ev.delete_int(&[5])).await.unwrap();
    ev.shard = "by-dev-rootcoord-dml_0_4242v0".into();
    sink.write(ev.upsert_int("_default", int_rows(&[2], 8, "b")))
        .await
        .unwrap();
    sink.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicate_mode_writes_to_a_standby() {
    if !e2e("replicate_mode_writes_to_a_standby") {
        return;
    }
    replicate_round(false).await;
}

/// DML right after a load call, while the standby is still loading (its query nodes seek
/// and consume the channel). With a constant message ID, deletes and an upsert's re-insert
/// were lost here about one run in two (the standby drops repeated IDs in a window).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicate_mode_dml_right_after_a_load_call() {
    if !e2e("replicate_mode_dml_right_after_a_load_call") {
        return;
    }
    replicate_round(true).await;
}
