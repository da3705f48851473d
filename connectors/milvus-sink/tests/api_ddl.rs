//! Every DDL kind through the sink in api mode, against the real target Milvus 2.3.5 and
//! milvus-lite, applied twice (a replay must be harmless).

#![allow(clippy::unwrap_used)]

mod common;

use cdc_connector_milvus_sink::MilvusSinkConfig;
use cdc_engine::Ddl;
use cdc_protocol::milvus::{DropIndexRequest, LoadPartitionsRequest, ReleasePartitionsRequest};
use common::*;

/// `full_milvus`: a real Milvus (milvus-lite has one shard and no partition load/release).
async fn every_ddl_kind(uri: &str, full_milvus: bool) {
    let cfg = MilvusSinkConfig::new(uri);
    let v = Verifier::connect(uri).await;
    let db = unique("sinkddl");
    let coll = "docs";
    let def = int_def(coll, 8, true, true);
    let mut ev = Events::new(&db, coll, Some(def.clone()));

    let mut events = vec![
        ev.ddl(Ddl::CreateDatabase { properties: vec![] }),
        ev.ddl(Ddl::CreateCollection(Box::new(def.clone()))),
        ev.ddl(Ddl::CreatePartition {
            partition: "p1".into(),
        }),
        ev.ddl(Ddl::CreatePartition {
            partition: "_default".into(),
        }),
        ev.ddl(flat_index("vec", "L2")),
        ev.ddl(load()),
        ev.insert(
            "p1",
            int_rows(&[1, 2, 3], 8, "a")
                .into_iter()
                .chain([json_col("tag", vec!["{}".into(); 3], false)])
                .collect(),
        ),
        ev.ddl(Ddl::Flush),
    ];
    if full_milvus {
        events.push(ev.ddl(Ddl::ReleasePartitions(ReleasePartitionsRequest {
            partition_names: vec!["p1".into()],
            ..Default::default()
        })));
        events.push(ev.ddl(Ddl::LoadPartitions(LoadPartitionsRequest {
            partition_names: vec!["p1".into()],
            replica_number: 1,
            ..Default::default()
        })));
    }

    // Twice: the second pass is a replay after a crash and must change nothing.
    for pass in 0..2 {
        let mut sink = open_sink(&cfg, "ddl").await;
        for e in &events {
            sink.write(e.clone())
                .await
                .unwrap_or_else(|err| panic!("pass {pass}, {}: {err}", e.op.kind()));
        }
        sink.flush().await.unwrap();
        sink.close().await;

        assert!(
            v.databases().await.contains(&db),
            "pass {pass}: database created"
        );
        let d = v.describe(&db, coll).await.expect("collection created");
        let s = d.schema.unwrap();
        let pk = s.fields.iter().find(|f| f.is_primary_key).unwrap();
        assert!(!pk.auto_id, "primary key kept with autoID=false");
        assert!(s.enable_dynamic_field);
        if full_milvus {
            assert_eq!(d.shards_num, 2, "shard count kept");
        }
        let parts = v.partitions(&db, coll).await;
        assert!(parts.contains(&"p1".to_string()), "{parts:?}");
        assert_eq!(parts.len(), 2, "{parts:?}");
        let idx = v.indexes(&db, coll).await;
        assert_eq!(idx.len(), 1, "one index after {pass} replays");
        if full_milvus {
            // milvus-lite names indexes after their field.
            assert_eq!(idx[0].index_name, "vec_idx");
        }
        assert_eq!(v.int_keys(&db, coll, "id > 0").await, vec![1, 2, 3]);
    }

    // Tear down, also twice.
    let mut teardown = vec![ev.ddl(Ddl::ReleaseCollection)];
    teardown.push(ev.ddl(Ddl::DropIndex(DropIndexRequest {
        index_name: "vec_idx".into(),
        field_name: "vec".into(),
        ..Default::default()
    })));
    teardown.push(ev.ddl(Ddl::DropPartition {
        partition: "p1".into(),
    }));
    for pass in 0..2 {
        let mut sink = open_sink(&cfg, "ddl").await;
        for e in &teardown {
            sink.write(e.clone())
                .await
                .unwrap_or_else(|err| panic!("teardown pass {pass}, {}: {err}", e.op.kind()));
        }
        sink.flush().await.unwrap();
        assert!(v.indexes(&db, coll).await.is_empty(), "index dropped");
        assert_eq!(v.partitions(&db, coll).await, vec!["_default".to_string()]);
    }
    let drops = [ev.ddl(Ddl::DropCollection), ev.ddl(Ddl::DropDatabase)];
    for pass in 0..2 {
        let mut sink = open_sink(&cfg, "ddl").await;
        for e in &drops {
            sink.write(e.clone())
                .await
                .unwrap_or_else(|err| panic!("drop pass {pass}, {}: {err}", e.op.kind()));
        }
        sink.flush().await.unwrap();
        assert!(v.describe(&db, coll).await.is_none());
        assert!(!v.databases().await.contains(&db));
    }
}

#[tokio::test]
async fn every_ddl_kind_on_milvus_2_3() {
    if !e2e("every_ddl_kind_on_milvus_2_3") {
        return;
    }
    every_ddl_kind(&target_uri(), true).await;
}

#[tokio::test]
async fn every_ddl_kind_on_milvus_lite() {
    if !e2e("every_ddl_kind_on_milvus_lite") {
        return;
    }
    // milvus-lite does not implement partition-level load/release.
    every_ddl_kind(&lite_uri(), false).await;
}

#[tokio::test]
async fn ignore_partition_writes_to_the_default_partition() {
    if !e2e("ignore_partition_writes_to_the_default_partition") {
        return;
    }
    let uri = target_uri();
    let mut cfg = MilvusSinkConfig::new(&uri);
    cfg.ignore_partition = true;
    let v = Verifier::connect(&uri).await;
    let coll = unique("sink_ignpart");
    let def = int_def(&coll, 4, false, false);
    let mut ev = Events::new("default", &coll, Some(def.clone()));
    let mut sink = open_sink(&cfg, "ignpart").await;
    for e in [
        ev.ddl(Ddl::CreateCollection(Box::new(def))),
        ev.ddl(Ddl::CreatePartition {
            partition: "p1".into(),
        }),
        ev.ddl(flat_index("vec", "L2")),
        ev.ddl(load()),
        ev.insert("p1", int_rows(&[7], 4, "x")),
    ] {
        sink.write(e).await.unwrap();
    }
    sink.flush().await.unwrap();
    assert_eq!(
        v.partitions("default", &coll).await,
        vec!["_default".to_string()]
    );
    assert_eq!(v.int_keys("default", &coll, "id > 0").await, vec![7]);
    sink.write(ev.ddl(Ddl::DropCollection)).await.unwrap();
    sink.flush().await.unwrap();
}
