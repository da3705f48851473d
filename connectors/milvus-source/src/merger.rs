//! Releases the changes of every source channel in one hybrid-timestamp order.
//!
//! # Why a change may be released
//!
//! Milvus gives three kinds of channels, and each tells differently that nothing older can
//! still come:
//!
//! * **Active DML channels** (`{cluster}-rootcoord-dml_N` carrying a live collection, or that
//!   delivered anything in the last `idle_after`): RootCoord sends a TimeTick `T` on a channel
//!   only after every message of that channel with a timestamp `≤ T` was written before it.
//!   The channel's bound is its last tick.
//! * **Idle DML channels** (no live collection and nothing received for `idle_after`): Milvus
//!   stopped ticking them (it ticks only channels in use), so a stale tick must not hold the
//!   others back forever. They are *probed* instead (below).
//! * **Auxiliary channels**, without time ticks: the replicate channel (database, index,
//!   load/release and flush requests) and the etcd partition watch. They are always probed.
//!
//! A *probe round* `k` starts at instant `s_k`: it records `W_k`, the smallest last tick over
//! the active DML channels (infinite when there are none), and `seq_k`, the number of changes
//! received so far; then it asks every idle or auxiliary channel to report, in-band, once it
//! has delivered everything its broker held at a moment after `s_k` (Kafka: the high
//! watermark; etcd: a progress notification past the current revision). When every probe has
//! answered, the round is *confirmed*: a change is released when it is the oldest pending
//! one, its timestamp is `≤ W_k`, and it was received before `s_k` (sequence `≤ seq_k`).
//!
//! This is the ordering that makes "create database, create collection, insert, create index,
//! load, drop" come out in that order:
//! * RootCoord DDL (create/drop collection, partitions) holds the time ticks of every channel
//!   below its own timestamp until it has written etcd and its channel messages, so a tick
//!   above a DDL timestamp proves the DDL is already in etcd and in its channel, and a round
//!   started after observing that tick finds it.
//! * A request published on the replicate channel is written before the client gets its
//!   answer, so any later operation (whose timestamp is allocated afterwards, and whose change
//!   reaches the merger before a round that covers it starts) is released after it.
//! * The remaining race is inherent to Milvus: a replicate-channel request *concurrent* with
//!   other operations may carry a timestamp older than changes already released; it is then
//!   released as soon as it is read.
//!
//! A channel that becomes active (new live collection) or is added during a round voids that
//! round, because `W_k` did not account for it.
//!
//! # Offsets
//!
//! [`Merger::offsets`] gives, per channel, the largest offset up to which every message was
//! either consumed without producing a change (time ticks, skipped messages) or *delivered*
//! ([`Merger::delivered`], called when the engine got the change). A held-back change is never
//! covered, so a checkpoint never skips one; changes released ahead of an older held one on
//! the same channel are replayed after a restart (at-least-once).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cdc_engine::Offset;
use cdc_state::Offsets;

/// What a channel is, which decides how it bounds the ordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChannelKind {
    /// A DML channel with time ticks.
    Dml,
    /// The replicate channel (no time ticks).
    Replicate,
    /// The etcd metadata watch (no time ticks, not checkpointed).
    Meta,
}

/// Changes with equal keys on the same channel and timestamp are released together (the
/// Delete and Insert messages Milvus writes for one upsert).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PairKey {
    /// Collection ID.
    pub collection_id: i64,
    /// Virtual channel (shard).
    pub shard: String,
}

/// A change handed out by [`Merger::pop_releasable`].
#[derive(Debug)]
pub(crate) struct Released<T> {
    /// Channel index.
    pub channel: usize,
    /// Its offset in that channel.
    pub offset: Offset,
    /// Its hybrid timestamp.
    pub ts: u64,
    /// Its size as given to [`Merger::push`].
    pub bytes: usize,
    /// The decoded change.
    pub payload: T,
}

struct Entry<T> {
    seq: u64,
    bytes: usize,
    pair: Option<PairKey>,
    payload: T,
}

