//! Engine behaviour with in-memory components (the real connectors have their own end-to-end
//! tests): order, backpressure, crash replay and fan-out.

use std::sync::atomic::AtomicUsize;

use async_trait::async_trait;
use cdc_state::SledStore;

use super::*;
use crate::component::DeliveryGuarantee;
use crate::event::{Ddl, Op, SourcePosition};

fn off(n: u64) -> Vec<u8> {
    n.to_be_bytes().to_vec()
}

fn event(channel: &str, n: u64) -> ChangeEvent {
    ChangeEvent {
        position: SourcePosition {
            channel: channel.into(),
            offset: off(n),
            ts: n,
        },
        database: "default".into(),
        collection: "c".into(),
        collection_id: 1,
        collection_def: None,
        op: Op::Ddl(Ddl::Flush),
    }
}

/// Emits `per_channel` changes on each channel (round robin), or forever when `None`.
struct TestSource {
    channels: Vec<String>,
    per_channel: Option<u64>,
    next_n: BTreeMap<String, u64>,
    turn: usize,
    produced: Arc<AtomicUsize>,
    /// Stall (pending forever) instead of ending, so the pipeline is stopped by a sink error.
    stall_at_end: bool,
    /// Where a channel without a resume offset starts (its "latest", resolved in `open`).
    first: u64,
}

impl TestSource {
    fn new(channels: &[&str], per_channel: Option<u64>) -> Self {
        Self {
            channels: channels.iter().map(|s| s.to_string()).collect(),
            per_channel,
            next_n: BTreeMap::new(),
            turn: 0,
            produced: Arc::new(AtomicUsize::new(0)),
            stall_at_end: false,
            first: 1,
        }
    }
}

#[async_trait]
impl Source for TestSource {
    async fn open(&mut self, resume: &Offsets) -> Result<(), EngineError> {
        for ch in &self.channels {
            let start = resume
                .get(ch)
                .map(|o| u64::from_be_bytes(o.as_slice().try_into().unwrap()) + 1)
                .unwrap_or(self.first);
            self.next_n.insert(ch.clone(), start);
        }
        Ok(())
    }

    async fn next(&mut self) -> Result<Option<ChangeEvent>, EngineError> {
        // Await before touching any state: `next` must be cancel-safe.
        tokio::task::yield_now().await;
        for _ in 0..self.channels.len() {
            let ch = self.channels[self.turn % self.channels.len()].clone();
            self.turn += 1;
            let n = self.next_n[&ch];
            if self.per_channel.is_some_and(|max| n > max) {
                continue;
            }
            self.next_n.insert(ch.clone(), n + 1);
            self.produced.fetch_add(1, Ordering::SeqCst);
            return Ok(Some(event(&ch, n)));
        }
        if self.stall_at_end {
            futures::future::pending::<()>().await;
        }
        Ok(None)
    }

    fn offsets(&self) -> Offsets {
        self.next_n
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(c, n)| (c.clone(), off(n - 1)))
            .collect()
    }
}

type Seen = Arc<Mutex<Vec<(String, u64)>>>;

/// Records what it is given; can be slow or fail at a chosen flush.
#[derive(Default)]
struct TestSink {
    seen: Seen,
    delay: Option<Duration>,
    fail_at_flush: Option<usize>,
    flushes: usize,
}

#[async_trait]
impl Sink for TestSink {
    fn delivery(&self) -> DeliveryGuarantee {
        DeliveryGuarantee::AtLeastOnce
    }

    async fn write(&mut self, event: Arc<ChangeEvent>) -> Result<(), EngineError> {
        if let Some(d) = self.delay {
            tokio::time::sleep(d).await;
        }
        let n = u64::from_be_bytes(event.position.offset.as_slice().try_into().unwrap());
        self.seen
            .lock()
            .unwrap()
            .push((event.position.channel.to_string(), n));
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), EngineError> {
        self.flushes += 1;
        if self.fail_at_flush == Some(self.flushes) {
            return Err(EngineError::new(
                "test sink",
                crate::ErrorKind::Write,
                "target down",
            ));
        }
        Ok(())
    }
}

fn opts() -> PipelineOptions {
    PipelineOptions {
        checkpoint_interval: Duration::from_millis(20),
        channel_capacity: 8,
    }
}

fn pipeline(name: &str, source: TestSource, sinks: Vec<(&str, TestSink)>) -> Pipeline {
    Pipeline {
        name: name.into(),
        source: Box::new(source),
        operators: vec![],
        sinks: sinks
            .into_iter()
            .map(|(id, s)| (id.to_string(), Box::new(s) as Box<dyn Sink>))
            .collect(),
        options: opts(),
    }
}

