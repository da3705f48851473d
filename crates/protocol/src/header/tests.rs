use super::*;
use crate::common::{KeyValuePair, ReplicateInfo};
use crate::schema::{self, field_data, scalar_field, vector_field};

fn base(t: MsgType, ts: u64) -> Option<MsgBase> {
    Some(MsgBase {
        msg_type: t as i32,
        msg_id: 7,
        timestamp: ts,
        source_id: 3,
        target_id: 0,
        properties: [("k".to_owned(), "v".to_owned())].into(),
        replicate_info: Some(ReplicateInfo {
            is_replicate: true,
            msg_timestamp: ts,
            replicate_id: "r1".into(),
        }),
    })
}

fn kv(k: &str, v: &str) -> KeyValuePair {
    KeyValuePair {
        key: k.into(),
        value: v.into(),
    }
}

fn insert() -> msg::InsertRequest {
    msg::InsertRequest {
        base: base(MsgType::Insert, 100),
        shard_name: "by-dev-rootcoord-dml_0_10v0".into(),
        db_name: "default".into(),
        collection_name: "c".into(),
        partition_name: "_default".into(),
        db_id: 1,
        collection_id: 10,
        partition_id: 11,
        segment_id: 12,
        timestamps: vec![100, 100],
        row_i_ds: vec![1, 2],
        row_data: vec![],
        fields_data: vec![
            schema::FieldData {
                r#type: schema::DataType::Int64 as i32,
                field_name: "pk".into(),
                field_id: 100,
                field: Some(field_data::Field::Scalars(schema::ScalarField {
                    data: Some(scalar_field::Data::LongData(schema::LongArray {
                        data: vec![1, 2],
                    })),
                })),
                ..Default::default()
            },
            schema::FieldData {
                r#type: schema::DataType::FloatVector as i32,
                field_name: "v".into(),
                field_id: 101,
                field: Some(field_data::Field::Vectors(schema::VectorField {
                    dim: 2,
                    data: Some(vector_field::Data::FloatVector(schema::FloatArray {
                        data: vec![0.1, 0.2, 0.3, 0.4],
                    })),
                })),
                ..Default::default()
            },
        ],
        num_rows: 2,
        version: msg::InsertDataVersion::ColumnBased as i32,
    }
}