struct Channel {
    name: Arc<str>,
    kind: ChannelKind,
    last_tick: u64,
    last_activity: Instant,
    live: bool,
    /// Offsets received and not yet folded into `done`; `true` once consumed or delivered.
    marks: BTreeMap<Offset, bool>,
    done: Option<Offset>,
    pending_bytes: usize,
}

struct Round {
    id: u64,
    w: u64,
    seq: u64,
    outstanding: Vec<usize>,
    tainted: bool,
}

/// A request to probe channels, produced by [`Merger::start_round`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ProbeRequest {
    /// Round number, to be given back to [`Merger::probe_ok`].
    pub round: u64,
    /// Channels to probe.
    pub channels: Vec<usize>,
}

/// The merger. `T` is the decoded change.
pub(crate) struct Merger<T> {
    channels: Vec<Channel>,
    pending: BTreeMap<(u64, usize, Offset), Entry<T>>,
    seq: u64,
    round: Option<Round>,
    next_round: u64,
    last_round_start: Option<Instant>,
    changed: bool,
    confirmed: Option<(u64, u64)>,
    idle_after: Duration,
}

impl<T> Merger<T> {
    /// An empty merger; DML channels without a live collection become idle after `idle_after`
    /// without any message.
    pub fn new(idle_after: Duration) -> Self {
        Self {
            channels: Vec::new(),
            pending: BTreeMap::new(),
            seq: 0,
            round: None,
            next_round: 1,
            last_round_start: None,
            changed: false,
            confirmed: None,
            idle_after,
        }
    }

    /// Adds a channel and returns its index. A DML channel starts active with no tick, so it
    /// holds the others back until it ticks or turns idle.
    pub fn add_channel(&mut self, name: &str, kind: ChannelKind, now: Instant) -> usize {
        self.channels.push(Channel {
            name: Arc::from(name),
            kind,
            last_tick: 0,
            last_activity: now,
            live: false,
            marks: BTreeMap::new(),
            done: None,
            pending_bytes: 0,
        });
        self.taint();
        self.changed = true;
        self.channels.len() - 1
    }

    /// Declares everything up to `done` consumed before the channel's first message is read
    /// (its resolved start), so a checkpoint cut before any message keeps the start. Ignored
    /// once the channel has a position of its own.
    pub fn set_start(&mut self, ch: usize, done: Offset) {
        if let Some(c) = self.channels.get_mut(ch) {
            if c.done.is_none() && c.marks.is_empty() {
                c.done = Some(done);
            }
        }
    }

    /// Index of a channel by name.
    pub fn channel_index(&self, name: &str) -> Option<usize> {
        self.channels.iter().position(|c| &*c.name == name)
    }

    /// Name of a channel.
    pub fn channel_name(&self, ch: usize) -> Arc<str> {
        self.channels
            .get(ch)
            .map(|c| c.name.clone())
            .unwrap_or_else(|| Arc::from(""))
    }

    /// Number of channels.
    pub fn len(&self) -> usize {
        self.channels.len()
    }

    /// Declares whether etcd shows a live collection on a DML channel. A channel turning live
    /// voids the round in flight.
    pub fn set_live(&mut self, ch: usize, live: bool) {
        if let Some(c) = self.channels.get_mut(ch) {
            if live && !c.live {
                self.round.iter_mut().for_each(|r| r.tainted = true);
                self.changed = true;
            }
            c.live = live;
        }
    }

    fn taint(&mut self) {
        if let Some(r) = self.round.as_mut() {
            r.tainted = true;
        }
    }

    fn activity(&mut self, ch: usize, now: Instant) -> Option<&mut Channel> {
        self.changed = true;
        let idle_after = self.idle_after;
        let c = self.channels.get_mut(ch)?;
        let was_idle = c.kind == ChannelKind::Dml
            && !c.live
            && now.duration_since(c.last_activity) >= idle_after;
        c.last_activity = now;
        if was_idle {
            // An idle channel that receives anything is active again: the round in flight
            // did not bound it by its ticks.
            if let Some(r) = self.round.as_mut() {
                r.tainted = true;
            }
        }
        self.channels.get_mut(ch)
    }

