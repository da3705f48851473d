//! The etcd backend against a private etcd: same behaviour as the sled backend, prefixes kept
//! apart, fenced commits refused, an unreachable etcd a clear error.

use super::*;
use crate::testing::PrivateEtcd;

fn offs(pairs: &[(&str, u64)]) -> Offsets {
    pairs
        .iter()
        .map(|(c, o)| (c.to_string(), o.to_be_bytes().to_vec()))
        .collect()
}

fn store(etcd: &PrivateEtcd, prefix: &str) -> EtcdStore {
    let mut cfg = EtcdStateConfig::new(vec![etcd.endpoint.clone()]);
    cfg.prefix = prefix.into();
    EtcdStore::connect(&cfg).unwrap()
}

#[test]
fn behaves_like_the_sled_store() {
    let etcd = PrivateEtcd::start("store");
    let s = store(&etcd, "/cdc-a/");
    assert_eq!(s.prefix(), "cdc-a");
    assert_eq!(s.load("p", "a").unwrap(), SinkCheckpoint::default());
    s.commit("p", "a", 1, &offs(&[("ch0", 5), ("by-dev/ch1", 7)]))
        .unwrap();
    s.commit("p", "b/x", 1, &offs(&[("ch0", 2)])).unwrap();
    s.commit("p", "a", 2, &offs(&[("ch0", 9)])).unwrap();
    let a = s.load("p", "a").unwrap();
    assert_eq!(a.epoch, 2);
    assert_eq!(a.offsets, offs(&[("ch0", 9), ("by-dev/ch1", 7)]));
    assert_eq!(s.load("p", "b/x").unwrap().offsets, offs(&[("ch0", 2)]));
    let mut sinks = s.sinks("p").unwrap();
    sinks.sort();
    assert_eq!(sinks, vec!["a", "b/x"]);
    // a pipeline whose name is a prefix of another does not see its keys
    s.commit("p2", "a", 4, &offs(&[("c", 1)])).unwrap();
    assert!(s.sinks("").unwrap().is_empty());
    assert_eq!(s.load("p2", "a").unwrap().epoch, 4);
    s.delete_pipeline("p").unwrap();
    assert!(s.sinks("p").unwrap().is_empty());
    assert_eq!(s.load("p2", "a").unwrap().epoch, 4);

    // tasks, and a second prefix that sees nothing of the first
    s.put_task("t1", b"{\"x\":1}").unwrap();
    s.put_task("t0", b"{}").unwrap();
    s.commit("t1", "sink", 3, &offs(&[("c", 1)])).unwrap();
    let other = store(&etcd, "cdc-b");
    assert!(other.list_tasks().unwrap().is_empty());
    assert!(other.get_task("t1").unwrap().is_none());
    other.put_task("t1", b"other").unwrap();
    let ids: Vec<String> = s.list_tasks().unwrap().into_iter().map(|t| t.0).collect();
    assert_eq!(ids, vec!["t0", "t1"]);
    assert_eq!(s.get_task("t1").unwrap().unwrap(), b"{\"x\":1}");
    s.delete_task("t1").unwrap();
    assert!(s.get_task("t1").unwrap().is_none());
    assert_eq!(s.load("t1", "sink").unwrap(), SinkCheckpoint::default());
    assert_eq!(other.get_task("t1").unwrap().unwrap(), b"other");

    // a fresh connection reads what was committed
    drop(s);
    let s = store(&etcd, "cdc-a");
    assert_eq!(s.load("p2", "a").unwrap().epoch, 4);
}

