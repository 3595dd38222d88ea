//! Interop with the real peers from Debian, as root: the archive `berth save` writes loads
//! into skopeo, podman and a private dockerd, and the archives they save load back into a
//! fresh berth store and run; podman drives `berth-runtime`, and berth drives runc and crun.
//!
//! Nothing is pulled: every image starts as berth's `busybox:test`. Each test skips with a
//! printed reason when its peer is missing (`apt-get install skopeo podman docker.io runc
//! crun`), keeps the peer's state in its own temp dir, and cleans up on drop even when it
//! fails. dockerd runs in a private mount namespace with tmpfs over `/run`, `/opt` and
//! `/etc/docker`, so neither its mounts nor the files it insists on writing there
//! (`key.json`, `/run/docker/plugins`, containerd's `/opt/containerd`) reach the host.
//! What still reaches the host is what every user of these tools shares: skopeo's and
//! podman's blob-info cache (`/var/lib/containers/cache`), and the state dirs the runtimes
//! podman starts keep under `/run` (`/run/runc`, `/run/berth-runtime`), empty once the
//! container is gone.

mod common;
use common::peers::*;
use common::Berth;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Evaluates to the peer binary's path, or skips the calling test with the package to
/// install.
macro_rules! require_peer {
    ($name:expr, $package:expr) => {
        match find_binary($name) {
            Some(path) => path,
            None => {
                eprintln!("skipped: needs {} (apt-get install {})", $name, $package);
                return;
            }
        }
    };
}

/// `berth save busybox:test` from `b` into `dir/name`; returns the archive's path.
fn save_busybox(b: &Berth, dir: &Scratch, name: &str) -> PathBuf {
    let archive = dir.path(name);
    b.ok(&["save", "-o", path_str(&archive), "busybox:test"]);
    archive
}

/// One member of a tar archive, as text.
fn tar_member(archive: &Path, member: &str) -> String {
    check(Command::new("tar").arg("-xOf").arg(archive).arg(member))
}

/// Asserts the image config in berth's `archive` writes its times as Go does. Go's
/// encoding/json writes RFC 3339 with the fraction's trailing zeros trimmed
/// (`time.RFC3339Nano`), and peers written in Go (skopeo, podman) re-encode the config
/// when they convert a Docker image to OCI: a `created` written any other way (such as
/// always nine digits, `…:05.123456780Z`) comes back as other bytes, so another image ID.
/// With nine digits always, that happens whenever the clock's last digit is 0.
fn assert_config_times_as_go_writes_them(archive: &Path) {
    let manifest = tar_member(archive, "manifest.json");
    let manifest: serde_json::Value = serde_json::from_str(&manifest).expect("manifest.json");
    let config_path = manifest[0]["Config"]
        .as_str()
        .expect("manifest names a config");
    let config = tar_member(archive, config_path);
    let config: serde_json::Value = serde_json::from_str(&config).expect("config JSON");
    let history = config["history"].as_array().into_iter().flatten();
    let times = std::iter::once(&config["created"]).chain(history.map(|h| &h["created"]));
    for time in times.filter_map(|t| t.as_str()) {
        let fraction = time.split_once('.').map(|(_, rest)| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap_or_default()
        });
        let canonical = fraction.is_none_or(|f| !f.is_empty() && !f.ends_with('0'));
        assert!(
            canonical,
            "berth wrote the image time {time:?}, which Go tools re-encode without the \
             fraction's trailing zeros, changing the image ID when they convert it"
        );
    }
}

/// What identifies an image across engines: its config digest (the image ID) and its
/// layer diff IDs.
#[derive(Debug, PartialEq)]
struct Identity {
    id: String,
    layers: Vec<String>,
}

fn berth_identity(b: &Berth, image: &str) -> Identity {
    let layers = b.inspect(image, "{{json .RootFS.Layers}}");
    Identity {
        id: b.inspect(image, "{{.Id}}"),
        layers: serde_json::from_str(&layers).expect("RootFS.Layers is a JSON list"),
    }
}

