//! The engine's rules through the API: the same bad request refused alike by every
//! front end, error classes as statuses, builds run and cancelled in the service.

use super::*;

/// One bad request as each front end is given it: `berth create` flags, a Docker API
/// create body, a compose service (None where compose has no key for it).
struct BadRequest {
    flags: &'static [&'static str],
    body: &'static str,
    service: Option<&'static str>,
    message: &'static str,
}

#[test]
fn the_same_bad_request_is_refused_alike_by_the_cli_the_api_and_compose() {
    require_root!();
    let b = Berth::with_busybox();
    let s = serve(&b);
    let cases = [
        BadRequest {
            flags: &["-m", "1000b"],
            body: r#"{"HostConfig":{"Memory":1000}}"#,
            service: Some("mem_limit: 1000b"),
            message: "Minimum memory limit allowed is 6MB",
        },
        BadRequest {
            flags: &["-m", "64m", "--memory-reservation", "128m"],
            body: r#"{"HostConfig":{"Memory":67108864,"MemoryReservation":134217728}}"#,
            service: Some("mem_limit: 64m\n    mem_reservation: 128m"),
            message: "Minimum memory limit can not be less than memory reservation limit, see usage",
        },
        BadRequest {
            flags: &["-m", "64m", "--memory-swap", "32m"],
            body: r#"{"HostConfig":{"Memory":67108864,"MemorySwap":33554432}}"#,
            service: None,
            message: "Minimum memoryswap limit should be larger than memory limit, see usage",
        },
        BadRequest {
            flags: &["--rm", "--restart", "always"],
            body: r#"{"HostConfig":{"AutoRemove":true,"RestartPolicy":{"Name":"always"}}}"#,
            service: None,
            message: "Conflicting options: --restart and --rm",
        },
        BadRequest {
            flags: &["--restart", "sometimes"],
            body: r#"{"HostConfig":{"RestartPolicy":{"Name":"sometimes"}}}"#,
            service: Some("restart: sometimes"),
            message: "invalid restart policy 'sometimes'",
        },
        BadRequest {
            flags: &["--ulimit", "nofile=10:5"],
            body: r#"{"HostConfig":{"Ulimits":[{"Name":"nofile","Soft":10,"Hard":5}]}}"#,
            service: Some("ulimits:\n      nofile: {soft: 10, hard: 5}"),
            message: "ulimit soft limit must be less than or equal to hard limit: 10 > 5",
        },
        BadRequest {
            flags: &["--ulimit", "bogus=1"],
            body: r#"{"HostConfig":{"Ulimits":[{"Name":"bogus","Soft":1,"Hard":1}]}}"#,
            service: Some("ulimits:\n      bogus: 1"),
            message: "invalid ulimit type: bogus",
        },
        BadRequest {
            flags: &["--log-opt", "max-buffer=1"],
            body: r#"{"HostConfig":{"LogConfig":{"Type":"json-file","Config":{"max-buffer":"1"}}}}"#,
            service: None,
            message: "unknown log opt 'max-buffer' for json-file log driver",
        },
        BadRequest {
            flags: &["--stop-signal", "SIGNOPE"],
            body: r#"{"StopSignal":"SIGNOPE"}"#,
            service: Some("stop_signal: SIGNOPE"),
            message: "invalid signal: SIGNOPE",
        },
        BadRequest {
            flags: &["--health-cmd", "true", "--health-retries", "-1"],
            body: r#"{"Healthcheck":{"Test":["CMD-SHELL","true"],"Retries":-1}}"#,
            service: Some("healthcheck:\n      test: true\n      retries: -1"),
            message: "Retries in Healthcheck cannot be negative",
        },
        BadRequest {
            flags: &["--mount", "type=bind,source=/tmp,target=data"],
            body: r#"{"HostConfig":{"Mounts":[{"Type":"bind","Source":"/tmp","Target":"data"}]}}"#,
            service: Some("volumes: [{type: bind, source: /tmp, target: data}]"),
            message: "invalid mount config for type \"bind\": invalid mount path: 'data' mount path must be absolute",
        },
        BadRequest {
            flags: &["--device-cgroup-rule", "c 1:11"],
            body: r#"{"HostConfig":{"DeviceCgroupRules":["c 1:11"]}}"#,
            service: Some("device_cgroup_rules: [\"c 1:11\"]"),
            message: "invalid device cgroup format 'c 1:11'",
        },
    ];
    let dir = b.root.parent().unwrap().join("project");
    std::fs::create_dir_all(&dir).unwrap();
    for c in &cases {
        // The CLI: exit 125 and the message.
        let mut args = vec!["create"];
        args.extend_from_slice(c.flags);
        args.extend(["busybox:test", "true"]);
        let (code, err) = b.fails(&args);
        assert_eq!(code, 125, "berth {args:?}: {err}");
        assert_eq!(
            err.trim(),
            format!("Error: {}", c.message),
            "berth {args:?}"
        );
        // The API: 400 and the same message.
        let mut body: serde_json::Value = serde_json::from_str(c.body).unwrap();
        body["Image"] = "busybox:test".into();
        let (status, reply) = http_with(&s.socket, "POST", "/containers/create", &body.to_string());
        assert_eq!(status, 400, "{body}: {reply}");
        let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(reply["message"], c.message, "{body}");
        // Compose: the same message, and nothing made.
        if let Some(service) = c.service {
            std::fs::write(
                dir.join("compose.yaml"),
                format!("services:\n  web:\n    image: busybox:test\n    {service}\n"),
            )
            .unwrap();
            let out = b
                .cmd()
                .current_dir(&dir)
                .args(["compose", "up", "-d"])
                .env_remove("COMPOSE_FILE")
                .env_remove("COMPOSE_PROJECT_NAME")
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success(),
                "compose with {service:?} should fail"
            );
            assert!(
                err.lines().any(|l| l.ends_with(c.message)),
                "compose with {service:?}: {err}"
            );
        }
    }
    assert_eq!(b.ok(&["ps", "-aq"]).trim(), "", "nothing was created");
}

