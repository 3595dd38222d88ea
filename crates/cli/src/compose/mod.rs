//! `berth compose`: multi-container applications from a compose file.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use berth_compose::container::{container_spec, OneOff};
use berth_compose::load::Project;
use berth_compose::plan::{Action, Condition, Observed, Removal};
use berth_compose::service::{
    container_name, service_networks, HASH_LABEL, NUMBER_LABEL, ONEOFF_LABEL, PROJECT_LABEL,
    SERVICE_LABEL,
};

use berth_engine::containers::ContainerSummary;
use berth_engine::specs::ContainerSpec;
use berth_engine::Engine;
use serde_norway::Value;

use crate::{CliResult, Failure};

mod down;
mod logs;
mod ps;
mod up;

use down::*;
use logs::*;
use ps::*;
use up::*;

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
            let flags = BuildFlags {
                no_cache: *no_cache,
                pull: *pull,
                quiet: *quiet,
            };
            for s in &wanted {
                build_service(&e, &project, s, flags)?;
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
                build_service(&e, &project, service, BuildFlags::default())?;
            }
            let oneoff = OneOff {
                name: name.clone().unwrap_or_else(|| {
                    format!(
                        "{}-{service}-run-{}",
                        project.name,
                        &berth_engine::names::new_id()[..12]
                    )
                }),
                command: (rest.len() > 1).then(|| rest[1..].to_vec()),
                service_ports: *service_ports,
            };
            let mut spec = container_spec(&project, service, 1, Some(&oneoff)).map_err(fail)?;
            // `run`'s own options, over the service's.
            spec.config.env.extend(
                env.iter()
                    .filter_map(|e| berth_engine::specs::parse::env_entry(e)),
            );
            for l in label {
                let (k, v) = l.split_once('=').unwrap_or((l, ""));
                spec.config.labels.insert(k.into(), v.into());
            }
            let ports = berth_engine::specs::container::parse_publish(publish)
                .map_err(crate::run::run_failure)?;
            for (port, bindings) in ports {
                spec.host_config
                    .port_bindings
                    .entry(port)
                    .or_default()
                    .extend(bindings);
            }
            if let Some(w) = workdir {
                spec.config.working_dir = w.clone();
            }
            if let Some(u) = user {
                spec.config.user = u.clone();
            }
            if let Some(ep) = entrypoint {
                spec.entrypoint = Some(if ep.is_empty() {
                    vec![]
                } else {
                    vec![ep.clone()]
                });
            }
            spec.host_config.auto_remove = *rm;
            if !*detach {
                let c = &mut spec.config;
                (c.attach_stdin, c.open_stdin, c.stdin_once) = (true, true, true);
                c.tty = !*no_tty && std::io::IsTerminal::is_terminal(&std::io::stdin());
            }
            spec.validate().map_err(crate::run::run_failure)?;
            crate::run::run(&e, spec, "missing", None, *detach)
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
