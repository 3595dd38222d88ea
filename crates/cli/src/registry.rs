//! `berth registry …`: berth's own registry server. Parsed on its own (before the main
//! command line) because `serve --root` names the registry's storage, not berth's root.

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
    match cli.cmd {
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
                (Some(c), Some(k)) => {
                    Some(berth_registry::server::tls_config(c, k).map_err(|e| Failure::new(1, e))?)
                }
                _ => None,
            };
            let storage = berth_registry::storage::Storage::open(&root)
                .map_err(|e| Failure::new(1, format!("{}: {e}", root.display())))?;
            let state = Arc::new(berth_registry::server::State {
                storage,
                log: !quiet,
                access,
                tls: tls.is_some(),
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
                eprintln!("berth registry stopped");
                Ok::<u8, Failure>(0)
            })
        }
    }
}
