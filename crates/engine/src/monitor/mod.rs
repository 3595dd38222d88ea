//! The per-container monitor (`berth-monitor`): a small single-threaded process that
//! creates the container through the OCI runtime, owns its stdio or pty, writes the log,
//! serves attach clients, reaps the container's init and records how it ended.
//!
//! The engine writes `monitor.json` (everything the monitor needs) before spawning it, so
//! the monitor does not read the database while the container runs. It reports readiness
//! on an inherited pipe (fd 3): `created`, then `ok PID` or `err CODE MESSAGE`.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

mod config;
mod exec;
mod health;
mod streams;

pub use config::*;
use health::*;
use streams::*;
pub use streams::{receive_pty_from, set_winsize};

use crate::attach::{self, FrameBuffer, Hello};
use crate::logs::LogWriter;
use crate::state::{self, RunState, Status};
use crate::sys;

/// How often a monitor running health checks gives back the memory its probes touched
/// (see [`sys::release_startup_memory`]). Rarely: each probe touches the same ~2 MiB of
/// code (with the kernel's fault-around), so releasing it only makes the next probe fault
/// it back in, and walking smaps costs as much again.
const RELEASE_EVERY: Duration = Duration::from_secs(300);

/// How soon after a health status change the monitor gives memory back: recording the
/// change's event opened the database, code no probe runs.
const RELEASE_AFTER_CHANGE: Duration = Duration::from_millis(200);

/// How long after the last exec it served the monitor gives back the memory the runtime's
/// exec path touched (~3 MiB of code), so a container exec'd into once does not keep it:
/// once the execs stop, not after each (a burst would fault it all back in).
const RELEASE_AFTER_EXEC: Duration = Duration::from_secs(1);

struct Ready(Option<File>);

impl Ready {
    fn say(&mut self, line: &str) {
        if let Some(f) = self.0.as_mut() {
            let _ = f.write_all(format!("{line}\n").as_bytes());
        }
    }
    fn done(&mut self, line: &str) {
        self.say(line);
        self.0 = None;
    }
}

/// Runs a monitor to the end. `ready_fd` is the inherited readiness pipe, if any.
pub fn run(
    root: &Path,
    run_root: &Path,
    id: &str,
    wait_attach: bool,
    ready_fd: Option<RawFd>,
) -> i32 {
    // SAFETY: the engine passes the write end of a pipe as this fd and nothing else in this
    // process owns it.
    let mut ready = Ready(ready_fd.map(|fd| unsafe { File::from_raw_fd(fd) }));
    let cfg: MonitorConfig = match fs::read(config_path(run_root, id))
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => {
            ready.done(&format!("err 125 reading the monitor config: {e}"));
            return 125;
        }
    };
    // Orphaned container processes come to us.
    let _ = berth_runtime::become_subreaper();
    let rt = match berth_runtime::by_name(&cfg.runtime, &cfg.runtime_root) {
        Ok(r) => r,
        Err(e) => {
            fail(root, &cfg, &mut ready, 125, &e.to_string());
            return 125;
        }
    };
    let mut m = Monitor {
        root: root.to_path_buf(),
        run_root: run_root.to_path_buf(),
        cfg,
        rt,
        clients: Vec::new(),
        outputs: Vec::new(),
        stdin: None,
        pty: None,
        log: None,
        listener: None,
        pid: 0,
        health: None,
        owner: None,
        execs: exec::ExecServer::default(),
    };
    // The port reservations stay with this process only, not its children.
    for &fd in &m.cfg.port_fds {
        // SAFETY: fcntl on an fd number the engine handed us; a bad one fails harmlessly.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    m.owner = m.cfg.owner.and_then(|(pid, start)| {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return None;
        }
        // SAFETY: the descriptor was just made and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        // Checked after opening, so the descriptor is of the process recorded.
        sys::process_alive(pid, start).then_some(fd)
    });
    match m.setup(wait_attach, &mut ready) {
        Ok(()) => {}
        Err((code, msg)) => {
            m.cleanup_runtime(false);
            fail(root, &m.cfg, &mut ready, code, &msg);
            return code;
        }
    }
    // The first start's event is the starting process's to record (off this critical path).
    let mut code = m.supervise();
    // The restart policy, with Docker's back-off: 100 ms doubling up to a minute, back to
    // 100 ms after a run of 10 s or more.
    let mut delay = Duration::from_millis(100);
    let mut started = Instant::now();
    while m.should_restart(code) {
        if started.elapsed() >= Duration::from_secs(10) {
            delay = Duration::from_millis(100);
        }
        m.unblock_signals();
        m.cleanup_runtime(true);
        let mut st = state::read_raw(&m.root, &m.cfg.id).unwrap_or_default();
        st.status = Status::Restarting;
        st.exit_code = code;
        st.oom_killed = sys::oom_killed(Path::new("/sys/fs/cgroup"), &m.cfg.cgroup);
        st.finished_at = crate::now();
        st.restart_count += 1;
        st.pid = 0;
        let _ = state::write(&m.root, &m.cfg.id, &st);
        // Clients learn of each exit, as Docker's do: a `wait` returns, an attach ends.
        m.tell_exit(code);
        let until = Instant::now() + delay;
        while Instant::now() < until && !stop_marker(&m.root, &m.cfg.id).exists() {
            std::thread::sleep(
                Duration::from_millis(20).min(until.saturating_duration_since(Instant::now())),
            );
        }
        delay = (delay * 2).min(Duration::from_secs(60));
        if stop_marker(&m.root, &m.cfg.id).exists() {
            break;
        }
        m.outputs.clear();
        m.stdin = None;
        m.pty = None;
        started = Instant::now();
        m.emit("die", &[("exitCode", code.to_string())]);
        match m.setup(false, &mut Ready(None)) {
            Ok(()) => {
                m.emit("start", &[]);
                code = m.supervise();
            }
            Err((c, msg)) => {
                let mut st = state::read_raw(&m.root, &m.cfg.id).unwrap_or_default();
                st.error = msg;
                let _ = state::write(&m.root, &m.cfg.id, &st);
                code = c;
            }
        }
    }
    m.finish(code);
    0
}

