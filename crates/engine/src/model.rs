//! Container and volume records, shaped like Docker's `Config` and `HostConfig` so that
//! `inspect` (and later the API) can show them as Docker does.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Docker's container `Config`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerConfig {
    pub hostname: String,
    pub domainname: String,
    pub user: String,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    pub env: Vec<String>,
    pub cmd: Option<Vec<String>>,
    pub image: String,
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    pub working_dir: String,
    pub entrypoint: Option<Vec<String>>,
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
}

/// Docker's `Healthcheck` (durations in nanoseconds; `Test` is `["NONE"]`, `["CMD", …]` or
/// `["CMD-SHELL", "…"]`).
pub use berth_image::config::HealthConfig;

/// A `--ulimit`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

/// A `--device`: a host device, or a directory of them, made in the container (Docker's
/// `DeviceMapping`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeviceMapping {
    pub path_on_host: String,
    /// Empty: the host path.
    pub path_in_container: String,
    /// What the device cgroup allows: `r`, `w` and `m` (mknod); empty: `rwm`.
    pub cgroup_permissions: String,
}

/// A `--mount` / `-v` / `--tmpfs`, after parsing.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct MountSpec {
    /// bind, volume or tmpfs
    #[serde(rename = "Type")]
    pub kind: String,
    /// host path (bind) or volume name (volume); empty for anonymous volumes and tmpfs
    pub source: String,
    pub target: String,
    pub read_only: bool,
    /// tmpfs size in bytes (0 = default), mode
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tmpfs_size: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tmpfs_mode: Option<u32>,
    /// volume: don't copy image content into a new volume
    pub no_copy: bool,
    /// bind propagation / extra options (kept verbatim)
    pub options: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct LogConfig {
    #[serde(rename = "Type")]
    pub kind: String,
    pub config: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct RestartPolicy {
    pub name: String,
    pub maximum_retry_count: i64,
}

/// Docker's `HostConfig`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct HostConfig {
    pub binds: Vec<String>,
    pub network_mode: String,
    pub restart_policy: RestartPolicy,
    pub auto_remove: bool,
    pub log_config: LogConfig,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub security_opt: Vec<String>,
    /// `--group-add`: more groups (names or ids) for the container's processes.
    pub group_add: Vec<String>,
    pub readonly_rootfs: bool,
    pub tmpfs: BTreeMap<String, String>,
    pub shm_size: i64,
    pub runtime: String,
    pub init: Option<bool>,
    pub memory: i64,
    pub memory_swap: i64,
    /// `--memory-reservation`: the soft limit the kernel reclaims down to under
    /// pressure (cgroup v1 `memory.soft_limit_in_bytes`, v2 `memory.low`).
    pub memory_reservation: i64,
    pub nano_cpus: i64,
    pub cpu_shares: i64,
    pub cpuset_cpus: String,
    pub pids_limit: Option<i64>,
    pub ulimits: Vec<Ulimit>,
    pub mounts: Vec<MountSpec>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
    pub extra_hosts: Vec<String>,
    /// `-p`: container port (`80/tcp`) → where on the host (an empty port: any free one).
    #[serde(default)]
    pub port_bindings: BTreeMap<String, Vec<PortBinding>>,
    /// `-P`: every exposed port on a free host port.
    #[serde(default)]
    pub publish_all_ports: bool,
    /// `--ipc`: its own (empty, `private`, `shareable`), `host`, or `ns:PATH` (a
    /// namespace pinned at PATH, as podman has it: a pod's).
    #[serde(rename = "IpcMode")]
    pub ipc_mode: String,
    /// `--pid`: its own (empty), `host`, or `ns:PATH`.
    #[serde(rename = "PidMode")]
    pub pid_mode: String,
    /// `--uts`: its own (empty), `host`, or `ns:PATH`.
    #[serde(rename = "UTSMode")]
    pub uts_mode: String,
    /// `--oom-score-adj`: -1000 to 1000.
    pub oom_score_adj: i64,
    /// `--cpu-quota` and `--cpu-period`, in microseconds (0: unset).
    pub cpu_quota: i64,
    pub cpu_period: i64,
    /// `--cpuset-mems`.
    pub cpuset_mems: String,
    /// Paths hidden from the container, and paths it sees read-only (Docker's
    /// `MaskedPaths` and `ReadonlyPaths`; kubelet's `procMount`). None: Docker's lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub masked_paths: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readonly_paths: Option<Vec<String>>,
    /// `--cgroup-parent`: the cgroup the container's goes under (cgroupfs paths, as
    /// kubelet's `cgroupfs` driver gives them); empty: `/berth`.
    pub cgroup_parent: String,
    /// `--device`: host devices made in the container.
    pub devices: Vec<DeviceMapping>,
    /// `--device-cgroup-rule`: more devices the container may use (`c 1:3 rwm`).
    pub device_cgroup_rules: Vec<String>,
}

/// Where a container port is published (Docker's `PortBinding`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct PortBinding {
    pub host_ip: String,
    pub host_port: String,
}

/// A port published while the container runs: the host side as bound.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PublishedPort {
    /// `80/tcp`.
    pub container_port: String,
    pub host_ip: String,
    pub host_port: u16,
}

/// What the database keeps for a container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ContainerRecord {
    pub id: String,
    pub name: String,
    pub image_id: String,
    pub created: String,
    pub config: ContainerConfig,
    pub host_config: HostConfig,
    /// The resolved mounts (volumes get their names and host paths here).
    pub mounts: Vec<ResolvedMount>,
    pub path: String,
    pub args: Vec<String>,
    /// The pod sandbox (CRI) the container belongs to: it shares the pod's namespaces and
    /// name files, and goes with the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
}

impl ContainerRecord {
    /// The container's cgroup (relative to each hierarchy's root): `/berth/ID`, or
    /// `PARENT/ID` under its `--cgroup-parent`.
    pub fn cgroup(&self) -> String {
        match self.host_config.cgroup_parent.trim_end_matches('/') {
            "" => format!("/berth/{}", self.id),
            parent => format!("{parent}/{}", self.id),
        }
    }
}

/// A mount as the container gets it, shown in inspect's `Mounts`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ResolvedMount {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub source: String,
    pub destination: String,
    pub driver: String,
    pub mode: String,
    #[serde(rename = "RW")]
    pub rw: bool,
    pub propagation: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tmpfs_options: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub anonymous: bool,
}
