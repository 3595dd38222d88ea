//! The runtime service's container calls: kubelet's `ContainerConfig` becomes the
//! engine's `ContainerSpec` (a container in the pod, with CRI's log format at kubelet's
//! path), and the engine's records and states become CRI's containers.
//!
//! What CRI knows of a container and Docker's model has no field for (its CRI name and
//! attempt, its annotations, the image as asked, its own labels without the image's) is
//! kept in one label, [`CRI_LABEL`].

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use berth_engine::model::{ContainerRecord, MountSpec};
use berth_engine::pods::PodView;
use berth_engine::specs::ContainerSpec;
use berth_engine::state::{RunState, Status as RunStatus, ZERO_TIME};
use k8s_cri::v1 as cri;
use serde::{Deserialize, Serialize};
use tonic::Status;

/// The label holding [`CriMeta`].
pub const CRI_LABEL: &str = "io.berth.cri";

/// What CRI knows of a container beside the engine's record.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CriMeta {
    pub name: String,
    pub attempt: u32,
    pub image: String,
    pub labels: HashMap<String, String>,
    pub annotations: HashMap<String, String>,
    /// The full path of the container's log ("" for none).
    pub log_path: String,
}

impl CriMeta {
    pub fn of(rec: &ContainerRecord) -> Option<CriMeta> {
        serde_json::from_str(rec.config.labels.get(CRI_LABEL)?).ok()
    }
}

const MODE_POD: i32 = cri::NamespaceMode::Pod as i32;
const MODE_CONTAINER: i32 = cri::NamespaceMode::Container as i32;
const MODE_NODE: i32 = cri::NamespaceMode::Node as i32;

