//! The librdkafka producer of the sink, with a delivery tracker: every delivery report is
//! counted and the first failure kept, so `flush` can tell whether everything since the last
//! checkpoint reached the brokers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cdc_engine::{EngineError, ErrorKind};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use crate::client::{base_config, kafka_error};
use crate::config::{Delivery, KafkaSinkConfig};

/// Counts delivery reports and keeps the first failure.
#[derive(Default)]
pub struct DeliveryTracker {
    delivered: AtomicU64,
    failure: Mutex<Option<String>>,
}

impl ClientContext for DeliveryTracker {}

impl ProducerContext for DeliveryTracker {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, msg)) => {
                if let Ok(mut f) = self.failure.lock() {
                    if f.is_none() {
                        *f = Some(format!(
                            "delivery to topic {} partition {} failed: {e}",
                            msg.topic(),
                            msg.partition()
                        ));
                    }
                }
            }
        }
    }
}

/// The sink's producer.
pub struct SinkProducer {
    producer: Arc<ThreadedProducer<DeliveryTracker>>,
    brokers: String,
    component: String,
    flush_timeout: Duration,
    /// Messages handed to librdkafka so far.
    pub sent: u64,
}

/// One message to produce.
pub struct Outgoing<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Key, if any.
    pub key: Option<&'a [u8]>,
    /// Value.
    pub payload: &'a [u8],
    /// Headers as (name, value).
    pub headers: &'a [(&'a str, &'a str)],
}

impl SinkProducer {
    /// Create the producer: idempotent, `acks=all`, Java-compatible key partitioning
    /// (`murmur2_random`, overridable); transactional when `transactional_id` is set.
    pub fn create(
        cfg: &KafkaSinkConfig,
        component: &str,
        transactional_id: Option<&str>,
    ) -> Result<Self, EngineError> {
        let mut c = base_config(cfg);
        c.set("partitioner", "murmur2_random");
        c.set(
            "message.timeout.ms",
            (cfg.flush_timeout_secs * 1000).to_string(),
        );
        for (k, v) in &cfg.options {
            c.set(k, v);
        }
        c.set("enable.idempotence", "true");
        c.set("acks", "all");
        if cfg.delivery == Delivery::ExactlyOnce {
            if let Some(id) = transactional_id {
                c.set("transactional.id", id);
                c.set(
                    "transaction.timeout.ms",
                    cfg.transaction_timeout_ms.to_string(),
                );
            }
        }
        let producer = c
            .create_with_context::<_, ThreadedProducer<DeliveryTracker>>(DeliveryTracker::default())
            .map_err(|e| {
                kafka_error(
                    component,
                    ErrorKind::Config,
                    "cannot create the Kafka producer",
                    &cfg.brokers,
                    &e,
                )
            })?;
        Ok(Self {
            producer: Arc::new(producer),
            brokers: cfg.brokers.clone(),
            component: component.to_string(),
            flush_timeout: Duration::from_secs(cfg.flush_timeout_secs),
            sent: 0,
        })
    }

    fn err(&self, kind: ErrorKind, what: &str, e: &KafkaError) -> EngineError {
        kafka_error(&self.component, kind, what, &self.brokers, e)
    }

    /// The first delivery failure since the producer was created, as an error.
    pub fn check_failures(&self) -> Result<(), EngineError> {
        let failure = self
            .producer
            .context()
            .failure
            .lock()
            .map(|f| f.clone())
            .unwrap_or_else(|_| Some("delivery tracker lock poisoned".into()));
        match failure {
            None => Ok(()),
            Some(m) => Err(EngineError::new(
                &self.component,
                ErrorKind::Write,
                format!(
                    "{m} (brokers {}); the task restarts from the last checkpoint",
                    self.brokers
                ),
            )
            .retriable()),
        }
    }

    /// Hand one message to librdkafka, waiting while its queue is full.
    pub async fn send(&mut self, m: Outgoing<'_>) -> Result<(), EngineError> {
        let mut headers = OwnedHeaders::new_with_capacity(m.headers.len());
        for (k, v) in m.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(*v),
            });
        }
        let mut record: BaseRecord<'_, [u8], [u8], ()> =
            BaseRecord::to(m.topic).payload(m.payload).headers(headers);
        if let Some(k) = m.key {
            record = record.key(k);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => {
                    self.sent += 1;
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => {
                    return Err(self.err(
                        ErrorKind::Write,
                        &format!(
                            "cannot produce a message of {} bytes to topic {}",
                            m.payload.len(),
                            m.topic
                        ),
                        &e,
                    ))
                }
            }
        }
    }

    /// Wait until every message handed over so far is delivered (or failed), then report the
    /// first failure.
    pub async fn flush(&self) -> Result<(), EngineError> {
        let p = self.producer.clone();
        let t = self.flush_timeout;
        tokio::task::spawn_blocking(move || p.flush(t))
            .await
            .map_err(|e| EngineError::internal(&self.component, e.to_string()))?
            .map_err(|e| {
                self.err(
                    ErrorKind::Write,
                    &format!("not every message was delivered within {} s", t.as_secs()),
                    &e,
                )
                .retriable()
            })?;
        self.check_failures()
    }

    /// Run a blocking transactional call on a helper thread.
    async fn txn(
        &self,
        what: &str,
        f: impl FnOnce(&ThreadedProducer<DeliveryTracker>, Duration) -> Result<(), KafkaError>
            + Send
            + 'static,
    ) -> Result<(), EngineError> {
        let p = self.producer.clone();
        let t = self.flush_timeout;
        tokio::task::spawn_blocking(move || f(&p, t))
            .await
            .map_err(|e| EngineError::internal(&self.component, e.to_string()))?
            .map_err(|e| self.err(ErrorKind::Write, what, &e))
    }

    /// Register the transactional id (fences older producers with the same id and aborts
    /// their open transaction).
    pub async fn init_transactions(&self) -> Result<(), EngineError> {
        self.txn("cannot initialise Kafka transactions", |p, t| {
            p.init_transactions(t)
        })
        .await
        .map_err(EngineError::retriable)
    }

    /// Start a transaction.
    pub async fn begin(&self) -> Result<(), EngineError> {
        self.txn("cannot begin a Kafka transaction", |p, _| {
            p.begin_transaction()
        })
        .await
    }

    /// Commit the open transaction; retriable failures are retried a few times.
    pub async fn commit(&self) -> Result<(), EngineError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let p = self.producer.clone();
            let t = self.flush_timeout;
            let r = tokio::task::spawn_blocking(move || p.commit_transaction(t))
                .await
                .map_err(|e| EngineError::internal(&self.component, e.to_string()))?;
            match r {
                Ok(()) => return Ok(()),
                Err(KafkaError::Transaction(ref te)) if te.is_retriable() && attempt < 3 => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => {
                    return Err(self.err(
                        ErrorKind::Write,
                        "cannot commit the Kafka transaction; the task restarts from the last \
                         committed transaction",
                        &e,
                    ))
                }
            }
        }
    }

    /// Abort the open transaction (best effort, used on close and after failures).
    pub async fn abort(&self) -> Result<(), EngineError> {
        self.txn("cannot abort the Kafka transaction", |p, t| {
            p.abort_transaction(t)
        })
        .await
    }
}
