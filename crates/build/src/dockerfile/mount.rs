//! `RUN --mount=type=…,key=value,…` options, parsed as BuildKit parses them: the value
//! is one CSV record, keys are case-insensitive, `type` defaults to `bind`, and mounts
//! are read-only unless they are `cache` or `tmpfs` or say otherwise.
//!
//! BuildKit expands variables in option values at build time, against the stage's
//! environment, so a value may be `id=$CACHE_ID`. At parse time such a value is left
//! unvalidated and the mount is marked [`Mount::deferred`]; [`Mount::expand`] parses the
//! original text again with the values expanded. Only `from` must be literal.

use serde::{Deserialize, Serialize};

use crate::expand::{self, ExpandError, Lookup};

/// Why a `--mount` option is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountError {
    #[error("failed to parse csv mounts: {0}")]
    Csv(&'static str),
    #[error("unsupported mount type {0:?}")]
    Type(String),
    #[error("unsupported sharing value {0:?}")]
    Sharing(String),
    #[error("invalid field '{0}' must be a key=value pair")]
    NotKeyValue(String),
    #[error("unexpected key '{key}' in '{field}'")]
    UnknownKey { key: String, field: String },
    #[error("unexpected key '{key}' for mount type '{kind}'")]
    KeyNotForType { key: String, kind: MountType },
    #[error("invalid value for {key}: {value}")]
    Value { key: String, value: String },
    #[error("'from' doesn't support variable expansion, define alias stage instead")]
    FromVariable,
    #[error("{key} not allowed for {kind:?} type mounts")]
    FileInfoNotAllowed { key: &'static str, kind: MountType },
    #[error("secret mount should not have a from")]
    SecretFrom,
    #[error("secret mount should not define sharing")]
    SecretSharing,
    #[error("invalid secret mount. one of source, target required")]
    SecretTarget,
    #[error("both source and id can't be set")]
    SecretSourceAndId,
    #[error("invalid cache sharing set for {0} mount")]
    SharingNotCache(MountType),
    #[error(transparent)]
    Expand(#[from] ExpandError),
}

/// `type=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum MountType {
    #[default]
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

impl std::fmt::Display for MountType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        })
    }
}

/// `sharing=` for cache mounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sharing {
    Shared,
    Private,
    Locked,
}

/// One `--mount`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Mount {
    pub kind: MountType,
    /// `from=`: a stage, image or build context to mount from.
    pub from: Option<String>,
    /// `source=` / `src=`.
    pub source: Option<String>,
    /// `target=` / `dst=` / `destination=`.
    pub target: Option<String>,
    pub readonly: bool,
    /// `size=` of a tmpfs, in bytes.
    pub size: Option<i64>,
    /// `id=`: cache id, or secret / ssh id.
    pub id: Option<String>,
    pub sharing: Option<Sharing>,
    /// `required`: fail when the secret or ssh agent is missing.
    pub required: bool,
    /// `env=`: expose a secret as this environment variable.
    pub env: Option<String>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// The option text as written.
    pub spec: String,
    /// Some value refers to a variable: it was not validated, and the fields it sets
    /// hold their defaults until [`Mount::expand`].
    pub deferred: bool,
}

impl Mount {
    /// Parse a `--mount` value as written, deferring values that hold `$` references.
    pub fn parse(spec: &str) -> Result<Mount, MountError> {
        parse_fields(spec, None)
    }

    /// Parse the original text again with every value expanded against `env`
    /// (`escape` is the Dockerfile's escape character), as BuildKit does at build time.
    pub fn expand(&self, env: &dyn Lookup, escape: char) -> Result<Mount, MountError> {
        let mut expander = |v: &str| expand::expand_word(v, env, escape);
        parse_fields(&self.spec, Some(&mut expander))
    }
}

type Expander<'a> = &'a mut dyn FnMut(&str) -> Result<String, ExpandError>;

