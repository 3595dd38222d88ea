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

mod exec;

use crate::attach::{self, FrameBuffer, Hello};
use crate::logs::LogWriter;
use crate::state::{self, RunState, Status};
use crate::sys;

/// What the engine tells a monitor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MonitorConfig {
    pub id: String,
    pub runtime: String,
    pub runtime_root: PathBuf,
    pub bundle: PathBuf,
    pub tty: bool,
    pub open_stdin: bool,
    pub layers_root: PathBuf,
    pub lowerdir: String,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub merged: PathBuf,
    /// None: `--log-driver none`
    pub log_path: Option<PathBuf>,
    pub log_max_size: u64,
    pub log_max_files: u32,
    /// gzip rotated log files
    #[serde(default)]
    pub log_compress: bool,
    pub auto_remove: bool,
    /// Bring `lo` up in the container's own network namespace.
    pub loopback_up: bool,
    /// (path in the container, host dir): new volumes to fill from the image.
    pub seed_volumes: Vec<(String, PathBuf)>,
    pub cgroup: String,
    /// `no`, `always`, `unless-stopped` or `on-failure` (with `restart_max` tries, 0 = no
    /// limit).
    #[serde(default)]
    pub restart_policy: String,
    #[serde(default)]
    pub restart_max: i64,
    /// The health check to run inside the container, if any.
    #[serde(default)]
    pub healthcheck: Option<crate::model::HealthConfig>,
    /// A process (pid, start time) the container lives for: a build's RUN step. When it
    /// ends, however it ends, the container is killed and removed.
    #[serde(default)]
    pub owner: Option<(i32, u64)>,
    /// The network namespace the engine made for the container (on a network), removed
    /// when the container stops for good: its veth pair goes with it.
    #[serde(default)]
    pub netns: Option<PathBuf>,
    /// The sockets reserving the container's published host ports, inherited at these
    /// fds and held until the end; and the nftables table and elements publishing them.
    #[serde(default)]
    pub port_fds: Vec<RawFd>,
    #[serde(default)]
    pub ports_table: String,
    #[serde(default)]
    pub ports: Vec<PortElement>,
}

/// A published port's nftables element, for the monitor to take out at the end.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PortElement {
    pub host_ip: Option<std::net::Ipv4Addr>,
    pub proto: String,
    pub host_port: u16,
    pub ip: std::net::Ipv4Addr,
    pub port: u16,
}

impl From<&berth_net::firewall::PortMap> for PortElement {
    fn from(p: &berth_net::firewall::PortMap) -> Self {
        PortElement {
            host_ip: p.host_ip,
            proto: p.proto.clone(),
            host_port: p.host_port,
            ip: p.ip,
            port: p.port,
        }
    }
}

impl From<&PortElement> for berth_net::firewall::PortMap {
    fn from(p: &PortElement) -> Self {
        berth_net::firewall::PortMap {
            host_ip: p.host_ip,
            proto: p.proto.clone(),
            host_port: p.host_port,
            ip: p.ip,
            port: p.port,
        }
    }
}

/// The label that ties a container to the process it lives for (`PID-START`).
pub const OWNER_LABEL: &str = "berth.owner";

/// Parses an [`OWNER_LABEL`] value.
pub fn parse_owner(v: &str) -> Option<(i32, u64)> {
    let (p, s) = v.split_once('-')?;
    Some((p.parse().ok()?, s.parse().ok()?))
}

/// How often a monitor running health checks gives back the memory its probes touched
/// (see [`sys::release_startup_memory`]). Rarely: each probe touches the same ~2 MiB of
/// code (with the kernel's fault-around), so releasing it only makes the next probe fault
/// it back in, and walking smaps costs as much again.
const RELEASE_EVERY: Duration = Duration::from_secs(300);

/// How soon after a health status change the monitor gives memory back: recording the
/// change's event opened the database, code no probe runs.
const RELEASE_AFTER_CHANGE: Duration = Duration::from_millis(200);

/// Where `stop`/`rm` record that the user stopped a container, which ends its restart
/// policy until the next `start`.
pub fn stop_marker(root: &Path, id: &str) -> PathBuf {
    root.join("containers").join(id).join("stopped-by-user")
}

/// The container's bundle: the dir its runtime reads `config.json` from, which also holds
/// its monitor's config (`monitor.json`) and log (`monitor.log`). It lives on the run root:
/// `start` writes it anew every time, and a short container's life should not create and
/// delete files on the root's file system that nobody reads after. The monitor deletes
/// what it no longer needs at the container's final exit (a log with something in it
/// stays until `rm`).
pub fn bundle_dir(run_root: &Path, id: &str) -> PathBuf {
    run_root.join("bundles").join(id)
}

