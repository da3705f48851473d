//! Credentials inside task documents: finding them, hiding them from API output, and keeping
//! them out of the state store when `persist_credentials` is off.
//!
//! A credential is any JSON object key named `token`, or containing `password` or `secret`
//! (this covers `sinks.<id>.milvus.token`, `password`, Kafka `sasl.password` options and
//! similar). Its path is the dotted list of keys leading to it, e.g.
//! `sinks.target.milvus.token`; operators send withheld values back by that path.

use serde_json::Value;

/// One credential taken out of a document.
#[derive(Debug, Clone, PartialEq)]
pub struct Secret {
    /// Keys from the document root to the credential.
    pub path: Vec<String>,
    /// Its value.
    pub value: Value,
}

/// Is this object key a credential?
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k == "token" || k.contains("password") || k.contains("secret")
}

/// Dotted text of a path.
pub fn path_text(path: &[String]) -> String {
    path.join(".")
}

/// Remove every non-empty credential from `doc` and return them.
pub fn extract(doc: &mut Value) -> Vec<Secret> {
    let mut out = Vec::new();
    walk(doc, &mut Vec::new(), &mut out);
    out
}

fn walk(v: &mut Value, path: &mut Vec<String>, out: &mut Vec<Secret>) {
    match v {
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                path.push(k.clone());
                if is_secret_key(&k) {
                    let non_empty = match map.get(&k) {
                        Some(Value::String(s)) => !s.is_empty(),
                        Some(Value::Null) | None => false,
                        Some(_) => true,
                    };
                    if let Some(val) = map.remove(&k) {
                        if non_empty {
                            out.push(Secret {
                                path: path.clone(),
                                value: val,
                            });
                        }
                    }
                } else if let Some(child) = map.get_mut(&k) {
                    walk(child, path, out);
                }
                path.pop();
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(i.to_string());
                walk(item, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

/// A copy of `doc` without credentials (for API output).
pub fn redacted(doc: &Value) -> Value {
    let mut d = doc.clone();
    let _ = extract(&mut d);
    d
}

/// Put credentials back at their paths (creating missing objects on the way).
pub fn inject(doc: &mut Value, secrets: &[Secret]) {
    for s in secrets {
        let Some((last, parents)) = s.path.split_last() else {
            continue;
        };
        if let Some(Value::Object(map)) = walk_to(doc, parents) {
            map.insert(last.clone(), s.value.clone());
        }
    }
}

/// The value at `path`, creating missing objects on the way; `None` when an array index is
/// missing or a scalar is in the way.
fn walk_to<'a>(doc: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    let Some((first, rest)) = path.split_first() else {
        return Some(doc);
    };
    let next = match doc {
        Value::Object(map) => map
            .entry(first.clone())
            .or_insert_with(|| Value::Object(Default::default())),
        Value::Array(items) => items.get_mut(first.parse::<usize>().ok()?)?,
        _ => return None,
    };
    walk_to(next, rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn extract_redact_inject_round_trip() {
        let original = json!({
            "name": "t",
            "source": {"milvus": {"etcd": {"username": "u", "password": "p"},
                       "mq": {"kafka": {"options": {"sasl.password": "k", "acks": "1"}}}}},
            "sinks": {"target": {"milvus": {"uri": "http://h:1", "token": "root:Milvus"}},
                      "empty": {"milvus": {"uri": "http://h:2", "token": ""}}}
        });
        let mut doc = original.clone();
        let secrets = extract(&mut doc);
        let paths: Vec<String> = secrets.iter().map(|s| path_text(&s.path)).collect();
        assert_eq!(
            paths,
            vec![
                "sinks.target.milvus.token",
                "source.milvus.etcd.password",
                "source.milvus.mq.kafka.options.sasl.password"
            ]
        );
        let text = doc.to_string();
        assert!(
            !text.contains("root:Milvus") && !text.contains("\"p\"") && !text.contains("\"k\"")
        );
        assert!(text.contains("acks") && text.contains("\"u\""));
        assert_eq!(redacted(&original), doc);
        inject(&mut doc, &secrets);
        // the empty token was dropped, everything else is back
        let mut expected = original.clone();
        expected["sinks"]["empty"]["milvus"]
            .as_object_mut()
            .unwrap()
            .remove("token");
        assert_eq!(doc, expected);
    }
}
