//! Faults: killed monitors and CLIs, interrupted loads, imports and commits, a full disk.
//! Whatever happens, no half-made image becomes visible and the next command works.

mod common;
use common::{busybox_tar, eventually, Berth};
use std::process::Stdio;

fn monitor_pid(b: &Berth, id: &str) -> i32 {
    let st =
        std::fs::read_to_string(b.root.join("containers").join(id).join("state.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&st).unwrap();
    v["monitor_pid"].as_i64().unwrap() as i32
}

fn kill9(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

#[test]
fn containers_keep_running_after_the_cli_is_killed() {
    require_root!();
    let b = Berth::with_busybox();
    let mut child = b
        .cmd()
        .args([
            "run",
            "--name",
            "fg",
            "busybox:test",
            "sh",
            "-c",
            "while true; do echo tick; sleep 0.1; done",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    assert!(eventually(10, || b
        .run(&["inspect", "-f", "{{.State.Status}}", "fg"])
        .stdout
        == b"running\n"));
    kill9(child.id() as i32);
    let _ = child.wait();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(b.inspect("fg", "{{.State.Status}}"), "running");
    let n1 = b.ok(&["logs", "fg"]).lines().count();
    std::thread::sleep(std::time::Duration::from_millis(400));
    assert!(
        b.ok(&["logs", "fg"]).lines().count() > n1,
        "the log stopped growing"
    );
    b.ok(&["stop", "-t", "1", "fg"]);
}

#[test]
fn a_container_whose_monitor_died_is_reported_dead_not_running() {
    require_root!();
    let b = Berth::with_busybox();
    let id = b
        .ok(&["run", "-d", "busybox:test", "sleep", "60"])
        .trim()
        .to_string();
    kill9(monitor_pid(&b, &id));
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(b.inspect(&id, "{{.State.Status}}"), "dead");
    assert!(b.inspect(&id, "{{.State.Error}}").contains("monitor"));
    assert!(b.ok(&["ps", "-a"]).contains("Dead"));
    assert!(
        !b.ok(&["ps"]).contains(&id[..12]),
        "a dead container is not listed as running"
    );
    // rm -f cleans up everything, including the orphaned container process.
    b.ok(&["rm", "-f", &id]);
    assert!(b.container_ids().is_empty());
    assert!(b
        .ok(&["run", "--rm", "busybox:test", "echo", "still works"])
        .contains("still works"));
}

#[test]
fn a_killed_monitor_takes_its_probe_launcher_with_it() {
    require_root!();
    let b = Berth::with_busybox();
    let id = b
        .ok(&[
            "run",
            "-d",
            "--health-cmd",
            "true",
            "--health-interval",
            "100ms",
            "busybox:test",
            "sleep",
            "60",
        ])
        .trim()
        .to_string();
    assert!(eventually(5, || b.inspect(&id, "{{.State.Health.Status}}")
        == "healthy"));
    let monitor = monitor_pid(&b, &id);
    // "pid (comm) state ppid ..."
    let stat = |pid: i32| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
    let launcher = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .find(|p| {
            stat(*p).is_some_and(|s| {
                s.contains("(berth-probes) ")
                    && s.rsplit(") ").next().and_then(|r| r.split(' ').nth(1))
                        == Some(&monitor.to_string())
            })
        })
        .expect("the monitor has a probe launcher");
    kill9(monitor);
    let gone = || stat(launcher).is_none_or(|s| s.contains(") Z "));
    assert!(eventually(5, gone), "the launcher outlived its monitor");
    b.ok(&["rm", "-f", &id]);
    assert!(b.container_ids().is_empty());
}

/// Kills `berth ARGS` after `delay_ms`, then checks the store is consistent.
fn interrupted(b: &Berth, args: &[&str], delay_ms: u64) {
    let mut child = b
        .cmd()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(delay_ms));
    kill9(child.id() as i32);
    let _ = child.wait();
}

fn big_archive(b: &Berth) -> std::path::PathBuf {
    // An image with a 40 MB layer of incompressible data, so interrupting is easy.
    let mut data = vec![0u8; 40 << 20];
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let rootfs = b.dir.path().join("bigroot");
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::write(rootfs.join("blob"), &data).unwrap();
    let tar = b.dir.path().join("big.tar");
    assert!(std::process::Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap()
        .success());
    tar
}

#[test]
fn kill_9_during_import_load_or_commit_leaves_no_half_image() {
    require_root!();
    let b = Berth::with_busybox();
    let big = big_archive(&b);
    let before = b.ok(&["images", "-q"]);
    for delay in [5, 30, 80] {
        interrupted(&b, &["import", big.to_str().unwrap(), "big:1"], delay);
        let now = b.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
        if now.contains("big:1") {
            // It finished before the kill: then it must be whole.
            assert_eq!(b.ok(&["run", "--rm", "big:1", "/bin/true"]).len(), 0);
            b.ok(&["rmi", "big:1"]);
        }
        assert_eq!(b.ok(&["images", "-q"]), before);
    }
    // A saved image, loaded and interrupted.
    b.ok(&["import", big.to_str().unwrap(), "big:2"]);
    let saved = b.dir.path().join("saved.tar");
    b.ok(&["save", "-o", saved.to_str().unwrap(), "big:2"]);
    let c = Berth::new();
    for delay in [5, 40] {
        interrupted(&c, &["load", "-i", saved.to_str().unwrap()], delay);
        let imgs = c.ok(&["images", "-q"]);
        assert!(imgs.is_empty() || imgs.lines().count() == 1);
        if !imgs.is_empty() {
            c.ok(&["image", "inspect", "big:2"]);
            c.ok(&["rmi", "big:2"]);
        }
    }
    c.ok(&["load", "-i", saved.to_str().unwrap()]);
    c.ok(&["image", "inspect", "big:2"]);
    // commit of a container with a big change
    b.ok(&[
        "run",
        "--name",
        "bigc",
        "busybox:test",
        "sh",
        "-c",
        "head -c 30000000 /dev/urandom > /big",
    ]);
    let before = b.ok(&["images", "-q"]);
    interrupted(&b, &["commit", "bigc", "snap:1"], 20);
    let after = b.ok(&["images", "-q"]);
    assert!(after == before || after.lines().count() == before.lines().count() + 1);
    b.ok(&["commit", "bigc", "snap:2"]);
    assert!(b
        .ok(&["run", "--rm", "snap:2", "ls", "-l", "/big"])
        .contains("30000000"));
}

#[test]
fn a_full_disk_during_load_is_an_error_and_stores_nothing() {
    require_root!();
    let b = Berth::new();
    let big = big_archive(&b);
    b.ok(&["import", big.to_str().unwrap(), "big:1"]);
    let saved = b.dir.path().join("saved.tar");
    b.ok(&["save", "-o", saved.to_str().unwrap(), "big:1"]);
    // A second store on a 20 MB tmpfs (under our temp dir, so the harness unmounts it).
    let small = b.dir.path().join("small");
    std::fs::create_dir(&small).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &small,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=20m"),
    )
    .unwrap();
    let mut c = std::process::Command::new(common::berth_bin());
    c.env("BERTH_MONITOR", common::monitor_bin());
    c.args([
        "--root",
        small.join("root").to_str().unwrap(),
        "--run-root",
        small.join("run").to_str().unwrap(),
        "load",
        "-i",
        saved.to_str().unwrap(),
    ]);
    let out = c.output().unwrap();
    let count = |d: &str| {
        std::fs::read_dir(small.join("root").join(d))
            .map(|r| r.count())
            .unwrap_or(0)
    };
    let (blobs, tmp, store_tmp) = (count("blobs/sha256"), count("tmp"), count("blobs/tmp"));
    let _ = nix::mount::umount2(&small, nix::mount::MntFlags::MNT_DETACH);
    assert_eq!(
        (blobs, tmp, store_tmp),
        (0, 0, 0),
        "a failed load left data behind"
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("No space left"), "{err}");
    // The same archive loads fine where there is room.
    let d = Berth::new();
    d.ok(&["load", "-i", saved.to_str().unwrap()]);
}

#[test]
fn removed_containers_leave_no_cgroups_mounts_or_sockets() {
    require_root!();
    let b = Berth::with_busybox();
    let mut ids = Vec::new();
    ids.push(
        b.ok(&["run", "-d", "-m", "32m", "busybox:test", "sleep", "60"])
            .trim()
            .to_string(),
    );
    ids.push(
        b.ok(&["run", "-d", "busybox:test", "true"])
            .trim()
            .to_string(),
    );
    b.ok(&["run", "--name", "gone", "busybox:test", "true"]);
    ids.push(b.inspect("gone", "{{.Id}}"));
    std::thread::sleep(std::time::Duration::from_millis(300));
    for id in &ids {
        b.ok(&["rm", "-f", id]);
    }
    for id in &ids {
        for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            let p = h.path().join("berth").join(id);
            assert!(!p.exists(), "leaked cgroup {}", p.display());
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(b.dir.path().to_str().unwrap()),
        "leaked mount"
    );
    let socks: Vec<_> = std::fs::read_dir(b.run_root.join("s"))
        .map(|r| r.flatten().collect())
        .unwrap_or_default();
    assert!(socks.is_empty(), "leaked sockets: {socks:?}");
}

#[test]
fn busybox_image_fixture_is_reproducible() {
    require_root!();
    // The fixture tar is made once per test binary; importing it twice gives one layer.
    let b = Berth::new();
    b.ok(&["import", busybox_tar().to_str().unwrap(), "a:1"]);
    b.ok(&["import", busybox_tar().to_str().unwrap(), "b:1"]);
    let l = |t: &str| b.ok(&["image", "inspect", "-f", "{{json .RootFS.Layers}}", t]);
    assert_eq!(l("a:1"), l("b:1"));
    assert_eq!(
        std::fs::read_dir(b.root.join("layers"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name() != "l")
            .count(),
        1
    );
}

#[test]
fn system_boot_restarts_always_containers_after_their_monitor_and_process_died() {
    require_root!();
    let b = Berth::with_busybox();
    let always = b
        .ok(&[
            "run",
            "-d",
            "--restart",
            "always",
            "busybox:test",
            "sleep",
            "60",
        ])
        .trim()
        .to_string();
    let unless = b
        .ok(&[
            "run",
            "-d",
            "--restart",
            "unless-stopped",
            "busybox:test",
            "sleep",
            "60",
        ])
        .trim()
        .to_string();
    let stopped = b
        .ok(&[
            "run",
            "-d",
            "--restart",
            "unless-stopped",
            "busybox:test",
            "sleep",
            "60",
        ])
        .trim()
        .to_string();
    let plain = b
        .ok(&["run", "-d", "busybox:test", "sleep", "60"])
        .trim()
        .to_string();
    b.ok(&["stop", "-t", "0", &stopped]);
    // A reboot, as far as these containers can tell: monitors and processes gone.
    for id in [&always, &unless, &plain] {
        let pid: i32 = b.inspect(id, "{{.State.Pid}}").parse().unwrap();
        kill9(monitor_pid(&b, id));
        kill9(pid);
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(b.inspect(&always, "{{.State.Status}}"), "dead");
    let out = b.ok(&["system", "boot"]);
    assert!(out.contains(&always) && out.contains(&unless), "{out}");
    assert!(!out.contains(&stopped) && !out.contains(&plain), "{out}");
    for id in [&always, &unless] {
        assert_eq!(b.inspect(id, "{{.State.Status}}"), "running");
        assert_eq!(b.ok(&["exec", id, "echo", "back"]), "back\n");
    }
    assert_eq!(b.inspect(&stopped, "{{.State.Status}}"), "exited");
    assert_ne!(b.inspect(&plain, "{{.State.Status}}"), "running");
}

/// A container that exits at once under `--restart always` (thousands of exits a minute
/// without a back-off) is restarted with Docker's growing delay: a handful of restarts in
/// four seconds, and its monitor, restarts included, uses a fraction of a core.
#[test]
fn a_crash_looping_always_container_backs_off() {
    require_root!();
    let b = Berth::with_busybox();
    let id = b
        .ok(&["run", "-d", "--restart", "always", "busybox:test", "false"])
        .trim()
        .to_string();
    let mon = monitor_pid(&b, &id);
    let cpu = |pid: i32| -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<u64> = after_comm
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        // utime, stime, cutime, cstime are fields 14-17 (11-14 after the comm).
        let tck = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .unwrap_or(100);
        (f[11] + f[12] + f[13] + f[14]) as f64 / tck as f64
    };
    let c0 = cpu(mon);
    let t0 = std::time::Instant::now();
    std::thread::sleep(std::time::Duration::from_secs(4));
    let used = cpu(mon) - c0;
    let wall = t0.elapsed().as_secs_f64();
    let restarts: u64 = b.inspect(&id, "{{.RestartCount}}").parse().unwrap();
    // 100 ms doubling: 0.1 + 0.2 + 0.4 + 0.8 + 1.6 s, plus each start's own time.
    assert!((3..=7).contains(&restarts), "{restarts} restarts in 4 s");
    assert!(
        used < 0.25 * wall,
        "the monitor used {used:.2} s of CPU in {wall:.1} s"
    );
    b.ok(&["rm", "-f", &id]);
}
