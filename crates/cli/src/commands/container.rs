//! Container commands: `run`, `create`, the life cycle, `ps`, `logs`, `stats`, `exec`,
//! `update`, `port`, `diff`, `commit`, `export`, `cp` and `container …`.

use super::*;

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
                "CreatedAt": c.created_text(),
                "RunningFor": ago(&c.created_text()),
                "Ports": c.ports_text(),
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
    let Some(path) = engine.log_path(&rec) else {
        return Err(Failure::new(
            1,
            "configured logging driver does not support reading",
        ));
    };
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

/// Runs one of this noun's commands (`dispatch` routes only those here).
pub(super) fn run(e: &Engine, cmd: &Command) -> CliResult<u8> {
    match cmd {
        Command::Run { detach, flags } => {
            let spec = flags.checked_spec()?;
            run::run(e, spec, &flags.pull, flags.platform.clone(), *detach)
        }
        Command::Create { flags } => {
            let spec = flags.checked_spec()?;
            run::ensure_image(e, &spec.image, &flags.pull, flags.platform.clone())?;
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
                    .map(berth_engine::specs::parse::cpus)
                    .transpose()
                    .map_err(|e| Failure::new(1, e.to_string()))?,
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
        Command::Container(ContainerCmd::Ls(a)) => ps(e, a),
        Command::Container(ContainerCmd::Inspect { format, containers }) => {
            let mut vals = Vec::new();
            for c in containers {
                vals.push(json(e.inspect_container(c)?));
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
        _ => unreachable!("dispatch routes only this noun's commands here"),
    }
}
