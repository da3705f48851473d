//! Topic names: the `{database}` / `{collection}` template and Kafka's naming rules.

/// What `{collection}` becomes for database-level DDL.
pub const DATABASE_PLACEHOLDER: &str = "_database";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Database,
    Collection,
}

/// A parsed topic template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTemplate {
    parts: Vec<Part>,
}

impl TopicTemplate {
    /// Parse `template`; unknown placeholders and names Kafka would refuse are errors.
    pub fn parse(template: &str) -> Result<Self, String> {
        if template.is_empty() {
            return Err("`topic` is empty".into());
        }
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(start) = rest.find('{') {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_string()));
            }
            let Some(end) = rest[start..].find('}') else {
                return Err(format!("`topic` {template:?} has an unclosed `{{`"));
            };
            match &rest[start + 1..start + end] {
                "database" => parts.push(Part::Database),
                "collection" => parts.push(Part::Collection),
                other => {
                    return Err(format!(
                        "`topic` {template:?} uses {{{other}}}; only {{database}} and \
                         {{collection}} are known"
                    ))
                }
            }
            rest = &rest[start + end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        let t = Self { parts };
        check_topic_name(&t.render("default", "example"))
            .map_err(|m| format!("`topic` {template:?}: {m}"))?;
        Ok(t)
    }

    /// The topic of a collection (`collection` empty: database-level events). Characters not
    /// allowed in topic names become `_`.
    pub fn render(&self, database: &str, collection: &str) -> String {
        let collection = if collection.is_empty() {
            DATABASE_PLACEHOLDER
        } else {
            collection
        };
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Database => out.push_str(&sanitize(database)),
                Part::Collection => out.push_str(&sanitize(collection)),
            }
        }
        out
    }

    /// True when every event goes to one topic.
    pub fn is_fixed(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Text(_)))
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if valid_char(c) { c } else { '_' })
        .collect()
}

fn valid_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-'
}

/// Kafka's topic name rules: 1 to 249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn check_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 249 {
        return Err(format!("topic name {name:?} must have 1 to 249 characters"));
    }
    if name == "." || name == ".." {
        return Err(format!("topic name {name:?} is not allowed"));
    }
    if let Some(c) = name.chars().find(|c| !valid_char(*c)) {
        return Err(format!(
            "topic name {name:?} contains {c:?}; use letters, digits, `.`, `_` and `-`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_placeholders() {
        let t = TopicTemplate::parse("milvus.{database}.{collection}").unwrap();
        assert_eq!(t.render("default", "books"), "milvus.default.books");
        assert_eq!(t.render("sales", ""), "milvus.sales._database");
        assert_eq!(t.render("d$b", "c/1"), "milvus.d_b.c_1");
        assert!(!t.is_fixed());
        let fixed = TopicTemplate::parse("all-changes").unwrap();
        assert!(fixed.is_fixed());
        assert_eq!(fixed.render("a", "b"), "all-changes");
    }

    #[test]
    fn rejects_bad_templates() {
        assert!(TopicTemplate::parse("x.{table}")
            .unwrap_err()
            .contains("{table}"));
        assert!(TopicTemplate::parse("x.{database")
            .unwrap_err()
            .contains("unclosed"));
        assert!(TopicTemplate::parse("a b").unwrap_err().contains("' '"));
        assert!(check_topic_name("..").is_err());
        assert!(check_topic_name(&"a".repeat(250)).is_err());
    }
}
