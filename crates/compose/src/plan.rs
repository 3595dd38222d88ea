//! `up` as a plan: the project's services against the containers that exist, as a list
//! of actions, decided here and carried out by a front end through [`Target`].
//!
//! Planning is pure: it reads the normalised project and what the engine listed
//! ([`Observed`]) and touches nothing, so every rule (dependency order, `--no-deps`,
//! scaling, the config hash, images rebuilt since, orphans, restarts that dependents ask
//! for) is unit-tested without an engine.

use std::collections::BTreeMap;

use serde_norway::Value;

use crate::load::Project;
use crate::service;

/// A container of the project as the engine lists it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Container {
    pub id: String,
    /// Without the leading `/`.
    pub name: String,
    /// Its `com.docker.compose.service` label.
    pub service: String,
    /// Its `com.docker.compose.container-number` label.
    pub number: Option<u32>,
    /// Its `com.docker.compose.config-hash` label.
    pub config_hash: Option<String>,
    pub image_id: String,
    pub running: bool,
    /// Made by `compose run`: never a replica.
    pub one_off: bool,
}

/// What exists: the project's containers, and the id of each service's image where the
/// engine has it.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub containers: Vec<Container>,
    pub image_ids: BTreeMap<String, String>,
}

/// `up`'s flags that change the plan.
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// The services named (none: all).
    pub services: Vec<String>,
    pub no_deps: bool,
    pub force_recreate: bool,
    pub remove_orphans: bool,
}

/// A `depends_on` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    Started,
    Healthy,
    CompletedSuccessfully,
}

impl Condition {
    pub fn parse(s: &str) -> Result<Condition, String> {
        match s {
            "service_started" => Ok(Condition::Started),
            "service_healthy" => Ok(Condition::Healthy),
            "service_completed_successfully" => Ok(Condition::CompletedSuccessfully),
            other => Err(format!(
                "depends_on condition {other} is not implemented yet"
            )),
        }
    }
}

/// One step of `up`, in the order the steps are taken.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A container of a service the project no longer has (`--remove-orphans`).
    RemoveOrphan { id: String, name: String },
    /// Those containers, left alone and named in a warning.
    WarnOrphans { names: Vec<String> },
    /// Until `service`'s containers meet `condition`.
    WaitFor {
        service: String,
        condition: Condition,
    },
    /// Up to date and running.
    Keep { id: String, name: String },
    /// Up to date, stopped.
    Start { id: String, name: String },
    /// Up to date, but a dependency it asked to be restarted with was made or started.
    Restart { id: String, name: String },
    /// Out of date (definition or image): removed, and replica `number` made again.
    Recreate {
        id: String,
        name: String,
        service: String,
        number: u32,
    },
    /// Replica `number` is missing.
    Create { service: String, number: u32 },
    /// A replica past the service's scale.
    Remove { id: String, name: String },
}

/// What carries actions out: the engine, behind a front end.
pub trait Target {
    type Error;
    fn create(&mut self, service: &str, number: u32) -> Result<(), Self::Error>;
    fn start(&mut self, id: &str, name: &str) -> Result<(), Self::Error>;
    fn restart(&mut self, id: &str, name: &str) -> Result<(), Self::Error>;
    fn remove(&mut self, id: &str, name: &str, why: Removal) -> Result<(), Self::Error>;
    fn wait_for(&mut self, service: &str, condition: Condition) -> Result<(), Self::Error>;
    /// Told of what needs nothing done, or only a warning.
    fn note(&mut self, action: &Action);
}

/// Why a container goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    Orphan,
    Recreate,
    ScaledDown,
}

/// Carries `actions` out in order, stopping at the first failure.
pub fn execute<T: Target>(actions: &[Action], t: &mut T) -> Result<(), T::Error> {
    for a in actions {
        match a {
            Action::RemoveOrphan { id, name } => t.remove(id, name, Removal::Orphan)?,
            Action::WarnOrphans { .. } | Action::Keep { .. } => t.note(a),
            Action::WaitFor { service, condition } => t.wait_for(service, *condition)?,
            Action::Start { id, name } => t.start(id, name)?,
            Action::Restart { id, name } => t.restart(id, name)?,
            Action::Recreate {
                id,
                name,
                service,
                number,
            } => {
                t.remove(id, name, Removal::Recreate)?;
                t.create(service, *number)?;
            }
            Action::Create { service, number } => t.create(service, *number)?,
            Action::Remove { id, name } => t.remove(id, name, Removal::ScaledDown)?,
        }
    }
    Ok(())
}

