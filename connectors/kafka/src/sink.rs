//! The Kafka sink: row events encoded as JSON or Avro, keyed by primary key, with headers, in
//! at-least-once or exactly-once (transactional) mode.
//!
//! Exactly-once protocol, per checkpoint epoch (see [`crate::offsets`]):
//!
//! 1. `open`: `init_transactions` (fences an older instance and aborts its open transaction),
//!    read the last committed offsets record back, begin a transaction;
//! 2. `write`: events go into the open transaction;
//! 3. `pre_commit(epoch, offsets)`: the offsets record of the epoch joins the transaction;
//! 4. `flush`: every message of the transaction is delivered;
//! 5. the engine stores its own checkpoint; `commit`: commit the transaction, begin the next.
//!
//! A crash before 5 aborts events and offsets together; the engine then resumes this sink from
//! the offsets read back in 1, so nothing is lost or duplicated.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cdc_engine::{ChangeEvent, DeliveryGuarantee, EngineError, ErrorKind, Sink, SinkContext};
use cdc_events::{encode_avro, encode_json, RowConverter, RowEvent, SchemaRegistry};
use cdc_state::{Offsets, SinkCheckpoint};
use tracing::{info, warn};

use crate::client::{kafka_error, TopicCreator};
use crate::config::{Delivery, Format, KafkaSinkConfig, KeyMode};
use crate::offsets::{read_last, OffsetsRecord, ReadError};
use crate::producer::{Outgoing, SinkProducer};
use crate::schemas::{read_records, record_key};
use crate::topic::TopicTemplate;

/// Publishes the change stream to Kafka; built by [`KafkaSinkConfig::build`].
pub struct KafkaSink {
    cfg: KafkaSinkConfig,
    component: String,
    template: TopicTemplate,
    converter: RowConverter,
    state: Option<Open>,
    buf: Vec<u8>,
    /// Rows per op written since the last flush, and the newest source timestamp.
    pending: BTreeMap<&'static str, usize>,
    pending_ts: u64,
    pending_bytes: u64,
}

struct Open {
    ctx: SinkContext,
    producer: SinkProducer,
    topics: TopicCreator,
    txn: Option<Txn>,
}

struct Txn {
    id: String,
    offsets_topic: String,
    committed: SinkCheckpoint,
    open: bool,
}

impl KafkaSink {
    /// A sink for `cfg` named `sink_id`; connects in `open`.
    pub fn new(cfg: KafkaSinkConfig, sink_id: &str) -> Result<Self, EngineError> {
        cfg.validate()?;
        let template = TopicTemplate::parse(&cfg.topic)
            .map_err(|m| EngineError::config(format!("sink {sink_id}"), m))?;
        let registry = SchemaRegistry::new(cfg.schema_ids.clone());
        Ok(Self {
            component: cdc_engine::ComponentId::sink(sink_id).to_string(),
            template,
            converter: RowConverter::new(registry),
            state: None,
            buf: Vec::with_capacity(4096),
            pending: BTreeMap::new(),
            pending_ts: 0,
            pending_bytes: 0,
            cfg,
        })
    }

