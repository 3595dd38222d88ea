//! `berth serve`: the Docker Engine API, driven by the real docker CLI and by raw HTTP
//! on a unix socket.

mod common;

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
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: berth\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
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
        body.contains("\"message\":\"no such container: nosuch\""),
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
    // What is not there yet says so.
    let (code, _, err) = docker(&["exec", "web", "true"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("not implemented yet in berth serve"), "{err}");
}
