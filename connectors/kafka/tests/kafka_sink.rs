//! The Kafka sink against the real Kafka-protocol broker of the dev environment (noida-db on
//! 127.0.0.1:19092): hand-built changes with every data type go in, a real consumer reads them
//! back. Skipped unless MCDC_E2E is set; fails when it is set and the broker is unreachable.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cdc_connector_kafka::{Delivery, Format, KafkaSink, KafkaSinkConfig};
use cdc_engine::config::{BuildContext, SinkConfig};
use cdc_engine::{
    ChangeEvent, Ddl, DeliveryGuarantee, EngineError, ErrorKind, Pipeline, PipelineOptions, Sink,
    SinkContext,
};
use cdc_events::sample;
use cdc_events::{split_avro_message, AvroHeader, AvroWire, SchemaRecord};
use cdc_state::{Offsets, SinkCheckpoint, SledStore, StateStore};
use common::*;
use serde_json::{json, Value as Json};

const CH: &str = "by-dev-rootcoord-dml_0";

fn config(prefix: &str) -> KafkaSinkConfig {
    let mut c = KafkaSinkConfig::new(brokers());
    c.topic = format!("{prefix}.{{database}}.{{collection}}");
    c.schema_topic = Some(format!("{prefix}.schemas"));
    c.topic_partitions = 3;
    c
}

async fn open(cfg: &KafkaSinkConfig, pipeline: &str) -> KafkaSink {
    let mut sink = cfg
        .connect("out")
        .await
        .expect("the broker must be reachable");
    sink.open(&ctx(pipeline, "out")).await.unwrap();
    sink
}

async fn write_all(sink: &mut KafkaSink, events: Vec<ChangeEvent>) {
    for e in events {
        sink.write(Arc::new(e)).await.unwrap();
    }
}

async fn checkpoint(sink: &mut KafkaSink, epoch: u64, last_offset: u64) {
    let mut o = Offsets::new();
    o.insert(CH.into(), last_offset.to_be_bytes().to_vec());
    sink.pre_commit(epoch, &o).await.unwrap();
    sink.flush().await.unwrap();
    sink.commit(epoch).await.unwrap();
}

/// The changes of the main scenario, in source order.
fn scenario() -> Vec<ChangeEvent> {
    vec![
        sample::create_collection(CH, 1, 1000),
        sample::insert(CH, 2, 1001, &[1, 2, 3]),
        sample::upsert(CH, 3, 1002, &[2]),
        sample::delete(CH, 4, 1003, &[1]),
        sample::ddl(
            CH,
            5,
            1004,
            Ddl::CreatePartition {
                partition: "p1".into(),
            },
        ),
        sample::database_ddl("by-dev-replicate-msg", 6, 1005, "sales", Ddl::DropDatabase),
    ]
}

/// Ops per key, in partition order (a key lives on one partition).
fn ops_by_key(msgs: &[Msg]) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for msg in msgs {
        m.entry(msg.key.clone().unwrap_or_default())
            .or_default()
            .push(msg.headers["op"].clone());
    }
    m
}

#[tokio::test]
async fn json_events_keys_headers_and_order_per_pk() {
    if !e2e("json_events_keys_headers_and_order_per_pk") {
        return;
    }
    let prefix = unique("mcdc-json");
    let mut sink = open(&config(&prefix), "p-json").await;
    write_all(&mut sink, scenario()).await;
    checkpoint(&mut sink, 1, 6).await;
    sink.close().await;

    let msgs = read_topic(&format!("{prefix}.default.all_types"), "read_committed");
    assert_eq!(msgs.len(), 1 + 3 + 1 + 1 + 1, "{msgs:#?}");
    assert_eq!(
        ops_by_key(&msgs),
        BTreeMap::from([
            ("1".into(), vec!["c".into(), "d".into()]),
            ("2".into(), vec!["c".into(), "u".into()]),
            ("3".into(), vec!["c".into()]),
            ("all_types".into(), vec!["ddl".into(), "ddl".into()]),
        ])
    );
    for m in &msgs {
        let j = m.json();
        let h = &m.headers;
        assert_eq!(h["op"], j["op"].as_str().unwrap());
        assert_eq!(h["source_channel"], CH);
        assert_eq!(h["source_offset"], j["source"]["offset"].as_str().unwrap());
        assert_eq!(h["ts"], j["ts"].to_string());
        assert_eq!(h["schema_version"], "1");
        match h["op"].as_str() {
            "c" | "u" => {
                let k = j["pk"].as_i64().unwrap();
                assert_eq!(m.key.as_deref(), Some(k.to_string().as_str()));
                assert_eq!(j["row"], sample::expected_row(k, true), "row {k}");
            }
            "d" => {
                assert_eq!(j["pk"], 1);
                assert_eq!(j["row"], Json::Null);
            }
            _ => assert!(j["ddl"] == "create_collection" || j["ddl"] == "create_partition"),
        }
    }
    let create = msgs
        .iter()
        .find(|m| m.json()["ddl"] == "create_collection")
        .unwrap();
    assert_eq!(
        create.json()["description"]["schema"]["fields"][0]["name"],
        "id"
    );

    let db = read_topic(&format!("{prefix}.sales._database"), "read_committed");
    assert_eq!(db.len(), 1);
    assert_eq!(db[0].key.as_deref(), Some("sales"));
    assert_eq!(db[0].json()["ddl"], "drop_database");
}

