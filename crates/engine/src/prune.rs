//! Prune filters (`--filter until=…`, `label=…`, `label!=…`), shared by container, image,
//! volume and system prune.

use std::collections::BTreeMap;

use crate::error::{EngineError, Result};

/// A time as Docker's `--since`/`--until`/`until=` take it: RFC 3339, Unix seconds, or
/// a duration back from now (`10m`); as RFC 3339 in UTC.
pub fn parse_time(s: &str) -> Result<String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t
            .with_timezone(&chrono::Utc)
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true));
    }
    if let Ok(secs) = s.parse::<f64>() {
        let t = chrono::DateTime::from_timestamp(secs.trunc() as i64, (secs.fract() * 1e9) as u32)
            .ok_or_else(|| EngineError::Invalid(format!("invalid time {s}")))?;
        return Ok(t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true));
    }
    let units = [("ms", 1i64), ("s", 1000), ("m", 60_000), ("h", 3_600_000)];
    for (u, ms) in units {
        if let Some(n) = s.strip_suffix(u) {
            if let Ok(v) = n.parse::<f64>() {
                let t = chrono::Utc::now() - chrono::Duration::milliseconds((v * ms as f64) as i64);
                return Ok(t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true));
            }
        }
    }
    Err(EngineError::Invalid(format!(
        "invalid value for time: {s:?} (use RFC 3339, a Unix timestamp or a duration like 10m)"
    )))
}

/// Which objects a prune may remove, beyond its own rules.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PruneFilter {
    /// Only objects created before this time (RFC 3339).
    until: Option<chrono::DateTime<chrono::FixedOffset>>,
    /// (key, value, negated): `label=k`, `label=k=v`, `label!=k`, `label!=k=v`.
    labels: Vec<(String, Option<String>, bool)>,
}

impl PruneFilter {
    /// From `key=value` pairs; `until` values must already be RFC 3339 times.
    pub fn parse(pairs: &[(String, String)], allow_until: bool) -> Result<PruneFilter> {
        let mut f = PruneFilter::default();
        for (k, v) in pairs {
            match k.as_str() {
                "until" if allow_until => {
                    f.until =
                        Some(chrono::DateTime::parse_from_rfc3339(v).map_err(|_| {
                            EngineError::Invalid(format!("invalid until filter: {v}"))
                        })?);
                }
                "label" | "label!" => {
                    let (lk, lv) = match v.split_once('=') {
                        Some((a, b)) => (a.to_string(), Some(b.to_string())),
                        None => (v.clone(), None),
                    };
                    f.labels.push((lk, lv, k == "label!"));
                }
                _ => return Err(EngineError::Invalid(format!("invalid filter '{k}'"))),
            }
        }
        Ok(f)
    }

    /// May an object created at `created` with `labels` be pruned?
    pub fn allows(&self, created: &str, labels: &BTreeMap<String, String>) -> bool {
        if let Some(u) = &self.until {
            match chrono::DateTime::parse_from_rfc3339(created) {
                Ok(c) if c < *u => {}
                _ => return false,
            }
        }
        self.labels.iter().all(|(k, v, negated)| {
            let has = match v {
                Some(v) => labels.get(k) == Some(v),
                None => labels.contains_key(k),
            };
            has != *negated
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_and_labels_select_like_docker() {
        let pairs = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>()
        };
        let labels: BTreeMap<String, String> = [("tier".to_string(), "web".to_string())]
            .into_iter()
            .collect();
        let f = PruneFilter::parse(&pairs(&[("until", "2026-01-02T00:00:00Z")]), true).unwrap();
        assert!(f.allows("2026-01-01T00:00:00Z", &labels));
        assert!(!f.allows("2026-01-03T00:00:00Z", &labels));
        let f = PruneFilter::parse(&pairs(&[("label", "tier=web")]), true).unwrap();
        assert!(f.allows("2026-01-01T00:00:00Z", &labels));
        assert!(!f.allows("2026-01-01T00:00:00Z", &BTreeMap::new()));
        let f = PruneFilter::parse(&pairs(&[("label!", "tier")]), true).unwrap();
        assert!(!f.allows("2026-01-01T00:00:00Z", &labels));
        assert!(PruneFilter::parse(&pairs(&[("until", "x")]), true).is_err());
        assert!(PruneFilter::parse(&pairs(&[("until", "2026-01-01T00:00:00Z")]), false).is_err());
        assert!(PruneFilter::parse(&pairs(&[("colour", "red")]), true).is_err());
    }
}
