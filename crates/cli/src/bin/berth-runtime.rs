//! `berth-runtime`: a runc-compatible command line over berth's built-in runtime
//! (youki's libcontainer), so podman (`--runtime`) and dockerd (`--add-runtime`) can run
//! containers with it.

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use berth_runtime::builtin::Builtin;
use berth_runtime::{OciRuntime, Stdio};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "berth-runtime",
    version,
    about = "runc-compatible OCI runtime built into berth"
)]
struct Cli {
    /// Directory for container state
    #[arg(long, global = true, default_value = "/run/berth-runtime")]
    root: PathBuf,
    /// Log file (accepted for runc compatibility; errors go to stderr and here)
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Log format (text or json)
    #[arg(long, global = true, default_value = "text")]
    log_format: String,
    /// Accepted for runc compatibility: cgroups are always driven through cgroupfs
    #[arg(long, global = true)]
    systemd_cgroup: bool,
    #[arg(long, global = true, hide = true)]
    debug: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a container from a bundle
    Create {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        #[arg(long)]
        pid_file: Option<PathBuf>,
        #[arg(long)]
        console_socket: Option<PathBuf>,
        #[arg(long)]
        no_pivot: bool,
        #[arg(long)]
        no_new_keyring: bool,
        #[arg(long, default_value_t = 0)]
        preserve_fds: i32,
        id: String,
    },
    /// Start a created container
    Start { id: String },
    /// Create and start a container, waiting for it to exit unless detached
    Run {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        #[arg(long)]
        pid_file: Option<PathBuf>,
        #[arg(long)]
        console_socket: Option<PathBuf>,
        #[arg(short, long)]
        detach: bool,
        id: String,
    },
    /// Print a container's state as JSON
    State { id: String },
    /// Send a signal to a container's init (or all its processes)
    Kill {
        #[arg(short, long)]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a container
    Delete {
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// Run a process in a container
    Exec {
        #[arg(short, long)]
        process: Option<PathBuf>,
        #[arg(short, long)]
        detach: bool,
        #[arg(long)]
        pid_file: Option<PathBuf>,
        #[arg(long)]
        console_socket: Option<PathBuf>,
        #[arg(short, long)]
        tty: bool,
        #[arg(long)]
        cwd: Option<String>,
        #[arg(short, long)]
        env: Vec<String>,
        id: String,
        #[arg(trailing_var_arg = true)]
        command: Vec<String>,
    },
    /// Pause a container
    Pause { id: String },
    /// Resume a paused container
    Resume { id: String },
    /// Write a default config.json into the current directory
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
    },
    /// Print runtime features (accepted for compatibility)
    Features,
}

fn signal_number(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return Ok(n);
    }
    let name = s.trim_start_matches("SIG").to_uppercase();
    let sig: nix::sys::signal::Signal = format!("SIG{name}")
        .parse()
        .with_context(|| format!("invalid signal: {s}"))?;
    Ok(sig as i32)
}

fn write_pid(pid_file: &Option<PathBuf>, pid: i32) -> Result<()> {
    if let Some(p) = pid_file {
        let tmp = p.with_extension("tmp");
        fs::write(&tmp, pid.to_string()).with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, p).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli.cmd, &cli.root) {
        let msg = format!("{e:#}");
        if let Some(log) = &cli.log {
            let line = if cli.log_format == "json" {
                serde_json::json!({"level": "error", "msg": msg}).to_string()
            } else {
                format!("level=error msg={msg:?}")
            };
            if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(log) {
                let _ = writeln!(f, "{line}");
            }
        }
        eprintln!("berth-runtime: {msg}");
        std::process::exit(1);
    }
}

fn run(cmd: Cmd, root: &std::path::Path) -> Result<()> {
    let rt = Builtin::new(root.to_path_buf());
    match cmd {
        Cmd::Create {
            bundle,
            pid_file,
            console_socket,
            id,
            ..
        } => {
            let pid = rt.create(&id, &bundle, Stdio::default(), console_socket.as_deref())?;
            write_pid(&pid_file, pid)?;
        }
        Cmd::Start { id } => rt.start(&id)?,
        Cmd::Run {
            bundle,
            pid_file,
            console_socket,
            detach,
            id,
        } => {
            if !detach {
                berth_runtime::become_subreaper()?;
            }
            let pid = rt.create(&id, &bundle, Stdio::default(), console_socket.as_deref())?;
            write_pid(&pid_file, pid)?;
            rt.start(&id)?;
            if !detach {
                let code = berth_runtime::wait_pid(pid);
                let _ = rt.delete(&id, true);
                std::process::exit(code);
            }
        }
        Cmd::State { id } => {
            let st = rt.state(&id)?;
            let state_file = root.join(&id).join("state.json");
            let mut v: serde_json::Value = fs::read(&state_file)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_else(|| serde_json::json!({}));
            v["ociVersion"] = "1.0.2".into();
            v["id"] = id.clone().into();
            v["status"] = st.status.into();
            v["pid"] = st.pid.unwrap_or(0).into();
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Cmd::Kill { all, id, signal } => rt.kill(&id, signal_number(&signal)?, all)?,
        Cmd::Delete { force, id } => rt.delete(&id, force)?,
        Cmd::Exec {
            process,
            detach,
            pid_file,
            console_socket,
            tty,
            cwd,
            env,
            id,
            command,
        } => {
            let tmp;
            let process = match process {
                Some(p) => p,
                None => {
                    if command.is_empty() {
                        bail!("exec needs --process or a command");
                    }
                    let p = serde_json::json!({
                        "terminal": tty,
                        "user": {"uid": 0, "gid": 0},
                        "args": command,
                        "env": if env.is_empty() { vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string()] } else { env },
                        "cwd": cwd.unwrap_or_else(|| "/".into()),
                    });
                    tmp = tempfile_path(root, &id)?;
                    fs::write(&tmp, serde_json::to_vec(&p)?)?;
                    tmp
                }
            };
            if !detach {
                berth_runtime::become_subreaper()?;
            }
            let pid = rt.exec(&id, &process, Stdio::default(), console_socket.as_deref())?;
            write_pid(&pid_file, pid)?;
            if !detach {
                std::process::exit(berth_runtime::wait_pid(pid));
            }
        }
        Cmd::Pause { id } => rt.pause(&id)?,
        Cmd::Resume { id } => rt.resume(&id)?,
        Cmd::Spec { bundle } => {
            let spec = oci_spec::runtime::Spec::default();
            let p = bundle.join("config.json");
            if p.exists() {
                bail!("file {} exists; remove it first", p.display());
            }
            fs::write(&p, serde_json::to_vec_pretty(&spec)?)?;
        }
        Cmd::Features => {
            println!(
                "{}",
                serde_json::json!({"ociVersionMin": "1.0.0", "ociVersionMax": "1.2.0", "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"]})
            );
        }
    }
    Ok(())
}

fn tempfile_path(root: &std::path::Path, id: &str) -> Result<PathBuf> {
    fs::create_dir_all(root)?;
    Ok(root.join(format!(".exec-{id}-{}.json", std::process::id())))
}