#[test]
fn a_network_name_in_use_is_a_conflict_and_an_unknown_driver_not_implemented() {
    require_root!();
    let b = Berth::new();
    let s = serve(&b);
    let (code, body) = http_with(
        &s.socket,
        "POST",
        "/networks/create",
        r#"{"Name":"bridge"}"#,
    );
    assert_eq!(code, 409, "{body}");
    assert!(
        body.contains("network with name bridge already exists"),
        "{body}"
    );
    let (code, body) = http_with(
        &s.socket,
        "POST",
        "/networks/create",
        r#"{"Name":"ov","Driver":"overlay"}"#,
    );
    assert_eq!(code, 501, "{body}");
}

#[test]
fn exec_create_is_checked_by_the_engines_rules() {
    require_root!();
    let b = with_web();
    b.ok(&["create", "--name", "idle", "busybox:test", "true"]);
    let s = serve(&b);
    let exec = |target: &str, body: &str| {
        let (code, reply) = http_with(
            &s.socket,
            "POST",
            &format!("/containers/{target}/exec"),
            body,
        );
        let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
        (code, v["message"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(
        exec("web", r#"{"Cmd":[]}"#),
        (400, "No exec command specified".into())
    );
    assert_eq!(
        exec("web", r#"{"Cmd":["pwd"],"WorkingDir":"tmp"}"#),
        (
            400,
            "the working directory 'tmp' is invalid, it needs to be an absolute path".into()
        )
    );
    let id = b.inspect("idle", "{{.Id}}");
    assert_eq!(
        exec("idle", r#"{"Cmd":["true"]}"#),
        (409, format!("Container {id} is not running"))
    );
    assert_eq!(exec("nosuch", r#"{"Cmd":["true"]}"#).0, 404);
    // And the CLI refuses the same exec with the same words.
    let (code, err) = b.fails(&["exec", "-w", "tmp", "web", "pwd"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("the working directory 'tmp' is invalid, it needs to be an absolute path"),
        "{err}"
    );
}

#[test]
fn a_build_runs_in_the_service_and_stops_when_its_client_goes() {
    require_root!();
    let b = Berth::with_busybox();
    let s = serve(&b);
    let ctx = b.root.parent().unwrap().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    // A step that prints once, then nothing for a long time.
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:test\nRUN echo started; sleep 60\n",
    )
    .unwrap();
    let tar = Command::new("tar")
        .args(["-C", ctx.to_str().unwrap(), "-cf", "-", "Dockerfile"])
        .output()
        .unwrap()
        .stdout;
    let mut conn = UnixStream::connect(&s.socket).unwrap();
    write!(
        conn,
        "POST /build?t=gone:1 HTTP/1.1\r\nHost: berth\r\nContent-Type: application/x-tar\r\nContent-Length: {}\r\n\r\n",
        tar.len()
    )
    .unwrap();
    conn.write_all(&tar).unwrap();
    // The step has started when its first line has come.
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("started") {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    // Built by the service itself: no `berth build` child of it.
    let pid = s.child.id();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let children =
            std::fs::read_to_string(task.unwrap().path().join("children")).unwrap_or_default();
        for child in children.split_whitespace() {
            let cmdline =
                std::fs::read_to_string(format!("/proc/{child}/cmdline")).unwrap_or_default();
            assert!(
                !cmdline.split('\0').any(|a| a == "build"),
                "a build child: {cmdline:?}"
            );
        }
    }
    drop(conn);
    // The client went: the step's container goes, nothing is tagged.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let left = b.ok(&["ps", "-aq"]);
        if left.trim().is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the cancelled build's container is still here: {left}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(!b.ok(&["images"]).contains("gone"));
    // And the service goes on serving.
    assert_eq!(http(&s.socket, "GET", "/_ping").0, 200);
}

#[test]
fn volume_and_network_requests_are_refused_alike_by_the_cli_and_the_api() {
    require_root!();
    let b = Berth::new();
    let s = serve(&b);
    let cases: [(&[&str], &str, &str, u16, &str); 4] = [
        (
            &["volume", "create", "-d", "nfs", "v1"],
            "/volumes/create",
            r#"{"Name":"v1","Driver":"nfs"}"#,
            404,
            "error looking up volume plugin nfs: plugin \"nfs\" not found",
        ),
        (
            &["volume", "create", "-o", "type=tmpfs", "v2"],
            "/volumes/create",
            r#"{"Name":"v2","DriverOpts":{"type":"tmpfs"}}"#,
            501,
            "volume driver options (type, device, o) are not implemented yet in berth",
        ),
        (
            &["network", "create", "--ipv6", "n6"],
            "/networks/create",
            r#"{"Name":"n6","EnableIPv6":true}"#,
            501,
            "IPv6 is not implemented yet in berth",
        ),
        (
            &["network", "create", "--subnet", "10.99.0.0/31", "tiny"],
            "/networks/create",
            r#"{"Name":"tiny","IPAM":{"Config":[{"Subnet":"10.99.0.0/31"}]}}"#,
            400,
            "subnet 10.99.0.0/31 is too small for a network",
        ),
    ];
    for (args, path, body, status, message) in cases {
        let (code, err) = b.fails(args);
        assert_eq!(code, 1, "berth {args:?}: {err}");
        assert_eq!(err.trim(), format!("Error: {message}"), "berth {args:?}");
        let (got, reply) = http_with(&s.socket, "POST", path, body);
        assert_eq!(got, status, "{body}: {reply}");
        let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(reply["message"], message, "{body}");
    }
    assert_eq!(b.ok(&["volume", "ls", "-q"]).trim(), "");
    // A volume without a name is anonymous whichever front end made it.
    let (code, reply) = http_with(&s.socket, "POST", "/volumes/create", "{}");
    assert_eq!(code, 201, "{reply}");
    b.ok(&["volume", "create"]);
    b.ok(&["volume", "create", "kept"]);
    assert_eq!(b.ok(&["volume", "ls", "-q"]).lines().count(), 3);
    // `volume prune` takes anonymous volumes only.
    b.ok(&["volume", "prune", "-f"]);
    assert_eq!(b.ok(&["volume", "ls", "-q"]).trim(), "kept");
}
