//! Isolation from the inside: what a container can see and do by default, and what the
//! flags change.

mod common;

use common::{eventually, Berth};
use std::process::Command;

#[test]
fn container_sees_only_its_own_processes_hostname_and_loopback() {
    require_root!();
    let b = Berth::with_busybox();
    let out = b.sh(&["--hostname", "inner", "--network", "none"], "ps -o comm | tail -n +2 | sort -u | tr '\\n' ' '; echo; hostname; ls /sys/class/net; cat /proc/1/cmdline | tr '\\0' ' '");
    let lines: Vec<&str> = out.lines().collect();
    // Only the pipeline's own processes (whichever are alive when ps looks; busybox runs
    // applets through /proc/self/exe, so some show as `exe`):
    // nothing of the host's.
    let seen: Vec<&str> = lines[0].split_whitespace().collect();
    assert!(seen.contains(&"sh") && seen.contains(&"ps"), "{out}");
    assert!(
        seen.iter()
            .all(|c| ["sh", "ps", "tail", "sort", "tr", "exe"].contains(c)),
        "{out}"
    );
    assert_eq!(lines[1], "inner");
    assert_eq!(lines[2], "lo");
    assert!(lines[3].starts_with("sh -c"), "{out}");
    // loopback works with --network none
    let ping = b.sh(
        &["--network", "none"],
        "ping -c 1 -W 1 127.0.0.1 >/dev/null && echo up",
    );
    assert_eq!(ping, "up\n");
    // the default hostname is the short id
    let id = b
        .ok(&["run", "-d", "busybox:test", "sleep", "30"])
        .trim()
        .to_string();
    assert_eq!(b.ok(&["exec", &id, "hostname"]).trim(), &id[..12]);
}

#[test]
fn container_cannot_read_host_files_or_mount() {
    require_root!();
    let b = Berth::with_busybox();
    let secret = b.dir.path().join("host-secret");
    std::fs::write(&secret, "do not leak").unwrap();
    let script = format!("cat {} 2>&1; ls /root; mount -t tmpfs none /tmp 2>&1 && echo MOUNTED; echo 1 > /proc/sysrq-trigger 2>&1; cat /proc/kcore 2>&1 | head -c 10 | wc -c", secret.display());
    let out = b.sh(&[], &script);
    assert!(!out.contains("do not leak"), "{out}");
    assert!(!out.contains("MOUNTED"), "{out}");
    assert!(out.trim_end().ends_with('0'), "kcore must be masked: {out}");
    // /sys and the cgroup hierarchies are read-only.
    let out = b.sh(&[], "touch /sys/x 2>&1; for f in /sys/fs/cgroup/*/; do touch $f/x 2>/dev/null && echo WROTE $f; done; echo done");
    assert!(out.contains("Read-only"), "{out}");
    assert!(!out.contains("WROTE"), "{out}");
    // /sys/fs/cgroup itself too, and each mount below it is there once: making a tmpfs
    // read-only after the binds used to stack a second copy of all of them.
    let out = b.sh(
        &[],
        "mkdir /sys/fs/cgroup/x 2>&1; awk 'index($2, \"/sys/fs/cgroup\") == 1 { print $2 }' /proc/mounts | sort | uniq -d",
    );
    assert!(out.contains("Read-only file system"), "{out}");
    assert_eq!(out.lines().count(), 1, "mounted twice: {out}");
}

