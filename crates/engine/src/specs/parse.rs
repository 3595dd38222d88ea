//! The syntax of values as Docker's flags and compose files write them (a duration, a
//! number of CPUs, an exposed port range, an env file), shared by every front end that
//! reads text, so they read it alike. Rules about the values are the specs' own.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{EngineError, Result};

/// Go's durations as Docker's flags take them (`30s`, `1m30s`, `500ms`, `2h`; a bare
/// `0`), in nanoseconds.
pub fn duration(s: &str) -> Option<i64> {
    let mut total: f64 = 0.0;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    if rest == "0" {
        return Some(0);
    }
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += n * mult;
        rest = &rest[unit_end..];
    }
    (total >= 0.0).then_some(total as i64)
}

/// [`duration`] of a flag, with the docker CLI's words when it is not one.
pub fn flag_duration(flag: &str, s: &str) -> Result<i64> {
    duration(s).ok_or_else(|| {
        EngineError::Invalid(format!(
            "invalid argument {s:?} for \"{flag}\" flag: time: invalid duration"
        ))
    })
}

/// `--cpus`: a positive number of CPUs, in billionths.
pub fn cpus(s: &str) -> Result<i64> {
    let c: f64 = s
        .parse()
        .map_err(|_| EngineError::Invalid(format!("invalid argument {s:?} for \"--cpus\" flag")))?;
    if c <= 0.0 || !c.is_finite() {
        return Err(EngineError::Invalid(format!(
            "invalid argument {s:?} for \"--cpus\" flag: must be positive"
        )));
    }
    Ok((c * 1e9) as i64)
}

/// `--expose PORT[-END][/PROTO]` as Docker's `ExposedPorts` (`80/tcp: {}`); None when
/// none is given.
pub fn exposed_ports(list: &[String]) -> Result<Option<BTreeMap<String, serde_json::Value>>> {
    if list.is_empty() {
        return Ok(None);
    }
    let mut out = BTreeMap::new();
    for e in list {
        let (ports, proto) = e.split_once('/').unwrap_or((e, "tcp"));
        let bad = || EngineError::Invalid(format!("invalid range format for --expose: {e}"));
        let (a, b) = ports.split_once('-').unwrap_or((ports, ports));
        let a: u16 = a.parse().map_err(|_| bad())?;
        let b: u16 = b.parse().map_err(|_| bad())?;
        if b < a || !matches!(proto, "tcp" | "udp" | "sctp") {
            return Err(bad());
        }
        for p in a..=b {
            out.insert(format!("{p}/{proto}"), serde_json::json!({}));
        }
    }
    Ok(Some(out))
}

/// An `--env` value: `NAME=VALUE` as it is, `NAME` alone with the value this process
/// has (left out, None, when it has none).
pub fn env_entry(e: &str) -> Option<String> {
    if e.contains('=') {
        return Some(e.to_string());
    }
    std::env::var(e).ok().map(|v| format!("{e}={v}"))
}

/// An `--env-file`: `NAME=VALUE` lines, and `NAME` alone for the value this process has
/// (left out when it has none); blank lines and `#` comments skipped.
pub fn env_file(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| EngineError::Invalid(format!("open {}: {e}", path.display())))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let l = line.trim_start();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        out.extend(env_entry(l));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(duration("30s"), Some(30_000_000_000));
        assert_eq!(duration("1m30s"), Some(90_000_000_000));
        assert_eq!(duration("500ms"), Some(500_000_000));
        assert_eq!(duration("0"), Some(0));
        assert_eq!(duration("1.5s"), Some(1_500_000_000));
        assert_eq!(duration("10"), None);
        assert_eq!(duration("s"), None);
        assert_eq!(duration("3 days"), None);
        assert_eq!(
            flag_duration("--health-interval", "3 days")
                .unwrap_err()
                .to_string(),
            "invalid argument \"3 days\" for \"--health-interval\" flag: time: invalid duration"
        );
    }

    #[test]
    fn cpus_are_positive_billionths() {
        assert_eq!(cpus("1.5").unwrap(), 1_500_000_000);
        assert!(cpus("0").is_err());
        assert!(cpus("many").is_err());
    }

    #[test]
    fn exposed_ranges_become_one_entry_per_port() {
        let m = exposed_ports(&["80-81/udp".into(), "9000".into()])
            .unwrap()
            .unwrap();
        assert_eq!(
            m.keys().collect::<Vec<_>>(),
            ["80/udp", "81/udp", "9000/tcp"]
        );
        assert!(exposed_ports(&["81-80".into()]).is_err());
        assert!(exposed_ports(&[]).unwrap().is_none());
    }

    #[test]
    fn env_files_skip_comments_and_take_bare_names_from_here() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("env");
        std::fs::write(&p, "# c\n\nA=1\n  B = 2\nPATH\nBERTH_SURELY_UNSET_X\n").unwrap();
        let env = env_file(&p).unwrap();
        assert_eq!(env[..2], ["A=1".to_string(), "B = 2".to_string()]);
        assert!(env[2].starts_with("PATH="));
        assert_eq!(env.len(), 3);
        assert_eq!(env_entry("A=1").as_deref(), Some("A=1"));
        assert!(env_entry("PATH").unwrap().starts_with("PATH="));
        assert_eq!(env_entry("BERTH_SURELY_UNSET_X"), None);
        let missing = env_file(&dir.path().join("nope")).unwrap_err().to_string();
        assert!(missing.starts_with("open "), "{missing}");
    }
}
