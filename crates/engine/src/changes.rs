//! What a container changed, and images made from it: `diff`, `commit`, `export`, `cp`.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use berth_image::config::{History, RunConfig};
use berth_image::digest::Hasher;
use berth_image::import::{self, NewImage};
use berth_image::layer::{self, ApplyOptions, Change};
use berth_image::{Digest, Reference};

use crate::error::{io_err, EngineError, Result};
use crate::model::ContainerRecord;
use crate::{sys, Engine};

/// A root file system mounted for the caller; unmounted on drop if this mounted it.
pub struct RootfsMount {
    pub path: PathBuf,
    mounted_here: bool,
}

impl Drop for RootfsMount {
    fn drop(&mut self) {
        if self.mounted_here {
            let _ = sys::unmount(&self.path);
        }
    }
}

/// A frozen container, thawed on drop.
pub struct Frozen {
    rt: Box<dyn berth_runtime::OciRuntime>,
    id: String,
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = self.rt.resume(&self.id);
    }
}

/// The paths the init layer provides as mount points, so a container's own upper dir holds
/// only what its processes changed (Docker keeps these out of `diff` and `commit` too).
pub const INIT_DIRS: &[&str] = &[
    "proc",
    "sys",
    "dev",
    "dev/pts",
    "dev/shm",
    "dev/mqueue",
    "etc",
];
pub const INIT_FILES: &[&str] = &["etc/hostname", "etc/hosts", "etc/resolv.conf"];

/// Where the shared init layers live, under the root.
pub const INIT_LAYERS: &str = "init-layers";

impl Engine {
    /// Gives the container its init layer: mount points for the runtime's mounts, as
    /// `CONTAINER_DIR/init`, a symlink to a layer under `ROOT/init-layers` that every
    /// container needing the same mount points shares (see [`Engine::init_layer`]).
    pub(crate) fn make_init_layer(&self, rec: &ContainerRecord) -> Result<PathBuf> {
        let (dirs, files) = self.init_layer_paths(rec)?;
        let shared = self.init_layer(&dirs, &files)?;
        let link = self.container_dir(&rec.id).join("init");
        let name = shared.file_name().expect("a layer has a name");
        let target = Path::new("../..").join(INIT_LAYERS).join(name);
        std::os::unix::fs::symlink(&target, &link).map_err(io_err(&link))?;
        Ok(link)
    }