/// Records a failed start: state exited with `code` and the error, rootfs unmounted.
fn fail(root: &Path, cfg: &MonitorConfig, ready: &mut Ready, code: i32, msg: &str) {
    let _ = sys::unmount(&cfg.merged);
    release_network(cfg);
    let mut st = state::read_raw(root, &cfg.id).unwrap_or_default();
    st.status = Status::Exited;
    st.exit_code = code;
    st.error = msg.to_string();
    st.pid = 0;
    st.finished_at = crate::now();
    let _ = state::write(root, &cfg.id, &st);
    ready.done(&format!("err {code} {}", msg.replace('\n', " ")));
}

/// Takes the container's published ports out of the firewall, gives up their host ports
/// (before the state says exited, so a `stop` that returns finds them free), and unpins
/// the network namespace (its veth pair goes with it). Called once, at the end.
fn release_network(cfg: &MonitorConfig) {
    unpublish_and_unpin(cfg);
    for &fd in &cfg.port_fds {
        let _ = nix::unistd::close(fd);
    }
}

/// Takes a container's published ports out of the firewall and unpins its network
/// namespace: what [`release_network`] does outside the monitor, for one that was
/// killed.
pub(crate) fn unpublish_and_unpin(cfg: &MonitorConfig) {
    if !cfg.ports.is_empty() {
        let maps: Vec<berth_net::firewall::PortMap> = cfg.ports.iter().map(Into::into).collect();
        berth_net::firewall::unpublish(&cfg.ports_table, &maps);
    }
    if let Some(ns) = &cfg.netns {
        let _ = berth_net::netns::remove(ns);
    }
}

/// The configuration the container's last monitor ran with.
pub(crate) fn read_config(run_root: &Path, id: &str) -> Option<MonitorConfig> {
    serde_json::from_slice(&fs::read(config_path(run_root, id)).ok()?).ok()
}

struct Monitor {
    root: PathBuf,
    run_root: PathBuf,
    cfg: MonitorConfig,
    rt: Box<dyn berth_runtime::OciRuntime>,
    clients: Vec<Client>,
    /// (stream kind, read end)
    outputs: Vec<(u8, OwnedFd)>,
    stdin: Option<OwnedFd>,
    pty: Option<OwnedFd>,
    log: Option<LogWriter>,
    listener: Option<UnixListener>,
    pid: i32,
    health: Option<HealthRunner>,
    /// A pidfd of the owner process, readable once it has ended.
    owner: Option<OwnedFd>,
    /// Exec requests and the processes they started (see `exec`).
    execs: exec::ExecServer,
}