#[test]
fn default_capabilities_are_dockers_and_flags_change_them() {
    require_root!();
    let b = Berth::with_busybox();
    let caps = |extra: &[&str]| {
        u64::from_str_radix(
            b.sh(extra, "grep CapEff /proc/self/status | cut -f2")
                .trim(),
            16,
        )
        .unwrap()
    };
    // Docker's default set: chown dac_override fowner fsetid kill setgid setuid setpcap
    // net_bind_service net_raw sys_chroot mknod audit_write setfcap.
    assert_eq!(caps(&[]), 0xa80425fb);
    // The built-in runtime lends CAP_SYS_ADMIN to load the seccomp filter: none of it
    // may be left in any set, with or without no-new-privileges.
    let sets = "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status | tr -s '\t\n' ' '";
    let all = "CapInh: 0000000000000000 CapPrm: 00000000a80425fb CapEff: 00000000a80425fb \
               CapBnd: 00000000a80425fb CapAmb: 0000000000000000 ";
    assert_eq!(b.sh(&[], sets), all);
    assert_eq!(
        b.sh(&["--security-opt", "no-new-privileges"], sets),
        all,
        "with no-new-privileges"
    );
    let user = b.sh(&["-u", "1000"], sets);
    assert!(
        user.contains("CapPrm: 0000000000000000 CapEff: 0000000000000000"),
        "{user}"
    );
    let with_admin = caps(&["--cap-add", "NET_ADMIN"]);
    assert_eq!(with_admin, 0xa80425fb | (1 << 12));
    assert_eq!(caps(&["--cap-drop", "CHOWN"]), 0xa80425fb & !1);
    assert_eq!(caps(&["--cap-drop", "ALL"]), 0);
    // --privileged: every capability the host has (an outer sandbox may withhold some).
    let host_bnd = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("CapBnd:")
                .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        })
        .unwrap();
    assert_eq!(caps(&["--privileged"]), host_bnd & 0x1ffffffffff);
    let (code, err) = b.fails(&[
        "run",
        "--rm",
        "--cap-add",
        "NOT_A_CAP",
        "busybox:test",
        "true",
    ]);
    assert_eq!(code, 125);
    assert!(err.contains("unknown capability"), "{err}");
}

#[test]
fn containers_start_with_default_signal_dispositions() {
    require_root!();
    use std::os::unix::process::CommandExt;
    let b = Berth::with_busybox();
    // berth itself runs with SIGPIPE ignored (Rust's default) and here, as under nohup,
    // with SIGHUP ignored too. Ignored signals survive execve; the container's process
    // must not inherit them (it did: SIGPIPE was ignored in every container).
    let run = |args: &[&str]| {
        let mut cmd = b.cmd();
        cmd.args(args);
        // SAFETY: signal() is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::signal(libc::SIGHUP, libc::SIG_IGN);
                Ok(())
            });
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let id = run(&["run", "-d", "busybox:test", "sleep", "100"]);
    let id = id.trim();
    let init = b.ok(&["exec", id, "grep", "SigIgn", "/proc/1/status"]);
    assert_eq!(init, "SigIgn:\t0000000000000000\n");
    let exec = run(&["exec", id, "grep", "SigIgn", "/proc/self/status"]);
    assert_eq!(exec, "SigIgn:\t0000000000000000\n");
    b.ok(&["rm", "-f", id]);
}

#[test]
fn seccomp_blocks_what_dockers_profile_blocks() {
    require_root!();
    let b = Berth::with_busybox();
    // unshare(CLONE_NEWUTS) needs CAP_SYS_ADMIN *and* is filtered; with CAP_SYS_ADMIN added
    // the filter still decides: Docker allows unshare only with CAP_SYS_ADMIN.
    let filtered = b.sh(&[], "grep Seccomp: /proc/self/status");
    assert!(
        filtered.contains('2'),
        "seccomp filter mode expected: {filtered}"
    );
    let unconfined = b.sh(
        &["--security-opt", "seccomp=unconfined"],
        "grep Seccomp: /proc/self/status",
    );
    assert!(unconfined.contains('0'), "{unconfined}");
    // With CAP_SYS_ADMIN but the default profile, mount is allowed by the profile...
    let out = b.sh(
        &["--cap-add", "SYS_ADMIN"],
        "mount -t tmpfs none /tmp && echo mounted",
    );
    assert_eq!(out, "mounted\n");
    // ...but keyctl-style syscalls stay blocked: `unshare -U` (user namespaces need
    // CAP_SYS_ADMIN in Docker's profile) fails without it.
    let out = b.sh(&[], "unshare -U true 2>&1; echo rc=$?");
    assert!(
        out.contains("rc=1") || out.contains("Operation not permitted"),
        "{out}"
    );
    // A custom profile that denies mkdir.
    let prof = b.dir.path().join("deny-mkdir.json");
    std::fs::write(&prof, r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}"#).unwrap();
    let out = b.sh(
        &["--security-opt", &format!("seccomp={}", prof.display())],
        "mkdir /tmp/x 2>&1; echo rc=$?",
    );
    assert!(out.contains("rc=1"), "{out}");
    let out = b.sh(
        &["--security-opt", "no-new-privileges"],
        "grep NoNewPrivs /proc/self/status",
    );
    assert!(out.contains('1'), "{out}");
}

