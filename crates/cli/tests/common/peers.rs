//! Peers from Debian for the interop and differential tests: a private dockerd in its
//! own mount namespace, and the helpers to find and run peer binaries.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A private dockerd with `config` (daemon.json), or None after printing why it is
/// skipped: a missing peer, or a daemon that did not start (a failure when CI is set).
pub fn private_dockerd(config: &str) -> Option<Dockerd> {
    let (Some(dockerd), Some(unshare), Some(client)) = (
        find_binary("dockerd"),
        find_binary("unshare"),
        docker_client(),
    ) else {
        eprintln!("skipped: needs dockerd, the docker client and unshare (apt-get install docker.io util-linux)");
        return None;
    };
    match Dockerd::start(&dockerd, &unshare, client, config) {
        Ok(d) => Some(d),
        Err(why) if in_ci() => panic!("private dockerd did not start: {why}"),
        Err(why) => {
            eprintln!("skipped: private dockerd did not start (a failure when CI is set): {why}");
            None
        }
    }
}

/// A peer binary from PATH or the sbin dirs (a test's PATH may lack them).
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let fallback = ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"];
    std::env::split_paths(&path)
        .chain(fallback.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

pub fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// Runs `cmd` (stdin closed) and returns its output.
pub fn output(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null());
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs `cmd`, asserts it succeeded, and returns its stdout.
pub fn check(cmd: &mut Command) -> String {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({:?}):\nstdout: {}\nstderr: {}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Unmounts (lazily, deepest first) everything mounted at or below `base`.
pub fn unmount_below(base: &Path) {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<PathBuf> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|m| m.starts_with(base))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for p in points {
        let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// A temp dir for archives and a peer's state; on drop whatever is mounted below it is
/// detached before the dir is removed.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new(prefix: &str) -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in("/tmp")
            .expect("temp dir in /tmp");
        Scratch { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A subdirectory, created.
    pub fn subdir(&self, rel: &str) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(&p).expect("create scratch subdir");
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        unmount_below(self.dir.path());
    }
}

// ---------------------------------------------------------------------------------------
// dockerd

/// The docker client: Debian's, which matches its dockerd, ahead of any other in PATH.
pub fn docker_client() -> Option<PathBuf> {
    let debian = PathBuf::from("/usr/bin/docker");
    if is_executable(&debian) {
        return Some(debian);
    }
    find_binary("docker")
}

/// Runs in the fresh mount namespace before dockerd: tmpfs over the host paths dockerd and
/// its containerd write to whatever flags they are given (`/etc/docker/key.json`,
/// `/run/docker/plugins`, `/opt/containerd`). Hiding `/run` also hides a system
/// containerd's socket, so dockerd starts a containerd of its own instead of using it.
pub const DOCKERD_PRELUDE: &str = r#"set -e
for d in /run /opt /etc/docker; do
    if [ -d "$d" ]; then mount -t tmpfs -o mode=755 berth-interop "$d"; fi
done
exec "$@"
"#;

/// A dockerd of our own: data, exec root, socket and config in a temp dir, no bridge, no
/// iptables, no IP forwarding, vfs storage, in a private mount namespace.
pub struct Dockerd {
    child: Child,
    client: PathBuf,
    host: String,
    log: PathBuf,
    pub dir: Scratch,
}

impl Dockerd {
    /// Starts dockerd and waits (up to 60 s) until it answers; on failure returns why,
    /// with its log.
    pub fn start(
        dockerd: &Path,
        unshare: &Path,
        client: PathBuf,
        daemon_json: &str,
    ) -> Result<Dockerd, String> {
        let dir = Scratch::new("it-docker");
        let config = dir.path("daemon.json");
        // dockerd 20.10 writes its trust key to /etc/docker/key.json unless told otherwise;
        // the tmpfs in the prelude only covers /etc/docker when the host has one.
        let mut json: serde_json::Value =
            serde_json::from_str(daemon_json).expect("daemon.json is JSON");
        json["deprecated-key-path"] = serde_json::Value::from(path_str(&dir.path("key.json")));
        std::fs::write(&config, json.to_string()).expect("write daemon.json");
        dir.subdir("client");
        let log = dir.path("dockerd.log");
        let log_file = std::fs::File::create(&log).expect("create dockerd log");
        let host = format!("unix://{}", dir.path("docker.sock").display());
        let child = Command::new(unshare)
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(DOCKERD_PRELUDE)
            .arg("sh")
            .arg(dockerd)
            .arg("--config-file")
            .arg(&config)
            .arg("--data-root")
            .arg(dir.path("data"))
            .arg("--exec-root")
            .arg(dir.path("exec"))
            .arg("--pidfile")
            .arg(dir.path("dockerd.pid"))
            .args(["-H", &host])
            .args(["--bridge", "none"])
            .args(["--iptables=false", "--ip6tables=false"])
            .args(["--ip-forward=false", "--ip-masq=false"])
            .args(["--storage-driver", "vfs"])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("dup log"))
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", dockerd.display()))?;
        let mut d = Dockerd {
            child,
            client,
            host,
            log,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = d.child.try_wait() {
                return Err(format!("dockerd exited ({status}):\n{}", d.log_tail(60)));
            }
            let mut info = d.cmd();
            info.args(["info", "--format", "{{.ServerVersion}}"]);
            if let Some(out) = output_within(&mut info, Duration::from_secs(10)) {
                if out.status.success() {
                    return Ok(d);
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "dockerd did not answer within 60 s:\n{}",
                    d.log_tail(60)
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The docker client, pointed at this daemon and kept away from `~/.docker`.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(&self.client);
        c.args(["-H", &self.host])
            .env("DOCKER_CONFIG", self.dir.path("client"))
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH");
        c
    }

    /// Runs the client and asserts success (with the daemon's log on failure).
    pub fn ok(&self, args: &[&str]) -> String {
        let out = output(self.cmd().args(args));
        assert!(
            out.status.success(),
            "docker {args:?} failed ({:?}):\nstdout: {}\nstderr: {}\ndockerd log:\n{}",
            out.status.code(),
            text(&out.stdout),
            text(&out.stderr),
            self.log_tail(40)
        );
        text(&out.stdout)
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The managed containerd dockerd started, if it is still running.
    pub fn containerd_pid(&self) -> Option<nix::unistd::Pid> {
        let file = self.dir.path("exec/containerd/containerd.pid");
        let pid: i32 = std::fs::read_to_string(file).ok()?.trim().parse().ok()?;
        // Only ours: its command line names our exec root.
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let ours = text(&cmdline).contains(path_str(self.dir.dir.path()));
        ours.then(|| nix::unistd::Pid::from_raw(pid))
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        let containerd = self.containerd_pid();
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        if !wait_child(&mut self.child, Duration::from_secs(20)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // dockerd stops its containerd on SIGTERM, not when killed.
        if let Some(c) = containerd {
            let gone = |c| kill(c, None).is_err();
            let _ = kill(c, Signal::SIGTERM);
            if !super::eventually(10, || gone(c)) {
                let _ = kill(c, Signal::SIGKILL);
            }
        }
        // The mount namespace, and every mount in it, went with its last process; the
        // temp dir is removed when `dir` drops.
    }
}

/// Waits up to `limit` for `child` to exit; false if it is still running.
pub fn wait_child(child: &mut Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Runs `cmd` with a deadline: None (after killing it) if it takes longer than `limit`.
pub fn output_within(cmd: &mut Command, limit: Duration) -> Option<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    if !wait_child(&mut child, limit) {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    }
    child.wait_with_output().ok()
}
