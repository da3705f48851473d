use super::*;
use crate::request::{ChannelInfo, DialConfig, ExtraInfo, NameMapping};

fn cfg() -> ServerConfig {
    ServerConfig::parse(
        "source:\n  etcd: { endpoints: [\"127.0.0.1:2379\"] }\n  \
         mq: { kafka: { brokers: [\"127.0.0.1:19092\"] } }\n",
        "test",
    )
    .unwrap()
}

fn milvus(uri: &str) -> Option<MilvusConnectParam> {
    Some(MilvusConnectParam {
        uri: uri.into(),
        token: "root:Milvus".into(),
        ..Default::default()
    })
}

fn one(name: &str) -> Vec<CollectionInfo> {
    vec![CollectionInfo {
        name: name.into(),
        ..Default::default()
    }]
}

fn base() -> CreateRequest {
    CreateRequest {
        milvus_connect_param: milvus("http://127.0.0.1:19531"),
        collection_infos: one("*"),
        ..Default::default()
    }
}

fn err(req: &CreateRequest) -> String {
    let e = plan(req, &cfg(), "t1").unwrap_err();
    assert_eq!(e.code, 400, "{e}");
    e.message
}

/// A real position: channel by-dev-rootcoord-dml_0, Kafka offset 42.
fn pos_b64() -> String {
    cdc_protocol::position::encode_position_b64(&cdc_protocol::position::kafka_position(
        "by-dev-rootcoord-dml_0",
        42,
        0,
    ))
}

#[test]
fn star_request_becomes_a_pipeline_document() {
    let p = plan(&base(), &cfg(), "t1").unwrap();
    let spec = parse_spec(&p.spec, "t1").unwrap();
    assert_eq!(spec.name, "t1");
    assert_eq!(p.spec["transforms"][0]["filter"]["include"][0], "default.*");
    assert_eq!(
        p.spec["sinks"]["target"]["milvus"]["uri"],
        "http://127.0.0.1:19531"
    );
    assert_eq!(p.spec["sinks"]["target"]["milvus"]["token"], "root:Milvus");
    assert_eq!(
        p.spec["source"]["milvus"]["etcd"]["endpoints"][0],
        "127.0.0.1:2379"
    );
    assert_eq!(
        p.coverage.targets,
        vec!["milvus:127.0.0.1:19531".to_string()]
    );
    assert_eq!(p.coverage.include, vec!["default.*".to_string()]);
    assert!(p.warnings.is_empty());
    assert_eq!(coverage_of(&spec).include, p.coverage.include);
}

#[test]
fn db_collections_positions_mapping_and_deprecated_fields() {
    let mut r = base();
    r.collection_infos.clear();
    r.db_collections.insert(
        "db1".into(),
        vec![CollectionInfo {
            name: "c1".into(),
            positions: [("by-dev-rootcoord-dml_0_449v0".to_string(), pos_b64())].into(),
            use_start_position: true,
        }],
    );
    r.milvus_connect_param = Some(MilvusConnectParam {
        host: "127.0.0.1".into(),
        port: 19531,
        username: "root".into(),
        password: "Milvus".into(),
        connect_timeout: 3,
        ignore_partition: true,
        ..Default::default()
    });
    r.name_mapping = vec![NameMapping {
        source_db: "db1".into(),
        target_db: "db2".into(),
        collection_mapping: [("c1".to_string(), "c2".to_string())].into(),
    }];
    r.rpc_channel_info = Some(ChannelInfo {
        name: "by-dev-replicate-msg".into(),
        position: String::new(),
    });
    r.extra_info = Some(ExtraInfo {
        enable_user_role: true,
    });
    let p = plan(&r, &cfg(), "t1").unwrap();
    parse_spec(&p.spec, "t1").unwrap();
    let sink = &p.spec["sinks"]["target"]["milvus"];
    assert_eq!(sink["uri"], "http://127.0.0.1:19531");
    assert_eq!(sink["token"], "root:Milvus");
    assert_eq!(sink["connect_timeout_secs"], 3);
    assert_eq!(sink["ignore_partition"], true);
    let src = &p.spec["source"]["milvus"];
    assert_eq!(src["positions"]["by-dev-rootcoord-dml_0_449v0"], pos_b64());
    assert_eq!(src["start"], "earliest");
    assert_eq!(p.spec["transforms"][0]["filter"]["include"][0], "db1.c1");
    assert_eq!(
        p.spec["transforms"][1]["rename"]["rules"][0]["target_db"],
        "db2"
    );
    assert_eq!(p.warnings.len(), 1);
    assert!(p.warnings[0].contains("enable_user_role"));
    assert_eq!(src["enable_user_role"], true);
}

type Mutation = Box<dyn Fn(&mut CreateRequest)>;

