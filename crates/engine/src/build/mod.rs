//! `build`: images from Dockerfiles, parsed by `berth-build` the way BuildKit parses them.
//!
//! A stage is a state (its layers, its image config, its build args) that each
//! instruction moves on. Config instructions change the config only. `COPY`/`ADD` make
//! a layer tar straight from the context, with no container. `RUN` runs in a container
//! made by the engine on a temporary image of the state, and its changes (`commit`)
//! become the next layer; the temporary images go again.
//!
//! The cache: every state has a key, the hash of its parent's key and of the
//! instruction with everything it depends on (the resolved command and build args, the
//! content and metadata of copied files). A layer-making step whose key is in the
//! `build_cache` table reuses the layer recorded there. Cached layers are kept by the
//! image garbage collector until `builder prune`.
//!
//! Only the stages the target needs are built (in dependency order). Not implemented
//! yet, and refused with an error: `ADD` from git, `COPY --parents`, `RUN --mount=type=ssh`,
//! cache mounts `from` a stage.

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use berth_build::dockerfile::{
    CommandLine, CopyCommand, Healthcheck, Instruction, KeyValue, Stage,
};
use berth_build::{Command, Dockerfile, Env, Matcher};
use berth_image::config::{host_platform, History, ImageConfig, RootFs, RunConfig};
use berth_image::digest::Digest;
use berth_image::import::{self, NewImage};
use rusqlite::{params, OptionalExtension};
use sha2::Digest as _;

use crate::error::{io_err, EngineError, Result};
pub use crate::specs::BuildSpec;

/// The error of a build that was cancelled.
pub const CANCELLED: &str = "build interrupted";
use crate::Engine;

mod cache;
mod copy;
mod run;
mod stages;
mod view;

/// A stage's state between instructions.
#[derive(Debug, Clone)]
struct State {
    /// (blob, diff id), bottom first.
    layers: Vec<(Digest, Digest)>,
    config: ImageConfig,
    /// The cache key of this state.
    key: String,
    /// Build args declared in the stage, with their values (unset ones are absent).
    args: Vec<(String, String)>,
    /// Whether this stage set CMD (ENTRYPOINT resets an inherited one).
    cmd_set: bool,
    /// The time of every history line, of the image, and the newest mtime of any file
    /// a step writes: `SOURCE_DATE_EPOCH`, else the base image's creation time. So the
    /// same Dockerfile and context make the same image, on any root, cached or not.
    time: String,
}

fn invalid(msg: impl Into<String>) -> EngineError {
    EngineError::Invalid(msg.into())
}

/// An RFC 3339 time as seconds since the epoch (0 when it does not parse).
fn epoch_secs(time: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(time)
        .map(|t| t.timestamp())
        .unwrap_or(0)
}

fn hash_key(parts: &[&str]) -> String {
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}

/// `KEY=VALUE` lists as the config keeps them: a key set again replaces its value.
fn set_env(env: &mut Vec<String>, key: &str, value: &str) {
    let item = format!("{key}={value}");
    match env
        .iter_mut()
        .find(|e| e.split_once('=').map(|(k, _)| k) == Some(key))
    {
        Some(slot) => *slot = item,
        None => env.push(item),
    }
}

/// A build in progress: the parsed file, its context, and the stages done so far.
struct Builder<'a> {
    engine: &'a Engine,
    opts: &'a BuildSpec,
    file: Dockerfile,
    ignore: Matcher,
    global: Env,
    done: HashMap<usize, State>,
    visiting: Vec<usize>,
    /// The number of the step being built, and where the next one comes from (shared by
    /// the builders of stages built at the same time).
    step: usize,
    steps: &'a std::sync::atomic::AtomicUsize,
    progress: &'a mut dyn FnMut(&str),
    /// Set to stop the build (see [`Engine::build`]).
    cancel: &'a AtomicBool,
    /// Images registered for RUN steps, removed when the build ends.
    temporary: Vec<Digest>,
}