#[test]
fn memory_limit_is_the_one_set_and_oom_kill_is_reported() {
    require_root!();
    let b = Berth::with_busybox();
    let out = b.sh(&["-m", "32m"], "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max");
    assert_eq!(out.trim(), (32u64 << 20).to_string());
    // A reservation is the soft limit.
    let out = b.sh(
        &["-m", "32m", "--memory-reservation", "8m"],
        "cat /sys/fs/cgroup/memory/memory.soft_limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.low",
    );
    assert_eq!(out.trim(), (8u64 << 20).to_string());
    let (_, err) = b.fails(&[
        "run",
        "--rm",
        "-m",
        "8m",
        "--memory-reservation",
        "16m",
        "busybox:test",
        "true",
    ]);
    assert!(
        err.contains("can not be less than memory reservation"),
        "{err}"
    );
    // An allocation past the limit is OOM-killed.
    b.run(&[
        "run",
        "--name",
        "hog",
        "-m",
        "16m",
        "--memory-swap",
        "16m",
        "busybox:test",
        "sh",
        "-c",
        "tail /dev/zero",
    ]);
    assert_eq!(
        b.inspect("hog", "{{.State.OOMKilled}} {{.State.ExitCode}}"),
        "true 137"
    );
}

#[test]
fn cpu_and_pids_limits_and_ulimits_are_applied() {
    require_root!();
    let b = Berth::with_busybox();
    let out = b.sh(&["--cpus", "0.5", "--cpu-shares", "512", "--pids-limit", "20", "--cpuset-cpus", "0"],
        "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/cpuset/cpuset.cpus 2>/dev/null || cat /sys/fs/cgroup/cpu.max /sys/fs/cgroup/pids.max");
    let v: Vec<&str> = out.lines().collect();
    assert_eq!(v, ["50000", "512", "20", "0"], "{out}");
    let out = b.sh(&["--ulimit", "nofile=512:1024"], "ulimit -n; ulimit -Hn");
    assert_eq!(out, "512\n1024\n");
    assert_eq!(
        b.fails(&["run", "--rm", "--ulimit", "bogus=1", "busybox:test", "true"])
            .0,
        125
    );
}

#[test]
fn cfs_quota_and_period_and_the_oom_score_are_applied() {
    require_root!();
    let b = Berth::with_busybox();
    let out = b.sh(
        &["--cpu-quota", "20000", "--cpu-period", "50000", "--oom-score-adj", "500"],
        "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us 2>/dev/null || cat /sys/fs/cgroup/cpu.max; cat /proc/self/oom_score_adj",
    );
    let v: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(v, ["20000", "50000", "500"], "{out}");
    let (code, err) = b.fails(&[
        "run",
        "--rm",
        "--oom-score-adj",
        "1001",
        "busybox:test",
        "true",
    ]);
    assert_eq!(code, 125);
    assert!(
        err.contains("range for oom score adj is [-1000, 1000]"),
        "{err}"
    );
}

#[test]
fn a_privileged_container_is_unconfined_whatever_profile_it_names() {
    require_root!();
    let b = Berth::with_busybox();
    let profile = b.root.parent().unwrap().join("no-mkdir.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    let (code, _) = b.fails(&[
        "run",
        "--rm",
        "--security-opt",
        &opt,
        "busybox:test",
        "mkdir",
        "/d",
    ]);
    assert_eq!(code, 1);
    b.ok(&[
        "run",
        "--rm",
        "--privileged",
        "--security-opt",
        &opt,
        "busybox:test",
        "mkdir",
        "/d",
    ]);
}

#[test]
fn a_mount_made_in_a_container_reaches_the_host_through_an_rshared_bind() {
    require_root!();
    let b = Berth::with_busybox();
    // The host side must be a shared mount, as Docker asks.
    let dir = b.root.parent().unwrap().join("shared");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let path = dir.to_str().unwrap();
    for args in [vec!["--bind", path, path], vec!["--make-shared", path]] {
        assert!(Command::new("mount")
            .args(&args)
            .status()
            .unwrap()
            .success());
    }
    let volume = format!("{path}:/mnt:rshared");
    b.ok(&[
        "run",
        "--rm",
        "--privileged",
        "-v",
        &volume,
        "busybox:test",
        "sh",
        "-c",
        "mount -t tmpfs from-the-container /mnt/sub",
    ]);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let sub = format!("{path}/sub ");
    assert!(
        mounts
            .lines()
            .any(|l| l.contains(&sub) && l.contains("from-the-container")),
        "{mounts}"
    );
    // (Berth's drop unmounts what is left below the test's dir.)
}