fn parse_fields(spec: &str, mut expander: Option<Expander<'_>>) -> Result<Mount, MountError> {
    let mut m = Mount {
        spec: spec.to_string(),
        ..Mount::default()
    };
    let mut readonly_given = false;
    for field in csv_fields(spec)? {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.to_lowercase(), v.to_string()),
            None => {
                readonly_given |= flag_field(&mut m, &field)?;
                continue;
            }
        };
        let value = match expander.as_mut() {
            Some(expand) => expand(&value)?,
            None if key == "from" && has_reference(&value) => return Err(MountError::FromVariable),
            None if key == "from" => value,
            None if value.contains('$') => {
                m.deferred = true;
                continue;
            }
            None => value,
        };
        readonly_given |= set_field(&mut m, &key, value, &field)?;
    }
    if !m.deferred {
        validate(&m)?;
    }
    if !readonly_given {
        m.readonly = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
    }
    Ok(m)
}

/// A `$` that is not the last character (BuildKit's test for `from=`).
fn has_reference(value: &str) -> bool {
    value.find('$').is_some_and(|i| i != value.len() - 1)
}

/// A field without `=`: `ro`, `rw`, `required`. Returns whether it set read-only-ness.
fn flag_field(m: &mut Mount, field: &str) -> Result<bool, MountError> {
    match field.to_lowercase().as_str() {
        "readonly" | "ro" => m.readonly = true,
        "readwrite" | "rw" => m.readonly = false,
        "required" => {
            m.required = secret_or_ssh(m, "required")?;
            return Ok(false);
        }
        _ => return Err(MountError::NotKeyValue(field.to_string())),
    }
    Ok(true)
}

fn secret_or_ssh(m: &Mount, key: &str) -> Result<bool, MountError> {
    match m.kind {
        MountType::Secret | MountType::Ssh => Ok(true),
        kind => Err(MountError::KeyNotForType {
            key: key.to_string(),
            kind,
        }),
    }
}

/// Apply `key=value`; returns whether it set read-only-ness.
fn set_field(m: &mut Mount, key: &str, value: String, field: &str) -> Result<bool, MountError> {
    let bad = |value: &str| MountError::Value {
        key: key.to_string(),
        value: value.to_string(),
    };
    match key {
        "type" => m.kind = mount_type(&value)?,
        "from" => m.from = Some(value),
        "source" | "src" => m.source = Some(value),
        "target" | "dst" | "destination" => m.target = Some(value),
        "readonly" | "ro" => {
            m.readonly = go_bool(&value).ok_or_else(|| bad(&value))?;
            return Ok(true);
        }
        "readwrite" | "rw" => {
            m.readonly = !go_bool(&value).ok_or_else(|| bad(&value))?;
            return Ok(true);
        }
        "required" => {
            secret_or_ssh(m, key)?;
            m.required = go_bool(&value).ok_or_else(|| bad(&value))?;
        }
        "size" if m.kind == MountType::Tmpfs => {
            m.size = Some(ram_in_bytes(&value).ok_or_else(|| bad(&value))?)
        }
        "size" => {
            return Err(MountError::KeyNotForType {
                key: key.to_string(),
                kind: m.kind,
            })
        }
        "id" => m.id = Some(value),
        "sharing" => m.sharing = Some(sharing(&value)?),
        "mode" => m.mode = Some(unsigned(&value, 8).ok_or_else(|| bad(&value))?),
        "uid" => m.uid = Some(unsigned(&value, 10).ok_or_else(|| bad(&value))?),
        "gid" => m.gid = Some(unsigned(&value, 10).ok_or_else(|| bad(&value))?),
        "env" => m.env = Some(value),
        _ => {
            return Err(MountError::UnknownKey {
                key: key.to_string(),
                field: field.to_string(),
            })
        }
    }
    Ok(false)
}

fn mount_type(value: &str) -> Result<MountType, MountError> {
    Ok(match value.to_lowercase().as_str() {
        "bind" => MountType::Bind,
        "cache" => MountType::Cache,
        "tmpfs" => MountType::Tmpfs,
        "secret" => MountType::Secret,
        "ssh" => MountType::Ssh,
        _ => return Err(MountError::Type(value.to_string())),
    })
}

fn sharing(value: &str) -> Result<Sharing, MountError> {
    Ok(match value.to_lowercase().as_str() {
        "shared" => Sharing::Shared,
        "private" => Sharing::Private,
        "locked" => Sharing::Locked,
        _ => return Err(MountError::Sharing(value.to_string())),
    })
}

