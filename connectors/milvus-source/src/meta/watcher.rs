//! etcd I/O for the metadata cache: connect (auth, TLS), scan `root-coord/` and QueryCoord's
//! load-info keys once (one key range, see [`load::key_range`]), then watch them (with previous
//! values) from the scan's revision, applying every change to the shared cache and to the
//! partition load state, and telling the source in-band.
//!
//! A probe (see [`crate::merger`]) is answered once the watch has delivered every change up
//! to the etcd revision read when the probe arrived: an event at or past that revision, or a
//! progress notification (requested, and re-requested every 100 ms until it comes).
//!
//! # Outages
//!
//! When the watch stream fails (etcd restarted, network cut), the task reconnects with
//! backoff ([`cdc_engine::retry`], `reconnect` in the source configuration) and watches again
//! from the revision after the last one it delivered, so no change is missed or repeated. If
//! etcd compacted that revision meanwhile, it rescans the key range and reconciles the cache
//! ([`super::reconcile`]), emitting the creations and drops it missed. Liveness is the watch
//! stream itself (it fails when the connection does; keep-alive pings find a silent one):
//! progress notifications are only used to answer probes, never to judge etcd's health
//! (etcd 3.4 can skip them, etcd issue 15220).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cdc_engine::metrics::ComponentMetrics;
use cdc_engine::retry::{Outage, OutageSite, RetryPolicy};
use cdc_engine::{EngineError, ErrorKind};
use cdc_protocol::etcd_meta::{self, MetaValue};
use etcd_client::{
    Client, ConnectOptions, EventType, GetOptions, KeyValue, WatchOptions, WatchResponse,
};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::cache::{MetaCache, MetaChange};
use super::load::{self, HeldLoads, LoadChange, LoadEvent, LoadState};
use super::reconcile::{self, Scanned};
use crate::config::{EtcdConfig, COMPONENT};
use crate::decode::Payload;
use crate::input::Input;

/// Load changes are held until none came for this long (see [`HeldLoads`]) ...
const LOAD_QUIET: Duration = Duration::from_millis(500);
/// ... or this long when a whole collection's load info went away, so that the
/// ReleaseCollection message that may have caused it (written to the replicate channel after
/// QueryCoord answered) is read first and the release is not emitted twice ...
const LOAD_QUIET_WHOLE: Duration = Duration::from_secs(2);
/// ... but at most this long.
const LOAD_MAX_HOLD: Duration = Duration::from_secs(5);

fn connect_err(what: String) -> EngineError {
    EngineError::new(COMPONENT, ErrorKind::Connect, what).retriable()
}

/// Whether retrying after `e` can succeed without anyone acting: everything but refused
/// credentials or permissions and invalid requests or settings.
pub fn is_transient(e: &etcd_client::Error) -> bool {
    use etcd_client::Error as E;
    match e {
        // gRPC codes: 3 InvalidArgument, 7 PermissionDenied, 16 Unauthenticated.
        E::GRpcStatus(s) => !matches!(i32::from(s.code()), 3 | 7 | 16),
        E::InvalidArgs(_) | E::InvalidUri(_) | E::InvalidMetadataValue(_) | E::Utf8Error(_) => {
            false
        }
        _ => true,
    }
}

/// An etcd failure `what: e`, retriable when `e` is transient (with a hint when not).
fn etcd_err(what: String, e: &etcd_client::Error) -> EngineError {
    if is_transient(e) {
        connect_err(format!("{what}: {e}"))
    } else {
        EngineError::new(
            COMPONENT,
            ErrorKind::Connect,
            format!(
                "{what}: {e}; etcd refused the request: check `etcd.username`, \
                 `etcd.password`, `etcd.tls` and the user's permissions on the root path"
            ),
        )
    }
}

