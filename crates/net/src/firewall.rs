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
            nat.push_str(&format!(
                "    ip saddr {} oifname != \"{b}\" masquerade\n",
                n.subnet
            ));
        }
    }
    format!(
        "table inet {table} {{\n  chain forward {{\n    type filter hook forward priority filter; policy accept;\n{forward}  }}\n  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n{nat}  }}\n}}\n"
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
        assert!(text.contains("iifname \"bb-two\" oifname != \"bb-two\" drop"));
        assert!(
            !text.contains("10.210.1.0/24"),
            "no NAT for an internal network"
        );
    }
}
