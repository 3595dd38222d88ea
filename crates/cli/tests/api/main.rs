//! `berth serve`: the Docker Engine API, driven by the real docker CLI and by raw HTTP
//! on a unix socket.

#[path = "../common/mod.rs"]
mod common;
mod engine_rules;

use common::Berth;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

/// A `berth serve` on a socket in the test's temp dir, killed when dropped.
struct Serve {
    child: Child,
    socket: PathBuf,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(b: &Berth) -> Serve {
    let socket = b.root.parent().unwrap().join("berth.sock");
    let child = b
        .cmd()
        .args(["serve", "-H", &format!("unix://{}", socket.display())])
        .spawn()
        .unwrap();
    assert!(
        common::eventually(10, || UnixStream::connect(&socket).is_ok()),
        "berth serve did not come up"
    );
    Serve { child, socket }
}

/// One HTTP/1.0 request on the socket: (status, body).
fn http(socket: &Path, method: &str, path: &str) -> (u16, String) {
    http_with(socket, method, path, "")
}

/// [`http`] with a JSON body.
fn http_with(socket: &Path, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = UnixStream::connect(socket).unwrap();
    // The server may answer (and close) before a body it refuses is all sent.
    let _ = write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: berth\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    (status, body)
}

/// A root with busybox:test and a running container `web` (on no network).
fn with_web() -> Berth {
    let b = Berth::with_busybox();
    b.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "none",
        "busybox:test",
        "sleep",
        "1000",
    ]);
    b
}

#[test]
fn the_api_answers_with_dockers_shapes_and_codes() {
    require_root!();
    let b = with_web();
    let s = serve(&b);
    let (code, body) = http(&s.socket, "GET", "/_ping");
    assert_eq!((code, body.as_str()), (200, "OK"));
    let (code, body) = http(&s.socket, "GET", "/v1.41/version");
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ApiVersion"], "1.47");
    let (code, body) = http(&s.socket, "GET", "/v1.41/containers/json");
    assert_eq!(code, 200);
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list[0]["Names"][0], "/web");
    assert_eq!(list[0]["State"], "running");
    assert!(list[0]["Created"].as_i64().unwrap() > 0);
    // Filters as Docker sends them: status exited matches nothing here.
    let (_, body) = http(
        &s.socket,
        "GET",
        "/containers/json?all=1&filters=%7B%22status%22%3A%5B%22exited%22%5D%7D",
    );
    assert_eq!(body.trim(), "[]");
    // Errors: Docker's JSON and codes.
    let (code, body) = http(&s.socket, "GET", "/containers/nosuch/json");
    assert_eq!(code, 404);
    assert!(
        body.contains("\"message\":\"No such container: nosuch\""),
        "{body}"
    );
    assert_eq!(http(&s.socket, "GET", "/nowhere").0, 404);
    assert_eq!(http(&s.socket, "POST", "/swarm/init").0, 501);
    assert_eq!(http(&s.socket, "GET", "/v1.12/version").0, 400);
    let (code, body) = http(&s.socket, "GET", "/containers/json?filters=%7Bnot-json");
    assert_eq!(code, 400, "{body}");
    // Create: Docker's body, nulls and all; bad bodies are 400; a no-op start is 304.
    let (code, body) = http_with(
        &s.socket,
        "POST",
        "/v1.41/containers/create?name=made",
        r#"{"Image":"busybox:test","Cmd":["sleep","1000"],"Env":null,"Entrypoint":null,"HostConfig":{"NetworkMode":"none","Binds":null}}"#,
    );
    assert_eq!(code, 201, "{body}");
    assert_eq!(http(&s.socket, "POST", "/containers/made/start").0, 204);
    assert_eq!(http(&s.socket, "POST", "/containers/made/start").0, 304);
    assert_eq!(http(&s.socket, "DELETE", "/containers/made").0, 409);
    assert_eq!(http(&s.socket, "DELETE", "/containers/made?force=1").0, 204);
    let (code, body) = http_with(&s.socket, "POST", "/containers/create", "{not json");
    assert_eq!(code, 400, "{body}");
    let (code, body) = http_with(
        &s.socket,
        "POST",
        "/containers/create",
        r#"{"Image":"nope:1"}"#,
    );
    assert_eq!(code, 404, "{body}");
    // Clients that hang up on a stream leave the service serving.
    for _ in 0..3 {
        let mut ev = UnixStream::connect(&s.socket).unwrap();
        write!(ev, "GET /events HTTP/1.1\r\nHost: berth\r\n\r\n").unwrap();
        let mut head = [0u8; 64];
        let _ = ev.read(&mut head).unwrap();
        drop(ev);
        b.ok(&["create", "--network", "none", "busybox:test", "true"]);
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    assert_eq!(http(&s.socket, "GET", "/_ping").0, 200);
}

