//! Kafka reader (rdkafka). One consumer per topic, partition 0 (Milvus topics have one
//! partition), positioned with an explicit `assign`; offsets are never committed to the
//! broker: the engine's checkpoints are the only record of progress.
//!
//! Failures are classified by [`is_transient`]: a broker that is down, restarting or
//! electing a leader (`AllBrokersDown`, `BrokerTransportFailure`, timeouts, leader not
//! available, ...) is transient and the error is retriable (the reader task reconnects, see
//! [`crate::reader`]); refused credentials, an offset the broker no longer holds, a fatal
//! librdkafka error or an invalid configuration are not, and their message says what to do.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cdc_engine::{EngineError, ErrorKind, Offset};
use cdc_protocol::position;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, TopicPartitionList};

use super::{MqClient, MqReader, Resolved, StartAt, BEFORE_FIRST};
use crate::config::{KafkaConfig, COMPONENT};
use crate::decode::RawMessage;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Engine offset of a Kafka offset.
pub fn offset_bytes(offset: i64) -> Offset {
    offset.to_be_bytes().to_vec()
}

/// Kafka offset of an engine offset.
pub fn kafka_offset(offset: &[u8]) -> Result<i64, String> {
    <[u8; 8]>::try_from(offset)
        .map(i64::from_be_bytes)
        .map_err(|_| format!("a Kafka offset is 8 bytes, got {}", offset.len()))
}

fn err(kind: ErrorKind, what: String) -> EngineError {
    EngineError::new(COMPONENT, kind, what).retriable()
}

/// Whether retrying after `e` can succeed without anyone acting: the broker is unreachable,
/// restarting, slow, or moving a partition's leadership.
pub fn is_transient(e: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    match e {
        KafkaError::MessageConsumptionFatal(_)
        | KafkaError::ClientConfig(..)
        | KafkaError::ClientCreation(_)
        | KafkaError::Nul(_)
        | KafkaError::Canceled => false,
        _ => e.rdkafka_error_code().is_some_and(|c| {
            matches!(
                c,
                C::AllBrokersDown
                    | C::BrokerTransportFailure
                    | C::Resolve
                    | C::OperationTimedOut
                    | C::RequestTimedOut
                    | C::TimedOutQueue
                    | C::MessageTimedOut
                    | C::NetworkException
                    | C::BrokerNotAvailable
                    | C::LeaderNotAvailable
                    | C::NotLeaderForPartition
                    | C::ReplicaNotAvailable
                    | C::PreferredLeaderNotAvailable
                    | C::EligibleLeadersNotAvailable
                    | C::FencedLeaderEpoch
                    | C::UnknownLeaderEpoch
                    | C::OffsetNotAvailable
                    | C::NotEnoughReplicas
                    | C::KafkaStorageError
                    | C::FetchSessionIdNotFound
                    | C::InvalidFetchSessionEpoch
                    | C::CoordinatorNotAvailable
                    | C::CoordinatorLoadInProgress
                    | C::NotCoordinator
                    | C::WaitingForCoordinator
                    | C::ThrottlingQuotaExceeded
                    | C::WaitCache
                    | C::Retry
                    | C::Interrupted
            )
        }),
    }
}

/// What the operator can do about a failure that is not transient (empty when there is
/// nothing specific to say).
fn fatal_hint(e: &KafkaError) -> &'static str {
    use RDKafkaErrorCode as C;
    match e.rdkafka_error_code() {
        Some(
            C::Authentication
            | C::SaslAuthenticationFailed
            | C::SSL
            | C::TopicAuthorizationFailed
            | C::GroupAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::UnsupportedSASLMechanism
            | C::IllegalSASLState,
        ) => "; the broker refused the credentials or TLS settings: check `mq.kafka.options`",
        _ if matches!(e, KafkaError::MessageConsumptionFatal(_)) => {
            "; librdkafka reported a fatal error: restart the task"
        }
        _ => "",
    }
}

/// A read error, retriable when `e` is transient.
fn read_err(what: String, e: &KafkaError) -> EngineError {
    let transient = is_transient(e);
    let hint = if transient { "" } else { fatal_hint(e) };
    let error = EngineError::new(COMPONENT, ErrorKind::Read, format!("{what}: {e}{hint}"));
    if transient {
        error.retriable()
    } else {
        error
    }
}

/// Creates Kafka readers.
pub struct KafkaClient {
    settings: BTreeMap<String, String>,
    brokers: String,
}

