//! `exec`: a new process in a running container. The engine writes its OCI process
//! file; the container's monitor starts it through the container's runtime and reaps it,
//! as containerd's shim does, so the caller (the CLI, or the multi-threaded API service)
//! never forks a runtime and need not be a subreaper: it sends the request on the
//! monitor's exec socket (seqpacket, beside the attach socket) with the process's
//! streams, and reads back `ok PID` (or `err CODE MESSAGE`) and then `exit CODE`.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sys::socket::{
    connect, recv, sendmsg, socket, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType,
    UnixAddr,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::{io_err, EngineError, Result};
use crate::model::ContainerRecord;
pub use crate::specs::ExecSpec;
use crate::{spec, Engine};

/// The socket on which a running container's monitor takes exec requests.
pub fn socket_path(run_root: &Path, id: &str) -> PathBuf {
    run_root
        .join("s")
        .join(format!("{}.x", &id[..12.min(id.len())]))
}

/// An exec request, as the monitor reads it: the JSON of this, with the process's three
/// streams attached when it has no terminal.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Request {
    /// The OCI process file (under `<run-root>/exec/`).
    pub process: PathBuf,
    /// With a terminal: where the runtime sends the pty's master.
    pub console_socket: Option<PathBuf>,
}

/// The monitor's answers on an exec connection.
#[derive(Debug, PartialEq)]
pub(crate) enum Reply {
    Started(i32),
    Failed(i32, String),
    Exited(i32),
}

impl Reply {
    pub(crate) fn encode(&self) -> String {
        match self {
            Reply::Started(pid) => format!("ok {pid}"),
            Reply::Failed(code, msg) => format!("err {code} {msg}"),
            Reply::Exited(code) => format!("exit {code}"),
        }
    }

    pub(crate) fn decode(text: &str) -> Option<Reply> {
        let (word, rest) = text.split_once(' ')?;
        match word {
            "ok" => rest.parse().ok().map(Reply::Started),
            "exit" => rest.parse().ok().map(Reply::Exited),
            "err" => {
                let (code, msg) = rest.split_once(' ').unwrap_or((rest, ""));
                Some(Reply::Failed(code.parse().ok()?, msg.to_string()))
            }
            _ => None,
        }
    }
}

/// What an exec's process is given.
pub enum ExecIo {
    /// Its stdin, stdout and stderr.
    Streams([OwnedFd; 3]),
    /// A terminal: the runtime sends its master to this socket, on which the caller
    /// listens.
    Terminal(PathBuf),
}

/// A process an exec started; its monitor reaps it and sends its exit code.
pub struct ExecProcess {
    pub pid: i32,
    conn: OwnedFd,
}

impl ExecProcess {
    /// Waits for the process to end; its exit code (128+N when killed by signal N).
    pub fn wait(self) -> Result<i32> {
        match read_reply(&self.conn)? {
            Some(Reply::Exited(code)) => Ok(code),
            _ => Err(EngineError::Unavailable(
                "the container's monitor ended before the exec did".into(),
            )),
        }
    }
}

fn read_reply(conn: &OwnedFd) -> Result<Option<Reply>> {
    let mut buf = [0u8; 4096];
    let n = loop {
        match recv(conn.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => break r.map_err(crate::error::sys_err("reading the monitor's answer"))?,
        }
    };
    Ok(Reply::decode(&String::from_utf8_lossy(&buf[..n])))
}

/// An exec whose process file is written; `start` runs it.
pub struct PreparedExec {
    pub container_id: String,
    socket: PathBuf,
    process_file: PathBuf,
}

impl Drop for PreparedExec {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.process_file);
    }
}