/// Loads `archive` into a fresh berth store, checks the image kept `want`'s identity and
/// runs it.
fn load_into_fresh_berth(archive: &Path, image: &str, want: &Identity) {
    let b = Berth::new();
    let loaded = b.ok(&["load", "-i", path_str(archive)]);
    assert!(loaded.contains(image), "berth load printed {loaded:?}");
    assert_eq!(&berth_identity(&b, image), want, "{image} changed identity");
    let out = b.ok(&["run", "--rm", image, "echo", "round trip ok"]);
    assert_eq!(out, "round trip ok\n");
}

// ---------------------------------------------------------------------------------------
// skopeo

#[test]
fn skopeo_reads_berths_archive_and_berth_loads_and_runs_skopeos_oci_archive() {
    require_root!();
    let skopeo = require_peer!("skopeo", "skopeo");
    let b = Berth::with_busybox();
    let want = berth_identity(&b, "busybox:test");
    let dir = Scratch::new("it-skopeo");
    let saved = save_busybox(&b, &dir, "saved.tar");
    assert_config_times_as_go_writes_them(&saved);

    // berth's archive is both a docker-archive (manifest.json) and an OCI layout
    // (index.json): skopeo must read each half to the same image.
    for transport in ["docker-archive", "oci-archive"] {
        let reference = format!("{transport}:{}", saved.display());
        let info = check(Command::new(&skopeo).args(["inspect", &reference]));
        let info: serde_json::Value = serde_json::from_str(&info).expect("skopeo inspect JSON");
        assert_eq!(info["Os"], "linux", "{transport}: {info}");
        let layers: Vec<String> =
            serde_json::from_value(info["Layers"].clone()).expect("Layers is a list");
        assert_eq!(layers, want.layers, "{transport}: skopeo saw other layers");
        let raw = check(Command::new(&skopeo).args(["inspect", "--raw", &reference]));
        let manifest: serde_json::Value = serde_json::from_str(&raw).expect("manifest JSON");
        assert_eq!(
            manifest["config"]["digest"], want.id,
            "{transport}: skopeo saw another config: {manifest}"
        );
    }

    // skopeo rewrites the image as a compressed OCI archive under a new name.
    let oci = dir.path("skopeo-oci.tar");
    check(Command::new(&skopeo).args([
        "copy",
        "--quiet",
        &format!("docker-archive:{}", saved.display()),
        &format!("oci-archive:{}:busybox:oci", oci.display()),
    ]));
    load_into_fresh_berth(&oci, "busybox:oci", &want);
}

// ---------------------------------------------------------------------------------------
// podman

/// A podman whose storage, run state, tmp files and network config all live in a temp dir,
/// and whose containers (and their conmon) live in a cgroup of their own.
struct Podman {
    bin: PathBuf,
    dir: Scratch,
    cgroup_parent: String,
}

impl Podman {
    fn new(bin: PathBuf) -> Podman {
        let dir = Scratch::new("it-podman");
        dir.subdir("tmp");
        dir.subdir("networks");
        let name = dir.dir.path().file_name().expect("temp dir name");
        let cgroup_parent = format!("/berth-{}", name.to_string_lossy());
        Podman {
            bin,
            dir,
            cgroup_parent,
        }
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root")
            .arg(self.dir.path("root"))
            .arg("--runroot")
            .arg(self.dir.path("run"))
            .arg("--tmpdir")
            .arg(self.dir.path("tmp"))
            .arg("--network-config-dir")
            .arg(self.dir.path("networks"))
            .args(["--storage-driver", "vfs"])
            .args(["--events-backend", "none"])
            .args(["--cgroup-manager", "cgroupfs"])
            .env("TMPDIR", self.dir.path("tmp"));
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        check(self.cmd().args(args))
    }

    /// `podman run MODE --network none` (MODE is `--rm` or `-d`) in our cgroup, with limits
    /// this host allows, and `runtime`.
    fn run_cmd(&self, mode: &str, runtime: Option<&Path>) -> Command {
        let mut c = self.cmd();
        c.args(["run", mode, "--network", "none"]);
        c.args(["--cgroup-parent", &self.cgroup_parent]);
        c.args(podman_ulimits());
        if let Some(r) = runtime {
            c.arg("--runtime").arg(r);
        }
        c
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Containers a failed test left behind, with their conmon; then their cgroups.
        // Scratch unmounts and removes the rest.
        let _ = output(self.cmd().args(["rm", "--all", "--force", "--time", "0"]));
        remove_cgroup_tree(&self.cgroup_parent);
    }
}