/// Connects to etcd with the configured auth and TLS.
///
/// # Errors
/// [`ErrorKind::Config`] for unreadable TLS files, [`ErrorKind::Connect`] otherwise.
pub async fn connect(cfg: &EtcdConfig) -> Result<Client, EngineError> {
    let timeout = Duration::from_millis(cfg.timeout_ms);
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(timeout)
        .with_timeout(timeout)
        .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
    if let (Some(user), password) = (&cfg.username, &cfg.password) {
        opts = opts.with_user(user.clone(), password.clone().unwrap_or_default());
    }
    let mut endpoints = cfg.endpoints.clone();
    if let Some(tls) = &cfg.tls {
        let t = tls
            .client_config("etcd.tls")
            .map_err(|e| EngineError::config(COMPONENT, e))?;
        opts = opts.with_tls(t);
        for e in &mut endpoints {
            if !e.contains("://") {
                *e = format!("https://{e}");
            }
        }
    }
    Client::connect(&endpoints, Some(opts)).await.map_err(|e| {
        etcd_err(
            format!("cannot connect to the source etcd {endpoints:?}"),
            &e,
        )
    })
}

/// Applies one key-value (or a deletion) to the cache. Values that do not decode are logged
/// and skipped: the cache then lacks that object, which only matters if it is used.
fn apply_kv(
    cache: &mut MetaCache,
    meta_root: &str,
    kv: &KeyValue,
    deleted: bool,
    metrics: &ComponentMetrics,
) -> Option<MetaChange> {
    let key = std::str::from_utf8(kv.key()).ok()?;
    let parsed = etcd_meta::parse_meta_key(meta_root, key)?;
    let value = if deleted {
        MetaValue::Tombstone
    } else {
        match etcd_meta::decode_meta_value(parsed, kv.value()) {
            Ok(v) => v,
            Err(e) => {
                metrics.error(cdc_engine::ErrorKind::Decode);
                warn!(message = "Undecodable etcd metadata skipped.", key, error = %e);
                return None;
            }
        }
    };
    cache.apply(parsed, value)
}

fn prefix(meta_root: &str) -> String {
    format!("{}/root-coord/", meta_root.trim_end_matches('/'))
}

fn load_key_of(meta_root: &str, kv: &KeyValue) -> Option<load::LoadKey> {
    load::parse_load_key(meta_root, std::str::from_utf8(kv.key()).ok()?)
}

/// Reads every RootCoord object into `cache` and QueryCoord's load state into `loads`
/// (without reporting changes); returns the etcd revision of the read.
///
/// # Errors
/// [`ErrorKind::Connect`] when etcd fails.
pub async fn scan(
    client: &mut Client,
    meta_root: &str,
    cache: &mut MetaCache,
    loads: &mut LoadState,
    metrics: &ComponentMetrics,
) -> Result<i64, EngineError> {
    let (start, end) = load::key_range(meta_root);
    let p = prefix(meta_root);
    let resp = client
        .get(start.as_bytes(), Some(GetOptions::new().with_range(end)))
        .await
        .map_err(|e| etcd_err(format!("cannot read {p} from the source etcd"), &e))?;
    let revision = resp.header().map_or(0, |h| h.revision());
    for kv in resp.kvs() {
        if let Some(key) = load_key_of(meta_root, kv) {
            if let Err(e) = loads.apply_scan(key, kv.value()) {
                metrics.error(cdc_engine::ErrorKind::Decode);
                warn!(message = "Undecodable etcd load info skipped.", key = ?key, error = %e);
            }
            continue;
        }
        if super::rbac::apply_kv(&mut cache.rbac, meta_root, kv, false, false).is_some() {
            continue;
        }
        if super::alias::apply_kv(&mut cache.aliases, meta_root, kv, false, metrics).is_none() {
            apply_kv(cache, meta_root, kv, false, metrics);
        }
    }
    // The scan is the starting state, not a change.
    cache.take_props();
    info!(
        message = "Read the source metadata from etcd.",
        prefix = %p,
        keys = resp.kvs().len(),
        revision,
    );
    Ok(revision)
}

/// Offset of an etcd partition change: timestamp and partition ID, big-endian.
pub fn partition_offset(ts: u64, partition_id: i64) -> Vec<u8> {
    let mut o = ts.to_be_bytes().to_vec();
    o.extend_from_slice(&partition_id.to_be_bytes());
    o
}