#[test]
fn milvus_cdc_validation_rules() {
    let cases: Vec<(Mutation, &str)> = vec![
        (
            Box::new(|r| r.milvus_connect_param = None),
            "milvus_connect_param is missing",
        ),
        (
            Box::new(|r| {
                r.kafka_connect_param = Some(KafkaConnectParam {
                    address: "k:1".into(),
                    ..Default::default()
                })
            }),
            "not both",
        ),
        (
            Box::new(|r| r.collection_infos.clear()),
            "empty collection info",
        ),
        (
            Box::new(|r| r.collection_infos = [one("a"), one("b")].concat()),
            "only one",
        ),
        (
            Box::new(|r| {
                r.db_collections.insert("db".into(), one("a"));
            }),
            "not both",
        ),
        (Box::new(|r| r.collection_infos = one("")), "empty"),
        (
            Box::new(|r| r.collection_infos = one(&"x".repeat(257))),
            "exceeds 256",
        ),
        (
            Box::new(|r| r.collection_infos = one("orders_*")),
            "not a valid name",
        ),
        (
            Box::new(|r| {
                r.collection_infos[0].positions =
                    [("by-dev-rootcoord-dml_0_1v0".to_string(), pos_b64())].into()
            }),
            "positions should be empty",
        ),
        (
            Box::new(|r| {
                r.collection_infos = one("c");
                r.collection_infos[0].positions =
                    [("by-dev-rootcoord-dml_0".to_string(), pos_b64())].into();
            }),
            "not a virtual channel",
        ),
        (
            Box::new(|r| {
                r.collection_infos = one("c");
                r.collection_infos[0].positions = [
                    ("by-dev-rootcoord-dml_0_1v0".to_string(), pos_b64()),
                    ("by-dev-rootcoord-dml_1_2v1".to_string(), pos_b64()),
                ]
                .into();
            }),
            "same collection",
        ),
        (
            Box::new(|r| {
                r.collection_infos = one("c");
                r.collection_infos[0].positions =
                    [("by-dev-rootcoord-dml_0_1v0".to_string(), "%%".to_string())].into();
            }),
            "fail to decode the position",
        ),
        (
            Box::new(|r| {
                r.rpc_channel_info = Some(ChannelInfo {
                    name: "other".into(),
                    position: String::new(),
                })
            }),
            "rpc channel is invalid",
        ),
        (
            Box::new(|r| r.milvus_connect_param.as_mut().unwrap().connect_timeout = -1),
            "connect timeout",
        ),
        (
            Box::new(|r| {
                let m = r.milvus_connect_param.as_mut().unwrap();
                m.token.clear();
                m.username = "root".into();
            }),
            "only one of the milvus username and password",
        ),
        (
            Box::new(|r| r.milvus_connect_param.as_mut().unwrap().uri = "ftp://x:1".into()),
            "milvus_connect_param",
        ),
        (
            Box::new(|r| {
                r.milvus_connect_param.as_mut().unwrap().uri = "https://h:1".into();
                r.milvus_connect_param.as_mut().unwrap().dial_config = DialConfig {
                    ca_pem_path: "/surely/missing/ca.pem".into(),
                    ..Default::default()
                };
            }),
            "is not a file",
        ),
        (
            Box::new(|r| {
                r.milvus_connect_param.as_mut().unwrap().dial_config = DialConfig {
                    server_name: "h".into(),
                    ..Default::default()
                };
            }),
            "use https://",
        ),
        (
            Box::new(|r| {
                r.milvus_connect_param = Some(MilvusConnectParam {
                    host: "h".into(),
                    port: 0,
                    ..Default::default()
                })
            }),
            "port",
        ),
        (
            Box::new(|r| r.positions = [("a".to_string(), "b".to_string())].into()),
            "deprecated",
        ),
        (
            Box::new(|r| {
                r.buffer_config = Some(crate::request::BufferConfig {
                    period: -1,
                    size: 0,
                })
            }),
            "cache period",
        ),
        (
            Box::new(|r| {
                r.milvus_connect_param = None;
                r.kafka_connect_param = Some(KafkaConnectParam {
                    address: "k:1".into(),
                    ..Default::default()
                });
            }),
            "topic",
        ),
        (
            Box::new(|r| r.name_mapping = vec![NameMapping::default()]),
            "name_mapping[0].source_db",
        ),
    ];
    for (i, (mutate, needle)) in cases.iter().enumerate() {
        let mut r = base();
        mutate(&mut r);
        let m = err(&r);
        assert!(m.contains(needle), "case {i}: {needle:?} not in {m:?}");
    }
}

#[test]
fn a_bare_host_port_uri_and_zero_value_params_are_tolerated() {
    let mut r = base();
    r.milvus_connect_param.as_mut().unwrap().uri = "127.0.0.1:19531".into();
    // Go clients send an all-zero kafka_connect_param next to the Milvus one.
    r.kafka_connect_param = Some(KafkaConnectParam::default());
    let p = plan(&r, &cfg(), "t1").unwrap();
    assert_eq!(
        p.spec["sinks"]["target"]["milvus"]["uri"],
        "http://127.0.0.1:19531"
    );
}

#[test]
fn excludes_are_added_to_the_filter() {
    let mut p = plan(&base(), &cfg(), "t1").unwrap();
    add_excludes(&mut p.spec, &["default.a".to_string()]);
    let spec = parse_spec(&p.spec, "t1").unwrap();
    let cov = coverage_of(&spec);
    assert_eq!(cov.exclude, vec!["default.a".to_string()]);
}

#[test]
fn kafka_target_becomes_a_kafka_sink() {
    let mut r = base();
    r.milvus_connect_param = None;
    r.kafka_connect_param = Some(KafkaConnectParam {
        address: " k:1 ".into(),
        topic: "changes".into(),
        enable_sasl: true,
        sasl: crate::request::KafkaSasl {
            username: "u".into(),
            password: "p".into(),
            ..Default::default()
        },
    });
    let p = plan(&r, &cfg(), "t1").expect("a Kafka target is accepted");
    let k = &p.spec["sinks"]["target"]["kafka"];
    assert_eq!(k["brokers"], "k:1");
    assert_eq!(k["topic"], "changes");
    assert_eq!(k["delivery"], "at_least_once");
    assert_eq!(k["security"]["protocol"], "SASL_PLAINTEXT");
    assert_eq!(k["security"]["sasl_mechanism"], "PLAIN");
    assert_eq!(k["security"]["sasl_username"], "u");
    assert!(p.target.is_none());
}
