//! `.env` files as Docker Compose reads them: `KEY=VALUE` lines (an `export ` before
//! the key is allowed), `#` comments and blank lines skipped; a value in single quotes
//! is taken as it is, one in double quotes has its escapes (`\n`, `\t`, `\\`, `\"`)
//! turned into characters and is interpolated, an unquoted one loses a ` #` comment
//! and surrounding blanks and is interpolated. Interpolation sees the variables
//! defined above in the same file first, then `environ`.

use std::collections::BTreeMap;

/// The variables of `.env` text, in order; the errors name the line.
pub fn parse(
    text: &str,
    environ: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, String> {
    let mut vars: Vec<(String, String)> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line
            .strip_prefix("export ")
            .map(str::trim_start)
            .unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {}: {line:?} has no '='", n + 1));
        };
        let key = key.trim();
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            return Err(format!("line {}: invalid variable name {key:?}", n + 1));
        }
        let value = value.trim_start();
        let lookup = |name: &str| {
            vars.iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .or_else(|| environ.get(name).cloned())
        };
        let interpolate = |v: &str| {
            crate::interpolate::interpolate(v, &lookup)
                .map(|i| i.text)
                .map_err(|e| format!("line {}: {e}", n + 1))
        };
        let unterminated = || format!("line {}: unterminated quoted value of {key}", n + 1);
        let parsed = if let Some(rest) = value.strip_prefix('\'') {
            rest.split_once('\'')
                .ok_or_else(unterminated)?
                .0
                .to_string()
        } else if let Some(rest) = value.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = rest.chars();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '"' => {
                        closed = true;
                        break;
                    }
                    '\\' => match chars.next() {
                        Some('n') => out.push('\n'),
                        Some('t') => out.push('\t'),
                        Some('r') => out.push('\r'),
                        Some(other) => {
                            if !matches!(other, '"' | '\\') {
                                out.push('\\');
                            }
                            out.push(other);
                        }
                        None => out.push('\\'),
                    },
                    c => out.push(c),
                }
            }
            if !closed {
                return Err(unterminated());
            }
            interpolate(&out)?
        } else {
            let v = match value.find(" #") {
                Some(i) => &value[..i],
                None => value,
            };
            interpolate(v.trim_end())?
        };
        vars.push((key.to_string(), parsed));
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(text: &str) -> Vec<(String, String)> {
        let environ: BTreeMap<String, String> = [("HOME".to_string(), "/root".to_string())]
            .into_iter()
            .collect();
        parse(text, &environ).unwrap()
    }

    #[test]
    fn lines_quotes_comments_and_exports() {
        let vars = env(concat!(
            "# a comment\n",
            "\n",
            "PLAIN=value # not part of it\n",
            "export EXPORTED = spaced\n",
            "SINGLE='$HOME stays # too'\n",
            "DOUBLE=\"line\\nbreak \\\"q\\\" $HOME\"\n",
            "EMPTY=\n",
            "REF=${PLAIN}-${MISSING:-d}\n",
            "URL=http://x/#anchor\n",
        ));
        let get = |k: &str| vars.iter().find(|(n, _)| n == k).unwrap().1.as_str();
        assert_eq!(get("PLAIN"), "value");
        assert_eq!(get("EXPORTED"), "spaced");
        assert_eq!(get("SINGLE"), "$HOME stays # too");
        assert_eq!(get("DOUBLE"), "line\nbreak \"q\" /root");
        assert_eq!(get("EMPTY"), "");
        assert_eq!(get("REF"), "value-d");
        assert_eq!(get("URL"), "http://x/#anchor");
    }

    #[test]
    fn bad_lines_are_named() {
        let environ = BTreeMap::new();
        assert_eq!(
            parse("A=1\nnonsense\n", &environ).unwrap_err(),
            "line 2: \"nonsense\" has no '='"
        );
        assert!(parse("A='open\n", &environ)
            .unwrap_err()
            .contains("unterminated quoted value of A"));
        assert!(parse("B=${X:?needed}\n", &environ)
            .unwrap_err()
            .starts_with("line 1: required variable X"));
        assert!(parse("BAD KEY=1\n", &environ)
            .unwrap_err()
            .contains("invalid variable name"));
    }
}