/// The in-band input of a partition load change, at timestamp `ts`.
pub(crate) fn load_input(change: LoadChange, ts: u64) -> Input {
    let names = |p: Vec<(i64, String)>| p.into_iter().map(|(_, n)| n).collect();
    let (collection_id, payload) = match change {
        LoadChange::Loaded {
            collection_id,
            partitions,
            replica_number,
        } => (
            collection_id,
            Payload::PartitionsLoaded {
                collection_id,
                partitions: names(partitions),
                replica_number,
            },
        ),
        LoadChange::Released {
            collection_id,
            partitions,
            whole,
        } => (
            collection_id,
            Payload::PartitionsReleased {
                collection_id,
                partitions: names(partitions),
                whole,
            },
        ),
    };
    Input::Change {
        offset: partition_offset(ts, collection_id),
        ts,
        bytes: 0,
        pair: None,
        payload,
    }
}

/// The in-band input of a cache change.
pub(crate) fn change_input(change: MetaChange) -> Input {
    match change {
        MetaChange::PartitionCreated {
            collection_id,
            partition_id,
            name,
            ts,
        } => Input::Change {
            offset: partition_offset(ts, partition_id),
            ts,
            bytes: 0,
            pair: None,
            payload: Payload::PartitionCreated {
                collection_id,
                partition_id,
                name,
            },
        },
        c @ MetaChange::Collection { .. } => Input::Collection(c),
    }
}

/// The watch task.
pub(crate) struct WatchTask {
    /// etcd client.
    pub client: Client,
    /// `{root_path}/{meta_sub_path}`.
    pub meta_root: String,
    /// First revision to watch (scan revision + 1); after an outage, the revision after the
    /// last one delivered.
    pub from_revision: i64,
    /// The etcd connection settings (to reconnect).
    pub etcd: EtcdConfig,
    /// How to reconnect.
    pub reconnect: RetryPolicy,
    /// Pipeline name (outage metrics).
    pub pipeline: String,
    /// The shared cache.
    pub cache: Arc<Mutex<MetaCache>>,
    /// QueryCoord's partition load state (from the scan).
    pub loads: LoadState,
    /// Timestamp of the last load change sent (they get increasing wall-clock timestamps).
    pub last_load_ts: u64,
    /// Load changes waiting for the load state to settle.
    pub held: HeldLoads,
    /// To the source.
    pub tx: mpsc::Sender<Input>,
    /// Probe requests.
    pub probes: mpsc::UnboundedReceiver<u64>,
    /// Metrics.
    pub metrics: ComponentMetrics,
}

/// Why a watch ended.
enum WatchEnd {
    /// The source went away.
    Done,
    /// etcd compacted the revision the watch wanted; rescan.
    Compacted(i64),
}

impl WatchTask {
    /// Runs until the source goes away or etcd fails for good; a failure is sent in-band.
    pub async fn run(mut self) {
        let mut outage: Option<Outage> = None;
        let mut waiting: Vec<(u64, i64)> = Vec::new();
        loop {
            let failure = match self.watch(&mut outage, &mut waiting).await {
                Ok(WatchEnd::Done) => return,
                Ok(WatchEnd::Compacted(at)) => match self.reconcile(at).await {
                    Ok(()) => continue,
                    Err(e) => e,
                },
                Err(e) => e,
            };
            if !failure.retriable {
                let _ = self.tx.send(Input::Failed(failure)).await;
                return;
            }
            let o = outage.get_or_insert_with(|| {
                let site = OutageSite {
                    pipeline: self.pipeline.clone(),
                    component: "watcher",
                    what: format!("metadata watch {}", prefix(&self.meta_root)),
                    dependency: "etcd",
                };
                Outage::begin(site, self.reconnect, &failure)
            });
            if let Err(e) = o.retry(&failure).await {
                let _ = self.tx.send(Input::Failed(e)).await;
                return;
            }
            match connect(&self.etcd).await {
                Ok(c) => self.client = c,
                Err(e) if e.retriable => debug!(message = "etcd reconnect failed.", error = %e),
                Err(e) => {
                    let _ = self.tx.send(Input::Failed(e)).await;
                    return;
                }
            }
        }
    }

