//! A service's container as `berth create` arguments: the same flags a user would type,
//! so compose and `run` share one way from flags to a container. Keys berth cannot
//! honour yet are refused by name, never dropped.

use serde_norway::Value;
use sha2::Digest;

use crate::load::Project;

/// Docker Compose's label keys.
pub const PROJECT_LABEL: &str = "com.docker.compose.project";
pub const SERVICE_LABEL: &str = "com.docker.compose.service";
pub const NUMBER_LABEL: &str = "com.docker.compose.container-number";
pub const HASH_LABEL: &str = "com.docker.compose.config-hash";
pub const ONEOFF_LABEL: &str = "com.docker.compose.oneoff";
pub const NETWORK_LABEL: &str = "com.docker.compose.network";
pub const VOLUME_LABEL: &str = "com.docker.compose.volume";

/// The service keys turned into flags here, or used by `up` itself.
const KEYS: [&str; 45] = [
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
];

use crate::scalar_text as text;

/// A string or a list of strings.
fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Sequence(items) => items.iter().filter_map(text).collect(),
        other => text(other).into_iter().collect(),
    }
}

/// The service's definition as `up` compares it: a hash of its canonical form, its
/// replica count left out (scaling a service does not recreate its containers).
pub fn config_hash(service: &Value) -> String {
    let mut s = service.clone();
    if let Value::Mapping(m) = &mut s {
        m.remove("scale");
    }
    let json = serde_json::to_vec(&s).unwrap_or_default();
    hex(&sha2::Sha256::digest(&json))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A compose duration (`1m30s`, `500ms`, `10s`) in whole seconds, rounded up.
fn seconds(d: &str) -> Option<i64> {
    let mut total_ms: f64 = 0.0;
    let mut num = String::new();
    let mut chars = d.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphabetic() {
                unit.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let n: f64 = num.parse().ok()?;
        num.clear();
        total_ms += n * match unit.as_str() {
            "ms" => 1.0,
            "s" => 1000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            _ => return None,
        };
    }
    if !num.is_empty() {
        total_ms += num.parse::<f64>().ok()? * 1000.0;
    }
    Some((total_ms / 1000.0).ceil() as i64)
}

/// The container name of replica `number` of `service`.
pub fn container_name(project: &Project, service: &str, number: u32) -> String {
    project.model["services"][service]
        .get("container_name")
        .and_then(Value::as_str)
        .map(String::from)
        .unwrap_or_else(|| format!("{}-{service}-{number}", project.name))
}

/// The full name of the project's network `key` (or volume, with `section`).
pub fn resource_name(project: &Project, section: &str, key: &str) -> String {
    project.model[section][key]
        .get("name")
        .and_then(Value::as_str)
        .map(String::from)
        .unwrap_or_else(|| format!("{}_{key}", project.name))
}

/// The networks a service joins, in order, with the aliases and address it has on
/// each: (full network name, aliases, IPv4 address).
pub fn service_networks(
    project: &Project,
    service: &str,
) -> Vec<(String, Vec<String>, Option<String>)> {
    let svc = &project.model["services"][service];
    let Some(m) = svc.get("networks").and_then(Value::as_mapping) else {
        return Vec::new();
    };
    m.iter()
        .filter_map(|(k, v)| {
            let key = k.as_str()?;
            let mut aliases = vec![service.to_string()];
            aliases.extend(v.get("aliases").map(strings).unwrap_or_default());
            let ip = v.get("ipv4_address").and_then(text);
            Some((resource_name(project, "networks", key), aliases, ip))
        })
        .collect()
}

/// The image a service runs: its `image`, else (when it is built) `PROJECT-SERVICE`, as
/// Docker Compose names built images.
pub fn image_of(project: &Project, service: &str) -> Result<String, String> {
    let svc = &project.model["services"][service];
    match (svc.get("image").and_then(text), svc.get("build")) {
        (Some(i), _) => Ok(i),
        (None, Some(_)) => Ok(format!("{}-{service}", project.name)),
        (None, None) => Err(format!("services.{service}: neither an image nor a build")),
    }
}

/// `berth build` arguments for `service`, if it is built: the image's tag, the
/// Dockerfile, build args, target, labels, network, the context.
pub fn build_args(project: &Project, service: &str) -> Result<Option<Vec<String>>, String> {
    let svc = &project.model["services"][service];
    let Some(b) = svc.get("build") else {
        return Ok(None);
    };
    let at = |k: &str| format!("services.{service}.build.{k}");
    for k in b
        .as_mapping()
        .into_iter()
        .flat_map(|m| m.keys())
        .filter_map(Value::as_str)
    {
        if !matches!(
            k,
            "context" | "dockerfile" | "args" | "target" | "labels" | "network"
        ) && !k.starts_with("x-")
        {
            return Err(format!("{}: not implemented yet in berth compose", at(k)));
        }
    }
    let context = b
        .get("context")
        .and_then(text)
        .ok_or_else(|| format!("{}: missing", at("context")))?;
    if context.contains("://") || context.starts_with("git@") {
        return Err(format!(
            "{}: remote contexts are not implemented yet",
            at("context")
        ));
    }
    if !std::path::Path::new(&context).is_dir() {
        return Err(format!("{}: {context} is not a directory", at("context")));
    }
    let mut a = vec!["--tag".to_string(), image_of(project, service)?];
    if let Some(f) = b.get("dockerfile").and_then(text) {
        // Relative to the context, as Docker Compose reads it.
        let path = if f.starts_with('/') {
            f
        } else {
            format!("{context}/{f}")
        };
        a.push("--file".into());
        a.push(path);
    }
    match b.get("args") {
        Some(Value::Mapping(m)) => {
            for (k, v) in m {
                if let (Some(k), Some(v)) = (text(k), text(v)) {
                    a.push("--build-arg".into());
                    a.push(format!("{k}={v}"));
                }
            }
        }
        Some(Value::Sequence(items)) => {
            for i in items.iter().filter_map(text) {
                a.push("--build-arg".into());
                a.push(i);
            }
        }
        _ => {}
    }
    if let Some(t) = b.get("target").and_then(text) {
        a.push("--target".into());
        a.push(t);
    }
    match b.get("labels") {
        Some(Value::Mapping(m)) => {
            for (k, v) in m {
                a.push("--label".into());
                a.push(format!(
                    "{}={}",
                    text(k).unwrap_or_default(),
                    text(v).unwrap_or_default()
                ));
            }
        }
        Some(Value::Sequence(items)) => {
            for i in items.iter().filter_map(text) {
                a.push("--label".into());
                a.push(i);
            }
        }
        _ => {}
    }
    if let Some(n) = b.get("network").and_then(text) {
        a.push("--network".into());
        a.push(n);
    }
    a.push(context);
    Ok(Some(a))
}

/// `deploy`: what a single engine honours, as Docker Compose applies it without
/// swarm: `replicas` (as `scale`, read by `up`) and `resources.limits` (memory, cpus,
/// pids); the rest is refused by name.
fn deploy_flags(
    service: &str,
    d: &Value,
    flag: &mut impl FnMut(&str, String),
) -> Result<(), String> {
    let refuse =
        |k: &str| format!("services.{service}.deploy.{k}: not implemented yet in berth compose");
    for k in d
        .as_mapping()
        .into_iter()
        .flat_map(|m| m.keys())
        .filter_map(Value::as_str)
    {
        if !matches!(k, "replicas" | "resources") {
            return Err(refuse(k));
        }
    }
    let Some(r) = d.get("resources") else {
        return Ok(());
    };
    for k in r
        .as_mapping()
        .into_iter()
        .flat_map(|m| m.keys())
        .filter_map(Value::as_str)
    {
        if !matches!(k, "limits" | "reservations") {
            return Err(refuse(&format!("resources.{k}")));
        }
    }
    if let Some(l) = r.get("reservations") {
        for (k, v) in l.as_mapping().into_iter().flatten() {
            match k.as_str().unwrap_or_default() {
                "memory" => flag("--memory-reservation", text(v).unwrap_or_default()),
                other => return Err(refuse(&format!("resources.reservations.{other}"))),
            }
        }
    }
    if let Some(l) = r.get("limits") {
        for (k, v) in l.as_mapping().into_iter().flatten() {
            let v = text(v).unwrap_or_default();
            match k.as_str().unwrap_or_default() {
                "memory" => flag("--memory", v),
                "cpus" => flag("--cpus", v),
                "pids" => flag("--pids-limit", v),
                other => return Err(refuse(&format!("resources.limits.{other}"))),
            }
        }
    }
    Ok(())
}

/// How many replicas a service runs: `scale`, else `deploy.replicas`, else 1.
pub fn replicas(service: &Value) -> u32 {
    service
        .get("scale")
        .or_else(|| service.get("deploy").and_then(|d| d.get("replicas")))
        .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
        .unwrap_or(1) as u32
}

/// A long-syntax service volume (the short syntax was made long when the file was
/// read) as a create flag: a bind that may create its source is `-v`'s (which makes a
/// missing source), everything else `--mount`'s (where a missing bind source is an
/// error, as `create_host_path: false` asks). Keys berth cannot honour are refused by
/// name.
fn mount_spec(
    project: &Project,
    service: &str,
    v: &Value,
) -> Result<(&'static str, String), String> {
    let at = |k: &str| format!("services.{service}.volumes.{k}");
    let refuse = |k: &str| Err(format!("{}: not implemented yet in berth compose", at(k)));
    for k in v
        .as_mapping()
        .into_iter()
        .flat_map(|m| m.keys())
        .filter_map(Value::as_str)
    {
        if !matches!(
            k,
            "type"
                | "source"
                | "target"
                | "read_only"
                | "bind"
                | "volume"
                | "tmpfs"
                | "consistency"
        ) {
            return refuse(k);
        }
    }
    let target = v
        .get("target")
        .and_then(text)
        .ok_or_else(|| format!("{}: missing", at("target")))?;
    let mut spec = vec![];
    let kind = v.get("type").and_then(Value::as_str).unwrap_or("volume");
    match kind {
        "bind" => {
            let src = v
                .get("source")
                .and_then(text)
                .ok_or_else(|| format!("{}: a bind needs a source", at("source")))?;
            let b = v.get("bind");
            for k in b
                .and_then(Value::as_mapping)
                .into_iter()
                .flat_map(|m| m.keys())
                .filter_map(Value::as_str)
            {
                if !matches!(k, "propagation" | "create_host_path" | "selinux") {
                    return refuse(&format!("bind.{k}"));
                }
            }
            let create = b
                .and_then(|b| b.get("create_host_path"))
                .and_then(Value::as_bool)
                != Some(false);
            let propagation = b.and_then(|b| b.get("propagation")).and_then(text);
            if create && propagation.is_none() {
                let ro = if v.get("read_only").and_then(Value::as_bool) == Some(true) {
                    ":ro"
                } else {
                    ""
                };
                return Ok(("--volume", format!("{src}:{target}{ro}")));
            }
            spec.push(format!("type=bind,source={src},target={target}"));
            if let Some(p) = propagation {
                spec.push(format!("bind-propagation={p}"));
            }
        }
        "volume" => {
            spec.push("type=volume".into());
            if let Some(src) = v.get("source").and_then(Value::as_str) {
                spec.push(format!("source={}", resource_name(project, "volumes", src)));
            }
            spec.push(format!("target={target}"));
            for (k, val) in v
                .get("volume")
                .and_then(Value::as_mapping)
                .into_iter()
                .flatten()
            {
                match k.as_str().unwrap_or_default() {
                    "nocopy" if val.as_bool() == Some(true) => spec.push("volume-nocopy".into()),
                    "nocopy" => {}
                    other => return refuse(&format!("volume.{other}")),
                }
            }
        }
        "tmpfs" => {
            spec.push(format!("type=tmpfs,target={target}"));
            for (k, val) in v
                .get("tmpfs")
                .and_then(Value::as_mapping)
                .into_iter()
                .flatten()
            {
                match k.as_str().unwrap_or_default() {
                    "size" => spec.push(format!("tmpfs-size={}", text(val).unwrap_or_default())),
                    other => return refuse(&format!("tmpfs.{other}")),
                }
            }
        }
        other => return refuse(&format!("type {other}")),
    }
    if v.get("read_only").and_then(Value::as_bool) == Some(true) {
        spec.push("readonly".into());
    }
    Ok(("--mount", spec.join(",")))
}

/// What makes a one-off container (`compose run`) unlike a service's replicas.
#[derive(Debug, Default)]
pub struct OneOff {
    pub name: String,
    /// Instead of the service's command.
    pub command: Option<Vec<String>>,
    /// Publish the service's ports (`--service-ports`); by default they are not.
    pub service_ports: bool,
    /// More `create` flags, before the image.
    pub extra: Vec<String>,
}

/// `berth create` arguments for replica `number` of `service`: flags, the image, the
/// command. Errors name the service and the key.
pub fn create_args(project: &Project, service: &str, number: u32) -> Result<Vec<String>, String> {
    create_args_for(project, service, number, None)
}

/// [`create_args`], for a one-off container when `oneoff` is given: its own name, the
/// `oneoff` label, no restart policy, no network alias, ports only if asked.
pub fn create_args_for(
    project: &Project,
    service: &str,
    number: u32,
    oneoff: Option<&OneOff>,
) -> Result<Vec<String>, String> {
    let svc = &project.model["services"][service];
    let Some(m) = svc.as_mapping() else {
        return Err(format!("services.{service} must be a mapping"));
    };
    for k in m.keys().filter_map(Value::as_str) {
        if !KEYS.contains(&k) && !k.starts_with("x-") {
            return Err(format!(
                "services.{service}.{k}: not implemented yet in berth compose"
            ));
        }
    }
    let image = image_of(project, service)?;
    let mut a: Vec<String> = Vec::new();
    let mut flag = |f: &str, v: String| {
        a.push(f.to_string());
        a.push(v);
    };
    flag(
        "--name",
        match oneoff {
            Some(o) => o.name.clone(),
            None => container_name(project, service, number),
        },
    );
    let hash = config_hash(svc);
    for (k, v) in [
        (PROJECT_LABEL, project.name.clone()),
        (SERVICE_LABEL, service.to_string()),
        (NUMBER_LABEL, number.to_string()),
        (HASH_LABEL, hash),
        (
            ONEOFF_LABEL,
            if oneoff.is_some() { "True" } else { "False" }.to_string(),
        ),
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
    ] {
        flag("--label", format!("{k}={v}"));
    }
    if let Some(Value::Mapping(labels)) = svc.get("labels") {
        for (k, v) in labels {
            if text(k).is_some_and(|k| k.starts_with("com.docker.compose")) {
                return Err(format!(
                    "services.{service}.labels: the com.docker.compose label prefix is reserved"
                ));
            }
            flag(
                "--label",
                format!(
                    "{}={}",
                    text(k).unwrap_or_default(),
                    text(v).unwrap_or_default()
                ),
            );
        }
    }
    for e in svc
        .get("env_file")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
    {
        let path = e.get("path").and_then(text).unwrap_or_default();
        let required = e.get("required").and_then(Value::as_bool) != Some(false);
        if required || std::path::Path::new(&path).exists() {
            flag("--env-file", path);
        }
    }
    if let Some(Value::Mapping(env)) = svc.get("environment") {
        for (k, v) in env {
            // A variable without a value, unset where compose runs, is left out.
            if let Some(v) = text(v) {
                flag("--env", format!("{}={v}", text(k).unwrap_or_default()));
            }
        }
    }
    let ports = match oneoff {
        Some(o) if !o.service_ports => None,
        _ => svc.get("ports").and_then(Value::as_sequence),
    };
    for p in ports.into_iter().flatten() {
        let target = p.get("target").and_then(text).unwrap_or_default();
        let proto = p
            .get("protocol")
            .and_then(text)
            .unwrap_or_else(|| "tcp".into());
        let published = p.get("published").and_then(text).unwrap_or_default();
        let spec = match p.get("host_ip").and_then(text) {
            Some(ip) if ip.contains(':') => format!("[{ip}]:{published}:{target}/{proto}"),
            Some(ip) => format!("{ip}:{published}:{target}/{proto}"),
            None if published.is_empty() => format!("{target}/{proto}"),
            None => format!("{published}:{target}/{proto}"),
        };
        flag("--publish", spec);
    }
    for v in svc
        .get("volumes")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
    {
        let (f, spec) = mount_spec(project, service, v)?;
        flag(f, spec);
    }
    for t in svc.get("tmpfs").map(strings).unwrap_or_default() {
        flag("--tmpfs", t);
    }
    match svc.get("network_mode").and_then(Value::as_str) {
        Some(mode) => {
            let mode = match mode.strip_prefix("service:") {
                Some(other) => format!("container:{}", container_name(project, other, 1)),
                None => mode.to_string(),
            };
            flag("--network", mode);
        }
        None => {
            // The first network at create; `up` connects the others.
            if let Some((net, aliases, ip)) = service_networks(project, service).into_iter().next()
            {
                flag("--network", net);
                for al in aliases.into_iter().filter(|_| oneoff.is_none()) {
                    flag("--network-alias", al);
                }
                if let Some(ip) = ip {
                    flag("--ip", ip);
                }
            }
        }
    }
    for (key, f) in [
        ("working_dir", "--workdir"),
        ("user", "--user"),
        ("hostname", "--hostname"),
        ("stop_signal", "--stop-signal"),
        ("mem_limit", "--memory"),
        ("mem_reservation", "--memory-reservation"),
        ("cpus", "--cpus"),
        ("pids_limit", "--pids-limit"),
        ("shm_size", "--shm-size"),
    ] {
        if let Some(v) = svc.get(key).and_then(text) {
            flag(f, v);
        }
    }
    if oneoff.is_none() {
        if let Some(r) = svc.get("restart").and_then(text) {
            flag("--restart", r);
        }
    }
    for (key, f) in [
        ("cap_add", "--cap-add"),
        ("cap_drop", "--cap-drop"),
        ("security_opt", "--security-opt"),
        ("dns", "--dns"),
        ("dns_search", "--dns-search"),
        ("dns_opt", "--dns-option"),
    ] {
        for v in svc.get(key).map(strings).unwrap_or_default() {
            flag(f, v);
        }
    }
    match svc.get("extra_hosts") {
        Some(Value::Mapping(m)) => {
            for (h, ip) in m {
                flag(
                    "--add-host",
                    format!(
                        "{}:{}",
                        text(h).unwrap_or_default(),
                        text(ip).unwrap_or_default()
                    ),
                );
            }
        }
        Some(v) => {
            for h in strings(v) {
                // `host=ip` is the newer spelling of `host:ip`.
                flag("--add-host", h.replacen('=', ":", 1));
            }
        }
        None => {}
    }
    if let Some(g) = svc.get("stop_grace_period").and_then(text) {
        let secs = seconds(&g).ok_or_else(|| {
            format!("services.{service}.stop_grace_period: invalid duration {g:?}")
        })?;
        flag("--stop-timeout", secs.to_string());
    }
    if let Some(Value::Mapping(limits)) = svc.get("ulimits") {
        for (name, l) in limits {
            let name = text(name).unwrap_or_default();
            let spec = match l {
                Value::Mapping(_) => format!(
                    "{name}={}:{}",
                    l.get("soft").and_then(text).unwrap_or_default(),
                    l.get("hard").and_then(text).unwrap_or_default()
                ),
                single => format!("{name}={}", text(single).unwrap_or_default()),
            };
            flag("--ulimit", spec);
        }
    }
    for x in svc.get("expose").map(strings).unwrap_or_default() {
        flag("--expose", x);
    }
    if let Some(d) = svc.get("deploy") {
        deploy_flags(service, d, &mut flag)?;
    }
    for (kind, dir) in [("secrets", "/run/secrets/"), ("configs", "/")] {
        for entry in svc
            .get(kind)
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            let (source, target) = match entry {
                Value::Mapping(m) => {
                    for k in m.keys().filter_map(Value::as_str) {
                        if !matches!(k, "source" | "target") {
                            return Err(format!(
                                "services.{service}.{kind}.{k}: not implemented yet in berth compose"
                            ));
                        }
                    }
                    let source = entry.get("source").and_then(text).unwrap_or_default();
                    let target = entry.get("target").and_then(text);
                    (source, target)
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
            flag("--volume", format!("{file}:{target}:ro"));
        }
    }
    if let Some(h) = svc.get("healthcheck") {
        if h.get("disable").and_then(Value::as_bool) == Some(true) {
            a.push("--no-healthcheck".into());
        } else {
            let mut flag = |f: &str, v: String| {
                a.push(f.to_string());
                a.push(v);
            };
            match h.get("test") {
                Some(Value::Sequence(t)) => {
                    let words: Vec<String> = t.iter().filter_map(text).collect();
                    match words.first().map(String::as_str) {
                        Some("NONE") => flag("--health-cmd", "NONE".into()),
                        Some("CMD-SHELL") => flag("--health-cmd", words[1..].join(" ")),
                        Some("CMD") => flag(
                            "--health-cmd",
                            shlex::try_join(words[1..].iter().map(String::as_str))
                                .map_err(|e| format!("services.{service}.healthcheck.test: {e}"))?,
                        ),
                        _ => {
                            return Err(format!(
                                "services.{service}.healthcheck.test: must start with CMD, CMD-SHELL or NONE"
                            ))
                        }
                    }
                }
                Some(t) => flag("--health-cmd", text(t).unwrap_or_default()),
                None => {}
            }
            for (key, f) in [
                ("interval", "--health-interval"),
                ("timeout", "--health-timeout"),
                ("start_period", "--health-start-period"),
                ("retries", "--health-retries"),
            ] {
                if let Some(v) = h.get(key).and_then(text) {
                    flag(f, v);
                }
            }
        }
    }
    for (key, f) in [
        ("read_only", "--read-only"),
        ("init", "--init"),
        ("privileged", "--privileged"),
        ("tty", "--tty"),
        ("stdin_open", "--interactive"),
    ] {
        if svc.get(key).and_then(Value::as_bool) == Some(true) {
            a.push(f.into());
        }
    }
    // An entrypoint list: its first word is the entrypoint, the rest go before the
    // command (`--entrypoint` takes one word); an empty one resets the image's.
    let entrypoint = svc.get("entrypoint").map(strings);
    let mut tail: Vec<String> = Vec::new();
    if let Some(ep) = &entrypoint {
        a.push("--entrypoint".into());
        a.push(ep.first().cloned().unwrap_or_default());
        tail.extend(ep.iter().skip(1).cloned());
    }
    if let Some(o) = oneoff {
        a.extend(o.extra.iter().cloned());
    }
    a.push(image);
    a.extend(tail);
    match oneoff.and_then(|o| o.command.as_ref()) {
        Some(cmd) => a.extend(cmd.iter().cloned()),
        None => {
            if let Some(cmd) = svc.get("command") {
                a.extend(strings(cmd));
            }
        }
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{load, Options};

    fn project(yaml: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("compose.yaml"), yaml).unwrap();
        let p = load(&Options {
            project_name: Some("shop".into()),
            working_dir: dir.path().to_path_buf(),
            ..Default::default()
        })
        .unwrap();
        drop(dir);
        p
    }

    fn pairs(args: &[String], flag: &str) -> Vec<String> {
        args.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].clone())
            .collect()
    }

    #[test]
    fn a_service_becomes_create_flags() {
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
        let a = create_args(&p, "web", 1).unwrap();
        assert_eq!(pairs(&a, "--name"), ["shop-web-1"]);
        assert!(pairs(&a, "--label").contains(&"com.docker.compose.service=web".to_string()));
        assert_eq!(pairs(&a, "--env"), ["A=1"]);
        assert_eq!(pairs(&a, "--publish"), ["127.0.0.1:8080:80/tcp", "53/udp"]);
        let vols = pairs(&a, "--mount");
        assert_eq!(
            vols[0],
            "type=volume,source=shop_data,target=/data,readonly"
        );
        assert_eq!(vols[1], "type=volume,target=/anon");
        let binds = pairs(&a, "--volume");
        assert!(binds[0].ends_with("/site:/site"), "{binds:?}");
        assert_eq!(pairs(&a, "--network"), ["shop_back"]);
        assert_eq!(pairs(&a, "--network-alias"), ["web", "www"]);
        assert_eq!(pairs(&a, "--ip"), ["10.1.2.3"]);
        assert_eq!(pairs(&a, "--stop-timeout"), ["90"]);
        assert_eq!(pairs(&a, "--health-cmd"), ["wget -q 'http://x/a b'"]);
        assert_eq!(pairs(&a, "--ulimit"), ["nofile=100:200", "nproc=50"]);
        assert!(a.contains(&"--read-only".to_string()));
        let tail: Vec<&str> = a[a.len() - 4..].iter().map(String::as_str).collect();
        assert_eq!(tail, ["/bin/sh", "busybox", "-c", "httpd -f"]);
        assert_eq!(pairs(&a, "--entrypoint"), ["/bin/sh"]);
        let nets = service_networks(&p, "web");
        assert_eq!(nets[1].0, "shop_front");
    }

    #[test]
    fn long_volume_options_become_mount_options() {
        let p = project(concat!(
            "services:\n  web:\n    image: a\n    volumes:\n",
            "      - {type: bind, source: /srv/x, target: /x, bind: {create_host_path: false}}\n",
            "      - {type: bind, source: /srv/y, target: /y, read_only: true, bind: {propagation: rslave}}\n",
            "      - {type: volume, source: data, target: /d, volume: {nocopy: true}}\n",
            "      - {type: tmpfs, target: /t, tmpfs: {size: 1048576}}\n",
            "volumes:\n  data:\n",
        ));
        let a = create_args(&p, "web", 1).unwrap();
        assert_eq!(
            pairs(&a, "--mount"),
            [
                "type=bind,source=/srv/x,target=/x",
                "type=bind,source=/srv/y,target=/y,bind-propagation=rslave,readonly",
                "type=volume,source=shop_data,target=/d,volume-nocopy",
                "type=tmpfs,target=/t,tmpfs-size=1048576",
            ]
        );
        let p = project("services:\n  web:\n    image: a\n    volumes:\n      - {type: volume, target: /d, volume: {subpath: x}}\n");
        assert_eq!(
            create_args(&p, "web", 1).unwrap_err(),
            "services.web.volumes.volume.subpath: not implemented yet in berth compose"
        );
    }

    #[test]
    fn a_one_off_container_is_not_a_replica() {
        let p = project(concat!(
            "services:\n  web:\n    image: busybox\n    command: [serve]\n",
            "    ports: [\"8080:80\"]\n    restart: always\n",
        ));
        let o = OneOff {
            name: "shop-web-run-1".into(),
            command: Some(vec!["echo".into(), "hi".into()]),
            extra: vec!["--rm".into()],
            ..Default::default()
        };
        let a = create_args_for(&p, "web", 1, Some(&o)).unwrap();
        assert_eq!(pairs(&a, "--name"), ["shop-web-run-1"]);
        assert!(pairs(&a, "--label").contains(&"com.docker.compose.oneoff=True".to_string()));
        assert!(pairs(&a, "--publish").is_empty());
        assert!(pairs(&a, "--restart").is_empty());
        assert!(pairs(&a, "--network-alias").is_empty());
        let tail: Vec<&str> = a[a.len() - 4..].iter().map(String::as_str).collect();
        assert_eq!(tail, ["--rm", "busybox", "echo", "hi"]);
    }

    #[test]
    fn what_berth_cannot_do_yet_is_refused_by_name() {
        let p = project("services:\n  web:\n    image: a\n    deploy:\n      placement: {}\n");
        assert_eq!(
            create_args(&p, "web", 1).unwrap_err(),
            "services.web.deploy.placement: not implemented yet in berth compose"
        );
        let p = project(
            "services:\n  web:\n    image: a\n    labels: [com.docker.compose.project=x]\n",
        );
        assert!(create_args(&p, "web", 1)
            .unwrap_err()
            .contains("label prefix is reserved"));
        let p = project("services:\n  web:\n    image: a\n    secrets: [s]\nsecrets:\n  s:\n    environment: HOME\n");
        assert!(create_args(&p, "web", 1)
            .unwrap_err()
            .contains("only file is implemented yet"));
        let p = project("services:\n  web:\n    build:\n      context: .\n      ssh: [default]\n");
        assert_eq!(
            build_args(&p, "web").unwrap_err(),
            "services.web.build.ssh: not implemented yet in berth compose"
        );
    }

    #[test]
    fn a_built_service_is_named_after_the_project() {
        let p = project(concat!(
            "services:\n  api:\n    build:\n      context: /\n      dockerfile: Dockerfile.api\n",
            "      args: {VERSION: '2'}\n      target: run\n",
        ));
        assert_eq!(image_of(&p, "api").unwrap(), "shop-api");
        let a = build_args(&p, "api").unwrap().unwrap();
        assert_eq!(
            a,
            [
                "--tag",
                "shop-api",
                "--file",
                "//Dockerfile.api",
                "--build-arg",
                "VERSION=2",
                "--target",
                "run",
                "/"
            ]
        );
        assert_eq!(
            pairs(&create_args(&p, "api", 1).unwrap(), "--name"),
            ["shop-api-1"]
        );
        let p = project("services:\n  x:\n    build: /no/such/dir\n");
        assert!(build_args(&p, "x")
            .unwrap_err()
            .ends_with("/no/such/dir is not a directory"));
    }

    #[test]
    fn deploy_limits_secrets_configs_and_expose() {
        let p = project(concat!(
            "services:\n  web:\n    image: a\n    expose: [\"8080\", 9000]\n",
            "    deploy:\n      replicas: 3\n      resources:\n        limits: {memory: 64M, cpus: '0.5', pids: 100}\n        reservations: {memory: 16M}\n",
            "    secrets: [db_pass, {source: api_key, target: key}]\n",
            "    configs: [{source: nginx, target: /etc/nginx.conf}]\n",
            "secrets:\n  db_pass:\n    file: /etc/hostname\n  api_key:\n    file: ./key.txt\n",
            "configs:\n  nginx:\n    file: /etc/hosts\n",
        ));
        let a = create_args(&p, "web", 1).unwrap();
        assert_eq!(pairs(&a, "--expose"), ["8080", "9000"]);
        assert_eq!(pairs(&a, "--memory"), ["64M"]);
        assert_eq!(pairs(&a, "--cpus"), ["0.5"]);
        assert_eq!(pairs(&a, "--pids-limit"), ["100"]);
        assert_eq!(pairs(&a, "--memory-reservation"), ["16M"]);
        let v = pairs(&a, "--volume");
        assert_eq!(v[0], "/etc/hostname:/run/secrets/db_pass:ro");
        assert!(v[1].ends_with("/key.txt:/run/secrets/key:ro"), "{v:?}");
        assert_eq!(v[2], "/etc/hosts:/etc/nginx.conf:ro");
        assert_eq!(replicas(&p.model["services"]["web"]), 3);
    }

    #[test]
    fn the_hash_follows_the_definition() {
        let a = project("services:\n  web:\n    image: a\n");
        let b = project("services:\n  web:\n    image: b\n");
        let h = |p: &Project| config_hash(&p.model["services"]["web"]);
        assert_eq!(h(&a), h(&a.clone()));
        assert_ne!(h(&a), h(&b));
        let scaled = project("services:\n  web:\n    image: a\n    scale: 3\n");
        assert_eq!(h(&a), h(&scaled));
        assert_eq!(seconds("1m30s"), Some(90));
        assert_eq!(seconds("500ms"), Some(1));
        assert_eq!(seconds("10"), Some(10));
        assert_eq!(seconds("1x"), None);
    }
}
