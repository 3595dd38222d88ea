//! What `inspect` answers, as typed structs: containers, images and networks in Docker's
//! shapes. The CLI's `inspect` and `--format` and the API's JSON are these structs
//! serialised by serde, with Docker's field names (and Docker's always-present fields,
//! `null` or empty when unset, where clients read them unconditionally).

use std::collections::BTreeMap;
use std::path::PathBuf;

use berth_image::config::{HealthConfig, RunConfig};
use serde::Serialize;

use crate::model::{ContainerConfig, HostConfig, ResolvedMount};
use crate::state::{Health, Status};

/// `docker container inspect`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerInspect {
    pub id: String,
    pub created: String,
    pub path: String,
    pub args: Vec<String>,
    pub state: ContainerState,
    pub image: String,
    pub resolv_conf_path: PathBuf,
    pub hostname_path: PathBuf,
    pub hosts_path: PathBuf,
    /// Empty with `--log-driver none`.
    pub log_path: String,
    /// `/NAME`
    pub name: String,
    pub restart_count: i64,
    pub driver: &'static str,
    pub platform: &'static str,
    pub mount_label: String,
    pub process_label: String,
    pub app_armor_profile: String,
    pub host_config: HostConfig,
    pub graph_driver: GraphDriver,
    pub mounts: Vec<ResolvedMount>,
    pub config: ContainerConfig,
    pub network_settings: NetworkSettings,
}

/// A container's `State`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerState {
    pub status: Status,
    pub running: bool,
    pub paused: bool,
    pub restarting: bool,
    #[serde(rename = "OOMKilled")]
    pub oom_killed: bool,
    pub dead: bool,
    /// 0 unless it runs.
    pub pid: i32,
    pub exit_code: i32,
    pub error: String,
    pub started_at: String,
    pub finished_at: String,
    pub health: Option<Health>,
}

/// Where a container's or an image's files are, as overlay2 names them.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GraphDriver {
    pub name: &'static str,
    pub data: GraphDriverData,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GraphDriverData {
    /// The layers' dirs, top first, `:`-separated.
    pub lower_dir: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upper_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub work_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merged_dir: Option<PathBuf>,
}

/// A container's `NetworkSettings`: its published ports, its endpoint on each network,
/// and (at the top, as Docker) its address on the default network.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkSettings {
    pub ports: BTreeMap<String, Vec<PortBinding>>,
    pub networks: BTreeMap<String, EndpointSettings>,
    #[serde(rename = "IPAddress")]
    pub ip_address: String,
    #[serde(rename = "IPPrefixLen")]
    pub ip_prefix_len: u8,
    pub gateway: String,
    pub mac_address: String,
}

/// A published port as inspect shows it (the host port as text, as Docker).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PortBinding {
    pub host_ip: String,
    pub host_port: String,
}

/// A container's endpoint on one network (addresses empty unless it runs).
#[derive(Debug, Clone, Default, Serialize)]
pub struct EndpointSettings {
    #[serde(rename = "Aliases")]
    pub aliases: Option<Vec<String>>,
    #[serde(rename = "DNSNames")]
    pub dns_names: Option<Vec<String>>,
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    #[serde(rename = "IPAddress")]
    pub ip_address: String,
    #[serde(rename = "IPPrefixLen")]
    pub ip_prefix_len: u8,
    #[serde(rename = "Gateway")]
    pub gateway: String,
    #[serde(rename = "MacAddress")]
    pub mac_address: String,
}

/// `docker image inspect`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageInspect {
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub parent: String,
    pub comment: String,
    pub created: String,
    pub docker_version: String,
    pub author: String,
    pub config: ImageInspectConfig,
    pub architecture: String,
    pub variant: Option<String>,
    pub os: String,
    pub size: u64,
    pub graph_driver: GraphDriver,
    #[serde(rename = "RootFS")]
    pub root_fs: RootFs,
    pub metadata: ImageMetadata,
    pub descriptor: Descriptor,
    /// API versions before 1.45 have these (`Config` again, and `""`), and clients of
    /// theirs rely on them (compose 1.29 reads `ContainerConfig.Volumes`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_config: Option<ImageInspectConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

