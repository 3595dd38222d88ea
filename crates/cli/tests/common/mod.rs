//! Test harness: each test gets its own temp `--root`/`--run-root`, builds its images from
//! the host's busybox-static, and on drop removes its containers, mounts and cgroups, so
//! tests run in parallel and leave the host as they found it.

#![allow(dead_code)]

pub mod containerd;
pub mod cri;
pub mod peers;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// Skips the calling test (returns) with a printed reason unless running as root with
/// busybox available.
#[macro_export]
macro_rules! require_root {
    () => {
        if let Some(why) = $crate::common::skip_reason() {
            eprintln!("skipped: {why}");
            return;
        }
    };
}

pub fn skip_reason() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("needs root (containers, mounts and cgroups)".into());
    }
    if busybox_path().is_none() {
        return Some("needs a static busybox (apt-get install busybox-static)".into());
    }
    None
}

/// A static busybox on this host.
pub fn busybox_path() -> Option<PathBuf> {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        let p = PathBuf::from(p);
        if p.exists() {
            let out = Command::new("file").arg(&p).output().ok();
            let text = out
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            if text.is_empty() || text.contains("statically linked") || text.contains("static-pie")
            {
                return Some(p);
            }
        }
    }
    None
}

/// A rootfs tarball with busybox, its applets, /etc/passwd and /etc/group; made once.
pub fn busybox_tar() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("berth-test-busybox-{}", std::process::id()));
        let root = dir.join("rootfs");
        let _ = std::fs::remove_dir_all(&dir);
        for d in ["bin", "etc", "tmp", "root", "var/www", "data"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let bb = busybox_path().expect("busybox");
        std::fs::copy(&bb, root.join("bin/busybox")).unwrap();
        let list = Command::new(&bb).arg("--list").output().unwrap();
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            if applet != "busybox" {
                let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
            }
        }
        std::fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nweb:x:33:33:web:/var/www:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(root.join("etc/group"), "root:x:0:\nweb:x:33:\nextra:x:50:web\nnogroup:x:65534:\n").unwrap();
        std::fs::write(root.join("data/seed.txt"), "seeded from the image\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
        let tar = dir.join("busybox.tar");
        let st = Command::new("tar").arg("-C").arg(&root).arg("--numeric-owner").arg("-cf").arg(&tar).arg(".").status().unwrap();
        assert!(st.success());
        tar
    })
}

pub fn berth_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_berth"))
}

pub fn monitor_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_berth-monitor"))
}

/// One isolated berth store.
pub struct Berth {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub run_root: PathBuf,
}

impl Berth {
    pub fn new() -> Berth {
        let dir = tempfile::Builder::new()
            .prefix("bt")
            .tempdir_in("/tmp")
            .unwrap();
        let root = dir.path().join("root");
        let run_root = dir.path().join("run");
        Berth {
            dir,
            root,
            run_root,
        }
    }

    /// A store with `busybox:test` imported (CMD sh, VOLUME none).
    pub fn with_busybox() -> Berth {
        let b = Berth::new();
        b.ok(&[
            "import",
            "-c",
            "CMD [\"/bin/sh\"]",
            busybox_tar().to_str().unwrap(),
            "busybox:test",
        ]);
        b
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(berth_bin());
        c.arg("--root")
            .arg(&self.root)
            .arg("--run-root")
            .arg(&self.run_root);
        c.env("BERTH_MONITOR", monitor_bin());
        // Registry credentials of this test only, never the host's ~/.docker.
        c.env("DOCKER_CONFIG", self.dir.path().join("docker"));
        c.stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "berth {args:?} failed ({:?}):\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs and asserts failure; returns (exit code, stderr).
    /// `login -u USER --password-stdin HOST`, the password on stdin.
    pub fn login(&self, host: &str, user: &str, password: &str) -> std::process::Output {
        use std::io::Write;
        let mut child = self
            .cmd()
            .args(["login", "-u", user, "--password-stdin", host])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{password}\n").as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    pub fn fails(&self, args: &[&str]) -> (i32, String) {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "berth {args:?} should have failed:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `run --rm busybox:test sh -c SCRIPT` → stdout (asserting success).
    pub fn sh(&self, extra: &[&str], script: &str) -> String {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["busybox:test", "sh", "-c", script]);
        self.ok(&args)
    }

    pub fn inspect(&self, name: &str, fmt: &str) -> String {
        self.ok(&["inspect", "-f", fmt, name]).trim().to_string()
    }

    pub fn container_ids(&self) -> Vec<String> {
        let out = self.run(&["ps", "-aq", "--no-trunc"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect()
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        if !self.root.exists() {
            return;
        }
        let ids = self.container_ids();
        for id in &ids {
            let _ = self.run(&["rm", "-f", id]);
        }
        // Whatever is still mounted below our temp dir goes (lazy, so a failure mid-test
        // never leaves a mount behind).
        let base = self.dir.path().to_string_lossy().into_owned();
        if let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") {
            let mut points: Vec<&str> = mounts
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .filter(|m| m.starts_with(&base))
                .collect();
            points.sort_by_key(|p| std::cmp::Reverse(p.len()));
            for p in points {
                let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
            }
        }
        for id in &ids {
            remove_cgroups(id);
        }
        self.remove_networks();
    }
}

impl Berth {
    /// The tag berth names this root's default bridge (`bb-TAG`) and nftables table
    /// (`berth_TAG`) with.
    pub fn network_tag(&self) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(
            self.root.display().to_string().as_bytes(),
        ))[..12]
            .to_string()
    }

