//! Operations beyond data and schema (issue 15), through the real `milvus-cdc run` on the dev
//! services: collection aliases created, altered and dropped on the source are on the target
//! afterwards (compared by `tests/py/compare.py`, which compares aliases), also across a
//! `kill -9` and the replay after it.

use std::time::Duration;

use cdc_e2e::{Cdc, Env};

fn stamp() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() % 100_000_000)
        .unwrap_or(0)
}

/// Collections of `default` named `{prefix}*` to the target, checkpointed every `interval_ms`.
fn pipeline(env: &Env, name: &str, prefix: &str, interval_ms: u64) -> String {
    format!(
        "name: {name}\n{source}transforms:\n  - filter:\n      include: [\"default.{prefix}*\"]\n\
         sinks:\n  target:\n    milvus:\n      uri: {target}\n      write: upsert\n\
         checkpoint:\n  interval_ms: {interval_ms}\n",
        source = env.source_yaml(),
        target = env.target_uri,
    )
}

fn ops(env: &Env, args: &[&str]) {
    let (ok, out) = env.py("ops.py", args);
    assert!(ok, "ops.py {args:?}: {out}");
}

fn aliases_of(env: &Env, uri: &str, coll: &str) -> Vec<String> {
    let (ok, out) = env.py("ops.py", &["aliases-of", "--uri", uri, "--coll", coll]);
    assert!(ok, "aliases-of {coll}: {out}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("aliases-of {coll}: {e}: {out}"))
}

/// Aliases created, altered and dropped (three steps), the CDC killed with `kill -9` between
/// the second and the third before any periodic checkpoint: the target has the source's
/// aliases after every step, and the replay after the restart neither fails nor differs.
#[test]
fn aliases_replicate_and_survive_a_kill() {
    let Some(env) = Env::get("aliases_replicate_and_survive_a_kill") else {
        return;
    };
    let prefix = format!("o15_al{}_", stamp());
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = pipeline(&env, "o15-aliases", &prefix, 600_000);
    let mut cdc = Cdc::start(&env, dir.path(), &yaml);
    cdc.wait_log("Start positions stored", Duration::from_secs(60));
    let src = env.source_uri.clone();
    let step = |n: &str| {
        ops(
            &env,
            &["aliases", "--uri", &src, "--prefix", &prefix, "--step", n],
        )
    };

    step("1");
    env.wait_equal(&env.target_uri, &prefix, &[], Duration::from_secs(120));
    let (a, b) = (format!("{prefix}a"), format!("{prefix}b"));
    assert_eq!(
        aliases_of(&env, &env.target_uri, &a),
        vec![format!("{prefix}x"), format!("{prefix}y")]
    );
    assert_eq!(
        aliases_of(&env, &env.target_uri, &b),
        vec![format!("{prefix}z")]
    );

    step("2");
    env.wait_equal(&env.target_uri, &prefix, &[], Duration::from_secs(120));
    cdc.kill9();
    let mut cdc = Cdc::start(&env, dir.path(), &yaml);
    step("3");
    env.wait_equal(&env.target_uri, &prefix, &[], Duration::from_secs(120));
    assert_eq!(
        aliases_of(&env, &env.target_uri, &a),
        vec![format!("{prefix}z")]
    );
    assert_eq!(
        aliases_of(&env, &env.target_uri, &b),
        vec![format!("{prefix}w")]
    );
    assert!(cdc.is_running(), "the CDC stopped:\n{}", cdc.log_text());
    let applied = cdc.log_lines("alias");
    assert!(
        applied.iter().any(|l| l.contains("Applied DDL")),
        "no alias DDL applied after the restart:\n{}",
        cdc.log_text()
    );
    cdc.stop();
    for uri in [&env.source_uri, &env.target_uri] {
        ops(&env, &["clean", "--uri", uri, "--prefix", &prefix]);
    }
}
