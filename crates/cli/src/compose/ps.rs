//! `ps` and `ls`: the project's containers, and the projects on this engine.

use super::*;

/// `ps`: the project's containers, as Docker Compose lists them.
pub(super) fn ps(
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

/// `ls`: the projects that have containers here, from their labels.
pub(super) fn ls(e: &Engine, all: bool, quiet: bool, format: Option<&str>) -> CliResult<u8> {
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