type SetupError = (i32, String);

fn pipe() -> Result<(OwnedFd, OwnedFd), SetupError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| (125, format!("pipe: {e}")))
}

impl Monitor {
    fn setup(&mut self, wait_attach: bool, ready: &mut Ready) -> Result<(), SetupError> {
        let cfg = self.cfg.clone();
        if !sys::is_mountpoint(&cfg.merged) {
            sys::mount_overlay(
                &cfg.layers_root,
                &cfg.lowerdir,
                &cfg.upper,
                &cfg.work,
                &cfg.merged,
                cfg.auto_remove,
            )
            .map_err(|e| (125, e.to_string()))?;
        }
        for (path, data) in &cfg.seed_volumes {
            seed_volume(&cfg.merged, path, data).map_err(|e| {
                (
                    125,
                    format!("copying image content into the volume at {path}: {e}"),
                )
            })?;
        }
        if !cfg.workdir.is_empty() {
            sys::make_dir_in_root(&cfg.merged, &cfg.workdir).map_err(|e| {
                (
                    125,
                    format!("creating the working directory {}: {e}", cfg.workdir),
                )
            })?;
        }
        self.log = Some(
            LogWriter::open(cfg.log_path.as_deref(), cfg.log_max_size, cfg.log_max_files)
                .map(|w| w.compressed(cfg.log_compress).cri_format(cfg.log_cri))
                .map_err(|e| (125, format!("opening the log: {e}")))?,
        );
        let sock = attach::socket_path(&self.run_root, &cfg.id);
        if let Some(d) = sock.parent() {
            fs::create_dir_all(d).map_err(|e| (125, format!("{}: {e}", d.display())))?;
        }
        let _ = fs::remove_file(&sock);
        let listener =
            UnixListener::bind(&sock).map_err(|e| (125, format!("{}: {e}", sock.display())))?;

        raise_rlimits(&cfg.bundle.join("config.json"));
        let mut stdio = berth_runtime::Stdio::default();
        let console_path = self
            .run_root
            .join("s")
            .join(format!("{}.con", &cfg.id[..12]));
        let console = if cfg.tty {
            let _ = fs::remove_file(&console_path);
            Some(
                UnixListener::bind(&console_path)
                    .map_err(|e| (125, format!("{}: {e}", console_path.display())))?,
            )
        } else {
            let devnull = || {
                File::open("/dev/null")
                    .map(OwnedFd::from)
                    .map_err(|e| (125, format!("/dev/null: {e}")))
            };
            if cfg.open_stdin {
                let (r, w) = pipe()?;
                stdio.stdin = Some(r);
                self.stdin = Some(w);
            } else {
                stdio.stdin = Some(devnull()?);
            }
            let (or, ow) = pipe()?;
            let (er, ew) = pipe()?;
            stdio.stdout = Some(ow);
            stdio.stderr = Some(ew);
            self.outputs.push((attach::STDOUT, or));
            self.outputs.push((attach::STDERR, er));
            None
        };
        let created = self.rt.create(
            &cfg.id,
            &cfg.bundle,
            stdio,
            console.as_ref().map(|_| console_path.as_path()),
        );
        let pid = match created {
            Ok(p) => p,
            Err(e) => return Err((e.start_failure().exit_code(), error_chain(&e))),
        };
        self.pid = pid;
        if let Some(l) = console {
            let master = receive_pty_from(&l)
                .map_err(|e| (125, format!("receiving the container's terminal: {e}")))?;
            let _ = fs::remove_file(&console_path);
            self.pty = Some(master);
        }
        if cfg.loopback_up {
            sys::loopback_up_in(pid).map_err(|e| (125, e.to_string()))?;
        }
        let mut st = state::read_raw(&self.root, &cfg.id).unwrap_or_default();
        st.monitor_pid = std::process::id() as i32;
        st.monitor_start = sys::process_start_time(st.monitor_pid).unwrap_or(0);
        st.pid = pid;
        st.error.clear();
        if wait_attach {
            ready.say("created");
            // The first client's hello lets the container run, so no output is missed.
            loop {
                let (stream, _) = listener
                    .accept()
                    .map_err(|e| (125, format!("attach: {e}")))?;
                let mut c = Client {
                    stream,
                    buf: FrameBuffer::default(),
                    hello: None,
                    gone: false,
                };
                match attach::read_frame(&mut c.stream) {
                    Ok(Some((attach::HELLO, p))) => {
                        c.hello = Some(Hello::decode(&p));
                        self.clients.push(c);
                        break;
                    }
                    _ => continue,
                }
            }
        }
        self.rt
            .start(&cfg.id)
            .map_err(|e| (e.start_failure().exit_code(), error_chain(&e)))?;
        st.status = Status::Running;
        st.started_at = crate::now();
        st.finished_at = state::ZERO_TIME.into();
        st.exit_code = 0;
        st.oom_killed = false;
        state::write(&self.root, &cfg.id, &st).map_err(|e| (125, e.to_string()))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| (125, e.to_string()))?;
        self.listener = Some(listener);
        let exec_socket = crate::exec::socket_path(&self.run_root, &cfg.id);
        self.execs
            .bind(&exec_socket)
            .map_err(|e| (125, format!("{}: {e}", exec_socket.display())))?;
        self.health = cfg.healthcheck.clone().and_then(|h| {
            let spec: serde_json::Value =
                serde_json::from_slice(&fs::read(cfg.bundle.join("config.json")).ok()?).ok()?;
            let now = Instant::now();
            Some(HealthRunner {
                next: now + ns(h.interval, Duration::from_secs(30)),
                cfg: h,
                spec,
                entry: None,
                health: state::Health {
                    status: "starting".into(),
                    ..Default::default()
                },
                unstarted: Vec::new(),
                file: None,
                launcher: None,
                no_launcher: false,
                early_exits: Vec::new(),
                state_seen: None,
                release_soon: false,
                started: now,
                probe: None,
            })
        });
        if let Some(h) = self.health.as_mut() {
            h.file = state::HealthFile::create(&self.run_root, &cfg.id).ok();
            if let Some(f) = h.file.as_mut() {
                let _ = f.write(&h.health);
            }
        }
        ready.done(&format!("ok {pid}"));
        Ok(())
    }
}

