//! A private containerd (Debian's, with its built-in CRI plugin) for the side-by-side CRI
//! tests, as bench/cri.sh runs one: bench/containerd-cri.toml in a temp dir, started by
//! bench/containerd-private.sh in a mount namespace of its own (the host's /run and
//! /var/lib are never touched).

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
        dir.subdir("certs.d");
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
        // The bench's private containerd (bench/containerd-cri.toml), here in `dir`.
        let config = include_str!("../../../../bench/containerd-cri.toml")
            .replace("@DIR@", &dir.dir.path().display().to_string())
            .replace("@SANDBOX_IMAGE@", setup.sandbox_image)
            .replace("@CNI_BIN_DIR@", super::cri::CNI_BIN)
            .replace("@CNI_CONF_DIR@", &setup.cni_conf_dir.display().to_string());
        std::fs::write(dir.path("config.toml"), config).map_err(|e| e.to_string())?;
        let log = dir.path("containerd.log");
        let log_file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/containerd-private.sh");
        let child = Command::new(unshare)
            .args(["--mount", "--propagation", "private", "--"])
            .arg(script)
            .arg(dir.dir.path())
            // containerd from the same place find_binary found it.
            .env("PATH", path_with(containerd))
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

/// PATH with the directory of `bin` first.
fn path_with(bin: &Path) -> std::ffi::OsString {
    let mut dirs = vec![bin.parent().unwrap_or(Path::new("/")).to_path_buf()];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).unwrap_or_default()
}
