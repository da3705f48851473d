//! Helpers of the end-to-end tests: the dev-environment check, a source running in a task,
//! the workload's expected operations and the order checks.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use cdc_connector_milvus_source::{MilvusSource, MilvusSourceConfig};
use cdc_engine::{ChangeEvent, Ddl, EngineError, Op, Source};
use cdc_state::Offsets;
use tokio::sync::{mpsc, oneshot};

pub mod private;

pub struct Env {
    pub etcd: String,
    pub kafka: String,
    pub source_uri: String,
    pub python: String,
    pub repo: PathBuf,
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn env_or_skip(test: &str) -> Option<Env> {
    if std::env::var_os("MCDC_E2E").is_none() {
        println!("SKIP {test}: MCDC_E2E is not set (run `scripts/dev-env up` and set MCDC_E2E=1)");
        return None;
    }
    let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    let repo = repo();
    let env = Env {
        etcd: var("MCDC_ETCD", "127.0.0.1:2379"),
        kafka: var("MCDC_KAFKA", "127.0.0.1:19092"),
        source_uri: var("MCDC_SOURCE_URI", "http://127.0.0.1:19530"),
        python: var(
            "MCDC_PYTHON",
            &repo.join(".dev/venv/bin/python").display().to_string(),
        ),
        repo,
    };
    let milvus = env.source_uri.trim_start_matches("http://").to_string();
    for (what, addr) in [
        ("etcd", &env.etcd),
        ("Kafka", &env.kafka),
        ("source Milvus", &milvus),
    ] {
        let ok = addr
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(3)).is_ok());
        assert!(
            ok,
            "MCDC_E2E is set but {what} at {addr} is unreachable: run `scripts/dev-env up`"
        );
    }
    Some(env)
}

pub fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() % 1_000_000_000)
        .unwrap_or(0);
    format!("{tag}{}_{nanos}_", std::process::id())
}

/// The source running in a task, collecting events until stopped.
pub struct Running {
    pub events: mpsc::UnboundedReceiver<Result<ChangeEvent, EngineError>>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<MilvusSource>,
}

pub async fn start(env: &Env, pipeline: &str, resume: &Offsets) -> Running {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "cdc_connector_milvus_source=info".into()),
        )
        .with_test_writer()
        .try_init();
    let cfg = MilvusSourceConfig::kafka(&env.etcd, &env.kafka);
    let mut src = MilvusSource::new(cfg, pipeline).expect("valid config");
    src.open(resume).await.expect("open the source");
    let (tx, events) = mpsc::unbounded_channel();
    let (stop, mut stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                r = src.next() => match r {
                    Ok(Some(ev)) => { let _ = tx.send(Ok(ev)); }
                    Ok(None) => break,
                    Err(e) => { let _ = tx.send(Err(e)); break; }
                },
            }
        }
        src
    });
    Running { events, stop, task }
}

impl Running {
    /// Collects events until `done` says so or `timeout` passes.
    pub async fn collect_until(
        &mut self,
        out: &mut Vec<ChangeEvent>,
        timeout: Duration,
        done: impl Fn(&[ChangeEvent]) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + timeout;
        while !done(out) {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Ok(ev))) => out.push(ev),
                Ok(Some(Err(e))) => panic!("the source failed: {e}"),
                Ok(None) => panic!("the source stopped"),
                Err(_) => return,
            }
        }
    }

    pub async fn stop(self) -> MilvusSource {
        let _ = self.stop.send(());
        self.task.await.expect("source task")
    }
}

pub async fn python(env: &Env, args: &[&str]) -> String {
    let out = tokio::process::Command::new(&env.python)
        .args(args)
        .current_dir(&env.repo)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", env.python));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

pub type Key = (String, String);

pub fn event_key(e: &ChangeEvent) -> Key {
    let fq = format!("{}.{}", e.database, e.collection);
    let part = |p: &str| {
        if p.starts_with("_default_") {
            "_default".to_string()
        } else {
            p.to_string()
        }
    };
    let obj = match &e.op {
        Op::Insert(b) => format!("{fq} {}", part(&b.partition)),
        Op::Ddl(Ddl::CreateDatabase { .. } | Ddl::DropDatabase) => e.database.clone(),
        Op::Ddl(Ddl::CreatePartition { partition } | Ddl::DropPartition { partition }) => {
            format!("{fq} {partition}")
        }
        Op::Ddl(Ddl::CreateIndex(r)) => format!("{fq} {}", r.index_name),
        Op::Ddl(Ddl::DropIndex(r)) => format!("{fq} {}", r.index_name),
        _ => fq,
    };
    (e.op.kind().to_string(), obj)
}

/// Expected keys from the workload's step lines, with the rows each insert/upsert writes.
/// load/release_partitions write nothing to the message queue in Milvus 2.3.5; the source
/// derives them from QueryCoord's etcd keys (one event per call, keyed by collection).
pub fn step_keys(text: &str) -> Vec<(Key, usize)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix("[step ") else {
            continue;
        };
        let Some((_, body)) = rest.split_once("] ") else {
            continue;
        };
        let w: Vec<&str> = body.split_whitespace().collect();
        let arg = |p: &str| {
            w.iter()
                .find_map(|x| x.strip_prefix(p))
                .unwrap_or_default()
                .to_string()
        };
        let key = match w[0] {
            "create_database" | "drop_database" | "create_collection" | "drop_collection"
            | "flush" | "load_collection" | "release_collection" | "delete" | "upsert"
            | "load_partitions" | "release_partitions" => (w[0], w[1].to_string()),
            "create_partition" | "drop_partition" | "drop_index" => {
                (w[0], format!("{} {}", w[1], w[2]))
            }
            "create_index" => (w[0], format!("{} {}", w[1], arg("name="))),
            "insert" => (w[0], format!("{} {}", w[1], arg("partition="))),
            _ => continue,
        };
        let rows = arg("rows=").parse().unwrap_or(0);
        out.push(((key.0.to_string(), key.1), rows));
    }
    out
}

