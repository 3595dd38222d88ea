//! A service's container as the engine's create request ([`ContainerSpec`]), filled from
//! the normalised model: the same request the CLI fills from flags and the API service
//! from Docker's JSON, checked by the same `validate`. Keys berth cannot honour yet are
//! refused by name, never dropped.

use std::collections::BTreeMap;

use berth_engine::model::{HealthConfig, MountSpec, PortBinding, RestartPolicy, Ulimit};
use berth_engine::networks::EndpointRequest;
use berth_engine::spec::parse_bytes;
use berth_engine::specs::{container as rules, parse, ContainerSpec};
use serde_norway::Value;

use crate::load::Project;
use crate::refuse_unknown;
use crate::scalar_text as text;
use crate::service::{
    config_hash, container_name, image_of, resource_name, service_networks, HASH_LABEL,
    NUMBER_LABEL, ONEOFF_LABEL, PROJECT_LABEL, SERVICE_LABEL,
};

/// The service keys honoured here, or used by `up` itself.
const KEYS: [&str; 47] = [
    "image",
    "build",
    "expose",
    "deploy",
    "secrets",
    "configs",
    "container_name",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "labels",
    "ports",
    "volumes",
    "tmpfs",
    "networks",
    "network_mode",
    "working_dir",
    "user",
    "hostname",
    "restart",
    "read_only",
    "init",
    "privileged",
    "cap_add",
    "cap_drop",
    "security_opt",
    "stop_signal",
    "stop_grace_period",
    "extra_hosts",
    "dns",
    "dns_search",
    "dns_opt",
    "tty",
    "stdin_open",
    "healthcheck",
    "mem_limit",
    "mem_reservation",
    "cpus",
    "pids_limit",
    "shm_size",
    "ulimits",
    "depends_on",
    "profiles",
    "scale",
    "devices",
    "device_cgroup_rules",
];

/// What makes a one-off container (`compose run`) unlike a service's replicas; the
/// front end changes the rest of the request itself.
#[derive(Debug, Default)]
pub struct OneOff {
    pub name: String,
    /// Instead of the service's command.
    pub command: Option<Vec<String>>,
    /// Publish the service's ports (`--service-ports`); by default they are not.
    pub service_ports: bool,
}

/// A string or a list of strings.
fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Sequence(items) => items.iter().filter_map(text).collect(),
        other => text(other).into_iter().collect(),
    }
}

fn flag(v: Option<&Value>) -> bool {
    v.and_then(Value::as_bool) == Some(true)
}

