//! `berth compose`: multi-container applications from a compose file.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::{CliResult, Failure};

/// `berth compose [OPTIONS] COMMAND`
#[derive(Args, Debug)]
pub struct ComposeArgs {
    /// Compose configuration files
    #[arg(short = 'f', long = "file")]
    pub files: Vec<PathBuf>,
    /// Project name
    #[arg(short = 'p', long = "project-name")]
    pub project_name: Option<String>,
    /// Specify a profile to enable
    #[arg(long = "profile")]
    pub profiles: Vec<String>,
    /// Specify an alternate environment file
    #[arg(long = "env-file")]
    pub env_files: Vec<PathBuf>,
    #[command(subcommand)]
    pub cmd: ComposeCmd,
}

#[derive(Args, Debug, Default)]
pub struct UpArgs {
    /// Detached mode: Run containers in the background
    #[arg(short, long)]
    pub detach: bool,
    /// Build images before starting containers
    #[arg(long)]
    pub build: bool,
    /// Don't build an image, even if it's missing
    #[arg(long = "no-build")]
    pub no_build: bool,
    /// Recreate containers even if their configuration and image haven't changed
    #[arg(long = "force-recreate")]
    pub force_recreate: bool,
    /// Don't start linked services
    #[arg(long = "no-deps")]
    pub no_deps: bool,
    /// Remove containers for services not defined in the Compose file
    #[arg(long = "remove-orphans")]
    pub remove_orphans: bool,
    /// Wait for services to be running|healthy
    #[arg(long)]
    pub wait: bool,
    /// Maximum duration in seconds to wait for the project to be running|healthy
    #[arg(long = "wait-timeout", default_value_t = 120)]
    pub wait_timeout: u64,
    /// Stops all containers if any container was stopped. Incompatible with -d
    #[arg(long = "abort-on-container-exit")]
    pub abort_on_container_exit: bool,
    /// Produce monochrome output
    #[arg(long = "no-color")]
    pub no_color: bool,
    /// Don't print prefix in logs
    #[arg(long = "no-log-prefix")]
    pub no_log_prefix: bool,
    pub services: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum ComposeCmd {
    /// Parse, resolve and render the compose file in canonical format
    Config {
        /// Format the output (yaml or json)
        #[arg(long, default_value = "yaml")]
        format: String,
        /// Only validate the configuration, don't print anything
        #[arg(short, long)]
        quiet: bool,
        /// Print the service names, one per line
        #[arg(long)]
        services: bool,
        /// Print the volume names, one per line
        #[arg(long)]
        volumes: bool,
        /// Print the profile names, one per line
        #[arg(long)]
        profiles: bool,
    },
    /// Create and start containers
    Up(UpArgs),
    /// Stop and remove containers, networks
    Down {
        /// Remove named volumes declared in the "volumes" section of the Compose file
        #[arg(short = 'v', long)]
        volumes: bool,
        /// Remove containers for services not defined in the Compose file
        #[arg(long = "remove-orphans")]
        remove_orphans: bool,
        /// Specify a shutdown timeout in seconds
        #[arg(short = 't', long)]
        timeout: Option<i64>,
        /// Remove images used by services: "local" removes only images that don't have
        /// a custom tag ("local"|"all")
        #[arg(long)]
        rmi: Option<String>,
    },
    /// List containers
    Ps {
        /// Show all stopped containers
        #[arg(short, long)]
        all: bool,
        /// Only display IDs
        #[arg(short, long)]
        quiet: bool,
        /// Format the output: table or json
        #[arg(long)]
        format: Option<String>,
        /// Display services
        #[arg(long)]
        services: bool,
        services_filter: Vec<String>,
    },
    /// View output from containers
    Logs {
        /// Follow log output
        #[arg(short, long)]
        follow: bool,
        /// Number of lines to show from the end of the logs for each container
        #[arg(short = 'n', long, default_value = "all")]
        tail: String,
        /// Show timestamps
        #[arg(short, long)]
        timestamps: bool,
        /// Produce monochrome output
        #[arg(long = "no-color")]
        no_color: bool,
        /// Don't print prefix in logs
        #[arg(long = "no-log-prefix")]
        no_log_prefix: bool,
        services: Vec<String>,
    },
    /// Execute a command in a running container
    Exec {
        /// Detached mode: Run command in the background
        #[arg(short, long)]
        detach: bool,
        /// Disable pseudo-TTY allocation
        #[arg(short = 'T', long = "no-TTY")]
        no_tty: bool,
        /// Set environment variables
        #[arg(short, long = "env")]
        env: Vec<String>,
        /// Path to workdir directory for this command
        #[arg(short, long)]
        workdir: Option<String>,
        /// Run the command as this user
        #[arg(short, long)]
        user: Option<String>,
        /// Give extended privileges to the process
        #[arg(long)]
        privileged: bool,
        /// Index of the container if service has multiple replicas
        #[arg(long, default_value_t = 1)]
        index: u32,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true, num_args = 2.., value_name = "SERVICE COMMAND [ARGS...]")]
        args: Vec<String>,
    },
    /// Run a one-off command on a service
    Run {
        /// Run container in background and print container ID
        #[arg(short, long)]
        detach: bool,
        /// Automatically remove the container when it exits
        #[arg(long)]
        rm: bool,
        /// Assign a name to the container
        #[arg(long)]
        name: Option<String>,
        /// Set environment variables
        #[arg(short, long = "env")]
        env: Vec<String>,
        /// Add or override a label
        #[arg(short, long = "label")]
        label: Vec<String>,
        /// Working directory inside the container
        #[arg(short, long)]
        workdir: Option<String>,
        /// Run as specified username or uid
        #[arg(short, long)]
        user: Option<String>,
        /// Override the entrypoint of the image
        #[arg(long)]
        entrypoint: Option<String>,
        /// Publish a container's port(s) to the host
        #[arg(short, long)]
        publish: Vec<String>,
        /// Run command with all service's ports enabled and mapped to the host
        #[arg(long = "service-ports")]
        service_ports: bool,
        /// Disable pseudo-TTY allocation
        #[arg(short = 'T', long = "no-TTY")]
        no_tty: bool,
        /// Don't start linked services
        #[arg(long = "no-deps")]
        no_deps: bool,
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            required = true,
            value_name = "SERVICE [COMMAND] [ARGS...]"
        )]
        args: Vec<String>,
    },
    /// Build or rebuild services
    Build {
        /// Do not use cache when building the image
        #[arg(long = "no-cache")]
        no_cache: bool,
        /// Always attempt to pull a newer version of the image
        #[arg(long)]
        pull: bool,
        /// Don't print anything to STDOUT
        #[arg(short, long)]
        quiet: bool,
        services: Vec<String>,
    },
    /// Pull service images
    Pull {
        /// Pull without printing progress information
        #[arg(short, long)]
        quiet: bool,
        /// Ignore images that can be built
        #[arg(long = "ignore-buildable")]
        ignore_buildable: bool,
        services: Vec<String>,
    },
    /// Push service images
    Push { services: Vec<String> },
    /// Start services
    Start { services: Vec<String> },
    /// Stop services
    Stop {
        /// Specify a shutdown timeout in seconds
        #[arg(short = 't', long)]
        timeout: Option<i64>,
        services: Vec<String>,
    },
    /// Restart service containers
    Restart {
        /// Specify a shutdown timeout in seconds
        #[arg(short = 't', long)]
        timeout: Option<i64>,
        services: Vec<String>,
    },
    /// Force stop service containers
    Kill {
        /// SIGNAL to send to the container
        #[arg(short, long, default_value = "SIGKILL")]
        signal: String,
        services: Vec<String>,
    },
    /// Removes stopped service containers
    Rm {
        /// Don't ask to confirm removal
        #[arg(short, long)]
        force: bool,
        /// Stop the containers, if required, before removing
        #[arg(short, long)]
        stop: bool,
        /// Remove any anonymous volumes attached to containers
        #[arg(short, long)]
        volumes: bool,
        services: Vec<String>,
    },
    /// Display the running processes
    Top { services: Vec<String> },
    /// List images used by the created containers
    Images {
        /// Only display IDs
        #[arg(short, long)]
        quiet: bool,
        services: Vec<String>,
    },
    /// Print the public port for a port binding
    Port {
        /// tcp or udp
        #[arg(long, default_value = "tcp")]
        protocol: String,
        /// Index of the container if service has multiple replicas
        #[arg(long, default_value_t = 1)]
        index: u32,
        service: String,
        private_port: u16,
    },
    /// List running compose projects
    Ls {
        /// Show all stopped Compose projects
        #[arg(short, long)]
        all: bool,
        /// Only display project names
        #[arg(short, long)]
        quiet: bool,
        /// Format the output: table or json
        #[arg(long)]
        format: Option<String>,
    },
}