    /// Gives the container its init layer again if the shared one it links to is gone (a
    /// prune that raced the create that linked it, or a root copied without it).
    pub(crate) fn ensure_init_layer(&self, rec: &ContainerRecord) -> Result<()> {
        let link = self.container_dir(&rec.id).join("init");
        if fs::metadata(&link).is_ok() {
            return Ok(());
        }
        // Only a dangling link is replaced: a missing one means a container made before
        // shared layers, whose own init dir is gone; it gets a shared one too.
        if fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink()) {
            fs::remove_file(&link).map_err(io_err(&link))?;
        }
        self.make_init_layer(rec).map(|_| ())
    }

    /// The mount points the init layer of `rec` holds: the runtime's and `rec`'s mount
    /// destinations, less those the image has, or that sit under a symlink in the image
    /// (a dir made here would hide the link; the runtime handles those). Sorted.
    fn init_layer_paths(&self, rec: &ContainerRecord) -> Result<(Vec<String>, Vec<String>)> {
        let image = self.find_image(&rec.image_id)?;
        let lowers: Vec<PathBuf> = image
            .chain_ids()
            .iter()
            .rev()
            .map(|c| self.layers.diff_dir(c))
            .collect();
        let exists_below = |rel: &str| {
            lowers
                .iter()
                .any(|l| fs::symlink_metadata(l.join(rel)).is_ok())
        };
        let symlinked_ancestor = |rel: &str| {
            let mut acc = PathBuf::new();
            rel.split('/')
                .take(rel.split('/').count().saturating_sub(1))
                .any(|c| {
                    acc.push(c);
                    lowers.iter().any(|l| {
                        fs::symlink_metadata(l.join(&acc))
                            .map(|m| m.file_type().is_symlink())
                            .unwrap_or(false)
                    })
                })
        };
        let mut dirs: Vec<String> = INIT_DIRS.iter().map(|s| s.to_string()).collect();
        let mut files: Vec<String> = INIT_FILES.iter().map(|s| s.to_string()).collect();
        for m in &rec.mounts {
            let rel = m
                .destination
                .trim_start_matches('/')
                .trim_end_matches('/')
                .to_string();
            if rel.is_empty()
                || rel
                    .split('/')
                    .any(|c| c == ".." || c == "." || c.is_empty())
            {
                continue;
            }
            if m.kind == "bind" && Path::new(&m.source).is_file() {
                files.push(rel);
            } else {
                dirs.push(rel);
            }
        }
        let keep = |p: &String| !exists_below(p) && !symlinked_ancestor(p);
        dirs.retain(keep);
        files.retain(keep);
        // A path that is both (a file bind over a dir another mount needs) stays a dir.
        files.retain(|f| !dirs.contains(f));
        dirs.sort();
        dirs.dedup();
        files.sort();
        files.dedup();
        Ok((dirs, files))
    }

    /// The shared init layer holding exactly `dirs` and `files` (empty files), made once
    /// and never changed: it is named by the digest of its list, built in a temp dir and
    /// renamed into place, so a layer that exists is complete. A container start makes
    /// no inodes for it, and a removal deletes none: on a file system without a journal
    /// (ext4 checks every recently deleted inode before it reuses one) that churn was a
    /// large part of a short container's life.
    pub(crate) fn init_layer(&self, dirs: &[String], files: &[String]) -> Result<PathBuf> {
        let mut list = String::new();
        for d in dirs {
            list.push_str("d ");
            list.push_str(d);
            list.push('\n');
        }
        for f in files {
            list.push_str("f ");
            list.push_str(f);
            list.push('\n');
        }
        let base = self.root().join(INIT_LAYERS);
        let layer = base.join(Digest::of(list.as_bytes()).hex());
        if layer.is_dir() {
            // In use from now: a prune leaves layers touched lately alone.
            let _ = nix::sys::stat::utimensat(
                None,
                &layer,
                &nix::sys::time::TimeSpec::UTIME_NOW,
                &nix::sys::time::TimeSpec::UTIME_NOW,
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            );
            return Ok(layer);
        }
        fs::create_dir_all(&base).map_err(io_err(&base))?;
        let tmp = base.join(format!(".tmp-{}", berth_image::fsutil::random_hex(8)));
        let build = || -> std::io::Result<()> {
            fs::create_dir(&tmp)?;
            for d in dirs {
                fs::create_dir_all(tmp.join(d))?;
            }
            for f in files {
                let p = tmp.join(f);
                if let Some(parent) = p.parent() {
                    fs::create_dir_all(parent)?;
                }
                fs::write(&p, b"")?;
            }
            Ok(())
        };
        let built = build().and_then(|()| match fs::rename(&tmp, &layer) {
            Ok(()) => Ok(()),
            // Another process made the same layer meanwhile.
            Err(_) if layer.is_dir() => {
                let _ = fs::remove_dir_all(&tmp);
                Ok(())
            }
            Err(e) => Err(e),
        });
        if let Err(e) = built {
            let _ = fs::remove_dir_all(&tmp);
            return Err(io_err(&layer)(e));
        }
        Ok(layer)
    }

    /// Removes the shared init layers no container links to, except those made or used
    /// in the last ten minutes (a create may be about to link one), and temp dirs of
    /// builds that died. Returns how many.
    pub(crate) fn prune_init_layers(&self) -> Result<usize> {
        let base = self.root().join(INIT_LAYERS);
        let Ok(entries) = fs::read_dir(&base) else {
            return Ok(0);
        };
        let mut used = std::collections::HashSet::new();
        let containers = self.root().join("containers");
        if let Ok(rd) = fs::read_dir(&containers) {
            for e in rd.flatten() {
                if let Ok(t) = fs::read_link(e.path().join("init")) {
                    if let Some(n) = t.file_name() {
                        used.insert(n.to_os_string());
                    }
                }
            }
        }
        let recent = std::time::SystemTime::now() - std::time::Duration::from_secs(600);
        let mut removed = 0;
        for e in entries.flatten() {
            let name = e.file_name();
            if used.contains(&name) {
                continue;
            }
            let fresh = e
                .metadata()
                .and_then(|m| m.modified())
                .map(|t| t > recent)
                .unwrap_or(true);
            // Fresh: being linked, or (a `.tmp-` dir) being built.
            if fresh {
                continue;
            }
            if fs::remove_dir_all(e.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Lower dirs of a container (init layer, then image layers), top first.
    fn container_lowers(&self, rec: &ContainerRecord) -> Result<Vec<PathBuf>> {
        let image = self.find_image(&rec.image_id)?;
        let mut l = vec![self.container_dir(&rec.id).join("init")];
        l.extend(
            image
                .chain_ids()
                .iter()
                .rev()
                .map(|c| self.layers.diff_dir(c)),
        );
        Ok(l)
    }

    /// `diff`: A/C/D changes of the container's file system against its image.
    pub fn diff(&self, name: &str) -> Result<Vec<Change>> {
        let rec = self.find_container(name)?;
        let upper = self.container_dir(&rec.id).join("upper");
        Ok(layer::upper_changes(&upper, &self.container_lowers(&rec)?)?)
    }

    /// The container's changes as an OCI layer blob in the store (uncompressed, so its
    /// digest is its diff id), no file newer than `mtime_clamp`; returns digest and size.
    pub(crate) fn container_layer(
        &self,
        id: &str,
        mtime_clamp: Option<i64>,
    ) -> Result<(Digest, u64)> {
        let upper = self.container_dir(id).join("upper");
        let mut tmp = self.store.temp()?;
        let tmp_path = tmp.path.clone();
        let mut hashing = Hasher::new(&mut tmp.file);
        layer::write_upper_tar(&upper, &mut hashing, mtime_clamp)?;
        hashing.flush().map_err(io_err(&tmp_path))?;
        let (diff_id, size, _) = hashing.finish();
        tmp.commit(&diff_id)?;
        Ok((diff_id, size))
    }

    /// `commit`: a new image from the container's changes, on top of its image.
    pub fn commit(
        &self,
        name: &str,
        reference: Option<&str>,
        author: Option<String>,
        message: Option<String>,
        changes: RunConfig,
        has_changes: bool,
        pause: bool,
    ) -> Result<Digest> {
        let rec = self.find_container(name)?;
        let tag = reference.map(Reference::parse).transpose()?;
        if tag.as_ref().map(|t| t.digest.is_some()).unwrap_or(false) {
            return Err(EngineError::Invalid(
                "refusing to create a tag with a digest reference".into(),
            ));
        }
        let image = self.find_image(&rec.image_id)?;
        let mut cfg = self.image_config(&image)?;

        // A running container is frozen while its changes are read, so the layer is one
        // consistent moment (Docker's `commit --pause`, on by default).
        let _paused = if pause { self.freeze(&rec)? } else { None };
        let (diff_id, size) = self.container_layer(&rec.id, None)?;

        // The config: the container's run config, with --change applied.
        let c = &rec.config;
        let mut run = cfg.config.clone();
        run.env = Some(c.env.clone());
        run.cmd = c.cmd.clone();
        run.entrypoint = c.entrypoint.clone();
        run.working_dir = (!c.working_dir.is_empty()).then(|| c.working_dir.clone());
        run.user = (!c.user.is_empty()).then(|| c.user.clone());
        run.labels = (!c.labels.is_empty()).then(|| c.labels.clone());
        run.stop_signal = c.stop_signal.clone();
        run.hostname = None;
        if has_changes {
            merge_run(&mut run, changes);
        }
        cfg.config = run;
        let now = crate::now();
        cfg.created = Some(now.clone());
        if author.is_some() {
            cfg.author = author.clone();
        }
        cfg.comment = message.clone();
        cfg.rootfs.diff_ids.push(diff_id.clone());
        cfg.history.push(History {
            created: Some(now),
            created_by: Some(
                format!("{} {}", rec.path, rec.args.join(" "))
                    .trim()
                    .to_string(),
            ),
            author,
            comment: message,
            empty_layer: false,
        });
        let mut layers: Vec<(Digest, u64)> = Vec::new();
        for (blob, _) in &image.layers {
            layers.push((blob.clone(), self.store.size(blob)?));
        }
        layers.push((diff_id.clone(), size));
        let mut new: NewImage = import::new_image(&self.store, cfg, layers)?;
        // new_image assumes uncompressed blobs; keep the real (blob, diff id) pairs.
        let mut pairs = image.layers.clone();
        pairs.push((diff_id.clone(), diff_id));
        new.layers = pairs;
        let tags: Vec<String> = tag.iter().map(|t| t.to_string()).collect();
        let id = self.register(&new, &tags)?;
        self.emit_container(&rec, "commit", &[("imageID", id.to_string())]);
        Ok(id)
    }

    /// Freezes a running container until the guard is dropped; None when it is not
    /// running (or already paused).
    pub(crate) fn freeze(&self, rec: &ContainerRecord) -> Result<Option<Frozen>> {
        let st = self.container_state(&rec.id)?;
        if st.status != crate::state::Status::Running {
            return Ok(None);
        }
        let rt =
            berth_runtime::by_name(&rec.host_config.runtime, &self.run_root().join("runtime"))?;
        rt.pause(&rec.id)?;
        Ok(Some(Frozen {
            rt,
            id: rec.id.clone(),
        }))
    }

    /// Mounts the container's root file system if it is not mounted (for export and cp of
    /// a stopped container). The caller must be single-threaded.
    pub fn mount_rootfs(&self, rec: &ContainerRecord) -> Result<RootfsMount> {
        let dir = self.container_dir(&rec.id);
        let merged = dir.join("merged");
        if sys::is_mountpoint(&merged) {
            return Ok(RootfsMount {
                path: merged,
                mounted_here: false,
            });
        }
        let image = self.find_image(&rec.image_id)?;
        self.ensure_init_layer(rec)?;
        let mut lower = format!("{}", dir.join("init").display());
        if !image.layers.is_empty() {
            lower.push(':');
            lower.push_str(&self.layers.lowerdir_option(&image.chain_ids())?);
        }
        sys::mount_overlay(
            self.layers.root(),
            &lower,
            &dir.join("upper"),
            &dir.join("work"),
            &merged,
            false,
        )?;
        Ok(RootfsMount {
            path: merged,
            mounted_here: true,
        })
    }

    /// `export`: the container's whole file system as a tar.
    pub fn export<W: Write>(&self, name: &str, w: W) -> Result<()> {
        let rec = self.find_container(name)?;
        let m = self.mount_rootfs(&rec)?;
        layer::write_tree_tar(&m.path, w)?;
        Ok(())
    }

    /// `cp` out: a tar of `path` in the container, its entries named under `name` (the
    /// base name to create on the other side). Symlinks never lead out of the container.
    pub fn copy_from_container<W: Write>(
        &self,
        container: &str,
        path: &str,
        name: &str,
        follow: bool,
        w: W,
    ) -> Result<()> {
        let rec = self.find_container(container)?;
        let m = self.mount_rootfs(&rec)?;
        let fd = layer::open_beneath(&m.path, path, follow).map_err(|e| match e {
            layer::LayerError::Open { .. } => EngineError::Invalid(format!(
                "Could not find the file {path} in container {container}"
            )),
            other => other.into(),
        })?;
        tar_pinned(&fd, name, w)
    }

    /// `cp` in: extracts a tar into directory `path` of the container. Entries cannot
    /// escape that directory, device nodes are refused, owners are kept (as `docker cp -a`).
    pub fn copy_to_container<R: Read>(
        &self,
        container: &str,
        path: &str,
        r: R,
        preserve_owner: bool,
    ) -> Result<()> {
        let rec = self.find_container(container)?;
        let m = self.mount_rootfs(&rec)?;
        let fd = layer::open_beneath(&m.path, path, true).map_err(|_| {
            EngineError::Invalid(format!(
                "Could not find the file {path} in container {container}"
            ))
        })?;
        let dir = proc_path(&fd);
        if !dir.is_dir() {
            return Err(EngineError::Invalid(format!(
                "extraction point is not a directory: {path}"
            )));
        }
        layer::apply_tar(
            r,
            &dir,
            &ApplyOptions {
                allow_devices: false,
                overlay_whiteouts: false,
                preserve_owner,
            },
        )?;
        Ok(())
    }

    /// What `path` in the container is (its last component not followed, resolved
    /// within the container's root); None when missing.
    pub fn container_path_stat(&self, container: &str, path: &str) -> Result<Option<PathStat>> {
        let rec = self.find_container(container)?;
        let m = self.mount_rootfs(&rec)?;
        let Ok(fd) = layer::open_beneath(&m.path, path, false) else {
            return Ok(None);
        };
        let st = nix::sys::stat::fstat(fd.as_raw_fd())
            .map_err(|e| crate::error::sys_err(format!("stat {path}"))(e))?;
        let link_target = if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
            // readlinkat on an O_PATH descriptor with an empty name reads that link.
            nix::fcntl::readlinkat(Some(fd.as_raw_fd()), "")
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Some(PathStat {
            name: base_name(path),
            size: st.st_size,
            mode: st.st_mode,
            mtime: st.st_mtime,
            link_target,
        }))
    }

    /// Is `path` a directory inside the container (resolved safely)? None when missing.
    pub fn container_path_is_dir(&self, container: &str, path: &str) -> Result<Option<bool>> {
        let rec = self.find_container(container)?;
        let m = self.mount_rootfs(&rec)?;
        Ok(layer::open_beneath(&m.path, path, true)
            .ok()
            .map(|fd| proc_path(&fd).is_dir()))
    }
}

fn proc_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Parses `--change` instructions (import/commit) onto a run config.
pub fn apply_changes(run: &mut RunConfig, changes: &[String]) -> Result<()> {
    for c in changes {
        let (ins, rest) = c
            .trim()
            .split_once(char::is_whitespace)
            .unwrap_or((c.trim(), ""));
        let rest = rest.trim();
        let list = |s: &str| -> Vec<String> {
            if s.starts_with('[') {
                serde_json::from_str(s)
                    .unwrap_or_else(|_| vec!["/bin/sh".into(), "-c".into(), s.into()])
            } else {
                vec!["/bin/sh".into(), "-c".into(), s.into()]
            }
        };
        match ins.to_uppercase().as_str() {
            "CMD" => run.cmd = Some(list(rest)),
            "ENTRYPOINT" => run.entrypoint = Some(list(rest)),
            "ENV" => {
                let (k, v) = rest
                    .split_once('=')
                    .or_else(|| rest.split_once(' '))
                    .unwrap_or((rest, ""));
                let env = run.env.get_or_insert_with(Vec::new);
                env.retain(|e| e.split('=').next() != Some(k));
                env.push(format!("{k}={}", v.trim_matches('"')));
            }
            "WORKDIR" => run.working_dir = Some(rest.to_string()),
            "USER" => run.user = Some(rest.to_string()),
            "STOPSIGNAL" => run.stop_signal = Some(rest.to_string()),
            "EXPOSE" => {
                for p in rest.split_whitespace() {
                    let p = if p.contains('/') {
                        p.to_string()
                    } else {
                        format!("{p}/tcp")
                    };
                    run.exposed_ports
                        .get_or_insert_with(BTreeMap::new)
                        .insert(p, serde_json::json!({}));
                }
            }
            "VOLUME" => {
                let vols: Vec<String> = if rest.starts_with('[') {
                    serde_json::from_str(rest).unwrap_or_default()
                } else {
                    rest.split_whitespace().map(String::from).collect()
                };
                for v in vols {
                    run.volumes
                        .get_or_insert_with(BTreeMap::new)
                        .insert(v, serde_json::json!({}));
                }
            }
            "LABEL" => {
                let (k, v) = rest.split_once('=').unwrap_or((rest, ""));
                run.labels.get_or_insert_with(BTreeMap::new).insert(
                    k.trim_matches('"').to_string(),
                    v.trim_matches('"').to_string(),
                );
            }
            other => {
                return Err(EngineError::Invalid(format!(
                    "{other} is not a valid change command"
                )))
            }
        }
    }
    Ok(())
}

/// A path in a container, as `cp` and the archive endpoints describe it.
#[derive(Debug, Clone)]
pub struct PathStat {
    pub name: String,
    pub size: i64,
    /// `st_mode`: type and permission bits.
    pub mode: u32,
    /// Modification time, Unix seconds.
    pub mtime: i64,
    pub link_target: String,
}

/// The name `cp` gives what it copies from `p`: its last component, or `.` for the
/// contents of a directory (`dir/.`).
pub fn base_name(p: &str) -> String {
    if p.ends_with("/.") {
        return ".".into();
    }
    Path::new(p.trim_end_matches('/'))
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| ".".into())
}

