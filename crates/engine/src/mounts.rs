//! Mount specifications as Docker's CLI and API give them: `-v`/`Binds` strings,
//! `--mount` key=value lists, `--tmpfs`. One parser for the CLI and the API service.

use crate::model::MountSpec;
use crate::spec::parse_bytes;

fn bad(msg: impl Into<String>) -> String {
    msg.into()
}

/// `-v` in Docker's forms.
pub fn parse_volume(v: &str) -> Result<MountSpec, String> {
    let parts: Vec<&str> = v.split(':').collect();
    let (src, dst, opts) = match parts.as_slice() {
        [dst] => ("", *dst, ""),
        [src, dst] if dst.starts_with('/') => (*src, *dst, ""),
        [dst, opts] => ("", *dst, *opts),
        [src, dst, opts] => (*src, *dst, *opts),
        _ => return Err(bad(format!("invalid volume specification: '{v}'"))),
    };
    if !dst.starts_with('/') {
        return Err(bad(format!(
            "invalid volume specification: '{v}': the container path must be absolute"
        )));
    }
    let mut m = MountSpec {
        target: dst.to_string(),
        ..Default::default()
    };
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => m.read_only = true,
            "rw" | "z" | "Z" => {}
            "nocopy" => m.no_copy = true,
            "rprivate" | "private" | "rshared" | "shared" | "rslave" | "slave" => {
                m.options.push(o.to_string())
            }
            _ => {
                return Err(bad(format!(
                    "invalid volume specification: '{v}': unknown option {o:?}"
                )))
            }
        }
    }
    if src.is_empty() {
        m.kind = "volume".into();
    } else if src.starts_with('/') || src.starts_with('.') {
        m.kind = "bind".into();
        let p = std::path::absolute(src).map_err(|e| bad(format!("{src}: {e}")))?;
        m.source = p.display().to_string();
        m.options.push("create".into());
    } else {
        m.kind = "volume".into();
        m.source = src.to_string();
    }
    Ok(m)
}

/// `--mount` key=value lists.
pub fn parse_mount(v: &str) -> Result<MountSpec, String> {
    let mut m = MountSpec {
        kind: "volume".into(),
        ..Default::default()
    };
    for kv in v.split(',') {
        let (k, val) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "type" => m.kind = val.to_string(),
            "source" | "src" => m.source = val.to_string(),
            "target" | "destination" | "dst" => m.target = val.to_string(),
            "readonly" | "ro" => m.read_only = val.is_empty() || val == "true" || val == "1",
            "bind-propagation" => m.options.push(val.to_string()),
            "volume-nocopy" => m.no_copy = val.is_empty() || val == "true",
            "tmpfs-size" => {
                m.tmpfs_size = Some(
                    parse_bytes(val).ok_or_else(|| bad(format!("invalid tmpfs-size: {val}")))?,
                )
            }
            "tmpfs-mode" => {
                m.tmpfs_mode = Some(
                    u32::from_str_radix(val, 8)
                        .map_err(|_| bad(format!("invalid tmpfs-mode: {val}")))?,
                )
            }
            "consistency" | "volume-driver" => {}
            _ => return Err(bad(format!("invalid field '{k}' must be a key=value pair"))),
        }
    }
    validate(&m)?;
    Ok(m)
}

/// Docker's rules for a mount, however it was given (`--mount`, `-v`, the API's `Mounts`
/// and `Binds`); whether a bind's source exists is the create's to check.
pub fn validate(m: &MountSpec) -> Result<(), String> {
    if m.target.is_empty() {
        return Err(bad("invalid mount config: target is required"));
    }
    if !matches!(m.kind.as_str(), "bind" | "volume" | "tmpfs") {
        return Err(bad(format!(
            "invalid mount config: unsupported mount type {:?}",
            m.kind
        )));
    }
    let kind = &m.kind;
    if !m.target.starts_with('/') {
        return Err(bad(format!(
            "invalid mount config for type {kind:?}: invalid mount path: '{}' mount path must be absolute",
            m.target
        )));
    }
    if kind == "bind" {
        if m.source.is_empty() {
            return Err(bad(
                "invalid mount config for type \"bind\": field Source must not be empty",
            ));
        }
        if !m.source.starts_with('/') {
            return Err(bad(format!(
                "invalid mount config for type \"bind\": invalid mount path: '{}' mount path must be absolute",
                m.source
            )));
        }
    }
    Ok(())
}

pub fn parse_tmpfs(v: &str) -> Result<MountSpec, String> {
    let (path, opts) = v.split_once(':').unwrap_or((v, ""));
    if !path.starts_with('/') {
        return Err(bad(format!(
            "invalid tmpfs specification: '{v}': the path must be absolute"
        )));
    }
    Ok(MountSpec {
        kind: "tmpfs".into(),
        target: path.to_string(),
        options: opts
            .split(',')
            .filter(|o| !o.is_empty())
            .map(String::from)
            .collect(),
        ..Default::default()
    })
}
