//! Duplicate-task detection: two tasks must not write the same collection to the same target.
//!
//! A task covers `db.collection` patterns (`*` is a wildcard) on one or more target keys (a
//! Milvus `host:port`, a Kafka address). Like milvus-cdc: two explicit names that are equal
//! conflict; two wildcard patterns that can match a common name conflict; a new wildcard task
//! is allowed next to explicit tasks and excludes their collections; a new explicit task is
//! allowed under an existing wildcard task only when that task excludes it.

/// What a task covers, for the duplicate check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Normalised target keys the task writes to.
    pub targets: Vec<String>,
    /// `db.collection` patterns it replicates.
    pub include: Vec<String>,
    /// `db.collection` patterns it leaves out.
    pub exclude: Vec<String>,
}

/// Why a new task cannot be created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The existing task.
    pub task_id: String,
    /// Its pattern.
    pub existing: String,
    /// The new task's pattern.
    pub new: String,
    /// The shared target.
    pub target: String,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "some collections are duplicate with existing tasks: `{}` overlaps `{}` of task {} \
             on target {}; delete or narrow that task first",
            self.new, self.existing, self.task_id, self.target
        )
    }
}

/// Normalised target key of a Milvus URI: lowercase `host:port` without scheme or path.
pub fn milvus_target_key(uri: &str) -> String {
    let rest = uri
        .strip_prefix("http://")
        .or_else(|| uri.strip_prefix("https://"))
        .unwrap_or(uri);
    let host_port = rest.split('/').next().unwrap_or(rest);
    format!("milvus:{}", host_port.to_ascii_lowercase())
}

/// Normalised target key of a Kafka bootstrap address list.
pub fn kafka_target_key(address: &str) -> String {
    let mut parts: Vec<String> = address
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    parts.sort();
    format!("kafka:{}", parts.join(","))
}

fn split(pattern: &str) -> (&str, &str) {
    pattern.split_once('.').unwrap_or((pattern, "*"))
}

fn is_literal(pattern: &str) -> bool {
    !pattern.contains('*')
}

/// Can two `*`-globs match a common string?
pub fn globs_intersect(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    // memo[i][j]: a[i..] and b[j..] have a common match (None: not computed).
    let mut memo = vec![vec![None; b.len() + 1]; a.len() + 1];
    fn go(a: &[u8], b: &[u8], i: usize, j: usize, memo: &mut Vec<Vec<Option<bool>>>) -> bool {
        if let Some(v) = memo[i][j] {
            return v;
        }
        let v = if i == a.len() && j == b.len() {
            true
        } else if i < a.len() && a[i] == b'*' {
            go(a, b, i + 1, j, memo) || (j < b.len() && go(a, b, i, j + 1, memo))
        } else if j < b.len() && b[j] == b'*' {
            go(a, b, i, j + 1, memo) || (i < a.len() && go(a, b, i + 1, j, memo))
        } else {
            i < a.len() && j < b.len() && a[i] == b[j] && go(a, b, i + 1, j + 1, memo)
        };
        memo[i][j] = Some(v);
        v
    }
    go(a, b, 0, 0, &mut memo)
}

/// Can two `db.collection` patterns match a common collection?
pub fn patterns_intersect(a: &str, b: &str) -> bool {
    let (ad, ac) = split(a);
    let (bd, bc) = split(b);
    globs_intersect(ad, bd) && globs_intersect(ac, bc)
}

fn matches(pattern: &str, name: &str) -> bool {
    let (pd, pc) = split(pattern);
    let (nd, nc) = split(name);
    cdc_engine::transforms::wildcard(pd, nd) && cdc_engine::transforms::wildcard(pc, nc)
}

/// Check a new task against the existing ones. On success, returns the explicit collections
/// of other tasks that the new task's wildcard patterns must exclude.
pub fn check<'a>(
    new: &Coverage,
    existing: impl IntoIterator<Item = (&'a str, &'a Coverage)>,
) -> Result<Vec<String>, Conflict> {
    let mut excludes = Vec::new();
    for (task_id, old) in existing {
        for target in new.targets.iter().filter(|t| old.targets.contains(t)) {
            for p in &new.include {
                for q in &old.include {
                    if !patterns_intersect(p, q) {
                        continue;
                    }
                    let conflict = || Conflict {
                        task_id: task_id.to_string(),
                        existing: q.clone(),
                        new: p.clone(),
                        target: target.clone(),
                    };
                    match (is_literal(p), is_literal(q)) {
                        // The new wildcard task leaves the explicit collection to its owner.
                        (false, true) => {
                            if !old.exclude.iter().any(|e| matches(e, q)) && !excludes.contains(q) {
                                excludes.push(q.clone());
                            }
                        }
                        // Allowed only if the wildcard task excludes it.
                        (true, false) => {
                            if !old.exclude.iter().any(|e| matches(e, p)) {
                                return Err(conflict());
                            }
                        }
                        _ => return Err(conflict()),
                    }
                }
            }
        }
    }
    Ok(excludes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cov(t: &str, inc: &[&str], exc: &[&str]) -> Coverage {
        Coverage {
            targets: vec![t.to_string()],
            include: inc.iter().map(|s| s.to_string()).collect(),
            exclude: exc.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn glob_intersection() {
        assert!(globs_intersect("*", "abc"));
        assert!(globs_intersect("a*", "*c"));
        assert!(globs_intersect("orders_*", "*_2024"));
        assert!(!globs_intersect("a*", "b*"));
        assert!(!globs_intersect("abc", "abd"));
        assert!(globs_intersect("abc", "abc"));
        assert!(!globs_intersect("a*b", "c"));
        assert!(patterns_intersect("*.*", "default.x"));
        assert!(!patterns_intersect("db1.*", "db2.*"));
        assert!(patterns_intersect("db1", "db1.x"));
    }

    #[test]
    fn duplicate_rules_follow_milvus_cdc() {
        let t = "milvus:h:1";
        let a = cov(t, &["default.a"], &[]);
        // same explicit collection, same target: conflict
        let e = check(&cov(t, &["default.a"], &[]), [("A", &a)]).unwrap_err();
        assert_eq!(e.task_id, "A");
        assert!(e.to_string().contains("duplicate"), "{e}");
        // another target: fine
        assert!(check(&cov("milvus:other:1", &["default.a"], &[]), [("A", &a)]).is_ok());
        // a new wildcard task excludes the explicit one
        let ex = check(&cov(t, &["*.*"], &[]), [("A", &a)]).unwrap();
        assert_eq!(ex, vec!["default.a".to_string()]);
        // an explicit task under a wildcard task that does not exclude it: conflict
        let star = cov(t, &["*.*"], &[]);
        assert!(check(&cov(t, &["default.b"], &[]), [("S", &star)]).is_err());
        // ... but allowed when the wildcard task excludes it
        let star_ex = cov(t, &["*.*"], &["default.b"]);
        assert!(check(&cov(t, &["default.b"], &[]), [("S", &star_ex)]).is_ok());
        // two wildcard tasks that overlap: conflict; disjoint databases: fine
        assert!(check(&cov(t, &["default.*"], &[]), [("S", &star)]).is_err());
        let d1 = cov(t, &["db1.*"], &[]);
        assert!(check(&cov(t, &["db2.*"], &[]), [("D", &d1)]).is_ok());
    }

    #[test]
    fn target_keys_are_normalised() {
        assert_eq!(milvus_target_key("http://Host:19530/"), "milvus:host:19530");
        assert_eq!(milvus_target_key("https://host:19530"), "milvus:host:19530");
        assert_eq!(kafka_target_key("b:1, a:2"), "kafka:a:2,b:1");
    }
}
