//! `start`: the OCI bundle and the monitor that creates and supervises the container;
//! `boot` starts what the restart policies ask for at host start-up.

use super::*;

impl Engine {
    /// The network namespace of running container `other`, for a container started with
    /// `--network container:OTHER`, whose /etc/hosts and /etc/resolv.conf (in `dir`)
    /// become copies of the other's.
    pub(super) fn joined_netns(&self, other: &str, dir: &Path) -> Result<PathBuf> {
        let o = self.find_container(other)?;
        let st = self.container_state(&o.id)?;
        if !st.status.is_active() || st.pid <= 0 {
            return Err(EngineError::Conflict(format!(
                "cannot join network of a non running container: {}",
                o.id
            )));
        }
        for f in ["hosts", "resolv.conf"] {
            let from = self.container_dir(&o.id).join(f);
            let to = dir.join(f);
            let text = fs::read(&from).map_err(io_err(&from))?;
            berth_image::fsutil::replace_file(&to, &text).map_err(io_err(&to))?;
        }
        // Pinned when the other is on a network; else its init's (none, host).
        let pinned = self.netns_path(&o.id);
        Ok(if pinned.exists() {
            pinned
        } else {
            PathBuf::from(format!("/proc/{}/ns/net", st.pid))
        })
    }

    /// Writes the OCI bundle and the monitor config for a start.
    /// Writes the container's spec and monitor config for a start; returns the config and
    /// the sockets reserving its published ports (for the monitor to inherit).
    pub(super) fn prepare_start(
        &self,
        rec: &ContainerRecord,
    ) -> Result<(MonitorConfig, Vec<std::os::fd::OwnedFd>)> {
        let image = self.find_image(&rec.image_id)?;
        let dir = self.container_dir(&rec.id);
        self.ensure_init_layer(rec)?;
        let layer_dirs = self.layer_dirs(rec, &image);
        let mut user = spec::resolve_user(&rec.config.user, &layer_dirs)?;
        spec::add_groups(&mut user, &rec.host_config.group_add, &layer_dirs)?;
        let mut env = rec.config.env.clone();
        env = spec::merge_env(&[&[format!("HOSTNAME={}", rec.config.hostname)], &env]);
        if rec.config.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
            env.push("TERM=xterm".into());
        }
        if !env.iter().any(|e| e.starts_with("HOME=")) {
            env.push(format!("HOME={}", user.home));
        }
        let hc = &rec.host_config;
        let caps = spec::capabilities(&hc.cap_add, &hc.cap_drop, hc.privileged)?;
        let mut no_new_privileges = false;
        let mut unconfined = hc.privileged;
        let mut custom = None;
        for o in &hc.security_opt {
            let (k, v) = o.split_once(['=', ':']).unwrap_or((o.as_str(), ""));
            match k {
                "seccomp" if v == "unconfined" => unconfined = true,
                "seccomp" => custom = Some(v.to_string()),
                "no-new-privileges" => no_new_privileges = v.is_empty() || v == "true",
                "label" | "apparmor" => {}
                _ => {
                    return Err(EngineError::Invalid(format!(
                        "invalid --security-opt: {o:?}"
                    )))
                }
            }
        }
        // A privileged container is unconfined whatever profile it names, as Docker's
        // and containerd's are.
        let mut seccomp = if unconfined {
            None
        } else if let Some(f) = custom {
            let bytes = fs::read(&f).map_err(|e| {
                EngineError::Invalid(format!("opening seccomp profile ({f}) failed: {e}"))
            })?;
            Some(
                berth_runtime::seccomp::profile_from_docker_json(&bytes, &caps, &f)
                    .map_err(EngineError::Invalid)?,
            )
        } else {
            Some(berth_runtime::seccomp::default_profile(&caps))
        };
        if !berth_runtime::kernel_supports_x32() {
            if let Some(s) = seccomp.as_mut() {
                berth_runtime::seccomp::without_architectures(s, &["SCMP_ARCH_X32"]);
            }
        }
        let init_binary = if hc.init == Some(true) {
            Some(find_init().ok_or_else(|| EngineError::Invalid("--init needs a static init binary: install tini (tini-static) or put docker-init in PATH".into()))?)
        } else {
            None
        };
        let mut args = vec![rec.path.clone()];
        args.extend(rec.args.iter().cloned());
        let merged = dir.join("merged");
        // On a network: a namespace with the container's address, and its name for it.
        let mut port_fds = Vec::new();
        let mut port_maps = Vec::new();
        let ports_path = dir.join("ports.json");
        let _ = fs::remove_file(&ports_path);
        // `--network container:ID`: that container's namespace, names and resolvers.
        let joined = match hc.network_mode.strip_prefix("container:") {
            Some(other) => Some(self.joined_netns(other, &dir)?),
            None => None,
        };
        // `ns:PATH`: a namespace pinned there (a pod's), which must still be.
        for mode in [&hc.network_mode, &hc.ipc_mode, &hc.uts_mode, &hc.pid_mode] {
            if let Some(path) = mode.strip_prefix("ns:") {
                if !berth_net::netns::is_pinned(Path::new(path)) {
                    return Err(EngineError::Conflict(format!(
                        "the namespace at {path} is gone (its pod was stopped?)"
                    )));
                }
            }
        }
        let joined = joined.or_else(|| hc.network_mode.strip_prefix("ns:").map(PathBuf::from));
        let netns = match self.network_of_mode(&hc.network_mode)? {
            Some(_) => {
                let (ns, endpoints) = self.connect_for_start(rec)?;
                let wired = (|| -> Result<()> {
                    if let Some(first) = endpoints.first() {
                        self.hosts_entry(
                            &dir,
                            first.ip,
                            first.network.gateway,
                            &rec.config.hostname,
                        )?;
                    }
                    let ours = self.dns_for_start(rec, &endpoints)?;
                    let p = dir.join("resolv.conf");
                    berth_image::fsutil::replace_file(&p, resolv_conf(hc, ours).as_bytes())
                        .map_err(io_err(&p))?;
                    let (published, fds, maps) = match endpoints.first() {
                        Some(first) => self.publish_ports(rec, first.ip)?,
                        None if hc.port_bindings.is_empty() && !hc.publish_all_ports => {
                            Default::default()
                        }
                        None => {
                            return Err(EngineError::Invalid(
                                "publishing ports needs a network: the container is on none".into(),
                            ))
                        }
                    };
                    berth_image::fsutil::replace_file(
                        &ports_path,
                        &serde_json::to_vec(&published).expect("ports serialise"),
                    )
                    .map_err(io_err(&ports_path))?;
                    port_fds = fds;
                    port_maps = maps;
                    Ok(())
                })();
                if let Err(e) = wired {
                    let _ = berth_net::netns::remove(&ns);
                    return Err(e);
                }
                Some(ns)
            }
            None => None,
        };
        let input = spec::SpecInput {
            rec,
            rootfs: &merged,
            container_dir: &dir,
            user,
            args,
            env,
            cwd: if rec.config.working_dir.is_empty() {
                "/".into()
            } else {
                rec.config.working_dir.clone()
            },
            mounts: &rec.mounts,
            init_binary,
            seccomp,
            no_new_privileges,
            cgroup_v1_binds: match sys::cgroup_v1_hierarchies() {
                Some(hierarchies) if hc.runtime.is_empty() || hc.runtime == "builtin" => {
                    let skeleton = if hc.privileged {
                        None
                    } else {
                        Some(sys::cgroup_v1_skeleton(self.run_root(), &hierarchies)?)
                    };
                    Some(spec::CgroupV1View {
                        hierarchies,
                        skeleton,
                    })
                }
                _ => None,
            },
            netns: joined.clone().or_else(|| netns.clone()),
        };
        let spec = spec::build(&input)?;
        let bundle = crate::monitor::bundle_dir(self.run_root(), &rec.id);
        fs::create_dir_all(&bundle).map_err(io_err(&bundle))?;
        let cfg_path = bundle.join("config.json");
        berth_image::fsutil::replace_file(
            &cfg_path,
            &serde_json::to_vec_pretty(&spec).expect("spec serialises"),
        )
        .map_err(io_err(&cfg_path))?;

