//! Insert vs upsert throughput of the sink against the real target Milvus 2.3.5, 128-d float
//! vectors. Ignored by default (it measures, it does not check); run with
//! `MCDC_E2E=1 cargo test -p cdc-connector-milvus-sink --test throughput -- --ignored --nocapture`.
//! `MCDC_BENCH_ROWS` sets the rows per measurement (default 100000).

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Instant;

use cdc_connector_milvus_sink::{MilvusSinkConfig, WriteMode};
use cdc_engine::{ChangeEvent, Ddl, Op, RowBatch};
use common::*;

const DIM: usize = 128;
const EVENT_ROWS: usize = 1000;
const SHARDS: usize = 4;

/// Source-like events: `EVENT_ROWS` rows each, spread over `SHARDS` source shards.
fn events(ev: &mut Events, total: usize, start: i64) -> Vec<Arc<ChangeEvent>> {
    (0..total / EVENT_ROWS)
        .map(|i| {
            let keys: Vec<i64> = (0..EVENT_ROWS as i64)
                .map(|k| start + (i * EVENT_ROWS) as i64 + k)
                .collect();
            ev.shard = format!("by-dev-rootcoord-dml_{}_1v{}", i % SHARDS, i % SHARDS);
            let mut columns = int_rows(&keys, DIM, "t");
            randomize_vectors(&mut columns[1], i as u64 + 1);
            ev.event(Op::Insert(RowBatch {
                partition: "_default".into(),
                shard: ev.shard.clone(),
                num_rows: keys.len(),
                columns,
            }))
        })
        .collect()
}

/// Incompressible vector values (xorshift), like real embeddings: compressible test data would
/// pass message-queue size limits that real data hits.
fn randomize_vectors(col: &mut cdc_protocol::schema::FieldData, seed: u64) {
    use cdc_protocol::schema::{field_data::Field, vector_field::Data};
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    if let Some(Field::Vectors(vf)) = &mut col.field {
        if let Some(Data::FloatVector(a)) = &mut vf.data {
            for f in a.data.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *f = (x >> 40) as f32 / (1u64 << 24) as f32;
            }
        }
    }
}

async fn measure(write: WriteMode, max_rows: usize, total: usize, old_ts: bool) -> f64 {
    let uri = target_uri();
    let mut cfg = MilvusSinkConfig::new(&uri);
    cfg.write = write;
    cfg.batch.max_rows = max_rows;
    let coll = unique("sink_bench");
    let def = int_def(&coll, DIM, false, false);
    let mut ev = Events::new("default", &coll, Some(def.clone()));
    // Create the collection with one sink, write with another: the writing sink did not create
    // the collection, like a restart (so `write: insert` upserts what may be a replay).
    let mut setup = open_sink(&cfg, "bench").await;
    setup
        .write(ev.ddl(Ddl::CreateCollection(Box::new(def))))
        .await
        .unwrap();
    setup.flush().await.unwrap();
    if old_ts {
        // Source timestamps from an hour ago: inside the replay window of `write: insert`.
        ev.ts = cdc_protocol::ts::compose(cdc_engine::metrics::now_ms() - 3_600_000, 0);
    } else {
        ev.ts = cdc_protocol::ts::compose(cdc_engine::metrics::now_ms() + 3_600_000, 0);
    }
    let evs = events(&mut ev, total, 1);
    let mut sink = open_sink(&cfg, "bench").await;
    let t = Instant::now();
    for e in evs {
        sink.write(e).await.unwrap();
    }
    sink.flush().await.unwrap();
    let secs = t.elapsed().as_secs_f64();
    let rate = total as f64 / secs;
    setup.write(ev.ddl(Ddl::DropCollection)).await.unwrap();
    setup.flush().await.unwrap();
    rate
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run explicitly with --ignored"]
async fn insert_vs_upsert_throughput() {
    if !e2e("insert_vs_upsert_throughput") {
        return;
    }
    let total: usize = std::env::var("MCDC_BENCH_ROWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    println!("rows={total} dim={DIM} event_rows={EVENT_ROWS} source_shards={SHARDS}");
    for max_rows in [2_000, 5_000, 20_000] {
        for (write, old, label) in [
            (WriteMode::Insert, false, "insert"),
            (WriteMode::Upsert, false, "upsert"),
            (WriteMode::Insert, true, "insert-in-replay-window(upsert)"),
        ] {
            let r = measure(write, max_rows, total, old).await;
            println!("batch.max_rows={max_rows:>6} {label:<32} {r:>9.0} rows/s");
        }
    }
}