/// The engine's request for a container kubelet asks for in `pod`.
pub fn container_spec(
    pod: &PodView,
    config: &cri::ContainerConfig,
) -> Result<ContainerSpec, Status> {
    let meta = config.metadata.clone().unwrap_or_default();
    if meta.name.is_empty() {
        return Err(Status::invalid_argument(
            "the container needs a name in its metadata",
        ));
    }
    let image = config
        .image
        .as_ref()
        .map(|i| i.image.clone())
        .filter(|i| !i.is_empty())
        .ok_or_else(|| Status::invalid_argument("the container needs an image"))?;
    if !config.cdi_devices.is_empty() {
        return Err(Status::unimplemented(
            "CDI devices are not implemented yet in berth",
        ));
    }
    let pod_spec = &pod.record.spec;
    let linux = config.linux.clone().unwrap_or_default();
    let security = linux.security_context.unwrap_or_default();
    let resources = linux.resources.unwrap_or_default();

    let mut spec = ContainerSpec {
        name: Some(format!(
            "k8s_{}_{}_{}_{}_{}",
            meta.name, pod_spec.name, pod_spec.namespace, pod_spec.uid, meta.attempt
        )),
        image: image.clone(),
        pod: Some(pod.record.id.clone()),
        ..Default::default()
    };
    if !config.command.is_empty() {
        spec.entrypoint = Some(config.command.clone());
    }
    if !config.args.is_empty() || !config.command.is_empty() {
        spec.config.cmd = Some(config.args.clone());
    }
    let c = &mut spec.config;
    c.env = config
        .envs
        .iter()
        .map(|kv| format!("{}={}", kv.key, kv.value))
        .collect();
    c.working_dir = config.working_dir.clone();
    c.tty = config.tty;
    c.open_stdin = config.stdin;
    c.stdin_once = config.stdin_once;
    c.user = user_of(&security)?;

    let log_path = if pod_spec.log_directory.is_empty() || config.log_path.is_empty() {
        String::new()
    } else {
        Path::new(&pod_spec.log_directory)
            .join(&config.log_path)
            .display()
            .to_string()
    };
    let cri_meta = CriMeta {
        name: meta.name,
        attempt: meta.attempt,
        image,
        labels: config.labels.clone(),
        annotations: config.annotations.clone(),
        log_path: log_path.clone(),
    };
    let mut labels: BTreeMap<String, String> = config.labels.clone().into_iter().collect();
    labels.insert(
        CRI_LABEL.into(),
        serde_json::to_string(&cri_meta).expect("CRI metadata serialises"),
    );
    c.labels = labels;

    let hc = &mut spec.host_config;
    hc.log_config.kind = if log_path.is_empty() {
        "none"
    } else {
        "k8s-file"
    }
    .into();
    if !log_path.is_empty() {
        hc.log_config.config.insert("path".into(), log_path);
    }
    hc.restart_policy.name = "no".into();
    hc.mounts = config
        .mounts
        .iter()
        .map(|m| {
            let propagation = match cri::MountPropagation::try_from(m.propagation) {
                Ok(cri::MountPropagation::PropagationPrivate) => "rprivate",
                Ok(cri::MountPropagation::PropagationHostToContainer) => "rslave",
                Ok(cri::MountPropagation::PropagationBidirectional) => "rshared",
                Err(_) => return Err(Status::invalid_argument("invalid mount propagation")),
            };
            if m.image.is_some() {
                return Err(Status::unimplemented(
                    "image volumes are not implemented yet in berth",
                ));
            }
            if !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty() {
                return Err(Status::unimplemented(
                    "id-mapped mounts are not implemented yet in berth",
                ));
            }
            Ok(MountSpec {
                kind: "bind".into(),
                source: m.host_path.clone(),
                target: m.container_path.clone(),
                read_only: m.readonly,
                options: vec![propagation.into()],
                ..Default::default()
            })
        })
        .collect::<Result<_, Status>>()?;

    if security.privileged && !pod_spec.privileged {
        return Err(Status::invalid_argument(
            "no privileged container is allowed in a pod sandbox that is not privileged",
        ));
    }
    hc.privileged = security.privileged;
    if let Some(caps) = &security.capabilities {
        if !caps.add_ambient_capabilities.is_empty() {
            return Err(Status::unimplemented(
                "ambient capabilities are not implemented yet in berth",
            ));
        }
        hc.cap_add = caps.add_capabilities.clone();
        hc.cap_drop = caps.drop_capabilities.clone();
    }
    hc.readonly_rootfs = security.readonly_rootfs;
    hc.group_add = security
        .supplemental_groups
        .iter()
        .map(|g| g.to_string())
        .collect();
    if security.no_new_privs {
        hc.security_opt.push("no-new-privileges".into());
    }
    match &security.seccomp {
        // kubelet's default is Unconfined unless the pod asks for RuntimeDefault.
        None => hc.security_opt.push("seccomp=unconfined".into()),
        Some(p) => match cri::security_profile::ProfileType::try_from(p.profile_type) {
            Ok(cri::security_profile::ProfileType::RuntimeDefault) => {}
            Ok(cri::security_profile::ProfileType::Unconfined) => {
                hc.security_opt.push("seccomp=unconfined".into())
            }
            Ok(cri::security_profile::ProfileType::Localhost) => {
                if !p.localhost_ref.starts_with('/') {
                    return Err(Status::invalid_argument(format!(
                        "a localhost seccomp profile needs an absolute path, not {:?}",
                        p.localhost_ref
                    )));
                }
                hc.security_opt.push(format!("seccomp={}", p.localhost_ref));
            }
            Err(_) => return Err(Status::invalid_argument("invalid seccomp profile type")),
        },
    }
    // Lists kubelet sends replace Docker's (empty, as protobuf cannot tell it from
    // absent, keeps them, as containerd does).
    if !security.masked_paths.is_empty() {
        hc.masked_paths = Some(security.masked_paths.clone());
    }
    if !security.readonly_paths.is_empty() {
        hc.readonly_paths = Some(security.readonly_paths.clone());
    }
    let ns = security.namespace_options.unwrap_or_default();
    hc.pid_mode =
        match ns.pid {
            MODE_POD => "pod",
            MODE_CONTAINER => "",
            MODE_NODE => "host",
            _ => return Err(Status::unimplemented(
                "a container in another container's PID namespace is not implemented yet in berth",
            )),
        }
        .into();

    // kubelet's pod cgroup (its cgroupfs driver), as containerd places a pod's.
    hc.cgroup_parent = pod_spec.cgroup_parent.clone();
    hc.cpu_period = resources.cpu_period;
    hc.cpu_quota = resources.cpu_quota;
    hc.cpu_shares = resources.cpu_shares;
    hc.memory = resources.memory_limit_in_bytes;
    if resources.memory_swap_limit_in_bytes > 0 {
        hc.memory_swap = resources.memory_swap_limit_in_bytes;
    }
    hc.oom_score_adj = resources.oom_score_adj;
    hc.cpuset_cpus = resources.cpuset_cpus.clone();
    hc.cpuset_mems = resources.cpuset_mems.clone();
    hc.devices = config
        .devices
        .iter()
        .map(|d| berth_engine::model::DeviceMapping {
            path_on_host: d.host_path.clone(),
            path_in_container: d.container_path.clone(),
            cgroup_permissions: d.permissions.clone(),
        })
        .collect();
    if resources.hugepage_limits.iter().any(|h| h.limit != 0) || !resources.unified.is_empty() {
        return Err(Status::unimplemented(
            "hugepage limits and unified cgroup settings are not implemented yet in berth",
        ));
    }
    Ok(spec)
}