    /// The default `transactional.id` of a sink.
    pub fn default_transactional_id(pipeline: &str, sink_id: &str) -> String {
        let clean = |s: &str| {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect::<String>()
        };
        format!("milvus-cdc.{}.{}", clean(pipeline), clean(sink_id))
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.cfg.connect_timeout_secs.max(5) * 3)
    }

    fn not_open(&self) -> EngineError {
        EngineError::internal(&self.component, "the Kafka sink was used before `open`")
    }

    async fn restore_schemas(&mut self) -> Result<(), EngineError> {
        let Some(topic) = self.cfg.schema_topic.clone() else {
            return Ok(());
        };
        let cfg = self.cfg.clone();
        let t = self.timeout();
        let topic2 = topic.clone();
        let records = tokio::task::spawn_blocking(move || read_records(&cfg, &topic2, t))
            .await
            .map_err(|e| EngineError::internal(&self.component, e.to_string()))?
            .map_err(|e| {
                kafka_error(
                    &self.component,
                    ErrorKind::Read,
                    &format!("cannot read the schema topic {topic}"),
                    &self.cfg.brokers,
                    &e,
                )
            })?;
        info!(message = "Restored schema versions.", sink = %self.component, topic = %topic, records = records.len());
        self.converter.registry_mut().restore(records);
        Ok(())
    }

    /// Read the last committed offsets record; write one adopting the state store's offsets
    /// when there is none yet (first start, or a switch from at-least-once).
    async fn recover_offsets(
        &mut self,
        ctx: &SinkContext,
        txn_id: &str,
        offsets_topic: &str,
    ) -> Result<SinkCheckpoint, EngineError> {
        let cfg = self.cfg.clone();
        let t = self.timeout();
        let (topic, key) = (offsets_topic.to_string(), txn_id.to_string());
        let last = tokio::task::spawn_blocking(move || read_last(&cfg, &topic, &key, t))
            .await
            .map_err(|e| EngineError::internal(&self.component, e.to_string()))?;
        let component = self.component.clone();
        match last {
            Ok(Some((offset, rec))) => {
                let cp = rec.checkpoint().map_err(|m| {
                    EngineError::new(
                        &component,
                        ErrorKind::Decode,
                        format!("offsets record at offset {offset} of {offsets_topic}: {m}"),
                    )
                })?;
                info!(message = "Read the committed offsets back from Kafka.", sink = %component, topic = %offsets_topic, epoch = cp.epoch, channels = cp.offsets.len());
                Ok(cp)
            }
            Ok(None) => {
                let cp = SinkCheckpoint {
                    epoch: 0,
                    offsets: (*ctx.committed).clone(),
                };
                let state = self
                    .state
                    .as_mut()
                    .ok_or_else(|| EngineError::internal(&component, "not open"))?;
                state.producer.begin().await?;
                let rec = OffsetsRecord::new(&ctx.pipeline, &ctx.sink_id, 0, &cp.offsets);
                let payload = serde_json::to_vec(&rec)
                    .map_err(|e| EngineError::internal(&component, e.to_string()))?;
                state
                    .producer
                    .send(Outgoing {
                        topic: offsets_topic,
                        key: Some(txn_id.as_bytes()),
                        payload: &payload,
                        headers: &[],
                    })
                    .await?;
                state.producer.flush().await?;
                state.producer.commit().await?;
                info!(message = "No offsets in Kafka yet; adopted the state store's checkpoint.", sink = %component, topic = %offsets_topic, channels = cp.offsets.len());
                Ok(cp)
            }
            Err(ReadError::Kafka(e)) => Err(kafka_error(
                &component,
                ErrorKind::Read,
                &format!("cannot read the offsets topic {offsets_topic}"),
                &self.cfg.brokers,
                &e,
            )),
            Err(ReadError::Malformed(m)) => Err(EngineError::new(
                &component,
                ErrorKind::Decode,
                format!("{m}; the topic must only hold this sink's offsets records"),
            )),
        }
    }

    async fn publish_new_schemas(&mut self) -> Result<(), EngineError> {
        let new = self.converter.registry_mut().take_new();
        let (Some(topic), false) = (self.cfg.schema_topic.clone(), new.is_empty()) else {
            return Ok(());
        };
        let state = self
            .state
            .as_mut()
            .ok_or_else(|| EngineError::internal("kafka sink", "not open"))?;
        state.topics.ensure(&topic, true).await?;
        for s in new {
            let rec = s.record();
            let key = record_key(&rec);
            let payload = serde_json::to_vec(&rec)
                .map_err(|e| EngineError::internal(&self.component, e.to_string()))?;
            info!(message = "Publishing a new schema version.", sink = %self.component, database = %rec.database, collection = %rec.collection, version = rec.version, fingerprint = %rec.fingerprint, schema_id = rec.schema_id);
            state
                .producer
                .send(Outgoing {
                    topic: &topic,
                    key: Some(key.as_bytes()),
                    payload: &payload,
                    headers: &[],
                })
                .await?;
        }
        Ok(())
    }

    async fn send_row(&mut self, ev: &RowEvent) -> Result<(), EngineError> {
        self.buf.clear();
        match self.cfg.format {
            Format::Json => encode_json(ev, self.cfg.dynamic_fields, &mut self.buf),
            Format::Avro => encode_avro(ev, self.cfg.avro_wire, &mut self.buf),
        }
        .map_err(|e| e.into_engine(&self.component))?;
        let topic = self.template.render(&ev.meta.database, &ev.meta.collection);
        let key = match self.cfg.key {
            KeyMode::Pk => Some(ev.key()),
            KeyMode::None => None,
        };
        let ts = ev.meta.ts.to_string();
        let version = ev.schema().version.to_string();
        let headers = [
            ("op", ev.op.code()),
            ("source_channel", &*ev.meta.channel),
            ("source_offset", ev.meta.offset.as_str()),
            ("ts", ts.as_str()),
            ("schema_version", version.as_str()),
        ];
        let state = self
            .state
            .as_mut()
            .ok_or_else(|| EngineError::internal("kafka sink", "not open"))?;
        state.topics.ensure(&topic, false).await?;
        state
            .producer
            .send(Outgoing {
                topic: &topic,
                key: key.as_deref().map(str::as_bytes),
                payload: &self.buf,
                headers: &headers,
            })
            .await?;
        self.pending_bytes += self.buf.len() as u64;
        Ok(())
    }
}

#[async_trait]
impl Sink for KafkaSink {
    fn delivery(&self) -> DeliveryGuarantee {
        match self.cfg.delivery {
            Delivery::AtLeastOnce => DeliveryGuarantee::AtLeastOnce,
            Delivery::ExactlyOnce => DeliveryGuarantee::ExactlyOnce,
        }
    }

