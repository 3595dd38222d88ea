//! What real clients tripped on (issue 23): calls that left them waiting for ever, and
//! answers that came before what they promise. Every client here runs under a deadline,
//! so a regression fails the test instead of hanging the suite.

use super::{no_docker_cli, serve, Serve};
use crate::common::peers::{output_within, wait_child};
use crate::common::Berth;
use crate::require_root;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;

fn docker(s: &Serve, config: &std::path::Path) -> Command {
    let mut c = Command::new("docker");
    c.env("DOCKER_HOST", format!("unix://{}", s.socket.display()))
        .env("DOCKER_CONFIG", config);
    c
}

/// One HTTP/1.0 request (`head`: the request line and headers, without the blank line;
/// `body` after it) on the service's socket: the whole reply, or the error of a read that
/// waited 20 s.
fn request_within(s: &Serve, head: &str, body: &[u8]) -> std::io::Result<String> {
    let mut c = UnixStream::connect(&s.socket)?;
    c.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(c, "{head}\r\nHost: b\r\n\r\n")?;
    // The service may answer (and close) before a body it refuses is all sent.
    let _ = c.write_all(body);
    let mut reply = String::new();
    c.read_to_string(&mut reply)?;
    Ok(reply)
}

#[test]
fn wait_returns_at_the_first_exit_of_a_container_that_restarts() {
    require_root!();
    let b = Berth::with_busybox();
    let s = serve(&b);
    let id = b.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--restart",
        "always",
        "busybox:test",
        "sh",
        "-c",
        "sleep 0.3; exit 3",
    ]);
    let id = id.trim();
    // berth's own CLI.
    let out = output_within(b.cmd().args(["wait", id]), Duration::from_secs(20))
        .expect("berth wait hung on a restarting container");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "3");
    // The API, raw: the body comes at the exit, with its code.
    let reply = request_within(
        &s,
        &format!("POST /containers/{id}/wait?condition=not-running HTTP/1.0"),
        b"",
    )
    .expect("POST /wait hung on a restarting container");
    assert!(reply.contains(r#""StatusCode":3"#), "{reply}");
    // The docker CLI.
    if !no_docker_cli() {
        let config = b.root.parent().unwrap().join("docker-cli");
        let out = output_within(
            docker(&s, &config).args(["wait", id]),
            Duration::from_secs(20),
        )
        .expect("docker wait hung on a restarting container");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "3");
    }
    // (A forced remove that meets the container between two of its runs may find its
    // cgroup busy; that race is older than this test and not what it is about.)
    assert!(crate::common::eventually(20, || b
        .run(&["rm", "-f", id])
        .status
        .success()));
}

#[test]
fn stats_with_stream_false_in_any_spelling_answers_once() {
    require_root!();
    let b = super::with_web();
    let s = serve(&b);
    for spelling in ["False", "false", "0", "FALSE", "no"] {
        let reply = request_within(
            &s,
            &format!("GET /containers/web/stats?stream={spelling} HTTP/1.0"),
            b"",
        )
        .unwrap_or_else(|e| panic!("stats?stream={spelling} did not end: {e}"));
        let body = reply.split("\r\n\r\n").nth(1).unwrap_or_default();
        let docs: Vec<serde_json::Value> = serde_json::Deserializer::from_str(body)
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(docs.len(), 1, "stream={spelling}: {body}");
        assert!(docs[0]["memory_stats"].is_object(), "{body}");
    }
    // And python3-docker's own call, where it is installed.
    let probe = Command::new("python3")
        .args(["-c", "import docker"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped the docker-py part: python3-docker is not installed");
        return;
    }
    let script = "import docker, sys\n\
                  c = docker.DockerClient(base_url=sys.argv[1])\n\
                  s = c.containers.get('web').stats(stream=False)\n\
                  print(s['name'])\n";
    let out = output_within(
        Command::new("python3").args(["-c", script, &format!("unix://{}", s.socket.display())]),
        Duration::from_secs(20),
    )
    .expect("docker-py's stats(stream=False) hung");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "/web",
        "{out:?}"
    );
}