    /// A time tick (consumed: it produces no change).
    pub fn tick(&mut self, ch: usize, offset: Offset, ts: u64, now: Instant) {
        if let Some(c) = self.activity(ch, now) {
            c.last_tick = c.last_tick.max(ts);
            c.marks.insert(offset, true);
            fold(c);
        }
    }

    /// A message consumed without a change (skipped or not replicated).
    pub fn skip(&mut self, ch: usize, offset: Offset, now: Instant) {
        if let Some(c) = self.activity(ch, now) {
            c.marks.insert(offset, true);
            fold(c);
        }
    }

    /// A change to order. `bytes` counts toward the channel's pending memory.
    #[allow(clippy::too_many_arguments)] // the fields of one change, as they arrive
    pub fn push(
        &mut self,
        ch: usize,
        offset: Offset,
        ts: u64,
        bytes: usize,
        pair: Option<PairKey>,
        payload: T,
        now: Instant,
    ) {
        let Some(c) = self.activity(ch, now) else {
            return;
        };
        if c.kind != ChannelKind::Meta {
            c.marks.insert(offset.clone(), false);
        }
        c.pending_bytes += bytes;
        self.seq += 1;
        let entry = Entry {
            seq: self.seq,
            bytes,
            pair,
            payload,
        };
        self.pending.insert((ts, ch, offset), entry);
    }

    /// Number of changes held.
    #[cfg(test)]
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Bytes held for one channel.
    pub fn pending_bytes(&self, ch: usize) -> usize {
        self.channels.get(ch).map_or(0, |c| c.pending_bytes)
    }

    fn is_active(&self, c: &Channel, now: Instant) -> bool {
        c.kind == ChannelKind::Dml
            && (c.live || now.duration_since(c.last_activity) < self.idle_after)
    }

