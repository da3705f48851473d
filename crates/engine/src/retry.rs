//! Riding out an outage of a dependency (a broker, etcd): one mechanism for every component.
//!
//! * [`RetryPolicy`]: first delay, largest delay, and an optional give-up deadline.
//! * [`Backoff`]: exponential delays (doubling from `initial` up to `max`) with jitter (each
//!   delay is drawn from its upper half), so that many readers that failed together do not
//!   reconnect in lock-step.
//! * [`Outage`]: one outage of one dependency, from its first failure to its recovery. It
//!   logs a WARN when it starts, a WARN every [`LOG_EVERY`] while it lasts, and an INFO with
//!   its duration and number of attempts when it ends; it counts every reconnect attempt in
//!   `milvus_cdc_source_reconnects_total{pipeline, component, dependency}`, keeps
//!   `milvus_cdc_source_reconnecting{pipeline, component, dependency}` (how many outages are
//!   open now) and is listed by [`reconnecting`] while it lasts (the task API shows that).
//!   Past the give-up deadline [`Outage::retry`] returns the error that stops the task.
//!
//! Components decide what is transient (retried here) and what is fatal (returned at once);
//! the outage itself only counts, waits and reports.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use prometheus::{IntCounterVec, IntGaugeVec, Opts};
use serde::Serialize;
use tracing::{info, warn};

use crate::error::EngineError;
use crate::metrics::{now_ms, register};

/// While an outage lasts, a WARN is logged this often (besides the one at its start).
pub const LOG_EVERY: Duration = Duration::from_secs(30);

/// How a component retries a dependency that went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay before the first reconnect attempt.
    pub initial: Duration,
    /// Largest delay between two attempts.
    pub max: Duration,
    /// Stop retrying (and fail) once an outage lasted this long; `None`: never give up.
    pub give_up_after: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(10),
            give_up_after: None,
        }
    }
}

/// Exponential backoff with jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: RetryPolicy,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    /// A backoff at its first delay.
    pub fn new(policy: RetryPolicy) -> Self {
        static SEED: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);
        let seed = SEED.fetch_add(0x6A09_E667_F3BC_C909, Ordering::Relaxed) ^ now_ms();
        Self {
            policy,
            attempt: 0,
            rng: seed | 1,
        }
    }

    /// The upper bound of the next delay: `initial * 2^attempt`, at most `max`.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.policy
            .initial
            .saturating_mul(factor)
            .min(self.policy.max)
            .max(Duration::from_millis(1))
    }

    /// The next delay, drawn uniformly from the upper half of [`Backoff::ceiling`].
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        // xorshift64: enough for jitter, no dependency.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let half = ceiling / 2;
        let span = (ceiling - half).as_micros().max(1) as u64;
        half + Duration::from_micros(self.rng % (span + 1))
    }

    /// Back to the first delay.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// An outage currently open, as the task API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reconnecting {
    /// What is unreachable (`kafka`, `etcd`, `pulsar`, ...).
    pub dependency: String,
    /// Which parts of the pipeline wait for it (e.g. `reader by-dev-rootcoord-dml_0`).
    pub components: Vec<String>,
    /// When the outage started (milliseconds since the Unix epoch; the earliest, when several
    /// components wait for the same dependency).
    pub since_ms: u64,
    /// Reconnect attempts made so far (the most of any component).
    pub attempts: u64,
    /// The last error.
    pub error: String,
}

struct Entry {
    pipeline: String,
    dependency: String,
    component: String,
    since_ms: u64,
    attempts: u64,
    error: String,
}

fn open_outages() -> &'static Mutex<BTreeMap<u64, Entry>> {
    static O: OnceLock<Mutex<BTreeMap<u64, Entry>>> = OnceLock::new();
    O.get_or_init(Default::default)
}

/// The outages open now in `pipeline`, one per dependency, ordered by dependency.
pub fn reconnecting(pipeline: &str) -> Vec<Reconnecting> {
    let Ok(open) = open_outages().lock() else {
        return Vec::new();
    };
    let mut by_dep: BTreeMap<&str, Reconnecting> = BTreeMap::new();
    for e in open.values().filter(|e| e.pipeline == pipeline) {
        let r = by_dep.entry(&e.dependency).or_insert_with(|| Reconnecting {
            dependency: e.dependency.clone(),
            components: Vec::new(),
            since_ms: e.since_ms,
            attempts: 0,
            error: e.error.clone(),
        });
        r.components.push(e.component.clone());
        r.since_ms = r.since_ms.min(e.since_ms);
        r.attempts = r.attempts.max(e.attempts);
    }
    by_dep.into_values().collect()
}