const POLL_IN: libc::c_short = libc::POLLIN;

/// The signals the monitor takes through a signalfd while it supervises (blocked then,
/// and only then: the runtime's processes inherit the monitor's signal mask).
fn supervised_signals() -> SigSet {
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGPIPE,
        // Reopen the log (kubelet rotated it).
        Signal::SIGUSR1,
    ] {
        mask.add(s);
    }
    mask
}

impl Monitor {
    /// Reaps children; returns the init's exit code once it has exited.
    fn reap(&mut self) -> Option<i32> {
        let mut code = None;
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(p, c)) => {
                    if p.as_raw() == self.pid {
                        code = Some(c);
                    }
                    self.probe_exited(p.as_raw(), c);
                    self.execs.exited(p.as_raw(), c);
                }
                Ok(WaitStatus::Signaled(p, sig, _)) => {
                    if p.as_raw() == self.pid {
                        code = Some(128 + sig as i32);
                    }
                    self.probe_exited(p.as_raw(), 128 + sig as i32);
                    self.execs.exited(p.as_raw(), 128 + sig as i32);
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
        code
    }

    /// Records a container event (opens the database only for that).
    fn emit(&self, action: &str, extra: &[(&str, String)]) {
        if let Some(engine) = self.open_engine() {
            self.emit_on(&engine, action, extra);
        }
    }

    fn open_engine(&self) -> Option<crate::Engine> {
        crate::Engine::open(crate::EngineOptions::new(&self.root, &self.run_root)).ok()
    }

    fn emit_on(&self, engine: &crate::Engine, action: &str, extra: &[(&str, String)]) {
        if let Ok(rec) = engine.find_container(&self.cfg.id) {
            engine.emit_container(&rec, action, extra);
        }
    }

    /// Sends each client the exit frame; they stay connected.
    fn tell_exit_keeping_clients(&mut self, code: i32) {
        let f = attach::frame(attach::EXIT, &code.to_be_bytes());
        for c in &mut self.clients {
            let _ = write_all_blocking(&mut c.stream, &f);
        }
    }

    /// Sends each client the exit frame and lets them go (an exit before a restart).
    fn tell_exit(&mut self, code: i32) {
        self.tell_exit_keeping_clients(code);
        self.clients.clear();
    }

