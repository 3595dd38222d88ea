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
//! yet, and refused with an error: `ADD` from URLs and git, `COPY --from` an image that
//! is not a stage, `RUN --mount`, `--chown` by name.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use berth_build::dockerfile::{
    CommandLine, CopyCommand, Healthcheck, Instruction, KeyValue, Source, Stage,
};
use berth_build::{Command, Dockerfile, Env, Matcher};
use berth_image::config::{host_platform, History, ImageConfig, RootFs, RunConfig};
use berth_image::digest::{Digest, Hasher};
use berth_image::import::{self, NewImage};
use rusqlite::{params, OptionalExtension};
use sha2::Digest as _;

use crate::containers::CreateOptions;
use crate::error::{io_err, EngineError, Result};
use crate::model::{ContainerConfig, HostConfig};
use crate::Engine;

/// What `build` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The context directory.
    pub context: PathBuf,
    /// The Dockerfile; `context/Dockerfile` when None.
    pub dockerfile: Option<PathBuf>,
    /// The Dockerfile's text, when it came from stdin.
    pub dockerfile_text: Option<String>,
    /// Full references to tag the result with.
    pub tags: Vec<String>,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub no_cache: bool,
    /// Pull `FROM` images even when they are here.
    pub pull: bool,
}

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
    /// When the state's newest layer was made: the time of every history line written
    /// and of the image, so that a build served from the cache is the same image.
    time: String,
}

fn invalid(msg: impl Into<String>) -> EngineError {
    EngineError::Invalid(msg.into())
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
    opts: &'a BuildOptions,
    file: Dockerfile,
    ignore: Matcher,
    global: Env,
    done: HashMap<usize, State>,
    visiting: Vec<usize>,
    step: usize,
    progress: &'a mut dyn FnMut(&str),
    /// Images registered for RUN steps, removed when the build ends.
    temporary: Vec<Digest>,
}

