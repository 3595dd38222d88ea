//! Instruction flags (`--name`, `--name=value`), checked against the set each
//! instruction accepts, as BuildKit's `BFlags` does: unknown flags and repeated
//! single-valued flags are errors, booleans accept `true`/`false` in any case or no
//! value, and list flags (`--mount`, `--exclude`) may repeat. Also Go's duration syntax
//! (`1m30s`), which `HEALTHCHECK` durations are written in.

use super::{suggest, ErrorKind, ParseError, Pos};

/// What a flag takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    Text,
    List,
}

/// A flag word from the instruction line and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FlagWord {
    pub text: String,
    pub pos: Pos,
}

/// The flags given, by name: each value with the position of its flag word.
#[derive(Debug, Default)]
pub(crate) struct Flags {
    given: Vec<(&'static str, Vec<(String, Pos)>)>,
}

impl Flags {
    /// Check `words` against `spec` (name and kind of each accepted flag).
    pub fn parse(words: &[FlagWord], spec: &[(&'static str, Kind)]) -> Result<Flags, ParseError> {
        let mut flags = Flags::default();
        for word in words {
            let err = |kind| ParseError::new(word.pos, kind);
            let (flag, value) = match word.text.split_once('=') {
                Some((f, v)) => (f, Some(v)),
                None => (word.text.as_str(), None),
            };
            let name = flag.strip_prefix("--").unwrap_or(flag);
            let Some(&(name, kind)) = spec.iter().find(|(n, _)| *n == name) else {
                let names: Vec<&str> = spec.iter().map(|(n, _)| *n).collect();
                return Err(err(ErrorKind::UnknownFlag {
                    flag: flag.to_string(),
                    suggestion: suggest(name, &names, true),
                }));
            };
            let value = flag_value(flag, kind, value).map_err(err)?;
            match flags.given.iter_mut().find(|(n, _)| *n == name) {
                Some(_) if kind != Kind::List => {
                    return Err(err(ErrorKind::DuplicateFlag(flag.to_string())))
                }
                Some((_, values)) => values.push((value, word.pos)),
                None => flags.given.push((name, vec![(value, word.pos)])),
            }
        }
        Ok(flags)
    }

    /// Every value given for `name`, with where its flag word is.
    pub fn entries(&self, name: &str) -> &[(String, Pos)] {
        self.given
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(&[], |(_, v)| v.as_slice())
    }

    /// A boolean flag's value, `None` when not given.
    pub fn bool(&self, name: &str) -> Option<bool> {
        self.entries(name).first().map(|(v, _)| v == "true")
    }

    /// A text flag's value, `None` when not given.
    pub fn text(&self, name: &str) -> Option<String> {
        self.entries(name).first().map(|(v, _)| v.clone())
    }

    /// Every value of a list flag, in order.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.entries(name).iter().map(|(v, _)| v.clone()).collect()
    }
}

/// The value a flag word gives, normalised for booleans (`"true"` / `"false"`).
fn flag_value(flag: &str, kind: Kind, value: Option<&str>) -> Result<String, ErrorKind> {
    match (kind, value) {
        (Kind::Bool, None) => Ok("true".to_string()),
        (Kind::Bool, Some("")) => Err(ErrorKind::MissingFlagValue(flag.into())),
        (Kind::Bool, Some(v)) => match v.to_lowercase().as_str() {
            "true" => Ok("true".to_string()),
            "false" => Ok("false".to_string()),
            _ => Err(ErrorKind::NotBoolean {
                flag: flag.to_string(),
                value: v.to_string(),
            }),
        },
        (Kind::Text | Kind::List, None) => Err(ErrorKind::MissingFlagValue(flag.into())),
        (Kind::Text | Kind::List, Some(v)) => Ok(v.to_string()),
    }
}

const NANOS_PER: [(&str, u64); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Parse a Go duration (`300ms`, `-1.5h`, `2h45m`) into signed nanoseconds.
pub(crate) fn go_duration(text: &str) -> Result<i64, &'static str> {
    let (negative, mut s) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err("invalid duration");
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        let (nanos, rest) = duration_term(s)?;
        total = total.checked_add(nanos).ok_or("duration out of range")?;
        s = rest;
    }
    let total = i64::try_from(total).map_err(|_| "duration out of range")?;
    Ok(if negative { -total } else { total })
}

/// One `<number><unit>` term of a duration: its nanoseconds and the rest of the text.
fn duration_term(s: &str) -> Result<(u64, &str), &'static str> {
    let int_len = s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let (int_part, mut rest) = s.split_at(int_len);
    let mut frac_part = "";
    if let Some(after_dot) = rest.strip_prefix('.') {
        let len = after_dot.len()
            - after_dot
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .len();
        (frac_part, rest) = after_dot.split_at(len);
        if int_part.is_empty() && frac_part.is_empty() {
            return Err("invalid duration");
        }
    } else if int_part.is_empty() {
        return Err("invalid duration");
    }
    let unit_len = rest
        .find(|c: char| c == '.' || c.is_ascii_digit())
        .unwrap_or(rest.len());
    if unit_len == 0 {
        return Err("missing unit in duration");
    }
    let (unit, rest) = rest.split_at(unit_len);
    let &(_, scale) = NANOS_PER
        .iter()
        .find(|(u, _)| *u == unit)
        .ok_or("unknown unit in duration")?;
    let whole: u64 = if int_part.is_empty() {
        0
    } else {
        int_part.parse().map_err(|_| "duration out of range")?
    };
    let mut nanos = whole.checked_mul(scale).ok_or("duration out of range")?;
    nanos = nanos
        .checked_add(fraction_nanos(frac_part, scale))
        .ok_or("duration out of range")?;
    Ok((nanos, rest))
}

