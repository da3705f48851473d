//! End-to-end tests of a cluster of `milvus-cdc serve` instances sharing a private etcd
//! (state and ownership) while replicating the dev source Milvus (19530) to the target (19531):
//! kill -9 of a task's owner, takeover from the committed checkpoint, an instance cut from
//! etcd for longer than the TTL; the target must end equal to the source, row by row, without
//! duplicates. Auth is on (bearer tokens) for every request the tests send.
//!
//! Skipped unless `MCDC_E2E` is set (hold `/work/e2e.lock` here); needs the `etcd` binary and
//! `MILVUS_CDC_BIN` built (`cargo build -p milvus-cdc`).

use std::process::{Child, Command};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use cdc_state::testing::PrivateEtcd;
use serde_json::json;

#[path = "support/harness.rs"]
mod harness;
#[path = "support/history.rs"]
mod history;

use harness::*;

#[test]
fn two_instances_three_tasks_kill_the_owner_three_times() {
    let Some(env) = env("two_instances_three_tasks_kill_the_owner_three_times") else {
        return;
    };
    let etcd = PrivateEtcd::start("h16-kill");
    let dir = tempfile::tempdir().unwrap();
    let tag = tag();
    let dbs: Vec<String> = (0..3).map(|i| format!("h16_k{i}_{tag}")).collect();
    let mut a = Instance::new(&env, dir.path(), "a", &etcd.endpoint, "h16kill");
    let mut b = Instance::new(&env, dir.path(), "b", &etcd.endpoint, "h16kill");
    let tasks = create_tasks(&env, &a, &dbs);
    for db in &dbs {
        env.helper(&["setup", "--uri", &env.source, "--db", db]);
    }
    // spread: the creator hands tasks back until both run some
    let t = Instant::now();
    loop {
        let owners = wait_owned(&b, &tasks, &["a", "b"], Duration::from_secs(60));
        if owners.iter().any(|(_, o)| o == "b") && owners.iter().any(|(_, o)| o == "a") {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "tasks not spread: {owners:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let per_round = 300;
    let mut rows = 0;
    let mut takeovers = Vec::new();
    for round in 0..3 {
        let owners = wait_owned(&a, &tasks, &["a", "b"], Duration::from_secs(60));
        let victim = owners[round % owners.len()].1.clone();
        // load while the owner dies
        let inserts: Vec<Child> = dbs
            .iter()
            .map(|db| env.insert(db, rows, per_round))
            .collect();
        std::thread::sleep(Duration::from_millis(700));
        let (dead, alive) = if victim == "a" {
            (&mut a, &mut b)
        } else {
            (&mut b, &mut a)
        };
        dead.kill9();
        let killed = Instant::now();
        let survivor = alive.name.clone();
        wait_owned(
            alive,
            &tasks,
            &[survivor.as_str()],
            Duration::from_secs(TTL * 5),
        );
        takeovers.push(killed.elapsed());
        for mut c in inserts {
            assert!(c.wait().unwrap().success(), "insert failed");
        }
        rows += per_round;
        for db in &dbs {
            env.wait_count(db, rows, &[alive]);
        }
        eprintln!(
            "round {round}: killed {victim}, {survivor} owned every task {:?} later",
            takeovers[round]
        );
        dead.start();
    }
    finish(&env, &dbs, rows, &[&a, &b]);
    eprintln!(
        "takeover times (kill -9 to every task owned by the survivor, TTL {TTL} s): {takeovers:?}"
    );
    let log = a.log_tail(100000) + &b.log_tail(100000);
    assert!(!log.contains(ADMIN), "a token in the log");
    let h = history::check(&etcd.endpoint, "h16kill", 0);
    eprintln!("checkpoint commits per instance: {:?}", h.commits);
    assert!(h.violations.is_empty(), "{:#?}", h.violations);
    assert!(
        h.commits.len() == 2,
        "both instances committed: {:?}",
        h.commits
    );
    drop((a, b));
    cleanup(&env, &dbs);
}

#[test]
fn an_instance_cut_from_etcd_stops_committing_and_the_survivor_stays_exact() {
    let Some(env) = env("an_instance_cut_from_etcd_stops_committing") else {
        return;
    };
    let etcd = PrivateEtcd::start("h16-cut");
    let proxy = CutProxy::start(etcd.endpoint.clone());
    let dir = tempfile::tempdir().unwrap();
    let tag = tag();
    let dbs: Vec<String> = (0..2).map(|i| format!("h16_c{i}_{tag}")).collect();
    // a reaches etcd through the proxy, b directly; a creates (and owns) the tasks first
    let a = Instance::new(
        &env,
        dir.path(),
        "a",
        &format!("127.0.0.1:{}", proxy.port),
        "h16cut",
    );
    let tasks = create_tasks(&env, &a, &dbs);
    for db in &dbs {
        env.helper(&["setup", "--uri", &env.source, "--db", db]);
    }
    let mut rows = 0;
    for db in &dbs {
        let mut c = env.insert(db, rows, 200);
        assert!(c.wait().unwrap().success());
    }
    rows += 200;
    for db in &dbs {
        env.wait_count(db, rows, &[&a]);
    }
    let b = Instance::new(&env, dir.path(), "b", &etcd.endpoint, "h16cut");
    proxy.cut.store(true, Ordering::SeqCst);
    let cut_at = Instant::now();
    // The relay drops its connections within 200 ms, yet commits of a were seen landing up to
    // ~2 s after the cut (not understood yet: in-flight requests or a reconnect through the
    // relay). Every one of them was made under a's valid lease (no history violation); count
    // from when that lease has certainly expired (TTL + 1 s): from then on a must not commit.
    std::thread::sleep(Duration::from_secs(TTL + 1));
    let rev_cut = history::revision(&etcd.endpoint);
    let inserts: Vec<Child> = dbs.iter().map(|db| env.insert(db, rows, 200)).collect();
    wait_owned(&b, &tasks, &["b"], Duration::from_secs(TTL * 5));
    let takeover = cut_at.elapsed();
    for mut c in inserts {
        assert!(c.wait().unwrap().success());
    }
    rows += 200;
    // a noticed and stopped its pipelines
    let t = Instant::now();
    while a.log_count("giving up every task") == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(TTL * 3),
            "a kept its tasks:\n{}",
            a.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for db in &dbs {
        env.wait_count(db, rows, &[&a, &b]);
    }
    // while cut, only b committed, and only while it held the ownership keys
    let h = history::check(&etcd.endpoint, "h16cut", rev_cut);
    eprintln!("commits since the cut: {:?}", h.commits_after);
    assert!(h.violations.is_empty(), "{:#?}", h.violations);
    assert_eq!(h.commits_after.get("a"), None, "a committed while cut");
    assert!(h.commits_after.get("b").is_some_and(|n| *n > 0));
    // back: a rejoins, takes its share, and nothing is doubled
    proxy.cut.store(false, Ordering::SeqCst);
    let t = Instant::now();
    while a.log_count("Joined the cluster") < 2 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "a did not rejoin:\n{}",
            a.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for db in &dbs {
        let mut c = env.insert(db, rows, 100);
        assert!(c.wait().unwrap().success());
    }
    rows += 100;
    finish(&env, &dbs, rows, &[&a, &b]);
    eprintln!("cut at TTL {TTL} s: b owned every task {takeover:?} after the cut");
    let h = history::check(&etcd.endpoint, "h16cut", 0);
    assert!(h.violations.is_empty(), "{:#?}", h.violations);
    drop((a, b));
    cleanup(&env, &dbs);
}

#[test]
fn any_instance_answers_and_acts_for_any_task() {
    let Some(env) = env("any_instance_answers_and_acts_for_any_task") else {
        return;
    };
    let etcd = PrivateEtcd::start("h16-any");
    let dir = tempfile::tempdir().expect("tempdir");
    let dbs = vec![format!("h16_any_{}", tag())];
    let a = Instance::new(&env, dir.path(), "a", &etcd.endpoint, "h16any");
    let b = Instance::new(&env, dir.path(), "b", &etcd.endpoint, "h16any");
    let tasks = create_tasks(&env, &a, &dbs);
    let id = tasks[0].clone();
    wait_owned(&b, &tasks, &["a"], Duration::from_secs(10));
    let get = |i: &Instance| {
        let v = i.api(
            "POST",
            "/cdc",
            &json!({ "request_type": "get", "request_data": { "task_id": id } }).to_string(),
        );
        v["data"]["task"]["state"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(get(&b), "Running");
    // pause through b: a (the owner) stops it and lets the key go
    let v = b.api("POST", &format!("/tasks/{id}/pause"), "");
    assert_eq!(v["code"], 200, "{v}");
    let t = Instant::now();
    while a.log_count("Stopping a task paused or handed back") == 0 || get(&a) != "Paused" {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "a did not stop:\n{}",
            a.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let t = Instant::now();
    while b.owners().iter().any(|(_, o)| o.is_some()) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "key kept: {:?}",
            b.owners()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // resume through b: b runs it now, and replicates
    let v = b.api("POST", &format!("/tasks/{id}/resume"), "");
    assert_eq!(v["code"], 200, "{v}");
    wait_owned(&a, &tasks, &["b"], Duration::from_secs(10));
    env.helper(&["setup", "--uri", &env.source, "--db", &dbs[0]]);
    let mut c = env.insert(&dbs[0], 0, 50);
    assert!(c.wait().expect("insert").success());
    finish(&env, &dbs, 50, &[&a, &b]);
    // delete through a: b stops it, both forget it
    let v = a.api("DELETE", &format!("/tasks/{id}"), "");
    assert_eq!(v["code"], 200, "{v}");
    let t = Instant::now();
    while b.log_count("Task deleted through another instance") == 0 || !b.owners().is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "b kept it:\n{}",
            b.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            &etcd.endpoint,
            "get",
            "--prefix",
            "h16any/",
            "--keys-only",
        ])
        .output()
        .expect("etcdctl");
    let keys = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        !keys.contains(&id),
        "keys of the deleted task remain: {keys}"
    );
    drop((a, b));
    cleanup(&env, &dbs);
}

/// The classic fencing case: the owner freezes (SIGSTOP: a long GC pause, a VM stall) for
/// longer than the TTL, the other instance takes its tasks over, then the old owner wakes up
/// with its pipelines mid-flight and tries to commit. etcd must refuse every such commit
/// (counted in its log and `GET /cluster`), and the history must show no commit by it while
/// it did not hold the task's key (it may rejoin and take a task back afterwards).
#[test]
fn a_frozen_owner_wakes_up_fenced_and_commits_nothing() {
    let Some(env) = env("a_frozen_owner_wakes_up_fenced_and_commits_nothing") else {
        return;
    };
    let etcd = PrivateEtcd::start("h16-freeze");
    let dir = tempfile::tempdir().expect("tempdir");
    let tag = tag();
    let dbs: Vec<String> = (0..2).map(|i| format!("h16_f{i}_{tag}")).collect();
    let a = Instance::new(&env, dir.path(), "a", &etcd.endpoint, "h16frz");
    let tasks = create_tasks(&env, &a, &dbs);
    for db in &dbs {
        env.helper(&["setup", "--uri", &env.source, "--db", db]);
    }
    let b = Instance::new(&env, dir.path(), "b", &etcd.endpoint, "h16frz");
    let mut rows = 0;
    for db in &dbs {
        let mut c = env.insert(db, rows, 200);
        assert!(c.wait().expect("insert").success());
    }
    rows += 200;
    for db in &dbs {
        env.wait_count(db, rows, &[&a, &b]);
    }
    let owners = wait_owned(&b, &tasks, &["a", "b"], Duration::from_secs(30));
    let frozen: Vec<String> = owners
        .iter()
        .filter(|(_, o)| o == "a")
        .map(|(t, _)| t.clone())
        .collect();
    assert!(!frozen.is_empty(), "a owns nothing: {owners:?}");
    // freeze a while rows keep coming
    let inserts: Vec<Child> = dbs.iter().map(|db| env.insert(db, rows, 300)).collect();
    std::thread::sleep(Duration::from_millis(500));
    a.signal("STOP");
    let frozen_at = Instant::now();
    wait_owned(&b, &tasks, &["b"], Duration::from_secs(TTL * 5));
    let takeover = frozen_at.elapsed();
    let rev_takeover = history::revision(&etcd.endpoint);
    for mut c in inserts {
        assert!(c.wait().expect("insert").success());
    }
    rows += 300;
    std::thread::sleep(Duration::from_secs(1));
    a.signal("CONT");
    let t = Instant::now();
    while a.log_count("Checkpoint commit refused") == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "a never tried to commit after waking up:\n{}",
            a.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let refused = a.log_count("Checkpoint commit refused");
    for db in &dbs {
        env.wait_count(db, rows, &[&a, &b]);
    }
    let h = history::check(&etcd.endpoint, "h16frz", rev_takeover);
    eprintln!(
        "frozen owner: b owned every task {takeover:?} after SIGSTOP (TTL {TTL} s); a's \
         commits refused after waking: {refused}; commits since the takeover: {:?}",
        h.commits_after
    );
    assert!(h.violations.is_empty(), "{:#?}", h.violations);
    // a may rejoin and take a task back; every commit it made was made holding a key
    let v = a.api("GET", "/cluster", "");
    assert!(
        v["data"]["fenced_commits"].as_u64().is_some_and(|n| n > 0),
        "{v}"
    );
    // a is back in the cluster; more rows, and the target is still exact
    for db in &dbs {
        let mut c = env.insert(db, rows, 100);
        assert!(c.wait().expect("insert").success());
    }
    rows += 100;
    finish(&env, &dbs, rows, &[&a, &b]);
    assert!(history::check(&etcd.endpoint, "h16frz", 0)
        .violations
        .is_empty());
    drop((a, b));
    cleanup(&env, &dbs);
}
