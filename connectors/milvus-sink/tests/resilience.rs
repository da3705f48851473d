//! Failure handling against the real target: a target that is unreachable at build, and a
//! target that goes away mid-stream and comes back (through a TCP relay this test controls,
//! so the shared target keeps running): retries succeed and nothing is lost.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cdc_connector_milvus_sink::MilvusSinkConfig;
use cdc_engine::config::{BuildContext, SinkConfig};
use cdc_engine::{Ddl, ErrorKind};
use common::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A TCP relay to `upstream` on a fixed local port that can be switched off and on.
struct Relay {
    port: u16,
    upstream: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl Relay {
    async fn start(upstream: SocketAddr) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let mut r = Relay {
            port,
            upstream,
            task: None,
        };
        r.task = Some(tokio::spawn(serve(l, upstream)));
        r
    }

    /// Close the listener and cut every relayed connection.
    fn down(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    async fn up(&mut self) {
        let l = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        self.task = Some(tokio::spawn(serve(l, self.upstream)));
    }
}

async fn serve(l: TcpListener, upstream: SocketAddr) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let Ok((mut down, _)) = l.accept().await else {
            return;
        };
        conns.spawn(async move {
            if let Ok(mut up) = TcpStream::connect(upstream).await {
                let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
            }
        });
    }
}

fn target_addr() -> SocketAddr {
    let uri = target_uri();
    let hostport = uri.trim_start_matches("http://").trim_end_matches('/');
    hostport.parse().unwrap()
}

#[tokio::test]
async fn unreachable_target_fails_build_with_the_uri() {
    if !e2e("unreachable_target_fails_build_with_the_uri") {
        return;
    }
    // A port nobody listens on.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let uri = format!("http://127.0.0.1:{}", l.local_addr().unwrap().port());
    drop(l);
    let mut cfg = MilvusSinkConfig::new(&uri);
    cfg.connect_timeout_secs = 2;
    let err = match SinkConfig::build(&cfg, &BuildContext::new("test", "t")).await {
        Ok(_) => panic!("built a sink for a closed port"),
        Err(e) => e,
    };
    println!("error as the operator sees it: {err}");
    assert_eq!(err.kind, ErrorKind::Connect);
    assert!(err.retriable);
    assert!(err.message.contains(&uri), "{err}");
    let err = cfg.check_connection().await.unwrap_err();
    assert!(err.message.contains(&uri), "{err}");
    // And the real target answers the same check.
    let version = MilvusSinkConfig::new(target_uri())
        .check_connection()
        .await
        .unwrap();
    println!("target version: {version}");
}

#[tokio::test]
async fn target_down_then_back_loses_nothing() {
    if !e2e("target_down_then_back_loses_nothing") {
        return;
    }
    let mut relay = Relay::start(target_addr()).await;
    let mut cfg = MilvusSinkConfig::new(format!("http://127.0.0.1:{}", relay.port));
    cfg.retry.max_attempts = 200;
    cfg.retry.initial_backoff_ms = 50;
    cfg.retry.max_backoff_ms = 500;
    cfg.request_timeout_secs = 5;
    cfg.batch.linger_ms = 20;
    let v = Verifier::connect(&target_uri()).await;
    let coll = unique("sink_down");
    let def = int_def(&coll, 8, false, false);
    let mut ev = Events::new("default", &coll, Some(def.clone()));
    let mut sink = open_sink(&cfg, "down").await;
    for e in [
        ev.ddl(Ddl::CreateCollection(Box::new(def))),
        ev.ddl(flat_index("vec", "L2")),
        ev.ddl(load()),
    ] {
        sink.write(e).await.unwrap();
    }
    let first: Vec<i64> = (1..=100).collect();
    sink.write(ev.insert("_default", int_rows(&first, 8, "a")))
        .await
        .unwrap();
    sink.flush().await.unwrap();

    // The target disappears; writes are accepted (buffered and retried) and the flush waits
    // until it is back.
    relay.down();
    let started = Instant::now();
    for chunk in (101..=300).collect::<Vec<i64>>().chunks(50) {
        sink.write(ev.insert("_default", int_rows(chunk, 8, "b")))
            .await
            .unwrap();
    }
    sink.write(ev.delete_int(&[1, 2, 3])).await.unwrap();
    let restore = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        relay.up().await;
    };
    let (flushed, ()) = tokio::join!(sink.flush(), restore);
    flushed.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "the flush waited for the target"
    );
    let want: Vec<i64> = (4..=300).collect();
    assert_eq!(v.int_keys("default", &coll, "id > 0").await, want);

    sink.write(ev.ddl(Ddl::DropCollection)).await.unwrap();
    sink.flush().await.unwrap();
}

#[tokio::test]
async fn retries_give_up_with_a_retriable_error() {
    if !e2e("retries_give_up_with_a_retriable_error") {
        return;
    }
    let mut relay = Relay::start(target_addr()).await;
    let mut cfg = MilvusSinkConfig::new(format!("http://127.0.0.1:{}", relay.port));
    cfg.retry.max_attempts = 3;
    cfg.retry.initial_backoff_ms = 50;
    cfg.retry.max_backoff_ms = 100;
    cfg.request_timeout_secs = 2;
    let coll = unique("sink_giveup");
    let def = int_def(&coll, 8, false, false);
    let mut ev = Events::new("default", &coll, Some(def.clone()));
    let mut sink = open_sink(&cfg, "giveup").await;
    sink.write(ev.ddl(Ddl::CreateCollection(Box::new(def))))
        .await
        .unwrap();
    relay.down();
    sink.write(ev.insert("_default", int_rows(&[1], 8, "a")))
        .await
        .unwrap();
    let err = sink.flush().await.unwrap_err();
    println!("error as the operator sees it: {err}");
    assert_eq!(err.kind, ErrorKind::Write);
    assert!(err.retriable, "{err}");
    assert!(err.message.contains("after 3 attempts"), "{err}");
    relay.up().await;
    let mut cleanup = open_sink(&MilvusSinkConfig::new(target_uri()), "giveup").await;
    cleanup.write(ev.ddl(Ddl::DropCollection)).await.unwrap();
}