/// Decode an Avro message with the schema the sink published for it.
fn decode(records: &[SchemaRecord], msg: &[u8]) -> apache_avro::types::Value {
    let (header, mut datum) = split_avro_message(msg).expect("an Avro framing");
    let rec = records
        .iter()
        .find(|r| match header {
            AvroHeader::Fingerprint(fp) => {
                r.fingerprint == fp.iter().map(|b| format!("{b:02x}")).collect::<String>()
            }
            AvroHeader::SchemaId(id) => r.schema_id == id,
        })
        .unwrap_or_else(|| panic!("no published schema for {header:?}"));
    let schema = apache_avro::Schema::parse_str(&rec.schema).unwrap();
    apache_avro::from_avro_datum(&schema, &mut datum, None).unwrap()
}

fn avro_to_json(v: apache_avro::types::Value) -> Json {
    Json::try_from(v).unwrap()
}

/// The decoded Avro row in the JSON row form (bytes to base64, JSON text parsed, `_meta`
/// merged).
fn avro_row(rec: &Json) -> Json {
    use base64::Engine as _;
    let mut out = serde_json::Map::new();
    for (k, v) in rec.as_object().unwrap() {
        match k.as_str() {
            "_meta" => out.extend(
                serde_json::from_str::<Json>(v.as_str().unwrap())
                    .unwrap()
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
            "j" => {
                out.insert(
                    k.clone(),
                    serde_json::from_str(v.as_str().unwrap()).unwrap(),
                );
            }
            "bv" => {
                let bytes: Vec<u8> = serde_json::from_value(v.clone()).unwrap();
                out.insert(
                    k.clone(),
                    json!(base64::engine::general_purpose::STANDARD.encode(bytes)),
                );
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Json::Object(out)
}

#[tokio::test]
async fn avro_events_decode_with_the_published_schema() {
    if !e2e("avro_events_decode_with_the_published_schema") {
        return;
    }
    for wire in [AvroWire::SingleObject, AvroWire::Confluent] {
        let prefix = unique("mcdc-avro");
        let mut cfg = config(&prefix);
        cfg.format = Format::Avro;
        cfg.avro_wire = wire;
        let mut sink = open(&cfg, "p-avro").await;
        write_all(&mut sink, scenario()).await;
        checkpoint(&mut sink, 1, 6).await;
        sink.close().await;

        let records: Vec<SchemaRecord> = read_topic(&format!("{prefix}.schemas"), "read_committed")
            .iter()
            .map(|m| serde_json::from_slice(&m.payload).unwrap())
            .collect();
        // The collection's version 1 and the generic DDL envelope.
        assert_eq!(records.len(), 2, "{records:#?}");
        let msgs = read_topic(&format!("{prefix}.default.all_types"), "read_committed");
        assert_eq!(msgs.len(), 7);
        for m in &msgs {
            let j = avro_to_json(decode(&records, &m.payload));
            assert_eq!(j["op"], m.headers["op"].as_str());
            if matches!(m.headers["op"].as_str(), "c" | "u") {
                let k = j["pk"].as_i64().unwrap();
                assert_eq!(
                    avro_row(&j["row"]),
                    sample::expected_row(k, true),
                    "{wire:?} row {k}"
                );
            }
        }
        let db = read_topic(&format!("{prefix}.sales._database"), "read_committed");
        let j = avro_to_json(decode(&records, &db[0].payload));
        assert_eq!(j["ddl"], "drop_database");
    }
}

#[tokio::test]
async fn schema_versions_continue_after_a_restart() {
    if !e2e("schema_versions_continue_after_a_restart") {
        return;
    }
    let prefix = unique("mcdc-ver");
    let cfg = config(&prefix);
    let mut sink = open(&cfg, "p-ver").await;
    write_all(&mut sink, vec![sample::insert(CH, 1, 1, &[1])]).await;
    checkpoint(&mut sink, 1, 1).await;
    sink.close().await;

    // Restart, then the collection is re-created (new id): version 2, not 1 again.
    let mut sink = open(&cfg, "p-ver").await;
    let mut recreated = sample::insert(CH, 2, 2, &[2]);
    recreated.collection_id += 1;
    write_all(&mut sink, vec![sample::insert(CH, 2, 2, &[1]), recreated]).await;
    checkpoint(&mut sink, 2, 2).await;
    sink.close().await;
    let versions: Vec<String> =
        read_topic(&format!("{prefix}.default.all_types"), "read_committed")
            .iter()
            .map(|m| m.headers["schema_version"].clone())
            .collect();
    assert_eq!(versions, ["1", "1", "2"]);
    assert_eq!(
        read_topic(&format!("{prefix}.schemas"), "read_committed").len(),
        2
    );
}

fn eos_config(prefix: &str) -> KafkaSinkConfig {
    let mut c = config(prefix);
    c.delivery = Delivery::ExactlyOnce;
    c.transactional_id = Some(format!("{prefix}.txn"));
    c
}

#[tokio::test]
async fn exactly_once_is_invisible_until_commit_and_a_dropped_sink_publishes_nothing() {
    if !e2e("exactly_once_is_invisible_until_commit_and_a_dropped_sink_publishes_nothing") {
        return;
    }
    let prefix = unique("mcdc-eos");
    let cfg = eos_config(&prefix);
    let topic = format!("{prefix}.default.all_types");
    let mut sink = open(&cfg, "p-eos").await;
    assert_eq!(sink.delivery(), DeliveryGuarantee::ExactlyOnce);
    assert_eq!(sink.committed_checkpoint().await.unwrap().unwrap().epoch, 0);
    write_all(&mut sink, vec![sample::insert(CH, 1, 1, &[1, 2])]).await;
    let mut o = Offsets::new();
    o.insert(CH.into(), 1u64.to_be_bytes().to_vec());
    sink.pre_commit(1, &o).await.unwrap();
    sink.flush().await.unwrap();
    // Delivered, but not committed.
    assert_eq!(read_topic(&topic, "read_uncommitted").len(), 2);
    assert!(read_topic(&topic, "read_committed").is_empty());
    sink.commit(1).await.unwrap();
    assert_eq!(read_topic(&topic, "read_committed").len(), 2);

    // Epoch 2 is written and flushed, then the process "dies" (no commit, no close).
    write_all(&mut sink, vec![sample::insert(CH, 2, 2, &[3])]).await;
    o.insert(CH.into(), 2u64.to_be_bytes().to_vec());
    sink.pre_commit(2, &o).await.unwrap();
    sink.flush().await.unwrap();
    std::mem::forget(sink);

    // A new instance fences the old one, aborts epoch 2 and reports epoch 1 as committed.
    let mut again = open(&cfg, "p-eos").await;
    let cp = again.committed_checkpoint().await.unwrap().unwrap();
    assert_eq!(cp.epoch, 1);
    assert_eq!(cp.offsets[CH], 1u64.to_be_bytes().to_vec());
    let committed = read_topic(&topic, "read_committed");
    assert_eq!(
        committed
            .iter()
            .map(|m| m.key.clone().unwrap())
            .collect::<Vec<_>>(),
        ["1", "2"]
    );
    again.close().await;
}

/// Delegates to the Kafka sink but "crashes" at a chosen commit: after the engine stored the
/// checkpoint, before the Kafka transaction commits, and without closing the producer.
struct CrashingSink {
    inner: Option<KafkaSink>,
    crash_at_commit: usize,
    commits: usize,
}

#[async_trait]
impl Sink for CrashingSink {
    fn delivery(&self) -> DeliveryGuarantee {
        DeliveryGuarantee::ExactlyOnce
    }
    async fn open(&mut self, ctx: &SinkContext) -> Result<(), EngineError> {
        self.inner.as_mut().unwrap().open(ctx).await
    }
    async fn committed_checkpoint(&mut self) -> Result<Option<SinkCheckpoint>, EngineError> {
        self.inner.as_mut().unwrap().committed_checkpoint().await
    }
    async fn write(&mut self, event: Arc<ChangeEvent>) -> Result<(), EngineError> {
        self.inner.as_mut().unwrap().write(event).await
    }
    async fn pre_commit(&mut self, epoch: u64, offsets: &Offsets) -> Result<(), EngineError> {
        self.inner
            .as_mut()
            .unwrap()
            .pre_commit(epoch, offsets)
            .await
    }
    async fn flush(&mut self) -> Result<(), EngineError> {
        self.inner.as_mut().unwrap().flush().await
    }
    async fn commit(&mut self, epoch: u64) -> Result<(), EngineError> {
        self.commits += 1;
        if self.commits == self.crash_at_commit {
            return Err(EngineError::new(
                "crashing sink",
                ErrorKind::Internal,
                "simulated crash",
            ));
        }
        self.inner.as_mut().unwrap().commit(epoch).await
    }
    async fn close(&mut self) {
        // A crash: the producer is neither closed nor aborted.
        std::mem::forget(self.inner.take());
    }
}

fn pipeline(source_last: u64, sink: Box<dyn Sink>) -> Pipeline {
    Pipeline {
        name: "p-crash".into(),
        source: Box::new(SampleSource::new(
            CH,
            source_last,
            Duration::from_millis(15),
        )),
        operators: vec![],
        sinks: vec![("out".into(), sink)],
        options: PipelineOptions {
            checkpoint_interval: Duration::from_millis(150),
            channel_capacity: 8,
        },
    }
}

#[tokio::test]
async fn exactly_once_crash_between_engine_and_kafka_commits_neither_loses_nor_duplicates() {
    if !e2e("exactly_once_crash_between_engine_and_kafka_commits_neither_loses_nor_duplicates") {
        return;
    }
    let prefix = unique("mcdc-crash");
    let cfg = eos_config(&prefix);
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn StateStore> = Arc::new(SledStore::open(dir.path()).unwrap());

    let crashing = CrashingSink {
        inner: Some(cfg.connect("out").await.unwrap()),
        crash_at_commit: 3,
        commits: 0,
    };
    let err = pipeline(200, Box::new(crashing))
        .spawn(store.clone())
        .join()
        .await
        .unwrap_err();
    assert!(err.message.contains("simulated crash"), "{err}");
    let stored = store.load("p-crash", "out").unwrap();
    assert!(
        stored.epoch >= 3,
        "the engine stored the crashed epoch: {stored:?}"
    );
    let topic = format!("{prefix}.default.all_types");
    let before: Vec<i64> = read_topic(&topic, "read_committed")
        .iter()
        .map(|m| m.json()["pk"].as_i64().unwrap())
        .collect();
    let engine_n = u64::from_be_bytes(stored.offsets[CH].as_slice().try_into().unwrap());
    assert!(
        (before.len() as u64) < engine_n,
        "Kafka ({}) must be behind the engine's state store ({engine_n})",
        before.len()
    );

    // Restart with a healthy sink; the source ends at 120 changes.
    let sink = SinkConfig::build(&cfg, &BuildContext::new("test", "out"))
        .await
        .unwrap();
    pipeline(120.max(engine_n + 10), sink)
        .spawn(store.clone())
        .join()
        .await
        .unwrap();
    let mut pks: Vec<i64> = read_topic(&topic, "read_committed")
        .iter()
        .map(|m| m.json()["pk"].as_i64().unwrap())
        .collect();
    let last = 120.max(engine_n + 10) as i64;
    assert_eq!(pks.len() as i64, last, "every change exactly once");
    pks.sort_unstable();
    assert_eq!(pks, (1..=last).collect::<Vec<_>>());
}

#[tokio::test]
async fn unreachable_broker_is_a_clear_connect_error() {
    // Needs no service: nothing listens on port 1.
    let mut cfg = KafkaSinkConfig::new("127.0.0.1:1");
    cfg.connect_timeout_secs = 2;
    let err = match SinkConfig::build(&cfg, &BuildContext::new("test", "out")).await {
        Ok(_) => panic!("a broker on 127.0.0.1:1 cannot be reachable"),
        Err(e) => e,
    };
    assert_eq!(err.kind, ErrorKind::Connect);
    assert!(err.message.contains("127.0.0.1:1"), "{err}");
    assert!(err.retriable);
    assert_eq!(err.component, "sink out");
}