/// Removes the cgroup `path` (as `/name`) and everything below it, in every hierarchy;
/// dirs still in use stay.
fn remove_cgroup_tree(path: &str) {
    fn remove(dir: &Path) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    remove(&e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    let base = Path::new("/sys/fs/cgroup");
    let rel = path.trim_start_matches('/');
    remove(&base.join(rel));
    if let Ok(hierarchies) = std::fs::read_dir(base) {
        for h in hierarchies.flatten() {
            remove(&h.path().join(rel));
        }
    }
}

/// `--ulimit` flags no higher than this process's hard limits. Podman asks the runtime for
/// nofile 1048576 and nproc 4194304 when run as root, which fails (EPERM) where
/// CAP_SYS_RESOURCE is missing, as in some CI sandboxes; podman also lowers its own nproc
/// limit to 32768 when it starts, so ask for no more than that.
fn podman_ulimits() -> Vec<String> {
    use nix::sys::resource::{getrlimit, Resource};
    let hard = |r| getrlimit(r).map(|(_, hard)| hard).unwrap_or(1024);
    let nofile = hard(Resource::RLIMIT_NOFILE).min(1 << 20);
    let nproc = hard(Resource::RLIMIT_NPROC).min(32768);
    vec![
        "--ulimit".into(),
        format!("nofile={nofile}:{nofile}"),
        "--ulimit".into(),
        format!("nproc={nproc}:{nproc}"),
    ]
}

/// The runtime podman runs berth's image with. Podman's default on Debian is crun, which
/// refuses hybrid cgroup hosts (see `crun_refuses_this_host`); runc runs everywhere, so
/// prefer it when it is installed.
fn podman_runtime() -> Option<PathBuf> {
    find_binary("runc")
}

#[test]
fn podman_loads_berths_archive_and_berth_loads_podmans_docker_and_oci_archives() {
    require_root!();
    let podman = Podman::new(require_peer!("podman", "podman"));
    let b = Berth::with_busybox();
    let want = berth_identity(&b, "busybox:test");
    let saved = save_busybox(&b, &podman.dir, "saved.tar");
    assert_config_times_as_go_writes_them(&saved);

    let loaded = podman.ok(&["load", "--quiet", "-i", path_str(&saved)]);
    assert!(loaded.contains("busybox:test"), "podman load: {loaded}");
    let images = podman.ok(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    let short_id = &want.id.trim_start_matches("sha256:")[..12];
    assert!(
        images.contains(&format!("docker.io/library/busybox:test {short_id}")),
        "podman images: {images}"
    );

    for format in ["docker-archive", "oci-archive"] {
        let archive = podman.dir.path(&format!("podman-{format}.tar"));
        podman.ok(&[
            "save",
            "--quiet",
            "--format",
            format,
            "-o",
            path_str(&archive),
            "busybox:test",
        ]);
        load_into_fresh_berth(&archive, "busybox:test", &want);
    }

    // Podman running berth's image shows the image config is usable by another engine.
    // Whether podman can run containers at all depends on the host, so a failure here is
    // reported, not asserted.
    let out = output(podman.run_cmd("--rm", podman_runtime().as_deref()).args([
        "busybox:test",
        "echo",
        "hi from podman",
    ]));
    if out.status.success() {
        assert_eq!(text(&out.stdout), "hi from podman\n");
    } else {
        eprintln!(
            "note: podman cannot run containers here, so berth's image was not run by it: {}",
            text(&out.stderr).trim()
        );
    }
}

#[test]
fn dockerd_loads_berths_archive_and_berth_loads_and_runs_dockers_save() {
    require_root!();
    let Some(d) = private_dockerd("{}\n") else {
        return;
    };
    let b = Berth::with_busybox();
    let want = berth_identity(&b, "busybox:test");
    let saved = save_busybox(&b, &d.dir, "saved.tar");

    let loaded = d.ok(&["load", "-i", path_str(&saved)]);
    assert!(loaded.contains("busybox:test"), "docker load: {loaded}");
    let seen = d.ok(&[
        "image",
        "inspect",
        "-f",
        "{{.Id}} {{json .RootFS.Layers}} {{json .Config.Cmd}} {{.Os}}",
        "busybox:test",
    ]);
    let expected = format!(
        "{} {} [\"/bin/sh\"] linux",
        want.id,
        serde_json::to_string(&want.layers).expect("layers to JSON")
    );
    assert_eq!(seen.trim(), expected, "docker sees another image");

    let docker_saved = d.dir.path("docker-saved.tar");
    d.ok(&["save", "-o", path_str(&docker_saved), "busybox:test"]);
    load_into_fresh_berth(&docker_saved, "busybox:test", &want);
}

// ---------------------------------------------------------------------------------------
// Runtimes: podman and dockerd over berth-runtime, berth over runc and crun

#[test]
fn dockerd_runs_containers_with_berth_runtime() {
    require_root!();
    let runtime = berth_runtime_bin();
    let config = serde_json::json!({"runtimes": {"berth": {"path": runtime}}}).to_string();
    let Some(d) = private_dockerd(&config) else {
        return;
    };
    let b = Berth::with_busybox();
    let saved = save_busybox(&b, &d.dir, "saved.tar");
    d.ok(&["load", "-i", path_str(&saved)]);
    let out = d.ok(&[
        "run",
        "--rm",
        "--runtime",
        "berth",
        "--network",
        "none",
        "busybox:test",
        "echo",
        "hi from berth-runtime",
    ]);
    assert_eq!(out.trim(), "hi from berth-runtime");
    let mut code = d.cmd();
    code.args([
        "run",
        "--rm",
        "--runtime",
        "berth",
        "--network",
        "none",
        "busybox:test",
        "sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(output(&mut code).status.code(), Some(3));
    // Detached, exec, stop.
    let id = d.ok(&[
        "run",
        "-d",
        "--runtime",
        "berth",
        "--network",
        "none",
        "busybox:test",
        "sleep",
        "60",
    ]);
    let id = id.trim();
    assert_eq!(d.ok(&["exec", id, "echo", "exec ok"]).trim(), "exec ok");
    d.ok(&["stop", "-t", "1", id]);
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.ExitCode}}", id]).trim(),
        "137"
    );
    d.ok(&["rm", id]);
}

/// `berth-runtime`, built with this package.
fn berth_runtime_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_berth-runtime"))
}