/// Tars what `fd` points at (file, dir or symlink) with entries under `name`.
pub fn tar_pinned<W: Write>(fd: &OwnedFd, name: &str, w: W) -> Result<()> {
    let p = proc_path(fd);
    let meta = fs::metadata(&p).map_err(io_err(&p))?;
    let mut b = tar::Builder::new(w);
    b.follow_symlinks(false);
    if meta.is_dir() {
        let mut h = tar::Header::new_gnu();
        h.set_metadata(&meta);
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        b.append_data(&mut h, format!("{name}/"), std::io::empty())
            .map_err(io_err(&p))?;
        // Walk a tar of the tree and re-root its entries under `name`.
        let mut inner = Vec::new();
        layer::write_tree_tar(&p, &mut inner)?;
        let mut a = tar::Archive::new(&inner[..]);
        for e in a.entries().map_err(io_err(&p))? {
            let mut e = e.map_err(io_err(&p))?;
            let rel = e
                .path()
                .map_err(io_err(&p))?
                .to_string_lossy()
                .trim_start_matches("./")
                .trim_end_matches('/')
                .to_string();
            if rel.is_empty() || rel == "." {
                continue;
            }
            let full = format!("{name}/{rel}");
            let mut h = e.header().clone();
            let link = e
                .link_name()
                .ok()
                .flatten()
                .map(|l| l.to_string_lossy().into_owned());
            if h.entry_type().is_hard_link() {
                if let Some(l) = link {
                    let l = l.trim_start_matches("./");
                    b.append_link(&mut h, &full, format!("{name}/{l}"))
                        .map_err(io_err(&p))?;
                    continue;
                }
            }
            if h.entry_type().is_symlink() {
                if let Some(l) = link {
                    b.append_link(&mut h, &full, l).map_err(io_err(&p))?;
                    continue;
                }
            }
            b.append_data(&mut h, &full, &mut e).map_err(io_err(&p))?;
        }
    } else {
        let mut h = tar::Header::new_gnu();
        let lmeta = fs::symlink_metadata(&p).map_err(io_err(&p))?;
        h.set_metadata(&meta);
        let _ = lmeta;
        let f = fs::File::open(&p).map_err(io_err(&p))?;
        b.append_data(&mut h, name, f).map_err(io_err(&p))?;
    }
    b.finish().map_err(io_err(&p))?;
    Ok(())
}

/// Applies `--change` values over a run config.
fn merge_run(run: &mut RunConfig, c: RunConfig) {
    if c.cmd.is_some() {
        run.cmd = c.cmd;
    }
    if c.entrypoint.is_some() {
        run.entrypoint = c.entrypoint;
    }
    if let Some(env) = c.env {
        let base = run.env.take().unwrap_or_default();
        run.env = Some(crate::spec::merge_env(&[&base, &env]));
    }
    if c.working_dir.is_some() {
        run.working_dir = c.working_dir;
    }
    if c.user.is_some() {
        run.user = c.user;
    }
    if c.stop_signal.is_some() {
        run.stop_signal = c.stop_signal;
    }
    if let Some(p) = c.exposed_ports {
        run.exposed_ports
            .get_or_insert_with(Default::default)
            .extend(p);
    }
    if let Some(v) = c.volumes {
        run.volumes.get_or_insert_with(Default::default).extend(v);
    }
    if let Some(l) = c.labels {
        run.labels.get_or_insert_with(Default::default).extend(l);
    }
}
