//! What a merged model needs before it is a project: each service on the `default`
//! network unless it names networks (or a `network_mode`), the project's networks and
//! volumes named `PROJECT_NAME` (an external one by its own name), and the references
//! between them checked: networks, named volumes and `depends_on` services that exist,
//! and no dependency cycle.

use std::collections::BTreeMap;

use serde_norway::{Mapping, Value};

fn s(v: &str) -> Value {
    Value::String(v.to_string())
}

fn names(model: &Value, section: &str) -> Vec<String> {
    crate::mapping_keys(model.get(section))
}

/// Completes and checks `model` for project `project`. Errors are Docker Compose's.
pub fn complete(model: &mut Value, project: &str) -> Result<(), String> {
    let services = names(model, "services");
    let mut uses_default = false;
    if let Some(Value::Mapping(svcs)) = model.get_mut("services") {
        for (_, svc) in svcs.iter_mut() {
            let Value::Mapping(svc) = svc else { continue };
            if svc.get("networks").is_none() && svc.get("network_mode").is_none() {
                let mut m = Mapping::new();
                m.insert(s("default"), Value::Null);
                svc.insert(s("networks"), Value::Mapping(m));
            }
            uses_default |= svc
                .get("networks")
                .and_then(Value::as_mapping)
                .is_some_and(|m| m.contains_key("default"));
        }
    }
    let top = model
        .as_mapping_mut()
        .ok_or("the model must be a mapping")?;
    for section in ["networks", "volumes"] {
        let wanted_default = section == "networks" && uses_default;
        let entry = top
            .entry(s(section))
            .or_insert_with(|| Value::Mapping(Mapping::new()));
        if entry.is_null() {
            *entry = Value::Mapping(Mapping::new());
        }
        let Value::Mapping(m) = entry else {
            return Err(format!("{section} must be a mapping"));
        };
        if wanted_default && !m.contains_key("default") {
            m.insert(s("default"), Value::Null);
        }
        for (k, v) in m.iter_mut() {
            let name = k.as_str().unwrap_or_default().to_string();
            if v.is_null() {
                *v = Value::Mapping(Mapping::new());
            }
            let Value::Mapping(body) = v else {
                return Err(format!("{section}.{name} must be a mapping"));
            };
            if body.get("name").is_none() {
                let external = body.get("external").and_then(Value::as_bool) == Some(true);
                let full = if external {
                    name.clone()
                } else {
                    format!("{project}_{name}")
                };
                body.insert(s("name"), s(&full));
            }
        }
        if m.is_empty() {
            top.remove(section);
        }
    }
    check_references(model, &services)
}

/// The shape each service key must have (after normalising), as Docker Compose's schema
/// says: a wrong one is an error naming the service and the key.
fn check_types(model: &Value, services: &[String]) -> Result<(), String> {
    #[derive(Clone, Copy)]
    enum Shape {
        Scalar,
        Bool,
        List,
        ListOrScalar,
        Map,
        ListOrMap,
    }
    use Shape::*;
    let shape = |key: &str| -> Option<Shape> {
        Some(match key {
            "image" | "container_name" | "working_dir" | "user" | "hostname" | "restart"
            | "stop_signal" | "stop_grace_period" | "mem_limit" | "mem_reservation" | "cpus"
            | "shm_size" | "network_mode" | "pids_limit" | "scale" | "domainname" | "platform"
            | "pull_policy" => Scalar,
            "read_only" | "init" | "privileged" | "tty" | "stdin_open" => Bool,
            "ports"
            | "volumes"
            | "secrets"
            | "configs"
            | "env_file"
            | "command"
            | "entrypoint"
            | "cap_add"
            | "cap_drop"
            | "security_opt"
            | "expose"
            | "profiles"
            | "dns_opt"
            | "devices"
            | "device_cgroup_rules" => List,
            "dns" | "dns_search" | "tmpfs" => ListOrScalar,
            "ulimits" | "healthcheck" | "deploy" | "labels" | "environment" | "networks"
            | "depends_on" | "build" | "logging" | "sysctls" => Map,
            "extra_hosts" => ListOrMap,
            _ => return None,
        })
    };
    for name in services {
        let Some(svc) = model["services"][name.as_str()].as_mapping() else {
            continue;
        };
        for (k, v) in svc {
            let Some(key) = k.as_str() else { continue };
            let Some(want) = shape(key) else { continue };
            let scalar = matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_));
            let ok = v.is_null()
                || match want {
                    Scalar => scalar,
                    Bool => v.is_bool(),
                    List => v.is_sequence(),
                    ListOrScalar => v.is_sequence() || scalar,
                    Map => v.is_mapping(),
                    ListOrMap => v.is_sequence() || v.is_mapping(),
                };
            if !ok {
                let what = match want {
                    Scalar => "a string or a number",
                    Bool => "a boolean",
                    List => "a list",
                    ListOrScalar => "a string or a list",
                    Map => "a mapping",
                    ListOrMap => "a list or a mapping",
                };
                return Err(format!("services.{name}.{key} must be {what}"));
            }
        }
    }
    Ok(())
}

