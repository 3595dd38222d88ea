//! `cp`: Docker's copy rules between a container and the host. The container side is the
//! engine's (resolved with chroot semantics, never following a symlink out); this module
//! decides names and handles the host side.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use berth_engine::Engine;
use berth_image::layer::{self, ApplyOptions};

use crate::{CliResult, Failure};

/// `CONTAINER:PATH` → Some((container, path)).
fn split_container(arg: &str) -> Option<(&str, &str)> {
    if arg.starts_with('/') || arg.starts_with('.') {
        return None;
    }
    let (c, p) = arg.split_once(':')?;
    (!c.is_empty() && !c.contains('/')).then_some((c, p))
}

fn parent_of(p: &str) -> String {
    let t = p.trim_end_matches('/');
    match t.rfind('/') {
        Some(0) => "/".into(),
        Some(i) => t[..i].to_string(),
        None => ".".into(),
    }
}

fn temp_tar(e: &Engine) -> CliResult<(std::fs::File, PathBuf)> {
    let (f, p) = berth_image::fsutil::create_temp(&e.tmp_dir(), "cp").map_err(Failure::from)?;
    Ok((f, p))
}

struct Cleanup(PathBuf);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub fn cp(e: &Engine, source: &str, dest: &str, archive: bool, follow: bool) -> CliResult<u8> {
    match (split_container(source), split_container(dest)) {
        (Some(_), Some(_)) => Err(Failure::new(
            1,
            "copying between containers is not supported",
        )),
        (None, None) => Err(Failure::new(
            1,
            "must specify at least one container source",
        )),
        (Some((c, src)), None) => {
            if dest == "-" {
                e.copy_from_container(
                    c,
                    src,
                    &berth_engine::changes::base_name(src),
                    follow,
                    io::stdout().lock(),
                )?;
                return Ok(0);
            }
            let d = Path::new(dest);
            let (dir, name) = if d.is_dir() {
                (d.to_path_buf(), berth_engine::changes::base_name(src))
            } else {
                if dest.ends_with('/') {
                    return Err(Failure::new(
                        1,
                        format!("destination directory {dest} does not exist"),
                    ));
                }
                let parent = PathBuf::from(parent_of(dest));
                if !parent.is_dir() {
                    return Err(Failure::new(
                        1,
                        format!("no such directory: {}", parent.display()),
                    ));
                }
                (parent, berth_engine::changes::base_name(dest))
            };
            let (mut f, p) = temp_tar(e)?;
            let _c = Cleanup(p.clone());
            e.copy_from_container(c, src, &name, follow, &mut f)?;
            let r = std::fs::File::open(&p)?;
            layer::apply_tar(
                r,
                &dir,
                &ApplyOptions {
                    allow_devices: false,
                    overlay_whiteouts: false,
                    preserve_owner: archive,
                },
            )
            .map_err(|err| Failure::new(1, err.to_string()))?;
            Ok(0)
        }
        (None, Some((c, dst))) => {
            if source == "-" {
                e.copy_to_container(c, dst, io::stdin().lock(), true)?;
                return Ok(0);
            }
            let src = Path::new(source);
            let meta = if follow {
                std::fs::metadata(src)
            } else {
                std::fs::symlink_metadata(src)
            }
            .map_err(|err| Failure::new(1, format!("{source}: {err}")))?;
            let (dir, name) = match e.container_path_is_dir(c, dst)? {
                Some(true) => (dst.to_string(), berth_engine::changes::base_name(source)),
                Some(false) if meta.is_dir() => {
                    return Err(Failure::new(
                        1,
                        format!("cannot copy directory {source} to file {dst}"),
                    ))
                }
                Some(false) => (parent_of(dst), berth_engine::changes::base_name(dst)),
                None => {
                    if dst.ends_with('/') && !meta.is_dir() {
                        return Err(Failure::new(
                            1,
                            format!("destination directory {dst} does not exist"),
                        ));
                    }
                    (parent_of(dst), berth_engine::changes::base_name(dst))
                }
            };
            let flags = if follow {
                nix::fcntl::OFlag::O_PATH
            } else {
                nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_NOFOLLOW
            };
            let fd: OwnedFd = nix::fcntl::open(
                src,
                flags | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map(|raw| {
                // SAFETY: open just returned this fd and nothing else owns it.
                unsafe { std::os::fd::FromRawFd::from_raw_fd(raw) }
            })
            .map_err(|err| Failure::new(1, format!("{source}: {err}")))?;
            let (mut f, p) = temp_tar(e)?;
            let _c = Cleanup(p.clone());
            berth_engine::changes::tar_pinned(&fd, &name, &mut f)?;
            let r = std::fs::File::open(&p)?;
            e.copy_to_container(c, &dir, r, archive)?;
            Ok(0)
        }
    }
}