    /// The smallest last tick over the active DML channels (`u64::MAX` when none is active).
    pub fn watermark(&self, now: Instant) -> u64 {
        self.channels
            .iter()
            .filter(|c| self.is_active(c, now))
            .map(|c| c.last_tick)
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Whether the ordering currently waits on this channel: an active DML channel at the
    /// minimum tick, or a channel with an unanswered probe. Such a channel must be read even
    /// when its pending memory is over the limit.
    pub fn is_needed(&self, ch: usize, now: Instant) -> bool {
        let Some(c) = self.channels.get(ch) else {
            return false;
        };
        if self
            .round
            .as_ref()
            .is_some_and(|r| r.outstanding.contains(&ch))
        {
            return true;
        }
        self.is_active(c, now) && c.last_tick <= self.watermark(now)
    }

    /// Whether a round should start now: changes are waiting, no round is in flight, and
    /// something happened since the last one (or `max_gap` passed, so idle channels are seen).
    pub fn wants_round(&self, now: Instant, min_gap: Duration, max_gap: Duration) -> bool {
        if self.round.is_some() || self.pending.is_empty() {
            return false;
        }
        match self.last_round_start {
            None => true,
            Some(t) => {
                let elapsed = now.duration_since(t);
                (self.changed && elapsed >= min_gap) || elapsed >= max_gap
            }
        }
    }

    /// Starts a probe round (none if one is in flight). When nothing needs probing the round
    /// is confirmed at once and the request has no channels.
    pub fn start_round(&mut self, now: Instant) -> Option<ProbeRequest> {
        if self.round.is_some() {
            return None;
        }
        let w = self.watermark(now);
        let outstanding: Vec<usize> = (0..self.channels.len())
            .filter(|&i| !self.is_active(&self.channels[i], now))
            .collect();
        let id = self.next_round;
        self.next_round += 1;
        self.last_round_start = Some(now);
        self.changed = false;
        let round = Round {
            id,
            w,
            seq: self.seq,
            outstanding: outstanding.clone(),
            tainted: false,
        };
        if outstanding.is_empty() {
            self.confirmed = Some((w, round.seq));
        } else {
            self.round = Some(round);
        }
        Some(ProbeRequest {
            round: id,
            channels: outstanding,
        })
    }

    /// A channel answered the probe of `round`.
    pub fn probe_ok(&mut self, ch: usize, round: u64) {
        self.changed = true;
        let Some(r) = self.round.as_mut() else {
            return;
        };
        if r.id != round {
            return;
        }
        r.outstanding.retain(|&c| c != ch);
        if r.outstanding.is_empty() {
            if !r.tainted {
                self.confirmed = Some((r.w, r.seq));
            }
            self.round = None;
        }
    }

    /// Abandons the round in flight (e.g. a probe could not be answered); the next one starts
    /// afresh.
    pub fn abandon_round(&mut self) {
        self.round = None;
    }

    /// The round in flight, if any, and how long ago it started.
    pub fn round_age(&self, now: Instant) -> Option<Duration> {
        self.round
            .as_ref()
            .and(self.last_round_start)
            .map(|t| now.duration_since(t))
    }

    /// The oldest pending change if the last confirmed round allows it, together with the
    /// changes paired with it (same channel, timestamp and [`PairKey`]), in offset order.
    pub fn pop_releasable(&mut self) -> Option<Vec<Released<T>>> {
        let (w, seq) = self.confirmed?;
        let ((ts, ch, _), head) = self.pending.first_key_value()?;
        if *ts > w || head.seq > seq {
            return None;
        }
        let (ts, ch) = (*ts, *ch);
        let keys: Vec<(u64, usize, Offset)> = match &head.pair {
            None => vec![self.pending.keys().next()?.clone()],
            Some(pair) => {
                let pair = pair.clone();
                self.pending
                    .range((ts, ch, Vec::new())..(ts, ch + 1, Vec::new()))
                    .filter(|(_, e)| e.pair.as_ref() == Some(&pair) && e.seq <= seq)
                    .map(|(k, _)| k.clone())
                    .collect()
            }
        };
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(e) = self.pending.remove(&key) {
                if let Some(c) = self.channels.get_mut(key.1) {
                    c.pending_bytes = c.pending_bytes.saturating_sub(e.bytes);
                }
                out.push(Released {
                    channel: key.1,
                    offset: key.2,
                    ts: key.0,
                    bytes: e.bytes,
                    payload: e.payload,
                });
            }
        }
        Some(out)
    }

    /// The engine received the change read at `offset` (or it produced none).
    pub fn delivered(&mut self, ch: usize, offset: &Offset) {
        if let Some(c) = self.channels.get_mut(ch) {
            if c.kind == ChannelKind::Meta {
                // Meta changes are released in (timestamp, id) order, which is their offset
                // order: the last delivered one is the channel's position.
                if c.done.as_ref().is_none_or(|d| offset > d) {
                    c.done = Some(offset.clone());
                }
                return;
            }
            if let Some(m) = c.marks.get_mut(offset) {
                *m = true;
            }
            fold(c);
        }
    }

    /// Per channel, the offset up to which every message has been consumed or delivered:
    /// DML and replicate channels, and the etcd pseudo-channel (its last delivered change, so
    /// a restart does not repeat partition changes a sink already committed).
    pub fn offsets(&self) -> Offsets {
        self.channels
            .iter()
            .filter_map(|c| c.done.clone().map(|o| (c.name.to_string(), o)))
            .collect()
    }
}

fn fold(c: &mut Channel) {
    while let Some(entry) = c.marks.first_entry() {
        if !*entry.get() {
            break;
        }
        let (offset, _) = entry.remove_entry();
        if c.done.as_ref().is_none_or(|d| offset > *d) {
            c.done = Some(offset);
        }
    }
}

#[cfg(test)]
mod tests;