/// Top-level networks and volumes ask only for what berth makes: bridge networks (with
/// their subnet, gateway, range, options, labels, internal), local volumes with labels;
/// anything else is refused by name.
fn check_resources(model: &Value) -> Result<(), String> {
    let refuse = |what: String| Err(format!("{what}: not implemented yet in berth compose"));
    for (section, allowed) in [
        (
            "networks",
            &[
                "name",
                "driver",
                "driver_opts",
                "ipam",
                "internal",
                "external",
                "labels",
                "attachable",
                "enable_ipv6",
            ][..],
        ),
        ("volumes", &["name", "driver", "external", "labels"][..]),
    ] {
        for (k, def) in model
            .get(section)
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
        {
            let name = k.as_str().unwrap_or_default();
            crate::refuse_unknown(def, allowed, &format!("{section}.{name}"))?;
            let driver = def.get("driver").and_then(Value::as_str);
            let wanted = if section == "networks" {
                "bridge"
            } else {
                "local"
            };
            if driver.is_some_and(|d| d != wanted) {
                return refuse(format!(
                    "{section}.{name}.driver {}",
                    driver.unwrap_or_default()
                ));
            }
            if def.get("enable_ipv6").and_then(Value::as_bool) == Some(true) {
                return refuse(format!("{section}.{name}.enable_ipv6"));
            }
            if let Some(ipam) = def.get("ipam") {
                if ipam
                    .get("driver")
                    .and_then(Value::as_str)
                    .is_some_and(|d| d != "default")
                {
                    return refuse(format!("{section}.{name}.ipam.driver"));
                }
                if ipam
                    .get("config")
                    .and_then(Value::as_sequence)
                    .is_some_and(|c| c.len() > 1)
                {
                    return refuse(format!("{section}.{name}.ipam.config with several subnets"));
                }
            }
        }
    }
    Ok(())
}

