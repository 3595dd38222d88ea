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
                if !filters(q).unwrap_or_default().is_empty() {
                    return Ok(error(
                        StatusCode::NOT_IMPLEMENTED,
                        "volume list filters are not implemented yet in berth serve",
                    ));
                }
                let list = e.list_volumes()?;
                json_response(
                    StatusCode::OK,
                    &json!({"Volumes": serde_json::to_value(list).expect("volumes serialise"), "Warnings": []}),
                )
            }
            (&Method::POST, ["volumes", "create"]) => {
                let v = match body_json(body) {
                    Ok(v) => v,
                    Err(msg) => return Ok(error(StatusCode::BAD_REQUEST, msg)),
                };
                let driver = v.get("Driver").and_then(Value::as_str).unwrap_or("local");
                if !matches!(driver, "" | "local") {
                    return Ok(error(
                        StatusCode::BAD_REQUEST,
                        format!("volume driver {driver:?} is not available: only local"),
                    ));
                }
                if v.get("DriverOpts")
                    .and_then(Value::as_object)
                    .is_some_and(|m| !m.is_empty())
                {
                    return Ok(error(
                        StatusCode::NOT_IMPLEMENTED,
                        "volume driver options are not implemented yet in berth serve",
                    ));
                }
                let name = v
                    .get("Name")
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty())
                    .map(String::from)
                    .unwrap_or_else(berth_engine::names::new_id);
                let info = e.create_volume(&name, &string_map(v.get("Labels")), false)?;
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
                let mut list = Vec::new();
                for n in e.list_networks()? {
                    list.push(e.inspect_network(&n.id)?);
                }
                for (name, driver) in [("host", "host"), ("none", "null")] {
                    list.push(json!({
                        "Name": name, "Id": e.builtin_network_id(name), "Scope": "local",
                        "Driver": driver, "EnableIPv6": false, "Internal": false,
                        "IPAM": {"Driver": "default", "Config": []}, "Containers": {},
                        "Options": {}, "Labels": {},
                    }));
                }
                json_response(StatusCode::OK, &Value::Array(list))
            }
            (&Method::POST, ["networks", "create"]) => {
                let v = match body_json(body) {
                    Ok(v) => v,
                    Err(msg) => return Ok(error(StatusCode::BAD_REQUEST, msg)),
                };
                if v.get("EnableIPv6").and_then(Value::as_bool) == Some(true) {
                    return Ok(error(
                        StatusCode::NOT_IMPLEMENTED,
                        "IPv6 is not implemented yet in berth",
                    ));
                }
                let ipam = v.pointer("/IPAM/Config/0");
                let text = |p: Option<&Value>, k: &str| {
                    p.and_then(|c| c.get(k))
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                };
                let c = berth_engine::networks::NetworkCreate {
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