    /// Does the restart policy want another run after an exit with `code`?
    fn should_restart(&self, code: i32) -> bool {
        if stop_marker(&self.root, &self.cfg.id).exists() {
            return false;
        }
        // `update --restart` may have changed the policy since we started.
        let fresh: Option<MonitorConfig> = fs::read(config_path(&self.run_root, &self.cfg.id))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let (policy, max) = fresh
            .map(|c| (c.restart_policy, c.restart_max))
            .unwrap_or((self.cfg.restart_policy.clone(), self.cfg.restart_max));
        match policy.as_str() {
            "always" | "unless-stopped" => true,
            "on-failure" => {
                let count = state::read_raw(&self.root, &self.cfg.id)
                    .map(|s| s.restart_count)
                    .unwrap_or(0);
                code != 0 && (max <= 0 || count < max)
            }
            _ => false,
        }
    }

    /// Undoes the signal blocking of `supervise` before a new container is created: the
    /// runtime's processes inherit our signal mask.
    fn unblock_signals(&self) {
        let mask = supervised_signals();
        let _ = mask.thread_unblock();
    }

    fn supervise(&mut self) -> i32 {
        let mask = supervised_signals();
        let _ = mask.thread_block();
        let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).ok();
        // Memory set-up no longer needs is given back once the container has run a while,
        // so short-lived containers do not wait for it; with health checks, again after
        // a status change and now and then (see RELEASE_EVERY).
        let mut release_at = Some(Instant::now() + Duration::from_millis(250));
        let mut exit = self.reap();
        if self.cfg.owner.is_some() && self.owner.is_none() && exit.is_none() {
            // The owner ended before the container started.
            self.cfg.auto_remove = true;
            let _ = nix::sys::signal::kill(Pid::from_raw(self.pid), Signal::SIGKILL);
        }
        // After exit, keep draining output until every stream closes or a short grace passes.
        let mut drain_deadline: Option<Instant> = None;
        loop {
            if exit.is_some() && drain_deadline.is_none() {
                drain_deadline = Some(Instant::now() + Duration::from_millis(500));
                // The probe launcher is not in the container's pid namespace: it does not
                // end with the init, and must not hold the cgroups.
                if let Some(h) = self.health.as_mut() {
                    h.launcher = None;
                }
            }
            let streams_open = !self.outputs.is_empty() || self.pty.is_some();
            if let Some(d) = drain_deadline {
                if !streams_open || Instant::now() >= d {
                    break;
                }
            }
            if exit.is_none() {
                self.health_tick();
                // Starting a probe reaps a helper process; look for other exits too.
                if self.health.is_some() {
                    exit = self.reap();
                    if exit.is_some() {
                        continue;
                    }
                }
            }
            let mut fds: Vec<libc::pollfd> = Vec::new();
            let mut roles: Vec<Role> = Vec::new();
            let mut add = |fd: RawFd, role: Role| {
                fds.push(libc::pollfd {
                    fd,
                    events: POLL_IN,
                    revents: 0,
                });
                roles.push(role);
            };
            if let Some(s) = &sfd {
                add(s.as_fd().as_raw_fd(), Role::Signal);
            }
            if exit.is_none() {
                if let Some(o) = &self.owner {
                    add(o.as_raw_fd(), Role::Owner);
                }
            }
            if exit.is_none() {
                if let Some(l) = &self.listener {
                    add(l.as_raw_fd(), Role::Listener);
                }
                if let Some(l) = self.execs.listener() {
                    add(l, Role::ExecListener);
                }
                for (i, fd) in self.execs.pending().enumerate() {
                    add(fd, Role::ExecRequest(i));
                }
            }
            for (i, (_, fd)) in self.outputs.iter().enumerate() {
                add(fd.as_raw_fd(), Role::Output(i));
            }
            if let Some(p) = &self.pty {
                add(p.as_raw_fd(), Role::Pty);
            }
            for (i, c) in self.clients.iter().enumerate() {
                add(c.stream.as_raw_fd(), Role::Client(i));
            }
            if let Some(p) = self
                .health
                .as_ref()
                .and_then(|h| h.probe.as_ref())
                .filter(|p| !p.eof)
            {
                add(p.out.as_raw_fd(), Role::Probe);
            }
            if let Some(h) = self.health.as_mut().filter(|h| h.release_soon) {
                h.release_soon = false;
                let soon = Instant::now() + RELEASE_AFTER_CHANGE;
                release_at = Some(release_at.map_or(soon, |r| r.min(soon)));
            }
            if exit.is_some() {
                release_at = None;
            }
            if release_at.is_some_and(|r| Instant::now() >= r) {
                sys::release_startup_memory();
                release_at = self
                    .health
                    .is_some()
                    .then(|| Instant::now() + RELEASE_EVERY);
            }
            let mut wake: Option<Instant> = drain_deadline;
            if drain_deadline.is_none() {
                if let Some(r) = release_at {
                    wake = Some(r);
                }
                if let Some(h) = self.health_deadline() {
                    wake = Some(wake.map_or(h, |w| w.min(h)));
                }
            }
            let timeout = match wake {
                Some(d) => d.saturating_duration_since(Instant::now()).as_millis() as i32 + 1,
                None => -1,
            }; // SAFETY: fds is a valid, exclusively borrowed array of pollfd of the given length.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                break;
            }
            let mut dead_clients = Vec::new();
            let mut closed_outputs = Vec::new();
            let mut exec_requests = Vec::new();
            for (pfd, role) in fds.iter().zip(roles.iter()) {
                if pfd.revents == 0 {
                    continue;
                }
                match *role {
                    Role::Owner => {
                        // The process this container lived for is gone: so is it.
                        self.owner = None;
                        self.cfg.auto_remove = true;
                        let _ = nix::sys::signal::kill(Pid::from_raw(self.pid), Signal::SIGKILL);
                    }
                    Role::Signal => {
                        let mut reopen = false;
                        if let Some(s) = &sfd {
                            while let Ok(Some(info)) = s.read_signal() {
                                reopen |= info.ssi_signo == libc::SIGUSR1 as u32;
                            }
                        }
                        if reopen {
                            if let Some(l) = self.log.as_mut() {
                                let _ = l.reopen();
                            }
                        }
                        if exit.is_none() {
                            exit = self.reap();
                        } else {
                            self.reap();
                        }
                    }
                    Role::Listener => self.accept_clients(),
                    Role::ExecListener => self.execs.accept(),
                    Role::ExecRequest(i) => exec_requests.push(i),
                    Role::Output(i) => {
                        let (kind, fd) = &self.outputs[i];
                        let kind = *kind;
                        match read_some(fd.as_fd()) {
                            Some(data) => self.output(kind, &data),
                            None => closed_outputs.push(i),
                        }
                    }
                    Role::Pty => match self.pty.as_ref().and_then(|p| read_some(p.as_fd())) {
                        Some(data) => self.output(attach::STDOUT, &data),
                        None => self.pty = None,
                    },
                    Role::Probe => {
                        if let Some(p) = self.health.as_mut().and_then(|h| h.probe.as_mut()) {
                            match read_some(p.out.as_fd()) {
                                Some(data) => {
                                    let room = HEALTH_OUTPUT_MAX.saturating_sub(p.output.len());
                                    p.output.extend_from_slice(&data[..data.len().min(room)]);
                                }
                                None => p.eof = true,
                            }
                        }
                    }
                    Role::Client(i) => {
                        if !self.client_input(i) {
                            dead_clients.push(i);
                        }
                    }
                }
            }
            closed_outputs.sort_unstable();
            for i in closed_outputs.into_iter().rev() {
                self.outputs.remove(i);
            }
            for i in dead_clients {
                self.clients[i].gone = true;
            }
            // Descending, so each removal leaves the indexes still to serve in place.
            exec_requests.sort_unstable();
            let mut started = false;
            for i in exec_requests.into_iter().rev() {
                started |= self.serve_exec(i);
            }
            if started {
                // Signals were unblocked while the runtime started it: what they
                // announced is looked for now.
                let code = self.reap();
                exit = exit.or(code);
                release_at = Some(Instant::now() + RELEASE_AFTER_EXEC);
            }
            self.clients.retain(|c| !c.gone);
        }
        exit.unwrap_or(255)
    }

    /// Deletes the container from its runtime; `exited`: its init has been reaped, so the
    /// runtime has nothing left to kill.
    fn cleanup_runtime(&mut self, exited: bool) {
        let _ = if exited {
            self.rt.delete_exited(&self.cfg.id)
        } else {
            self.rt.delete(&self.cfg.id, true)
        };
        let _ = sys::remove_cgroup(Path::new("/sys/fs/cgroup"), &self.cfg.cgroup);
        let _ = fs::remove_file(attach::socket_path(&self.run_root, &self.cfg.id));
    }

    /// After the container's init exited: log flush, OOM check, runtime cleanup, state,
    /// exit frames, and auto-removal.
    fn finish(&mut self, code: i32) {
        if let Some(l) = self.log.as_mut() {
            let _ = l.flush_partial();
        }
        let oom = sys::oom_killed(Path::new("/sys/fs/cgroup"), &self.cfg.cgroup);
        self.listener = None;
        self.execs.close();
        self.execs.reap_remaining();
        let _ = fs::remove_file(crate::exec::socket_path(&self.run_root, &self.cfg.id));
        if self.cfg.auto_remove {
            // The runtime's own state waits until the removal is done, and the removal
            // unmounts and removes the cgroup after its clients are gone (see below).
            let _ = fs::remove_file(attach::socket_path(&self.run_root, &self.cfg.id));
        } else {
            self.cleanup_runtime(true);
            let _ = sys::unmount(&self.cfg.merged);
        }
        remove_bundle(&self.run_root, &self.cfg.id);
        release_network(&self.cfg);
        let mut st: RunState = state::read_raw(&self.root, &self.cfg.id).unwrap_or_default();
        st.status = Status::Exited;
        st.exit_code = code;
        st.oom_killed = oom;
        st.pid = 0;
        st.finished_at = crate::now();
        if let Some(h) = &self.health {
            st.health = Some(h.health.clone());
        }
        if self.cfg.netns.is_some() && !self.cfg.auto_remove {
            // A stopped container's names leave its networks' name servers (before its
            // state says exited, so a `stop` that returns finds them gone).
            if let Ok(engine) =
                crate::Engine::open(crate::EngineOptions::new(&self.root, &self.run_root))
            {
                let _ = engine.refresh_dns(Some((&self.cfg.id, false)));
            }
        }
        let _ = state::write(&self.root, &self.cfg.id, &st);
        let _ = fs::remove_file(state::health_path(&self.run_root, &self.cfg.id));
        // Clients learn the exit first: one of them may be an `rm -f` holding the
        // container's lock, which auto-removal needs. (`run --rm` waits for this process
        // to end, so it still returns only once the container is gone.)
        // The die event goes first, so that a `stop` woken by the exit records its own
        // event after it, in Docker's order.
        // One engine for the events and the removal (opening one reads the schema).
        let engine = self.open_engine();
        if let Some(engine) = &engine {
            if oom {
                self.emit_on(engine, "oom", &[]);
            }
            self.emit_on(engine, "die", &[("exitCode", code.to_string())]);
        }
        self.tell_exit_keeping_clients(code);
        // With auto-removal, clients keep their connection until the container is gone:
        // `run --rm` returns at its end, not at this process's (which deletes the files
        // after that).
        if self.cfg.auto_remove {
            let removed = engine.as_ref().is_some_and(|engine| {
                let clients = &mut self.clients;
                engine
                    .remove_container_then(&self.cfg.id, true, true, || clients.clear())
                    .is_ok()
            });
            if !removed {
                // It stays, exited: without its mount and cgroup, as any other.
                let _ = sys::unmount(&self.cfg.merged);
                let _ = sys::remove_cgroup(Path::new("/sys/fs/cgroup"), &self.cfg.cgroup);
            }
            // Nothing needs the runtime's state of the container now; its clients are gone.
            self.clients.clear();
            let _ = self.rt.delete_exited(&self.cfg.id);
        }
        self.clients.clear();
    }
}

