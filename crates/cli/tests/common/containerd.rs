//! A private containerd (Debian's, with its built-in CRI plugin) for the side-by-side CRI
//! tests: its own config, root, state, socket, runc root and CNI dirs in a temp dir, in a
//! mount namespace of its own where `/run` and `/var/lib` are overlays whose writes land
//! in the temp dir (containerd 1.6 puts its shims' sockets in /run/containerd/s whatever
//! its state dir is, and libcni caches results in /var/lib/cni): the host's are never
//! touched.

use super::cri::{crictl_at, crictl_path};
use super::peers::{find_binary, in_ci, wait_child, Scratch};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Containerd {
    child: Child,
    pub dir: Scratch,
    pub endpoint: String,
    /// The mount namespace containerd and its shims run in (`mnt:[N]`).
    mntns: String,
}

/// What the test gives containerd.
pub struct Setup<'a> {
    /// The sandbox image (pause), pulled by the test before any pod.
    pub sandbox_image: &'a str,
    /// Registries served over plain HTTP on a loopback port (`127.0.0.1:PORT`).
    pub plain_http: &'a [&'a str],
    /// The CNI configuration dir.
    pub cni_conf_dir: &'a Path,
}

/// A private containerd, or None after printing why it is skipped: a missing peer, or a
/// containerd that did not start (a failure when CI is set).
pub fn private_containerd(setup: &Setup) -> Option<Containerd> {
    let (Some(containerd), Some(_), Some(_), Some(unshare)) = (
        find_binary("containerd"),
        find_binary("containerd-shim-runc-v2"),
        find_binary("runc"),
        find_binary("unshare"),
    ) else {
        eprintln!(
            "skipped: needs containerd, its runc shim and runc (apt-get install containerd runc)"
        );
        return None;
    };
    if !crictl_path().exists() {
        eprintln!("skipped: no crictl at {}", crictl_path().display());
        return None;
    }
    match Containerd::start(&containerd, &unshare, setup) {
        Ok(c) => Some(c),
        Err(why) if in_ci() => panic!("private containerd did not start: {why}"),
        Err(why) => {
            eprintln!(
                "skipped: private containerd did not start (a failure when CI is set): {why}"
            );
            None
        }
    }
}

impl Containerd {
    fn start(containerd: &Path, unshare: &Path, setup: &Setup) -> Result<Containerd, String> {
        let dir = Scratch::new("bt-containerd");
        for d in ["run/upper", "run/work", "lib/upper", "lib/work", "certs.d"] {
            dir.subdir(d);
        }
        for host in setup.plain_http {
            let d = dir.subdir(&format!("certs.d/{host}"));
            std::fs::write(
                d.join("hosts.toml"),
                format!(
                    "server = \"http://{host}\"\n\n[host.\"http://{host}\"]\n  \
                     capabilities = [\"pull\", \"resolve\"]\n  skip_verify = true\n"
                ),
            )
            .map_err(|e| e.to_string())?;
        }
        let socket = dir.path("containerd.sock");
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [
  "io.containerd.internal.v1.opt",
  "io.containerd.internal.v1.tracing",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "{socket}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  # This VM withholds CAP_SYS_RESOURCE: runc cannot lower the sandbox's oom_score_adj.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{runc}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{certs}"
"#,
            root = dir.path("root").display(),
            state = dir.path("state").display(),
            socket = socket.display(),
            sandbox = setup.sandbox_image,
            runc = dir.path("runc").display(),
            cni_bin = super::cri::CNI_BIN,
            cni_conf = setup.cni_conf_dir.display(),
            certs = dir.path("certs.d").display(),
        );
        std::fs::write(dir.path("config.toml"), config).map_err(|e| e.to_string())?;
        let log = dir.path("containerd.log");
        let log_file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let child = Command::new(unshare)
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(
                r#"set -e
mount -t overlay bt-cd-run -o "lowerdir=/run,upperdir=$1/run/upper,workdir=$1/run/work" /run
mount -t overlay bt-cd-lib -o "lowerdir=/var/lib,upperdir=$1/lib/upper,workdir=$1/lib/work" /var/lib
exec "$2" --config "$1/config.toml""#,
            )
            .arg("sh")
            .arg(dir.dir.path())
            .arg(containerd)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", containerd.display()))?;
        let mut c = Containerd {
            child,
            endpoint: format!("unix://{}", socket.display()),
            mntns: String::new(),
            dir,
        };
        let up = super::eventually(60, || {
            matches!(c.child.try_wait(), Ok(None)) && crictl_at(&c.endpoint, &["version"]).0
        });
        if !up {
            return Err(format!("containerd did not answer:\n{}", c.log_tail(30)));
        }
        c.mntns = std::fs::read_link(format!("/proc/{}/ns/mnt", c.child.id()))
            .map(|l| l.display().to_string())
            .unwrap_or_default();
        Ok(c)
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.dir.path("containerd.log")).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Processes in containerd's mount namespace (itself and its shims).
    fn processes(&self) -> Vec<i32> {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return vec![];
        };
        dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                !self.mntns.is_empty()
                    && std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
                        .is_ok_and(|l| l.display().to_string() == self.mntns)
            })
            .collect()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        // Pods first, through the service: it stops their containers, unmounts and gives
        // their addresses back.
        let _ = crictl_at(&self.endpoint, &["rmp", "-fa"]);
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        if !wait_child(&mut self.child, Duration::from_secs(10)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // Containers left behind (a failed test), through runc's state, then the shims.
        let root = self.dir.path("runc/k8s.io");
        if let Some(runc) = find_binary("runc").filter(|_| root.exists()) {
            let list = Command::new(&runc)
                .arg("--root")
                .arg(&root)
                .args(["list", "-q"])
                .output();
            for id in list
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
                .lines()
            {
                let _ = Command::new(&runc)
                    .arg("--root")
                    .arg(&root)
                    .args(["delete", "-f", id])
                    .output();
            }
        }
        for pid in self.processes() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}
