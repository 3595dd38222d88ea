//! `create` and `update`: what a front end asks of a container, and Docker's rules for it
//! (the daemon's `verifyContainerSettings` and the CLI's option checks, with their words).

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::error::{EngineError, Result};
use crate::model::{
    ContainerConfig, HealthConfig, HostConfig, LogConfig, PortBinding, RestartPolicy, Ulimit,
};
use crate::networks::EndpointRequest;
use crate::spec::parse_bytes;

/// The smallest memory limit Docker allows.
pub const MIN_MEMORY: i64 = 6 * 1024 * 1024;

/// What `create` (and `run`) asks for, parsed but not yet checked: Docker's `Config` and
/// `HostConfig` shapes, so the API service fills it from Docker's JSON as it is.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    pub name: Option<String>,
    pub image: String,
    /// Env, Cmd, WorkingDir, User, Hostname, Labels, Tty, OpenStdin, StopSignal,
    /// StopTimeout, Healthcheck, ExposedPorts
    pub config: ContainerConfig,
    /// `--entrypoint` given (an empty list resets the image's entrypoint)
    pub entrypoint: Option<Vec<String>>,
    pub host_config: HostConfig,
    /// `--ip`, `--mac-address`, `--network-alias`: the container's endpoint on its
    /// network.
    pub endpoint: EndpointRequest,
    /// The pod sandbox to create the container in: its network, IPC and UTS namespaces
    /// are the pod's (and its PID namespace too when `pid_mode` is `pod`).
    pub pod: Option<String>,
}

impl ContainerSpec {
    /// Docker's rules for a create request that need nothing but the request. What needs
    /// the state (the image, the network, a name in use) is checked by the create itself.
    pub fn validate(&self) -> Result<()> {
        let hc = &self.host_config;
        validate_restart(&hc.restart_policy)?;
        if hc.auto_remove && !is_no_restart(&hc.restart_policy) {
            return Err(invalid("Conflicting options: --restart and --rm"));
        }
        validate_memory(hc.memory, hc.memory_swap, hc.memory_reservation)?;
        validate_nano_cpus(hc.nano_cpus)?;
        if hc.shm_size < 0 {
            return Err(invalid("SHM size can not be less than 0"));
        }
        for u in &hc.ulimits {
            validate_ulimit(u)?;
        }
        validate_log_config(&hc.log_config)?;
        if let Some(s) = &self.config.stop_signal {
            if crate::sys::parse_signal(s).is_none() {
                return Err(invalid(format!("invalid signal: {s}")));
            }
        }
        if let Some(h) = &self.config.healthcheck {
            validate_healthcheck(h)?;
        }
        for (port, bindings) in &hc.port_bindings {
            validate_container_port(port)?;
            for b in bindings {
                validate_binding(port, b)?;
            }
        }
        for port in self.config.exposed_ports.iter().flat_map(|m| m.keys()) {
            validate_container_port(port)?;
        }
        for m in &hc.mounts {
            crate::mounts::validate(m).map_err(EngineError::Invalid)?;
        }
        validate_cgroup_parent(&hc.cgroup_parent)?;
        for d in &hc.devices {
            crate::devices::validate(d)?;
        }
        for rule in &hc.device_cgroup_rules {
            crate::devices::parse_rule(rule)?;
        }
        validate_namespace_mode("--ipc", &hc.ipc_mode, &["private", "shareable"])?;
        validate_namespace_mode("--uts", &hc.uts_mode, &[])?;
        let in_pod: &[&str] = if self.pod.is_some() { &["pod"] } else { &[] };
        validate_namespace_mode("--pid", &hc.pid_mode, in_pod)?;
        if !(-1000..=1000).contains(&hc.oom_score_adj) {
            return Err(invalid(format!(
                "Invalid value {}, range for oom score adj is [-1000, 1000]",
                hc.oom_score_adj
            )));
        }
        if hc.cpu_period != 0 && !(1000..=1_000_000).contains(&hc.cpu_period) {
            return Err(invalid("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"));
        }
        if hc.cpu_quota != 0 && hc.cpu_quota < 1000 {
            return Err(invalid(
                "CPU cfs quota can not be less than 1ms (i.e. 1000)",
            ));
        }
        if hc.nano_cpus > 0 && (hc.cpu_quota > 0 || hc.cpu_period > 0) {
            return Err(invalid(
                "Conflicting options: Nano CPUs and CPU Period cannot both be set",
            ));
        }
        if self.pod.is_some() {
            if !hc.network_mode.is_empty() || !hc.ipc_mode.is_empty() || !hc.uts_mode.is_empty() {
                return Err(invalid(
                    "a container in a pod has the pod's network, IPC and UTS namespaces",
                ));
            }
            if !hc.port_bindings.is_empty() || hc.publish_all_ports {
                return Err(invalid(
                    "a container in a pod publishes no ports: the pod does",
                ));
            }
        }
        Ok(())
    }
}

