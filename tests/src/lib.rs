//! Harness for end-to-end tests: the real `milvus-cdc` binary, the dev environment's services
//! (`scripts/dev-env`) and the Python workload and comparison scripts in `tests/py`.
//!
//! Tests call [`Env::get`] first: without `MCDC_E2E` set they print why and skip; with it set,
//! a missing service is a failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Endpoints of the dev environment, as printed by `scripts/dev-env env`.
#[derive(Debug, Clone)]
pub struct Env {
    /// Repository root.
    pub repo: PathBuf,
    /// Python interpreter of the dev venv (pymilvus).
    pub python: String,
    /// Source Milvus URI.
    pub source_uri: String,
    /// Target Milvus URI.
    pub target_uri: String,
    /// Standby target URI (`common.ttMsgEnabled: false`).
    pub standby_uri: String,
    /// milvus-lite URI.
    pub lite_uri: String,
    /// etcd endpoint.
    pub etcd: String,
    /// Kafka-protocol broker.
    pub kafka: String,
    /// The milvus-cdc binary under test.
    pub bin: PathBuf,
}

impl Env {
    /// The environment, or `None` (after printing why) when end-to-end tests are not enabled.
    pub fn get(test: &str) -> Option<Env> {
        if std::env::var_os("MCDC_E2E").is_none() {
            eprintln!("SKIP {test}: set MCDC_E2E=1 with services running (scripts/test does both)");
            return None;
        }
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("tests/ has a parent")
            .to_path_buf();
        let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
        let bin = std::env::var("MILVUS_CDC_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|_| repo.join("target/debug/milvus-cdc"));
        assert!(
            bin.exists(),
            "{} not found: build it first (cargo build -p milvus-cdc)",
            bin.display()
        );
        Some(Env {
            python: var(
                "MCDC_PYTHON",
                &repo.join(".dev/venv/bin/python").display().to_string(),
            ),
            source_uri: var("MCDC_SOURCE_URI", "http://127.0.0.1:19530"),
            target_uri: var("MCDC_TARGET_URI", "http://127.0.0.1:19531"),
            standby_uri: var("MCDC_STANDBY_URI", "http://127.0.0.1:19532"),
            lite_uri: var("MCDC_LITE_URI", "http://127.0.0.1:19533"),
            etcd: var("MCDC_ETCD", "127.0.0.1:2379"),
            kafka: var("MCDC_KAFKA", "127.0.0.1:19092"),
            bin,
            repo,
        })
    }

    /// Run a Python script of `tests/py` with arguments; returns (success, combined output).
    pub fn py(&self, script: &str, args: &[&str]) -> (bool, String) {
        let out = Command::new(&self.python)
            .arg(self.repo.join("tests/py").join(script))
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {} {script}: {e}", self.python));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// Run the workload on the source; panics with its output if it fails.
    pub fn workload(&self, prefix: &str, scenario: &str, extra: &[&str]) {
        let db1 = format!("{prefix}db1");
        let mut args = vec![
            "--uri",
            &self.source_uri,
            "--prefix",
            prefix,
            "--db1",
            &db1,
            "--scenario",
            scenario,
        ];
        args.extend_from_slice(extra);
        let (ok, out) = self.py("workload.py", &args);
        assert!(ok, "workload {scenario} failed:\n{out}");
    }

    /// Run `rounds` rounds of the workload's `dml` scenario (`rows` rows per batch) on the
    /// source in a background thread, so a test can crash the CDC meanwhile.
    pub fn dml_in_background(
        &self,
        prefix: &str,
        rounds: u32,
        rows: u32,
    ) -> std::thread::JoinHandle<()> {
        let env = self.clone();
        let prefix = prefix.to_string();
        std::thread::spawn(move || {
            for round in 1..=rounds {
                env.workload(
                    &prefix,
                    "dml",
                    &["--round", &round.to_string(), "--rows", &rows.to_string()],
                );
            }
        })
    }

    /// Drop what an earlier failed run with `prefix` left on the source and on `targets`
    /// (collections named with the prefix, database `{prefix}db1`), before a test starts.
    pub fn clean(&self, prefix: &str, targets: &[&str]) {
        let db1 = format!("{prefix}db1");
        for uri in std::iter::once(self.source_uri.as_str()).chain(targets.iter().copied()) {
            let args = [
                "--uri",
                uri,
                "--prefix",
                prefix,
                "--db1",
                &db1,
                "--scenario",
                "clean",
            ];
            let (ok, out) = self.py("workload.py", &args);
            assert!(ok, "cleaning {uri} failed:\n{out}");
        }
    }

    /// Compare source and target restricted to `prefix` (collections, and the database
    /// `{prefix}db1`); `Err` holds the differences. Never loads a collection for reading
    /// (`--load never`): that would emit Load/Release messages the running CDC replicates.
    /// The standby (replicate mode) must be a faithful copy, autoID included
    /// (`--strict-autoid`); api-mode targets keep the source's keys with autoID off.
    pub fn compare(&self, target_uri: &str, prefix: &str, extra: &[&str]) -> Result<(), String> {
        let mut args = vec![
            self.source_uri.as_str(),
            target_uri,
            "--prefix",
            prefix,
            "--load",
            "never",
        ];
        if target_uri == self.standby_uri {
            args.push("--strict-autoid");
        }
        args.extend_from_slice(extra);
        let (ok, out) = self.py("compare.py", &args);
        if ok {
            Ok(())
        } else {
            Err(out)
        }
    }

    /// Poll [`Env::compare`] until it succeeds or `timeout` passes; panics with the last diff.
    pub fn wait_equal(&self, target_uri: &str, prefix: &str, extra: &[&str], timeout: Duration) {
        let start = Instant::now();
        loop {
            match self.compare(target_uri, prefix, extra) {
                Ok(()) => {
                    eprintln!(
                        "target equals source after {:.1}s",
                        start.elapsed().as_secs_f64()
                    );
                    return;
                }
                Err(diff) if start.elapsed() > timeout => {
                    panic!("target still differs from source after {timeout:?}:\n{diff}")
                }
                Err(_) => std::thread::sleep(Duration::from_secs(2)),
            }
        }
    }

    /// `scripts/dev-env` with arguments; panics on failure.
    pub fn dev_env(&self, args: &[&str]) {
        let st = Command::new(self.repo.join("scripts/dev-env"))
            .args(args)
            .status()
            .expect("run scripts/dev-env");
        assert!(st.success(), "scripts/dev-env {args:?} failed");
    }

    /// The standard Milvus source block of a pipeline for this environment.
    pub fn source_yaml(&self) -> String {
        format!(
            "source:\n  milvus:\n    etcd:\n      endpoints: [\"{}\"]\n      root_path: by-dev\n    \
             mq:\n      kafka:\n        brokers: [\"{}\"]\n    cluster_prefix: by-dev\n    start: latest\n",
            self.etcd, self.kafka
        )
    }
}

/// A running `milvus-cdc run` process with its log file.
pub struct Cdc {
    child: Option<Child>,
    /// Where its stderr goes.
    pub log: PathBuf,
    /// Where the log is copied when the test fails (its temporary directory goes away).
    keep_dir: PathBuf,
}

impl Cdc {
    /// Start `milvus-cdc run` on `pipeline_yaml` (written to `dir`) with state in `dir/state`,
    /// and wait until its source is open.
    pub fn start(env: &Env, dir: &Path, pipeline_yaml: &str) -> Cdc {
        let file = dir.join("pipeline.yaml");
        std::fs::write(&file, pipeline_yaml).expect("write pipeline");
        let log = dir.join(format!("cdc-{}.log", Instant::now().elapsed().as_nanos()));
        let log = unique(&log);
        let logf = std::fs::File::create(&log).expect("create log");
        let child = Command::new(&env.bin)
            .arg("run")
            .arg(&file)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--progress-secs")
            .arg("2")
            .env("MILVUS_CDC_LOG", "info,cdc_connector_milvus_source=debug")
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .expect("spawn milvus-cdc");
        let mut cdc = Cdc {
            child: Some(child),
            log,
            keep_dir: env.repo.join(".dev/logs"),
        };
        cdc.wait_log("Source opened", Duration::from_secs(60));
        cdc
    }

    /// Wait for a line containing `needle` in the log; panics (with the log) on timeout or exit.
    pub fn wait_log(&mut self, needle: &str, timeout: Duration) {
        let start = Instant::now();
        loop {
            if self.log_text().contains(needle) {
                return;
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!(
                        "milvus-cdc exited ({st}) before {needle:?}:\n{}",
                        self.log_text()
                    );
                }
            }
            if start.elapsed() > timeout {
                panic!("no {needle:?} within {timeout:?}:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The whole log so far (bytes that are not UTF-8 replaced, so one odd byte does not
    /// hide the log).
    pub fn log_text(&self) -> String {
        let bytes = std::fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Lines of the log containing `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        self.log_text()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect()
    }

    /// The `changes=` figure of the latest progress line (0 before the first).
    pub fn changes(&self) -> u64 {
        self.log_text()
            .lines()
            .rev()
            .filter(|l| l.starts_with("progress:"))
            .find_map(|l| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix("changes="))
                    .and_then(|n| n.parse().ok())
            })
            .unwrap_or(0)
    }

    /// Wait until the progress lines show more than `n` changes; panics after `timeout`.
    pub fn wait_changes_above(&mut self, n: u64, timeout: Duration) {
        let start = Instant::now();
        while self.changes() <= n {
            assert!(
                start.elapsed() < timeout,
                "milvus-cdc did not get past {n} changes within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL: no final checkpoint, no cleanup.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGINT and wait for a clean exit (final checkpoint); returns whether it exited with 0.
    pub fn stop(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(c.id().to_string())
            .status();
        let start = Instant::now();
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return st.success();
            }
            if start.elapsed() > Duration::from_secs(30) {
                let _ = c.kill();
                let _ = c.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Cdc {
    fn drop(&mut self) {
        self.kill9();
        let text = self.log_text();
        if std::env::var_os("MCDC_KEEP_LOGS").is_some() && !std::thread::panicking() {
            eprintln!("milvus-cdc log: {}", self.keep_log("kept", &text));
        }
        if std::thread::panicking() {
            // The test failed: its temporary directory (and this log) goes away with it.
            let label = format!("failed-{}", std::thread::current().name().unwrap_or("test"));
            let kept = self.keep_log(&label, &text);
            // Progress lines would fill the tail; the kept log has them.
            let lines: Vec<&str> = text
                .lines()
                .filter(|l| !l.starts_with("progress:"))
                .collect();
            let warn: Vec<&str> = lines
                .iter()
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                .copied()
                .collect();
            eprintln!(
                "--- milvus-cdc log ({kept}): {} warning/error line(s), last 20:\n{}\n--- last 40 lines (without progress):\n{}",
                warn.len(),
                warn[warn.len().saturating_sub(20)..].join("\n"),
                lines[lines.len().saturating_sub(40)..].join("\n")
            );
        }
    }
}

impl Cdc {
    /// Copy the log (`text`) to `keep_dir` as `{label}-{log file name}`; says where, or why not.
    fn keep_log(&self, label: &str, text: &str) -> String {
        let name = self
            .log
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("cdc.log");
        let kept = self.keep_dir.join(format!("{label}-{name}"));
        match std::fs::create_dir_all(&self.keep_dir).and_then(|_| std::fs::write(&kept, text)) {
            Ok(()) => format!("whole log kept as {}", kept.display()),
            Err(e) => format!("could not keep the log ({e})"),
        }
    }
}

fn unique(p: &Path) -> PathBuf {
    let mut n = 0;
    loop {
        let cand = p.with_extension(format!("{n}.log"));
        if !cand.exists() {
            return cand;
        }
        n += 1;
    }
}
