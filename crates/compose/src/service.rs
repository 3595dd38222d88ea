//! What compose names and labels a service's things with, how many replicas it runs,
//! and its build request. Its container's create request is [`crate::container`]'s.

use std::collections::BTreeMap;

use berth_engine::specs::{build, BuildSpec, NetworkSpec, VolumeSpec};
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

/// The project's networks and named volumes that `services` use (their keys, each
/// once, in the order first used): what `up` makes before their containers.
pub fn resources_of(project: &Project, services: &[String]) -> (Vec<String>, Vec<String>) {
    let mut networks: Vec<String> = Vec::new();
    let mut volumes: Vec<String> = Vec::new();
    let add = |list: &mut Vec<String>, k: &str| {
        if !list.iter().any(|n| n == k) {
            list.push(k.to_string());
        }
    };
    for s in services {
        let svc = &project.model["services"][s.as_str()];
        for k in crate::mapping_keys(svc.get("networks")) {
            add(&mut networks, &k);
        }
        for v in svc
            .get("volumes")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            if v.get("type").and_then(Value::as_str) == Some("volume") {
                if let Some(src) = v.get("source").and_then(Value::as_str) {
                    add(&mut volumes, src);
                }
            }
        }
    }
    (networks, volumes)
}

/// The create request of the project's network `key`, labelled as Docker Compose does.
pub fn network_spec(project: &Project, key: &str) -> NetworkSpec {
    let def = &project.model["networks"][key];
    let ipam = def
        .get("ipam")
        .and_then(|i| i.get("config"))
        .and_then(|c| c.get(0));
    let get = |v: Option<&Value>, k: &str| v.and_then(|v| v.get(k)).and_then(text);
    let mut labels = key_values(def.get("labels"), |_| Some(String::new()));
    labels.insert(PROJECT_LABEL.into(), project.name.clone());
    labels.insert(NETWORK_LABEL.into(), key.into());
    NetworkSpec {
        name: resource_name(project, "networks", key),
        driver: get(Some(def), "driver"),
        subnet: get(ipam, "subnet"),
        gateway: get(ipam, "gateway"),
        ip_range: get(ipam, "ip_range"),
        internal: def.get("internal").and_then(Value::as_bool) == Some(true),
        ipv6: def.get("enable_ipv6").and_then(Value::as_bool) == Some(true),
        labels,
        options: key_values(def.get("driver_opts"), |_| Some(String::new())),
    }
}

