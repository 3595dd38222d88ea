//! Isolation and NAT with nftables: one table per berth root (`inet berth_<tag>`), written
//! whole from the root's networks by `nft -f -` in one transaction, so it is never half
//! updated and a removed network leaves no rule behind. (Netavark's nftables driver also
//! drives the `nft` tool.)
//!
//! For each network, traffic from its bridge to any other berth bridge is dropped; an
//! internal network's bridge talks to nothing but itself; others are masqueraded when
//! they leave through any other interface.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::ipam::Subnet;
use crate::{NetError, Result};

/// What the firewall needs to know of a network.
#[derive(Debug, Clone)]
pub struct Rules {
    pub bridge: String,
    pub subnet: Subnet,
    pub internal: bool,
}

/// The prefix every bridge berth makes starts with: the isolation rules match on it.
pub const BRIDGE_PREFIX: &str = "bb-";

/// The ruleset of table `inet NAME` for `nets`.
pub fn ruleset(table: &str, nets: &[Rules]) -> String {
    let mut forward = String::new();
    let mut nat = String::new();
    for n in nets {
        let b = &n.bridge;
        if n.internal {
            forward.push_str(&format!(
                "    iifname \"{b}\" oifname != \"{b}\" drop\n    oifname \"{b}\" iifname != \"{b}\" drop\n"
            ));
        } else {
            forward.push_str(&format!(
                "    iifname \"{b}\" oifname \"{BRIDGE_PREFIX}*\" oifname != \"{b}\" drop\n"
            ));
            // Out of the bridge: the host's address. And a connection DNATed back into
            // the bridge it came from (a published port reached through the gateway)
            // too, or the answer would go straight back, from the wrong address.
            nat.push_str(&format!(
                "    ip saddr {s} oifname != \"{b}\" masquerade\n    ip saddr {s} oifname \"{b}\" ct status dnat masquerade\n",
                s = n.subnet
            ));
        }
    }
    format!(
        "table inet {table} {{\n  chain forward {{\n    type filter hook forward priority filter; policy accept;\n    ct status dnat accept\n{forward}  }}\n  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n{nat}  }}\n}}\n"
    )
}

fn nft(script: &str) -> Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            NetError::Firewall(format!("cannot run nft (apt-get install nftables): {e}"))
        })?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(script.as_bytes())
        .map_err(|e| NetError::Firewall(e.to_string()))?;
    let out = child
        .wait_with_output()
        .map_err(|e| NetError::Firewall(e.to_string()))?;
    if !out.status.success() {
        return Err(NetError::Firewall(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(())
}

/// Replaces table `inet NAME` with the rules for `nets`, atomically; with no networks
/// the table goes.
pub fn apply(table: &str, nets: &[Rules]) -> Result<()> {
    // Declaring the table first makes the delete valid when it does not exist yet.
    let mut script = format!("table inet {table}\ndelete table inet {table}\n");
    if !nets.is_empty() {
        script.push_str(&ruleset(table, nets));
    }
    nft(&script)
}

/// A published port: `host_ip` (None: every local address) `proto`/`host_port` leads to
/// `ip`:`port` in a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMap {
    pub host_ip: Option<std::net::Ipv4Addr>,
    pub proto: String,
    pub host_port: u16,
    pub ip: std::net::Ipv4Addr,
    pub port: u16,
}

impl PortMap {
    /// (map, key) of the element that publishes it.
    fn key(&self) -> (&'static str, String) {
        match self.host_ip {
            None => ("any_ports", format!("{} . {}", self.proto, self.host_port)),
            Some(ip) => (
                "ip_ports",
                format!("{ip} . {} . {}", self.proto, self.host_port),
            ),
        }
    }
}

/// The table of published ports (`inet NAME`): destination NAT through two maps that
/// containers' ports are added to and taken from one by one, whatever else changes.
/// Connections from the host to 127.0.0.1 are masqueraded (the bridges accept them with
/// `route_localnet`).
fn ports_table(table: &str) -> String {
    let dnat = "    fib daddr type local dnat ip to ip daddr . meta l4proto . th dport map @ip_ports\n    fib daddr type local dnat ip to meta l4proto . th dport map @any_ports\n";
    format!(
        "table inet {table} {{\n  map any_ports {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}\n  map ip_ports {{ type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }}\n  chain prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n{dnat}  }}\n  chain output {{\n    type nat hook output priority -100; policy accept;\n{dnat}  }}\n  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n    ct status dnat ip saddr 127.0.0.0/8 masquerade\n  }}\n}}\n"
    )
}

fn table_exists(table: &str) -> bool {
    Command::new("nft")
        .args(["list", "table", "inet", table])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Publishes `ports` in table `inet NAME` (made if missing). An element left by a
/// container whose monitor was killed is replaced: the port's reservation (a socket
/// held by the monitor) is what says who has it.
pub fn publish(table: &str, ports: &[PortMap]) -> Result<()> {
    if ports.is_empty() {
        return Ok(());
    }
    if !table_exists(table) {
        nft(&ports_table(table))?;
    }
    unpublish(table, ports);
    let mut script = String::new();
    for p in ports {
        let (map, key) = p.key();
        script.push_str(&format!(
            "add element inet {table} {map} {{ {key} : {} . {} }}\n",
            p.ip, p.port
        ));
    }
    nft(&script)
}

/// Takes `ports` out of table `inet NAME`; missing ones are fine.
pub fn unpublish(table: &str, ports: &[PortMap]) {
    for p in ports {
        let (map, key) = p.key();
        let _ = nft(&format!("delete element inet {table} {map} {{ {key} }}\n"));
    }
}

/// Removes table `inet NAME`, if it is there.
pub fn remove_table(table: &str) -> Result<()> {
    nft(&format!("table inet {table}\ndelete table inet {table}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_isolate_bridges_and_masquerade_only_outside_ones() {
        let text = ruleset(
            "berth_x",
            &[
                Rules {
                    bridge: "bb-one".into(),
                    subnet: "10.210.0.0/24".parse().unwrap(),
                    internal: false,
                },
                Rules {
                    bridge: "bb-two".into(),
                    subnet: "10.210.1.0/24".parse().unwrap(),
                    internal: true,
                },
            ],
        );
        assert!(text.contains("iifname \"bb-one\" oifname \"bb-*\" oifname != \"bb-one\" drop"));
        assert!(text.contains("ip saddr 10.210.0.0/24 oifname != \"bb-one\" masquerade"));
        assert!(
            text.contains("ip saddr 10.210.0.0/24 oifname \"bb-one\" ct status dnat masquerade")
        );
        assert!(text.contains("iifname \"bb-two\" oifname != \"bb-two\" drop"));
        assert!(
            !text.contains("10.210.1.0/24"),
            "no NAT for an internal network"
        );
    }
}