#[test]
fn a_cgroup_parent_holds_the_containers_cgroup() {
    require_root!();
    let b = Berth::with_busybox();
    let parent = format!("/bt-parent-{}", std::process::id());
    let out = b.sh(
        &["--cgroup-parent", &parent, "--memory", "64m"],
        "cat /proc/self/cgroup",
    );
    // The cgroup namespace hides the path inside; the host side shows it.
    let dirs: Vec<std::path::PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .flatten()
        .map(|e| e.path().join(parent.trim_start_matches('/')))
        .filter(|p| p.is_dir())
        .collect();
    let made = !dirs.is_empty()
        || std::path::Path::new("/sys/fs/cgroup")
            .join(parent.trim_start_matches('/'))
            .is_dir();
    // Nothing of the container is left under the parent once it is gone. (`run --rm`
    // returns when the record is gone; the monitor removes the cgroup right after.)
    let leftovers = || -> Vec<_> {
        dirs.iter()
            .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
            .filter(|e| e.path().is_dir())
            .map(|e| e.path())
            .collect()
    };
    eventually(10, || leftovers().is_empty());
    let leftovers = leftovers();
    for d in &dirs {
        let _ = std::fs::remove_dir(d);
    }
    let _ = std::fs::remove_dir(
        std::path::Path::new("/sys/fs/cgroup").join(parent.trim_start_matches('/')),
    );
    assert!(made, "no cgroup under {parent}: {out}");
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let (code, err) = b.fails(&[
        "run",
        "--rm",
        "--cgroup-parent",
        "kubepods.slice",
        "busybox:test",
        "true",
    ]);
    assert_eq!(code, 125);
    assert!(
        err.contains("systemd slices are not implemented yet"),
        "{err}"
    );
    let (code, err) = b.fails(&[
        "run",
        "--rm",
        "--cgroup-parent",
        "/a/../b",
        "busybox:test",
        "true",
    ]);
    assert_eq!(code, 125);
    assert!(err.contains("invalid cgroup parent"), "{err}");
}

#[test]
fn host_pid_uts_and_ipc_namespaces_are_the_hosts_when_asked() {
    require_root!();
    let b = Berth::with_busybox();
    let host_name = nix::unistd::gethostname().unwrap().into_string().unwrap();
    let ns = |kind: &str| std::fs::read_link(format!("/proc/self/ns/{kind}")).unwrap();
    let out = b.sh(
        &["--pid", "host", "--uts", "host", "--ipc", "host"],
        "hostname; readlink /proc/self/ns/pid; readlink /proc/self/ns/uts; readlink /proc/self/ns/ipc",
    );
    let v: Vec<&str> = out.lines().collect();
    assert_eq!(v[0], host_name);
    assert_eq!(v[1], ns("pid").display().to_string());
    assert_eq!(v[2], ns("uts").display().to_string());
    assert_eq!(v[3], ns("ipc").display().to_string());
    // By default, all three are the container's own.
    let out = b.sh(
        &[],
        "readlink /proc/self/ns/uts; readlink /proc/self/ns/ipc",
    );
    assert!(!out.contains(&ns("uts").display().to_string()), "{out}");
    assert!(!out.contains(&ns("ipc").display().to_string()), "{out}");
}

#[test]
fn read_only_root_with_writable_tmpfs_and_shm_size() {
    require_root!();
    let b = Berth::with_busybox();
    let out = b.sh(
        &[
            "--read-only",
            "--tmpfs",
            "/scratch:size=1m",
            "--shm-size",
            "8m",
        ],
        "touch /root/x 2>&1; touch /scratch/ok && echo tmpfs-ok; df -k /dev/shm | tail -1",
    );
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(out.contains("tmpfs-ok"), "{out}");
    assert!(out.contains("8192"), "{out}");
}