fn load(args: &ComposeArgs) -> CliResult<berth_compose::load::Project> {
    let opts = berth_compose::load::Options {
        files: args.files.clone(),
        project_name: args.project_name.clone(),
        env_files: args.env_files.clone(),
        profiles: args.profiles.clone(),
        working_dir: std::env::current_dir()
            .map_err(|e| Failure::new(1, format!("the working directory: {e}")))?,
        environ: std::env::vars().collect(),
    };
    let project = berth_compose::load::load(&opts).map_err(|e| Failure::new(1, e.to_string()))?;
    for w in &project.warnings {
        eprintln!("WARN[0000] {w}");
    }
    Ok(project)
}

pub fn compose(cli: &crate::Cli, args: &ComposeArgs) -> CliResult<u8> {
    let engine = || {
        crate::open_engine(&cli.root, &cli.run_root).map_err(|mut f| {
            f.code = 1;
            f
        })
    };
    match &args.cmd {
        ComposeCmd::Up(up_args) => {
            let project = load(args)?;
            up(cli, &engine()?, &project, up_args)
        }
        ComposeCmd::Down {
            volumes,
            remove_orphans,
            timeout,
            rmi,
        } => {
            let project = load(args)?;
            if rmi.as_deref().is_some_and(|r| r != "local" && r != "all") {
                return Err(fail(format!(
                    "invalid --rmi {:?}: local or all",
                    rmi.as_deref().unwrap_or_default()
                )));
            }
            let e = engine()?;
            down(cli, &e, &project, *volumes, *remove_orphans, *timeout)?;
            // Images: all the services', or (local) the ones compose named itself.
            if let Some(which) = rmi {
                let mut done: Vec<String> = Vec::new();
                for s in services_of(&project) {
                    let svc = &project.model["services"][s.as_str()];
                    if which == "local" && svc.get("image").is_some() {
                        continue;
                    }
                    let Ok(image) = berth_compose::service::image_of(&project, &s) else {
                        continue;
                    };
                    if done.contains(&image) || e.find_image(&image).is_err() {
                        continue;
                    }
                    e.remove_image(&image, false)?;
                    said("Image", &image, "Removed");
                    done.push(image);
                }
            }
            Ok(0)
        }
        ComposeCmd::Build {
            no_cache,
            pull,
            quiet,
            services,
        } => {
            let project = load(args)?;
            let e = engine()?;
            let known = services_of(&project);
            let wanted: Vec<String> = if services.is_empty() {
                known.clone()
            } else {
                services.clone()
            };
            for s in &wanted {
                if !known.contains(s) {
                    return Err(fail(format!("no such service: {s}")));
                }
            }
            let mut extra = Vec::new();
            if *no_cache {
                extra.push("--no-cache".to_string());
            }
            if *pull {
                extra.push("--pull".to_string());
            }
            if *quiet {
                extra.push("--quiet".to_string());
            }
            for s in &wanted {
                build_service(&e, &project, s, &extra)?;
            }
            Ok(0)
        }
        ComposeCmd::Run {
            detach,
            rm,
            name,
            env,
            label,
            workdir,
            user,
            entrypoint,
            publish,
            service_ports,
            no_tty,
            no_deps,
            args: rest,
        } => {
            let project = load(args)?;
            let e = engine()?;
            let service = &rest[0];
            if !services_of(&project).contains(service) {
                return Err(fail(format!("no such service: {service}")));
            }
            // Its dependencies come up first, as `up -d` would bring them.
            if !*no_deps {
                let deps: Vec<String> =
                    start_order(&project, std::slice::from_ref(service), false)?
                        .into_iter()
                        .filter(|s| s != service)
                        .collect();
                if !deps.is_empty() {
                    let up_args = UpArgs {
                        detach: true,
                        services: deps,
                        ..Default::default()
                    };
                    up(cli, &e, &project, &up_args)?;
                }
            }
            ensure_resources(&e, &project, std::slice::from_ref(service))?;
            let image = berth_compose::service::image_of(&project, service).map_err(fail)?;
            if e.find_image(&image).is_err() {
                build_service(&e, &project, service, &[])?;
            }
            let mut extra = Vec::new();
            let mut add = |f: &str, v: &str| {
                extra.push(f.to_string());
                extra.push(v.to_string());
            };
            for x in env {
                add("--env", x);
            }
            for x in label {
                add("--label", x);
            }
            for x in publish {
                add("--publish", x);
            }
            if let Some(w) = workdir {
                add("--workdir", w);
            }
            if let Some(u) = user {
                add("--user", u);
            }
            if *rm {
                extra.push("--rm".into());
            }
            if !*detach {
                extra.push("--interactive".into());
                if !*no_tty && std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                    extra.push("--tty".into());
                }
            }
            let oneoff = berth_compose::service::OneOff {
                name: name.clone().unwrap_or_else(|| {
                    format!(
                        "{}-{service}-run-{}",
                        project.name,
                        &berth_engine::names::new_id()[..12]
                    )
                }),
                command: (rest.len() > 1).then(|| rest[1..].to_vec()),
                service_ports: *service_ports,
                extra,
            };
            let mut argv =
                berth_compose::service::create_args_for(&project, service, 1, Some(&oneoff))
                    .map_err(fail)?;
            if let Some(ep) = entrypoint {
                // The last --entrypoint wins; put it just before the image.
                let image_at = argv.len() - 1 - oneoff.command.as_ref().map_or(0, Vec::len);
                argv.insert(image_at, ep.clone());
                argv.insert(image_at, "--entrypoint".into());
            }
            let flags = crate::run::create_flags(&argv)?;
            crate::run::run(&e, &flags, *detach)
        }
        ComposeCmd::Pull {
            quiet: _,
            ignore_buildable,
            services,
        } => {
            let project = load(args)?;
            let e = engine()?;
            for s in selected(&project, services)? {
                let svc = &project.model["services"][s.as_str()];
                let Some(image) = svc.get("image").and_then(Value::as_str) else {
                    continue;
                };
                if *ignore_buildable && svc.get("build").is_some() {
                    continue;
                }
                eprintln!(" \u{2714} {s}  Pulling");
                crate::run::pull_image(&e, image, None)?;
                said("Image", image, "Pulled");
            }
            Ok(0)
        }
        ComposeCmd::Push { services } => {
            let project = load(args)?;
            let e = engine()?;
            let mut display = crate::progress::Display::stderr();
            for s in selected(&project, services)? {
                let svc = &project.model["services"][s.as_str()];
                // What is pushed is what is built and named.
                let (Some(image), Some(_)) =
                    (svc.get("image").and_then(Value::as_str), svc.get("build"))
                else {
                    continue;
                };
                e.push(
                    image,
                    &berth_engine::distribution::insecure_registries(),
                    None,
                    &mut |p| display.show(p),
                )?;
                said("Image", image, "Pushed");
            }
            Ok(0)
        }
        ComposeCmd::Top { services } => {
            let project = load(args)?;
            let e = engine()?;
            for c in of_services(&e, &project, services, false)? {
                let (titles, rows) = e.top(&c.id, &[])?;
                let t: Vec<&str> = titles.iter().map(String::as_str).collect();
                println!("{}", c.names.trim_start_matches('/'));
                print!("{}", crate::format::table(&t, &rows));
                println!();
            }
            Ok(0)
        }
        ComposeCmd::Images { quiet, services } => {
            let project = load(args)?;
            let e = engine()?;
            let mut rows = Vec::new();
            for c in of_services(&e, &project, services, true)? {
                let img = e.find_image(&c.image_id).ok();
                let id = c.image_id.trim_start_matches("sha256:");
                if *quiet {
                    println!("{id}");
                    continue;
                }
                let (repo, tag) = match c.image.rsplit_once(':') {
                    Some((r, t)) if !t.contains('/') => (r.to_string(), t.to_string()),
                    _ => (c.image.clone(), "latest".to_string()),
                };
                rows.push(vec![
                    c.names.trim_start_matches('/').to_string(),
                    repo,
                    tag,
                    id[..id.len().min(12)].to_string(),
                    img.map(|i| crate::format::human_size(i.size))
                        .unwrap_or_default(),
                ]);
            }
            if !*quiet {
                print!(
                    "{}",
                    crate::format::table(
                        &["CONTAINER", "REPOSITORY", "TAG", "IMAGE ID", "SIZE"],
                        &rows
                    )
                );
            }
            Ok(0)
        }
        ComposeCmd::Ls { all, quiet, format } => ls(&engine()?, *all, *quiet, format.as_deref()),
        ComposeCmd::Logs {
            follow,
            tail,
            timestamps,
            no_color,
            no_log_prefix,
            services,
        } => {
            let project = load(args)?;
            let e = engine()?;
            let list = of_services(&e, &project, services, true)?;
            let style = LogStyle {
                timestamps: *timestamps,
                color: !*no_color && std::io::IsTerminal::is_terminal(&std::io::stdout()),
                prefix: !*no_log_prefix,
            };
            follow_logs(&e, &list, tail, *follow, &style, &|| false)
        }
        ComposeCmd::Exec {
            detach,
            no_tty,
            env,
            workdir,
            user,
            privileged,
            index,
            args: rest,
        } => {
            let project = load(args)?;
            let e = engine()?;
            let id = replica(&e, &project, &rest[0], *index, true)?;
            let mut argv = vec![id];
            argv.extend(rest[1..].iter().cloned());
            let interactive = !*detach;
            let flags = crate::run::ExecFlags {
                detach: *detach,
                interactive,
                tty: interactive && !*no_tty && std::io::IsTerminal::is_terminal(&std::io::stdin()),
                env: env.clone(),
                workdir: workdir.clone(),
                user: user.clone(),
                privileged: *privileged,
                args: argv,
            };
            crate::run::exec(&e, &flags)
        }
        ComposeCmd::Start { services } => {
            let project = load(args)?;
            let e = engine()?;
            start_each(&e, &of_services(&e, &project, services, true)?)
        }
        ComposeCmd::Stop { timeout, services } => {
            let project = load(args)?;
            let e = engine()?;
            let list = of_services(&e, &project, services, false)?;
            stop_all(cli, &list, *timeout);
            Ok(0)
        }
        ComposeCmd::Restart { timeout, services } => {
            let project = load(args)?;
            let e = engine()?;
            let list = of_services(&e, &project, services, true)?;
            stop_all(cli, &list, *timeout);
            start_each(&e, &list)
        }
        ComposeCmd::Kill { signal, services } => {
            let project = load(args)?;
            let e = engine()?;
            let sig = berth_engine::sys::parse_signal(signal)
                .ok_or_else(|| fail(format!("invalid signal: {signal}")))?;
            for c in of_services(&e, &project, services, false)? {
                e.kill_container(&c.id, sig)?;
                said("Container", c.names.trim_start_matches('/'), "Killed");
            }
            Ok(0)
        }
        ComposeCmd::Rm {
            force,
            stop,
            volumes,
            services,
        } => {
            let project = load(args)?;
            let e = engine()?;
            let mut list = of_services(&e, &project, services, true)?;
            if *stop {
                stop_all(cli, &list, None);
            }
            list.retain(|c| {
                !e.container_state(&c.id)
                    .map(|s| s.status.is_active())
                    .unwrap_or(false)
            });
            if list.is_empty() {
                eprintln!("No stopped containers");
                return Ok(0);
            }
            let names: Vec<&str> = list
                .iter()
                .map(|c| c.names.trim_start_matches('/'))
                .collect();
            if !crate::output::confirm(*force, &format!("Going to remove {}", names.join(", ")))? {
                return Ok(0);
            }
            for c in &list {
                e.remove_container(&c.id, false, *volumes)?;
                said("Container", c.names.trim_start_matches('/'), "Removed");
            }
            Ok(0)
        }
        ComposeCmd::Port {
            protocol,
            index,
            service,
            private_port,
        } => {
            let project = load(args)?;
            let e = engine()?;
            let id = replica(&e, &project, service, *index, false)?;
            let wanted = format!("{private_port}/{protocol}");
            match e
                .published_ports(&id)
                .into_iter()
                .find(|p| p.container_port == wanted)
            {
                Some(p) => {
                    println!("{}:{}", p.host_ip, p.host_port);
                    Ok(0)
                }
                None => Err(fail(format!("no port {wanted} for container {service}"))),
            }
        }
        ComposeCmd::Ps {
            all,
            quiet,
            format,
            services,
            services_filter,
        } => {
            let project = load(args)?;
            ps(
                &engine()?,
                &project,
                *all,
                *quiet,
                format.as_deref(),
                *services,
                services_filter,
            )
        }
        ComposeCmd::Config {
            format,
            quiet,
            services,
            volumes,
            profiles,
        } => {
            let project = load(args)?;
            if *quiet {
                return Ok(0);
            }
            if *services || *volumes {
                let section = if *services { "services" } else { "volumes" };
                for n in berth_compose::mapping_keys(project.model.get(section)) {
                    println!("{n}");
                }
                return Ok(0);
            }
            if *profiles {
                return Err(Failure::new(
                    1,
                    "berth compose config --profiles is not implemented yet",
                ));
            }
            let out = match format.as_str() {
                "yaml" => serde_norway::to_string(&project.model)
                    .map_err(|e| Failure::new(1, format!("rendering yaml: {e}")))?,
                "json" => {
                    let v: serde_json::Value = serde_norway::from_value(project.model.clone())
                        .map_err(|e| Failure::new(1, format!("rendering json: {e}")))?;
                    format!(
                        "{}\n",
                        serde_json::to_string_pretty(&v).expect("json serialises")
                    )
                }
                other => {
                    return Err(Failure::new(
                        1,
                        format!("unsupported format {other:?}: yaml or json"),
                    ))
                }
            };
            print!("{out}");
            Ok(0)
        }
    }
}

