use super::*;

const IDLE: Duration = Duration::from_millis(500);

fn off(n: u64) -> Offset {
    n.to_be_bytes().to_vec()
}

struct Fixture {
    m: Merger<&'static str>,
    t0: Instant,
}

impl Fixture {
    fn new() -> Self {
        Self {
            m: Merger::new(IDLE),
            t0: Instant::now(),
        }
    }
    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }
    /// Runs a round at `ms`, answering every probe.
    fn round(&mut self, ms: u64) {
        let now = self.at(ms);
        let req = self.m.start_round(now).expect("no round in flight");
        for ch in req.channels {
            self.m.probe_ok(ch, req.round);
        }
    }
    fn drain(&mut self) -> Vec<&'static str> {
        let mut out = Vec::new();
        while let Some(group) = self.m.pop_releasable() {
            for r in group {
                out.push(r.payload);
                self.m.delivered(r.channel, &r.offset);
            }
        }
        out
    }
}

#[test]
fn releases_in_timestamp_order_once_every_active_channel_ticked() {
    let mut f = Fixture::new();
    let a = f.m.add_channel("dml_0", ChannelKind::Dml, f.at(0));
    let b = f.m.add_channel("dml_1", ChannelKind::Dml, f.at(0));
    f.m.set_live(a, true);
    f.m.set_live(b, true);
    f.m.push(a, off(0), 20, 1, None, "a20", f.at(1));
    f.m.push(b, off(0), 10, 1, None, "b10", f.at(1));
    f.m.push(a, off(1), 30, 1, None, "a30", f.at(1));
    f.m.tick(a, off(2), 35, f.at(2));
    f.round(3);
    // dml_1 has not ticked: nothing may go.
    assert!(f.drain().is_empty());
    f.m.tick(b, off(1), 25, f.at(4));
    f.round(5);
    assert_eq!(f.drain(), ["b10", "a20"]);
    f.m.tick(b, off(2), 40, f.at(6));
    f.round(7);
    assert_eq!(f.drain(), ["a30"]);
}

#[test]
fn a_round_only_covers_changes_received_before_it_started() {
    let mut f = Fixture::new();
    let a = f.m.add_channel("dml_0", ChannelKind::Dml, f.at(0));
    let r =
        f.m.add_channel("replicate", ChannelKind::Replicate, f.at(0));
    f.m.set_live(a, true);
    f.m.tick(a, off(0), 100, f.at(1));
    f.m.push(a, off(1), 50, 1, None, "insert", f.at(1));
    let req = f.m.start_round(f.at(2)).unwrap();
    assert_eq!(
        req.channels,
        vec![r],
        "the replicate channel is always probed"
    );
    // A replicate change read after the round started is not covered by it...
    f.m.push(r, off(0), 40, 1, None, "create_index", f.at(3));
    f.m.probe_ok(r, req.round);
    // ...but it is older than the insert, which therefore waits too.
    assert!(f.drain().is_empty());
    f.round(4);
    assert_eq!(f.drain(), ["create_index", "insert"]);
}

#[test]
fn no_release_before_every_probe_answered() {
    let mut f = Fixture::new();
    let a = f.m.add_channel("dml_0", ChannelKind::Dml, f.at(0));
    let r =
        f.m.add_channel("replicate", ChannelKind::Replicate, f.at(0));
    f.m.set_live(a, true);
    f.m.push(a, off(0), 5, 1, None, "x", f.at(0));
    f.m.tick(a, off(1), 10, f.at(0));
    let req = f.m.start_round(f.at(1)).unwrap();
    assert!(f.m.start_round(f.at(1)).is_none(), "one round at a time");
    assert!(f.drain().is_empty());
    assert!(f.m.is_needed(r, f.at(1)));
    f.m.probe_ok(r, req.round + 7); // stale answer: ignored
    assert!(f.drain().is_empty());
    f.m.probe_ok(r, req.round);
    assert_eq!(f.drain(), ["x"]);
}

#[test]
fn upsert_delete_and_insert_are_released_together_delete_first() {
    let mut f = Fixture::new();
    let a = f.m.add_channel("dml_0", ChannelKind::Dml, f.at(0));
    f.m.set_live(a, true);
    let key = |shard: &str| {
        Some(PairKey {
            collection_id: 7,
            shard: shard.to_string(),
        })
    };
    f.m.push(a, off(0), 9, 1, key("v0"), "delete", f.at(0));
    f.m.push(a, off(1), 9, 1, key("v0"), "insert", f.at(0));
    f.m.push(a, off(2), 9, 1, key("v1"), "other-shard", f.at(0));
    f.m.push(a, off(3), 12, 1, key("v0"), "later", f.at(0));
    f.m.tick(a, off(4), 20, f.at(0));
    f.round(1);
    let group: Vec<_> =
        f.m.pop_releasable()
            .unwrap()
            .into_iter()
            .map(|r| r.payload)
            .collect();
    assert_eq!(group, ["delete", "insert"]);
    let group: Vec<_> =
        f.m.pop_releasable()
            .unwrap()
            .into_iter()
            .map(|r| r.payload)
            .collect();
    assert_eq!(group, ["other-shard"]);
    let group: Vec<_> =
        f.m.pop_releasable()
            .unwrap()
            .into_iter()
            .map(|r| r.payload)
            .collect();
    assert_eq!(group, ["later"]);
}

