//! Source Milvus → Kafka (Avro, transactions) + files (JSON Lines) + target Milvus, one
//! pipeline fanning out, with a `kill -9` mid-stream. The events are read back the way a
//! downstream consumer would (a real Kafka consumer with `read_committed`, Avro decoded with
//! the schemas the sink published; the published files), applied in order, and the resulting
//! rows checked against the source with pymilvus; no event may appear twice.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use cdc_e2e::{Cdc, Env};
use cdc_events::{split_avro_message, AvroHeader, SchemaRecord};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value as Json;

/// One decoded change event, in the JSON event form.
type Event = Json;

/// Database → collection → primary key → (partition, row): what a consumer rebuilds.
type Rebuilt = BTreeMap<String, BTreeMap<String, BTreeMap<String, (String, Json)>>>;

#[test]
fn fan_out_to_kafka_files_and_milvus_exactly_once_across_kill_minus_nine() {
    let Some(env) =
        Env::get("fan_out_to_kafka_files_and_milvus_exactly_once_across_kill_minus_nine")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let prefix = "e2estream_";
    env.clean(prefix, &[&env.target_uri]);
    let run = format!("e2e{}", std::process::id());
    let files = dir.path().join("events");
    let yaml = format!(
        "name: e2e-streams\n{source}transforms:\n  - filter:\n      include: [\"default.{prefix}*\", \"{prefix}db1.*\"]\n\
         sinks:\n\
         \x20 target:\n    milvus:\n      uri: {target}\n      write: upsert\n\
         \x20 events:\n    kafka:\n      brokers: \"{kafka}\"\n      topic: \"{run}.{{database}}.{{collection}}\"\n\
         \x20     format: avro\n      schema_topic: \"{run}.schemas\"\n      delivery: exactly_once\n\
         \x20     transactional_id: \"{run}.txn\"\n\
         \x20 archive:\n    file:\n      path: \"{files}\"\n      format: jsonl\n      fsync: false\n\
         checkpoint:\n  interval_ms: 500\n",
        source = env.source_yaml(),
        target = env.target_uri,
        kafka = env.kafka,
        files = files.display(),
    );
    let mut cdc = Cdc::start(&env, dir.path(), &yaml);
    env.workload(prefix, "ddl-dml", &[]);
    let writer = env.dml_in_background(prefix, 4, 200);
    std::thread::sleep(Duration::from_secs(4));
    cdc.kill9();
    std::thread::sleep(Duration::from_secs(1));
    let mut cdc = Cdc::start(&env, dir.path(), &yaml);
    writer.join().expect("workload thread");
    // The Milvus branch of the fan-out catches up (load state is covered by the Milvus
    // tests); then a clean stop commits the last epoch of every sink.
    env.wait_equal(
        &env.target_uri,
        prefix,
        &["--ignore", "load"],
        Duration::from_secs(180),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        cdc.stop(),
        "milvus-cdc did not stop cleanly:\n{}",
        cdc.log_text()
    );

    let kafka_events = read_kafka_events(&env.kafka, &run);
    assert!(
        !kafka_events.is_empty(),
        "no events on the Kafka topics {run}.*"
    );
    check(&env, dir.path(), "kafka", prefix, kafka_events);
    let file_events = read_file_events(&files);
    assert!(
        !file_events.is_empty(),
        "no published event files in {}",
        files.display()
    );
    check(&env, dir.path(), "files", prefix, file_events);

    // check_events.py loaded collections on the source for reading: drop directly.
    env.clean(prefix, &[&env.target_uri]);
}