use berth_compose::load::Project;
use berth_compose::plan::{Action, Condition, Observed, Removal};
use berth_compose::service::{
    container_name, create_args, service_networks, HASH_LABEL, NETWORK_LABEL, NUMBER_LABEL,
    ONEOFF_LABEL, PROJECT_LABEL, SERVICE_LABEL, VOLUME_LABEL,
};
use berth_engine::containers::ContainerSummary;
use berth_engine::Engine;
use serde_norway::Value;

fn fail(msg: impl Into<String>) -> Failure {
    Failure::new(1, msg.into())
}

/// Docker Compose's progress lines, on stderr.
fn said(kind: &str, name: &str, what: &str) {
    eprintln!(" \u{2714} {kind} {name}  {what}");
}

/// The project's containers (all, or only running).
fn project_containers(e: &Engine, project: &str, all: bool) -> CliResult<Vec<ContainerSummary>> {
    Ok(e.list_containers(
        all,
        &[("label".into(), format!("{PROJECT_LABEL}={project}"))],
    )?)
}

/// Whether `c` is a one-off container (`compose run`), not a service's replica.
fn one_off(c: &ContainerSummary) -> bool {
    c.labels.get(ONEOFF_LABEL).map(String::as_str) == Some("True")
}

fn services_of(project: &Project) -> Vec<String> {
    berth_compose::plan::services(project)
}