struct Families {
    reconnects: IntCounterVec,
    reconnecting: IntGaugeVec,
}

fn families() -> &'static Families {
    static F: OnceLock<Families> = OnceLock::new();
    F.get_or_init(|| {
        let labels = &["pipeline", "component", "dependency"];
        Families {
            reconnects: register(
                IntCounterVec::new(
                    Opts::new(
                        "milvus_cdc_source_reconnects_total",
                        "Reconnect attempts to a dependency that went away.",
                    ),
                    labels,
                )
                .expect("valid metric"),
            ),
            reconnecting: register(
                IntGaugeVec::new(
                    Opts::new(
                        "milvus_cdc_source_reconnecting",
                        "Outages open now (components waiting for a dependency to come back).",
                    ),
                    labels,
                )
                .expect("valid metric"),
            ),
        }
    })
}

/// Where an outage happens: labels of its metrics and log lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutageSite {
    /// Pipeline name.
    pub pipeline: String,
    /// Metric label of the component kind (`reader`, `watcher`).
    pub component: &'static str,
    /// What the component is, for logs and the task API (e.g. `reader by-dev-rootcoord-dml_0`).
    pub what: String,
    /// What is unreachable (`kafka`, `etcd`, `pulsar`).
    pub dependency: &'static str,
}

/// One outage of one dependency, from its first failure until [`Outage::recovered`] (or drop).
pub struct Outage {
    site: OutageSite,
    policy: RetryPolicy,
    backoff: Backoff,
    id: u64,
    started: Instant,
    last_log: Instant,
    attempts: u64,
}

