//! End to end against the real dev environment (`scripts/dev-env up etcd kafka source`):
//! the Milvus source opened at `latest` while `tests/py/workload.py --scenario all` runs on the
//! source Milvus must report every operation exactly once, in order.
//!
//! Skipped (with a message) unless `MCDC_E2E` is set; with it set, an unreachable service is a
//! failure. Other engineers may use the same Milvus at the same time, so every test uses its
//! own collection prefix and database and ignores changes outside them.

mod common;

use std::time::Duration;

use cdc_engine::{ChangeEvent, Ddl, Op, Source};
use cdc_state::Offsets;
use common::{check, env_or_skip, event_key, python, start, step_keys, unique};

fn mine<'a>(prefix: &'a str, db: &'a str) -> impl Fn(&ChangeEvent) -> bool + 'a {
    move |e| e.collection.starts_with(prefix) || (e.collection.is_empty() && e.database == db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_operations_appear_once_in_source_order() {
    let Some(env) = env_or_skip("workload_operations_appear_once_in_source_order") else {
        return;
    };
    let prefix = unique("e2es");
    let db = format!("{prefix}db");
    let mut run = start(&env, "e2e_source_workload", &Offsets::new()).await;
    let stdout = python(
        &env,
        &[
            "tests/py/workload.py",
            "--uri",
            &env.source_uri,
            "--scenario",
            "all",
            "--prefix",
            &prefix,
            "--db1",
            &db,
        ],
    )
    .await;
    let want = step_keys(&stdout);
    assert!(
        want.len() > 60,
        "the workload printed too few steps:\n{stdout}"
    );
    let mut events = Vec::new();
    let is_mine = mine(&prefix, &db);
    let db2 = db.clone();
    let prefix2 = prefix.clone();
    // Every drop of the workload: DropDatabase of its database can come before the
    // DropCollection of a collection in `default` (different channels), so wait for both.
    let drops = want.iter().filter(|k| k.0 .0 == "drop_collection").count();
    run.collect_until(&mut events, Duration::from_secs(90), move |evs| {
        let dropped = evs
            .iter()
            .filter(|e| e.collection.starts_with(&prefix2) && e.op.kind() == "drop_collection")
            .count();
        dropped >= drops
            && evs
                .iter()
                .any(|e| e.database == db2 && e.op.kind() == "drop_database")
    })
    .await;
    let src = run.stop().await;
    let ours: Vec<ChangeEvent> = events.into_iter().filter(|e| is_mine(e)).collect();
    check(&ours, &want);

    // Kinds the mission names, seen on real data.
    let kinds: std::collections::BTreeSet<&str> = ours.iter().map(|e| e.op.kind()).collect();
    for k in [
        "create_database",
        "drop_database",
        "create_collection",
        "drop_collection",
        "create_partition",
        "drop_partition",
        "insert",
        "delete",
        "upsert",
        "create_index",
        "drop_index",
        "load_collection",
        "release_collection",
        "flush",
    ] {
        assert!(kinds.contains(k), "no {k} event");
    }
    // Definitions: varchar and int64 keys, dynamic field, JSON, arrays, both vector kinds.
    let def = |name: &str| {
        ours.iter()
            .find(|e| {
                e.collection == format!("{prefix}{name}") && e.op.kind() == "create_collection"
            })
            .and_then(|e| e.collection_def.clone())
            .unwrap_or_else(|| panic!("no definition for {name}"))
    };
    let varchar = def("varchar");
    assert!(varchar.schema.enable_dynamic_field);
    assert_eq!(
        varchar.schema.fields[0].data_type, 21,
        "VarChar primary key"
    );
    let int64 = def("int64");
    assert_eq!(int64.shards_num, 2);
    assert!(
        int64.schema.fields.iter().any(|f| f.data_type == 23),
        "JSON"
    );
    assert!(
        int64.schema.fields.iter().any(|f| f.data_type == 22),
        "Array"
    );
    assert_eq!(def("items").shards_num, 3);
    assert_eq!(def("pkey").num_partitions, 4);

    // Offsets cover only what was returned.
    let offsets = src.offsets();
    assert!(
        offsets.keys().any(|k| k.ends_with("replicate-msg")),
        "{offsets:?}"
    );
    for e in &ours {
        if e.position.channel.starts_with("etcd:") {
            // CreatePartition and partition loads come from the etcd watch, which is not
            // checkpointed.
            assert!(
                matches!(
                    e.op.kind(),
                    "create_partition" | "load_partitions" | "release_partitions"
                ),
                "{:?}",
                event_key(e)
            );
            continue;
        }
        let o = offsets
            .get(&*e.position.channel)
            .unwrap_or_else(|| panic!("no offset for {}: {offsets:?}", e.position.channel));
        assert!(*o >= e.position.offset, "{:?} not covered", event_key(e));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collection_created_while_running_is_read_from_its_start() {
    let Some(env) = env_or_skip("collection_created_while_running_is_read_from_its_start") else {
        return;
    };
    let name = format!("{}late", unique("e2es"));
    let mut run = start(&env, "e2e_source_late", &Offsets::new()).await;
    // Create, write at once (no pause after the create), and drop.
    let script = format!(
        r#"
from pymilvus import MilvusClient, DataType
c = MilvusClient(uri="{uri}")
s = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
s.add_field("id", DataType.INT64, is_primary=True)
s.add_field("v", DataType.FLOAT_VECTOR, dim=4)
c.create_collection("{name}", schema=s, shards_num=4)
for b in range(3):
    c.insert("{name}", [{{"id": b * 100 + i, "v": [0.1, 0.2, 0.3, float(i)]}} for i in range(100)])
c.drop_collection("{name}")
"#,
        uri = env.source_uri
    );
    python(&env, &["-c", &script]).await;
    let mut events = Vec::new();
    let n = name.clone();
    run.collect_until(&mut events, Duration::from_secs(60), move |evs| {
        evs.iter()
            .any(|e| e.collection == n && e.op.kind() == "drop_collection")
    })
    .await;
    run.stop().await;
    let ours: Vec<&ChangeEvent> = events.iter().filter(|e| e.collection == name).collect();
    let kinds: Vec<&str> = ours.iter().map(|e| e.op.kind()).collect();
    assert_eq!(kinds.first(), Some(&"create_collection"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"drop_collection"), "{kinds:?}");
    let rows: usize = ours.iter().map(|e| e.op.rows()).sum();
    assert_eq!(rows, 300, "{kinds:?}");
    assert_eq!(
        kinds.iter().filter(|k| **k == "create_collection").count(),
        1
    );
    assert_eq!(kinds.iter().filter(|k| **k == "drop_collection").count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_loads_and_releases_come_from_querycoord_etcd_keys() {
    let Some(env) = env_or_skip("partition_loads_and_releases_come_from_querycoord_etcd_keys")
    else {
        return;
    };
    let name = format!("{}loadparts", unique("e2es"));
    let mut run = start(&env, "e2e_source_loadparts", &Offsets::new()).await;
    // Milvus 2.3.5 writes no message for load/release_partitions. The final release of the
    // collection (a message) also removes the partition load info: not a second release.
    let script = format!(
        r#"
from pymilvus import MilvusClient, DataType
c = MilvusClient(uri="{uri}")
s = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
s.add_field("id", DataType.INT64, is_primary=True)
s.add_field("v", DataType.FLOAT_VECTOR, dim=4)
c.create_collection("{name}", schema=s, shards_num=1)
for p in ["p1", "p2", "p3"]:
    c.create_partition("{name}", p)
c.insert("{name}", [{{"id": i, "v": [0.1, 0.2, 0.3, float(i)]}} for i in range(10)], partition_name="p1")
ip = c.prepare_index_params()
ip.add_index(field_name="v", index_type="FLAT", metric_type="L2")
c.create_index("{name}", ip)
c.load_partitions("{name}", ["p1", "p2"])
c.release_partitions("{name}", ["p2"])
c.release_collection("{name}")
c.drop_collection("{name}")
"#,
        uri = env.source_uri
    );
    python(&env, &["-c", &script]).await;
    let mut events = Vec::new();
    let n = name.clone();
    run.collect_until(&mut events, Duration::from_secs(60), move |evs| {
        evs.iter()
            .any(|e| e.collection == n && e.op.kind() == "drop_collection")
    })
    .await;
    run.stop().await;
    let ours: Vec<&ChangeEvent> = events.iter().filter(|e| e.collection == name).collect();
    let kinds: Vec<&str> = ours.iter().map(|e| e.op.kind()).collect();
    let trace: Vec<(&str, &str, u64)> = ours
        .iter()
        .map(|e| (e.op.kind(), &*e.position.channel, e.position.ts >> 18))
        .collect();
    let count = |k: &str| kinds.iter().filter(|x| **x == k).count();
    assert_eq!(count("load_partitions"), 1, "{trace:?}");
    assert_eq!(count("release_partitions"), 1, "{trace:?}");
    assert_eq!(count("release_collection"), 1, "{kinds:?}");
    assert_eq!(count("load_collection"), 0, "{kinds:?}");
    let pos = |k: &str| kinds.iter().position(|x| *x == k).unwrap();
    assert!(pos("create_index") < pos("load_partitions"), "{kinds:?}");
    assert!(
        pos("load_partitions") < pos("release_partitions"),
        "{kinds:?}"
    );
    assert!(
        pos("release_partitions") < pos("drop_collection"),
        "{kinds:?}"
    );
    for e in &ours {
        match &e.op {
            Op::Ddl(Ddl::LoadPartitions(r)) => {
                let mut parts = r.partition_names.clone();
                parts.sort();
                assert_eq!(parts, ["p1", "p2"]);
                assert_eq!(r.replica_number, 1);
                assert_eq!(r.collection_name, name);
                assert_eq!(r.db_name, "default");
                assert_eq!(e.database, "default");
                assert!(e.position.channel.starts_with("etcd:"));
                assert!(e.collection_def.is_some());
            }
            Op::Ddl(Ddl::ReleasePartitions(r)) => {
                assert_eq!(r.partition_names, ["p2"]);
                assert_eq!(r.collection_name, name);
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_offsets_misses_nothing() {
    let Some(env) = env_or_skip("resume_after_offsets_misses_nothing") else {
        return;
    };
    let name = format!("{}resume", unique("e2es"));
    let insert = |ids: std::ops::Range<i64>| {
        format!(
            r#"
from pymilvus import MilvusClient, DataType
c = MilvusClient(uri="{uri}")
if not c.has_collection("{name}"):
    s = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("v", DataType.FLOAT_VECTOR, dim=4)
    c.create_collection("{name}", schema=s, shards_num=2)
c.insert("{name}", [{{"id": i, "v": [0.1, 0.2, 0.3, 0.4]}} for i in range({a}, {b})])
"#,
            uri = env.source_uri,
            a = ids.start,
            b = ids.end
        )
    };
    let rows_of = |evs: &[ChangeEvent]| -> usize {
        evs.iter()
            .filter(|e| e.collection == name)
            .map(|e| e.op.rows())
            .sum()
    };
    let mut run = start(&env, "e2e_source_resume", &Offsets::new()).await;
    python(&env, &["-c", &insert(0..50)]).await;
    let mut first = Vec::new();
    run.collect_until(&mut first, Duration::from_secs(30), |evs| {
        rows_of(evs) >= 50
    })
    .await;
    assert_eq!(rows_of(&first), 50);
    let src = run.stop().await;
    let checkpoint = src.offsets();
    drop(src);
    // Written while no source runs.
    python(&env, &["-c", &insert(50..80)]).await;
    let mut run = start(&env, "e2e_source_resume", &checkpoint).await;
    python(&env, &["-c", &insert(80..100)]).await;
    let mut second = Vec::new();
    run.collect_until(&mut second, Duration::from_secs(30), |evs| {
        rows_of(evs) >= 50
    })
    .await;
    run.stop().await;
    let ids: Vec<i64> = second
        .iter()
        .filter(|e| e.collection == name)
        .filter_map(|e| match &e.op {
            Op::Insert(b) => Some(b),
            _ => None,
        })
        .flat_map(|b| {
            b.columns
                .iter()
                .filter(|c| c.field_name == "id")
                .flat_map(|c| match &c.field {
                    Some(cdc_protocol::schema::field_data::Field::Scalars(s)) => match &s.data {
                        Some(cdc_protocol::schema::scalar_field::Data::LongData(l)) => {
                            l.data.clone()
                        }
                        _ => vec![],
                    },
                    _ => vec![],
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    // Every row written after the checkpoint; replays (at-least-once) only of older rows.
    let later: Vec<i64> = sorted.iter().copied().filter(|i| *i >= 50).collect();
    assert_eq!(
        later,
        (50..100).collect::<Vec<_>>(),
        "rows after the checkpoint: {ids:?}"
    );
    assert!(sorted.iter().all(|i| (0..100).contains(i)), "{ids:?}");
    assert_eq!(
        ids.iter().filter(|i| **i >= 50).count(),
        50,
        "each later row once: {ids:?}"
    );
}

/// Latency while following live inserts, and the decode rate when catching up a backlog.
/// Prints the numbers; asserts only that every row arrives once and latency stays sane.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_and_latency() {
    let Some(env) = env_or_skip("throughput_and_latency") else {
        return;
    };
    let name = format!("{}bench", unique("e2es"));
    let rows: usize = std::env::var("MCDC_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40_000);
    let dim = 128;
    let mut run = start(&env, "e2e_source_bench", &Offsets::new()).await;
    let rows_s = rows.to_string();
    let args = [
        "tests/py/insert_bench.py",
        "--uri",
        &env.source_uri,
        "--collection",
        &name,
        "--rows",
        &rows_s,
        "--batch",
        "2000",
        "--dim",
        "128",
        "--drop-after",
    ];
    let bench = python(&env, &args);
    // Follow live: latency = arrival - the change's physical timestamp.
    let mut live: Vec<ChangeEvent> = Vec::new();
    let mut lat_ms: Vec<u64> = Vec::new();
    let n = name.clone();
    let follow = async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
        let mut got = 0;
        while got < rows {
            match tokio::time::timeout_at(deadline, run.events.recv()).await {
                Ok(Some(Ok(ev))) => {
                    if ev.collection == n {
                        if let Op::Insert(b) = &ev.op {
                            got += b.num_rows;
                            let now = cdc_engine::metrics::now_ms();
                            lat_ms.push(
                                now.saturating_sub(cdc_protocol::ts::physical_ms(ev.position.ts)),
                            );
                        }
                        live.push(ev);
                    }
                }
                Ok(Some(Err(e))) => panic!("the source failed: {e}"),
                Ok(None) | Err(_) => break,
            }
        }
    };
    let (out, ()) = tokio::join!(bench, follow);
    println!("{}", out.lines().last().unwrap_or_default());
    run.stop().await;
    let got: usize = live.iter().map(|e| e.op.rows()).sum();
    assert_eq!(got, rows, "every row once while following");
    lat_ms.sort_unstable();
    let p = |q: f64| lat_ms[((lat_ms.len() - 1) as f64 * q) as usize];
    println!(
        "source latency over {} insert messages: p50 {} ms, p95 {} ms, max {} ms",
        lat_ms.len(),
        p(0.5),
        p(0.95),
        p(1.0)
    );
    // Milvus itself sends a time tick about 200 ms after its timestamp, every 200 ms; on a
    // loaded 2-core machine it lags much more, so only an absurd latency fails.
    assert!(p(0.5) < 10_000, "median latency {} ms", p(0.5));

    // Catch up the same rows from a checkpoint just before them.
    let mut resume = Offsets::new();
    for e in &live {
        let before = (i64::from_be_bytes(e.position.offset.as_slice().try_into().unwrap()) - 1)
            .to_be_bytes()
            .to_vec();
        resume
            .entry(e.position.channel.to_string())
            .and_modify(|o| {
                if before < *o {
                    *o = before.clone()
                }
            })
            .or_insert(before);
    }
    let t0 = std::time::Instant::now();
    let mut run = start(&env, "e2e_source_bench_catchup", &resume).await;
    let mut again = Vec::new();
    let n = name.clone();
    run.collect_until(&mut again, Duration::from_secs(300), move |evs| {
        evs.iter()
            .filter(|e| e.collection == n)
            .map(|e| e.op.rows())
            .sum::<usize>()
            >= rows
    })
    .await;
    let secs = t0.elapsed().as_secs_f64();
    run.stop().await;
    let got: usize = again
        .iter()
        .filter(|e| e.collection == name)
        .map(|e| e.op.rows())
        .sum();
    assert_eq!(got, rows);
    let mb = (rows * (dim * 4 + 8)) as f64 / 1e6;
    println!(
        "catch-up from a checkpoint: {rows} rows ({mb:.1} MB of vectors and keys) in {secs:.2} s = {:.1} MB/s (this build: {})",
        mb / secs,
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );
}