    /// The Linux bridge of network `name`: the one its options name, else `bb-` and
    /// the start of its id (as Docker, inspect shows only the options given).
    pub fn inspect_network_bridge(&self, name: &str) -> String {
        let v = self.ok(&[
            "network",
            "inspect",
            "-f",
            "{{index .Options \"com.docker.network.bridge.name\"}} {{.Id}}",
            name,
        ]);
        let (given, id) = v.trim().rsplit_once(' ').unwrap_or(("", v.trim()));
        if given.trim().is_empty() || given.trim() == "<no value>" {
            format!("bb-{}", &id[..12])
        } else {
            given.trim().to_string()
        }
    }

    /// Removes the networks of this root, its default bridge and its nftables table, if
    /// it has any (the table exists exactly while a network does).
    pub fn remove_networks(&self) {
        let tag = self.network_tag();
        let table = format!("berth_{tag}");
        let has = Command::new("nft")
            .args(["list", "table", "inet", &table])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !has {
            return;
        }
        let out = self.run(&["network", "ls", "-q", "--no-trunc"]);
        for id in String::from_utf8_lossy(&out.stdout).lines() {
            let _ = self.run(&["network", "rm", id]);
        }
        let _ = Command::new("ip")
            .args(["link", "del", &format!("bb-{tag}")])
            .output();
        for t in [format!("{table}_ports"), table] {
            let _ = Command::new("nft")
                .args(["delete", "table", "inet", &t])
                .output();
        }
    }
}

/// Removes a container's cgroup dirs in every hierarchy (v1) or the unified one (v2).
pub fn remove_cgroups(id: &str) {
    let base = Path::new("/sys/fs/cgroup");
    let mut dirs = vec![base.join("berth").join(id)];
    if let Ok(rd) = std::fs::read_dir(base) {
        for e in rd.flatten() {
            dirs.push(e.path().join("berth").join(id));
        }
    }
    for d in dirs {
        let _ = std::fs::remove_dir(d);
    }
}

/// Waits until `f` is true (up to `secs`).
pub fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}

/// A registry server process for a test, killed on drop.
pub struct Server {
    pub child: std::process::Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// `127.0.0.1:PORT`
    pub host: String,
    pub dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP GET of `/` on 127.0.0.1:`port` from the host; the response body.
pub fn http_get(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split("\r\n\r\n").nth(1).map(String::from)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `berth registry serve` on a free loopback port, with `extra` arguments.
pub fn berth_registry(extra: &[&str]) -> Server {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(berth_bin())
        .args([
            "registry",
            "serve",
            "--quiet",
            "--addr",
            "127.0.0.1:0",
            "--root",
        ])
        .arg(dir.path())
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    stderr.read_line(&mut line).unwrap();
    // Keep reading what it says later (a closed pipe would end it at its next line).
    std::thread::spawn(move || {
        let mut rest = String::new();
        while stderr.read_line(&mut rest).unwrap_or(0) > 0 {
            eprint!("registry: {rest}");
            rest.clear();
        }
    });
    let url = line
        .trim()
        .rsplit_once(" on ")
        .map(|(_, a)| a.to_string())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    let addr = url.split_once("://").map(|(_, a)| a.to_string()).unwrap();
    Server {
        child,
        base: url,
        host: addr,
        dir,
    }
}

/// Debian's docker-registry on a free loopback port (None when not installed), with
/// htpasswd basic auth when `htpasswd` is given.
pub fn distribution(htpasswd: Option<&Path>) -> Option<Server> {
    let bin = ["/usr/bin/docker-registry", "/usr/bin/registry"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())?;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{}",
            dir.path().join("data").display(),
            htpasswd
                .map(|p| format!("auth:\n  htpasswd:\n    realm: test\n    path: {}\n", p.display()))
                .unwrap_or_default()
        ),
    )
    .unwrap();
    let child = Command::new(bin)
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let s = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
        host: format!("127.0.0.1:{port}"),
        dir,
    };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(s);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("docker-registry did not come up");
}

