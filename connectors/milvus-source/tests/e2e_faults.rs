//! Fault tests of the source's message-queue reader on a private broker (own ports, own data,
//! no shared service touched): the broker is stopped and started again under a reading
//! [`ResilientReader`], which must deliver every message once, in order, across the outage,
//! report the outage while it lasts, and give up at its deadline when asked to.
//! The etcd watch's fault test lives beside the watcher (`src/meta/watcher/fault_tests.rs`).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cdc_connector_milvus_source::mq::kafka::KafkaClient;
use cdc_connector_milvus_source::mq::resilient::ResilientReader;
use cdc_connector_milvus_source::mq::{MqReader, StartAt, BEFORE_FIRST};
use cdc_connector_milvus_source::KafkaConfig;
use cdc_engine::retry::{reconnecting, RetryPolicy};
use common::private::{self, Service};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use tokio::sync::mpsc;

fn policy(give_up: Option<u64>) -> RetryPolicy {
    RetryPolicy {
        initial: Duration::from_millis(100),
        max: Duration::from_millis(1_000),
        give_up_after: give_up.map(Duration::from_secs),
    }
}

/// Produces messages `from..to` (payload: the number) to `topic`, each confirmed.
async fn produce(broker: &str, topic: &str, from: u32, to: u32) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer");
    for i in from..to {
        let payload = i.to_string();
        producer
            .send(
                FutureRecord::<(), _>::to(topic).payload(&payload),
                Duration::from_secs(30),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("produce {i} to {topic}: {e}"));
    }
}

/// Reads with `reader` in a task, sending each payload (or the final error).
fn spawn_reader(mut reader: ResilientReader) -> mpsc::UnboundedReceiver<Result<u32, String>> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let msg = reader.recv().await;
            let stop = msg.is_err();
            let item = msg
                .map(|m| {
                    std::str::from_utf8(&m.payload)
                        .expect("utf-8")
                        .parse()
                        .expect("number")
                })
                .map_err(|e| e.to_string());
            if tx.send(item).is_err() || stop {
                return;
            }
        }
    });
    rx
}

async fn take(rx: &mut mpsc::UnboundedReceiver<Result<u32, String>>, n: usize) -> Vec<u32> {
    let mut got = Vec::new();
    while got.len() < n {
        match tokio::time::timeout(Duration::from_secs(60), rx.recv()).await {
            Ok(Some(Ok(i))) => got.push(i),
            Ok(Some(Err(e))) => panic!("the reader failed after {got:?}: {e}"),
            Ok(None) => panic!("the reader stopped after {got:?}"),
            Err(_) => panic!("no message within 60 s after {} of {n}", got.len()),
        }
    }
    got
}

fn start_broker(tag: &str, port: u16) -> Option<Service> {
    let mut broker = private::broker(&private::data_dir(tag), port)?;
    broker.start();
    Some(broker)
}

async fn wait_reconnecting(pipeline: &str, want: bool) -> Duration {
    let t0 = Instant::now();
    while reconnecting(pipeline).is_empty() == want {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the outage of {pipeline} was {} listed within 60 s",
            if want { "not" } else { "still" }
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    t0.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_under_a_reader_loses_and_repeats_nothing() {
    let Some(mut broker) = start_broker("f17-kafka", 29192) else {
        return;
    };
    let (pipeline, topic) = ("f17_faults_kafka", "f17_faults-rootcoord-dml_0");
    produce(&broker.endpoint(), topic, 0, 100).await;
    let cfg = KafkaConfig {
        brokers: vec![broker.endpoint()],
        options: Default::default(),
    };
    let client = Arc::new(KafkaClient::new(&cfg, "f17-faults"));
    let reader = ResilientReader::new(
        client,
        topic,
        StartAt::After(BEFORE_FIRST.to_vec()),
        policy(None),
        pipeline,
    );
    let mut rx = spawn_reader(reader);
    let mut got = take(&mut rx, 100).await;

    broker.stop("TERM");
    let seen = wait_reconnecting(pipeline, true).await;
    let outage = &reconnecting(pipeline)[0];
    assert_eq!(outage.dependency, "kafka");
    assert_eq!(outage.components, [format!("reader {topic}")]);
    println!("outage seen after {seen:?}: {outage:?}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        rx.try_recv().is_err(),
        "nothing arrives while the broker is down"
    );

    broker.start();
    produce(&broker.endpoint(), topic, 100, 200).await;
    got.extend(take(&mut rx, 100).await);
    let back = wait_reconnecting(pipeline, false).await;
    println!("outage closed {back:?} after the broker came back");
    assert_eq!(got, (0..200).collect::<Vec<_>>(), "no gap, no repetition");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(rx.try_recv().is_err(), "nothing more");
    let text = cdc_engine::metrics::render();
    let attempts = text
        .lines()
        .find(|l| {
            l.starts_with("milvus_cdc_source_reconnects_total")
                && l.contains(pipeline)
                && l.contains("dependency=\"kafka\"")
        })
        .unwrap_or_else(|| panic!("no reconnect counter in:\n{text}"));
    println!("{attempts}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_away_past_the_deadline_stops_the_reader_with_the_reason() {
    let Some(mut broker) = start_broker("f17-kafka-giveup", 29196) else {
        return;
    };
    let (pipeline, topic) = ("f17_faults_giveup", "f17_giveup-rootcoord-dml_0");
    produce(&broker.endpoint(), topic, 0, 3).await;
    let cfg = KafkaConfig {
        brokers: vec![broker.endpoint()],
        options: Default::default(),
    };
    let reader = ResilientReader::new(
        Arc::new(KafkaClient::new(&cfg, "f17-giveup")),
        topic,
        StartAt::Earliest,
        policy(Some(3)),
        pipeline,
    );
    let mut rx = spawn_reader(reader);
    assert_eq!(take(&mut rx, 3).await, [0, 1, 2]);
    broker.stop("TERM");
    let t0 = Instant::now();
    let err = match tokio::time::timeout(Duration::from_secs(90), rx.recv()).await {
        Ok(Some(Err(e))) => e,
        other => panic!("expected the give-up error, got {other:?}"),
    };
    println!("gave up after {:?}: {err}", t0.elapsed());
    assert!(err.contains("gave up reconnecting to kafka"), "{err}");
    assert!(err.contains(topic), "{err}");
    assert!(reconnecting(pipeline).is_empty(), "the outage is closed");
}