#[test]
fn custom_detach_keys_end_an_attach_and_leave_the_container_running() {
    require_root!();
    if no_docker_cli() {
        return;
    }
    let b = Berth::with_busybox();
    let s = serve(&b);
    b.ok(&[
        "run",
        "-dit",
        "--name",
        "tty",
        "--network",
        "none",
        "busybox:test",
        "sh",
    ]);
    let base = b.root.parent().unwrap().to_path_buf();
    let plain = base.join("docker-cli");
    let configured = base.join("docker-cli-keys");
    std::fs::create_dir_all(&configured).unwrap();
    std::fs::write(
        configured.join("config.json"),
        r#"{"detachKeys": "ctrl-x,e"}"#,
    )
    .unwrap();
    // The keys by flag, and from the client's config.json (sent as `detachKeys` too). The
    // docker CLI attaches to a terminal's container only from a terminal: `script` gives
    // it one, fed from a pipe.
    for (config, flags) in [(&plain, "--detach-keys ctrl-x,e"), (&configured, "")] {
        let mut child = Command::new("script")
            .args(["-qec", &format!("docker attach {flags} tty"), "/dev/null"])
            .env("DOCKER_HOST", format!("unix://{}", s.socket.display()))
            .env("DOCKER_CONFIG", config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        std::thread::sleep(Duration::from_millis(800));
        let _ = stdin.write_all(b"echo still-here\n");
        std::thread::sleep(Duration::from_millis(300));
        let _ = stdin.write_all(b"\x18e");
        let ended = wait_child(&mut child, Duration::from_secs(20));
        if !ended {
            let _ = child.kill();
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            ended,
            "docker attach {flags:?} did not end at its detach keys: {out:?}"
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("still-here"),
            "{out:?}"
        );
        assert_eq!(
            b.inspect("tty", "{{.State.Status}}"),
            "running",
            "after {flags:?}"
        );
    }
    // The service itself ends the stream at the keys, whatever the client does.
    let mut c = UnixStream::connect(&s.socket).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        c,
        "POST /containers/tty/attach?stream=1&stdin=1&stdout=1&detachKeys=ctrl-x,e HTTP/1.1\r\n\
         Host: b\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 512];
    let n = c.read(&mut head).unwrap();
    assert!(
        String::from_utf8_lossy(&head[..n]).contains(" 101 "),
        "{:?}",
        String::from_utf8_lossy(&head[..n])
    );
    c.write_all(b"\x18e").unwrap();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest)
        .expect("the service did not end the attach at its detach keys");
    assert_eq!(b.inspect("tty", "{{.State.Status}}"), "running");
    // Keys Docker cannot read are refused before anything is attached.
    let reply = request_within(
        &s,
        "POST /containers/tty/attach?stream=1&stdin=1&detachKeys=ctrl-1 HTTP/1.0",
        b"",
    )
    .unwrap();
    assert!(
        reply.starts_with("HTTP/1.0 400") || reply.starts_with("HTTP/1.1 400"),
        "{reply}"
    );
    assert!(
        reply.contains("Invalid detach keys (ctrl-1) provided"),
        "{reply}"
    );
    b.ok(&["rm", "-f", "tty"]);
}

#[test]
fn a_kill_returns_once_the_container_has_exited() {
    require_root!();
    let b = Berth::with_busybox();
    let s = serve(&b);
    for i in 0..5 {
        let name = format!("k{i}");
        b.ok(&[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "none",
            "busybox:test",
            "sleep",
            "1000",
        ]);
        let (status, body) = super::http(&s.socket, "POST", &format!("/containers/{name}/kill"));
        assert_eq!(status, 204, "{body}");
        // Right after: stopped, with SIGKILL's code, and removable without force.
        let (_, body) = super::http(&s.socket, "GET", &format!("/containers/{name}/json"));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["State"]["Running"], false, "{}", v["State"]);
        assert_eq!(v["State"]["ExitCode"], 137, "{}", v["State"]);
        let (status, body) = super::http(&s.socket, "DELETE", &format!("/containers/{name}"));
        assert_eq!(status, 204, "{body}");
    }
}