    /// Watches from `from_revision` until the source goes away, the stream fails, or the
    /// revision turns out compacted. `outage` is closed once the new watch is created.
    async fn watch(
        &mut self,
        outage: &mut Option<Outage>,
        waiting: &mut Vec<(u64, i64)>,
    ) -> Result<WatchEnd, EngineError> {
        let p = prefix(&self.meta_root);
        let (start, end) = load::key_range(&self.meta_root);
        let opts = WatchOptions::new()
            .with_range(end)
            .with_prev_key()
            .with_start_revision(self.from_revision);
        let mut stream = self
            .client
            .watch(start.as_bytes(), Some(opts))
            .await
            .map_err(|e| etcd_err(format!("cannot watch {p} on the source etcd"), &e))?;
        let mut last_request = Instant::now();
        loop {
            let retry = tokio::time::sleep(Duration::from_millis(100));
            let quiet = if self.held.has_whole_release() {
                LOAD_QUIET_WHOLE
            } else {
                LOAD_QUIET
            };
            let due = self.held.due(quiet, LOAD_MAX_HOLD);
            let settle = tokio::time::sleep_until(due.unwrap_or_else(Instant::now).into());
            tokio::select! {
                _ = settle, if due.is_some() => self.send_held().await?,
                msg = stream.message() => {
                    let resp = msg
                        .map_err(|e| etcd_err(format!("the watch of {p} on the source etcd failed"), &e))?
                        .ok_or_else(|| connect_err(format!("the source etcd closed the watch of {p}")))?;
                    if resp.canceled() {
                        if resp.compact_revision() > 0 {
                            return Ok(WatchEnd::Compacted(resp.compact_revision()));
                        }
                        return Err(connect_err(format!(
                            "the source etcd cancelled the watch of {p}: {}",
                            resp.cancel_reason()
                        )));
                    }
                    if resp.created() {
                        if let Some(o) = outage.take() {
                            o.recovered();
                            info!(message = "etcd watch resumed.", prefix = %p, from_revision = self.from_revision);
                        }
                    }
                    let delivered = self.handle(&resp).await?;
                    self.from_revision = self.from_revision.max(delivered + 1);
                }
                probe = self.probes.recv() => {
                    let Some(round) = probe else { return Ok(WatchEnd::Done) };
                    match self.client.get(p.as_bytes(), Some(GetOptions::new().with_prefix().with_count_only())).await {
                        Ok(r) => {
                            waiting.push((round, r.header().map_or(0, |h| h.revision())));
                            stream.request_progress().await
                                .map_err(|e| connect_err(format!("etcd watch progress request failed: {e}")))?;
                            last_request = Instant::now();
                        }
                        Err(e) => debug!(message = "Probe not answered.", channel = "etcd", error = %e),
                    }
                }
                _ = retry, if !waiting.is_empty() && last_request.elapsed() >= Duration::from_millis(100) => {
                    stream.request_progress().await
                        .map_err(|e| connect_err(format!("etcd watch progress request failed: {e}")))?;
                    last_request = Instant::now();
                }
            }
            let seen_revision = self.from_revision - 1;
            let mut i = 0;
            while i < waiting.len() {
                // Held load changes are not delivered yet.
                if waiting[i].1 <= seen_revision && self.held.is_empty() {
                    let (round, _) = waiting.remove(i);
                    self.send(Input::ProbeOk { round }).await?;
                } else {
                    i += 1;
                }
            }
        }
    }

