//! Watching and steering running containers: pause, health checks, restart policies,
//! stats, update, events, prune.

use super::*;

#[test]
fn pause_freezes_every_process_and_unpause_thaws_them() {
    require_root!();
    let b = Berth::with_busybox();
    b.ok(&[
        "run",
        "-d",
        "--name",
        "ticker",
        "busybox:test",
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; sleep 0.05; done",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    b.ok(&["pause", "ticker"]);
    assert_eq!(
        b.inspect(
            "ticker",
            "{{.State.Status}} {{.State.Paused}} {{.State.Running}}"
        ),
        "paused true true"
    );
    assert!(b.ok(&["ps"]).contains("(Paused)"));
    let id = b.inspect("ticker", "{{.Id}}");
    let counter = || {
        std::fs::read_to_string(b.root.join("containers").join(&id).join("upper/tmp/n"))
            .unwrap_or_default()
    };
    let frozen = counter();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(counter(), frozen, "a paused container kept running");
    assert!(b.fails(&["exec", "ticker", "true"]).1.contains("paused"));
    assert!(b.fails(&["pause", "ticker"]).1.contains("already paused"));
    b.ok(&["unpause", "ticker"]);
    assert_eq!(b.inspect("ticker", "{{.State.Status}}"), "running");
    assert!(
        eventually(5, || counter() != frozen),
        "unpause did not thaw it"
    );
    assert!(b.fails(&["unpause", "ticker"]).1.contains("not paused"));
    // stop works on a paused container
    b.ok(&["pause", "ticker"]);
    b.ok(&["stop", "-t", "1", "ticker"]);
    assert_eq!(b.inspect("ticker", "{{.State.Status}}"), "exited");
}

#[test]
fn a_paused_container_is_not_probed_and_its_checks_go_on_after_unpause() {
    require_root!();
    let b = Berth::with_busybox();
    b.ok(&[
        "run",
        "-d",
        "--name",
        "hp",
        "--health-cmd",
        "echo probe >> /tmp/probes",
        "--health-interval",
        "100ms",
        "busybox:test",
        "sleep",
        "100",
    ]);
    assert!(eventually(5, || b
        .inspect("hp", "{{.State.Health.Status}}")
        == "healthy"));
    let id = b.inspect("hp", "{{.Id}}");
    let probes = || {
        std::fs::read_to_string(b.root.join("containers").join(&id).join("upper/tmp/probes"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    b.ok(&["pause", "hp"]);
    std::thread::sleep(std::time::Duration::from_millis(700));
    // No new probe is started while it is paused: at most the one that was already
    // running when the freezer caught it waits there, frozen (as with Docker).
    let top = b.ok(&["top", "hp"]);
    assert!((2..=3).contains(&top.lines().count()), "{top}");
    let before = probes();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(probes(), before, "probed while paused");
    let top = b.ok(&["top", "hp"]);
    assert!((2..=3).contains(&top.lines().count()), "{top}");
    b.ok(&["unpause", "hp"]);
    // More than the one a frozen probe may still add: the checks go on.
    assert!(
        eventually(5, || probes() > before + 1),
        "no probe after unpause"
    );
    assert_eq!(b.inspect("hp", "{{.State.Health.Status}}"), "healthy");
    b.ok(&["rm", "-f", "hp"]);
}

#[test]
fn wait_on_an_auto_removed_container_reports_its_exit_code() {
    require_root!();
    let b = Berth::with_busybox();
    let id = b.ok(&[
        "run",
        "-d",
        "--rm",
        "busybox:test",
        "sh",
        "-c",
        "sleep 0.5; exit 7",
    ]);
    assert_eq!(b.ok(&["wait", id.trim()]).trim(), "7");
}

#[test]
fn restart_policies_restart_with_back_off_and_stop_ends_them() {
    require_root!();
    let b = Berth::with_busybox();
    // on-failure:2 — two restarts, then it stays exited with the last code.
    b.ok(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "busybox:test",
        "sh",
        "-c",
        "echo run; exit 3",
    ]);
    assert!(
        eventually(15, || b
            .run(&[
                "inspect",
                "-f",
                "{{.State.Status}} {{.RestartCount}}",
                "flaky"
            ])
            .stdout
            == b"exited 2\n"),
        "{}",
        b.inspect("flaky", "{{.State.Status}} {{.RestartCount}}")
    );
    assert_eq!(b.inspect("flaky", "{{.State.ExitCode}}"), "3");
    assert_eq!(b.ok(&["logs", "flaky"]), "run\nrun\nrun\n");
    // on-failure does not restart a clean exit.
    b.ok(&[
        "run",
        "-d",
        "--name",
        "clean",
        "--restart",
        "on-failure",
        "busybox:test",
        "true",
    ]);
    assert!(eventually(10, || b.inspect("clean", "{{.State.Status}}") == "exited"));
    // Longer than the first back-off: a restart would have happened by now.
    std::thread::sleep(std::time::Duration::from_millis(600));
    assert_eq!(
        b.inspect("clean", "{{.State.Status}} {{.RestartCount}}"),
        "exited 0"
    );
    // always restarts even clean exits, until stopped; stop ends the policy.
    b.ok(&[
        "run",
        "-d",
        "--name",
        "forever",
        "--restart",
        "always",
        "busybox:test",
        "sh",
        "-c",
        "sleep 0.2",
    ]);
    assert!(eventually(15, || b
        .inspect("forever", "{{.RestartCount}}")
        .parse::<i64>()
        .unwrap_or(0)
        >= 2));
    b.ok(&["stop", "-t", "1", "forever"]);
    let count = b.inspect("forever", "{{.RestartCount}}");
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert_eq!(b.inspect("forever", "{{.State.Status}}"), "exited");
    assert_eq!(
        b.inspect("forever", "{{.RestartCount}}"),
        count,
        "restarted after stop"
    );
    // rm -f of a restarting container works at once.
    b.ok(&[
        "run",
        "-d",
        "--name",
        "loop",
        "--restart",
        "always",
        "busybox:test",
        "false",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let t = std::time::Instant::now();
    b.ok(&["rm", "-f", "loop"]);
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
    // Bad input.
    assert!(b
        .fails(&["run", "--restart", "sometimes", "busybox:test", "true"])
        .1
        .contains("invalid restart policy"));
    assert!(b
        .fails(&["run", "--rm", "--restart", "always", "busybox:test", "true"])
        .1
        .contains("Conflicting options"));
    assert_eq!(
        b.inspect(
            "flaky",
            "{{.HostConfig.RestartPolicy.Name}} {{.HostConfig.RestartPolicy.MaximumRetryCount}}"
        ),
        "on-failure 2"
    );
}

#[test]
fn stats_reports_cpu_memory_and_pids_from_the_cgroup() {
    require_root!();
    let b = Berth::with_busybox();
    b.ok(&[
        "run",
        "-d",
        "--name",
        "spin",
        "-m",
        "64m",
        "busybox:test",
        "sh",
        "-c",
        "sleep 100 & while true; do :; done",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = b.ok(&["stats", "--no-stream"]);
    assert!(out.starts_with("CONTAINER ID   NAME"), "{out}");
    let line = b.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}}|{{.CPUPerc}}|{{.MemUsage}}|{{.PIDs}}",
        "spin",
    ]);
    let f: Vec<&str> = line.trim().split('|').collect();
    assert_eq!(f[0], "spin");
    let cpu: f64 = f[1].trim_end_matches('%').parse().unwrap();
    assert!(cpu > 20.0, "a busy loop uses CPU: {line}");
    assert!(f[2].ends_with("/ 64MiB"), "{line}");
    assert_eq!(f[3], "2", "sh (running the loop) and sleep: {line}");
    assert!(b
        .fails(&["stats", "--no-stream", "nope"])
        .1
        .contains("no such container: nope"));
}

#[test]
fn a_container_at_its_pids_limit_is_still_probed() {
    require_root!();
    let b = Berth::with_busybox();
    // The init and the probe launcher fill the limit: the launcher cannot start a probe,
    // and the monitor starts them itself (a move into the cgroups is not limited).
    b.ok(&[
        "run",
        "-d",
        "--name",
        "lim",
        "--pids-limit",
        "2",
        "--health-cmd",
        "echo hi",
        "--health-interval",
        "100ms",
        "busybox:test",
        "sleep",
        "100",
    ]);
    assert!(eventually(5, || b
        .inspect("lim", "{{.State.Health.Status}}")
        == "healthy"));
    assert_eq!(
        b.inspect("lim", "{{(index .State.Health.Log 0).Output}}"),
        "hi"
    );
    b.ok(&["rm", "-f", "lim"]);
}

#[test]
fn health_checks_run_inside_the_container_and_show_in_ps_and_inspect() {
    require_root!();
    let b = Berth::with_busybox();
    b.ok(&[
        "run",
        "-d",
        "--name",
        "hc",
        "--health-cmd",
        "test -e /tmp/ok && echo fine",
        "--health-interval",
        "200ms",
        "--health-retries",
        "2",
        "busybox:test",
        "sh",
        "-c",
        "touch /tmp/ok; sleep 1; rm /tmp/ok; sleep 100",
    ]);
    assert!(eventually(5, || b
        .inspect("hc", "{{.State.Health.Status}}")
        == "healthy"));
    assert!(b.ok(&["ps"]).contains("(healthy)"));
    // The probes' launcher is in the container's cgroups, but not one of its processes.
    let top = b.ok(&["top", "hc"]);
    assert!(top.contains("sleep") && !top.contains("berth-"), "{top}");
    // Nor counted in its pids: sh and sleep, between probes.
    assert!(eventually(5, || b
        .ok(&["stats", "--no-stream", "--format", "{{.PIDs}}", "hc"])
        .trim()
        == "2"));
    // Several probes later, still one event: they record changes, not every probe.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let events = b.ok(&[
        "events",
        "--since",
        "10m",
        "--until",
        "0s",
        "--filter",
        "event=health_status",
        "--format",
        "{{.Action}}",
    ]);
    assert_eq!(events, "health_status: healthy\n");
    let v: serde_json::Value = serde_json::from_str(&b.ok(&["inspect", "hc"])).unwrap();
    let log = v[0]["State"]["Health"]["Log"].as_array().unwrap();
    assert_eq!(log[0]["Output"], "fine\n");
    assert_eq!(log[0]["ExitCode"], 0);
    // The probe runs in the container: when its file goes, the check fails.
    assert!(eventually(10, || b
        .inspect("hc", "{{.State.Health.Status}}")
        == "unhealthy"));
    assert!(
        b.inspect("hc", "{{.State.Health.FailingStreak}}")
            .parse::<i64>()
            .unwrap()
            >= 2
    );
    assert!(b.ok(&["ps"]).contains("(unhealthy)"));
    let n = b.inspect("hc", "{{len .State.Health.Log}}");
    assert!(
        n.parse::<i64>().unwrap() <= 5,
        "keeps the last 5 results: {n}"
    );
    // While it runs the results live on the run root; a stopped container keeps its
    // last ones, and removing it leaves none behind.
    let id = b.inspect("hc", "{{.Id}}");
    let on_run_root = b.run_root.join("health").join(format!("{id}.json"));
    assert!(on_run_root.exists());
    b.ok(&["stop", "-t", "0", "hc"]);
    assert_eq!(b.inspect("hc", "{{.State.Health.Status}}"), "unhealthy");
    assert!(b
        .inspect("hc", "{{json .State.Health.Log}}")
        .contains("ExitCode"));
    assert!(!on_run_root.exists());
    b.ok(&["start", "hc"]);
    assert!(eventually(5, || on_run_root.exists()));
    b.ok(&["rm", "-f", "hc"]);
    assert!(!on_run_root.exists());
    // A probe that runs too long fails with Docker's message.
    b.ok(&[
        "run",
        "-d",
        "--name",
        "slow",
        "--health-cmd",
        "sleep 5",
        "--health-interval",
        "200ms",
        "--health-timeout",
        "300ms",
        "busybox:test",
        "sleep",
        "100",
    ]);
    assert!(eventually(10, || b
        .inspect("slow", "{{json .State.Health.Log}}")
        .contains("exceeded timeout")));
    // --no-healthcheck, and bad durations.
    b.ok(&[
        "run",
        "-d",
        "--name",
        "none",
        "--no-healthcheck",
        "busybox:test",
        "sleep",
        "100",
    ]);
    assert!(b
        .ok(&["ps"])
        .lines()
        .any(|l| l.contains("none") && !l.contains("health")));
    assert_eq!(
        b.fails(&["run", "--health-interval", "often", "busybox:test", "true"])
            .0,
        125
    );
}

#[test]
fn update_changes_limits_of_a_running_container_and_its_restart_policy() {
    require_root!();
    let b = Berth::with_busybox();
    b.ok(&[
        "run",
        "-d",
        "--name",
        "upd",
        "-m",
        "32m",
        "--memory-swap",
        "64m",
        "--pids-limit",
        "10",
        "busybox:test",
        "sleep",
        "100",
    ]);
    b.ok(&[
        "update",
        "--memory",
        "48m",
        "--memory-swap",
        "96m",
        "--pids-limit",
        "30",
        "--cpus",
        "0.5",
        "upd",
    ]);
    let read = |f: &str| b.ok(&["exec", "upd", "cat", f]).trim().to_string();
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    if v2 {
        assert_eq!(read("/sys/fs/cgroup/memory.max"), (48u64 << 20).to_string());
        assert_eq!(read("/sys/fs/cgroup/pids.max"), "30");
    } else {
        assert_eq!(
            read("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
            (48u64 << 20).to_string()
        );
        assert_eq!(read("/sys/fs/cgroup/pids/pids.max"), "30");
        assert_eq!(read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), "50000");
    }
    assert_eq!(
        b.inspect(
            "upd",
            "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}} {{.HostConfig.NanoCpus}}"
        ),
        format!("{} 30 500000000", 48u64 << 20)
    );
    // Lowering memory below memory+swap's order is handled; a bad value is refused.
    b.ok(&["update", "--memory", "40m", "upd"]);
    assert_eq!(b.fails(&["update", "--memory", "1k", "upd"]).0, 1);
    // The restart policy changes for the running container.
    b.ok(&["update", "--restart", "on-failure:1", "upd"]);
    assert_eq!(
        b.inspect("upd", "{{.HostConfig.RestartPolicy.Name}}"),
        "on-failure"
    );
    b.ok(&["kill", "upd"]);
    assert!(
        eventually(10, || b.inspect("upd", "{{.RestartCount}}") == "1"),
        "{}",
        b.inspect("upd", "{{.State.Status}} {{.RestartCount}}")
    );
    assert!(b
        .fails(&["update", "--restart", "bogus", "upd"])
        .1
        .contains("invalid restart policy"));
}

#[test]
fn events_are_recorded_by_every_process_and_stream_live() {
    require_root!();
    let b = Berth::with_busybox();
    // Live: a follower started before the container sees its whole life.
    let mut follower = b
        .cmd()
        .args([
            "events",
            "--filter",
            "container=evt",
            "--format",
            "{{.Action}}",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        b.run(&[
            "run",
            "--name",
            "evt",
            "-l",
            "team=a",
            "busybox:test",
            "sh",
            "-c",
            "exit 4"
        ])
        .status
        .code(),
        Some(4)
    );
    b.ok(&["rename", "evt", "evt2"]);
    b.ok(&["rm", "evt2"]);
    std::thread::sleep(std::time::Duration::from_millis(400));
    let _ = follower.kill();
    let out = follower.wait_with_output().unwrap();
    let actions = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        actions.lines().take(3).collect::<Vec<_>>(),
        ["create", "start", "die"],
        "{actions}"
    );
    // After the fact, with filters and Docker's JSON shape.
    let die = b.ok(&[
        "events",
        "--since",
        "5m",
        "--until",
        "0s",
        "--filter",
        "event=die",
        "--filter",
        "label=team=a",
        "--format",
        "{{json .}}",
    ]);
    let v: serde_json::Value = serde_json::from_str(die.lines().next().unwrap()).unwrap();
    assert_eq!(v["Type"], "container");
    assert_eq!(v["Action"], "die");
    assert_eq!(v["Actor"]["Attributes"]["exitCode"], "4");
    assert_eq!(v["Actor"]["Attributes"]["name"], "evt");
    assert_eq!(v["status"], "die");
    let all = b.ok(&[
        "events",
        "--since",
        "5m",
        "--until",
        "0s",
        "--format",
        "{{.Type}} {{.Action}}",
    ]);
    for want in [
        "image import",
        "container create",
        "container start",
        "container die",
        "container rename",
        "container destroy",
    ] {
        assert!(
            all.lines().any(|l| l == want),
            "missing {want:?} in:\n{all}"
        );
    }
    assert!(b
        .fails(&["events", "--filter", "colour=red", "--until", "0s"])
        .1
        .contains("invalid filter"));
}

#[test]
fn prune_filters_by_label_and_age() {
    require_root!();
    let b = Berth::with_busybox();
    b.ok(&[
        "run",
        "--name",
        "keep-a",
        "-l",
        "keep=yes",
        "busybox:test",
        "true",
    ]);
    b.ok(&[
        "run",
        "--name",
        "drop-b",
        "-l",
        "tier=tmp",
        "busybox:test",
        "true",
    ]);
    b.ok(&["run", "--name", "drop-c", "busybox:test", "true"]);
    // Nothing is older than an hour: until=1h prunes nothing.
    let out = b.ok(&["container", "prune", "-f", "--filter", "until=1h"]);
    assert!(!out.contains("Deleted Containers"), "{out}");
    assert_eq!(b.container_ids().len(), 3);
    b.ok(&["container", "prune", "-f", "--filter", "label=tier=tmp"]);
    assert_eq!(b.container_ids().len(), 2);
    b.ok(&["container", "prune", "-f", "--filter", "label!=keep"]);
    let left = b.ok(&["ps", "-a", "--format", "{{.Names}}"]);
    assert_eq!(left.trim(), "keep-a");
    // Volumes by label; until is not a volume filter (as in Docker).
    b.ok(&["volume", "create", "-l", "team=x", "vx"]);
    b.ok(&["volume", "create", "vy"]);
    b.ok(&["volume", "prune", "-a", "-f", "--filter", "label=team=x"]);
    assert_eq!(b.ok(&["volume", "ls", "-q"]).trim(), "vy");
    assert!(b
        .fails(&["volume", "prune", "-f", "--filter", "until=1h"])
        .1
        .contains("invalid filter"));
    assert!(b
        .fails(&["image", "prune", "-f", "--filter", "colour=red"])
        .1
        .contains("invalid filter"));
}