#[derive(Clone, Copy)]
enum Role {
    Signal,
    Owner,
    Listener,
    ExecListener,
    ExecRequest(usize),
    Output(usize),
    Pty,
    Client(usize),
    Probe,
}

pub use berth_image::error_chain;

/// Fills a new, empty volume dir with the image's content at `path` (Docker's behaviour).
fn seed_volume(merged: &Path, path: &str, data: &Path) -> io::Result<()> {
    let src = resolve_in(merged, path);
    let Some(src) = src else { return Ok(()) };
    if !src.is_dir() || fs::read_dir(data)?.next().is_some() {
        return Ok(());
    }
    copy_tree(&src, data)
}

/// Resolves `path` inside `root` without following symlinks out: None when a component is
/// a symlink or missing.
fn resolve_in(root: &Path, path: &str) -> Option<PathBuf> {
    let mut p = root.to_path_buf();
    for c in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
        if c == ".." {
            return None;
        }
        p.push(c);
        if fs::symlink_metadata(&p).ok()?.file_type().is_symlink() {
            return None;
        }
    }
    Some(p)
}

/// Copies a tree preserving modes, owners, symlinks and times (no device nodes).
pub fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = fs::symlink_metadata(src)?;
    for e in fs::read_dir(src)? {
        let e = e?;
        let from = e.path();
        let to = dst.join(e.file_name());
        let m = fs::symlink_metadata(&from)?;
        let ft = m.file_type();
        if ft.is_dir() {
            fs::create_dir_all(&to)?;
            copy_tree(&from, &to)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&from)?, &to)?;
        } else if ft.is_file() {
            fs::copy(&from, &to)?;
        } else {
            continue;
        }
        let _ = nix::unistd::fchownat(
            None,
            &to,
            Some(m.uid().into()),
            Some(m.gid().into()),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        );
        if !ft.is_symlink() {
            let _ = fs::set_permissions(&to, fs::Permissions::from_mode(m.mode() & 0o7777));
        }
    }
    let _ = nix::unistd::chown(dst, Some(meta.uid().into()), Some(meta.gid().into()));
    let _ = fs::set_permissions(dst, fs::Permissions::from_mode(meta.mode() & 0o7777));
    Ok(())
}

