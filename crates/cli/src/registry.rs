//! `berth registry …`: berth's own registry server. Parsed on its own (before the main
//! command line) because `serve --root` names the registry's storage, not berth's root.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::{CliResult, Failure};

#[derive(Parser)]
#[command(
    name = "berth registry",
    bin_name = "berth registry",
    about = "Run berth's registry server"
)]
pub struct RegistryCli {
    #[command(subcommand)]
    cmd: RegistryCmd,
}

#[derive(Subcommand)]
enum RegistryCmd {
    /// Remove blobs no manifest references (safe while the registry serves)
    Gc {
        /// Directory holding the registry's content
        #[arg(long)]
        root: PathBuf,
        /// Keep unreferenced blobs used more recently than this (a push in progress)
        #[arg(long, default_value = "1h")]
        grace: String,
        /// Only report what would be removed
        #[arg(long)]
        dry_run: bool,
    },
    /// Serve the OCI distribution API from a directory
    Serve {
        /// Address to listen on
        #[arg(long, default_value = "127.0.0.1:5000")]
        addr: SocketAddr,
        /// Directory holding the registry's content
        #[arg(long)]
        root: PathBuf,
        /// htpasswd file (bcrypt) for basic and token auth
        #[arg(long)]
        htpasswd: Option<PathBuf>,
        /// TLS certificate (PEM)
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// TLS private key (PEM)
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Registry configuration file (permissions)
        #[arg(long)]
        config: Option<PathBuf>,
        /// Do not log each request to stderr
        #[arg(long)]
        quiet: bool,
    },
}

pub fn main(args: Vec<String>) -> CliResult<u8> {
    let cli = RegistryCli::parse_from(args);
    // A server outlives its terminal: a closed stdout or stderr must not end it (the CLI
    // restores SIGPIPE's default for `berth images | head`).
    // SAFETY: setting a signal disposition touches no memory of ours.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    match cli.cmd {
        RegistryCmd::Gc {
            root,
            grace,
            dry_run,
        } => {
            let grace = parse_duration(&grace).ok_or_else(|| {
                Failure::new(
                    1,
                    format!("invalid --grace {grace:?}: use e.g. 30m, 1h, 0s"),
                )
            })?;
            if !root.join("blobs").is_dir() {
                return Err(Failure::new(
                    1,
                    format!("{}: not a registry root", root.display()),
                ));
            }
            let storage = berth_registry::storage::Storage::open(&root)
                .map_err(|e| Failure::new(1, format!("{}: {e}", root.display())))?;
            let r = storage.gc(grace, dry_run)?;
            println!(
                "{} {} blobs ({}), kept {}",
                if dry_run { "would remove" } else { "removed" },
                r.removed,
                crate::format::human_size(r.bytes),
                r.kept
            );
            Ok(0)
        }
        RegistryCmd::Serve {
            addr,
            root,
            htpasswd,
            tls_cert,
            tls_key,
            config,
            quiet,
        } => {
            let config = config
                .map(|p| berth_registry::access::Config::load(&p))
                .transpose()
                .map_err(|e| Failure::new(1, e))?;
            let access = match htpasswd {
                Some(h) => Some(
                    berth_registry::access::Access::new(&h, config)
                        .map_err(|e| Failure::new(1, e))?,
                ),
                None if config.is_some() => {
                    return Err(Failure::new(
                        1,
                        "--config needs --htpasswd (its rules name users)",
                    ))
                }
                None => None,
            };
            let tls = match (&tls_cert, &tls_key) {
                (Some(c), Some(k)) => Some(
                    berth_registry::server::tls_config(c, k, None)
                        .map_err(|e| Failure::new(1, e))?,
                ),
                _ => None,
            };
            let storage = berth_registry::storage::Storage::open(&root)
                .map_err(|e| Failure::new(1, format!("{}: {e}", root.display())))?;
            let state = Arc::new(berth_registry::server::State {
                storage,
                log: !quiet,
                access,
                tls: tls.is_some(),
                metrics: Default::default(),
            });
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| Failure::new(1, format!("listening on {addr}: {e}")))?;
                eprintln!(
                    "berth registry serving {} on {}://{}",
                    root.display(),
                    if tls.is_some() { "https" } else { "http" },
                    listener.local_addr()?
                );
                let shutdown = async {
                    let mut term =
                        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                            .expect("a SIGTERM handler");
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                };
                match tls {
                    Some(t) => {
                        berth_registry::server::serve_tls(listener, state, t, shutdown).await?
                    }
                    None => berth_registry::server::serve(listener, state, shutdown).await?,
                }
                let _ = writeln!(std::io::stderr(), "berth registry stopped");
                Ok::<u8, Failure>(0)
            })
        }
    }
}

/// `90s`, `30m`, `1h`, `0`: a duration in seconds, minutes or hours.
fn parse_duration(s: &str) -> Option<std::time::Duration> {
    let s = s.trim();
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().ok()?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return None,
    };
    Some(std::time::Duration::from_secs(secs))
}