#[test]
fn offsets_never_cover_held_or_undelivered_changes() {
    let mut f = Fixture::new();
    let a = f.m.add_channel("dml_0", ChannelKind::Dml, f.at(0));
    let b = f.m.add_channel("dml_1", ChannelKind::Dml, f.at(0));
    f.m.set_live(a, true);
    f.m.set_live(b, true);
    assert!(f.m.offsets().is_empty());
    f.m.tick(a, off(0), 10, f.at(0));
    assert_eq!(
        f.m.offsets().get("dml_0"),
        Some(&off(0)),
        "ticks are consumed"
    );
    f.m.push(a, off(1), 20, 1, None, "held", f.at(0));
    f.m.tick(a, off(2), 30, f.at(0));
    // The tick after the held change does not move the offset past it.
    assert_eq!(f.m.offsets().get("dml_0"), Some(&off(0)));
    f.m.tick(b, off(5), 25, f.at(0));
    f.round(1);
    let group = f.m.pop_releasable().unwrap();
    // Released but not yet delivered to the engine: still not covered.
    assert_eq!(f.m.offsets().get("dml_0"), Some(&off(0)));
    f.m.delivered(group[0].channel, &group[0].offset);
    assert_eq!(f.m.offsets().get("dml_0"), Some(&off(2)));
    assert_eq!(f.m.offsets().get("dml_1"), Some(&off(5)));
}

#[test]
fn out_of_order_timestamps_in_one_channel_keep_the_offset_behind() {
    let mut f = Fixture::new();
    let a = f.m.add_channel("dml_0", ChannelKind::Dml, f.at(0));
    f.m.set_live(a, true);
    f.m.push(a, off(0), 20, 1, None, "late-ts", f.at(0));
    f.m.push(a, off(1), 10, 1, None, "early-ts", f.at(0));
    f.m.tick(a, off(2), 15, f.at(0));
    f.round(1);
    let g = f.m.pop_releasable().unwrap();
    assert_eq!(g[0].payload, "early-ts");
    f.m.delivered(a, &g[0].offset);
    // Offset 1 is delivered, but offset 0 is still held: nothing is covered.
    assert!(f.m.offsets().is_empty());
    assert!(f.m.pop_releasable().is_none());
}

#[test]
fn an_idle_channel_stops_holding_the_others_back() {
    let mut f = Fixture::new();
    let a = f.m.add_channel("dml_0", ChannelKind::Dml, f.at(0));
    let idle = f.m.add_channel("dml_3", ChannelKind::Dml, f.at(0));
    f.m.set_live(a, true);
    f.m.tick(idle, off(0), 5, f.at(0)); // one old tick, then Milvus stops ticking it
    f.m.push(a, off(0), 50, 1, None, "x", f.at(10));
    f.m.tick(a, off(1), 60, f.at(10));
    f.round(20);
    assert!(
        f.drain().is_empty(),
        "dml_3 is still active (recent activity)"
    );
    // After `idle_after` without any message, dml_3 is probed instead of waited for.
    let req = f.m.start_round(f.at(600)).unwrap();
    assert_eq!(req.channels, vec![idle]);
    assert!(f.drain().is_empty(), "not before its probe answered");
    f.m.probe_ok(idle, req.round);
    assert_eq!(f.drain(), ["x"]);
}

#[test]
fn a_live_channel_is_never_idle() {
    let mut f = Fixture::new();
    let a = f.m.add_channel("dml_0", ChannelKind::Dml, f.at(0));
    let b = f.m.add_channel("dml_1", ChannelKind::Dml, f.at(0));
    f.m.set_live(a, true);
    f.m.set_live(b, true);
    f.m.push(a, off(0), 50, 1, None, "x", f.at(0));
    f.m.tick(a, off(1), 60, f.at(0));
    let req = f.m.start_round(f.at(10_000)).unwrap();
    assert!(req.channels.is_empty());
    assert!(
        f.drain().is_empty(),
        "dml_1 carries a collection: wait for its tick"
    );
    assert_eq!(f.m.watermark(f.at(10_000)), 0);
    assert!(f.m.is_needed(b, f.at(10_000)));
}

