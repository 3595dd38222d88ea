//! Splitting one logical Dockerfile line: keyword, `--flags`, and the argument forms
//! BuildKit's line parsers recognise (whitespace-separated words, quoted words,
//! `name=value` pairs, JSON arrays). Quotes and escapes are kept in arguments here;
//! they are removed when a value is expanded. Offsets are byte offsets into the text
//! given, so callers can turn them into line and column.

use super::ErrorKind;

/// BuildKit's `[\t\v\f\r ]`: the blanks that separate a keyword from its arguments
/// (a narrower set than Unicode whitespace).
pub(crate) fn is_blank(c: char) -> bool {
    matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

/// A line split into keyword, flags and the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Split<'a> {
    pub keyword: &'a str,
    pub keyword_offset: usize,
    /// Flag words with quotes and escapes removed, and where each starts.
    pub flags: Vec<(String, usize)>,
    /// The arguments after the flags, trimmed.
    pub args: &'a str,
    pub args_offset: usize,
}

/// Split `line` at the first run of blanks into keyword and rest, then take the
/// leading `--flag` words off the rest.
pub(crate) fn split_command(line: &str, escape: char) -> Split<'_> {
    let keyword_offset = line.len() - line.trim_start().len();
    let trimmed = line.trim();
    let (keyword, rest, rest_offset) = match trimmed.find(is_blank) {
        Some(i) => {
            let after = &trimmed[i..];
            let rest = after.trim_start_matches(is_blank);
            let offset = keyword_offset + i + (after.len() - rest.len());
            (&trimmed[..i], rest, offset)
        }
        None => (trimmed, "", keyword_offset + trimmed.len()),
    };
    let (flags, args_start) = extract_flags(rest, escape);
    let remaining = &rest[args_start..];
    let args = remaining.trim();
    let args_offset = rest_offset + args_start + (remaining.len() - remaining.trim_start().len());
    Split {
        keyword,
        keyword_offset,
        flags: flags
            .into_iter()
            .map(|(f, o)| (f, o + rest_offset))
            .collect(),
        args,
        args_offset,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Blank,
    Word,
    Quoted(char),
}

/// The `--flag` words at the start of `rest`, and the byte offset where the arguments
/// begin. A bare `--` ends the flags and is dropped. Quotes are removed from flag words
/// and the escape character escapes the next character.
fn extract_flags(rest: &str, escape: char) -> (Vec<(String, usize)>, usize) {
    let chars: Vec<(usize, char)> = rest.char_indices().collect();
    let mut flags = Vec::new();
    let (mut word, mut start, mut blank_ok) = (String::new(), 0, false);
    let mut phase = Phase::Blank;
    let mut i = 0;
    while let Some(&(offset, ch)) = chars.get(i) {
        match phase {
            Phase::Blank => {
                if ch.is_whitespace() {
                    i += 1;
                    continue;
                }
                if ch != '-' || chars.get(i + 1).map(|c| c.1) != Some('-') {
                    return (flags, offset);
                }
                phase = Phase::Word;
                start = offset;
                continue;
            }
            Phase::Word if ch.is_whitespace() => {
                if word == "--" {
                    return (flags, offset);
                }
                if blank_ok || !word.is_empty() {
                    flags.push((std::mem::take(&mut word), start));
                }
                (phase, blank_ok) = (Phase::Blank, false);
            }
            Phase::Word if ch == '\'' || ch == '"' => {
                (phase, blank_ok) = (Phase::Quoted(ch), true);
            }
            Phase::Quoted(q) if ch == q => phase = Phase::Word,
            Phase::Word | Phase::Quoted(_) if ch == escape => match chars.get(i + 1) {
                Some(&(_, next)) => {
                    word.push(next);
                    i += 1;
                }
                None if phase != Phase::Word => phase = Phase::Word,
                None => {}
            },
            Phase::Word | Phase::Quoted(_) => word.push(ch),
        }
        i += 1;
    }
    if phase != Phase::Blank && word != "--" && (blank_ok || !word.is_empty()) {
        flags.push((word, start));
    }
    (flags, rest.len())
}

/// Words separated by whitespace, with quoted stretches kept together. Quotes and
/// escapes stay in the words (`"a b"` stays `"a b"`); only an escape character at the
/// very end is dropped. Returns each word and its offset.
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<(String, usize)> {
    let chars: Vec<(usize, char)> = rest.char_indices().collect();
    let mut words = Vec::new();
    let (mut word, mut start, mut blank_ok) = (String::new(), 0, false);
    let mut phase = Phase::Blank;
    let mut i = 0;
    while let Some(&(offset, ch)) = chars.get(i) {
        i += 1;
        if phase == Phase::Blank {
            if ch.is_whitespace() {
                continue;
            }
            phase = Phase::Word;
            start = offset;
        }
        match phase {
            Phase::Word if ch.is_whitespace() => {
                if blank_ok || !word.is_empty() {
                    words.push((std::mem::take(&mut word), start));
                }
                (phase, blank_ok) = (Phase::Blank, false);
                continue;
            }
            Phase::Word if ch == '\'' || ch == '"' => {
                (phase, blank_ok) = (Phase::Quoted(ch), true);
            }
            Phase::Quoted(q) if ch == q => phase = Phase::Word,
            _ => {}
        }
        let escapes = match phase {
            Phase::Word => true,
            Phase::Quoted(q) => q != '\'',
            Phase::Blank => false,
        };
        if ch == escape && escapes {
            let Some(&(_, next)) = chars.get(i) else {
                phase = Phase::Word;
                continue;
            };
            word.push(ch);
            word.push(next);
            i += 1;
            continue;
        }
        word.push(ch);
    }
    if phase != Phase::Blank && (blank_ok || !word.is_empty()) {
        words.push((word, start));
    }
    words
}

