//! Built-in operators: filtering by database and collection, and name mapping.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::component::Operator;
use crate::error::EngineError;
use crate::event::ChangeEvent;

/// A `database.collection` pattern where `*` matches any run of characters in either part
/// (`*.*`, `default.*`, `sales.orders_*`). A pattern without a dot names a database and matches
/// all its collections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamePattern {
    db: String,
    collection: String,
}

impl NamePattern {
    /// Parse a pattern; an empty part is an error.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (db, coll) = match s.split_once('.') {
            Some((d, c)) => (d, c),
            None => (s, "*"),
        };
        if db.is_empty() || coll.is_empty() {
            return Err(format!(
                "pattern {s:?} must look like `database.collection` (`*` is a wildcard)"
            ));
        }
        Ok(Self {
            db: db.to_string(),
            collection: coll.to_string(),
        })
    }

    /// Does the pattern match this database and collection (`None`: a database-level
    /// operation, matched by the database part alone)?
    pub fn matches(&self, db: &str, collection: Option<&str>) -> bool {
        wildcard(&self.db, db) && collection.is_none_or(|c| wildcard(&self.collection, c))
    }
}

/// Glob match with `*` only.
pub fn wildcard(pattern: &str, s: &str) -> bool {
    let p = pattern.as_bytes();
    let t = s.as_bytes();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] != b'*' && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(sp) = star {
            pi = sp + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

/// Keeps the changes of the databases and collections a pipeline covers.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Patterns to keep (default: everything, `*.*`).
    #[serde(default)]
    pub include: Vec<String>,
    /// Patterns to drop, applied after `include`.
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// The filter operator built from a [`FilterConfig`].
pub struct Filter {
    include: Vec<NamePattern>,
    exclude: Vec<NamePattern>,
}

impl Filter {
    /// Build from configuration; invalid patterns are reported with their text.
    pub fn new(cfg: &FilterConfig) -> Result<Self, EngineError> {
        let parse = |v: &[String]| {
            v.iter()
                .map(|s| NamePattern::parse(s).map_err(|e| EngineError::config("filter", e)))
                .collect::<Result<Vec<_>, _>>()
        };
        let mut include = parse(&cfg.include)?;
        if include.is_empty() {
            include.push(NamePattern::parse("*.*").map_err(|e| EngineError::config("filter", e))?);
        }
        Ok(Self {
            include,
            exclude: parse(&cfg.exclude)?,
        })
    }

    /// Would a change on `db`/`collection` pass (`None`: a database-level operation)?
    pub fn accepts(&self, db: &str, collection: Option<&str>) -> bool {
        self.include.iter().any(|p| p.matches(db, collection))
            && !(self.exclude.iter().any(|p| match collection {
                // a database-level operation is only excluded by a whole-database exclusion
                None => p.collection == "*" && wildcard(&p.db, db),
                Some(_) => p.matches(db, collection),
            }))
    }
}

impl Operator for Filter {
    fn name(&self) -> &str {
        "filter"
    }

    /// A collection-level change without a collection name cannot be filtered: sources
    /// must attribute every change (passing it would let it through every filter, dropping
    /// it would lose it silently), so it is an error naming the change.
    fn process(&mut self, event: ChangeEvent) -> Result<Option<ChangeEvent>, EngineError> {
        // Access control is cluster-wide (and off unless the source is asked for it).
        if event.op.is_cluster_level() {
            return Ok(Some(event));
        }
        let collection = if event.op.is_database_level() {
            None
        } else if event.collection.is_empty() {
            return Err(EngineError::internal(
                "filter",
                format!(
                    "a {} change of collection id {} in database {:?} (channel {}, offset {:?}) \
                     has no collection name; the source must name every collection-level change",
                    event.op.kind(),
                    event.collection_id,
                    event.database,
                    event.position.channel,
                    event.position.offset
                ),
            ));
        } else {
            Some(event.collection.as_str())
        };
        Ok(self.accepts(&event.database, collection).then_some(event))
    }
}

/// One name-mapping rule: a source database to a target database, and optionally single
/// collections to other names. Same shape as milvus-cdc's `name_mapping` entries.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NameMappingRule {
    /// Source database.
    pub source_db: String,
    /// Target database (default: same as the source).
    #[serde(default)]
    pub target_db: Option<String>,
    /// Source collection name to target collection name; empty maps the whole database.
    #[serde(default)]
    pub collection_mapping: HashMap<String, String>,
}

/// Renames databases and collections on the way to the sinks.
pub struct Rename {
    rules: HashMap<String, NameMappingRule>,
}