/// The project's services, in the file's order.
pub fn services(project: &Project) -> Vec<String> {
    crate::mapping_keys(project.model.get("services"))
}

/// `service`'s `depends_on` entries: the service and its condition's name.
pub fn depends_on(project: &Project, service: &str) -> Vec<(String, String)> {
    project.model["services"][service]
        .get("depends_on")
        .and_then(Value::as_mapping)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| {
                    Some((
                        k.as_str()?.to_string(),
                        v.get("condition")
                            .and_then(Value::as_str)
                            .unwrap_or("service_started")
                            .to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `wanted` and (unless `no_deps`) what they depend on, dependencies first; all services
/// when `wanted` is empty.
pub fn start_order(
    project: &Project,
    wanted: &[String],
    no_deps: bool,
) -> Result<Vec<String>, String> {
    let all = services(project);
    if let Some(w) = wanted.iter().find(|w| !all.contains(w)) {
        return Err(format!("no such service: {w}"));
    }
    let roots = if wanted.is_empty() { &all } else { wanted };
    fn visit(p: &Project, all: &[String], s: &str, deps: bool, order: &mut Vec<String>) {
        if order.iter().any(|o| o == s) {
            return;
        }
        if deps {
            for (d, _) in depends_on(p, s) {
                if all.contains(&d) {
                    visit(p, all, &d, deps, order);
                }
            }
        }
        order.push(s.to_string());
    }
    let mut order = Vec::new();
    for r in roots {
        visit(project, &all, r, !no_deps, &mut order);
    }
    Ok(order)
}

/// `up`: each service in dependency order is brought to its definition. A replica whose
/// config hash and image are current is kept (started if stopped, restarted when a
/// dependency it names with `restart: true` was made or started by this plan); one out
/// of date is recreated; missing replicas are made and those past the scale removed.
pub fn plan_up(
    project: &Project,
    observed: &Observed,
    opts: &UpOptions,
) -> Result<Vec<Action>, String> {
    let order = start_order(project, &opts.services, opts.no_deps)?;
    let known = services(project);
    let replicas: Vec<&Container> = observed.containers.iter().filter(|c| !c.one_off).collect();
    let mut actions = Vec::new();
    let orphans: Vec<&&Container> = replicas
        .iter()
        .filter(|c| !c.service.is_empty() && !known.contains(&c.service))
        .collect();
    if opts.remove_orphans {
        actions.extend(orphans.iter().map(|c| Action::RemoveOrphan {
            id: c.id.clone(),
            name: c.name.clone(),
        }));
    } else if !orphans.is_empty() {
        actions.push(Action::WarnOrphans {
            names: orphans.iter().map(|c| c.name.clone()).collect(),
        });
    }
    // Services this plan makes or starts containers of.
    let mut changed: Vec<&str> = Vec::new();
    for s in &order {
        let deps = depends_on(project, s);
        for (dep, condition) in &deps {
            let condition = Condition::parse(condition)?;
            if order.contains(dep) && condition != Condition::Started {
                actions.push(Action::WaitFor {
                    service: dep.clone(),
                    condition,
                });
            }
        }
        let svc = &project.model["services"][s.as_str()];
        let restart_after = svc
            .get("depends_on")
            .and_then(Value::as_mapping)
            .is_some_and(|m| {
                m.iter().any(|(d, c)| {
                    c.get("restart").and_then(Value::as_bool) == Some(true)
                        && d.as_str().is_some_and(|d| changed.contains(&d))
                })
            });
        let scale = service::replicas(svc);
        let hash = service::config_hash(svc);
        let image_id = observed.image_ids.get(s.as_str());
        let mine: Vec<&&Container> = replicas.iter().filter(|c| c.service == *s).collect();
        let mut touched = false;
        for n in 1..=scale {
            let current = mine.iter().find(|c| c.number == Some(n));
            let action = match current {
                Some(c)
                    if !opts.force_recreate
                        && c.config_hash.as_deref() == Some(hash.as_str())
                        && image_id.is_none_or(|i| *i == c.image_id) =>
                {
                    let (id, name) = (c.id.clone(), c.name.clone());
                    match (c.running, restart_after) {
                        (true, true) => Action::Restart { id, name },
                        (true, false) => Action::Keep { id, name },
                        (false, _) => Action::Start { id, name },
                    }
                }
                Some(c) => Action::Recreate {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    service: s.clone(),
                    number: n,
                },
                None => Action::Create {
                    service: s.clone(),
                    number: n,
                },
            };
            touched |= !matches!(action, Action::Keep { .. });
            actions.push(action);
        }
        if touched {
            changed.push(s);
        }
        actions.extend(
            mine.iter()
                .filter(|c| c.number.is_some_and(|x| x > scale))
                .map(|c| Action::Remove {
                    id: c.id.clone(),
                    name: c.name.clone(),
                }),
        );
    }
    Ok(actions)
}

/// One container of a dependency as `up` sees it while it waits for a condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub name: String,
    pub running: bool,
    pub exit_code: i32,
    /// starting, healthy or unhealthy; None without a health check.
    pub health: Option<String>,
}

/// Whether `service`'s containers meet `condition`: `Ok(true)` met, `Ok(false)` not yet,
/// an error (Docker Compose's words) when it never will be. No container is not yet.
pub fn condition_met(
    service: &str,
    condition: Condition,
    containers: &[Waiting],
) -> Result<bool, String> {
    if condition == Condition::Started {
        return Ok(true);
    }
    let mut met = !containers.is_empty();
    for c in containers {
        let name = &c.name;
        match condition {
            Condition::Healthy => match c.health.as_deref() {
                None => {
                    return Err(format!(
                        "dependency failed to start: container {name} has no healthcheck configured"
                    ))
                }
                Some("unhealthy") => {
                    return Err(format!(
                        "dependency failed to start: container {name} is unhealthy"
                    ))
                }
                _ if !c.running => {
                    return Err(format!(
                        "dependency failed to start: container {name} exited ({})",
                        c.exit_code
                    ))
                }
                health => met &= health == Some("healthy"),
            },
            Condition::CompletedSuccessfully => {
                if c.running {
                    met = false;
                } else if c.exit_code != 0 {
                    return Err(format!(
                        "service \"{service}\" didn't complete successfully: exit {}",
                        c.exit_code
                    ));
                }
            }
            Condition::Started => {}
        }
    }
    Ok(met)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{load, Options};

    fn project(yaml: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("compose.yaml"), yaml).unwrap();
        load(&Options {
            project_name: Some("shop".into()),
            working_dir: dir.path().to_path_buf(),
            ..Default::default()
        })
        .unwrap()
    }

    fn hash(p: &Project, s: &str) -> String {
        service::config_hash(&p.model["services"][s])
    }

    fn container(p: &Project, service: &str, n: u32, running: bool) -> Container {
        Container {
            id: format!("{service}{n}"),
            name: format!("shop-{service}-{n}"),
            service: service.into(),
            number: Some(n),
            config_hash: Some(hash(p, service)),
            image_id: "sha256:img".into(),
            running,
            one_off: false,
        }
    }

    fn observed(containers: Vec<Container>) -> Observed {
        Observed {
            containers,
            image_ids: BTreeMap::new(),
        }
    }

    const WEB_DB: &str = concat!(
        "services:\n",
        "  web:\n    image: busybox\n    depends_on:\n      db:\n        condition: service_healthy\n",
        "  db:\n    image: busybox\n    healthcheck:\n      test: [CMD, 'true']\n",
    );

    #[test]
    fn an_empty_project_is_made_dependencies_first() {
        let p = project(WEB_DB);
        let plan = plan_up(&p, &observed(vec![]), &UpOptions::default()).unwrap();
        assert_eq!(
            plan,
            [
                Action::Create {
                    service: "db".into(),
                    number: 1
                },
                Action::WaitFor {
                    service: "db".into(),
                    condition: Condition::Healthy
                },
                Action::Create {
                    service: "web".into(),
                    number: 1
                },
            ]
        );
    }

    #[test]
    fn no_deps_leaves_dependencies_out() {
        let p = project(WEB_DB);
        let opts = UpOptions {
            services: vec!["web".into()],
            no_deps: true,
            ..Default::default()
        };
        let plan = plan_up(&p, &observed(vec![]), &opts).unwrap();
        assert_eq!(
            plan,
            [Action::Create {
                service: "web".into(),
                number: 1
            }]
        );
        let opts = UpOptions {
            services: vec!["nope".into()],
            ..Default::default()
        };
        assert_eq!(
            plan_up(&p, &observed(vec![]), &opts).unwrap_err(),
            "no such service: nope"
        );
    }

    #[test]
    fn current_containers_are_kept_or_started_and_changed_ones_recreated() {
        let p = project(WEB_DB);
        let mut web = container(&p, "web", 1, true);
        web.config_hash = Some("old".into());
        let db = container(&p, "db", 1, false);
        let plan = plan_up(&p, &observed(vec![web, db]), &UpOptions::default()).unwrap();
        assert_eq!(
            plan,
            [
                Action::Start {
                    id: "db1".into(),
                    name: "shop-db-1".into()
                },
                Action::WaitFor {
                    service: "db".into(),
                    condition: Condition::Healthy
                },
                Action::Recreate {
                    id: "web1".into(),
                    name: "shop-web-1".into(),
                    service: "web".into(),
                    number: 1
                },
            ]
        );
    }

    #[test]
    fn a_rebuilt_image_or_force_recreate_recreates() {
        let p = project("services:\n  web:\n    image: busybox\n");
        let mut o = observed(vec![container(&p, "web", 1, true)]);
        let keep = plan_up(&p, &o, &UpOptions::default()).unwrap();
        assert!(matches!(keep[..], [Action::Keep { .. }]), "{keep:?}");
        let force = UpOptions {
            force_recreate: true,
            ..Default::default()
        };
        let plan = plan_up(&p, &o, &force).unwrap();
        assert!(matches!(plan[..], [Action::Recreate { .. }]), "{plan:?}");
        o.image_ids.insert("web".into(), "sha256:new".into());
        let plan = plan_up(&p, &o, &UpOptions::default()).unwrap();
        assert!(matches!(plan[..], [Action::Recreate { .. }]), "{plan:?}");
    }

    #[test]
    fn scaling_makes_missing_replicas_and_removes_extra_ones() {
        let up = project("services:\n  web:\n    image: busybox\n    scale: 3\n");
        let o = observed(vec![container(&up, "web", 1, true)]);
        let plan = plan_up(&up, &o, &UpOptions::default()).unwrap();
        assert_eq!(
            plan[1..],
            [
                Action::Create {
                    service: "web".into(),
                    number: 2
                },
                Action::Create {
                    service: "web".into(),
                    number: 3
                },
            ]
        );
        let down = project("services:\n  web:\n    image: busybox\n");
        let o = observed(vec![
            container(&down, "web", 1, true),
            container(&down, "web", 2, true),
        ]);
        let plan = plan_up(&down, &o, &UpOptions::default()).unwrap();
        assert_eq!(
            plan[1..],
            [Action::Remove {
                id: "web2".into(),
                name: "shop-web-2".into()
            }]
        );
    }

    #[test]
    fn orphans_are_named_or_removed_and_one_offs_left_alone() {
        let p = project("services:\n  web:\n    image: busybox\n");
        let mut old = container(&p, "worker", 1, true);
        old.config_hash = None;
        let mut one_off = container(&p, "web", 1, false);
        one_off.one_off = true;
        one_off.id = "run1".into();
        let o = observed(vec![old, one_off]);
        let plan = plan_up(&p, &o, &UpOptions::default()).unwrap();
        assert_eq!(
            plan,
            [
                Action::WarnOrphans {
                    names: vec!["shop-worker-1".into()]
                },
                Action::Create {
                    service: "web".into(),
                    number: 1
                },
            ]
        );
        let opts = UpOptions {
            remove_orphans: true,
            ..Default::default()
        };
        let plan = plan_up(&p, &o, &opts).unwrap();
        assert_eq!(
            plan[0],
            Action::RemoveOrphan {
                id: "worker1".into(),
                name: "shop-worker-1".into()
            }
        );
    }

    #[test]
    fn a_dependent_that_asks_is_restarted_after_its_dependency_was_started() {
        let p = project(concat!(
            "services:\n",
            "  web:\n    image: busybox\n    depends_on:\n      db:\n        condition: service_started\n        restart: true\n",
            "  db:\n    image: busybox\n",
        ));
        let running = observed(vec![
            container(&p, "db", 1, true),
            container(&p, "web", 1, true),
        ]);
        let plan = plan_up(&p, &running, &UpOptions::default()).unwrap();
        assert!(
            matches!(plan[..], [Action::Keep { .. }, Action::Keep { .. }]),
            "{plan:?}"
        );
        let db_stopped = observed(vec![
            container(&p, "db", 1, false),
            container(&p, "web", 1, true),
        ]);
        let plan = plan_up(&p, &db_stopped, &UpOptions::default()).unwrap();
        assert_eq!(
            plan[1],
            Action::Restart {
                id: "web1".into(),
                name: "shop-web-1".into()
            }
        );
    }

    #[test]
    fn an_unknown_condition_is_refused_before_anything_is_done() {
        let p = project(concat!(
            "services:\n",
            "  web:\n    image: busybox\n    depends_on:\n      db:\n        condition: service_ready\n",
            "  db:\n    image: busybox\n",
        ));
        let e = plan_up(&p, &observed(vec![]), &UpOptions::default()).unwrap_err();
        assert_eq!(
            e,
            "depends_on condition service_ready is not implemented yet"
        );
    }

    /// A target that records what it was asked, to check `execute`'s order.
    #[derive(Default)]
    struct Record(Vec<String>);

    impl Target for Record {
        type Error = String;
        fn create(&mut self, s: &str, n: u32) -> Result<(), String> {
            self.0.push(format!("create {s} {n}"));
            Ok(())
        }
        fn start(&mut self, id: &str, _: &str) -> Result<(), String> {
            self.0.push(format!("start {id}"));
            Ok(())
        }
        fn restart(&mut self, id: &str, _: &str) -> Result<(), String> {
            self.0.push(format!("restart {id}"));
            Ok(())
        }
        fn remove(&mut self, id: &str, _: &str, why: Removal) -> Result<(), String> {
            self.0.push(format!("remove {id} {why:?}"));
            Ok(())
        }
        fn wait_for(&mut self, s: &str, c: Condition) -> Result<(), String> {
            if s == "bad" {
                return Err("unhealthy".into());
            }
            self.0.push(format!("wait {s} {c:?}"));
            Ok(())
        }
        fn note(&mut self, _: &Action) {}
    }

    #[test]
    fn execute_recreates_as_remove_then_create_and_stops_at_a_failure() {
        let mut r = Record::default();
        let actions = [
            Action::Recreate {
                id: "a".into(),
                name: "x".into(),
                service: "web".into(),
                number: 2,
            },
            Action::WaitFor {
                service: "bad".into(),
                condition: Condition::Healthy,
            },
            Action::Create {
                service: "never".into(),
                number: 1,
            },
        ];
        assert_eq!(execute(&actions, &mut r).unwrap_err(), "unhealthy");
        assert_eq!(r.0, ["remove a Recreate", "create web 2"]);
    }

    #[test]
    fn dependencies_conditions_are_met_waited_for_or_failed() {
        let c = |running: bool, exit_code: i32, health: Option<&str>| Waiting {
            name: "shop-db-1".into(),
            running,
            exit_code,
            health: health.map(String::from),
        };
        let met = |cond, list: &[Waiting]| condition_met("db", cond, list);
        assert_eq!(met(Condition::Started, &[]), Ok(true));
        assert_eq!(met(Condition::Healthy, &[]), Ok(false));
        assert_eq!(
            met(Condition::Healthy, &[c(true, 0, Some("starting"))]),
            Ok(false)
        );
        assert_eq!(
            met(Condition::Healthy, &[c(true, 0, Some("healthy"))]),
            Ok(true)
        );
        assert_eq!(
            met(Condition::Healthy, &[c(true, 0, None)]).unwrap_err(),
            "dependency failed to start: container shop-db-1 has no healthcheck configured"
        );
        assert!(met(Condition::Healthy, &[c(true, 0, Some("unhealthy"))])
            .unwrap_err()
            .ends_with("is unhealthy"));
        assert!(met(Condition::Healthy, &[c(false, 2, Some("starting"))])
            .unwrap_err()
            .ends_with("exited (2)"));
        let done = Condition::CompletedSuccessfully;
        assert_eq!(met(done, &[c(true, 0, None)]), Ok(false));
        assert_eq!(met(done, &[c(false, 0, None)]), Ok(true));
        assert_eq!(
            met(done, &[c(false, 1, None)]).unwrap_err(),
            "service \"db\" didn't complete successfully: exit 1"
        );
    }
}
