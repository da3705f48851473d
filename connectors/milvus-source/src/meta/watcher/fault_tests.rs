//! Fault tests of the etcd watch on a private etcd (own ports and data, `tests/common/private.rs`):
//! etcd killed and restarted under a running watch (it resumes from its revision: nothing
//! missed, nothing repeated), and a watch that resumes past a compaction (it rescans and
//! emits the creations and drops it missed). Skipped without `etcd` unless `MCDC_E2E` is set.

use std::time::Duration;

use cdc_protocol::etcd::{CollectionInfo, CollectionState, PartitionInfo, PartitionState};
use cdc_protocol::etcd_meta::{MetaKey, TOMBSTONE};
use cdc_protocol::schema::CollectionSchema;
use prost::Message as _;

use super::*;

#[path = "../../../tests/common/private.rs"]
mod private;

const META_ROOT: &str = "f17w/meta";

fn cfg(endpoint: &str) -> EtcdConfig {
    crate::MilvusSourceConfig::kafka(endpoint, "127.0.0.1:1").etcd
}

async fn put(client: &mut Client, key: MetaKey, value: Vec<u8>) {
    let key = format!("{META_ROOT}/{}", key.relative_key());
    client.put(key, value, None).await.expect("etcd put");
}

fn collection(id: i64) -> (MetaKey, Vec<u8>) {
    let info = CollectionInfo {
        id,
        schema: Some(CollectionSchema {
            name: format!("f17_c{id}"),
            ..Default::default()
        }),
        physical_channel_names: vec![format!("f17w-rootcoord-dml_{}", id % 4)],
        state: CollectionState::CollectionCreated as i32,
        db_id: 1,
        ..Default::default()
    };
    let key = MetaKey::Collection {
        db_id: 1,
        collection_id: id,
    };
    (key, info.encode_to_vec())
}

fn partition(collection_id: i64, partition_id: i64) -> (MetaKey, Vec<u8>) {
    let info = PartitionInfo {
        partition_id,
        partition_name: format!("f17_p{partition_id}"),
        partition_created_timestamp: 1,
        collection_id,
        state: PartitionState::PartitionCreated as i32,
    };
    let key = MetaKey::Partition {
        collection_id,
        partition_id,
    };
    (key, info.encode_to_vec())
}

/// What an input says, for comparisons.
fn what(input: &Input) -> String {
    match input {
        Input::Collection(MetaChange::Collection { id, live, .. }) => {
            format!("collection {id} live={live}")
        }
        Input::Change {
            payload: Payload::PartitionCreated { partition_id, .. },
            ..
        } => format!("partition {partition_id}"),
        Input::Failed(e) => format!("failed: {e}"),
        _ => "other".into(),
    }
}

async fn next(rx: &mut mpsc::Receiver<Input>) -> String {
    match tokio::time::timeout(Duration::from_secs(60), rx.recv()).await {
        Ok(Some(i)) => what(&i),
        Ok(None) => panic!("the watch task stopped"),
        Err(_) => panic!("no input within 60 s"),
    }
}

struct Watch {
    rx: mpsc::Receiver<Input>,
    _probe: mpsc::UnboundedSender<u64>,
    task: tokio::task::JoinHandle<()>,
}

async fn start_watch(
    etcd: &EtcdConfig,
    pipeline: &str,
    cache: MetaCache,
    loads: LoadState,
    from_revision: i64,
) -> Watch {
    let (tx, rx) = mpsc::channel(64);
    let (probe, probes) = mpsc::unbounded_channel();
    let task = WatchTask {
        client: connect(etcd).await.expect("connect"),
        meta_root: META_ROOT.into(),
        from_revision,
        etcd: etcd.clone(),
        reconnect: RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1_000),
            give_up_after: None,
        },
        pipeline: pipeline.into(),
        cache: Arc::new(Mutex::new(cache)),
        loads,
        last_load_ts: 0,
        held: Default::default(),
        tx,
        probes,
        metrics: ComponentMetrics::new(pipeline, &cdc_engine::ComponentId::Source),
    };
    Watch {
        rx,
        _probe: probe,
        task: tokio::spawn(task.run()),
    }
}