/// The combinations BuildKit rejects once every field is known.
fn validate(m: &Mount) -> Result<(), MountError> {
    if !matches!(
        m.kind,
        MountType::Secret | MountType::Ssh | MountType::Cache
    ) {
        let given = [("mode", m.mode), ("uid", m.uid), ("gid", m.gid)];
        if let Some((key, _)) = given.into_iter().find(|(_, v)| v.is_some()) {
            return Err(MountError::FileInfoNotAllowed { key, kind: m.kind });
        }
    }
    if m.kind == MountType::Secret {
        if m.from.is_some() {
            return Err(MountError::SecretFrom);
        }
        if m.sharing.is_some() {
            return Err(MountError::SecretSharing);
        }
        if m.source.is_none() && m.target.is_none() && m.id.is_none() {
            return Err(MountError::SecretTarget);
        }
        if m.source.is_some() && m.id.is_some() {
            return Err(MountError::SecretSourceAndId);
        }
    }
    if m.sharing.is_some() && m.kind != MountType::Cache {
        return Err(MountError::SharingNotCache(m.kind));
    }
    Ok(())
}

/// One CSV record (Go's `encoding/csv` rules): fields split at commas, a field that
/// starts with `"` is quoted and `""` inside it is a quote; a quote anywhere else is an
/// error.
fn csv_fields(record: &str) -> Result<Vec<String>, MountError> {
    let mut fields = Vec::new();
    if record.is_empty() {
        return Ok(fields);
    }
    let mut chars = record.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => {
                        return Err(MountError::Csv("extraneous or missing \" in quoted-field"))
                    }
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(_) => return Err(MountError::Csv("extraneous or missing \" in quoted-field")),
            }
            continue;
        }
        loop {
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => break,
                Some('"') => return Err(MountError::Csv("bare \" in non-quoted-field")),
                Some(c) => field.push(c),
            }
        }
        fields.push(field);
    }
}

/// Go's `strconv.ParseBool`.
fn go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// An unsigned 32-bit number in `radix`, digits only (no sign, no prefix).
fn unsigned(s: &str, radix: u32) -> Option<u32> {
    if s.is_empty() || !s.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(s, radix).ok()
}