fn check_references(model: &Value, services: &[String]) -> Result<(), String> {
    check_types(model, services)?;
    check_resources(model)?;
    let networks = names(model, "networks");
    let volumes = names(model, "volumes");
    let mut deps: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for name in services {
        let svc = &model["services"][name.as_str()];
        if let Some(m) = svc.get("networks").and_then(Value::as_mapping) {
            for n in m.keys().filter_map(Value::as_str) {
                if !networks.iter().any(|x| x == n) {
                    return Err(format!(
                        "service \"{name}\" refers to undefined network {n}: invalid compose project"
                    ));
                }
            }
        }
        for v in svc
            .get("volumes")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            if v.get("type").and_then(Value::as_str) != Some("volume") {
                continue;
            }
            if let Some(src) = v.get("source").and_then(Value::as_str) {
                if !volumes.iter().any(|x| x == src) {
                    return Err(format!(
                        "service \"{name}\" refers to undefined volume {src}: invalid compose project"
                    ));
                }
            }
        }
        let on = crate::mapping_keys(svc.get("depends_on"));
        for d in &on {
            let required = svc["depends_on"][d.as_str()]
                .get("required")
                .and_then(Value::as_bool)
                != Some(false);
            if required && !services.contains(d) {
                return Err(format!(
                    "service \"{name}\" depends on undefined service \"{d}\": invalid compose project"
                ));
            }
        }
        deps.insert(name.clone(), on);
    }
    // A cycle: a depth-first walk that meets a service it is still inside.
    fn visit(
        n: &str,
        deps: &BTreeMap<String, Vec<String>>,
        state: &mut BTreeMap<String, u8>,
        trail: &mut Vec<String>,
    ) -> Result<(), String> {
        match state.get(n) {
            Some(2) => return Ok(()),
            Some(1) => {
                let from = trail.iter().position(|t| t == n).unwrap_or(0);
                let mut cycle = trail[from..].to_vec();
                cycle.push(n.to_string());
                return Err(format!("dependency cycle detected: {}", cycle.join(" -> ")));
            }
            _ => {}
        }
        state.insert(n.to_string(), 1);
        trail.push(n.to_string());
        for d in deps.get(n).into_iter().flatten() {
            visit(d, deps, state, trail)?;
        }
        trail.pop();
        state.insert(n.to_string(), 2);
        Ok(())
    }
    let mut state = BTreeMap::new();
    for n in deps.keys() {
        visit(n, &deps, &mut state, &mut Vec::new())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(yaml: &str) -> Result<Value, String> {
        let mut v: Value = serde_norway::from_str(yaml).unwrap();
        let mut environ = BTreeMap::new();
        environ.insert("HOME".to_string(), "/root".to_string());
        crate::normalize::normalize_file(&mut v, std::path::Path::new("/p"), &environ)?;
        complete(&mut v, "shop").map(|()| v)
    }

    #[test]
    fn networks_and_volumes_get_the_projects_names() {
        let v = done(concat!(
            "services:\n  web:\n    image: a\n    volumes: [data:/d]\n",
            "  db:\n    image: b\n    networks: [back]\n",
            "  host:\n    image: c\n    network_mode: host\n",
            "networks:\n  back:\n  outside:\n    external: true\n",
            "volumes:\n  data:\n",
        ))
        .unwrap();
        assert!(v["services"]["web"]["networks"]["default"].is_null());
        assert!(v["services"]["host"].get("networks").is_none());
        assert_eq!(v["networks"]["default"]["name"], "shop_default");
        assert_eq!(v["networks"]["back"]["name"], "shop_back");
        assert_eq!(v["networks"]["outside"]["name"], "outside");
        assert_eq!(v["volumes"]["data"]["name"], "shop_data");
    }

    #[test]
    fn references_are_checked_and_cycles_found() {
        let e = done("services:\n  web:\n    image: a\n    networks: [nowhere]\n").unwrap_err();
        assert_eq!(
            e,
            "service \"web\" refers to undefined network nowhere: invalid compose project"
        );
        let e = done("services:\n  web:\n    image: a\n    volumes: [db:/d]\n").unwrap_err();
        assert!(e.contains("refers to undefined volume db"), "{e}");
        let e = done("services:\n  web:\n    image: a\n    depends_on: [db]\n").unwrap_err();
        assert!(e.contains("depends on undefined service \"db\""), "{e}");
        done("services:\n  web:\n    image: a\n    depends_on:\n      db: {condition: service_started, required: false}\n").unwrap();
        let e = done(concat!(
            "services:\n",
            "  a:\n    image: x\n    depends_on: [b]\n",
            "  b:\n    image: x\n    depends_on: [c]\n",
            "  c:\n    image: x\n    depends_on: [a]\n",
        ))
        .unwrap_err();
        assert_eq!(e, "dependency cycle detected: a -> b -> c -> a");
        let e = done("services:\n  web:\n    image: a\n    read_only: \"yes\"\n").unwrap_err();
        assert_eq!(e, "services.web.read_only must be a boolean");
        let e = done("services:\n  web:\n    image: [a]\n").unwrap_err();
        assert_eq!(e, "services.web.image must be a string or a number");
        let e = done("services:\n  web:\n    image: a\n    cap_add: ALL\n").unwrap_err();
        assert_eq!(e, "services.web.cap_add must be a list");
        let e = done("services: {}\nnetworks:\n  n:\n    driver: overlay\n").unwrap_err();
        assert_eq!(
            e,
            "networks.n.driver overlay: not implemented yet in berth compose"
        );
        let e = done("services: {}\nvolumes:\n  v:\n    driver_opts: {type: tmpfs}\n").unwrap_err();
        assert_eq!(
            e,
            "volumes.v.driver_opts: not implemented yet in berth compose"
        );
        done("services: {}\nnetworks:\n  n:\n    driver: bridge\n    labels: {a: b}\nvolumes:\n  v:\n    labels: {a: b}\n").unwrap();
    }
}
