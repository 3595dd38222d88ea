//! Containers: create, start, stop, kill, wait, remove, list, inspect, rename, top.
//!
//! `create` records a container (database row, overlay dirs, /etc files, volumes);
//! `start` writes its OCI bundle and spawns its monitor, which does the rest.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_image::Reference;
use rusqlite::{params, OptionalExtension};

/// A removed container's dir, moved aside under `containers/` until it is deleted.
const REMOVED_PREFIX: &str = ".removed-";
use serde::Serialize;

use crate::attach::{self, Hello};
use crate::error::{io_err, EngineError, Result};
use crate::images::ImageRow;
use crate::model::{ContainerRecord, HostConfig, MountSpec, ResolvedMount};
use crate::monitor::MonitorConfig;
use crate::specs::{ContainerSpec, UpdateSpec};
use crate::state::{self, RunState, Status};
use crate::{names, spec, sys, Engine};

pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The end of the conflict a create meets when its name was taken between its check
/// and its insert.
const NAME_RACE: &str = " is already in use.";

/// One line of `ps`.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerSummary {
    pub id: String,
    pub names: String,
    pub image: String,
    pub image_id: String,
    pub command: String,
    pub created: chrono::DateTime<chrono::Utc>,
    pub state: Status,
    /// Docker's words for it: `Up 3 minutes`, `Exited (0) 2 seconds ago`.
    pub status: String,
    /// Where its ports are published while it runs.
    pub ports: Vec<crate::model::PublishedPort>,
    pub labels: BTreeMap<String, String>,
    pub exit_code: i32,
}

impl ContainerSummary {
    /// The PORTS column: `0.0.0.0:8080->80/tcp, …`.
    pub fn ports_text(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("{}:{}->{}", p.host_ip, p.host_port, p.container_port))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// When it was created, as Go's RFC 3339 (what `inspect` shows).
    pub fn created_text(&self) -> String {
        berth_image::config::go_time(self.created)
    }
}

/// A spawned monitor: for `run`/`start -a`, the caller attaches before the container runs.
pub struct StartHandle {
    pub child: Option<Child>,
    ready: Option<BufReader<std::io::PipeReader>>,
    pub pid: i32,
    /// Held until the monitor has answered, so no second start races this one.
    lock: Option<ContainerLock>,
}

/// An exclusive lock on one container's life-cycle changes (start, remove), across berth
/// processes: `run-root/locks/<id>`, flock(2).
pub struct ContainerLock {
    _lock: nix::fcntl::Flock<fs::File>,
}

impl StartHandle {
    /// Waits for the monitor's verdict on the start (after the caller attached, if it
    /// was asked to wait for that).
    pub fn finish(&mut self) -> Result<i32> {
        let Some(mut r) = self.ready.take() else {
            return Ok(self.pid);
        };
        let line = read_line(&mut r);
        self.lock = None;
        parse_ready(&line).inspect(|pid| self.pid = *pid)
    }

    /// Waits for the monitor process to end (it has cleaned up by then).
    pub fn wait_monitor(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.wait();
        }
    }
}

fn read_line(r: &mut impl BufRead) -> String {
    let mut s = String::new();
    let _ = r.read_line(&mut s);
    s.trim_end().to_string()
}

fn parse_ready(line: &str) -> Result<i32> {
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

/// Docker's "Up 3 minutes" / "Exited (0) 2 seconds ago" durations.
pub fn human_duration(d: chrono::Duration) -> String {
    let s = d.num_seconds();
    if s < 1 {
        "Less than a second".into()
    } else if s == 1 {
        "1 second".into()
    } else if s < 60 {
        format!("{s} seconds")
    } else if s / 60 == 1 {
        "About a minute".into()
    } else if s < 3600 {
        format!("{} minutes", s / 60)
    } else if s / 3600 == 1 {
        "About an hour".into()
    } else if s < 48 * 3600 {
        format!("{} hours", s / 3600)
    } else if s < 7 * 24 * 3600 * 2 {
        format!("{} days", s / 86400)
    } else if s < 30 * 24 * 3600 * 3 {
        format!("{} weeks", s / (7 * 86400))
    } else if s < 365 * 24 * 3600 * 2 {
        format!("{} months", s / (30 * 86400))
    } else {
        format!("{} years", s / (365 * 86400))
    }
}

fn since(t: &str) -> chrono::Duration {
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|t| chrono::Utc::now().signed_duration_since(t))
        .unwrap_or_else(|_| chrono::Duration::zero())
}

/// Docker's status column.
pub fn status_text(st: &RunState) -> String {
    match st.status {
        Status::Created => "Created".into(),
        Status::Running => {
            let health = match st.health.as_ref().map(|h| h.status.as_str()) {
                Some("starting") => " (health: starting)",
                Some("healthy") => " (healthy)",
                Some("unhealthy") => " (unhealthy)",
                _ => "",
            };
            format!("Up {}{health}", human_duration(since(&st.started_at)))
        }
        Status::Paused => format!("Up {} (Paused)", human_duration(since(&st.started_at))),
        Status::Restarting => format!(
            "Restarting ({}) {} ago",
            st.exit_code,
            human_duration(since(&st.finished_at))
        ),
        Status::Removing => "Removal In Progress".into(),
        Status::Exited => format!(
            "Exited ({}) {} ago",
            st.exit_code,
            human_duration(since(&st.finished_at))
        ),
        Status::Dead => "Dead".into(),
    }
}