/// The nanoseconds `0.<digits>` of a unit is worth (digits past what fits are ignored).
fn fraction_nanos(digits: &str, scale: u64) -> u64 {
    let (mut value, mut divisor) = (0u64, 1f64);
    for d in digits.bytes() {
        match value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(d - b'0')))
        {
            Some(v) => {
                value = v;
                divisor *= 10.0;
            }
            None => break,
        }
    }
    (value as f64 * (scale as f64 / divisor)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<FlagWord> {
        list.iter()
            .enumerate()
            .map(|(i, t)| FlagWord {
                text: t.to_string(),
                pos: Pos {
                    line: 1,
                    column: 10 * i + 1,
                },
            })
            .collect()
    }

    const SPEC: &[(&str, Kind)] = &[
        ("link", Kind::Bool),
        ("from", Kind::Text),
        ("exclude", Kind::List),
    ];

    fn parse(list: &[&str]) -> Result<Flags, ParseError> {
        Flags::parse(&words(list), SPEC)
    }

    fn kind(list: &[&str]) -> ErrorKind {
        parse(list).unwrap_err().kind
    }

    #[test]
    fn values_by_kind() {
        let f = parse(&["--link", "--from=build", "--exclude=a", "--exclude=b"]).unwrap();
        assert_eq!(f.bool("link"), Some(true));
        assert_eq!(f.text("from").as_deref(), Some("build"));
        assert_eq!(f.list("exclude"), ["a", "b"]);
        assert_eq!(f.bool("missing"), None);
        assert_eq!(parse(&["--link=FALSE"]).unwrap().bool("link"), Some(false));
        assert_eq!(parse(&["--link=True"]).unwrap().bool("link"), Some(true));
        assert_eq!(
            parse(&["--from="]).unwrap().text("from").as_deref(),
            Some("")
        );
    }

    #[test]
    fn unknown_flag_names_the_flag_and_suggests() {
        let err = parse(&["--link", "--form=x"]).unwrap_err();
        assert_eq!(err.column, 11);
        assert_eq!(
            err.kind.to_string(),
            "unknown flag: --form (did you mean from?)"
        );
        assert_eq!(kind(&["--zzzzzz"]).to_string(), "unknown flag: --zzzzzz");
    }

    #[test]
    fn bad_values() {
        assert_eq!(
            kind(&["--from"]),
            ErrorKind::MissingFlagValue("--from".into())
        );
        assert_eq!(
            kind(&["--exclude"]),
            ErrorKind::MissingFlagValue("--exclude".into())
        );
        assert_eq!(
            kind(&["--link="]),
            ErrorKind::MissingFlagValue("--link".into())
        );
        assert_eq!(
            kind(&["--link=yes"]),
            ErrorKind::NotBoolean {
                flag: "--link".into(),
                value: "yes".into()
            }
        );
        assert_eq!(
            kind(&["--from=a", "--from=b"]),
            ErrorKind::DuplicateFlag("--from".into())
        );
    }

    #[test]
    fn durations() {
        assert_eq!(go_duration("0"), Ok(0));
        assert_eq!(go_duration("5s"), Ok(5_000_000_000));
        assert_eq!(go_duration("1m30s"), Ok(90_000_000_000));
        assert_eq!(go_duration("1.5h"), Ok(5_400_000_000_000));
        assert_eq!(go_duration(".5s"), Ok(500_000_000));
        assert_eq!(go_duration("300ms"), Ok(300_000_000));
        assert_eq!(go_duration("2µs"), Ok(2_000));
        assert_eq!(go_duration("-1s"), Ok(-1_000_000_000));
        assert_eq!(go_duration("50ns"), Ok(50));
        assert!(go_duration("").is_err());
        assert!(go_duration("5").is_err());
        assert!(go_duration("5x").is_err());
        assert!(go_duration("s").is_err());
        assert!(go_duration(".s").is_err());
        assert!(go_duration("9999999999h").is_err());
    }
}
