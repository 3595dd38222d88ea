//! System commands: `info`, `version`, `events`, `inspect`, `system …`, and the
//! services (`serve`, `registry`, `dns-serve`) with the other nouns' entry points.

use super::*;
use berth_engine::state::Status;

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
            Some("container") => engine.inspect_container(n).ok().map(json),
            Some("image") => engine.inspect_image(n).ok().map(json),
            Some("volume") => engine.inspect_volume(n).ok().map(json),
            Some(other) => {
                return Err(Failure::new(
                    1,
                    format!("\"{other}\" is not a valid value for --type"),
                ))
            }
            None => engine
                .inspect_container(n)
                .ok()
                .map(json)
                .or_else(|| engine.inspect_image(n).ok().map(json))
                .or_else(|| engine.inspect_volume(n).ok().map(json)),
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
        .filter(|c| matches!(c.state, Status::Running | Status::Paused))
        .count();
    let ctr_reclaim: u64 = containers
        .iter()
        .zip(&ctr_sizes)
        .filter(|(c, _)| !matches!(c.state, Status::Running | Status::Paused))
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
                    ago(&c.created_text()),
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

pub(super) fn registry(args: &[String]) -> CliResult<u8> {
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

/// The runtime of a long-running service process (see [`crate::service`]).
fn service_runtime() -> CliResult<tokio::runtime::Runtime> {
    crate::service::service_runtime().map_err(|e| Failure::new(1, e))
}

/// `berth cri`: CRI v1 until SIGINT or SIGTERM; from `berth-cri` when it is installed
/// beside this binary (the same service, from a binary of its own code only).
pub(super) fn cri(cli: &Cli, args: &crate::service::CriArgs) -> CliResult<u8> {
    use std::os::unix::process::CommandExt;
    let own = berth_engine::berth_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("berth-cri")))
        .filter(|p| p.is_file());
    if let Some(bin) = own {
        let err = std::process::Command::new(&bin)
            .arg(format!("--root={}", cli.root.display()))
            .arg(format!("--run-root={}", cli.run_root.display()))
            .args(args.to_args())
            .exec();
        return Err(Failure::new(1, format!("running {}: {err}", bin.display())));
    }
    crate::service::serve_cri(&cli.root, &cli.run_root, args).map_err(|e| Failure::new(1, e))?;
    Ok(0)
}

/// `serve`: the Docker Engine API on each `-H` socket or TCP address, until killed.
pub(super) fn serve(cli: &Cli) -> CliResult<u8> {
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
    let rt = service_runtime()?;
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

/// Runs one of this noun's commands (`dispatch` routes only those here).
pub(super) fn run(e: &Engine, cmd: &Command) -> CliResult<u8> {
    match cmd {
        Command::Inspect {
            format,
            kind,
            names,
        } => inspect(e, names, kind.as_deref(), format.as_deref()),
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
            super::image::print_pruned_images(&removed);
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
        _ => unreachable!("dispatch routes only this noun's commands here"),
    }
}
