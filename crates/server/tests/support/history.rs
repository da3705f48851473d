//! Replays a cluster's whole etcd history (a private etcd, never compacted) and checks the
//! fencing rule on every checkpoint commit: at the revision of the commit, the instance that
//! wrote it (`.../committed_by`, written in the commit's own transaction) held the task's
//! ownership key, and no commit was written without a fence.

use std::collections::{BTreeMap, HashMap, HashSet};

use etcd_client::{Client, EventType, GetOptions, WatchOptions};

/// What the history shows.
#[derive(Debug, Default)]
pub struct History {
    /// Checkpoint commits per writing instance.
    pub commits: BTreeMap<String, usize>,
    /// Commits per writer after a given revision (see [`check`]).
    pub commits_after: BTreeMap<String, usize>,
    /// Broken rules, each with its revision.
    pub violations: Vec<String>,
}

struct Ev {
    rev: i64,
    key: String,
    value: String,
    put: bool,
}

async fn events(endpoint: &str, prefix: &str) -> Vec<Ev> {
    let mut c = Client::connect([endpoint], None)
        .await
        .expect("etcd connect");
    let head = c
        .get(
            prefix,
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .expect("etcd get")
        .header()
        .map(|h| h.revision())
        .unwrap_or(0);
    let mut stream = c
        .watch(
            prefix,
            Some(WatchOptions::new().with_prefix().with_start_revision(1)),
        )
        .await
        .expect("etcd watch");
    let mut out = Vec::new();
    let mut last = 0;
    while last < head {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(10), stream.message())
            .await
            .expect("history read in time")
            .expect("watch stream");
        let Some(resp) = msg else { break };
        for e in resp.events() {
            let Some(kv) = e.kv() else { continue };
            last = last.max(kv.mod_revision());
            out.push(Ev {
                rev: kv.mod_revision(),
                key: String::from_utf8_lossy(kv.key()).into_owned(),
                value: String::from_utf8_lossy(kv.value()).into_owned(),
                put: e.event_type() == EventType::Put,
            });
        }
    }
    out
}

/// Check every commit under `prefix`; `after` counts commits per writer from that revision
/// on.
pub fn check(endpoint: &str, prefix: &str, after: i64) -> History {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let evs = rt.block_on(events(endpoint, &format!("{prefix}/")));
    let owners_p = format!("{prefix}/cluster/owners/");
    let cps_p = format!("{prefix}/checkpoints/");
    let mut owners: HashMap<String, String> = HashMap::new();
    // (revision, pipeline/sink) of epoch writes and of writer records
    let mut epochs: HashSet<(i64, String)> = HashSet::new();
    let mut writers: HashSet<(i64, String)> = HashSet::new();
    let mut h = History::default();
    for e in &evs {
        if let Some(task) = e.key.strip_prefix(&owners_p) {
            if e.put {
                owners.insert(task.to_string(), e.value.clone());
            } else {
                owners.remove(task);
            }
            continue;
        }
        let Some(rest) = e.key.strip_prefix(&cps_p) else {
            continue;
        };
        if !e.put {
            continue;
        }
        let parts: Vec<&str> = rest.splitn(3, '/').collect();
        let [pipeline, sink, leaf] = parts[..] else {
            continue;
        };
        let at = format!("{pipeline}/{sink}");
        match leaf {
            "epoch" => {
                epochs.insert((e.rev, at));
            }
            "committed_by" => {
                writers.insert((e.rev, at.clone()));
                *h.commits.entry(e.value.clone()).or_default() += 1;
                if e.rev >= after {
                    *h.commits_after.entry(e.value.clone()).or_default() += 1;
                }
                let owner = owners.get(pipeline);
                if owner != Some(&e.value) {
                    h.violations.push(format!(
                        "revision {}: {} committed {at} while the owner was {owner:?}",
                        e.rev, e.value
                    ));
                }
            }
            _ => {}
        }
    }
    for (rev, at) in epochs.difference(&writers) {
        h.violations.push(format!(
            "revision {rev}: an unfenced commit of {at} (no writer)"
        ));
    }
    h
}

/// The current revision of the etcd at `endpoint`.
pub fn revision(endpoint: &str) -> i64 {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut c = Client::connect([endpoint], None)
            .await
            .expect("etcd connect");
        c.get("x", None)
            .await
            .expect("etcd get")
            .header()
            .map(|h| h.revision())
            .unwrap_or(0)
    })
}
