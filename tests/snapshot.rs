//! Snapshot + incremental (`source.milvus.snapshot`): a source that already holds data when
//! the pipeline starts ends equal to the target, with writes during the copy; a `kill -9` in
//! the middle of the copy resumes it; row-level sinks get the copied rows as `op: "r"`.
//!
//! The source is seeded by `tests/py/snapshot_seed.py` (int64, varchar and autoID keys, a
//! partition, deletes already applied, JSON/ARRAY/dynamic fields, a binary-vector collection
//! left unloaded). `MCDC_SNAPSHOT_ROWS` sets the seeded rows of the first test (default 20000).

use std::path::Path;
use std::time::Duration;

use cdc_e2e::{Cdc, Env};

/// A pipeline over the collections of `prefix` (database `default` and `{prefix}db`) with a
/// snapshot (`snapshot` is the inside of its braces) and the given sinks block.
fn pipeline(env: &Env, name: &str, prefix: &str, snapshot: &str, sinks: &str) -> String {
    format!(
        "name: {name}\n{source}    uri: {uri}\n    snapshot: {{ {snapshot} }}\n\
         transforms:\n  - filter:\n      include: [\"default.{prefix}*\", \"{prefix}db.*\"]\n\
         sinks:\n{sinks}checkpoint:\n  interval_ms: 500\n",
        source = env.source_yaml(),
        uri = env.source_uri,
    )
}

fn milvus_sink(env: &Env) -> String {
    format!(
        "  target:\n    milvus:\n      uri: {}\n      mode: api\n      write: upsert\n",
        env.target_uri
    )
}

fn seed(env: &Env, prefix: &str, rows: u64, extra: &[&str]) {
    let rows = rows.to_string();
    let mut args = vec![
        "seed",
        "--prefix",
        prefix,
        "--rows",
        &rows,
        "--uri",
        &env.source_uri,
    ];
    args.extend_from_slice(extra);
    let (ok, out) = env.py("snapshot_seed.py", &args);
    assert!(ok, "seeding failed:\n{out}");
    eprintln!("{}", out.trim());
}

fn drop_all(env: &Env, prefix: &str) {
    for uri in [&env.source_uri, &env.target_uri] {
        let (ok, out) = env.py(
            "snapshot_seed.py",
            &["drop", "--prefix", prefix, "--uri", uri],
        );
        assert!(ok, "dropping {prefix} on {uri} failed:\n{out}");
    }
}

/// Compare with `compare.py` restricted to the prefix's collections and database; loads
/// unloaded collections for reading when `load` (only with the CDC stopped).
fn compare(env: &Env, prefix: &str, load: bool) -> Result<(), String> {
    let db = format!("{prefix}db");
    let mut args = vec![
        env.source_uri.as_str(),
        env.target_uri.as_str(),
        "--prefix",
        prefix,
        "--db",
        "default",
        "--db",
        &db,
    ];
    if !load {
        args.extend(["--load", "never"]);
    }
    let (ok, out) = env.py("compare.py", &args);
    if ok {
        Ok(())
    } else {
        Err(out)
    }
}

fn wait_equal(env: &Env, prefix: &str, timeout: Duration) {
    let start = std::time::Instant::now();
    loop {
        match compare(env, prefix, false) {
            Ok(()) => return,
            Err(d) if start.elapsed() > timeout => panic!("target differs after {timeout:?}:\n{d}"),
            Err(_) => std::thread::sleep(Duration::from_secs(2)),
        }
    }
}

