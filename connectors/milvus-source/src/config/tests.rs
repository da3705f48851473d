use super::*;

fn parse(yaml: &str) -> Result<MilvusSourceConfig, String> {
    serde_saphyr::from_str(yaml).map_err(|e| e.to_string())
}

const MINIMAL: &str = "
etcd:
  endpoints: [\"127.0.0.1:2379\"]
mq:
  kafka:
    brokers: [\"127.0.0.1:19092\"]
";

#[test]
fn minimal_yaml_gets_defaults() {
    let cfg = parse(MINIMAL).unwrap();
    cfg.validate().unwrap();
    assert_eq!(
        cfg,
        MilvusSourceConfig::kafka("127.0.0.1:2379", "127.0.0.1:19092")
    );
    assert_eq!(cfg.etcd.root_path, "by-dev");
    assert_eq!(cfg.etcd.meta_sub_path, "meta");
    assert_eq!(cfg.cluster_prefix, "by-dev");
    assert_eq!(cfg.start, StartFrom::Latest);
    assert_eq!(cfg.on_decode_error, OnDecodeError::Pause);
    assert!(!cfg.skip_replicated);
    assert_eq!(cfg.replicate_channel_name(), "by-dev-replicate-msg");
    assert_eq!(cfg.meta_root(), "by-dev/meta");
}

#[test]
fn full_yaml() {
    let pos = cdc_protocol::position::encode_position_b64(&cdc_protocol::position::kafka_position(
        "by-dev-rootcoord-dml_0_449534118316441601v0",
        41,
        1,
    ));
    let yaml = format!(
        "
etcd:
  endpoints: [\"https://10.0.0.1:2379\"]
  root_path: prod
  meta_sub_path: m
  username: root
  password: secret
  tls: {{ ca_path: /ca.pem, cert_path: /c.pem, key_path: /k.pem }}
mq:
  pulsar: {{ url: \"pulsar://p:6650\", token: abc }}
cluster_prefix: prod
replicate_channel: prod-rep
start: earliest
positions:
  by-dev-rootcoord-dml_0_449534118316441601v0: \"{pos}\"
on_decode_error: skip
skip_replicated: true
"
    );
    let cfg = parse(&yaml).unwrap();
    cfg.validate().unwrap();
    assert_eq!(cfg.start, StartFrom::Earliest);
    assert_eq!(cfg.on_decode_error, OnDecodeError::Skip);
    assert!(cfg.skip_replicated);
    assert_eq!(cfg.replicate_channel_name(), "prod-rep");
    assert_eq!(cfg.meta_root(), "prod/m");
    match &cfg.mq {
        MqConfig::Pulsar(p) => {
            assert_eq!(p.tenant, "public");
            assert_eq!(p.namespace, "default");
            assert_eq!(p.token.as_deref(), Some("abc"));
        }
        other => panic!("expected pulsar, got {other:?}"),
    }
}

#[test]
fn unknown_fields_are_rejected() {
    let err = parse(&format!("{MINIMAL}\nstart_from: latest\n")).unwrap_err();
    assert!(err.contains("start_from"), "{err}");
    let err = parse(
        "
etcd: { endpoints: [a], rootpath: x }
mq: { kafka: { brokers: [b] } }
",
    )
    .unwrap_err();
    assert!(err.contains("rootpath"), "{err}");
    assert!(parse("etcd: { endpoints: [a] }\nmq: { rocksmq: {} }\n").is_err());
}

fn invalid(edit: impl FnOnce(&mut MilvusSourceConfig), field: &str) {
    let mut cfg = MilvusSourceConfig::kafka("127.0.0.1:2379", "127.0.0.1:19092");
    edit(&mut cfg);
    let err = cfg.validate().unwrap_err();
    assert_eq!(err.kind, cdc_engine::ErrorKind::Config);
    assert!(
        err.message.contains(&format!("`{field}`")),
        "expected {field} in: {err}"
    );
}

#[test]
fn validate_names_the_field() {
    invalid(|c| c.etcd.endpoints.clear(), "etcd.endpoints");
    invalid(|c| c.etcd.endpoints[0] = " ".into(), "etcd.endpoints[0]");
    invalid(|c| c.etcd.root_path = String::new(), "etcd.root_path");
    invalid(|c| c.etcd.password = Some("p".into()), "etcd.password");
    invalid(
        |c| {
            c.etcd.tls = Some(TlsConfig {
                ca_path: None,
                cert_path: Some("c".into()),
                key_path: None,
                server_name: None,
            })
        },
        "etcd.tls.key_path",
    );
    invalid(|c| c.cluster_prefix = "by dev".into(), "cluster_prefix");
    invalid(
        |c| c.replicate_channel = Some(String::new()),
        "replicate_channel",
    );
    invalid(
        |c| {
            c.mq = MqConfig::Kafka(KafkaConfig {
                brokers: vec![],
                options: BTreeMap::new(),
            })
        },
        "mq.kafka.brokers",
    );
    invalid(
        |c| {
            c.mq = MqConfig::Kafka(KafkaConfig {
                brokers: vec!["b:1".into()],
                options: [("enable.auto.commit".to_string(), "true".to_string())].into(),
            })
        },
        "mq.kafka.options.enable.auto.commit",
    );
    invalid(
        |c| {
            c.mq = MqConfig::Pulsar(PulsarConfig {
                url: "http://x".into(),
                tenant: "public".into(),
                namespace: "default".into(),
                token: None,
            })
        },
        "mq.pulsar.url",
    );
    invalid(
        |c| {
            c.positions
                .insert("by-dev-rootcoord-dml_0".into(), "AAAA".into());
        },
        "positions.by-dev-rootcoord-dml_0",
    );
    invalid(
        |c| {
            c.positions
                .insert("by-dev-rootcoord-dml_0_1v0".into(), "not base64!".into());
        },
        "positions.by-dev-rootcoord-dml_0_1v0",
    );
    invalid(|c| c.idle_channel_ms = 0, "idle_channel_ms");
    invalid(|c| c.channel_buffer = 0, "channel_buffer");
}

#[test]
fn kafka_positions_need_8_byte_ids() {
    let mut pos = cdc_protocol::position::kafka_position("by-dev-rootcoord-dml_0_1v0", 5, 1);
    pos.msg_id = bytes::Bytes::from_static(&[1, 2, 3]);
    let text = cdc_protocol::position::encode_position_b64(&pos);
    invalid(
        |c| {
            c.positions
                .insert("by-dev-rootcoord-dml_0_1v0".into(), text);
        },
        "positions.by-dev-rootcoord-dml_0_1v0",
    );
}

#[test]
fn skip_replicated_must_be_a_boolean() {
    assert!(parse(&format!("{MINIMAL}skip_replicated: false\n")).is_ok());
    let err = parse(&format!("{MINIMAL}skip_replicated: sometimes\n")).unwrap_err();
    assert!(
        err.contains("skip_replicated") || err.contains("bool"),
        "{err}"
    );
    // A misspelling is an unknown field (strict parsing).
    assert!(parse(&format!("{MINIMAL}skip_replicate: true\n")).is_err());
}

#[test]
fn reconnect_defaults_parse_and_validation() {
    let cfg = parse(MINIMAL).unwrap();
    assert_eq!(cfg.reconnect, ReconnectConfig::default());
    let p = cfg.reconnect.policy();
    assert_eq!(p.initial, std::time::Duration::from_millis(200));
    assert_eq!(p.max, std::time::Duration::from_secs(10));
    assert_eq!(p.give_up_after, None, "never gives up by default");

    let cfg = parse(&format!(
        "{MINIMAL}reconnect: {{ initial_ms: 50, max_ms: 2000, give_up_after_s: 600 }}\n"
    ))
    .unwrap();
    cfg.validate().unwrap();
    assert_eq!(
        cfg.reconnect.policy().give_up_after,
        Some(std::time::Duration::from_secs(600))
    );
    let err = parse(&format!("{MINIMAL}reconnect: {{ initial: 50 }}\n")).unwrap_err();
    assert!(err.contains("initial"), "{err}");

    invalid(|c| c.reconnect.initial_ms = 0, "reconnect.initial_ms");
    invalid(|c| c.reconnect.max_ms = 10, "reconnect.max_ms");
    invalid(
        |c| c.reconnect.give_up_after_s = Some(0),
        "reconnect.give_up_after_s",
    );
}

#[test]
fn snapshot_options_parse_and_need_a_uri() {
    let yaml = format!(
        "{MINIMAL}uri: https://src:19530\ntoken: root:Milvus\n\
         tls: {{ ca_pem_path: /ca.pem, server_name: src }}\n\
         snapshot: {{ mode: initial, load: temporary, batch_rows: 500, parallelism: 4 }}\n"
    );
    let cfg = parse(&yaml).unwrap();
    cfg.validate().unwrap();
    assert_eq!(cfg.snapshot.mode, SnapshotMode::Initial);
    assert_eq!(cfg.snapshot.load, SnapshotLoad::Temporary);
    assert_eq!(
        (cfg.snapshot.batch_rows, cfg.snapshot.parallelism),
        (500, 4)
    );
    assert_eq!(cfg.uri.as_deref(), Some("https://src:19530"));

    let defaults = parse(&format!(
        "{MINIMAL}snapshot: {{ mode: only }}\nuri: http://s:1\n"
    ))
    .unwrap();
    assert_eq!(defaults.snapshot.load, SnapshotLoad::Never);
    assert_eq!(defaults.snapshot.batch_rows, 2000);
    assert_eq!(defaults.snapshot.parallelism, 2);

    let err = |extra: &str| {
        parse(&format!("{MINIMAL}{extra}"))
            .unwrap()
            .validate()
            .unwrap_err()
            .message
    };
    let e = err("snapshot: { mode: initial }\n");
    assert!(e.contains("`uri`") && e.contains("snapshot"), "{e}");
    let e = err("uri: http://s:1\nstart: earliest\nsnapshot: { mode: initial }\n");
    assert!(e.contains("snapshot.mode") && e.contains("earliest"), "{e}");
    let e = err("uri: http://s:1\nsnapshot: { mode: initial, batch_rows: 0 }\n");
    assert!(e.contains("snapshot.batch_rows"), "{e}");
    let e = err("uri: http://s:1\nsnapshot: { mode: initial, parallelism: 0 }\n");
    assert!(e.contains("snapshot.parallelism"), "{e}");
    let e = err("uri: s:1\n");
    assert!(e.contains("`uri`") && e.contains("http://"), "{e}");
    assert!(parse(&format!("{MINIMAL}snapshot: {{ mode: always }}\n")).is_err());
    assert!(parse(&format!("{MINIMAL}snapshot: {{ rows: 1 }}\n")).is_err());
}
