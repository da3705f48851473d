//! `milvus-cdc serve` as a process: built-in HTTPS with a self-signed certificate (the port
//! speaks only TLS; bad certificate or key files stop the start naming the field), and the
//! tokens file reloaded without a restart (file change and `SIGHUP`), with no token in any
//! log line or response.
//!
//! The servers run without tasks, so no Milvus is touched; they need `MILVUS_CDC_BIN` built
//! and the `openssl` command. Skipped unless `MCDC_E2E` is set, like the other e2e tests.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

const ADMIN: &str = "e2e-admin-token-0123456789abcdef";
const READ: &str = "e2e-read-token-0123456789abcdef";
const NEW: &str = "e2e-added-token-0123456789abcdef";

fn bin(test: &str) -> Option<PathBuf> {
    if std::env::var_os("MCDC_E2E").is_none() {
        eprintln!("SKIP {test}: set MCDC_E2E=1 (and MILVUS_CDC_BIN)");
        return None;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let b = std::env::var("MILVUS_CDC_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo.join("target/debug/milvus-cdc"));
    assert!(
        b.exists(),
        "{} not found: cargo build -p milvus-cdc",
        b.display()
    );
    Some(b)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A server config in `dir` listening on `port`, with `extra` YAML appended.
fn config(dir: &Path, port: u16, extra: &str) -> PathBuf {
    let p = dir.join(format!("server-{port}.yaml"));
    std::fs::write(
        &p,
        format!(
            "address: 127.0.0.1:{port}\nstate_dir: {}\n\
             source:\n  etcd: {{ endpoints: [\"127.0.0.1:2379\"], root_path: by-dev }}\n  \
             mq: {{ kafka: {{ brokers: [\"127.0.0.1:19092\"] }} }}\n  cluster_prefix: by-dev\n\
             {extra}",
            dir.join(format!("state-{port}")).display()
        ),
    )
    .expect("write the config");
    p
}

struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Server {
    fn spawn(bin: &Path, config: &Path, port: u16, log: PathBuf) -> Server {
        let err = std::fs::File::create(&log).expect("log file");
        let child = Command::new(bin)
            .args(["serve", "--config"])
            .arg(config)
            .env("MILVUS_CDC_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("spawn serve");
        let s = Server { child, port, log };
        let t = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "serve not listening:\n{}",
                s.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        s
    }
    /// The log without colour codes.
    fn log_text(&self) -> String {
        let raw =
            String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned();
        let mut out = String::with_capacity(raw.len());
        let mut it = raw.chars();
        while let Some(c) = it.next() {
            if c == '\u{1b}' {
                for d in it.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn request(method: &str, path: &str, token: Option<&str>, body: &str) -> String {
    let auth = token
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         {auth}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Status and the whole response (head and body) as text.
fn parse(raw: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(raw).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    text.starts_with("HTTP/").then_some((status, text))
}

fn plain(port: u16, req: &str) -> Vec<u8> {
    let mut raw = Vec::new();
    if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = s.write_all(req.as_bytes());
        let _ = s.read_to_end(&mut raw);
    }
    raw
}

fn http(port: u16, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let raw = plain(port, &request(method, path, token, ""));
    parse(&raw).unwrap_or_else(|| panic!("no HTTP answer: {:?}", String::from_utf8_lossy(&raw)))
}

/// One request over TLS, trusting only `roots`.
fn https(port: u16, roots: &[CertificateDer<'static>], req: &str) -> Result<(u16, String), String> {
    let mut store = rustls::RootCertStore::empty();
    for c in roots {
        store.add(c.clone()).map_err(|e| e.to_string())?;
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(store)
    .with_no_client_auth();
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).map_err(|e| e.to_string())?;
    let sock = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            // a peer closing without close_notify after the whole answer
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => break,
            Err(e) => return Err(e.to_string()),
        }
    }
    parse(&raw).ok_or_else(|| format!("not HTTP: {:?}", String::from_utf8_lossy(&raw)))
}

/// A self-signed certificate for `localhost` / 127.0.0.1: (cert path, key path).
fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

#[test]
fn https_with_a_self_signed_certificate_and_no_plain_http_on_that_port() {
    let Some(bin) = bin("https_with_a_self_signed_certificate") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = self_signed(dir.path(), "server");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("{ADMIN} admin\n")).expect("tokens");
    let port = free_port();
    let cfg = config(
        dir.path(),
        port,
        &format!(
            "auth: {{ tokens_file: {} }}\ntls: {{ cert_path: {}, key_path: {} }}\n",
            tokens.display(),
            cert.display(),
            key.display()
        ),
    );
    let server = Server::spawn(&bin, &cfg, port, dir.path().join("tls.log"));
    let roots: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .expect("read the certificate")
        .collect::<Result<_, _>>()
        .expect("parse the certificate");

    let (status, text) = https(port, &roots, &request("GET", "/healthz", None, ""))
        .unwrap_or_else(|e| panic!("HTTPS /healthz: {e}\n{}", server.log_text()));
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"status\":\"ok\""), "{text}");
    let (status, text) = https(port, &roots, &request("GET", "/tasks", Some(ADMIN), "")).unwrap();
    assert_eq!(status, 200, "{text}");
    let (status, _) = https(port, &roots, &request("GET", "/tasks", None, "")).unwrap();
    assert_eq!(status, 401, "no token over HTTPS");
    let body = r#"{"request_type":"list","request_data":{}}"#;
    let (status, text) = https(port, &roots, &request("POST", "/cdc", Some(ADMIN), body)).unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains(ADMIN));

    // a client that does not trust the certificate fails the handshake
    let e = https(port, &[], &request("GET", "/healthz", None, "")).unwrap_err();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    // plain HTTP on the TLS port gets no HTTP answer
    let raw = plain(port, &request("GET", "/healthz", None, ""));
    assert!(
        parse(&raw).is_none(),
        "plain HTTP answered: {:?}",
        String::from_utf8_lossy(&raw)
    );
    let log = server.log_text();
    assert!(
        log.contains("https=true") || log.contains("\"https\":true"),
        "{log}"
    );
    assert!(!log.contains(ADMIN), "a token in the log");
}

#[test]
fn bad_certificate_or_key_files_stop_the_start_naming_the_field() {
    let Some(bin) = bin("bad_certificate_or_key_files") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = self_signed(dir.path(), "one");
    let (_, other_key) = self_signed(dir.path(), "two");
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not PEM\n").expect("junk");
    let missing = dir.path().join("missing.crt");
    for (c, k, expect) in [
        (&missing, &key, "tls.cert_path"),
        (&junk, &key, "tls.cert_path"),
        (&cert, &junk, "tls.key_path"),
        (&cert, &other_key, "does not fit"),
    ] {
        let port = free_port();
        let cfg = config(
            dir.path(),
            port,
            &format!(
                "tls: {{ cert_path: {}, key_path: {} }}\n",
                c.display(),
                k.display()
            ),
        );
        let out = Command::new(&bin)
            .args(["serve", "--config"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .output()
            .expect("run serve");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "serve started with {c:?} {k:?}");
        assert!(err.contains(expect), "{expect}: {err}");
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "the port is served"
        );
    }
    // a config key that does not exist is named too
    let port = free_port();
    let cfg = config(dir.path(), port, "tls: { cert: /x, key_path: /y }\n");
    let out = Command::new(&bin)
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .expect("run serve");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cert"));
}

/// Wait until `token` gets `want` on `GET /tasks`.
fn wait_status(s: &Server, token: &str, want: u16, within: Duration) {
    let t = Instant::now();
    loop {
        let (status, _) = http(s.port, "GET", "/tasks", Some(token));
        if status == want {
            return;
        }
        assert!(
            t.elapsed() < within,
            "token still gets {status}, not {want}:\n{}",
            s.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn tokens_reload_on_file_change_and_on_sighup_and_appear_nowhere() {
    let Some(bin) = bin("tokens_reload") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut answers = String::new();

    // periodic check (reload_secs: 1)
    let tokens = dir.path().join("tokens-a");
    std::fs::write(&tokens, format!("{ADMIN} admin\n{READ} read\n")).expect("tokens");
    let port = free_port();
    let cfg = config(
        dir.path(),
        port,
        &format!(
            "auth: {{ tokens_file: {}, reload_secs: 1 }}\n",
            tokens.display()
        ),
    );
    let s = Server::spawn(&bin, &cfg, port, dir.path().join("a.log"));
    wait_status(&s, ADMIN, 200, Duration::from_secs(5));
    let (status, text) = http(port, "GET", "/tasks", Some(NEW));
    assert_eq!(status, 401);
    answers += &text;
    let create = r#"{"request_type":"delete","request_data":{"task_id":"x"}}"#;
    let raw = plain(port, &request("POST", "/cdc", Some(READ), create));
    let (status, text) = parse(&raw).expect("answer");
    assert_eq!(status, 403, "{text}");
    answers += &text;
    std::fs::write(&tokens, format!("{NEW} admin\n{READ} read\n")).expect("tokens");
    let changed = Instant::now();
    wait_status(&s, NEW, 200, Duration::from_secs(5));
    eprintln!("file change picked up after {:?}", changed.elapsed());
    let (status, text) = http(port, "GET", "/tasks", Some(ADMIN));
    assert_eq!(status, 401, "a removed token still works");
    answers += &text;
    // a broken file keeps the tokens in force
    std::fs::write(&tokens, format!("{ADMIN}\n")).expect("tokens");
    let t = Instant::now();
    while !s.log_text().contains("Cannot reload the tokens file") {
        assert!(t.elapsed() < Duration::from_secs(5), "{}", s.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_status(&s, NEW, 200, Duration::from_secs(1));
    wait_status(&s, ADMIN, 401, Duration::from_secs(1));
    let log_a = s.log_text();
    drop(s);

    // SIGHUP only (reload_secs: 0)
    let tokens = dir.path().join("tokens-b");
    std::fs::write(&tokens, format!("{ADMIN} admin\n")).expect("tokens");
    let port = free_port();
    let cfg = config(
        dir.path(),
        port,
        &format!(
            "auth: {{ tokens_file: {}, reload_secs: 0 }}\n",
            tokens.display()
        ),
    );
    let s = Server::spawn(&bin, &cfg, port, dir.path().join("b.log"));
    wait_status(&s, ADMIN, 200, Duration::from_secs(5));
    std::fs::write(&tokens, format!("{NEW} admin\n")).expect("tokens");
    std::thread::sleep(Duration::from_secs(2));
    let (status, _) = http(port, "GET", "/tasks", Some(ADMIN));
    assert_eq!(
        status, 200,
        "reloaded without SIGHUP although reload_secs is 0"
    );
    let hup = Command::new("kill")
        .args(["-HUP", &s.child.id().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(hup.success());
    wait_status(&s, NEW, 200, Duration::from_secs(5));
    let (status, text) = http(port, "GET", "/tasks", Some(ADMIN));
    assert_eq!(status, 401);
    answers += &text;
    let log_b = s.log_text();
    drop(s);

    for (what, text) in [("log a", &log_a), ("log b", &log_b), ("answers", &answers)] {
        for t in [ADMIN, READ, NEW] {
            assert!(!text.contains(t), "a token in the {what}:\n{text}");
        }
    }
    assert!(log_a.contains("Reloaded the tokens file"), "{log_a}");
    assert!(
        log_b.contains("trigger=\"SIGHUP\"") || log_b.contains("SIGHUP"),
        "{log_b}"
    );
    assert!(
        log_a.contains("Refused a request without a valid token"),
        "debug refusals logged"
    );
}