#[test]
fn the_docker_cli_lists_and_inspects_what_berth_made() {
    require_root!();
    let Some(docker) = ["/usr/bin/docker", "/usr/local/bin/docker"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        eprintln!("skipped: no docker CLI (apt-get install docker.io)");
        return;
    };
    let b = with_web();
    let s = serve(&b);
    let docker = |args: &[&str]| {
        let out = Command::new(docker)
            .arg("-H")
            .arg(format!("unix://{}", s.socket.display()))
            .args(args)
            .env("DOCKER_CONFIG", b.root.parent().unwrap().join("docker-cli"))
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = docker(&["version", "--format", "{{.Server.Version}}"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim(), env!("CARGO_PKG_VERSION"));
    let (_, out, err) = docker(&["ps", "--format", "{{.Names}} {{.Image}} {{.Command}}"]);
    assert_eq!(out.trim(), "web busybox:test \"sleep 1000\"", "{err}");
    let (_, out, _) = docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(out.trim(), "busybox:test");
    let (_, out, _) = docker(&["inspect", "-f", "{{.State.Status}} {{.Name}}", "web"]);
    assert_eq!(out.trim(), "running /web");
    let (_, out, _) = docker(&["info", "--format", "{{.ContainersRunning}} {{.Images}}"]);
    assert_eq!(out.trim(), "1 1");
    let (code, _, err) = docker(&["inspect", "nosuch"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("No such object: nosuch"), "{err}");

    // A container's life through the API: created and started, logged, stopped,
    // started, killed, removed; what the CLI sees is the same.
    let (code, _, err) = docker(&[
        "run",
        "-d",
        "--name",
        "api-made",
        "--network",
        "none",
        "-v",
        "/tmp:/host:ro",
        "--label",
        "made=api",
        "busybox:test",
        "sh",
        "-c",
        "echo to-stdout; echo to-stderr >&2; sleep 1000",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(b.inspect("api-made", "{{.State.Status}}"), "running");
    assert_eq!(b.inspect("api-made", "{{.Config.Labels.made}}"), "api");
    assert_eq!(
        b.inspect("api-made", "{{range .Mounts}}{{.Destination}}{{end}}"),
        "/host"
    );
    let (_, out, _) = docker(&["ps", "--filter", "name=api-made", "--format", "{{.Mounts}}"]);
    assert_eq!(out.trim(), "/tmp");
    assert!(common::eventually(5, || docker(&["logs", "api-made"]).1 == "to-stdout\n"));
    assert_eq!(docker(&["logs", "api-made"]).2, "to-stderr\n");
    let (code, _, err) = docker(&["stop", "-t", "0", "api-made"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(b.inspect("api-made", "{{.State.Status}}"), "exited");
    let (code, _, err) = docker(&["rm", "web"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("container is running"), "{err}");
    docker(&["start", "api-made"]);
    assert_eq!(b.inspect("api-made", "{{.State.Status}}"), "running");
    docker(&["kill", "api-made"]);
    assert_eq!(docker(&["wait", "api-made"]).1.trim(), "137");
    let (code, _, err) = docker(&["rm", "api-made"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(b.run(&["inspect", "api-made"]).status.code() != Some(0));
    // Following the logs: what comes while the container runs, to its end.
    let (code, _, err) = docker(&[
        "run",
        "-d",
        "--name",
        "talker",
        "--network",
        "none",
        "busybox:test",
        "sh",
        "-c",
        "echo first; sleep 1; echo second",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let (code, out, err) = docker(&["logs", "-f", "talker"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "first\nsecond\n");
    // Volumes and networks, connected to a running container.
    assert_eq!(docker(&["volume", "create", "apidata"]).1.trim(), "apidata");
    assert!(b.ok(&["volume", "ls"]).contains("apidata"));
    let (code, _, err) = docker(&["network", "create", "--subnet", "10.216.9.0/24", "apinet"]);
    assert_eq!(code, Some(0), "{err}");
    let (_, out, _) = docker(&["network", "ls", "--format", "{{.Name}}"]);
    for n in ["bridge", "apinet", "host", "none"] {
        assert!(out.lines().any(|l| l == n), "{n}: {out}");
    }
    b.ok(&[
        "run",
        "-d",
        "--name",
        "netted",
        "busybox:test",
        "sleep",
        "1000",
    ]);
    let (code, _, err) = docker(&["network", "connect", "--alias", "db", "apinet", "netted"]);
    assert_eq!(code, Some(0), "{err}");
    let addrs = b.ok(&["exec", "netted", "ip", "-o", "-4", "addr"]);
    assert!(addrs.contains("10.216.9."), "{addrs}");
    assert_eq!(
        docker(&["network", "disconnect", "apinet", "netted"]).0,
        Some(0)
    );
    assert_eq!(docker(&["network", "rm", "apinet"]).0, Some(0));
    assert_eq!(docker(&["volume", "rm", "apidata"]).0, Some(0));
    assert!(!b.ok(&["volume", "ls"]).contains("apidata"));
    // Images: tag, history, remove; containers: rename, top, pause.
    assert_eq!(docker(&["tag", "busybox:test", "mine/box:1"]).0, Some(0));
    assert!(b.ok(&["images"]).contains("mine/box"));
    let (code, out, err) = docker(&["history", "--format", "{{.ID}} {{.Size}}", "mine/box:1"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    let (code, out, err) = docker(&["rmi", "mine/box:1"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("Untagged: mine/box:1"), "{out}");
    assert_eq!(docker(&["rename", "netted", "renamed"]).0, Some(0));
    assert!(docker(&["top", "renamed"]).1.contains("sleep"));
    assert_eq!(docker(&["pause", "renamed"]).0, Some(0));
    assert_eq!(b.inspect("renamed", "{{.State.Status}}"), "paused");
    assert_eq!(docker(&["unpause", "renamed"]).0, Some(0));
}

/// Says why a test that drives the docker CLI is skipped when there is none.
fn no_docker_cli() -> bool {
    let missing = Command::new("docker").arg("-v").output().is_err();
    if missing {
        eprintln!("skipped: the docker CLI is not installed (apt-get install docker.io)");
    }
    missing
}

/// A root with `web` running and a service on it, for a test that drives the docker
/// CLI; None (the test is skipped, saying why) without the CLI. The service goes first.
fn served_web_for_docker() -> Option<(Serve, Berth)> {
    if no_docker_cli() {
        return None;
    }
    let b = with_web();
    Some((serve(&b), b))
}

/// The docker CLI against `s`, with `stdin` fed to it: (exit code, stdout, stderr).
fn docker_in(s: &Serve, args: &[&str], stdin: &str) -> (Option<i32>, String, String) {
    let mut child = Command::new("docker")
        .env("DOCKER_HOST", format!("unix://{}", s.socket.display()))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn docker_run_attach_and_exec_stream_through_the_api() {
    require_root!();
    let Some((s, b)) = served_web_for_docker() else {
        return;
    };
    let docker = |args: &[&str]| docker_in(&s, args, "");
    // Attached runs: stdout and stderr apart, the exit code, stdin, errors as Docker's.
    let (code, out, err) = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox:test",
        "sh",
        "-c",
        "echo to-out; echo to-err >&2; exit 3",
    ]);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (Some(3), "to-out\n", "to-err\n")
    );
    let (code, out, _) = docker_in(
        &s,
        &[
            "run",
            "--rm",
            "-i",
            "--network",
            "none",
            "busybox:test",
            "sh",
            "-c",
            "cat; echo end",
        ],
        "fed in\n",
    );
    assert_eq!((code, out.as_str()), (Some(0), "fed in\nend\n"));
    let (code, _, err) = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox:test",
        "nosuchcmd",
    ]);
    assert_eq!(code, Some(127), "{err}");
    assert!(b.container_ids().len() == 1, "--rm containers are gone");
    // exec: out and err, exit codes, stdin, detached.
    let (code, out, err) = docker(&[
        "exec",
        "web",
        "sh",
        "-c",
        "echo x-out; echo x-err >&2; exit 4",
    ]);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (Some(4), "x-out\n", "x-err\n")
    );
    let (code, out, _) = docker_in(&s, &["exec", "-i", "web", "cat"], "to exec\n");
    assert_eq!((code, out.as_str()), (Some(0), "to exec\n"));
    assert_eq!(docker(&["exec", "web", "nosuch"]).0, Some(127));
    assert_eq!(
        docker(&["exec", "-d", "web", "sh", "-c", "echo bg > /tmp/bg"]).0,
        Some(0)
    );
    assert!(common::eventually(5, || docker(&[
        "exec", "web", "cat", "/tmp/bg"
    ])
    .1 == "bg\n"));
    // attach to a running container: its output from now on, and its exit code.
    b.ok(&[
        "run",
        "-d",
        "--name",
        "ticker",
        "--network",
        "none",
        "busybox:test",
        "sh",
        "-c",
        "sleep 1; echo tick; exit 2",
    ]);
    let (code, out, _) = docker(&["attach", "ticker"]);
    assert_eq!((code, out.as_str()), (Some(2), "tick\n"));
    // A terminal: run -it and exec -it on a pty, with its size and resizes.
    let pty_docker = |args: &[&str]| {
        let mut cmd = Command::new("docker");
        cmd.env("DOCKER_HOST", format!("unix://{}", s.socket.display()))
            .args(args);
        common::spawn_on_pty(cmd, 40, 120)
    };
    for args in [
        &[
            "run",
            "-it",
            "--rm",
            "--network",
            "none",
            "busybox:test",
            "sh",
        ][..],
        &["exec", "-it", "web", "sh"][..],
    ] {
        let (mut child, mut master) = pty_docker(args);
        common::read_until(&mut master, "# ", 10);
        master.write_all(b"stty size\r").unwrap();
        let out = common::read_until(&mut master, "40 120", 10);
        assert!(out.contains("40 120"), "{args:?}: {out}");
        // The client's SIGWINCH after a resize reaches the container's terminal.
        let ws = nix::pty::Winsize {
            ws_row: 30,
            ws_col: 90,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize struct, which we own.
        unsafe {
            libc::ioctl(
                std::os::fd::AsRawFd::as_raw_fd(&master),
                libc::TIOCSWINSZ,
                &ws,
            )
        };
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGWINCH,
        )
        .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        master.write_all(b"stty size; exit 6\r").unwrap();
        let out = common::read_until(&mut master, "30 90", 10);
        assert!(out.contains("30 90"), "{args:?}: {out}");
        assert!(common::eventually(10, || child
            .try_wait()
            .unwrap()
            .is_some()));
        assert_eq!(child.wait().unwrap().code(), Some(6), "{args:?}");
    }
}

#[test]
fn docker_cp_stats_events_commit_build_save_load_and_prune_through_the_api() {
    require_root!();
    let Some((s, b)) = served_web_for_docker() else {
        return;
    };
    let docker = |args: &[&str]| docker_in(&s, args, "");
    let tmp = tempfile::tempdir().unwrap();
    // cp both ways, and a path that is not there.
    let file = tmp.path().join("in.txt");
    std::fs::write(&file, "copied in\n").unwrap();
    let (code, _, err) = docker(&["cp", file.to_str().unwrap(), "web:/tmp/"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(b.ok(&["exec", "web", "cat", "/tmp/in.txt"]), "copied in\n");
    let out = tmp.path().join("out.txt");
    let (code, _, err) = docker(&["cp", "web:/tmp/in.txt", out.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "copied in\n");
    let (code, _, err) = docker(&["cp", "web:/nope", out.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(err.contains("Could not find the file /nope"), "{err}");
    // A symlink in the container that points out of it stays inside.
    b.ok(&["exec", "web", "ln", "-s", "/etc", "/tmp/escape"]);
    let (code, _, _) = docker(&["cp", file.to_str().unwrap(), "web:/tmp/escape/"]);
    assert_eq!(code, Some(0));
    assert!(!Path::new("/etc/in.txt").exists());
    // diff, stats, commit, export.
    assert!(docker(&["diff", "web"]).1.contains("A /tmp/in.txt"));
    let (code, out, err) = docker(&["stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}"]);
    assert_eq!((code, out.trim()), (Some(0), "web 1"), "{err}");
    let (code, _, err) = docker(&[
        "commit",
        "-c",
        "CMD [\"cat\", \"/tmp/in.txt\"]",
        "web",
        "snap:1",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let (_, out, _) = docker(&["run", "--rm", "--network", "none", "snap:1"]);
    assert_eq!(out, "copied in\n");
    let (code, _, _) = docker(&[
        "export",
        "-o",
        tmp.path().join("fs.tar").to_str().unwrap(),
        "web",
    ]);
    assert_eq!(code, Some(0));
    assert!(std::fs::metadata(tmp.path().join("fs.tar")).unwrap().len() > 1_000_000);
    // save, rmi, load.
    let archive = tmp.path().join("snap.tar");
    assert_eq!(
        docker(&["save", "-o", archive.to_str().unwrap(), "snap:1"]).0,
        Some(0)
    );
    assert_eq!(docker(&["rmi", "snap:1"]).0, Some(0));
    let (code, out, err) = docker(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("Loaded image: snap:1"), "{out}");
    // build: a context, build args, the result runs; a failing step fails the build.
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:test\nARG V=0\nCOPY f /f\nRUN echo built-$V > /g\nCMD [\"cat\", \"/g\", \"/f\"]\n",
    )
    .unwrap();
    std::fs::write(ctx.join("f"), "from the context\n").unwrap();
    std::fs::write(
        ctx.join("Dockerfile.bad"),
        "FROM busybox:test\nRUN exit 3\n",
    )
    .unwrap();
    let (code, out, err) = docker(&[
        "build",
        "-t",
        "built:1",
        "--build-arg",
        "V=7",
        ctx.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("Successfully tagged built:1"), "{out}");
    let (_, out, _) = docker(&["run", "--rm", "--network", "none", "built:1"]);
    assert_eq!(out, "built-7\nfrom the context\n");
    // Regression: the client's hang-up after this failed build killed the service
    // with SIGPIPE (the next request could not connect).
    let bad = ctx.join("Dockerfile.bad");
    let (code, _, err) = docker(&["build", "-f", bad.to_str().unwrap(), ctx.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(err.contains("exit code: 3"), "{err}");
    // events: what happened in the last minute, filtered. (The CLI sends --until in
    // whole seconds: the run above must be a second in the past.)
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (code, out, err) = docker(&[
        "events",
        "--since",
        "1m",
        "--until",
        "0s",
        "--filter",
        "event=die",
        "--format",
        "{{.Actor.Attributes.image}}",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.lines().any(|l| l == "built:1"), "{out}");
    // push and pull against berth's registry.
    let reg = common::berth_registry(&[]);
    let name = format!("{}/api/built:1", reg.host);
    assert_eq!(docker(&["tag", "built:1", &name]).0, Some(0));
    let (code, out, err) = docker(&["push", &name]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("digest: sha256:"), "{out}");
    assert_eq!(docker(&["rmi", &name]).0, Some(0));
    let (code, out, err) = docker(&["pull", &name]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("Status: Downloaded newer image"), "{out}");
    let (code, out, err) = docker(&[
        "search",
        "--format",
        "{{.Name}}",
        &format!("{}/api", reg.host),
    ]);
    assert_eq!((code, out.trim()), (Some(0), "api/built"), "{err}");
    let (code, _, err) = docker(&["pull", &format!("{}/api/nothing:1", reg.host)]);
    assert_eq!(code, Some(1));
    assert!(err.contains("manifest unknown"), "{err}");
    // Streams: `stats` redraws every second, `events` shows what happens as it happens.
    let streaming = |args: &[&str]| {
        Command::new("docker")
            .env("DOCKER_HOST", format!("unix://{}", s.socket.display()))
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let read_for = |child: &mut std::process::Child, secs: u64| {
        let mut out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while let Ok(n) = out.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
            }
        });
        std::thread::sleep(std::time::Duration::from_secs(secs));
        let _ = child.kill();
        let _ = child.wait();
        rx.try_iter().last().unwrap_or_default()
    };
    let mut stats = streaming(&["stats", "--format", "{{.Name}} {{.PIDs}}", "web"]);
    let seen = read_for(&mut stats, 3);
    assert!(seen.matches("web 1").count() >= 2, "{seen:?}");
    let mut events = streaming(&[
        "events",
        "--filter",
        "type=container",
        "--format",
        "{{.Action}} {{.Actor.Attributes.name}}",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    b.ok(&[
        "run",
        "--rm",
        "--name",
        "live",
        "--network",
        "none",
        "busybox:test",
        "true",
    ]);
    let seen = read_for(&mut events, 1);
    for action in ["create live", "start live", "die live", "destroy live"] {
        assert!(seen.contains(action), "{action}: {seen:?}");
    }
    // system df and prune: stopped containers go, the running one stays.
    b.ok(&["create", "--name", "idle", "busybox:test", "true"]);
    assert!(docker(&["system", "df"]).1.contains("Images"));
    let (code, out, err) = docker(&["system", "prune", "-f"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("Deleted Containers:"), "{out}");
    assert!(b.run(&["inspect", "idle"]).status.code() != Some(0));
    assert_eq!(b.inspect("web", "{{.State.Status}}"), "running");
}

/// `serve -H tcp://… --tlsverify`: the docker CLI with a client certificate the CA
/// signed gets in; without one, or without TLS, it does not.
#[test]
fn tcp_with_tlsverify_admits_only_clients_with_a_signed_certificate() {
    require_root!();
    if no_docker_cli() {
        return;
    }
    let b = with_web();
    let certs = tempfile::tempdir().unwrap();
    if !common::make_test_certs(certs.path()) {
        eprintln!("skipped: openssl could not make test certificates");
        return;
    }
    let p = |n: &str| certs.path().join(n).to_str().unwrap().to_string();
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = b
        .cmd()
        .args(["serve", "-H", &format!("tcp://{addr}"), "--tlsverify"])
        .args(["--tlscacert", &p("ca.crt"), "--tlscert", &p("server.crt")])
        .args(["--tlskey", &p("server.key")])
        .spawn()
        .unwrap();
    let up = common::eventually(10, || std::net::TcpStream::connect(&addr).is_ok());
    let docker = |extra: &[&str]| {
        Command::new("docker")
            .env_remove("DOCKER_HOST")
            .args(["-H", &format!("tcp://{addr}")])
            .args(extra)
            .args(["ps", "--format", "{{.Names}}"])
            .output()
            .unwrap()
    };
    let with_cert = docker(&[
        "--tlsverify",
        "--tlscacert",
        &p("ca.crt"),
        "--tlscert",
        &p("client.crt"),
        "--tlskey",
        &p("client.key"),
    ]);
    // TLS without a client certificate, and plain HTTP, are turned away.
    let without_cert = docker(&["--tls", "--tlscacert", &p("ca.crt")]);
    let plain = docker(&[]);
    let _ = child.kill();
    let _ = child.wait();
    assert!(up, "berth serve did not listen on {addr}");
    assert!(
        with_cert.status.success(),
        "{}",
        String::from_utf8_lossy(&with_cert.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&with_cert.stdout).trim(), "web");
    assert!(!without_cert.status.success());
    assert!(!plain.status.success());
    // Bad TLS settings are one-line errors.
    let (code, err) = b.fails(&["serve", "-H", "tcp://127.0.0.1:1", "--tlsverify"]);
    assert_eq!(code, 1);
    assert!(err.contains("--tlscert"), "{err}");
}

/// `serve -H fd://`: systemd's socket activation (the socket made by the unit, passed
/// as fd 3 with LISTEN_PID and LISTEN_FDS).
#[test]
fn serve_takes_a_socket_passed_in_by_systemd() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    require_root!();
    let b = Berth::with_busybox();
    let socket = b.root.parent().unwrap().join("activated.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let fd = listener.as_raw_fd();
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "export LISTEN_PID=$$ LISTEN_FDS=1; exec \"$0\" \"$@\"",
        common::berth_bin().to_str().unwrap(),
        "--root",
        b.root.to_str().unwrap(),
        "--run-root",
        b.run_root.to_str().unwrap(),
        "serve",
        "-H",
        "fd://",
    ]);
    // SAFETY: dup2 and fcntl are async-signal-safe; fd is open in the child.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto itself would keep close-on-exec: clear it instead.
            let rc = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().unwrap();
    drop(listener);
    let s = Serve { child, socket };
    let (code, body) = http(&s.socket, "GET", "/_ping");
    assert_eq!((code, body.as_str()), (200, "OK"));
    // Without systemd's variables it says what is missing.
    let (code, err) = b.fails(&["serve", "-H", "fd://"]);
    assert_eq!(code, 1);
    assert!(err.contains("no sockets were passed in"), "{err}");
}

/// `kill -9` of the service in the middle of requests leaves the containers as they
/// were, and a new service sees them; bad bodies get 400s and the service goes on.
#[test]
fn a_killed_service_leaves_containers_running_and_bad_requests_get_400() {
    require_root!();
    let b = with_web();
    let mut s = serve(&b);
    // Bad bodies: not JSON, wrong types, fields no API version has, too big.
    for body in [
        "{not json",
        r#"{"Image": 5}"#,
        r#"{"Image": "busybox:test", "Cmd": {"a": 1}}"#,
        r#"{"Image": "busybox:test", "Cmdd": ["true"]}"#,
        r#"{"Image": "busybox:test", "HostConfig": {"Memroy": 1}}"#,
    ] {
        let (code, msg) = http_with(&s.socket, "POST", "/containers/create", body);
        assert_eq!(code, 400, "{body}: {msg}");
        assert!(msg.contains("\"message\""), "{msg}");
    }
    let (_, msg) = http_with(
        &s.socket,
        "POST",
        "/containers/create",
        r#"{"Image": "busybox:test", "HostConfig": {"Memroy": 1}}"#,
    );
    assert!(msg.contains("HostConfig.Memroy"), "{msg}");
    let huge = format!(
        r#"{{"Image": "busybox:test", "Env": ["{}"]}}"#,
        "x".repeat(17 << 20)
    );
    let (code, _) = http_with(&s.socket, "POST", "/containers/create", &huge);
    assert_eq!(code, 400);
    assert_eq!(http(&s.socket, "GET", "/_ping").0, 200);
    // A follower and a waiter in flight when the service dies.
    let mut follow = UnixStream::connect(&s.socket).unwrap();
    write!(
        follow,
        "GET /containers/web/logs?follow=1&stdout=1 HTTP/1.1\r\nHost: b\r\n\r\n"
    )
    .unwrap();
    let mut wait = UnixStream::connect(&s.socket).unwrap();
    write!(
        wait,
        "POST /containers/web/wait HTTP/1.1\r\nHost: b\r\n\r\n"
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(s.child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    s.child.wait().unwrap();
    assert_eq!(b.inspect("web", "{{.State.Status}}"), "running");
    let s2 = serve(&b);
    let (code, body) = http(&s2.socket, "GET", "/containers/json");
    assert_eq!(code, 200);
    assert!(body.contains("\"/web\""), "{body}");
    drop((follow, wait));
}

/// The directory of the client scripts and projects these tests drive the API with.
fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api-clients")
}

/// Debian's python3-docker (docker-py) through its paces: containers, attach sockets,
/// exec, logs streaming, images and build, volumes, networks, events.
#[test]
fn docker_py_drives_the_api() {
    require_root!();
    let has_docker_py = Command::new("/usr/bin/python3")
        .args(["-c", "import docker"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_docker_py {
        eprintln!("skipped: Debian's python3-docker is not installed");
        return;
    }
    let b = Berth::with_busybox();
    let s = serve(&b);
    let out = Command::new("/usr/bin/python3")
        .arg(clients_dir().join("docker_py.py"))
        .arg("busybox:test")
        .env("DOCKER_HOST", format!("unix://{}", s.socket.display()))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("docker-py: ok"), "{text}");
}

/// Debian's docker-compose 1.29 (on docker-py) brings a three-service project up,
/// runs in it, recreates, and takes it down, all through the API.
#[test]
fn docker_compose_runs_a_project_through_the_api() {
    require_root!();
    if Command::new("docker-compose")
        .arg("version")
        .output()
        .is_err()
    {
        eprintln!("skipped: docker-compose is not installed");
        return;
    }
    let b = Berth::with_busybox();
    let s = serve(&b);
    let file = clients_dir().join("compose/docker-compose.yml");
    let compose = |args: &[&str]| {
        let out = Command::new("docker-compose")
            .env("DOCKER_HOST", format!("unix://{}", s.socket.display()))
            .args([
                "--ansi",
                "never",
                "-p",
                "apitest",
                "-f",
                file.to_str().unwrap(),
            ])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (code, out) = compose(&["up", "-d"]);
    assert_eq!(code, Some(0), "{out}");
    let (_, out) = compose(&["ps", "--services"]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["db", "web", "worker"],
        "{out}"
    );
    assert!(common::eventually(5, || compose(&["logs", "web"])
        .1
        .contains("web up")));
    assert_eq!(
        compose(&["exec", "-T", "web", "echo", "hi"]),
        (Some(0), "hi\n".into())
    );
    let (code, out) = compose(&["exec", "-T", "web", "sh", "-c", "hostname; exit 4"]);
    assert_eq!((code, out.as_str()), (Some(4), "webhost\n"));
    assert!(common::eventually(5, || {
        compose(&["exec", "-T", "worker", "cat", "/data/seed"]).1 == "db-data\n"
    }));
    // Nothing changed: nothing is recreated; a forced recreate replaces the container.
    let (code, out) = compose(&["up", "-d"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("is up-to-date"), "{out}");
    let before = b.inspect("apitest_web_1", "{{.Id}}");
    let (code, out) = compose(&["up", "-d", "--force-recreate", "web"]);
    assert_eq!(code, Some(0), "{out}");
    assert_ne!(b.inspect("apitest_web_1", "{{.Id}}"), before);
    let (code, out) = compose(&["run", "--rm", "-T", "web", "echo", "ran"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.lines().any(|l| l == "ran"), "{out}");
    let (code, out) = compose(&["down", "-v"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(b.container_ids().is_empty());
    assert!(!b.ok(&["volume", "ls", "-q"]).contains("apitest_dbdata"));
    assert!(!b.ok(&["network", "ls"]).contains("apitest_back"));
}

mod hangs;