impl Rename {
    /// Build from rules; two rules for the same source database are an error.
    pub fn new(rules: &[NameMappingRule]) -> Result<Self, EngineError> {
        let mut map = HashMap::new();
        for r in rules {
            if r.source_db.is_empty() {
                return Err(EngineError::config(
                    "rename",
                    "a rule has an empty source_db",
                ));
            }
            if map.insert(r.source_db.clone(), r.clone()).is_some() {
                return Err(EngineError::config(
                    "rename",
                    format!("two rules for source database {:?}", r.source_db),
                ));
            }
        }
        Ok(Self { rules: map })
    }

    /// Target `(database, collection)` of a source pair.
    pub fn map(&self, db: &str, collection: &str) -> (String, String) {
        match self.rules.get(db) {
            None => (db.to_string(), collection.to_string()),
            Some(r) => (
                r.target_db.clone().unwrap_or_else(|| db.to_string()),
                r.collection_mapping
                    .get(collection)
                    .cloned()
                    .unwrap_or_else(|| collection.to_string()),
            ),
        }
    }
}

impl Operator for Rename {
    fn name(&self) -> &str {
        "rename"
    }

    fn process(&mut self, mut event: ChangeEvent) -> Result<Option<ChangeEvent>, EngineError> {
        let (db, coll) = self.map(&event.database, &event.collection);
        if let crate::event::Op::Ddl(crate::event::Ddl::CreateCollection(def)) = &mut event.op {
            def.schema.name = coll.clone();
        }
        event.database = db;
        event.collection = coll;
        Ok(Some(event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard("*", ""));
        assert!(wildcard("a*c", "abbbc"));
        assert!(wildcard("orders_*", "orders_2024"));
        assert!(!wildcard("orders_*", "order"));
        assert!(wildcard("*_x*y", "a_xzzy"));
        assert!(!wildcard("abc", "abcd"));
    }

    #[test]
    fn filter_include_exclude() {
        let f = Filter::new(&FilterConfig {
            include: vec!["default.*".into(), "db1.keep_*".into()],
            exclude: vec!["default.secret".into()],
        })
        .unwrap();
        assert!(f.accepts("default", Some("a")));
        assert!(!f.accepts("default", Some("secret")));
        assert!(f.accepts("db1", Some("keep_me")));
        assert!(!f.accepts("db1", Some("other")));
        assert!(!f.accepts("db2", Some("x")));
        // database-level operations pass when the database is covered
        assert!(f.accepts("db1", None));
        assert!(f.accepts("default", None));
        assert!(!f.accepts("db2", None));
        let everything = Filter::new(&FilterConfig::default()).unwrap();
        assert!(everything.accepts("any", Some("thing")));
        assert!(Filter::new(&FilterConfig {
            include: vec![".x".into()],
            exclude: vec![]
        })
        .is_err());
    }

    /// The filter of issue 12 (`*.hx*`, `hx_db.*`) met a collection-level change with no
    /// collection name: it used to pass every filter as if database-level.
    #[test]
    fn a_collection_change_without_a_name_is_an_error_not_a_database_change() {
        use crate::event::{Ddl, Op, SourcePosition};
        let mut f = Filter::new(&FilterConfig {
            include: vec!["*.hx*".into(), "hx_db.*".into()],
            exclude: vec![],
        })
        .unwrap();
        let ev = |coll: &str, op: Op| ChangeEvent {
            position: SourcePosition {
                channel: "by-dev-rootcoord-dml_1".into(),
                offset: vec![0, 0, 0, 0, 0, 0, 0, 7],
                ts: 1,
            },
            database: "default".into(),
            collection: coll.into(),
            collection_id: 42,
            collection_def: None,
            op,
        };
        let drop_part = || {
            Op::Ddl(Ddl::DropPartition {
                partition: "p1".into(),
            })
        };
        let err = f.process(ev("", drop_part())).unwrap_err();
        assert!(err.message.contains("collection id 42"), "{err}");
        assert!(err.message.contains("dml_1"), "{err}");
        assert!(f.process(ev("other", drop_part())).unwrap().is_none());
        assert!(f.process(ev("hx_a", drop_part())).unwrap().is_some());
        assert!(f
            .process(ev("", Op::Ddl(Ddl::DropDatabase)))
            .unwrap()
            .is_some());
    }

    #[test]
    fn rename_rules() {
        let r = Rename::new(&[NameMappingRule {
            source_db: "default".into(),
            target_db: Some("backup".into()),
            collection_mapping: [("a".to_string(), "a_copy".to_string())].into(),
        }])
        .unwrap();
        assert_eq!(r.map("default", "a"), ("backup".into(), "a_copy".into()));
        assert_eq!(r.map("default", "b"), ("backup".into(), "b".into()));
        assert_eq!(r.map("other", "a"), ("other".into(), "a".into()));
    }
}