fn per_channel(seen: &Seen, ch: &str) -> Vec<u64> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|(c, _)| c == ch)
        .map(|(_, n)| *n)
        .collect()
}

fn store() -> (tempfile::TempDir, Arc<dyn StateStore>) {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    (dir, Arc::new(s))
}

#[tokio::test]
async fn order_is_kept_per_channel_and_everything_is_committed() {
    let (_d, st) = store();
    let sink = TestSink::default();
    let seen = sink.seen.clone();
    let p = pipeline(
        "p",
        TestSource::new(&["a", "b"], Some(200)),
        vec![("s", sink)],
    );
    p.run(st.clone(), CancellationToken::new()).await.unwrap();
    assert_eq!(per_channel(&seen, "a"), (1..=200).collect::<Vec<_>>());
    assert_eq!(per_channel(&seen, "b"), (1..=200).collect::<Vec<_>>());
    let cp = st.load("p", "s").unwrap();
    assert_eq!(cp.offsets["a"], off(200));
    assert_eq!(cp.offsets["b"], off(200));
}

#[tokio::test]
async fn restart_after_failure_replays_only_uncommitted_changes() {
    let (_d, st) = store();
    // First run: the sink fails at its 3rd checkpoint (the start barrier is the 1st), i.e. after writing changes that the
    // failed checkpoint would have covered (a crash between write and commit).
    let mut source = TestSource::new(&["a"], None);
    source.stall_at_end = true;
    let sink = TestSink {
        delay: Some(Duration::from_millis(1)),
        fail_at_flush: Some(3),
        ..Default::default()
    };
    let first = sink.seen.clone();
    let err = pipeline("p", source, vec![("s", sink)])
        .run(st.clone(), CancellationToken::new())
        .await
        .unwrap_err();
    assert!(err.message.contains("target down"));
    let committed = st.load("p", "s").unwrap();
    let committed_n = u64::from_be_bytes(committed.offsets["a"].as_slice().try_into().unwrap());
    let written_first = per_channel(&first, "a");
    assert!(
        *written_first.last().unwrap() > committed_n,
        "nothing uncommitted was written"
    );

    // Second run: exactly the uncommitted changes come again, then new ones; nothing earlier.
    let sink = TestSink::default();
    let second = sink.seen.clone();
    let total = written_first.last().unwrap() + 50;
    pipeline("p", TestSource::new(&["a"], Some(total)), vec![("s", sink)])
        .run(st.clone(), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(
        per_channel(&second, "a"),
        ((committed_n + 1)..=total).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_slow_sink_holds_back_the_source() {
    let (_d, st) = store();
    let source = TestSource::new(&["a"], None);
    let produced = source.produced.clone();
    let sink = TestSink {
        delay: Some(Duration::from_millis(5)),
        ..Default::default()
    };
    let seen = sink.seen.clone();
    let running = pipeline("p", source, vec![("s", sink)]).spawn(st);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (p, w) = (produced.load(Ordering::SeqCst), seen.lock().unwrap().len());
    running.stop();
    running.join().await.unwrap();
    assert!(w > 10, "sink made no progress ({w})");
    // channel capacity 8, plus one change in the sink's hands and one in the source's
    assert!(
        p - w <= 8 + 2,
        "source ran ahead of the sink: produced {p}, written {w}"
    );
}

#[tokio::test]
async fn fan_out_keeps_each_sinks_progress_when_one_fails() {
    let (_d, st) = store();
    let mut source = TestSource::new(&["a"], None);
    source.stall_at_end = true;
    let good = TestSink {
        delay: Some(Duration::from_millis(1)),
        ..Default::default()
    };
    // Flush 1 is the start barrier's; 2 is the first periodic checkpoint.
    let bad = TestSink {
        delay: Some(Duration::from_millis(1)),
        fail_at_flush: Some(3),
        ..Default::default()
    };
    let err = pipeline("p", source, vec![("good", good), ("bad", bad)])
        .run(st.clone(), CancellationToken::new())
        .await
        .unwrap_err();
    assert!(err.message.contains("target down"));
    let n = |cp: &cdc_state::SinkCheckpoint| {
        u64::from_be_bytes(cp.offsets["a"].as_slice().try_into().unwrap())
    };
    let good_cp = st.load("p", "good").unwrap();
    let bad_cp = st.load("p", "bad").unwrap();
    assert!(good_cp.epoch >= bad_cp.epoch);
    assert!(n(&good_cp) >= n(&bad_cp));

    // After the restart, each sink continues from its own checkpoint.
    let good = TestSink::default();
    let bad = TestSink::default();
    let (gs, bs) = (good.seen.clone(), bad.seen.clone());
    let total = n(&good_cp) + 20;
    pipeline(
        "p",
        TestSource::new(&["a"], Some(total)),
        vec![("good", good), ("bad", bad)],
    )
    .run(st.clone(), CancellationToken::new())
    .await
    .unwrap();
    assert_eq!(
        per_channel(&gs, "a"),
        ((n(&good_cp) + 1)..=total).collect::<Vec<_>>()
    );
    assert_eq!(
        per_channel(&bs, "a"),
        ((n(&bad_cp) + 1)..=total).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn the_start_is_stored_before_wait_started_returns() {
    let (_d, st) = store();
    // The source resolves its start to offset 41 (as `latest`) and produces nothing; the
    // periodic checkpoint is an hour away, so only the start barrier can store the position.
    let mut source = TestSource::new(&["a", "b"], Some(41));
    source.first = 42;
    source.stall_at_end = true;
    let mut p = pipeline(
        "p",
        source,
        vec![("s1", TestSink::default()), ("s2", TestSink::default())],
    );
    p.options.checkpoint_interval = Duration::from_secs(3600);
    let running = p.spawn(st.clone());
    tokio::time::timeout(Duration::from_secs(10), running.wait_started())
        .await
        .expect("the start is stored at once")
        .unwrap();
    for sink in ["s1", "s2"] {
        let cp = st.load("p", sink).unwrap();
        assert_eq!(cp.offsets["a"], off(41), "{sink}");
        assert_eq!(cp.offsets["b"], off(41), "{sink}");
    }
    running.stop();
    running.join().await.unwrap();
}

#[tokio::test]
async fn wait_started_reports_why_a_pipeline_could_not_start() {
    let (_d, st) = store();
    let mut source = TestSource::new(&["a"], Some(0));
    source.stall_at_end = true;
    let sink = TestSink {
        fail_at_flush: Some(1),
        ..Default::default()
    };
    let running = pipeline("p", source, vec![("s", sink)]).spawn(st.clone());
    let err = tokio::time::timeout(Duration::from_secs(10), running.wait_started())
        .await
        .expect("answered")
        .unwrap_err();
    assert!(err.message.contains("target down"), "{err}");
    assert!(running.join().await.is_err());
}

#[tokio::test]
async fn stop_commits_a_final_checkpoint() {
    let (_d, st) = store();
    let sink = TestSink::default();
    let seen = sink.seen.clone();
    let mut source = TestSource::new(&["a"], Some(30));
    source.stall_at_end = true;
    let running = pipeline("p", source, vec![("s", sink)]).spawn(st.clone());
    tokio::time::sleep(Duration::from_millis(100)).await;
    running.stop();
    running.join().await.unwrap();
    assert_eq!(seen.lock().unwrap().len(), 30);
    assert_eq!(st.load("p", "s").unwrap().offsets["a"], off(30));
}

/// What a two-phase-commit target holds: the published changes and the checkpoint committed
/// with them.
#[derive(Default)]
struct TwoPhaseTarget {
    published: Vec<(String, u64)>,
    checkpoint: Option<cdc_state::SinkCheckpoint>,
}

/// Buffers changes and publishes them with the barrier's offsets at `commit`; can fail at a
/// chosen commit, after the engine stored the checkpoint but before publishing (a crash between
/// the state store commit and the target commit).
struct TwoPhaseSink {
    target: Arc<Mutex<TwoPhaseTarget>>,
    pending: Vec<(String, u64)>,
    staged: Option<cdc_state::SinkCheckpoint>,
    fail_at_commit: Option<usize>,
    commits: usize,
}

impl TwoPhaseSink {
    fn new(target: &Arc<Mutex<TwoPhaseTarget>>, fail_at_commit: Option<usize>) -> Self {
        Self {
            target: target.clone(),
            pending: Vec::new(),
            staged: None,
            fail_at_commit,
            commits: 0,
        }
    }
}

#[async_trait]
impl Sink for TwoPhaseSink {
    fn delivery(&self) -> DeliveryGuarantee {
        DeliveryGuarantee::ExactlyOnce
    }

    async fn write(&mut self, event: Arc<ChangeEvent>) -> Result<(), EngineError> {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let n = u64::from_be_bytes(event.position.offset.as_slice().try_into().unwrap());
        self.pending.push((event.position.channel.to_string(), n));
        Ok(())
    }

    async fn pre_commit(&mut self, epoch: u64, offsets: &Offsets) -> Result<(), EngineError> {
        self.staged = Some(cdc_state::SinkCheckpoint {
            epoch,
            offsets: offsets.clone(),
        });
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), EngineError> {
        Ok(())
    }

    async fn commit(&mut self, _epoch: u64) -> Result<(), EngineError> {
        self.commits += 1;
        if self.fail_at_commit == Some(self.commits) {
            return Err(EngineError::new(
                "2pc sink",
                crate::ErrorKind::Write,
                "crash before commit",
            ));
        }
        let mut t = self.target.lock().unwrap();
        t.published.append(&mut self.pending);
        t.checkpoint = self.staged.take();
        Ok(())
    }

    async fn committed_checkpoint(
        &mut self,
    ) -> Result<Option<cdc_state::SinkCheckpoint>, EngineError> {
        Ok(self.target.lock().unwrap().checkpoint.clone())
    }
}

#[tokio::test]
async fn a_two_phase_sink_resumes_from_its_own_checkpoint_after_a_crash_between_commits() {
    let (_d, st) = store();
    let target = Arc::new(Mutex::new(TwoPhaseTarget::default()));
    let mut source = TestSource::new(&["a"], None);
    source.stall_at_end = true;
    let sink = TwoPhaseSink::new(&target, Some(3));
    let p = Pipeline {
        name: "p".into(),
        source: Box::new(source),
        operators: vec![],
        sinks: vec![("s".into(), Box::new(sink) as Box<dyn Sink>)],
        options: opts(),
    };
    let err = p
        .run(st.clone(), CancellationToken::new())
        .await
        .unwrap_err();
    assert!(err.message.contains("crash before commit"));
    // The state store is one epoch ahead of what the target published.
    let stored = st.load("p", "s").unwrap();
    let own = target.lock().unwrap().checkpoint.clone().unwrap();
    assert_eq!(stored.epoch, own.epoch + 1);
    assert!(stored.offsets["a"] > own.offsets["a"]);

    // Restart: the sink's own checkpoint wins, so the unpublished changes come again, once.
    let total = u64::from_be_bytes(stored.offsets["a"].as_slice().try_into().unwrap()) + 20;
    let p = Pipeline {
        name: "p".into(),
        source: Box::new(TestSource::new(&["a"], Some(total))),
        operators: vec![],
        sinks: vec![(
            "s".into(),
            Box::new(TwoPhaseSink::new(&target, None)) as Box<dyn Sink>,
        )],
        options: opts(),
    };
    p.run(st.clone(), CancellationToken::new()).await.unwrap();
    let t = target.lock().unwrap();
    let published: Vec<u64> = t.published.iter().map(|(_, n)| *n).collect();
    assert_eq!(published, (1..=total).collect::<Vec<_>>());
    assert!(t.checkpoint.as_ref().unwrap().epoch > stored.epoch);
}

/// The value of the counter line of `family` whose labels include every `labels` pair.
fn counter(family: &str, labels: &[(&str, &str)]) -> u64 {
    crate::metrics::render()
        .lines()
        .filter(|l| l.starts_with(&format!("{family}{{")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn the_engine_counts_what_each_sink_received_and_made_durable() {
    let (_d, st) = store();
    let p = pipeline(
        "telemetry_counts",
        TestSource::new(&["a", "b"], Some(50)),
        vec![("s", TestSink::default())],
    );
    p.run(st, CancellationToken::new()).await.unwrap();
    let sink = [("pipeline", "telemetry_counts"), ("component", "sink.s")];
    assert_eq!(
        counter("milvus_cdc_component_received_events_total", &sink),
        100
    );
    // Every change was flushed by the final barrier, so every one counts as sent.
    assert_eq!(
        counter("milvus_cdc_component_sent_events_total", &sink),
        100
    );
}

#[tokio::test]
async fn an_error_that_stops_a_sink_is_counted_once_by_its_kind() {
    let (_d, st) = store();
    let mut source = TestSource::new(&["a"], None);
    source.stall_at_end = true;
    let bad = TestSink {
        fail_at_flush: Some(3),
        ..Default::default()
    };
    let err = pipeline("telemetry_errors", source, vec![("bad", bad)])
        .run(st, CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind, crate::ErrorKind::Write);
    let labels = |kind| {
        [
            ("pipeline", "telemetry_errors"),
            ("component", "sink.bad"),
            ("kind", kind),
        ]
    };
    assert_eq!(
        counter("milvus_cdc_component_errors_total", &labels("write")),
        1
    );
    assert_eq!(
        counter("milvus_cdc_component_errors_total", &labels("Write")),
        0
    );
}