impl KafkaClient {
    /// A client for `cfg`; `group` names the (never committed) consumer group.
    pub fn new(cfg: &KafkaConfig, group: &str) -> Self {
        let mut settings: BTreeMap<String, String> = [
            ("bootstrap.servers", cfg.brokers.join(",")),
            ("group.id", group.to_string()),
            ("enable.auto.commit", "false".into()),
            ("enable.auto.offset.store", "false".into()),
            ("enable.partition.eof", "false".into()),
            // A resume offset that the broker no longer holds is an error, not a silent jump.
            ("auto.offset.reset", "error".into()),
            // The broker answers a waiting fetch as soon as data arrives; this only bounds how
            // long an idle fetch is held (lower values cost broker CPU for nothing).
            ("fetch.wait.max.ms", "100".into()),
            // What librdkafka prefetches per channel: with a broker that honours the fetch
            // limits, at most `queued.max.messages.kbytes` plus one fetch (`fetch.max.bytes`)
            // per channel, whatever the backlog. Above that the source's own budget
            // (`max_pending_mib`) pauses the partition. noida-db (the dev broker) ignores the
            // fetch limits: each fetch returns everything past the offset (README
            // "Benchmarks").
            ("queued.max.messages.kbytes", "2048".into()),
            ("fetch.max.bytes", "4194304".into()),
            ("max.partition.fetch.bytes", "1048576".into()),
            // A response over this limit is dropped and fetched again for ever. Compliant
            // brokers stay near `fetch.max.bytes`; noida-db answered one channel's fetch with
            // its whole backlog (200 MB for 400 messages of 500 kB), so the ceiling is high.
            ("receive.message.max.bytes", "1073741824".into()),
            ("client.id", "milvus-cdc-source".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (k, v) in &cfg.options {
            settings.insert(k.clone(), v.clone());
        }
        Self {
            settings,
            brokers: cfg.brokers.join(","),
        }
    }

    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        for (k, v) in &self.settings {
            c.set(k, v);
        }
        c
    }

    /// The Kafka offset a reader positioned at `start` reads first (watermarks for
    /// `latest`/`earliest`).
    async fn next_offset(&self, channel: &str, start: &StartAt) -> Result<i64, EngineError> {
        Ok(match start {
            StartAt::After(o) if o.as_slice() == BEFORE_FIRST => 0,
            StartAt::After(o) => {
                kafka_offset(o).map_err(|e| EngineError::config(COMPONENT, e))? + 1
            }
            StartAt::At(o) => kafka_offset(o).map_err(|e| EngineError::config(COMPONENT, e))?,
            StartAt::Latest | StartAt::Earliest => {
                let consumer = self.base_consumer()?;
                let topic = channel.to_string();
                let (low, high) =
                    tokio::task::spawn_blocking(move || watermarks(&consumer, &topic))
                        .await
                        .map_err(|e| EngineError::internal(COMPONENT, e.to_string()))?
                        .map_err(|e| {
                            err(
                                ErrorKind::Connect,
                                format!("cannot read the offsets of Kafka topic {channel}: {e}"),
                            )
                        })?;
                if *start == StartAt::Latest {
                    high
                } else {
                    low
                }
            }
        })
    }

    fn base_consumer(&self) -> Result<BaseConsumer, EngineError> {
        self.client_config().create().map_err(|e| {
            err(
                ErrorKind::Connect,
                format!("cannot create a Kafka consumer for {}: {e}", self.brokers),
            )
        })
    }
}

/// `(low, high)` watermarks; a topic that does not exist yet is empty.
fn watermarks<C: Consumer>(c: &C, topic: &str) -> Result<(i64, i64), KafkaError> {
    match c.fetch_watermarks(topic, 0, TIMEOUT) {
        Ok(w) => Ok(w),
        Err(KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition))
        | Err(KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownPartition)) => Ok((0, 0)),
        Err(e) => Err(e),
    }
}

#[async_trait]
impl MqClient for KafkaClient {
    async fn list_channels(&self) -> Result<Vec<String>, EngineError> {
        let consumer = self.base_consumer()?;
        let brokers = self.brokers.clone();
        tokio::task::spawn_blocking(move || {
            consumer
                .fetch_metadata(None, TIMEOUT)
                .map(|m| m.topics().iter().map(|t| t.name().to_string()).collect())
                .map_err(|e| {
                    err(
                        ErrorKind::Connect,
                        format!("cannot list the Kafka topics of {brokers}: {e}"),
                    )
                })
        })
        .await
        .map_err(|e| EngineError::internal(COMPONENT, e.to_string()))?
    }