fn all_messages() -> Vec<MqMessage> {
    use MqMessage as M;
    vec![
        M::Insert(insert()),
        M::Delete(msg::DeleteRequest {
            base: base(MsgType::Delete, 101),
            shard_name: "by-dev-rootcoord-dml_0_10v0".into(),
            collection_id: 10,
            partition_id: -1,
            timestamps: vec![101, 101],
            num_rows: 2,
            primary_keys: Some(schema::IDs {
                id_field: Some(schema::i_ds::IdField::StrId(schema::StringArray {
                    data: vec!["a".into(), "b".into()],
                })),
            }),
            segment_id: 5,
            ..Default::default()
        }),
        M::TimeTick(msg::TimeTickMsg {
            base: base(MsgType::TimeTick, 102),
        }),
        M::CreateCollection(msg::CreateCollectionRequest {
            base: base(MsgType::CreateCollection, 103),
            db_name: "db".into(),
            collection_name: "c".into(),
            collection_id: 10,
            schema: schema::CollectionSchema {
                name: "c".into(),
                ..Default::default()
            }
            .encode_to_vec()
            .into(),
            virtual_channel_names: vec!["p_10v0".into()],
            physical_channel_names: vec!["p".into()],
            partition_i_ds: vec![11],
            ..Default::default()
        }),
        M::DropCollection(msg::DropCollectionRequest {
            base: base(MsgType::DropCollection, 104),
            db_name: "db".into(),
            collection_name: "c".into(),
            db_id: 2,
            collection_id: 10,
        }),
        M::CreatePartition(msg::CreatePartitionRequest {
            base: base(MsgType::CreatePartition, 105),
            collection_name: "c".into(),
            partition_name: "p1".into(),
            collection_id: 10,
            partition_id: 12,
            ..Default::default()
        }),
        M::DropPartition(msg::DropPartitionRequest {
            base: base(MsgType::DropPartition, 106),
            collection_name: "c".into(),
            partition_name: "p1".into(),
            collection_id: 10,
            partition_id: 12,
            ..Default::default()
        }),
        M::Import(msg::ImportMsg {
            base: base(MsgType::Import, 107),
            collection_name: "c".into(),
            collection_id: 10,
            partition_i_ds: vec![11],
            options: [("timeout".to_owned(), "10".to_owned())].into(),
            files: vec![msg::ImportFile {
                id: 1,
                paths: vec!["a.parquet".into()],
            }],
            schema: Some(schema::CollectionSchema::default()),
            job_id: 9,
            ..Default::default()
        }),
        M::Replicate(msg::ReplicateMsg {
            base: base(MsgType::Replicate, 108),
            is_end: true,
            is_cluster: false,
            database: "db".into(),
            collection: "c".into(),
        }),
        M::DataNodeTt(msg::DataNodeTtMsg {
            base: base(MsgType::DataNodeTt, 109),
            channel_name: "p_10v0".into(),
            timestamp: 109,
            segments_stats: vec![crate::common::SegmentStats {
                segment_id: 1,
                num_rows: 5,
            }],
        }),
        M::CreateDatabase(milvus::CreateDatabaseRequest {
            base: base(MsgType::CreateDatabase, 110),
            db_name: "db".into(),
            properties: vec![kv("database.replica.number", "1")],
        }),
        M::DropDatabase(milvus::DropDatabaseRequest {
            base: base(MsgType::DropDatabase, 111),
            db_name: "db".into(),
        }),
        M::AlterDatabase(milvus::AlterDatabaseRequest {
            base: base(MsgType::AlterDatabase, 112),
            db_name: "db".into(),
            db_id: "2".into(),
            properties: vec![kv("a", "b")],
            delete_keys: vec!["c".into()],
        }),
        M::Flush(milvus::FlushRequest {
            base: base(MsgType::Flush, 113),
            db_name: "db".into(),
            collection_names: vec!["c".into(), "d".into()],
        }),
        M::CreateIndex(milvus::CreateIndexRequest {
            base: base(MsgType::CreateIndex, 114),
            db_name: "db".into(),
            collection_name: "c".into(),
            field_name: "v".into(),
            extra_params: vec![kv("index_type", "HNSW"), kv("metric_type", "L2")],
            index_name: "idx".into(),
        }),
        M::DropIndex(milvus::DropIndexRequest {
            base: base(MsgType::DropIndex, 115),
            collection_name: "c".into(),
            index_name: "idx".into(),
            ..Default::default()
        }),
        M::AlterIndex(milvus::AlterIndexRequest {
            base: base(MsgType::AlterIndex, 116),
            collection_name: "c".into(),
            index_name: "idx".into(),
            extra_params: vec![kv("mmap.enabled", "true")],
            ..Default::default()
        }),
        M::LoadCollection(milvus::LoadCollectionRequest {
            base: base(MsgType::LoadCollection, 117),
            collection_name: "c".into(),
            replica_number: 1,
            load_params: [("x".to_owned(), "y".to_owned())].into(),
            ..Default::default()
        }),
        M::ReleaseCollection(milvus::ReleaseCollectionRequest {
            base: base(MsgType::ReleaseCollection, 118),
            collection_name: "c".into(),
            ..Default::default()
        }),
        M::LoadPartitions(milvus::LoadPartitionsRequest {
            base: base(MsgType::LoadPartitions, 119),
            collection_name: "c".into(),
            partition_names: vec!["p1".into()],
            ..Default::default()
        }),
        M::ReleasePartitions(milvus::ReleasePartitionsRequest {
            base: base(MsgType::ReleasePartitions, 120),
            collection_name: "c".into(),
            partition_names: vec!["p1".into()],
            ..Default::default()
        }),
        // Alias messages as 2.4+ proxies publish them (`msg_for_alias.go`: the
        // `milvuspb.*AliasRequest` of `milvus.proto`, fields as in milvus-proto v2.4.24).
        M::CreateAlias(milvus::CreateAliasRequest {
            base: base(MsgType::CreateAlias, 121),
            db_name: "db1".into(),
            collection_name: "c".into(),
            alias: "a".into(),
        }),
        M::DropAlias(milvus::DropAliasRequest {
            base: base(MsgType::DropAlias, 122),
            db_name: "db1".into(),
            alias: "a".into(),
        }),
        M::AlterAlias(milvus::AlterAliasRequest {
            base: base(MsgType::AlterAlias, 123),
            db_name: "db1".into(),
            collection_name: "c2".into(),
            alias: "a".into(),
        }),
    ]
}