/// The create request for replica `number` of `service` (or, given `oneoff`, for a
/// one-off container: its own name, the `oneoff` label, no restart policy, no network
/// alias, ports only if asked). Errors name the service and the key; the engine's rules
/// are checked by [`ContainerSpec::validate`], as for every front end.
pub fn container_spec(
    project: &Project,
    service: &str,
    number: u32,
    oneoff: Option<&OneOff>,
) -> Result<ContainerSpec, String> {
    let svc = &project.model["services"][service];
    if svc.as_mapping().is_none() {
        return Err(format!("services.{service} must be a mapping"));
    }
    let at = |k: &str| format!("services.{service}.{k}");
    refuse_unknown(svc, &KEYS, &format!("services.{service}"))?;
    let engine = |k: &str| {
        let at = at(k);
        move |e: berth_engine::EngineError| format!("{at}: {e}")
    };
    let mut s = ContainerSpec {
        name: Some(match oneoff {
            Some(o) => o.name.clone(),
            None => container_name(project, service, number),
        }),
        image: image_of(project, service)?,
        ..Default::default()
    };
    s.config.image = s.image.clone();
    s.config.attach_stdout = true;
    s.config.attach_stderr = true;
    s.config.labels = labels(project, service, number, oneoff.is_some())?;
    s.config.env = environment(svc).map_err(engine("env_file"))?;
    let c = &mut s.config;
    let h = &mut s.host_config;
    let get = |k: &str| svc.get(k).and_then(text);
    c.working_dir = get("working_dir").unwrap_or_default();
    c.user = get("user").unwrap_or_default();
    c.hostname = get("hostname").unwrap_or_default();
    c.stop_signal = get("stop_signal");
    c.tty = flag(svc.get("tty"));
    c.open_stdin = flag(svc.get("stdin_open"));
    h.readonly_rootfs = flag(svc.get("read_only"));
    h.init = flag(svc.get("init")).then_some(true);
    h.privileged = flag(svc.get("privileged"));
    let list = |k: &str| svc.get(k).map(strings).unwrap_or_default();
    h.cap_add = list("cap_add");
    h.cap_drop = list("cap_drop");
    h.security_opt = list("security_opt");
    h.dns = list("dns");
    h.dns_search = list("dns_search");
    h.dns_options = list("dns_opt");
    h.extra_hosts = extra_hosts(svc.get("extra_hosts"));
    let bytes = |k: &str, v: Option<String>| -> Result<i64, String> {
        match v {
            None => Ok(0),
            Some(v) => parse_bytes(&v).ok_or_else(|| format!("{}: invalid size {v:?}", at(k))),
        }
    };
    h.memory = bytes("mem_limit", get("mem_limit"))?;
    h.memory_reservation = bytes("mem_reservation", get("mem_reservation"))?;
    h.shm_size = bytes("shm_size", get("shm_size"))?;
    if let Some(cpus) = get("cpus") {
        h.nano_cpus = parse::cpus(&cpus).map_err(engine("cpus"))?;
    }
    if let Some(p) = get("pids_limit") {
        h.pids_limit = Some(
            p.parse()
                .map_err(|_| format!("{}: {p:?}", at("pids_limit")))?,
        );
    }
    h.restart_policy = match get("restart").filter(|_| oneoff.is_none()) {
        Some(r) => rules::parse_restart(&r).map_err(engine("restart"))?,
        None => RestartPolicy {
            name: "no".into(),
            maximum_retry_count: 0,
        },
    };
    if let Some(g) = get("stop_grace_period") {
        c.stop_timeout = Some(
            seconds(&g)
                .ok_or_else(|| format!("{}: invalid duration {g:?}", at("stop_grace_period")))?,
        );
    }
    h.ulimits = ulimits(svc.get("ulimits")).map_err(engine("ulimits"))?;
    for d in svc
        .get("devices")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
    {
        let Some(d) = text(d) else {
            return Err(format!(
                "{}: the long syntax is not implemented yet in berth compose",
                at("devices")
            ));
        };
        h.devices
            .push(berth_engine::devices::parse(&d).map_err(engine("devices"))?);
    }
    h.device_cgroup_rules = list("device_cgroup_rules");
    c.exposed_ports = parse::exposed_ports(&list("expose")).map_err(engine("expose"))?;
    if let Some(d) = svc.get("deploy") {
        deploy(service, d, h)?;
    }
    if oneoff.is_none_or(|o| o.service_ports) {
        h.port_bindings = ports(svc.get("ports"));
    }
    for v in svc
        .get("volumes")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
    {
        let (m, bind) = mount(project, service, v)?;
        h.binds.extend(bind);
        h.mounts.push(m);
    }
    for t in list("tmpfs") {
        let m =
            berth_engine::mounts::parse_tmpfs(&t).map_err(|e| format!("{}: {e}", at("tmpfs")))?;
        h.tmpfs.insert(m.target.clone(), m.options.join(","));
        h.mounts.push(m);
    }
    for (file, target) in files(project, service)? {
        h.binds.push(format!("{file}:{target}:ro"));
        h.mounts.push(bind_mount(&file, &target, true));
    }
    c.healthcheck = healthcheck(service, svc.get("healthcheck"))?;
    match svc.get("network_mode").and_then(Value::as_str) {
        Some(mode) => {
            h.network_mode = match mode.strip_prefix("service:") {
                Some(other) => format!("container:{}", container_name(project, other, 1)),
                None => mode.to_string(),
            };
        }
        None => {
            // The first network at create; `up` connects the others.
            if let Some((net, aliases, ip)) = service_networks(project, service).into_iter().next()
            {
                h.network_mode = net;
                s.endpoint = EndpointRequest {
                    ip,
                    mac: None,
                    aliases: if oneoff.is_none() { aliases } else { vec![] },
                };
            }
        }
    }
    s.entrypoint = svc.get("entrypoint").map(strings);
    s.config.cmd = match oneoff.and_then(|o| o.command.clone()) {
        Some(cmd) => Some(cmd),
        None => svc.get("command").map(strings),
    }
    .filter(|c| !c.is_empty());
    Ok(s)
}

