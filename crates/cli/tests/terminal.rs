//! `-it`: a real terminal through a pty, window size, detach keys and re-attach.

mod common;
use common::{eventually, read_until, Berth};
use std::io::Write;
use std::time::{Duration, Instant};

/// Runs berth with a pty as its stdin/stdout/stderr; returns the child and the master.
fn spawn_on_pty(
    b: &Berth,
    args: &[&str],
    rows: u16,
    cols: u16,
) -> (std::process::Child, std::fs::File) {
    let mut cmd = b.cmd();
    cmd.args(args);
    common::spawn_on_pty(cmd, rows, cols)
}

#[test]
fn run_it_gives_a_real_terminal_with_the_callers_size_and_exit_code() {
    require_root!();
    let b = Berth::with_busybox();
    let (mut child, mut master) =
        spawn_on_pty(&b, &["run", "-it", "--rm", "busybox:test", "sh"], 33, 101);
    read_until(&mut master, "# ", 10);
    master
        .write_all(b"tty; stty size; echo TERM=$TERM\r")
        .unwrap();
    let out = read_until(&mut master, "TERM=xterm", 10);
    assert!(out.contains("/dev/pts/0"), "{out}");
    assert!(out.contains("33 101"), "{out}");
    master.write_all(b"exit 3\r").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "berth run -it did not exit");
        let _ = read_until(&mut master, "\u{0}", 0);
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(3));
}

#[test]
fn ctrl_p_ctrl_q_detaches_and_attach_comes_back() {
    require_root!();
    let b = Berth::with_busybox();
    let (mut child, mut master) = spawn_on_pty(
        &b,
        &["run", "-it", "--name", "det", "busybox:test", "sh"],
        24,
        80,
    );
    read_until(&mut master, "# ", 10);
    master.write_all(&[0x10, 0x11]).unwrap();
    assert!(
        eventually(10, || child.try_wait().unwrap().is_some()),
        "detach keys did not detach"
    );
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert_eq!(b.inspect("det", "{{.State.Status}}"), "running");
    let (mut child, mut master) = spawn_on_pty(&b, &["attach", "det"], 24, 80);
    std::thread::sleep(Duration::from_millis(300));
    master.write_all(b"echo back-again\r").unwrap();
    let out = read_until(&mut master, "back-again\r\n", 10);
    assert!(out.contains("back-again"), "{out}");
    master.write_all(b"exit 4\r").unwrap();
    assert!(eventually(10, || child.try_wait().unwrap().is_some()));
    assert_eq!(child.wait().unwrap().code(), Some(4));
    assert_eq!(b.inspect("det", "{{.State.ExitCode}}"), "4");
}

#[test]
fn exec_it_gets_its_own_terminal() {
    require_root!();
    let b = Berth::with_busybox();
    b.ok(&["run", "-d", "--name", "host", "busybox:test", "sleep", "60"]);
    let (mut child, mut master) = spawn_on_pty(&b, &["exec", "-it", "host", "sh"], 40, 120);
    read_until(&mut master, "# ", 10);
    master
        .write_all(b"stty size; tty; echo END$((1+1))\r")
        .unwrap();
    let out = read_until(&mut master, "END2", 10);
    assert!(out.contains("40 120"), "{out}");
    // The terminal has a name in the container (a pty of its own devpts instance).
    assert!(
        out.contains("\n/dev/pts/") && !out.contains("not a tty"),
        "{out}"
    );
    master.write_all(b"exit 6\r").unwrap();
    assert!(eventually(10, || child.try_wait().unwrap().is_some()));
    assert_eq!(child.wait().unwrap().code(), Some(6));
}

