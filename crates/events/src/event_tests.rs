//! Conversion and JSON encoding tests on the sample collection.

use cdc_engine::Ddl;
use serde_json::{json, Value as Json};

use super::*;
use crate::json::{encode_json, DynamicFields};
use crate::sample;

const CH: &str = "by-dev-rootcoord-dml_0";

fn converter() -> RowConverter {
    RowConverter::new(SchemaRegistry::default())
}

fn to_json(ev: &RowEvent, dynamic: DynamicFields) -> Json {
    let mut buf = Vec::new();
    encode_json(ev, dynamic, &mut buf).unwrap();
    serde_json::from_slice(&buf).unwrap()
}

#[test]
fn insert_gives_one_event_per_row_with_every_type() {
    let mut c = converter();
    let evs = c
        .convert(&sample::insert(CH, 42, 1_700_000_000_123, &[1, 2, 3]))
        .unwrap();
    assert_eq!(evs.len(), 3);
    for (i, ev) in evs.iter().enumerate() {
        let k = i as i64 + 1;
        assert_eq!(ev.op, RowOp::Insert);
        assert_eq!(ev.key(), k.to_string());
        let j = to_json(ev, DynamicFields::Merge);
        assert_eq!(j["op"], "c");
        assert_eq!(j["database"], "default");
        assert_eq!(j["collection"], "all_types");
        assert_eq!(j["partition"], "_default");
        assert_eq!(j["pk"], k);
        assert_eq!(j["row"], sample::expected_row(k, true), "row {k}");
        assert_eq!(j["ddl"], Json::Null);
        assert_eq!(j["ts"], 1_700_000_000_123u64 << 18);
        assert_eq!(j["ts_ms"], 1_700_000_000_123u64);
        assert_eq!(
            j["source"],
            json!({"channel": CH, "offset": "42", "index": i})
        );
        assert_eq!(j["schema_version"], 1);
        let nested = to_json(ev, DynamicFields::Nested);
        assert_eq!(nested["row"], sample::expected_row(k, false));
    }
}

#[test]
fn json_keeps_schema_field_order() {
    let mut c = converter();
    let ev = &c.convert(&sample::insert(CH, 1, 1, &[5])).unwrap()[0];
    let mut buf = Vec::new();
    encode_json(ev, DynamicFields::Merge, &mut buf).unwrap();
    let text = String::from_utf8(buf).unwrap();
    assert!(text.starts_with(r#"{"op":"c","database":"default","collection":"all_types""#));
    let row = &text[text.find("\"row\":").unwrap()..];
    let pos = |k: &str| row.find(&format!("\"{k}\":")).unwrap();
    assert!(pos("id") < pos("b") && pos("b") < pos("fv") && pos("fv") < pos("extra"));
}

#[test]
fn upsert_is_one_u_event_per_row_and_delete_carries_keys_only() {
    let mut c = converter();
    let ups = c.convert(&sample::upsert(CH, 7, 1000, &[8, 9])).unwrap();
    assert_eq!(
        ups.iter().map(|e| e.op).collect::<Vec<_>>(),
        [RowOp::Upsert; 2]
    );
    assert_eq!(
        to_json(&ups[1], DynamicFields::Merge)["row"],
        sample::expected_row(9, true)
    );

    let dels = c.convert(&sample::delete(CH, 8, 1000, &[8, 9])).unwrap();
    assert_eq!(dels.len(), 2);
    let j = to_json(&dels[1], DynamicFields::Merge);
    assert_eq!(j["op"], "d");
    assert_eq!(j["pk"], 9);
    assert_eq!(j["row"], Json::Null);
    assert_eq!(j["partition"], Json::Null);
    assert_eq!(dels[1].key(), "9");
}

#[test]
fn ddl_events_describe_the_change() {
    let mut c = converter();
    let evs = c.convert(&sample::create_collection(CH, 1, 5)).unwrap();
    assert_eq!(evs.len(), 1);
    let j = to_json(&evs[0], DynamicFields::Merge);
    assert_eq!(j["op"], "ddl");
    assert_eq!(j["ddl"], "create_collection");
    assert_eq!(j["pk"], Json::Null);
    assert_eq!(j["description"]["schema"]["fields"][0]["name"], "id");
    assert_eq!(j["schema_version"], 1);
    assert_eq!(evs[0].key(), "all_types");

    let part = c
        .convert(&sample::ddl(
            CH,
            2,
            5,
            Ddl::CreatePartition {
                partition: "p1".into(),
            },
        ))
        .unwrap();
    assert_eq!(
        to_json(&part[0], DynamicFields::Merge)["description"]["partition"],
        "p1"
    );

    let db = c
        .convert(&sample::database_ddl(
            "by-dev-replicate-msg",
            3,
            5,
            "sales",
            Ddl::DropDatabase,
        ))
        .unwrap();
    let j = to_json(&db[0], DynamicFields::Merge);
    assert_eq!(j["ddl"], "drop_database");
    assert_eq!(j["database"], "sales");
    assert_eq!(j["collection"], "");
    assert_eq!(j["schema_version"], 0);
    assert_eq!(db[0].key(), "sales");
}

#[test]
fn recreated_collection_gets_a_new_version() {
    let mut c = converter();
    assert_eq!(
        c.convert(&sample::insert(CH, 1, 1, &[1])).unwrap()[0]
            .schema()
            .version,
        1
    );
    let mut again = sample::insert(CH, 2, 1, &[1]);
    again.collection_id += 1;
    assert_eq!(c.convert(&again).unwrap()[0].schema().version, 2);
    assert_eq!(c.registry_mut().take_new().len(), 2);
}

#[test]
fn errors_say_where() {
    let mut c = converter();
    let mut ev = sample::insert(CH, 42, 1, &[1]);
    ev.collection_def = None;
    let e = c.convert(&ev).unwrap_err();
    assert!(e.message.contains("no collection definition"), "{e}");
    assert!(
        e.message.contains("default.all_types")
            && e.message.contains(CH)
            && e.message.contains("offset 42"),
        "{e}"
    );
    let mut ev = sample::insert(CH, 43, 1, &[1, 2]);
    if let cdc_engine::Op::Insert(b) = &mut ev.op {
        b.num_rows = 3;
    }
    let e = c.convert(&ev).unwrap_err();
    assert!(
        e.message.contains("insert of 3 rows") && e.message.contains("offset 43"),
        "{e}"
    );
}