impl PreparedExec {
    /// Starts the process: the container's monitor runs it through the runtime and
    /// answers with its pid, or with why it could not start (126, 127 or 125, as
    /// Docker's).
    pub fn start(&self, io: ExecIo) -> Result<ExecProcess> {
        // The socket lives while the container runs: a container that stopped since
        // it was looked up has none.
        let unavailable = |e: nix::Error| match e {
            nix::Error::ENOENT | nix::Error::ECONNREFUSED => EngineError::NotRunning {
                id: self.container_id.clone(),
            },
            e => EngineError::Unavailable(format!(
                "container {}: its monitor takes no exec requests at {}: {e}",
                self.container_id,
                self.socket.display()
            )),
        };
        let fd = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(crate::error::sys_err("exec socket"))?;
        let addr = UnixAddr::new(&self.socket).map_err(unavailable)?;
        connect(fd.as_raw_fd(), &addr).map_err(unavailable)?;
        let (console_socket, streams) = match &io {
            ExecIo::Streams(s) => (None, s.iter().map(|f| f.as_raw_fd()).collect()),
            ExecIo::Terminal(p) => (Some(p.clone()), Vec::<RawFd>::new()),
        };
        let req = Request {
            process: self.process_file.clone(),
            console_socket,
        };
        let body = serde_json::to_vec(&req).expect("an exec request serialises");
        let rights = [ControlMessage::ScmRights(&streams)];
        let cmsgs: &[ControlMessage<'_>] = if streams.is_empty() { &[] } else { &rights };
        sendmsg::<()>(
            fd.as_raw_fd(),
            &[io::IoSlice::new(&body)],
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map_err(crate::error::sys_err("sending the exec request"))?;
        // The process has its copies (or the request failed): ours close now.
        drop(io);
        match read_reply(&fd)? {
            Some(Reply::Started(pid)) => Ok(ExecProcess { pid, conn: fd }),
            Some(Reply::Failed(code, message)) => Err(EngineError::Start { code, message }),
            _ => Err(EngineError::Unavailable(format!(
                "container {}: its monitor ended the exec request without an answer",
                self.container_id
            ))),
        }
    }
}

impl Engine {
    /// Whether `opts` can run in container `name` now: a valid request, a running
    /// container that is not paused. The API checks this at `exec create`; `exec_prepare`
    /// checks it again at the start.
    pub fn exec_check(&self, name: &str, opts: &ExecSpec) -> Result<ContainerRecord> {
        opts.validate()?;
        let rec = self.find_container(name)?;
        let st = self.container_state(&rec.id)?;
        if !st.status.is_active() {
            return Err(EngineError::NotRunning { id: rec.id.clone() });
        }
        if st.status == crate::state::Status::Paused {
            return Err(EngineError::Paused { id: rec.id.clone() });
        }
        Ok(rec)
    }

    /// Checks the exec can run (see [`Engine::exec_check`]) and writes its OCI process.
    pub fn exec_prepare(&self, name: &str, opts: &ExecSpec) -> Result<PreparedExec> {
        let rec = self.exec_check(name, opts)?;
        let image = self.find_image(&rec.image_id)?;
        let user_spec = opts.user.clone().unwrap_or_else(|| rec.config.user.clone());
        let layer_dirs = self.layer_dirs(&rec, &image);
        let mut user = spec::resolve_user(&user_spec, &layer_dirs)?;
        spec::add_groups(&mut user, &rec.host_config.group_add, &layer_dirs)?;
        let mut env = spec::merge_env(&[
            &[format!("HOSTNAME={}", rec.config.hostname)],
            &rec.config.env,
            &opts.env,
        ]);
        if opts.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
            env.push("TERM=xterm".into());
        }
        if !env.iter().any(|e| e.starts_with("HOME=")) {
            env.push(format!("HOME={}", user.home));
        }
        let hc = &rec.host_config;
        let caps = spec::capabilities(&hc.cap_add, &hc.cap_drop, hc.privileged || opts.privileged)?;
        let cwd = opts
            .workdir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| {
                if rec.config.working_dir.is_empty() {
                    "/".into()
                } else {
                    rec.config.working_dir.clone()
                }
            });
        let mut u = json!({"uid": user.uid, "gid": user.gid});
        if !user.additional_gids.is_empty() {
            u["additionalGids"] = json!(user.additional_gids);
        }
        let no_new_privs = hc.security_opt.iter().any(|o| {
            o == "no-new-privileges"
                || o == "no-new-privileges:true"
                || o == "no-new-privileges=true"
        });
        let mut process = json!({
            "terminal": opts.tty,
            "user": u,
            "args": opts.cmd,
            "env": env,
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        });
        // See spec::build: only present when set.
        if no_new_privs {
            process["noNewPrivileges"] = json!(true);
        }
        let dir = self.run_root().join("exec");
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let process_file = dir.join(format!(
            "{}-{}.json",
            &rec.id[..12],
            berth_image::fsutil::random_hex(6)
        ));
        fs::write(
            &process_file,
            serde_json::to_vec(&process).expect("process serialises"),
        )
        .map_err(io_err(&process_file))?;
        Ok(PreparedExec {
            container_id: rec.id.clone(),
            socket: socket_path(self.run_root(), &rec.id),
            process_file,
        })
    }
}

/// An exec started by its container's monitor, with the caller's ends of its streams.
pub enum Started {
    Pipes {
        process: ExecProcess,
        /// None when the exec takes no input.
        stdin: Option<OwnedFd>,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    Terminal {
        process: ExecProcess,
        /// The pty's master: its output, and where input and resizes go.
        master: OwnedFd,
    },
    Detached(ExecProcess),
}

/// How the caller wants an exec's streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Streams {
    /// None at all (`/dev/null`).
    Detached,
    /// A terminal.
    Terminal,
    /// Pipes; stdin only when asked.
    Pipes { stdin: bool },
}