/// Split at runs of blanks (BuildKit's `[\t\v\f\r ]+`), with offsets.
pub(crate) fn split_blanks(rest: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in rest.char_indices() {
        match (is_blank(c), start) {
            (true, Some(s)) => {
                out.push((rest[s..i].to_string(), s));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((rest[s..].to_string(), s));
    }
    out
}

/// `rest` as a JSON array of strings, if it is one. `Ok(None)` when it is not a JSON
/// array at all (the caller falls back to shell form); an error when it is an array
/// with something other than strings in it.
pub(crate) fn parse_json(rest: &str) -> Result<Option<Vec<String>>, ErrorKind> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Ok(None);
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(rest) else {
        return Ok(None);
    };
    values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            _ => Err(ErrorKind::JsonNotStrings),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Arguments that are a JSON array or else one shell-form string (`RUN`, `CMD`…):
/// the items and whether they were JSON.
pub(crate) fn maybe_json(rest: &str) -> Result<(Vec<String>, bool), ErrorKind> {
    if rest.is_empty() {
        return Ok((Vec::new(), false));
    }
    Ok(match parse_json(rest)? {
        Some(items) => (items, true),
        None => (vec![rest.to_string()], false),
    })
}

/// Arguments that are a JSON array or else blank-separated words (`COPY`, `VOLUME`…).
pub(crate) fn maybe_json_list(rest: &str) -> Result<(Vec<String>, bool), ErrorKind> {
    Ok(match parse_json(rest)? {
        Some(items) => (items, true),
        None => (
            split_blanks(rest).into_iter().map(|(w, _)| w).collect(),
            false,
        ),
    })
}

/// One `ENV`/`LABEL` pair as written, and where its word starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pair {
    pub key: String,
    pub value: String,
    pub legacy: bool,
    pub offset: usize,
}

/// `ENV`/`LABEL` arguments: `name=value …`, or the legacy `name value` where the value
/// is the rest of the line. Which form is decided by whether the first word has an
/// `=`. Errors carry the offset of the word at fault.
pub(crate) fn name_values(
    rest: &str,
    instruction: &'static str,
    escape: char,
) -> Result<Vec<Pair>, (ErrorKind, usize)> {
    let words = parse_words(rest, escape);
    let Some((first, _)) = words.first() else {
        return Ok(Vec::new());
    };
    if !first.contains('=') {
        let Some(i) = rest.find(is_blank) else {
            return Err((ErrorKind::TwoArguments(instruction), 0));
        };
        let value = rest[i..].trim_start_matches(is_blank);
        return Ok(vec![Pair {
            key: rest[..i].to_string(),
            value: value.to_string(),
            legacy: true,
            offset: 0,
        }]);
    }
    words
        .into_iter()
        .map(|(word, offset)| match word.split_once('=') {
            Some((k, v)) => Ok(Pair {
                key: k.to_string(),
                value: v.to_string(),
                legacy: false,
                offset,
            }),
            None => Err((ErrorKind::MissingEquals(word), offset)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        parse_words(s, '\\').into_iter().map(|(w, _)| w).collect()
    }

    fn flags(line: &str) -> (Vec<String>, String) {
        let split = split_command(line, '\\');
        (
            split.flags.into_iter().map(|(f, _)| f).collect(),
            split.args.to_string(),
        )
    }

    #[test]
    fn words_keep_quotes_and_escapes() {
        assert_eq!(words("foo"), ["foo"]);
        assert_eq!(words("foo bar"), ["foo", "bar"]);
        assert_eq!(words("foo\\ bar"), ["foo\\ bar"]);
        assert_eq!(words("foo=bar"), ["foo=bar"]);
        assert_eq!(words("foo bar 'abc xyz'"), ["foo", "bar", "'abc xyz'"]);
        assert_eq!(words("foo bar \"abc xyz\""), ["foo", "bar", "\"abc xyz\""]);
        assert_eq!(words("föo bàr \"âbc xÿz\""), ["föo", "bàr", "\"âbc xÿz\""]);
        assert_eq!(words("a=\"x \\\" y\" b"), ["a=\"x \\\" y\"", "b"]);
        assert_eq!(
            words("'a\\' b"),
            ["'a\\'", "b"],
            "no escapes in single quotes"
        );
        assert_eq!(words("\"\""), ["\"\""]);
        assert_eq!(words("end\\"), ["end"]);
    }

    #[test]
    fn word_offsets() {
        let w = parse_words("a  \"b c\" d", '\\');
        assert_eq!(w[1], ("\"b c\"".to_string(), 3));
        assert_eq!(w[2].1, 9);
    }

    #[test]
    fn keyword_flags_and_args() {
        let split = split_command("  COPY --from=build --chown=1:1 a b ", '\\');
        assert_eq!(split.keyword, "COPY");
        assert_eq!(split.keyword_offset, 2);
        assert_eq!(
            split.flags,
            [
                ("--from=build".to_string(), 7),
                ("--chown=1:1".to_string(), 20)
            ]
        );
        assert_eq!(split.args, "a b");
        assert_eq!(split.args_offset, 32);
    }

    #[test]
    fn flags_like_buildkit_testfile() {
        assert_eq!(flags("COPY foo /tmp/"), (vec![], "foo /tmp/".into()));
        assert_eq!(
            flags("COPY --user=me --doit=true foo /tmp/"),
            (
                vec!["--user=me".into(), "--doit=true".into()],
                "foo /tmp/".into()
            )
        );
        assert_eq!(
            flags("COPY --doit=true -- foo /tmp/"),
            (vec!["--doit=true".into()], "foo /tmp/".into())
        );
        assert_eq!(flags("COPY -- foo /tmp/"), (vec![], "foo /tmp/".into()));
        assert_eq!(
            flags("CMD --doit [ \"a\", \"b\" ]"),
            (vec!["--doit".into()], "[ \"a\", \"b\" ]".into())
        );
        assert_eq!(
            flags("CMD --doit -- [ ]"),
            (vec!["--doit".into()], "[ ]".into())
        );
        assert_eq!(flags("RUN --x"), (vec!["--x".into()], "".into()));
        assert_eq!(flags("RUN -x y"), (vec![], "-x y".into()));
    }

    #[test]
    fn flag_quotes_and_escapes_are_removed() {
        assert_eq!(
            flags("RUN --mount=\"type=secret,id=a b\" --x=a\\ b cmd"),
            (
                vec!["--mount=type=secret,id=a b".into(), "--x=a b".into()],
                "cmd".into()
            )
        );
    }

    #[test]
    fn keyword_only() {
        let split = split_command("HEALTHCHECK", '\\');
        assert_eq!(split.keyword, "HEALTHCHECK");
        assert_eq!(split.args, "");
        assert!(split.flags.is_empty());
    }

    #[test]
    fn json_arrays() {
        assert_eq!(parse_json("[]"), Ok(Some(vec![])));
        assert_eq!(
            parse_json("  [ \"a\", \"b\" ] "),
            Ok(Some(vec!["a".into(), "b".into()]))
        );
        assert_eq!(
            parse_json(r#"["\" \\ \/ \b \f \n \r \t \u0000"]"#),
            Ok(Some(vec!["\" \\ / \u{8} \u{c} \n \r \t \0".into()]))
        );
        assert_eq!(parse_json("['single']"), Ok(None));
        assert_eq!(parse_json("[\"unterminated]"), Ok(None));
        assert_eq!(parse_json("[\"a\""), Ok(None));
        assert_eq!(parse_json("echo [\"a\"]"), Ok(None));
        assert_eq!(parse_json("[1, 2]"), Err(ErrorKind::JsonNotStrings));
        assert_eq!(
            parse_json("[ \"echo\", [ \"nested json\" ] ]"),
            Err(ErrorKind::JsonNotStrings)
        );
    }

    #[test]
    fn json_or_shell() {
        assert_eq!(maybe_json(""), Ok((vec![], false)));
        assert_eq!(maybe_json("echo  hi"), Ok((vec!["echo  hi".into()], false)));
        assert_eq!(maybe_json("[\"echo\"]"), Ok((vec!["echo".into()], true)));
        assert_eq!(
            maybe_json_list("a\t b"),
            Ok((vec!["a".into(), "b".into()], false))
        );
        assert_eq!(
            maybe_json_list("[\"test file\", \"/tmp\"]"),
            Ok((vec!["test file".into(), "/tmp".into()], true))
        );
    }

    #[test]
    fn name_values_both_forms() {
        let pairs = name_values("name=value name2=\"a b\"", "ENV", '\\').unwrap();
        assert_eq!(pairs.len(), 2);
        assert_eq!(
            (pairs[1].key.as_str(), pairs[1].value.as_str()),
            ("name2", "\"a b\"")
        );
        assert!(!pairs[0].legacy);
        let legacy = name_values("name some  value", "ENV", '\\').unwrap();
        assert_eq!(legacy[0].key, "name");
        assert_eq!(legacy[0].value, "some  value");
        assert!(legacy[0].legacy);
        assert_eq!(
            name_values("PATH", "ENV", '\\'),
            Err((ErrorKind::TwoArguments("ENV"), 0))
        );
        assert_eq!(
            name_values("a=b c", "LABEL", '\\'),
            Err((ErrorKind::MissingEquals("c".into()), 4))
        );
        assert_eq!(name_values("", "ENV", '\\'), Ok(vec![]));
    }
}
