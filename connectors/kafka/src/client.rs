//! Connections to the brokers shared by the producer, the admin client and the read-back
//! consumer: common settings, the reachability check, topic creation and reading a topic to
//! its end.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use cdc_engine::{EngineError, ErrorKind};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tracing::{debug, info};

use crate::config::KafkaSinkConfig;

/// A message read back from a topic.
#[derive(Debug, Clone)]
pub struct ReadMessage {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes.
    pub payload: Option<Vec<u8>>,
}

/// Settings every client of the sink shares (brokers and security).
pub fn base_config(cfg: &KafkaSinkConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", cfg.brokers.trim());
    c.set(
        "socket.timeout.ms",
        (cfg.connect_timeout_secs * 1000).max(10).to_string(),
    );
    for (k, v) in cfg.security.settings() {
        c.set(k, v);
    }
    c
}

/// An error of `component` about the brokers, naming them.
pub fn kafka_error(
    component: &str,
    kind: ErrorKind,
    what: &str,
    brokers: &str,
    e: &KafkaError,
) -> EngineError {
    let retriable = matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::NetworkException
                | RDKafkaErrorCode::LeaderNotAvailable
                | RDKafkaErrorCode::NotLeaderForPartition
        )
    );
    let err = EngineError::new(component, kind, format!("{what} (brokers {brokers}): {e}"));
    if retriable {
        err.retriable()
    } else {
        err
    }
}

/// Fail unless the brokers answer a metadata request within the connect timeout.
pub async fn check_brokers(cfg: &KafkaSinkConfig, component: &str) -> Result<(), EngineError> {
    let client: BaseConsumer = base_config(cfg).create().map_err(|e| {
        kafka_error(
            component,
            ErrorKind::Config,
            "cannot create a Kafka client",
            &cfg.brokers,
            &e,
        )
    })?;
    let timeout = Duration::from_secs(cfg.connect_timeout_secs);
    let brokers = cfg.brokers.clone();
    let comp = component.to_string();
    tokio::task::spawn_blocking(move || {
        client
            .fetch_metadata(None, timeout)
            .map(|md| md.brokers().len())
            .map_err(|e| {
                let mut err = kafka_error(
                    &comp,
                    ErrorKind::Connect,
                    "cannot reach the Kafka brokers; check `brokers` and that they run",
                    &brokers,
                    &e,
                );
                err.retriable = true;
                err
            })
    })
    .await
    .map_err(|e| EngineError::internal(component, e.to_string()))?
    .map(|n| debug!(message = "Kafka brokers reachable.", brokers = n))
}

/// Creates missing topics once per name.
pub struct TopicCreator {
    admin: Option<AdminClient<DefaultClientContext>>,
    known: HashSet<String>,
    partitions: i32,
    replication: i32,
    brokers: String,
    component: String,
}

impl TopicCreator {
    /// A creator; with `enabled == false` it only remembers names.
    pub fn new(cfg: &KafkaSinkConfig, component: &str, enabled: bool) -> Result<Self, EngineError> {
        let admin = if enabled {
            Some(base_config(cfg).create().map_err(|e| {
                kafka_error(
                    component,
                    ErrorKind::Config,
                    "cannot create a Kafka admin client",
                    &cfg.brokers,
                    &e,
                )
            })?)
        } else {
            None
        };
        Ok(Self {
            admin,
            known: HashSet::new(),
            partitions: cfg.topic_partitions,
            replication: cfg.replication_factor,
            brokers: cfg.brokers.clone(),
            component: component.to_string(),
        })
    }

    /// Make sure `topic` exists (single partition and compacted when `compact`).
    pub async fn ensure(&mut self, topic: &str, compact: bool) -> Result<(), EngineError> {
        if self.known.contains(topic) {
            return Ok(());
        }
        if let Some(admin) = &self.admin {
            let partitions = if compact { 1 } else { self.partitions };
            let mut nt =
                NewTopic::new(topic, partitions, TopicReplication::Fixed(self.replication));
            if compact {
                nt = nt.set("cleanup.policy", "compact");
            }
            let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
            let res = admin.create_topics(&[nt], &opts).await.map_err(|e| {
                kafka_error(
                    &self.component,
                    ErrorKind::Write,
                    &format!("cannot create topic {topic}"),
                    &self.brokers,
                    &e,
                )
            })?;
            for r in res {
                match r {
                    Ok(t) => {
                        info!(message = "Created Kafka topic.", topic = %t, partitions, compact)
                    }
                    Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((t, code)) => {
                        return Err(EngineError::new(
                            &self.component,
                            ErrorKind::Write,
                            format!(
                                "cannot create topic {t} (brokers {}): {code}; create it \
                                 yourself or set `create_topics: false`",
                                self.brokers
                            ),
                        ))
                    }
                }
            }
        }
        self.known.insert(topic.to_string());
        Ok(())
    }
}

/// Read every committed message of `topic` at or after `from` (per partition: the larger of
/// `from` and the low watermark) up to its current end. `None` for `from` reads everything.
/// A missing topic reads as empty.
pub fn read_to_end(
    cfg: &KafkaSinkConfig,
    topic: &str,
    from: Option<&dyn Fn(i32, i64, i64) -> i64>,
    timeout: Duration,
) -> Result<Vec<ReadMessage>, KafkaError> {
    let consumer: BaseConsumer = base_config(cfg)
        .set("group.id", "milvus-cdc-readback")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .create()?;
    let md = consumer.fetch_metadata(Some(topic), timeout)?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        return Ok(Vec::new());
    };
    if t.error().is_some() || t.partitions().is_empty() {
        return Ok(Vec::new());
    }
    let mut tpl = TopicPartitionList::new();
    let mut pending = HashSet::new();
    for p in t.partitions() {
        let (low, high) = consumer.fetch_watermarks(topic, p.id(), timeout)?;
        if high <= low {
            continue;
        }
        let start = from
            .map(|f| f(p.id(), low, high))
            .unwrap_or(low)
            .clamp(low, high);
        if start >= high {
            continue;
        }
        tpl.add_partition_offset(topic, p.id(), Offset::Offset(start))?;
        pending.insert(p.id());
    }
    if pending.is_empty() {
        return Ok(Vec::new());
    }
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while !pending.is_empty() {
        if Instant::now() > deadline {
            return Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::OperationTimedOut,
            ));
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                pending.remove(&p);
            }
            Some(Err(e)) => return Err(e),
            Some(Ok(m)) => out.push(ReadMessage {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().map(<[u8]>::to_vec),
            }),
        }
    }
    Ok(out)
}