    /// Catches up after etcd compacted past `from_revision` (see [`reconcile`]): rescans the
    /// key range, applies what changed or vanished since, and continues after the rescan.
    async fn reconcile(&mut self, compacted: i64) -> Result<(), EngineError> {
        let p = prefix(&self.meta_root);
        let (start, end) = load::key_range(&self.meta_root);
        let resp = self
            .client
            .get(start.as_bytes(), Some(GetOptions::new().with_range(end)))
            .await
            .map_err(|e| etcd_err(format!("cannot rescan {p} on the source etcd"), &e))?;
        let revision = resp.header().map_or(0, |h| h.revision());
        let after = self.from_revision - 1;
        let mut scanned = Scanned::default();
        let mut changed: Vec<&KeyValue> = Vec::new();
        for kv in resp.kvs() {
            if let Some(key) = load_key_of(&self.meta_root, kv) {
                scanned.load(key);
            } else if let Some(key) = std::str::from_utf8(kv.key())
                .ok()
                .and_then(|k| etcd_meta::parse_meta_key(&self.meta_root, k))
            {
                scanned.meta(key);
            }
            if kv.mod_revision() > after {
                changed.push(kv);
            }
        }
        changed.sort_by_key(|kv| kv.mod_revision());
        let mut inputs = Vec::new();
        let (mut drops, mut updates) = (0usize, 0usize);
        {
            let cache = self.cache.clone();
            let mut cache = cache
                .lock()
                .map_err(|_| EngineError::internal(COMPONENT, "metadata cache lock poisoned"))?;
            let (gone_meta, gone_loads) = reconcile::vanished(&cache, &self.loads, &scanned);
            for key in gone_meta {
                drops += 1;
                if let Some(c) = cache.apply(key, MetaValue::Tombstone) {
                    inputs.push(change_input(c));
                }
            }
            let mut loads: Vec<LoadEvent> = gone_loads
                .into_iter()
                .map(|key| LoadEvent { key, value: None })
                .collect();
            for kv in changed {
                updates += 1;
                if let Some(key) = load_key_of(&self.meta_root, kv) {
                    loads.push(LoadEvent {
                        key,
                        value: Some(kv.value().to_vec()),
                    });
                } else if let Some(c) =
                    apply_kv(&mut cache, &self.meta_root, kv, false, &self.metrics)
                {
                    inputs.push(change_input(c));
                }
            }
            if !loads.is_empty() {
                self.flush_loads(loads, &cache);
            }
        }
        warn!(
            message = "etcd compacted the revisions the watch missed; rescanned and reconciled \
                       the metadata.",
            prefix = %p,
            missed_from = after + 1,
            compacted,
            revision,
            vanished = drops,
            changed = updates,
        );
        for input in inputs {
            self.send(input).await?;
        }
        self.from_revision = revision + 1;
        Ok(())
    }

    async fn send(&self, input: Input) -> Result<(), EngineError> {
        self.tx
            .send(input)
            .await
            .map_err(|_| EngineError::internal(COMPONENT, "the source stopped"))
    }