        let mut lowerdir = dir.join("init").display().to_string();
        if !image.layers.is_empty() {
            lowerdir.push(':');
            lowerdir.push_str(&self.layers.lowerdir_option(&image.chain_ids())?);
        }
        let log = &hc.log_config;
        let seed_volumes = rec
            .mounts
            .iter()
            .filter(|m| m.kind == "volume" && !m.tmpfs_options.iter().any(|o| o == "nocopy"))
            .map(|m| (m.destination.clone(), PathBuf::from(&m.source)))
            .collect();
        let mcfg = MonitorConfig {
            id: rec.id.clone(),
            runtime: hc.runtime.clone(),
            runtime_root: self.runtime_root(),
            bundle: bundle.clone(),
            tty: rec.config.tty,
            open_stdin: rec.config.open_stdin,
            layers_root: self.layers.root().to_path_buf(),
            lowerdir,
            upper: dir.join("upper"),
            work: dir.join("work"),
            merged,
            log_path: self.log_path(rec),
            log_cri: log.kind == "k8s-file",
            // `local`: Docker's defaults (20 MB, 5 files, compressed); json-file: unbounded
            // unless asked.
            log_max_size: log
                .config
                .get("max-size")
                .and_then(|s| spec::parse_bytes(s))
                .unwrap_or(if log.kind == "local" { 20 << 20 } else { 0 })
                as u64,
            log_max_files: log
                .config
                .get("max-file")
                .and_then(|s| s.parse().ok())
                .unwrap_or(if log.kind == "local" { 5 } else { 1 }),
            log_compress: match log.config.get("compress").map(String::as_str) {
                Some(v) => v == "true" || v == "1",
                None => log.kind == "local",
            },
            auto_remove: hc.auto_remove,
            loopback_up: hc.network_mode != "host" && !hc.network_mode.starts_with("ns:"),
            netns,
            // Inherited right after the readiness pipe (fd 3).
            port_fds: (0..port_fds.len() as i32).map(|i| 4 + i).collect(),
            ports_table: self.ports_table(),
            ports: port_maps.iter().map(Into::into).collect(),
            seed_volumes,
            workdir: rec.config.working_dir.clone(),
            cgroup: rec.cgroup(),
            restart_policy: hc.restart_policy.name.clone(),
            restart_max: hc.restart_policy.maximum_retry_count,
            healthcheck: rec
                .config
                .healthcheck
                .clone()
                .filter(|h| h.argv().is_some()),
            owner: rec
                .config
                .labels
                .get(crate::monitor::OWNER_LABEL)
                .and_then(|v| crate::monitor::parse_owner(v)),
        };
        let p = crate::monitor::config_path(self.run_root(), &rec.id);
        berth_image::fsutil::replace_file(
            &p,
            &serde_json::to_vec(&mcfg).expect("monitor config serialises"),
        )
        .map_err(io_err(&p))?;
        Ok((mcfg, port_fds))
    }

    /// Hands over a [`sys::AttachWarmer`] for the next [`Engine::start_container`] to use
    /// instead of forking its own: `run` forks one before it even opens the engine, so the
    /// warmer's wait for the kernel's slow path overlaps the create too. It ends within a
    /// second if no start follows.
    pub fn adopt_warmer(&self, warmer: sys::AttachWarmer) {
        self.warmer.set(Some(warmer));
    }

    /// Hands the engine a monitor started ahead (see [`crate::spare`]) for its next
    /// container start, which then need not spawn one.
    pub fn adopt_spare(&self, spare: crate::spare::Spare) {
        self.spare.set(Some(spare));
    }

    pub fn start_container(&self, name: &str, wait_attach: bool) -> Result<Option<StartHandle>> {
        let found = self.find_container(name)?;
        let lock = self.lock_container(&found.id)?;
        // Under the lock: it may have been started or removed meanwhile.
        let rec = self.find_container(&found.id)?;
        let st = self.container_state(&rec.id)?;
        if st.status.is_active() {
            return Ok(None);
        }
        // Until the monitor reports the container created (see AttachWarmer).
        let _warmer = self.warmer.take().or_else(crate::sys::AttachWarmer::start);
        let _ = fs::remove_file(crate::monitor::stop_marker(self.root(), &rec.id));
        if st.status == Status::Dead {
            self.clean_after_dead_monitor(&rec);
        }
        // The runtime's state of an earlier run may still be there: a `kill` from another
        // process (stop's SIGKILL) saves the runtime state and can do so just after the
        // monitor deleted it. Nothing runs now, so it goes.
        if let Ok(rt) = berth_runtime::by_name(&rec.host_config.runtime, &self.runtime_root()) {
            let _ = rt.delete(&rec.id, true);
        }
        if st.restart_count != 0 {
            // A user's start begins a new count, as Docker's does.
            let mut fresh = st.clone();
            fresh.restart_count = 0;
            state::write(self.root(), &rec.id, &fresh)?;
        }
        let (_, port_fds) = self.prepare_start(&rec)?;
        let (r, w) = std::io::pipe().map_err(io_err("pipe"))?;
        let log_path = crate::monitor::bundle_dir(self.run_root(), &rec.id).join("monitor.log");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io_err(&log_path))?;
        let child = match self.spare.take() {
            Some(spare) => {
                let ports: Vec<_> = port_fds.iter().map(|f| f.as_fd()).collect();
                match spare.hand_over(&rec.id, wait_attach, log.as_fd(), w.as_fd(), &ports) {
                    Ok(child) => child,
                    Err(_unused) => self.spawn_monitor(&rec.id, wait_attach, log, &w, &port_fds)?,
                }
            }
            None => self.spawn_monitor(&rec.id, wait_attach, log, &w, &port_fds)?,
        };
        drop(w);
        drop(port_fds);
        let mut ready = BufReader::new(r);
        let mut handle = StartHandle {
            child: Some(child),
            ready: None,
            pid: 0,
            lock: Some(lock),
        };
        if wait_attach {
            let line = read_line(&mut ready);
            if line != "created" {
                handle.wait_monitor();
                parse_ready(&line)?;
            }
            handle.ready = Some(ready);
        } else {
            let line = read_line(&mut ready);
            handle.lock = None;
            handle.pid = parse_ready(&line)?;
            self.emit_container(&rec, "start", &[]);
        }
        Ok(Some(handle))
    }

    /// Spawns container `id`'s monitor: `log` as its stderr, `ready` as fd 3, `ports` (the
    /// reservations of published ports) as 4, 5, ….
    pub(super) fn spawn_monitor(
        &self,
        id: &str,
        wait_attach: bool,
        log: fs::File,
        ready: &std::io::PipeWriter,
        ports: &[std::os::fd::OwnedFd],
    ) -> Result<Child> {
        let wfd = ready.as_raw_fd();
        // Out of the way of the fds the monitor gets them at (4, 5, …).
        let high: Vec<std::os::fd::OwnedFd> = ports
            .iter()
            .map(|fd| {
                nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(100))
                    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that we own.
                    .map(|n| unsafe {
                        <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(n)
                    })
                    .map_err(|e| crate::error::sys_err("dup")(e))
            })
            .collect::<Result<_>>()?;
        let high_raw: Vec<i32> = high.iter().map(|f| f.as_raw_fd()).collect();
        let mut cmd = Command::new(self.monitor_path());
        cmd.arg("--root")
            .arg(self.root())
            .arg("--run-root")
            .arg(self.run_root())
            .arg("--id")
            .arg(id)
            .arg("--ready-fd")
            .arg("3");
        if wait_attach {
            cmd.arg("--wait-attach");
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        // SAFETY: between fork and exec we only call async-signal-safe functions (setsid,
        // dup2) on fds that are open in the child.
        unsafe {
            cmd.pre_exec(move || {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                if libc::dup2(wfd, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                for (i, fd) in high_raw.iter().enumerate() {
                    if libc::dup2(*fd, 4 + i as i32) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        cmd.spawn().map_err(io_err(self.monitor_path()))
    }

    /// `system boot`: after a reboot (or monitors killed), starts again the containers
    /// whose restart policy is `always`, or `unless-stopped` and not stopped by the user.
    /// Leftovers of the dead run (mount, runtime state, cgroup) are cleaned first. Returns
    /// the ids started and the errors met (one container's failure stops no other).
    pub fn boot(&self) -> Result<(Vec<String>, Vec<String>)> {
        let mut started = Vec::new();
        let mut errors = Vec::new();
        for rec in self.container_records()? {
            let policy = rec.host_config.restart_policy.name.as_str();
            let stopped_by_user = crate::monitor::stop_marker(self.root(), &rec.id).exists();
            let wanted = policy == "always" || (policy == "unless-stopped" && !stopped_by_user);
            let st = self.container_state(&rec.id)?;
            if !wanted || st.status.is_active() {
                continue;
            }
            let result = (|| -> Result<()> {
                if st.status == Status::Dead {
                    self.clean_after_dead_monitor(&rec);
                    let mut fixed = st.clone();
                    fixed.status = Status::Exited;
                    fixed.finished_at = crate::now();
                    state::write(self.root(), &rec.id, &fixed)?;
                }
                sys::unmount(&self.container_dir(&rec.id).join("merged"))?;
                let _ = fs::remove_file(crate::monitor::stop_marker(self.root(), &rec.id));
                self.start_container(&rec.id, false)?;
                Ok(())
            })();
            match result {
                Ok(()) => started.push(rec.id.clone()),
                Err(e) => errors.push(format!("{}: {}", rec.name, crate::monitor::error_chain(&e))),
            }
        }
        Ok((started, errors))
    }
}

pub(super) fn read_line(r: &mut impl BufRead) -> String {
    let mut s = String::new();
    let _ = r.read_line(&mut s);
    s.trim_end().to_string()
}

pub(super) fn parse_ready(line: &str) -> Result<i32> {
    if let Some(pid) = line.strip_prefix("ok ") {
        return Ok(pid.trim().parse().unwrap_or(0));
    }
    if let Some(rest) = line.strip_prefix("err ") {
        let (code, msg) = rest.split_once(' ').unwrap_or((rest, ""));
        return Err(EngineError::Start {
            code: code.parse().unwrap_or(125),
            message: msg.to_string(),
        });
    }
    Err(EngineError::Start {
        code: 125,
        message: if line.is_empty() {
            "the container's monitor exited before starting it (see monitor.log in its bundle under the run root)".into()
        } else {
            format!("unexpected answer from the monitor: {line}")
        },
    })
}

/// A static init for `--init`: berth-init, docker-init or tini-static, in PATH.
pub(super) fn find_init() -> Option<PathBuf> {
    for n in ["berth-init", "docker-init", "tini-static"] {
        if let Some(p) = berth_runtime::external::find_binary(n) {
            return Some(p);
        }
    }
    None
}
