//! Operations beyond data and schema (issue 15), through the real `milvus-cdc run` on the dev
//! services: collection aliases created, altered and dropped on the source, and access control
//! (roles, grants, users, bindings), are on the target afterwards (compared by
//! `tests/py/compare.py`, which compares aliases and, with `--rbac`, access control), also
//! across a `kill -9` and the replay after it.

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

/// Roles, grants, users and bindings (`ops.py rbac`, three steps), the CDC killed with `kill -9`
/// between the second and the third: after each step the target's access control equals the
/// source's (`compare.py --rbac`) but for the user without a password, which is not created and
/// is reported; the restart replays the whole state without failing or doubling a grant.
#[test]
fn rbac_replicates_and_survives_a_kill() {
    let Some(env) = Env::get("rbac_replicates_and_survives_a_kill") else {
        return;
    };
    let prefix = format!("o15_rb{}_", stamp());
    let dir = tempfile::tempdir().expect("tempdir");
    let passwords = dir.path().join("passwords.json");
    std::fs::write(
        &passwords,
        format!(r#"{{"{prefix}alice": "Alice-pw-1", "{prefix}carol": "Carol-pw-1"}}"#),
    )
    .expect("write the passwords file");
    let yaml = format!(
        "name: o15-rbac\n{source}    enable_user_role: true\ntransforms:\n  - filter:\n      \
         include: [\"default.{prefix}*\"]\nsinks:\n  target:\n    milvus:\n      uri: {target}\n      \
         token: root:Milvus\n      rbac:\n        passwords_file: {pw}\n\
         checkpoint:\n  interval_ms: 600000\n",
        source = env.source_yaml(),
        target = env.target_uri,
        pw = passwords.display(),
    );
    let mut cdc = Cdc::start(&env, dir.path(), &yaml);
    cdc.wait_log("Start positions stored", Duration::from_secs(60));
    let src = env.source_uri.clone();
    let step = |n: &str| {
        ops(
            &env,
            &["rbac", "--uri", &src, "--prefix", &prefix, "--step", n],
        )
    };
    let bob = format!("{prefix}bob");
    let cmp = ["--rbac", "--rbac-no-user", bob.as_str()];

    step("1");
    env.wait_equal(&env.target_uri, &prefix, &cmp, Duration::from_secs(120));
    let reported = cdc.log_lines("User not created on the target.");
    assert!(
        reported
            .iter()
            .any(|l| l.contains(&bob) && l.contains("passwords_file")),
        "the user without a password is not reported:\n{}",
        cdc.log_text()
    );

    step("2");
    env.wait_equal(&env.target_uri, &prefix, &cmp, Duration::from_secs(120));
    cdc.kill9();
    let mut cdc = Cdc::start(&env, dir.path(), &yaml);
    cdc.wait_log("Start positions stored", Duration::from_secs(60));
    // The replay of the whole state after the restart changes nothing on the target.
    env.wait_equal(&env.target_uri, &prefix, &cmp, Duration::from_secs(60));
    step("3");
    env.wait_equal(&env.target_uri, &prefix, &cmp, Duration::from_secs(120));
    assert!(cdc.is_running(), "the CDC stopped:\n{}", cdc.log_text());
    let applied = cdc.log_lines("Applied DDL");
    for op in ["revoke_privilege", "drop_role", "grant_privilege"] {
        assert!(
            applied.iter().any(|l| l.contains(op)),
            "no {op} applied after the restart:\n{}",
            cdc.log_text()
        );
    }
    cdc.stop();
    for uri in [&env.source_uri, &env.target_uri] {
        ops(&env, &["rbac-clean", "--uri", uri, "--prefix", &prefix]);
    }
}
