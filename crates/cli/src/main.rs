//! `berth`: a daemonless container engine with Docker's command line.
//!
//! This binary parses arguments (clap), calls the `berth-engine` library, and prints
//! tables, progress and errors; it holds no engine logic. Exit codes follow Docker's:
//! `run` exits with the container's code, 125 when berth itself failed, 126 when the
//! command cannot be executed, 127 when it is not found; other commands exit 1 on error.

mod build;
mod commands;
mod compose;
mod cp;
mod format;
mod network;
mod output;
mod progress;
mod registry;
mod run;
mod service;
mod terminal;

use std::path::PathBuf;
use std::process::ExitCode;

use berth_engine::{Engine, EngineError, EngineOptions};
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "A daemonless container engine: immutable images, isolated containers",
    disable_help_subcommand = true
)]
pub struct Cli {
    /// Root of persistent state
    #[arg(
        long,
        global = true,
        env = "BERTH_ROOT",
        default_value = service::DEFAULT_ROOT
    )]
    root: PathBuf,
    /// Root of runtime state (sockets, runtime state)
    #[arg(
        long,
        global = true,
        env = "BERTH_RUN_ROOT",
        default_value = service::DEFAULT_RUN_ROOT
    )]
    run_root: PathBuf,
    #[command(subcommand)]
    cmd: commands::Command,
}

/// An error on its way out, with the exit code it maps to.
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

/// The exit code of an engine error: the one place the CLI decides it. As Docker's CLI:
/// `run`, `create` and `start` (`container_verb`) exit 125 when the engine fails, or the
/// start failure's own 126 (cannot execute) or 127 (not found); other commands exit 1.
pub fn exit_code(e: &EngineError, container_verb: bool) -> u8 {
    match e.start_code() {
        Some(code) => code,
        None if container_verb => 125,
        None => 1,
    }
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Failure {
        Failure::new(exit_code(&e, false), berth_engine::monitor::error_chain(&e))
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        Failure::new(1, format!("{e:#}"))
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure::new(1, e.to_string())
    }
}

pub type CliResult<T = ()> = Result<T, Failure>;

pub fn open_engine(cli_root: &std::path::Path, run_root: &std::path::Path) -> CliResult<Engine> {
    Engine::open(EngineOptions::new(cli_root, run_root)).map_err(Failure::from)
}

/// The subcommand's name in a command line, read ahead of the parser: the first word
/// after the global options (`--root DIR`, `--run-root=DIR`, …).
fn subcommand_word(args: &[String]) -> Option<&str> {
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--root" | "--run-root" => {
                it.next();
            }
            s if s.starts_with("--root=") || s.starts_with("--run-root=") => {}
            s if s.starts_with('-') => return None,
            s => return Some(s),
        }
    }
    None
}

fn main() -> ExitCode {
    // Like other Unix tools, end quietly when the reader of our output goes away
    // (`berth images | head`) instead of panicking on EPIPE.
    // SAFETY: setting a signal disposition to SIG_DFL touches no memory of ours.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let args: Vec<String> = std::env::args().collect();
    // A start's first cgroup write waits for an RCU grace period (see AttachWarmer): for
    // `run`, the wait begins before the arguments are even parsed.
    let warmer = match subcommand_word(&args) {
        Some("run") => berth_engine::sys::AttachWarmer::start(),
        _ => None,
    };
    let result = if args.get(1).map(String::as_str) == Some("registry") {
        registry::main(args[1..].to_vec())
    } else {
        commands::dispatch(&Cli::parse(), warmer)
    };
    let code = match result {
        Ok(code) => code,
        Err(f) => {
            if !f.message.is_empty() {
                eprintln!("Error: {}", f.message);
            }
            f.code
        }
    };
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::subcommand_word;

    #[test]
    fn the_subcommand_is_found_after_global_options() {
        let words = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(subcommand_word(&words("berth run x")), Some("run"));
        assert_eq!(subcommand_word(&words("berth --root run ps")), Some("ps"));
        assert_eq!(
            subcommand_word(&words("berth --root=/r --run-root /x run")),
            Some("run")
        );
        assert_eq!(subcommand_word(&words("berth --help")), None);
        assert_eq!(subcommand_word(&words("berth")), None);
    }
}