impl Engine {
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root().join("containers").join(id)
    }

    fn record_from_json(&self, json: &str) -> Result<ContainerRecord> {
        serde_json::from_str(json).map_err(|source| EngineError::Json {
            what: "container record".into(),
            source,
        })
    }

    /// Finds a container by full id, name (with or without `/`), or unique id prefix.
    pub fn find_container(&self, name: &str) -> Result<ContainerRecord> {
        let n = name.strip_prefix('/').unwrap_or(name);
        let json: Option<String> = self
            .db
            .query_row(
                "SELECT config FROM containers WHERE id = ?1 OR name = ?1",
                [n],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(j) = json {
            return self.record_from_json(&j);
        }
        if !n.is_empty() && n.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut stmt = self
                .db
                .prepare_cached("SELECT config FROM containers WHERE id LIKE ?1 LIMIT 2")?;
            let rows = stmt
                .query_map([format!("{}%", n.to_lowercase())], |r| {
                    r.get::<_, String>(0)
                })?
                .collect::<Result<Vec<_>, _>>()?;
            match rows.len() {
                1 => return self.record_from_json(&rows[0]),
                0 => {}
                _ => {
                    return Err(EngineError::Invalid(format!(
                        "multiple containers match the id prefix {n}"
                    )))
                }
            }
        }
        Err(EngineError::NoSuchContainer(name.to_string()))
    }

    /// All container records, newest first.
    pub fn container_records(&self) -> Result<Vec<ContainerRecord>> {
        let mut stmt = self
            .db
            .prepare_cached("SELECT config FROM containers ORDER BY created DESC")?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        rows.iter().map(|j| self.record_from_json(j)).collect()
    }

    pub fn container_state(&self, id: &str) -> Result<RunState> {
        let mut st = state::read(self.root(), id)?;
        if st.status.is_active() {
            if let Some(h) = state::read_health(self.run_root(), id) {
                st.health = Some(h);
            }
        }
        Ok(st)
    }

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

    fn create_container_once(&self, opts: ContainerSpec) -> Result<(String, Vec<String>)> {
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
        config.volumes = ic.volumes.clone();
        let args = spec::process_args(config.entrypoint.as_ref(), config.cmd.as_ref());
        if args.is_empty() {
            return Err(EngineError::Invalid("no command specified".into()));
        }
        let mut host_config = opts.host_config.clone();
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
            if let Some(vols) = &ic.volumes {
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
            self.write_etc_files(&dir, &config.hostname, &host_config)?;
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

    /// The network namespace of running container `other`, for a container started with
    /// `--network container:OTHER`, whose /etc/hosts and /etc/resolv.conf (in `dir`)
    /// become copies of the other's.
    fn joined_netns(&self, other: &str, dir: &Path) -> Result<PathBuf> {
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

    /// Puts `ip hostname` in the container's /etc/hosts (replacing the line an earlier
    /// start wrote).
    ///
    /// `--add-host NAME:host-gateway` lines get `gateway`, the host's address on the
    /// container's network, as Docker's do.
    fn hosts_entry(
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

    fn write_etc_files(&self, dir: &Path, hostname: &str, hc: &HostConfig) -> Result<()> {
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

    fn resolve_mount(&self, m: &MountSpec, created: &mut Vec<String>) -> Result<ResolvedMount> {
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
                let (name, anonymous) = if m.source.is_empty() {
                    (names::new_id(), true)
                } else {
                    (m.source.clone(), false)
                };
                let existed = self.volume_exists(&name)?;
                if !existed {
                    self.create_volume(&name, &BTreeMap::new(), anonymous)?;
                    created.push(name.clone());
                }
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
                    anonymous,
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

    /// Layer dirs of a container's root file system, top first (upper, then image layers).
    pub fn layer_dirs(&self, rec: &ContainerRecord, image: &ImageRow) -> Vec<PathBuf> {
        let mut dirs = vec![self.container_dir(&rec.id).join("upper")];
        for c in image.chain_ids().iter().rev() {
            dirs.push(self.layers.diff_dir(c));
        }
        dirs
    }

    fn runtime_root(&self) -> PathBuf {
        self.run_root().join("runtime")
    }

    /// Writes the OCI bundle and the monitor config for a start.
    /// Writes the container's spec and monitor config for a start; returns the config and
    /// the sockets reserving its published ports (for the monitor to inherit).
    fn prepare_start(
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
        let mut seccomp = None;
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
        if let Some(f) = custom {
            let bytes = fs::read(&f).map_err(|e| {
                EngineError::Invalid(format!("opening seccomp profile ({f}) failed: {e}"))
            })?;
            seccomp = Some(
                berth_runtime::seccomp::profile_from_docker_json(&bytes, &caps, &f)
                    .map_err(EngineError::Invalid)?,
            );
        } else if !unconfined {
            seccomp = Some(berth_runtime::seccomp::default_profile(&caps));
        }
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
            cgroup_v1_binds: if hc.runtime.is_empty() || hc.runtime == "builtin" {
                sys::cgroup_v1_hierarchies()
            } else {
                None
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
            log_path: if log.kind == "none" {
                None
            } else {
                Some(dir.join("log.json"))
            },
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
            loopback_up: hc.network_mode != "host",
            netns,
            // Inherited right after the readiness pipe (fd 3).
            port_fds: (0..port_fds.len() as i32).map(|i| 4 + i).collect(),
            ports_table: self.ports_table(),
            ports: port_maps.iter().map(Into::into).collect(),
            seed_volumes,
            cgroup: format!("/berth/{}", rec.id),
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

    /// `start`: spawns the container's monitor. With `wait_attach`, the container is
    /// created but only runs once a client attached (call `StartHandle::finish` after
    /// attaching). A running container is left alone (`Ok(None)`).
    /// Takes `id`'s life-cycle lock (waiting for it).
    pub fn lock_container(&self, id: &str) -> Result<ContainerLock> {
        let dir = self.run_root().join("locks");
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let p = dir.join(id);
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(io_err(&p))?;
        let lock = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| crate::error::sys_err(format!("locking {}", p.display()))(e))?;
        Ok(ContainerLock { _lock: lock })
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
    fn spawn_monitor(
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

    /// Sends a signal to a running container's init.
    pub fn kill_container(&self, name: &str, signal: i32) -> Result<()> {
        let rec = self.find_container(name)?;
        let st = self.container_state(&rec.id)?;
        if !st.status.is_active() {
            return Err(EngineError::Conflict(format!(
                "cannot kill container: {name}: container {} is not running",
                rec.id
            )));
        }
        let rt = berth_runtime::by_name(&rec.host_config.runtime, &self.runtime_root())?;
        rt.kill(&rec.id, signal, false)?;
        self.emit_container(&rec, "kill", &[("signal", signal.to_string())]);
        Ok(())
    }

    /// Waits until the container is no longer running (or `timeout` passes); returns its state.
    pub fn wait_stopped(&self, id: &str, timeout: Option<Duration>) -> Result<Option<RunState>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        // Prefer the monitor's exit notification; fall back to polling the state.
        if let Ok(mut s) = attach::connect(self.run_root(), id, Hello::default()) {
            if let Some(d) = deadline {
                let _ = s.set_read_timeout(Some(
                    d.saturating_duration_since(Instant::now())
                        .max(Duration::from_millis(1)),
                ));
            }
            loop {
                match attach::read_frame(&mut s) {
                    Ok(Some((attach::EXIT, code))) if code.len() == 4 => {
                        let code = i32::from_be_bytes([code[0], code[1], code[2], code[3]]);
                        let st = self.container_state(id)?;
                        if st.status == Status::Exited {
                            return Ok(Some(st));
                        }
                        // An auto-removed container may be gone already: the monitor's
                        // word is what is left of how it ended.
                        if !self.container_dir(id).exists() {
                            return Ok(Some(RunState {
                                status: Status::Exited,
                                exit_code: code,
                                ..Default::default()
                            }));
                        }
                        break;
                    }
                    Ok(Some((attach::EXIT, _))) | Ok(None) => break,
                    Ok(Some(_)) => continue,
                    Err(_) => break,
                }
            }
        }
        loop {
            let st = self.container_state(id)?;
            if !st.status.is_active() {
                return Ok(Some(st));
            }
            if let Some(d) = deadline {
                if Instant::now() >= d {
                    return Ok(None);
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `stop`: the stop signal, then SIGKILL after the timeout (Docker's default 10 s).
    pub fn stop_container(&self, name: &str, timeout: Option<i64>) -> Result<()> {
        let rec = self.find_container(name)?;
        let st = self.container_state(&rec.id)?;
        if !st.status.is_active() {
            return Ok(());
        }
        // A user's stop ends the restart policy until the next start.
        let marker = crate::monitor::stop_marker(self.root(), &rec.id);
        fs::write(&marker, b"").map_err(io_err(&marker))?;
        let rt = berth_runtime::by_name(&rec.host_config.runtime, &self.runtime_root())?;
        let sig = rec
            .config
            .stop_signal
            .as_deref()
            .and_then(sys::parse_signal)
            .unwrap_or(libc::SIGTERM);
        let secs = timeout.or(rec.config.stop_timeout).unwrap_or(10);
        if st.status == Status::Paused {
            let _ = rt.resume(&rec.id);
        }
        // Docker's events for a stop: kill (each signal sent), die, stop.
        if secs != 0 {
            self.emit_container(&rec, "kill", &[("signal", sig.to_string())]);
            let _ = rt.kill(&rec.id, sig, false);
            let wait = if secs < 0 {
                None
            } else {
                Some(Duration::from_secs(secs as u64))
            };
            if self.wait_stopped(&rec.id, wait)?.is_some() {
                self.emit_container(&rec, "stop", &[]);
                return Ok(());
            }
        }
        self.emit_container(&rec, "kill", &[("signal", libc::SIGKILL.to_string())]);
        let _ = rt.kill(&rec.id, libc::SIGKILL, true);
        if self
            .wait_stopped(&rec.id, Some(Duration::from_secs(30)))?
            .is_none()
        {
            return Err(EngineError::Unavailable(format!(
                "container {} did not stop after SIGKILL",
                rec.id
            )));
        }
        self.emit_container(&rec, "stop", &[]);
        Ok(())
    }

    /// A running container's resource usage so far (from its cgroup). Its pids leave out
    /// the monitor's probe launcher, which lives in the cgroup (see `top`).
    pub fn container_usage(&self, id: &str) -> Result<crate::stats::Usage> {
        let root = Path::new("/sys/fs/cgroup");
        let rel = format!("berth/{id}");
        let mut usage = crate::stats::reader(root)
            .usage(&format!("/{rel}"))
            .map_err(io_err(root.join("berth").join(id)))?;
        if usage.pids > 1 && state::health_path(self.run_root(), id).exists() {
            let init = state::read_raw(self.root(), id).map_or(0, |s| s.pid);
            let pids = sys::cgroup_pids(root, &rel);
            let launchers = pids
                .iter()
                .filter(|p| **p != init && sys::is_probe_launcher(**p, &pids))
                .count();
            usage.pids = usage.pids.saturating_sub(launchers as u64);
        }
        Ok(usage)
    }

    /// `update`: changes the limits (live, when running) and the restart policy of a
    /// container; the record keeps them for later starts.
    pub fn update_container(&self, name: &str, update: &UpdateSpec) -> Result<()> {
        update.validate()?;
        let found = self.find_container(name)?;
        let _lock = self.lock_container(&found.id)?;
        let mut rec = self.find_container(&found.id)?;
        if rec.host_config.auto_remove
            && update
                .restart_policy
                .as_ref()
                .is_some_and(|r| !matches!(r.name.as_str(), "" | "no"))
        {
            return Err(EngineError::Invalid(
                "Restart policy cannot be updated because AutoRemove is enabled for the container"
                    .into(),
            ));
        }
        let limits = update.limits();
        let st = self.container_state(&rec.id)?;
        if st.status.is_active() {
            crate::stats::apply_limits(
                Path::new("/sys/fs/cgroup"),
                &format!("/berth/{}", rec.id),
                &limits,
            )
            .map_err(|e| {
                let hint = if e.raw_os_error() == Some(libc::EINVAL)
                    || e.raw_os_error() == Some(libc::EBUSY)
                {
                    " (memory must stay below memory+swap: update --memory-swap at the same time)"
                } else {
                    ""
                };
                EngineError::Invalid(format!("cannot update container {}: {e}{hint}", rec.id))
            })?;
        }
        let hc = &mut rec.host_config;
        if let Some(m) = limits.memory {
            hc.memory = m.max(0);
        }
        if let Some(s) = limits.memory_swap {
            hc.memory_swap = s;
        }
        if let Some(n) = update.nano_cpus {
            hc.nano_cpus = n;
        }
        if let Some(sh) = limits.cpu_shares {
            hc.cpu_shares = sh as i64;
        }
        if let Some(p) = limits.pids {
            hc.pids_limit = Some(p);
        }
        if let Some(r) = update.restart_policy.clone() {
            // The running monitor reads its policy from monitor.json at each exit.
            let mp = crate::monitor::config_path(self.run_root(), &rec.id);
            if let Ok(bytes) = fs::read(&mp) {
                if let Ok(mut m) = serde_json::from_slice::<MonitorConfig>(&bytes) {
                    m.restart_policy = r.name.clone();
                    m.restart_max = r.maximum_retry_count;
                    berth_image::fsutil::replace_file(
                        &mp,
                        &serde_json::to_vec(&m).expect("monitor config serialises"),
                    )
                    .map_err(io_err(&mp))?;
                }
            }
            hc.restart_policy = r;
        }
        self.db.execute(
            "UPDATE containers SET config = ?1 WHERE id = ?2",
            params![
                serde_json::to_string(&rec).expect("record serialises"),
                rec.id
            ],
        )?;
        Ok(())
    }

    /// Cleans what a monitor that was killed would have: the container's processes and
    /// runtime state, its cgroup, its published ports and its network namespace.
    /// Returns what could not be cleaned.
    fn clean_after_dead_monitor(&self, rec: &ContainerRecord) -> Vec<String> {
        let mut errors = Vec::new();
        if let Ok(rt) = berth_runtime::by_name(&rec.host_config.runtime, &self.runtime_root()) {
            let _ = rt.kill(&rec.id, libc::SIGKILL, true);
            if let Err(e) = rt.delete(&rec.id, true) {
                errors.push(e.to_string());
            }
        }
        let _ = sys::remove_cgroup(Path::new("/sys/fs/cgroup"), &format!("/berth/{}", rec.id));
        if let Some(cfg) = crate::monitor::read_config(self.run_root(), &rec.id) {
            crate::monitor::unpublish_and_unpin(&cfg);
        }
        errors
    }

    /// Docker's `info` (the fields berth has): counts, storage, runtimes, host.
    pub fn info(&self) -> Result<serde_json::Value> {
        let containers = self.list_containers(true, &[])?;
        let running = containers
            .iter()
            .filter(|c| c.state == Status::Running)
            .count();
        let paused = containers
            .iter()
            .filter(|c| c.state == Status::Paused)
            .count();
        let images = self.list_image_rows()?.len();
        let uts = nix::sys::utsname::uname().ok();
        let cgroup_version = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            "2"
        } else {
            "1"
        };
        let os = fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| {
                    l.strip_prefix("PRETTY_NAME=")
                        .map(|v| v.trim_matches('"').to_string())
                })
            })
            .unwrap_or_default();
        Ok(serde_json::json!({
            "ID": "",
            "Containers": containers.len(),
            "ContainersRunning": running,
            "ContainersPaused": paused,
            "ContainersStopped": containers.len() - running - paused,
            "Images": images,
            "Driver": "overlay2",
            "DockerRootDir": self.root(),
            "RunRoot": self.run_root(),
            "CgroupDriver": "cgroupfs",
            "CgroupVersion": cgroup_version,
            "DefaultRuntime": "builtin",
            "Runtimes": {"builtin": {"path": "libcontainer (linked in)"}, "runc": {"path": "runc"}, "crun": {"path": "crun"}},
            "LoggingDriver": "json-file",
            "KernelVersion": uts.as_ref().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default(),
            "OperatingSystem": os,
            "OSType": "linux",
            "Architecture": berth_image::config::host_platform().architecture,
            "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "ServerVersion": env!("CARGO_PKG_VERSION"),
            "SecurityOptions": ["name=seccomp,profile=builtin"],
        }))
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

    /// `container prune`: removes stopped containers (that `filter` allows); returns their
    /// ids and the bytes their writable layers held.
    pub fn prune_containers(
        &self,
        filter: &crate::prune::PruneFilter,
    ) -> Result<(Vec<String>, u64)> {
        let mut removed = Vec::new();
        let mut bytes = 0;
        for rec in self.container_records()? {
            let st = self.container_state(&rec.id)?;
            if st.status.is_active() || !filter.allows(&rec.created, &rec.config.labels) {
                continue;
            }
            bytes += crate::volumes::dir_size(&self.container_dir(&rec.id).join("upper"));
            self.remove_container(&rec.id, false, false)?;
            removed.push(rec.id);
        }
        // What removals that died left, then the shared init layers no container uses.
        if let Ok(rd) = fs::read_dir(self.root().join("containers")) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(id) = name.strip_prefix(REMOVED_PREFIX) {
                    let _ = clear_removed(id, Some(&e.path()));
                }
            }
        }
        self.prune_init_layers()?;
        Ok((removed, bytes))
    }

    /// `pause`: freezes every process of a running container (freezer cgroup).
    pub fn pause_container(&self, name: &str) -> Result<()> {
        let found = self.find_container(name)?;
        let _lock = self.lock_container(&found.id)?;
        let mut st = self.container_state(&found.id)?;
        match st.status {
            Status::Running => {}
            Status::Paused => {
                return Err(EngineError::Conflict(format!(
                    "container {} is already paused",
                    found.id
                )))
            }
            _ => {
                return Err(EngineError::NotRunning {
                    id: found.id.clone(),
                })
            }
        }
        let rt = berth_runtime::by_name(&found.host_config.runtime, &self.runtime_root())?;
        rt.pause(&found.id)?;
        st.status = Status::Paused;
        state::write(self.root(), &found.id, &st)?;
        self.emit_container(&found, "pause", &[]);
        Ok(())
    }

    /// `unpause`: thaws a paused container.
    pub fn unpause_container(&self, name: &str) -> Result<()> {
        let found = self.find_container(name)?;
        let _lock = self.lock_container(&found.id)?;
        let mut st = self.container_state(&found.id)?;
        if st.status != Status::Paused {
            return Err(EngineError::Conflict(format!(
                "container {} is not paused",
                found.id
            )));
        }
        let rt = berth_runtime::by_name(&found.host_config.runtime, &self.runtime_root())?;
        rt.resume(&found.id)?;
        st.status = Status::Running;
        state::write(self.root(), &found.id, &st)?;
        self.emit_container(&found, "unpause", &[]);
        Ok(())
    }

    /// `wait`: blocks until the container stops; returns its exit code.
    pub fn wait_container(&self, name: &str) -> Result<i32> {
        let rec = self.find_container(name)?;
        let st = self.wait_stopped(&rec.id, None)?.expect("no timeout");
        Ok(st.exit_code)
    }

    /// `rm`: removes a container (running ones only with `force`); with `volumes`, its
    /// anonymous volumes too. Named volumes are never touched. Cleanup is best-effort and
    /// complete: every step runs, and the errors are reported together.
    pub fn remove_container(&self, name: &str, force: bool, volumes: bool) -> Result<()> {
        self.remove_container_then(name, force, volumes, || {})
    }

    /// [`Engine::remove_container`], calling `removed` once the container is gone for
    /// everyone (its record, its name, its lock) but before its files are deleted: they
    /// were moved aside under `containers/.removed-ID` in one rename, and deleting them
    /// (on a file system mounted with `discard`, a wait for the disk per file) need not
    /// hold up whoever waits for the removal. `container prune` deletes what a process
    /// that died here left.
    pub fn remove_container_then(
        &self,
        name: &str,
        force: bool,
        volumes: bool,
        removed: impl FnOnce(),
    ) -> Result<()> {
        let mut aside = None;
        let result = self.remove_container_locked(name, force, volumes, &mut aside);
        removed();
        let Some((id, dir)) = aside else {
            return result;
        };
        let errors = clear_removed(&id, dir.as_deref());
        match result {
            Ok(()) if !errors.is_empty() => Err(EngineError::Unavailable(format!(
                "removing container {id}: {}",
                errors.join("; ")
            ))),
            other => other,
        }
    }

    /// The removal, up to the container's files moved aside: `aside` gets its id and
    /// where its dir went, for the rest of the clean-up.
    fn remove_container_locked(
        &self,
        name: &str,
        force: bool,
        volumes: bool,
        aside: &mut Option<(String, Option<PathBuf>)>,
    ) -> Result<()> {
        let found = self.find_container(name)?;
        let _lock = self.lock_container(&found.id)?;
        let rec = self.find_container(&found.id)?;
        let st = self.container_state(&rec.id)?;
        if st.status.is_active() {
            if !force {
                return Err(EngineError::Conflict(format!(
                    "cannot remove container \"/{}\": container is running: stop the container before removing or force remove",
                    rec.name
                )));
            }
            let _ = fs::write(crate::monitor::stop_marker(self.root(), &rec.id), b"");
            let rt = berth_runtime::by_name(&rec.host_config.runtime, &self.runtime_root())?;
            let _ = rt.resume(&rec.id);
            let _ = rt.kill(&rec.id, libc::SIGKILL, true);
            let _ = self.wait_stopped(&rec.id, Some(Duration::from_secs(10)));
        }
        let mut errors = Vec::new();
        let dir = self.container_dir(&rec.id);
        if st.status == Status::Dead {
            errors.extend(self.clean_after_dead_monitor(&rec));
        }
        if let Err(e) = self.disconnect_removed(&rec.id) {
            errors.push(format!("releasing the addresses of {}: {e}", rec.id));
        }
        if let Err(e) = self
            .db
            .execute("DELETE FROM containers WHERE id = ?1", [&rec.id])
        {
            errors.push(e.to_string());
        }
        let moved = self
            .root()
            .join("containers")
            .join(format!("{REMOVED_PREFIX}{}", rec.id));
        // The mount under it moves with it; the rest of the clean-up is the caller's.
        let left = match fs::rename(&dir, &moved) {
            Ok(()) => Some(moved),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(_) => Some(dir),
        };
        *aside = Some((rec.id.clone(), left));
        let _ = fs::remove_file(attach::socket_path(self.run_root(), &rec.id));
        let _ = fs::remove_file(state::health_path(self.run_root(), &rec.id));
        let _ = fs::remove_dir_all(crate::monitor::bundle_dir(self.run_root(), &rec.id));
        // Whoever waits on this lock finds the container gone when it gets it.
        let _ = fs::remove_file(self.run_root().join("locks").join(&rec.id));
        if volumes || rec.host_config.auto_remove {
            for m in rec.mounts.iter().filter(|m| m.anonymous) {
                if let Some(n) = &m.name {
                    if let Err(e) = self.remove_volume(n, false) {
                        errors.push(e.to_string());
                    }
                }
            }
        }
        self.emit_container(&rec, "destroy", &[]);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(EngineError::Unavailable(format!(
                "removing container {}: {}",
                rec.id,
                errors.join("; ")
            )))
        }
    }

    /// `rename`.
    pub fn rename_container(&self, name: &str, new_name: &str) -> Result<()> {
        let mut rec = self.find_container(name)?;
        let new_name = new_name.strip_prefix('/').unwrap_or(new_name);
        if !names::valid_name(new_name) {
            return Err(EngineError::Invalid(format!(
                "invalid container name ({new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        if rec.name == new_name {
            return Err(EngineError::Invalid(
                "Renaming a container with the same name as its current name".into(),
            ));
        }
        if let Some(other) = self
            .db
            .query_row(
                "SELECT id FROM containers WHERE name = ?1",
                [new_name],
                |r| r.get::<_, String>(0),
            )
            .optional()?
        {
            return Err(EngineError::Conflict(format!(
                "Conflict. The container name \"/{new_name}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
            )));
        }
        let old_name = std::mem::replace(&mut rec.name, new_name.to_string());
        self.db.execute(
            "UPDATE containers SET name = ?1, config = ?2 WHERE id = ?3",
            params![
                rec.name,
                serde_json::to_string(&rec).expect("record serialises"),
                rec.id
            ],
        )?;
        self.emit_container(&rec, "rename", &[("oldName", format!("/{old_name}"))]);
        Ok(())
    }

    /// `ps`: containers with their state. Filters: `name`, `id`, `status`, `label`,
    /// `ancestor`, `exited`.
    pub fn list_containers(
        &self,
        all: bool,
        filters: &[(String, String)],
    ) -> Result<Vec<ContainerSummary>> {
        let mut out = Vec::new();
        let mut image_names: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for rec in self.container_records()? {
            let st = self.container_state(&rec.id)?;
            let status_filter = filters.iter().any(|(k, _)| k == "status");
            if !all && !status_filter && !st.status.is_active() {
                continue;
            }
            let mut keep = true;
            for (k, v) in filters {
                let ok = match k.as_str() {
                    "name" => rec.name.contains(v.trim_start_matches('/')),
                    "id" => rec.id.starts_with(v),
                    "status" => st.status.as_str() == v,
                    "exited" => {
                        st.status == Status::Exited && v.parse::<i32>().ok() == Some(st.exit_code)
                    }
                    "label" => match v.split_once('=') {
                        Some((lk, lv)) => {
                            rec.config.labels.get(lk).map(|x| x == lv).unwrap_or(false)
                        }
                        None => rec.config.labels.contains_key(v),
                    },
                    "ancestor" => {
                        let names = image_names.entry(rec.image_id.clone()).or_insert_with(|| {
                            self.find_image(&rec.image_id)
                                .map(|r| r.tags)
                                .unwrap_or_default()
                        });
                        rec.image_id
                            .trim_start_matches("sha256:")
                            .starts_with(v.trim_start_matches("sha256:"))
                            || rec.config.image == *v
                            || Reference::parse(v)
                                .map(|r| names.contains(&r.to_string()))
                                .unwrap_or(false)
                    }
                    _ => return Err(EngineError::Invalid(format!("invalid filter '{k}'"))),
                };
                keep &= ok;
            }
            if !keep {
                continue;
            }
            let mut command = rec.path.clone();
            for a in &rec.args {
                command.push(' ');
                command.push_str(a);
            }
            out.push(ContainerSummary {
                id: rec.id.clone(),
                names: rec.name.clone(),
                image: rec.config.image.clone(),
                image_id: rec.image_id.clone(),
                command,
                created: chrono::DateTime::parse_from_rfc3339(&rec.created)
                    .map(|t| t.with_timezone(&chrono::Utc))
                    .unwrap_or_default(),
                state: st.status,
                status: status_text(&st),
                ports: self.published_ports(&rec.id),
                labels: rec.config.labels.clone(),
                exit_code: st.exit_code,
            });
        }
        Ok(out)
    }

    /// `inspect`, shaped like Docker's.
    pub fn inspect_container(&self, name: &str) -> Result<serde_json::Value> {
        let rec = self.find_container(name)?;
        let st = self.container_state(&rec.id)?;
        let dir = self.container_dir(&rec.id);
        let image = self.find_image(&rec.image_id).ok();
        let lower = image
            .as_ref()
            .map(|i| {
                i.chain_ids()
                    .iter()
                    .rev()
                    .map(|c| self.layers.diff_dir(c).display().to_string())
                    .collect::<Vec<_>>()
                    .join(":")
            })
            .unwrap_or_default();
        // Docker's NetworkSettings: per network, the address the container has there (while
        // it runs); the default network's also at the top level.
        let running = matches!(
            st.status,
            crate::state::Status::Running | crate::state::Status::Paused
        );
        let mut networks = serde_json::Map::new();
        let mut top =
            serde_json::json!({"IPAddress": "", "IPPrefixLen": 0, "Gateway": "", "MacAddress": ""});
        let endpoints = self.container_endpoints(&rec.id).unwrap_or_default();
        if endpoints.is_empty() {
            networks.insert(rec.host_config.network_mode.clone(), serde_json::json!({}));
        }
        for ep in endpoints {
            let (ip, prefix, gw, mac) = if running {
                (
                    ep.ip.to_string(),
                    ep.network.subnet.prefix,
                    ep.network.gateway.to_string(),
                    ep.mac.clone(),
                )
            } else {
                (String::new(), 0, String::new(), String::new())
            };
            let dns_names = (running && Self::has_dns(&ep.network)).then(|| {
                let mut n = vec![rec.name.clone(), rec.id[..12].to_string()];
                n.extend(ep.aliases.iter().cloned());
                n
            });
            let v = serde_json::json!({
                "Aliases": (!ep.aliases.is_empty()).then_some(&ep.aliases),
                "DNSNames": dns_names,
                "NetworkID": ep.network.id,
                "EndpointID": if running { crate::networks::endpoint_id(&ep) } else { String::new() },
                "IPAddress": ip,
                "IPPrefixLen": prefix,
                "Gateway": if ep.network.internal { String::new() } else { gw.clone() },
                "MacAddress": mac,
            });
            if ep.network.name == crate::networks::DEFAULT_NETWORK {
                top = serde_json::json!({"IPAddress": ip, "IPPrefixLen": prefix, "Gateway": gw, "MacAddress": mac});
            }
            networks.insert(ep.network.name.clone(), v);
        }
        let mut ports = serde_json::Map::new();
        for p in self.published_ports(&rec.id) {
            let e = ports
                .entry(p.container_port.clone())
                .or_insert_with(|| serde_json::json!([]));
            if let Some(list) = e.as_array_mut() {
                list.push(
                    serde_json::json!({"HostIp": p.host_ip, "HostPort": p.host_port.to_string()}),
                );
            }
        }
        let mut network_settings = serde_json::json!({"Ports": ports, "Networks": networks});
        for (k, v) in top.as_object().expect("an object") {
            network_settings[k] = v.clone();
        }
        Ok(serde_json::json!({
            "Id": rec.id,
            "Created": rec.created,
            "Path": rec.path,
            "Args": rec.args,
            "State": {
                "Status": st.status.as_str(),
                "Running": st.status.is_active(),
                "Paused": st.status == Status::Paused,
                "Restarting": st.status == Status::Restarting,
                "OOMKilled": st.oom_killed,
                "Dead": st.status == Status::Dead,
                "Pid": if st.status.is_active() { st.pid } else { 0 },
                "ExitCode": st.exit_code,
                "Error": st.error,
                "StartedAt": st.started_at,
                "FinishedAt": st.finished_at,
                "Health": st.health,
            },
            "Image": rec.image_id,
            "ResolvConfPath": dir.join("resolv.conf"),
            "HostnamePath": dir.join("hostname"),
            "HostsPath": dir.join("hosts"),
            "LogPath": if rec.host_config.log_config.kind == "none" { String::new() } else { dir.join("log.json").display().to_string() },
            "Name": format!("/{}", rec.name),
            "RestartCount": st.restart_count,
            "Driver": "overlay2",
            "Platform": "linux",
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "",
            "HostConfig": rec.host_config,
            "GraphDriver": {
                "Name": "overlay2",
                "Data": {
                    "LowerDir": lower,
                    "UpperDir": dir.join("upper"),
                    "WorkDir": dir.join("work"),
                    "MergedDir": dir.join("merged"),
                }
            },
            "Mounts": rec.mounts,
            "Config": rec.config,
            "NetworkSettings": network_settings,
        }))
    }

    /// `top`: the container's processes, as `ps` shows them (rows filtered to the
    /// container's cgroup). Returns (titles, rows).
    pub fn top(&self, name: &str, ps_args: &[String]) -> Result<(Vec<String>, Vec<Vec<String>>)> {
        let rec = self.find_container(name)?;
        let st = self.container_state(&rec.id)?;
        if !st.status.is_active() {
            return Err(EngineError::NotRunning { id: rec.id.clone() });
        }
        let mut pids = sys::cgroup_pids(Path::new("/sys/fs/cgroup"), &format!("berth/{}", rec.id));
        // The monitor's probe launcher lives in the cgroup too, but is not the container's.
        let all = pids.clone();
        pids.retain(|p| *p == st.pid || !sys::is_probe_launcher(*p, &all));
        let args: Vec<String> = if ps_args.is_empty() {
            vec!["-ef".into()]
        } else {
            ps_args.to_vec()
        };
        let out = Command::new("ps")
            .args(&args)
            .output()
            .map_err(|e| EngineError::Unavailable(format!("running ps: {e}")))?;
        if !out.status.success() {
            return Err(EngineError::Invalid(format!(
                "ps {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let header = lines.next().unwrap_or_default();
        let titles: Vec<String> = header.split_whitespace().map(String::from).collect();
        let pid_col = titles
            .iter()
            .position(|t| t == "PID")
            .ok_or_else(|| EngineError::Invalid("ps output has no PID column".into()))?;
        let mut rows = Vec::new();
        for l in lines {
            let fields: Vec<&str> = l.split_whitespace().collect();
            if fields.len() < titles.len() {
                continue;
            }
            let Ok(pid) = fields[pid_col].parse::<i32>() else {
                continue;
            };
            if !pids.contains(&pid) {
                continue;
            }
            let mut row: Vec<String> = fields[..titles.len() - 1]
                .iter()
                .map(|s| s.to_string())
                .collect();
            row.push(fields[titles.len() - 1..].join(" "));
            rows.push(row);
        }
        Ok((titles, rows))
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

/// A static init for `--init`: berth-init, docker-init or tini-static, in PATH.
/// The last of a removed container, whose record is gone: its root file system's mount
/// (under its dir, wherever that was moved), its cgroup and its files. Every step runs;
/// the errors come back.
fn clear_removed(id: &str, dir: Option<&Path>) -> Vec<String> {
    let mut errors = Vec::new();
    if let Some(dir) = dir {
        if let Err(e) = sys::unmount(&dir.join("merged")) {
            errors.push(e.to_string());
        }
    }
    if let Err(e) = sys::remove_cgroup(Path::new("/sys/fs/cgroup"), &format!("/berth/{id}")) {
        errors.push(format!("removing the cgroup of {id}: {e}"));
    }
    if let Some(dir) = dir {
        if let Err(e) = fs::remove_dir_all(dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                errors.push(format!("{}: {e}", dir.display()));
            }
        }
    }
    errors
}

fn find_init() -> Option<PathBuf> {
    for n in ["berth-init", "docker-init", "tini-static"] {
        if let Some(p) = berth_runtime::external::find_binary(n) {
            return Some(p);
        }
    }
    None
}

/// Reads everything from a reader into a string (for small outputs).
pub fn read_to_string<R: Read>(mut r: R) -> String {
    let mut s = String::new();
    let _ = r.read_to_string(&mut s);
    s
}
