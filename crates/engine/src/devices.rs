//! `--device` and `--device-cgroup-rule`: host devices made in a container, and what its
//! device cgroup allows besides the defaults, by Docker's rules (the CLI's
//! `ValidateDevice` and the daemon's `DevicesFromPath`, with their words).

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType};

use crate::error::{EngineError, Result};
use crate::model::DeviceMapping;

fn invalid(m: impl Into<String>) -> EngineError {
    EngineError::Invalid(m.into())
}

/// An I/O error as Go words it (`no such file or directory`): Docker's messages carry it.
fn reason(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => {
            let text = nix::errno::Errno::from_raw(n).desc();
            let mut c = text.chars();
            c.next()
                .map(|f| f.to_lowercase().chain(c).collect())
                .unwrap_or_default()
        }
        None => e.to_string(),
    }
}

/// `r`, `w` and `m`, each at most once, in any order.
fn valid_mode(mode: &str) -> bool {
    !mode.is_empty()
        && mode.len() <= 3
        && mode.chars().all(|c| "rwm".contains(c))
        && mode
            .chars()
            .enumerate()
            .all(|(i, c)| !mode[..i].contains(c))
}

/// `--device HOST[:CONTAINER][:PERMISSIONS]` (compose's `devices:` entries too).
pub fn parse(flag: &str) -> Result<DeviceMapping> {
    let parts: Vec<&str> = flag.split(':').collect();
    let (host, container, mode) = match parts[..] {
        [host] => (host, host, "rwm"),
        [host, mode] if valid_mode(mode) => (host, host, mode),
        [host, container] => (host, container, "rwm"),
        [host, container, mode] => {
            if !valid_mode(mode) {
                return Err(invalid(format!("bad mode specified: {mode}")));
            }
            (host, container, mode)
        }
        _ => return Err(invalid(format!("bad format for path: {flag}"))),
    };
    let m = DeviceMapping {
        path_on_host: host.to_string(),
        path_in_container: container.to_string(),
        cgroup_permissions: mode.to_string(),
    };
    validate(&m)?;
    Ok(m)
}

/// What a mapping must be before anything is looked up on the host.
pub fn validate(m: &DeviceMapping) -> Result<()> {
    if m.path_on_host.is_empty() {
        return Err(invalid("a device needs a path on the host"));
    }
    let container = container_path(m);
    if !container.starts_with('/') {
        return Err(invalid(format!("{container} is not an absolute path")));
    }
    if container.split('/').any(|c| c == "..") {
        return Err(invalid(format!("bad format for path: {container}")));
    }
    if !m.cgroup_permissions.is_empty() && !valid_mode(&m.cgroup_permissions) {
        return Err(invalid(format!(
            "bad mode specified: {}",
            m.cgroup_permissions
        )));
    }
    Ok(())
}

fn container_path(m: &DeviceMapping) -> &str {
    if m.path_in_container.is_empty() {
        &m.path_on_host
    } else {
        &m.path_in_container
    }
}

/// `--device-cgroup-rule TYPE MAJOR:MINOR ACCESS` (`c 1:3 rwm`, `a *:* m`).
pub fn parse_rule(rule: &str) -> Result<LinuxDeviceCgroup> {
    let bad = || invalid(format!("invalid device cgroup format '{rule}'"));
    let f: Vec<&str> = rule.split(' ').collect();
    let [kind, numbers, access] = f[..] else {
        return Err(bad());
    };
    let typ = match kind {
        "a" => LinuxDeviceType::A,
        "c" => LinuxDeviceType::C,
        "b" => LinuxDeviceType::B,
        _ => return Err(bad()),
    };
    let (major, minor) = numbers.split_once(':').ok_or_else(bad)?;
    let number = |n: &str| -> Result<Option<i64>> {
        match n {
            "*" => Ok(None),
            n if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                n.parse().map(Some).map_err(|_| bad())
            }
            _ => Err(bad()),
        }
    };
    if !valid_mode(access) {
        return Err(bad());
    }
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(true)
        .set_typ(Some(typ))
        .set_major(number(major)?)
        .set_minor(number(minor)?)
        .set_access(Some(access.to_string()));
    Ok(r)
}

/// The devices a mapping makes in the container, each with the cgroup rule that lets the
/// container use it. A directory gives every device below it (at the same place under the
/// container path); a symlink on the host is followed, as Docker's `/dev/disk/by-id/…`.
pub fn resolve(m: &DeviceMapping) -> Result<Vec<(LinuxDevice, LinuxDeviceCgroup)>> {
    let gathering = |e: std::io::Error| {
        invalid(format!(
            "error gathering device information while adding custom device {:?}: {}",
            m.path_on_host,
            reason(&e)
        ))
    };
    let host = std::fs::canonicalize(&m.path_on_host).map_err(gathering)?;
    let access = if m.cgroup_permissions.is_empty() {
        "rwm"
    } else {
        &m.cgroup_permissions
    };
    let target = PathBuf::from(container_path(m));
    let meta = std::fs::metadata(&host).map_err(gathering)?;
    if !meta.is_dir() {
        return match device(&target, &meta, access) {
            Some(d) => Ok(vec![d]),
            None => Err(invalid(format!(
                "error gathering device information while adding custom device {:?}: not a device node",
                m.path_on_host
            ))),
        };
    }
    let mut out = Vec::new();
    let mut stack = vec![host.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).map_err(gathering)?.flatten() {
            let Ok(meta) = e.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(e.path());
                continue;
            }
            let rel = e.path().strip_prefix(&host).map(Path::to_path_buf);
            if let Ok(rel) = rel {
                out.extend(device(&target.join(rel), &meta, access));
            }
        }
    }
    out.sort_by(|a, b| a.0.path().cmp(b.0.path()));
    Ok(out)
}