pub fn object(key: &Key) -> String {
    match key.0.as_str() {
        "create_database" | "drop_database" => key.1.clone(),
        _ => key.1.split(' ').next().unwrap_or_default().to_string(),
    }
}

pub fn collapse(keys: impl IntoIterator<Item = Key>) -> Vec<Key> {
    let mut out: Vec<Key> = Vec::new();
    for k in keys {
        if out.last() != Some(&k) {
            out.push(k);
        }
    }
    out
}

/// Per object (collection, database), the operations in the workload's order; databases
/// created before and dropped after their collections' operations; every DDL exactly once.
pub fn check(got_events: &[ChangeEvent], want: &[(Key, usize)]) {
    let got: Vec<Key> = got_events.iter().map(event_key).collect();
    let want_keys: Vec<Key> = want.iter().map(|(k, _)| k.clone()).collect();
    let mut objects: Vec<String> = want_keys.iter().map(object).collect();
    objects.sort();
    objects.dedup();
    for obj in &objects {
        let of = |keys: &[Key]| collapse(keys.iter().filter(|k| object(k) == *obj).cloned());
        assert_eq!(of(&got), of(&want_keys), "operations on {obj}");
    }
    for (i, k) in got.iter().enumerate() {
        if matches!(k.0.as_str(), "create_database" | "drop_database") {
            continue;
        }
        let db = k.1.split('.').next().unwrap_or_default();
        let created = got
            .iter()
            .position(|x| x.0 == "create_database" && x.1 == db);
        let dropped = got.iter().position(|x| x.0 == "drop_database" && x.1 == db);
        assert!(
            created.is_none_or(|c| c < i),
            "{k:?} before create_database {db}"
        );
        assert!(
            dropped.is_none_or(|d| d > i),
            "{k:?} after drop_database {db}"
        );
    }
    for k in &got {
        if !matches!(k.0.as_str(), "insert" | "delete" | "upsert") {
            let n = got.iter().filter(|x| *x == k).count();
            let expected = want_keys.iter().filter(|x| *x == k).count();
            assert_eq!(
                n, expected,
                "{k:?} appears {n} times, the workload did it {expected} times"
            );
        }
    }
    // Every inserted or upserted row, exactly once.
    let mut want_rows: BTreeMap<String, usize> = BTreeMap::new();
    for (k, rows) in want {
        if k.0 == "insert" || k.0 == "upsert" {
            *want_rows.entry(object(k)).or_default() += rows;
        }
    }
    let mut got_rows: BTreeMap<String, usize> = BTreeMap::new();
    for e in got_events {
        let rows = match &e.op {
            Op::Insert(b) => b.num_rows,
            Op::Upsert { insert, .. } => insert.num_rows,
            _ => continue,
        };
        *got_rows
            .entry(format!("{}.{}", e.database, e.collection))
            .or_default() += rows;
    }
    assert_eq!(got_rows, want_rows, "rows per collection");
    // Timestamp order. Offsets per channel may go back: Milvus can write a message with an
    // older timestamp after a newer one (a delete by filter takes its timestamp before
    // querying the keys); timestamps are what Milvus's MVCC applies, so they win. Report such
    // inversions for the record.
    let mut last_ts = 0;
    let mut last: BTreeMap<&str, (Vec<u8>, u64, Key)> = BTreeMap::new();
    for e in got_events {
        assert!(
            e.position.ts >= last_ts,
            "timestamp order broken at {:?}",
            event_key(e)
        );
        last_ts = e.position.ts;
        if let Some((o, ts, k)) = last.get(&*e.position.channel) {
            if e.position.offset < *o && e.position.ts != *ts {
                println!(
                    "note: on {} {:?} (offset {:?}, ts {}) was written before {:?} (offset {:?}, ts {})",
                    e.position.channel, event_key(e), e.position.offset, e.position.ts, k, o, ts
                );
            }
        }
        last.insert(
            &e.position.channel,
            (e.position.offset.clone(), e.position.ts, event_key(e)),
        );
    }
}
