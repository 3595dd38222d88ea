//! What `berth cri` and the `berth-cri` binary share (this file is part of both): the
//! CRI service's flags, and running it. `berth cri` hands over to `berth-cri` when it is
//! installed beside it: the service then runs from a binary without the CLI's, compose's
//! and the Docker API's code, whose pages it would otherwise keep mapped (see
//! docs/cri.md).

use std::path::{Path, PathBuf};

/// The persistent state's root when neither `--root` nor `BERTH_ROOT` says.
pub const DEFAULT_ROOT: &str = "/var/lib/berth";
/// The runtime state's root when neither `--run-root` nor `BERTH_RUN_ROOT` says.
pub const DEFAULT_RUN_ROOT: &str = "/run/berth";

/// `berth cri`'s own flags.
#[derive(clap::Args, Debug, Clone)]
pub struct CriArgs {
    /// Where to listen: unix:///PATH
    #[arg(long, default_value = "unix:///run/berth/cri.sock")]
    pub listen: String,
    /// Where pod networks are configured (CNI: the first file by name is used)
    #[arg(long, default_value = "/etc/cni/net.d")]
    pub cni_conf_dir: PathBuf,
    /// Where the CNI plugins are (a colon-separated list)
    #[arg(long, default_value = "/usr/lib/cni:/opt/cni/bin")]
    pub cni_bin_dir: String,
    /// The streaming server's address (exec, attach, port-forward); port 0: any free port
    #[arg(long, default_value = "127.0.0.1:0")]
    pub stream_address: std::net::SocketAddr,
}

impl CriArgs {
    /// The same flags on a command line.
    pub fn to_args(&self) -> Vec<String> {
        vec![
            format!("--listen={}", self.listen),
            format!("--cni-conf-dir={}", self.cni_conf_dir.display()),
            format!("--cni-bin-dir={}", self.cni_bin_dir),
            format!("--stream-address={}", self.stream_address),
        ]
    }
}

/// Serves CRI v1 on `args.listen` until SIGINT or SIGTERM.
pub fn serve_cri(root: &Path, run_root: &Path, args: &CriArgs) -> Result<(), String> {
    let path = args.listen.strip_prefix("unix://").ok_or_else(|| {
        format!(
            "invalid --listen {:?}: only unix:///PATH is implemented yet",
            args.listen
        )
    })?;
    let net = berth_engine::pods::PodNetwork {
        conf_dir: args.cni_conf_dir.clone(),
        bin_dirs: std::env::split_paths(&args.cni_bin_dir).collect(),
    };
    let opts = berth_engine::EngineOptions::new(root, run_root);
    service_runtime()?
        .block_on(berth_cri::serve_unix(
            Path::new(path),
            opts,
            net,
            args.stream_address,
        ))
        .map_err(|e| format!("the CRI service on {}: {e}", args.listen))
}

/// The runtime of a long-running service process (`serve`, `cri`), with what such a
/// process sets before its threads start.
pub fn service_runtime() -> Result<tokio::runtime::Runtime, String> {
    // A client that goes away must not end the service (main restores SIGPIPE's
    // default for `berth images | head`): writes to it fail with EPIPE instead.
    // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    // Requests run on many threads; with an allocator arena per thread the service
    // keeps what a burst of clients allocated. Two arenas keep it near its idle size.
    // SAFETY: mallopt only tunes the allocator; called before any thread starts.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
    // Of a large binary a service runs a small, scattered part: map only what it uses,
    // and give back what parsing the command line touched.
    berth_engine::sys::map_code_on_demand();
    berth_engine::sys::release_startup_memory();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))
}