#[test]
fn every_typed_message_round_trips() {
    let messages = all_messages();
    assert_eq!(messages.len(), 24);
    for m in messages {
        let bytes = m.encode_to_vec().expect("typed message");
        let t = m.msg_type();
        assert_eq!(peek_msg_type(&bytes).unwrap(), t, "{m:?}");
        assert_eq!(
            peek_base(&bytes).unwrap().msg_type,
            m.base().unwrap().msg_type
        );
        let decoded = decode(&bytes).unwrap();
        assert_eq!(decoded, m);
        let decoded = decode_bytes(Bytes::from(bytes.clone())).unwrap();
        assert_eq!(decoded, m);
        assert_eq!(decoded.encode_to_vec().unwrap(), bytes);
        assert!(decoded.proto_name().is_some());
        assert_eq!(decoded.msg_type_name(), msg_type_name(t));
        assert_eq!(decoded.timestamp(), m.base().map(|b| b.timestamp));
    }
}

#[test]
fn msg_type_values_match_milvus() {
    let expected = [
        (MsgType::CreateCollection, 100),
        (MsgType::DropCollection, 101),
        (MsgType::LoadCollection, 106),
        (MsgType::ReleaseCollection, 107),
        (MsgType::CreatePartition, 200),
        (MsgType::DropPartition, 201),
        (MsgType::LoadPartitions, 205),
        (MsgType::ReleasePartitions, 206),
        (MsgType::CreateIndex, 300),
        (MsgType::DropIndex, 302),
        (MsgType::AlterIndex, 304),
        (MsgType::Insert, 400),
        (MsgType::Delete, 401),
        (MsgType::Flush, 402),
        (MsgType::Upsert, 404),
        (MsgType::Import, 408),
        (MsgType::TimeTick, 1200),
        (MsgType::DataNodeTt, 1208),
        (MsgType::Replicate, 1212),
        (MsgType::CreateCredential, 1500),
        (MsgType::OperatePrivilegeV2, 1614),
        (MsgType::CreateDatabase, 1801),
        (MsgType::DropDatabase, 1802),
        (MsgType::AlterDatabase, 1804),
        (MsgType::AddCollectionField, 1900),
        (MsgType::AlterWal, 2000),
    ];
    for (t, v) in expected {
        assert_eq!(t as i32, v, "{t:?}");
    }
    assert_eq!(msg_type_name(400), Some("Insert"));
    assert_eq!(msg_type_from_name("TimeTick"), Some(1200));
    assert_eq!(msg_type_name(4242), None);
}

#[test]
fn header_only_decoding_skips_the_body() {
    let bytes = MqMessage::Insert(insert()).encode_to_vec().unwrap();
    let base = peek_base(&bytes).unwrap();
    assert_eq!(base.timestamp, 100);
    assert_eq!(base.msg_type, MsgType::Insert as i32);
}

#[test]
fn unsupported_and_unknown_types_are_other() {
    for t in [
        MsgType::Upsert as i32,
        MsgType::CreateCredential as i32,
        4242,
        -1,
    ] {
        let header = MsgHeader {
            base: Some(MsgBase {
                msg_type: t,
                ..Default::default()
            }),
        };
        let bytes = header.encode_to_vec();
        let m = decode(&bytes).unwrap();
        assert_eq!(m, MqMessage::Other { msg_type: t });
        assert_eq!(m.msg_type(), t);
        assert_eq!(m.base(), None);
        assert_eq!(m.encode_to_vec(), None);
    }
}

