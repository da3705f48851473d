//! Row-level change events of milvus-cdc, for stream processors that must not know Milvus
//! protobufs (Flink, Arroyo, Spark, plain consumers).
//!
//! A [`RowConverter`] turns each engine [`cdc_engine::ChangeEvent`] into [`RowEvent`]s:
//!
//! - insert → one `c` event per row, upsert → one `u` event per row (the delete half of a
//!   Milvus upsert is implied), delete → one `d` event per primary key (no row);
//! - each DDL → one `ddl` event with its kind and a JSON description ([`ddl::describe`]).
//!
//! Columns are pivoted to rows in one pass per column ([`pivot`]). Every event refers to the
//! [`registry::EventSchema`] of its collection version: the row layout derived from the Milvus
//! schema ([`schema::RowSchema`]) and the Avro envelope generated from it
//! ([`avro_schema`]). Encoders: JSON ([`json::encode_json`]) and Avro
//! ([`avro::encode_avro`], single-object or Confluent framing).
//!
//! [`sample`] builds a collection with every data type and change events on it, with the
//! values they must decode to.

pub mod avro;
pub mod avro_schema;
pub mod ddl;
pub mod error;
pub mod event;
pub mod json;
pub mod pivot;
pub mod registry;
pub mod sample;
pub mod schema;
pub mod value;
pub mod vector;

pub use avro::{
    avro_value, encode_avro, encode_avro_datum, split_avro_message, AvroHeader, AvroWire,
};
pub use cdc_state::render_offset;
pub use error::EventError;
pub use event::{DdlInfo, EventMeta, RowConverter, RowEvent, RowOp};
pub use json::{encode_json, DynamicFields};
pub use registry::{EventSchema, SchemaRecord, SchemaRegistry};
pub use schema::{FieldInfo, RowSchema};
pub use value::Value;