#[test]
fn a_node_outside_a_swarm_answers_as_dockerd_does() {
    require_root!();
    let b = Berth::with_busybox();
    let s = serve(&b);
    let not_manager = "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.";
    for (method, path, status, message) in [
        ("GET", "/swarm", 503, not_manager),
        ("GET", "/nodes", 503, not_manager),
        ("GET", "/services", 503, not_manager),
        ("GET", "/tasks", 503, not_manager),
        ("GET", "/secrets", 503, not_manager),
        ("GET", "/configs", 503, not_manager),
        ("GET", "/swarm/unlockkey", 503, not_manager),
        (
            "POST",
            "/swarm/leave?force=1",
            503,
            "This node is not part of a swarm",
        ),
        (
            "POST",
            "/swarm/init",
            501,
            "swarm mode is not implemented in berth: this node cannot init or join a swarm",
        ),
        (
            "GET",
            "/plugins",
            501,
            "plugins is not supported by berth (no swarm, no plugins)",
        ),
    ] {
        let (code, body) = super::http(&s.socket, method, path);
        assert_eq!(code, status, "{method} {path}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["message"], message, "{method} {path}");
    }
    // What clients' clean-up code does, through the docker CLI.
    if !no_docker_cli() {
        let config = b.root.parent().unwrap().join("docker-cli");
        let out = output_within(
            docker(&s, &config).args(["swarm", "leave", "--force"]),
            Duration::from_secs(20),
        )
        .unwrap();
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("This node is not part of a swarm"),
            "{out:?}"
        );
        let out = output_within(
            docker(&s, &config).args(["node", "ls"]),
            Duration::from_secs(20),
        )
        .unwrap();
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(not_manager),
            "{out:?}"
        );
    }
}

#[test]
fn info_has_every_field_of_api_1_47s_system_info() {
    require_root!();
    let b = Berth::with_busybox();
    let s = serve(&b);
    let (code, body) = super::http(&s.socket, "GET", "/v1.47/info");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    // SystemInfo's properties in the Engine API 1.47 swagger.
    for field in [
        "ID",
        "Containers",
        "ContainersRunning",
        "ContainersPaused",
        "ContainersStopped",
        "Images",
        "Driver",
        "DriverStatus",
        "DockerRootDir",
        "Plugins",
        "MemoryLimit",
        "SwapLimit",
        "KernelMemoryTCP",
        "CpuCfsPeriod",
        "CpuCfsQuota",
        "CPUShares",
        "CPUSet",
        "PidsLimit",
        "OomKillDisable",
        "IPv4Forwarding",
        "BridgeNfIptables",
        "BridgeNfIp6tables",
        "Debug",
        "NFd",
        "NGoroutines",
        "SystemTime",
        "LoggingDriver",
        "CgroupDriver",
        "CgroupVersion",
        "NEventsListener",
        "KernelVersion",
        "OperatingSystem",
        "OSVersion",
        "OSType",
        "Architecture",
        "NCPU",
        "MemTotal",
        "IndexServerAddress",
        "RegistryConfig",
        "GenericResources",
        "HttpProxy",
        "HttpsProxy",
        "NoProxy",
        "Name",
        "Labels",
        "ExperimentalBuild",
        "ServerVersion",
        "Runtimes",
        "DefaultRuntime",
        "Swarm",
        "LiveRestoreEnabled",
        "Isolation",
        "InitBinary",
        "ContainerdCommit",
        "RuncCommit",
        "InitCommit",
        "SecurityOptions",
        "ProductLicense",
        "DefaultAddressPools",
        "Warnings",
        "CDISpecDirs",
        "Containerd",
    ] {
        assert!(v.get(field).is_some(), "no {field} in {body}");
    }
    // Real values where the host has them.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(v["Name"], host.trim());
    assert!(v["MemTotal"].as_u64().unwrap() > 0);
    assert_eq!(v["Swarm"]["LocalNodeState"], "inactive");
    assert_eq!(v["Debug"], false);
    assert_eq!(v["ExperimentalBuild"], false);
    assert!(v["SystemTime"].as_str().unwrap().contains('T'));
    // The docker CLI reads and prints it whole.
    if !no_docker_cli() {
        let config = b.root.parent().unwrap().join("docker-cli");
        let out = output_within(docker(&s, &config).arg("info"), Duration::from_secs(20)).unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{out:?}");
        assert!(text.contains("Swarm: inactive"), "{text}");
        assert!(text.contains(&format!("Name: {}", host.trim())), "{text}");
    }
}