/// `wanted` and (unless `no_deps`) what they depend on, dependencies first.
fn start_order(project: &Project, wanted: &[String], no_deps: bool) -> CliResult<Vec<String>> {
    berth_compose::plan::start_order(project, wanted, no_deps).map_err(fail)
}

/// Makes the project's networks and volumes that `services` use, if missing.
fn ensure_resources(e: &Engine, project: &Project, services: &[String]) -> CliResult<()> {
    let mut networks: Vec<String> = Vec::new();
    let mut volumes: Vec<String> = Vec::new();
    for s in services {
        let svc = &project.model["services"][s.as_str()];
        for k in svc
            .get("networks")
            .and_then(Value::as_mapping)
            .into_iter()
            .flat_map(|m| m.keys())
            .filter_map(Value::as_str)
        {
            if !networks.iter().any(|n| n == k) {
                networks.push(k.to_string());
            }
        }
        for v in svc
            .get("volumes")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            if v.get("type").and_then(Value::as_str) == Some("volume") {
                if let Some(src) = v.get("source").and_then(Value::as_str) {
                    if !volumes.iter().any(|x| x == src) {
                        volumes.push(src.to_string());
                    }
                }
            }
        }
    }
    for key in networks {
        let def = &project.model["networks"][key.as_str()];
        let name = berth_compose::service::resource_name(project, "networks", &key);
        let external = def.get("external").and_then(Value::as_bool) == Some(true);
        if e.find_network(&name).is_ok() {
            continue;
        }
        if external {
            return Err(fail(format!(
                "network {name} declared as external, but could not be found"
            )));
        }
        let ipam = def
            .get("ipam")
            .and_then(|i| i.get("config"))
            .and_then(|c| c.get(0));
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(String::from);
        let mut labels = string_map(def.get("labels"));
        labels.insert(PROJECT_LABEL.into(), project.name.clone());
        labels.insert(NETWORK_LABEL.into(), key.clone());
        let options = string_map(def.get("driver_opts"));
        e.create_network(&berth_engine::networks::NetworkCreate {
            name: name.clone(),
            driver: text(def.get("driver")),
            subnet: text(ipam.and_then(|c| c.get("subnet"))),
            gateway: text(ipam.and_then(|c| c.get("gateway"))),
            ip_range: text(ipam.and_then(|c| c.get("ip_range"))),
            internal: def.get("internal").and_then(Value::as_bool) == Some(true),
            labels,
            options,
        })?;
        said("Network", &name, "Created");
    }
    for key in volumes {
        let def = &project.model["volumes"][key.as_str()];
        let name = berth_compose::service::resource_name(project, "volumes", &key);
        let external = def.get("external").and_then(Value::as_bool) == Some(true);
        if e.list_volumes()?.iter().any(|v| v.name == name) {
            continue;
        }
        if external {
            return Err(fail(format!("external volume \"{name}\" not found")));
        }
        let mut labels = string_map(def.get("labels"));
        labels.insert(PROJECT_LABEL.to_string(), project.name.clone());
        labels.insert(VOLUME_LABEL.to_string(), key.clone());
        e.create_volume(&name, &labels, false)?;
        said("Volume", &name, "Created");
    }
    Ok(())
}

