//! The runtime service's pod sandbox calls: kubelet's `PodSandboxConfig` becomes the
//! engine's `PodSpec`, and the engine's pods become CRI's sandboxes.

use std::collections::HashMap;

use berth_engine::pods::{PodState, PodView};
use berth_engine::specs::pod::{PodDns, PodPid, PodPort, PodSpec};
use berth_engine::EngineError;
use k8s_cri::v1 as cri;
use tonic::Status;

/// CRI's namespace modes.
const MODE_POD: i32 = cri::NamespaceMode::Pod as i32;
const MODE_CONTAINER: i32 = cri::NamespaceMode::Container as i32;
const MODE_NODE: i32 = cri::NamespaceMode::Node as i32;

/// The engine's request for kubelet's sandbox config.
pub fn pod_spec(config: &cri::PodSandboxConfig, handler: &str) -> Result<PodSpec, Status> {
    let meta = config.metadata.clone().unwrap_or_default();
    let linux = config.linux.clone().unwrap_or_default();
    let security = linux.security_context.clone().unwrap_or_default();
    let ns = security.namespace_options.clone().unwrap_or_default();
    if ns.network == MODE_CONTAINER || ns.ipc == MODE_CONTAINER {
        return Err(Status::invalid_argument(
            "a pod's network and IPC namespaces are the pod's or the node's",
        ));
    }
    if ns
        .userns_options
        .as_ref()
        .is_some_and(|u| u.mode != MODE_NODE)
    {
        return Err(Status::unimplemented(
            "user namespaces for pods are not implemented yet in berth",
        ));
    }
    let ports = config
        .port_mappings
        .iter()
        .map(|p| {
            let port = |v: i32, what: &str| {
                u16::try_from(v)
                    .map_err(|_| Status::invalid_argument(format!("invalid {what} port: {v}")))
            };
            Ok(PodPort {
                protocol: match cri::Protocol::try_from(p.protocol) {
                    Ok(cri::Protocol::Tcp) => "tcp",
                    Ok(cri::Protocol::Udp) => "udp",
                    Ok(cri::Protocol::Sctp) => "sctp",
                    Err(_) => return Err(Status::invalid_argument("invalid port protocol")),
                }
                .into(),
                container_port: port(p.container_port, "container")?,
                host_port: port(p.host_port, "host")?,
                host_ip: p.host_ip.clone(),
            })
        })
        .collect::<Result<Vec<_>, Status>>()?;
    Ok(PodSpec {
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        attempt: meta.attempt,
        hostname: config.hostname.clone(),
        log_directory: config.log_directory.clone(),
        dns: config.dns_config.as_ref().map(|d| PodDns {
            servers: d.servers.clone(),
            searches: d.searches.clone(),
            options: d.options.clone(),
        }),
        ports,
        labels: config.labels.clone().into_iter().collect(),
        annotations: config.annotations.clone().into_iter().collect(),
        host_network: ns.network == MODE_NODE,
        host_ipc: ns.ipc == MODE_NODE,
        pid: match ns.pid {
            MODE_POD => PodPid::Pod,
            MODE_NODE => PodPid::Host,
            MODE_CONTAINER => PodPid::Container,
            _ => {
                return Err(Status::invalid_argument(
                    "a pod's PID namespace is the pod's, each container's or the node's",
                ))
            }
        },
        sysctls: linux.sysctls.into_iter().collect(),
        cgroup_parent: linux.cgroup_parent,
        privileged: security.privileged,
        runtime_handler: handler.to_string(),
    })
}

fn metadata(spec: &PodSpec) -> cri::PodSandboxMetadata {
    cri::PodSandboxMetadata {
        name: spec.name.clone(),
        uid: spec.uid.clone(),
        namespace: spec.namespace.clone(),
        attempt: spec.attempt,
    }
}

fn state_of(pod: &PodView) -> i32 {
    match pod.state {
        PodState::Ready => cri::PodSandboxState::SandboxReady as i32,
        PodState::NotReady => cri::PodSandboxState::SandboxNotready as i32,
    }
}

fn map(m: &std::collections::BTreeMap<String, String>) -> HashMap<String, String> {
    m.clone().into_iter().collect()
}

/// A pod as `ListPodSandbox` gives it.
pub fn sandbox(pod: &PodView) -> cri::PodSandbox {
    let spec = &pod.record.spec;
    cri::PodSandbox {
        id: pod.record.id.clone(),
        metadata: Some(metadata(spec)),
        state: state_of(pod),
        created_at: pod.record.created,
        labels: map(&spec.labels),
        annotations: map(&spec.annotations),
        runtime_handler: spec.runtime_handler.clone(),
    }
}

