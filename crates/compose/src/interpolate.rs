//! Variable interpolation as the compose specification defines it: `$VAR`, `${VAR}`,
//! `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`, `${VAR?error}`,
//! `${VAR:+replacement}`, `${VAR+replacement}`, nested in the words (`${A:-${B}}`),
//! and `$$` for a literal `$`. A `$` not followed by a name or `{` stays as it is.

/// What a `${…}` asks for when its variable is unset (or, with the colon, empty).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Default,
    Required,
    Alternative,
}

/// The outcome: the text, and the warnings for variables that were not set.
#[derive(Debug, Default, PartialEq)]
pub struct Interpolated {
    pub text: String,
    pub warnings: Vec<String>,
}

/// Interpolates `text`, looking variables up with `lookup`. Errors are one line: an
/// invalid `${…}`, or a required variable without a value.
pub fn interpolate(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Interpolated, String> {
    let mut out = Interpolated::default();
    out.text = expand(text, lookup, &mut out.warnings)?;
    Ok(out)
}

fn is_name_start(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

fn is_name(c: char) -> bool {
    c == '_' || c.is_ascii_alphanumeric()
}

fn expand(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        match after.chars().next() {
            Some('$') => {
                out.push('$');
                rest = &after[1..];
            }
            Some('{') => {
                let body_len = braced_len(&after[1..]).ok_or_else(|| {
                    format!("invalid interpolation format for {text:?}: unterminated \"${{\"")
                })?;
                let body = &after[1..1 + body_len];
                out.push_str(&braced(body, text, lookup, warnings)?);
                rest = &after[1 + body_len + 1..];
            }
            Some(c) if is_name_start(c) => {
                let len = after.find(|c: char| !is_name(c)).unwrap_or(after.len());
                out.push_str(&value(&after[..len], lookup, warnings));
                rest = &after[len..];
            }
            _ => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The length of a `${…}` body (after the `{`, up to its own `}`), nested `${…}`s
/// included; None when it is not closed.
fn braced_len(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'$') => i += 1,
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

/// A variable's value; unset is empty, with a warning as Docker Compose gives.
fn value(
    name: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> String {
    lookup(name).unwrap_or_else(|| {
        warnings.push(format!(
            "The \"{name}\" variable is not set. Defaulting to a blank string."
        ));
        String::new()
    })
}

fn braced(
    body: &str,
    whole: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<String, String> {
    let invalid = || format!("invalid interpolation format for {whole:?}: \"${{{body}}}\"");
    let name_len = body.find(|c: char| !is_name(c)).unwrap_or(body.len());
    let name = &body[..name_len];
    if !name.starts_with(is_name_start) {
        return Err(invalid());
    }
    let tail = &body[name_len..];
    if tail.is_empty() {
        return Ok(value(name, lookup, warnings));
    }
    let (colon, tail) = match tail.strip_prefix(':') {
        Some(t) => (true, t),
        None => (false, tail),
    };
    let op = match tail.chars().next() {
        Some('-') => Op::Default,
        Some('?') => Op::Required,
        Some('+') => Op::Alternative,
        _ => return Err(invalid()),
    };
    let word = &tail[1..];
    let current = lookup(name);
    // "Set" for the colon forms means set and not empty.
    let set = match &current {
        Some(v) => !(colon && v.is_empty()),
        None => false,
    };
    match op {
        Op::Default if set => Ok(current.unwrap_or_default()),
        Op::Default => expand(word, lookup, warnings),
        Op::Required if set => Ok(current.unwrap_or_default()),
        Op::Required => {
            let msg = expand(word, lookup, warnings)?;
            Err(format!(
                "required variable {name} is missing a value: {msg}"
            ))
        }
        Op::Alternative if set => expand(word, lookup, warnings),
        Op::Alternative => Ok(String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(vars: &[(&str, &str)], text: &str) -> Result<Interpolated, String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        interpolate(text, &|n| map.get(n).cloned())
    }

    fn text(vars: &[(&str, &str)], t: &str) -> String {
        with(vars, t).unwrap().text
    }

    #[test]
    fn names_braced_and_bare() {
        let v = [("TAG", "1.2"), ("EMPTY", "")];
        assert_eq!(text(&v, "web:${TAG}"), "web:1.2");
        assert_eq!(text(&v, "web:$TAG-x"), "web:1.2-x");
        assert_eq!(text(&v, "$TAG$TAG"), "1.21.2");
        assert_eq!(text(&v, "a${EMPTY}b"), "ab");
        // Unset: empty, with Docker Compose's warning.
        let out = with(&v, "x${NOPE}y").unwrap();
        assert_eq!(out.text, "xy");
        assert_eq!(
            out.warnings,
            ["The \"NOPE\" variable is not set. Defaulting to a blank string."]
        );
    }

    #[test]
    fn defaults_distinguish_unset_from_empty() {
        let v = [("EMPTY", ""), ("SET", "yes")];
        assert_eq!(text(&v, "${EMPTY:-d}"), "d");
        assert_eq!(text(&v, "${EMPTY-d}"), "");
        assert_eq!(text(&v, "${UNSET-d}"), "d");
        assert_eq!(text(&v, "${SET:-d}"), "yes");
        assert_eq!(text(&v, "${SET:+alt}"), "alt");
        assert_eq!(text(&v, "${EMPTY:+alt}"), "");
        assert_eq!(text(&v, "${EMPTY+alt}"), "alt");
        assert_eq!(text(&v, "${UNSET+alt}"), "");
        assert_eq!(text(&v, "${UNSET:-}"), "");
        assert!(with(&v, "${UNSET:-d}").unwrap().warnings.is_empty());
    }

    #[test]
    fn required_variables_fail_with_their_message() {
        let v = [("EMPTY", ""), ("WHY", "set it")];
        assert_eq!(
            with(&v, "${DB_PASS:?a password is needed}").unwrap_err(),
            "required variable DB_PASS is missing a value: a password is needed"
        );
        assert!(with(&v, "${EMPTY:?no}").is_err());
        assert_eq!(text(&v, "${EMPTY?no}"), "");
        assert_eq!(
            with(&v, "${X?$WHY}").unwrap_err(),
            "required variable X is missing a value: set it"
        );
    }

    #[test]
    fn nesting_and_escapes() {
        let v = [("FOO", "foo"), ("EMPTY", "")];
        assert_eq!(text(&v, "${UNSET:-${FOO}}"), "foo");
        assert_eq!(text(&v, "${UNSET:-${EMPTY:-deep}}"), "deep");
        assert_eq!(text(&v, "${UNSET:-a}b}"), "ab}");
        assert_eq!(text(&v, "$$FOO and $${FOO}"), "$FOO and ${FOO}");
        assert_eq!(text(&v, "${UNSET:-$$x}"), "$x");
        // A `$` that starts nothing stays.
        assert_eq!(text(&v, "cost: 5$ or $1 or $-"), "cost: 5$ or $1 or $-");
        assert_eq!(text(&v, "end$"), "end$");
    }

    #[test]
    fn malformed_expressions_are_errors() {
        for bad in [
            "${",
            "${FOO",
            "${}",
            "${1X}",
            "${FOO/a/b}",
            "${FOO:x}",
            "${FOO:-${BAR}",
        ] {
            let err = with(&[], bad).unwrap_err();
            assert!(
                err.starts_with("invalid interpolation format"),
                "{bad}: {err}"
            );
        }
    }
}
