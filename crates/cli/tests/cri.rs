//! `berth cri`: the Kubernetes CRI over the engine, driven by crictl from the shared CRI
//! kit (`../shared/tools/cri/`, beside the checkout).

mod common;

use common::cri::{crictl_path, endpoint_of, CgroupParent, CniNet, Cri, CNI_BIN};
use common::{berth_registry, Berth};
use std::io::Write;
use std::path::Path;
use std::process::Command;

#[test]
fn crictl_sees_berths_images_pulls_and_removes_them() {
    require_root!();
    if !crictl_path().exists() {
        eprintln!("skipped: no crictl at {}", crictl_path().display());
        return;
    }
    let b = Berth::with_busybox();
    let cri = Cri::start(&b);
    // `berth cri` hands over to the `berth-cri` beside it: the service is that binary.
    let exe = std::fs::read_link(format!("/proc/{}/exe", cri.child.id())).unwrap();
    assert!(exe.ends_with("berth-cri"), "{}", exe.display());
    let version = cri.ok(&["version"]);
    assert!(version.contains("RuntimeName:  berth"), "{version}");
    assert!(version.contains("RuntimeApiVersion:  v1"), "{version}");
    // What the CLI has, kubelet sees.
    let images = cri.ok(&["images"]);
    assert!(
        images
            .lines()
            .any(|l| l.starts_with("docker.io/library/busybox")
                && l.split_whitespace().nth(1) == Some("test")),
        "{images}"
    );
    let id = b.ok(&["image", "inspect", "-f", "{{.Id}}", "busybox:test"]);
    assert_eq!(cri.ok(&["images", "-q"]).trim(), id.trim());
    let status = cri.ok(&["inspecti", "busybox:test"]);
    assert!(status.contains(id.trim()), "{status}");
    let fs = cri.ok(&["imagefsinfo"]);
    assert!(fs.contains("usedBytes"), "{fs}");
    // Pulled through CRI from a registry, then seen by the CLI; removed through CRI.
    let reg = berth_registry(&[]);
    let name = format!("{}/cri/bb:1", reg.host);
    b.ok(&["tag", "busybox:test", &name]);
    b.ok(&["push", &name]);
    b.ok(&["rmi", &name]);
    let pulled = cri.ok(&["pull", &name]);
    assert!(pulled.contains(id.trim()), "{pulled}");
    assert!(b.ok(&["images"]).contains(&format!("{}/cri/bb", reg.host)));
    cri.ok(&["rmi", &name]);
    assert!(!cri.ok(&["images"]).contains("/cri/bb"));
    assert!(!b.ok(&["images"]).contains("/cri/bb"));
    let (ok, _, err) = cri.crictl(&["inspecti", &name]);
    assert!(!ok && err.contains("no such image"), "{err}");
    // Checkpoints are not there yet, and the service says so rather than pretend.
    let (ok, _, err) = cri.crictl(&["checkpoint", "--export", "/nonexistent/c.tar", "abc"]);
    assert!(!ok, "checkpoint should be refused");
    assert!(
        err.contains("CheckpointContainer is not implemented yet in berth's CRI service"),
        "{err}"
    );
    // With no CNI configuration, pods have no network yet, and kubelet is told.
    let info = cri.ok(&["info"]);
    assert!(info.contains("NetworkPluginNotReady"), "{info}");
    assert!(info.contains("no CNI network configuration in"), "{info}");
    let config = cri.ok(&["runtime-config"]);
    assert!(config.contains("CGROUPFS"), "{config}");
    // A clean stop takes its socket away.
    let socket = cri.socket.clone();
    drop(cri);
    assert!(!socket.exists());
    // Without a `berth-cri` beside it, `berth cri` serves by itself.
    let alone = b.root.parent().unwrap().join("alone");
    std::fs::create_dir_all(&alone).unwrap();
    std::fs::copy(common::berth_bin(), alone.join("berth")).unwrap();
    let mut own = Command::new(alone.join("berth"))
        .arg("--root")
        .arg(&b.root)
        .arg("--run-root")
        .arg(&b.run_root)
        .args(["cri", "--listen", &format!("unix://{}", socket.display())])
        .spawn()
        .unwrap();
    let endpoint = format!("unix://{}", socket.display());
    let up = common::eventually(10, || common::cri::crictl_at(&endpoint, &["version"]).0);
    let exe = std::fs::read_link(format!("/proc/{}/exe", own.id())).unwrap();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(own.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = own.wait();
    assert!(up, "berth cri alone did not serve");
    assert_eq!(exe, alone.join("berth"));
    // A file that is not a socket is never removed to listen there.
    std::fs::write(&socket, "keep").unwrap();
    let out = b
        .cmd()
        .args(["cri", "--listen", &format!("unix://{}", socket.display())])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(std::fs::read_to_string(&socket).unwrap(), "keep");
}

#[test]
fn an_image_whose_config_is_unreadable_does_not_hide_the_others() {
    require_root!();
    if !crictl_path().exists() {
        eprintln!("skipped: no crictl at {}", crictl_path().display());
        return;
    }
    let b = Berth::with_busybox();
    b.ok(&["run", "--name", "mk", "busybox:test", "touch", "/x"]);
    b.ok(&["commit", "mk", "other:1"]);
    let id = b.ok(&["image", "inspect", "-f", "{{.Id}}", "busybox:test"]);
    let hex = id.trim().trim_start_matches("sha256:");
    std::fs::remove_file(b.root.join("blobs/sha256").join(hex)).unwrap();
    let cri = Cri::start(&b);
    let images = cri.ok(&["images"]);
    assert!(images.contains("docker.io/library/busybox"), "{images}");
    assert!(images.contains("docker.io/library/other"), "{images}");
}

#[test]
fn names_under_a_registry_prefix_are_pulled_from_its_mirror() {
    require_root!();
    let b = Berth::with_busybox();
    let reg = berth_registry(&[]);
    b.ok(&[
        "tag",
        "busybox:test",
        &format!("{}/cri-tools/bb:1", reg.host),
    ]);
    b.ok(&["push", &format!("{}/cri-tools/bb:1", reg.host)]);
    // The names' location is a closed loopback port (tests send nothing beyond this
    // machine): only the mirror can answer.
    let conf = b.root.parent().unwrap().join("berth.toml");
    std::fs::write(
        &conf,
        format!(
            "[[registry]]\nprefix = \"gcr.io/k8s-staging\"\nlocation = \"127.0.0.1:1/k8s-staging\"\n\
             insecure = true\n[[registry.mirror]]\nlocation = \"{}/cri-tools\"\ninsecure = true\n",
            reg.host
        ),
    )
    .unwrap();
    let pull = |name: &str| {
        b.cmd()
            .env("BERTH_CONFIG", &conf)
            .args(["pull", name])
            .output()
            .unwrap()
    };
    let out = pull("gcr.io/k8s-staging/bb:1");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(b.ok(&["images"]).contains("gcr.io/k8s-staging/bb"));
    // A name the mirror lacks falls through to the location, whose error is told.
    let out = pull("gcr.io/k8s-staging/missing:1");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("127.0.0.1:1"), "{err}");
    // And kubelet's pulls go the same way.
    if !crictl_path().exists() {
        eprintln!(
            "skipped the crictl part: no crictl at {}",
            crictl_path().display()
        );
        return;
    }
    b.ok(&["rmi", "gcr.io/k8s-staging/bb:1"]);
    let cri = Cri::start_with(&b, &[("BERTH_CONFIG", &conf)]);
    cri.ok(&["pull", "gcr.io/k8s-staging/bb:1"]);
    assert!(cri.ok(&["images"]).contains("gcr.io/k8s-staging/bb"));
}

