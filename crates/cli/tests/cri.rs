//! `berth cri`: the Kubernetes CRI over the engine, driven by crictl from the shared CRI
//! kit (`../shared/tools/cri/`, beside the checkout).

mod common;

use common::{berth_registry, Berth};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

fn crictl_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/tools/cri/crictl")
}

/// A `berth cri` on a socket in the test's temp dir; stopped (SIGTERM) when dropped.
struct Cri {
    child: Child,
    socket: PathBuf,
}

impl Drop for Cri {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

impl Cri {
    fn start(b: &Berth) -> Cri {
        Cri::start_with(b, &[])
    }

    fn start_with(b: &Berth, env: &[(&str, &Path)]) -> Cri {
        let socket = b.root.parent().unwrap().join("cri.sock");
        let child = b
            .cmd()
            .envs(env.iter().copied())
            .args(["cri", "--listen", &format!("unix://{}", socket.display())])
            .spawn()
            .unwrap();
        assert!(
            common::eventually(10, || std::os::unix::net::UnixStream::connect(&socket)
                .is_ok()),
            "berth cri did not come up"
        );
        Cri { child, socket }
    }

    /// crictl against this service: (success, stdout, stderr).
    fn crictl(&self, args: &[&str]) -> (bool, String, String) {
        let endpoint = format!("unix://{}", self.socket.display());
        let out = Command::new(crictl_path())
            .args([
                "--runtime-endpoint",
                &endpoint,
                "--image-endpoint",
                &endpoint,
            ])
            .args(["--timeout", "20s"])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.crictl(args);
        assert!(ok, "crictl {args:?}: {err}");
        out
    }
}

#[test]
fn crictl_sees_berths_images_pulls_and_removes_them() {
    require_root!();
    if !crictl_path().exists() {
        eprintln!("skipped: no crictl at {}", crictl_path().display());
        return;
    }
    let b = Berth::with_busybox();
    let cri = Cri::start(&b);
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
    // Pods are not there yet, and the service says so rather than pretend.
    let (ok, _, err) = cri.crictl(&["pods"]);
    assert!(!ok, "pods should be refused");
    assert!(
        err.contains("ListPodSandbox is not implemented yet in berth's CRI service"),
        "{err}"
    );
    let info = cri.ok(&["info"]);
    assert!(info.contains("NetworkPluginNotReady"), "{info}");
    let config = cri.ok(&["runtime-config"]);
    assert!(config.contains("CGROUPFS"), "{config}");
    // A clean stop takes its socket away.
    let socket = cri.socket.clone();
    drop(cri);
    assert!(!socket.exists());
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
