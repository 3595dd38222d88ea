//! `RUN`: the step's command in a container made by the engine on the state's image.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;

use berth_build::dockerfile::{Mount, MountType};

use super::view::View;
use super::*;
use crate::error::io_err;
use crate::model::{ContainerConfig, HostConfig, MountSpec};
use crate::specs::ContainerSpec;

impl Builder<'_> {
    pub(super) fn run(
        &mut self,
        state: &mut State,
        inst: &Instruction,
        run: &berth_build::dockerfile::RunCommand,
    ) -> Result<bool> {
        let shell = state
            .config
            .config
            .shell
            .clone()
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
        let argv = match (&run.command, run.heredocs.as_slice()) {
            // `RUN <<EOF`: the document is the script.
            (CommandLine::Shell(s), [doc])
                if s.trim().starts_with("<<") && !s.trim().contains(' ') =>
            {
                let mut a = shell.clone();
                a.push(doc.body().into_owned());
                a
            }
            // Documents fed to a command: the shell reads them itself.
            (CommandLine::Shell(s), docs) if !docs.is_empty() => {
                let mut script = s.clone();
                for d in docs {
                    script.push('\n');
                    script.push_str(&d.content);
                    if !d.content.ends_with('\n') {
                        script.push('\n');
                    }
                    script.push_str(&d.name);
                }
                let mut a = shell.clone();
                a.push(script);
                a
            }
            (line, _) => argv(line, Some(&shell)),
        };
        let mut env = state.config.config.env.clone().unwrap_or_default();
        let mut used_args = Vec::new();
        for (k, v) in &state.args {
            if !env
                .iter()
                .any(|e| e.split_once('=').map(|(x, _)| x) == Some(k.as_str()))
            {
                env.push(format!("{k}={v}"));
                used_args.push(format!("{k}={v}"));
            }
        }
        let by = if used_args.is_empty() {
            format!("RUN {} # buildkit", argv.join(" "))
        } else {
            format!(
                "RUN |{} {} {} # buildkit",
                used_args.len(),
                used_args.join(" "),
                argv.join(" ")
            )
        };
        let network = format!("{:?} {}", run.network, self.opts.network_none);
        // The mounts: made before the key, since what a bind mount shows is an input.
        let escape = self.file.escape();
        let lookup = self.env_for(state);
        let mut mounts = Mounts::default();
        for m in &run.mounts {
            let m = if m.deferred {
                m.expand(&lookup, escape).map_err(|e| at(inst, e))?
            } else {
                m.clone()
            };
            self.mount(state, &m, &mut mounts, &mut env)
                .map_err(|e| at(inst, e))?;
        }
        let key = hash_key(&[
            &state.key,
            "RUN",
            &serde_json::to_string(&argv).unwrap_or_default(),
            &env.join("\0"),
            &network,
            &mounts.key,
        ]);
        if let Some(layer) = self.cached(&key)? {
            self.add_layer(state, key, layer, by);
            return Ok(true);
        }
        let e = self.engine;
        // The state as an image, to make the container from.
        let existed = e.register_state_probe(state)?;
        let image = e.register_state(&state.layers, state.config.clone(), &[])?;
        if !existed {
            self.temporary.push(image.clone());
            e.note_temporary(&image);
        }
        let config = ContainerConfig {
            // The container lives only as long as this build (see the monitor).
            labels: [(
                crate::monitor::OWNER_LABEL.to_string(),
                super::view::owner_tag(),
            )]
            .into_iter()
            .collect(),
            cmd: Some(argv.clone()),
            env,
            user: state.config.config.user.clone().unwrap_or_default(),
            working_dir: state.config.config.working_dir.clone().unwrap_or_default(),
            ..Default::default()
        };
        let stubs = self.missing_targets(state, &mounts.specs)?;
        let host_config = HostConfig {
            network_mode: match run.network {
                berth_build::dockerfile::Network::None => "none".into(),
                berth_build::dockerfile::Network::Default if self.opts.network_none => {
                    "none".into()
                }
                _ => "host".into(),
            },
            mounts: mounts.specs.clone(),
            ..Default::default()
        };
        let (id, _) = e.create_container(ContainerSpec {
            name: None,
            image: image.to_string(),
            config,
            entrypoint: Some(Vec::new()),
            host_config,
            endpoint: Default::default(),
            pod: None,
        })?;
        let outcome = self.run_container(&id);
        let result = match outcome {
            Ok(0) => {
                remove_stubs(&e.container_dir(&id).join("upper"), &stubs);
                e.container_layer(&id, epoch_secs(&state.time).into())
            }
            Ok(code) => Err(EngineError::Invalid(format!(
                "process \"{}\" did not complete successfully: exit code: {code}",
                argv.join(" ")
            ))),
            Err(err) => Err(err),
        };
        let _ = e.remove_container(&id, true, true);
        drop(mounts);
        let (diff_id, _) = result?;
        e.record_layer(&key, &diff_id, &diff_id, &by)?;
        self.add_layer(state, key, (diff_id.clone(), diff_id), by);
        Ok(false)
    }

    /// Runs a created container to its end, passing its output on; returns its exit code.
    fn run_container(&mut self, id: &str) -> Result<i32> {
        let e = self.engine;
        e.start_container(id, false)?;
        let log = e.container_dir(id).join("log.json");
        let (mut lines, mut follower) =
            crate::logs::Follower::open(&log).map_err(crate::error::io_err(&log))?;
        let step = self.step;
        loop {
            let done = e.wait_stopped(id, Some(std::time::Duration::from_millis(100)))?;
            lines.extend(follower.read_new().unwrap_or_default());
            for l in lines.drain(..) {
                let text = format!("#{step} {}", l.log.trim_end_matches('\n'));
                self.say(&text);
            }
            if let Some(st) = done {
                return Ok(st.exit_code);
            }
            self.check_cancelled()?;
        }
    }

    /// Prepares one `RUN --mount` into `mounts`; a secret with `env=` goes into `env`.
    fn mount(
        &mut self,
        state: &State,
        m: &Mount,
        mounts: &mut Mounts,
        env: &mut Vec<String>,
    ) -> Result<()> {
        let target = |t: &str| in_workdir(state, t);
        let needs_target = || {
            m.target
                .as_deref()
                .ok_or_else(|| invalid(format!("{} mount needs a target", m.kind)))
        };
        match m.kind {
            MountType::Bind => {
                let dest = needs_target()?;
                let src = m.source.clone().unwrap_or_else(|| "/".into());
                let (host, key) = match &m.from {
                    Some(from) => {
                        let layers = self.layers_of(from)?;
                        let view = self.engine.layer_view(&layers)?;
                        let host = copy::resolve_in(&view.root, &src).ok_or_else(|| {
                            invalid(format!("failed to mount {src} from {from}: not found"))
                        })?;
                        let key = format!("{from}:{:?}:{src}", layers);
                        mounts.views.push(view);
                        (host, key)
                    }
                    None => {
                        let tree = self.context_tree()?;
                        let rel = berth_build::ignore::clean(src.trim_start_matches('/'));
                        let host = tree.resolve(&rel, &src).map_err(invalid)?.ok_or_else(|| {
                            invalid(format!(
                                "failed to mount {src}: not found in the build context"
                            ))
                        })?;
                        (
                            host.clone(),
                            tree.content_key(&host, &rel, &copy::Digests::new(&self.engine.db))?,
                        )
                    }
                };
                // Writes to a writable bind mount are thrown away, as BuildKit does.
                let host = if m.readonly || m.from.is_some() || !host.is_dir() {
                    host
                } else {
                    let view = self.engine.scratch_view(&host)?;
                    let root = view.root.clone();
                    mounts.views.push(view);
                    root
                };
                mounts
                    .key
                    .push_str(&format!("bind:{dest}:{}:{key}\n", m.readonly));
                mounts.specs.push(MountSpec {
                    kind: "bind".into(),
                    source: host.display().to_string(),
                    target: target(dest),
                    read_only: m.readonly,
                    ..Default::default()
                });
            }
            MountType::Cache => {
                let dest = needs_target()?;
                if m.from.is_some() {
                    return Err(invalid(
                        "RUN --mount=type=cache,from=… is not implemented yet",
                    ));
                }
                let id = m.id.clone().unwrap_or_else(|| target(dest));
                let dir = self.engine.cache_mount_dir(
                    &id,
                    m.mode.unwrap_or(0o755),
                    m.uid.unwrap_or(0),
                    m.gid.unwrap_or(0),
                )?;
                if m.sharing == Some(berth_build::dockerfile::Sharing::Locked) {
                    mounts.locks.push(lock_dir(&dir)?);
                }
                mounts.specs.push(MountSpec {
                    kind: "bind".into(),
                    source: dir.join("data").display().to_string(),
                    target: target(dest),
                    read_only: m.readonly,
                    ..Default::default()
                });
            }
            MountType::Tmpfs => {
                let dest = needs_target()?;
                mounts.specs.push(MountSpec {
                    kind: "tmpfs".into(),
                    target: target(dest),
                    tmpfs_size: m.size,
                    ..Default::default()
                });
            }
            MountType::Secret => {
                let id =
                    m.id.clone()
                        .or_else(|| {
                            m.target
                                .as_deref()
                                .and_then(|t| Path::new(t).file_name())
                                .map(|n| n.to_string_lossy().into_owned())
                        })
                        .unwrap_or_default();
                let Some(value) = self.opts.secrets.get(&id) else {
                    if m.required {
                        return Err(invalid(format!("secret {id} not found")));
                    }
                    return Ok(());
                };
                if let Some(var) = &m.env {
                    env.push(format!("{var}={}", String::from_utf8_lossy(value)));
                    if m.target.is_none() {
                        return Ok(());
                    }
                }
                let dest = m
                    .target
                    .clone()
                    .unwrap_or_else(|| format!("/run/secrets/{id}"));
                // A private copy with the owner and mode the mount asks for.
                let view = self.engine.empty_view()?;
                let file = view.root.join(format!("secret-{}", mounts.specs.len()));
                write_private(
                    &file,
                    value,
                    m.mode.unwrap_or(0o400),
                    m.uid.unwrap_or(0),
                    m.gid.unwrap_or(0),
                )?;
                mounts.views.push(view);
                mounts.specs.push(MountSpec {
                    kind: "bind".into(),
                    source: file.display().to_string(),
                    target: target(&dest),
                    read_only: true,
                    ..Default::default()
                });
            }
            MountType::Ssh => {
                return Err(invalid("RUN --mount=type=ssh is not implemented yet"));
            }
        }
        Ok(())
    }

    /// The mount targets the state's file system does not have: the runtime makes them,
    /// and they are taken out of the step's layer again (as BuildKit does).
    fn missing_targets(&self, state: &State, specs: &[MountSpec]) -> Result<Vec<String>> {
        if specs.is_empty() {
            return Ok(Vec::new());
        }
        let dirs = self.layer_dirs(state)?;
        Ok(specs
            .iter()
            .filter(|m| {
                let real = resolve_in_layers(&dirs, &m.target);
                matches!(find_in_layers(&dirs, &real), Found::Missing)
            })
            .map(|m| m.target.clone())
            .collect())
    }
}

