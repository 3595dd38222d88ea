//! Pod networking through CNI plugins, as kubelet expects of a CRI runtime: the first
//! network configuration in a directory (`.conf`, `.conflist` or `.json`, in file-name
//! order, as libcni picks it), its plugins run from the plugin directories with the CNI
//! protocol (the `CNI_*` environment, the configuration on stdin, the result on stdout).
//!
//! `ADD` runs the plugins in order, each given the previous one's result; `DEL` runs them
//! in reverse with the result `ADD` gave (the caller keeps it, as libcni's cache does).
//! The runtime's values a plugin declares in `capabilities` (`portMappings`, `dns`, …)
//! reach it in `runtimeConfig`.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Map, Value};

use crate::{io, NetError, Result};

/// A network configuration list: its name and version, and its plugins' configurations.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkList {
    pub name: String,
    pub cni_version: String,
    pub plugins: Vec<Value>,
}

/// What one pod's attachment is: passed to every plugin.
#[derive(Debug, Clone, Default)]
pub struct Attachment {
    pub container_id: String,
    pub netns: PathBuf,
    pub ifname: String,
    /// `CNI_ARGS` pairs (`K8S_POD_NAME`, …); `IgnoreUnknown=1` goes first.
    pub args: Vec<(String, String)>,
    /// Runtime values by capability name (`portMappings`, `dns`), given to the plugins
    /// that declare the capability.
    pub capabilities: Map<String, Value>,
}

/// The network list in `dir`: the first configuration file by name that parses. None
/// when there is none (the network is not ready).
pub fn load(dir: &Path) -> Result<Option<NetworkList>> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("conf" | "conflist" | "json")
                )
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(format!("reading {}", dir.display()))(e)),
    };
    files.sort();
    for f in files {
        let text = std::fs::read(&f).map_err(io(format!("reading {}", f.display())))?;
        if let Ok(list) = parse(&text, f.extension().is_some_and(|e| e == "conflist")) {
            return Ok(Some(list));
        }
    }
    Ok(None)
}

/// Parses a `.conflist` (`list`) or a single plugin's `.conf`.
pub fn parse(text: &[u8], list: bool) -> Result<NetworkList> {
    let bad = |why: &str| NetError::Invalid(format!("invalid CNI configuration: {why}"));
    let v: Value = serde_json::from_slice(text).map_err(|e| bad(&e.to_string()))?;
    let name = v["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad("no name"))?
        .to_string();
    let cni_version = v["cniVersion"].as_str().unwrap_or("0.2.0").to_string();
    let plugins = if list {
        v["plugins"]
            .as_array()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| bad("a list with no plugins"))?
            .clone()
    } else {
        vec![v]
    };
    for p in &plugins {
        let kind = p["type"].as_str().unwrap_or("");
        if kind.is_empty() || kind.contains('/') || kind.starts_with('.') {
            return Err(bad("a plugin without a valid type"));
        }
    }
    Ok(NetworkList {
        name,
        cni_version,
        plugins,
    })
}

impl NetworkList {
    /// Runs `ADD` through the list; returns the last plugin's result. When a plugin
    /// fails, the ones before it are undone (`DEL` through the whole list).
    pub fn add(&self, bin_dirs: &[PathBuf], a: &Attachment) -> Result<Value> {
        let mut prev: Option<Value> = None;
        for plugin in &self.plugins {
            match self.run(bin_dirs, plugin, "ADD", a, prev.as_ref()) {
                Ok(result) => prev = Some(result),
                Err(e) => {
                    let _ = self.del(bin_dirs, a, prev.as_ref());
                    return Err(e);
                }
            }
        }
        Ok(prev.unwrap_or(Value::Null))
    }