async fn scan_now(client: &mut Client, pipeline: &str) -> (MetaCache, LoadState, i64) {
    let (mut cache, mut loads) = (MetaCache::default(), LoadState::default());
    let metrics = ComponentMetrics::new(pipeline, &cdc_engine::ComponentId::Source);
    let rev = scan(client, META_ROOT, &mut cache, &mut loads, &metrics)
        .await
        .expect("scan");
    (cache, loads, rev)
}

async fn wait_outage(pipeline: &str, open: bool) {
    let t0 = std::time::Instant::now();
    while cdc_engine::retry::reconnecting(pipeline).is_empty() == open {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "outage open={open} not seen"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_killed_under_the_watch_resumes_from_its_revision() {
    let dir = private::data_dir("f17-etcd-restart");
    let Some(mut etcd) = private::etcd(&dir, 23791) else {
        return;
    };
    etcd.start();
    let pipeline = "f17_watch_restart";
    let config = cfg(&etcd.endpoint());
    let mut client = connect(&config).await.expect("connect");
    let (cache, loads, rev) = scan_now(&mut client, pipeline).await;
    let mut w = start_watch(&config, pipeline, cache, loads, rev + 1).await;

    let (k, v) = collection(1001);
    put(&mut client, k, v).await;
    let (k, v) = partition(1001, 10011);
    put(&mut client, k, v).await;
    assert_eq!(next(&mut w.rx).await, "collection 1001 live=true");
    assert_eq!(next(&mut w.rx).await, "partition 10011");

    etcd.stop("KILL");
    wait_outage(pipeline, true).await;
    let outage = &cdc_engine::retry::reconnecting(pipeline)[0];
    assert_eq!(outage.dependency, "etcd");
    tokio::time::sleep(Duration::from_secs(3)).await;
    etcd.start();
    let mut client = connect(&config).await.expect("reconnect");
    let (k, v) = partition(1001, 10012);
    put(&mut client, k, v).await;
    assert_eq!(next(&mut w.rx).await, "partition 10012", "nothing repeated");
    wait_outage(pipeline, false).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(w.rx.try_recv().is_err(), "nothing more");
    w.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resuming_past_a_compaction_rescans_and_emits_what_it_missed() {
    let dir = private::data_dir("f17-etcd-compact");
    let Some(mut etcd) = private::etcd(&dir, 23795) else {
        return;
    };
    etcd.start();
    let pipeline = "f17_watch_compact";
    let config = cfg(&etcd.endpoint());
    let mut client = connect(&config).await.expect("connect");
    for (k, v) in [collection(3001), partition(3001, 30011)] {
        put(&mut client, k, v).await;
    }
    // The watcher's view at `rev`; then changes it never sees, and a compaction.
    let (cache, loads, rev) = scan_now(&mut client, pipeline).await;
    for (k, v) in [collection(3002), partition(3002, 30021)] {
        put(&mut client, k, v).await;
    }
    let dropped = format!(
        "{META_ROOT}/{}",
        MetaKey::Collection {
            db_id: 1,
            collection_id: 3001
        }
        .relative_key()
    );
    client.delete(dropped, None).await.expect("delete");
    let (k, _) = partition(3001, 30011);
    put(&mut client, k, TOMBSTONE.to_vec()).await;
    let head = client
        .get("x", None)
        .await
        .expect("get")
        .header()
        .map_or(0, |h| h.revision());
    client.compact(head, None).await.expect("compact");

    let mut w = start_watch(&config, pipeline, cache, loads, rev + 1).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(next(&mut w.rx).await);
    }
    assert_eq!(
        got,
        [
            "collection 3001 live=false",
            "collection 3002 live=true",
            "partition 30021"
        ]
    );
    // The watch continues after the rescan.
    let (k, v) = partition(3002, 30022);
    put(&mut client, k, v).await;
    assert_eq!(next(&mut w.rx).await, "partition 30022");
    assert!(w.rx.try_recv().is_err(), "nothing more");
    w.task.abort();
}