impl Engine {
    /// Builds the image a Dockerfile describes; returns its id. `progress` gets BuildKit's
    /// plain progress lines (`#3 [2/4] RUN make`, the step's output, `#3 DONE 0.2s`).
    pub fn build(&self, opts: &BuildOptions, progress: &mut dyn FnMut(&str)) -> Result<Digest> {
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
        let mut b = Builder {
            engine: self,
            opts,
            file,
            ignore,
            global,
            done: HashMap::new(),
            visiting: Vec::new(),
            step: 0,
            progress,
            temporary: Vec::new(),
        };
        let built = b.stage(target);
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

    /// The layer a cache key names and when it was made, if its blob is still stored.
    fn cached_layer(&self, key: &str) -> Result<Option<(Digest, Digest, String)>> {
        let row: Option<(String, String, String)> = self
            .db
            .query_row(
                "SELECT blob, diff_id, created FROM build_cache WHERE key = ?1",
                [key],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((blob, diff_id, created)) = row else {
            return Ok(None);
        };
        let (Ok(blob), Ok(diff_id)) = (Digest::parse(&blob), Digest::parse(&diff_id)) else {
            return Ok(None);
        };
        if !self.store.contains(&blob) {
            return Ok(None);
        }
        self.db.execute(
            "UPDATE build_cache SET last_used = ?2 WHERE key = ?1",
            params![key, crate::now()],
        )?;
        Ok(Some((blob, diff_id, created)))
    }

    /// Records the layer a step made; returns when (the time its history line gets).
    fn record_layer(&self, key: &str, blob: &Digest, diff_id: &Digest, by: &str) -> Result<String> {
        let now = crate::now();
        self.db.execute(
            "INSERT OR REPLACE INTO build_cache (key, blob, diff_id, created_by, created, last_used)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            params![key, blob.to_string(), diff_id.to_string(), by, now],
        )?;
        Ok(now)
    }

    /// The blobs the build cache keeps (the garbage collector leaves them).
    pub(crate) fn build_cache_blobs(&self) -> Result<Vec<Digest>> {
        let mut stmt = self.db.prepare("SELECT blob FROM build_cache")?;
        let blobs = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .filter_map(|b| b.ok().and_then(|b| Digest::parse(&b).ok()))
            .collect();
        Ok(blobs)
    }

    /// `builder prune`: forgets the build cache and removes the layers only it kept.
    /// Returns the entries removed and the bytes reclaimed.
    pub fn prune_build_cache(&self) -> Result<(usize, u64)> {
        let blobs = self.build_cache_blobs()?;
        let n = self.db.execute("DELETE FROM build_cache", [])?;
        let mut used = std::collections::HashSet::new();
        for r in self.list_image_rows()? {
            used.extend(r.layers.iter().map(|(b, _)| b.clone()));
        }
        let mut reclaimed = 0;
        for b in blobs {
            if !used.contains(&b) {
                reclaimed += self.store.size(&b).unwrap_or(0);
                self.store.remove(&b)?;
            }
        }
        Ok((n, reclaimed))
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
    fn say(&mut self, line: &str) {
        (self.progress)(line);
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
        self.step += 1;
        let line = format!("#{} [{label}1/{}] {}", self.step, total + 1, stage.original);
        self.say(&line);
        for (n, inst) in instructions.iter().enumerate() {
            self.step += 1;
            let head = format!(
                "#{} [{label}{}/{}] {}",
                self.step,
                n + 2,
                total + 1,
                inst.original
            );
            self.say(&head);
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
            Command::Copy(c) => return self.copy(state, inst, c, false),
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
                return self.copy(state, inst, &c, true);
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
                let base = rc.working_dir.clone().unwrap_or_else(|| "/".into());
                rc.working_dir = Some(clean_abs(&Path::new(&base).join(dir)));
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
                rc.healthcheck = Some(match h {
                    Healthcheck::Disable => serde_json::json!({"Test": ["NONE"]}),
                    Healthcheck::Check(c) => {
                        let mut v = serde_json::json!({"Test": c.test});
                        for (k, d) in [
                            ("Interval", c.interval),
                            ("Timeout", c.timeout),
                            ("StartPeriod", c.start_period),
                            ("StartInterval", c.start_interval),
                        ] {
                            if !d.is_zero() {
                                v[k] = serde_json::json!(d.as_nanos() as u64);
                            }
                        }
                        if c.retries > 0 {
                            v["Retries"] = serde_json::json!(c.retries);
                        }
                        v
                    }
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

    /// Adds a layer to the state, with its history line; `time` is when it was made.
    fn add_layer(
        &mut self,
        state: &mut State,
        key: String,
        layer: (Digest, Digest),
        by: String,
        time: String,
    ) {
        state.layers.push(layer);
        state.key = key;
        state.time = self.epoch().unwrap_or(time);
        let h = history(state, by, false);
        state.config.history.push(h);
    }

    /// The layer the cache has for `key` (unless `--no-cache`), with when it was made.
    fn cached(&self, key: &str) -> Result<Option<((Digest, Digest), String)>> {
        if self.opts.no_cache {
            return Ok(None);
        }
        Ok(self
            .engine
            .cached_layer(key)?
            .map(|(blob, diff_id, created)| ((blob, diff_id), created)))
    }

    fn run(
        &mut self,
        state: &mut State,
        inst: &Instruction,
        run: &berth_build::dockerfile::RunCommand,
    ) -> Result<bool> {
        if !run.mounts.is_empty() {
            return Err(at(inst, "RUN --mount is not implemented yet"));
        }
        let shell = state
            .config
            .config
            .shell
            .clone()
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
        let argv = match (&run.command, run.heredocs.as_slice()) {
            // `RUN <<EOF`: the document is the script.
            (CommandLine::Shell(s), [doc])
                if s.trim().starts_with("<<") && !s.trim().contains(' ') =>
            {
                let mut a = shell.clone();
                a.push(doc.body().into_owned());
                a
            }
            // Documents fed to a command: the shell reads them itself.
            (CommandLine::Shell(s), docs) if !docs.is_empty() => {
                let mut script = s.clone();
                for d in docs {
                    script.push('\n');
                    script.push_str(&d.content);
                    if !d.content.ends_with('\n') {
                        script.push('\n');
                    }
                    script.push_str(&d.name);
                }
                let mut a = shell.clone();
                a.push(script);
                a
            }
            (line, _) => argv(line, Some(&shell)),
        };
        let mut env = state.config.config.env.clone().unwrap_or_default();
        let mut used_args = Vec::new();
        for (k, v) in &state.args {
            if !env
                .iter()
                .any(|e| e.split_once('=').map(|(x, _)| x) == Some(k.as_str()))
            {
                env.push(format!("{k}={v}"));
                used_args.push(format!("{k}={v}"));
            }
        }
        let by = if used_args.is_empty() {
            format!("RUN {} # buildkit", argv.join(" "))
        } else {
            format!(
                "RUN |{} {} {} # buildkit",
                used_args.len(),
                used_args.join(" "),
                argv.join(" ")
            )
        };
        let network = format!("{:?}", run.network);
        let key = hash_key(&[
            &state.key,
            "RUN",
            &serde_json::to_string(&argv).unwrap_or_default(),
            &env.join("\0"),
            &network,
        ]);
        if let Some((layer, time)) = self.cached(&key)? {
            self.add_layer(state, key, layer, by, time);
            return Ok(true);
        }
        let e = self.engine;
        // The state as an image, to make the container from.
        let existed = e.register_state_probe(state)?;
        let image = e.register_state(&state.layers, state.config.clone(), &[])?;
        if !existed {
            self.temporary.push(image.clone());
        }
        let config = ContainerConfig {
            cmd: Some(argv.clone()),
            env,
            user: state.config.config.user.clone().unwrap_or_default(),
            working_dir: state.config.config.working_dir.clone().unwrap_or_default(),
            ..Default::default()
        };
        let host_config = HostConfig {
            network_mode: match run.network {
                berth_build::dockerfile::Network::None => "none".into(),
                _ => "host".into(),
            },
            ..Default::default()
        };
        let (id, _) = e.create_container(CreateOptions {
            name: None,
            image: image.to_string(),
            config,
            entrypoint: Some(Vec::new()),
            host_config,
        })?;
        let outcome = self.run_container(&id);
        let result = match outcome {
            Ok(0) => e
                .commit(&id, None, None, None, RunConfig::default(), false, false)
                .and_then(|c| {
                    self.temporary.push(c.clone());
                    let row = e.find_image(&c.to_string())?;
                    Ok(row.layers.last().cloned().expect("a commit adds a layer"))
                }),
            Ok(code) => Err(EngineError::Invalid(format!(
                "process \"{}\" did not complete successfully: exit code: {code}",
                argv.join(" ")
            ))),
            Err(err) => Err(err),
        };
        let _ = e.remove_container(&id, true, true);
        let (blob, diff_id) = result?;
        let time = e.record_layer(&key, &blob, &diff_id, &by)?;
        self.add_layer(state, key, (blob, diff_id), by, time);
        Ok(false)
    }

    /// Runs a created container to its end, passing its output on; returns its exit code.
    fn run_container(&mut self, id: &str) -> Result<i32> {
        let e = self.engine;
        e.start_container(id, false)?;
        let code = e.wait_container(id)?;
        let log = e.container_dir(id).join("log.json");
        let lines = crate::logs::read_all(&log).unwrap_or_default();
        let step = self.step;
        for l in &lines {
            let text = format!("#{step} {}", l.log.trim_end_matches('\n'));
            self.say(&text);
        }
        Ok(code)
    }

    fn copy(
        &mut self,
        state: &mut State,
        inst: &Instruction,
        c: &CopyCommand,
        add: bool,
    ) -> Result<bool> {
        if let Some(from) = &c.from {
            if self.stage_ref(from).is_none() {
                return Err(at(inst, format!("COPY --from={from}: copying from an image that is not a stage is not implemented yet")));
            }
            return Err(at(inst, "COPY --from a stage is not implemented yet"));
        }
        if c.parents {
            return Err(at(inst, "COPY --parents is not implemented yet"));
        }
        let (uid, gid) = match &c.chown {
            None => (0, 0),
            Some(s) => parse_chown(s).ok_or_else(|| {
                at(
                    inst,
                    format!("--chown={s}: only numeric uid[:gid] is implemented yet"),
                )
            })?,
        };
        let chmod = match &c.chmod {
            None => None,
            Some(m) => Some(u32::from_str_radix(m, 8).map_err(|_| {
                at(
                    inst,
                    format!("invalid --chmod={m}: only octal modes are implemented yet"),
                )
            })?),
        };
        let workdir = state
            .config
            .config
            .working_dir
            .clone()
            .unwrap_or_else(|| "/".into());
        let dest_dir = c.dest.ends_with('/') || c.dest.ends_with("/.") || c.dest == ".";
        let dest = clean_abs(&Path::new(&workdir).join(&c.dest));
        // What goes in: (path in the layer, what).
        let mut entries: Vec<(String, Item)> = Vec::new();
        let mut matched = 0;
        for src in &c.sources {
            match src {
                Source::Inline(doc) => {
                    matched += 1;
                    let path = if dest_dir || c.sources.len() > 1 {
                        format!("{dest}/{}", doc.name).replace("//", "/")
                    } else {
                        dest.clone()
                    };
                    entries.push((path, Item::Bytes(doc.body().into_owned().into_bytes())));
                }
                Source::Path(p) => {
                    if add
                        && (p.starts_with("http://")
                            || p.starts_with("https://")
                            || p.starts_with("git@"))
                    {
                        return Err(at(
                            inst,
                            format!("ADD {p}: sources from URLs are not implemented yet"),
                        ));
                    }
                    let found = self.sources(p).map_err(|e| at(inst, e))?;
                    if found.is_empty() {
                        return Err(at(
                            inst,
                            format!(
                                "failed to compute cache key: \"/{}\": not found",
                                p.trim_start_matches('/')
                            ),
                        ));
                    }
                    let many = found.len() > 1 || c.sources.len() > 1 || has_glob(p);
                    if many && !dest_dir {
                        return Err(at(inst, "When using COPY with more than one source file, the destination must be a directory and end with a /"));
                    }
                    for (rel, host) in found {
                        matched += 1;
                        let meta = std::fs::symlink_metadata(&host).map_err(io_err(&host))?;
                        if meta.is_dir() {
                            // A directory's contents go into dest.
                            self.walk(&host, &rel, &dest, &mut entries)?;
                        } else {
                            let name = Path::new(&rel)
                                .file_name()
                                .map(|n| n.to_string_lossy().into_owned())
                                .unwrap_or_default();
                            let path = if dest_dir {
                                format!("{}/{name}", dest.trim_end_matches('/'))
                            } else {
                                dest.clone()
                            };
                            if add && meta.is_file() && is_archive(&host) {
                                entries.push((dest.clone(), Item::Archive(host)));
                            } else {
                                entries.push((path, Item::Host(host)));
                            }
                        }
                    }
                }
            }
        }
        debug_assert!(matched > 0);
        let by = format!("{} # buildkit", inst.original);
        // The key: the instruction and every entry's path, metadata and content, but not
        // mtimes (touching a file does not invalidate the step, as in Docker).
        let mut h = sha2::Sha256::new();
        h.update(state.key.as_bytes());
        h.update(
            serde_json::to_string(&inst.command)
                .unwrap_or_default()
                .as_bytes(),
        );
        h.update(format!("{uid}:{gid}:{chmod:?}:{dest}").as_bytes());
        for (path, item) in &entries {
            h.update(path.as_bytes());
            item.hash_into(&mut h)?;
        }
        let key = hex::encode(h.finalize());
        if let Some((layer, time)) = self.cached(&key)? {
            self.add_layer(state, key, layer, by, time);
            return Ok(true);
        }
        let store = &self.engine.store;
        let mut tmp = store.temp()?;
        let tmp_path = tmp.path.clone();
        let mut hashing = Hasher::new(&mut tmp.file);
        {
            let mut t = tar::Builder::new(&mut hashing);
            t.mode(tar::HeaderMode::Complete);
            let mut made = std::collections::BTreeSet::new();
            for (path, item) in &entries {
                parents(&mut t, &mut made, path)?;
                item.append(&mut t, path, uid, gid, chmod)?;
            }
            t.finish().map_err(io_err(&tmp_path))?;
        }
        hashing.flush().map_err(io_err(&tmp_path))?;
        let (diff_id, _, _) = hashing.finish();
        tmp.commit(&diff_id)?;
        let time = self.engine.record_layer(&key, &diff_id, &diff_id, &by)?;
        self.add_layer(state, key, (diff_id.clone(), diff_id), by, time);
        Ok(false)
    }

    /// The context paths a COPY source names (globs expanded), relative and on the host;
    /// never outside the context, never what `.dockerignore` excludes.
    fn sources(&self, src: &str) -> std::result::Result<Vec<(String, PathBuf)>, String> {
        let ctx = self
            .opts
            .context
            .canonicalize()
            .map_err(|e| e.to_string())?;
        let rel = berth_build::ignore::clean(src.trim_start_matches('/'));
        if rel == ".." || rel.starts_with("../") {
            return Err(format!("forbidden path outside the build context: {src}"));
        }
        let candidates: Vec<String> = if has_glob(&rel) {
            let pattern = Matcher::new([rel.as_str()]).map_err(|e| e.to_string())?;
            let depth = rel.split('/').count();
            let mut out = Vec::new();
            list_depth(&ctx, "", depth, &mut out);
            out.into_iter().filter(|p| pattern.excluded(p)).collect()
        } else {
            vec![rel.clone()]
        };
        let mut found = Vec::new();
        for c in candidates {
            if c != "." && self.ignore.excluded(&c) {
                continue;
            }
            let host = ctx.join(&c);
            // The source itself may be a symlink; what it resolves to must be inside.
            let real = match host.canonicalize() {
                Ok(r) => r,
                Err(_) => continue,
            };
            if !real.starts_with(&ctx) {
                return Err(format!("forbidden path outside the build context: {src}"));
            }
            found.push((c, real));
        }
        Ok(found)
    }

    /// Adds everything under context dir `host` (context path `rel`) to `entries`, under
    /// `dest`, skipping what `.dockerignore` excludes. Symlinks are copied as symlinks.
    fn walk(
        &self,
        host: &Path,
        rel: &str,
        dest: &str,
        entries: &mut Vec<(String, Item)>,
    ) -> Result<()> {
        let mut names: Vec<_> = std::fs::read_dir(host)
            .map_err(io_err(host))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        names.sort();
        entries.push((dest.to_string(), Item::Dir(host.to_path_buf())));
        for n in names {
            let name = n.to_string_lossy().into_owned();
            let child_rel = if rel == "." || rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            if self.ignore.excluded(&child_rel) {
                continue;
            }
            let child = host.join(&n);
            let child_dest = format!("{}/{name}", dest.trim_end_matches('/'));
            let meta = std::fs::symlink_metadata(&child).map_err(io_err(&child))?;
            if meta.is_dir() {
                self.walk(&child, &child_rel, &child_dest, entries)?;
            } else {
                entries.push((child_dest, Item::Host(child)));
            }
        }
        Ok(())
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

/// One thing a COPY puts in its layer.
enum Item {
    /// A file, symlink or special file of the context (a directory's own entry: `Dir`).
    Host(PathBuf),
    Dir(PathBuf),
    /// A here-document.
    Bytes(Vec<u8>),
    /// A local archive `ADD` unpacks at the path.
    Archive(PathBuf),
}

impl Item {
    fn hash_into(&self, h: &mut sha2::Sha256) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        match self {
            Item::Bytes(b) => h.update(b),
            Item::Host(p) | Item::Dir(p) | Item::Archive(p) => {
                let m = std::fs::symlink_metadata(p).map_err(io_err(p))?;
                h.update(format!("{:o}:{}:{}", m.mode(), m.uid(), m.gid()).as_bytes());
                if m.file_type().is_symlink() {
                    let t = std::fs::read_link(p).map_err(io_err(p))?;
                    h.update(t.as_os_str().as_encoded_bytes());
                } else if m.is_file() {
                    let mut f = std::fs::File::open(p).map_err(io_err(p))?;
                    let mut buf = vec![0; 64 << 10];
                    loop {
                        let n = f.read(&mut buf).map_err(io_err(p))?;
                        if n == 0 {
                            break;
                        }
                        h.update(&buf[..n]);
                    }
                }
            }
        }
        Ok(())
    }

    fn append<W: Write>(
        &self,
        t: &mut tar::Builder<W>,
        path: &str,
        uid: u64,
        gid: u64,
        chmod: Option<u32>,
    ) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let name = path.trim_start_matches('/');
        let err = |e: std::io::Error| invalid(format!("COPY {path}: {e}"));
        match self {
            Item::Bytes(b) => {
                let mut hd = tar::Header::new_gnu();
                hd.set_entry_type(tar::EntryType::Regular);
                hd.set_size(b.len() as u64);
                hd.set_mode(chmod.unwrap_or(0o644));
                hd.set_uid(uid);
                hd.set_gid(gid);
                hd.set_mtime(0);
                t.append_data(&mut hd, name, &b[..]).map_err(err)
            }
            Item::Archive(p) => {
                let f = std::fs::File::open(p).map_err(io_err(p))?;
                let (_, r) = berth_image::compression::decompress(f).map_err(io_err(p))?;
                let mut a = tar::Archive::new(r);
                for entry in a.entries().map_err(err)? {
                    let mut entry = entry.map_err(err)?;
                    let inner = entry.path().map_err(err)?.into_owned();
                    let clean = clean_rel(&inner).ok_or_else(|| {
                        invalid(format!(
                            "ADD {}: entry {} leaves the destination",
                            p.display(),
                            inner.display()
                        ))
                    })?;
                    let mut hd = entry.header().clone();
                    let target = if clean.is_empty() {
                        name.to_string()
                    } else {
                        format!("{}/{clean}", name.trim_end_matches('/'))
                    };
                    if let Ok(Some(l)) = entry.link_name() {
                        let l = l.into_owned();
                        if hd.entry_type().is_hard_link() {
                            let lc = clean_rel(&l).ok_or_else(|| {
                                invalid(format!(
                                    "ADD {}: link {} leaves the destination",
                                    p.display(),
                                    l.display()
                                ))
                            })?;
                            let lt = format!("{}/{lc}", name.trim_end_matches('/'));
                            t.append_link(&mut hd, &target, &lt).map_err(err)?;
                            continue;
                        }
                        t.append_link(&mut hd, &target, &l).map_err(err)?;
                        continue;
                    }
                    t.append_data(&mut hd, &target, &mut entry).map_err(err)?;
                }
                Ok(())
            }
            Item::Host(p) | Item::Dir(p) => {
                let m = std::fs::symlink_metadata(p).map_err(io_err(p))?;
                let mut hd = tar::Header::new_gnu();
                hd.set_metadata_in_mode(&m, tar::HeaderMode::Complete);
                hd.set_uid(uid);
                hd.set_gid(gid);
                let perm = m.mode() & 0o7777;
                hd.set_mode(chmod.unwrap_or(perm));
                if m.file_type().is_symlink() {
                    let target = std::fs::read_link(p).map_err(io_err(p))?;
                    hd.set_size(0);
                    t.append_link(&mut hd, name, &target).map_err(err)
                } else if m.is_dir() {
                    hd.set_size(0);
                    t.append_data(&mut hd, format!("{name}/"), std::io::empty())
                        .map_err(err)
                } else if m.is_file() {
                    let f = std::fs::File::open(p).map_err(io_err(p))?;
                    t.append_data(&mut hd, name, f).map_err(err)
                } else {
                    Err(invalid(format!(
                        "COPY {}: not a regular file, directory or symlink",
                        p.display()
                    )))
                }
            }
        }
    }
}

/// Directory entries for the parents of `path` not yet in the tar (root-owned, 0755).
fn parents<W: Write>(
    t: &mut tar::Builder<W>,
    made: &mut std::collections::BTreeSet<String>,
    path: &str,
) -> Result<()> {
    let comps: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|c| !c.is_empty())
        .collect();
    for i in 1..comps.len() {
        let dir = comps[..i].join("/");
        if made.insert(dir.clone()) {
            let mut hd = tar::Header::new_gnu();
            hd.set_entry_type(tar::EntryType::Directory);
            hd.set_mode(0o755);
            hd.set_uid(0);
            hd.set_gid(0);
            hd.set_mtime(0);
            hd.set_size(0);
            t.append_data(&mut hd, format!("{dir}/"), std::io::empty())
                .map_err(|e| invalid(format!("COPY: {e}")))?;
        }
    }
    made.insert(comps.join("/"));
    Ok(())
}

/// `uid[:gid]`, numbers only (names need the image's passwd file: not yet).
fn parse_chown(s: &str) -> Option<(u64, u64)> {
    let (u, g) = s.split_once(':').unwrap_or((s, s));
    Some((u.parse().ok()?, g.parse().ok()?))
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Context paths (relative, `/`-separated) exactly `depth` components deep.
fn list_depth(dir: &Path, prefix: &str, depth: usize, out: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut names: Vec<String> = rd
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for n in names {
        let rel = if prefix.is_empty() {
            n.clone()
        } else {
            format!("{prefix}/{n}")
        };
        if depth == 1 {
            out.push(rel);
        } else {
            let p = dir.join(&n);
            if std::fs::symlink_metadata(&p)
                .map(|m| m.is_dir())
                .unwrap_or(false)
            {
                list_depth(&p, &rel, depth - 1, out);
            }
        }
    }
}

/// Whether a context file is a tar archive (plain, gzip or zstd) that ADD unpacks.
fn is_archive(p: &Path) -> bool {
    let Ok(f) = std::fs::File::open(p) else {
        return false;
    };
    let Ok((_, mut r)) = berth_image::compression::decompress(f) else {
        return false;
    };
    let mut head = [0u8; 512];
    let mut n = 0;
    while n < head.len() {
        match r.read(&mut head[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    n == 512 && &head[257..262] == b"ustar"
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

/// A relative path inside its root, cleaned; None when it would leave it.
fn clean_rel(p: &Path) -> Option<String> {
    let mut out: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => {
                out.pop()?;
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Some(out.join("/"))
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
        assert_eq!(clean_rel(Path::new("a/../b")), Some("b".into()));
        assert_eq!(clean_rel(Path::new("../x")), None);
        assert_eq!(clean_rel(Path::new("/abs/x")), Some("abs/x".into()));
    }

    #[test]
    fn env_keys_are_replaced_not_repeated() {
        let mut env = vec!["A=1".to_string(), "B=2".to_string()];
        set_env(&mut env, "A", "3");
        set_env(&mut env, "C", "4");
        assert_eq!(env, ["A=3", "B=2", "C=4"]);
    }

    #[test]
    fn chown_takes_numbers_only_for_now() {
        assert_eq!(parse_chown("1000"), Some((1000, 1000)));
        assert_eq!(parse_chown("1:2"), Some((1, 2)));
        assert_eq!(parse_chown("app"), None);
    }
}