    async fn open(&self, channel: &str, start: StartAt) -> Result<Box<dyn MqReader>, EngineError> {
        let consumer: StreamConsumer = self.client_config().create().map_err(|e| {
            EngineError::config(
                COMPONENT,
                format!("cannot create a Kafka consumer for {channel} (check `mq.kafka`): {e}"),
            )
        })?;
        let consumer = Arc::new(consumer);
        let next = self.next_offset(channel, &start).await?;
        let last_read = (next > 0).then_some(next - 1);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(channel, 0, rdkafka::Offset::Offset(next))
            .map_err(|e| err(ErrorKind::Connect, format!("Kafka topic {channel}: {e}")))?;
        consumer.assign(&tpl).map_err(|e| {
            err(
                ErrorKind::Connect,
                format!("cannot assign Kafka topic {channel} at offset {next}: {e}"),
            )
        })?;
        tracing::info!(message = "Reading Kafka topic.", channel, offset = next,);
        Ok(Box::new(KafkaReader {
            consumer,
            topic: channel.to_string(),
            last_read: last_read.map(offset_bytes),
            delivered: false,
        }))
    }

    fn dependency(&self) -> &'static str {
        "kafka"
    }

    fn offset_of_msg_id(&self, msg_id: &[u8]) -> Result<Offset, String> {
        position::kafka_offset(msg_id)
            .map(offset_bytes)
            .map_err(|e| e.to_string())
    }

    async fn resolve(&self, channel: &str, start: StartAt) -> Result<Resolved, EngineError> {
        let next = self.next_offset(channel, &start).await?;
        Ok(Resolved {
            start: StartAt::At(offset_bytes(next)),
            done: Some(done_before(next)),
        })
    }
}

/// The engine offset of "everything before Kafka offset `next` is consumed".
fn done_before(next: i64) -> Offset {
    if next > 0 {
        offset_bytes(next - 1)
    } else {
        BEFORE_FIRST.to_vec()
    }
}

/// Reads one Kafka topic.
pub struct KafkaReader {
    consumer: Arc<StreamConsumer>,
    topic: String,
    last_read: Option<Offset>,
    /// A message was read (an unknown topic then is not one that is yet to be created).
    delivered: bool,
}