#[test]
fn user_flag_resolves_names_and_numbers_from_the_image() {
    require_root!();
    let b = Berth::with_busybox();
    assert_eq!(
        b.sh(&["-u", "web"], "id -u; id -g; id -G; echo $HOME"),
        "33\n33\n33 50\n/var/www\n"
    );
    assert_eq!(b.sh(&["-u", "1234:5678"], "id -u; id -g"), "1234\n5678\n");
    // The supplementary groups are the primary one and the user's memberships, unless a
    // group is named: what dockerd (20.10.18 and later) and containerd give.
    for (user, id) in [
        ("", "uid=0(root) gid=0(root) groups=0(root)"),
        ("web", "uid=33(web) gid=33(web) groups=33(web),50(extra)"),
        ("web:root", "uid=33(web) gid=0(root) groups=0(root)"),
        ("1234", "uid=1234 gid=0(root) groups=0(root)"),
    ] {
        let flags: &[&str] = if user.is_empty() { &[] } else { &["-u", user] };
        assert_eq!(b.sh(flags, "id"), format!("{id}\n"), "-u {user}");
    }
    let (code, err) = b.fails(&["run", "--rm", "-u", "nobody-such", "busybox:test", "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("unable to find user nobody-such"), "{err}");
}

#[test]
fn network_host_shares_the_hosts_interfaces() {
    require_root!();
    let b = Berth::with_busybox();
    // Bridges and veths that tests running beside this one make and remove are left out.
    let stable = |n: &str| !n.starts_with("bb-") && !n.starts_with("veth");
    let inside = b.sh(&["--network", "host"], "ls /sys/class/net | sort");
    let mut host: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| stable(n))
        .collect();
    host.sort();
    assert_eq!(
        inside.lines().filter(|n| stable(n)).collect::<Vec<_>>(),
        host
    );
    let (code, err) = b.fails(&[
        "run",
        "--rm",
        "--network",
        "container:other",
        "busybox:test",
        "true",
    ]);
    assert_eq!(code, 125);
    assert!(err.contains("no such container: other"), "{err}");
    assert!(b
        .fails(&[
            "run",
            "--rm",
            "--network",
            "host",
            "-p",
            "8080:80",
            "busybox:test",
            "true"
        ])
        .1
        .contains("publishing ports needs a network"));
}

#[test]
fn init_flag_runs_an_init_as_pid_1_when_one_is_installed() {
    require_root!();
    let b = Berth::with_busybox();
    let have_init = ["tini-static", "docker-init", "berth-init"]
        .iter()
        .any(|n| {
            std::process::Command::new("sh")
                .args(["-c", &format!("command -v {n}")])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        });
    if !have_init {
        let (code, err) = b.fails(&["run", "--rm", "--init", "busybox:test", "true"]);
        assert_eq!(code, 125);
        assert!(err.contains("--init needs"), "{err}");
        eprintln!("skipped the positive half: no tini-static/docker-init installed");
        return;
    }
    let out = b.sh(&["--init"], "cat /proc/1/cmdline | tr '\\0' ' '");
    assert!(out.starts_with("/sbin/docker-init"), "{out}");
}

#[test]
fn devices_are_made_and_allowed_only_as_asked() {
    require_root!();
    let b = Berth::with_busybox();
    // /dev/kmsg (1:11) is none of the devices a container may use by default; opening it
    // for writing writes nothing to the kernel's log.
    let open_w = |flags: &[&str], dev: &str| {
        b.sh(
            flags,
            &format!(
                "ls -ln {dev} | cut -c1-10; (: > {dev}) 2>/dev/null && echo opened || echo denied"
            ),
        )
    };
    let out = open_w(&["--device", "/dev/kmsg:/dev/xk"], "/dev/xk");
    assert_eq!(out, "crw-r--r--\nopened\n");
    assert_eq!(
        open_w(&["--device", "/dev/kmsg:/dev/xk:r"], "/dev/xk"),
        "crw-r--r--\ndenied\n"
    );
    // A node made in the container is of no use without a rule for it.
    let mknod = |flags: &[&str]| {
        b.sh(
            flags,
            "mknod /dev/y c 1 11; (: > /dev/y) 2>/dev/null && echo opened || echo denied",
        )
    };
    assert_eq!(mknod(&[]), "denied\n");
    assert_eq!(mknod(&["--device-cgroup-rule", "c 1:11 w"]), "opened\n");
    // A directory gives the devices below it.
    let dir = b.dir.path().join("devs");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let made = Command::new("mknod")
        .arg(dir.join("sub/k"))
        .args(["c", "1", "11"])
        .status()
        .unwrap();
    assert!(made.success());
    let flag = format!("{}:/dev/mine:w", dir.display());
    assert_eq!(
        open_w(&["--device", &flag], "/dev/mine/sub/k"),
        "crw-r--r--\nopened\n"
    );
    // Docker's words for what is wrong, and nothing is created.
    for (flags, err) in [
        (
            &["--device", "/no/such"][..],
            "error gathering device information while adding custom device \"/no/such\": no such file or directory",
        ),
        (
            &["--device", "/dev/kmsg:xk"][..],
            "invalid argument \"/dev/kmsg:xk\" for \"--device\" flag: xk is not an absolute path",
        ),
        (
            &["--device", "/dev/kmsg:/dev/xk:rwx"][..],
            "bad mode specified: rwx",
        ),
        (
            &["--device-cgroup-rule", "c 1:11"][..],
            "invalid device cgroup format 'c 1:11'",
        ),
    ] {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["busybox:test", "true"]);
        let (code, stderr) = b.fails(&args);
        assert_eq!(code, 125, "{flags:?}");
        assert!(stderr.contains(err), "{flags:?}: {stderr}");
    }
    // The devices are in the container's HostConfig, as Docker shows them.
    let id = b.ok(&["create", "--device", "/dev/kmsg:/dev/xk:r", "busybox:test"]);
    let devices: serde_json::Value =
        serde_json::from_str(&b.inspect(id.trim(), "{{json .HostConfig.Devices}}")).unwrap();
    assert_eq!(
        devices,
        serde_json::json!([{"PathOnHost": "/dev/kmsg", "PathInContainer": "/dev/xk", "CgroupPermissions": "r"}])
    );
}