#[test]
fn activity_on_an_idle_channel_voids_the_round() {
    let mut f = Fixture::new();
    let a = f.m.add_channel("dml_0", ChannelKind::Dml, f.at(0));
    let idle = f.m.add_channel("dml_3", ChannelKind::Dml, f.at(0));
    f.m.set_live(a, true);
    f.m.push(a, off(0), 50, 1, None, "x", f.at(700));
    f.m.tick(a, off(1), 60, f.at(700));
    let req = f.m.start_round(f.at(700)).unwrap();
    assert_eq!(req.channels, vec![idle]);
    // A new collection's first message arrives on dml_3 before its probe answer.
    f.m.push(idle, off(0), 40, 1, None, "create_collection", f.at(701));
    f.m.probe_ok(idle, req.round);
    assert!(f.drain().is_empty(), "the round was void");
    // dml_3 is active again and must tick first.
    f.round(702);
    assert!(f.drain().is_empty());
    f.m.tick(idle, off(1), 55, f.at(703));
    f.round(704);
    assert_eq!(f.drain(), ["create_collection", "x"]);
}

#[test]
fn a_channel_added_or_turning_live_during_a_round_voids_it() {
    let mut f = Fixture::new();
    let a = f.m.add_channel("dml_0", ChannelKind::Dml, f.at(0));
    let r =
        f.m.add_channel("replicate", ChannelKind::Replicate, f.at(0));
    f.m.set_live(a, true);
    f.m.push(a, off(0), 50, 1, None, "x", f.at(0));
    f.m.tick(a, off(1), 60, f.at(0));
    let req = f.m.start_round(f.at(1)).unwrap();
    let new = f.m.add_channel("dml_2", ChannelKind::Dml, f.at(2));
    f.m.probe_ok(r, req.round);
    assert!(f.drain().is_empty());
    f.m.set_live(new, true);
    f.round(3);
    assert!(f.drain().is_empty(), "dml_2 has not ticked");
    f.m.tick(new, off(0), 70, f.at(4));
    f.round(5);
    assert_eq!(f.drain(), ["x"]);
}

#[test]
fn without_any_active_dml_channel_probes_alone_order_the_changes() {
    let mut f = Fixture::new();
    let r =
        f.m.add_channel("replicate", ChannelKind::Replicate, f.at(0));
    let meta = f.m.add_channel("etcd", ChannelKind::Meta, f.at(0));
    f.m.push(r, off(0), 30, 1, None, "create_database", f.at(1));
    f.m.push(meta, off(9), 20, 1, None, "create_partition", f.at(1));
    assert_eq!(f.m.watermark(f.at(1)), u64::MAX);
    f.round(2);
    assert_eq!(f.drain(), ["create_partition", "create_database"]);
    // The meta channel is checkpointed at its last delivered change.
    assert_eq!(f.m.offsets().len(), 2);
    assert_eq!(f.m.offsets().get("replicate"), Some(&off(0)));
    assert_eq!(f.m.offsets().get("etcd"), Some(&off(9)));
}

#[test]
fn wants_round_only_when_useful() {
    let mut f = Fixture::new();
    let a = f.m.add_channel("dml_0", ChannelKind::Dml, f.at(0));
    f.m.set_live(a, true);
    let (min, max) = (Duration::from_millis(10), Duration::from_millis(100));
    assert!(!f.m.wants_round(f.at(0), min, max), "nothing pending");
    f.m.push(a, off(0), 5, 1, None, "x", f.at(0));
    assert!(f.m.wants_round(f.at(0), min, max));
    f.round(0);
    assert!(!f.m.wants_round(f.at(1), min, max), "nothing changed");
    f.m.tick(a, off(1), 3, f.at(2));
    assert!(!f.m.wants_round(f.at(5), min, max), "too soon");
    assert!(f.m.wants_round(f.at(10), min, max));
    f.round(10);
    assert!(f.m.wants_round(f.at(110), min, max), "periodic");
}

#[test]
fn pending_bytes_are_accounted() {
    let mut f = Fixture::new();
    let a = f.m.add_channel("dml_0", ChannelKind::Dml, f.at(0));
    f.m.set_live(a, true);
    f.m.push(a, off(0), 5, 100, None, "x", f.at(0));
    f.m.push(a, off(1), 6, 50, None, "y", f.at(0));
    assert_eq!(f.m.pending_bytes(a), 150);
    assert_eq!(f.m.pending_len(), 2);
    f.m.tick(a, off(2), 10, f.at(0));
    f.round(1);
    f.drain();
    assert_eq!(f.m.pending_bytes(a), 0);
    assert_eq!(f.m.offsets().get("dml_0"), Some(&off(2)));
}

#[test]
fn a_resolved_start_is_the_offset_until_the_first_message_moves_it() {
    let mut f = Fixture::new();
    let a = f.m.add_channel("a", ChannelKind::Dml, f.at(0));
    let b = f.m.add_channel("b", ChannelKind::Dml, f.at(0));
    assert!(f.m.offsets().is_empty(), "no start set yet");
    f.m.set_start(a, off(9));
    f.m.set_start(b, Vec::new());
    assert_eq!(f.m.offsets()["a"], off(9));
    assert_eq!(f.m.offsets()["b"], Vec::<u8>::new());
    f.m.tick(a, off(10), 5, f.at(1));
    assert_eq!(f.m.offsets()["a"], off(10));
    // A second start does not move a channel that has a position.
    f.m.set_start(a, off(3));
    assert_eq!(f.m.offsets()["a"], off(10));
}