    /// Applies a watch response; returns the revision it proves delivered.
    async fn handle(&mut self, resp: &WatchResponse) -> Result<i64, EngineError> {
        let header_rev = resp.header().map_or(0, |h| h.revision());
        if resp.events().is_empty() {
            // A progress notification (or the creation answer): everything up to the header
            // revision has been sent.
            return Ok(if resp.created() { 0 } else { header_rev });
        }
        let mut inputs = Vec::new();
        let mut max_rev = 0;
        {
            let cache = self.cache.clone();
            let mut cache = cache
                .lock()
                .map_err(|_| EngineError::internal(COMPONENT, "metadata cache lock poisoned"))?;
            // Consecutive load-info changes are applied together (one QueryCoord transaction
            // writes its keys in one revision, in any order), against the RootCoord metadata
            // as of their revision.
            let mut loads: Vec<LoadEvent> = Vec::new();
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                max_rev = max_rev.max(kv.mod_revision());
                let deleted = ev.event_type() == EventType::Delete;
                if let Some(key) = load_key_of(&self.meta_root, kv) {
                    let value = (!deleted).then(|| kv.value().to_vec());
                    loads.push(LoadEvent { key, value });
                    continue;
                }
                if !loads.is_empty() {
                    self.flush_loads(std::mem::take(&mut loads), &cache);
                }
                if let Some(ops) =
                    super::rbac::apply_kv(&mut cache.rbac, &self.meta_root, kv, deleted, true)
                {
                    // Credential keys carry no time: stamped like load changes.
                    let now_ts = cdc_protocol::ts::from_system_time(std::time::SystemTime::now());
                    for op in ops {
                        let ts = now_ts.max(self.last_load_ts + 1);
                        self.last_load_ts = ts;
                        info!(message = "Source access control changed.", change = ?op, ts);
                        inputs.push(super::rbac::rbac_input(op, ts));
                    }
                    continue;
                }
                if let Some(a) = super::alias::apply_kv(
                    &mut cache.aliases,
                    &self.meta_root,
                    kv,
                    deleted,
                    &self.metrics,
                ) {
                    if let Some(a) = a {
                        // A drop's tombstone has no time: stamped like load changes.
                        let now_ts =
                            cdc_protocol::ts::from_system_time(std::time::SystemTime::now());
                        let ts = a.ts.unwrap_or_else(|| now_ts.max(self.last_load_ts + 1));
                        self.last_load_ts = self.last_load_ts.max(ts);
                        info!(message = "Source alias changed.", change = ?a, ts);
                        inputs.push(super::alias::alias_input(a, ts));
                    }
                    continue;
                }
                if let Some(c) = apply_kv(&mut cache, &self.meta_root, kv, deleted, &self.metrics) {
                    debug!(message = "Source metadata changed.", change = ?c);
                    inputs.push(change_input(c));
                }
                for p in cache.take_props() {
                    let now_ts = cdc_protocol::ts::from_system_time(std::time::SystemTime::now());
                    let ts = now_ts.max(self.last_load_ts + 1);
                    self.last_load_ts = ts;
                    info!(message = "Source collection properties changed.", change = ?p, ts);
                    inputs.push(super::props::props_input(p, ts));
                }
            }
            if !loads.is_empty() {
                self.flush_loads(loads, &cache);
            }
        }
        for input in inputs {
            self.send(input).await?;
        }
        Ok(max_rev)
    }

    /// Applies load-info changes and holds the partition loads and releases they make.
    fn flush_loads(&mut self, events: Vec<LoadEvent>, cache: &MetaCache) {
        let (changes, errors) = self.loads.apply_batch(events, cache);
        for (key, e) in errors {
            self.metrics.error(cdc_engine::ErrorKind::Decode);
            warn!(message = "Undecodable etcd load info skipped.", key = ?key, error = %e);
        }
        let now = Instant::now();
        // QueryCoord's keys carry no timestamp: a change is stamped with the wall clock when
        // it is first seen (after the request that made it was accepted, so after every
        // operation that completed before that request, and before any operation started
        // after that request returned). See `load`.
        let now_ts = cdc_protocol::ts::from_system_time(std::time::SystemTime::now());
        for c in changes {
            debug!(message = "Source partition load state changed.", change = ?c);
            self.held.add(c, now, now_ts);
        }
    }

    /// Sends the held load changes.
    async fn send_held(&mut self) -> Result<(), EngineError> {
        for (c, seen_ts) in self.held.take() {
            let ts = seen_ts.max(self.last_load_ts + 1);
            self.last_load_ts = ts;
            info!(message = "Source partition load state changed.", change = ?c);
            self.send(load_input(c, ts)).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_credentials_are_fatal_and_outages_transient() {
        let status = |code| etcd_client::Error::GRpcStatus(tonic::Status::new(code, "x"));
        assert!(!is_transient(&status(tonic::Code::Unauthenticated)));
        assert!(!is_transient(&status(tonic::Code::PermissionDenied)));
        assert!(!is_transient(&status(tonic::Code::InvalidArgument)));
        assert!(is_transient(&status(tonic::Code::Unavailable)));
        assert!(is_transient(&status(tonic::Code::DeadlineExceeded)));
        let e = etcd_err(
            "cannot connect".into(),
            &status(tonic::Code::Unauthenticated),
        );
        assert!(!e.retriable && e.message.contains("etcd.username"), "{e}");
        assert!(etcd_err("x".into(), &etcd_client::Error::WatchError("h2".into())).retriable);
    }

    #[test]
    fn partition_offsets_order_by_timestamp_then_id() {
        assert!(partition_offset(5, 100) < partition_offset(6, 1));
        assert!(partition_offset(5, 1) < partition_offset(5, 2));
        assert_eq!(partition_offset(1, 2).len(), 16);
    }
}

#[cfg(test)]
mod fault_tests;
