//! What a running pipeline could not replicate and keeps reporting: a user the target could
//! not be given (no password), an operation the target's Milvus version does not have. Each
//! notice names its subject and the reason; it stays until the component clears it (the
//! subject was replicated after all, or it went away on the source) or the pipeline ends.
//!
//! Notices are process-wide by pipeline, like [`crate::retry::reconnecting`], so the server
//! shows them in `GET /tasks/{id}` (`not_replicated`), and counted in the gauge
//! `milvus_cdc_not_replicated{pipeline,component,kind}`.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use prometheus::{IntGaugeVec, Opts};
use serde::Serialize;

use crate::metrics::register;

/// One thing not replicated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notice {
    /// The component that reports it (`sink target`).
    pub component: String,
    /// What kind of operation (`create_user`, `alter_database`, ...).
    pub kind: String,
    /// What was not replicated (`user alice`, `database sales`).
    pub subject: String,
    /// Why, and what to do about it.
    pub reason: String,
}

type Key = (String, String, String, String);

fn open() -> &'static Mutex<BTreeMap<Key, String>> {
    static O: OnceLock<Mutex<BTreeMap<Key, String>>> = OnceLock::new();
    O.get_or_init(Default::default)
}

fn gauge() -> &'static IntGaugeVec {
    static G: OnceLock<IntGaugeVec> = OnceLock::new();
    G.get_or_init(|| {
        register(
            IntGaugeVec::new(
                Opts::new(
                    "milvus_cdc_not_replicated",
                    "Objects or operations a pipeline could not replicate (see the task's \
                     not_replicated list).",
                ),
                &["pipeline", "component", "kind"],
            )
            .expect("valid metric"),
        )
    })
}

fn recount(map: &BTreeMap<Key, String>, pipeline: &str, component: &str, kind: &str) {
    let n = map
        .keys()
        .filter(|k| k.0 == pipeline && k.1 == component && k.2 == kind)
        .count();
    gauge()
        .with_label_values(&[pipeline, component, kind])
        .set(n as i64);
}

/// Reports (or updates) that `subject` of `kind` was not replicated by `component` of
/// `pipeline`, and why.
pub fn report(pipeline: &str, component: &str, kind: &str, subject: &str, reason: &str) {
    let Ok(mut map) = open().lock() else { return };
    let key = (
        pipeline.to_string(),
        component.to_string(),
        kind.to_string(),
        subject.to_string(),
    );
    map.insert(key, reason.to_string());
    recount(&map, pipeline, component, kind);
}

/// Withdraws a report of [`report`] (replicated after all, or gone on the source).
pub fn clear(pipeline: &str, component: &str, kind: &str, subject: &str) {
    let Ok(mut map) = open().lock() else { return };
    let key = (
        pipeline.to_string(),
        component.to_string(),
        kind.to_string(),
        subject.to_string(),
    );
    if map.remove(&key).is_some() {
        recount(&map, pipeline, component, kind);
    }
}

/// The notices of `pipeline`, ordered by component, kind and subject.
pub fn list(pipeline: &str) -> Vec<Notice> {
    let Ok(map) = open().lock() else {
        return Vec::new();
    };
    map.iter()
        .filter(|(k, _)| k.0 == pipeline)
        .map(|(k, reason)| Notice {
            component: k.1.clone(),
            kind: k.2.clone(),
            subject: k.3.clone(),
            reason: reason.clone(),
        })
        .collect()
}

/// Forgets every notice of `pipeline` (it stopped).
pub fn forget(pipeline: &str) {
    let Ok(mut map) = open().lock() else { return };
    let keys: Vec<Key> = map.keys().filter(|k| k.0 == pipeline).cloned().collect();
    for k in keys {
        map.remove(&k);
        gauge().with_label_values(&[&k.0, &k.1, &k.2]).set(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_update_clear() {
        report(
            "p-notices",
            "sink t",
            "create_user",
            "user a",
            "no password",
        );
        report(
            "p-notices",
            "sink t",
            "create_user",
            "user b",
            "no password",
        );
        report("p-notices", "sink t", "create_user", "user a", "still none");
        report("p-other", "sink t", "create_user", "user a", "x");
        let l = list("p-notices");
        assert_eq!(l.len(), 2);
        assert_eq!(
            (l[0].subject.as_str(), l[0].reason.as_str()),
            ("user a", "still none")
        );
        let g = || {
            gauge()
                .with_label_values(&["p-notices", "sink t", "create_user"])
                .get()
        };
        assert_eq!(g(), 2);
        clear("p-notices", "sink t", "create_user", "user a");
        assert_eq!(list("p-notices").len(), 1);
        assert_eq!(g(), 1);
        forget("p-notices");
        assert!(list("p-notices").is_empty());
        assert_eq!(g(), 0);
        assert_eq!(list("p-other").len(), 1);
    }
}
