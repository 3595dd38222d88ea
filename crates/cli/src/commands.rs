//! The command tree and what each command prints.

use std::io::{self, Write};
use std::path::PathBuf;

use berth_engine::images::Removed;
use berth_engine::logs::LogFilter;
use berth_engine::Engine;
use berth_image::config::RunConfig;
use clap::{Args, Subcommand};

use crate::format::{ago, human_size, pretty_json, table, Format};
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
    History {
        #[arg(long = "no-trunc")]
        no_trunc: bool,
        #[arg(short = 'q', long)]
        quiet: bool,
        #[arg(long)]
        format: Option<String>,
        image: String,
    },
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

#[derive(Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    all: bool,
    /// Only display container IDs
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Show the latest created container
    #[arg(short = 'l', long)]
    latest: bool,
    /// Show n last created containers
    #[arg(short = 'n', long = "last")]
    last: Option<usize>,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Filter output based on conditions provided
    #[arg(short = 'f', long = "filter")]
    filter: Vec<String>,
    /// Format output using a Go template, table or json
    #[arg(long)]
    format: Option<String>,
    /// Display total file sizes
    #[arg(short = 's', long)]
    size: bool,
}

#[derive(Args)]
pub struct ImagesArgs {
    /// Show all images
    #[arg(short = 'a', long)]
    all: bool,
    /// Only show image IDs
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Show digests
    #[arg(long)]
    digests: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Filter output based on conditions provided
    #[arg(short = 'f', long = "filter")]
    filter: Vec<String>,
    #[arg(long)]
    format: Option<String>,
    /// REPOSITORY[:TAG]
    reference: Option<String>,
}

