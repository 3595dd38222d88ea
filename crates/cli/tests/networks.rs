//! Networks: bridges, addresses, isolation between networks, and nothing left behind.
//! Traffic goes only between the host and berth's own containers.

mod common;

use common::Berth;
use std::process::Command;

/// The host's interfaces and nftables tables whose names berth could have made.
fn host_state() -> (Vec<String>, Vec<String>) {
    let links = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("bb-") || n.starts_with("veth"))
        .collect();
    let out = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .unwrap();
    let tables = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("berth_"))
        .map(String::from)
        .collect();
    (links, tables)
}

fn ping(b: &Berth, network: &str, ip: &str) -> bool {
    b.run(&[
        "run",
        "--rm",
        "--network",
        network,
        "busybox:test",
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        ip,
    ])
    .status
    .success()
}

fn ip_of(b: &Berth, container: &str, network: &str) -> String {
    b.inspect(
        container,
        &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"),
    )
}

#[test]
fn containers_on_a_network_reach_each_other_and_no_other_network() {
    require_root!();
    let b = Berth::with_busybox();
    let (links, tables) = host_state();
    let mine = |l: &Vec<String>| -> Vec<String> {
        l.iter()
            .filter(|n| n.contains(&b.network_tag()))
            .cloned()
            .collect()
    };
    b.ok(&["network", "create", "--label", "app=one", "front"]);
    b.ok(&["network", "create", "--subnet", "10.212.9.0/24", "back"]);
    let (_, err) = b.fails(&["network", "create", "front"]);
    assert!(
        err.contains("network with name front already exists"),
        "{err}"
    );
    let (_, err) = b.fails(&["network", "create", "--subnet", "10.212.9.128/25", "clash"]);
    assert!(err.contains("overlaps"), "{err}");
    let ls = b.ok(&["network", "ls"]);
    for n in ["bridge", "front", "back", "host", "none"] {
        assert!(ls.contains(n), "{ls}");
    }
    assert_eq!(
        b.ok(&[
            "network",
            "inspect",
            "-f",
            "{{(index .IPAM.Config 0).Subnet}}",
            "back"
        ])
        .trim(),
        "10.212.9.0/24"
    );
    assert_eq!(
        b.ok(&["network", "inspect", "-f", "{{.Labels.app}}", "front"])
            .trim(),
        "one"
    );
    b.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "front",
        "busybox:test",
        "sleep",
        "1000",
    ]);
    b.ok(&[
        "run",
        "-d",
        "--name",
        "db",
        "--network",
        "back",
        "busybox:test",
        "sleep",
        "1000",
    ]);
    let web = ip_of(&b, "web", "front");
    let db = ip_of(&b, "db", "back");
    assert!(db.starts_with("10.212.9."), "{db}");
    // Same network: reachable; another network or none: not; the host reaches both.
    assert!(ping(&b, "front", &web), "front cannot reach web at {web}");
    assert!(!ping(&b, "back", &web), "back reached web at {web}");
    assert!(!ping(&b, "none", &web));
    assert!(ping(&b, "back", &db));
    let host = Command::new("busybox")
        .args(["ping", "-c", "1", "-W", "2", &web])
        .status()
        .unwrap();
    assert!(host.success());
    // The container knows its name and address; inspect shows both sides.
    let hosts = b.ok(&["exec", "web", "cat", "/etc/hosts"]);
    assert!(hosts.contains(&web), "{hosts}");
    let on = b.ok(&[
        "network",
        "inspect",
        "-f",
        "{{range .Containers}}{{.Name}} {{.IPv4Address}}{{end}}",
        "front",
    ]);
    assert_eq!(on.trim(), format!("web {web}/24"));
    let (_, err) = b.fails(&["network", "rm", "front"]);
    assert!(err.contains("has active endpoints"), "{err}");
    let (_, err) = b.fails(&["network", "rm", "bridge"]);
    assert!(err.contains("pre-defined network"), "{err}");
    let (_, err) = b.fails(&[
        "run",
        "--rm",
        "--network",
        "nowhere",
        "busybox:test",
        "true",
    ]);
    assert!(err.contains("network nowhere not found"), "{err}");
    // A stopped container keeps its address and gets it back.
    b.ok(&["stop", "-t", "0", "web"]);
    b.ok(&["start", "web"]);
    assert_eq!(ip_of(&b, "web", "front"), web);
    b.ok(&["rm", "-f", "web", "db"]);
    assert_eq!(
        b.ok(&["network", "prune", "-f"]).lines().count(),
        3,
        "front and back pruned"
    );
    // Only the default network is left, then nothing at all.
    b.remove_networks();
    let (links_after, tables_after) = host_state();
    assert!(mine(&links_after).is_empty(), "{links_after:?}");
    assert!(
        common::eventually(5, || {
            let now = host_state().0;
            now.iter()
                .filter(|l| l.starts_with("veth") && !links.contains(l))
                .count()
                == 0
        }),
        "veth pairs left: {:?}",
        host_state().0
    );
    assert_eq!(
        tables_after
            .iter()
            .filter(|t| t.contains(&b.network_tag()))
            .count(),
        0,
        "{tables_after:?} (before: {tables:?})"
    );
}