/// Docker Compose's labels, then the service's own (which may not use its prefix).
fn labels(
    project: &Project,
    service: &str,
    number: u32,
    one_off: bool,
) -> Result<BTreeMap<String, String>, String> {
    let svc = &project.model["services"][service];
    let mut out: BTreeMap<String, String> = [
        (PROJECT_LABEL, project.name.clone()),
        (SERVICE_LABEL, service.to_string()),
        (NUMBER_LABEL, number.to_string()),
        (HASH_LABEL, config_hash(svc)),
        (ONEOFF_LABEL, if one_off { "True" } else { "False" }.into()),
        (
            "com.docker.compose.project.working_dir",
            project.dir.display().to_string(),
        ),
        (
            "com.docker.compose.project.config_files",
            project
                .files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(","),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Some(Value::Mapping(labels)) = svc.get("labels") {
        for (k, v) in labels {
            let k = text(k).unwrap_or_default();
            if k.starts_with("com.docker.compose") {
                return Err(format!(
                    "services.{service}.labels: the com.docker.compose label prefix is reserved"
                ));
            }
            out.insert(k, text(v).unwrap_or_default());
        }
    }
    Ok(out)
}

/// `env_file`s (a missing optional one skipped), then `environment`, where a variable
/// without a value (unset where compose runs) is left out.
fn environment(svc: &Value) -> berth_engine::Result<Vec<String>> {
    let mut env = Vec::new();
    for e in svc
        .get("env_file")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
    {
        let path = e.get("path").and_then(text).unwrap_or_default();
        let required = e.get("required").and_then(Value::as_bool) != Some(false);
        if required || std::path::Path::new(&path).exists() {
            env.extend(parse::env_file(std::path::Path::new(&path))?);
        }
    }
    if let Some(Value::Mapping(vars)) = svc.get("environment") {
        for (k, v) in vars {
            if let Some(v) = text(v) {
                env.push(format!("{}={v}", text(k).unwrap_or_default()));
            }
        }
    }
    Ok(env)
}

/// `extra_hosts` as a mapping or a list; `host=ip` is the newer spelling of `host:ip`.
fn extra_hosts(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Mapping(m)) => m
            .iter()
            .map(|(h, ip)| {
                format!(
                    "{}:{}",
                    text(h).unwrap_or_default(),
                    text(ip).unwrap_or_default()
                )
            })
            .collect(),
        Some(v) => strings(v)
            .into_iter()
            .map(|h| h.replacen('=', ":", 1))
            .collect(),
        None => Vec::new(),
    }
}

/// A compose duration (`1m30s`, `500ms`, `10s`, or bare seconds) in whole seconds,
/// rounded up.
fn seconds(d: &str) -> Option<i64> {
    let ns = parse::duration(d).or_else(|| {
        let n: f64 = d.trim().parse().ok().filter(|n: &f64| *n >= 0.0)?;
        Some((n * 1e9) as i64)
    })?;
    Some(ns / 1_000_000_000 + i64::from(ns % 1_000_000_000 != 0))
}

/// `ulimits`: `NAME: N` or `NAME: {soft, hard}`, by the engine's `--ulimit` rules.
fn ulimits(v: Option<&Value>) -> berth_engine::Result<Vec<Ulimit>> {
    let Some(Value::Mapping(limits)) = v else {
        return Ok(Vec::new());
    };
    limits
        .iter()
        .map(|(name, l)| {
            let name = text(name).unwrap_or_default();
            let value = match l {
                Value::Mapping(_) => format!(
                    "{}:{}",
                    l.get("soft").and_then(text).unwrap_or_default(),
                    l.get("hard").and_then(text).unwrap_or_default()
                ),
                single => text(single).unwrap_or_default(),
            };
            rules::parse_ulimit(&format!("{name}={value}"))
        })
        .collect()
}

