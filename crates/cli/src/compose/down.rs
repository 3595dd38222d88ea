//! `down`: the project's containers stopped and removed, then its networks (and volumes).

use super::*;

/// `down`: the project's containers stopped (all at once) and removed, then its
/// networks, and with `-v` its volumes.
pub(super) fn down(
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
