//! Bridges, veth pairs and namespaces for real (as root): two namespaces on one bridge
//! reach each other, and everything goes again.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

use berth_net::ipam::{mac_for, Subnet};
use berth_net::link::{self, Attachment};
use berth_net::netns;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Removes what the test made, even when it fails.
struct Cleanup {
    bridge: String,
    namespaces: Vec<PathBuf>,
    dir: tempfile::TempDir,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for n in &self.namespaces {
            let _ = netns::remove(n);
        }
        let _ = link::delete_link(&self.bridge);
    }
}

fn ping_from(ns: &std::path::Path, ip: Ipv4Addr) -> bool {
    Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .args(["busybox", "ping", "-c", "1", "-W", "2", &ip.to_string()])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn two_namespaces_on_a_bridge_reach_each_other_and_nothing_is_left() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let tag = format!("{:x}", std::process::id());
    let subnet: Subnet = "10.211.77.0/24".parse().unwrap();
    let gw = subnet.gateway().unwrap();
    let mut c = Cleanup {
        bridge: format!("bb-t{tag}"),
        namespaces: Vec::new(),
        dir: tempfile::tempdir().unwrap(),
    };
    link::ensure_bridge(&c.bridge, gw, 24, 65520).unwrap();
    link::ensure_bridge(&c.bridge, gw, 24, 65520).unwrap(); // again: kept as it is
    let mut ips = Vec::new();
    for i in 0..2u8 {
        let ns = c.dir.path().join(format!("ns{i}"));
        netns::create(&ns).unwrap();
        c.namespaces.push(ns.clone());
        let ip = Ipv4Addr::new(10, 211, 77, 10 + i);
        link::attach(
            &ns,
            &Attachment {
                bridge: c.bridge.clone(),
                host_if: format!("vt{tag}{i}"),
                ip,
                prefix: 24,
                gateway: Some(gw),
                mac: mac_for(ip),
                name: "eth0".into(),
                mtu: 65520,
                route_mtu: Some(1500),
            },
        )
        .unwrap();
        ips.push(ip);
    }
    assert!(ping_from(&c.namespaces[0], ips[1]), "ns0 cannot reach ns1");
    // Large packets on the bridge; the way out sized for the uplink.
    let inside = |args: &[&str]| {
        let out = std::process::Command::new("nsenter")
            .arg(format!("--net={}", c.namespaces[0].display()))
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(inside(&["ip", "link", "show", "eth0"]).contains("mtu 65520"));
    assert!(inside(&["ip", "route", "show", "default"]).contains("mtu 1500"));
    assert!(
        ping_from(&c.namespaces[1], gw),
        "ns1 cannot reach the gateway"
    );
    // Removing a namespace takes its veth pair with it.
    for n in std::mem::take(&mut c.namespaces) {
        netns::remove(&n).unwrap();
        assert!(!n.exists());
    }
    assert!(
        (0..50).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            !link::link_exists(&format!("vt{tag}0")).unwrap()
        }),
        "the host end of the veth outlived its namespace"
    );
    link::delete_link(&c.bridge).unwrap();
    assert!(!link::link_exists(&c.bridge).unwrap());
}

#[test]
fn attaching_replaces_a_veth_left_by_a_namespace_not_yet_destroyed() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let tag = format!("{:x}", std::process::id());
    let subnet: Subnet = "10.211.78.0/24".parse().unwrap();
    let gw = subnet.gateway().unwrap();
    let mut c = Cleanup {
        bridge: format!("bb-u{tag}"),
        namespaces: Vec::new(),
        dir: tempfile::tempdir().unwrap(),
    };
    link::ensure_bridge(&c.bridge, gw, 24, 65520).unwrap();
    let ip = Ipv4Addr::new(10, 211, 78, 10);
    let a = Attachment {
        bridge: c.bridge.clone(),
        host_if: format!("vu{tag}"),
        ip,
        prefix: 24,
        gateway: Some(gw),
        mac: mac_for(ip),
        name: "eth0".into(),
        mtu: 1500,
        route_mtu: None,
    };
    let first = c.dir.path().join("first");
    netns::create(&first).unwrap();
    c.namespaces.push(first.clone());
    link::attach(&first, &a).unwrap();
    // The first namespace is still alive (pinned) when the container starts again with
    // a new one: the old pair must give way.
    let second = c.dir.path().join("second");
    netns::create(&second).unwrap();
    c.namespaces.push(second.clone());
    link::attach(&second, &a).unwrap();
    assert!(ping_from(&second, gw));
}