    async fn open(&mut self, ctx: &SinkContext) -> Result<(), EngineError> {
        let eos = self.cfg.delivery == Delivery::ExactlyOnce;
        let txn_id = self
            .cfg
            .transactional_id
            .clone()
            .unwrap_or_else(|| Self::default_transactional_id(&ctx.pipeline, &ctx.sink_id));
        let offsets_topic = format!("{txn_id}.offsets");
        let mut topics = TopicCreator::new(&self.cfg, &self.component, self.cfg.create_topics)?;
        if let Some(t) = &self.cfg.schema_topic {
            topics.ensure(t, true).await?;
        }
        if eos {
            topics.ensure(&offsets_topic, true).await?;
        }
        self.restore_schemas().await?;
        let producer =
            SinkProducer::create(&self.cfg, &self.component, eos.then_some(txn_id.as_str()))?;
        if eos {
            producer.init_transactions().await?;
        }
        self.state = Some(Open {
            ctx: ctx.clone(),
            producer,
            topics,
            txn: None,
        });
        if eos {
            let committed = self.recover_offsets(ctx, &txn_id, &offsets_topic).await?;
            let state = self
                .state
                .as_mut()
                .ok_or_else(|| EngineError::internal("kafka sink", "not open"))?;
            state.producer.begin().await?;
            state.txn = Some(Txn {
                id: txn_id.clone(),
                offsets_topic,
                committed,
                open: true,
            });
        }
        info!(
            message = "Kafka sink opened.",
            sink = %self.component,
            brokers = %self.cfg.brokers,
            topic = %self.cfg.topic,
            format = ?self.cfg.format,
            delivery = ?self.cfg.delivery,
            transactional_id = %if eos { txn_id.as_str() } else { "" }
        );
        Ok(())
    }

    async fn committed_checkpoint(&mut self) -> Result<Option<SinkCheckpoint>, EngineError> {
        Ok(self
            .state
            .as_ref()
            .and_then(|s| s.txn.as_ref())
            .map(|t| t.committed.clone()))
    }

    async fn write(&mut self, event: Arc<ChangeEvent>) -> Result<(), EngineError> {
        if self.state.is_none() {
            return Err(self.not_open());
        }
        let rows = self
            .converter
            .convert(&event)
            .map_err(|e| e.into_engine(&self.component))?;
        self.publish_new_schemas().await?;
        for ev in &rows {
            self.send_row(ev).await?;
        }
        *self.pending.entry(event.op.kind()).or_default() += event.op.rows().max(rows.len());
        self.pending_ts = self.pending_ts.max(event.position.ts);
        Ok(())
    }

    async fn pre_commit(&mut self, epoch: u64, offsets: &Offsets) -> Result<(), EngineError> {
        let component = self.component.clone();
        let Some(state) = self.state.as_mut() else {
            return Err(self.not_open());
        };
        let Some(txn) = &state.txn else {
            return Ok(());
        };
        let rec = OffsetsRecord::new(&state.ctx.pipeline, &state.ctx.sink_id, epoch, offsets);
        let payload = serde_json::to_vec(&rec)
            .map_err(|e| EngineError::internal(&component, e.to_string()))?;
        let (topic, key) = (txn.offsets_topic.clone(), txn.id.clone());
        state
            .producer
            .send(Outgoing {
                topic: &topic,
                key: Some(key.as_bytes()),
                payload: &payload,
                headers: &[],
            })
            .await
    }

    async fn flush(&mut self) -> Result<(), EngineError> {
        let Some(state) = self.state.as_ref() else {
            return Err(self.not_open());
        };
        state.producer.flush().await?;
        let m = &state.ctx.metrics;
        for (op, rows) in std::mem::take(&mut self.pending) {
            m.written(op, rows, self.pending_ts);
        }
        m.bytes.inc_by(self.pending_bytes);
        self.pending_bytes = 0;
        Ok(())
    }

    async fn commit(&mut self, epoch: u64) -> Result<(), EngineError> {
        let Some(state) = self.state.as_mut() else {
            return Err(self.not_open());
        };
        let Some(txn) = state.txn.as_mut() else {
            return Ok(());
        };
        txn.open = false;
        state.producer.commit().await?;
        state.producer.begin().await?;
        txn.open = true;
        tracing::debug!(message = "Kafka transaction committed.", sink = %self.component, epoch);
        Ok(())
    }

    async fn close(&mut self) {
        let Some(state) = self.state.take() else {
            return;
        };
        match &state.txn {
            Some(t) if t.open => {
                if let Err(e) = state.producer.abort().await {
                    warn!(message = "Could not abort the open Kafka transaction.", sink = %self.component, error = %e);
                }
            }
            Some(_) => {}
            None => {
                if let Err(e) = state.producer.flush().await {
                    warn!(message = "Kafka sink closed with undelivered messages.", sink = %self.component, error = %e);
                }
            }
        }
    }
}