/// No duplicates, per-PK order, then the rows the events lead to equal the source's.
fn check(env: &Env, dir: &Path, name: &str, prefix: &str, mut events: Vec<Event>) {
    // Exactly once: a row event is identified by its source message and index in it; a DDL by
    // its kind, object and timestamp.
    let mut seen = HashSet::new();
    for e in &events {
        let id = if e["op"] == "ddl" {
            format!(
                "ddl {} {}.{} {} {}",
                e["ddl"], e["database"], e["collection"], e["ts"], e["description"]
            )
        } else {
            format!(
                "{} {} {}",
                e["source"]["channel"], e["source"]["offset"], e["source"]["index"]
            )
        };
        assert!(
            seen.insert(id.clone()),
            "{name}: event delivered twice: {id}\n{e}"
        );
    }
    // Per primary key, events arrive in source order.
    let mut last_ts: HashMap<String, u64> = HashMap::new();
    for e in events.iter().filter(|e| e["op"] != "ddl") {
        let key = format!("{}.{}.{}", e["database"], e["collection"], e["pk"]);
        let ts = e["ts"].as_u64().unwrap();
        if let Some(prev) = last_ts.insert(key.clone(), ts) {
            assert!(
                prev <= ts,
                "{name}: events of {key} out of order ({prev} then {ts})"
            );
        }
    }
    // Apply in timestamp order (topics and files are per collection; a stable sort keeps the
    // order within each).
    events.sort_by_key(|e| e["ts"].as_u64().unwrap());
    let mut state = Rebuilt::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for e in &events {
        let db = e["database"].as_str().unwrap().to_string();
        let coll = e["collection"].as_str().unwrap_or_default().to_string();
        let op = e["op"].as_str().unwrap();
        *counts
            .entry(if op == "ddl" {
                e["ddl"].as_str().unwrap().to_string()
            } else {
                op.into()
            })
            .or_default() += 1;
        let pk = match &e["pk"] {
            Json::String(s) => s.clone(),
            other => other.to_string(),
        };
        match op {
            "c" | "u" => {
                let part = e["partition"].as_str().unwrap_or_default().to_string();
                state
                    .entry(db)
                    .or_default()
                    .entry(coll)
                    .or_default()
                    .insert(pk, (part, e["row"].clone()));
            }
            "d" => {
                if let Some(c) = state.get_mut(&db).and_then(|d| d.get_mut(&coll)) {
                    c.remove(&pk);
                }
            }
            _ => match e["ddl"].as_str().unwrap() {
                "create_database" => {
                    state.entry(db).or_default();
                }
                "drop_database" => {
                    state.remove(&db);
                }
                "create_collection" => {
                    state.entry(db).or_default().entry(coll).or_default();
                }
                "drop_collection" => {
                    if let Some(d) = state.get_mut(&db) {
                        d.remove(&coll);
                    }
                }
                "drop_partition" => {
                    let part = e["description"]["partition"].as_str().unwrap().to_string();
                    if let Some(c) = state.get_mut(&db).and_then(|d| d.get_mut(&coll)) {
                        c.retain(|_, (p, _)| *p != part);
                    }
                }
                _ => {}
            },
        }
    }
    eprintln!("{name}: {} events: {counts:?}", events.len());
    for op in [
        "c",
        "u",
        "d",
        "create_collection",
        "drop_collection",
        "create_index",
        "drop_partition",
    ] {
        assert!(
            counts.contains_key(op),
            "{name}: no {op} event among {counts:?}"
        );
    }
    let rows: BTreeMap<_, BTreeMap<_, BTreeMap<_, _>>> = state
        .into_iter()
        .map(|(db, colls)| {
            let colls = colls
                .into_iter()
                .map(|(c, rows)| {
                    (
                        c,
                        rows.into_iter().map(|(pk, (_, row))| (pk, row)).collect(),
                    )
                })
                .collect();
            (db, colls)
        })
        .collect();
    let file = dir.join(format!("state-{name}.json"));
    std::fs::write(&file, serde_json::to_vec(&rows).unwrap()).unwrap();
    let (ok, out) = env.py(
        "check_events.py",
        &[
            &env.source_uri,
            "--state",
            file.to_str().unwrap(),
            "--prefix",
            prefix,
            "--name",
            name,
        ],
    );
    eprintln!("{out}");
    assert!(
        ok,
        "{name}: rows rebuilt from the events differ from the source:\n{out}"
    );
}

