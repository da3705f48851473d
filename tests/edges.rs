//! The edges of a run, through the real `milvus-cdc run` on the dev services: what a user does
//! right after the CDC started must be replicated, also when the CDC is killed before its
//! first periodic checkpoint.

use std::time::{Duration, Instant};

use cdc_e2e::{Cdc, Env};

/// A pipeline for the collections of `default` named `{prefix}*`, checkpointed only every
/// `interval_ms` (the start barrier is then the only checkpoint for a while).
fn pipeline(env: &Env, name: &str, prefix: &str, interval_ms: u64) -> String {
    format!(
        "name: {name}\n{source}transforms:\n  - filter:\n      include: [\"default.{prefix}*\"]\n\
         sinks:\n  target:\n    milvus:\n      uri: {target}\n      write: upsert\n\
         checkpoint:\n  interval_ms: {interval_ms}\n",
        source = env.source_yaml(),
        target = env.target_uri,
    )
}

fn stamp() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() % 100_000_000)
        .unwrap_or(0)
}

/// `quick.py inspect` of one collection on `uri`.
fn inspect(env: &Env, uri: &str, coll: &str) -> serde_json::Value {
    let (ok, out) = env.py("quick.py", &["inspect", "--uri", uri, "--coll", coll]);
    assert!(ok, "inspect {coll}: {out}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("inspect {coll}: {e}: {out}"))
}

/// Wait until the target has `coll` loaded, indexed, with `rows` distinct rows.
fn wait_target(env: &Env, cdc: &Cdc, coll: &str, rows: u64, timeout: Duration) {
    let start = Instant::now();
    loop {
        let v = inspect(env, &env.target_uri, coll);
        let indexed = v["indexes"].as_array().is_some_and(|a| !a.is_empty());
        if v["loaded"] == true && indexed && v["rows"] == rows && v["ids"] == rows {
            return;
        }
        if start.elapsed() > timeout {
            let warn: Vec<String> = cdc.log_lines("WARN");
            panic!(
                "target {coll} is {v} after {timeout:?}, expected {rows} rows loaded and indexed; \
                 CDC warnings:\n{}",
                warn.join("\n")
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// A fresh `run` with `start: latest` logs that its start is stored; right then a user script
/// creates a collection (index + load) and inserts 1,000 rows, and the CDC is killed before
/// any periodic checkpoint. The restarted CDC must
/// replicate all of it. Five times, each a new pipeline.
#[test]
fn changes_right_after_the_start_survive_a_kill_before_the_first_checkpoint() {
    let Some(env) = Env::get("changes_right_after_the_start_survive_a_kill") else {
        return;
    };
    let prefix = format!("edge{}_", stamp());
    for round in 0..5 {
        let dir = tempfile::tempdir().expect("tempdir");
        let coll = format!("{prefix}{round}");
        let yaml = pipeline(&env, &format!("edge-start-{round}"), &prefix, 600_000);
        let mut cdc = Cdc::start(&env, dir.path(), &yaml);
        cdc.wait_log("Start positions stored", Duration::from_secs(60));
        let (ok, out) = env.py(
            "quick.py",
            &["create-insert", "--uri", &env.source_uri, "--coll", &coll],
        );
        assert!(ok, "create-insert {coll}: {out}");
        cdc.kill9();
        let cdc = Cdc::start(&env, dir.path(), &yaml);
        wait_target(&env, &cdc, &coll, 1000, Duration::from_secs(120));
    }
    for uri in [&env.source_uri, &env.target_uri] {
        let (ok, out) = env.py("quick.py", &["drop", "--uri", uri, "--prefix", &prefix]);
        assert!(ok, "drop: {out}");
    }
}

/// A filtered pipeline while another client works on the same source: it drops a database and
/// at once creates a 2-shard collection in `default` (outside the filter), the sequence after
/// which a CreateCollection once reached the sink as `default.""` (RootCoord broadcasts it
/// before the collection's etcd entry exists, and with no live collection on the source the
/// merger released it before the watch named it). The pipeline must keep running, replicate
/// its own collection, and nothing of the other client's.
#[test]
fn other_clients_activity_never_reaches_a_filtered_pipeline() {
    let Some(env) = Env::get("other_clients_activity_never_reaches_a_filtered_pipeline") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let prefix = format!("edgeo{}_", stamp());
    let ours = format!("{prefix}hx");
    let mut cdc = Cdc::start(&env, dir.path(), &pipeline(&env, "edge-other", &ours, 1000));
    for round in 0..5 {
        let (ok, out) = env.py(
            "quick.py",
            &[
                "other-client",
                "--uri",
                &env.source_uri,
                "--prefix",
                &prefix,
                "--round",
                &round.to_string(),
            ],
        );
        assert!(ok, "other client, round {round}: {out}");
        let coll = format!("{ours}{round}");
        let (ok, out) = env.py(
            "quick.py",
            &["create-insert", "--uri", &env.source_uri, "--coll", &coll],
        );
        assert!(ok, "create-insert {coll}: {out}");
        assert!(
            cdc.is_running(),
            "the pipeline stopped:\n{}",
            cdc.log_text()
        );
        wait_target(&env, &cdc, &coll, 1000, Duration::from_secs(120));
        let other = inspect(&env, &env.target_uri, &format!("{prefix}other{round}"));
        assert_eq!(other["exists"], false, "out of scope, replicated: {other}");
        // The next round starts with no live collection of this test on the source (every
        // channel idle: the case where only the etcd watch can name a new collection).
        let (ok, out) = env.py(
            "quick.py",
            &["drop", "--uri", &env.source_uri, "--prefix", &prefix],
        );
        assert!(ok, "drop: {out}");
    }
    assert!(
        cdc.log_lines("unattributed").is_empty(),
        "a change could not be attributed:\n{}",
        cdc.log_lines("unattributed").join("\n")
    );
    for uri in [&env.source_uri, &env.target_uri] {
        let (ok, out) = env.py("quick.py", &["drop", "--uri", uri, "--prefix", &prefix]);
        assert!(ok, "drop: {out}");
    }
}