/// `run_as_username`, else `run_as_user`, with `run_as_group` (which needs one of
/// them, as containerd and CRI-O have it).
fn user_of(s: &cri::LinuxContainerSecurityContext) -> Result<String, Status> {
    let user = match (&s.run_as_user, s.run_as_username.as_str()) {
        (_, name) if !name.is_empty() => name.to_string(),
        (Some(uid), _) => uid.value.to_string(),
        (None, _) => String::new(),
    };
    Ok(match &s.run_as_group {
        Some(_) if user.is_empty() => {
            return Err(Status::invalid_argument(
                "run_as_group is set without run_as_user or run_as_username",
            ))
        }
        Some(gid) => format!("{user}:{}", gid.value),
        None => user,
    })
}

/// Nanoseconds since the epoch of an RFC 3339 time (0 for Go's zero time).
fn nanos(t: &str) -> i64 {
    if t.is_empty() || t == ZERO_TIME {
        return 0;
    }
    chrono::DateTime::parse_from_rfc3339(t)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .unwrap_or_default()
}

fn state_of(st: &RunState) -> i32 {
    use cri::ContainerState as S;
    match st.status {
        RunStatus::Created => S::ContainerCreated,
        RunStatus::Running | RunStatus::Paused | RunStatus::Restarting => S::ContainerRunning,
        RunStatus::Exited | RunStatus::Dead => S::ContainerExited,
        RunStatus::Removing => S::ContainerUnknown,
    }
    .into()
}

fn metadata(m: &CriMeta) -> cri::ContainerMetadata {
    cri::ContainerMetadata {
        name: m.name.clone(),
        attempt: m.attempt,
    }
}

/// A container as `ListContainers` gives it.
pub fn container(rec: &ContainerRecord, meta: &CriMeta, st: &RunState) -> cri::Container {
    cri::Container {
        id: rec.id.clone(),
        pod_sandbox_id: rec.pod.clone().unwrap_or_default(),
        metadata: Some(metadata(meta)),
        image: Some(cri::ImageSpec {
            image: meta.image.clone(),
            ..Default::default()
        }),
        image_ref: rec.image_id.clone(),
        image_id: rec.image_id.clone(),
        state: state_of(st),
        created_at: nanos(&rec.created),
        labels: meta.labels.clone(),
        annotations: meta.annotations.clone(),
    }
}