/// `--cgroup-parent`: a cgroupfs path (absolute, no `..`); a systemd slice is berth's
/// systemd driver, which it does not have.
pub(crate) fn validate_cgroup_parent(parent: &str) -> Result<()> {
    if parent.is_empty() {
        return Ok(());
    }
    if parent.ends_with(".slice") {
        return Err(EngineError::NotImplemented(format!(
            "cgroup parent {parent}: systemd slices are not implemented yet (berth drives cgroupfs)"
        )));
    }
    if !parent.starts_with('/') || parent.split('/').any(|c| c == ".." || c == ".") {
        return Err(invalid(format!(
            "invalid cgroup parent {parent:?}: it must be an absolute cgroup path"
        )));
    }
    Ok(())
}

/// `--ipc`, `--pid`, `--uts`: the container's own namespace (empty, or one of `own`),
/// the host's, or one pinned at an absolute path (`ns:PATH`).
fn validate_namespace_mode(flag: &str, mode: &str, own: &[&str]) -> Result<()> {
    match mode {
        "" | "host" => Ok(()),
        m if own.contains(&m) => Ok(()),
        m if m.starts_with("container:") => Err(EngineError::NotImplemented(format!(
            "{flag} {m}: joining another container's namespace is not implemented yet"
        ))),
        m => match m.strip_prefix("ns:") {
            Some(path) if path.starts_with('/') => Ok(()),
            _ => Err(invalid(format!("invalid {flag} mode: {m}"))),
        },
    }
}

/// What `update` asks for; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default)]
pub struct UpdateSpec {
    /// bytes; -1 = unlimited
    pub memory: Option<i64>,
    /// memory + swap in bytes; -1 = unlimited
    pub memory_swap: Option<i64>,
    /// CPUs in billionths
    pub nano_cpus: Option<i64>,
    /// CPU quota per 100 ms period, in microseconds (the API's `CpuQuota`; else from
    /// `nano_cpus`)
    pub cpu_quota: Option<i64>,
    pub cpu_shares: Option<i64>,
    /// -1 = unlimited
    pub pids_limit: Option<i64>,
    pub restart_policy: Option<RestartPolicy>,
}

impl UpdateSpec {
    pub fn validate(&self) -> Result<()> {
        if let Some(m) = self.memory.filter(|m| *m != -1) {
            validate_memory(m, self.memory_swap.unwrap_or(0), 0)?;
        }
        if let Some(n) = self.nano_cpus {
            validate_nano_cpus(n)?;
        }
        if let Some(s) = self.cpu_shares.filter(|s| *s < 0) {
            return Err(invalid(format!("invalid CPU shares: {s}")));
        }
        if let Some(r) = &self.restart_policy {
            validate_restart(r)?;
        }
        Ok(())
    }

    /// The cgroup limits this update writes.
    pub fn limits(&self) -> crate::stats::Limits {
        crate::stats::Limits {
            memory: self.memory,
            memory_swap: self.memory_swap,
            cpu_quota: self
                .cpu_quota
                .or_else(|| self.nano_cpus.map(|n| n * 100_000 / 1_000_000_000)),
            cpu_shares: self.cpu_shares.map(|s| s as u64),
            pids: self.pids_limit,
        }
    }
}

fn invalid(msg: impl Into<String>) -> EngineError {
    EngineError::Invalid(msg.into())
}