pub fn config_path(run_root: &Path, id: &str) -> PathBuf {
    bundle_dir(run_root, id).join("monitor.json")
}

/// At a container's final exit: its bundle less a log worth keeping (see [`bundle_dir`]).
fn remove_bundle(run_root: &Path, id: &str) {
    let dir = bundle_dir(run_root, id);
    let _ = fs::remove_file(dir.join("config.json"));
    let _ = fs::remove_file(dir.join("monitor.json"));
    let log = dir.join("monitor.log");
    if fs::metadata(&log).map(|m| m.len() == 0).unwrap_or(false) {
        let _ = fs::remove_file(&log);
    }
    let _ = fs::remove_dir(&dir);
}

/// How a start failure maps to Docker's exit codes.
pub fn failure_code(message: &str) -> i32 {
    let m = message.to_lowercase();
    if m.contains("permission") || m.contains("is a directory") || m.contains("exec format") {
        126
    } else if m.contains("not found") || m.contains("no such file") || m.contains("executable file")
    {
        127
    } else {
        125
    }
}

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

struct Client {
    stream: UnixStream,
    buf: FrameBuffer,
    hello: Option<Hello>,
    /// A write to it failed: dropped at the end of the poll round, so that the
    /// round's indexes into `clients` stay valid until then.
    gone: bool,
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

/// A health check between probes, or with one running.
struct HealthRunner {
    cfg: crate::model::HealthConfig,
    /// The container's OCI spec: what every probe's process is made from.
    spec: serde_json::Value,
    /// The way into the container, prepared at the first probe.
    entry: Option<berth_runtime::enter::Entry>,
    /// What `inspect` shows, kept on the run root while the container runs.
    health: state::Health,
    file: Option<state::HealthFile>,
    /// Probes killed before they ran their program, kept until they have ended.
    unstarted: Vec<berth_runtime::enter::Launch>,
    /// The process that starts the probes, made at the first one (see
    /// [`berth_runtime::enter::Launcher`]).
    launcher: Option<berth_runtime::enter::Launcher>,
    /// Set once the launcher failed: probes are then started one by one with `entry`.
    no_launcher: bool,
    /// Exits reaped while the launcher had not yet said which pid the probe has (read only
    /// then; emptied when a probe starts).
    early_exits: Vec<(i32, i32)>,
    /// The state file as last read (inode, size, mtime) and whether it said paused.
    state_seen: Option<((u64, u64, i64, i64), bool)>,
    /// Set when the status changed: memory is given back soon (RELEASE_AFTER_CHANGE).
    release_soon: bool,
    started: Instant,
    next: Instant,
    probe: Option<Probe>,
}

/// How a probe's process was started.
enum ProbeProcess {
    /// It could not start.
    None,
    /// By [`berth_runtime::enter::Entry::spawn`]: kept until the probe is reaped, since
    /// until it runs its program it reads our memory.
    Spawned(berth_runtime::enter::Launch),
    /// By the launcher: its pid once the launcher replied.
    Launched(Option<i32>),
}

struct Probe {
    process: ProbeProcess,
    out: OwnedFd,
    output: Vec<u8>,
    start: String,
    deadline: Instant,
    exit: Option<i32>,
    exited_at: Option<Instant>,
    eof: bool,
}

impl Probe {
    /// Its process id; -1 for one that could not start (or whose pid is not known yet).
    fn pid(&self) -> i32 {
        match &self.process {
            ProbeProcess::Spawned(l) => l.pid(),
            ProbeProcess::Launched(Some(pid)) => *pid,
            _ => -1,
        }
    }