/// A container as `ContainerStatus` gives it.
pub fn status(rec: &ContainerRecord, meta: &CriMeta, st: &RunState) -> cri::ContainerStatus {
    let exited = matches!(st.status, RunStatus::Exited | RunStatus::Dead);
    let reason = match () {
        _ if !exited => "",
        _ if st.oom_killed => "OOMKilled",
        _ if st.exit_code == 0 && st.error.is_empty() => "Completed",
        _ => "Error",
    };
    let hc = &rec.host_config;
    cri::ContainerStatus {
        id: rec.id.clone(),
        metadata: Some(metadata(meta)),
        state: state_of(st),
        created_at: nanos(&rec.created),
        started_at: nanos(&st.started_at),
        finished_at: if exited { nanos(&st.finished_at) } else { 0 },
        exit_code: st.exit_code,
        image: Some(cri::ImageSpec {
            image: meta.image.clone(),
            ..Default::default()
        }),
        image_ref: rec.image_id.clone(),
        image_id: rec.image_id.clone(),
        reason: reason.into(),
        message: st.error.clone(),
        labels: meta.labels.clone(),
        annotations: meta.annotations.clone(),
        mounts: rec
            .mounts
            .iter()
            .filter(|m| m.kind == "bind")
            .map(|m| cri::Mount {
                container_path: m.destination.clone(),
                host_path: m.source.clone(),
                readonly: !m.rw,
                propagation: match m.propagation.as_str() {
                    "rslave" | "slave" => cri::MountPropagation::PropagationHostToContainer,
                    "rshared" | "shared" => cri::MountPropagation::PropagationBidirectional,
                    _ => cri::MountPropagation::PropagationPrivate,
                }
                .into(),
                ..Default::default()
            })
            .collect(),
        log_path: meta.log_path.clone(),
        resources: Some(cri::ContainerResources {
            linux: Some(cri::LinuxContainerResources {
                cpu_period: hc.cpu_period,
                cpu_quota: hc.cpu_quota,
                cpu_shares: hc.cpu_shares,
                memory_limit_in_bytes: hc.memory,
                oom_score_adj: hc.oom_score_adj,
                cpuset_cpus: hc.cpuset_cpus.clone(),
                cpuset_mems: hc.cpuset_mems.clone(),
                ..Default::default()
            }),
            windows: None,
        }),
        user: None,
    }
}

/// Whether a container passes `ListContainers`' filter.
pub fn matches(c: &cri::Container, filter: &cri::ContainerFilter) -> bool {
    (filter.id.is_empty() || c.id.starts_with(&filter.id))
        && (filter.pod_sandbox_id.is_empty()
            || c.pod_sandbox_id.starts_with(&filter.pod_sandbox_id))
        && filter.state.as_ref().is_none_or(|s| s.state == c.state)
        && filter
            .label_selector
            .iter()
            .all(|(k, v)| c.labels.get(k) == Some(v))
}

