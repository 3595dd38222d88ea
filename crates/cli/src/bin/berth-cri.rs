//! `berth-cri`: the Kubernetes CRI service, `berth cri` without the rest of berth's
//! command line: `berth cri` hands over to it when it is installed beside `berth`. Its
//! flags are `berth cri`'s and the global `--root` and `--run-root`.

// Shared with `berth cri`, which also turns the flags back into a command line.
#[path = "../service.rs"]
#[allow(dead_code)]
mod service;

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

/// Serve the Kubernetes Container Runtime Interface (CRI v1) for kubelet and crictl
#[derive(Parser)]
#[command(name = "berth-cri", version)]
struct Args {
    /// Root of persistent state
    #[arg(long, env = "BERTH_ROOT", default_value = service::DEFAULT_ROOT)]
    root: PathBuf,
    /// Root of runtime state (sockets, runtime state)
    #[arg(long, env = "BERTH_RUN_ROOT", default_value = service::DEFAULT_RUN_ROOT)]
    run_root: PathBuf,
    #[command(flatten)]
    cri: service::CriArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match service::serve_cri(&args.root, &args.run_root, &args.cri) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::from(1)
        }
    }
}