    /// Runs `DEL` through the list in reverse, with the result `ADD` gave. Every plugin
    /// runs; the first failure is returned.
    pub fn del(&self, bin_dirs: &[PathBuf], a: &Attachment, prev: Option<&Value>) -> Result<()> {
        let mut first_err = None;
        for plugin in self.plugins.iter().rev() {
            if let Err(e) = self.run(bin_dirs, plugin, "DEL", a, prev) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn run(
        &self,
        bin_dirs: &[PathBuf],
        plugin: &Value,
        command: &str,
        a: &Attachment,
        prev: Option<&Value>,
    ) -> Result<Value> {
        let kind = plugin["type"].as_str().unwrap_or_default();
        let exe = bin_dirs
            .iter()
            .map(|d| d.join(kind))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                NetError::Invalid(format!(
                    "CNI plugin {kind} not found in {}",
                    join_paths(bin_dirs)
                ))
            })?;
        let conf = self.plugin_config(plugin, a, prev);
        let mut args = String::from("IgnoreUnknown=1");
        for (k, v) in &a.args {
            args.push_str(&format!(";{k}={v}"));
        }
        let mut child = Command::new(&exe)
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", &a.container_id)
            .env("CNI_NETNS", &a.netns)
            .env("CNI_IFNAME", &a.ifname)
            .env("CNI_ARGS", args)
            .env("CNI_PATH", join_paths(bin_dirs))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io(format!("running {}", exe.display())))?;
        let input = serde_json::to_vec(&conf).expect("a JSON value serialises");
        if let Some(mut stdin) = child.stdin.take() {
            // A plugin that exits without reading is judged by its exit status below.
            let _ = stdin.write_all(&input);
        }
        let out = child
            .wait_with_output()
            .map_err(io(format!("running {}", exe.display())))?;
        if !out.status.success() {
            return Err(NetError::Invalid(format!(
                "CNI plugin {kind} {command} failed: {}",
                plugin_error(&out.stdout, &out.stderr)
            )));
        }
        if out.stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&out.stdout)
            .map_err(|e| NetError::Invalid(format!("CNI plugin {kind} {command}: its result: {e}")))
    }

    /// One plugin's stdin: its configuration with the list's name and version, the
    /// runtime values it declared capabilities for, and the previous result.
    fn plugin_config(&self, plugin: &Value, a: &Attachment, prev: Option<&Value>) -> Value {
        let mut conf = plugin.as_object().cloned().unwrap_or_default();
        conf.insert("name".into(), json!(self.name));
        conf.insert("cniVersion".into(), json!(self.cni_version));
        let runtime: Map<String, Value> = plugin["capabilities"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, on)| on.as_bool() == Some(true))
            .filter_map(|(cap, _)| Some((cap.clone(), a.capabilities.get(cap)?.clone())))
            .collect();
        if !runtime.is_empty() {
            conf.insert("runtimeConfig".into(), Value::Object(runtime));
        }
        match prev {
            Some(p) if !p.is_null() => {
                conf.insert("prevResult".into(), p.clone());
            }
            _ => {}
        }
        Value::Object(conf)
    }
}