/// The long-syntax `ports` (the short ones were made long when the file was read) as
/// Docker's port bindings.
fn ports(v: Option<&Value>) -> BTreeMap<String, Vec<PortBinding>> {
    let mut out: BTreeMap<String, Vec<PortBinding>> = BTreeMap::new();
    for p in v.and_then(Value::as_sequence).into_iter().flatten() {
        let target = p.get("target").and_then(text).unwrap_or_default();
        let proto = p
            .get("protocol")
            .and_then(text)
            .unwrap_or_else(|| "tcp".into());
        out.entry(format!("{target}/{proto}"))
            .or_default()
            .push(PortBinding {
                host_ip: p.get("host_ip").and_then(text).unwrap_or_default(),
                host_port: p.get("published").and_then(text).unwrap_or_default(),
            });
    }
    out
}

/// `deploy`: what a single engine honours, as Docker Compose applies it without swarm:
/// `replicas` (as `scale`, read by `up`) and `resources` (memory, cpus, pids limits;
/// a memory reservation); the rest is refused by name.
fn deploy(service: &str, d: &Value, h: &mut berth_engine::model::HostConfig) -> Result<(), String> {
    let at = format!("services.{service}.deploy");
    refuse_unknown(d, &["replicas", "resources"], &at)?;
    let Some(r) = d.get("resources") else {
        return Ok(());
    };
    let at = format!("{at}.resources");
    refuse_unknown(r, &["limits", "reservations"], &at)?;
    let size = |k: &str, v: &Value| {
        let v = text(v).unwrap_or_default();
        parse_bytes(&v).ok_or_else(|| format!("{at}.{k}: invalid size {v:?}"))
    };
    if let Some(l) = r.get("reservations") {
        refuse_unknown(l, &["memory"], &format!("{at}.reservations"))?;
        if let Some(m) = l.get("memory") {
            h.memory_reservation = size("reservations.memory", m)?;
        }
    }
    if let Some(l) = r.get("limits") {
        refuse_unknown(l, &["memory", "cpus", "pids"], &format!("{at}.limits"))?;
        if let Some(m) = l.get("memory") {
            h.memory = size("limits.memory", m)?;
        }
        if let Some(c) = l.get("cpus").and_then(text) {
            h.nano_cpus = parse::cpus(&c).map_err(|e| format!("{at}.limits.cpus: {e}"))?;
        }
        if let Some(p) = l.get("pids").and_then(text) {
            h.pids_limit = Some(p.parse().map_err(|_| format!("{at}.limits.pids: {p:?}"))?);
        }
    }
    Ok(())
}

/// A bind mount of a host path; `create` makes a missing source, as `-v` does.
fn bind_mount(source: &str, target: &str, read_only: bool) -> MountSpec {
    MountSpec {
        kind: "bind".into(),
        source: source.into(),
        target: target.into(),
        read_only,
        options: vec!["create".into()],
        ..Default::default()
    }
}

/// A long-syntax service volume (the short syntax was made long when the file was
/// read) as a mount, and the `Binds` entry a `-v` of it would have given. A bind may
/// create its source unless `create_host_path: false`; a bind with a propagation is a
/// `--mount` (which never creates one). Keys berth cannot honour are refused by name.
fn mount(
    project: &Project,
    service: &str,
    v: &Value,
) -> Result<(MountSpec, Option<String>), String> {
    let at = format!("services.{service}.volumes");
    refuse_unknown(
        v,
        &[
            "type",
            "source",
            "target",
            "read_only",
            "bind",
            "volume",
            "tmpfs",
            "consistency",
        ],
        &at,
    )?;
    let target = v
        .get("target")
        .and_then(text)
        .ok_or_else(|| format!("{at}.target: missing"))?;
    let read_only = flag(v.get("read_only"));
    let mut m = MountSpec {
        target: target.clone(),
        read_only,
        ..Default::default()
    };
    let kind = v.get("type").and_then(Value::as_str).unwrap_or("volume");
    match kind {
        "bind" => {
            let src = v
                .get("source")
                .and_then(text)
                .ok_or_else(|| format!("{at}.source: a bind needs a source"))?;
            let b = v.get("bind");
            if let Some(b) = b {
                refuse_unknown(
                    b,
                    &["propagation", "create_host_path", "selinux"],
                    &format!("{at}.bind"),
                )?;
            }
            let create = b
                .and_then(|b| b.get("create_host_path"))
                .and_then(Value::as_bool)
                != Some(false);
            match b.and_then(|b| b.get("propagation")).and_then(text) {
                None if create => {
                    let ro = if read_only { ":ro" } else { "" };
                    return Ok((
                        bind_mount(&src, &target, read_only),
                        Some(format!("{src}:{target}{ro}")),
                    ));
                }
                p => {
                    m.kind = "bind".into();
                    m.source = src;
                    m.options.extend(p);
                }
            }
        }
        "volume" => {
            m.kind = "volume".into();
            if let Some(src) = v.get("source").and_then(Value::as_str) {
                m.source = resource_name(project, "volumes", src);
            }
            if let Some(o) = v.get("volume") {
                refuse_unknown(o, &["nocopy"], &format!("{at}.volume"))?;
                m.no_copy = flag(o.get("nocopy"));
            }
        }
        "tmpfs" => {
            m.kind = "tmpfs".into();
            if let Some(o) = v.get("tmpfs") {
                refuse_unknown(o, &["size"], &format!("{at}.tmpfs"))?;
                if let Some(size) = o.get("size").and_then(text) {
                    m.tmpfs_size = Some(
                        parse_bytes(&size)
                            .ok_or_else(|| format!("{at}.tmpfs.size: invalid size {size:?}"))?,
                    );
                }
            }
        }
        other => {
            return Err(format!(
                "{at}.type {other}: not implemented yet in berth compose"
            ))
        }
    }
    Ok((m, None))
}