#[test]
fn privileged_containers_get_the_hosts_devices() {
    require_root!();
    let b = Berth::with_busybox();
    let host_has = |p: &str| std::path::Path::new(p).exists();
    let probe = ["/dev/kmsg", "/dev/loop-control"]
        .into_iter()
        .find(|p| host_has(p));
    let Some(dev) = probe else {
        eprintln!("skipped: the host has neither /dev/kmsg nor /dev/loop-control");
        return;
    };
    let check = format!("test -c {dev} && echo present || echo absent");
    assert_eq!(b.sh(&[], &check), "absent\n");
    assert_eq!(b.sh(&["--privileged"], &check), "present\n");
}

/// Health probes enter the container without the runtime (the monitor's fast path): they
/// must come out exactly as confined as an `exec`, whose confinement the runtime sets up.
#[test]
fn health_probes_are_as_confined_as_exec() {
    require_root!();
    let b = Berth::with_busybox();
    let script = "grep -E '^(Uid|Gid|Groups|Cap[A-Za-z]+|NoNewPrivs|Seccomp|Seccomp_filters):' /proc/self/status; \
                  cat /proc/self/cgroup; for n in ipc mnt net pid uts cgroup; do readlink /proc/self/ns/$n; done; \
                  pwd; id; ulimit -n; env | grep -v '^HOSTNAME=' | sort";
    for extra in [
        &[][..],
        &[
            "--user",
            "1000:1000",
            "--group-add",
            "5",
            "--group-add",
            "nogroup",
            "--cap-drop",
            "ALL",
            "--cap-add",
            "CHOWN",
            "--security-opt",
            "no-new-privileges",
            "-w",
            "/tmp",
            "-e",
            "X=1",
            "--ulimit",
            "nofile=100:200",
        ][..],
    ] {
        let mut args = vec![
            "run",
            "-d",
            "--health-cmd",
            script,
            "--health-interval",
            "200ms",
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["busybox:test", "sleep", "100"]);
        let id = b.ok(&args).trim().to_string();
        assert!(
            eventually(10, || b.inspect(&id, "{{len .State.Health.Log}}") != "0"),
            "no probe ran"
        );
        let probe = b.inspect(&id, "{{(index .State.Health.Log 0).Output}}");
        let exec = b.ok(&["exec", &id, "sh", "-c", script]);
        assert_eq!(probe.trim_end(), exec.trim_end(), "with {extra:?}");
        // Regression: libcontainer 0.7.0's exec dropped the container's seccomp filter.
        assert!(
            exec.contains("Seccomp:\t2"),
            "exec keeps the filter: {exec}"
        );
        if !extra.is_empty() {
            assert!(probe.contains("NoNewPrivs:\t1"), "{probe}");
            assert!(probe.contains("uid=1000"), "{probe}");
            // The primary group, and --group-add: an id and a name from the image's
            // /etc/group (nogroup: 65534).
            assert!(probe.contains("Groups:\t5 1000 65534"), "{probe}");
            assert!(probe.contains("/tmp\n"), "{probe}");
        }
    }
    let (code, err) = b.fails(&[
        "run",
        "--rm",
        "--group-add",
        "no-such-group",
        "busybox:test",
        "true",
    ]);
    assert_eq!(code, 125);
    assert!(err.contains("unable to find group no-such-group"), "{err}");
}
