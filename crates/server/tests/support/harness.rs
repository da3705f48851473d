//! The harness of `cluster_e2e.rs`: the dev environment, `milvus-cdc serve` instances of one
//! cluster (auth on), their HTTP API, an etcd relay that can be cut, and the workload steps.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const ADMIN: &str = "h16-admin-token-0123456789abcdef";
pub const TTL: u64 = 4;

pub struct Env {
    pub repo: PathBuf,
    pub bin: PathBuf,
    pub python: String,
    pub source: String,
    pub target: String,
}

pub fn env(test: &str) -> Option<Env> {
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
        repo,
    };
    assert!(
        e.bin.exists(),
        "{} not found: cargo build -p milvus-cdc",
        e.bin.display()
    );
    Some(e)
}

impl Env {
    pub fn py(&self, script: &str, args: &[&str]) -> String {
        let out = Command::new(&self.python)
            .arg(self.repo.join(script))
            .args(args)
            .output()
            .expect("run python");
        assert!(
            out.status.success(),
            "{script} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
    pub fn helper(&self, args: &[&str]) -> String {
        self.py("crates/server/tests/server_helper.py", args)
    }
    pub fn insert(&self, db: &str, start: usize, count: usize) -> Child {
        Command::new(&self.python)
            .arg(self.repo.join("crates/server/tests/server_helper.py"))
            .args(["insert", "--uri", &self.source, "--db", db])
            .args(["--start", &start.to_string(), "--count", &count.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn insert")
    }
    pub fn wait_count(&self, db: &str, want: usize, logs: &[&Instance]) {
        let expected = format!("{want} {want}");
        let start = Instant::now();
        loop {
            let got = self.helper(&["count", "--uri", &self.target, "--db", db]);
            if got == expected {
                return;
            }
            if start.elapsed() > Duration::from_secs(180) {
                let tails: Vec<String> = logs.iter().map(|i| i.log_tail(40)).collect();
                panic!(
                    "target {db} has {got:?}, expected {expected:?}:\n{}",
                    tails.join("\n----\n")
                );
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }
}

/// A `milvus-cdc serve` of the cluster.
pub struct Instance {
    pub name: String,
    pub child: Option<Child>,
    pub port: u16,
    pub config: PathBuf,
    pub log: PathBuf,
    pub bin: PathBuf,
    pub starts: usize,
}

impl Instance {
    pub fn new(env: &Env, dir: &Path, name: &str, etcd: &str, prefix: &str) -> Instance {
        let port = free_port();
        let tokens = dir.join("tokens");
        std::fs::write(&tokens, format!("{ADMIN} admin\n")).expect("write the tokens file");
        let config = dir.join(format!("{name}.yaml"));
        std::fs::write(
            &config,
            format!(
                "address: 127.0.0.1:{port}\nhttp_status: always_200\n\
                 checkpoint: {{ interval_ms: 300 }}\n\
                 source:\n  etcd: {{ endpoints: [\"127.0.0.1:2379\"], root_path: by-dev }}\n  \
                 mq: {{ kafka: {{ brokers: [\"127.0.0.1:19092\"] }} }}\n  cluster_prefix: by-dev\n\
                 state:\n  etcd: {{ endpoints: [\"{etcd}\"], prefix: {prefix}, timeout_ms: 2000 }}\n\
                 cluster: {{ ttl_secs: {TTL}, instance_id: {name} }}\n\
                 auth: {{ tokens_file: {} }}\n",
                tokens.display()
            ),
        )
        .expect("write the instance config");
        let mut i = Instance {
            name: name.into(),
            child: None,
            port,
            config,
            log: dir.join(format!("{name}.log")),
            bin: env.bin.clone(),
            starts: 0,
        };
        i.start();
        i
    }

    pub fn start(&mut self) {
        self.starts += 1;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the instance log");
        self.child = Some(
            Command::new(&self.bin)
                .args(["serve", "--config"])
                .arg(&self.config)
                .env("MILVUS_CDC_LOG", "info")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn serve"),
        );
        let t = Instant::now();
        while http(self.port, "GET", "/healthz", "").is_none() {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "{} not up:\n{}",
                self.name,
                self.log_tail(30)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Send a signal (`STOP`, `CONT`, ...) to the running process.
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &pid])
            .status()
            .expect("kill");
        assert!(ok.success(), "kill -{sig} {pid}");
    }

    pub fn log_tail(&self, n: usize) -> String {
        let text =
            String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "[{}]\n{}",
            self.name,
            lines[lines.len().saturating_sub(n)..].join("\n")
        )
    }

    pub fn log_count(&self, needle: &str) -> usize {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default())
            .matches(needle)
            .count()
    }

    pub fn api(&self, method: &str, path: &str, body: &str) -> Value {
        let (status, text) = http(self.port, method, path, body).expect("instance answers");
        assert_ne!(status, 401, "auth refused the admin token");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status} not JSON ({e}): {text}"))
    }

    /// task id → owner, from `GET /cluster`.
    pub fn owners(&self) -> Vec<(String, Option<String>)> {
        let v = self.api("GET", "/cluster", "");
        v["data"]["tasks"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|t| {
                (
                    t["task_id"].as_str().unwrap_or_default().to_string(),
                    t["owner"].as_str().map(str::to_string),
                )
            })
            .collect()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn http(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(150))).ok()?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         authorization: Bearer {ADMIN}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((
        head.split_whitespace().nth(1)?.parse().ok()?,
        body.to_string(),
    ))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub fn tag() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() % 10_000_000)
        .unwrap_or(0);
    format!("{}_{ms}", std::process::id())
}

/// Create one task per database through `inst`; returns the task ids.
pub fn create_tasks(env: &Env, inst: &Instance, dbs: &[String]) -> Vec<String> {
    dbs.iter()
        .map(|db| {
            let body = json!({ "request_type": "create", "request_data": {
                "milvus_connect_param": { "uri": env.target, "token": "root:Milvus", "connect_timeout": 10 },
                "db_collections": { db.as_str(): [{ "name": "*" }] } } });
            let v = inst.api("POST", "/cdc", &body.to_string());
            assert_eq!(v["code"], 200, "{v}");
            v["data"]["task_id"].as_str().expect("task_id").to_string()
        })
        .collect()
}

/// Wait until every task has a live owner among `names`; returns task → owner.
pub fn wait_owned(
    inst: &Instance,
    tasks: &[String],
    names: &[&str],
    within: Duration,
) -> Vec<(String, String)> {
    let t = Instant::now();
    loop {
        let owners = inst.owners();
        let all: Vec<(String, String)> = tasks
            .iter()
            .filter_map(|id| {
                owners
                    .iter()
                    .find(|(t, _)| t == id)
                    .and_then(|(_, o)| o.clone())
                    .filter(|o| names.contains(&o.as_str()))
                    .map(|o| (id.clone(), o))
            })
            .collect();
        if all.len() == tasks.len() {
            return all;
        }
        assert!(
            t.elapsed() < within,
            "tasks not all owned by {names:?} after {within:?}: {owners:?}\n{}",
            inst.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn finish(env: &Env, dbs: &[String], rows: usize, logs: &[&Instance]) {
    for db in dbs {
        env.wait_count(db, rows, logs);
        env.py(
            "tests/py/compare.py",
            &[&env.source, &env.target, "--db", db, "--load", "never"],
        );
    }
}

pub fn cleanup(env: &Env, dbs: &[String]) {
    for db in dbs {
        env.helper(&["drop", "--uri", &env.source, "--db", db]);
        env.helper(&["drop", "--uri", &env.target, "--db", db]);
    }
}

/// A TCP relay to etcd that can be cut (every connection dropped, new ones refused).
pub struct CutProxy {
    pub port: u16,
    pub cut: Arc<AtomicBool>,
}

impl CutProxy {
    pub fn start(upstream: String) -> CutProxy {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = l.local_addr().expect("proxy address").port();
        let cut = Arc::new(AtomicBool::new(false));
        let c = cut.clone();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                if c.load(Ordering::SeqCst) {
                    continue; // dropped
                }
                let Ok(up) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let (Ok(s2), Ok(up2)) = (s.try_clone(), up.try_clone()) else {
                    continue;
                };
                for (mut from, mut to) in [(s2, up2), (up, s)] {
                    let c = c.clone();
                    std::thread::spawn(move || {
                        from.set_read_timeout(Some(Duration::from_millis(200))).ok();
                        let mut buf = [0u8; 16384];
                        loop {
                            if c.load(Ordering::SeqCst) {
                                let _ = from.shutdown(std::net::Shutdown::Both);
                                let _ = to.shutdown(std::net::Shutdown::Both);
                                return;
                            }
                            match from.read(&mut buf) {
                                Ok(0) => return,
                                Ok(n) => {
                                    if to.write_all(&buf[..n]).is_err() {
                                        return;
                                    }
                                }
                                Err(e)
                                    if matches!(
                                        e.kind(),
                                        std::io::ErrorKind::WouldBlock
                                            | std::io::ErrorKind::TimedOut
                                    ) => {}
                                Err(_) => return,
                            }
                        }
                    });
                }
            }
        });
        CutProxy { port, cut }
    }
}