/// A human size with binary multiples (`64m`, `1.5GiB`, `512 kb`), as Docker's
/// `units.RAMInBytes` reads it.
fn ram_in_bytes(s: &str) -> Option<i64> {
    let sep = s.rfind(|c: char| c.is_ascii_digit() || c == '.' || c == ' ')?;
    let (number, suffix) = if s.as_bytes()[sep] == b' ' {
        (&s[..sep], &s[sep + 1..])
    } else {
        (&s[..=sep], &s[sep + 1..])
    };
    let size: f64 = number.parse().ok()?;
    if size < 0.0 {
        return None;
    }
    let suffix = suffix.to_lowercase();
    let multiplier: f64 = match suffix.as_str() {
        "" | "b" => 1.0,
        _ => {
            let unit = match suffix.as_bytes()[0] {
                b'k' => 1,
                b'm' => 2,
                b'g' => 3,
                b't' => 4,
                b'p' => 5,
                _ => return None,
            };
            if !matches!(&suffix[1..], "" | "b" | "ib") {
                return None;
            }
            1024f64.powi(unit)
        }
    };
    Some((size * multiplier) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expand::Env;

    fn parse(spec: &str) -> Mount {
        Mount::parse(spec).unwrap_or_else(|e| panic!("{spec}: {e}"))
    }

    #[test]
    fn cache_mount_fields() {
        let m = parse(
            "type=cache,target=/root/.cache,id=pip,sharing=locked,mode=0755,uid=1000,gid=1000",
        );
        assert_eq!(m.kind, MountType::Cache);
        assert_eq!(m.target.as_deref(), Some("/root/.cache"));
        assert_eq!(m.id.as_deref(), Some("pip"));
        assert_eq!(m.sharing, Some(Sharing::Locked));
        assert_eq!(
            (m.mode, m.uid, m.gid),
            (Some(0o755), Some(1000), Some(1000))
        );
        assert!(!m.readonly, "cache mounts are writable by default");
    }

    #[test]
    fn bind_is_default_and_readonly() {
        let m = parse("target=/src,source=.,from=build");
        assert_eq!(m.kind, MountType::Bind);
        assert!(m.readonly);
        assert_eq!(m.from.as_deref(), Some("build"));
        assert!(!parse("type=bind,target=/x,rw=true").readonly);
        assert!(!parse("type=bind,target=/x,readwrite=1").readonly);
        assert!(parse("type=cache,target=/x,ro=true").readonly);
    }

    #[test]
    fn aliases_and_case() {
        let m = parse("TYPE=Secret,ID=tok,DST=/run/t,env=TOKEN,required=true");
        assert_eq!(m.kind, MountType::Secret);
        assert_eq!(m.target.as_deref(), Some("/run/t"));
        assert_eq!(m.env.as_deref(), Some("TOKEN"));
        assert!(m.required);
        assert_eq!(parse("type=ssh").kind, MountType::Ssh);
        assert_eq!(
            parse("type=tmpfs,destination=/t,size=64m").size,
            Some(64 << 20)
        );
    }

    #[test]
    fn tmpfs_sizes() {
        assert_eq!(ram_in_bytes("1024"), Some(1024));
        assert_eq!(ram_in_bytes("1.5GiB"), Some(3 << 29));
        assert_eq!(ram_in_bytes("512 kb"), Some(512 << 10));
        assert_eq!(ram_in_bytes("10x"), None);
        assert_eq!(ram_in_bytes("10mbb"), None);
        assert_eq!(ram_in_bytes("abc"), None);
    }

    #[test]
    fn invalid_mounts() {
        let err = |s: &str| Mount::parse(s).unwrap_err();
        assert_eq!(err("type=nfs"), MountError::Type("nfs".into()));
        assert_eq!(
            err("type=cache,sharing=all"),
            MountError::Sharing("all".into())
        );
        assert!(matches!(
            err("type=bind,foo=bar"),
            MountError::UnknownKey { .. }
        ));
        assert!(matches!(
            err("type=bind,size=1m"),
            MountError::KeyNotForType { .. }
        ));
        assert!(matches!(
            err("type=cache,required=true"),
            MountError::KeyNotForType { .. }
        ));
        assert!(matches!(err("type=cache,mode=9"), MountError::Value { .. }));
        assert!(matches!(err("type=cache,uid=-1"), MountError::Value { .. }));
        assert!(matches!(
            err("type=bind,mode=0700"),
            MountError::FileInfoNotAllowed { .. }
        ));
        assert_eq!(err("type=secret"), MountError::SecretTarget);
        assert_eq!(err("type=secret,id=a,from=x"), MountError::SecretFrom);
        assert_eq!(
            err("type=secret,id=a,source=b"),
            MountError::SecretSourceAndId
        );
        assert_eq!(
            err("type=tmpfs,sharing=shared"),
            MountError::SharingNotCache(MountType::Tmpfs)
        );
        assert_eq!(err("type=bind,from=$STAGE"), MountError::FromVariable);
    }

    #[test]
    fn csv_quoting() {
        assert_eq!(
            csv_fields("a=1,\"b=2,3\",c").unwrap(),
            ["a=1", "b=2,3", "c"]
        );
        assert_eq!(csv_fields("\"a\"\"b\"").unwrap(), ["a\"b"]);
        assert!(csv_fields("a=\"x\"").is_err());
        assert!(csv_fields("\"a").is_err());
        assert!(csv_fields("\"a\"b").is_err());
        assert_eq!(csv_fields("a,,b").unwrap(), ["a", "", "b"]);
    }

    #[test]
    fn variables_are_deferred_then_expanded() {
        let m = parse("type=cache,target=/c,id=$ID,uid=$UID");
        assert!(m.deferred);
        assert_eq!((m.id.as_deref(), m.uid), (None, None));
        let env: Env = [("ID", "pip"), ("UID", "42")].into_iter().collect();
        let e = m.expand(&env, '\\').unwrap();
        assert_eq!(
            (e.id.as_deref(), e.uid, e.deferred),
            (Some("pip"), Some(42), false)
        );
        assert!(
            parse("type=bind,from=x$").from.is_some(),
            "trailing $ is literal"
        );
    }

    #[test]
    fn flag_fields_without_values() {
        assert!(parse("type=secret,id=a,required").required);
        assert!(parse("type=cache,target=/c,ro").readonly);
        assert!(!parse("type=bind,target=/c,rw").readonly);
        assert!(matches!(
            Mount::parse("type=cache,bogus"),
            Err(MountError::NotKeyValue(_))
        ));
        assert!(matches!(
            Mount::parse("required,type=secret,id=a"),
            Err(MountError::KeyNotForType { .. })
        ));
    }
}
