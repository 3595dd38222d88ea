//! `volume …`.

use super::*;

#[derive(Subcommand)]
pub enum VolumeCmd {
    /// Create a volume
    Create {
        #[arg(short = 'l', long = "label")]
        labels: Vec<String>,
        /// Volume driver name (only "local")
        #[arg(short = 'd', long, default_value = "local")]
        driver: String,
        /// Set driver specific options
        #[arg(short = 'o', long = "opt")]
        opts: Vec<String>,
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

pub(super) fn volume(engine: &Engine, cmd: &VolumeCmd) -> CliResult<u8> {
    match cmd {
        VolumeCmd::Create {
            labels,
            driver,
            opts,
            name,
        } => {
            let v = engine.create_volume(&berth_engine::specs::VolumeSpec {
                name: name.clone(),
                driver: driver.clone(),
                driver_opts: crate::network::key_values(opts),
                labels: crate::network::key_values(labels),
            })?;
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
