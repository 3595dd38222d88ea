//! Containers end to end: run, exit codes, life cycle, logs, exec, inspect, names.

#[path = "../common/mod.rs"]
mod common;
mod monitoring;
use common::{eventually, Berth};

#[test]
fn run_rm_hello_prints_the_explanation_and_leaves_the_image() {
    require_root!();
    let b = Berth::new();
    let out = b.ok(&["run", "--rm", "hello"]);
    assert!(out.contains("Hello from berth!"), "{out}");
    assert!(out.contains("immutable"), "{out}");
    assert!(b.ok(&["images"]).contains("hello"));
    assert!(b.container_ids().is_empty(), "--rm left a container");
}

#[test]
fn run_exits_with_the_containers_code_and_dockers_engine_codes() {
    require_root!();
    let b = Berth::with_busybox();
    assert_eq!(
        b.run(&["run", "--rm", "busybox:test", "sh", "-c", "exit 42"])
            .status
            .code(),
        Some(42)
    );
    assert_eq!(
        b.fails(&["run", "--rm", "busybox:test", "/no/such/binary"])
            .0,
        127
    );
    assert_eq!(b.fails(&["run", "--rm", "busybox:test", "/etc"]).0, 126);
    // (--pull never: a missing image would otherwise be pulled, from the network.)
    let (code, err) = b.fails(&["run", "--rm", "--pull", "never", "no-such-image:2"]);
    assert_eq!(code, 125);
    assert!(err.contains("no such image: no-such-image:2"), "{err}");
    let (code, err) = b.fails(&["run", "--rm", "--memory", "lots", "busybox:test", "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("--memory"), "{err}");
    // The monitor a failed `run` started ahead of its container ended with it.
    let spares: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains("--spare") && c.contains(b.root.to_str().unwrap()))
        .collect();
    assert!(spares.is_empty(), "{spares:?}");
    // Killed by a signal: 128 + N.
    let id = b.ok(&["run", "-d", "busybox:test", "sleep", "30"]);
    b.ok(&["kill", "-s", "KILL", id.trim()]);
    assert_eq!(b.ok(&["wait", id.trim()]).trim(), "137");
    assert!(b.container_ids().len() == 1);
}

#[test]
fn stdout_and_stderr_stay_apart_and_stdin_is_forwarded_with_i() {
    require_root!();
    let b = Berth::with_busybox();
    let out = b.run(&[
        "run",
        "--rm",
        "busybox:test",
        "sh",
        "-c",
        "echo out; echo err >&2",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    let mut child = b
        .cmd()
        .args([
            "run",
            "-i",
            "--rm",
            "busybox:test",
            "sh",
            "-c",
            "tr a-z A-Z",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"shout\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "SHOUT\n");
}

#[test]
fn create_start_attach_and_start_of_a_running_container() {
    require_root!();
    let b = Berth::with_busybox();
    let id = b.ok(&[
        "create",
        "--name",
        "c1",
        "busybox:test",
        "echo",
        "created-then-started",
    ]);
    assert_eq!(id.trim().len(), 64);
    assert_eq!(b.inspect("c1", "{{.State.Status}}"), "created");
    assert!(b.ok(&["ps", "-a"]).contains("Created"));
    let out = b.ok(&["start", "-a", "c1"]);
    assert_eq!(out, "created-then-started\n");
    assert_eq!(
        b.inspect("c1", "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 0"
    );
    // start again works (a new run of the same container)
    assert_eq!(b.ok(&["start", "-a", "c1"]), "created-then-started\n");
    b.ok(&["run", "-d", "--name", "long", "busybox:test", "sleep", "30"]);
    assert_eq!(b.ok(&["start", "long"]).trim(), "long");
}

#[test]
fn ps_filters_quiet_latest_and_no_trunc() {
    require_root!();
    let b = Berth::with_busybox();
    b.ok(&[
        "run",
        "-d",
        "--name",
        "alpha",
        "-l",
        "tier=web",
        "busybox:test",
        "sleep",
        "30",
    ]);
    b.ok(&[
        "run",
        "--name",
        "beta",
        "-l",
        "tier=db",
        "busybox:test",
        "true",
    ]);
    let ps = b.ok(&["ps"]);
    assert!(ps.starts_with("CONTAINER ID   IMAGE"), "{ps}");
    assert!(ps.contains("alpha") && !ps.contains("beta"), "{ps}");
    let all = b.ok(&["ps", "-a"]);
    assert!(all.contains("beta") && all.contains("Exited (0)"), "{all}");
    assert_eq!(
        b.ok(&["ps", "-aq", "-f", "label=tier=db"]).lines().count(),
        1
    );
    assert_eq!(
        b.ok(&["ps", "-aq", "-f", "status=exited"]).trim(),
        b.inspect("beta", "{{.Id}}")[..12].to_string()
    );
    assert_eq!(b.ok(&["ps", "-q", "-f", "name=alp"]).trim().len(), 12);
    assert_eq!(b.ok(&["ps", "-q", "--no-trunc"]).trim().len(), 64);
    assert!(b
        .ok(&["ps", "-l", "--format", "{{.Names}}"])
        .contains("beta"));
    assert_eq!(
        b.ok(&["ps", "-aq", "-f", "ancestor=busybox:test"])
            .lines()
            .count(),
        2
    );
    let f = b.ok(&["ps", "--format", "{{.Names}}\t{{.Status}}"]);
    assert!(f.starts_with("alpha\tUp "), "{f}");
    let t = b.ok(&["ps", "--format", "table {{.Names}}\t{{.Image}}"]);
    assert!(t.starts_with("NAMES"), "{t}");
    let j = b.ok(&["ps", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(j.lines().next().unwrap()).unwrap();
    assert_eq!(v["Names"], "alpha");
}

#[test]
fn stop_sends_sigterm_then_sigkill_after_the_timeout() {
    require_root!();
    let b = Berth::with_busybox();
    // A container that ignores SIGTERM is killed after -t.
    b.ok(&[
        "run",
        "-d",
        "--name",
        "stubborn",
        "busybox:test",
        "sh",
        "-c",
        "trap '' TERM; touch /tmp/trapped; while true; do sleep 0.1; done",
    ]);
    assert!(eventually(10, || b
        .run(&["exec", "stubborn", "test", "-e", "/tmp/trapped"])
        .status
        .success()));
    let t = std::time::Instant::now();
    b.ok(&["stop", "-t", "1", "stubborn"]);
    assert!(t.elapsed() >= std::time::Duration::from_millis(900));
    assert_eq!(b.inspect("stubborn", "{{.State.ExitCode}}"), "137");
    // One that handles SIGTERM exits by itself.
    b.ok(&[
        "run",
        "-d",
        "--name",
        "polite",
        "busybox:test",
        "sh",
        "-c",
        "trap 'exit 7' TERM; touch /tmp/trapped; while true; do sleep 0.1; done",
    ]);
    assert!(eventually(10, || b
        .run(&["exec", "polite", "test", "-e", "/tmp/trapped"])
        .status
        .success()));
    b.ok(&["stop", "polite"]);
    assert_eq!(b.inspect("polite", "{{.State.ExitCode}}"), "7");
    // --stop-signal
    b.ok(&[
        "run",
        "-d",
        "--name",
        "usr1",
        "--stop-signal",
        "USR1",
        "busybox:test",
        "sh",
        "-c",
        "trap 'exit 9' USR1; touch /tmp/trapped; while true; do sleep 0.1; done",
    ]);
    assert!(eventually(10, || b
        .run(&["exec", "usr1", "test", "-e", "/tmp/trapped"])
        .status
        .success()));
    b.ok(&["stop", "usr1"]);
    assert_eq!(b.inspect("usr1", "{{.State.ExitCode}}"), "9");
    // stopping a stopped container is fine; killing one is an error
    b.ok(&["stop", "usr1"]);
    assert_eq!(b.fails(&["kill", "usr1"]).0, 1);
}

#[test]
fn kill_with_a_signal_and_restart() {
    require_root!();
    let b = Berth::with_busybox();
    b.ok(&[
        "run",
        "-d",
        "--name",
        "kl",
        "busybox:test",
        "sh",
        "-c",
        "trap 'exit 3' HUP; touch /tmp/trapped; while true; do sleep 0.1; done",
    ]);
    assert!(eventually(10, || b
        .run(&["exec", "kl", "test", "-e", "/tmp/trapped"])
        .status
        .success()));
    b.ok(&["kill", "-s", "HUP", "kl"]);
    assert_eq!(b.ok(&["wait", "kl"]).trim(), "3");
    assert_eq!(b.fails(&["kill", "-s", "NOPE", "kl"]).0, 1);
    b.ok(&["restart", "-t", "1", "kl"]);
    assert_eq!(b.inspect("kl", "{{.State.Status}}"), "running");
}

#[test]
fn rm_refuses_running_containers_unless_forced() {
    require_root!();
    let b = Berth::with_busybox();
    b.ok(&["run", "-d", "--name", "busy", "busybox:test", "sleep", "30"]);
    let (code, err) = b.fails(&["rm", "busy"]);
    assert_eq!(code, 1);
    assert!(err.contains("container is running"), "{err}");
    b.ok(&["rm", "-f", "busy"]);
    assert!(b.container_ids().is_empty());
    let (_, err) = b.fails(&["rm", "ghost"]);
    assert!(err.contains("no such container: ghost"), "{err}");
}

#[test]
fn logs_tail_timestamps_since_and_follow() {
    require_root!();
    let b = Berth::with_busybox();
    b.ok(&[
        "run",
        "--name",
        "lg",
        "busybox:test",
        "sh",
        "-c",
        "for i in 1 2 3 4 5; do echo line $i; done; echo oops >&2",
    ]);
    let all = b.run(&["logs", "lg"]);
    assert_eq!(
        String::from_utf8_lossy(&all.stdout),
        "line 1\nline 2\nline 3\nline 4\nline 5\n"
    );
    assert_eq!(String::from_utf8_lossy(&all.stderr), "oops\n");
    assert_eq!(b.ok(&["logs", "--tail", "2", "lg"]), "line 5\n");
    let ts = b.ok(&["logs", "-t", "--tail", "1", "lg"]);
    assert!(
        ts.contains('T') && ts.contains("Z line") || ts.is_empty() || ts.contains("Z "),
        "{ts}"
    );
    assert_eq!(b.ok(&["logs", "--since", "1h", "lg"]).lines().count(), 5);
    assert_eq!(b.ok(&["logs", "--until", "1h", "lg"]).lines().count(), 0);
    // The json-file format: one JSON object a line.
    let id = b.inspect("lg", "{{.Id}}");
    let raw =
        std::fs::read_to_string(b.root.join("containers").join(&id).join("log.json")).unwrap();
    let first: serde_json::Value = serde_json::from_str(raw.lines().next().unwrap()).unwrap();
    assert_eq!(first["log"], "line 1\n");
    assert_eq!(first["stream"], "stdout");
    // -f follows until the container stops.
    b.ok(&[
        "run",
        "-d",
        "--name",
        "fl",
        "busybox:test",
        "sh",
        "-c",
        "for i in 1 2 3; do echo tick $i; sleep 0.2; done",
    ]);
    let out = b.ok(&["logs", "-f", "fl"]);
    assert_eq!(out, "tick 1\ntick 2\ntick 3\n");
}

#[test]
fn log_rotation_keeps_max_file_files() {
    require_root!();
    let b = Berth::with_busybox();
    b.ok(&[
        "run",
        "--name",
        "rot",
        "--log-opt",
        "max-size=1k",
        "--log-opt",
        "max-file=3",
        "busybox:test",
        "sh",
        "-c",
        "i=0; while [ $i -lt 200 ]; do echo line-$i; i=$((i+1)); done",
    ]);
    let id = b.inspect("rot", "{{.Id}}");
    let dir = b.root.join("containers").join(&id);
    assert!(dir.join("log.json.1").exists() && dir.join("log.json.2").exists());
    assert!(!dir.join("log.json.3").exists());
    let out = b.ok(&["logs", "rot"]);
    assert!(out.ends_with("line-199\n"), "{out}");
    let nums: Vec<u32> = out
        .lines()
        .map(|l| l.trim_start_matches("line-").parse().unwrap())
        .collect();
    assert!(
        nums.windows(2).all(|w| w[1] == w[0] + 1),
        "logs out of order across rotation"
    );
    // local: compressed rotation, read back in order.
    b.ok(&[
        "run",
        "--name",
        "packed",
        "--log-driver",
        "local",
        "--log-opt",
        "max-size=1k",
        "--log-opt",
        "max-file=3",
        "busybox:test",
        "sh",
        "-c",
        "i=0; while [ $i -lt 200 ]; do echo line-$i; i=$((i+1)); done",
    ]);
    let pid = b.inspect("packed", "{{.Id}}");
    let pdir = b.root.join("containers").join(&pid);
    assert!(pdir.join("log.json.1.gz").exists() && pdir.join("log.json.2.gz").exists());
    assert!(!pdir.join("log.json.1").exists());
    let out = b.ok(&["logs", "packed"]);
    assert!(out.ends_with("line-199\n"), "{out}");
    let nums: Vec<u32> = out
        .lines()
        .map(|l| l.trim_start_matches("line-").parse().unwrap())
        .collect();
    assert!(nums.windows(2).all(|w| w[1] == w[0] + 1));
    assert_eq!(b.ok(&["logs", "--tail", "1", "packed"]), "line-199\n");
    b.ok(&[
        "run",
        "--rm",
        "--log-driver",
        "none",
        "busybox:test",
        "true",
    ]);
    assert_eq!(
        b.fails(&[
            "run",
            "--rm",
            "--log-opt",
            "max-size=x",
            "busybox:test",
            "true"
        ])
        .0,
        125
    );
}

#[test]
fn exec_runs_in_the_container_with_env_workdir_user_and_exit_code() {
    require_root!();
    let b = Berth::with_busybox();
    b.ok(&[
        "run",
        "-d",
        "--name",
        "ex",
        "-e",
        "FROM_RUN=1",
        "busybox:test",
        "sleep",
        "30",
    ]);
    assert_eq!(b.ok(&["exec", "ex", "echo", "hi"]), "hi\n");
    assert_eq!(
        b.ok(&["exec", "-e", "A=b", "ex", "sh", "-c", "echo $A$FROM_RUN"]),
        "b1\n"
    );
    assert_eq!(b.ok(&["exec", "-w", "/tmp", "ex", "pwd"]), "/tmp\n");
    assert_eq!(b.ok(&["exec", "-u", "web", "ex", "id", "-u"]), "33\n");
    assert_eq!(
        b.run(&["exec", "ex", "sh", "-c", "exit 5"]).status.code(),
        Some(5)
    );
    // Docker's codes and words: not found 127, found but not executable 126.
    let (code, err) = b.fails(&["exec", "ex", "no-such-cmd"]);
    assert_eq!(code, 127);
    assert!(
        err.contains("exec: \"no-such-cmd\": executable file not found in $PATH"),
        "{err}"
    );
    let (code, err) = b.fails(&["exec", "ex", "/etc/passwd"]);
    assert_eq!(code, 126);
    assert!(
        err.contains("exec: \"/etc/passwd\": permission denied"),
        "{err}"
    );
    // exec sees the container's processes, not the host's
    let ps = b.ok(&["exec", "ex", "ps"]);
    assert!(ps.contains("sleep 30") && ps.lines().count() <= 4, "{ps}");
    b.ok(&["exec", "-d", "ex", "sh", "-c", "echo detached > /tmp/d"]);
    assert!(eventually(5, || b
        .run(&["exec", "ex", "cat", "/tmp/d"])
        .stdout
        == b"detached\n"));
    let mut child = b
        .cmd()
        .args(["exec", "-i", "ex", "cat"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"via stdin\n")
        .unwrap();
    assert_eq!(child.wait_with_output().unwrap().stdout, b"via stdin\n");
    b.ok(&["stop", "-t", "0", "ex"]);
    let (code, err) = b.fails(&["exec", "ex", "true"]);
    assert_eq!(code, 1);
    assert!(err.contains("not running"), "{err}");
}

#[test]
fn inspect_is_shaped_like_dockers() {
    require_root!();
    let b = Berth::with_busybox();
    b.ok(&[
        "run",
        "-d",
        "--name",
        "insp",
        "-e",
        "K=V",
        "-w",
        "/tmp",
        "-l",
        "a.b=c",
        "--hostname",
        "box",
        "busybox:test",
        "sleep",
        "30",
    ]);
    let v: serde_json::Value = serde_json::from_str(&b.ok(&["inspect", "insp"])).unwrap();
    let c = &v[0];
    assert_eq!(c["Name"], "/insp");
    assert_eq!(c["State"]["Status"], "running");
    assert_eq!(c["State"]["Running"], true);
    assert!(c["State"]["Pid"].as_i64().unwrap() > 0);
    assert_eq!(c["State"]["OOMKilled"], false);
    assert!(c["State"]["StartedAt"].as_str().unwrap().starts_with("20"));
    assert_eq!(c["Config"]["Hostname"], "box");
    assert_eq!(c["Config"]["WorkingDir"], "/tmp");
    assert!(c["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "K=V"));
    assert_eq!(c["Path"], "sleep");
    assert_eq!(c["Args"][0], "30");
    assert_eq!(b.inspect("insp", "{{index .Config.Labels \"a.b\"}}"), "c");
    assert_eq!(
        b.inspect("insp", "{{json .Config.Cmd}}"),
        r#"["sleep","30"]"#
    );
    let pid: i32 = b.inspect("insp", "{{.State.Pid}}").parse().unwrap();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    let (code, err) = b.fails(&["inspect", "nothing-here"]);
    assert_eq!(code, 1);
    assert!(err.contains("no such object: nothing-here"), "{err}");
}

#[test]
fn names_and_id_prefixes_work_everywhere_and_rename() {
    require_root!();
    let b = Berth::with_busybox();
    let id = b
        .ok(&[
            "run",
            "-d",
            "--name",
            "named",
            "busybox:test",
            "sleep",
            "30",
        ])
        .trim()
        .to_string();
    assert_eq!(b.ok(&["exec", &id[..5], "echo", "ok"]), "ok\n");
    assert_eq!(b.inspect(&id[..8], "{{.Name}}"), "/named");
    let (code, err) = b.fails(&["run", "--name", "named", "busybox:test", "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("already in use"), "{err}");
    b.ok(&["rename", "named", "renamed"]);
    assert_eq!(b.inspect(&id, "{{.Name}}"), "/renamed");
    assert!(b
        .fails(&["run", "--name", "bad name!", "busybox:test", "true"])
        .1
        .contains("invalid container name"));
    // A random Docker-style name when none is given.
    let id2 = b.ok(&["create", "busybox:test"]).trim().to_string();
    let name = b.inspect(&id2, "{{.Name}}");
    assert!(name.trim_start_matches('/').contains('_'), "{name}");
}

#[test]
fn top_lists_only_the_containers_processes() {
    require_root!();
    if std::process::Command::new("ps")
        .arg("-ef")
        .output()
        .is_err()
    {
        eprintln!("skipped: needs ps (procps)");
        return;
    }
    let b = Berth::with_busybox();
    b.ok(&[
        "run",
        "-d",
        "--name",
        "tp",
        "busybox:test",
        "sh",
        "-c",
        "sleep 31 & sleep 32",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let top = b.ok(&["top", "tp"]);
    assert!(top.starts_with("UID"), "{top}");
    assert!(
        top.contains("sleep 31") && top.contains("sleep 32"),
        "{top}"
    );
    assert_eq!(top.lines().count(), 3, "{top}");
}

#[test]
fn concurrent_invocations_on_one_root_are_safe() {
    require_root!();
    let b = Berth::with_busybox();
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let mut c = b.cmd();
            c.args([
                "run",
                "--name",
                &format!("p{i}"),
                "busybox:test",
                "echo",
                &format!("n{i}"),
            ]);
            std::thread::spawn(move || c.output().unwrap())
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let out = h.join().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("n{i}\n"));
    }
    assert_eq!(b.container_ids().len(), 8);
}

#[test]
fn env_file_entrypoint_and_workdir() {
    require_root!();
    let b = Berth::with_busybox();
    let f = b.dir.path().join("env");
    std::fs::write(&f, "# comment\nFROM_FILE=yes\nOVER=file\n").unwrap();
    let out = b.ok(&[
        "run",
        "--rm",
        "--env-file",
        f.to_str().unwrap(),
        "-e",
        "OVER=flag",
        "-w",
        "/var/www",
        "--entrypoint",
        "sh",
        "busybox:test",
        "-c",
        "echo $FROM_FILE $OVER $(pwd)",
    ]);
    assert_eq!(out, "yes flag /var/www\n");
    // An empty --entrypoint resets it; the image's CMD is not used then.
    let (code, err) = b.fails(&["run", "--rm", "--entrypoint", "", "busybox:test"]);
    assert_eq!(code, 125);
    assert!(err.contains("no command specified"), "{err}");
}

#[test]
fn berth_drives_its_own_runc_compatible_runtime() {
    require_root!();
    let b = Berth::with_busybox();
    let rt = env!("CARGO_BIN_EXE_berth-runtime");
    assert_eq!(
        b.ok(&[
            "run",
            "--rm",
            "--runtime",
            rt,
            "busybox:test",
            "echo",
            "via berth-runtime"
        ]),
        "via berth-runtime\n"
    );
    b.ok(&[
        "run",
        "-d",
        "--name",
        "ext",
        "--runtime",
        rt,
        "busybox:test",
        "sleep",
        "30",
    ]);
    assert_eq!(b.ok(&["exec", "ext", "echo", "exec ok"]), "exec ok\n");
    assert_eq!(
        b.run(&["exec", "ext", "sh", "-c", "exit 4"]).status.code(),
        Some(4)
    );
    b.ok(&["stop", "-t", "0", "ext"]);
    assert_eq!(b.inspect("ext", "{{.State.ExitCode}}"), "137");
    let (code, err) = b.fails(&[
        "run",
        "--rm",
        "--runtime",
        "/no/such/runtime",
        "busybox:test",
        "true",
    ]);
    assert_eq!(code, 125);
    assert!(err.contains("runtime"), "{err}");
}

#[test]
fn info_version_system_df_and_prune() {
    require_root!();
    let b = Berth::with_busybox();
    b.ok(&["run", "--name", "done1", "busybox:test", "true"]);
    let info = b.ok(&["info"]);
    assert!(
        info.contains("Containers: 1") && info.contains("Images: 1"),
        "{info}"
    );
    assert_eq!(
        b.ok(&["info", "--format", "{{.Containers}} {{.Images}}"])
            .trim(),
        "1 1"
    );
    assert!(b.ok(&["version"]).contains("Version"));
    let df = b.ok(&["system", "df"]);
    assert!(
        df.starts_with("TYPE") && df.contains("Images") && df.contains("Containers"),
        "{df}"
    );
    assert!(b.ok(&["system", "df", "-v"]).contains("Images space usage"));
    let typed = b.ok(&["system", "df", "--format", "{{.Type}}:{{.TotalCount}}"]);
    assert!(
        typed.lines().any(|l| l == "Images:1") && typed.lines().any(|l| l == "Containers:1"),
        "{typed}"
    );
    let json = b.ok(&["system", "df", "--format", "json"]);
    let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(first["Type"], "Images");
    let out = b.ok(&["system", "prune", "-a", "-f", "--volumes"]);
    assert!(
        out.contains("Deleted Containers") && out.contains("Total reclaimed space"),
        "{out}"
    );
    assert!(b.container_ids().is_empty());
    assert!(b.ok(&["images", "-q"]).is_empty());
    b.ok(&["run", "--rm", "hello"]);
    b.ok(&["container", "prune", "-f"]);
    // Without -f, prune asks; with no terminal to ask on, it refuses and removes nothing.
    b.ok(&["run", "--name", "keep-me", "hello"]);
    let (code, err) = b.fails(&["container", "prune"]);
    assert_eq!(code, 1);
    assert!(err.contains("-f"), "{err}");
    assert_eq!(b.container_ids().len(), 1);
}

#[test]
fn concurrent_starts_of_one_container_make_one_monitor() {
    require_root!();
    let b = Berth::with_busybox();
    b.ok(&["create", "--name", "once", "busybox:test", "sleep", "30"]);
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let mut c = b.cmd();
            c.args(["start", "once"]);
            std::thread::spawn(move || c.output().unwrap())
        })
        .collect();
    for h in handles {
        let out = h.join().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Monitors whose command line names the container (as `ps` shows them).
    let monitors_of = |id: &str| {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| {
                std::fs::read(e.path().join("cmdline"))
                    .map(|c| {
                        let c = String::from_utf8_lossy(&c).replace('\0', " ");
                        c.contains("berth-monitor") && c.contains(&format!("--id {id}"))
                    })
                    .unwrap_or(false)
            })
            .count()
    };
    let id = b.inspect("once", "{{.Id}}");
    assert_eq!(monitors_of(&id), 1);
    // rm -f of a --rm container does not wait on the monitor's own removal.
    b.ok(&[
        "run",
        "-d",
        "--rm",
        "--name",
        "gone-soon",
        "busybox:test",
        "sleep",
        "30",
    ]);
    // `run` hands the container to a monitor started ahead: it names it too.
    assert_eq!(monitors_of(&b.inspect("gone-soon", "{{.Id}}")), 1);
    let t = std::time::Instant::now();
    let _ = b.run(&["rm", "-f", "gone-soon"]);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(5),
        "rm -f took {:?}",
        t.elapsed()
    );
    assert!(eventually(5, || b
        .run(&["inspect", "gone-soon"])
        .status
        .code()
        == Some(1)));
}

#[test]
fn a_start_clears_runtime_state_left_by_an_earlier_run() {
    require_root!();
    let b = Berth::with_busybox();
    let id = b
        .ok(&[
            "run",
            "-d",
            "--name",
            "stale",
            "busybox:test",
            "sleep",
            "1000",
        ])
        .trim()
        .to_string();
    // What a racing `kill` from another process can leave: the runtime's state of the
    // run that ended, saved again after the monitor deleted it.
    let state = b.run_root.join("runtime/builtin").join(&id);
    let saved = b.root.parent().unwrap().join("saved-runtime-state");
    let copy = std::process::Command::new("cp")
        .arg("-a")
        .arg(&state)
        .arg(&saved)
        .status()
        .unwrap();
    assert!(copy.success(), "no runtime state at {}", state.display());
    b.ok(&["stop", "-t", "0", "stale"]);
    // (The race itself may already have put it back; either way it is the old run's.)
    let _ = std::fs::remove_dir_all(&state);
    let back = std::process::Command::new("cp")
        .arg("-a")
        .arg(&saved)
        .arg(&state)
        .status()
        .unwrap();
    assert!(back.success());
    b.ok(&["start", "stale"]);
    assert_eq!(b.inspect("stale", "{{.State.Status}}"), "running");
}

#[test]
fn containers_share_their_init_layer_and_removal_leaves_nothing_behind() {
    require_root!();
    let b = Berth::with_busybox();
    let layers = b.root.join("init-layers");
    let a = b.ok(&["create", "busybox:test", "true"]).trim().to_string();
    let c = b.ok(&["create", "busybox:test", "true"]).trim().to_string();
    let v = b
        .ok(&["create", "-v", "/scratch", "busybox:test", "true"])
        .trim()
        .to_string();
    let link = |id: &str| std::fs::read_link(b.root.join("containers").join(id).join("init"));
    assert_eq!(link(&a).unwrap(), link(&c).unwrap());
    // Another mount point, another layer, holding it.
    assert_ne!(link(&a).unwrap(), link(&v).unwrap());
    let vlayer = b.root.join("containers").join(&v).join("init");
    assert!(vlayer.join("scratch").is_dir() && vlayer.join("etc/hosts").is_file());
    assert_eq!(std::fs::read_dir(&layers).unwrap().count(), 2);
    // The layer is not part of what the container changed, nor of its root's listing.
    b.ok(&["start", "-a", &v]);
    assert_eq!(b.ok(&["diff", &v]).trim(), "");
    b.ok(&["rm", &a, &v]);
    // `run --rm` returns with the container gone; its files follow.
    b.ok(&["run", "--rm", "busybox:test", "true"]);
    assert_eq!(b.container_ids(), vec![c.clone()]);
    let entries = || {
        std::fs::read_dir(b.root.join("containers"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
    };
    assert!(
        eventually(10, || entries() == vec![c.clone()]),
        "{:?}",
        entries()
    );
    // A prune keeps layers in use or used lately, and deletes what a removal that died
    // left aside.
    let dead = b.root.join("containers/.removed-0123");
    std::fs::create_dir_all(dead.join("upper")).unwrap();
    b.ok(&["container", "prune", "-f", "--filter", "label=none=here"]);
    assert!(!dead.exists());
    assert_eq!(std::fs::read_dir(&layers).unwrap().count(), 2);
    let old = "2000-01-01T00:00:00Z";
    for e in std::fs::read_dir(&layers).unwrap() {
        let ok = std::process::Command::new("touch")
            .args(["-h", "-d", old])
            .arg(e.unwrap().path())
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
    b.ok(&["container", "prune", "-f", "--filter", "label=none=here"]);
    let left: Vec<_> = std::fs::read_dir(&layers)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        vec![link(&c).unwrap().file_name().unwrap().to_owned()]
    );
    // A layer gone from under a container (a prune racing the create that linked it) is
    // made again by its start.
    std::fs::remove_dir_all(layers.join(link(&c).unwrap().file_name().unwrap())).unwrap();
    b.ok(&["start", "-a", &c]);
    assert!(b
        .root
        .join("containers")
        .join(&c)
        .join("init/proc")
        .is_dir());
    // Nothing of a container's start stays on the root (its bundle is on the run root) or,
    // once it exited, on the run root.
    let cdir = b.root.join("containers").join(&c);
    assert!(!cdir.join("config.json").exists() && !cdir.join("monitor.json").exists());
    let bundles = || {
        std::fs::read_dir(b.run_root.join("bundles"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    assert!(eventually(10, || bundles() == 0), "{}", bundles());
}

/// The host pid of the first process whose command line is `cmdline` (words joined by
/// spaces), and its parent's pid.
fn host_process(cmdline: &str) -> Option<(i32, i32)> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let words: Vec<String> = cmd
            .split(|b| *b == 0)
            .filter(|w| !w.is_empty())
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        if words.join(" ") == cmdline {
            let status = std::fs::read_to_string(entry.path().join("status")).ok()?;
            let ppid = status
                .lines()
                .find_map(|l| l.strip_prefix("PPid:"))?
                .trim()
                .parse()
                .ok()?;
            return Some((pid, ppid));
        }
    }
    None
}

#[test]
fn an_exec_is_started_and_reaped_by_the_containers_monitor() {
    require_root!();
    let b = Berth::with_busybox();
    b.ok(&["run", "-d", "--name", "exm", "busybox:test", "sleep", "100"]);
    // The exit code comes back from the monitor, which reaped the process.
    assert_eq!(b.fails(&["exec", "exm", "sh", "-c", "exit 7"]).0, 7);
    // A detached exec is the monitor's child, not the (gone) CLI's.
    b.ok(&["exec", "-d", "exm", "sleep", "4242"]);
    let mut found = None;
    assert!(
        common::eventually(5, || {
            found = host_process("sleep 4242");
            found.is_some()
        }),
        "the detached exec runs"
    );
    let (_, parent) = found.unwrap();
    let monitor = std::fs::read_to_string(format!("/proc/{parent}/cmdline")).unwrap();
    assert!(
        monitor.contains("berth-monitor"),
        "parent {parent}: {monitor:?}"
    );
    // An exec running when its container is killed ends with it: 128 + SIGKILL.
    let waiting = {
        let mut c = b.cmd();
        c.args(["exec", "exm", "sleep", "3131"]);
        c.spawn().unwrap()
    };
    assert!(common::eventually(5, || host_process("sleep 3131").is_some()));
    b.ok(&["kill", "exm"]);
    let out = waiting.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(137));
    // A stopped container takes no exec requests, and says so as before.
    let (code, err) = b.fails(&["exec", "exm", "true"]);
    assert_eq!(code, 1);
    assert!(err.contains("is not running"), "{err}");
}