#[test]
fn events_carry_the_legacy_status_id_and_from_fields() {
    require_root!();
    let b = Berth::with_busybox();
    let s = serve(&b);
    let since = chrono::Utc::now().timestamp() - 1;
    let id = b.ok(&[
        "create",
        "--name",
        "ev",
        "--network",
        "none",
        "busybox:test",
        "true",
    ]);
    b.ok(&["tag", "busybox:test", "evtag:1"]);
    let until = chrono::Utc::now().timestamp() + 1;
    let (code, body) = super::http(
        &s.socket,
        "GET",
        &format!("/events?since={since}&until={until}"),
    );
    assert_eq!(code, 200, "{body}");
    let events: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&body)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();
    let create = events
        .iter()
        .find(|e| e["Type"] == "container" && e["Action"] == "create")
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(create["status"], "create");
    assert_eq!(create["id"], id.trim());
    assert_eq!(create["from"], "busybox:test");
    let tag = events
        .iter()
        .find(|e| e["Type"] == "image" && e["Action"] == "tag")
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(tag["status"], "tag");
    assert_eq!(tag["id"], tag["Actor"]["ID"]);
    assert!(tag.get("from").is_none(), "{tag}");
    // `docker events --format '{{.Status}}'` prints the action.
    if !no_docker_cli() {
        let config = b.root.parent().unwrap().join("docker-cli");
        let out = output_within(
            docker(&s, &config).args([
                "events",
                "--since",
                &since.to_string(),
                "--until",
                &until.to_string(),
                "--format",
                "{{.Status}} {{.Type}}",
            ]),
            Duration::from_secs(20),
        )
        .expect("docker events hung");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.lines().any(|l| l == "create container"), "{text}");
        assert!(text.lines().any(|l| l == "tag image"), "{text}");
    }
}

#[test]
fn logs_since_and_until_bound_what_is_sent() {
    require_root!();
    let b = Berth::with_busybox();
    let s = serve(&b);
    b.ok(&[
        "run",
        "-d",
        "--name",
        "lg",
        "--network",
        "none",
        "busybox:test",
        "sh",
        "-c",
        "echo one; sleep 1.5; echo two",
    ]);
    assert!(crate::common::eventually(10, || b
        .inspect("lg", "{{.State.Status}}")
        == "exited"));
    let times = b.ok(&["logs", "-t", "lg"]);
    let stamps: Vec<chrono::DateTime<chrono::FixedOffset>> = times
        .lines()
        .map(|l| chrono::DateTime::parse_from_rfc3339(l.split(' ').next().unwrap()).unwrap())
        .collect();
    assert_eq!(stamps.len(), 2, "{times}");
    // A moment between the two lines, as the docker CLI sends it: seconds.nanoseconds.
    let mid = stamps[0] + (stamps[1] - stamps[0]) / 2;
    let mid = format!("{}.{:09}", mid.timestamp(), mid.timestamp_subsec_nanos());
    let logs = |query: &str| {
        let (code, body) = super::http(
            &s.socket,
            "GET",
            &format!("/containers/lg/logs?stdout=1&{query}"),
        );
        assert_eq!(code, 200, "{body}");
        // One multiplexed frame a line: the text after each 8-byte header.
        body.split('\n')
            .filter_map(|f| f.get(8..).or(Some("")).filter(|t| !t.is_empty()))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(logs(&format!("until={mid}")), ["one"]);
    assert_eq!(logs(&format!("since={mid}")), ["two"]);
    assert_eq!(logs("since=0"), ["one", "two"]);
    let (code, _) = super::http(&s.socket, "GET", "/containers/lg/logs?stdout=1&until=soon");
    assert_eq!(code, 400);
    if !no_docker_cli() {
        let config = b.root.parent().unwrap().join("docker-cli");
        let out = output_within(
            docker(&s, &config).args(["logs", "--until", &mid, "lg"]),
            Duration::from_secs(20),
        )
        .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "one\n", "{out:?}");
    }
}

