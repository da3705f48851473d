//! The schema topic: every schema version is published there (JSON [`SchemaRecord`]) before
//! the first event that uses it, and read back on start so version numbers continue.
//!
//! Key: `<database>.<collection>.v<version>` (`milvus_cdc.ddl_event.v0` for the generic DDL
//! envelope), so a compacted topic keeps every version. A consumer decodes Avro messages by
//! looking up the fingerprint (single-object framing) or the schema id (Confluent framing) of a
//! message among the records.

use std::time::Duration;

use cdc_events::SchemaRecord;
use tracing::warn;

use crate::client::read_to_end;
use crate::config::KafkaSinkConfig;

/// The message key of a schema record.
pub fn record_key(r: &SchemaRecord) -> String {
    if r.collection.is_empty() {
        format!("milvus_cdc.ddl_event.v{}", r.version)
    } else {
        format!("{}.{}.v{}", r.database, r.collection, r.version)
    }
}

/// Every well-formed record of the schema topic (malformed ones are logged and skipped).
pub fn read_records(
    cfg: &KafkaSinkConfig,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<SchemaRecord>, rdkafka::error::KafkaError> {
    let msgs = read_to_end(cfg, topic, None, timeout)?;
    let mut out = Vec::with_capacity(msgs.len());
    for m in msgs {
        let Some(p) = m.payload else { continue };
        match serde_json::from_slice::<SchemaRecord>(&p) {
            Ok(r) => out.push(r),
            Err(e) => warn!(
                message = "Skipping a record of the schema topic that is not a schema record.",
                topic,
                offset = m.offset,
                error = %e
            ),
        }
    }
    Ok(out)
}
