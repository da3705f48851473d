//! `milvus-cdc bench-decode`: how fast Milvus messages are decoded compared with how fast the
//! broker hands them out. Reads the DML topics twice from the beginning with a plain
//! consumer per topic, from `--last` messages before its end: once only counting bytes (the
//! raw consume rate), once decoding every message
//! (MsgHeader, then the typed message with its column data). Prints both rates and their
//! ratio; the target is a ratio of at least 0.8.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cdc_protocol::header::{self, MqMessage};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// What one pass over the topics saw.
#[derive(Default)]
struct Pass {
    messages: u64,
    bytes: u64,
    rows: u64,
    errors: u64,
    by_type: BTreeMap<&'static str, u64>,
    seconds: f64,
}

impl Pass {
    fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.seconds.max(1e-9)
    }
}

/// Run the benchmark on the `last` newest messages of each topic; `topics` empty means every
/// `{cluster}-rootcoord-dml_*` topic.
pub fn bench_decode(
    brokers: &str,
    cluster: &str,
    topics: &[String],
    last: i64,
) -> anyhow::Result<()> {
    let topics = if topics.is_empty() {
        dml_topics(brokers, cluster)?
    } else {
        topics.to_vec()
    };
    if topics.is_empty() {
        bail!("no topic {cluster}-rootcoord-dml_* on {brokers}: write some rows to the source first (or pass --topic)");
    }
    eprintln!("bench-decode: topics {topics:?} on {brokers}");
    let raw = pass(brokers, &topics, false, last)?;
    let decoded = pass(brokers, &topics, true, last)?;
    let raw2 = pass(brokers, &topics, false, last)?;
    // The better raw pass: the broker's page cache is warm for both.
    let raw = if raw2.seconds < raw.seconds {
        raw2
    } else {
        raw
    };
    println!(
        "bench-decode: raw consume   {:>9} messages {:>8.1} MB in {:>6.2}s = {:>7.1} MB/s",
        raw.messages,
        raw.bytes as f64 / 1e6,
        raw.seconds,
        raw.mb_per_s()
    );
    println!(
        "bench-decode: consume+decode {:>8} messages {:>8.1} MB in {:>6.2}s = {:>7.1} MB/s ({} rows, {} undecodable)",
        decoded.messages,
        decoded.bytes as f64 / 1e6,
        decoded.seconds,
        decoded.mb_per_s(),
        decoded.rows,
        decoded.errors
    );
    println!("bench-decode: message types {:?}", decoded.by_type);
    println!(
        "bench-decode: ratio decode/raw = {:.2} (target >= 0.80)",
        decoded.mb_per_s() / raw.mb_per_s().max(1e-9)
    );
    Ok(())
}

fn consumer(brokers: &str) -> anyhow::Result<BaseConsumer> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "milvus-cdc-bench-decode")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("fetch.max.bytes", "16777216")
        .set("max.partition.fetch.bytes", "4194304")
        // The noida broker ignores the fetch limits (see `pass`).
        .set("receive.message.max.bytes", "1073741824")
        .create()
        .with_context(|| format!("cannot create a Kafka consumer for {brokers}"))
}

fn dml_topics(brokers: &str, cluster: &str) -> anyhow::Result<Vec<String>> {
    let c = consumer(brokers)?;
    let md = c
        .fetch_metadata(None, Duration::from_secs(10))
        .with_context(|| format!("cannot read topic metadata from {brokers}"))?;
    let prefix = format!("{cluster}-rootcoord-dml_");
    let mut t: Vec<String> = md
        .topics()
        .iter()
        .map(|t| t.name().to_string())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    t.sort();
    Ok(t)
}

/// One pass: each topic in turn with its own consumer (as the source reads them), from
/// `last` messages before its end. noida-db (the dev broker) ignores the fetch size limits and
/// answers a fetch with everything past the offset over all assigned topics: one consumer of
/// every topic from the beginning got a response over `receive.message.max.bytes` once the
/// topics held more than that, and librdkafka then reconnects and fetches again for ever ("no
/// message for 10s").
fn pass(brokers: &str, topics: &[String], decode: bool, last: i64) -> anyhow::Result<Pass> {
    let mut out = Pass::default();
    for topic in topics {
        pass_topic(brokers, topic, decode, last, &mut out)?;
    }
    Ok(out)
}

fn pass_topic(
    brokers: &str,
    topic: &str,
    decode: bool,
    last: i64,
    out: &mut Pass,
) -> anyhow::Result<()> {
    let c = consumer(brokers)?;
    let (low, high) = c.fetch_watermarks(topic, 0, Duration::from_secs(10))?;
    let from = low.max(high - last);
    if high <= from {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(from))?;
    c.assign(&tpl)?;
    let start = Instant::now();
    loop {
        match c.poll(Duration::from_secs(10)) {
            None => bail!(
                "no message from {topic} for 10s before its end (offset {from}..{high}); \
                 a fetch response over receive.message.max.bytes looks like this: try a \
                 smaller --last"
            ),
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => bail!("consuming {topic}: {e}"),
            Some(Ok(m)) => {
                let payload = m.payload().unwrap_or_default();
                out.messages += 1;
                out.bytes += payload.len() as u64;
                if decode {
                    match header::decode(payload) {
                        Ok(msg) => {
                            let name = header::msg_type_name(msg.msg_type()).unwrap_or("Unknown");
                            *out.by_type.entry(name).or_default() += 1;
                            if let MqMessage::Insert(r) = &msg {
                                out.rows += r.num_rows;
                            }
                            std::hint::black_box(&msg);
                        }
                        Err(_) => out.errors += 1,
                    }
                }
                if m.offset() + 1 >= high {
                    break;
                }
            }
        }
    }
    out.seconds += start.elapsed().as_secs_f64();
    Ok(())
}
