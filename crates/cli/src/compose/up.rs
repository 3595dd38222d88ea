//! `up`: images built, networks and volumes made, then the plan of `berth_compose::plan`
//! carried out against the engine, with Docker Compose's progress lines.

use super::*;

/// Makes the project's networks and volumes that `services` use, if missing.
pub(super) fn ensure_resources(
    e: &Engine,
    project: &Project,
    services: &[String],
) -> CliResult<()> {
    let (networks, volumes) = berth_compose::service::resources_of(project, services);
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
        e.create_network(&berth_compose::service::network_spec(project, &key))?;
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
        e.create_volume(&berth_compose::service::volume_spec(project, &key))?;
        said("Volume", &name, "Created");
    }
    Ok(())
}

/// How `compose build` asks for a service's image to be built.
#[derive(Default, Clone, Copy)]
pub(super) struct BuildFlags {
    pub no_cache: bool,
    pub pull: bool,
    pub quiet: bool,
}

/// Builds `service`'s image if it has a `build`; false when it has none.
pub(super) fn build_service(
    e: &Engine,
    project: &Project,
    service: &str,
    flags: BuildFlags,
) -> CliResult<bool> {
    let Some(mut spec) = berth_compose::service::build_spec(project, service).map_err(fail)? else {
        return Ok(false);
    };
    spec.no_cache = flags.no_cache;
    spec.pull = flags.pull;
    eprintln!(" \u{2714} Service {service}  Building");
    let id = crate::build::run_build(e, &spec, flags.quiet)?;
    if flags.quiet {
        println!("{id}");
    }
    said("Service", service, "Built");
    Ok(true)
}

/// The create request of replica `n` of `service` (or a one-off container), checked
/// by the engine's rules.
pub(super) fn checked_spec(
    project: &Project,
    service: &str,
    n: u32,
    oneoff: Option<&OneOff>,
) -> CliResult<ContainerSpec> {
    let spec = container_spec(project, service, n, oneoff).map_err(fail)?;
    spec.validate()
        .map_err(|e| fail(format!("services.{service}: {e}")))?;
    Ok(spec)
}

/// Creates replica `n` of `service`, connects it to its other networks, starts it.
pub(super) fn create_and_start(
    e: &Engine,
    project: &Project,
    service: &str,
    n: u32,
) -> CliResult<String> {
    let spec = checked_spec(project, service, n, None)?;
    crate::run::ensure_image(e, &spec.image, "missing", None)?;
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
pub(super) fn wait_for(
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
        let mut mine = Vec::new();
        for c in project_containers(e, &project.name, true)?
            .into_iter()
            .filter(|c| c.labels.get(SERVICE_LABEL).map(String::as_str) == Some(service))
        {
            let st = e.container_state(&c.id)?;
            mine.push(berth_compose::plan::Waiting {
                name: c.names.trim_start_matches('/').to_string(),
                running: st.status.is_active(),
                exit_code: st.exit_code,
                health: st.health.map(|h| h.status),
            });
        }
        if berth_compose::plan::condition_met(service, condition, &mine).map_err(fail)? {
            if condition == Condition::Healthy {
                for c in &mine {
                    said("Container", &c.name, "Healthy");
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
pub(super) fn observe(e: &Engine, project: &Project, services: &[String]) -> CliResult<Observed> {
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
pub(super) struct EngineTarget<'a> {
    pub(super) e: &'a Engine,
    pub(super) project: &'a Project,
    pub(super) timeout: std::time::Duration,
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
pub(super) fn up(cli: &crate::Cli, e: &Engine, project: &Project, a: &UpArgs) -> CliResult<u8> {
    if a.detach && a.abort_on_container_exit {
        return Err(fail(
            "--abort-on-container-exit and --detach are incompatible options",
        ));
    }
    let order = start_order(project, &a.services, a.no_deps)?;
    // Every service is checked before anything is made.
    for s in &order {
        checked_spec(project, s, 1, None)?;
        berth_compose::service::build_spec(project, s).map_err(fail)?;
    }
    // Images to build: all with --build, else the missing ones (never with --no-build).
    if !a.no_build {
        for s in &order {
            let image = berth_compose::service::image_of(project, s).map_err(fail)?;
            if a.build || e.find_image(&image).is_err() {
                build_service(e, project, s, BuildFlags::default())?;
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
pub(super) mod interrupt {
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
