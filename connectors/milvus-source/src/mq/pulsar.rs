//! Pulsar reader (the `pulsar` crate). One non-durable exclusive subscription per topic
//! `persistent://{tenant}/{namespace}/{channel}`, positioned by seeking; acknowledgements only
//! free the broker's buffers, progress lives in the engine's checkpoints.
//!
//! Built and unit-tested only: the local Pulsar-protocol broker of the test environment
//! (pulsar-lite) sends message frames the Rust client cannot decode, and Milvus 2.3.5 cannot
//! use it as its queue either, so this reader has never read a real Milvus. Treat it as
//! experimental.

use async_trait::async_trait;
use bytes::Bytes;
use cdc_engine::{EngineError, ErrorKind, Offset};
use futures::StreamExt;
use prost::Message as _;
use pulsar::consumer::InitialPosition;
use pulsar::message::proto::command_subscribe::SubType;
use pulsar::message::proto::MessageIdData;
use pulsar::{Authentication, Consumer, ConsumerOptions, Pulsar, TokioExecutor};

use super::{MqClient, MqReader, StartAt};
use crate::config::{PulsarConfig, COMPONENT};
use crate::decode::RawMessage;

/// The fields of Pulsar's `MessageIdData` that Milvus serializes as a message ID.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PulsarMsgId {
    /// Ledger.
    #[prost(uint64, tag = "1")]
    pub ledger_id: u64,
    /// Entry in the ledger.
    #[prost(uint64, tag = "2")]
    pub entry_id: u64,
    /// Partition (-1: not partitioned).
    #[prost(int32, optional, tag = "3")]
    pub partition: Option<i32>,
    /// Index in a batch (-1: not batched).
    #[prost(int32, optional, tag = "4")]
    pub batch_index: Option<i32>,
}

/// Engine offset of a Pulsar message ID: ledger, entry, batch index + 1, big-endian.
pub fn offset_bytes(ledger: u64, entry: u64, batch_index: i32) -> Offset {
    let mut o = Vec::with_capacity(20);
    o.extend_from_slice(&ledger.to_be_bytes());
    o.extend_from_slice(&entry.to_be_bytes());
    o.extend_from_slice(&(batch_index.saturating_add(1).max(0) as u32).to_be_bytes());
    o
}

/// `(ledger, entry, batch_index)` of an engine offset.
pub fn parse_offset(o: &[u8]) -> Result<(u64, u64, i32), String> {
    if o.len() != 20 {
        return Err(format!("a Pulsar offset is 20 bytes, got {}", o.len()));
    }
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&o[i..i + 8]);
        u64::from_be_bytes(b)
    };
    let mut b = [0u8; 4];
    b.copy_from_slice(&o[16..20]);
    Ok((u64_at(0), u64_at(8), u32::from_be_bytes(b) as i32 - 1))
}

fn id_offset(id: &MessageIdData) -> Offset {
    offset_bytes(id.ledger_id, id.entry_id, id.batch_index.unwrap_or(-1))
}

fn connect_err(what: String) -> EngineError {
    EngineError::new(COMPONENT, ErrorKind::Connect, what).retriable()
}

/// Creates Pulsar readers.
pub struct PulsarClient {
    cfg: PulsarConfig,
    subscription: String,
}

impl PulsarClient {
    /// A client for `cfg`; `subscription` prefixes the (non-durable) subscription names.
    pub fn new(cfg: &PulsarConfig, subscription: &str) -> Self {
        Self {
            cfg: cfg.clone(),
            subscription: subscription.to_string(),
        }
    }

    /// `persistent://{tenant}/{namespace}/{channel}`.
    pub fn topic(&self, channel: &str) -> String {
        format!(
            "persistent://{}/{}/{channel}",
            self.cfg.tenant, self.cfg.namespace
        )
    }

    async fn pulsar(&self) -> Result<Pulsar<TokioExecutor>, EngineError> {
        let mut b = Pulsar::builder(self.cfg.url.clone(), TokioExecutor);
        if let Some(token) = &self.cfg.token {
            b = b.with_auth(Authentication {
                name: "token".into(),
                data: token.clone().into_bytes(),
            });
        }
        b.build()
            .await
            .map_err(|e| connect_err(format!("cannot connect to Pulsar {}: {e}", self.cfg.url)))
    }
}

#[async_trait]
impl MqClient for PulsarClient {
    async fn list_channels(&self) -> Result<Vec<String>, EngineError> {
        use pulsar::message::proto::command_get_topics_of_namespace::Mode;
        let p = self.pulsar().await?;
        let ns = format!("{}/{}", self.cfg.tenant, self.cfg.namespace);
        let topics = p
            .get_topics_of_namespace(ns.clone(), Mode::Persistent)
            .await
            .map_err(|e| connect_err(format!("cannot list the topics of Pulsar {ns}: {e}")))?;
        Ok(topics
            .into_iter()
            .map(|t| t.rsplit('/').next().unwrap_or_default().to_string())
            .collect())
    }