fn is_no_restart(p: &RestartPolicy) -> bool {
    matches!(p.name.as_str(), "" | "no")
}

/// `--restart`: `no`, `always`, `unless-stopped`, `on-failure[:N]`.
pub fn parse_restart(p: &str) -> Result<RestartPolicy> {
    let (name, max) = match p.split_once(':') {
        Some(("on-failure", n)) => {
            let max = n.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                invalid(format!(
                    "invalid restart policy: maximum retry count must be a number: {p}"
                ))
            })?;
            ("on-failure", max)
        }
        Some(_) => return Err(invalid(format!("invalid restart policy '{p}'"))),
        None => (p, 0),
    };
    let policy = RestartPolicy {
        name: name.into(),
        maximum_retry_count: max,
    };
    validate_restart(&policy)?;
    Ok(policy)
}

fn validate_restart(p: &RestartPolicy) -> Result<()> {
    match p.name.as_str() {
        "" | "no" | "always" | "unless-stopped" | "on-failure" => {}
        other => return Err(invalid(format!("invalid restart policy '{other}'"))),
    }
    if p.maximum_retry_count < 0 {
        return Err(invalid(
            "invalid restart policy: maximum retry count cannot be negative",
        ));
    }
    if p.maximum_retry_count > 0 && p.name != "on-failure" {
        return Err(invalid(
            "invalid restart policy: maximum retry count can only be used with 'on-failure'",
        ));
    }
    Ok(())
}

/// The daemon's memory rules; 0 is unset, -1 unlimited swap.
fn validate_memory(memory: i64, swap: i64, reservation: i64) -> Result<()> {
    if memory != 0 && memory < MIN_MEMORY {
        return Err(invalid("Minimum memory limit allowed is 6MB"));
    }
    if memory > 0 && reservation > memory {
        return Err(invalid(
            "Minimum memory limit can not be less than memory reservation limit, see usage",
        ));
    }
    if memory > 0 && swap > 0 && swap < memory {
        return Err(invalid(
            "Minimum memoryswap limit should be larger than memory limit, see usage",
        ));
    }
    if reservation < 0 {
        return Err(invalid(
            "invalid memory reservation: it can not be negative",
        ));
    }
    Ok(())
}

fn validate_nano_cpus(n: i64) -> Result<()> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
    if n < 0 || n > cpus * 1_000_000_000 || (n > 0 && n < 10_000_000) {
        return Err(invalid(format!(
            "Range of CPUs is from 0.01 to {cpus}.00, as there are only {cpus} CPUs available"
        )));
    }
    Ok(())
}

/// `--ulimit NAME=SOFT[:HARD]`.
pub fn parse_ulimit(u: &str) -> Result<Ulimit> {
    let bad = || invalid(format!("invalid ulimit argument: {u}"));
    let (name, vals) = u.split_once('=').ok_or_else(bad)?;
    let (s, h) = vals.split_once(':').unwrap_or((vals, vals));
    let ulimit = Ulimit {
        name: name.to_string(),
        soft: s.parse().map_err(|_| bad())?,
        hard: h.parse().map_err(|_| bad())?,
    };
    validate_ulimit(&ulimit)?;
    Ok(ulimit)
}

fn validate_ulimit(u: &Ulimit) -> Result<()> {
    if !crate::spec::valid_ulimit(&u.name) {
        return Err(invalid(format!("invalid ulimit type: {}", u.name)));
    }
    if u.soft > u.hard && u.hard >= 0 {
        return Err(invalid(format!(
            "ulimit soft limit must be less than or equal to hard limit: {} > {}",
            u.soft, u.hard
        )));
    }
    Ok(())
}

