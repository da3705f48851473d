//! `${NAME}` substitution from the environment, so secrets (tokens, passwords) stay out of
//! pipeline files. `$${` escapes a literal `${`.

/// Replace every `${NAME}` with the value of the environment variable `NAME`; an unset
/// variable is an error naming it and its line.
pub fn substitute(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    for (lineno, line) in text.split_inclusive('\n').enumerate() {
        let mut rest = line;
        while let Some(i) = rest.find("${") {
            if i > 0 && rest.as_bytes()[i - 1] == b'$' {
                out.push_str(&rest[..i - 1]);
                out.push_str("${");
                rest = &rest[i + 2..];
                continue;
            }
            out.push_str(&rest[..i]);
            let after = &rest[i + 2..];
            let Some(end) = after.find('}') else {
                return Err(format!("line {}: unterminated `${{`", lineno + 1));
            };
            let name = &after[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "line {}: `${{{name}}}` is not a valid environment variable name",
                    lineno + 1
                ));
            }
            let value = std::env::var(name).map_err(|_| {
                format!(
                    "line {}: environment variable {name} is not set (referenced as ${{{name}}})",
                    lineno + 1
                )
            })?;
            out.push_str(&value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::substitute;

    #[test]
    fn substitutes_and_reports() {
        std::env::set_var("CDC_TEST_TOKEN", "root:Milvus");
        assert_eq!(
            substitute("token: ${CDC_TEST_TOKEN}\nx: 1\n").unwrap(),
            "token: root:Milvus\nx: 1\n"
        );
        assert_eq!(substitute("a: $${KEEP}").unwrap(), "a: ${KEEP}");
        let e = substitute("a: 1\nb: ${CDC_TEST_SURELY_UNSET_VAR}\n").unwrap_err();
        assert!(
            e.contains("line 2") && e.contains("CDC_TEST_SURELY_UNSET_VAR"),
            "{e}"
        );
        assert!(substitute("a: ${oops")
            .unwrap_err()
            .contains("unterminated"));
    }
}