#[test]
fn a_mirror_that_sends_other_content_than_the_digest_is_passed_over() {
    require_root!();
    let b = Berth::with_busybox();
    let reg = berth_registry(&[]);
    let name = format!("{}/cri-tools/bb:1", reg.host);
    b.ok(&["tag", "busybox:test", &name]);
    b.ok(&["push", &name]);
    let digest = b.ok(&["image", "inspect", "-f", "{{index .RepoDigests 0}}", &name]);
    let digest = digest.trim().rsplit('@').next().unwrap().to_string();
    b.ok(&["rmi", &name]);
    // A "mirror" on a loopback port that answers every manifest with the same document.
    let port = common::free_port();
    let mut liar = Command::new("python3")
        .args(["-c", &format!(
            "import http.server\n\
             class H(http.server.BaseHTTPRequestHandler):\n\
             \tdef do_GET(self):\n\
             \t\tbody=b'{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{{}},\"layers\":[]}}'\n\
             \t\tself.send_response(200)\n\
             \t\tself.send_header('Content-Type','application/vnd.oci.image.manifest.v1+json')\n\
             \t\tself.send_header('Content-Length',str(len(body)))\n\
             \t\tself.end_headers()\n\
             \t\tself.wfile.write(body)\n\
             \tdo_HEAD=do_GET\n\
             http.server.HTTPServer(('127.0.0.1',{port}),H).serve_forever()\n"
        )])
        .spawn()
        .unwrap();
    assert!(common::eventually(10, || std::net::TcpStream::connect((
        "127.0.0.1",
        port
    ))
    .is_ok()));
    let conf = b.root.parent().unwrap().join("berth.toml");
    std::fs::write(
        &conf,
        format!(
            "[[registry]]\nprefix = \"{0}\"\nlocation = \"{0}\"\ninsecure = true\n\
             [[registry.mirror]]\nlocation = \"127.0.0.1:{port}\"\ninsecure = true\n",
            reg.host
        ),
    )
    .unwrap();
    let by_digest = format!("{}/cri-tools/bb@{digest}", reg.host);
    let out = b
        .cmd()
        .env("BERTH_CONFIG", &conf)
        .args(["pull", &by_digest])
        .output()
        .unwrap();
    let _ = liar.kill();
    let _ = liar.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_pull_with_the_credentials_kubelet_gives_reaches_a_private_registry() {
    require_root!();
    if !crictl_path().exists() {
        eprintln!("skipped: no crictl at {}", crictl_path().display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    if !common::htpasswd(&htpasswd, &[("alice", "alice-pw")]) {
        eprintln!("skipped: htpasswd (apache2-utils) not installed");
        return;
    }
    let config = dir.path().join("registry.toml");
    std::fs::write(
        &config,
        "[[access]]\nusers = [\"alice\"]\nrepositories = [\"*\"]\nactions = [\"pull\", \"push\"]\n",
    )
    .unwrap();
    let reg = berth_registry(&[
        "--htpasswd",
        htpasswd.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    // Pushed with a login that is then forgotten: only the pull's own credentials count.
    let b = Berth::with_busybox();
    let name = format!("{}/private/bb:1", reg.host);
    b.ok(&["tag", "busybox:test", &name]);
    assert!(b.login(&reg.host, "alice", "alice-pw").status.success());
    b.ok(&["push", &name]);
    b.ok(&["logout", &reg.host]);
    b.ok(&["rmi", &name]);
    let cri = Cri::start(&b);
    let (ok, _, err) = cri.crictl(&["pull", &name]);
    assert!(!ok, "a pull without credentials should be refused");
    assert!(!err.is_empty());
    let (ok, _, err) = cri.crictl(&["pull", "--creds", "alice:wrong", &name]);
    assert!(!ok, "a wrong password should be refused: {err}");
    cri.ok(&["pull", "--creds", "alice:alice-pw", &name]);
    assert!(cri.ok(&["images"]).contains("/private/bb"));
    cri.ok(&["rmi", &name]);
    // `auth`, as kubelet sends it from an image pull secret.
    cri.ok(&["pull", "--auth", "YWxpY2U6YWxpY2UtcHc=", &name]);
    assert!(b.ok(&["images"]).contains("/private/bb"));
}

/// The host PID of a pod's init, from `inspectp`'s verbose info.
fn pod_init(status: &serde_json::Value) -> i32 {
    status["info"]["record"]["init_pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("{status}")) as i32
}

/// Runs `args` in the namespace `kind` pinned at `ns`: its stdout.
fn nsenter(kind: &str, ns: &Path, args: &[&str]) -> String {
    let out = Command::new("nsenter")
        .arg(format!("--{kind}={}", ns.display()))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nsenter {kind} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_pod_sandbox_gets_its_namespaces_and_an_address_from_cni() {
    require_root!();
    if !crictl_path().exists() || !Path::new(CNI_BIN).join("bridge").exists() {
        eprintln!("skipped: needs crictl and Debian's containernetworking-plugins");
        return;
    }
    let b = Berth::new();
    let parent = CgroupParent(format!("/bt-podcg-{}", std::process::id()));
    let net = CniNet::new(&b, 1);
    let cri = Cri::start(&b);
    let info = cri.ok(&["info"]);
    assert!(!info.contains("NetworkPluginNotReady"), "{info}");
    let pod = b.root.parent().unwrap().join("pod.json");
    std::fs::write(
        &pod,
        serde_json::to_vec(&serde_json::json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u-1", "attempt": 1},
            "hostname": "web-0",
            "labels": {"app": "web"},
            "dns_config": {"servers": ["10.251.1.1"], "searches": ["svc.local"], "options": ["ndots:5"]},
            "linux": {
                "cgroup_parent": parent.0,
                "sysctls": {
                    "net.ipv4.ip_unprivileged_port_start": "80",
                    "kernel.shm_rmid_forced": "1",
                },
            },
        }))
        .unwrap(),
    )
    .unwrap();
    let id = cri.ok(&["runp", pod.to_str().unwrap()]).trim().to_string();
    assert_eq!(id.len(), 64, "{id}");
    // The same pod and attempt twice is a conflict.
    let (ok, _, err) = cri.crictl(&["runp", pod.to_str().unwrap()]);
    assert!(!ok && err.contains("exists already"), "{err}");

    let listed = cri.ok(&["pods"]);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&id[..13]) && l.contains("Ready") && l.contains("web")),
        "{listed}"
    );
    assert_eq!(cri.ok(&["pods", "-q", "--label", "app=web"]).trim(), id);
    assert_eq!(cri.ok(&["pods", "-q", "--label", "app=db"]).trim(), "");
    assert_eq!(cri.ok(&["pods", "-q", "--state", "notready"]).trim(), "");

    let status: serde_json::Value =
        serde_json::from_str(&cri.ok(&["inspectp", "-o", "json", &id])).unwrap();
    assert_eq!(status["status"]["state"], "SANDBOX_READY", "{status}");
    let ip = status["status"]["network"]["ip"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(ip.starts_with("10.251.1."), "{status}");
    assert_eq!(net.allocated(), std::slice::from_ref(&ip));

    // The namespaces, as kubelet asked for them.
    let dir = b.run_root.join("pods").join(&id);
    let addrs = nsenter("net", &dir.join("net"), &["ip", "-4", "-o", "addr"]);
    assert!(addrs.contains(&format!("eth0    inet {ip}/24")), "{addrs}");
    assert!(addrs.contains("lo    inet 127.0.0.1/8"), "{addrs}");
    assert_eq!(
        nsenter(
            "net",
            &dir.join("net"),
            &["cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"]
        )
        .trim(),
        "80"
    );
    assert_eq!(
        nsenter(
            "ipc",
            &dir.join("ipc"),
            &["cat", "/proc/sys/kernel/shm_rmid_forced"]
        )
        .trim(),
        "1"
    );
    assert_eq!(
        nsenter("uts", &dir.join("uts"), &["hostname"]).trim(),
        "web-0"
    );
    // crictl's default: one PID namespace for the pod, whose PID 1 is berth's pod init,
    // holding no capability.
    let init = pod_init(&status);
    let proc_status = std::fs::read_to_string(format!("/proc/{init}/status")).unwrap();
    assert!(
        proc_status.contains("Name:\tberth-pod-init"),
        "{proc_status}"
    );
    assert!(
        proc_status.contains(&format!("NSpid:\t{init}\t1\n")),
        "{proc_status}"
    );
    assert!(
        proc_status.contains("CapEff:\t0000000000000000"),
        "{proc_status}"
    );
    // In kubelet's pod cgroup, in every hierarchy the containers are in.
    let pod_cgroup = format!("{}/{id}", parent.0);
    let cgroups = std::fs::read_to_string(format!("/proc/{init}/cgroup")).unwrap();
    let memory = cgroups
        .lines()
        .find(|l| {
            l.split(':')
                .nth(1)
                .is_some_and(|c| c.split(',').any(|c| c == "memory"))
                || l.starts_with("0::")
        })
        .unwrap_or_default();
    assert!(memory.ends_with(&format!(":{pod_cgroup}")), "{cgroups}");
    let resolv = std::fs::read_to_string(dir.join("resolv.conf")).unwrap();
    assert_eq!(
        resolv,
        "search svc.local\nnameserver 10.251.1.1\noptions ndots:5\n"
    );
    // The host's own values did not move.
    assert_ne!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
            .unwrap()
            .trim(),
        "80"
    );

    // Killing the service leaves the pod; a new one serves it again.
    let socket = cri.socket.clone();
    let mut cri = cri;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(cri.child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = cri.child.wait();
    drop(cri);
    let _ = std::fs::remove_file(&socket);
    let cri = Cri::start(&b);
    assert_eq!(cri.ok(&["pods", "-q", "--state", "ready"]).trim(), id);

    // Stopped: the network and namespaces go, the address is given back, the pod stays.
    cri.ok(&["stopp", &id]);
    cri.ok(&["stopp", &id]);
    assert_eq!(cri.ok(&["pods", "-q", "--state", "notready"]).trim(), id);
    assert!(net.allocated().is_empty(), "{:?}", net.allocated());
    assert!(!dir.join("net").exists());
    // The pod's init has ended (its reaping is the host init's business).
    let ended = std::fs::read_to_string(format!("/proc/{init}/stat")).map_or(true, |s| {
        s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    });
    assert!(ended, "the pod's init {init} still runs");
    let left: Vec<_> = ["memory", "cpuset", "pids", ""]
        .iter()
        .map(|h| {
            Path::new("/sys/fs/cgroup")
                .join(h)
                .join(pod_cgroup.trim_start_matches('/'))
        })
        .filter(|d| d.exists())
        .collect();
    assert!(left.is_empty(), "the pod's cgroup is left: {left:?}");
    cri.ok(&["rmp", &id]);
    assert_eq!(cri.ok(&["pods", "-q"]).trim(), "");
    assert!(!dir.exists());
}

#[test]
fn a_pod_whose_namespaces_went_with_a_reboot_is_not_ready_and_can_be_removed() {
    require_root!();
    if !crictl_path().exists() || !Path::new(CNI_BIN).join("bridge").exists() {
        eprintln!("skipped: needs crictl and Debian's containernetworking-plugins");
        return;
    }
    let b = Berth::new();
    let net = CniNet::new(&b, 2);
    let cri = Cri::start(&b);
    let pod = b.root.parent().unwrap().join("pod.json");
    std::fs::write(
        &pod,
        r#"{"metadata": {"name": "db", "namespace": "ns2", "uid": "u-2"}}"#,
    )
    .unwrap();
    let id = cri.ok(&["runp", pod.to_str().unwrap()]).trim().to_string();
    // What a reboot does: the pod's init and the pins in the run root are gone.
    let status: serde_json::Value =
        serde_json::from_str(&cri.ok(&["inspectp", "-o", "json", &id])).unwrap();
    let init = pod_init(&status);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(init),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let dir = b.run_root.join("pods").join(&id);
    for ns in ["net", "ipc", "uts", "pid"] {
        nix::mount::umount2(&dir.join(ns), nix::mount::MntFlags::MNT_DETACH).unwrap();
    }
    assert_eq!(cri.ok(&["pods", "-q", "--state", "notready"]).trim(), id);
    // kubelet's usual calls clean it up, its address included.
    cri.ok(&["stopp", &id]);
    cri.ok(&["rmp", &id]);
    assert!(net.allocated().is_empty(), "{:?}", net.allocated());
    assert!(!dir.exists());
    // A pod on a network with no configuration is refused, and leaves nothing.
    std::fs::remove_file(b.root.parent().unwrap().join("cni/10-test.conflist")).unwrap();
    let (ok, _, err) = cri.crictl(&["runp", pod.to_str().unwrap()]);
    assert!(!ok && err.contains("no CNI network configuration"), "{err}");
    assert_eq!(cri.ok(&["pods", "-q"]).trim(), "");
    // A sysctl of the host's is refused by name.
    std::fs::write(
        &pod,
        r#"{"metadata": {"name": "db", "namespace": "ns2", "uid": "u-2"}, "linux": {"sysctls": {"kernel.panic": "1"}}}"#,
    )
    .unwrap();
    let (ok, _, err) = cri.crictl(&["runp", pod.to_str().unwrap()]);
    assert!(
        !ok && err.contains("kernel.panic") && err.contains("is not allowed: it is not namespaced"),
        "{err}"
    );
}

/// Writes `value` as JSON at `dir/name`; returns the path as a string.
fn write_json(dir: &Path, name: &str, value: serde_json::Value) -> String {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_vec(&value).unwrap()).unwrap();
    p.display().to_string()
}

#[test]
fn containers_of_a_pod_share_its_localhost_names_and_pids_and_log_for_kubelet() {
    require_root!();
    if !crictl_path().exists() || !Path::new(CNI_BIN).join("bridge").exists() {
        eprintln!("skipped: needs crictl and Debian's containernetworking-plugins");
        return;
    }
    let b = Berth::with_busybox();
    let _net = CniNet::new(&b, 3);
    let cri = Cri::start(&b);
    let base = b.root.parent().unwrap().to_path_buf();
    let logs = base.join("logs");
    let pod_json = serde_json::json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "u-3"},
        "hostname": "web-0",
        "log_directory": logs,
    });
    let pod = write_json(&base, "pod.json", pod_json);
    let server = write_json(
        &base,
        "server.json",
        serde_json::json!({
            "metadata": {"name": "server"},
            "image": {"image": "busybox:test"},
            "command": ["sh", "-c"],
            "args": ["hostname; mkdir -p /www && echo hello-from-server > /www/index.html && exec httpd -f -p 8080 -h /www"],
            "log_path": "server/0.log",
            "labels": {"role": "server"},
        }),
    );
    let client = write_json(
        &base,
        "client.json",
        serde_json::json!({
            "metadata": {"name": "client"},
            "image": {"image": "busybox:test"},
            "command": ["sh", "-c"],
            "args": ["for i in $(seq 50); do wget -qO- http://127.0.0.1:8080/ && break; sleep 0.1; done; tr '\\0' ' ' < /proc/1/cmdline; echo; echo $GREETING >&2"],
            "envs": [{"key": "GREETING", "value": "bye"}],
            "log_path": "client/0.log",
        }),
    );
    let pod_id = cri.ok(&["runp", &pod]).trim().to_string();
    // kubelet's evented PLEG: the events of the pod's containers, as they happen.
    let mut events = Command::new(crictl_path())
        .args([
            "--runtime-endpoint",
            &format!("unix://{}", cri.socket.display()),
        ])
        .args(["events", "-o", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut events_out = events.stdout.take().unwrap();
    let collected = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = std::io::Read::read(&mut events_out, &mut buf) {
            if n == 0 {
                break;
            }
            collected
                .lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    let server_id = cri
        .ok(&["create", &pod_id, &server, &pod])
        .trim()
        .to_string();
    assert_eq!(server_id.len(), 64, "{server_id}");
    let listed = cri.ok(&["ps", "-a", "-q", "--state", "created"]);
    assert_eq!(listed.trim(), server_id);
    cri.ok(&["start", &server_id]);
    let client_id = cri
        .ok(&["create", &pod_id, &client, &pod])
        .trim()
        .to_string();
    cri.ok(&["start", &client_id]);
    let exited = common::eventually(20, || {
        cri.ok(&["ps", "-a", "-q", "--state", "exited"]).trim() == client_id
    });
    assert!(exited, "{}", cri.ok(&["ps", "-a"]));

    // The events come within the service's poll (100 ms).
    common::eventually(5, || {
        seen.lock().unwrap().contains("CONTAINER_STOPPED_EVENT")
    });
    let _ = events.kill();
    let _ = events.wait();
    let seen = seen.lock().unwrap().clone();
    for kind in [
        "CONTAINER_CREATED_EVENT",
        "CONTAINER_STARTED_EVENT",
        "CONTAINER_STOPPED_EVENT",
    ] {
        assert!(seen.contains(kind), "no {kind} in {seen}");
    }
    assert!(seen.contains(&client_id), "{seen}");
    // The client reached the server on the pod's localhost, saw the pod's init as PID 1.
    let out = cri.ok(&["logs", &client_id]);
    assert!(out.contains("hello-from-server"), "{out}");
    assert!(out.contains("berth-pod-init"), "{out}");
    let status: serde_json::Value =
        serde_json::from_str(&cri.ok(&["inspect", "-o", "json", &client_id])).unwrap();
    let st = &status["status"];
    assert_eq!(st["state"], "CONTAINER_EXITED", "{status}");
    assert_eq!(st["exitCode"], 0, "{status}");
    assert_eq!(st["reason"], "Completed", "{status}");
    assert_eq!(st["metadata"]["name"], "client", "{status}");
    assert_eq!(st["image"]["image"], "busybox:test", "{status}");
    // The log is in the CRI format, at the path kubelet gave.
    let log_path = logs.join("client/0.log");
    assert_eq!(st["logPath"], log_path.display().to_string(), "{status}");
    let log = std::fs::read_to_string(&log_path).unwrap();
    let stderr_line = log.lines().find(|l| l.contains(" stderr ")).unwrap();
    let fields: Vec<&str> = stderr_line.splitn(4, ' ').collect();
    assert_eq!(fields[1..], ["stderr", "F", "bye"], "{log}");
    assert!(fields[0].ends_with('Z'), "{log}");

    // The server runs with the pod's hostname; labels filter.
    let running = cri.ok(&["ps", "-q", "--label", "role=server"]);
    assert_eq!(running.trim(), server_id);
    assert!(cri.ok(&["logs", &server_id]).starts_with("web-0\n"));
    // Exec through the streaming server (SPDY, as kubectl's goes through kubelet).
    let streamed = Command::new(crictl_path())
        .args(["--runtime-endpoint", &endpoint_of(&cri), "exec", "-i"])
        .args([
            &server_id,
            "sh",
            "-c",
            "read line; echo got-$line; echo e >&2; exit 4",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut streamed = streamed;
    streamed
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello\n")
        .unwrap();
    let out = streamed.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "got-hello\n",
        "{out:?}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\ne\n"), "{out:?}");
    // The exit code reached the client in Kubernetes' status document.
    assert!(
        err.contains("command terminated with exit code 4"),
        "{out:?}"
    );
    // The same over WebSocket (v5.channel.k8s.io), the end of input included.
    let mut ws = Command::new(crictl_path())
        .args([
            "--runtime-endpoint",
            &endpoint_of(&cri),
            "exec",
            "-i",
            "-r",
            "websocket",
        ])
        .args([&server_id, "sh", "-c", "cat; echo done >&2; exit 5"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    ws.stdin
        .take()
        .unwrap()
        .write_all(b"over websocket\n")
        .unwrap();
    let out = ws.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "over websocket\n",
        "{out:?}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\ndone\n"), "{out:?}");
    assert!(
        err.contains("command terminated with exit code 5"),
        "{out:?}"
    );
    // With a terminal: the command has a tty, and the client's window size.
    let crictl = crictl_path().display().to_string();
    let out = Command::new("script")
        .args(["-q", "-e", "-c"])
        .arg(format!(
            "stty cols 111 rows 33; {crictl} --runtime-endpoint {} exec -it {server_id} sh -c 'tty; sleep 0.5; stty size'",
            endpoint_of(&cri)
        ))
        .arg("/dev/null")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/dev/pts/"), "{out:?}");
    assert!(text.contains("33 111"), "{out:?}");
    // Port forwarding: a local port reaches the server on the pod's loopback.
    let port = common::free_port();
    let mut forward = Command::new(crictl_path())
        .args(["--runtime-endpoint", &endpoint_of(&cri), "port-forward"])
        .args([&pod_id, &format!("{port}:8080")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let fetched = common::eventually(10, || {
        let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        let _ = c.write_all(b"GET / HTTP/1.0\r\n\r\n");
        let mut body = String::new();
        let _ = std::io::Read::read_to_string(&mut c, &mut body);
        body.contains("hello-from-server")
    });
    let _ = forward.kill();
    let _ = forward.wait();
    assert!(fetched, "port-forward did not reach the server");
    // Attach: a running container's output as it comes.
    let talker = write_json(
        &base,
        "talker.json",
        serde_json::json!({
            "metadata": {"name": "talker"},
            "image": {"image": "busybox:test"},
            "command": ["sh", "-c", "while :; do echo tick; sleep 0.2; done"],
            "log_path": "talker/0.log",
        }),
    );
    let talker_id = cri
        .ok(&["create", &pod_id, &talker, &pod])
        .trim()
        .to_string();
    cri.ok(&["start", &talker_id]);
    let attached = Command::new("timeout")
        .args(["-s", "KILL", "2", crictl_path().to_str().unwrap()])
        .args([
            "--runtime-endpoint",
            &endpoint_of(&cri),
            "attach",
            &talker_id,
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&attached.stdout).contains("tick\n"),
        "{attached:?}"
    );
    cri.ok(&["stop", "--timeout", "0", &talker_id]);
    cri.ok(&["rm", &talker_id]);
    // Stats: the running server's CPU and memory, the pod's network counters.
    let stats: serde_json::Value =
        serde_json::from_str(&cri.ok(&["stats", "-o", "json", &server_id])).unwrap();
    let s = &stats["stats"][0];
    assert_eq!(s["attributes"]["metadata"]["name"], "server", "{stats}");
    let memory: u64 = s["memory"]["workingSetBytes"]["value"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{stats}"));
    assert!(memory > 0, "{stats}");
    let pod_stats: serde_json::Value =
        serde_json::from_str(&cri.ok(&["statsp", "-o", "json", &pod_id])).unwrap();
    let net = &pod_stats["stats"][0]["linux"]["network"]["defaultInterface"];
    assert_eq!(net["name"], "eth0", "{pod_stats}");
    // ExecSync: output, exit code, a command that is not there, a timeout.
    let endpoint = format!("unix://{}", cri.socket.display());
    let exec = |args: &[&str]| {
        Command::new(crictl_path())
            .args(["--runtime-endpoint", &endpoint, "exec", "-s"])
            .args(args)
            .output()
            .unwrap()
    };
    let out = exec(&[&server_id, "sh", "-c", "hostname; echo $HOME"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("web-0\n/root\n"),
        "{out:?}"
    );
    // crictl tells a failed command by its code and its stderr.
    let out = exec(&[&server_id, "sh", "-c", "echo oops >&2; exit 3"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exited with 3: oops"), "{err}");
    let out = exec(&[&server_id, "/no/such/command"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exited with 127"), "{err}");
    let started = std::time::Instant::now();
    let out = exec(&["--timeout", "1", &server_id, "sleep", "30"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("DeadlineExceeded"),
        "{out:?}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    cri.ok(&["stop", "--timeout", "0", &server_id]);
    let status: serde_json::Value =
        serde_json::from_str(&cri.ok(&["inspect", "-o", "json", &server_id])).unwrap();
    assert_eq!(status["status"]["state"], "CONTAINER_EXITED", "{status}");
    assert_eq!(status["status"]["reason"], "Error", "{status}");
    cri.ok(&["rm", &client_id]);
    assert_eq!(cri.ok(&["ps", "-a", "-q"]).trim(), server_id);
    // A container's name and attempt are the pod's once.
    let (ok, _, err) = cri.crictl(&["create", &pod_id, &server, &pod]);
    assert!(!ok && err.contains("already in use"), "{err}");
    // The CLI's containers are not kubelet's.
    b.ok(&["create", "--name", "cli-only", "busybox:test", "true"]);
    assert!(!cri.ok(&["ps", "-a"]).contains("cli-only"));
    // Removing the pod takes its containers.
    cri.ok(&["stopp", &pod_id]);
    cri.ok(&["rmp", &pod_id]);
    assert_eq!(cri.ok(&["ps", "-a", "-q"]).trim(), "");
    assert!(!b.ok(&["ps", "-a"]).contains("k8s_"));
}
