//! `berth network`: Docker's network commands over the engine's networks.

use std::collections::BTreeMap;

use berth_engine::specs::NetworkSpec;
use berth_engine::Engine;
use clap::Subcommand;

use crate::format::{table, Format};
use crate::output::{confirm, each, print_inspect};
use crate::CliResult;

#[derive(Subcommand)]
pub enum NetworkCmd {
    /// Create a network
    Create {
        /// Driver to manage the Network (bridge)
        #[arg(short = 'd', long)]
        driver: Option<String>,
        /// Subnet in CIDR format that represents a network segment
        #[arg(long)]
        subnet: Option<String>,
        /// IPv4 Gateway for the master subnet
        #[arg(long)]
        gateway: Option<String>,
        /// Allocate container ip from a sub-range
        #[arg(long = "ip-range")]
        ip_range: Option<String>,
        /// Restrict external access to the network
        #[arg(long)]
        internal: bool,
        /// Enable or disable IPv6 networking
        #[arg(long)]
        ipv6: bool,
        /// Set metadata on a network
        #[arg(long = "label")]
        labels: Vec<String>,
        /// Set driver specific options
        #[arg(short = 'o', long = "opt")]
        options: Vec<String>,
        name: String,
    },
    /// List networks
    #[command(visible_alias = "list")]
    Ls {
        /// Only display network IDs
        #[arg(short = 'q', long)]
        quiet: bool,
        /// Do not truncate the output
        #[arg(long = "no-trunc")]
        no_trunc: bool,
        /// Format output using a custom template
        #[arg(long)]
        format: Option<String>,
    },
    /// Display detailed information on one or more networks
    Inspect {
        #[arg(short = 'f', long)]
        format: Option<String>,
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove one or more networks
    #[command(visible_alias = "remove")]
    Rm {
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove all unused networks
    Prune {
        /// Do not prompt for confirmation
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// Connect a container to a network
    Connect {
        /// Add network-scoped alias for the container
        #[arg(long = "alias")]
        aliases: Vec<String>,
        /// IPv4 address (e.g., 172.30.100.104)
        #[arg(long)]
        ip: Option<String>,
        network: String,
        container: String,
    },
    /// Disconnect a container from a network
    Disconnect {
        /// Force the container to disconnect from a network
        #[arg(short = 'f', long)]
        force: bool,
        network: String,
        container: String,
    },
}

/// `KEY=VALUE` flags (`--label`, `--opt`) as a map; a bare `KEY` has an empty value.
pub fn key_values(list: &[String]) -> BTreeMap<String, String> {
    list.iter()
        .map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .unwrap_or((l.clone(), String::new()))
        })
        .collect()
}

pub fn network(engine: &Engine, cmd: &NetworkCmd) -> CliResult<u8> {
    match cmd {
        NetworkCmd::Create {
            driver,
            subnet,
            gateway,
            ip_range,
            internal,
            ipv6,
            labels,
            options,
            name,
        } => {
            let id = engine.create_network(&NetworkSpec {
                name: name.clone(),
                driver: driver.clone(),
                subnet: subnet.clone(),
                gateway: gateway.clone(),
                ip_range: ip_range.clone(),
                internal: *internal,
                ipv6: *ipv6,
                labels: key_values(labels),
                options: key_values(options),
            })?;
            println!("{id}");
        }
        NetworkCmd::Ls {
            quiet,
            no_trunc,
            format,
        } => {
            let mut rows: Vec<(String, String, String)> = engine
                .list_networks()?
                .into_iter()
                .map(|n| (n.id, n.name, n.driver))
                .collect();
            for (name, driver) in [("host", "host"), ("none", "null")] {
                rows.push((engine.builtin_network_id(name), name.into(), driver.into()));
            }
            let id = |i: &str| {
                if *no_trunc {
                    i.to_string()
                } else {
                    i[..12].to_string()
                }
            };
            if *quiet {
                for (i, _, _) in &rows {
                    println!("{}", id(i));
                }
                return Ok(0);
            }
            let items: Vec<serde_json::Value> = rows
                .iter()
                .map(|(i, n, d)| serde_json::json!({"ID": id(i), "Name": n, "Driver": d, "Scope": "local"}))
                .collect();
            match Format::parse(format.as_deref())? {
                Format::Table => {
                    let body: Vec<Vec<String>> = rows
                        .iter()
                        .map(|(i, n, d)| vec![id(i), n.clone(), d.clone(), "local".into()])
                        .collect();
                    print!(
                        "{}",
                        table(&["NETWORK ID", "NAME", "DRIVER", "SCOPE"], &body)
                    );
                }
                f => print!(
                    "{}",
                    f.render_list(&items, &[("ID", "NETWORK ID"), ("Name", "NAME")])?
                ),
            }
        }
        NetworkCmd::Inspect { format, networks } => {
            let mut vals = Vec::new();
            for n in networks {
                vals.push(crate::output::json(engine.inspect_network(n)?));
            }
            print_inspect(vals, format.as_deref())?;
        }
        NetworkCmd::Rm { networks } => {
            return each(networks, |n| engine.remove_network(n).map(|_| ()));
        }
        NetworkCmd::Prune { force } => {
            if !confirm(
                *force,
                "WARNING! This will remove all custom networks not used by at least one container.",
            )? {
                return Ok(0);
            }
            let removed = engine.prune_networks()?;
            if !removed.is_empty() {
                println!("Deleted Networks:");
                for n in removed {
                    println!("{n}");
                }
            }
        }
        NetworkCmd::Connect {
            aliases,
            ip,
            network,
            container,
        } => {
            let req = berth_engine::networks::EndpointRequest {
                ip: ip.clone(),
                mac: None,
                aliases: aliases.clone(),
            };
            engine.connect_container(network, container, &req)?;
        }
        // `-f` is accepted: an endpoint whose container is gone is removed either way.
        NetworkCmd::Disconnect {
            force: _,
            network,
            container,
        } => engine.disconnect_container(network, container)?,
    }
    Ok(0)
}