#[test]
fn podman_runs_berths_image_with_berth_runtime() {
    require_root!();
    let podman = Podman::new(require_peer!("podman", "podman"));
    let runtime = berth_runtime_bin();
    if !is_executable(&runtime) {
        let why = format!(
            "{} is not built (cargo build -p berth-runtime)",
            runtime.display()
        );
        assert!(!in_ci(), "{why}");
        eprintln!("skipped: {why}");
        return;
    }
    let b = Berth::with_busybox();
    let saved = save_busybox(&b, &podman.dir, "saved.tar");
    podman.ok(&["load", "--quiet", "-i", path_str(&saved)]);
    let rt = Some(runtime.as_path());

    let out = check(
        podman
            .run_cmd("--rm", rt)
            .args(["busybox:test", "echo", "hi"]),
    );
    assert_eq!(out, "hi\n");

    // The container's exit code comes back through berth-runtime's state.
    let out = output(
        podman
            .run_cmd("--rm", rt)
            .args(["busybox:test", "sh", "-c", "exit 3"]),
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));

    // stdin reaches the process.
    let mut child = podman
        .run_cmd("--rm", rt)
        .args(["-i", "busybox:test", "tr", "a-z", "A-Z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn podman run -i");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin.write_all(b"shout\n").expect("write to podman");
    }
    let out = child.wait_with_output().expect("podman run -i");
    assert_eq!(text(&out.stdout), "SHOUT\n", "{}", text(&out.stderr));

    // Detached: state, exec, kill and delete.
    let id = check(
        podman
            .run_cmd("-d", rt)
            .args(["busybox:test", "sleep", "60"]),
    );
    let id = id.trim();
    let status = podman.ok(&["inspect", "-f", "{{.State.Status}}", id]);
    assert_eq!(status.trim(), "running");
    let out = podman.ok(&["exec", id, "echo", "in exec"]);
    assert_eq!(out, "in exec\n");
    podman.ok(&["stop", "-t", "0", id]);
    let state = podman.ok(&["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", id]);
    assert_eq!(state.trim(), "exited 137");
    podman.ok(&["rm", id]);
}