/// A mapping of scalars (labels, options; a `KEY=VALUE` list too) as strings.
fn string_map(v: Option<&Value>) -> std::collections::BTreeMap<String, String> {
    match v {
        Some(Value::Mapping(m)) => m
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    berth_compose::scalar_text(k)?,
                    berth_compose::scalar_text(v).unwrap_or_default(),
                ))
            })
            .collect(),
        Some(Value::Sequence(items)) => items
            .iter()
            .filter_map(berth_compose::scalar_text)
            .map(|l| match l.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (l, String::new()),
            })
            .collect(),
        _ => Default::default(),
    }
}

/// Builds `service`'s image if it has a `build` (with `extra` build flags); false when
/// it has none.
fn build_service(
    e: &Engine,
    project: &Project,
    service: &str,
    extra: &[String],
) -> CliResult<bool> {
    let Some(mut args) = berth_compose::service::build_args(project, service).map_err(fail)? else {
        return Ok(false);
    };
    let context = args.pop().expect("the context comes last");
    args.extend(extra.iter().cloned());
    args.push(context);
    eprintln!(" \u{2714} Service {service}  Building");
    crate::build::build_from_args(e, &args)?;
    said("Service", service, "Built");
    Ok(true)
}

/// Creates replica `n` of `service`, connects it to its other networks, starts it.
fn create_and_start(e: &Engine, project: &Project, service: &str, n: u32) -> CliResult<String> {
    let args = create_args(project, service, n).map_err(fail)?;
    let flags = crate::run::create_flags(&args)?;
    let spec = flags.checked_spec()?;
    crate::run::ensure_image(e, &flags)?;
    let (id, _) = e.create_container(spec).map_err(crate::run::run_failure)?;
    let name = container_name(project, service, n);
    said("Container", &name, "Created");
    let has_mode = project.model["services"][service]
        .get("network_mode")
        .is_some();
    if !has_mode {
        for (net, aliases, ip) in service_networks(project, service).into_iter().skip(1) {
            let req = berth_engine::networks::EndpointRequest {
                ip,
                mac: None,
                aliases,
            };
            e.connect_container(&net, &id, &req)?;
        }
    }
    e.start_container(&id, false)
        .map_err(crate::run::run_failure)?;
    said("Container", &name, "Started");
    Ok(id)
}