#[test]
fn a_fenced_commit_writes_nothing() {
    let etcd = PrivateEtcd::start("fence");
    let s = store(&etcd, "cdc");
    let owner_key = b"cdc/owners/t".to_vec();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut c = s.client();
    let rev = rt.block_on(async {
        let r = c.put(owner_key.clone(), "me", None).await.unwrap();
        r.header().unwrap().revision()
    });
    s.set_fence(
        "t",
        Some(Fence {
            key: owner_key.clone(),
            create_revision: rev,
            holder: "me".into(),
        }),
    );
    s.commit("t", "k", 1, &offs(&[("c", 1)])).unwrap();
    // another instance took the key over (deleted and re-created: a new create revision)
    rt.block_on(async {
        c.delete(owner_key.clone(), None).await.unwrap();
        c.put(owner_key.clone(), "other", None).await.unwrap();
    });
    match s.commit("t", "k", 2, &offs(&[("c", 2)])) {
        Err(StateError::Fenced { pipeline, message }) => {
            assert_eq!(pipeline, "t");
            assert!(message.contains("no longer owns"), "{message}");
        }
        other => panic!("fenced commit was not refused: {other:?}"),
    }
    let cp = s.load("t", "k").unwrap();
    assert_eq!((cp.epoch, cp.offsets), (1, offs(&[("c", 1)])));
    assert_eq!(s.fenced_commits(), 1);
    let by = rt.block_on(async {
        let r = c
            .get("cdc/checkpoints/t/k/committed_by", None)
            .await
            .unwrap();
        r.kvs().first().map(|kv| kv.value().to_vec())
    });
    assert_eq!(by.as_deref(), Some(&b"me"[..]), "the writer is recorded");
    // other pipelines are not fenced; lifting the fence lets commits through again
    s.commit("u", "k", 1, &offs(&[("c", 1)])).unwrap();
    s.set_fence("t", None);
    s.commit("t", "k", 3, &offs(&[("c", 3)])).unwrap();
    assert_eq!(s.load("t", "k").unwrap().epoch, 3);
}

#[test]
fn unreachable_etcd_and_bad_config_are_clear_errors() {
    let mut cfg = EtcdStateConfig::new(vec!["127.0.0.1:1".into()]);
    cfg.timeout_ms = 300;
    let e = EtcdStore::connect(&cfg)
        .err()
        .expect("connected to nothing");
    assert!(e.to_string().contains("cannot reach etcd"), "{e}");
    assert!(e.to_string().contains("127.0.0.1:1"), "{e}");
    cfg.prefix = "/".into();
    let e = EtcdStore::connect(&cfg).err().unwrap();
    assert!(e.to_string().contains("state.etcd.prefix"), "{e}");
}

#[test]
fn requests_fail_cleanly_while_etcd_is_down_and_work_after() {
    let mut etcd = PrivateEtcd::start("down");
    let mut cfg = EtcdStateConfig::new(vec![etcd.endpoint.clone()]);
    cfg.timeout_ms = 500;
    let s = EtcdStore::connect(&cfg).unwrap();
    s.commit("p", "k", 1, &offs(&[("c", 1)])).unwrap();
    etcd.stop();
    let e = s.commit("p", "k", 2, &offs(&[("c", 2)])).unwrap_err();
    assert!(e.to_string().contains("commit a checkpoint"), "{e}");
    etcd.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while s.load("p", "k").is_err() {
        assert!(std::time::Instant::now() < deadline, "no reconnect");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(s.load("p", "k").unwrap().epoch, 1);
    s.commit("p", "k", 3, &offs(&[("c", 3)])).unwrap();
}

#[test]
fn a_conditional_task_write_refuses_a_changed_document() {
    let etcd = PrivateEtcd::start("cas");
    let s = store(&etcd, "cdc");
    assert!(s.put_task_if("t", b"v1", None).unwrap());
    assert!(!s.put_task_if("t", b"v2", None).unwrap(), "exists already");
    assert!(s.put_task_if("t", b"v2", Some(b"v1")).unwrap());
    // another writer changed it: a write based on v2 is refused and changes nothing
    s.put_task("t", b"paused elsewhere").unwrap();
    assert!(!s.put_task_if("t", b"v3", Some(b"v2")).unwrap());
    assert_eq!(s.get_task("t").unwrap().unwrap(), b"paused elsewhere");
}
