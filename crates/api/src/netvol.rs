//! Volumes and networks.

use axum::body::Body;
use axum::http::{Method, Response, StatusCode};
use berth_engine::{Engine, EngineError};
use serde_json::{json, Value};

use crate::*;

/// Volumes and networks: list, create, inspect is elsewhere, remove, connect.
pub(crate) fn volumes_networks(
    e: &Engine,
    method: &Method,
    segs: &[String],
    q: &[(String, String)],
    body: &[u8],
) -> Response<Body> {
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let result = (|| -> Result<Response<Body>, EngineError> {
        Ok(match (method, segs.as_slice()) {
            (&Method::GET, ["volumes"]) => {
                let f = filters(q).map_err(EngineError::Invalid)?;
                let mut list = Vec::new();
                for v in e.list_volumes()? {
                    let j = serde_json::to_value(&v).expect("a volume serialises");
                    let dangling = || {
                        e.volume_users(&v.name)
                            .map(|u| u.is_empty())
                            .unwrap_or(false)
                    };
                    if listed(&j, &f, dangling)? {
                        list.push(j);
                    }
                }
                json_response(StatusCode::OK, &json!({"Volumes": list, "Warnings": []}))
            }
            (&Method::POST, ["volumes", "prune"]) => {
                let all = filters(q)
                    .unwrap_or_default()
                    .iter()
                    .any(|(k, v)| k == "all" && matches!(v.as_str(), "true" | "1"));
                let (names, bytes) = e.prune_volumes(all, &prune_filter(q, &["all"])?)?;
                json_response(
                    StatusCode::OK,
                    &json!({"VolumesDeleted": names, "SpaceReclaimed": bytes}),
                )
            }
            (&Method::POST, ["networks", "prune"]) => {
                let names = e.prune_networks()?;
                json_response(StatusCode::OK, &json!({ "NetworksDeleted": names }))
            }
            (&Method::POST, ["volumes", "create"]) => {
                let v = match body_json(body) {
                    Ok(v) => v,
                    Err(msg) => return Ok(error(StatusCode::BAD_REQUEST, msg)),
                };
                let info = e.create_volume(&berth_engine::specs::VolumeSpec {
                    name: v
                        .get("Name")
                        .and_then(Value::as_str)
                        .filter(|n| !n.is_empty())
                        .map(String::from),
                    driver: v
                        .get("Driver")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    driver_opts: string_map(v.get("DriverOpts")),
                    labels: string_map(v.get("Labels")),
                })?;
                json_response(
                    StatusCode::CREATED,
                    &serde_json::to_value(info).expect("a volume serialises"),
                )
            }
            (&Method::DELETE, ["volumes", name]) => {
                e.remove_volume(name, flag(q, "force"))?;
                no_content()
            }
            (&Method::GET, ["networks"]) => {
                let f = filters(q).map_err(EngineError::Invalid)?;
                let mut all = Vec::new();
                for n in e.list_networks()? {
                    all.push(e.inspect_network(&n.id)?);
                }
                let custom = all.len();
                for name in ["host", "none"] {
                    all.push(e.inspect_builtin_network(name));
                }
                let mut list = Vec::new();
                for (i, n) in all.into_iter().enumerate() {
                    let n = serde_json::to_value(n).expect("a network serialises");
                    let kind = if i < custom && n["Name"] != "bridge" {
                        "custom"
                    } else {
                        "builtin"
                    };
                    let typed: Vec<(String, String)> =
                        f.iter().filter(|(k, _)| k == "type").cloned().collect();
                    if typed.iter().all(|(_, t)| t == kind) && listed(&n, &f, || false)? {
                        list.push(n);
                    }
                }
                json_response(StatusCode::OK, &Value::Array(list))
            }
            (&Method::POST, ["networks", "create"]) => {
                let v = match body_json(body) {
                    Ok(v) => v,
                    Err(msg) => return Ok(error(StatusCode::BAD_REQUEST, msg)),
                };
                let ipam = v.pointer("/IPAM/Config/0");
                let text = |p: Option<&Value>, k: &str| {
                    p.and_then(|c| c.get(k))
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                };
                let c = berth_engine::specs::NetworkSpec {
                    name: v
                        .get("Name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    driver: v
                        .get("Driver")
                        .and_then(Value::as_str)
                        .filter(|d| !d.is_empty())
                        .map(String::from),
                    subnet: text(ipam, "Subnet"),
                    gateway: text(ipam, "Gateway"),
                    ip_range: text(ipam, "IPRange"),
                    internal: v.get("Internal").and_then(Value::as_bool).unwrap_or(false),
                    ipv6: v
                        .get("EnableIPv6")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                    labels: string_map(v.get("Labels")),
                    options: string_map(v.get("Options")),
                };
                let id = e.create_network(&c)?;
                json_response(StatusCode::CREATED, &json!({"Id": id, "Warning": ""}))
            }
            (&Method::DELETE, ["networks", id]) => {
                e.remove_network(id)?;
                no_content()
            }
            (&Method::POST, ["networks", id, action @ ("connect" | "disconnect")]) => {
                let v = match body_json(body) {
                    Ok(v) => v,
                    Err(msg) => return Ok(error(StatusCode::BAD_REQUEST, msg)),
                };
                let container = v
                    .get("Container")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                if *action == "connect" {
                    let ep = v.get("EndpointConfig");
                    let req = endpoint_request(ep);
                    e.connect_container(id, &container, &req)?;
                } else {
                    e.disconnect_container(id, &container)?;
                }
                json_response(StatusCode::OK, &Value::Null)
            }
            _ => error(
                StatusCode::NOT_IMPLEMENTED,
                format!(
                    "{method} /{} is not implemented yet in berth serve",
                    segs.join("/")
                ),
            ),
        })
    })();
    result.unwrap_or_else(engine_error)
}

/// Does a volume or network (Docker's JSON) pass list filters `name=` (a substring),
/// `id=` (a prefix), `label=k[=v]`, `driver=`, `dangling=`? Values of one key are ORed,
/// keys ANDed. `type=` is the caller's.
fn listed(
    obj: &Value,
    f: &[(String, String)],
    dangling: impl Fn() -> bool,
) -> Result<bool, EngineError> {
    let text = |k: &str| obj.get(k).and_then(Value::as_str).unwrap_or_default();
    let mut keys: Vec<&str> = f.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    for key in keys {
        let vals = f.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str());
        let ok = match key {
            "name" => vals.into_iter().any(|v| text("Name").contains(v)),
            "id" => vals.into_iter().any(|v| text("Id").starts_with(v)),
            "driver" => vals.into_iter().any(|v| text("Driver") == v),
            "label" => vals.into_iter().any(|v| {
                let (k, want) = match v.split_once('=') {
                    Some((k, w)) => (k, Some(w)),
                    None => (v, None),
                };
                obj.pointer(&format!(
                    "/Labels/{}",
                    k.replace('~', "~0").replace('/', "~1")
                ))
                .and_then(Value::as_str)
                .is_some_and(|have| want.is_none_or(|w| w == have))
            }),
            "dangling" => vals.into_iter().any(|v| match v {
                "true" | "1" => dangling(),
                "false" | "0" => !dangling(),
                _ => false,
            }),
            "type" => true,
            other => return Err(EngineError::Invalid(format!("invalid filter '{other}'"))),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}
