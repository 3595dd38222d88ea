//! A pod sandbox request: the namespaces a pod's containers share, and what the pod's
//! network and names are. The CRI service fills it from kubelet's `PodSandboxConfig`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

/// What `Engine::run_pod` makes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodSpec {
    /// Kubernetes' identity of the pod: name, namespace, uid, attempt. One sandbox per
    /// identity.
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub attempt: u32,
    pub hostname: String,
    /// Where kubelet wants the pod's container logs (each container gives a path in it).
    pub log_directory: String,
    /// The pod's resolv.conf; None: the host's.
    pub dns: Option<PodDns>,
    pub ports: Vec<PodPort>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// The host's namespaces instead of the pod's own.
    pub host_network: bool,
    pub host_ipc: bool,
    pub pid: PodPid,
    /// Namespaced kernel parameters (`net.*`, System V IPC and message queues).
    pub sysctls: BTreeMap<String, String>,
    pub cgroup_parent: String,
    /// Whether the pod's containers may be privileged.
    pub privileged: bool,
    pub runtime_handler: String,
}

/// Whose PID namespace the pod's containers are in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PodPid {
    /// Each container its own (Kubernetes' default).
    #[default]
    Container,
    /// One for the pod, held by berth's pod init (`shareProcessNamespace`).
    Pod,
    /// The host's.
    Host,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodDns {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// A port of the pod published on the host (through the CNI `portMappings` capability).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodPort {
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    pub container_port: u16,
    pub host_port: u16,
    pub host_ip: String,
}

impl PodSpec {
    /// Kubernetes' and the kernel's rules for a sandbox request.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(EngineError::Invalid(m));
        for (what, v) in [
            ("name", &self.name),
            ("namespace", &self.namespace),
            ("uid", &self.uid),
        ] {
            if v.is_empty() {
                return bad(format!("the pod sandbox needs a {what} in its metadata"));
            }
        }
        if !self.hostname.is_empty() && !valid_hostname(&self.hostname) {
            return bad(format!("invalid hostname: {}", self.hostname));
        }
        // The pod's init joins a cgroup under it: never a path out of the hierarchies.
        super::container::validate_cgroup_parent(&self.cgroup_parent)?;
        if !self.runtime_handler.is_empty() && self.runtime_handler != "berth" {
            return Err(EngineError::NotFound(format!(
                "no runtime for {:?} is configured",
                self.runtime_handler
            )));
        }
        for p in &self.ports {
            if !matches!(p.protocol.as_str(), "tcp" | "udp" | "sctp") {
                return bad(format!("invalid port protocol: {}", p.protocol));
            }
            if p.container_port == 0 {
                return bad("a pod port mapping needs a container port".into());
            }
        }
        for key in self.sysctls.keys() {
            match sysctl_namespace(key) {
                None => return bad(format!("sysctl {key:?} is not allowed: it is not namespaced, so it would change the host")),
                Some(SysctlNs::Net) if self.host_network => {
                    return bad(format!("sysctl {key:?} is not allowed in a pod on the host's network"))
                }
                Some(SysctlNs::Ipc) if self.host_ipc => {
                    return bad(format!("sysctl {key:?} is not allowed in a pod sharing the host's IPC namespace"))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// The sysctls set in one of the pod's namespaces: (path under /proc/sys, value).
    pub fn sysctls_in(&self, ns: SysctlNs) -> Vec<(String, String)> {
        self.sysctls
            .iter()
            .filter(|(k, _)| sysctl_namespace(k) == Some(ns))
            .map(|(k, v)| (k.replace('.', "/"), v.clone()))
            .collect()
    }
}

/// The namespace a kernel parameter belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SysctlNs {
    Net,
    Ipc,
}

/// The namespace of a namespaced sysctl (as runc and Docker allow them); None for one
/// that is the host's (or not a valid name).
pub fn sysctl_namespace(key: &str) -> Option<SysctlNs> {
    let valid = !key.is_empty()
        && key.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
    if !valid {
        return None;
    }
    const IPC: [&str; 8] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if key.starts_with("net.") {
        Some(SysctlNs::Net)
    } else if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        Some(SysctlNs::Ipc)
    } else {
        None
    }
}

/// RFC 1123: labels of letters, digits and hyphens, not starting or ending with a hyphen.
fn valid_hostname(h: &str) -> bool {
    h.len() <= 64
        && h.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> PodSpec {
        PodSpec {
            name: "web".into(),
            namespace: "default".into(),
            uid: "u1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_pod_needs_its_identity() {
        assert!(pod().validate().is_ok());
        let mut p = pod();
        p.uid.clear();
        assert_eq!(
            p.validate().unwrap_err().to_string(),
            "the pod sandbox needs a uid in its metadata"
        );
    }

    #[test]
    fn a_cgroup_parent_is_an_absolute_cgroupfs_path() {
        let with = |parent: &str| {
            let mut p = pod();
            p.cgroup_parent = parent.into();
            p.validate().map_err(|e| e.to_string())
        };
        assert!(with("/kubepods/besteffort/pod1").is_ok());
        for bad in ["/kubepods/../../../etc", "kubepods", "/a/./b"] {
            assert!(
                with(bad)
                    .unwrap_err()
                    .contains("it must be an absolute cgroup path"),
                "{bad}"
            );
        }
        assert!(with("kubepods.slice")
            .unwrap_err()
            .contains("systemd slices"));
    }

    #[test]
    fn only_namespaced_sysctls_are_allowed() {
        let mut p = pod();
        p.sysctls.insert("net.ipv4.ip_forward".into(), "1".into());
        p.sysctls
            .insert("kernel.shm_rmid_forced".into(), "1".into());
        p.sysctls.insert("fs.mqueue.msg_max".into(), "20".into());
        assert!(p.validate().is_ok());
        assert_eq!(
            p.sysctls_in(SysctlNs::Net),
            [("net/ipv4/ip_forward".to_string(), "1".to_string())]
        );
        for host in [
            "kernel.panic",
            "vm.swappiness",
            "net..x",
            "net/../../kernel/panic",
            "fs.file-max",
        ] {
            let mut p = pod();
            p.sysctls.insert(host.into(), "1".into());
            assert!(
                p.validate()
                    .unwrap_err()
                    .to_string()
                    .contains("not allowed"),
                "{host}"
            );
        }
        let mut p = pod();
        p.host_network = true;
        p.sysctls.insert("net.core.somaxconn".into(), "1024".into());
        assert!(p.validate().is_err());
        let mut p = pod();
        p.host_ipc = true;
        p.sysctls.insert("kernel.sem".into(), "1 2 3 4".into());
        assert!(p.validate().is_err());
    }

    #[test]
    fn hostnames_ports_and_handlers_are_checked() {
        let mut p = pod();
        p.hostname = "-bad".into();
        assert!(p.validate().is_err());
        p.hostname = "web-0.example".into();
        assert!(p.validate().is_ok());
        p.ports.push(PodPort {
            protocol: "icmp".into(),
            container_port: 80,
            host_port: 8080,
            host_ip: String::new(),
        });
        assert!(p.validate().is_err());
        let mut p = pod();
        p.runtime_handler = "kata".into();
        assert_eq!(
            p.validate().unwrap_err().class(),
            crate::ErrorClass::NotFound
        );
    }
}
