//! What the engine tells a monitor (`monitor.json`), and where a container's bundle and
//! markers live.

use super::*;

/// What the engine tells a monitor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MonitorConfig {
    pub id: String,
    pub runtime: String,
    pub runtime_root: PathBuf,
    pub bundle: PathBuf,
    pub tty: bool,
    pub open_stdin: bool,
    pub layers_root: PathBuf,
    pub lowerdir: String,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub merged: PathBuf,
    /// None: `--log-driver none`
    pub log_path: Option<PathBuf>,
    pub log_max_size: u64,
    pub log_max_files: u32,
    /// gzip rotated log files
    #[serde(default)]
    pub log_compress: bool,
    /// The CRI log format (the `k8s-file` driver); SIGUSR1 reopens the file.
    #[serde(default)]
    pub log_cri: bool,
    pub auto_remove: bool,
    /// Bring `lo` up in the container's own network namespace.
    pub loopback_up: bool,
    /// (path in the container, host dir): new volumes to fill from the image.
    pub seed_volumes: Vec<(String, PathBuf)>,
    /// The process's working directory, made if the image lacks it (as Docker does).
    #[serde(default)]
    pub workdir: String,
    pub cgroup: String,
    /// `no`, `always`, `unless-stopped` or `on-failure` (with `restart_max` tries, 0 = no
    /// limit).
    #[serde(default)]
    pub restart_policy: String,
    #[serde(default)]
    pub restart_max: i64,
    /// The health check to run inside the container, if any.
    #[serde(default)]
    pub healthcheck: Option<crate::model::HealthConfig>,
    /// A process (pid, start time) the container lives for: a build's RUN step. When it
    /// ends, however it ends, the container is killed and removed.
    #[serde(default)]
    pub owner: Option<(i32, u64)>,
    /// The network namespace the engine made for the container (on a network), removed
    /// when the container stops for good: its veth pair goes with it.
    #[serde(default)]
    pub netns: Option<PathBuf>,
    /// The sockets reserving the container's published host ports, inherited at these
    /// fds and held until the end; and the nftables table and elements publishing them.
    #[serde(default)]
    pub port_fds: Vec<RawFd>,
    #[serde(default)]
    pub ports_table: String,
    #[serde(default)]
    pub ports: Vec<PortElement>,
}

/// A published port's nftables element, for the monitor to take out at the end.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PortElement {
    pub host_ip: Option<std::net::Ipv4Addr>,
    pub proto: String,
    pub host_port: u16,
    pub ip: std::net::Ipv4Addr,
    pub port: u16,
}

impl From<&berth_net::firewall::PortMap> for PortElement {
    fn from(p: &berth_net::firewall::PortMap) -> Self {
        PortElement {
            host_ip: p.host_ip,
            proto: p.proto.clone(),
            host_port: p.host_port,
            ip: p.ip,
            port: p.port,
        }
    }
}

impl From<&PortElement> for berth_net::firewall::PortMap {
    fn from(p: &PortElement) -> Self {
        berth_net::firewall::PortMap {
            host_ip: p.host_ip,
            proto: p.proto.clone(),
            host_port: p.host_port,
            ip: p.ip,
            port: p.port,
        }
    }
}

/// The label that ties a container to the process it lives for (`PID-START`).
pub const OWNER_LABEL: &str = "berth.owner";

/// Parses an [`OWNER_LABEL`] value.
pub fn parse_owner(v: &str) -> Option<(i32, u64)> {
    let (p, s) = v.split_once('-')?;
    Some((p.parse().ok()?, s.parse().ok()?))
}

/// Where `stop`/`rm` record that the user stopped a container, which ends its restart
/// policy until the next `start`.
pub fn stop_marker(root: &Path, id: &str) -> PathBuf {
    root.join("containers").join(id).join("stopped-by-user")
}

/// The container's bundle: the dir its runtime reads `config.json` from, which also holds
/// its monitor's config (`monitor.json`) and log (`monitor.log`). It lives on the run root:
/// `start` writes it anew every time, and a short container's life should not create and
/// delete files on the root's file system that nobody reads after. The monitor deletes
/// what it no longer needs at the container's final exit (a log with something in it
/// stays until `rm`).
pub fn bundle_dir(run_root: &Path, id: &str) -> PathBuf {
    run_root.join("bundles").join(id)
}

pub fn config_path(run_root: &Path, id: &str) -> PathBuf {
    bundle_dir(run_root, id).join("monitor.json")
}

/// At a container's final exit: its bundle less a log worth keeping (see [`bundle_dir`]).
pub(super) fn remove_bundle(run_root: &Path, id: &str) {
    let dir = bundle_dir(run_root, id);
    let _ = fs::remove_file(dir.join("config.json"));
    let _ = fs::remove_file(dir.join("monitor.json"));
    let log = dir.join("monitor.log");
    if fs::metadata(&log).map(|m| m.len() == 0).unwrap_or(false) {
        let _ = fs::remove_file(&log);
    }
    let _ = fs::remove_dir(&dir);
}