#[derive(Subcommand)]
pub enum ImageCmd {
    /// List images
    #[command(visible_alias = "list")]
    Ls(ImagesArgs),
    /// Display detailed information on one or more images
    Inspect {
        #[arg(short = 'f', long)]
        format: Option<String>,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove one or more images
    #[command(visible_alias = "remove")]
    Rm {
        #[arg(short = 'f', long)]
        force: bool,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove unused images
    Prune {
        /// Remove all unused images, not just dangling ones
        #[arg(short = 'a', long)]
        all: bool,
        /// Do not prompt for confirmation
        /// Provide filter values (until=<timestamp|duration>, label=<key>[=<value>], label!=…)
        #[arg(long = "filter")]
        filter: Vec<String>,
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// Show the history of an image
    History {
        #[arg(long = "no-trunc")]
        no_trunc: bool,
        #[arg(short = 'q', long)]
        quiet: bool,
        #[arg(long)]
        format: Option<String>,
        image: String,
    },
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag { source: String, target: String },
}

#[derive(Subcommand)]
pub enum ContainerCmd {
    /// List containers
    #[command(visible_alias = "list")]
    Ls(PsArgs),
    /// Remove all stopped containers
    Prune {
        /// Provide filter values (until=<timestamp|duration>, label=<key>[=<value>], label!=…)
        #[arg(long = "filter")]
        filter: Vec<String>,
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// Display detailed information on one or more containers
    Inspect {
        #[arg(short = 'f', long)]
        format: Option<String>,
        #[arg(required = true)]
        containers: Vec<String>,
    },
}

#[derive(Subcommand)]
pub enum VolumeCmd {
    /// Create a volume
    Create {
        #[arg(short = 'l', long = "label")]
        labels: Vec<String>,
        /// Volume driver name (only "local")
        #[arg(short = 'd', long, default_value = "local")]
        driver: String,
        name: Option<String>,
    },
    /// List volumes
    #[command(visible_alias = "list")]
    Ls {
        #[arg(short = 'q', long)]
        quiet: bool,
        #[arg(long)]
        format: Option<String>,
    },
    /// Display detailed information on one or more volumes
    Inspect {
        #[arg(short = 'f', long)]
        format: Option<String>,
        #[arg(required = true)]
        volumes: Vec<String>,
    },
    /// Remove one or more volumes
    #[command(visible_alias = "remove")]
    Rm {
        #[arg(short = 'f', long)]
        force: bool,
        #[arg(required = true)]
        volumes: Vec<String>,
    },
    /// Remove unused local volumes
    Prune {
        /// Remove all unused volumes, not just anonymous ones
        #[arg(short = 'a', long)]
        all: bool,
        /// Provide filter values (until=<timestamp|duration>, label=<key>[=<value>], label!=…)
        #[arg(long = "filter")]
        filter: Vec<String>,
        #[arg(short = 'f', long)]
        force: bool,
    },
}

#[derive(Subcommand)]
pub enum SystemCmd {
    /// Show disk usage
    Df {
        #[arg(short = 'v', long)]
        verbose: bool,
        /// Format output using a Go template, table or json
        #[arg(long)]
        format: Option<String>,
    },
    /// Remove unused data
    Prune {
        #[arg(short = 'a', long)]
        all: bool,
        #[arg(long)]
        volumes: bool,
        /// Provide filter values (until=<timestamp|duration>, label=<key>[=<value>], label!=…)
        #[arg(long = "filter")]
        filter: Vec<String>,
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// Display system-wide information
    Info {
        #[arg(short = 'f', long)]
        format: Option<String>,
    },
    /// Start the containers whose restart policy asks for it (run once at host start-up)
    Boot,
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

fn short_id(id: &str, no_trunc: bool) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    if no_trunc {
        id.to_string()
    } else {
        hex[..12.min(hex.len())].to_string()
    }
}

fn ps(engine: &Engine, a: &PsArgs) -> CliResult<u8> {
    let filters = parse_filters(&a.filter)?;
    let mut list = engine.list_containers(a.all || a.latest || a.last.is_some(), &filters)?;
    if a.latest {
        list.truncate(1);
    }
    if let Some(n) = a.last {
        list.truncate(n);
    }
    if a.quiet {
        let mut out = io::stdout().lock();
        for c in &list {
            writeln!(out, "{}", short_id(&c.id, a.no_trunc))?;
        }
        return Ok(0);
    }
    let fmt = Format::parse(a.format.as_deref())?;
    // Docker's SIZE: what the container wrote, and the image under it.
    let size_of = |c: &berth_engine::containers::ContainerSummary| -> String {
        let rw = berth_engine::volumes::dir_size(&engine.container_dir(&c.id).join("upper"));
        let image = engine.find_image(&c.image_id).map(|i| i.size).unwrap_or(0);
        format!("{} (virtual {})", human_size(rw), human_size(rw + image))
    };
    let rows: Vec<serde_json::Value> = list
        .iter()
        .map(|c| {
            let mut cmd = c.command.clone();
            if !a.no_trunc && cmd.chars().count() > 20 {
                cmd = format!("{}…", cmd.chars().take(19).collect::<String>());
            }
            serde_json::json!({
                "ID": short_id(&c.id, a.no_trunc),
                "Image": c.image,
                "Command": format!("\"{cmd}\""),
                "CreatedAt": c.created,
                "RunningFor": ago(&c.created),
                "Ports": c.ports,
                "State": c.state,
                "Status": c.status,
                "Names": c.names,
                "Labels": c.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
                "Size": if a.size { size_of(c) } else { String::new() },
                "Mounts": "",
                "Networks": "",
            })
        })
        .collect();
    match fmt {
        Format::Table => {
            let mut keys = vec![
                "ID",
                "Image",
                "Command",
                "RunningFor",
                "Status",
                "Ports",
                "Names",
            ];
            let mut headers = vec![
                "CONTAINER ID",
                "IMAGE",
                "COMMAND",
                "CREATED",
                "STATUS",
                "PORTS",
                "NAMES",
            ];
            if a.size {
                keys.push("Size");
                headers.push("SIZE");
            }
            let body = crate::format::columns(&rows, &keys);
            print!("{}", table(&headers, &body));
        }
        f => print!(
            "{}",
            f.render_list(
                &rows,
                &[
                    ("ID", "CONTAINER ID"),
                    ("RunningFor", "CREATED"),
                    ("CreatedAt", "CREATED AT")
                ]
            )?
        ),
    }
    Ok(0)
}

fn images(engine: &Engine, a: &ImagesArgs) -> CliResult<u8> {
    let mut filters = parse_filters(&a.filter)?;
    if let Some(r) = &a.reference {
        filters.push(("reference".into(), r.clone()));
    }
    let list = engine.list_images(&filters)?;
    if a.quiet {
        let mut seen = std::collections::HashSet::new();
        for i in &list {
            if seen.insert(i.id.clone()) {
                println!("{}", short_id(&i.id, a.no_trunc));
            }
        }
        return Ok(0);
    }
    let fmt = Format::parse(a.format.as_deref())?;
    let rows: Vec<serde_json::Value> = list
        .iter()
        .map(|i| {
            serde_json::json!({
                "ID": short_id(&i.id, a.no_trunc),
                "Repository": i.repository,
                "Tag": i.tag,
                "Digest": if i.repository == "<none>" { "<none>".to_string() } else { i.digest.clone() },
                "CreatedSince": ago(&i.created),
                "CreatedAt": i.created,
                "Size": human_size(i.size),
                "Containers": "N/A",
                "SharedSize": "N/A",
                "UniqueSize": "N/A",
                "VirtualSize": human_size(i.size),
            })
        })
        .collect();
    match fmt {
        Format::Table => {
            let (headers, keys): (Vec<&str>, Vec<&str>) = if a.digests {
                (
                    vec!["REPOSITORY", "TAG", "DIGEST", "IMAGE ID", "CREATED", "SIZE"],
                    vec!["Repository", "Tag", "Digest", "ID", "CreatedSince", "Size"],
                )
            } else {
                (
                    vec!["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"],
                    vec!["Repository", "Tag", "ID", "CreatedSince", "Size"],
                )
            };
            let body = crate::format::columns(&rows, &keys);
            print!("{}", table(&headers, &body));
        }
        f => print!(
            "{}",
            f.render_list(&rows, &[("ID", "IMAGE ID"), ("CreatedSince", "CREATED")])?
        ),
    }
    Ok(0)
}

pub(crate) fn print_inspect(values: Vec<serde_json::Value>, format: Option<&str>) -> CliResult {
    match format {
        Some(f) if !f.is_empty() && f != "json" => {
            let fmt = Format::parse(Some(f))?;
            for v in &values {
                println!("{}", fmt.render(v)?);
            }
        }
        _ => println!("{}", pretty_json(&serde_json::Value::Array(values))),
    }
    Ok(())
}

fn inspect(
    engine: &Engine,
    names: &[String],
    kind: Option<&str>,
    format: Option<&str>,
) -> CliResult<u8> {
    let mut values = Vec::new();
    let mut missing = Vec::new();
    for n in names {
        let v = match kind {
            Some("container") => engine.inspect_container(n).ok(),
            Some("image") => engine.inspect_image(n).ok(),
            Some("volume") => engine
                .inspect_volume(n)
                .ok()
                .map(|v| serde_json::to_value(v).unwrap_or_default()),
            Some(other) => {
                return Err(Failure::new(
                    1,
                    format!("\"{other}\" is not a valid value for --type"),
                ))
            }
            None => engine
                .inspect_container(n)
                .ok()
                .or_else(|| engine.inspect_image(n).ok())
                .or_else(|| {
                    engine
                        .inspect_volume(n)
                        .ok()
                        .map(|v| serde_json::to_value(v).unwrap_or_default())
                }),
        };
        match v {
            Some(v) => values.push(v),
            None => missing.push(n.clone()),
        }
    }
    print_inspect(values, format)?;
    if missing.is_empty() {
        Ok(0)
    } else {
        for m in &missing {
            eprintln!("Error: no such object: {m}");
        }
        Err(Failure::new(1, ""))
    }
}

/// Parses `--since`/`--until`: RFC 3339, a Unix timestamp, or a duration like `10m`.
pub fn parse_time(s: &str) -> CliResult<String> {
    Ok(berth_engine::prune::parse_time(s)?)
}

fn logs(
    engine: &Engine,
    container: &str,
    follow: bool,
    tail: &str,
    since: Option<&str>,
    until: Option<&str>,
    timestamps: bool,
) -> CliResult<u8> {
    let rec = engine.find_container(container)?;
    if rec.host_config.log_config.kind == "none" {
        return Err(Failure::new(
            1,
            "configured logging driver does not support reading",
        ));
    }
    let path = engine.container_dir(&rec.id).join("log.json");
    let filter = LogFilter {
        since: since.map(parse_time).transpose()?,
        until: until.map(parse_time).transpose()?,
        tail: if tail == "all" || tail == "-1" {
            None
        } else {
            Some(
                tail.parse()
                    .map_err(|_| Failure::new(1, format!("invalid tail value: {tail}")))?,
            )
        },
    };
    let mut out = io::stdout().lock();
    let mut err = io::stderr().lock();
    let mut emit = |l: &berth_engine::logs::LogLine| -> io::Result<()> {
        let w: &mut dyn Write = if l.stream == "stderr" {
            &mut err
        } else {
            &mut out
        };
        if timestamps {
            write!(w, "{} ", l.time)?;
        }
        w.write_all(l.log.as_bytes())?;
        w.flush()
    };
    let (lines, mut follower) = berth_engine::logs::Follower::open(&path)?;
    for l in filter.apply(lines) {
        emit(&l)?;
    }
    if !follow {
        return Ok(0);
    }
    loop {
        let running = engine
            .container_state(&rec.id)
            .map(|s| s.status.is_active())
            .unwrap_or(false);
        let new = follower.read_new()?;
        for l in new.iter().filter(|l| filter.keep(l)) {
            emit(l)?;
        }
        // The state was read before the file: what it wrote before it stopped is out.
        if !running {
            return Ok(0);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn history(
    engine: &Engine,
    image: &str,
    no_trunc: bool,
    quiet: bool,
    format: Option<&str>,
) -> CliResult<u8> {
    let h = engine.history(image)?;
    if quiet {
        for e in &h {
            let id = e["Id"].as_str().unwrap_or_default();
            println!(
                "{}",
                if id == "<missing>" {
                    id.to_string()
                } else {
                    short_id(id, no_trunc)
                }
            );
        }
        return Ok(0);
    }
    let rows: Vec<serde_json::Value> = h
        .iter()
        .map(|e| {
            let id = e["Id"].as_str().unwrap_or_default();
            let mut by = e["CreatedBy"].as_str().unwrap_or_default().to_string();
            if !no_trunc && by.chars().count() > 45 {
                by = format!("{}…", by.chars().take(44).collect::<String>());
            }
            serde_json::json!({
                "ID": if id == "<missing>" { id.to_string() } else { short_id(id, no_trunc) },
                "CreatedSince": ago(e["Created"].as_str().unwrap_or_default()),
                "CreatedAt": e["Created"],
                "CreatedBy": by,
                "Size": human_size(e["Size"].as_u64().unwrap_or(0)),
                "Comment": e["Comment"],
            })
        })
        .collect();
    match Format::parse(format)? {
        Format::Table => {
            let body = crate::format::columns(
                &rows,
                &["ID", "CreatedSince", "CreatedBy", "Size", "Comment"],
            );
            print!(
                "{}",
                table(
                    &["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
                    &body
                )
            );
        }
        f => print!(
            "{}",
            f.render_list(
                &rows,
                &[
                    ("ID", "IMAGE"),
                    ("CreatedSince", "CREATED"),
                    ("CreatedBy", "CREATED BY")
                ]
            )?
        ),
    }
    Ok(0)
}

fn rmi(engine: &Engine, images: &[String], force: bool) -> CliResult<u8> {
    let mut failed = false;
    for i in images {
        match engine.remove_image(i, force) {
            Ok(list) => {
                for r in list {
                    match r {
                        Removed::Untagged(t) => println!("Untagged: {t}"),
                        Removed::Deleted(d) => println!("Deleted: {d}"),
                    }
                }
            }
            Err(e) => {
                eprintln!("Error: {}", berth_engine::monitor::error_chain(&e));
                failed = true;
            }
        }
    }
    if failed {
        Err(Failure::new(1, ""))
    } else {
        Ok(0)
    }
}

/// Runs `f` for each name, printing the name on success (Docker's multi-target commands).
pub(crate) fn each(
    names: &[String],
    mut f: impl FnMut(&str) -> berth_engine::Result<()>,
) -> CliResult<u8> {
    let mut failed = false;
    for n in names {
        match f(n) {
            Ok(()) => println!("{n}"),
            Err(e) => {
                eprintln!("Error: {}", berth_engine::monitor::error_chain(&e));
                failed = true;
            }
        }
    }
    if failed {
        Err(Failure::new(1, ""))
    } else {
        Ok(0)
    }
}

fn save(engine: &Engine, images: &[String], output: Option<&PathBuf>) -> CliResult<u8> {
    match output {
        Some(p) => {
            let dir = p
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            let (mut f, tmp) = berth_image::fsutil::create_temp(dir, "save")
                .map_err(|e| Failure::new(1, format!("{}: {e}", dir.display())))?;
            let res = engine
                .save(images, io::BufWriter::new(&mut f))
                .map_err(Failure::from)
                .and_then(|_| f.sync_all().map_err(Failure::from));
            match res {
                Ok(()) => std::fs::rename(&tmp, p)
                    .map_err(|e| Failure::new(1, format!("{}: {e}", p.display())))?,
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e);
                }
            }
        }
        None => {
            if crate::terminal::is_tty(std::os::fd::AsFd::as_fd(&io::stdout())) {
                return Err(Failure::new(
                    1,
                    "cowardly refusing to save to a terminal. Use the -o flag or redirect",
                ));
            }
            let out = io::stdout().lock();
            engine.save(images, io::BufWriter::new(out))?;
        }
    }
    Ok(0)
}

fn volume(engine: &Engine, cmd: &VolumeCmd) -> CliResult<u8> {
    match cmd {
        VolumeCmd::Create {
            labels,
            driver,
            name,
        } => {
            if driver != "local" {
                return Err(Failure::new(
                    1,
                    format!("volume driver {driver:?} is not available: only \"local\""),
                ));
            }
            let labels = crate::network::key_values(labels);
            let (n, anon) = match name {
                Some(n) => (n.clone(), false),
                None => (berth_engine::names::new_id(), true),
            };
            let v = engine.create_volume(&n, &labels, anon)?;
            println!("{}", v.name);
        }
        VolumeCmd::Ls { quiet, format } => {
            let vols = engine.list_volumes()?;
            if *quiet {
                for v in vols {
                    println!("{}", v.name);
                }
                return Ok(0);
            }
            let rows: Vec<serde_json::Value> = vols.iter().map(|v| serde_json::json!({"Driver": v.driver, "Name": v.name, "Mountpoint": v.mountpoint, "Labels": v.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","), "Scope": v.scope, "CreatedAt": v.created_at})).collect();
            match Format::parse(format.as_deref())? {
                Format::Table => {
                    let body: Vec<Vec<String>> = vols
                        .iter()
                        .map(|v| vec![v.driver.clone(), v.name.clone()])
                        .collect();
                    print!("{}", table(&["DRIVER", "VOLUME NAME"], &body));
                }
                f => print!("{}", f.render_list(&rows, &[("Name", "VOLUME NAME")])?),
            }
        }
        VolumeCmd::Inspect { format, volumes } => {
            let mut vals = Vec::new();
            for v in volumes {
                vals.push(serde_json::to_value(engine.inspect_volume(v)?).unwrap_or_default());
            }
            print_inspect(vals, format.as_deref())?;
        }
        VolumeCmd::Rm { force, volumes } => {
            return each(volumes, |v| engine.remove_volume(v, *force))
        }
        VolumeCmd::Prune { all, force, filter } => {
            if !confirm(*force, "WARNING! This will remove anonymous local volumes not used by at least one container.")? {
                return Ok(0);
            }
            let (removed, bytes) = engine.prune_volumes(*all, &prune_filter(filter, false)?)?;
            if !removed.is_empty() {
                println!("Deleted Volumes:");
                for r in removed {
                    println!("{r}");
                }
                println!();
            }
            println!("Total reclaimed space: {}", human_size(bytes));
        }
    }
    Ok(0)
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

fn print_pruned_images(removed: &[Removed]) {
    if removed.is_empty() {
        return;
    }
    println!("Deleted Images:");
    for r in removed {
        match r {
            Removed::Untagged(t) => println!("untagged: {t}"),
            Removed::Deleted(d) => println!("deleted: {d}"),
        }
    }
    println!();
}

fn info(engine: &Engine, format: Option<&str>) -> CliResult<u8> {
    let v = engine.info()?;
    if let Some(f) = format {
        println!("{}", Format::parse(Some(f))?.render(&v)?);
        return Ok(0);
    }
    println!("Server:");
    for (k, label) in [
        ("Containers", "Containers"),
        ("ContainersRunning", " Running"),
        ("ContainersPaused", " Paused"),
        ("ContainersStopped", " Stopped"),
        ("Images", "Images"),
        ("ServerVersion", "Server Version"),
        ("Driver", "Storage Driver"),
        ("LoggingDriver", "Logging Driver"),
        ("CgroupDriver", "Cgroup Driver"),
        ("CgroupVersion", "Cgroup Version"),
        ("DefaultRuntime", "Default Runtime"),
        ("KernelVersion", "Kernel Version"),
        ("OperatingSystem", "Operating System"),
        ("OSType", "OSType"),
        ("Architecture", "Architecture"),
        ("NCPU", "CPUs"),
        ("DockerRootDir", "Berth Root Dir"),
        ("RunRoot", "Berth Run Root"),
    ] {
        let val = match &v[k] {
            serde_json::Value::String(s) => s.clone(),
            o => o.to_string(),
        };
        println!(" {label}: {val}");
    }
    println!(" Security Options:\n  seccomp\n   Profile: builtin");
    Ok(0)
}

fn df(engine: &Engine, verbose: bool, format: Option<&str>) -> CliResult<u8> {
    let images = engine.list_image_rows()?;
    let containers = engine.list_containers(true, &[])?;
    let used_images: std::collections::HashSet<String> =
        containers.iter().map(|c| c.image_id.clone()).collect();
    let img_size: u64 = images.iter().map(|i| i.size).sum();
    let img_reclaim: u64 = images
        .iter()
        .filter(|i| !used_images.contains(&i.id.to_string()))
        .map(|i| i.size)
        .sum();
    let ctr_sizes: Vec<(String, u64)> = containers
        .iter()
        .map(|c| {
            (
                c.id.clone(),
                berth_engine::volumes::dir_size(&engine.container_dir(&c.id).join("upper")),
            )
        })
        .collect();
    let ctr_size: u64 = ctr_sizes.iter().map(|(_, s)| s).sum();
    let active_ctr = containers
        .iter()
        .filter(|c| c.state == "running" || c.state == "paused")
        .count();
    let ctr_reclaim: u64 = containers
        .iter()
        .zip(&ctr_sizes)
        .filter(|(c, _)| c.state != "running" && c.state != "paused")
        .map(|(_, (_, s))| s)
        .sum();
    let vols = engine.list_volumes()?;
    let mut vol_size = 0;
    let mut vol_reclaim = 0;
    let mut active_vols = 0;
    for v in &vols {
        let s = berth_engine::volumes::dir_size(std::path::Path::new(&v.mountpoint));
        vol_size += s;
        if engine.volume_users(&v.name)?.is_empty() {
            vol_reclaim += s;
        } else {
            active_vols += 1;
        }
    }
    let pct = |r: u64, t: u64| {
        r.saturating_mul(100)
            .checked_div(t)
            .map(|p| format!("{p}%"))
            .unwrap_or_else(|| "0%".to_string())
    };
    let body = vec![
        vec![
            "Images".into(),
            images.len().to_string(),
            used_images.len().to_string(),
            human_size(img_size),
            format!(
                "{} ({})",
                human_size(img_reclaim),
                pct(img_reclaim, img_size)
            ),
        ],
        vec![
            "Containers".into(),
            containers.len().to_string(),
            active_ctr.to_string(),
            human_size(ctr_size),
            format!(
                "{} ({})",
                human_size(ctr_reclaim),
                pct(ctr_reclaim, ctr_size)
            ),
        ],
        vec![
            "Local Volumes".into(),
            vols.len().to_string(),
            active_vols.to_string(),
            human_size(vol_size),
            format!(
                "{} ({})",
                human_size(vol_reclaim),
                pct(vol_reclaim, vol_size)
            ),
        ],
        vec![
            "Build Cache".into(),
            "0".into(),
            "0".into(),
            "0B".into(),
            "0B".into(),
        ],
    ];
    let fmt = Format::parse(format)?;
    if !matches!(fmt, Format::Table) {
        let rows: Vec<serde_json::Value> = body
            .iter()
            .map(|r| serde_json::json!({"Type": r[0], "TotalCount": r[1], "Active": r[2], "Size": r[3], "Reclaimable": r[4]}))
            .collect();
        print!(
            "{}",
            fmt.render_list(
                &rows,
                &[("TotalCount", "TOTAL"), ("Reclaimable", "RECLAIMABLE")]
            )?
        );
        return Ok(0);
    }
    print!(
        "{}",
        table(&["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], &body)
    );
    if verbose {
        println!("\nImages space usage:\n");
        let rows: Vec<Vec<String>> = engine
            .list_images(&[])?
            .iter()
            .map(|i| {
                vec![
                    i.repository.clone(),
                    i.tag.clone(),
                    short_id(&i.id, false),
                    ago(&i.created),
                    human_size(i.size),
                    containers
                        .iter()
                        .filter(|c| c.image_id == i.id)
                        .count()
                        .to_string(),
                ]
            })
            .collect();
        print!(
            "{}",
            table(
                &[
                    "REPOSITORY",
                    "TAG",
                    "IMAGE ID",
                    "CREATED",
                    "SIZE",
                    "CONTAINERS"
                ],
                &rows
            )
        );
        println!("\nContainers space usage:\n");
        let rows: Vec<Vec<String>> = containers
            .iter()
            .zip(&ctr_sizes)
            .map(|(c, (_, s))| {
                vec![
                    short_id(&c.id, false),
                    c.image.clone(),
                    format!("\"{}\"", c.command),
                    human_size(*s),
                    ago(&c.created),
                    c.status.clone(),
                    c.names.clone(),
                ]
            })
            .collect();
        print!(
            "{}",
            table(
                &[
                    "CONTAINER ID",
                    "IMAGE",
                    "COMMAND",
                    "SIZE",
                    "CREATED",
                    "STATUS",
                    "NAMES"
                ],
                &rows
            )
        );
        println!("\nLocal Volumes space usage:\n");
        let rows: Vec<Vec<String>> = vols
            .iter()
            .map(|v| {
                vec![
                    v.name.clone(),
                    engine
                        .volume_users(&v.name)
                        .map(|u| u.len())
                        .unwrap_or(0)
                        .to_string(),
                    human_size(berth_engine::volumes::dir_size(std::path::Path::new(
                        &v.mountpoint,
                    ))),
                ]
            })
            .collect();
        print!("{}", table(&["VOLUME NAME", "LINKS", "SIZE"], &rows));
    }
    Ok(0)
}

/// Docker's binary sizes for memory: 4 significant digits (`1.012MiB`, `23.47GiB`).
fn human_binary(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i < units.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    let decimals = if v >= 1000.0 {
        0
    } else if v >= 100.0 {
        1
    } else if v >= 10.0 {
        2
    } else {
        3
    };
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{}", units[i])
}

/// `stats`: CPU (over the sampling interval), memory, block I/O and pids per container.
fn stats(
    engine: &Engine,
    all: bool,
    no_stream: bool,
    no_trunc: bool,
    format: Option<&str>,
    names: &[String],
) -> CliResult<u8> {
    let fmt = Format::parse(format)?;
    let host_mem = berth_engine::stats::host_memory();
    let pick = || -> CliResult<Vec<(String, String)>> {
        if names.is_empty() {
            Ok(engine
                .list_containers(all, &[])?
                .into_iter()
                .map(|c| (c.id, c.names))
                .collect())
        } else {
            names
                .iter()
                .map(|n| {
                    engine
                        .find_container(n)
                        .map(|r| (r.id, r.name))
                        .map_err(Failure::from)
                })
                .collect()
        }
    };
    let sample = |targets: &[(String, String)]| -> Vec<Option<berth_engine::stats::Usage>> {
        targets
            .iter()
            .map(|(id, _)| engine.container_usage(id).ok())
            .collect()
    };
    let mut targets = pick()?;
    let mut before = sample(&targets);
    let mut t0 = std::time::Instant::now();
    loop {
        // One sample interval: short for a one-shot answer, a second when streaming.
        std::thread::sleep(std::time::Duration::from_millis(if no_stream {
            100
        } else {
            1000
        }));
        let after = sample(&targets);
        let wall = t0.elapsed().as_nanos() as u64;
        let mut rows = Vec::new();
        for (i, (id, name)) in targets.iter().enumerate() {
            let (cpu, mem, limit, pids, blk) = match (&before[i], &after[i]) {
                (Some(b), Some(a)) => {
                    let limit = a.mem_limit.unwrap_or(host_mem).min(if host_mem > 0 {
                        host_mem
                    } else {
                        u64::MAX
                    });
                    (
                        berth_engine::stats::cpu_percent(b, a, wall),
                        a.mem_bytes,
                        limit,
                        a.pids,
                        (a.blk_read, a.blk_write),
                    )
                }
                _ => (0.0, 0, 0, 0, (0, 0)),
            };
            let mem_pct = if limit > 0 {
                mem as f64 / limit as f64 * 100.0
            } else {
                0.0
            };
            rows.push(serde_json::json!({
                "ID": short_id(id, no_trunc),
                "Container": short_id(id, no_trunc),
                "Name": name,
                "CPUPerc": format!("{cpu:.2}%"),
                "MemUsage": format!("{} / {}", human_binary(mem), human_binary(limit)),
                "MemPerc": format!("{mem_pct:.2}%"),
                "NetIO": "0B / 0B",
                "BlockIO": format!("{} / {}", human_size(blk.0), human_size(blk.1)),
                "PIDs": pids.to_string(),
            }));
        }
        let out = match &fmt {
            Format::Table => {
                let keys = [
                    "ID", "Name", "CPUPerc", "MemUsage", "MemPerc", "NetIO", "BlockIO", "PIDs",
                ];
                let body = crate::format::columns(&rows, &keys);
                table(
                    &[
                        "CONTAINER ID",
                        "NAME",
                        "CPU %",
                        "MEM USAGE / LIMIT",
                        "MEM %",
                        "NET I/O",
                        "BLOCK I/O",
                        "PIDS",
                    ],
                    &body,
                )
            }
            f => f.render_list(
                &rows,
                &[
                    ("ID", "CONTAINER ID"),
                    ("CPUPerc", "CPU %"),
                    ("MemUsage", "MEM USAGE / LIMIT"),
                    ("MemPerc", "MEM %"),
                    ("NetIO", "NET I/O"),
                    ("BlockIO", "BLOCK I/O"),
                ],
            )?,
        };
        if no_stream {
            print!("{out}");
            return Ok(0);
        }
        // Redrawn in place, like Docker's.
        print!("\x1b[2J\x1b[H{out}");
        io::stdout().flush()?;
        if names.is_empty() {
            targets = pick()?;
            before = sample(&targets);
        } else {
            before = after;
        }
        t0 = std::time::Instant::now();
    }
}

/// `events`: past events (with --since), then new ones as they happen, until --until.
fn events(
    engine: &Engine,
    since: Option<&str>,
    until: Option<&str>,
    filter: &[String],
    format: Option<&str>,
) -> CliResult<u8> {
    let filters = parse_filters(filter)?;
    for (k, _) in &filters {
        if !matches!(
            k.as_str(),
            "type" | "event" | "status" | "container" | "image" | "label" | "volume"
        ) {
            return Err(Failure::new(1, format!("invalid filter '{k}'")));
        }
    }
    let to_ns = |s: &str| -> CliResult<i64> {
        let t = parse_time(s)?;
        chrono::DateTime::parse_from_rfc3339(&t)
            .ok()
            .and_then(|d| d.timestamp_nanos_opt())
            .ok_or_else(|| Failure::new(1, format!("invalid time {s}")))
    };
    let since_ns = since.map(to_ns).transpose()?;
    let until_ns = until.map(to_ns).transpose()?;
    let fmt = match format {
        Some(f) => Some(Format::parse(Some(f))?),
        None => None,
    };
    let mut last = if since_ns.is_some() {
        0
    } else {
        engine.last_event_seq()?
    };
    let mut out = io::stdout().lock();
    loop {
        for ev in engine.events_after(last, since_ns, until_ns)? {
            last = ev.seq;
            if !berth_engine::events::matches(&ev, &filters) {
                continue;
            }
            let line = match &fmt {
                Some(Format::Json) | Some(Format::Table) => {
                    serde_json::to_string(&ev).unwrap_or_default()
                }
                Some(f) => f.render(&serde_json::to_value(&ev).unwrap_or_default())?,
                None => {
                    let t = chrono::DateTime::from_timestamp(
                        ev.time_nano / 1_000_000_000,
                        (ev.time_nano % 1_000_000_000) as u32,
                    )
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
                    .unwrap_or_default();
                    let attrs: Vec<String> = ev
                        .actor
                        .attributes
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    format!(
                        "{t} {} {} {} ({})",
                        ev.kind,
                        ev.action,
                        ev.actor.id,
                        attrs.join(", ")
                    )
                }
            };
            writeln!(out, "{line}")?;
        }
        out.flush()?;
        if let Some(u) = until_ns {
            if chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX) > u {
                return Ok(0);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Docker's prune prompt: without `-f`, ask on the terminal; anything but y/yes (or no
/// terminal to ask on) leaves everything as it is.
pub(crate) fn confirm(force: bool, warning: &str) -> CliResult<bool> {
    if force {
        return Ok(true);
    }
    if !crate::terminal::is_tty(std::os::fd::AsFd::as_fd(&io::stdin())) {
        return Err(Failure::new(
            1,
            "refusing to prune without confirmation: stdin is not a terminal (use -f)",
        ));
    }
    eprint!("{warning}\nAre you sure you want to continue? [y/N] ");
    let mut answer = String::new();
    io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim().to_lowercase().as_str(), "y" | "yes"))
}

fn registry(args: &[String]) -> CliResult<u8> {
    let mut argv = vec!["registry".to_string()];
    argv.extend(args.iter().cloned());
    crate::registry::main(argv)
}

/// The unix sockets systemd passed in (socket activation: `LISTEN_PID` is us,
/// `LISTEN_FDS` of them from fd 3).
fn systemd_sockets() -> CliResult<Vec<std::os::unix::net::UnixListener>> {
    use std::os::fd::FromRawFd;
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    let n: i32 = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if !ours || n < 1 {
        return Err(Failure::new(
            1,
            "-H fd://: no sockets were passed in (run it from a systemd socket unit)",
        ));
    }
    let mut out = Vec::new();
    for fd in 3..3 + n {
        let is_unix = nix::sys::socket::getsockname::<nix::sys::socket::UnixAddr>(fd).is_ok();
        if !is_unix {
            return Err(Failure::new(
                1,
                format!("-H fd://: fd {fd} is not a unix socket (only unix sockets are supported)"),
            ));
        }
        let _ = nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        );
        // SAFETY: systemd handed us fds 3..3+LISTEN_FDS, open listening sockets we now own.
        out.push(unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) });
    }
    Ok(out)
}

/// `serve`: the Docker Engine API on each `-H` socket or TCP address, until killed.
fn serve(cli: &Cli) -> CliResult<u8> {
    let Command::Serve {
        hosts,
        tls,
        tlsverify,
        tlscacert,
        tlscert,
        tlskey,
    } = &cli.cmd
    else {
        unreachable!("serve is called for the serve command");
    };
    let tls_config = if *tls || *tlsverify {
        let (Some(cert), Some(key)) = (tlscert, tlskey) else {
            return Err(Failure::new(
                1,
                "--tls and --tlsverify need --tlscert and --tlskey",
            ));
        };
        let ca = if *tlsverify {
            Some(tlscacert.as_deref().ok_or_else(|| {
                Failure::new(
                    1,
                    "--tlsverify needs --tlscacert (the CA of client certificates)",
                )
            })?)
        } else {
            None
        };
        Some(berth_registry::server::tls_config(cert, key, ca).map_err(|e| Failure::new(1, e))?)
    } else {
        None
    };
    let mut paths = Vec::new();
    let mut tcps = Vec::new();
    let mut activated = Vec::new();
    for h in hosts {
        if h == "fd://" {
            activated = systemd_sockets()?;
        } else if let Some(p) = h.strip_prefix("unix://").filter(|p| p.starts_with('/')) {
            paths.push(std::path::PathBuf::from(p));
        } else if let Some(a) = h.strip_prefix("tcp://") {
            let addr: std::net::SocketAddr = a.parse().map_err(|_| {
                Failure::new(
                    1,
                    format!("-H {h}: expected tcp://ADDR:PORT, e.g. tcp://127.0.0.1:2376"),
                )
            })?;
            tcps.push(addr);
        } else {
            return Err(Failure::new(
                1,
                format!("-H {h}: expected unix:///PATH, tcp://ADDR:PORT or fd://"),
            ));
        }
    }
    let roots = berth_api::Roots {
        root: cli.root.clone(),
        run_root: cli.run_root.clone(),
    };
    // A client that goes away must not end the service (main restores SIGPIPE's
    // default for `berth images | head`): writes to it fail with EPIPE instead.
    // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    // Requests run on many threads; with an allocator arena per thread the service
    // keeps what a burst of clients allocated. Two arenas keep it near its idle size.
    // SAFETY: mallopt only tunes the allocator; called before any thread starts.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(1, format!("starting the runtime: {e}")))?;
    rt.block_on(async {
        let svc = berth_api::Service::new(roots);
        let mut tasks = Vec::new();
        for l in activated {
            eprintln!("API listening on a socket systemd passed in");
            tasks.push(tokio::spawn(berth_api::serve_unix_listener(l, svc.clone())));
        }
        for p in paths {
            eprintln!("API listening on unix://{}", p.display());
            tasks.push(tokio::spawn(berth_api::serve_unix(p, svc.clone())));
        }
        for addr in tcps {
            match &tls_config {
                Some(_) if *tlsverify => eprintln!("API listening on tcp://{addr} (TLS, client certificates verified)"),
                Some(_) => eprintln!("API listening on tcp://{addr} (TLS; any client may connect: use --tlsverify)"),
                None => eprintln!("API listening on tcp://{addr} without TLS: anyone who reaches it controls this host as root"),
            }
            let listen = berth_api::TcpListen {
                addr,
                tls: tls_config.clone(),
            };
            tasks.push(tokio::spawn(berth_api::serve_tcp(listen, svc.clone())));
        }
        for t in tasks {
            match t.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(Failure::new(1, format!("serving: {e}"))),
                Err(e) => return Err(Failure::new(1, format!("serving: {e}"))),
            }
        }
        Ok(0)
    })
}

/// Runs a parsed command line; `warmer` is one `main` started for a `run` it saw coming.
pub fn dispatch(cli: &Cli, warmer: Option<berth_engine::sys::AttachWarmer>) -> CliResult<u8> {
    // The registry has its own storage: berth's root is not opened for it.
    if let Command::Registry { args } = &cli.cmd {
        return registry(args);
    }
    // The API service opens the engine per request.
    if let Command::Serve { .. } = &cli.cmd {
        return serve(cli);
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
        Command::Run { detach, flags } => run::run(e, flags, *detach),
        Command::Create { flags } => {
            let spec = flags.checked_spec()?;
            run::ensure_image(e, flags)?;
            let (id, warnings) = e.create_container(spec).map_err(run::run_failure)?;
            for w in warnings {
                eprintln!("WARNING: {w}");
            }
            println!("{id}");
            Ok(0)
        }
        Command::Start {
            attach,
            interactive,
            containers,
        } => {
            if *attach || *interactive {
                if containers.len() > 1 {
                    return Err(Failure::new(
                        1,
                        "you cannot start and attach multiple containers at once",
                    ));
                }
                let rec = e.find_container(&containers[0])?;
                return run::start_attached(
                    e,
                    &rec.id,
                    *interactive && rec.config.open_stdin,
                    rec.config.tty,
                )
                .map_err(|mut f| {
                    if f.code == 125 {
                        f.code = 1;
                    }
                    f
                });
            }
            each(containers, |c| e.start_container(c, false).map(|_| ()))
        }
        Command::Stop {
            timeout,
            signal,
            containers,
        } => {
            if let Some(s) = signal {
                if berth_engine::sys::parse_signal(s).is_none() {
                    return Err(Failure::new(1, format!("invalid signal: {s}")));
                }
            }
            each(containers, |c| {
                if let Some(s) = signal {
                    let rec = e.find_container(c)?;
                    let st = e.container_state(&rec.id)?;
                    if st.status.is_active() {
                        let _ =
                            e.kill_container(c, berth_engine::sys::parse_signal(s).unwrap_or(15));
                    }
                }
                e.stop_container(c, *timeout)
            })
        }
        Command::Restart {
            timeout,
            containers,
        } => each(containers, |c| {
            e.stop_container(c, *timeout)?;
            e.start_container(c, false).map(|_| ())
        }),
        Command::Kill { signal, containers } => {
            let sig = berth_engine::sys::parse_signal(signal)
                .ok_or_else(|| Failure::new(1, format!("invalid signal: {signal}")))?;
            each(containers, |c| e.kill_container(c, sig))
        }
        Command::Rm {
            force,
            volumes,
            containers,
        } => each(containers, |c| e.remove_container(c, *force, *volumes)),
        Command::Ps(a) => ps(e, a),
        Command::Logs {
            follow,
            tail,
            since,
            until,
            timestamps,
            container,
        } => logs(
            e,
            container,
            *follow,
            tail,
            since.as_deref(),
            until.as_deref(),
            *timestamps,
        ),
        Command::Inspect {
            format,
            kind,
            names,
        } => inspect(e, names, kind.as_deref(), format.as_deref()),
        Command::Exec(f) => run::exec(e, f),
        Command::Attach {
            no_stdin,
            container,
        } => run::attach_running(e, container, *no_stdin),
        Command::Wait { containers } => {
            let mut failed = false;
            for c in containers {
                match e.wait_container(c) {
                    Ok(code) => println!("{code}"),
                    Err(err) => {
                        eprintln!("Error: {err}");
                        failed = true;
                    }
                }
            }
            if failed {
                Err(Failure::new(1, ""))
            } else {
                Ok(0)
            }
        }
        Command::Pause { containers } => each(containers, |c| e.pause_container(c)),
        Command::Unpause { containers } => each(containers, |c| e.unpause_container(c)),
        Command::Stats {
            all,
            no_stream,
            no_trunc,
            format,
            containers,
        } => stats(
            e,
            *all,
            *no_stream,
            *no_trunc,
            format.as_deref(),
            containers,
        ),
        Command::Update {
            memory,
            memory_swap,
            cpus,
            cpu_shares,
            pids_limit,
            restart,
            containers,
        } => {
            let bytes = |flag: &str, v: &Option<String>| -> CliResult<Option<i64>> {
                match v.as_deref() {
                    None => Ok(None),
                    Some("-1") => Ok(Some(-1)),
                    Some(s) => berth_engine::spec::parse_bytes(s).map(Some).ok_or_else(|| {
                        Failure::new(
                            1,
                            format!("invalid argument {s:?} for \"{flag}\" flag: invalid size"),
                        )
                    }),
                }
            };
            let update = berth_engine::specs::UpdateSpec {
                memory: bytes("--memory", memory)?,
                memory_swap: bytes("--memory-swap", memory_swap)?,
                nano_cpus: cpus
                    .as_deref()
                    .map(crate::run::parse_cpus)
                    .transpose()
                    .map_err(|m| Failure::new(1, m))?,
                cpu_quota: None,
                cpu_shares: cpu_shares.map(|s| s as i64),
                pids_limit: *pids_limit,
                restart_policy: restart
                    .as_deref()
                    .map(berth_engine::specs::container::parse_restart)
                    .transpose()?,
            };
            each(containers, |c| e.update_container(c, &update))
        }
        Command::Events {
            since,
            until,
            filter,
            format,
        } => events(
            e,
            since.as_deref(),
            until.as_deref(),
            filter,
            format.as_deref(),
        ),
        Command::Rename {
            container,
            new_name,
        } => {
            e.rename_container(container, new_name)?;
            Ok(0)
        }
        Command::Top { container, ps_args } => {
            let (titles, rows) = e.top(container, ps_args)?;
            let t: Vec<&str> = titles.iter().map(|s| s.as_str()).collect();
            print!("{}", table(&t, &rows));
            Ok(0)
        }
        Command::Port { container, port } => {
            let rec = e.find_container(container)?;
            let ports = e.published_ports(&rec.id);
            match port {
                None => {
                    for p in &ports {
                        println!("{} -> {}:{}", p.container_port, p.host_ip, p.host_port);
                    }
                }
                Some(want) => {
                    let want = if want.contains('/') {
                        want.clone()
                    } else {
                        format!("{want}/tcp")
                    };
                    let found: Vec<_> = ports.iter().filter(|p| p.container_port == want).collect();
                    if found.is_empty() {
                        return Err(Failure::new(
                            1,
                            format!("no public port '{want}' published for {container}"),
                        ));
                    }
                    for p in found {
                        println!("{}:{}", p.host_ip, p.host_port);
                    }
                }
            }
            Ok(0)
        }
        Command::Images(a) => images(e, a),
        Command::Import {
            change,
            message,
            file,
            reference,
        } => {
            let mut run_cfg = RunConfig::default();
            berth_engine::changes::apply_changes(&mut run_cfg, change)?;
            let id = if file == "-" {
                e.import(
                    io::stdin().lock(),
                    reference.as_deref(),
                    run_cfg,
                    message.clone(),
                    "-",
                )?
            } else {
                let f = std::fs::File::open(file)
                    .map_err(|err| Failure::new(1, format!("open {file}: {err}")))?;
                e.import(f, reference.as_deref(), run_cfg, message.clone(), file)?
            };
            println!("{id}");
            Ok(0)
        }
        Command::Pull {
            platform,
            quiet,
            all_tags,
            name,
        } => {
            let opts = berth_engine::distribution::PullOptions {
                platform: platform.clone(),
                insecure: berth_engine::distribution::insecure_registries(),
            };
            let names = if *all_tags {
                e.remote_tags(name, &opts.insecure)?
                    .into_iter()
                    .map(|t| format!("{name}:{t}"))
                    .collect()
            } else {
                vec![name.clone()]
            };
            let q = *quiet;
            let mut display = crate::progress::Display::stdout();
            for n in &names {
                let pulled = e.pull(n, &opts, &mut |p| {
                    if !q {
                        display.show(p);
                    }
                })?;
                if !q {
                    println!("Digest: {}", pulled.digest);
                    let shown = pulled.reference.familiar();
                    if pulled.downloaded {
                        println!("Status: Downloaded newer image for {shown}");
                    } else {
                        println!("Status: Image is up to date for {shown}");
                    }
                }
                println!("{}", pulled.reference);
            }
            Ok(0)
        }
        Command::Push {
            quiet,
            compression,
            all_tags,
            name,
        } => {
            use berth_image::compression::Compression;
            let compression = match compression.as_deref() {
                None => None,
                Some("gzip") => Some(Compression::Gzip),
                Some("zstd") => Some(Compression::Zstd),
                Some("none" | "uncompressed") => Some(Compression::None),
                Some(other) => {
                    return Err(Failure::new(
                        1,
                        format!("invalid --compression {other:?}: use gzip, zstd or none"),
                    ))
                }
            };
            let names = if *all_tags {
                e.local_tags_of_repository(name)?
            } else {
                vec![name.clone()]
            };
            let q = *quiet;
            let mut display = crate::progress::Display::stdout();
            for n in &names {
                e.push(
                    n,
                    &berth_engine::distribution::insecure_registries(),
                    compression,
                    &mut |p| {
                        if !q {
                            display.show(p);
                        }
                    },
                )?;
                if q {
                    println!(
                        "{}",
                        berth_image::reference::Reference::parse(n)
                            .map(|r| r.familiar())
                            .unwrap_or_default()
                    );
                }
            }
            Ok(0)
        }
        Command::Login {
            username,
            password,
            password_stdin,
            server,
        } => {
            let server = server.clone().unwrap_or_else(|| "docker.io".into());
            let username = match username {
                Some(u) => u.clone(),
                None => {
                    return Err(Failure::new(
                        1,
                        "login needs --username (interactive login is not implemented yet)",
                    ))
                }
            };
            let password = match (password, password_stdin) {
                (Some(_), true) => return Err(Failure::new(1, "--password and --password-stdin are mutually exclusive")),
                (Some(p), false) => {
                    eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
                    p.clone()
                }
                (None, true) => {
                    let mut s = String::new();
                    io::Read::read_to_string(&mut io::stdin(), &mut s)?;
                    s.trim_end_matches(['\n', '\r']).to_string()
                }
                (None, false) => return Err(Failure::new(1, "login needs --password-stdin or --password (interactive login is not implemented yet)")),
            };
            e.login(
                &server,
                berth_registry::auth::Credentials { username, password },
                &berth_engine::distribution::insecure_registries(),
            )?;
            println!("Login Succeeded");
            Ok(0)
        }
        Command::Search {
            limit,
            no_trunc,
            format,
            term,
        } => {
            let rows = e.search(
                term,
                *limit,
                &berth_engine::distribution::insecure_registries(),
            )?;
            let values: Vec<serde_json::Value> = rows
                .into_iter()
                .map(|r| {
                    let desc = r.description;
                    let desc = if *no_trunc || desc.chars().count() <= 45 {
                        desc
                    } else {
                        format!("{}…", desc.chars().take(44).collect::<String>())
                    };
                    serde_json::json!({
                        "Name": r.name,
                        "Description": desc,
                        "StarCount": r.stars.to_string(),
                        "IsOfficial": if r.official { "[OK]" } else { "" },
                        "IsAutomated": if r.automated { "[OK]" } else { "" },
                    })
                })
                .collect();
            let fmt = format.clone().unwrap_or_else(|| {
                "table {{.Name}}\t{{.Description}}\t{{.StarCount}}\t{{.IsOfficial}}\t{{.IsAutomated}}".into()
            });
            let f = crate::format::Format::parse(Some(&fmt))?;
            print!(
                "{}",
                f.render_list(
                    &values,
                    &[
                        ("Name", "NAME"),
                        ("Description", "DESCRIPTION"),
                        ("StarCount", "STARS"),
                        ("IsOfficial", "OFFICIAL"),
                        ("IsAutomated", "AUTOMATED"),
                    ],
                )?
            );
            Ok(0)
        }
        Command::Logout { server } => {
            let server = server.clone().unwrap_or_else(|| "docker.io".into());
            let host = berth_engine::distribution::normalise_server(&server);
            if e.logout(&server)? {
                println!("Removing login credentials for {host}");
            } else {
                println!("Not logged in to {host}");
            }
            Ok(0)
        }
        Command::Load { input, quiet } => {
            let lines = match input {
                Some(p) => {
                    let f = std::fs::File::open(p)
                        .map_err(|err| Failure::new(1, format!("open {}: {err}", p.display())))?;
                    e.load(io::BufReader::new(f))?
                }
                None => {
                    if crate::terminal::is_tty(std::os::fd::AsFd::as_fd(&io::stdin())) {
                        return Err(Failure::new(
                            1,
                            "requested load from stdin, but stdin is empty",
                        ));
                    }
                    e.load(io::stdin().lock())?
                }
            };
            if !quiet {
                for l in lines {
                    println!("{l}");
                }
            }
            Ok(0)
        }
        Command::Save { output, images } => save(e, images, output.as_ref()),
        Command::Tag { source, target } | Command::Image(ImageCmd::Tag { source, target }) => {
            e.tag(source, target)?;
            Ok(0)
        }
        Command::Rmi { force, images } | Command::Image(ImageCmd::Rm { force, images }) => {
            rmi(e, images, *force)
        }
        Command::History {
            no_trunc,
            quiet,
            format,
            image,
        }
        | Command::Image(ImageCmd::History {
            no_trunc,
            quiet,
            format,
            image,
        }) => history(e, image, *no_trunc, *quiet, format.as_deref()),
        Command::Image(ImageCmd::Ls(a)) => images(e, a),
        Command::Image(ImageCmd::Inspect { format, images }) => {
            let mut vals = Vec::new();
            for i in images {
                vals.push(e.inspect_image(i)?);
            }
            print_inspect(vals, format.as_deref())?;
            Ok(0)
        }
        Command::Image(ImageCmd::Prune { all, force, filter }) => {
            let what = if *all {
                "WARNING! This will remove all images without at least one container associated to them."
            } else {
                "WARNING! This will remove all dangling images."
            };
            if !confirm(*force, what)? {
                return Ok(0);
            }
            let (removed, bytes) = e.prune_images(*all, &prune_filter(filter, true)?)?;
            print_pruned_images(&removed);
            println!("Total reclaimed space: {}", human_size(bytes));
            Ok(0)
        }
        Command::Container(ContainerCmd::Ls(a)) => ps(e, a),
        Command::Container(ContainerCmd::Inspect { format, containers }) => {
            let mut vals = Vec::new();
            for c in containers {
                vals.push(e.inspect_container(c)?);
            }
            print_inspect(vals, format.as_deref())?;
            Ok(0)
        }
        Command::Container(ContainerCmd::Prune { force, filter }) => {
            if !confirm(*force, "WARNING! This will remove all stopped containers.")? {
                return Ok(0);
            }
            let (removed, bytes) = e.prune_containers(&prune_filter(filter, true)?)?;
            if !removed.is_empty() {
                println!("Deleted Containers:");
                for r in removed {
                    println!("{r}");
                }
                println!();
            }
            println!("Total reclaimed space: {}", human_size(bytes));
            Ok(0)
        }
        Command::Volume(v) => volume(e, v),
        Command::Build(b) => crate::build::build(e, b),
        Command::Builder(b) => crate::build::builder(e, b),
        Command::Network(n) => crate::network::network(e, n),
        Command::Compose(_) | Command::Serve { .. } => {
            unreachable!("dispatched before the engine opens")
        }
        Command::DnsServe { addr, records } => {
            let sock = std::net::UdpSocket::bind(addr)
                .map_err(|err| Failure::new(1, format!("dns-serve: binding {addr}: {err}")))?;
            let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            berth_net::dns::serve(sock, records, berth_net::dns::upstreams(&resolv))?;
            Ok(0)
        }
        Command::Registry { args } => registry(args),
        Command::System(SystemCmd::Df { verbose, format }) => df(e, *verbose, format.as_deref()),
        Command::System(SystemCmd::Prune {
            all,
            volumes,
            force,
            filter,
        }) => {
            let mut what = String::from("WARNING! This will remove:\n  - all stopped containers\n");
            if *volumes {
                what.push_str("  - all anonymous volumes not used by at least one container\n");
            }
            what.push_str(if *all {
                "  - all images without at least one container associated to them"
            } else {
                "  - all dangling images"
            });
            if !confirm(*force, &what)? {
                return Ok(0);
            }
            let pf = prune_filter(filter, true)?;
            let (ctrs, cbytes) = e.prune_containers(&pf)?;
            if !ctrs.is_empty() {
                println!("Deleted Containers:");
                for c in &ctrs {
                    println!("{c}");
                }
                println!();
            }
            let mut total = cbytes;
            if *volumes {
                let (vols, vbytes) = e.prune_volumes(
                    false,
                    &prune_filter(
                        &filter
                            .iter()
                            .filter(|f| !f.starts_with("until="))
                            .cloned()
                            .collect::<Vec<_>>(),
                        false,
                    )?,
                )?;
                if !vols.is_empty() {
                    println!("Deleted Volumes:");
                    for v in &vols {
                        println!("{v}");
                    }
                    println!();
                }
                total += vbytes;
            }
            let (removed, ibytes) = e.prune_images(*all, &pf)?;
            print_pruned_images(&removed);
            total += ibytes;
            println!("Total reclaimed space: {}", human_size(total));
            Ok(0)
        }
        Command::System(SystemCmd::Boot) => {
            let (started, errors) = e.boot()?;
            for id in &started {
                println!("{id}");
            }
            for err in &errors {
                eprintln!("Error: {err}");
            }
            if errors.is_empty() {
                Ok(0)
            } else {
                Err(Failure::new(1, ""))
            }
        }
        Command::System(SystemCmd::Info { format }) | Command::Info { format } => {
            info(e, format.as_deref())
        }
        Command::Version { format } => {
            let v = serde_json::json!({
                "Client": {"Version": env!("CARGO_PKG_VERSION"), "ApiVersion": "1.47", "Os": "linux", "Arch": berth_image::config::host_platform().architecture},
                "Server": {"Version": env!("CARGO_PKG_VERSION"), "Runtime": "libcontainer 0.7.0 (built in)"},
            });
            match format {
                Some(f) => println!("{}", Format::parse(Some(f))?.render(&v)?),
                None => {
                    println!(
                        "Client:\n Version:     {}\n API version: 1.47\n OS/Arch:     linux/{}\n",
                        env!("CARGO_PKG_VERSION"),
                        berth_image::config::host_platform().architecture
                    );
                    println!(
                        "Engine:\n Version:     {}\n Runtime:     libcontainer 0.7.0 (built in)",
                        env!("CARGO_PKG_VERSION")
                    );
                }
            }
            Ok(0)
        }
        Command::Diff { container } => {
            for c in e.diff(container)? {
                println!("{c}");
            }
            Ok(0)
        }
        Command::Commit {
            author,
            change,
            message,
            container,
            reference,
            pause,
        } => {
            let mut run_cfg = RunConfig::default();
            berth_engine::changes::apply_changes(&mut run_cfg, change)?;
            let id = e.commit(
                container,
                reference.as_deref(),
                author.clone(),
                message.clone(),
                run_cfg,
                !change.is_empty(),
                *pause,
            )?;
            println!("{id}");
            Ok(0)
        }
        Command::Export { output, container } => {
            match output {
                Some(p) => {
                    let dir = p
                        .parent()
                        .filter(|d| !d.as_os_str().is_empty())
                        .unwrap_or(std::path::Path::new("."));
                    let (mut f, tmp) = berth_image::fsutil::create_temp(dir, "export")
                        .map_err(|err| Failure::new(1, format!("{}: {err}", dir.display())))?;
                    if let Err(err) = e.export(container, io::BufWriter::new(&mut f)) {
                        let _ = std::fs::remove_file(&tmp);
                        return Err(err.into());
                    }
                    std::fs::rename(&tmp, p)?;
                }
                None => {
                    if crate::terminal::is_tty(std::os::fd::AsFd::as_fd(&io::stdout())) {
                        return Err(Failure::new(
                            1,
                            "cowardly refusing to save to a terminal. Use the -o flag or redirect",
                        ));
                    }
                    e.export(container, io::BufWriter::new(io::stdout().lock()))?;
                }
            }
            Ok(0)
        }
        Command::Cp {
            archive,
            follow_link,
            source,
            dest,
        } => crate::cp::cp(e, source, dest, *archive, *follow_link),
    }
}

#[cfg(test)]
mod tests {
    use super::human_binary;

    #[test]
    fn memory_sizes_like_docker() {
        assert_eq!(human_binary(0), "0B");
        assert_eq!(human_binary(376_832), "368KiB");
        assert_eq!(human_binary(1_061_683), "1.012MiB");
        assert_eq!(human_binary(64 << 20), "64MiB");
        assert_eq!(human_binary(25_199_652_864), "23.47GiB");
    }
}