/// Runs `cmd` with a pty of `rows` x `cols` as its stdin/stdout/stderr; returns the
/// child and the master (non-blocking).
pub fn spawn_on_pty(
    mut cmd: Command,
    rows: u16,
    cols: u16,
) -> (std::process::Child, std::fs::File) {
    use std::os::fd::{AsRawFd, OwnedFd};
    let ws = nix::pty::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&ws), None).unwrap();
    let slave: OwnedFd = pty.slave;
    cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave));
    let child = cmd.spawn().unwrap();
    let master = std::fs::File::from(pty.master);
    // Non-blocking reads so the test can poll with a deadline.
    let fd = master.as_raw_fd();
    let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL).unwrap();
    nix::fcntl::fcntl(
        fd,
        nix::fcntl::FcntlArg::F_SETFL(
            nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK,
        ),
    )
    .unwrap();
    (child, master)
}

/// Reads from a pty master until `needle` shows up (or the time runs out); returns all read.
pub fn read_until(master: &mut std::fs::File, needle: &str, secs: u64) -> String {
    use std::io::Read;
    use std::time::{Duration, Instant};
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match master.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if String::from_utf8_lossy(&got).contains(needle) {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Makes a test CA (`ca.crt`, `ca.key`), a server certificate for 127.0.0.1
/// (`server.crt`, `server.key`) and a client certificate (`client.crt`, `client.key`)
/// it signed, in `dir`, with openssl; false when openssl could not.
pub fn make_test_certs(dir: &Path) -> bool {
    let p = |n: &str| dir.join(n).to_str().unwrap().to_string();
    let openssl = |args: &[&str]| {
        let o = Command::new("openssl").args(args).output();
        matches!(o, Ok(o) if o.status.success())
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ext = p("ext.cnf");
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    let client_ext = p("client.cnf");
    std::fs::write(
        &client_ext,
        "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    let signed = |name: &str, cn: &str, ext: &str| {
        let (key, csr, crt) = (
            p(&format!("{name}.key")),
            p(&format!("{name}.csr")),
            p(&format!("{name}.crt")),
        );
        let mut req = vec!["req"];
        req.extend(ec);
        req.extend(["-keyout", &key, "-out", &csr, "-subj", cn]);
        openssl(&req)
            && openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &p("ca.crt"),
                "-CAkey",
                &p("ca.key"),
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "1",
                "-extfile",
                ext,
            ])
    };
    let (ca_key, ca_crt) = (p("ca.key"), p("ca.crt"));
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        &ca_key,
        "-out",
        &ca_crt,
        "-days",
        "1",
        "-subj",
        "/CN=berth test CA",
    ]);
    openssl(&ca)
        && signed("server", "/CN=127.0.0.1", &ext)
        && signed("client", "/CN=berth test client", &client_ext)
}

/// An htpasswd file of `users` (bcrypt, as `htpasswd -B` writes it; cost 5 keeps tests
/// quick) at `path`; false when htpasswd (apache2-utils) is not installed.
pub fn htpasswd(path: &Path, users: &[(&str, &str)]) -> bool {
    let mut lines = String::new();
    for (u, p) in users {
        match Command::new("htpasswd")
            .args(["-nbB", "-C", "5", u, p])
            .output()
        {
            Ok(o) if o.status.success() => lines.push_str(&String::from_utf8_lossy(&o.stdout)),
            _ => return false,
        }
    }
    std::fs::write(path, lines).unwrap();
    true
}
