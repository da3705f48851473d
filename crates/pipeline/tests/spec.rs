//! Pipeline documents read through the connector registry: every kind by its key, strict
//! errors that name the file, the line and the field, cross-component checks, and the JSON
//! round trip the HTTP server stores task documents with.

use cdc_pipeline::{PipelineSpec, SpecError};

const SOURCE: &str = r#"
source:
  milvus:
    etcd: { endpoints: ["127.0.0.1:2379"] }
    mq: { kafka: { brokers: ["127.0.0.1:19092"] } }
"#;

fn doc(sinks: &str) -> String {
    format!("name: t\n{SOURCE}sinks:\n{sinks}")
}

fn parse(text: &str) -> Result<PipelineSpec, SpecError> {
    PipelineSpec::parse(text, "p.yaml")
}

#[test]
fn every_registered_kind_is_read_by_its_key() {
    let spec = parse(&doc(
        "  a: { milvus: { uri: \"http://127.0.0.1:19531\" } }\n  \
           b: { kafka: { brokers: \"127.0.0.1:19092\" } }\n  \
           c: { file: { path: /tmp/out } }\n  \
           d: { stdout: {} }\n  \
           e: { blackhole: {} }\n",
    ))
    .unwrap();
    let kinds: Vec<&str> = spec.sinks.values().map(|s| s.0.kind()).collect();
    assert_eq!(kinds, ["milvus", "kafka", "file", "stdout", "blackhole"]);
    assert_eq!(spec.source.0.kind(), "milvus");
}

#[test]
fn an_unknown_kind_lists_the_known_ones() {
    let e = parse(&doc("  a: { mysql: {} }\n")).unwrap_err().to_string();
    assert!(e.contains("unknown sink kind `mysql`"), "{e}");
    assert!(e.contains("milvus, kafka, file, stdout, blackhole"), "{e}");
    assert!(e.starts_with("p.yaml"), "{e}");
}

#[test]
fn a_sink_has_exactly_one_kind() {
    let e = parse(&doc("  a: { stdout: {}, blackhole: {} }\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("exactly one kind"), "{e}");
    let e = parse(&doc("  a: {}\n")).unwrap_err().to_string();
    assert!(e.contains("give the sink kind"), "{e}");
}

#[test]
fn an_unknown_field_inside_a_connector_names_it_and_its_line() {
    let text = doc("  a:\n    milvus:\n      uri: \"http://127.0.0.1:19531\"\n      colour: red\n");
    let e = parse(&text).unwrap_err().to_string();
    assert!(e.contains("colour"), "{e}");
    assert!(
        e.contains("line 11") || e.contains("11:"),
        "no line in: {e}"
    );
}

#[test]
fn a_connector_problem_points_at_its_field() {
    let e = parse(&doc("  a: { milvus: { uri: \"ftp://x\" } }\n")).unwrap_err();
    match e {
        SpecError::Invalid { field, message, .. } => {
            assert_eq!(field, "sinks.a.milvus");
            assert!(message.contains("uri"), "{message}");
        }
        other => panic!("{other}"),
    }
}

#[test]
fn a_transaction_shorter_than_the_checkpoint_interval_is_refused() {
    let sinks = "  k: { kafka: { brokers: \"127.0.0.1:19092\", delivery: exactly_once, \
                 transaction_timeout_ms: 5000 } }\n";
    let ok = format!("{}checkpoint: {{ interval_ms: 1000 }}\n", doc(sinks));
    parse(&ok).unwrap();
    let bad = format!("{}checkpoint: {{ interval_ms: 5000 }}\n", doc(sinks));
    match parse(&bad).unwrap_err() {
        SpecError::Invalid { field, message, .. } => {
            assert_eq!(field, "sinks.k.kafka.transaction_timeout_ms");
            assert!(message.contains("checkpoint.interval_ms"), "{message}");
        }
        other => panic!("{other}"),
    }
}

#[test]
fn the_json_form_round_trips() {
    let spec = parse(&doc(
        "  a: { milvus: { uri: \"http://127.0.0.1:19531\", mode: replicate } }\n  \
           d: { stdout: {} }\n",
    ))
    .unwrap();
    let json = serde_json::to_value(&spec).unwrap();
    assert_eq!(json["sinks"]["a"]["milvus"]["mode"], "replicate");
    assert!(json["sinks"]["d"]["stdout"].is_object());
    assert!(json["source"]["milvus"]["etcd"].is_object());
    let back: PipelineSpec = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(serde_json::to_value(&back).unwrap(), json);
}

#[test]
fn a_snapshot_is_refused_by_sinks_that_cannot_take_it() {
    let snap = "name: t\nsource:\n  milvus:\n    etcd: { endpoints: [\"127.0.0.1:2379\"] }\n    \
                mq: { kafka: { brokers: [\"127.0.0.1:19092\"] } }\n    \
                uri: \"http://127.0.0.1:19530\"\n    snapshot: { mode: initial }\nsinks:\n";
    parse(&format!(
        "{snap}  t: {{ milvus: {{ uri: \"http://127.0.0.1:19531\" }} }}\n"
    ))
    .unwrap();
    for (sink, field) in [
        (
            "{ uri: \"http://127.0.0.1:19531\", mode: replicate }",
            "sinks.t.milvus.mode",
        ),
        (
            "{ uri: \"http://127.0.0.1:19531\", write: insert }",
            "sinks.t.milvus.write",
        ),
    ] {
        match parse(&format!("{snap}  t: {{ milvus: {sink} }}\n")).unwrap_err() {
            SpecError::Invalid {
                field: f, message, ..
            } => {
                assert_eq!(f, field);
                assert!(message.contains("snapshot"), "{message}");
            }
            other => panic!("{other}"),
        }
    }
}
