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

/// The commands not implemented yet take any arguments and say so.
#[derive(Args, Debug)]
pub struct NotYet {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub args: Vec<String>,
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
    Up(NotYet),
    /// Stop and remove containers, networks
    Down(NotYet),
    /// List containers
    Ps(NotYet),
    /// View output from containers
    Logs(NotYet),
    /// Execute a command in a running container
    Exec(NotYet),
    /// Run a one-off command on a service
    Run(NotYet),
    /// Build or rebuild services
    Build(NotYet),
    /// Pull service images
    Pull(NotYet),
    /// Push service images
    Push(NotYet),
    /// Start services
    Start(NotYet),
    /// Stop services
    Stop(NotYet),
    /// Restart service containers
    Restart(NotYet),
    /// Force stop service containers
    Kill(NotYet),
    /// Removes stopped service containers
    Rm(NotYet),
    /// Display the running processes
    Top(NotYet),
    /// List images used by the created containers
    Images(NotYet),
    /// Print the public port for a port binding
    Port(NotYet),
    /// List running compose projects
    Ls(NotYet),
}

impl ComposeCmd {
    fn name(&self) -> &'static str {
        match self {
            ComposeCmd::Config { .. } => "config",
            ComposeCmd::Up(_) => "up",
            ComposeCmd::Down(_) => "down",
            ComposeCmd::Ps(_) => "ps",
            ComposeCmd::Logs(_) => "logs",
            ComposeCmd::Exec(_) => "exec",
            ComposeCmd::Run(_) => "run",
            ComposeCmd::Build(_) => "build",
            ComposeCmd::Pull(_) => "pull",
            ComposeCmd::Push(_) => "push",
            ComposeCmd::Start(_) => "start",
            ComposeCmd::Stop(_) => "stop",
            ComposeCmd::Restart(_) => "restart",
            ComposeCmd::Kill(_) => "kill",
            ComposeCmd::Rm(_) => "rm",
            ComposeCmd::Top(_) => "top",
            ComposeCmd::Images(_) => "images",
            ComposeCmd::Port(_) => "port",
            ComposeCmd::Ls(_) => "ls",
        }
    }
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

/// The names under top-level `section`, one per line.
fn names(model: &serde_norway::Value, section: &str) -> String {
    model
        .get(section)
        .and_then(serde_norway::Value::as_mapping)
        .map(|m| {
            m.keys()
                .filter_map(serde_norway::Value::as_str)
                .map(|k| format!("{k}\n"))
                .collect()
        })
        .unwrap_or_default()
}

pub fn compose(args: &ComposeArgs) -> CliResult<u8> {
    match &args.cmd {
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
                print!("{}", names(&project.model, section));
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
        other => Err(Failure::new(
            1,
            format!("berth compose {} is not implemented yet", other.name()),
        )),
    }
}