impl PreparedExec {
    /// Starts the process with the streams asked for (a terminal's master comes from
    /// the runtime through a socket under `run_root/s`, named after `tag`).
    pub fn start_with(&self, run_root: &Path, tag: &str, streams: Streams) -> Result<Started> {
        let pipe = || -> Result<(OwnedFd, OwnedFd)> {
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(crate::error::sys_err("pipe"))
        };
        match streams {
            Streams::Detached => Ok(Started::Detached(self.start(ExecIo::Streams([
                dev_null()?,
                dev_null()?,
                dev_null()?,
            ]))?)),
            Streams::Terminal => {
                let dir = run_root.join("s");
                fs::create_dir_all(&dir).map_err(io_err(&dir))?;
                let path = dir.join(format!("a{tag}.con"));
                let _ = fs::remove_file(&path);
                let listener =
                    std::os::unix::net::UnixListener::bind(&path).map_err(io_err(&path))?;
                let process = self.start(ExecIo::Terminal(path.clone()));
                let _ = fs::remove_file(&path);
                let process = process?;
                let master = crate::monitor::receive_pty_from(&listener).map_err(io_err(&path))?;
                Ok(Started::Terminal { process, master })
            }
            Streams::Pipes { stdin } => {
                let (stdin_r, stdin_w) = if stdin {
                    let (r, w) = pipe()?;
                    (r, Some(w))
                } else {
                    (dev_null()?, None)
                };
                let (out_r, out_w) = pipe()?;
                let (err_r, err_w) = pipe()?;
                let process = self.start(ExecIo::Streams([stdin_r, out_w, err_w]))?;
                Ok(Started::Pipes {
                    process,
                    stdin: stdin_w,
                    stdout: out_r,
                    stderr: err_r,
                })
            }
        }
    }
}

/// What [`Engine::exec_sync`] gives back.
#[derive(Debug, Default)]
pub struct ExecOutput {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// The most of each stream [`Engine::exec_sync`] keeps (kubelet's limit).
pub const EXEC_SYNC_MAX_OUTPUT: usize = 16 << 20;

impl Engine {
    /// Runs `opts` in container `name` with no input, and returns its exit code and
    /// output (each stream up to [`EXEC_SYNC_MAX_OUTPUT`]). With a `timeout`, a process
    /// still running then is killed and the call fails as `Unavailable`.
    pub fn exec_sync(
        &self,
        name: &str,
        opts: &ExecSpec,
        timeout: Option<std::time::Duration>,
    ) -> Result<ExecOutput> {
        let prepared = self.exec_prepare(name, opts)?;
        let (out_r, out_w) = io::pipe().map_err(io_err("pipe"))?;
        let (err_r, err_w) = io::pipe().map_err(io_err("pipe"))?;
        let process = prepared.start(ExecIo::Streams([dev_null()?, out_w.into(), err_w.into()]))?;
        let read = |mut r: io::PipeReader| {
            std::thread::spawn(move || {
                use std::io::Read;
                let mut buf = Vec::new();
                let _ = (&mut r)
                    .take(EXEC_SYNC_MAX_OUTPUT as u64)
                    .read_to_end(&mut buf);
                // What is beyond the limit is read and dropped, so the process never
                // blocks on a full pipe.
                let _ = io::copy(&mut r, &mut io::sink());
                buf
            })
        };
        let (stdout, stderr) = (read(out_r), read(err_r));
        let pid = process.pid;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(process.wait());
        });
        let exit_code = match timeout {
            Some(t) => match rx.recv_timeout(t) {
                Ok(code) => code?,
                Err(_) => {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                    return Err(EngineError::Unavailable(format!(
                        "command {:?} timed out after {t:?}",
                        opts.cmd
                    )));
                }
            },
            None => rx.recv().map_err(|_| {
                EngineError::Unavailable("the exec's waiter ended without an answer".into())
            })??,
        };
        Ok(ExecOutput {
            exit_code,
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        })
    }
}

/// `/dev/null` for an exec stream nobody reads or writes.
pub fn dev_null() -> Result<OwnedFd> {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map(OwnedFd::from)
        .map_err(io_err("/dev/null"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_read_back_as_written() {
        for r in [
            Reply::Started(42),
            Reply::Exited(137),
            Reply::Failed(
                127,
                "exec: \"nope\": executable file not found in $PATH".into(),
            ),
        ] {
            assert_eq!(Reply::decode(&r.encode()), Some(r));
        }
        assert_eq!(Reply::decode("what"), None);
        assert_eq!(Reply::decode("exit x"), None);
    }
}