/// The file-based `secrets` and `configs` a service uses, as (host file, target path):
/// secrets under /run/secrets, configs at the root unless a target is given.
fn files(project: &Project, service: &str) -> Result<Vec<(String, String)>, String> {
    let svc = &project.model["services"][service];
    let mut out = Vec::new();
    for (kind, dir) in [("secrets", "/run/secrets/"), ("configs", "/")] {
        for entry in svc
            .get(kind)
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            let (source, target) = match entry {
                Value::Mapping(_) => {
                    refuse_unknown(
                        entry,
                        &["source", "target"],
                        &format!("services.{service}.{kind}"),
                    )?;
                    (
                        entry.get("source").and_then(text).unwrap_or_default(),
                        entry.get("target").and_then(text),
                    )
                }
                other => (text(other).unwrap_or_default(), None),
            };
            let file = project.model[kind][source.as_str()]
                .get("file")
                .and_then(text)
                .ok_or_else(|| {
                    format!(
                        "services.{service}.{kind}: {source} is not a file-based {} of the project (only file is implemented yet)",
                        kind.trim_end_matches('s')
                    )
                })?;
            let target = match target {
                Some(t) if t.starts_with('/') => t,
                Some(t) => format!("{dir}{t}"),
                None => format!("{dir}{source}"),
            };
            out.push((file, target));
        }
    }
    Ok(out)
}

