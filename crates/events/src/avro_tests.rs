//! Avro round trips: every data type encoded, then decoded with apache-avro and the published
//! schema text, in both framings.

use apache_avro::types::Value as Avro;
use base64::Engine as _;
use cdc_engine::Ddl;
use serde_json::{json, Value as Json};

use super::*;
use crate::registry::SchemaRegistry;
use crate::sample;
use crate::{RowConverter, RowEvent};

const CH: &str = "by-dev-rootcoord-dml_0";

/// Decode `msg` with the schema as a consumer would get it (the published JSON text).
fn decode(ev: &RowEvent, msg: &[u8]) -> Avro {
    let schema = apache_avro::Schema::parse_str(&ev.schema().avro_json).unwrap();
    let (_, mut datum) = split_avro_message(msg).unwrap();
    apache_avro::from_avro_datum(&schema, &mut datum, None).unwrap()
}

fn field<'a>(rec: &'a Avro, name: &str) -> &'a Avro {
    let Avro::Record(fields) = rec else {
        panic!("not a record: {rec:?}")
    };
    &fields.iter().find(|(n, _)| n == name).unwrap().1
}

fn unwrap_union(v: &Avro) -> &Avro {
    match v {
        Avro::Union(_, inner) => inner,
        other => other,
    }
}

/// The decoded row in the JSON row form (bytes → base64, JSON text → JSON, `_meta` merged).
fn row_as_json(row: &Avro) -> Json {
    let Avro::Record(fields) = unwrap_union(row) else {
        panic!("row is not a record: {row:?}")
    };
    let mut out = serde_json::Map::new();
    for (name, v) in fields {
        let v = unwrap_union(v);
        match (name.as_str(), v) {
            ("_meta", Avro::String(s)) => {
                let meta: Json = serde_json::from_str(s).unwrap();
                out.extend(meta.as_object().unwrap().clone());
            }
            ("j", Avro::String(s)) => {
                out.insert(name.clone(), serde_json::from_str(s).unwrap());
            }
            (_, Avro::Bytes(b)) => {
                out.insert(
                    name.clone(),
                    json!(base64::engine::general_purpose::STANDARD.encode(b)),
                );
            }
            (_, other) => {
                out.insert(name.clone(), Json::try_from(other.clone()).unwrap());
            }
        }
    }
    Json::Object(out)
}

#[test]
fn every_type_round_trips_through_single_object_encoding() {
    let mut c = RowConverter::new(SchemaRegistry::default());
    let evs = c
        .convert(&sample::insert(CH, 9, 1_700_000_000_000, &[1, 2, 3]))
        .unwrap();
    for (i, ev) in evs.iter().enumerate() {
        let k = i as i64 + 1;
        let mut msg = Vec::new();
        encode_avro(ev, AvroWire::SingleObject, &mut msg).unwrap();
        assert_eq!(&msg[..2], &[0xC3, 0x01]);
        assert_eq!(
            split_avro_message(&msg).unwrap().0,
            AvroHeader::Fingerprint(ev.schema().fingerprint)
        );
        let rec = decode(ev, &msg);
        assert_eq!(field(&rec, "op"), &Avro::String("c".into()));
        assert_eq!(unwrap_union(field(&rec, "pk")), &Avro::Long(k));
        assert_eq!(
            field(&rec, "ts_ms"),
            &Avro::TimestampMillis(1_700_000_000_000)
        );
        assert_eq!(field(&rec, "schema_version"), &Avro::Int(1));
        assert_eq!(
            unwrap_union(field(&rec, "partition")),
            &Avro::String("_default".into())
        );
        assert_eq!(
            field(field(&rec, "source"), "offset"),
            &Avro::String("9".into())
        );
        assert_eq!(
            row_as_json(field(&rec, "row")),
            sample::expected_row(k, true),
            "row {k}"
        );
    }
    // Nulls of nullable fields decode as null.
    let mut msg = Vec::new();
    encode_avro(&evs[0], AvroWire::SingleObject, &mut msg).unwrap();
    let row = decode(&evs[0], &msg);
    assert_eq!(
        field(unwrap_union(field(&row, "row")), "n"),
        &Avro::Union(0, Box::new(Avro::Null))
    );
}

#[test]
fn confluent_framing_carries_the_schema_id() {
    let mut c = RowConverter::new(SchemaRegistry::default());
    let ev = &c.convert(&sample::upsert(CH, 3, 10, &[4])).unwrap()[0];
    let mut msg = Vec::new();
    encode_avro(ev, AvroWire::Confluent, &mut msg).unwrap();
    assert_eq!(msg[0], 0);
    assert_eq!(
        split_avro_message(&msg).unwrap().0,
        AvroHeader::SchemaId(ev.schema().schema_id)
    );
    let rec = decode(ev, &msg);
    assert_eq!(field(&rec, "op"), &Avro::String("u".into()));
    assert_eq!(
        row_as_json(field(&rec, "row")),
        sample::expected_row(4, true)
    );
}