/// Entry point of the `berth-monitor` binary.
pub fn main_with_args(args: &[String]) -> i32 {
    let mut root = None;
    let mut run_root = None;
    let mut id = None;
    let mut wait_attach = false;
    let mut ready_fd = None;
    let mut spare = false;
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--root" => root = it.next().cloned(),
            "--run-root" => run_root = it.next().cloned(),
            "--id" => id = it.next().cloned(),
            "--wait-attach" => wait_attach = true,
            "--ready-fd" => ready_fd = it.next().and_then(|s| s.parse().ok()),
            "--spare" => spare = true,
            _ => {
                eprintln!("berth-monitor: unknown argument {a}");
                return 2;
            }
        }
    }
    if spare {
        // Started ahead (see crate::spare): the rest comes on the socket, or nothing does.
        let Some(over) = crate::spare::wait_for_container() else {
            return 0;
        };
        id = Some(over.id);
        wait_attach = over.wait_attach;
        ready_fd = Some(3);
    }
    let (Some(root), Some(run_root), Some(id)) = (root, run_root, id) else {
        eprintln!("berth-monitor: usage: berth-monitor --root DIR --run-root DIR (--id ID [--wait-attach] [--ready-fd N] | --spare)");
        return 2;
    };
    run(
        Path::new(&root),
        Path::new(&run_root),
        &id,
        wait_attach,
        ready_fd,
    )
}