/// The log drivers berth has, and the options each takes.
fn validate_log_config(lc: &LogConfig) -> Result<()> {
    let driver = if lc.kind.is_empty() {
        "json-file"
    } else {
        lc.kind.as_str()
    };
    if !matches!(driver, "json-file" | "local" | "none" | "k8s-file") {
        return Err(invalid(format!(
            "log driver {driver} is not supported: use json-file, local, k8s-file or none"
        )));
    }
    if driver == "k8s-file" {
        // The CRI log format, at a path of the caller's (kubelet rotates it), as podman's
        // driver of this name.
        match lc.config.get("path") {
            Some(p) if p.starts_with('/') => {}
            _ => {
                return Err(invalid(
                    "log driver k8s-file needs an absolute path: --log-opt path=/…",
                ))
            }
        }
    }
    for (k, v) in &lc.config {
        match k.as_str() {
            "max-size" if driver != "none" => {
                parse_bytes(v).ok_or_else(|| invalid(format!("invalid max-size: {v}")))?;
            }
            "max-file" if driver != "none" => {
                v.parse::<u32>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| invalid(format!("invalid max-file: {v}")))?;
            }
            "compress" | "labels" | "env" | "tag" | "labels-regex" | "env-regex"
                if driver != "none" => {}
            "path" if driver == "k8s-file" => {}
            _ => {
                return Err(invalid(format!(
                    "unknown log opt '{k}' for {driver} log driver"
                )))
            }
        }
    }
    Ok(())
}

/// The daemon's health check rules (durations in nanoseconds; 0 is the default).
fn validate_healthcheck(h: &HealthConfig) -> Result<()> {
    const MS: i64 = 1_000_000;
    for (what, d) in [
        ("Interval", h.interval),
        ("Timeout", h.timeout),
        ("StartPeriod", h.start_period),
        ("StartInterval", h.start_interval),
    ] {
        if d != 0 && d < MS {
            return Err(invalid(format!(
                "{what} in Healthcheck cannot be less than 1ms"
            )));
        }
    }
    if h.retries < 0 {
        return Err(invalid("Retries in Healthcheck cannot be negative"));
    }
    Ok(())
}

/// `80/tcp`, `53/udp`, `80` (tcp).
fn validate_container_port(p: &str) -> Result<()> {
    let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
    let ok = matches!(proto, "tcp" | "udp" | "sctp") && port.parse::<u16>().is_ok_and(|n| n > 0);
    if !ok {
        return Err(invalid(format!("invalid port specification: {p:?}")));
    }
    Ok(())
}

/// Docker's rules for where a container port is published, and what berth's publisher
/// cannot do yet (refused here, before anything is made, not at start).
fn validate_binding(port: &str, b: &PortBinding) -> Result<()> {
    let not_yet = |what: String| Err(EngineError::NotImplemented(what));
    match b.host_ip.parse::<IpAddr>() {
        _ if b.host_ip.is_empty() => {}
        Err(_) => return Err(invalid(format!("invalid IP address: {}", b.host_ip))),
        Ok(IpAddr::V6(_)) => {
            return not_yet(format!(
                "publishing on an IPv6 address ({}) is not implemented yet",
                b.host_ip
            ))
        }
        Ok(IpAddr::V4(_)) => {}
    }
    if port.ends_with("/sctp") {
        return not_yet(format!(
            "publishing sctp port {port} is not implemented yet"
        ));
    }
    if !b.host_port.is_empty() {
        let (a, z) = b
            .host_port
            .split_once('-')
            .unwrap_or((&b.host_port, &b.host_port));
        match (a.parse::<u16>(), z.parse::<u16>()) {
            (Ok(a), Ok(z)) if a == z => {}
            (Ok(a), Ok(z)) if a < z => {
                return not_yet(format!(
                    "publishing on any port of a host range ({}) is not implemented yet",
                    b.host_port
                ))
            }
            _ => {
                return Err(invalid(format!(
                    "invalid port specification: {:?}",
                    b.host_port
                )))
            }
        }
    }
    Ok(())
}