fn join_paths(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

/// A failed plugin's message: the CNI error's `msg` and `details` when it printed one,
/// else its stderr.
fn plugin_error(stdout: &[u8], stderr: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(stdout) {
        if let Some(msg) = v["msg"].as_str() {
            return match v["details"].as_str().filter(|d| !d.is_empty()) {
                Some(d) => format!("{msg}: {d}"),
                None => msg.to_string(),
            };
        }
    }
    let err = String::from_utf8_lossy(stderr);
    let err = err.trim();
    if err.is_empty() {
        "it exited with an error and said nothing".into()
    } else {
        err.to_string()
    }
}

/// The addresses in a result (CNI 0.3.0 and later: `ips`; 0.1/0.2: `ip4`, `ip6`),
/// IPv4 first.
pub fn addresses(result: &Value) -> Vec<IpAddr> {
    let mut cidrs: Vec<&str> = result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| ip["address"].as_str())
        .collect();
    for old in ["ip4", "ip6"] {
        cidrs.extend(result[old]["ip"].as_str());
    }
    let mut ips: Vec<IpAddr> = cidrs
        .into_iter()
        .filter_map(|c| c.split('/').next()?.parse().ok())
        .collect();
    ips.sort_by_key(|ip| ip.is_ipv6());
    ips
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conflist_and_a_single_conf_parse() {
        let list = parse(
            br#"{"cniVersion":"1.0.0","name":"pods","plugins":[{"type":"bridge"},{"type":"portmap","capabilities":{"portMappings":true}}]}"#,
            true,
        )
        .unwrap();
        assert_eq!(list.name, "pods");
        assert_eq!(list.plugins.len(), 2);
        let one = parse(
            br#"{"cniVersion":"0.4.0","name":"n","type":"bridge"}"#,
            false,
        )
        .unwrap();
        assert_eq!(one.plugins.len(), 1);
        assert_eq!(one.cni_version, "0.4.0");
    }

    #[test]
    fn bad_configurations_are_refused() {
        for (text, list) in [
            (&br#"{"name":"n","plugins":[]}"#[..], true),
            (br#"{"plugins":[{"type":"bridge"}]}"#, true),
            (br#"{"name":"n","type":"../../bin/sh"}"#, false),
            (br#"{"name":"n"}"#, false),
            (b"not json", false),
        ] {
            assert!(
                parse(text, list).is_err(),
                "{}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn a_plugin_gets_the_list_name_its_capabilities_and_the_previous_result() {
        let list = parse(
            br#"{"cniVersion":"1.0.0","name":"pods","plugins":[{"type":"portmap","capabilities":{"portMappings":true,"bandwidth":false}}]}"#,
            true,
        )
        .unwrap();
        let mut a = Attachment::default();
        a.capabilities
            .insert("portMappings".into(), json!([{"hostPort": 8080}]));
        a.capabilities.insert("bandwidth".into(), json!({}));
        a.capabilities.insert("dns".into(), json!({}));
        let prev = json!({"ips": []});
        let conf = list.plugin_config(&list.plugins[0], &a, Some(&prev));
        assert_eq!(conf["name"], "pods");
        assert_eq!(conf["cniVersion"], "1.0.0");
        assert_eq!(
            conf["runtimeConfig"],
            json!({"portMappings": [{"hostPort": 8080}]})
        );
        assert_eq!(conf["prevResult"], prev);
    }

    #[test]
    fn addresses_come_from_new_and_old_results() {
        let new = json!({"ips": [{"address": "fd00::5/64"}, {"address": "10.88.0.5/16"}]});
        assert_eq!(
            addresses(&new),
            [
                "10.88.0.5".parse::<IpAddr>().unwrap(),
                "fd00::5".parse().unwrap()
            ]
        );
        let old = json!({"ip4": {"ip": "10.1.0.2/24"}});
        assert_eq!(addresses(&old), ["10.1.0.2".parse::<IpAddr>().unwrap()]);
        assert!(addresses(&Value::Null).is_empty());
    }

    #[test]
    fn the_first_config_by_name_is_used_and_a_missing_dir_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(&dir.path().join("none")).unwrap(), None);
        std::fs::write(
            dir.path().join("20-b.conf"),
            br#"{"name":"b","type":"bridge"}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("10-a.conf"), b"broken").unwrap();
        std::fs::write(
            dir.path().join("30-c.conf"),
            br#"{"name":"c","type":"bridge"}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("05-readme.txt"), b"").unwrap();
        assert_eq!(load(dir.path()).unwrap().unwrap().name, "b");
    }

    #[test]
    fn a_failing_plugin_says_what_it_said() {
        assert_eq!(
            plugin_error(br#"{"code":7,"msg":"no IPs","details":"pool full"}"#, b""),
            "no IPs: pool full"
        );
        assert_eq!(plugin_error(b"", b"boom\n"), "boom");
    }
}
