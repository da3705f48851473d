//! Ownership against a private etcd: one owner per task, a clear refusal naming the owner,
//! and a dead owner (lease gone) fenced off while another instance takes the task.

use std::sync::Arc;

use cdc_state::testing::PrivateEtcd;
use cdc_state::{EtcdStateConfig, EtcdStore, StateStore};

use super::*;

fn member(etcd: &PrivateEtcd, id: &str) -> (Arc<EtcdStore>, Arc<Cluster>) {
    let mut cfg = EtcdStateConfig::new(vec![etcd.endpoint.clone()]);
    cfg.prefix = "h16-unit".into();
    let store = Arc::new(EtcdStore::connect(&cfg).unwrap());
    let c = Cluster::new(store.clone(), id.into(), format!("http://{id}"), 3);
    (store, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_owner_per_task_and_a_dead_owner_is_fenced() {
    let etcd = PrivateEtcd::start("h16-cluster-unit");
    let (store_a, a) = member(&etcd, "a");
    let (store_b, b) = member(&etcd, "b");
    // no lease yet: a clear refusal
    let e = a.acquire("t").await.unwrap_err();
    assert!(e.message.contains("no etcd lease"), "{}", e.message);
    let lease_a = a.join().await.unwrap();
    b.join().await.unwrap();
    a.acquire("t").await.unwrap();
    a.acquire("t").await.unwrap(); // idempotent
    assert!(a.owns("t"));
    // forgotten by mistake while its key is still under a's lease: taken back, same key
    let rev = a.inner().owned["t"];
    a.forget("t");
    a.acquire("t").await.unwrap();
    assert_eq!(a.inner().owned.get("t"), Some(&rev));
    let e = b.acquire("t").await.unwrap_err();
    assert!(e.message.contains("instance \"a\""), "{}", e.message);
    let offs: cdc_state::Offsets = [("ch".to_string(), vec![1])].into();
    let sa = store_a.clone();
    let o = offs.clone();
    tokio::task::spawn_blocking(move || sa.commit("t", "k", 1, &o))
        .await
        .unwrap()
        .unwrap();

    // a "dies": its lease ends (as after kill -9 and the TTL), b takes the task over
    let mut client = store_b.client();
    client.lease_revoke(lease_a).await.unwrap();
    b.acquire("t").await.unwrap();
    let owners = b.owners().await.unwrap();
    assert_eq!(owners["t"].0, "b");
    // a still believes it owns t, but its commits are refused and change nothing
    assert!(a.owns("t"));
    let sa = store_a.clone();
    let o = offs.clone();
    let r = tokio::task::spawn_blocking(move || sa.commit("t", "k", 2, &o))
        .await
        .unwrap();
    assert!(
        matches!(r, Err(cdc_state::StateError::Fenced { .. })),
        "{r:?}"
    );
    let sb = store_b.clone();
    let cp = tokio::task::spawn_blocking(move || sb.load("t", "k"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cp.epoch, 1);
    // b commits; releasing a key that is not ours any more leaves b's key alone
    let sb = store_b.clone();
    tokio::task::spawn_blocking(move || sb.commit("t", "k", 2, &offs))
        .await
        .unwrap()
        .unwrap();
    a.release("t").await;
    assert_eq!(b.owners().await.unwrap()["t"].0, "b");
    b.release("t").await;
    assert!(b.owners().await.unwrap().is_empty());
    let described = b.instances().await.unwrap();
    assert!(described.contains_key("b"), "{described:?}");
    assert!(
        !described.contains_key("a"),
        "a's registration outlived its lease"
    );
}

fn manager(store: Arc<EtcdStore>, c: &Arc<Cluster>) -> Arc<TaskManager> {
    let cfg = crate::config::ServerConfig::parse(
        "source:\n  etcd: { endpoints: [\"127.0.0.1:1\"], timeout_ms: 300 }\n  \
         mq: { kafka: { brokers: [\"127.0.0.1:1\"] } }\n",
        "test",
    )
    .unwrap();
    let m = TaskManager::new(cfg, store);
    let _ = m.cluster.set(c.clone());
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_stored_through_another_instance_is_not_overwritten() {
    let etcd = PrivateEtcd::start("h16-cas-unit");
    let (store_a, a) = member(&etcd, "a");
    let (store_b, b) = member(&etcd, "b");
    let (ma, mb) = (manager(store_a.clone(), &a), manager(store_b.clone(), &b));
    let doc = TaskDoc {
        task_id: "t".into(),
        origin: crate::task::Origin::Pipeline,
        name: None,
        request: None,
        spec: Value::Null,
        state: TaskState::Paused,
        reason: "manually pause through http interface".into(),
        disable_auto_start: false,
        withheld: Vec::new(),
        created_ms: 1,
        updated_ms: 1,
    };
    let bytes = serde_json::to_vec(&doc).unwrap();
    let s = store_a.clone();
    tokio::task::spawn_blocking(move || s.put_task("t", &bytes))
        .await
        .unwrap()
        .unwrap();
    let slot_a = ma.register(doc.clone(), Vec::new());
    let slot_b = mb.register(doc, Vec::new());
    // a starts a resume from what it read; meanwhile b stores another state
    let read = ma.refresh_doc(&slot_a).await.unwrap();
    assert!(read.is_some());
    let read_b = mb.refresh_doc(&slot_b).await.unwrap();
    assert!(mb
        .set_state_if(&slot_b, TaskState::Paused, "paused through b", read_b)
        .await
        .unwrap());
    // a's Running is refused, and a's mirror now shows b's state
    let written = ma
        .set_state_if(&slot_a, TaskState::Running, "", read)
        .await
        .unwrap();
    assert!(!written, "a overwrote the state b stored");
    let now = slot_a.snapshot();
    assert_eq!(
        (now.state, now.reason.as_str()),
        (TaskState::Paused, "paused through b")
    );
    // deleted through b: a's next operation finds it gone and re-creates nothing
    let s = store_b.clone();
    tokio::task::spawn_blocking(move || s.delete_task("t"))
        .await
        .unwrap()
        .unwrap();
    let e = ma.refresh_doc(&slot_a).await.unwrap_err();
    assert!(e.not_found, "{}", e.message);
    let stale = Some(serde_json::to_vec(&slot_a.snapshot()).unwrap());
    assert!(!ma
        .set_state_if(&slot_a, TaskState::Paused, "", stale)
        .await
        .unwrap());
    let s = store_a.clone();
    let gone = tokio::task::spawn_blocking(move || s.get_task("t"))
        .await
        .unwrap()
        .unwrap();
    assert!(gone.is_none(), "a deleted task came back");
}