#[test]
fn berth_runs_containers_with_runc() {
    require_root!();
    require_peer!("runc", "runc");
    let b = Berth::with_busybox();
    let out = b.ok(&[
        "run",
        "--rm",
        "--runtime",
        "runc",
        "busybox:test",
        "echo",
        "hi",
    ]);
    assert_eq!(out, "hi\n");
    let code = b
        .run(&[
            "run",
            "--rm",
            "--runtime",
            "runc",
            "busybox:test",
            "sh",
            "-c",
            "exit 3",
        ])
        .status
        .code();
    assert_eq!(code, Some(3));

    let id = b.ok(&[
        "run",
        "-d",
        "--runtime",
        "runc",
        "busybox:test",
        "sleep",
        "60",
    ]);
    let id = id.trim();
    assert_eq!(b.ok(&["exec", id, "echo", "in exec"]), "in exec\n");
    b.ok(&["stop", "-t", "1", id]);
    assert_eq!(
        b.inspect(id, "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 137"
    );
    b.ok(&["rm", id]);
}

/// crun refuses a cgroup v1 host whose unified (v2) hierarchy also holds controllers
/// ("cgroups in hybrid mode not supported, drop all controllers from cgroupv2").
fn crun_refuses_this_host() -> bool {
    std::fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers")
        .is_ok_and(|c| !c.trim().is_empty())
}

#[test]
fn berth_runs_containers_with_crun_or_passes_on_cruns_refusal() {
    require_root!();
    require_peer!("crun", "crun");
    let b = Berth::with_busybox();
    let out = b.run(&[
        "run",
        "--rm",
        "--runtime",
        "crun",
        "busybox:test",
        "echo",
        "hi",
    ]);
    if !crun_refuses_this_host() {
        assert!(
            out.status.success(),
            "berth run --runtime crun failed:\n{}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout), "hi\n");
        return;
    }
    // Here crun cannot run anything; berth must fail with crun's reason, not hide it.
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(
        err.contains("hybrid mode"),
        "berth dropped crun's error message: {err}"
    );
    eprintln!("skipped: crun cannot run containers on this hybrid cgroup host: {err}");
}

/// dockerd pulls what berth pushed to berth's registry and runs it; berth pulls and runs
/// what `docker push` put there.
#[test]
fn dockerd_pulls_from_and_pushes_to_berths_registry() {
    require_root!();
    let Some(d) = private_dockerd("{}\n") else {
        return;
    };
    let reg = common::berth_registry(&[]);
    let b = Berth::with_busybox();
    let name = format!("{}/team/bb:1", reg.host);
    b.ok(&["tag", "busybox:test", &name]);
    b.ok(&["push", &name]);
    let pulled = d.ok(&["pull", &name]);
    assert!(
        pulled.contains("Downloaded newer image"),
        "docker pull: {pulled}"
    );
    assert_eq!(
        d.ok(&["image", "inspect", "-f", "{{.Id}}", &name]).trim(),
        b.inspect(&name, "{{.Id}}"),
        "docker sees the same image"
    );
    let out = d.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        &name,
        "echo",
        "docker ran it",
    ]);
    assert_eq!(out.trim(), "docker ran it");
    let from_docker = format!("{}/from-docker:1", reg.host);
    d.ok(&["tag", &name, &from_docker]);
    let pushed = d.ok(&["push", &from_docker]);
    assert!(pushed.contains("digest: sha256:"), "docker push: {pushed}");
    let other = Berth::new();
    other.ok(&["pull", &from_docker]);
    assert_eq!(
        other.ok(&["run", "--rm", &from_docker, "echo", "berth ran it"]),
        "berth ran it\n"
    );
}