/// What the mounts of one RUN hold on to until it is done.
#[derive(Default)]
struct Mounts {
    specs: Vec<MountSpec>,
    /// What the bind mounts show, for the cache key.
    key: String,
    views: Vec<View>,
    locks: Vec<nix::fcntl::Flock<std::fs::File>>,
}

/// Takes the empty mount points the runtime made for `targets` out of a container's
/// upper dir, with the parents it made for them. Nothing is followed through a symlink.
fn remove_stubs(upper: &Path, targets: &[String]) {
    for t in targets {
        let comps: Vec<&str> = t.split('/').filter(|c| !c.is_empty()).collect();
        let mut paths = Vec::new();
        let mut p = upper.to_path_buf();
        for c in &comps {
            p.push(c);
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_symlink() => break,
                Ok(_) => paths.push(p.clone()),
                Err(_) => break,
            }
        }
        if paths.len() != comps.len() {
            continue;
        }
        for p in paths.iter().rev() {
            let Ok(m) = std::fs::symlink_metadata(p) else {
                break;
            };
            let removed = if m.is_dir() {
                std::fs::remove_dir(p).is_ok()
            } else {
                m.is_file() && m.len() == 0 && std::fs::remove_file(p).is_ok()
            };
            if !removed {
                break;
            }
        }
    }
}

/// Holds `dir/lock` exclusively (for `sharing=locked`) until the lock is dropped.
fn lock_dir(dir: &Path) -> Result<nix::fcntl::Flock<std::fs::File>> {
    let p = dir.join("lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(io_err(&p))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| crate::error::sys_err(format!("locking {}", p.display()))(e))
}

/// Writes a file only `uid:gid` with `mode` can read.
fn write_private(path: &Path, data: &[u8], mode: u32, uid: u32, gid: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))?;
    f.write_all(data).map_err(io_err(path))?;
    std::os::unix::fs::fchown(&f, Some(uid), Some(gid)).map_err(io_err(path))?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io_err(path))?;
    Ok(())
}