/// The `rows=` figure of the "Snapshot complete" line.
fn snapshot_rows(cdc: &Cdc) -> u64 {
    let line = cdc
        .log_lines("Snapshot complete")
        .pop()
        .expect("a Snapshot complete line");
    let clean: String = strip_ansi(&line);
    clean
        .split_whitespace()
        .find_map(|w| w.strip_prefix("rows=").and_then(|n| n.parse().ok()))
        .unwrap_or_else(|| panic!("no rows= in {clean}"))
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut esc = false;
    for c in s.chars() {
        match (esc, c) {
            (false, '\x1b') => esc = true,
            (true, 'm') => esc = false,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}

#[test]
fn snapshot_then_stream_equals_the_source_with_writes_during_the_copy() {
    let Some(env) = Env::get("snapshot_then_stream_equals_the_source_with_writes_during_the_copy")
    else {
        return;
    };
    let prefix = "s14a_";
    let rows: u64 = std::env::var("MCDC_SNAPSHOT_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    drop_all(&env, prefix);
    seed(&env, prefix, rows, &[]);
    let dir = tempfile::tempdir().unwrap();
    let yaml = pipeline(
        &env,
        "s14-snapshot",
        prefix,
        "mode: initial, load: temporary, batch_rows: 1000, parallelism: 2",
        &milvus_sink(&env),
    );
    let mut cdc = Cdc::start(&env, dir.path(), &yaml);
    // Inserts, upserts and deletes while the copy runs: the stream replays them after it.
    let writer = {
        let env = env.clone();
        std::thread::spawn(move || {
            let (ok, out) = env.py(
                "snapshot_seed.py",
                &[
                    "writer",
                    "--prefix",
                    prefix,
                    "--seconds",
                    "8",
                    "--uri",
                    &env.source_uri,
                ],
            );
            assert!(ok, "writer failed:\n{out}");
            eprintln!("{}", out.trim());
        })
    };
    cdc.wait_log("Snapshot complete", Duration::from_secs(300));
    writer.join().expect("writer");
    assert!(
        snapshot_rows(&cdc) >= rows * 9 / 10,
        "the copy read the seeded rows"
    );
    wait_equal(&env, prefix, Duration::from_secs(120));
    assert!(cdc.stop(), "clean stop");
    // With the CDC stopped, compare the unloaded binary-vector collection's rows too (the
    // compare loads it for reading and releases it again); the target kept its load state.
    compare(&env, prefix, true).unwrap_or_else(|d| panic!("final compare:\n{d}"));
    drop_all(&env, prefix);
}

#[test]
fn kill_minus_nine_during_the_copy_resumes_it() {
    let Some(env) = Env::get("kill_minus_nine_during_the_copy_resumes_it") else {
        return;
    };
    let prefix = "s14k_";
    let rows = 20_000;
    drop_all(&env, prefix);
    seed(&env, prefix, rows, &["--load-all"]);
    let dir = tempfile::tempdir().unwrap();
    let yaml = pipeline(
        &env,
        "s14-kill",
        prefix,
        "mode: initial, batch_rows: 200, parallelism: 1",
        &milvus_sink(&env),
    );
    let mut cdc = Cdc::start(&env, dir.path(), &yaml);
    // The first collection copied, the next ones in progress: committed progress exists.
    cdc.wait_log("Snapshot of a collection read.", Duration::from_secs(120));
    // The progress line shows the copy while it runs: rows of rows, collections of collections.
    cdc.wait_log(" snapshot=", Duration::from_secs(30));
    let line = strip_ansi(&cdc.log_lines(" snapshot=").pop().unwrap_or_default());
    let (done, planned) = line
        .split_once("rows (")
        .and_then(|(_, rest)| rest.split_once(" collections)"))
        .and_then(|(parts, _)| parts.split_once('/'))
        .unwrap_or_else(|| panic!("no `rows (k/n collections)` in the progress line {line}"));
    assert!(
        done.parse::<usize>().is_ok() && planned.parse::<usize>().unwrap_or(0) >= 1,
        "progress line {line}"
    );
    std::thread::sleep(Duration::from_secs(2));
    cdc.kill9();
    assert!(
        cdc.log_lines("Snapshot complete").is_empty(),
        "the kill came after the copy ended; make the copy longer"
    );
    let mut again = Cdc::start(&env, dir.path(), &yaml);
    again.wait_log(
        "Resuming the snapshot where it stood",
        Duration::from_secs(30),
    );
    again.wait_log("Snapshot complete", Duration::from_secs(300));
    let second = snapshot_rows(&again);
    assert!(
        second < rows * 9 / 10,
        "the restart copied {second} rows: it should resume, not copy ~{rows} again"
    );
    wait_equal(&env, prefix, Duration::from_secs(120));
    assert!(again.stop());
    drop_all(&env, prefix);
}

/// Lines of the JSON Lines files under `dir` (recursively).
fn file_events(dir: &Path) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            continue;
        }
        if p.is_dir() {
            out.extend(file_events(&p));
        } else if p.extension().is_some_and(|x| x == "jsonl") {
            for l in std::fs::read_to_string(&p).unwrap_or_default().lines() {
                out.push(serde_json::from_str(l).expect("a JSON line"));
            }
        }
    }
    out
}

#[test]
fn snapshot_only_writes_read_events_to_files_and_stops() {
    let Some(env) = Env::get("snapshot_only_writes_read_events_to_files_and_stops") else {
        return;
    };
    let prefix = "s14f_";
    drop_all(&env, prefix);
    seed(&env, prefix, 3000, &["--load-all"]);
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("events");
    let sinks = format!(
        "  archive:\n    file:\n      path: \"{}\"\n      format: jsonl\n      fsync: false\n",
        files.display()
    );
    let yaml = pipeline(&env, "s14-files", prefix, "mode: only", &sinks);
    let mut cdc = Cdc::start(&env, dir.path(), &yaml);
    cdc.wait_log("Pipeline ended", Duration::from_secs(180));
    std::thread::sleep(Duration::from_secs(1));
    assert!(!cdc.is_running(), "mode: only stops after the copy");
    let events = file_events(&files);
    let reads = events.iter().filter(|e| e["op"] == "r").count() as u64;
    let others: Vec<_> = events
        .iter()
        .filter(|e| e["op"] != "r" && e["op"] != "ddl")
        .collect();
    let copied = snapshot_rows(&cdc);
    assert_eq!(reads, copied, "one read event per copied row");
    assert!(
        copied > 2500,
        "the seeded rows (minus deletes) were read: {copied}"
    );
    assert!(
        others.is_empty(),
        "only reads and DDL: {:?}",
        others.first()
    );
    assert!(
        events.iter().any(|e| e["op"] == "ddl"),
        "the collections' DDL comes first"
    );
    drop_all(&env, prefix);
}
