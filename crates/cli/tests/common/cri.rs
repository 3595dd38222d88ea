//! The CRI kit beside the checkout (`../shared/tools/cri/`): a `berth cri` for a test,
//! crictl against it, and a CNI network of the test's own.

use super::Berth;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

/// Debian's containernetworking-plugins.
pub const CNI_BIN: &str = "/usr/lib/cni";

pub fn crictl_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/tools/cri/crictl")
}

/// crictl against the CRI service at `endpoint` (`unix://…`): (success, stdout, stderr).
pub fn crictl_at(endpoint: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(crictl_path())
        .args(["--runtime-endpoint", endpoint, "--image-endpoint", endpoint])
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

/// A `berth cri` on a socket in the test's temp dir; stopped (SIGTERM) when dropped.
pub struct Cri {
    pub child: Child,
    pub socket: PathBuf,
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
    pub fn start(b: &Berth) -> Cri {
        Cri::start_with(b, &[])
    }

    /// With the CNI configuration in the test's `cni` dir (made empty here: the host's
    /// /etc/cni/net.d is never used), and the plugins from Debian's package.
    pub fn start_with(b: &Berth, env: &[(&str, &Path)]) -> Cri {
        let base = b.root.parent().unwrap();
        let socket = base.join("cri.sock");
        let conf = base.join("cni");
        std::fs::create_dir_all(&conf).unwrap();
        let child = b
            .cmd()
            .envs(env.iter().copied())
            .args(["cri", "--listen", &format!("unix://{}", socket.display())])
            .arg("--cni-conf-dir")
            .arg(&conf)
            .args(["--cni-bin-dir", CNI_BIN])
            .spawn()
            .unwrap();
        assert!(
            super::eventually(10, || std::os::unix::net::UnixStream::connect(&socket)
                .is_ok()),
            "berth cri did not come up"
        );
        Cri { child, socket }
    }

    /// crictl against this service: (success, stdout, stderr).
    pub fn crictl(&self, args: &[&str]) -> (bool, String, String) {
        crictl_at(&endpoint_of(self), args)
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.crictl(args);
        assert!(ok, "crictl {args:?}: {err}");
        out
    }
}

/// A CNI network for one test: a bridge `bb-cniN` (gone when this is dropped) with
/// host-local addresses from 10.251.N.0/24 kept in the test's dir, written as the only
/// configuration in the service's conf dir.
pub struct CniNet {
    bridge: String,
    ipam: PathBuf,
    name: String,
}

impl CniNet {
    pub fn new(b: &Berth, n: u8) -> CniNet {
        CniNet::with_plugins(b, n, &[])
    }

    /// With more plugins after the bridge (`portmap` for host ports).
    pub fn with_plugins(b: &Berth, n: u8, more: &[serde_json::Value]) -> CniNet {
        CniNet::in_dir(b.root.parent().unwrap(), n, more)
    }

    /// The configuration in `base/cni`, the addresses kept in `base/ipam`.
    pub fn in_dir(base: &Path, n: u8, more: &[serde_json::Value]) -> CniNet {
        let net = CniNet {
            bridge: format!("bb-cni{n}"),
            ipam: base.join("ipam"),
            name: format!("berth-test-{n}"),
        };
        let mut plugins = vec![serde_json::json!({
            "type": "bridge",
            "bridge": net.bridge,
            "isGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": format!("10.251.{n}.0/24")}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": net.ipam,
            },
        })];
        plugins.extend(more.iter().cloned());
        let conf = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": net.name,
            "plugins": plugins,
        });
        std::fs::create_dir_all(base.join("cni")).unwrap();
        std::fs::write(
            base.join("cni/10-test.conflist"),
            serde_json::to_vec(&conf).unwrap(),
        )
        .unwrap();
        net
    }

    /// The addresses host-local has given out.
    pub fn allocated(&self) -> Vec<String> {
        std::fs::read_dir(self.ipam.join(&self.name))
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|f| f.starts_with("10."))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for CniNet {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}

pub fn endpoint_of(cri: &Cri) -> String {
    format!("unix://{}", cri.socket.display())
}

/// The pods' cgroup parent in every hierarchy, removed (empty dirs, deepest first) when
/// dropped: kubelet owns it on a node, the test here.
pub struct CgroupParent(pub String);

impl Drop for CgroupParent {
    fn drop(&mut self) {
        let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
            return;
        };
        let mut roots = vec![PathBuf::from("/sys/fs/cgroup").join(self.0.trim_start_matches('/'))];
        roots.extend(
            hierarchies.filter_map(|h| Some(h.ok()?.path().join(self.0.trim_start_matches('/')))),
        );
        for root in roots.into_iter().filter(|r| r.is_dir()) {
            let mut dirs: Vec<PathBuf> = walk_dirs(&root);
            dirs.sort_by_key(|d| std::cmp::Reverse(d.as_os_str().len()));
            for d in dirs {
                let _ = std::fs::remove_dir(d);
            }
        }
    }
}

fn walk_dirs(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_path_buf()];
    if let Ok(rd) = std::fs::read_dir(root) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(walk_dirs(&e.path()));
            }
        }
    }
    out
}
