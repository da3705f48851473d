//! Private etcd and Kafka-protocol broker for the fault tests: started on their own ports
//! with their own data directories (no lock on the shared services needed), stopped and
//! restarted at will, with their data kept. Shared by `tests/e2e_faults.rs` and the watcher's
//! in-crate fault test (`#[path]`).
//!
//! The binaries: Debian's `etcd`, and noida-db from the dev venv (`MCDC_PYTHON`'s site
//! packages) behind `scripts/kafka_idle_proxy.py` (see the README for why).

#![allow(dead_code)]

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A service process (its own process group) that can be stopped and started again.
pub struct Service {
    name: &'static str,
    program: String,
    args: Vec<String>,
    port: u16,
    log: PathBuf,
    child: Option<Child>,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether the fault tests must run (fail when a binary is missing) or may skip.
fn required() -> bool {
    std::env::var_os("MCDC_E2E").is_some()
}

fn missing(what: &str) -> Option<Service> {
    assert!(!required(), "MCDC_E2E is set but {what}");
    println!("SKIP: {what}");
    None
}

impl Service {
    fn new(name: &'static str, program: String, args: Vec<String>, port: u16, dir: &Path) -> Self {
        Self {
            name,
            program,
            args,
            port,
            log: dir.join(format!("{name}.log")),
            child: None,
        }
    }

    /// Starts the process and waits until its port accepts connections.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} runs already", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("service log");
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} ({}): {e}", self.name, self.program));
        self.child = Some(child);
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "{} did not listen on {} within 30 s; see {}",
                self.name,
                self.port,
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the process group with `signal` (`KILL` or `TERM`) and waits for it.
    pub fn stop(&mut self, signal: &str) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), "--", &format!("-{}", child.id())])
            .status();
        let _ = child.wait();
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && t0.elapsed().as_secs() < 10 {
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The client endpoint `127.0.0.1:port`.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop("KILL");
    }
}

/// A data directory in memory when possible (etcd fsyncs every write).
pub fn data_dir(tag: &str) -> PathBuf {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("mcdc-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("data dir");
    dir
}

/// A private etcd on `client_port` (peer port `client_port + 10`), not started yet.
pub fn etcd(dir: &Path, client_port: u16) -> Option<Service> {
    if Command::new("etcd").arg("--version").output().is_err() {
        return missing("etcd is not installed (apt-get install etcd-server)");
    }
    let client = format!("http://127.0.0.1:{client_port}");
    let peer = format!("http://127.0.0.1:{}", client_port + 10);
    let args = [
        "--name",
        "f17",
        "--data-dir",
        &dir.join("etcd").display().to_string(),
        "--listen-client-urls",
        &client,
        "--advertise-client-urls",
        &client,
        "--listen-peer-urls",
        &peer,
        "--initial-advertise-peer-urls",
        &peer,
        "--initial-cluster",
        &format!("f17={peer}"),
    ]
    .map(str::to_string)
    .to_vec();
    Some(Service::new("etcd", "etcd".into(), args, client_port, dir))
}

/// A private noida-db broker behind the idle-fetch proxy on `port` (the broker itself on
/// `port + 2`), not started yet.
pub fn broker(dir: &Path, port: u16) -> Option<Service> {
    let python = std::env::var("MCDC_PYTHON")
        .unwrap_or_else(|_| repo().join(".dev/venv/bin/python").display().to_string());
    let purelib = Command::new(&python)
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let Some(purelib) = purelib else {
        return missing(&format!("no Python at {python} (set MCDC_PYTHON)"));
    };
    let noida = format!("{purelib}/noida_db/noida-db");
    if !Path::new(&noida).exists() {
        return missing(&format!("noida-db is not installed in {purelib}"));
    }
    let broker_port = (port + 2).to_string();
    let args = vec![
        "-u".to_string(),
        repo()
            .join("scripts/kafka_idle_proxy.py")
            .display()
            .to_string(),
        "--listen-port".into(),
        port.to_string(),
        "--broker-port".into(),
        broker_port.clone(),
        "--".into(),
        noida,
        "start".into(),
        "--data-dir".into(),
        dir.join("kafka").display().to_string(),
        "--host".into(),
        "127.0.0.1".into(),
        "--only".into(),
        "kafka".into(),
        "--kafka-port".into(),
        broker_port,
    ];
    Some(Service::new("broker", python, args, port, dir))
}
