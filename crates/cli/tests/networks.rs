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

/// The gateway of network `net`.
fn gateway_of(b: &Berth, net: &str) -> String {
    b.ok(&[
        "network",
        "inspect",
        "-f",
        "{{(index .IPAM.Config 0).Gateway}}",
        net,
    ])
    .trim()
    .to_string()
}

/// `run --rm FLAGS busybox:test true`, which must fail; its error.
fn refused(b: &Berth, flags: &[&str]) -> String {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["busybox:test", "true"]);
    b.fails(&args).1
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
    // A container created on it but not started is no endpoint in use, as in Docker.
    b.ok(&[
        "create",
        "--name",
        "idle",
        "--network",
        "front",
        "busybox:test",
        "true",
    ]);
    let on = b.ok(&[
        "network",
        "inspect",
        "-f",
        "{{range .Containers}}{{.Name}} {{end}}",
        "front",
    ]);
    assert_eq!(on.trim(), "web");
    b.ok(&["rm", "idle"]);
    let (_, err) = b.fails(&["network", "rm", "front"]);
    assert!(err.contains("has active endpoints"), "{err}");
    let (_, err) = b.fails(&["network", "rm", "bridge"]);
    assert!(err.contains("pre-defined network"), "{err}");
    let err = refused(&b, &["--network", "nowhere"]);
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