/// Waits until `service`'s containers meet `condition` (service_healthy,
/// service_completed_successfully; service_started is met once they started).
fn wait_for(
    e: &Engine,
    project: &Project,
    service: &str,
    condition: Condition,
    timeout: std::time::Duration,
) -> CliResult<()> {
    if condition == Condition::Started {
        return Ok(());
    }
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let mine: Vec<ContainerSummary> = project_containers(e, &project.name, true)?
            .into_iter()
            .filter(|c| c.labels.get(SERVICE_LABEL).map(String::as_str) == Some(service))
            .collect();
        let mut all_ok = !mine.is_empty();
        for c in &mine {
            let st = e.container_state(&c.id)?;
            let name = c.names.trim_start_matches('/');
            match condition {
                Condition::Healthy => {
                    let health = st.health.as_ref().map(|h| h.status.as_str());
                    if health.is_none() {
                        return Err(fail(format!(
                            "dependency failed to start: container {name} has no healthcheck configured"
                        )));
                    }
                    if health == Some("unhealthy") {
                        return Err(fail(format!(
                            "dependency failed to start: container {name} is unhealthy"
                        )));
                    }
                    if !st.status.is_active() {
                        return Err(fail(format!(
                            "dependency failed to start: container {name} exited ({})",
                            st.exit_code
                        )));
                    }
                    all_ok &= health == Some("healthy");
                }
                Condition::CompletedSuccessfully => {
                    if st.status.is_active() {
                        all_ok = false;
                    } else if st.exit_code != 0 {
                        return Err(fail(format!(
                            "service \"{service}\" didn't complete successfully: exit {}",
                            st.exit_code
                        )));
                    }
                }
                Condition::Started => {}
            }
        }
        if all_ok {
            if condition == Condition::Healthy {
                for c in &mine {
                    said("Container", c.names.trim_start_matches('/'), "Healthy");
                }
            }
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            let what = match condition {
                Condition::Healthy => "healthy",
                _ => "completed_successfully",
            };
            return Err(fail(format!(
                "timed out waiting for service {service} to be {what}"
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// What the engine has of the project: its containers and the services' image ids.
fn observe(e: &Engine, project: &Project, services: &[String]) -> CliResult<Observed> {
    let mut observed = Observed::default();
    for c in project_containers(e, &project.name, true)? {
        let label = |k: &str| c.labels.get(k).cloned();
        observed.containers.push(berth_compose::plan::Container {
            id: c.id.clone(),
            name: c.names.trim_start_matches('/').to_string(),
            service: label(SERVICE_LABEL).unwrap_or_default(),
            number: label(NUMBER_LABEL).and_then(|n| n.parse().ok()),
            config_hash: label(HASH_LABEL),
            image_id: c.image_id.clone(),
            running: e.container_state(&c.id)?.status.is_active(),
            one_off: one_off(&c),
        });
    }
    // A container of an older image (rebuilt or pulled since) is made again too.
    for s in services {
        if let Some(id) = berth_compose::service::image_of(project, s)
            .ok()
            .and_then(|i| e.find_image(&i).ok())
        {
            observed.image_ids.insert(s.clone(), id.id.to_string());
        }
    }
    Ok(observed)
}

/// The engine as compose's plan acts on it, with Docker Compose's progress lines.
struct EngineTarget<'a> {
    e: &'a Engine,
    project: &'a Project,
    timeout: std::time::Duration,
}

impl berth_compose::plan::Target for EngineTarget<'_> {
    type Error = Failure;

    fn create(&mut self, service: &str, number: u32) -> CliResult<()> {
        create_and_start(self.e, self.project, service, number).map(drop)
    }

    fn start(&mut self, id: &str, name: &str) -> CliResult<()> {
        self.e
            .start_container(id, false)
            .map_err(crate::run::run_failure)?;
        said("Container", name, "Started");
        Ok(())
    }

    fn restart(&mut self, id: &str, name: &str) -> CliResult<()> {
        self.e.stop_container(id, None)?;
        self.e
            .start_container(id, false)
            .map_err(crate::run::run_failure)?;
        said("Container", name, "Restarted");
        Ok(())
    }

    fn remove(&mut self, id: &str, name: &str, why: Removal) -> CliResult<()> {
        self.e.remove_container(id, true, false)?;
        let what = match why {
            Removal::Recreate => "Recreate",
            Removal::Orphan | Removal::ScaledDown => "Removed",
        };
        said("Container", name, what);
        Ok(())
    }

    fn wait_for(&mut self, service: &str, condition: Condition) -> CliResult<()> {
        wait_for(self.e, self.project, service, condition, self.timeout)
    }

    fn note(&mut self, action: &Action) {
        match action {
            Action::Keep { name, .. } => said("Container", name, "Running"),
            Action::WarnOrphans { names } => eprintln!(
                "WARN[0000] Found orphan containers ([{}]) for this project. If you removed or renamed this service in your compose file, you can run this command with the --remove-orphans flag to clean it up.",
                names.join(" ")
            ),
            _ => {}
        }
    }
}

/// `up`: a reconcile. Each wanted service's containers are made to match its definition
/// (the config hash label): the same are left (started if stopped), the changed are
/// recreated, missing replicas made, extra ones removed; dependencies first, waiting
/// for the conditions they are named with.
fn up(cli: &crate::Cli, e: &Engine, project: &Project, a: &UpArgs) -> CliResult<u8> {
    if a.detach && a.abort_on_container_exit {
        return Err(fail(
            "--abort-on-container-exit and --detach are incompatible options",
        ));
    }
    let order = start_order(project, &a.services, a.no_deps)?;
    // Every service is checked before anything is made.
    for s in &order {
        create_args(project, s, 1).map_err(fail)?;
        berth_compose::service::build_args(project, s).map_err(fail)?;
    }
    // Images to build: all with --build, else the missing ones (never with --no-build).
    if !a.no_build {
        for s in &order {
            let image = berth_compose::service::image_of(project, s).map_err(fail)?;
            if a.build || e.find_image(&image).is_err() {
                build_service(e, project, s, &[])?;
            }
        }
    }
    ensure_resources(e, project, &order)?;
    let observed = observe(e, project, &order)?;
    let opts = berth_compose::plan::UpOptions {
        services: a.services.clone(),
        no_deps: a.no_deps,
        force_recreate: a.force_recreate,
        remove_orphans: a.remove_orphans,
    };
    let actions = berth_compose::plan::plan_up(project, &observed, &opts).map_err(fail)?;
    let timeout = std::time::Duration::from_secs(a.wait_timeout);
    berth_compose::plan::execute(
        &actions,
        &mut EngineTarget {
            e,
            project,
            timeout,
        },
    )?;
    if a.wait {
        for s in &order {
            let svc = &project.model["services"][s.as_str()];
            let condition = if svc.get("healthcheck").is_some() {
                Condition::Healthy
            } else {
                Condition::Started
            };
            wait_for(e, project, s, condition, timeout)?;
        }
    }
    if a.detach {
        return Ok(0);
    }
    // Attached: the services' logs until they have all stopped, or Ctrl-C (or, with
    // --abort-on-container-exit, one of them stopped); then the rest are stopped.
    interrupt::catch();
    let list = of_services(e, project, &order, true)?;
    let style = LogStyle {
        timestamps: false,
        color: !a.no_color && std::io::IsTerminal::is_terminal(&std::io::stdout()),
        prefix: !a.no_log_prefix,
    };
    let one_exited = || {
        a.abort_on_container_exit
            && list.iter().any(|c| {
                !e.container_state(&c.id)
                    .map(|s| s.status.is_active())
                    .unwrap_or(false)
            })
    };
    follow_logs(e, &list, "all", true, &style, &|| {
        interrupt::happened() || one_exited()
    })?;
    let running: Vec<ContainerSummary> = list
        .iter()
        .filter(|c| {
            e.container_state(&c.id)
                .map(|s| s.status.is_active())
                .unwrap_or(false)
        })
        .cloned()
        .collect();
    if !running.is_empty() {
        eprintln!("Gracefully stopping... (press Ctrl+C again to force)");
        stop_all(cli, &running, None);
    }
    Ok(if interrupt::happened() { 130 } else { 0 })
}

/// Ctrl-C (and SIGTERM) while `up` follows the logs: noted, not fatal.
mod interrupt {
    use std::sync::atomic::{AtomicBool, Ordering};

    static SEEN: AtomicBool = AtomicBool::new(false);

    extern "C" fn note(_: libc::c_int) {
        SEEN.store(true, Ordering::SeqCst);
    }

    pub fn catch() {
        use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
        let action = SigAction::new(SigHandler::Handler(note), SaFlags::empty(), SigSet::empty());
        for sig in [Signal::SIGINT, Signal::SIGTERM] {
            // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
            unsafe {
                let _ = sigaction(sig, &action);
            }
        }
    }

    pub fn happened() -> bool {
        SEEN.load(Ordering::SeqCst)
    }
}

/// `down`: the project's containers stopped (all at once) and removed, then its
/// networks, and with `-v` its volumes.
fn down(
    cli: &crate::Cli,
    e: &Engine,
    project: &Project,
    volumes: bool,
    remove_orphans: bool,
    timeout: Option<i64>,
) -> CliResult<u8> {
    let known = services_of(project);
    let containers: Vec<ContainerSummary> = project_containers(e, &project.name, true)?
        .into_iter()
        .filter(|c| {
            remove_orphans
                || c.labels
                    .get(SERVICE_LABEL)
                    .is_some_and(|s| known.contains(s))
        })
        .collect();
    // Stopped in parallel: services that ignore SIGTERM cost one grace period, not one
    // each.
    stop_all(cli, &containers, timeout);
    for c in &containers {
        e.remove_container(&c.id, true, false)?;
        said("Container", c.names.trim_start_matches('/'), "Removed");
    }
    let left: Vec<String> = project_containers(e, &project.name, true)?
        .iter()
        .map(|c| c.names.trim_start_matches('/').to_string())
        .collect();
    if !left.is_empty() {
        eprintln!(
            "WARN[0000] Found orphan containers ([{}]) for this project. If you removed or renamed this service in your compose file, you can run this command with the --remove-orphans flag to clean it up.",
            left.join(" ")
        );
    }
    for n in e.list_networks()? {
        if n.labels.get(PROJECT_LABEL) != Some(&project.name) {
            continue;
        }
        if !left.is_empty() {
            eprintln!(
                "WARN[0000] network {} is kept: the orphan containers are on it",
                n.name
            );
            continue;
        }
        e.remove_network(&n.id)?;
        said("Network", &n.name, "Removed");
    }
    if volumes {
        for v in e.list_volumes()? {
            if v.labels.get(PROJECT_LABEL) == Some(&project.name) {
                e.remove_volume(&v.name, false)?;
                said("Volume", &v.name, "Removed");
            }
        }
    }
    Ok(0)
}

/// `ps`: the project's containers, as Docker Compose lists them.
fn ps(
    e: &Engine,
    project: &Project,
    all: bool,
    quiet: bool,
    format: Option<&str>,
    services: bool,
    only: &[String],
) -> CliResult<u8> {
    let mut list: Vec<ContainerSummary> = project_containers(e, &project.name, all)?
        .into_iter()
        .filter(|c| {
            only.is_empty()
                || c.labels
                    .get(SERVICE_LABEL)
                    .is_some_and(|s| only.contains(s))
        })
        .collect();
    list.sort_by(|a, b| a.names.cmp(&b.names));
    if quiet {
        for c in &list {
            println!("{}", c.id);
        }
        return Ok(0);
    }
    if services {
        let s: std::collections::BTreeSet<&String> = list
            .iter()
            .filter_map(|c| c.labels.get(SERVICE_LABEL))
            .collect();
        for x in s {
            println!("{x}");
        }
        return Ok(0);
    }
    let rows: Vec<serde_json::Value> = list
        .iter()
        .map(|c| {
            serde_json::json!({
                "ID": c.id,
                "Name": c.names.trim_start_matches('/'),
                "Image": c.image,
                "Command": format!("\"{}\"", c.command),
                "Project": project.name,
                "Service": c.labels.get(SERVICE_LABEL).cloned().unwrap_or_default(),
                "Created": c.created_text(),
                "State": c.state,
                "Status": c.status,
                "Ports": c.ports_text(),
                "Labels": c.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
                "ExitCode": c.exit_code,
            })
        })
        .collect();
    match format.unwrap_or("table") {
        "json" => {
            for r in &rows {
                println!("{r}");
            }
        }
        "table" => {
            let body: Vec<Vec<String>> = rows
                .iter()
                .zip(&list)
                .map(|(r, c)| {
                    let cell = |k: &str| r[k].as_str().unwrap_or_default().to_string();
                    vec![
                        cell("Name"),
                        cell("Image"),
                        cell("Command"),
                        cell("Service"),
                        crate::format::ago(&c.created_text()),
                        cell("Status"),
                        cell("Ports"),
                    ]
                })
                .collect();
            print!(
                "{}",
                crate::format::table(
                    &["NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS", "PORTS"],
                    &body
                )
            );
        }
        other => return Err(fail(format!("unsupported format {other:?}: table or json"))),
    }
    Ok(0)
}

/// `services`, checked, or every service when empty.
fn selected(project: &Project, services: &[String]) -> CliResult<Vec<String>> {
    let known = services_of(project);
    for s in services {
        if !known.contains(s) {
            return Err(fail(format!("no such service: {s}")));
        }
    }
    Ok(if services.is_empty() {
        known
    } else {
        services.to_vec()
    })
}

/// The project's containers of `services` (all when empty), sorted by name.
fn of_services(
    e: &Engine,
    project: &Project,
    services: &[String],
    all: bool,
) -> CliResult<Vec<ContainerSummary>> {
    let known = services_of(project);
    for s in services {
        if !known.contains(s) {
            return Err(fail(format!("no such service: {s}")));
        }
    }
    let mut list: Vec<ContainerSummary> = project_containers(e, &project.name, all)?
        .into_iter()
        .filter(|c| !one_off(c))
        .filter(|c| {
            c.labels.get(SERVICE_LABEL).is_some_and(|s| {
                if services.is_empty() {
                    known.contains(s)
                } else {
                    services.contains(s)
                }
            })
        })
        .collect();
    list.sort_by(|a, b| a.names.cmp(&b.names));
    Ok(list)
}

/// The id of replica `index` of `service`.
fn replica(
    e: &Engine,
    project: &Project,
    service: &str,
    index: u32,
    running: bool,
) -> CliResult<String> {
    let list = of_services(e, project, &[service.to_string()], !running)?;
    list.into_iter()
        .find(|c| c.labels.get(NUMBER_LABEL).map(String::as_str) == Some(&index.to_string()))
        .map(|c| c.id)
        .ok_or_else(|| {
            fail(format!(
                "service \"{service}\" is not running container #{index}"
            ))
        })
}

/// Starts `list`, one after the other.
fn start_each(e: &Engine, list: &[ContainerSummary]) -> CliResult<u8> {
    for c in list {
        e.start_container(&c.id, false)
            .map_err(crate::run::run_failure)?;
        said("Container", c.names.trim_start_matches('/'), "Started");
    }
    Ok(0)
}

/// Stops `list` all at once (a thread and an engine each).
fn stop_all(cli: &crate::Cli, list: &[ContainerSummary], timeout: Option<i64>) {
    let threads: Vec<std::thread::JoinHandle<Result<(), String>>> = list
        .iter()
        .map(|c| {
            let (root, run_root, id) = (cli.root.clone(), cli.run_root.clone(), c.id.clone());
            std::thread::spawn(move || {
                let e = crate::open_engine(&root, &run_root).map_err(|f| f.message)?;
                e.stop_container(&id, timeout)
                    .map_err(|err| err.to_string())
            })
        })
        .collect();
    for (c, t) in list.iter().zip(threads) {
        let name = c.names.trim_start_matches('/');
        match t.join() {
            Ok(Ok(())) => said("Container", name, "Stopped"),
            Ok(Err(err)) => eprintln!("Error: stopping {name}: {err}"),
            Err(_) => eprintln!("Error: stopping {name}: the thread panicked"),
        }
    }
}

/// How `logs` prints lines.
struct LogStyle {
    timestamps: bool,
    color: bool,
    prefix: bool,
}

/// The prefix colours Docker Compose cycles through.
const COLORS: [&str; 6] = ["36", "33", "32", "35", "34", "31"];

/// Prints the logs of `list`, each line prefixed `NAME  | ` (coloured per container on
/// a terminal): what is there (the last `tail` of each), in time order, then with
/// `follow` what comes, until every container has stopped or `stop()` says so.
fn follow_logs(
    e: &Engine,
    list: &[ContainerSummary],
    tail: &str,
    follow: bool,
    style: &LogStyle,
    stop: &dyn Fn() -> bool,
) -> CliResult<u8> {
    use std::io::Write;
    let tail: Option<usize> = if tail == "all" || tail == "-1" {
        None
    } else {
        Some(
            tail.parse()
                .map_err(|_| fail(format!("invalid tail value: {tail}")))?,
        )
    };
    let width = list
        .iter()
        .map(|c| c.names.trim_start_matches('/').len())
        .max()
        .unwrap_or(0);
    let prefix = |i: usize, c: &ContainerSummary| -> String {
        if !style.prefix {
            return String::new();
        }
        let name = format!("{:width$}", c.names.trim_start_matches('/'));
        if style.color {
            format!("\x1b[{}m{name}  |\x1b[0m ", COLORS[i % COLORS.len()])
        } else {
            format!("{name}  | ")
        }
    };
    let print =
        |out: &mut dyn Write, p: &str, l: &berth_engine::logs::LogLine| -> std::io::Result<()> {
            out.write_all(p.as_bytes())?;
            if style.timestamps {
                write!(out, "{} ", l.time)?;
            }
            out.write_all(l.log.as_bytes())?;
            if !l.log.ends_with('\n') {
                out.write_all(b"\n")?;
            }
            Ok(())
        };
    let paths: Vec<std::path::PathBuf> = list
        .iter()
        .map(|c| e.container_dir(&c.id).join("log.json"))
        .collect();
    let mut followers = Vec::new();
    let mut first: Vec<(String, usize, berth_engine::logs::LogLine)> = Vec::new();
    for (i, p) in paths.iter().enumerate() {
        let (mut lines, follower) = berth_engine::logs::Follower::open(p)?;
        if let Some(n) = tail {
            let skip = lines.len().saturating_sub(n);
            lines.drain(..skip);
        }
        followers.push(follower);
        first.extend(lines.into_iter().map(|l| (l.time.clone(), i, l)));
    }
    first.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = std::io::stdout().lock();
    for (_, i, l) in &first {
        print(&mut out, &prefix(*i, &list[*i]), l)?;
    }
    out.flush()?;
    if !follow {
        return Ok(0);
    }
    loop {
        let mut any_running = false;
        for i in 0..paths.len() {
            // The state is read first, so what a container wrote before it stopped is
            // read below before the loop ends.
            any_running |= e
                .container_state(&list[i].id)
                .map(|s| s.status.is_active())
                .unwrap_or(false);
            if let Ok(new) = followers[i].read_new() {
                for l in &new {
                    print(&mut out, &prefix(i, &list[i]), l)?;
                }
            }
        }
        out.flush()?;
        if !any_running || stop() {
            return Ok(0);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// `ls`: the projects that have containers here, from their labels.
fn ls(e: &Engine, all: bool, quiet: bool, format: Option<&str>) -> CliResult<u8> {
    let mut projects: std::collections::BTreeMap<
        String,
        (std::collections::BTreeMap<String, usize>, String),
    > = std::collections::BTreeMap::new();
    for c in e.list_containers(true, &[("label".into(), PROJECT_LABEL.into())])? {
        let Some(p) = c.labels.get(PROJECT_LABEL) else {
            continue;
        };
        let entry = projects.entry(p.clone()).or_default();
        *entry.0.entry(c.state.as_str().to_string()).or_default() += 1;
        if let Some(f) = c.labels.get("com.docker.compose.project.config_files") {
            entry.1 = f.clone();
        }
    }
    let rows: Vec<(String, String, String)> = projects
        .into_iter()
        .filter(|(_, (states, _))| all || states.contains_key("running"))
        .map(|(name, (states, files))| {
            let status = states
                .iter()
                .map(|(s, n)| format!("{s}({n})"))
                .collect::<Vec<_>>()
                .join(", ");
            (name, status, files)
        })
        .collect();
    if quiet {
        for (n, _, _) in &rows {
            println!("{n}");
        }
        return Ok(0);
    }
    match format.unwrap_or("table") {
        "json" => {
            let v: Vec<serde_json::Value> = rows
                .iter()
                .map(|(n, s, f)| serde_json::json!({"Name": n, "Status": s, "ConfigFiles": f}))
                .collect();
            println!("{}", serde_json::to_string(&v).expect("json serialises"));
        }
        "table" => {
            let body: Vec<Vec<String>> = rows
                .iter()
                .map(|(n, s, f)| vec![n.clone(), s.clone(), f.clone()])
                .collect();
            print!(
                "{}",
                crate::format::table(&["NAME", "STATUS", "CONFIG FILES"], &body)
            );
        }
        other => return Err(fail(format!("unsupported format {other:?}: table or json"))),
    }
    Ok(0)
}