/// A host device node (its metadata) as one at `target` in the container, owner and mode
/// kept; None for anything that is not a character or block device.
fn device(
    target: &Path,
    meta: &std::fs::Metadata,
    access: &str,
) -> Option<(LinuxDevice, LinuxDeviceCgroup)> {
    let ft = meta.file_type();
    let typ = if ft.is_char_device() {
        LinuxDeviceType::C
    } else if ft.is_block_device() {
        LinuxDeviceType::B
    } else {
        return None;
    };
    let (major, minor) = (
        libc::major(meta.rdev()) as i64,
        libc::minor(meta.rdev()) as i64,
    );
    let mut d = LinuxDevice::default();
    d.set_path(target.to_path_buf())
        .set_typ(typ)
        .set_major(major)
        .set_minor(minor)
        .set_file_mode(Some(meta.mode() & 0o777))
        .set_uid(Some(meta.uid()))
        .set_gid(Some(meta.gid()));
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(true)
        .set_typ(Some(typ))
        .set_major(Some(major))
        .set_minor(Some(minor))
        .set_access(Some(access.to_string()));
    Some((d, r))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(host: &str, container: &str, mode: &str) -> DeviceMapping {
        DeviceMapping {
            path_on_host: host.into(),
            path_in_container: container.into(),
            cgroup_permissions: mode.into(),
        }
    }

    #[test]
    fn device_flags_parse_as_dockers_cli_reads_them() {
        let p = |s: &str| parse(s).map_err(|e| e.to_string());
        assert_eq!(p("/dev/fuse"), Ok(mapping("/dev/fuse", "/dev/fuse", "rwm")));
        assert_eq!(p("/dev/fuse:r"), Ok(mapping("/dev/fuse", "/dev/fuse", "r")));
        assert_eq!(
            p("/dev/sda:/dev/xvda"),
            Ok(mapping("/dev/sda", "/dev/xvda", "rwm"))
        );
        assert_eq!(
            p("/dev/sda:/dev/xvda:rw"),
            Ok(mapping("/dev/sda", "/dev/xvda", "rw"))
        );
        assert_eq!(
            p("/dev/sda:/dev/xvda:rwx").unwrap_err(),
            "bad mode specified: rwx"
        );
        assert_eq!(
            p("/dev/sda:xvda").unwrap_err(),
            "xvda is not an absolute path"
        );
        assert_eq!(
            p("/a:/b:r:w").unwrap_err(),
            "bad format for path: /a:/b:r:w"
        );
        assert!(p("/dev/sda:/dev/x:rr").is_err());
        assert!(p("/dev/sda:/dev/../etc/x").is_err());
    }

    #[test]
    fn cgroup_rules_parse_as_dockers_cli_reads_them() {
        let r = parse_rule("c 1:3 rwm").unwrap();
        assert_eq!(
            (r.typ(), r.major(), r.minor(), r.access().as_deref()),
            (Some(LinuxDeviceType::C), Some(1), Some(3), Some("rwm"))
        );
        let r = parse_rule("a *:* m").unwrap();
        assert_eq!((r.major(), r.minor()), (None, None));
        for bad in [
            "c 1:3",
            "x 1:3 r",
            "c 1 r",
            "c a:3 r",
            "c 1:3 rwx",
            "c  1:3 r",
        ] {
            assert_eq!(
                parse_rule(bad).unwrap_err().to_string(),
                format!("invalid device cgroup format '{bad}'")
            );
        }
    }

    #[test]
    fn a_device_resolves_with_its_numbers_and_a_dir_gives_those_below_it() {
        let full = resolve(&mapping("/dev/full", "/dev/xfull", "r")).unwrap();
        assert_eq!(full.len(), 1);
        let (d, r) = &full[0];
        assert_eq!(
            (d.path().to_str(), d.typ(), d.major(), d.minor()),
            (Some("/dev/xfull"), LinuxDeviceType::C, 1, 7)
        );
        assert_eq!(r.access().as_deref(), Some("r"));
        let err = resolve(&mapping("/no/such/dev", "", "")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "error gathering device information while adding custom device \"/no/such/dev\": no such file or directory"
        );
        let err = resolve(&mapping("/etc/hostname", "", "")).unwrap_err();
        assert!(err.to_string().ends_with("not a device node"), "{err}");
        // A dir: /dev/pts has ptmx (5:2) and the terminals; only devices, at their place.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("plain"), "").unwrap();
        std::os::unix::fs::symlink("/dev/null", dir.path().join("link")).unwrap();
        let made = nix::sys::stat::mknod(
            &dir.path().join("sub/zero"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o640),
            nix::sys::stat::makedev(1, 5),
        );
        if made.is_err() {
            eprintln!("skipped the dir part: mknod needs CAP_MKNOD");
            return;
        }
        let all = resolve(&mapping(dir.path().to_str().unwrap(), "/dev/mine", "rw")).unwrap();
        let got: Vec<_> = all
            .iter()
            .map(|(d, _)| (d.path().display().to_string(), d.minor(), d.file_mode()))
            .collect();
        assert_eq!(got, [("/dev/mine/sub/zero".to_string(), 5, Some(0o640))]);
    }
}