#[test]
fn errors_say_what_failed() {
    assert!(matches!(
        decode(&[]),
        Err(MqDecodeError::MissingBase { len: 0 })
    ));
    let err = decode(&[0x0a, 0x05, 0x08]).unwrap_err();
    assert!(matches!(err, MqDecodeError::Header { len: 3, .. }), "{err}");

    // A valid Insert header followed by a fields_data entry (field 13, 2 bytes) whose content
    // is a truncated varint: the header skips it, the InsertRequest cannot decode it.
    let mut bytes = MsgHeader {
        base: base(MsgType::Insert, 1),
    }
    .encode_to_vec();
    bytes.extend_from_slice(&[13 << 3 | 2, 2, 0x08, 0xff]);
    let err = decode(&bytes).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, MqDecodeError::Body { msg_type: 400, .. }),
        "{text}"
    );
    assert!(
        text.contains("Insert") && text.contains("milvus.proto.msg.InsertRequest"),
        "{text}"
    );
}

#[test]
fn accessors() {
    let m = MqMessage::Insert(insert());
    assert_eq!(m.collection_id(), Some(10));
    assert_eq!(m.shard_name(), Some("by-dev-rootcoord-dml_0_10v0"));
    assert_eq!(m.db_name(), Some("default"));
    assert_eq!(m.collection_name(), Some("c"));
    let tt = MqMessage::TimeTick(msg::TimeTickMsg {
        base: base(MsgType::TimeTick, 5),
    });
    assert_eq!(tt.collection_id(), None);
    assert_eq!(tt.db_name(), None);
    let mut m = m;
    m.base_mut().unwrap().timestamp = 999;
    assert_eq!(m.timestamp(), Some(999));
}

#[test]
fn bytes_fields_share_the_payload() {
    let mut m = insert();
    m.fields_data[1].field = Some(field_data::Field::Vectors(schema::VectorField {
        dim: 8,
        data: Some(vector_field::Data::BinaryVector(Bytes::from_static(&[
            1, 2,
        ]))),
    }));
    let payload = Bytes::from(m.encode_to_vec());
    let Ok(MqMessage::Insert(decoded)) = decode_bytes(payload.clone()) else {
        panic!("not an insert")
    };
    let Some(field_data::Field::Vectors(v)) = &decoded.fields_data[1].field else {
        panic!("not a vector")
    };
    let Some(vector_field::Data::BinaryVector(b)) = &v.data else {
        panic!("not binary")
    };
    let start = payload.as_ptr() as usize;
    let at = b.as_ptr() as usize;
    assert!(
        at >= start && at < start + payload.len(),
        "vector bytes were copied"
    );
}

#[test]
fn replicated_marks_of_msg_base() {
    // common.proto MsgBase.replicateInfo (7): isReplicate (1, 2.3.2+) and replicateID (3, 2.5),
    // which internal/proxy/util.go SendReplicateMessagePack keeps on the request it publishes
    // and pkg/mq/msgstream/msgstream_util.go GetPorperties copies to `replicate_id`.
    let mut m = insert();
    assert!(MqMessage::Insert(m.clone()).is_replicated());
    m.base.as_mut().unwrap().replicate_info = Some(ReplicateInfo {
        is_replicate: false,
        msg_timestamp: 0,
        replicate_id: "cluster-a".into(),
    });
    assert!(MqMessage::Insert(m.clone()).is_replicated());
    m.base.as_mut().unwrap().replicate_info = Some(ReplicateInfo::default());
    assert!(!MqMessage::Insert(m.clone()).is_replicated());
    m.base.as_mut().unwrap().replicate_info = None;
    assert!(!MqMessage::Insert(m).is_replicated());
    assert!(!MqMessage::Other { msg_type: 1 }.is_replicated());
}
