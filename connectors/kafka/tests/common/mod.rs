//! Shared helpers of the Kafka sink integration tests: the skip rule, a real consumer that
//! reads a topic to its end, an in-memory source of sample changes and a sink context.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cdc_engine::metrics::ComponentMetrics;
use cdc_engine::{ChangeEvent, EngineError, SinkContext, Source};
use cdc_state::Offsets;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// True when the end-to-end tests should run; prints why a test is skipped otherwise.
pub fn e2e(test: &str) -> bool {
    if std::env::var_os("MCDC_E2E").is_some() {
        return true;
    }
    println!(
        "SKIPPED {test}: set MCDC_E2E=1 after `scripts/dev-env up kafka` (and \
         `eval \"$(scripts/dev-env env)\"`) to run it against the real Kafka-protocol broker"
    );
    false
}

/// The broker of the dev environment.
pub fn brokers() -> String {
    std::env::var("MCDC_KAFKA").unwrap_or_else(|_| "127.0.0.1:19092".into())
}

/// A unique name for this test run.
pub fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}", n % 1_000_000_000_000)
}

/// A sink context for tests.
pub fn ctx(pipeline: &str, sink_id: &str) -> SinkContext {
    SinkContext {
        pipeline: pipeline.to_string(),
        sink_id: sink_id.to_string(),
        committed: Arc::new(Offsets::new()),
        metrics: ComponentMetrics::new(pipeline, &cdc_engine::ComponentId::sink(sink_id)),
    }
}

/// A message read back.
#[derive(Debug, Clone)]
pub struct Msg {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub payload: Vec<u8>,
    pub headers: BTreeMap<String, String>,
}

impl Msg {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap()
    }
}

/// Every message of `topic` visible with `isolation` (`read_committed` or
/// `read_uncommitted`), partition by partition in offset order. A missing topic is empty.
pub fn read_topic(topic: &str, isolation: &str) -> Vec<Msg> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", unique("test-reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", isolation)
        .create()
        .unwrap();
    let timeout = Duration::from_secs(10);
    let md = consumer.fetch_metadata(Some(topic), timeout).unwrap();
    let Some(t) = md
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
    else {
        return Vec::new();
    };
    let mut tpl = TopicPartitionList::new();
    let mut pending = HashSet::new();
    for p in t.partitions() {
        let (low, high) = consumer.fetch_watermarks(topic, p.id(), timeout).unwrap();
        if high > low {
            tpl.add_partition_offset(topic, p.id(), Offset::Offset(low))
                .unwrap();
            pending.insert(p.id());
        }
    }
    if pending.is_empty() {
        return Vec::new();
    }
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    while !pending.is_empty() {
        assert!(Instant::now() < deadline, "reading {topic} timed out");
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                pending.remove(&p);
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            Some(Ok(m)) => {
                let mut headers = BTreeMap::new();
                if let Some(h) = m.headers() {
                    for i in 0..h.count() {
                        let hd = h.get(i);
                        headers.insert(
                            hd.key.to_string(),
                            String::from_utf8_lossy(hd.value.unwrap_or_default()).to_string(),
                        );
                    }
                }
                out.push(Msg {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(|k| String::from_utf8_lossy(k).to_string()),
                    payload: m.payload().unwrap_or_default().to_vec(),
                    headers,
                });
            }
        }
    }
    out.sort_by_key(|m| (m.partition, m.offset));
    out
}

/// A bounded source of sample inserts, one row per change: change `n` (1-based) inserts
/// primary key `n` at offset `n` of one channel. Resumes after the committed offset.
pub struct SampleSource {
    pub channel: String,
    pub last: u64,
    pub next: u64,
    pub delay: Duration,
}

impl SampleSource {
    pub fn new(channel: &str, last: u64, delay: Duration) -> Self {
        Self {
            channel: channel.into(),
            last,
            next: 1,
            delay,
        }
    }
}

#[async_trait]
impl Source for SampleSource {
    async fn open(&mut self, resume: &Offsets) -> Result<(), EngineError> {
        if let Some(o) = resume.get(&self.channel) {
            self.next = u64::from_be_bytes(o.as_slice().try_into().unwrap()) + 1;
        }
        Ok(())
    }

    async fn next(&mut self) -> Result<Option<ChangeEvent>, EngineError> {
        if self.next > self.last {
            return Ok(None);
        }
        tokio::time::sleep(self.delay).await;
        let n = self.next;
        self.next += 1;
        Ok(Some(cdc_events::sample::insert(
            &self.channel,
            n,
            1_700_000_000_000 + n,
            &[n as i64],
        )))
    }

    fn offsets(&self) -> Offsets {
        let mut o = Offsets::new();
        if self.next > 1 {
            o.insert(self.channel.clone(), (self.next - 1).to_be_bytes().to_vec());
        }
        o
    }
}
