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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicate_mode_writes_to_a_standby() {
    if !e2e("replicate_mode_writes_to_a_standby") {
        return;
    }
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
    let t = Instant::now();
    assert_eq!(
        v.int_keys("default", &coll, "id > 0").await,
        vec![1, 2, 3, 4]
    );
    println!("strong query answered in {:?}", t.elapsed());
    assert_eq!(
        v.strings("default", &coll, "id == 2", "title").await,
        vec![(2, "b-2".to_string())]
    );

    for e in [ev.ddl(Ddl::ReleaseCollection), ev.ddl(Ddl::DropCollection)] {
        sink.write(e).await.unwrap();
    }
    sink.flush().await.unwrap();
    assert!(v.describe("default", &coll).await.is_none());
    sink.close().await;
}