#[test]
fn a_network_whose_bridge_went_with_a_reboot_is_made_again_at_start() {
    require_root!();
    let b = Berth::with_busybox();
    b.ok(&["network", "create", "again"]);
    let bridge = b.inspect_network_bridge("again");
    // What a reboot does: the bridge and the rules are gone, the database is not.
    assert!(Command::new("ip")
        .args(["link", "del", &bridge])
        .status()
        .unwrap()
        .success());
    let table = format!("berth_{}", b.network_tag());
    assert!(Command::new("nft")
        .args(["delete", "table", "inet", &table])
        .status()
        .unwrap()
        .success());
    b.ok(&["run", "--rm", "--network", "again", "busybox:test", "true"]);
    assert!(std::path::Path::new("/sys/class/net")
        .join(&bridge)
        .exists());
    let rules = Command::new("nft")
        .args(["list", "table", "inet", &table])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&rules.stdout).contains(&bridge));
}

#[test]
fn an_internal_network_has_no_way_out() {
    require_root!();
    let b = Berth::with_busybox();
    b.ok(&["network", "create", "--internal", "inside"]);
    let routes = b.ok(&[
        "run",
        "--rm",
        "--network",
        "inside",
        "busybox:test",
        "ip",
        "route",
    ]);
    assert!(!routes.contains("default"), "{routes}");
    assert!(routes.contains("dev eth0"), "{routes}");
    let routes = b.ok(&[
        "run",
        "--rm",
        "--network",
        "bridge",
        "busybox:test",
        "ip",
        "route",
    ]);
    assert!(routes.contains("default via"), "{routes}");
}

/// The host port `port` of `container` is published on, as `port` prints it.
fn host_port(b: &Berth, container: &str, port: &str) -> u16 {
    let out = b.ok(&["port", container, port]);
    out.trim().rsplit(':').next().unwrap().parse().unwrap()
}

/// An HTTP GET of `/` on 127.0.0.1:`port` from the host; the response body.
fn http_get(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split("\r\n\r\n").nth(1).map(String::from)
}