    /// A probe that could not start: it counts as a failed one, with `msg` as its output.
    fn failed(now: Instant, msg: String) -> Probe {
        Probe {
            process: ProbeProcess::None,
            out: OwnedFd::from(File::open("/dev/null").expect("/dev/null opens")),
            output: msg.into_bytes(),
            start: crate::now(),
            deadline: now,
            exit: Some(-1),
            exited_at: Some(now),
            eof: true,
        }
    }
}

const HEALTH_OUTPUT_MAX: usize = 4096;

fn ns(d: i64, default: Duration) -> Duration {
    if d > 0 {
        Duration::from_nanos(d as u64)
    } else {
        default
    }
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
        self.log = Some(
            LogWriter::open(cfg.log_path.as_deref(), cfg.log_max_size, cfg.log_max_files)
                .map(|w| w.compressed(cfg.log_compress))
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
            Err(e) => {
                let msg = error_chain(&e);
                return Err((failure_code(&msg), msg));
            }
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
        self.rt.start(&cfg.id).map_err(|e| {
            let msg = error_chain(&e);
            (failure_code(&msg), msg)
        })?;
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

    fn probe_exited(&mut self, pid: i32, code: i32) {
        let Some(h) = self.health.as_mut() else {
            return;
        };
        if let Some(p) = h.probe.as_mut() {
            if p.pid() == pid {
                p.exit = Some(code);
                p.exited_at = Some(Instant::now());
            } else if matches!(p.process, ProbeProcess::Launched(None)) {
                // The launcher's reply may come after its child's exit.
                h.early_exits.push((pid, code));
            }
        }
    }

    /// Reads the launcher's reply to the running probe's request, if it has come.
    ///
    /// Not woken for: the reply comes before the probe's output ends (the launcher holds
    /// the pipe until then), so it is read when the probe ends, or at its timeout.
    fn launcher_replied(&mut self) {
        let Some(h) = self.health.as_mut() else {
            return;
        };
        let Some(p) = h
            .probe
            .as_mut()
            .filter(|p| matches!(p.process, ProbeProcess::Launched(None)))
        else {
            return;
        };
        let Some(reply) = h.launcher.as_ref().and_then(|l| l.reply()) else {
            return;
        };
        // The pid must be our child (CLONE_PARENT), reaped or not: it is what a timeout
        // kills.
        let reply = reply.and_then(|pid| {
            if h.early_exits.iter().any(|(q, _)| *q == pid) || sys::is_unreaped_child(pid) {
                Ok(pid)
            } else {
                Err(format!(
                    "the probe launcher named {pid}, not a child of ours"
                ))
            }
        });
        match reply {
            Ok(pid) => {
                p.process = ProbeProcess::Launched(Some(pid));
                if let Some(&(_, code)) = h.early_exits.iter().find(|(q, _)| *q == pid) {
                    p.exit = Some(code);
                    p.exited_at = Some(Instant::now());
                }
            }
            Err(_) => {
                // The launcher cannot start probes here (a seccomp profile that refuses
                // its calls, say): this probe and the next start the old way, which
                // reports what fails in the probe's output.
                h.launcher = None;
                h.no_launcher = true;
                h.probe = None;
                h.next = Instant::now();
            }
        }
    }

    /// Starts a probe when one is due; finishes one that ended or ran out of time.
    fn health_tick(&mut self) {
        self.launcher_replied();
        let Some(h) = self.health.as_mut() else {
            return;
        };
        let now = Instant::now();
        if let Some(p) = h.probe.as_mut() {
            let timed_out = p.exit.is_none() && now >= p.deadline;
            if timed_out {
                if p.pid() > 0 {
                    let _ = nix::sys::signal::kill(Pid::from_raw(p.pid()), Signal::SIGKILL);
                } else if matches!(p.process, ProbeProcess::Launched(None)) {
                    // The launcher never answered (frozen with the container, say): it is
                    // killed, and the next probe makes another.
                    h.launcher = None;
                }
            }
            // Done when it exited and its output ended (or a moment passed: a background
            // child may hold the pipe), or when it ran out of time.
            let finished = p.exit.is_some()
                && (p.eof
                    || p.exited_at
                        .map(|t| now >= t + Duration::from_millis(100))
                        .unwrap_or(true));
            if !(timed_out || finished) {
                return;
            }
            let mut p = h.probe.take().expect("checked above");
            // One that never ran its program (frozen by a pause) still reads our memory:
            // it is killed, and kept until it has ended.
            if let ProbeProcess::Spawned(mut launch) =
                std::mem::replace(&mut p.process, ProbeProcess::None)
            {
                if !launch.started() {
                    let _ = nix::sys::signal::kill(Pid::from_raw(launch.pid()), Signal::SIGKILL);
                    h.unstarted.push(launch);
                }
            }
            let timeout = ns(h.cfg.timeout, Duration::from_secs(30));
            let (code, output) = if timed_out {
                (
                    -1,
                    format!("Health check exceeded timeout ({}s)", timeout.as_secs_f64()),
                )
            } else {
                (
                    p.exit.unwrap_or(-1),
                    String::from_utf8_lossy(&p.output).into_owned(),
                )
            };
            let in_start_period =
                now.duration_since(h.started) < ns(h.cfg.start_period, Duration::ZERO);
            let retries = if h.cfg.retries > 0 { h.cfg.retries } else { 3 };
            let health = &mut h.health;
            let old_status = health.status.clone();
            if code == 0 {
                health.status = "healthy".into();
                health.failing_streak = 0;
            } else if !in_start_period {
                health.failing_streak += 1;
                if health.failing_streak >= retries {
                    health.status = "unhealthy".into();
                }
            }
            if health.status.is_empty() {
                health.status = "starting".into();
            }
            health.log.push(state::HealthResult {
                start: p.start,
                end: crate::now(),
                exit_code: code,
                output,
            });
            if health.log.len() > 5 {
                let extra = health.log.len() - 5;
                health.log.drain(..extra);
            }
            // Docker records an event when the status changes, not for every probe.
            let changed = old_status != health.status;
            let status = health.status.clone();
            if let Some(f) = h.file.as_mut() {
                let _ = f.write(health);
            }
            h.next = now + ns(h.cfg.interval, Duration::from_secs(30));
            if changed && status != "starting" {
                h.release_soon = true;
                self.emit(&format!("health_status: {status}"), &[]);
            }
            return;
        }
        h.unstarted.retain_mut(|l| !l.started());
        if now < h.next {
            return;
        }
        // A paused container is not probed (its probe would only wait for the thaw). The
        // state is read again only when its file changed (it is replaced whole, by
        // rename: a new inode, and "paused" is shorter than "running").
        let state_file = state::path(&self.root, &self.cfg.id);
        let seen = fs::metadata(&state_file).ok().map(|m| {
            use std::os::unix::fs::MetadataExt;
            (m.ino(), m.len(), m.mtime(), m.mtime_nsec())
        });
        let paused = match (&h.state_seen, seen) {
            (Some((was, paused)), Some(now_seen)) if *was == now_seen => *paused,
            _ => {
                let paused = state::read_raw(&self.root, &self.cfg.id)
                    .is_ok_and(|s| s.status == Status::Paused);
                h.state_seen = seen.map(|s| (s, paused));
                paused
            }
        };
        if paused {
            h.next = now + ns(h.cfg.interval, Duration::from_secs(30));
            return;
        }
        let argv = h.cfg.argv().unwrap_or_default();
        if h.entry.is_none() {
            let seccomp = &h.spec["linux"]["seccomp"];
            let cache = berth_runtime::seccomp_cache(&self.cfg.runtime_root);
            let cgroups = berth_runtime::enter::cgroup_procs_files(
                Path::new("/sys/fs/cgroup"),
                &self.cfg.cgroup,
            );
            let prepared = match seccomp.is_null() {
                true => Ok(None),
                false => berth_runtime::seccomp::compile_cached(seccomp, &cache).map(Some),
            }
            .and_then(|f| berth_runtime::enter::Entry::prepare(&h.spec, self.pid, cgroups, f));
            // Preparing (compiling the filter when no cache has it) is the one big
            // allocation after start-up: give it back.
            sys::release_startup_memory();
            match prepared {
                Ok(e) => h.entry = Some(e),
                Err(e) => {
                    h.probe = Some(Probe::failed(now, e));
                    return;
                }
            }
        }
        let entry = h.entry.as_ref().expect("prepared above");
        if h.launcher.is_none() && !h.no_launcher {
            match entry.launcher(&argv) {
                Ok(l) => h.launcher = Some(l),
                Err(_) => h.no_launcher = true,
            }
        }
        let started = (|| -> Result<(ProbeProcess, OwnedFd), String> {
            let (r, w) =
                nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
            if let Some(l) = &h.launcher {
                match l.request(w.as_fd()) {
                    Ok(()) => return Ok((ProbeProcess::Launched(None), r)),
                    // Gone or stuck: this probe and the next start the old way.
                    Err(_) => {
                        h.launcher = None;
                        h.no_launcher = true;
                    }
                }
            }
            let null = File::open("/dev/null").map_err(|e| e.to_string())?;
            let launch = entry.spawn(&argv, [null.as_fd(), w.as_fd(), w.as_fd()], false)?;
            Ok((ProbeProcess::Spawned(launch), r))
        })();
        let timeout = ns(h.cfg.timeout, Duration::from_secs(30));
        match started {
            Ok((process, out)) => {
                let _ = nix::fcntl::fcntl(
                    out.as_raw_fd(),
                    nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
                );
                h.early_exits.clear();
                h.probe = Some(Probe {
                    process,
                    out,
                    output: Vec::new(),
                    start: crate::now(),
                    deadline: now + timeout,
                    exit: None,
                    exited_at: None,
                    eof: false,
                });
            }
            Err(msg) => h.probe = Some(Probe::failed(now, msg)),
        }
    }

    /// When the health check next needs attention.
    fn health_deadline(&self) -> Option<Instant> {
        let h = self.health.as_ref()?;
        Some(match &h.probe {
            // Ended (or, with the launcher's reply still to read, something did).
            Some(p)
                if p.exit.is_some()
                    || (matches!(p.process, ProbeProcess::Launched(None))
                        && !h.early_exits.is_empty()) =>
            {
                (Instant::now() + Duration::from_millis(20)).min(p.deadline)
            }
            Some(p) => p.deadline,
            None => h.next,
        })
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
                        if let Some(s) = &sfd {
                            while let Ok(Some(_)) = s.read_signal() {}
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
            }
            self.clients.retain(|c| !c.gone);
        }
        exit.unwrap_or(255)
    }

    fn accept_clients(&mut self) {
        let Some(l) = &self.listener else { return };
        while let Ok((stream, _)) = l.accept() {
            let _ = stream.set_nonblocking(true);
            self.clients.push(Client {
                stream,
                buf: FrameBuffer::default(),
                hello: None,
                gone: false,
            });
        }
    }

    /// Output from the container: to the log and to attached clients.
    fn output(&mut self, kind: u8, data: &[u8]) {
        if let Some(l) = self.log.as_mut() {
            let _ = l.write(kind, data);
        }
        let f = attach::frame(kind, data);
        for c in self.clients.iter_mut().filter(|c| !c.gone) {
            let wants = match (c.hello, kind) {
                (Some(h), attach::STDOUT) => h.stdout,
                (Some(h), attach::STDERR) => h.stderr,
                _ => false,
            };
            if wants && write_all_blocking(&mut c.stream, &f).is_err() {
                c.gone = true;
            }
        }
    }

    /// Input from client `i`; false when it is gone.
    fn client_input(&mut self, i: usize) -> bool {
        if self.clients[i].gone {
            return false;
        }
        let mut buf = [0u8; 32 * 1024];
        let n = match self.clients[i].stream.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        };
        self.clients[i].buf.push(&buf[..n]);
        loop {
            let frame = match self.clients[i].buf.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => return true,
                Err(_) => return false,
            };
            let hello = self.clients[i].hello;
            match frame {
                (attach::HELLO, p) => self.clients[i].hello = Some(Hello::decode(&p)),
                (attach::STDIN, data) if hello.map(|h| h.stdin).unwrap_or(false) => {
                    let target = self.pty.as_ref().or(self.stdin.as_ref());
                    if let Some(fd) = target {
                        let _ = write_fd_all(fd.as_fd(), &data);
                    }
                }
                (attach::STDIN_EOF, _) if hello.map(|h| h.stdin).unwrap_or(false) => {
                    // Closing our end gives the container EOF (for a pty, send ^D instead).
                    match &self.pty {
                        Some(p) => {
                            let _ = write_fd_all(p.as_fd(), &[4]);
                        }
                        None => self.stdin = None,
                    }
                }
                (attach::RESIZE, p) if p.len() == 4 => {
                    if let Some(pty) = &self.pty {
                        let rows = u16::from_be_bytes([p[0], p[1]]);
                        let cols = u16::from_be_bytes([p[2], p[3]]);
                        let _ = set_winsize(pty.as_fd(), rows, cols);
                    }
                }
                _ => {}
            }
        }
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
        let f = attach::frame(attach::EXIT, &code.to_be_bytes());
        for c in &mut self.clients {
            let _ = write_all_blocking(&mut c.stream, &f);
        }
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

/// Reads what is available; None at end of stream (or EIO from a pty whose other end closed).
fn read_some(fd: BorrowedFd<'_>) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
            Ok(0) => return None,
            Ok(n) => {
                buf.truncate(n);
                return Some(buf);
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EAGAIN) => return Some(Vec::new()),
            Err(_) => return None,
        }
    }
}

fn write_fd_all(fd: BorrowedFd<'_>, mut data: &[u8]) -> nix::Result<()> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes to a non-blocking client socket, waiting (up to 2 s) while it is full.
fn write_all_blocking(s: &mut UnixStream, mut data: &[u8]) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !data.is_empty() {
        match s.write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(e);
                }
                let mut pfd = [PollFd::new(s.as_fd(), PollFlags::POLLOUT)];
                let _ = poll(&mut pfd, PollTimeout::from(100u16));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sets a terminal's window size.
pub fn set_winsize(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize struct that lives for the duration of the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Accepts the runtime's connection on the console socket and takes the pty master it sends.
pub fn receive_pty_from(l: &UnixListener) -> io::Result<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let (s, _) = l.accept()?;
    let mut buf = [0u8; 4096];
    let mut iov = [io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        s.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(io::Error::from)?;
    for c in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(fd) = fds.first() {
                // SAFETY: the kernel just installed this fd in our table for us to own.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "no terminal fd received",
    ))
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
