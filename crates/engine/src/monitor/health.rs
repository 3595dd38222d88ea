//! Health checks: the probe runner, its launcher, results and their timing.

use super::*;

/// A health check between probes, or with one running.
pub(super) struct HealthRunner {
    pub(super) cfg: crate::model::HealthConfig,
    /// The container's OCI spec: what every probe's process is made from.
    pub(super) spec: serde_json::Value,
    /// The way into the container, prepared at the first probe.
    pub(super) entry: Option<berth_runtime::enter::Entry>,
    /// What `inspect` shows, kept on the run root while the container runs.
    pub(super) health: state::Health,
    pub(super) file: Option<state::HealthFile>,
    /// Probes killed before they ran their program, kept until they have ended.
    pub(super) unstarted: Vec<berth_runtime::enter::Launch>,
    /// The process that starts the probes, made at the first one (see
    /// [`berth_runtime::enter::Launcher`]).
    pub(super) launcher: Option<berth_runtime::enter::Launcher>,
    /// Set once the launcher failed: probes are then started one by one with `entry`.
    pub(super) no_launcher: bool,
    /// Exits reaped while the launcher had not yet said which pid the probe has (read only
    /// then; emptied when a probe starts).
    pub(super) early_exits: Vec<(i32, i32)>,
    /// The state file as last read (inode, size, mtime) and whether it said paused.
    pub(super) state_seen: Option<((u64, u64, i64, i64), bool)>,
    /// Set when the status changed: memory is given back soon (RELEASE_AFTER_CHANGE).
    pub(super) release_soon: bool,
    pub(super) started: Instant,
    pub(super) next: Instant,
    pub(super) probe: Option<Probe>,
}

/// How a probe's process was started.
pub(super) enum ProbeProcess {
    /// It could not start.
    None,
    /// By [`berth_runtime::enter::Entry::spawn`]: kept until the probe is reaped, since
    /// until it runs its program it reads our memory.
    Spawned(berth_runtime::enter::Launch),
    /// By the launcher: its pid once the launcher replied.
    Launched(Option<i32>),
}

pub(super) struct Probe {
    pub(super) process: ProbeProcess,
    pub(super) out: OwnedFd,
    pub(super) output: Vec<u8>,
    pub(super) start: String,
    pub(super) deadline: Instant,
    pub(super) exit: Option<i32>,
    pub(super) exited_at: Option<Instant>,
    pub(super) eof: bool,
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

pub(super) const HEALTH_OUTPUT_MAX: usize = 4096;

pub(super) fn ns(d: i64, default: Duration) -> Duration {
    if d > 0 {
        Duration::from_nanos(d as u64)
    } else {
        default
    }
}

impl Monitor {
    pub(super) fn probe_exited(&mut self, pid: i32, code: i32) {
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
    pub(super) fn launcher_replied(&mut self) {
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
    pub(super) fn health_tick(&mut self) {
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
    pub(super) fn health_deadline(&self) -> Option<Instant> {
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
}