#[test]
fn volumes_a_create_body_declares_are_anonymous_volumes_that_prune_removes() {
    require_root!();
    let b = Berth::with_busybox();
    let s = serve(&b);
    // `docker run -v /data` sends the path in Config.Volumes, not in HostConfig.
    let (code, body) = super::http_with(
        &s.socket,
        "POST",
        "/containers/create?name=vv",
        r#"{"Image":"busybox:test","Cmd":["true"],"Volumes":{"/data":{}},"HostConfig":{"NetworkMode":"none"}}"#,
    );
    assert_eq!(code, 201, "{body}");
    assert_eq!(
        b.inspect("vv", "{{range .Mounts}}{{.Type}} {{.Destination}}{{end}}"),
        "volume /data"
    );
    let volume = b.inspect("vv", "{{range .Mounts}}{{.Name}}{{end}}");
    assert_eq!(b.ok(&["volume", "ls", "-q"]).trim(), volume);
    let (code, _) = super::http(&s.socket, "DELETE", "/containers/vv");
    assert_eq!(code, 204);
    let (code, body) = super::http(&s.socket, "POST", "/volumes/prune");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(&volume), "{body}");
    assert_eq!(b.ok(&["volume", "ls", "-q"]).trim(), "");
    if !no_docker_cli() {
        let config = b.root.parent().unwrap().join("docker-cli");
        let out = output_within(
            docker(&s, &config).args([
                "run",
                "--rm",
                "--network",
                "none",
                "-v",
                "/data",
                "busybox:test",
                "sh",
                "-c",
                "grep -c ' /data ' /proc/mounts",
            ]),
            Duration::from_secs(30),
        )
        .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1", "{out:?}");
    }
}

#[test]
fn a_load_answers_a_stream_of_messages_and_a_bad_archive_is_an_error_in_it() {
    require_root!();
    let b = Berth::with_busybox();
    let s = serve(&b);
    let dir = b.root.parent().unwrap().to_path_buf();
    let good = dir.join("good.tar");
    b.ok(&["save", "-o", good.to_str().unwrap(), "busybox:test"]);
    let bad = dir.join("bad.tar");
    std::fs::write(&bad, "not a tar archive\n").unwrap();
    let load = |path: &std::path::Path| {
        let data = std::fs::read(path).unwrap();
        let head = format!(
            "POST /images/load HTTP/1.0\r\nContent-Type: application/x-tar\r\nContent-Length: {}",
            data.len()
        );
        let reply = request_within(&s, &head, &data).unwrap();
        let (head, body) = reply.split_once("\r\n\r\n").unwrap();
        let messages: Vec<serde_json::Value> = serde_json::Deserializer::from_str(body)
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("not a stream of JSON messages: {e}: {body}"));
        (head.to_string(), messages)
    };
    let (head, messages) = load(&good);
    assert!(head.contains(" 200 "), "{head}");
    assert_eq!(messages[0]["stream"], "Loaded image: busybox:test\n");
    let (head, messages) = load(&bad);
    assert!(head.contains(" 200 "), "{head}");
    assert!(
        messages[0]["errorDetail"]["message"].is_string(),
        "{messages:?}"
    );
    assert_eq!(messages[0]["error"], messages[0]["errorDetail"]["message"]);
    // docker-py raises what the stream says; the docker CLI prints it and fails.
    let probe = Command::new("python3")
        .args(["-c", "import docker"])
        .output();
    if probe.is_ok_and(|o| o.status.success()) {
        let script = "import docker, sys\n\
                      c = docker.DockerClient(base_url=sys.argv[1])\n\
                      print([i.tags for i in c.images.load(open(sys.argv[2], 'rb').read())])\n\
                      try:\n    c.images.load(open(sys.argv[3], 'rb').read())\n    print('loaded')\n\
                      except docker.errors.ImageLoadError as e:\n    print('ImageLoadError')\n";
        let out = output_within(
            Command::new("python3").args([
                "-c",
                script,
                &format!("unix://{}", s.socket.display()),
                good.to_str().unwrap(),
                bad.to_str().unwrap(),
            ]),
            Duration::from_secs(30),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "[['busybox:test']]\nImageLoadError\n",
            "{out:?}"
        );
    } else {
        eprintln!("skipped the docker-py part: python3-docker is not installed");
    }
    if !no_docker_cli() {
        let config = dir.join("docker-cli");
        let out = output_within(
            docker(&s, &config).args(["load", "-i", bad.to_str().unwrap()]),
            Duration::from_secs(20),
        )
        .unwrap();
        assert!(!out.status.success(), "{out:?}");
    }
}