/// Every committed event on the topics `{run}.*` (except the schema and offsets topics),
/// Avro-decoded with the published schemas, in JSON event form; per topic partition in order.
fn read_kafka_events(brokers: &str, run: &str) -> Vec<Event> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{run}-check"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create()
        .expect("Kafka consumer");
    let timeout = Duration::from_secs(10);
    let md = consumer
        .fetch_metadata(None, timeout)
        .expect("Kafka metadata");
    let schema_topic = format!("{run}.schemas");
    let mut records: Vec<SchemaRecord> = Vec::new();
    let mut raw = Vec::new();
    let mut topics: Vec<String> = md
        .topics()
        .iter()
        .map(|t| t.name().to_string())
        .filter(|n| n.starts_with(&format!("{run}.")) && !n.starts_with(&format!("{run}.txn")))
        .collect();
    topics.sort();
    for topic in &topics {
        let t = md.topics().iter().find(|t| t.name() == topic).unwrap();
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
            continue;
        }
        consumer.assign(&tpl).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !pending.is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "reading {topic} timed out"
            );
            match consumer.poll(Duration::from_millis(200)) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    pending.remove(&p);
                }
                Some(Err(e)) => panic!("reading {topic}: {e}"),
                Some(Ok(m)) => {
                    let payload = m.payload().unwrap_or_default().to_vec();
                    if *topic == schema_topic {
                        records.push(serde_json::from_slice(&payload).expect("a schema record"));
                    } else {
                        raw.push((topic.clone(), payload));
                    }
                }
            }
        }
    }
    raw.into_iter()
        .map(|(topic, payload)| avro_event(&records, &topic, &payload))
        .collect()
}

/// An Avro event decoded with its published schema, in the JSON event form: `description`
/// parsed, the dynamic `_meta` text merged into the row (as the JSON encoding does).
fn avro_event(records: &[SchemaRecord], topic: &str, msg: &[u8]) -> Event {
    let (header, mut datum) = split_avro_message(msg)
        .unwrap_or_else(|| panic!("{topic}: not an Avro single-object message"));
    let rec = records
        .iter()
        .find(|r| match header {
            AvroHeader::Fingerprint(fp) => {
                r.fingerprint == fp.iter().map(|b| format!("{b:02x}")).collect::<String>()
            }
            AvroHeader::SchemaId(id) => r.schema_id == id,
        })
        .unwrap_or_else(|| panic!("{topic}: no published schema for {header:?}"));
    let schema = apache_avro::Schema::parse_str(&rec.schema).expect("a valid published schema");
    let v = apache_avro::from_avro_datum(&schema, &mut datum, None)
        .unwrap_or_else(|e| panic!("{topic}: cannot decode with the published schema: {e}"));
    let mut e = Json::try_from(v).expect("Avro to JSON");
    if let Some(d) = e["description"].as_str() {
        e["description"] = serde_json::from_str(d).expect("description is JSON text");
    }
    if let Some(row) = e["row"].as_object_mut() {
        if let Some(Json::String(meta)) = row.remove("_meta") {
            if let Ok(Json::Object(m)) = serde_json::from_str::<Json>(&meta) {
                for (k, v) in m {
                    row.entry(k).or_insert(v);
                }
            }
        }
    }
    e
}

/// Every event of the published files under `dir` (the sink's hidden state excluded), files in
/// name order (epoch, then sequence).
fn read_file_events(dir: &Path) -> Vec<Event> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            let hidden = p.file_name().unwrap().to_string_lossy().starts_with('.');
            if hidden {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()).then(a.cmp(b)));
    let mut out = Vec::new();
    for f in files {
        for line in std::fs::read_to_string(&f).unwrap().lines() {
            let e: Json = serde_json::from_str(line)
                .unwrap_or_else(|err| panic!("{}: not a JSON event: {err}: {line}", f.display()));
            out.push(e);
        }
    }
    out
}
