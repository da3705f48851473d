//! Test support: a private etcd server on free loopback ports with its own data directory
//! (the Debian `etcd` binary), stopped and removed on drop. Used by this crate's and the
//! server's tests; never by the shipped binary.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running private etcd.
pub struct PrivateEtcd {
    child: Option<Child>,
    /// `127.0.0.1:PORT` of the client listener.
    pub endpoint: String,
    peer: String,
    dir: PathBuf,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

impl PrivateEtcd {
    /// Start it and wait until it answers (panics with the reason otherwise: tests only).
    pub fn start(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "mcdc-etcd-{name}-{}-{}",
            std::process::id(),
            free_port()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the etcd data dir");
        let mut e = Self {
            child: None,
            endpoint: format!("127.0.0.1:{}", free_port()),
            peer: format!("127.0.0.1:{}", free_port()),
            dir,
        };
        e.launch();
        e
    }

    fn launch(&mut self) {
        let log = std::fs::File::create(self.dir.join("etcd.log")).expect("etcd log");
        let child = Command::new("etcd")
            .arg("--name")
            .arg("mcdc-test")
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .arg("--listen-client-urls")
            .arg(format!("http://{}", self.endpoint))
            .arg("--advertise-client-urls")
            .arg(format!("http://{}", self.endpoint))
            .arg("--listen-peer-urls")
            .arg(format!("http://{}", self.peer))
            .arg("--initial-advertise-peer-urls")
            .arg(format!("http://{}", self.peer))
            .arg("--initial-cluster")
            .arg(format!("mcdc-test=http://{}", self.peer))
            .arg("--listen-metrics-urls")
            .arg(format!("http://127.0.0.1:{}", free_port()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cannot start `etcd` (install the Debian etcd-server package)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .args([
                    "--endpoints",
                    &self.endpoint,
                    "--dial-timeout=1s",
                    "endpoint",
                    "health",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "private etcd on {} did not become healthy; see {}",
                self.endpoint,
                self.dir.join("etcd.log").display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Kill it (SIGKILL), keeping its data.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start it again on the same ports and data.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }
}

impl Drop for PrivateEtcd {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