/// A pod as `PodSandboxStatus` gives it.
pub fn status(pod: &PodView) -> cri::PodSandboxStatus {
    let spec = &pod.record.spec;
    let mode = |host: bool| if host { MODE_NODE } else { MODE_POD };
    let mut ips = pod.record.ips.iter();
    cri::PodSandboxStatus {
        id: pod.record.id.clone(),
        metadata: Some(metadata(spec)),
        state: state_of(pod),
        created_at: pod.record.created,
        network: Some(cri::PodSandboxNetworkStatus {
            ip: ips.next().cloned().unwrap_or_default(),
            additional_ips: ips.map(|ip| cri::PodIp { ip: ip.clone() }).collect(),
        }),
        linux: Some(cri::LinuxPodSandboxStatus {
            namespaces: Some(cri::Namespace {
                options: Some(cri::NamespaceOption {
                    network: mode(spec.host_network),
                    pid: match spec.pid {
                        PodPid::Pod => MODE_POD,
                        PodPid::Container => MODE_CONTAINER,
                        PodPid::Host => MODE_NODE,
                    },
                    ipc: mode(spec.host_ipc),
                    ..Default::default()
                }),
            }),
        }),
        labels: map(&spec.labels),
        annotations: map(&spec.annotations),
        runtime_handler: spec.runtime_handler.clone(),
    }
}

/// The `verbose` info of a pod: its record and where its namespaces are pinned.
pub fn info(pod: &PodView) -> HashMap<String, String> {
    let namespaces: serde_json::Map<String, serde_json::Value> = pod
        .namespaces
        .iter()
        .map(|(k, p)| (k.clone(), p.display().to_string().into()))
        .collect();
    let info = serde_json::json!({
        "record": pod.record,
        "namespaces": namespaces,
        "dir": pod.dir,
    });
    HashMap::from([("info".to_string(), info.to_string())])
}

/// Whether a pod passes `ListPodSandbox`'s filter.
pub fn matches(pod: &PodView, filter: &cri::PodSandboxFilter) -> bool {
    (filter.id.is_empty() || pod.record.id.starts_with(&filter.id))
        && filter
            .state
            .as_ref()
            .is_none_or(|s| s.state == state_of(pod))
        && filter
            .label_selector
            .iter()
            .all(|(k, v)| pod.record.spec.labels.get(k) == Some(v))
}

/// A missing pod is done for the idempotent calls (stop, remove), as kubelet expects.
pub fn missing_is_done(r: Result<(), EngineError>) -> Result<(), EngineError> {
    match r {
        Err(e) if e.class() == berth_engine::ErrorClass::NotFound => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> cri::PodSandboxConfig {
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: "web".into(),
                uid: "u1".into(),
                namespace: "default".into(),
                attempt: 2,
            }),
            hostname: "web-0".into(),
            port_mappings: vec![cri::PortMapping {
                protocol: cri::Protocol::Udp as i32,
                container_port: 53,
                host_port: 5353,
                host_ip: "127.0.0.1".into(),
            }],
            linux: Some(cri::LinuxPodSandboxConfig {
                sysctls: HashMap::from([("net.ipv4.ip_forward".into(), "1".into())]),
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network: MODE_NODE,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn kubelets_config_becomes_the_engines_request() {
        let spec = pod_spec(&config(), "").unwrap();
        assert_eq!(
            (spec.name.as_str(), spec.uid.as_str(), spec.attempt),
            ("web", "u1", 2)
        );
        assert!(spec.host_network && !spec.host_ipc);
        assert_eq!(spec.ports[0].protocol, "udp");
        assert_eq!(spec.ports[0].host_port, 5353);
        assert_eq!(spec.sysctls["net.ipv4.ip_forward"], "1");
        // The engine refuses a net sysctl on the host's network.
        assert!(spec.validate().is_err());
    }

    #[test]
    fn what_berth_cannot_do_is_refused_by_name() {
        let with = |change: &dyn Fn(&mut cri::NamespaceOption)| {
            let mut c = config();
            let linux = c.linux.as_mut().unwrap();
            let security = linux.security_context.as_mut().unwrap();
            change(security.namespace_options.as_mut().unwrap());
            pod_spec(&c, "").unwrap_err()
        };
        let e = with(&|ns| ns.pid = 3);
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("PID namespace"), "{}", e.message());
        let e = with(&|ns| {
            ns.userns_options = Some(cri::UserNamespace {
                mode: MODE_POD,
                ..Default::default()
            })
        });
        assert_eq!(e.code(), tonic::Code::Unimplemented);
        assert!(e.message().contains("user namespaces"), "{}", e.message());
        let mut c = config();
        c.port_mappings[0].host_port = 70000;
        assert_eq!(
            pod_spec(&c, "").unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }
}
