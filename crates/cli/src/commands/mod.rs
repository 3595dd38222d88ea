//! The command tree, one module per noun; `dispatch` opens the engine and routes each
//! command to its noun.

mod container;
mod image;
mod system;
mod volume;

pub use container::{ContainerCmd, PsArgs};
pub use image::{HistoryArgs, ImageCmd, ImagesArgs};
pub use system::SystemCmd;
pub use volume::VolumeCmd;

use std::io::{self, Write};
use std::path::PathBuf;

use berth_engine::images::Removed;
use berth_engine::logs::LogFilter;
use berth_engine::Engine;
use berth_image::config::RunConfig;
use clap::{Args, Subcommand};

use crate::format::{ago, human_binary, human_size, table, Format};
use crate::output::{confirm, each, json, print_inspect, short_id};
use crate::run::{self, CreateFlags, ExecFlags};
use crate::{open_engine, Cli, CliResult, Failure};

#[derive(Subcommand)]
pub enum Command {
    /// Create and run a new container from an image
    #[command(disable_help_flag = true)]
    Run {
        /// Run container in background and print container ID
        #[arg(short = 'd', long)]
        detach: bool,
        #[command(flatten)]
        flags: CreateFlags,
    },
    /// Create a new container
    #[command(disable_help_flag = true)]
    Create {
        #[command(flatten)]
        flags: CreateFlags,
    },
    /// Start one or more stopped containers
    Start {
        /// Attach STDOUT/STDERR and forward signals
        #[arg(short = 'a', long)]
        attach: bool,
        /// Attach container's STDIN
        #[arg(short = 'i', long)]
        interactive: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Stop one or more running containers
    Stop {
        /// Seconds to wait before killing the container
        #[arg(
            short = 't',
            long = "timeout",
            visible_alias = "time",
            allow_hyphen_values = true
        )]
        timeout: Option<i64>,
        /// Signal to send to the container
        #[arg(short = 's', long)]
        signal: Option<String>,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Restart one or more containers
    Restart {
        #[arg(
            short = 't',
            long = "timeout",
            visible_alias = "time",
            allow_hyphen_values = true
        )]
        timeout: Option<i64>,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Kill one or more running containers
    Kill {
        /// Signal to send to the container
        #[arg(short = 's', long, default_value = "KILL")]
        signal: String,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Remove one or more containers
    Rm {
        /// Force the removal of a running container (uses SIGKILL)
        #[arg(short = 'f', long)]
        force: bool,
        /// Remove anonymous volumes associated with the container
        #[arg(short = 'v', long)]
        volumes: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// List containers
    Ps(PsArgs),
    /// Fetch the logs of a container
    Logs {
        #[arg(short = 'f', long)]
        follow: bool,
        /// Number of lines to show from the end of the logs ("all" for all)
        #[arg(short = 'n', long, default_value = "all")]
        tail: String,
        /// Show logs since timestamp (RFC 3339) or relative (e.g. 42m)
        #[arg(long)]
        since: Option<String>,
        /// Show logs before a timestamp or relative time
        #[arg(long)]
        until: Option<String>,
        /// Show timestamps
        #[arg(short = 't', long)]
        timestamps: bool,
        container: String,
    },
    /// Return low-level information on containers or images
    Inspect {
        /// Format output using a Go template
        #[arg(short = 'f', long)]
        format: Option<String>,
        /// Only inspect objects of this type (container, image, volume)
        #[arg(long = "type")]
        kind: Option<String>,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Execute a command in a running container
    Exec(ExecFlags),
    /// Attach local standard input, output, and error streams to a running container
    Attach {
        /// Do not attach STDIN
        #[arg(long = "no-stdin")]
        no_stdin: bool,
        container: String,
    },
    /// Block until one or more containers stop, then print their exit codes
    Wait {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Pause all processes within one or more containers
    Pause {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Unpause all processes within one or more containers
    Unpause {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Display a live stream of container(s) resource usage statistics
    Stats {
        /// Show all containers (default shows just running)
        #[arg(short = 'a', long)]
        all: bool,
        /// Disable streaming stats and only pull the first result
        #[arg(long = "no-stream")]
        no_stream: bool,
        /// Do not truncate output
        #[arg(long = "no-trunc")]
        no_trunc: bool,
        /// Format output using a Go template, table or json
        #[arg(long)]
        format: Option<String>,
        containers: Vec<String>,
    },
    /// Update configuration of one or more containers
    Update {
        /// Memory limit
        #[arg(short = 'm', long)]
        memory: Option<String>,
        /// Swap limit equal to memory plus swap: -1 to enable unlimited swap
        #[arg(long = "memory-swap", allow_hyphen_values = true)]
        memory_swap: Option<String>,
        /// Number of CPUs
        #[arg(long)]
        cpus: Option<String>,
        /// CPU shares (relative weight)
        #[arg(short = 'c', long = "cpu-shares")]
        cpu_shares: Option<u64>,
        /// Tune container pids limit (set -1 for unlimited)
        #[arg(long = "pids-limit", allow_hyphen_values = true)]
        pids_limit: Option<i64>,
        /// Restart policy to apply when a container exits
        #[arg(long)]
        restart: Option<String>,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Get real time events from berth (from every process that uses this root)
    Events {
        /// Show all events created since timestamp (RFC 3339, Unix time, or a duration like 10m)
        #[arg(long)]
        since: Option<String>,
        /// Stream events until this timestamp
        #[arg(long)]
        until: Option<String>,
        /// Filter output based on conditions provided (type=, event=, container=, image=, label=, volume=)
        #[arg(short = 'f', long = "filter")]
        filter: Vec<String>,
        /// Format output using a Go template
        #[arg(long)]
        format: Option<String>,
    },
    /// Rename a container
    Rename { container: String, new_name: String },
    /// Display the running processes of a container
    Top {
        container: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// List port mappings or a specific mapping for the container
    Port {
        container: String,
        port: Option<String>,
    },
    /// List images
    Images(ImagesArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import {
        /// Apply Dockerfile instruction to the created image
        #[arg(short = 'c', long = "change")]
        change: Vec<String>,
        /// Set commit message for imported image
        #[arg(short = 'm', long)]
        message: Option<String>,
        /// File path or - for stdin
        file: String,
        reference: Option<String>,
    },
    /// Download an image from a registry
    Pull {
        /// Set platform if server is multi-platform capable (os/arch[/variant])
        #[arg(long)]
        platform: Option<String>,
        /// Suppress verbose output
        #[arg(short = 'q', long)]
        quiet: bool,
        /// Download all tagged images in the repository
        #[arg(short = 'a', long)]
        all_tags: bool,
        name: String,
    },
    /// Upload an image to a registry
    Push {
        /// Suppress verbose output
        #[arg(short = 'q', long)]
        quiet: bool,
        /// Recompress the layers first: gzip or zstd (default: as stored)
        #[arg(long)]
        compression: Option<String>,
        /// Push all tags of the repository
        #[arg(short = 'a', long)]
        all_tags: bool,
        name: String,
    },
    /// Log in to a registry
    Login {
        #[arg(short = 'u', long)]
        username: Option<String>,
        #[arg(short = 'p', long)]
        password: Option<String>,
        /// Take the password from stdin
        #[arg(long)]
        password_stdin: bool,
        server: Option<String>,
    },
    /// Log out from a registry
    Logout { server: Option<String> },
    /// Search a registry for images
    Search {
        /// Max number of search results
        #[arg(long, default_value_t = 25)]
        limit: usize,
        /// Don't truncate output
        #[arg(long)]
        no_trunc: bool,
        /// Pretty-print search using a Go template
        #[arg(long)]
        format: Option<String>,
        term: String,
    },
    /// Load an image from a tar archive or STDIN
    Load {
        /// Read from tar archive file, instead of STDIN
        #[arg(short = 'i', long)]
        input: Option<PathBuf>,
        /// Suppress the load output
        #[arg(short = 'q', long)]
        quiet: bool,
    },
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save {
        /// Write to a file, instead of STDOUT
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag { source: String, target: String },
    /// Remove one or more images
    Rmi {
        #[arg(short = 'f', long)]
        force: bool,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Show the history of an image
    History(HistoryArgs),
    /// Manage images
    #[command(subcommand)]
    Image(ImageCmd),
    /// Manage containers
    #[command(subcommand)]
    Container(ContainerCmd),
    /// Manage volumes
    #[command(subcommand)]
    Volume(VolumeCmd),
    /// Manage berth
    #[command(subcommand)]
    System(SystemCmd),
    /// Display system-wide information
    Info {
        #[arg(short = 'f', long)]
        format: Option<String>,
    },
    /// Show the berth version information
    Version {
        #[arg(short = 'f', long)]
        format: Option<String>,
    },
    /// Inspect changes to files or directories on a container's filesystem
    Diff { container: String },
    /// Run berth's registry server (see `berth registry serve --help`)
    Registry {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Serve the Kubernetes Container Runtime Interface (CRI v1) for kubelet and crictl
    Cri(crate::service::CriArgs),
    /// Serve the Docker Engine API, so the docker CLI, SDKs and compose drive berth
    Serve {
        /// Where to listen: unix:///PATH or tcp://ADDR:PORT (repeatable)
        #[arg(
            short = 'H',
            long = "host",
            default_value = "unix:///run/berth/berth.sock"
        )]
        hosts: Vec<String>,
        /// Use TLS on tcp:// hosts
        #[arg(long)]
        tls: bool,
        /// Use TLS and accept only clients with a certificate signed by --tlscacert
        #[arg(long)]
        tlsverify: bool,
        /// CA certificate that signs client certificates (with --tlsverify)
        #[arg(long)]
        tlscacert: Option<std::path::PathBuf>,
        /// This server's TLS certificate (PEM)
        #[arg(long)]
        tlscert: Option<std::path::PathBuf>,
        /// This server's TLS key (PEM)
        #[arg(long)]
        tlskey: Option<std::path::PathBuf>,
    },
    /// Build an image from a Dockerfile
    Build(crate::build::BuildArgs),
    /// Manage the build cache
    #[command(subcommand)]
    Builder(crate::build::BuilderCmd),
    /// Manage networks
    #[command(subcommand)]
    Network(crate::network::NetworkCmd),
    /// Define and run multi-container applications
    Compose(crate::compose::ComposeArgs),
    /// A network's name server (started by berth itself)
    #[command(hide = true)]
    DnsServe {
        #[arg(long)]
        addr: std::net::SocketAddr,
        #[arg(long)]
        records: std::path::PathBuf,
    },
    /// Create a new image from a container's changes
    Commit {
        /// Author
        #[arg(short = 'a', long)]
        author: Option<String>,
        /// Apply Dockerfile instruction to the created image
        #[arg(short = 'c', long = "change")]
        change: Vec<String>,
        /// Commit message
        #[arg(short = 'm', long)]
        message: Option<String>,
        /// Pause container during commit
        #[arg(short = 'p', long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
        pause: bool,
        container: String,
        reference: Option<String>,
    },
    /// Export a container's filesystem as a tar archive
    Export {
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
        container: String,
    },
    /// Copy files/folders between a container and the local filesystem
    Cp {
        /// Archive mode (copy all uid/gid information)
        #[arg(short = 'a', long)]
        archive: bool,
        /// Always follow symbol link in SRC_PATH
        #[arg(short = 'L', long = "follow-link")]
        follow_link: bool,
        source: String,
        dest: String,
    },
}

fn parse_filters(f: &[String]) -> CliResult<Vec<(String, String)>> {
    f.iter()
        .map(|s| {
            s.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| {
                    Failure::new(
                        1,
                        format!("bad format of filter (expected name=value): {s}"),
                    )
                })
        })
        .collect()
}

/// Parses `--since`/`--until`: RFC 3339, a Unix timestamp, or a duration like `10m`.
pub fn parse_time(s: &str) -> CliResult<String> {
    Ok(berth_engine::prune::parse_time(s)?)
}

/// `--filter` values of a prune, `until` durations made absolute.
fn prune_filter(
    values: &[String],
    allow_until: bool,
) -> CliResult<berth_engine::prune::PruneFilter> {
    let mut pairs = parse_filters(values)?;
    for (k, v) in pairs.iter_mut() {
        if k == "until" {
            *v = parse_time(v)?;
        }
    }
    Ok(berth_engine::prune::PruneFilter::parse(
        &pairs,
        allow_until,
    )?)
}

/// Runs a parsed command line; `warmer` is one `main` started for a `run` it saw coming.
pub fn dispatch(cli: &Cli, warmer: Option<berth_engine::sys::AttachWarmer>) -> CliResult<u8> {
    // The registry has its own storage: berth's root is not opened for it.
    if let Command::Registry { args } = &cli.cmd {
        return system::registry(args);
    }
    // The API service opens the engine per request.
    if let Command::Serve { .. } = &cli.cmd {
        return system::serve(cli);
    }
    if let Command::Cri(args) = &cli.cmd {
        return system::cri(cli, args);
    }
    // Compose opens the engine when a command needs it.
    if let Command::Compose(args) = &cli.cmd {
        return crate::compose::compose(cli, args);
    }
    // A container start's first cgroup write waits for an RCU grace period: start paying
    // it now if main has not (see AttachWarmer). And a monitor for it starts now too,
    // beside the create (see berth_engine::spare).
    let (warmer, spare) = match &cli.cmd {
        Command::Run { .. } => (
            warmer.or_else(berth_engine::sys::AttachWarmer::start),
            berth_engine::spare::Spare::spawn(
                &berth_engine::EngineOptions::new(&cli.root, &cli.run_root).monitor_path(),
                &cli.root,
                &cli.run_root,
            ),
        ),
        _ => (None, None),
    };
    let engine = open_engine(&cli.root, &cli.run_root).map_err(|mut f| {
        f.code = 125;
        f
    })?;
    if let Some(w) = warmer {
        engine.adopt_warmer(w);
    }
    if let Some(s) = spare {
        engine.adopt_spare(s);
    }
    let e = &engine;
    match &cli.cmd {
        c @ (Command::Attach { .. }
        | Command::Commit { .. }
        | Command::Container { .. }
        | Command::Cp { .. }
        | Command::Create { .. }
        | Command::Diff { .. }
        | Command::Exec { .. }
        | Command::Export { .. }
        | Command::Kill { .. }
        | Command::Logs { .. }
        | Command::Pause { .. }
        | Command::Port { .. }
        | Command::Ps { .. }
        | Command::Rename { .. }
        | Command::Restart { .. }
        | Command::Rm { .. }
        | Command::Run { .. }
        | Command::Start { .. }
        | Command::Stats { .. }
        | Command::Stop { .. }
        | Command::Top { .. }
        | Command::Unpause { .. }
        | Command::Update { .. }
        | Command::Wait { .. }) => container::run(e, c),
        c @ (Command::History { .. }
        | Command::Image { .. }
        | Command::Images { .. }
        | Command::Import { .. }
        | Command::Load { .. }
        | Command::Login { .. }
        | Command::Logout { .. }
        | Command::Pull { .. }
        | Command::Push { .. }
        | Command::Rmi { .. }
        | Command::Save { .. }
        | Command::Search { .. }
        | Command::Tag { .. }) => image::run(e, c),
        Command::Volume(v) => volume::volume(e, v),
        c @ (Command::Build { .. }
        | Command::Builder { .. }
        | Command::Compose { .. }
        | Command::DnsServe { .. }
        | Command::Events { .. }
        | Command::Info { .. }
        | Command::Inspect { .. }
        | Command::Network { .. }
        | Command::Registry { .. }
        | Command::Serve { .. }
        | Command::Cri { .. }
        | Command::System { .. }
        | Command::Version { .. }) => system::run(e, c),
    }
}