#[async_trait]
impl MqReader for KafkaReader {
    async fn recv(&mut self) -> Result<RawMessage, EngineError> {
        loop {
            match self.consumer.recv().await {
                Ok(m) => {
                    if m.topic() != self.topic {
                        continue;
                    }
                    let offset = offset_bytes(m.offset());
                    let properties = m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                                .collect()
                        })
                        .unwrap_or_default();
                    let raw = RawMessage {
                        offset: offset.clone(),
                        payload: Bytes::copy_from_slice(m.payload().unwrap_or_default()),
                        properties,
                    };
                    self.last_read = Some(offset);
                    self.delivered = true;
                    return Ok(raw);
                }
                Err(KafkaError::PartitionEOF(_)) => continue,
                Err(KafkaError::MessageConsumption(code))
                    if code == RDKafkaErrorCode::AutoOffsetReset
                        || code == RDKafkaErrorCode::OffsetOutOfRange =>
                {
                    return Err(EngineError::new(
                        COMPONENT,
                        ErrorKind::Read,
                        format!(
                            "Kafka topic {}: the offset after {:?} is no longer held by the \
                             broker (retention?). Changes were lost; restart the task from \
                             `earliest` or a new position",
                            self.topic,
                            self.last_read.as_deref().map(kafka_offset)
                        ),
                    ));
                }
                Err(KafkaError::MessageConsumption(
                    RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownPartition,
                )) if !self.delivered => {
                    // The topic does not exist yet: Milvus creates it on its first write.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(
                    e @ KafkaError::MessageConsumption(
                        RDKafkaErrorCode::UnknownTopicOrPartition
                        | RDKafkaErrorCode::UnknownPartition,
                    ),
                ) => {
                    // It delivered messages: a broker that restarts may not know it for a
                    // moment. Retried (within `reconnect.give_up_after_s`).
                    return Err(err(
                        ErrorKind::Read,
                        format!(
                            "Kafka topic {} is unknown to the broker although it delivered                              messages (broker restarting, or the topic was deleted): {e}",
                            self.topic
                        ),
                    ));
                }
                Err(e) => {
                    return Err(read_err(
                        format!("cannot read Kafka topic {}", self.topic),
                        &e,
                    ))
                }
            }
        }
    }

    async fn last_available(&mut self) -> Result<Option<Offset>, EngineError> {
        let (c, topic) = (self.consumer.clone(), self.topic.clone());
        let (_, high) = tokio::task::spawn_blocking(move || watermarks(&*c, &topic))
            .await
            .map_err(|e| EngineError::internal(COMPONENT, e.to_string()))?
            .map_err(|e| {
                read_err(
                    format!(
                        "cannot read the high watermark of Kafka topic {}",
                        self.topic
                    ),
                    &e,
                )
            })?;
        Ok((high > 0).then(|| offset_bytes(high - 1)))
    }

    fn last_read(&self) -> Option<Offset> {
        self.last_read.clone()
    }

    fn set_paused(&mut self, paused: bool) -> Result<(), EngineError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topic, 0);
        // librdkafka drops what it prefetched on pause and fetches again from the last
        // message delivered on resume: nothing is skipped or read twice.
        let res = if paused {
            self.consumer.pause(&tpl)
        } else {
            self.consumer.resume(&tpl)
        };
        tracing::debug!(message = "Kafka partition paused or resumed.", channel = %self.topic, paused);
        res.map_err(|e| {
            read_err(
                format!(
                    "cannot {} Kafka topic {}",
                    if paused { "pause" } else { "resume" },
                    self.topic
                ),
                &e,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_big_endian_and_round_trip() {
        assert_eq!(offset_bytes(1), vec![0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(kafka_offset(&offset_bytes(123_456)).unwrap(), 123_456);
        assert!(kafka_offset(&[1, 2]).is_err());
        assert!(offset_bytes(255) < offset_bytes(256));
    }

    #[test]
    fn a_resolved_start_is_checkpointed_as_the_offset_before_it() {
        assert_eq!(done_before(10), offset_bytes(9));
        assert_eq!(done_before(0), BEFORE_FIRST.to_vec());
        assert!(
            done_before(0) < offset_bytes(0),
            "before-first sorts before every offset"
        );
    }

    #[test]
    fn broker_outages_are_transient_and_lost_data_or_credentials_are_not() {
        use RDKafkaErrorCode as C;
        for c in [
            C::AllBrokersDown,
            C::BrokerTransportFailure,
            C::OperationTimedOut,
            C::RequestTimedOut,
            C::LeaderNotAvailable,
            C::NotLeaderForPartition,
            C::NetworkException,
        ] {
            assert!(is_transient(&KafkaError::MessageConsumption(c)), "{c:?}");
            assert!(is_transient(&KafkaError::MetadataFetch(c)), "{c:?}");
        }
        for c in [
            C::OffsetOutOfRange,
            C::AutoOffsetReset,
            C::SaslAuthenticationFailed,
            C::TopicAuthorizationFailed,
            C::MessageSizeTooLarge,
        ] {
            assert!(!is_transient(&KafkaError::MessageConsumption(c)), "{c:?}");
        }
        let fatal = KafkaError::MessageConsumptionFatal(C::AllBrokersDown);
        assert!(!is_transient(&fatal), "librdkafka's fatal flag wins");
        assert!(read_err("x".into(), &fatal)
            .message
            .contains("restart the task"));
        let auth = read_err(
            "cannot read Kafka topic t".into(),
            &KafkaError::MessageConsumption(C::SaslAuthenticationFailed),
        );
        assert!(!auth.retriable);
        assert!(auth.message.contains("mq.kafka.options"), "{auth}");
        let down = read_err(
            "cannot read Kafka topic t".into(),
            &KafkaError::MessageConsumption(C::AllBrokersDown),
        );
        assert!(down.retriable, "{down}");
    }

    #[test]
    fn milvus_msg_ids_are_little_endian() {
        let c = KafkaClient::new(
            &KafkaConfig {
                brokers: vec!["127.0.0.1:1".into()],
                options: BTreeMap::new(),
            },
            "g",
        );
        let id = position::kafka_msg_id(300);
        assert_eq!(c.offset_of_msg_id(&id).unwrap(), offset_bytes(300));
        assert!(c.offset_of_msg_id(&[1]).is_err());
    }

    #[test]
    fn user_options_override_defaults() {
        let c = KafkaClient::new(
            &KafkaConfig {
                brokers: vec!["a:1".into(), "b:2".into()],
                options: [("fetch.wait.max.ms".to_string(), "100".to_string())].into(),
            },
            "g",
        );
        assert_eq!(c.settings["fetch.wait.max.ms"], "100");
        assert_eq!(c.settings["bootstrap.servers"], "a:1,b:2");
        assert_eq!(c.settings["enable.auto.commit"], "false");
    }
}
