//! What is read about containers: `ps`, `inspect`, `top`, `info`, usage.

use super::*;
use crate::views::{
    ContainerInspect, ContainerState, EndpointSettings, GraphDriver, GraphDriverData,
    NetworkSettings, PortBinding,
};

impl Engine {
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
        let os = os_release("PRETTY_NAME");
        let info = serde_json::json!({
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
        });
        // The rest of API 1.47's SystemInfo: what berth knows of the host, else Docker's
        // zero values.
        let host = serde_json::json!({
            "DriverStatus": [["Backing Filesystem", backing_fs(self.root())]],
            "Plugins": {
                "Volume": ["local"],
                "Network": ["bridge", "host", "none"],
                "Authorization": null,
                "Log": ["json-file", "local", "k8s-file", "none"],
            },
            "MemoryLimit": cgroup_has("memory", "memory.limit_in_bytes", "memory.max"),
            "SwapLimit": cgroup_has("memory", "memory.memsw.limit_in_bytes", "memory.swap.max"),
            "KernelMemoryTCP": false,
            "CpuCfsPeriod": cgroup_has("cpu", "cpu.cfs_period_us", "cpu.max"),
            "CpuCfsQuota": cgroup_has("cpu", "cpu.cfs_quota_us", "cpu.max"),
            "CPUShares": cgroup_has("cpu", "cpu.shares", "cpu.weight"),
            "CPUSet": cgroup_has("cpuset", "cpuset.cpus", "cpuset.cpus.effective"),
            "PidsLimit": cgroup_has("pids", "pids.max", "pids.max"),
            "OomKillDisable": cgroup_version == "1",
            "IPv4Forwarding": proc_flag("/proc/sys/net/ipv4/ip_forward"),
            "BridgeNfIptables": proc_flag("/proc/sys/net/bridge/bridge-nf-call-iptables"),
            "BridgeNfIp6tables": proc_flag("/proc/sys/net/bridge/bridge-nf-call-ip6tables"),
            "Debug": false,
            "NFd": fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0),
            "NGoroutines": fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0),
            "SystemTime": chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, false),
            "NEventsListener": 0,
            "OSVersion": os_release("VERSION_ID"),
            "MemTotal": mem_total(),
        });
        let pools: Vec<serde_json::Value> = berth_net::ipam::DEFAULT_POOLS
            .iter()
            .map(|(a, p)| serde_json::json!({"Base": format!("{a}/{p}"), "Size": 24}))
            .collect();
        let env = |k: &str| {
            std::env::var(k)
                .or_else(|_| std::env::var(k.to_lowercase()))
                .unwrap_or_default()
        };
        let daemon = serde_json::json!({
            "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": {
                "AllowNondistributableArtifactsCIDRs": null,
                "AllowNondistributableArtifactsHostnames": null,
                "InsecureRegistryCIDRs": ["127.0.0.0/8"],
                "IndexConfigs": {"docker.io": {
                    "Name": "docker.io", "Mirrors": [], "Secure": true, "Official": true,
                }},
                "Mirrors": null,
            },
            "GenericResources": null,
            "HttpProxy": env("HTTP_PROXY"),
            "HttpsProxy": env("HTTPS_PROXY"),
            "NoProxy": env("NO_PROXY"),
            "Name": uts.as_ref().map(|u| u.nodename().to_string_lossy().into_owned()).unwrap_or_default(),
            "Labels": [],
            "ExperimentalBuild": false,
            "Swarm": {
                "NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
                "ControlAvailable": false, "Error": "", "RemoteManagers": null,
            },
            // Containers outlive any berth process (each has its monitor).
            "LiveRestoreEnabled": true,
            "Isolation": "",
            "InitBinary": "docker-init",
            "ContainerdCommit": {"ID": "", "Expected": ""},
            "RuncCommit": {"ID": "", "Expected": ""},
            "InitCommit": {"ID": "", "Expected": ""},
            "ProductLicense": "",
            "DefaultAddressPools": pools,
            "Warnings": [],
            "CDISpecDirs": [],
            "Containerd": null,
        });
        let mut info = info;
        for part in [host, daemon] {
            if let (Some(info), serde_json::Value::Object(part)) = (info.as_object_mut(), part) {
                info.extend(part);
            }
        }
        Ok(info)
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
    pub fn inspect_container(&self, name: &str) -> Result<ContainerInspect> {
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
        let mut settings = NetworkSettings::default();
        let endpoints = self.container_endpoints(&rec.id).unwrap_or_default();
        if endpoints.is_empty() {
            let mode = &rec.host_config.network_mode;
            let network_id = if matches!(mode.as_str(), "none" | "host") {
                self.builtin_network_id(mode)
            } else {
                String::new()
            };
            settings.networks.insert(
                mode.clone(),
                EndpointSettings {
                    network_id,
                    ..Default::default()
                },
            );
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
            if ep.network.name == crate::networks::DEFAULT_NETWORK {
                settings.ip_address = ip.clone();
                settings.ip_prefix_len = prefix;
                settings.gateway = gw.clone();
                settings.mac_address = mac.clone();
            }
            let endpoint = EndpointSettings {
                aliases: (!ep.aliases.is_empty()).then(|| ep.aliases.clone()),
                dns_names,
                network_id: ep.network.id.clone(),
                endpoint_id: if running {
                    crate::networks::endpoint_id(&ep)
                } else {
                    String::new()
                },
                ip_address: ip,
                ip_prefix_len: prefix,
                gateway: if ep.network.internal {
                    String::new()
                } else {
                    gw
                },
                mac_address: mac,
            };
            settings.networks.insert(ep.network.name.clone(), endpoint);
        }
        for p in self.published_ports(&rec.id) {
            settings
                .ports
                .entry(p.container_port.clone())
                .or_default()
                .push(PortBinding {
                    host_ip: p.host_ip.clone(),
                    host_port: p.host_port.to_string(),
                });
        }
        let active = st.status.is_active();
        Ok(ContainerInspect {
            id: rec.id.clone(),
            created: rec.created.clone(),
            path: rec.path.clone(),
            args: rec.args.clone(),
            state: ContainerState {
                status: st.status,
                running: active,
                paused: st.status == Status::Paused,
                restarting: st.status == Status::Restarting,
                oom_killed: st.oom_killed,
                dead: st.status == Status::Dead,
                pid: if active { st.pid } else { 0 },
                exit_code: st.exit_code,
                error: st.error.clone(),
                started_at: st.started_at.clone(),
                finished_at: st.finished_at.clone(),
                health: st.health.clone(),
            },
            image: rec.image_id.clone(),
            resolv_conf_path: dir.join("resolv.conf"),
            hostname_path: dir.join("hostname"),
            hosts_path: dir.join("hosts"),
            log_path: self
                .log_path(&rec)
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            name: format!("/{}", rec.name),
            restart_count: st.restart_count,
            driver: "overlay2",
            platform: "linux",
            mount_label: String::new(),
            process_label: String::new(),
            app_armor_profile: String::new(),
            graph_driver: GraphDriver {
                name: "overlay2",
                data: GraphDriverData {
                    lower_dir: lower,
                    upper_dir: Some(dir.join("upper")),
                    work_dir: Some(dir.join("work")),
                    merged_dir: Some(dir.join("merged")),
                },
            },
            host_config: rec.host_config,
            mounts: rec.mounts,
            config: rec.config,
            network_settings: settings,
        })
    }

    /// `top`: the container's processes, as `ps` shows them (rows filtered to the
    /// container's cgroup). Returns (titles, rows).
    pub fn top(&self, name: &str, ps_args: &[String]) -> Result<(Vec<String>, Vec<Vec<String>>)> {
        let rec = self.find_container(name)?;
        let st = self.container_state(&rec.id)?;
        if !st.status.is_active() {
            return Err(EngineError::NotRunning { id: rec.id.clone() });
        }
        let mut pids = sys::cgroup_pids(
            Path::new("/sys/fs/cgroup"),
            rec.cgroup().trim_start_matches('/'),
        );
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

    /// A running container's resource usage so far (from its cgroup). Its pids leave out
    /// the monitor's probe launcher, which lives in the cgroup (see `top`).
    pub fn container_usage(&self, id: &str) -> Result<crate::stats::Usage> {
        let root = Path::new("/sys/fs/cgroup");
        let rec = self.find_container(id)?;
        let id = rec.id.as_str();
        let rel = rec.cgroup().trim_start_matches('/').to_string();
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
}

pub(super) fn since(t: &str) -> chrono::Duration {
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

/// A field of the host's /etc/os-release (`PRETTY_NAME`, `VERSION_ID`).
fn os_release(key: &str) -> String {
    fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix(key)?
                    .strip_prefix('=')
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_default()
}

/// Whether the host's cgroups have a limit file: `v1` in hierarchy `controller`, else
/// `v2` in the unified tree.
fn cgroup_has(controller: &str, v1: &str, v2: &str) -> bool {
    let base = Path::new("/sys/fs/cgroup");
    if base.join("cgroup.controllers").exists() {
        return fs::read_to_string(base.join("cgroup.subtree_control"))
            .is_ok_and(|c| c.split_whitespace().any(|c| c == controller))
            || base.join(v2).exists();
    }
    base.join(controller).join(v1).exists()
}

/// A /proc/sys switch that is on.
fn proc_flag(path: &str) -> bool {
    fs::read_to_string(path).is_ok_and(|v| v.trim() == "1")
}

/// The host's memory, in bytes (/proc/meminfo's MemTotal).
fn mem_total() -> u64 {
    fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// The file system type the store is on (`extfs`, `xfs`, `tmpfs`…), as Docker names it.
fn backing_fs(root: &Path) -> String {
    use nix::sys::statfs::{
        statfs, BTRFS_SUPER_MAGIC, EXT4_SUPER_MAGIC, TMPFS_MAGIC, XFS_SUPER_MAGIC,
    };
    match statfs(root).map(|s| s.filesystem_type()) {
        Ok(t) if t == EXT4_SUPER_MAGIC => "extfs".into(),
        Ok(t) if t == XFS_SUPER_MAGIC => "xfs".into(),
        Ok(t) if t == BTRFS_SUPER_MAGIC => "btrfs".into(),
        Ok(t) if t == TMPFS_MAGIC => "tmpfs".into(),
        Ok(t) => format!("<unknown 0x{:x}>", t.0),
        Err(_) => String::new(),
    }
}