/// `-p` values as Docker's port bindings: `[IP:][HOSTPORT:]PORT[/PROTO]`, where HOSTPORT
/// and PORT may be ranges of the same length (`8000-8001:80-81`), and an empty HOSTPORT
/// (or none) means any free port.
pub fn parse_publish(specs: &[String]) -> Result<BTreeMap<String, Vec<PortBinding>>> {
    fn range(s: &str, spec: &str) -> Result<(u16, u16)> {
        let bad = || invalid(format!("invalid port {s:?} in {spec:?}"));
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        let (a, b): (u16, u16) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
        if a == 0 || b < a {
            return Err(bad());
        }
        Ok((a, b))
    }
    let mut out: BTreeMap<String, Vec<PortBinding>> = BTreeMap::new();
    for spec in specs {
        let (rest, proto) = match spec.rsplit_once('/') {
            Some((r, p)) => (r, p.to_lowercase()),
            None => (spec.as_str(), "tcp".to_string()),
        };
        if !matches!(proto.as_str(), "tcp" | "udp") {
            return Err(invalid(format!("invalid proto {proto:?} in {spec:?}")));
        }
        let parts: Vec<&str> = rest.split(':').collect();
        let (ip, host, container) = match parts.as_slice() {
            [c] => ("", "", *c),
            [h, c] => ("", *h, *c),
            [i, h, c] => (*i, *h, *c),
            _ => return Err(invalid(format!("invalid port specification {spec:?}"))),
        };
        if !ip.is_empty() && ip.parse::<std::net::Ipv4Addr>().is_err() {
            return Err(invalid(format!("invalid IP address {ip:?} in {spec:?}")));
        }
        let (c0, c1) = range(container, spec)?;
        let host_range = if host.is_empty() {
            None
        } else {
            Some(range(host, spec)?)
        };
        if let Some((h0, h1)) = host_range {
            if h1 - h0 != c1 - c0 && h0 != h1 {
                return Err(invalid(format!(
                    "invalid ranges in {spec:?}: the host range and the container range differ in size"
                )));
            }
        }
        for (i, port) in (c0..=c1).enumerate() {
            let host_port = match host_range {
                None => String::new(),
                Some((h0, h1)) if h0 == h1 => h0.to_string(),
                Some((h0, _)) => (h0 + i as u16).to_string(),
            };
            out.entry(format!("{port}/{proto}"))
                .or_default()
                .push(PortBinding {
                    host_ip: ip.to_string(),
                    host_port,
                });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MountSpec;

    fn spec(f: impl FnOnce(&mut ContainerSpec)) -> ContainerSpec {
        let mut s = ContainerSpec {
            image: "busybox".into(),
            ..Default::default()
        };
        f(&mut s);
        s
    }

    fn refused(s: ContainerSpec) -> String {
        match s.validate() {
            Err(EngineError::Invalid(m)) => m,
            other => panic!("expected an invalid-argument error, got {other:?}"),
        }
    }

    #[test]
    fn what_the_publisher_cannot_do_yet_is_refused_as_not_implemented() {
        let bind = |port: &str, ip: &str, host: &str| {
            spec(|s| {
                s.host_config.port_bindings.insert(
                    port.into(),
                    vec![PortBinding {
                        host_ip: ip.into(),
                        host_port: host.into(),
                    }],
                );
            })
            .validate()
        };
        bind("80/tcp", "127.0.0.1", "8080").unwrap();
        for (port, ip, host) in [
            ("80/tcp", "::1", "8080"),
            ("80/sctp", "", "8080"),
            ("80/tcp", "", "8000-8010"),
        ] {
            assert!(
                matches!(bind(port, ip, host), Err(EngineError::NotImplemented(_))),
                "{port} {ip} {host}"
            );
        }
        assert!(matches!(
            bind("80/tcp", "", "9-8"),
            Err(EngineError::Invalid(_))
        ));
    }

    #[test]
    fn an_empty_request_is_valid() {
        spec(|_| {}).validate().unwrap();
    }

    #[test]
    fn docker_rules_refuse_each_bad_setting_with_dockers_words() {
        let cases: Vec<(ContainerSpec, &str)> = vec![
            (
                spec(|s| s.host_config.memory = 1000),
                "Minimum memory limit allowed is 6MB",
            ),
            (
                spec(|s| {
                    s.host_config.memory = 64 << 20;
                    s.host_config.memory_swap = 32 << 20;
                }),
                "Minimum memoryswap limit should be larger than memory limit, see usage",
            ),
            (
                spec(|s| {
                    s.host_config.memory = 64 << 20;
                    s.host_config.memory_reservation = 128 << 20;
                }),
                "Minimum memory limit can not be less than memory reservation limit, see usage",
            ),
            (
                spec(|s| {
                    s.host_config.auto_remove = true;
                    s.host_config.restart_policy.name = "always".into();
                }),
                "Conflicting options: --restart and --rm",
            ),
            (
                spec(|s| s.host_config.restart_policy.name = "sometimes".into()),
                "invalid restart policy 'sometimes'",
            ),
            (
                spec(|s| {
                    s.host_config.restart_policy = RestartPolicy {
                        name: "always".into(),
                        maximum_retry_count: 3,
                    }
                }),
                "invalid restart policy: maximum retry count can only be used with 'on-failure'",
            ),
            (
                spec(|s| {
                    s.host_config.ulimits = vec![Ulimit {
                        name: "bogus".into(),
                        soft: 1,
                        hard: 1,
                    }]
                }),
                "invalid ulimit type: bogus",
            ),
            (
                spec(|s| {
                    s.host_config.ulimits = vec![Ulimit {
                        name: "nofile".into(),
                        soft: 10,
                        hard: 5,
                    }]
                }),
                "ulimit soft limit must be less than or equal to hard limit: 10 > 5",
            ),
            (
                spec(|s| {
                    s.host_config
                        .log_config
                        .config
                        .insert("max-buffer".into(), "1".into());
                }),
                "unknown log opt 'max-buffer' for json-file log driver",
            ),
            (
                spec(|s| {
                    s.host_config
                        .log_config
                        .config
                        .insert("max-file".into(), "0".into());
                }),
                "invalid max-file: 0",
            ),
            (
                spec(|s| s.host_config.log_config.kind = "syslog".into()),
                "log driver syslog is not supported: use json-file, local, k8s-file or none",
            ),
            (
                spec(|s| s.config.stop_signal = Some("SIGNOPE".into())),
                "invalid signal: SIGNOPE",
            ),
            (
                spec(|s| {
                    s.config.healthcheck = Some(HealthConfig {
                        interval: 10,
                        ..Default::default()
                    })
                }),
                "Interval in Healthcheck cannot be less than 1ms",
            ),
            (
                spec(|s| {
                    s.config.healthcheck = Some(HealthConfig {
                        retries: -1,
                        ..Default::default()
                    })
                }),
                "Retries in Healthcheck cannot be negative",
            ),
            (
                spec(|s| {
                    s.host_config
                        .port_bindings
                        .insert("80/tcp".into(), vec![PortBinding {
                            host_ip: "".into(),
                            host_port: "http".into(),
                        }]);
                }),
                "invalid port specification: \"http\"",
            ),
            (
                spec(|s| {
                    s.host_config.port_bindings.insert("0/tcp".into(), vec![]);
                }),
                "invalid port specification: \"0/tcp\"",
            ),
            (
                spec(|s| s.host_config.shm_size = -1),
                "SHM size can not be less than 0",
            ),
            (
                spec(|s| s.host_config.nano_cpus = -1),
                "Range of CPUs is from 0.01 to",
            ),
            (
                spec(|s| {
                    s.host_config.mounts = vec![MountSpec {
                        kind: "bind".into(),
                        source: "relative".into(),
                        target: "/data".into(),
                        ..Default::default()
                    }]
                }),
                "invalid mount config for type \"bind\": invalid mount path: 'relative' mount path must be absolute",
            ),
            (
                spec(|s| s.host_config.ipc_mode = "ns:relative".into()),
                "invalid --ipc mode: ns:relative",
            ),
            (
                spec(|s| s.host_config.pid_mode = "pod".into()),
                "invalid --pid mode: pod",
            ),
            (
                spec(|s| s.host_config.oom_score_adj = 1001),
                "Invalid value 1001, range for oom score adj is [-1000, 1000]",
            ),
            (
                spec(|s| s.host_config.cpu_period = 10),
                "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)",
            ),
            (
                spec(|s| {
                    s.host_config.nano_cpus = 1_000_000_000;
                    s.host_config.cpu_quota = 50_000;
                }),
                "Conflicting options: Nano CPUs and CPU Period cannot both be set",
            ),
            (
                spec(|s| {
                    s.host_config.log_config.kind = "k8s-file".into();
                }),
                "log driver k8s-file needs an absolute path",
            ),
            (
                spec(|s| {
                    s.pod = Some("p0d".into());
                    s.host_config.network_mode = "host".into();
                }),
                "a container in a pod has the pod's network, IPC and UTS namespaces",
            ),
        ];
        for (s, want) in cases {
            let got = refused(s);
            assert!(got.starts_with(want), "{got:?} is not {want:?}");
        }
    }

    #[test]
    fn joining_another_containers_ipc_or_pid_is_not_implemented_yet() {
        for set in [
            |s: &mut ContainerSpec| s.host_config.ipc_mode = "container:web".into(),
            |s: &mut ContainerSpec| s.host_config.pid_mode = "container:web".into(),
        ] {
            let e = spec(set).validate().unwrap_err();
            assert_eq!(e.class(), crate::ErrorClass::NotImplemented, "{e}");
        }
        spec(|s| {
            s.pod = Some("p0d".into());
            s.host_config.pid_mode = "pod".into();
            s.host_config.ipc_mode = String::new();
        })
        .validate()
        .unwrap();
    }

    #[test]
    fn valid_settings_pass() {
        spec(|s| {
            s.host_config.memory = MIN_MEMORY;
            s.host_config.memory_swap = -1;
            s.host_config.restart_policy = parse_restart("on-failure:3").unwrap();
            s.host_config.ulimits = vec![parse_ulimit("nofile=512:1024").unwrap()];
            s.host_config.port_bindings =
                parse_publish(&["127.0.0.1:8000-8001:80-81".into()]).unwrap();
            s.config.stop_signal = Some("SIGUSR1".into());
        })
        .validate()
        .unwrap();
    }

    fn one(spec: &str) -> Vec<(String, String, String)> {
        parse_publish(&[spec.to_string()])
            .unwrap()
            .into_iter()
            .flat_map(|(p, bs)| {
                bs.into_iter()
                    .map(move |b| (p.clone(), b.host_ip, b.host_port))
            })
            .collect()
    }

    #[test]
    fn publish_specs_parse_as_docker_reads_them() {
        let t = |p: &str, i: &str, h: &str| (p.to_string(), i.to_string(), h.to_string());
        assert_eq!(one("80"), [t("80/tcp", "", "")]);
        assert_eq!(one("8080:80"), [t("80/tcp", "", "8080")]);
        assert_eq!(
            one("127.0.0.1:8080:80/udp"),
            [t("80/udp", "127.0.0.1", "8080")]
        );
        assert_eq!(one("127.0.0.1::80"), [t("80/tcp", "127.0.0.1", "")]);
        assert_eq!(
            one("9000-9001:80-81"),
            [t("80/tcp", "", "9000"), t("81/tcp", "", "9001")]
        );
        for bad in ["x", "80/sctp", "1:2:3:4", "9000-9002:80-81", "0", "a.b:1:2"] {
            assert!(parse_publish(&[bad.to_string()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn restart_policies_parse_as_docker_reads_them() {
        assert_eq!(parse_restart("always").unwrap().name, "always");
        let p = parse_restart("on-failure:2").unwrap();
        assert_eq!((p.name.as_str(), p.maximum_retry_count), ("on-failure", 2));
        assert!(parse_restart("on-failure:x").is_err());
        assert!(parse_restart("always:2").is_err());
        assert!(parse_restart("sometimes").is_err());
    }

    #[test]
    fn a_restart_policy_without_a_retry_count_is_read_as_docker_sends_it() {
        let p: RestartPolicy = serde_json::from_str(r#"{"Name":"always"}"#).unwrap();
        assert_eq!((p.name.as_str(), p.maximum_retry_count), ("always", 0));
    }

    #[test]
    fn update_refuses_what_create_refuses() {
        let u = UpdateSpec {
            memory: Some(1000),
            ..Default::default()
        };
        assert_eq!(
            u.validate().unwrap_err().to_string(),
            "Minimum memory limit allowed is 6MB"
        );
        let u = UpdateSpec {
            memory: Some(-1),
            ..Default::default()
        };
        u.validate().unwrap();
        let u = UpdateSpec {
            nano_cpus: Some(500_000_000),
            ..Default::default()
        };
        assert_eq!(u.limits().cpu_quota, Some(50_000));
    }
}