/// Raises this process's resource limits to the container's: the runtime sets them in the
/// container after dropping CAP_SYS_RESOURCE, which can lower a limit but not raise it,
/// so the container inherits raised limits from us.
fn raise_rlimits(spec: &Path) {
    let Ok(bytes) = fs::read(spec) else { return };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return;
    };
    let Some(list) = v["process"]["rlimits"].as_array() else {
        return;
    };
    for r in list {
        let res = match r["type"].as_str().unwrap_or_default() {
            "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
            "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
            "RLIMIT_CORE" => libc::RLIMIT_CORE,
            "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
            "RLIMIT_STACK" => libc::RLIMIT_STACK,
            "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
            "RLIMIT_AS" => libc::RLIMIT_AS,
            "RLIMIT_CPU" => libc::RLIMIT_CPU,
            "RLIMIT_DATA" => libc::RLIMIT_DATA,
            "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
            "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
            "RLIMIT_NICE" => libc::RLIMIT_NICE,
            "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
            "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
            "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
            "RLIMIT_RSS" => libc::RLIMIT_RSS,
            _ => continue,
        };
        let (Some(soft), Some(hard)) = (r["soft"].as_u64(), r["hard"].as_u64()) else {
            continue;
        };
        let lim = libc::rlimit {
            rlim_cur: soft as libc::rlim_t,
            rlim_max: hard as libc::rlim_t,
        };
        // SAFETY: setrlimit reads one rlimit struct that lives for the duration of the call.
        unsafe { libc::setrlimit(res, &lim) };
    }
}