#[test]
fn deletes_and_ddl_round_trip() {
    let mut c = RowConverter::new(SchemaRegistry::default());
    let del = &c.convert(&sample::delete(CH, 5, 10, &[6])).unwrap()[0];
    let mut msg = Vec::new();
    encode_avro(del, AvroWire::SingleObject, &mut msg).unwrap();
    let rec = decode(del, &msg);
    assert_eq!(field(&rec, "op"), &Avro::String("d".into()));
    assert_eq!(unwrap_union(field(&rec, "pk")), &Avro::Long(6));
    assert_eq!(field(&rec, "row"), &Avro::Union(0, Box::new(Avro::Null)));

    let ddl = &c
        .convert(&sample::ddl(
            CH,
            6,
            10,
            Ddl::DropPartition {
                partition: "p".into(),
            },
        ))
        .unwrap()[0];
    let mut msg = Vec::new();
    encode_avro(ddl, AvroWire::SingleObject, &mut msg).unwrap();
    let rec = decode(ddl, &msg);
    assert_eq!(
        unwrap_union(field(&rec, "ddl")),
        &Avro::String("drop_partition".into())
    );
    let Avro::String(desc) = unwrap_union(field(&rec, "description")) else {
        panic!("no description")
    };
    assert_eq!(
        serde_json::from_str::<Json>(desc).unwrap(),
        json!({"partition": "p"})
    );

    let db = &c
        .convert(&sample::database_ddl(
            CH,
            7,
            10,
            "db1",
            Ddl::CreateDatabase { properties: vec![] },
        ))
        .unwrap()[0];
    let mut msg = Vec::new();
    encode_avro(db, AvroWire::SingleObject, &mut msg).unwrap();
    let rec = decode(db, &msg);
    assert_eq!(field(&rec, "database"), &Avro::String("db1".into()));
    assert_eq!(field(&rec, "row"), &Avro::Null);
}

#[test]
fn varchar_primary_keys() {
    use cdc_protocol::schema::i_ds::IdField;
    use cdc_protocol::schema::{DataType, StringArray};
    let mut def = sample::collection_def();
    def.schema.fields[0].data_type = DataType::VarChar as i32;
    let mut ev = sample::delete(CH, 1, 1, &[]);
    ev.collection_def = Some(std::sync::Arc::new(def));
    if let cdc_engine::Op::Delete(d) = &mut ev.op {
        d.primary_keys.id_field = Some(IdField::StrId(StringArray {
            data: vec!["a".into(), "b".into()],
        }));
        d.num_rows = 2;
    }
    let mut c = RowConverter::new(SchemaRegistry::default());
    let evs = c.convert(&ev).unwrap();
    assert_eq!(evs[1].key(), "b");
    let mut msg = Vec::new();
    encode_avro(&evs[1], AvroWire::SingleObject, &mut msg).unwrap();
    assert_eq!(
        unwrap_union(field(&decode(&evs[1], &msg), "pk")),
        &Avro::String("b".into())
    );
    // Int keys against a VarChar primary key are refused with a clear message.
    let mut bad = ev.clone();
    if let cdc_engine::Op::Delete(d) = &mut bad.op {
        d.primary_keys.id_field = Some(IdField::IntId(Default::default()));
    }
    let e = c.convert(&bad).unwrap_err();
    assert!(e.message.contains("primary key type VarChar"), "{e}");
}

#[test]
fn bare_datum_is_the_framed_message_without_header() {
    let mut c = RowConverter::new(SchemaRegistry::default());
    let ev = &c.convert(&sample::insert(CH, 1, 1, &[2])).unwrap()[0];
    let (mut framed, mut bare) = (Vec::new(), Vec::new());
    encode_avro(ev, AvroWire::SingleObject, &mut framed).unwrap();
    encode_avro_datum(ev, &mut bare).unwrap();
    // Same length and same decoded value (sparse vectors are Avro maps, whose entry order is
    // not fixed, so the bytes may differ).
    assert_eq!(framed.len() - 10, bare.len());
    let schema = &ev.schema().avro;
    let a = apache_avro::from_avro_datum(schema, &mut &framed[10..], None).unwrap();
    let b = apache_avro::from_avro_datum(schema, &mut &bare[..], None).unwrap();
    assert_eq!(a, b);
}