/// `healthcheck`: `test` as CMD, CMD-SHELL, NONE or a shell string; `disable`; the
/// durations as Go writes them.
fn healthcheck(service: &str, h: Option<&Value>) -> Result<Option<HealthConfig>, String> {
    let Some(h) = h else {
        return Ok(None);
    };
    let at = |k: &str| format!("services.{service}.healthcheck.{k}");
    if flag(h.get("disable")) {
        return Ok(Some(HealthConfig {
            test: vec!["NONE".into()],
            ..Default::default()
        }));
    }
    let test = match h.get("test") {
        Some(Value::Sequence(t)) => {
            let words: Vec<String> = t.iter().filter_map(text).collect();
            match words.first().map(String::as_str) {
                Some("NONE") => vec!["NONE".to_string()],
                Some("CMD-SHELL") => vec!["CMD-SHELL".to_string(), words[1..].join(" ")],
                Some("CMD") => words,
                _ => {
                    return Err(format!(
                        "{}: must start with CMD, CMD-SHELL or NONE",
                        at("test")
                    ))
                }
            }
        }
        Some(t) => vec!["CMD-SHELL".to_string(), text(t).unwrap_or_default()],
        None => Vec::new(),
    };
    let dur = |k: &str| -> Result<i64, String> {
        match h.get(k).and_then(text) {
            None => Ok(0),
            Some(d) => {
                parse::duration(&d).ok_or_else(|| format!("{}: invalid duration {d:?}", at(k)))
            }
        }
    };
    let retries = match h.get("retries") {
        None => 0,
        Some(r) => r
            .as_i64()
            .or_else(|| text(r)?.parse().ok())
            .ok_or_else(|| format!("{}: not a number", at("retries")))?,
    };
    Ok(Some(HealthConfig {
        test,
        interval: dur("interval")?,
        timeout: dur("timeout")?,
        start_period: dur("start_period")?,
        retries,
        ..Default::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::project;

    fn spec(yaml: &str) -> ContainerSpec {
        container_spec(&project(yaml), "web", 1, None).unwrap()
    }

    fn refused(yaml: &str) -> String {
        container_spec(&project(yaml), "web", 1, None).unwrap_err()
    }

    #[test]
    fn devices_and_their_cgroup_rules_reach_the_request() {
        let p = project(concat!(
            "services:\n  web:\n    image: busybox\n",
            "    devices: [\"/dev/fuse\", \"/dev/sda:/dev/xvda:r\"]\n",
            "    device_cgroup_rules: [\"c 1:3 mr\"]\n",
        ));
        let s = container_spec(&p, "web", 1, None).unwrap();
        s.validate().unwrap();
        let d = &s.host_config.devices;
        assert_eq!(
            (d[0].path_on_host.as_str(), d[0].path_in_container.as_str()),
            ("/dev/fuse", "/dev/fuse")
        );
        assert_eq!(
            (
                d[1].path_in_container.as_str(),
                d[1].cgroup_permissions.as_str()
            ),
            ("/dev/xvda", "r")
        );
        assert_eq!(s.host_config.device_cgroup_rules, ["c 1:3 mr"]);
        assert_eq!(
            refused("services:\n  web:\n    image: a\n    devices: [\"/dev/a:b\"]\n"),
            "services.web.devices: b is not an absolute path"
        );
        assert_eq!(
            refused("services:\n  web:\n    image: a\n    devices: [{source: /dev/a}]\n"),
            "services.web.devices: the long syntax is not implemented yet in berth compose"
        );
    }

    #[test]
    fn a_service_becomes_a_create_request() {
        let p = project(concat!(
            "services:\n  web:\n    image: busybox\n",
            "    entrypoint: [/bin/sh, -c]\n    command: [\"httpd -f\"]\n",
            "    environment: {A: '1', UNSET: null}\n",
            "    ports: [\"127.0.0.1:8080:80\", \"53/udp\"]\n",
            "    volumes: [\"data:/data:ro\", \"/anon\", \"./site:/site\"]\n",
            "    networks:\n      back:\n        aliases: [www]\n        ipv4_address: 10.1.2.3\n      front:\n",
            "    restart: always\n    stop_grace_period: 1m30s\n    read_only: true\n",
            "    healthcheck:\n      test: [CMD, wget, -q, \"http://x/a b\"]\n      interval: 1s\n      retries: 3\n",
            "    ulimits:\n      nofile: {soft: 100, hard: 200}\n      nproc: 50\n",
            "networks:\n  back:\n  front:\nvolumes:\n  data:\n",
        ));
        let s = container_spec(&p, "web", 1, None).unwrap();
        s.validate().unwrap();
        assert_eq!(s.name.as_deref(), Some("shop-web-1"));
        assert_eq!(s.config.labels["com.docker.compose.service"], "web");
        assert_eq!(s.config.labels["com.docker.compose.oneoff"], "False");
        assert_eq!(s.config.env, ["A=1"]);
        let hc = &s.host_config;
        let binding = |port: &str| {
            let b = &hc.port_bindings[port][0];
            (b.host_ip.as_str(), b.host_port.as_str())
        };
        assert_eq!(binding("80/tcp"), ("127.0.0.1", "8080"));
        assert_eq!(binding("53/udp"), ("", ""));
        let m = &hc.mounts;
        assert_eq!(
            (m[0].kind.as_str(), m[0].source.as_str(), m[0].read_only),
            ("volume", "shop_data", true)
        );
        assert_eq!((m[1].kind.as_str(), m[1].source.as_str()), ("volume", ""));
        assert_eq!(m[2].kind, "bind");
        assert!(m[2].source.ends_with("/site") && m[2].source.starts_with('/'));
        assert_eq!(m[2].options, ["create"]);
        assert_eq!(hc.binds.len(), 1);
        assert!(hc.binds[0].ends_with("/site:/site"), "{:?}", hc.binds);
        assert_eq!(hc.network_mode, "shop_back");
        assert_eq!(s.endpoint.aliases, ["web", "www"]);
        assert_eq!(s.endpoint.ip.as_deref(), Some("10.1.2.3"));
        assert_eq!(hc.restart_policy.name, "always");
        assert_eq!(s.config.stop_timeout, Some(90));
        let h = s.config.healthcheck.as_ref().unwrap();
        assert_eq!(h.test, ["CMD", "wget", "-q", "http://x/a b"]);
        assert_eq!((h.interval, h.retries), (1_000_000_000, 3));
        let u: Vec<_> = hc
            .ulimits
            .iter()
            .map(|u| (u.name.as_str(), u.soft, u.hard))
            .collect();
        assert_eq!(u, [("nofile", 100, 200), ("nproc", 50, 50)]);
        assert!(hc.readonly_rootfs);
        assert_eq!(
            s.entrypoint.as_deref(),
            Some(&["/bin/sh".to_string(), "-c".into()][..])
        );
        assert_eq!(s.config.cmd.as_deref(), Some(&["httpd -f".to_string()][..]));
    }

    #[test]
    fn long_volume_options_become_mount_options() {
        let s = spec(concat!(
            "services:\n  web:\n    image: a\n    volumes:\n",
            "      - {type: bind, source: /srv/x, target: /x, bind: {create_host_path: false}}\n",
            "      - {type: bind, source: /srv/y, target: /y, read_only: true, bind: {propagation: rslave}}\n",
            "      - {type: volume, source: data, target: /d, volume: {nocopy: true}}\n",
            "      - {type: tmpfs, target: /t, tmpfs: {size: 1048576}}\n",
            "volumes:\n  data:\n",
        ));
        let m = &s.host_config.mounts;
        assert!(
            m[0].options.is_empty(),
            "a bind that may not create its source"
        );
        assert_eq!(
            (m[1].options.as_slice(), m[1].read_only),
            (&["rslave".to_string()][..], true)
        );
        assert_eq!((m[2].source.as_str(), m[2].no_copy), ("shop_data", true));
        assert_eq!(
            (m[3].kind.as_str(), m[3].tmpfs_size),
            ("tmpfs", Some(1 << 20))
        );
        assert!(s.host_config.binds.is_empty());
        assert_eq!(
            refused("services:\n  web:\n    image: a\n    volumes:\n      - {type: volume, target: /d, volume: {subpath: x}}\n"),
            "services.web.volumes.volume.subpath: not implemented yet in berth compose"
        );
    }

    #[test]
    fn a_one_off_container_is_not_a_replica() {
        let p = project(concat!(
            "services:\n  web:\n    image: busybox\n    command: [serve]\n",
            "    ports: [\"8080:80\"]\n    restart: always\n    networks: [back]\n",
            "networks:\n  back:\n",
        ));
        let o = OneOff {
            name: "shop-web-run-1".into(),
            command: Some(vec!["echo".into(), "hi".into()]),
            ..Default::default()
        };
        let s = container_spec(&p, "web", 1, Some(&o)).unwrap();
        assert_eq!(s.name.as_deref(), Some("shop-web-run-1"));
        assert_eq!(s.config.labels["com.docker.compose.oneoff"], "True");
        assert!(s.host_config.port_bindings.is_empty());
        assert_eq!(s.host_config.restart_policy.name, "no");
        assert!(s.endpoint.aliases.is_empty());
        assert_eq!(s.config.cmd.unwrap(), ["echo", "hi"]);
        let o = OneOff {
            service_ports: true,
            ..o
        };
        let s = container_spec(&p, "web", 1, Some(&o)).unwrap();
        assert_eq!(s.host_config.port_bindings["80/tcp"][0].host_port, "8080");
    }

    #[test]
    fn what_berth_cannot_do_yet_is_refused_by_name() {
        assert_eq!(
            refused("services:\n  web:\n    image: a\n    deploy:\n      placement: {}\n"),
            "services.web.deploy.placement: not implemented yet in berth compose"
        );
        assert_eq!(
            refused("services:\n  web:\n    image: a\n    deploy:\n      resources:\n        limits: {devices: []}\n"),
            "services.web.deploy.resources.limits.devices: not implemented yet in berth compose"
        );
        assert!(refused(
            "services:\n  web:\n    image: a\n    labels: [com.docker.compose.project=x]\n"
        )
        .contains("label prefix is reserved"));
        assert!(refused(
            "services:\n  web:\n    image: a\n    secrets: [s]\nsecrets:\n  s:\n    environment: HOME\n"
        )
        .contains("only file is implemented yet"));
    }

    #[test]
    fn values_are_read_by_the_engines_parsers_and_named_by_key() {
        assert_eq!(
            refused("services:\n  web:\n    image: a\n    restart: sometimes\n"),
            "services.web.restart: invalid restart policy 'sometimes'"
        );
        assert_eq!(
            refused("services:\n  web:\n    image: a\n    ulimits:\n      bogus: 1\n"),
            "services.web.ulimits: invalid ulimit type: bogus"
        );
        assert_eq!(
            refused("services:\n  web:\n    image: a\n    stop_grace_period: soon\n"),
            "services.web.stop_grace_period: invalid duration \"soon\""
        );
        // Values the syntax allows are the engine's to refuse, as for every front end.
        let s = spec("services:\n  web:\n    image: a\n    mem_limit: 1000b\n");
        assert_eq!(s.host_config.memory, 1000);
        assert_eq!(
            s.validate().unwrap_err().to_string(),
            "Minimum memory limit allowed is 6MB"
        );
        // What the publisher cannot do is refused before anything is made.
        let s = spec("services:\n  web:\n    image: a\n    ports: [\"[::1]:8443:443\"]\n");
        assert_eq!(s.host_config.port_bindings["443/tcp"][0].host_ip, "::1");
        assert!(matches!(
            s.validate(),
            Err(berth_engine::EngineError::NotImplemented(_))
        ));
        let s = spec(
            "services:\n  web:\n    image: a\n    ports: [{target: 80, published: \"8000-8010\"}]\n",
        );
        assert!(matches!(
            s.validate(),
            Err(berth_engine::EngineError::NotImplemented(_))
        ));
        assert_eq!(seconds("500ms"), Some(1));
        assert_eq!(seconds("9999999999h"), Some(i64::MAX / 1_000_000_000 + 1));
        assert_eq!(seconds("10"), Some(10));
        assert_eq!(seconds("1x"), None);
    }

    #[test]
    fn deploy_limits_secrets_configs_and_expose() {
        let s = spec(concat!(
            "services:\n  web:\n    image: a\n    expose: [\"8080\", 9000]\n",
            "    deploy:\n      replicas: 3\n      resources:\n        limits: {memory: 64M, cpus: '0.5', pids: 100}\n        reservations: {memory: 16M}\n",
            "    secrets: [db_pass, {source: api_key, target: key}]\n",
            "    configs: [{source: nginx, target: /etc/nginx.conf}]\n",
            "secrets:\n  db_pass:\n    file: /etc/hostname\n  api_key:\n    file: ./key.txt\n",
            "configs:\n  nginx:\n    file: /etc/hosts\n",
        ));
        let ports: Vec<_> = s.config.exposed_ports.as_ref().unwrap().keys().collect();
        assert_eq!(ports, ["8080/tcp", "9000/tcp"]);
        let hc = &s.host_config;
        assert_eq!(hc.memory, 64 << 20);
        assert_eq!(hc.nano_cpus, 500_000_000);
        assert_eq!(hc.pids_limit, Some(100));
        assert_eq!(hc.memory_reservation, 16 << 20);
        assert_eq!(hc.binds[0], "/etc/hostname:/run/secrets/db_pass:ro");
        assert!(
            hc.binds[1].ends_with("/key.txt:/run/secrets/key:ro"),
            "{:?}",
            hc.binds
        );
        assert_eq!(hc.binds[2], "/etc/hosts:/etc/nginx.conf:ro");
        assert!(hc.mounts.iter().all(|m| m.read_only && m.kind == "bind"));
    }
}
