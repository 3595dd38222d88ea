//! `create`: a container's record, overlay dirs, /etc files and volumes, made visible in
//! one transaction (anything made before a failure is undone).

use super::*;

impl Engine {
    /// `create`: records a new container. Returns its id and any warnings.
    pub fn create_container(&self, opts: ContainerSpec) -> Result<(String, Vec<String>)> {
        if opts.name.is_some() {
            return self.create_container_once(opts);
        }
        // A generated name can be taken by a concurrent create between the check and
        // the insert: the insert refuses it, and another name is drawn.
        let mut attempt = 0;
        loop {
            match self.create_container_once(opts.clone()) {
                Err(EngineError::Conflict(m)) if attempt < 5 && m.ends_with(NAME_RACE) => {
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    pub(super) fn create_container_once(
        &self,
        opts: ContainerSpec,
    ) -> Result<(String, Vec<String>)> {
        opts.validate()?;
        let image = self.find_or_builtin_image(&opts.image)?;
        let img = self.image_config(&image)?;
        let warnings = Vec::new();
        let id = names::new_id();
        let name = match &opts.name {
            Some(n) => {
                let n = n.strip_prefix('/').unwrap_or(n);
                if !names::valid_name(n) {
                    return Err(EngineError::Invalid(format!(
                        "invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                    )));
                }
                n.to_string()
            }
            None => {
                let mut tries = 0;
                loop {
                    let n = names::random_name(tries);
                    let taken: bool = self.db.query_row(
                        "SELECT EXISTS(SELECT 1 FROM containers WHERE name = ?1)",
                        [&n],
                        |r| r.get(0),
                    )?;
                    if !taken {
                        break n;
                    }
                    tries += 1;
                }
            }
        };
        if let Some(other) = self
            .db
            .query_row("SELECT id FROM containers WHERE name = ?1", [&name], |r| {
                r.get::<_, String>(0)
            })
            .optional()?
        {
            return Err(EngineError::Conflict(format!(
                "Conflict. The container name \"/{name}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
            )));
        }
        let mut config = opts.config.clone();
        let ic = &img.config;
        config.image = opts.image.clone();
        let empty = Vec::new();
        config.env = spec::merge_env(&[ic.env.as_ref().unwrap_or(&empty), &config.env]);
        if !config.env.iter().any(|e| e.starts_with("PATH=")) {
            config.env.insert(0, DEFAULT_PATH.into());
        }
        let entrypoint = match &opts.entrypoint {
            Some(e) if e.is_empty() || (e.len() == 1 && e[0].is_empty()) => None,
            Some(e) => Some(e.clone()),
            None => ic.entrypoint.clone(),
        };
        if config.cmd.is_none() && opts.entrypoint.is_none() {
            config.cmd = ic.cmd.clone();
        }
        config.entrypoint = entrypoint;
        if config.working_dir.is_empty() {
            config.working_dir = ic.working_dir.clone().unwrap_or_default();
        }
        if config.user.is_empty() {
            config.user = ic.user.clone().unwrap_or_default();
        }
        let mut labels = ic.labels.clone().unwrap_or_default();
        labels.extend(config.labels.clone());
        config.labels = labels;
        if config.stop_signal.is_none() {
            config.stop_signal = ic.stop_signal.clone();
        }
        if config.hostname.is_empty() {
            config.hostname = id[..12].to_string();
        }
        if config.healthcheck.is_none() {
            config.healthcheck = ic.healthcheck.clone();
        } else if let (Some(mine), Some(image)) =
            (config.healthcheck.as_mut(), ic.healthcheck.as_ref())
        {
            // Flags given without --health-cmd keep the image's test.
            if mine.test.is_empty() {
                mine.test = image.test.clone();
            }
        }
        // The image's exposed ports and the ones `--expose` adds.
        let mine = config.exposed_ports.take().unwrap_or_default();
        let mut exposed = ic.exposed_ports.clone().unwrap_or_default();
        exposed.extend(mine);
        config.exposed_ports = (!exposed.is_empty()).then_some(exposed);
        // The image's volumes and the ones the request declares (`Config.Volumes`, as the
        // docker CLI sends `-v /path`): each becomes an anonymous volume unless a mount
        // is there.
        let mut volumes = ic.volumes.clone().unwrap_or_default();
        volumes.extend(config.volumes.take().unwrap_or_default());
        config.volumes = (!volumes.is_empty()).then_some(volumes);
        let args = spec::process_args(config.entrypoint.as_ref(), config.cmd.as_ref());
        if args.is_empty() {
            return Err(EngineError::Invalid("no command specified".into()));
        }
        let mut host_config = opts.host_config.clone();
        // In a pod: the pod's namespaces (pinned), hostname and name files.
        let pod = match &opts.pod {
            Some(p) => Some(self.pod_for_container(p, &mut host_config, &mut config)?),
            None => None,
        };
        // Docker's default: the default bridge network.
        if host_config.network_mode.is_empty() || host_config.network_mode == "default" {
            host_config.network_mode = crate::networks::DEFAULT_NETWORK.into();
        }
        if let Some(other) = host_config.network_mode.strip_prefix("container:") {
            // Docker's checks: what the other container's namespace decides cannot be
            // asked for here.
            let conflict = |what: &str| {
                EngineError::Invalid(format!("conflicting options: {what} and the network mode"))
            };
            if !opts.config.hostname.is_empty() {
                return Err(conflict("hostname"));
            }
            if !host_config.dns.is_empty()
                || !host_config.dns_search.is_empty()
                || !host_config.dns_options.is_empty()
            {
                return Err(conflict("dns"));
            }
            if !host_config.extra_hosts.is_empty() {
                return Err(conflict("custom host-to-IP mapping"));
            }
            if !host_config.port_bindings.is_empty() || host_config.publish_all_ports {
                return Err(EngineError::Invalid(
                    "conflicting options: port publishing and the container type network mode"
                        .into(),
                ));
            }
            let o = self.find_container(other)?;
            host_config.network_mode = format!("container:{}", o.id);
            config.hostname = o.config.hostname.clone();
        }
        // A network that does not exist is an error now, not at start.
        let net = self.network_of_mode(&host_config.network_mode)?;
        if net.is_none()
            && (opts.endpoint.ip.is_some()
                || opts.endpoint.mac.is_some()
                || !opts.endpoint.aliases.is_empty())
        {
            return Err(EngineError::Invalid(format!(
                "--ip, --mac-address and --network-alias need a network, not --network {}",
                host_config.network_mode
            )));
        }
        if net.is_none() && (!host_config.port_bindings.is_empty() || host_config.publish_all_ports)
        {
            return Err(EngineError::Invalid(format!(
                "publishing ports needs a network (--network bridge or one of yours), not --network {}",
                host_config.network_mode
            )));
        }
        if host_config.log_config.kind.is_empty() {
            host_config.log_config.kind = "json-file".into();
        }
        if !host_config.runtime.is_empty() && host_config.runtime != "builtin" {
            berth_runtime::by_name(&host_config.runtime, Path::new("/nonexistent"))?;
        }

        // Volumes and mounts. Anything created here is undone if create fails.
        let mut created_volumes: Vec<String> = Vec::new();
        let result = (|| -> Result<ContainerRecord> {
            let mut mounts = Vec::new();
            for m in &host_config.mounts {
                mounts.push(self.resolve_mount(m, &mut created_volumes)?);
            }
            if let Some(vols) = &config.volumes {
                for path in vols.keys() {
                    if mounts
                        .iter()
                        .any(|m: &ResolvedMount| m.destination == *path)
                    {
                        continue;
                    }
                    let spec = MountSpec {
                        kind: "volume".into(),
                        target: path.clone(),
                        ..Default::default()
                    };
                    mounts.push(self.resolve_mount(&spec, &mut created_volumes)?);
                }
            }
            let dir = self.container_dir(&id);
            for d in ["upper", "work", "merged"] {
                fs::create_dir_all(dir.join(d)).map_err(io_err(dir.join(d)))?;
            }
            match &pod {
                Some(pod) => {
                    for f in ["hostname", "hosts", "resolv.conf"] {
                        let (from, to) = (pod.dir.join(f), dir.join(f));
                        fs::copy(&from, &to).map_err(io_err(&from))?;
                    }
                }
                None => self.write_etc_files(&dir, &config.hostname, &host_config)?,
            }
            let rec = ContainerRecord {
                id: id.clone(),
                name: name.clone(),
                image_id: image.id.to_string(),
                created: crate::now(),
                config: config.clone(),
                host_config: host_config.clone(),
                mounts,
                path: args[0].clone(),
                args: args[1..].to_vec(),
                pod: opts.pod.clone(),
            };
            self.make_init_layer(&rec)?;
            Ok(rec)
        })();
        let rec = match result {
            Ok(r) => r,
            Err(e) => {
                for v in &created_volumes {
                    let _ = self.remove_volume(v, true);
                }
                let _ = fs::remove_dir_all(self.container_dir(&id));
                return Err(e);
            }
        };
        // No state.json yet: a container without one reads as created (state::read_raw),
        // and its first start writes one.
        // The container and its place on its network appear together.
        let inserted = (|| -> Result<()> {
            let _lock = match &net {
                Some(_) => Some(self.network_lock()?),
                None => None,
            };
            let tx = self.db.unchecked_transaction()?;
            tx.execute(
                "INSERT INTO containers (id, name, image, created, config) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    rec.id,
                    rec.name,
                    rec.image_id,
                    rec.created,
                    serde_json::to_string(&rec).expect("record serialises")
                ],
            )?;
            if let Some(net) = &net {
                self.add_endpoint(&rec.id, net, &opts.endpoint)?;
            }
            tx.commit()?;
            Ok(())
        })();
        if let Err(e) = inserted {
            for v in &created_volumes {
                let _ = self.remove_volume(v, true);
            }
            let _ = fs::remove_dir_all(self.container_dir(&id));
            if let EngineError::Db(rusqlite::Error::SqliteFailure(f, _)) = &e {
                if f.code == rusqlite::ErrorCode::ConstraintViolation {
                    return Err(EngineError::Conflict(format!(
                        "Conflict. The container name \"/{name}\"{NAME_RACE}"
                    )));
                }
            }
            return Err(e);
        }
        self.emit_container(&rec, "create", &[]);
        Ok((id, warnings))
    }

    /// Puts `ip hostname` in the container's /etc/hosts (replacing the line an earlier
    /// start wrote).
    ///
    /// `--add-host NAME:host-gateway` lines get `gateway`, the host's address on the
    /// container's network, as Docker's do.
    pub(super) fn hosts_entry(
        &self,
        dir: &Path,
        ip: std::net::Ipv4Addr,
        gateway: std::net::Ipv4Addr,
        hostname: &str,
    ) -> Result<()> {
        let p = dir.join("hosts");
        let old = fs::read_to_string(&p).unwrap_or_default();
        let mut text: String = old
            .lines()
            .filter(|l| !l.ends_with("\t# berth"))
            .map(|l| match l.strip_prefix("host-gateway\t") {
                Some(name) => format!("{gateway}\t{name}\n"),
                None => format!("{l}\n"),
            })
            .collect();
        text.push_str(&format!("{ip}\t{hostname}\t# berth\n"));
        berth_image::fsutil::replace_file(&p, text.as_bytes()).map_err(io_err(&p))
    }

    /// The pod a container is created in, which must be ready; its namespaces become
    /// the container's modes (`pid_mode` `pod`: the pod's PID namespace) and its hostname
    /// the container's.
    fn pod_for_container(
        &self,
        pod: &str,
        hc: &mut HostConfig,
        config: &mut crate::model::ContainerConfig,
    ) -> Result<crate::pods::PodView> {
        let pod = self.pod(pod)?;
        if pod.state != crate::pods::PodState::Ready {
            return Err(EngineError::Conflict(format!(
                "pod sandbox {} is not ready",
                pod.record.id
            )));
        }
        let ns = |kind: &str| match pod.namespace(kind) {
            Some(p) => format!("ns:{}", p.display()),
            None => "host".to_string(),
        };
        hc.network_mode = ns("net");
        hc.ipc_mode = ns("ipc");
        hc.uts_mode = ns("uts");
        if hc.pid_mode == "pod" {
            hc.pid_mode = match pod.namespace("pid") {
                Some(p) => format!("ns:{}", p.display()),
                None => {
                    return Err(EngineError::Invalid(format!(
                        "pod sandbox {} has no PID namespace of its own to share",
                        pod.record.id
                    )))
                }
            };
        }
        let hostname = pod.dir.join("hostname");
        config.hostname = fs::read_to_string(&hostname)
            .map_err(io_err(&hostname))?
            .trim()
            .to_string();
        Ok(pod)
    }

    pub(super) fn write_etc_files(
        &self,
        dir: &Path,
        hostname: &str,
        hc: &HostConfig,
    ) -> Result<()> {
        let mut hosts = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n");
        for h in &hc.extra_hosts {
            if let Some((name, ip)) = h.split_once(':') {
                hosts.push_str(&format!("{ip}\t{name}\n"));
            }
        }
        let resolv = resolv_conf(hc, None);
        for (f, content) in [
            ("hostname", format!("{hostname}\n")),
            ("hosts", hosts),
            ("resolv.conf", resolv),
        ] {
            let p = dir.join(f);
            fs::write(&p, content).map_err(io_err(&p))?;
        }
        Ok(())
    }

    pub(super) fn resolve_mount(
        &self,
        m: &MountSpec,
        created: &mut Vec<String>,
    ) -> Result<ResolvedMount> {
        if !m.target.starts_with('/') {
            return Err(EngineError::Invalid(format!(
                "invalid mount config: mount path must be absolute: {}",
                m.target
            )));
        }
        let propagation = m
            .options
            .iter()
            .find(|o| {
                matches!(
                    o.as_str(),
                    "rprivate" | "private" | "rshared" | "shared" | "rslave" | "slave"
                )
            })
            .cloned()
            .unwrap_or_default();
        match m.kind.as_str() {
            "bind" => {
                if !m.source.starts_with('/') {
                    return Err(EngineError::Invalid(format!(
                        "invalid mount config: bind source path must be absolute: {}",
                        m.source
                    )));
                }
                let src = Path::new(&m.source);
                if !src.exists() {
                    if m.options.iter().any(|o| o == "create") {
                        fs::create_dir_all(src).map_err(io_err(src))?;
                    } else {
                        return Err(EngineError::Invalid(format!("invalid mount config for type \"bind\": bind source path does not exist: {}", m.source)));
                    }
                }
                Ok(ResolvedMount {
                    kind: "bind".into(),
                    name: None,
                    source: m.source.clone(),
                    destination: m.target.clone(),
                    driver: String::new(),
                    mode: if m.read_only {
                        "ro".into()
                    } else {
                        String::new()
                    },
                    rw: !m.read_only,
                    propagation: if propagation.is_empty() {
                        "rprivate".into()
                    } else {
                        propagation
                    },
                    ..Default::default()
                })
            }
            "volume" => {
                // A named volume that is there is used; any other is made (one without
                // a name is anonymous).
                let name = if !m.source.is_empty() && self.volume_exists(&m.source)? {
                    m.source.clone()
                } else {
                    let v = self.create_volume(&crate::specs::VolumeSpec {
                        name: (!m.source.is_empty()).then(|| m.source.clone()),
                        ..Default::default()
                    })?;
                    created.push(v.name.clone());
                    v.name
                };
                let data = self.volume_data_dir(&name);
                Ok(ResolvedMount {
                    kind: "volume".into(),
                    name: Some(name),
                    source: data.display().to_string(),
                    destination: m.target.clone(),
                    driver: "local".into(),
                    mode: if m.read_only { "ro".into() } else { "z".into() },
                    rw: !m.read_only,
                    propagation: String::new(),
                    tmpfs_options: if m.no_copy {
                        vec!["nocopy".into()]
                    } else {
                        vec![]
                    },
                    anonymous: m.source.is_empty(),
                })
            }
            "tmpfs" => {
                let mut opts = Vec::new();
                if let Some(s) = m.tmpfs_size {
                    opts.push(format!("size={s}"));
                }
                if let Some(mode) = m.tmpfs_mode {
                    opts.push(format!("mode={mode:o}"));
                }
                opts.extend(m.options.iter().filter(|o| !o.is_empty()).cloned());
                if m.read_only {
                    opts.push("ro".into());
                }
                Ok(ResolvedMount {
                    kind: "tmpfs".into(),
                    source: String::new(),
                    destination: m.target.clone(),
                    rw: !m.read_only,
                    tmpfs_options: opts,
                    ..Default::default()
                })
            }
            other => Err(EngineError::Invalid(format!(
                "invalid mount config: unknown mount type {other:?}"
            ))),
        }
    }
}

/// A container's resolv.conf: the host's (its loopback resolvers left out: they are not
/// reachable from the container), with `--dns`, `--dns-search` and `--dns-option` in
/// their place. `ours`: the network's name server, which comes first and answers for
/// the host's resolvers too. `--network host` gets the host's file as it is.
pub(crate) fn resolv_conf(hc: &HostConfig, ours: Option<std::net::Ipv4Addr>) -> String {
    let host = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    if hc.network_mode == "host" {
        return host;
    }
    let mut servers: Vec<String> = ours.iter().map(|ip| ip.to_string()).collect();
    servers.extend(hc.dns.iter().cloned());
    if servers.is_empty() {
        servers = host
            .lines()
            .filter_map(|l| l.strip_prefix("nameserver"))
            .map(str::trim)
            .filter(|a| !(a.starts_with("127.") || *a == "::1"))
            .map(String::from)
            .collect();
    }
    let search: Vec<String> = if hc.dns_search.is_empty() {
        host.lines()
            .filter_map(|l| l.strip_prefix("search"))
            .flat_map(|l| l.split_whitespace().map(String::from))
            .collect()
    } else {
        hc.dns_search
            .iter()
            .filter(|d| *d != ".")
            .cloned()
            .collect()
    };
    let mut options: Vec<String> = if hc.dns_options.is_empty() {
        host.lines()
            .filter_map(|l| l.strip_prefix("options"))
            .flat_map(|l| l.split_whitespace().map(String::from))
            .collect()
    } else {
        hc.dns_options.clone()
    };
    if ours.is_some() && !options.iter().any(|o| o.starts_with("ndots:")) {
        options.push("ndots:0".into());
    }
    let mut text = String::new();
    for s in servers {
        text.push_str(&format!("nameserver {s}\n"));
    }
    if !search.is_empty() {
        text.push_str(&format!("search {}\n", search.join(" ")));
    }
    if !options.is_empty() {
        text.push_str(&format!("options {}\n", options.join(" ")));
    }
    text
}
