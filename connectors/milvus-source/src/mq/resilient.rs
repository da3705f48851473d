//! A channel reader that rides out outages of its broker: [`ResilientReader`] wraps the
//! readers an [`MqClient`] opens. When one fails with a retriable error (see
//! [`MqReader`]), it is dropped and a new one is opened just after the last message read
//! ([`MqReader::last_read`]), with backoff and outage reporting ([`cdc_engine::retry`]), so the
//! messages read across an outage have no gap and no repetition. The broker counts as back
//! once a reopened reader reads its high watermark. A failure that is not retriable, or an
//! outage past the give-up deadline, is returned to the caller.

use std::sync::Arc;

use async_trait::async_trait;
use cdc_engine::retry::{Outage, OutageSite, RetryPolicy};
use cdc_engine::{EngineError, ErrorKind, Offset};
use tokio::time::Instant;

use super::{MqClient, MqReader, StartAt};
use crate::config::COMPONENT;
use crate::decode::RawMessage;

/// Reads one channel across broker outages (see the module documentation).
pub struct ResilientReader {
    client: Arc<dyn MqClient>,
    channel: String,
    /// Where the next reader starts.
    start: StartAt,
    reader: Option<Box<dyn MqReader>>,
    outage: Option<Outage>,
    /// When the next attempt is due (kept across cancelled calls).
    retry_at: Option<Instant>,
    site: OutageSite,
    policy: RetryPolicy,
    /// Fetching is paused ([`MqReader::set_paused`]); a reopened reader is paused too.
    paused: bool,
}

impl ResilientReader {
    /// A reader of `channel` from `start`; nothing is opened before the first call.
    /// `pipeline` labels the outage metrics.
    pub fn new(
        client: Arc<dyn MqClient>,
        channel: &str,
        start: StartAt,
        policy: RetryPolicy,
        pipeline: &str,
    ) -> Self {
        let site = OutageSite {
            pipeline: pipeline.to_string(),
            component: "reader",
            what: format!("reader {channel}"),
            dependency: client.dependency(),
        };
        Self {
            client,
            channel: channel.to_string(),
            start,
            reader: None,
            outage: None,
            retry_at: None,
            site,
            policy,
            paused: false,
        }
    }

    /// Whether an outage is open now.
    pub fn is_reconnecting(&self) -> bool {
        self.outage.is_some()
    }

    /// The open reader, (re)opened first when needed. Cancel-safe.
    async fn ready(&mut self) -> Result<&mut Box<dyn MqReader>, EngineError> {
        while self.reader.is_none() {
            if let Some(at) = self.retry_at {
                tokio::time::sleep_until(at).await;
                self.retry_at = None;
            }
            let opened = match self.client.open(&self.channel, self.start.clone()).await {
                // Opening connects nothing: reconnected only once the broker answers.
                Ok(mut r) if self.outage.is_some() => r.last_available().await.map(|_| r),
                other => other,
            };
            match opened {
                Ok(mut r) => {
                    if self.paused {
                        if let Err(e) = r.set_paused(true) {
                            self.failed(e)?;
                            continue;
                        }
                    }
                    if let Some(o) = self.outage.take() {
                        o.recovered();
                    }
                    self.reader = Some(r);
                }
                Err(e) => self.failed(e)?,
            }
        }
        self.reader
            .as_mut()
            .ok_or_else(|| EngineError::internal(COMPONENT, "reader vanished"))
    }

    /// Drops the reader after `e`; schedules the next attempt when `e` is retriable.
    fn failed(&mut self, e: EngineError) -> Result<(), EngineError> {
        if let Some(o) = self.reader.take().and_then(|r| r.last_read()) {
            self.start = StartAt::After(o);
        }
        if !e.retriable {
            return Err(e);
        }
        let (site, policy) = (&self.site, self.policy);
        let outage = self
            .outage
            .get_or_insert_with(|| Outage::begin(site.clone(), policy, &e));
        let delay = outage.schedule(&e)?;
        self.retry_at = Some(Instant::now() + delay);
        Ok(())
    }
}

#[async_trait]
impl MqReader for ResilientReader {
    async fn recv(&mut self) -> Result<RawMessage, EngineError> {
        loop {
            match self.ready().await?.recv().await {
                Ok(m) => return Ok(m),
                Err(e) => self.failed(e)?,
            }
        }
    }

    async fn last_available(&mut self) -> Result<Option<Offset>, EngineError> {
        match &mut self.reader {
            Some(r) => r.last_available().await,
            None => Err(EngineError::new(
                COMPONENT,
                ErrorKind::Connect,
                format!("channel {}: reconnecting to the broker", self.channel),
            )
            .retriable()),
        }
    }

    fn set_paused(&mut self, paused: bool) -> Result<(), EngineError> {
        self.paused = paused;
        match &mut self.reader {
            Some(r) => match r.set_paused(paused) {
                Ok(()) => Ok(()),
                // Reopened (and paused as asked) by the next `recv`.
                Err(e) => self.failed(e),
            },
            None => Ok(()),
        }
    }

    fn last_read(&self) -> Option<Offset> {
        match (&self.reader, &self.start) {
            (Some(r), _) => r.last_read(),
            (None, StartAt::After(o)) => Some(o.clone()),
            (None, _) => None,
        }
    }
}