impl Engine {
    /// Builds the image a Dockerfile describes; returns its id. `progress` gets BuildKit's
    /// plain progress lines (`#3 [2/4] RUN make`, the step's output, `#3 DONE 0.2s`).
    /// Setting `cancel` (from a signal handler, or when the client went) stops it: the
    /// running step's container is killed, temporary images and mounts go, nothing is
    /// tagged, and the build fails with [`CANCELLED`].
    ///
    /// It keeps to its own threads and never moves the process's working directory, so
    /// a process serving other requests runs it in place.
    pub fn build(
        &self,
        opts: &BuildSpec,
        progress: &mut dyn FnMut(&str),
        cancel: &AtomicBool,
    ) -> Result<Digest> {
        // Absolute paths: stages built on other threads mount, which moves the working
        // directory for a moment.
        let absolute = |p: &Path| std::path::absolute(p).map_err(io_err(p));
        let opts = &BuildSpec {
            context: absolute(&opts.context)?,
            dockerfile: opts.dockerfile.as_deref().map(absolute).transpose()?,
            ..opts.clone()
        };
        let (name, text) = match (&opts.dockerfile_text, &opts.dockerfile) {
            (Some(t), _) => ("Dockerfile".to_string(), t.clone()),
            (None, p) => {
                let p = p.clone().unwrap_or_else(|| opts.context.join("Dockerfile"));
                let t = std::fs::read_to_string(&p).map_err(|e| {
                    invalid(format!("failed to read dockerfile {}: {e}", p.display()))
                })?;
                (
                    p.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    t,
                )
            }
        };
        if !opts.context.is_dir() {
            return Err(invalid(format!(
                "unable to prepare context: path {:?} not found",
                opts.context.display().to_string()
            )));
        }
        let file = Dockerfile::parse(&text).map_err(|e| {
            let msg = e.to_string();
            invalid(match msg.strip_prefix("Dockerfile") {
                Some(rest) => format!("{name}{rest}"),
                None => msg,
            })
        })?;
        if file.stages.is_empty() {
            return Err(invalid(format!("{name}: the Dockerfile has no FROM")));
        }
        let ignore_path = opts.context.join(".dockerignore");
        let ignore = match std::fs::read_to_string(&ignore_path) {
            Ok(t) => Matcher::from_dockerignore(&t)
                .map_err(|e| invalid(format!("{}: {e}", ignore_path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Matcher::default(),
            Err(e) => return Err(invalid(format!("{}: {e}", ignore_path.display()))),
        };
        let target = match &opts.target {
            Some(t) => file
                .stages
                .iter()
                .position(|s| {
                    s.base
                        .name
                        .as_deref()
                        .is_some_and(|n| n.eq_ignore_ascii_case(t))
                })
                .ok_or_else(|| invalid(format!("target stage \"{t}\" could not be found")))?,
            None => file.stages.len() - 1,
        };
        let mut global = Env::new();
        let host = host_platform();
        let platform = format!("{}/{}", host.os, host.architecture);
        for (k, v) in [
            ("TARGETPLATFORM", platform.as_str()),
            ("TARGETOS", host.os.as_str()),
            ("TARGETARCH", host.architecture.as_str()),
            ("TARGETVARIANT", host.variant.as_deref().unwrap_or("")),
            ("BUILDPLATFORM", platform.as_str()),
            ("BUILDOS", host.os.as_str()),
            ("BUILDARCH", host.architecture.as_str()),
            ("BUILDVARIANT", host.variant.as_deref().unwrap_or("")),
        ] {
            global.set(k, v);
        }
        let escape = file.escape();
        for inst in &file.global_args {
            if let Command::Arg(defs) = &inst.command {
                for d in defs {
                    let value = match (opts.build_args.get(&d.name), &d.default) {
                        (Some(v), _) => Some(v.clone()),
                        (None, Some(def)) => Some(
                            berth_build::expand_word(def, &global, escape)
                                .map_err(|e| at(inst, e))?,
                        ),
                        (None, None) => None,
                    };
                    if let Some(v) = value {
                        global.set(d.name.clone(), v);
                    }
                }
            }
        }
        self.sweep_views();
        let steps = std::sync::atomic::AtomicUsize::new(0);
        let mut b = Builder {
            engine: self,
            opts,
            file,
            ignore,
            global,
            done: HashMap::new(),
            visiting: Vec::new(),
            step: 0,
            steps: &steps,
            progress,
            cancel,
            temporary: Vec::new(),
        };
        // Stages that do not need each other are built at the same time; then the target
        // (and whatever it needs that could not be foreseen, in order).
        let built = b.build_independent(target).and_then(|()| b.stage(target));
        // Errors name the file they are in.
        let built = built.map_err(|e| match e {
            EngineError::Invalid(m) if m.starts_with("Dockerfile:") => {
                EngineError::Invalid(format!("{name}{}", &m["Dockerfile".len()..]))
            }
            other => other,
        });
        let temporary = std::mem::take(&mut b.temporary);
        let result = built.and_then(|state| {
            let mut config = state.config;
            config.created = Some(state.time.clone());
            if !opts.labels.is_empty() {
                let labels = config.config.labels.get_or_insert_with(BTreeMap::new);
                labels.extend(opts.labels.clone());
            }
            let id = self.register_state(&state.layers, config, &opts.tags)?;
            for t in &opts.tags {
                self.emit(
                    "image",
                    "tag",
                    &id.to_string(),
                    [("name".to_string(), t.clone())].into_iter().collect(),
                );
            }
            Ok(id)
        });
        for t in temporary {
            let _ = self.remove_image(&t.to_string(), true);
        }
        self.forget_temporary();
        result
    }

    /// Registers an image of `layers` and `config` (a fresh manifest around them).
    fn register_state(
        &self,
        layers: &[(Digest, Digest)],
        config: ImageConfig,
        tags: &[String],
    ) -> Result<Digest> {
        let config = with_rootfs(config, layers);
        let mut sized = Vec::new();
        for (blob, _) in layers {
            sized.push((blob.clone(), self.store.size(blob)?));
        }
        let mut new: NewImage = import::new_image(&self.store, config, sized)?;
        new.layers = layers.to_vec();
        self.register(&new, tags)
    }
}

/// An expansion error, placed at its instruction.
fn at(inst: &Instruction, e: impl std::fmt::Display) -> EngineError {
    invalid(format!(
        "Dockerfile:{}:{}: {e}",
        inst.location.line, inst.location.column
    ))
}

impl Builder<'_> {
    /// An error once the build was asked to stop.
    fn check_cancelled(&self) -> Result<()> {
        if self.cancel.load(Ordering::SeqCst) {
            return Err(invalid(CANCELLED));
        }
        Ok(())
    }

    fn say(&mut self, line: &str) {
        (self.progress)(line);
    }

    fn next_step(&mut self) {
        self.step = self.steps.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
    }

    /// The index of the stage `name` (a name or a number) refers to.
    fn stage_ref(&self, name: &str) -> Option<usize> {
        if let Ok(i) = name.parse::<usize>() {
            return (i < self.file.stages.len()).then_some(i);
        }
        self.file.stages.iter().position(|s| {
            s.base
                .name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
    }

    /// Builds stage `i` (and, first, the stages it needs).
    fn stage(&mut self, i: usize) -> Result<State> {
        if let Some(s) = self.done.get(&i) {
            return Ok(s.clone());
        }
        if self.visiting.contains(&i) {
            return Err(invalid(format!(
                "circular dependency detected on stage: {}",
                self.stage_name(i)
            )));
        }
        self.visiting.push(i);
        let stage: Stage = self.file.stages[i].clone();
        let escape = self.file.escape();
        let base = stage
            .base
            .expand(&self.global, escape)
            .map_err(|e| invalid(format!("Dockerfile:{}: {e}", stage.location.line)))?;
        let mut state = match self
            .stage_ref(&base.image)
            .filter(|&j| j != i && !base.image.contains([':', '/', '@']))
        {
            Some(j) => {
                let mut s = self.stage(j)?;
                s.args.clear();
                s.cmd_set = false;
                s.key = hash_key(&["FROM stage", &s.key]);
                s
            }
            None => self.base_state(&base.image)?,
        };
        // As BuildKit: a stage whose base has no PATH gets the default one.
        let env = state.config.config.env.get_or_insert_with(Vec::new);
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.insert(
                0,
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            );
        }
        // The base image's ONBUILD triggers run first, as if written after FROM.
        let mut instructions = Vec::new();
        for trigger in state.config.config.on_build.take().unwrap_or_default() {
            let parsed = Dockerfile::parse(&format!("FROM scratch\n{trigger}"))
                .map_err(|e| invalid(format!("ONBUILD trigger {trigger:?}: {e}")))?;
            instructions.extend(parsed.stages.into_iter().flat_map(|s| s.instructions));
        }
        instructions.extend(stage.instructions.iter().cloned());
        let total = instructions.len();
        let label = match &stage.base.name {
            Some(n) => format!("{n} "),
            None if self.file.stages.len() > 1 => format!("stage-{i} "),
            None => String::new(),
        };
        self.next_step();
        let line = format!("#{} [{label}1/{}] {}", self.step, total + 1, stage.original);
        self.say(&line);
        for (n, inst) in instructions.iter().enumerate() {
            self.next_step();
            let head = format!(
                "#{} [{label}{}/{}] {}",
                self.step,
                n + 2,
                total + 1,
                inst.original
            );
            self.say(&head);
            self.check_cancelled()?;
            let started = std::time::Instant::now();
            let cached = self.instruction(&mut state, inst)?;
            let line = if cached {
                format!("#{} CACHED", self.step)
            } else {
                format!(
                    "#{} DONE {:.1}s",
                    self.step,
                    started.elapsed().as_secs_f64()
                )
            };
            self.say(&line);
        }
        self.visiting.pop();
        self.done.insert(i, state.clone());
        Ok(state)
    }

    /// The layers of what `--from=NAME` names: a stage (built now if need be), else an
    /// image.
    fn layers_of(&mut self, from: &str) -> Result<Vec<(Digest, Digest)>> {
        Ok(
            match self
                .stage_ref(from)
                .filter(|_| !from.contains([':', '/', '@']))
            {
                Some(j) => self.stage(j)?.layers,
                None => self.base_state(from)?.layers,
            },
        )
    }

    fn stage_name(&self, i: usize) -> String {
        self.file.stages[i]
            .base
            .name
            .clone()
            .unwrap_or_else(|| i.to_string())
    }

    /// The state `FROM image` starts from: `scratch`, or a local image (pulled when
    /// missing, or always with `--pull`).
    fn base_state(&mut self, image: &str) -> Result<State> {
        if image.eq_ignore_ascii_case("scratch") {
            let host = host_platform();
            return Ok(State {
                layers: Vec::new(),
                config: ImageConfig {
                    created: None,
                    author: None,
                    architecture: host.architecture,
                    os: host.os,
                    variant: host.variant,
                    config: RunConfig::default(),
                    rootfs: RootFs {
                        kind: "layers".into(),
                        diff_ids: Vec::new(),
                    },
                    history: Vec::new(),
                    comment: None,
                },
                key: hash_key(&["FROM scratch"]),
                args: Vec::new(),
                cmd_set: false,
                time: self
                    .epoch()
                    .unwrap_or_else(|| "1970-01-01T00:00:00Z".into()),
            });
        }
        let e = self.engine;
        let row = match (self.opts.pull, e.find_or_builtin_image(image)) {
            (false, Ok(row)) => row,
            (pull, found) => {
                if !pull {
                    if let Err(err) = found {
                        if !matches!(err, EngineError::NoSuchImage(_)) {
                            return Err(err);
                        }
                    }
                }
                let opts = crate::distribution::PullOptions {
                    platform: None,
                    insecure: crate::distribution::insecure_registries(),
                    ..Default::default()
                };
                let pulled = e.pull(image, &opts, &mut |_| {})?;
                e.find_image(&pulled.id.to_string())?
            }
        };
        let config = e.image_config(&row)?;
        let time = self
            .epoch()
            .or_else(|| config.created.clone())
            .unwrap_or_else(|| "1970-01-01T00:00:00Z".into());
        Ok(State {
            layers: row.layers.clone(),
            config,
            key: hash_key(&["FROM", &row.id.to_string()]),
            args: Vec::new(),
            cmd_set: false,
            time,
        })
    }

    /// `SOURCE_DATE_EPOCH` (a build arg), as a timestamp: every time in the image then.
    fn epoch(&self) -> Option<String> {
        let secs: i64 = self
            .opts
            .build_args
            .get("SOURCE_DATE_EPOCH")?
            .parse()
            .ok()?;
        chrono::DateTime::from_timestamp(secs, 0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    }

    /// The variables `$VAR` sees at this point: build args, then ENV (which wins).
    fn env_for(&self, state: &State) -> Env {
        let mut env = Env::new();
        for (k, v) in &state.args {
            env.set(k.clone(), v.clone());
        }
        for e in state.config.config.env.iter().flatten() {
            if let Some((k, v)) = e.split_once('=') {
                env.set(k, v);
            }
        }
        env
    }

    /// Applies one instruction; returns whether it came from the cache.
    fn instruction(&mut self, state: &mut State, inst: &Instruction) -> Result<bool> {
        let escape = self.file.escape();
        let env = self.env_for(state);
        let cmd = inst.command.expand(&env, escape).map_err(|e| at(inst, e))?;
        let rc = &mut state.config.config;
        let mut line = inst.original.clone();
        match &cmd {
            Command::Run(run) => return self.run(state, inst, run),
            Command::Copy(c) => return self.copy(state, inst, c, false, None),
            Command::Add(a) => {
                let c = CopyCommand {
                    sources: a.sources.clone(),
                    dest: a.dest.clone(),
                    from: None,
                    chown: a.chown.clone(),
                    chmod: a.chmod.clone(),
                    link: a.link,
                    parents: false,
                    excludes: a.excludes.clone(),
                };
                return self.copy(state, inst, &c, true, a.checksum.as_deref());
            }
            Command::Env(pairs) => {
                let env = rc.env.get_or_insert_with(Vec::new);
                for KeyValue { key, value, .. } in pairs {
                    set_env(env, key, value);
                }
            }
            Command::Arg(defs) => {
                for d in defs {
                    let value = self
                        .opts
                        .build_args
                        .get(&d.name)
                        .cloned()
                        .or_else(|| d.default.clone())
                        .or_else(|| self.global.get(&d.name).map(String::from));
                    state.args.retain(|(k, _)| *k != d.name);
                    if let Some(v) = value {
                        state.args.push((d.name.clone(), v));
                    }
                }
            }
            Command::Label(pairs) => {
                let labels = rc.labels.get_or_insert_with(BTreeMap::new);
                for KeyValue { key, value, .. } in pairs {
                    labels.insert(key.clone(), value.clone());
                }
            }
            Command::Workdir(dir) => {
                let path = in_workdir(state, dir);
                state.config.config.working_dir = Some(path.clone());
                // A directory that is not there yet is made, in a layer of its own.
                let dirs = self.layer_dirs(state)?;
                let real = resolve_in_layers(&dirs, &path);
                if matches!(find_in_layers(&dirs, &real), Found::Missing) {
                    let key = hash_key(&[&state.key, "WORKDIR", &path]);
                    let entries = vec![(real, copy::Item::NewDir)];
                    let by = format!("WORKDIR {path}");
                    return self.entries_layer(state, key, by, &entries, Some((0, 0)), None);
                }
                line = format!("WORKDIR {path}");
            }
            Command::User(u) => rc.user = Some(u.clone()),
            Command::Cmd(line) => {
                rc.cmd = Some(argv(line, rc.shell.as_ref()));
                state.cmd_set = true;
            }
            Command::Entrypoint(line) => {
                rc.entrypoint = Some(argv(line, rc.shell.as_ref()));
                if !state.cmd_set {
                    rc.cmd = None;
                }
            }
            Command::Shell(sh) => rc.shell = Some(sh.clone()),
            Command::Expose(ports) => {
                let map = rc.exposed_ports.get_or_insert_with(BTreeMap::new);
                for p in ports {
                    let p = if p.contains('/') {
                        p.to_lowercase()
                    } else {
                        format!("{p}/tcp")
                    };
                    map.insert(p, serde_json::json!({}));
                }
            }
            Command::Volume(vols) => {
                let map = rc.volumes.get_or_insert_with(BTreeMap::new);
                for v in vols {
                    map.insert(v.clone(), serde_json::json!({}));
                }
            }
            Command::StopSignal(s) => rc.stop_signal = Some(s.clone()),
            Command::Healthcheck(h) => {
                let nanos = |d: std::time::Duration| d.as_nanos() as i64;
                rc.healthcheck = Some(match h {
                    Healthcheck::Disable => berth_image::config::HealthConfig {
                        test: vec!["NONE".into()],
                        ..Default::default()
                    },
                    Healthcheck::Check(c) => berth_image::config::HealthConfig {
                        test: c.test.clone(),
                        interval: nanos(c.interval),
                        timeout: nanos(c.timeout),
                        start_period: nanos(c.start_period),
                        start_interval: nanos(c.start_interval),
                        retries: c.retries.into(),
                    },
                })
            }
            Command::Onbuild(o) => rc
                .on_build
                .get_or_insert_with(Vec::new)
                .push(o.expression.clone()),
            Command::Maintainer(m) => state.config.author = Some(m.clone()),
        }
        if matches!(cmd, Command::Arg(_)) {
            // Args do not show in history unless a RUN uses them; they do key the cache.
            line.clear();
        }
        state.key = hash_key(&[&state.key, &serde_json::to_string(&cmd).unwrap_or_default()]);
        if !line.is_empty() {
            let h = history(state, line, true);
            state.config.history.push(h);
        }
        Ok(false)
    }

    /// Adds a layer to the state, with its history line.
    fn add_layer(&mut self, state: &mut State, key: String, layer: (Digest, Digest), by: String) {
        state.layers.push(layer);
        state.key = key;
        let h = history(state, by, false);
        state.config.history.push(h);
    }

    /// The layer the cache has for `key` (unless `--no-cache`).
    fn cached(&self, key: &str) -> Result<Option<(Digest, Digest)>> {
        if self.opts.no_cache {
            return Ok(None);
        }
        self.engine.cached_layer(key)
    }
}

impl Engine {
    /// Whether the image `state` would register as is already here (so it is not
    /// temporary and must not be removed).
    fn register_state_probe(&self, state: &State) -> Result<bool> {
        let config = with_rootfs(state.config.clone(), &state.layers);
        let id = Digest::of(&serde_json::to_vec(&config).expect("config serialises"));
        Ok(self.find_image(&id.to_string()).is_ok())
    }
}

/// `config` naming `layers` as its rootfs, as `register_state` stores it.
fn with_rootfs(mut config: ImageConfig, layers: &[(Digest, Digest)]) -> ImageConfig {
    config.rootfs = RootFs {
        kind: "layers".into(),
        diff_ids: layers.iter().map(|(_, d)| d.clone()).collect(),
    };
    config
}

/// A history line of a build step, at the state's time.
fn history(state: &State, by: String, empty_layer: bool) -> History {
    History {
        created: Some(state.time.clone()),
        created_by: Some(by),
        comment: Some("buildkit.dockerfile.v0".into()),
        empty_layer,
        ..Default::default()
    }
}

/// An absolute, clean path (`..` stops at `/`).
fn clean_abs(p: &Path) -> String {
    let mut out: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    format!("/{}", out.join("/"))
}

/// What a path is in a stack of unpacked layer dirs.
enum Found {
    Missing,
    /// Its metadata (of the entry itself, not followed), and where it is on the host.
    Here(std::fs::Metadata, PathBuf),
    /// Behind a symlink: the runtime would follow it inside the root; not looked at.
    Unknown,
}

/// Looks `path` up in the merged view of layer dirs (top first), overlay whiteouts
/// included.
fn find_in_layers(dirs: &[PathBuf], path: &str) -> Found {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    'dirs: for d in dirs {
        let mut p = d.clone();
        for (i, c) in comps.iter().enumerate() {
            p.push(c);
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                continue 'dirs;
            };
            if m.file_type().is_char_device() && m.rdev() == 0 {
                return Found::Missing;
            }
            if i + 1 == comps.len() {
                return Found::Here(m, p);
            }
            if m.file_type().is_symlink() {
                return Found::Unknown;
            }
        }
    }
    match comps.is_empty() {
        true => dirs
            .first()
            .and_then(|d| Some(Found::Here(std::fs::metadata(d).ok()?, d.clone())))
            .unwrap_or(Found::Unknown),
        false => Found::Missing,
    }
}

/// `path` with the symlinks the layer stack has on its way resolved, inside the stack
/// (an absolute target starts again at its root): where a file written to `path` in a
/// container would land.
fn resolve_in_layers(dirs: &[PathBuf], path: &str) -> String {
    let mut todo: std::collections::VecDeque<String> = path
        .split('/')
        .filter(|c| !c.is_empty())
        .map(String::from)
        .collect();
    let mut done: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(c) = todo.pop_front() {
        match c.as_str() {
            "." => continue,
            ".." => {
                done.pop();
                continue;
            }
            _ => {}
        }
        let candidate = format!("{}/{c}", done.join("/"));
        if let Found::Here(m, host) = find_in_layers(dirs, &candidate) {
            if m.file_type().is_symlink() && hops < 40 {
                hops += 1;
                let target = std::fs::read_link(&host).unwrap_or_default();
                let target = target.to_string_lossy();
                if target.starts_with('/') {
                    done.clear();
                }
                for (i, t) in target.split('/').filter(|t| !t.is_empty()).enumerate() {
                    todo.insert(i, t.to_string());
                }
                continue;
            }
        }
        done.push(c);
    }
    format!("/{}", done.join("/"))
}

/// `path` taken from the state's working directory, cleaned.
fn in_workdir(state: &State, path: &str) -> String {
    let workdir = state.config.config.working_dir.as_deref().unwrap_or("/");
    clean_abs(&Path::new(workdir).join(path))
}

/// A command line as the argv the config keeps: shell form runs through the shell.
fn argv(line: &CommandLine, shell: Option<&Vec<String>>) -> Vec<String> {
    match line {
        CommandLine::Exec(v) => v.clone(),
        CommandLine::Shell(s) => {
            let mut a = shell
                .cloned()
                .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
            a.push(s.clone());
            a
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_cleaned_inside_their_root() {
        assert_eq!(clean_abs(Path::new("/app/../../etc/x")), "/etc/x");
        assert_eq!(clean_abs(Path::new("/a/./b/")), "/a/b");
        assert_eq!(copy::clean_rel(Path::new("a/../b")), Some("b".into()));
        assert_eq!(copy::clean_rel(Path::new("../x")), None);
        assert_eq!(copy::clean_rel(Path::new("/abs/x")), Some("abs/x".into()));
    }

    #[test]
    fn a_cache_mount_made_at_once_by_many_is_one_directory() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let opts = crate::EngineOptions::new(tmp.path().join("root"), tmp.path().join("run"));
        for round in 0..20 {
            let id = format!("cache-{round}");
            let inodes: Vec<u64> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..4)
                    .map(|_| {
                        let (opts, id) = (opts.clone(), id.clone());
                        s.spawn(move || {
                            let e = Engine::open(opts).unwrap();
                            let dir = e.cache_mount_dir(&id, 0o755, 0, 0).unwrap();
                            std::fs::metadata(dir.join("data")).unwrap().ino()
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let data = opts
                .root
                .join("build-mounts")
                .join(hash_key(&[&id]))
                .join("data");
            let now = std::fs::metadata(data).unwrap().ino();
            assert!(
                inodes.iter().all(|&i| i == now),
                "round {round}: {inodes:?} vs {now}"
            );
        }
    }

    #[test]
    fn env_keys_are_replaced_not_repeated() {
        let mut env = vec!["A=1".to_string(), "B=2".to_string()];
        set_env(&mut env, "A", "3");
        set_env(&mut env, "C", "4");
        assert_eq!(env, ["A=3", "B=2", "C=4"]);
    }
}