#[test]
fn pull_and_push_on_a_terminal_draw_bars_in_place() {
    require_root!();
    let reg = common::berth_registry(&[]);
    let b = Berth::with_busybox();
    let name = format!("{}/tty/bb:1", reg.host);
    b.ok(&["tag", "busybox:test", &name]);
    let (mut child, mut master) = spawn_on_pty(&b, &["push", &name], 24, 120);
    let out = read_until(&mut master, "digest: sha256:", 30);
    assert!(child.wait().unwrap().success(), "{out}");
    assert!(out.contains("Pushed"), "{out}");
    let other = Berth::new();
    let (mut child, mut master) = spawn_on_pty(&other, &["pull", &name], 24, 120);
    let out = read_until(&mut master, "Status: ", 30);
    assert!(child.wait().unwrap().success(), "{out}");
    // The layer's line is drawn once, then rewritten in place: cursor up, clear line.
    assert!(out.contains(": Pulling fs layer"), "{out}");
    assert!(out.contains("\x1b[1A\x1b[2K\r"), "{out:?}");
    assert!(
        out.contains(": Downloading [") && out.contains("Pull complete"),
        "{out:?}"
    );
}

/// Regression: an attach client whose socket broke while the container wrote used to
/// be dropped in the middle of the monitor's poll round, and the round's next client
/// index then pointed past the end: the monitor panicked and the container was "dead".
#[test]
fn attach_clients_that_vanish_mid_output_leave_the_monitor_running() {
    use berth_engine::attach::{self, Hello};
    require_root!();
    let b = Berth::with_busybox();
    b.ok(&[
        "run",
        "-d",
        "-i",
        "--name",
        "noisy",
        "--network",
        "none",
        "busybox:test",
        "sh",
        "-c",
        "while true; do echo noise; done",
    ]);
    let id = b.inspect("noisy", "{{.Id}}");
    let hello = Hello {
        stdin: true,
        stdout: true,
        stderr: true,
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < deadline {
        // Readers that never read and go, beside a writer that keeps sending input.
        let quiet: Vec<_> = (0..4)
            .filter_map(|_| attach::connect(&b.run_root, &id, hello).ok())
            .collect();
        let mut talker = attach::connect(&b.run_root, &id, hello).unwrap();
        for _ in 0..20 {
            let _ = attach::write_frame(&mut talker, attach::STDIN, b"x\n");
        }
        std::thread::sleep(Duration::from_millis(30));
        drop(quiet);
    }
    assert_eq!(b.inspect("noisy", "{{.State.Status}}"), "running");
    b.ok(&["rm", "-f", "noisy"]);
}

#[test]
fn exec_it_never_takes_a_terminal_from_outside_the_containers_devpts() {
    require_root!();
    let b = Berth::with_busybox();
    // A container that may unmount its devpts and put a link in its place.
    b.ok(&[
        "run",
        "-d",
        "--privileged",
        "--name",
        "sly",
        "busybox:test",
        "sh",
        "-c",
        "umount /dev/pts && ln -s /etc/passwd /dev/pts/ptmx && sleep 60",
    ]);
    assert!(eventually(10, || b
        .run(&["exec", "sly", "test", "-L", "/dev/pts/ptmx"])
        .status
        .success()));
    let (mut child, mut master) = spawn_on_pty(&b, &["exec", "-it", "sly", "sh"], 24, 80);
    let out = read_until(&mut master, "devpts", 10);
    assert!(out.contains("not a devpts ptmx"), "{out}");
    assert!(eventually(10, || child.try_wait().unwrap().is_some()));
    assert_ne!(child.wait().unwrap().code(), Some(0));
    // Without the link (nothing there), the exec falls back to a pty of the host's.
    b.ok(&["exec", "sly", "rm", "/dev/pts/ptmx"]);
    let (mut child, mut master) = spawn_on_pty(&b, &["exec", "-it", "sly", "sh"], 24, 80);
    read_until(&mut master, "# ", 10);
    master.write_all(b"exit 4\r").unwrap();
    assert!(eventually(10, || child.try_wait().unwrap().is_some()));
    assert_eq!(child.wait().unwrap().code(), Some(4));
}
