//! Names of published files: the `file_template` with its placeholders.

use std::path::PathBuf;

/// What `{collection}` becomes for database-level DDL.
pub const DATABASE_PLACEHOLDER: &str = "_database";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    Database,
    Collection,
    Version,
    Epoch,
    Seq,
    Ext,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(Var),
}

/// A parsed file name template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileTemplate {
    parts: Vec<Part>,
}

/// The values of one file name.
#[derive(Debug, Clone, Copy)]
pub struct NameVars<'a> {
    /// Database.
    pub database: &'a str,
    /// Collection (empty for database DDL).
    pub collection: &'a str,
    /// Schema version.
    pub version: u32,
    /// Checkpoint epoch.
    pub epoch: u64,
    /// File number within the epoch.
    pub seq: u64,
    /// Extension.
    pub ext: &'a str,
}

impl FileTemplate {
    /// Parse a template; it must contain `{epoch}` and `{seq}` and be a relative path whose
    /// parts do not start with `.`.
    pub fn parse(template: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(start) = rest.find('{') {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_string()));
            }
            let end = rest[start..]
                .find('}')
                .ok_or_else(|| format!("{template:?} has an unclosed `{{`"))?;
            let var = match &rest[start + 1..start + end] {
                "database" => Var::Database,
                "collection" => Var::Collection,
                "version" => Var::Version,
                "epoch" => Var::Epoch,
                "seq" => Var::Seq,
                "ext" => Var::Ext,
                other => {
                    return Err(format!(
                        "{template:?} uses {{{other}}}; known: {{database}}, {{collection}}, \
                         {{version}}, {{epoch}}, {{seq}}, {{ext}}"
                    ))
                }
            };
            parts.push(Part::Var(var));
            rest = &rest[start + end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        for needed in [Var::Epoch, Var::Seq] {
            if !parts.contains(&Part::Var(needed)) {
                return Err(format!(
                    "{template:?} needs {{epoch}} and {{seq}} so that file names never repeat"
                ));
            }
        }
        if template.starts_with('/') || template.contains('\\') {
            return Err(format!(
                "{template:?} must be a relative path with `/` separators"
            ));
        }
        for comp in template.split('/') {
            if comp.is_empty() || comp.starts_with('.') {
                return Err(format!(
                    "{template:?}: every path part must be non-empty and not start with `.` \
                     (hidden names are reserved for unpublished files)"
                ));
            }
        }
        Ok(Self { parts })
    }

    /// The relative path of a file. Names are made safe: characters other than letters,
    /// digits, `_`, `-` and `.` become `_`, and a leading `.` becomes `_`.
    pub fn render(&self, v: NameVars<'_>) -> PathBuf {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Var(Var::Database) => out.push_str(&safe(v.database)),
                Part::Var(Var::Collection) => out.push_str(&safe(if v.collection.is_empty() {
                    DATABASE_PLACEHOLDER
                } else {
                    v.collection
                })),
                Part::Var(Var::Version) => out.push_str(&v.version.to_string()),
                Part::Var(Var::Epoch) => out.push_str(&format!("{:010}", v.epoch)),
                Part::Var(Var::Seq) => out.push_str(&format!("{:05}", v.seq)),
                Part::Var(Var::Ext) => out.push_str(v.ext),
            }
        }
        PathBuf::from(out)
    }
}

fn safe(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with('.') {
        out.insert(0, '_');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(db: &'a str, coll: &'a str) -> NameVars<'a> {
        NameVars {
            database: db,
            collection: coll,
            version: 2,
            epoch: 7,
            seq: 3,
            ext: "jsonl",
        }
    }

    #[test]
    fn renders() {
        let t =
            FileTemplate::parse("{database}.{collection}/v{version}/{epoch}-{seq}.{ext}").unwrap();
        assert_eq!(
            t.render(vars("default", "books")),
            PathBuf::from("default.books/v2/0000000007-00003.jsonl")
        );
        assert_eq!(
            t.render(vars("sales", "")),
            PathBuf::from("sales._database/v2/0000000007-00003.jsonl")
        );
        assert_eq!(
            t.render(vars("../x", "a/b")),
            PathBuf::from("_.._x.a_b/v2/0000000007-00003.jsonl")
        );
    }

    #[test]
    fn rejects() {
        for (t, why) in [
            ("{collection}.jsonl", "needs {epoch}"),
            ("{epoch}.jsonl", "needs {epoch}"),
            ("/abs/{epoch}-{seq}", "relative"),
            (".hidden/{epoch}-{seq}", "not start with"),
            ("a//{epoch}-{seq}", "non-empty"),
            ("{epoch}-{seq}-{table}", "{table}"),
        ] {
            let e = FileTemplate::parse(t).unwrap_err();
            assert!(e.contains(why), "{t}: {e}");
        }
    }
}