#[test]
fn bridges_carry_large_packets_and_the_way_out_the_uplinks_size() {
    require_root!();
    let b = Berth::with_busybox();
    // The routes as iproute2 shows them (busybox's ip leaves metrics out).
    let routes = |id: &str| {
        let out = Command::new("nsenter")
            .arg(format!(
                "--net={}",
                b.run_root.join("netns").join(id).display()
            ))
            .args(["ip", "route", "show", "default"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let id = b
        .ok(&["run", "-d", "busybox:test", "sleep", "1000"])
        .trim()
        .to_string();
    assert_eq!(
        b.ok(&["exec", &id, "cat", "/sys/class/net/eth0/mtu"]),
        "65520\n"
    );
    let uplink = std::fs::read_to_string("/proc/net/route")
        .unwrap()
        .lines()
        .skip(1)
        .find(|l| l.split_whitespace().nth(1) == Some("00000000"))
        .map(|l| l.split_whitespace().next().unwrap().to_string());
    if let Some(i) = uplink {
        let mtu = std::fs::read_to_string(format!("/sys/class/net/{i}/mtu")).unwrap();
        let r = routes(&id);
        assert!(r.contains(&format!("mtu {}", mtu.trim())), "{r}");
    }
    b.ok(&[
        "network",
        "create",
        "-o",
        "com.docker.network.driver.mtu=1400",
        "small",
    ]);
    let id = b
        .ok(&[
            "run",
            "-d",
            "--network",
            "small",
            "busybox:test",
            "sleep",
            "1000",
        ])
        .trim()
        .to_string();
    assert_eq!(
        b.ok(&["exec", &id, "cat", "/sys/class/net/eth0/mtu"]),
        "1400\n"
    );
    let r = routes(&id);
    assert!(r.contains("default via") && !r.contains(" mtu "), "{r}");
    let (_, err) = b.fails(&[
        "network",
        "create",
        "-o",
        "com.docker.network.driver.mtu=9",
        "tiny",
    ]);
    assert!(err.contains("a number from 68 to 65535"), "{err}");
}

/// The host port `port` of `container` is published on, as `port` prints it.
fn host_port(b: &Berth, container: &str, port: &str) -> u16 {
    let out = b.ok(&["port", container, port]);
    out.trim().rsplit(':').next().unwrap().parse().unwrap()
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
        common::eventually(5, || common::http_get(port).is_some()),
        "nothing answers on 127.0.0.1:{port}"
    );
    assert_eq!(common::http_get(port).unwrap(), "served by the container\n");
    // Other containers reach it through the host's address, from another network too.
    b.ok(&["network", "create", "elsewhere"]);
    for net in ["bridge", "elsewhere"] {
        let url = format!("http://{}:{port}/", gateway_of(&b, net));
        let got = b.sh(&["--network", net], &format!("wget -qO- {url}"));
        assert_eq!(got, "served by the container\n", "from {net}");
    }
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
    assert!(common::http_get(port).is_none());
    assert!(std::net::TcpListener::bind(("0.0.0.0", port)).is_ok());
    assert!(std::net::UdpSocket::bind(("127.0.0.1", udp)).is_ok());
    assert_eq!(b.ok(&["port", "web"]), "");
    // Started again, it serves again.
    b.ok(&["start", "web"]);
    assert!(common::eventually(5, || common::http_get(port).is_some()));
    let err = refused(&b, &["--network", "none", "-p", "80"]);
    assert!(err.contains("publishing ports needs a network"), "{err}");
    let err = refused(&b, &["-p", "80/sctp", "--network", "bridge"]);
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
    // --expose adds to the image's.
    b.ok(&[
        "run",
        "-d",
        "--name",
        "more",
        "-P",
        "--expose",
        "7000-7001/udp",
        "exposing:1",
        "sleep",
        "1000",
    ]);
    let ports = b.ok(&["port", "more"]);
    for p in ["80/tcp", "9000/udp", "7000/udp", "7001/udp"] {
        assert!(ports.contains(&format!("{p} -> 0.0.0.0:")), "{p}: {ports}");
    }
    let err = refused(&b, &["--expose", "70-60"]);
    assert!(err.contains("invalid range format for --expose"), "{err}");
}

#[test]
fn containers_resolve_each_other_by_name_on_their_network_only() {
    require_root!();
    let b = Berth::with_busybox();
    b.ok(&["network", "create", "app"]);
    b.ok(&["network", "create", "other"]);
    let id = sleeper(&b, "web", &["--network", "app"]);
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
    let gw = gateway_of(&b, "bridge");
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

/// Runs `sleep 1000` detached as `name` with `extra` flags.
fn sleeper(b: &Berth, name: &str, extra: &[&str]) -> String {
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["busybox:test", "sleep", "1000"]);
    b.ok(&args).trim().to_string()
}

/// Whether container `from` reaches `to` (a name or an address) with one ping.
fn reaches(b: &Berth, from: &str, to: &str) -> bool {
    b.run(&["exec", from, "ping", "-c", "1", "-W", "2", to])
        .status
        .success()
}

#[test]
fn a_running_container_is_connected_to_and_disconnected_from_networks() {
    require_root!();
    let b = Berth::with_busybox();
    b.ok(&["network", "create", "--subnet", "10.213.1.0/24", "alpha"]);
    b.ok(&["network", "create", "beta"]);
    sleeper(
        &b,
        "web",
        &[
            "--network",
            "alpha",
            "--network-alias",
            "www",
            "--ip",
            "10.213.1.50",
        ],
    );
    sleeper(
        &b,
        "db",
        &["--network", "beta", "--mac-address", "02:11:22:33:44:55"],
    );
    assert_eq!(ip_of(&b, "web", "alpha"), "10.213.1.50");
    assert!(b
        .ok(&["exec", "db", "cat", "/sys/class/net/eth0/address"])
        .contains("02:11:22:33:44:55"));
    assert!(
        reaches(&b, "web", "www"),
        "the alias resolves on its network"
    );
    let db = ip_of(&b, "db", "beta");
    assert!(!reaches(&b, "web", &db), "beta reached from alpha");
    assert!(!reaches(&b, "web", "db"));

    // Connected to beta as well: a second interface, the names there, and back.
    b.ok(&["network", "connect", "--alias", "store", "beta", "web"]);
    let addrs = b.ok(&["exec", "web", "ip", "-o", "-4", "addr"]);
    assert!(addrs.contains("eth1"), "{addrs}");
    assert!(reaches(&b, "web", "db"));
    assert!(reaches(&b, "db", "web"));
    assert!(reaches(&b, "db", "store"));
    // Only web, which is on both, resolves beta's names through alpha's name server.
    sleeper(&b, "peer", &["--network", "alpha"]);
    assert!(!reaches(&b, "peer", "db"));
    let aliases = b.inspect(
        "web",
        "{{(index .NetworkSettings.Networks \"alpha\").Aliases}} {{(index .NetworkSettings.Networks \"beta\").Aliases}}",
    );
    assert_eq!(aliases.trim(), "[www] [store]");
    let on_beta = b.ok(&[
        "network",
        "inspect",
        "-f",
        "{{range .Containers}}{{.Name}} {{end}}",
        "beta",
    ]);
    assert!(on_beta.contains("web"), "{on_beta}");

    // Mistakes are refused, one line each.
    let (_, err) = b.fails(&["network", "connect", "beta", "web"]);
    assert!(err.contains("already exists in network beta"), "{err}");
    let (_, err) = b.fails(&["network", "connect", "--ip", "10.213.1.50", "alpha", "db"]);
    assert!(err.contains("Address already in use"), "{err}");
    let err = refused(&b, &["--network", "alpha", "--ip", "10.9.9.9"]);
    assert!(err.contains("contains the IP address 10.9.9.9"), "{err}");
    let err = refused(&b, &["--network-alias", "x"]);
    assert!(err.contains("user defined networks"), "{err}");
    sleeper(&b, "alone", &["--network", "none"]);
    let (_, err) = b.fails(&["network", "connect", "alpha", "alone"]);
    assert!(err.contains("private (none) mode"), "{err}");
    let (_, err) = b.fails(&["network", "disconnect", "alpha", "db"]);
    assert!(err.contains("is not connected to network alpha"), "{err}");

    // Disconnected: the interface and the names go at once.
    b.ok(&["network", "disconnect", "beta", "web"]);
    let addrs = b.ok(&["exec", "web", "ip", "-o", "-4", "addr"]);
    assert!(!addrs.contains("eth1"), "{addrs}");
    assert!(!reaches(&b, "web", &db));
    assert!(!reaches(&b, "web", "db"));

    // A stopped container connected to a network is on it from its next start.
    b.ok(&["stop", "-t", "0", "db"]);
    b.ok(&["network", "connect", "alpha", "db"]);
    b.ok(&["start", "db"]);
    let addrs = b.ok(&["exec", "db", "ip", "-o", "-4", "addr"]);
    assert!(addrs.contains("eth0") && addrs.contains("eth1"), "{addrs}");
    assert!(reaches(&b, "db", "web"));
}

#[test]
fn a_stopped_container_leaves_its_networks_name_server() {
    require_root!();
    let b = Berth::with_busybox();
    b.ok(&["network", "create", "names"]);
    sleeper(&b, "asker", &["--network", "names"]);
    sleeper(&b, "gone", &["--network", "names"]);
    assert!(reaches(&b, "asker", "gone"));
    b.ok(&["stop", "-t", "0", "gone"]);
    let out = b.run(&["exec", "asker", "nslookup", "gone"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("NXDOMAIN"),
        "a stopped container still resolves: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The other container still reaches the name server: the bridge kept its MAC when
    // the stopped container's port left it.
    b.ok(&["start", "gone"]);
    assert!(reaches(&b, "asker", "gone"));
}

#[test]
fn resolv_conf_and_hosts_take_the_dns_and_add_host_flags() {
    require_root!();
    let b = Berth::with_busybox();
    b.ok(&["network", "create", "searching"]);
    let resolv = b.ok(&[
        "run",
        "--rm",
        "--network",
        "searching",
        "--dns-search",
        "example.test",
        "--dns-option",
        "ndots:2",
        "busybox:test",
        "cat",
        "/etc/resolv.conf",
    ]);
    let gw = gateway_of(&b, "searching");
    assert!(
        resolv.starts_with(&format!("nameserver {}", gw.trim())),
        "{resolv}"
    );
    assert!(resolv.contains("search example.test\n"), "{resolv}");
    assert!(resolv.contains("options ndots:2\n"), "{resolv}");
    let resolv = b.ok(&[
        "run",
        "--rm",
        "--dns",
        "10.213.7.53",
        "busybox:test",
        "cat",
        "/etc/resolv.conf",
    ]);
    assert!(resolv.contains("nameserver 10.213.7.53"), "{resolv}");
    let hosts = b.ok(&[
        "run",
        "--rm",
        "--network",
        "searching",
        "--add-host",
        "db.test:10.213.7.9",
        "--add-host",
        "outside:host-gateway",
        "busybox:test",
        "cat",
        "/etc/hosts",
    ]);
    assert!(hosts.contains("10.213.7.9\tdb.test\n"), "{hosts}");
    assert!(
        hosts.contains(&format!("{}\toutside\n", gw.trim())),
        "{hosts}"
    );
}

#[test]
fn the_default_network_is_the_bridge_on_the_subnet_berth_toml_names() {
    require_root!();
    let b = Berth::with_busybox();
    let conf = b.root.parent().unwrap().join("berth.toml");
    std::fs::write(&conf, "[network]\ndefault_subnet = \"10.214.3.0/24\"\n").unwrap();
    let run = |args: &[&str]| {
        b.cmd()
            .env("BERTH_CONFIG", &conf)
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&[
        "run",
        "--rm",
        "busybox:test",
        "ip",
        "-o",
        "-4",
        "addr",
        "show",
        "eth0",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("10.214.3.2/24"),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let id = b.ok(&["create", "busybox:test", "true"]);
    assert_eq!(
        b.inspect(id.trim(), "{{.HostConfig.NetworkMode}}"),
        "bridge"
    );
    std::fs::write(&conf, "[network]\nbip = \"10.214.3.1/24\"\n").unwrap();
    let out = run(&["network", "ls"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("berth.toml: line 2") && err.lines().count() == 1,
        "{err}"
    );
}

/// The elements of this root's published-port maps, as nft lists them.
fn port_elements(b: &Berth) -> String {
    let table = format!("berth_{}_ports", b.network_tag());
    let out = Command::new("nft")
        .args(["list", "table", "inet", &table])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("elements"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Kills the monitor of container `id` with SIGKILL and waits until berth says dead.
fn kill_monitor(b: &Berth, name: &str, id: &str) {
    let st =
        std::fs::read_to_string(b.root.join("containers").join(id).join("state.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&st).unwrap();
    let monitor = v["monitor_pid"].as_i64().unwrap() as i32;
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitor),
        nix::sys::signal::Signal::SIGKILL,
    );
    assert!(common::eventually(5, || b
        .inspect(name, "{{.State.Status}}")
        == "dead"));
}

#[test]
fn a_killed_monitor_leaves_no_port_or_namespace_behind() {
    require_root!();
    let b = Berth::with_busybox();
    let port = common::free_port();
    let publish = format!("127.0.0.1:{port}:80");
    let id = sleeper(&b, "victim", &["-p", &publish]);
    assert!(port_elements(&b).contains(&port.to_string()));
    kill_monitor(&b, "victim", &id);
    // Started again: the port is published anew, nothing of the dead run is in the way.
    b.ok(&["start", "victim"]);
    assert_eq!(b.inspect("victim", "{{.State.Status}}"), "running");
    assert!(port_elements(&b).contains(&port.to_string()));
    kill_monitor(&b, "victim", &id);
    // Removed: no element, no namespace, the host port free.
    b.ok(&["rm", "-f", "victim"]);
    assert_eq!(port_elements(&b), "");
    assert!(!b.run_root.join("netns").join(&id).exists());
    assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
}

/// A static UDP echo server (busybox has none), built with the host's C compiler; None
/// when there is no compiler or static libc here.
fn udp_echo_binary(dir: &std::path::Path) -> Option<std::path::PathBuf> {
    let src = dir.join("udpecho.c");
    std::fs::write(
        &src,
        r#"#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
int main(int argc, char **argv) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(atoi(argv[1]));
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0) return 1;
    for (;;) {
        char b[1500];
        struct sockaddr_in from;
        socklen_t len = sizeof from;
        ssize_t n = recvfrom(s, b, sizeof b, 0, (struct sockaddr *)&from, &len);
        if (n >= 0) sendto(s, b, n, 0, (struct sockaddr *)&from, len);
    }
}
"#,
    )
    .unwrap();
    let bin = dir.join("udpecho");
    let built = Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .ok()?;
    built.success().then_some(bin)
}

#[test]
fn a_published_udp_port_answers_on_loopback() {
    require_root!();
    let b = Berth::with_busybox();
    let ctx = b.root.parent().unwrap().join("udp");
    std::fs::create_dir_all(&ctx).unwrap();
    let Some(_) = udp_echo_binary(&ctx) else {
        eprintln!("skipped: no C compiler with a static libc (apt-get install build-essential)");
        return;
    };
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:test\nCOPY udpecho /bin/udpecho\n",
    )
    .unwrap();
    b.ok(&["build", "-q", "-t", "udpecho:1", ctx.to_str().unwrap()]);
    b.ok(&[
        "run",
        "-d",
        "--name",
        "echo",
        "-p",
        "127.0.0.1::7777/udp",
        "udpecho:1",
        "udpecho",
        "7777",
    ]);
    let port = host_port(&b, "echo", "7777/udp");
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_millis(500)))
        .unwrap();
    let answered = common::eventually(10, || {
        let _ = sock.send_to(b"over udp", ("127.0.0.1", port));
        let mut buf = [0u8; 64];
        matches!(sock.recv_from(&mut buf), Ok((8, _)) if &buf[..8] == b"over udp")
    });
    assert!(answered, "no echo from 127.0.0.1:{port}/udp");
}

#[test]
fn two_hundred_containers_share_one_network() {
    require_root!();
    let b = Berth::with_busybox();
    b.ok(&["network", "create", "--subnet", "10.215.0.0/23", "crowd"]);
    let n = 200;
    for i in 0..n {
        sleeper(&b, &format!("c{i}"), &["--network", "crowd"]);
    }
    let ips: std::collections::BTreeSet<String> = b
        .ok(&[
            "network",
            "inspect",
            "-f",
            "{{range .Containers}}{{.IPv4Address}} {{end}}",
            "crowd",
        ])
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(ips.len(), n, "distinct addresses");
    // The first and the last find each other by name, and a few in between answer.
    assert!(reaches(&b, "c0", &format!("c{}", n - 1)));
    assert!(reaches(&b, &format!("c{}", n - 1), "c0"));
    for i in [37, 101, 163] {
        assert!(reaches(&b, "c0", &format!("c{i}")), "c{i}");
    }
    let ids = b.container_ids();
    let mut args = vec!["rm", "-f"];
    args.extend(ids.iter().map(String::as_str));
    b.ok(&args);
    b.ok(&["network", "rm", "crowd"]);
    assert!(
        common::eventually(10, || !host_state()
            .0
            .iter()
            .any(|l| ids.iter().any(|id| l.contains(&id[..9])))),
        "veth pairs left: {:?}",
        host_state().0
    );
}

#[test]
fn a_container_joins_another_containers_network_namespace() {
    require_root!();
    let b = Berth::with_busybox();
    b.ok(&["network", "create", "shared"]);
    let web = b
        .ok(&[
            "run",
            "-d",
            "--name",
            "web",
            "--network",
            "shared",
            "busybox:test",
            "httpd",
            "-f",
            "-p",
            "127.0.0.1:8080",
            "-h",
            "/etc",
        ])
        .trim()
        .to_string();
    let ip = ip_of(&b, "web", "shared");
    let script = "hostname; ip -o -4 addr show eth0; \
                  for i in 1 2 3 4 5 6 7 8 9 10; do wget -qO- http://127.0.0.1:8080/hostname && break; sleep 0.2; done";
    let out = b.sh(&["--network", "container:web"], script);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some(&web[..12]), "web's hostname: {out}");
    assert!(
        lines.next().unwrap_or("").contains(&ip),
        "web's address: {out}"
    );
    assert_eq!(lines.next(), Some(&web[..12]), "web's loopback: {out}");
    // Its name server too: the joiner resolves web's network's names.
    let out = b.sh(&["--network", "container:web"], "nslookup web");
    assert!(out.contains(&ip), "{out}");

    // A container on no network shares its loopback the same way.
    b.ok(&[
        "run",
        "-d",
        "--name",
        "alone",
        "--network",
        "none",
        "busybox:test",
        "httpd",
        "-f",
        "-p",
        "127.0.0.1:8081",
        "-h",
        "/etc",
    ]);
    let out = b.sh(
        &["--network", "container:alone"],
        "for i in 1 2 3 4 5 6 7 8 9 10; do wget -qO- http://127.0.0.1:8081/hostname && break; sleep 0.2; done",
    );
    assert_eq!(out.trim(), b.inspect("alone", "{{.Config.Hostname}}"));

    // What the other's namespace decides cannot be asked for; a stopped one cannot be joined.
    for (flags, said) in [
        (vec!["-p", "80"], "port publishing"),
        (vec!["--hostname", "x"], "hostname and the network mode"),
        (vec!["--dns", "10.213.7.53"], "dns and the network mode"),
    ] {
        let mut args = vec!["--network", "container:web"];
        args.extend(flags);
        let err = refused(&b, &args);
        assert!(err.contains(said), "{err}");
    }
    let err = refused(&b, &["--network", "container:nosuch"]);
    assert!(err.contains("no such container: nosuch"), "{err}");
    b.ok(&[
        "create",
        "--name",
        "joiner",
        "--network",
        "container:web",
        "busybox:test",
        "sleep",
        "100",
    ]);
    let (_, err) = b.fails(&["network", "connect", "shared", "joiner"]);
    assert!(
        err.contains("cannot be connected to any other network"),
        "{err}"
    );
    b.ok(&["stop", "-t", "0", "web"]);
    let (_, err) = b.fails(&["start", "joiner"]);
    assert!(
        err.contains("cannot join network of a non running container"),
        "{err}"
    );
}
