//! End-to-end tests of the task server: the real `milvus-cdc serve` binary driven over HTTP
//! against the dev environment (`scripts/dev-env up`): source Milvus 127.0.0.1:19530, target
//! 127.0.0.1:19531, etcd 2379, broker 19092, pymilvus in `.dev/venv`.
//!
//! Skipped (with a message) unless `MCDC_E2E` is set; with it set, a missing service or binary
//! is a failure. Build the binary first: `cargo build -p milvus-cdc`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

struct Env {
    repo: PathBuf,
    bin: PathBuf,
    python: String,
    source: String,
    target: String,
    etcd: String,
    kafka: String,
}

fn env(test: &str) -> Option<Env> {
    if std::env::var_os("MCDC_E2E").is_none() {
        eprintln!("SKIP {test}: set MCDC_E2E=1 with services running (scripts/dev-env up)");
        return None;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let var = |k: &str, d: String| std::env::var(k).unwrap_or(d);
    let e = Env {
        bin: PathBuf::from(var(
            "MILVUS_CDC_BIN",
            repo.join("target/debug/milvus-cdc").display().to_string(),
        )),
        python: var(
            "MCDC_PYTHON",
            repo.join(".dev/venv/bin/python").display().to_string(),
        ),
        source: var("MCDC_SOURCE_URI", "http://127.0.0.1:19530".into()),
        target: var("MCDC_TARGET_URI", "http://127.0.0.1:19531".into()),
        etcd: var("MCDC_ETCD", "127.0.0.1:2379".into()),
        kafka: var("MCDC_KAFKA", "127.0.0.1:19092".into()),
        repo,
    };
    assert!(
        e.bin.exists(),
        "{} not found: build it first (cargo build -p milvus-cdc)",
        e.bin.display()
    );
    for addr in [
        e.etcd.clone(),
        e.kafka.clone(),
        host_port(&e.source),
        host_port(&e.target),
    ] {
        assert!(
            TcpStream::connect_timeout(&addr.parse().expect("ip:port"), Duration::from_secs(3))
                .is_ok(),
            "service {addr} is unreachable: start it with scripts/dev-env up"
        );
    }
    Some(e)
}

fn host_port(uri: &str) -> String {
    uri.trim_start_matches("http://").to_string()
}

impl Env {
    /// Run tests/server_helper.py; returns trimmed stdout, panics on failure.
    fn helper(&self, args: &[&str]) -> String {
        let out = Command::new(&self.python)
            .arg(self.repo.join("crates/server/tests/server_helper.py"))
            .args(args)
            .output()
            .expect("run the python helper");
        assert!(
            out.status.success(),
            "server_helper.py {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn count(&self, uri: &str, db: &str) -> String {
        self.helper(&["count", "--uri", uri, "--db", db])
    }

    /// Wait until the target holds exactly `want` rows with distinct ids.
    fn wait_count(&self, server: &Server, db: &str, want: usize, timeout: Duration) {
        let expected = format!("{want} {want}");
        let start = Instant::now();
        loop {
            let got = self.count(&self.target, db);
            if got == expected {
                return;
            }
            assert!(
                start.elapsed() < timeout,
                "target {db}.c1 has {got:?} rows/ids, expected {expected:?} after {timeout:?}; \
                 server log tail:\n{}",
                server.log_tail(60)
            );
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    fn config(&self, dir: &Path, port: u16) -> PathBuf {
        let path = dir.join("server.yaml");
        let text = format!(
            "address: 127.0.0.1:{port}\nstate_dir: {}\nhttp_status: always_200\n\
             checkpoint: {{ interval_ms: 300 }}\nsource:\n  etcd: {{ endpoints: [\"{}\"], root_path: by-dev }}\n  \
             mq: {{ kafka: {{ brokers: [\"{}\"] }} }}\n  cluster_prefix: by-dev\n",
            dir.join("state").display(),
            self.etcd,
            self.kafka
        );
        std::fs::write(&path, text).expect("write server.yaml");
        path
    }
}

/// A running `milvus-cdc serve`.
struct Server {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

impl Server {
    fn start(env: &Env, config: &Path, log: PathBuf, port: u16) -> Server {
        let logf = std::fs::File::create(&log).expect("create log");
        let child = Command::new(&env.bin)
            .args(["serve", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .expect("spawn milvus-cdc serve");
        let mut s = Server {
            child: Some(child),
            port,
            log,
        };
        let start = Instant::now();
        while http(port, "GET", "/healthz", "").is_none() {
            if let Some(Ok(Some(st))) = s.child.as_mut().map(Child::try_wait) {
                panic!("server exited ({st}):\n{}", s.log_text());
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "server not up:\n{}",
                s.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        s
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = self.log_text();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The log so far; bytes that are not UTF-8 are replaced instead of emptying the text.
    fn log_text(&self) -> String {
        let bytes = std::fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// `POST /cdc`; returns the body.
    fn cdc(&self, body: &str) -> Value {
        let (status, text) = http(self.port, "POST", "/cdc", body).expect("server answers");
        assert_eq!(status, 200, "always_200: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    fn req(&self, rtype: &str, data: Value) -> Value {
        self.cdc(&json!({ "request_type": rtype, "request_data": data }).to_string())
    }

    fn task(&self, id: &str) -> Value {
        let v = self.req("get", json!({ "task_id": id }));
        assert_eq!(v["code"], 200, "{v}");
        v["data"]["task"].clone()
    }

    fn wait_log(&self, needle: &str, count: usize, timeout: Duration) {
        let start = Instant::now();
        while self.log_text().matches(needle).count() < count {
            assert!(
                start.elapsed() < timeout,
                "no {needle:?} (x{count}) in the log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGINT and wait for a clean exit.
    fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(c.id().to_string())
            .status();
        let start = Instant::now();
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                assert!(
                    st.success(),
                    "server exit status {st}:\n{}",
                    self.log_text()
                );
                return;
            }
            if start.elapsed() > Duration::from_secs(60) {
                let _ = c.kill();
                panic!("server did not stop in 60 s:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One HTTP/1.1 request; `None` when nothing listens.
fn http(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(120))).ok()?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn unique_db(tag: &str) -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() % 100_000_000)
        .unwrap_or(0);
    format!("srv_{tag}_{}_{ms}", std::process::id())
}

fn create_body(env: &Env, db: &str) -> Value {
    json!({
        "milvus_connect_param": { "uri": env.target, "token": "root:Milvus", "connect_timeout": 10 },
        "db_collections": { db: [{ "name": "*" }] }
    })
}

#[test]
fn task_lifecycle_over_http_replicates_pauses_resumes_and_survives_restart() {
    let Some(env) = env("task_lifecycle_over_http") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let config = env.config(dir.path(), port);
    let db = unique_db("life");
    let mut server = Server::start(&env, &config, dir.path().join("serve-1.log"), port);

    // create
    let v = server.req("create", create_body(&env, &db));
    assert_eq!(v["code"], 200, "{v}");
    let id = v["data"]["task_id"].as_str().expect("task_id").to_string();
    assert_eq!(id.len(), 32);
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    server.wait_log("Source opened", 1, Duration::from_secs(60));
    let t = server.task(&id);
    assert_eq!(t["state"], "Running", "{t}");
    assert!(
        !t.to_string().contains("root:Milvus"),
        "credentials echoed: {t}"
    );

    // replicate
    env.helper(&["setup", "--uri", &env.source, "--db", &db]);
    env.helper(&[
        "insert",
        "--uri",
        &env.source,
        "--db",
        &db,
        "--start",
        "0",
        "--count",
        "100",
    ]);
    env.wait_count(&server, &db, 100, Duration::from_secs(120));
    // A running task shows its live counters.
    let t = server.task(&id);
    assert!(
        t["live"]["rows_read"].as_u64().unwrap_or(0) >= 100,
        "live counters of a running task: {t}"
    );
    assert!(
        t["live"]["committed_epoch"].as_u64().unwrap_or(0) >= 1,
        "{t}"
    );

    // pause: source writes do not reach the target
    let v = server.req("pause", json!({ "task_id": id }));
    assert_eq!(v, json!({ "code": 200 }));
    let t = server.task(&id);
    assert_eq!(t["state"], "Paused");
    assert_eq!(t["reason"], "manually pause through http interface");
    let v = server.req("pause", json!({ "task_id": id }));
    assert_eq!(v["code"], 400, "{v}");
    env.helper(&[
        "insert",
        "--uri",
        &env.source,
        "--db",
        &db,
        "--start",
        "100",
        "--count",
        "100",
    ]);
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(env.count(&env.target, &db), "100 100", "paused task wrote");

    // resume: they do
    let v = server.req("resume", json!({ "task_id": id }));
    assert_eq!(v, json!({ "code": 200 }));
    assert_eq!(server.task(&id)["state"], "Running");
    env.wait_count(&server, &db, 200, Duration::from_secs(120));

    // list and position
    let v = server.req("list", json!({}));
    let tasks = v["data"]["tasks"].as_array().expect("tasks");
    assert!(tasks.iter().any(|t| t["task_id"] == id.as_str()), "{v}");
    let v = server.req("position", json!({ "task_id": id }));
    assert_eq!(v["code"], 200, "{v}");
    let positions = v["data"]["positions"].as_array().expect("positions");
    assert!(!positions.is_empty(), "{v}");
    for p in positions {
        let ch = p["channel_name"].as_str().unwrap_or_default();
        assert!(ch.starts_with("by-dev-"), "{p}");
        assert!(!p["msg_id"].as_str().unwrap_or_default().is_empty(), "{p}");
    }

    // restart: writes made while the server is down arrive once
    server.stop();
    env.helper(&[
        "insert",
        "--uri",
        &env.source,
        "--db",
        &db,
        "--start",
        "200",
        "--count",
        "100",
    ]);
    let server2 = Server::start(&env, &config, dir.path().join("serve-2.log"), port);
    server2.wait_log("Source opened", 1, Duration::from_secs(60));
    assert_eq!(server2.task(&id)["state"], "Running");
    env.wait_count(&server2, &db, 300, Duration::from_secs(120));

    // delete
    let v = server2.req("delete", json!({ "task_id": id }));
    assert_eq!(v, json!({ "code": 200 }));
    let v = server2.req("get", json!({ "task_id": id }));
    assert_eq!(v["code"], 400, "{v}");
    env.helper(&[
        "insert",
        "--uri",
        &env.source,
        "--db",
        &db,
        "--start",
        "300",
        "--count",
        "10",
    ]);
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(env.count(&env.target, &db), "300 300", "deleted task wrote");

    drop(server2);
    env.helper(&["drop", "--uri", &env.source, "--db", &db]);
    env.helper(&["drop", "--uri", &env.target, "--db", &db]);
}

#[test]
fn bad_requests_return_clear_errors_and_change_nothing() {
    let Some(env) = env("bad_requests_change_nothing") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let config = env.config(dir.path(), port);
    let db = unique_db("bad");
    let server = Server::start(&env, &config, dir.path().join("serve.log"), port);
    let list = |s: &Server| s.req("list", json!({}))["data"]["tasks"].clone();

    let v = server.req("create", create_body(&env, &db));
    assert_eq!(v["code"], 200, "{v}");
    let id = v["data"]["task_id"].as_str().expect("task_id").to_string();
    let before = list(&server);

    let mut unreachable = create_body(&env, "other_db");
    unreachable["milvus_connect_param"]["uri"] = json!("http://127.0.0.1:1");
    unreachable["milvus_connect_param"]["connect_timeout"] = json!(2);
    let mut mistyped = create_body(&env, "other_db");
    mistyped["milvus_connect_param"]["connect_timeout"] = json!("ten");
    let mut unknown_key = create_body(&env, "other_db");
    unknown_key["milvus_connect_param"]["urii"] = json!("x");
    let cases: Vec<(String, u64, &str)> = vec![
        ("{\"request_type\": ".into(), 400, "fail to unmarshal"),
        (json!({"request_type": "frobnicate"}).to_string(), 400, "invalid 'request_type'"),
        (json!({"request_type": "create", "request_data": {}}).to_string(), 400, "milvus_connect_param is missing"),
        (
            json!({"request_type": "create", "request_data": {"milvus_connect_param": {"uri": env.target}}}).to_string(),
            400,
            "empty collection info",
        ),
        (json!({"request_type": "create", "request_data": mistyped}).to_string(), 400, "invalid type"),
        (json!({"request_type": "create", "request_data": unknown_key}).to_string(), 400, "urii"),
        (json!({"request_type": "create", "request_data": unreachable}).to_string(), 500, "fail to connect the target milvus"),
        (json!({"request_type": "create", "request_data": create_body(&env, &db)}).to_string(), 400, "duplicate"),
        (json!({"request_type": "resume", "request_data": {"task_id": id}}).to_string(), 400, "has running"),
        (json!({"request_type": "get", "request_data": {"task_id": "nope"}}).to_string(), 400, "not found the task"),
    ];
    for (body, code, needle) in &cases {
        let v = server.cdc(body);
        assert_eq!(v["code"], *code, "{body}: {v}");
        let msg = v["message"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "{body}: {needle:?} not in {msg:?}");
        assert_eq!(list(&server), before, "{body} changed the task list");
    }
    // wrong method
    let (status, text) = http(port, "GET", "/cdc", "").expect("answer");
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&text).expect("json"),
        json!({"code": 405, "message": "only support the POST method"})
    );
    // metrics carry the milvus-cdc names
    let (_, metrics) = http(port, "GET", "/metrics", "").expect("metrics");
    for name in [
        "milvus_cdc_task_num",
        "milvus_cdc_task_state",
        "milvus_cdc_request_total",
        "milvus_cdc_request_latency",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    let v = server.req("delete", json!({ "task_id": id }));
    assert_eq!(v, json!({ "code": 200 }));
    assert_eq!(list(&server), json!([]));
}

/// What the original's documentation shows: `create` a task for one collection, then create
/// that collection at once (quick setup: index and load included) and insert 1,000 rows. The
/// task must replicate all of it (the start is stored before `create` answers), five times.
#[test]
fn a_collection_created_the_moment_create_answers_is_replicated_whole() {
    let Some(env) = env("collection_created_the_moment_create_answers") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let config = env.config(dir.path(), port);
    let server = Server::start(&env, &config, dir.path().join("serve.log"), port);
    let prefix = unique_db("race");
    let quick = env.repo.join("tests/py/quick.py");
    let run = |args: &[&str]| -> String {
        let out = Command::new(&env.python)
            .arg(&quick)
            .args(args)
            .output()
            .expect("run quick.py");
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            out.status.success(),
            "quick.py {args:?} failed: {text}{}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            server.log_tail(60)
        );
        text
    };
    let port_s = port.to_string();
    let mut ids = Vec::new();
    for round in 0..5 {
        let coll = format!("{prefix}_{round}");
        let out = run(&[
            "race",
            "--cdc-port",
            &port_s,
            "--target",
            &env.target,
            "--uri",
            &env.source,
            "--coll",
            &coll,
        ]);
        let v: Value = serde_json::from_str(&out).expect("race output");
        ids.push(
            v["answer"]["data"]["task_id"]
                .as_str()
                .expect("task_id")
                .to_string(),
        );
        let start = Instant::now();
        loop {
            let got: Value =
                serde_json::from_str(&run(&["inspect", "--uri", &env.target, "--coll", &coll]))
                    .expect("inspect output");
            let indexed = got["indexes"].as_array().is_some_and(|a| !a.is_empty());
            if got["loaded"] == true && indexed && got["rows"] == 1000 && got["ids"] == 1000 {
                break;
            }
            let task = server.task(ids.last().expect("id"));
            assert_eq!(task["state"], "Running", "round {round}: {task}");
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "round {round}: target {coll} is {got} ({out}); server log:\n{}",
                server.log_tail(60)
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    for id in &ids {
        let v = server.req("delete", json!({ "task_id": id }));
        assert_eq!(v, json!({ "code": 200 }));
    }
    for uri in [&env.source, &env.target] {
        run(&["drop", "--uri", uri, "--prefix", &prefix]);
    }
}