impl Outage {
    /// Opens an outage after the failure `error` (logged at WARN).
    pub fn begin(site: OutageSite, policy: RetryPolicy, error: &EngineError) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        warn!(
            message = "Dependency unreachable; reconnecting with backoff.",
            component = %site.what,
            dependency = site.dependency,
            error = %error,
            give_up_after_s = policy.give_up_after.map(|d| d.as_secs()),
        );
        families()
            .reconnecting
            .with_label_values(&[&site.pipeline, site.component, site.dependency])
            .inc();
        if let Ok(mut open) = open_outages().lock() {
            open.insert(
                id,
                Entry {
                    pipeline: site.pipeline.clone(),
                    dependency: site.dependency.to_string(),
                    component: site.what.clone(),
                    since_ms: now_ms(),
                    attempts: 0,
                    error: error.to_string(),
                },
            );
        }
        let now = Instant::now();
        Self {
            site,
            policy,
            backoff: Backoff::new(policy),
            id,
            started: now,
            last_log: now,
            attempts: 0,
        }
    }

    /// How long the outage lasts so far.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Reconnect attempts so far.
    pub fn attempts(&self) -> u64 {
        self.attempts
    }

    /// Counts the next attempt and returns how long to wait before it; `error` is the last
    /// failure (the one that opened the outage, for the first attempt). For callers that
    /// must stay cancel-safe (they keep the deadline); others use [`Outage::retry`].
    ///
    /// # Errors
    /// The give-up error when the outage outlasted `give_up_after`, naming the dependency,
    /// how long it was retried and the last error.
    pub fn schedule(&mut self, error: &EngineError) -> Result<Duration, EngineError> {
        if let Some(limit) = self.policy.give_up_after {
            if self.started.elapsed() >= limit {
                return Err(EngineError::new(
                    error.component.clone(),
                    error.kind,
                    format!(
                        "{} gave up reconnecting to {} after {} s and {} attempts \
                         (`reconnect.give_up_after_s`); last error: {}",
                        self.site.what,
                        self.site.dependency,
                        self.started.elapsed().as_secs(),
                        self.attempts,
                        error.message
                    ),
                ));
            }
        }
        if self.last_log.elapsed() >= LOG_EVERY {
            self.last_log = Instant::now();
            warn!(
                message = "Dependency still unreachable; reconnecting.",
                component = %self.site.what,
                dependency = self.site.dependency,
                outage_s = self.started.elapsed().as_secs(),
                attempts = self.attempts,
                error = %error,
            );
        }
        self.attempts += 1;
        families()
            .reconnects
            .with_label_values(&[
                &self.site.pipeline,
                self.site.component,
                self.site.dependency,
            ])
            .inc();
        if let Ok(mut open) = open_outages().lock() {
            if let Some(e) = open.get_mut(&self.id) {
                e.attempts = self.attempts;
                e.error = error.to_string();
            }
        }
        Ok(self.backoff.next_delay())
    }

    /// [`Outage::schedule`], then waits that long.
    ///
    /// # Errors
    /// The give-up error of [`Outage::schedule`].
    pub async fn retry(&mut self, error: &EngineError) -> Result<(), EngineError> {
        let delay = self.schedule(error)?;
        tokio::time::sleep(delay).await;
        Ok(())
    }

    /// Closes the outage: the dependency answers again (logged at INFO with the duration).
    pub fn recovered(self) {
        info!(
            message = "Dependency reachable again; resumed.",
            component = %self.site.what,
            dependency = self.site.dependency,
            outage_ms = self.started.elapsed().as_millis() as u64,
            attempts = self.attempts,
        );
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        families()
            .reconnecting
            .with_label_values(&[
                &self.site.pipeline,
                self.site.component,
                self.site.dependency,
            ])
            .dec();
        if let Ok(mut open) = open_outages().lock() {
            open.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn policy(initial_ms: u64, max_ms: u64, give_up: Option<u64>) -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_millis(initial_ms),
            max: Duration::from_millis(max_ms),
            give_up_after: give_up.map(Duration::from_millis),
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_with_jitter_in_the_upper_half() {
        let mut b = Backoff::new(policy(100, 1_000, None));
        let ceilings: Vec<u64> = (0..7)
            .map(|_| {
                let c = b.ceiling();
                let d = b.next_delay();
                assert!(d <= c && d >= c / 2, "{d:?} outside [{:?}, {c:?}]", c / 2);
                c.as_millis() as u64
            })
            .collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1_000, 1_000, 1_000]);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(100));
    }

    #[test]
    fn backoff_survives_huge_attempt_counts_and_jitters() {
        let mut b = Backoff::new(policy(1, 50, None));
        let delays: std::collections::HashSet<Duration> =
            (0..200).map(|_| b.next_delay()).collect();
        assert!(b.ceiling() == Duration::from_millis(50));
        assert!(delays.len() > 10, "jitter varies the delays: {delays:?}");
    }

    fn site(pipeline: &str, what: &str) -> OutageSite {
        OutageSite {
            pipeline: pipeline.into(),
            component: "reader",
            what: what.into(),
            dependency: "kafka",
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_is_listed_counted_and_gives_up_at_its_deadline() {
        let err = EngineError::new("source milvus", ErrorKind::Read, "AllBrokersDown").retriable();
        let mut a = Outage::begin(
            site("p-outage", "reader ch0"),
            policy(100, 400, Some(2_000)),
            &err,
        );
        let b = Outage::begin(site("p-outage", "reader ch1"), policy(100, 400, None), &err);
        let mut tries = 0;
        let give_up = loop {
            match a.retry(&err).await {
                Ok(()) => tries += 1,
                Err(e) => break e,
            }
        };
        assert!(tries >= 5, "{tries} attempts in 2 s of 100..400 ms delays");
        assert!(
            give_up.message.contains("gave up reconnecting to kafka"),
            "{give_up}"
        );
        assert!(give_up.message.contains("AllBrokersDown"), "{give_up}");
        assert!(!give_up.retriable);
        let now = reconnecting("p-outage");
        assert_eq!(now.len(), 1, "{now:?}");
        assert_eq!(now[0].components, ["reader ch0", "reader ch1"]);
        assert_eq!(now[0].attempts, tries);
        let gauge = || {
            families()
                .reconnecting
                .with_label_values(&["p-outage", "reader", "kafka"])
                .get()
        };
        assert_eq!(gauge(), 2);
        drop(a);
        b.recovered();
        assert!(reconnecting("p-outage").is_empty());
        assert_eq!(gauge(), 0);
        let total = families()
            .reconnects
            .with_label_values(&["p-outage", "reader", "kafka"])
            .get();
        assert_eq!(total, tries);
    }
}
