//! Delete expressions: `pk in [...]` for int64 and varchar primary keys, with strings quoted
//! the way the Milvus expression parser unquotes them (Go `strconv.Unquote` rules).

use std::fmt::Write;

use cdc_protocol::schema::{i_ds::IdField, IDs as Ids};

/// `field in [k1, k2, ...]` for the keys of `ids`; `None` when there are no keys.
pub(crate) fn pk_in(field: &str, ids: &Ids) -> Option<String> {
    let mut out = String::with_capacity(16 + field.len());
    out.push_str(field);
    out.push_str(" in [");
    match ids.id_field.as_ref()? {
        IdField::IntId(a) => {
            if a.data.is_empty() {
                return None;
            }
            out.reserve(a.data.len() * 8);
            for (i, k) in a.data.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{k}");
            }
        }
        IdField::StrId(a) => {
            if a.data.is_empty() {
                return None;
            }
            for (i, k) in a.data.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                quote_into(&mut out, k);
            }
        }
    }
    out.push(']');
    Some(out)
}

/// Append `s` as a double-quoted Milvus string literal.
pub(crate) fn quote_into(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Number of keys in `ids`.
pub(crate) fn ids_len(ids: &Ids) -> usize {
    match &ids.id_field {
        Some(IdField::IntId(a)) => a.data.len(),
        Some(IdField::StrId(a)) => a.data.len(),
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdc_protocol::schema::{LongArray, StringArray};

    fn ints(v: &[i64]) -> Ids {
        Ids {
            id_field: Some(IdField::IntId(LongArray { data: v.to_vec() })),
        }
    }
    fn strs(v: &[&str]) -> Ids {
        Ids {
            id_field: Some(IdField::StrId(StringArray {
                data: v.iter().map(|s| s.to_string()).collect(),
            })),
        }
    }

    #[test]
    fn int_keys() {
        assert_eq!(pk_in("id", &ints(&[1, -2, 3])).unwrap(), "id in [1,-2,3]");
        assert_eq!(
            pk_in("id", &ints(&[i64::MIN])).unwrap(),
            "id in [-9223372036854775808]"
        );
        assert_eq!(pk_in("id", &ints(&[])), None);
        assert_eq!(pk_in("id", &Ids::default()), None);
    }

    #[test]
    fn string_keys_are_escaped() {
        assert_eq!(
            pk_in("pk", &strs(&["a", "b\"c", "d\\e", "f\ng", "é漢", "x\u{1}"])).unwrap(),
            r#"pk in ["a","b\"c","d\\e","f\ng","é漢","x\u0001"]"#
        );
        assert_eq!(pk_in("pk", &strs(&[""])).unwrap(), r#"pk in [""]"#);
        assert_eq!(pk_in("pk", &strs(&["'"])).unwrap(), r#"pk in ["'"]"#);
    }

    #[test]
    fn counts() {
        assert_eq!(ids_len(&ints(&[1, 2])), 2);
        assert_eq!(ids_len(&strs(&["a"])), 1);
        assert_eq!(ids_len(&Ids::default()), 0);
    }
}