/// An image's `Config` as inspect shows it: Docker's container-config fields, always
/// there (empty or null when unset); the rest only when set.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageInspectConfig {
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
    pub env: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args_escaped: Option<bool>,
    pub image: String,
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    pub working_dir: String,
    pub entrypoint: Option<Vec<String>>,
    pub on_build: Option<Vec<String>>,
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
}

impl From<&RunConfig> for ImageInspectConfig {
    fn from(c: &RunConfig) -> Self {
        let c = c.clone();
        ImageInspectConfig {
            hostname: c.hostname.unwrap_or_default(),
            user: c.user.unwrap_or_default(),
            exposed_ports: c.exposed_ports,
            env: c.env,
            cmd: c.cmd,
            healthcheck: c.healthcheck,
            args_escaped: c.args_escaped,
            volumes: c.volumes,
            working_dir: c.working_dir.unwrap_or_default(),
            entrypoint: c.entrypoint,
            on_build: c.on_build,
            labels: c.labels,
            stop_signal: c.stop_signal,
            shell: c.shell,
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RootFs {
    #[serde(rename = "Type")]
    pub kind: &'static str,
    pub layers: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageMetadata {
    pub last_tag_time: String,
}

/// An OCI descriptor (lower-case names, as the OCI spec writes them).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: &'static str,
    pub digest: String,
}

/// `docker network inspect`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkInspect {
    pub name: String,
    pub id: String,
    pub created: String,
    pub scope: &'static str,
    pub driver: String,
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: bool,
    #[serde(rename = "IPAM")]
    pub ipam: Ipam,
    pub internal: bool,
    pub attachable: bool,
    pub ingress: bool,
    pub config_from: ConfigFrom,
    pub config_only: bool,
    /// By container id.
    pub containers: BTreeMap<String, NetworkMember>,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ipam {
    pub driver: &'static str,
    pub options: BTreeMap<String, String>,
    pub config: Vec<IpamConfig>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamConfig {
    pub subnet: String,
    pub gateway: String,
    #[serde(rename = "IPRange", skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConfigFrom {
    pub network: String,
}

/// A container on a network, as the network's inspect lists it.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkMember {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    #[serde(rename = "MacAddress")]
    pub mac_address: String,
    #[serde(rename = "IPv4Address")]
    pub ipv4_address: String,
    #[serde(rename = "IPv6Address")]
    pub ipv6_address: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_images_config_keeps_dockers_always_present_fields() {
        let v = serde_json::to_value(ImageInspectConfig::from(&RunConfig {
            cmd: Some(vec!["sh".into()]),
            ..Default::default()
        }))
        .unwrap();
        for k in ["Env", "Entrypoint", "Volumes", "OnBuild", "Labels"] {
            assert_eq!(v[k], serde_json::Value::Null, "{k}");
        }
        assert_eq!(v["Cmd"], serde_json::json!(["sh"]));
        assert_eq!(v["Hostname"], "");
        assert!(v.get("Healthcheck").is_none() && v.get("Shell").is_none());
    }

    #[test]
    fn a_containers_state_is_named_as_docker_names_it() {
        let v = serde_json::to_value(ContainerState {
            status: Status::Running,
            running: true,
            paused: false,
            restarting: false,
            oom_killed: false,
            dead: false,
            pid: 7,
            exit_code: 0,
            error: String::new(),
            started_at: String::new(),
            finished_at: String::new(),
            health: None,
        })
        .unwrap();
        assert_eq!(v["Status"], "running");
        assert_eq!(v["OOMKilled"], false);
        assert_eq!(v["Health"], serde_json::Value::Null);
    }
}