    async fn open(&self, channel: &str, start: StartAt) -> Result<Box<dyn MqReader>, EngineError> {
        let p = self.pulsar().await?;
        let topic = self.topic(channel);
        // "After the position before the first message" is the channel's beginning.
        let start = match start {
            StartAt::After(o) if o.as_slice() == super::BEFORE_FIRST => StartAt::Earliest,
            s => s,
        };
        let initial = if start == StartAt::Latest {
            InitialPosition::Latest
        } else {
            InitialPosition::Earliest
        };
        let mut consumer: Consumer<Vec<u8>, TokioExecutor> = p
            .consumer()
            .with_topic(topic.clone())
            .with_subscription(format!("{}-{channel}", self.subscription))
            .with_subscription_type(SubType::Exclusive)
            .with_options(
                ConsumerOptions::default()
                    .durable(false)
                    .with_initial_position(initial),
            )
            .build()
            .await
            .map_err(|e| connect_err(format!("cannot subscribe to Pulsar topic {topic}: {e}")))?;
        let mut skip_until = None;
        let last_read = match &start {
            StartAt::Latest => consumer
                .get_last_message_id()
                .await
                .ok()
                .and_then(|ids| ids.first().map(id_offset)),
            StartAt::Earliest => None,
            StartAt::After(o) | StartAt::At(o) => {
                let (ledger_id, entry_id, batch) =
                    parse_offset(o).map_err(|e| EngineError::config(COMPONENT, e))?;
                let id = MessageIdData {
                    ledger_id,
                    entry_id,
                    batch_index: Some(batch),
                    ..Default::default()
                };
                consumer
                    .seek(None, Some(id), None, p.clone())
                    .await
                    .map_err(|e| connect_err(format!("cannot seek Pulsar topic {topic}: {e}")))?;
                if matches!(start, StartAt::After(_)) {
                    skip_until = Some(o.clone());
                    Some(o.clone())
                } else {
                    None
                }
            }
        };
        Ok(Box::new(PulsarReader {
            consumer,
            topic,
            last_read,
            skip_until,
        }))
    }

    fn dependency(&self) -> &'static str {
        "pulsar"
    }

    fn offset_of_msg_id(&self, msg_id: &[u8]) -> Result<Offset, String> {
        let id =
            PulsarMsgId::decode(msg_id).map_err(|e| format!("not a Pulsar MessageIdData: {e}"))?;
        Ok(offset_bytes(
            id.ledger_id,
            id.entry_id,
            id.batch_index.unwrap_or(-1),
        ))
    }
}

/// Reads one Pulsar topic.
pub struct PulsarReader {
    consumer: Consumer<Vec<u8>, TokioExecutor>,
    topic: String,
    last_read: Option<Offset>,
    skip_until: Option<Offset>,
}

#[async_trait]
impl MqReader for PulsarReader {
    async fn recv(&mut self) -> Result<RawMessage, EngineError> {
        loop {
            let msg = match self.consumer.next().await {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    return Err(EngineError::new(
                        COMPONENT,
                        ErrorKind::Read,
                        format!("cannot read Pulsar topic {}: {e}", self.topic),
                    )
                    .retriable())
                }
                None => return Err(connect_err(format!("Pulsar topic {} closed", self.topic))),
            };
            let offset = id_offset(msg.message_id());
            // Acknowledging only releases the broker's copy for this non-durable subscription.
            let _ = self.consumer.ack(&msg).await;
            if self.skip_until.as_ref().is_some_and(|s| offset <= *s) {
                continue;
            }
            self.skip_until = None;
            self.last_read = Some(offset.clone());
            let properties = msg
                .payload
                .metadata
                .properties
                .iter()
                .map(|kv| (kv.key.clone(), kv.value.clone().into_bytes()))
                .collect();
            return Ok(RawMessage {
                offset,
                payload: Bytes::from(msg.payload.data),
                properties,
            });
        }
    }

    async fn last_available(&mut self) -> Result<Option<Offset>, EngineError> {
        let ids = self.consumer.get_last_message_id().await.map_err(|e| {
            EngineError::new(
                COMPONENT,
                ErrorKind::Read,
                format!(
                    "cannot read the last message ID of Pulsar topic {}: {e}",
                    self.topic
                ),
            )
            .retriable()
        })?;
        // An empty topic answers entry -1 (u64::MAX once unsigned): nothing to wait for.
        Ok(ids
            .first()
            .filter(|id| id.entry_id != u64::MAX)
            .map(id_offset))
    }

    fn last_read(&self) -> Option<Offset> {
        self.last_read.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_order_and_round_trip() {
        let a = offset_bytes(1, 5, -1);
        let b = offset_bytes(1, 5, 0);
        let c = offset_bytes(1, 6, -1);
        let d = offset_bytes(2, 0, -1);
        assert!(a < b && b < c && c < d);
        assert_eq!(parse_offset(&b).unwrap(), (1, 5, 0));
        assert_eq!(parse_offset(&a).unwrap(), (1, 5, -1));
        assert!(parse_offset(&[0; 8]).is_err());
    }

    #[test]
    fn milvus_msg_ids_are_message_id_data() {
        let c = PulsarClient::new(
            &PulsarConfig {
                url: "pulsar://127.0.0.1:6650".into(),
                tenant: "public".into(),
                namespace: "default".into(),
                token: None,
            },
            "sub",
        );
        let id = PulsarMsgId {
            ledger_id: 7,
            entry_id: 9,
            partition: Some(-1),
            batch_index: Some(-1),
        }
        .encode_to_vec();
        assert_eq!(c.offset_of_msg_id(&id).unwrap(), offset_bytes(7, 9, -1));
        assert!(c.offset_of_msg_id(&[0xff, 0xff]).is_err());
        assert_eq!(
            c.topic("by-dev-rootcoord-dml_0"),
            "persistent://public/default/by-dev-rootcoord-dml_0"
        );
    }
}