/// The create request of the project's volume `key`, labelled as Docker Compose does.
pub fn volume_spec(project: &Project, key: &str) -> VolumeSpec {
    let def = &project.model["volumes"][key];
    let mut labels = key_values(def.get("labels"), |_| Some(String::new()));
    labels.insert(PROJECT_LABEL.into(), project.name.clone());
    labels.insert(VOLUME_LABEL.into(), key.into());
    VolumeSpec {
        name: Some(resource_name(project, "volumes", key)),
        driver: def.get("driver").and_then(text).unwrap_or_default(),
        // Passed on for the engine to refuse by name, never dropped.
        driver_opts: key_values(def.get("driver_opts"), |_| Some(String::new())),
        labels,
    }
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

/// The build request for `service`, if it is built: the image's tag, the Dockerfile
/// (relative to the context, as Docker Compose reads it), build args, target, labels,
/// network, the context.
pub fn build_spec(project: &Project, service: &str) -> Result<Option<BuildSpec>, String> {
    let svc = &project.model["services"][service];
    let Some(b) = svc.get("build") else {
        return Ok(None);
    };
    let at = |k: &str| format!("services.{service}.build.{k}");
    crate::refuse_unknown(
        b,
        &[
            "context",
            "dockerfile",
            "args",
            "target",
            "labels",
            "network",
        ],
        &format!("services.{service}.build"),
    )?;
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
    let context = std::path::PathBuf::from(context);
    let image = image_of(project, service)?;
    Ok(Some(BuildSpec {
        tags: vec![build::tag(&image).map_err(|e| format!("services.{service}: {e}"))?],
        dockerfile: b.get("dockerfile").and_then(text).map(|f| context.join(f)),
        // A name without a value takes this process's, and is left out when it has
        // none (so the Dockerfile's default holds), as Docker Compose does.
        build_args: key_values(b.get("args"), |k| std::env::var(k).ok()),
        target: b.get("target").and_then(text),
        labels: key_values(b.get("labels"), |_| Some(String::new())),
        network_none: match b.get("network").and_then(text) {
            Some(n) => build::network_none(&n).map_err(|e| format!("{}: {e}", at("network")))?,
            None => false,
        },
        context,
        ..Default::default()
    }))
}

/// A mapping or a list of `KEY=VALUE`, as a map; `missing` gives the value of a key
/// without one (None leaves it out).
fn key_values(
    v: Option<&Value>,
    missing: impl Fn(&str) -> Option<String>,
) -> BTreeMap<String, String> {
    match v {
        Some(Value::Mapping(m)) => m
            .iter()
            .filter_map(|(k, v)| {
                let k = text(k)?;
                let v = text(v).or_else(|| missing(&k))?;
                Some((k, v))
            })
            .collect(),
        Some(Value::Sequence(items)) => items
            .iter()
            .filter_map(text)
            .filter_map(|i| match i.split_once('=') {
                Some((k, v)) => Some((k.to_string(), v.to_string())),
                None => missing(&i).map(|v| (i, v)),
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// How many replicas a service runs: `scale`, else `deploy.replicas`, else 1.
pub fn replicas(service: &Value) -> u32 {
    service
        .get("scale")
        .or_else(|| service.get("deploy").and_then(|d| d.get("replicas")))
        .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
        .unwrap_or(1) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::project;

    #[test]
    fn a_built_service_is_named_after_the_project() {
        let p = project(concat!(
            "services:\n  api:\n    build:\n      context: /\n      dockerfile: Dockerfile.api\n",
            "      args: {VERSION: '2', BERTH_SURELY_UNSET_X: null}\n      target: run\n      labels: [team=shop]\n",
            "      network: none\n",
        ));
        assert_eq!(image_of(&p, "api").unwrap(), "shop-api");
        let b = build_spec(&p, "api").unwrap().unwrap();
        assert_eq!(b.tags, ["docker.io/library/shop-api:latest"]);
        assert_eq!(b.context, std::path::Path::new("/"));
        assert_eq!(
            b.dockerfile.unwrap(),
            std::path::Path::new("/Dockerfile.api")
        );
        assert_eq!(b.build_args["VERSION"], "2");
        assert!(!b.build_args.contains_key("BERTH_SURELY_UNSET_X"));
        assert_eq!(b.target.as_deref(), Some("run"));
        assert_eq!(b.labels["team"], "shop");
        assert!(b.network_none);
        assert_eq!(container_name(&p, "api", 1), "shop-api-1");
        let p = project("services:\n  x:\n    build: /no/such/dir\n");
        assert!(build_spec(&p, "x")
            .unwrap_err()
            .ends_with("/no/such/dir is not a directory"));
        let p = project("services:\n  web:\n    build:\n      context: .\n      ssh: [default]\n");
        assert_eq!(
            build_spec(&p, "web").unwrap_err(),
            "services.web.build.ssh: not implemented yet in berth compose"
        );
        let p = project("services:\n  web:\n    build:\n      context: /\n      network: bridge\n");
        assert!(build_spec(&p, "web")
            .unwrap_err()
            .starts_with("services.web.build.network: build --network bridge is not implemented"));
    }

    #[test]
    fn networks_and_volumes_become_create_requests() {
        let p = project(concat!(
            "services:\n  web:\n    image: a\n    networks: [back]\n    volumes: [data:/d]\n",
            "networks:\n  back:\n    internal: true\n    labels: [tier=back]\n",
            "    driver_opts: {com.docker.network.driver.mtu: 1400}\n",
            "    ipam:\n      config: [{subnet: 10.7.0.0/24, gateway: 10.7.0.1}]\n",
            "volumes:\n  data:\n    labels: {keep: 'yes'}\n",
        ));
        let n = network_spec(&p, "back");
        n.validate().unwrap();
        assert_eq!(n.name, "shop_back");
        assert!(n.internal && !n.ipv6);
        assert_eq!(n.subnet.as_deref(), Some("10.7.0.0/24"));
        assert_eq!(n.gateway.as_deref(), Some("10.7.0.1"));
        assert_eq!(n.labels["tier"], "back");
        assert_eq!(n.labels[NETWORK_LABEL], "back");
        assert_eq!(n.mtu().unwrap(), Some(1400));
        let (nets, vols) = resources_of(&p, &["web".to_string()]);
        assert_eq!(
            (nets, vols),
            (vec!["back".to_string()], vec!["data".to_string()])
        );
        let v = volume_spec(&p, "data");
        v.validate().unwrap();
        assert_eq!(v.name.as_deref(), Some("shop_data"));
        assert_eq!(v.labels["keep"], "yes");
        assert_eq!(v.labels[PROJECT_LABEL], "shop");
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
        assert_eq!(replicas(&scaled.model["services"]["web"]), 3);
    }
}