/// The engine's update for `UpdateContainerResources`; what it cannot change is refused.
pub fn update_spec(
    r: &cri::LinuxContainerResources,
) -> Result<berth_engine::specs::UpdateSpec, Status> {
    if !r.cpuset_cpus.is_empty()
        || !r.cpuset_mems.is_empty()
        || r.oom_score_adj != 0
        || r.hugepage_limits.iter().any(|h| h.limit != 0)
        || !r.unified.is_empty()
    {
        return Err(Status::unimplemented(
            "updating cpusets, the OOM score, hugepages or unified settings of a container is not implemented yet in berth",
        ));
    }
    let set = |v: i64| (v > 0).then_some(v);
    Ok(berth_engine::specs::UpdateSpec {
        memory: set(r.memory_limit_in_bytes),
        memory_swap: set(r.memory_swap_limit_in_bytes),
        cpu_quota: set(r.cpu_quota),
        cpu_shares: set(r.cpu_shares),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_engine::pods::{PodRecord, PodState};

    fn pod() -> PodView {
        PodView {
            record: PodRecord {
                id: "p0d".into(),
                spec: berth_engine::specs::PodSpec {
                    name: "web".into(),
                    namespace: "default".into(),
                    uid: "u1".into(),
                    log_directory: "/var/log/pods/u1".into(),
                    ..Default::default()
                },
                created: 0,
                pins: vec![],
                init_pid: None,
                init_start: 0,
                ips: vec![],
                cni: None,
            },
            state: PodState::Ready,
            namespaces: vec![],
            dir: "/run/berth/pods/p0d".into(),
        }
    }

    fn config() -> cri::ContainerConfig {
        cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: "app".into(),
                attempt: 1,
            }),
            image: Some(cri::ImageSpec {
                image: "busybox:test".into(),
                ..Default::default()
            }),
            command: vec!["sh".into(), "-c".into()],
            args: vec!["echo hi".into()],
            envs: vec![cri::KeyValue {
                key: "A".into(),
                value: "1".into(),
            }],
            log_path: "app/1.log".into(),
            labels: HashMap::from([("tier".into(), "web".into())]),
            linux: Some(cri::LinuxContainerConfig {
                resources: Some(cri::LinuxContainerResources {
                    cpu_shares: 512,
                    memory_limit_in_bytes: 64 << 20,
                    oom_score_adj: 100,
                    ..Default::default()
                }),
                security_context: Some(cri::LinuxContainerSecurityContext {
                    run_as_user: Some(cri::Int64Value { value: 1000 }),
                    run_as_group: Some(cri::Int64Value { value: 2000 }),
                    no_new_privs: true,
                    namespace_options: Some(cri::NamespaceOption {
                        pid: MODE_POD,
                        ..Default::default()
                    }),
                    seccomp: Some(cri::SecurityProfile {
                        profile_type: cri::security_profile::ProfileType::RuntimeDefault as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn kubelets_container_config_becomes_the_engines_request() {
        let spec = container_spec(&pod(), &config()).unwrap();
        assert_eq!(spec.name.as_deref(), Some("k8s_app_web_default_u1_1"));
        assert_eq!(spec.pod.as_deref(), Some("p0d"));
        assert_eq!(spec.entrypoint, Some(vec!["sh".to_string(), "-c".into()]));
        assert_eq!(spec.config.cmd, Some(vec!["echo hi".to_string()]));
        assert_eq!(spec.config.env, ["A=1"]);
        assert_eq!(spec.config.user, "1000:2000");
        let hc = &spec.host_config;
        assert_eq!(hc.log_config.kind, "k8s-file");
        assert_eq!(hc.log_config.config["path"], "/var/log/pods/u1/app/1.log");
        assert_eq!(hc.pid_mode, "pod");
        assert_eq!(
            (hc.cpu_shares, hc.memory, hc.oom_score_adj),
            (512, 64 << 20, 100)
        );
        assert_eq!(hc.security_opt, ["no-new-privileges"]);
        let meta = CriMeta::of(&ContainerRecord {
            id: String::new(),
            name: String::new(),
            image_id: String::new(),
            created: String::new(),
            config: spec.config.clone(),
            host_config: Default::default(),
            mounts: vec![],
            path: String::new(),
            args: vec![],
            pod: None,
        })
        .unwrap();
        assert_eq!((meta.name.as_str(), meta.attempt), ("app", 1));
        assert_eq!(meta.labels["tier"], "web");
        // Only args: the image's entrypoint stays.
        let mut c = config();
        c.command.clear();
        let spec = container_spec(&pod(), &c).unwrap();
        assert_eq!(spec.entrypoint, None);
        assert_eq!(spec.config.cmd, Some(vec!["echo hi".to_string()]));
    }

    #[test]
    fn what_berth_cannot_give_is_refused_by_name() {
        // Devices are the engine's `--device`; CDI devices are not there yet.
        let mut c = config();
        c.devices.push(cri::Device {
            container_path: "/dev/xfuse".into(),
            host_path: "/dev/fuse".into(),
            permissions: "rw".into(),
        });
        let spec = container_spec(&pod(), &c).unwrap();
        assert_eq!(
            spec.host_config.devices,
            [berth_engine::model::DeviceMapping {
                path_on_host: "/dev/fuse".into(),
                path_in_container: "/dev/xfuse".into(),
                cgroup_permissions: "rw".into(),
            }]
        );
        c.cdi_devices.push(cri::CdiDevice {
            name: "vendor.com/gpu=0".into(),
        });
        let e = container_spec(&pod(), &c).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unimplemented);
        assert!(e.message().contains("CDI devices"), "{}", e.message());
        let with_security = |change: &dyn Fn(&mut cri::LinuxContainerSecurityContext)| {
            let mut c = config();
            change(c.linux.as_mut().unwrap().security_context.as_mut().unwrap());
            container_spec(&pod(), &c)
        };
        let e = with_security(&|s| s.privileged = true).unwrap_err();
        assert!(e.message().contains("privileged"), "{}", e.message());
        let e = with_security(&|s| s.run_as_user = None).unwrap_err();
        assert!(e.message().contains("run_as_group"), "{}", e.message());
        // No seccomp field: kubelet's default, unconfined.
        let spec = with_security(&|s| s.seccomp = None).unwrap();
        assert!(spec
            .host_config
            .security_opt
            .contains(&"seccomp=unconfined".to_string()));
    }
}
