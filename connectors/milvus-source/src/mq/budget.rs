//! The source's memory budget for changes read and not yet released (`max_pending_mib`).
//!
//! A reader task takes the serialized size of every change it sends to the source; the
//! source gives it back when the merger releases the change (or the change is dropped). A
//! reader whose budget is spent stops reading and pauses its consumer (Kafka: `pause` on its
//! partition, so the client neither prefetches more nor keeps what it prefetched), unless the
//! ordering waits on its channel ([`Gate::set_needed`]): that channel is read anyway, or no
//! change could ever be released again. Memory held between the broker and the sink is then
//! bounded by the budget (plus what the needed channel reads until its next time tick, a
//! time-tick interval of writes) instead of growing with the backlog.
//!
//! Metrics: `milvus_cdc_source_pending_bytes{pipeline}` (bytes taken now) and
//! `milvus_cdc_source_paused_channels{pipeline}` (readers paused now).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus::{IntGauge, IntGaugeVec, Opts};
use tokio::sync::Notify;

/// How long a paused reader sleeps before looking at the budget again when no notification
/// came (a lost wake-up costs at most this).
const RECHECK: Duration = Duration::from_millis(50);

fn gauges() -> &'static (IntGaugeVec, IntGaugeVec) {
    static G: OnceLock<(IntGaugeVec, IntGaugeVec)> = OnceLock::new();
    G.get_or_init(|| {
        let gauge = |name: &str, help: &str| {
            cdc_engine::metrics::register(
                IntGaugeVec::new(Opts::new(name, help), &["pipeline"]).expect("valid metric"),
            )
        };
        (
            gauge(
                "milvus_cdc_source_pending_bytes",
                "Bytes of changes the Milvus source read and has not released yet.",
            ),
            gauge(
                "milvus_cdc_source_paused_channels",
                "Channel readers of the Milvus source paused because its memory budget is spent.",
            ),
        )
    })
}

/// Bytes of changes read and not released, shared by the readers and the source.
#[derive(Debug)]
pub struct Budget {
    max: usize,
    used: AtomicUsize,
    peak: AtomicUsize,
    pauses: AtomicUsize,
    notify: Notify,
    pending: IntGauge,
    paused: IntGauge,
}

impl Budget {
    /// A budget of `max` bytes (`pipeline` labels its metrics).
    pub fn new(max: usize, pipeline: &str) -> Arc<Self> {
        let (pending, paused) = gauges();
        Arc::new(Self {
            max,
            used: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            pauses: AtomicUsize::new(0),
            notify: Notify::new(),
            pending: pending.with_label_values(&[pipeline]),
            paused: paused.with_label_values(&[pipeline]),
        })
    }

    /// The bound, in bytes.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Bytes taken now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// The most bytes ever taken at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Acquire)
    }

    /// How many times a reader paused.
    pub fn pauses(&self) -> usize {
        self.pauses.load(Ordering::Acquire)
    }

    /// Whether the budget is spent.
    pub fn is_spent(&self) -> bool {
        self.used() >= self.max
    }

    /// A reader sends a change of `bytes`.
    pub fn take(&self, bytes: usize) {
        let now = self.used.fetch_add(bytes, Ordering::AcqRel) + bytes;
        self.peak.fetch_max(now, Ordering::AcqRel);
        self.pending.set(now as i64);
    }

    /// A change of `bytes` was released (or dropped); wakes paused readers once below the
    /// bound.
    pub fn give(&self, bytes: usize) {
        let before = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                Some(u.saturating_sub(bytes))
            })
            .unwrap_or(0);
        let now = before.saturating_sub(bytes);
        self.pending.set(now as i64);
        if now < self.max {
            self.notify.notify_waiters();
        }
    }

    /// Wakes paused readers (a channel became needed).
    pub fn wake(&self) {
        self.notify.notify_waiters();
    }

    /// Waits for a wake-up, or [`RECHECK`].
    pub async fn changed(&self) {
        let _ = tokio::time::timeout(RECHECK, self.notify.notified()).await;
    }

    fn paused(&self, paused: bool) {
        if paused {
            self.pauses.fetch_add(1, Ordering::AcqRel);
            self.paused.inc();
        } else {
            self.paused.dec();
        }
    }
}

/// One reader's view of the budget: whether it may read now.
#[derive(Debug)]
pub struct Gate {
    budget: Arc<Budget>,
    needed: AtomicBool,
    paused: AtomicBool,
}

impl Gate {
    /// A gate on `budget`.
    pub fn new(budget: Arc<Budget>) -> Arc<Self> {
        Arc::new(Self {
            budget,
            needed: AtomicBool::new(false),
            paused: AtomicBool::new(false),
        })
    }

    /// The budget behind the gate.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// The source tells whether the ordering waits on this channel (then it is read even
    /// with the budget spent).
    pub fn set_needed(&self, needed: bool) {
        if needed && !self.needed.swap(true, Ordering::AcqRel) {
            self.budget.wake();
        } else if !needed {
            self.needed.store(false, Ordering::Release);
        }
    }

    /// Whether the reader must stop reading now. A paused reader resumes once half the
    /// budget is free (so that a pause, which makes the consumer drop what it prefetched,
    /// is not undone by every release).
    pub fn must_pause(&self) -> bool {
        let b = &self.budget;
        let limit = if self.paused.load(Ordering::Acquire) {
            b.max / 2
        } else {
            b.max
        };
        b.used() >= limit.max(1) && !self.needed.load(Ordering::Acquire)
    }

    /// Records the reader's state; true when it changed (the consumer is then paused or
    /// resumed).
    pub fn set_paused(&self, paused: bool) -> bool {
        let changed = self.paused.swap(paused, Ordering::AcqRel) != paused;
        if changed {
            self.budget.paused(paused);
        }
        changed
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        if self.paused.load(Ordering::Acquire) {
            self.budget.paused(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spent_budget_pauses_readers_that_are_not_needed() {
        let b = Budget::new(100, "budget-unit");
        let (a, n) = (Gate::new(b.clone()), Gate::new(b.clone()));
        n.set_needed(true);
        b.take(60);
        assert!(!a.must_pause());
        b.take(60);
        assert_eq!((b.used(), b.peak()), (120, 120));
        assert!(a.must_pause(), "over the bound");
        assert!(!n.must_pause(), "the ordering waits on it");
        assert!(a.set_paused(true));
        assert!(!a.set_paused(true), "no change");
        assert_eq!(b.pauses(), 1);
        b.give(30);
        assert!(a.must_pause(), "paused until half the budget is free");
        b.give(50);
        assert!(!a.must_pause(), "below half the bound");
        assert!(a.set_paused(false));
        b.give(1000);
        assert_eq!((b.used(), b.peak()), (0, 120), "never below zero");
    }

    #[tokio::test]
    async fn giving_back_wakes_a_paused_reader() {
        let b = Budget::new(10, "budget-wake");
        b.take(20);
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move {
                while b.is_spent() {
                    b.changed().await;
                }
            })
        };
        b.give(20);
        waiter.await.unwrap();
    }
}