#[test]
fn published_ports_reach_the_container_from_the_host() {
    require_root!();
    let b = Berth::with_busybox();
    let www = b.root.parent().unwrap().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "served by the container\n").unwrap();
    let vol = format!("{}:/www:ro", www.display());
    let port = common::free_port();
    let fixed = format!("{port}:80");
    b.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "bridge",
        "-p",
        &fixed,
        "-p",
        "127.0.0.1::81",
        "-p",
        "127.0.0.1::5353/udp",
        "-v",
        &vol,
        "busybox:test",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/www",
    ]);
    assert!(
        common::eventually(5, || http_get(port).is_some()),
        "nothing answers on 127.0.0.1:{port}"
    );
    assert_eq!(http_get(port).unwrap(), "served by the container\n");
    // `port`, `ps` and inspect say where each port went; a random one was chosen for 81.
    let ports = b.ok(&["port", "web"]);
    assert!(
        ports.contains(&format!("80/tcp -> 0.0.0.0:{port}")),
        "{ports}"
    );
    assert!(host_port(&b, "web", "81") > 0);
    let udp = host_port(&b, "web", "5353/udp");
    let ps = b.ok(&["ps", "--format", "{{.Ports}}"]);
    assert!(ps.contains(&format!("0.0.0.0:{port}->80/tcp")), "{ps}");
    assert_eq!(
        b.inspect(
            "web",
            "{{(index (index .NetworkSettings.Ports \"80/tcp\") 0).HostPort}}"
        ),
        port.to_string()
    );
    // The host ports are taken while the container runs: by another container (a clear
    // error at start) and by anything else on the host.
    let (code, err) = b.fails(&[
        "run",
        "-d",
        "--network",
        "bridge",
        "-p",
        &fixed,
        "busybox:test",
        "sleep",
        "10",
    ]);
    assert_eq!(code, 125);
    assert!(err.contains("port is already allocated"), "{err}");
    assert!(std::net::TcpListener::bind(("0.0.0.0", port)).is_err());
    assert!(std::net::UdpSocket::bind(("127.0.0.1", udp)).is_err());
    // Stopped, the ports are free again and lead nowhere.
    b.ok(&["stop", "-t", "0", "web"]);
    assert!(http_get(port).is_none());
    assert!(std::net::TcpListener::bind(("0.0.0.0", port)).is_ok());
    assert!(std::net::UdpSocket::bind(("127.0.0.1", udp)).is_ok());
    assert_eq!(b.ok(&["port", "web"]), "");
    // Started again, it serves again.
    b.ok(&["start", "web"]);
    assert!(common::eventually(5, || http_get(port).is_some()));
    let (_, err) = b.fails(&["run", "--rm", "-p", "80", "busybox:test", "true"]);
    assert!(err.contains("publishing ports needs a network"), "{err}");
    let (_, err) = b.fails(&[
        "run",
        "--rm",
        "-p",
        "80/sctp",
        "--network",
        "bridge",
        "busybox:test",
        "true",
    ]);
    assert!(err.contains("invalid proto"), "{err}");
}

#[test]
fn publish_all_publishes_every_exposed_port() {
    require_root!();
    let b = Berth::with_busybox();
    let ctx = b.root.parent().unwrap().join("exposing");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:test\nEXPOSE 80 9000/udp\n",
    )
    .unwrap();
    b.ok(&["build", "-q", "-t", "exposing:1", ctx.to_str().unwrap()]);
    b.ok(&[
        "run",
        "-d",
        "--name",
        "all",
        "--network",
        "bridge",
        "-P",
        "exposing:1",
        "sleep",
        "1000",
    ]);
    let ports = b.ok(&["port", "all"]);
    assert!(ports.contains("80/tcp -> 0.0.0.0:"), "{ports}");
    assert!(ports.contains("9000/udp -> 0.0.0.0:"), "{ports}");
}

#[test]
fn containers_resolve_each_other_by_name_on_their_network_only() {
    require_root!();
    let b = Berth::with_busybox();
    b.ok(&["network", "create", "app"]);
    b.ok(&["network", "create", "other"]);
    let id = b
        .ok(&[
            "run",
            "-d",
            "--name",
            "web",
            "--network",
            "app",
            "busybox:test",
            "sleep",
            "1000",
        ])
        .trim()
        .to_string();
    let ip = ip_of(&b, "web", "app");
    let lookup = |net: &str, name: &str| {
        b.run(&[
            "run",
            "--rm",
            "--network",
            net,
            "busybox:test",
            "nslookup",
            name,
        ])
    };
    let out = lookup("app", "web");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&ip));
    let out = lookup("app", &id[..12]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&ip),
        "by short id"
    );
    assert!(ping(&b, "app", "web"));
    // Another network does not know the name; the default network has no name server.
    assert!(!lookup("other", "web").status.success());
    let resolv = b.ok(&[
        "run",
        "--rm",
        "--network",
        "bridge",
        "busybox:test",
        "cat",
        "/etc/resolv.conf",
    ]);
    let gw = b.ok(&[
        "network",
        "inspect",
        "-f",
        "{{(index .IPAM.Config 0).Gateway}}",
        "bridge",
    ]);
    assert!(!resolv.contains(gw.trim()), "{resolv}");
    // Removed, the container's name goes.
    b.ok(&["rm", "-f", "web"]);
    assert!(!lookup("app", "web").status.success());
    // Removed, the network's name server stops.
    let pidfile = std::fs::read_dir(b.run_root.join("dns"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "pid"))
        .expect("a name server's pid file");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .split('-')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    b.ok(&["network", "rm", "app", "other"]);
    assert!(common::eventually(5, || !std::path::Path::new(&format!(
        "/proc/{pid}"
    ))
    .exists()
        || std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z")));
    assert!(!pidfile.exists());
}
