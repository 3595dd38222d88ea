//! Image commands: `images`, `pull`, `push`, `import`, `load`, `save`, `tag`, `rmi`,
//! `history`, `login`, `logout`, `search` and `image …`.

use super::*;

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

/// `history` and `image history`.
#[derive(Args)]
pub struct HistoryArgs {
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Only show image IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    pub image: String,
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
        /// Provide filter values (until=<timestamp|duration>, label=<key>[=<value>], label!=…)
        #[arg(long = "filter")]
        filter: Vec<String>,
        /// Do not prompt for confirmation
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// Show the history of an image
    History(HistoryArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag { source: String, target: String },
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
    crate::output::each_then(
        images,
        |i| engine.remove_image(i, force),
        |_, removed| {
            for r in removed {
                match r {
                    Removed::Untagged(t) => println!("Untagged: {t}"),
                    Removed::Deleted(d) => println!("Deleted: {d}"),
                }
            }
        },
    )
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

pub(super) fn print_pruned_images(removed: &[Removed]) {
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

/// Runs one of this noun's commands (`dispatch` routes only those here).
pub(super) fn run(e: &Engine, cmd: &Command) -> CliResult<u8> {
    match cmd {
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
                ..Default::default()
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
        Command::History(a) | Command::Image(ImageCmd::History(a)) => {
            history(e, &a.image, a.no_trunc, a.quiet, a.format.as_deref())
        }
        Command::Image(ImageCmd::Ls(a)) => images(e, a),
        Command::Image(ImageCmd::Inspect { format, images }) => {
            let mut vals = Vec::new();
            for i in images {
                vals.push(json(e.inspect_image(i)?));
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
        _ => unreachable!("dispatch routes only this noun's commands here"),
    }
}
