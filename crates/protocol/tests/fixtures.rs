//! Decodes bytes captured from a real Milvus 2.3.5 (Kafka message queue, etcd metadata).
//!
//! Fixtures, one JSON object per line:
//! - `tests/fixtures/milvus-2.3.5/kafka-messages.jsonl`:
//!   `{topic, partition, offset, headers, msg_type, payload_b64}`;
//! - `tests/fixtures/milvus-2.3.5/etcd-meta.jsonl`: `{key, value_b64}`.
//!
//! The tests fail when the files are missing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use cdc_protocol::common::MsgType;
use cdc_protocol::etcd_meta::{self, MetaKey, MetaValue};
use cdc_protocol::field_data::{ids_len, num_rows};
use cdc_protocol::header::{self, msg_type_name, MqMessage};
use cdc_protocol::{channel, etcd, msg, position, schema};
use prost::Message as _;
use serde_json::Value;

fn fixture(name: &str) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/milvus-2.3.5")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "fixture {} is missing ({e}); it is captured from a real Milvus 2.3.5",
            path.display()
        )
    });
    let lines: Vec<Value> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}:{}: not JSON: {e}", path.display(), i + 1))
        })
        .collect();
    assert!(!lines.is_empty(), "{} is empty", path.display());
    lines
}

fn b64(line: &Value, key: &str) -> Bytes {
    let text = line[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string `{key}` in {line}"));
    Bytes::from(
        STANDARD
            .decode(text)
            .unwrap_or_else(|e| panic!("bad base64 in {line}: {e}")),
    )
}

/// `msg_type` as a number, a decimal string or a Milvus type name.
fn fixture_msg_type(line: &Value) -> i32 {
    match &line["msg_type"] {
        Value::Number(n) => i32::try_from(n.as_i64().expect("integer msg_type")).expect("i32"),
        Value::String(s) => s
            .parse()
            .ok()
            .or_else(|| header::msg_type_from_name(s))
            .unwrap_or_else(|| panic!("unknown msg_type {s:?}")),
        other => panic!("msg_type is neither a number nor a string: {other}"),
    }
}

fn check_insert(m: &msg::InsertRequest, topic: &str) -> Result<(), String> {
    let rows = usize::try_from(m.num_rows).map_err(|e| e.to_string())?;
    if m.version != msg::InsertDataVersion::ColumnBased as i32 {
        return Err(format!("insert version {} is not column-based", m.version));
    }
    if m.fields_data.is_empty() {
        return Err("insert without fields_data".into());
    }
    if m.timestamps.len() != rows {
        return Err(format!("{} timestamps for {rows} rows", m.timestamps.len()));
    }
    if !m.row_i_ds.is_empty() && m.row_i_ds.len() != rows {
        return Err(format!("{} rowIDs for {rows} rows", m.row_i_ds.len()));
    }
    for fd in &m.fields_data {
        if schema::DataType::try_from(fd.r#type).is_err() {
            return Err(format!(
                "field {} has unknown data type {}",
                fd.field_name, fd.r#type
            ));
        }
        let n = num_rows(fd).map_err(|e| e.to_string())?;
        if n != rows {
            return Err(format!(
                "field {} has {n} rows, num_rows is {rows}",
                fd.field_name
            ));
        }
    }
    check_vchannel(&m.shard_name, m.collection_id, topic)
}

fn check_delete(m: &msg::DeleteRequest, topic: &str) -> Result<(), String> {
    let rows = usize::try_from(m.num_rows).map_err(|e| e.to_string())?;
    let keys = m
        .primary_keys
        .as_ref()
        .map_or(m.int64_primary_keys.len(), ids_len);
    if keys != rows || m.timestamps.len() != rows {
        return Err(format!(
            "delete: {keys} keys and {} timestamps for num_rows {rows}",
            m.timestamps.len()
        ));
    }
    check_vchannel(&m.shard_name, m.collection_id, topic)
}

fn check_vchannel(shard: &str, collection_id: i64, topic: &str) -> Result<(), String> {
    let v = channel::parse_vchannel(shard).map_err(|e| e.to_string())?;
    if v.collection_id != collection_id || v.pchannel != topic {
        return Err(format!(
            "shardName {shard} does not match collection {collection_id} on topic {topic}"
        ));
    }
    Ok(())
}

#[test]
fn kafka_messages_decode() {
    let lines = fixture("kafka-messages.jsonl");
    let mut seen: BTreeMap<i32, usize> = BTreeMap::new();
    let mut others: BTreeMap<i32, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut inserted_rows = 0;
    let mut column_types = BTreeSet::new();

    for (i, line) in lines.iter().enumerate() {
        let topic = line["topic"].as_str().unwrap_or_default();
        let at = format!("line {} ({topic} @ {})", i + 1, line["offset"]);
        let payload = b64(line, "payload_b64");
        let want = fixture_msg_type(line);
        let decoded = match header::decode_bytes(payload.clone()) {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!("{at}: {e}"));
                continue;
            }
        };
        *seen.entry(decoded.msg_type()).or_default() += 1;
        if let Some(name) = line["msg_name"].as_str() {
            if decoded.msg_type_name() != Some(name) {
                failures.push(format!(
                    "{at}: decoded {:?}, fixture says {name}",
                    decoded.msg_type_name()
                ));
            }
        }
        if decoded.msg_type() != want {
            failures.push(format!(
                "{at}: decoded msg_type {} != fixture {want}",
                decoded.msg_type()
            ));
        }
        if let MqMessage::Other { msg_type } = decoded {
            *others.entry(msg_type).or_default() += 1;
            continue;
        }

        let checked = match &decoded {
            MqMessage::Insert(m) => {
                inserted_rows += m.num_rows;
                column_types.extend(m.fields_data.iter().map(|f| {
                    schema::DataType::try_from(f.r#type).map_or("?", |t| t.as_str_name())
                }));
                check_insert(m, topic)
            }
            MqMessage::Delete(m) => check_delete(m, topic),
            MqMessage::CreateCollection(m) => schema::CollectionSchema::decode(m.schema.clone())
                .map(drop)
                .map_err(|e| format!("CreateCollection.schema: {e}")),
            _ => Ok(()),
        };
        if let Err(e) = checked {
            failures.push(format!("{at}: {e}"));
        }

        // Re-encoding keeps the message, and every field of it (prost drops undeclared
        // fields, which would shrink the payload).
        let again = decoded.encode_to_vec().expect("typed message");
        match header::decode(&again) {
            Ok(m) if m == decoded => {}
            Ok(_) => failures.push(format!("{at}: re-encoded message differs")),
            Err(e) => failures.push(format!("{at}: re-encoded message does not decode: {e}")),
        }
        if again.len() != payload.len() {
            failures.push(format!(
                "{at}: {} payload is {} bytes, re-encoded {} bytes (undeclared fields?)",
                msg_type_name(want).unwrap_or("?"),
                payload.len(),
                again.len()
            ));
        }
    }

    eprintln!(
        "decoded {} messages, {inserted_rows} inserted rows:",
        lines.len()
    );
    eprintln!("  insert column types: {column_types:?}");
    for (t, n) in &seen {
        eprintln!("  {:>5} {:<20} x{n}", t, msg_type_name(*t).unwrap_or("?"));
    }
    if !others.is_empty() {
        eprintln!("  (without a typed variant: {others:?})");
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // LoadPartitions (205) and ReleasePartitions (206) are not required: Milvus 2.3.5 publishes
    // nothing for them (nor for CreatePartition, which CDC takes from etcd); the capture's
    // README lists them as "workload operations without an MQ message of their own".
    let required = [
        MsgType::CreateCollection,
        MsgType::DropCollection,
        MsgType::Insert,
        MsgType::Delete,
        MsgType::TimeTick,
        MsgType::DropPartition,
        MsgType::CreateIndex,
        MsgType::DropIndex,
        MsgType::LoadCollection,
        MsgType::ReleaseCollection,
        MsgType::Flush,
        MsgType::CreateDatabase,
        MsgType::DropDatabase,
    ];
    let missing: Vec<&str> = required
        .iter()
        .filter(|t| !seen.contains_key(&(**t as i32)))
        .map(|t| t.as_str_name())
        .collect();
    assert!(
        missing.is_empty(),
        "operations missing from the capture: {missing:?}"
    );
    assert!(inserted_rows > 0, "no inserted rows");
}

/// The meta root of a key: what precedes `/root-coord/`, unless that is a snapshot.
fn meta_root_of(key: &str) -> Option<&str> {
    let (root, _) = key.split_once("/root-coord/")?;
    (!root.ends_with("/snapshots")).then_some(root)
}

#[test]
fn etcd_meta_decodes() {
    let kinds = check_etcd_meta("etcd-meta.jsonl");
    for kind in ["database", "collection", "field", "partition", "tso"] {
        assert!(kinds.contains_key(kind), "no {kind} key in the capture");
    }
}

/// The same keys after every drop: tombstones and Dropping states.
#[test]
fn etcd_meta_after_drops_decodes() {
    let kinds = check_etcd_meta("etcd-meta-final.jsonl");
    assert!(
        kinds.contains_key("collection"),
        "no collection key in the final capture"
    );
}

/// Decodes every value of an etcd capture by its key; returns the count of each kind.
fn check_etcd_meta(file: &str) -> BTreeMap<&'static str, usize> {
    let lines = fixture(file);
    let mut kinds: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut unparsed = BTreeSet::new();
    let mut tombstones = 0;

    for line in &lines {
        let key = line["key"]
            .as_str()
            .unwrap_or_else(|| panic!("no key in {line}"));
        let value = b64(line, "value_b64");
        if key.ends_with("/kv/gid/timestamp") {
            // Between 2020 and 2100, in nanoseconds.
            match etcd_meta::decode_tso_nanos(&value) {
                Some(ns)
                    if (1_577_836_800_000_000_000..4_102_444_800_000_000_000).contains(&ns) =>
                {
                    *kinds.entry("tso").or_default() += 1;
                }
                other => failures.push(format!("{key}: not a TSO in nanoseconds: {other:?}")),
            }
            continue;
        }
        // Channel checkpoints are MsgPositions (not RootCoord metadata).
        if key.contains("/datacoord-meta/channel-cp/") {
            if !etcd_meta::is_tombstone(&value) {
                match msg::MsgPosition::decode(value.clone()) {
                    Ok(_) => *kinds.entry("channel-cp").or_default() += 1,
                    Err(e) => failures.push(format!("{key}: MsgPosition: {e}")),
                }
            }
            continue;
        }
        let Some(parsed) = meta_root_of(key).and_then(|root| etcd_meta::parse_meta_key(root, key))
        else {
            // Group the keys we do not parse by their first four segments.
            unparsed.insert(key.split('/').take(4).collect::<Vec<_>>().join("/"));
            continue;
        };
        let decoded = match etcd_meta::decode_meta_value(parsed, &value) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{key}: {e}"));
                continue;
            }
        };
        let (kind, consistent) = match (&parsed, &decoded) {
            (_, MetaValue::Tombstone) => {
                tombstones += 1;
                continue;
            }
            (MetaKey::Database { db_id }, MetaValue::Database(d)) => ("database", d.id == *db_id),
            (
                MetaKey::Collection {
                    db_id,
                    collection_id,
                },
                MetaValue::Collection(c),
            ) => ("collection", c.id == *collection_id && c.db_id == *db_id),
            (MetaKey::LegacyCollection { collection_id }, MetaValue::Collection(c)) => {
                ("legacy-collection", c.id == *collection_id)
            }
            (MetaKey::Field { field_id, .. }, MetaValue::Field(f)) => (
                "field",
                f.field_id == *field_id && schema::DataType::try_from(f.data_type).is_ok(),
            ),
            (
                MetaKey::Partition {
                    collection_id,
                    partition_id,
                },
                MetaValue::Partition(p),
            ) => (
                "partition",
                p.partition_id == *partition_id && p.collection_id == *collection_id,
            ),
            (MetaKey::Function { function_id, .. }, MetaValue::Function(f)) => {
                ("function", f.id == *function_id)
            }
            other => panic!("decode_meta_value gave the wrong kind: {other:?}"),
        };
        *kinds.entry(kind).or_default() += 1;
        if !consistent {
            failures.push(format!(
                "{key}: the IDs in the value do not match the key: {decoded:?}"
            ));
        }
        // Every value re-encodes to the same length (no undeclared fields).
        let again = match &decoded {
            MetaValue::Database(v) => v.encode_to_vec(),
            MetaValue::Collection(v) => v.encode_to_vec(),
            MetaValue::Field(v) => v.encode_to_vec(),
            MetaValue::Partition(v) => v.encode_to_vec(),
            MetaValue::Function(v) => v.encode_to_vec(),
            MetaValue::Tombstone => continue,
        };
        if again.len() != value.len() {
            failures.push(format!(
                "{key}: value is {} bytes, re-encoded {} bytes (undeclared fields?)",
                value.len(),
                again.len()
            ));
        }
        if let MetaValue::Collection(c) = &decoded {
            if etcd::CollectionState::try_from(c.state).is_err() {
                failures.push(format!("{key}: unknown collection state {}", c.state));
            }
            // Start positions: per pchannel, the Kafka message ID of the create message.
            for kd in &c.start_positions {
                let ok = channel::parse_pchannel(&kd.key).is_some()
                    && c.physical_channel_names.contains(&kd.key)
                    && position::kafka_offset(&kd.data).is_ok_and(|o| o >= 0);
                if !ok {
                    failures.push(format!("{key}: bad start position {kd:?}"));
                }
            }
            for v in &c.virtual_channel_names {
                if channel::parse_vchannel(v).map(|v| v.collection_id) != Ok(c.id) {
                    failures.push(format!("{key}: vchannel {v} is not of collection {}", c.id));
                }
            }
        }
    }

    eprintln!(
        "{file}: {} lines, {tombstones} tombstones, decoded {kinds:?}",
        lines.len()
    );
    eprintln!("{file}: keys not parsed here: {unparsed:?}");
    assert!(
        failures.is_empty(),
        "{file}: {} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    kinds
}
