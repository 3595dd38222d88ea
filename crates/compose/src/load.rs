//! Finding, reading and resolving a project's compose file: the file names and project
//! name Docker Compose would choose, `.env`, merge keys, interpolation, profiles, and
//! the checks that make a bad file a one-line error naming the file and the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_norway::{Mapping, Value};

use crate::{ComposeError, Result};

/// The file names looked for, in Docker Compose's order, in the working directory and
/// then its parents.
pub const DEFAULT_FILES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// The override files read after the file found without `-f`, beside it.
pub const OVERRIDE_FILES: [&str; 4] = [
    "compose.override.yaml",
    "compose.override.yml",
    "docker-compose.override.yaml",
    "docker-compose.override.yml",
];

/// The top-level keys of the specification (besides `x-…` extensions).
const TOP_LEVEL: [&str; 8] = [
    "version", "name", "include", "services", "networks", "volumes", "secrets", "configs",
];

/// What the command line and the environment ask for.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `-f`: none means found as Docker Compose finds them (`COMPOSE_FILE`, then
    /// [`DEFAULT_FILES`]).
    pub files: Vec<PathBuf>,
    /// `-p`.
    pub project_name: Option<String>,
    /// `--env-file`: none means the project directory's `.env`, if there is one.
    pub env_files: Vec<PathBuf>,
    /// `--profile` (and `COMPOSE_PROFILES`).
    pub profiles: Vec<String>,
    pub working_dir: PathBuf,
    /// The process's environment.
    pub environ: BTreeMap<String, String>,
}

/// A resolved project.
#[derive(Debug, Clone)]
pub struct Project {
    pub name: String,
    /// The directory relative paths in the file are relative to: the first file's.
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
    /// The model: interpolated, merge keys applied, inactive profiles' services out,
    /// `name` first.
    pub model: Value,
    /// The variables interpolation saw: the `.env` files' overlaid by the environment.
    pub environment: BTreeMap<String, String>,
    /// Variables used but not set (each once).
    pub warnings: Vec<String>,
}

fn invalid(msg: impl Into<String>) -> ComposeError {
    ComposeError::Invalid(msg.into())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ComposeError + '_ {
    move |source| ComposeError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The compose files for `opts`.
pub fn find_files(opts: &Options) -> Result<Vec<PathBuf>> {
    let given: Vec<PathBuf> = if !opts.files.is_empty() {
        opts.files.clone()
    } else if let Some(list) = opts.environ.get("COMPOSE_FILE").filter(|l| !l.is_empty()) {
        let sep = opts
            .environ
            .get("COMPOSE_PATH_SEPARATOR")
            .cloned()
            .unwrap_or_else(|| ":".into());
        list.split(sep.as_str()).map(PathBuf::from).collect()
    } else {
        let mut dir = Some(opts.working_dir.as_path());
        let mut found = None;
        while let Some(d) = dir {
            if let Some(f) = DEFAULT_FILES
                .iter()
                .map(|n| d.join(n))
                .find(|p| p.is_file())
            {
                found = Some(f);
                break;
            }
            dir = d.parent();
        }
        let found = found.ok_or_else(|| {
            invalid(format!(
                "no configuration file provided: not found (looked for {} in {} and its parents)",
                DEFAULT_FILES.join(", "),
                opts.working_dir.display()
            ))
        })?;
        // Its override file, beside it, comes after it.
        let dir = found.parent().map(Path::to_path_buf).unwrap_or_default();
        let over = OVERRIDE_FILES
            .iter()
            .map(|n| dir.join(n))
            .find(|p| p.is_file());
        std::iter::once(found).chain(over).collect()
    };
    Ok(given
        .into_iter()
        .map(|f| {
            if f.is_absolute() || f.as_os_str() == "-" {
                f
            } else {
                opts.working_dir.join(f)
            }
        })
        .collect())
}

/// A project name as Docker Compose normalises it: lowercase, only `[a-z0-9_-]`,
/// starting with a letter or digit.
pub fn normalize_name(name: &str) -> Result<String> {
    let n: String = name
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect();
    let n = n.trim_start_matches(['_', '-']).to_string();
    if n.is_empty() {
        return Err(invalid(format!(
            "invalid project name {name:?}: must contain at least one letter or digit"
        )));
    }
    Ok(n)
}

/// Loads the project `opts` describes.
pub fn load(opts: &Options) -> Result<Project> {
    let files = find_files(opts)?;
    if files.iter().any(|f| f.as_os_str() == "-") {
        return Err(invalid(
            "reading the compose file from stdin (-f -) is not implemented yet",
        ));
    }
    // Paths in every file are relative to the first file's directory.
    let dir = files[0]
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| opts.working_dir.clone());

    // The variables: the .env files', then the process's over them.
    let env_files: Vec<PathBuf> = if opts.env_files.is_empty() {
        let default = dir.join(".env");
        if default.is_file() {
            vec![default]
        } else {
            Vec::new()
        }
    } else {
        opts.env_files
            .iter()
            .map(|f| {
                if f.is_absolute() {
                    f.clone()
                } else {
                    opts.working_dir.join(f)
                }
            })
            .collect()
    };
    let mut environment = BTreeMap::new();
    for f in &env_files {
        let text = std::fs::read_to_string(f).map_err(io(f))?;
        for (k, v) in crate::dotenv::parse(&text, &opts.environ)
            .map_err(|e| invalid(format!("{}: {e}", f.display())))?
        {
            environment.insert(k, v);
        }
    }
    environment.extend(opts.environ.iter().map(|(k, v)| (k.clone(), v.clone())));

    let mut warnings = Vec::new();
    let mut model = Value::Mapping(Mapping::new());
    for file in &files {
        let one = read_file(file, &dir, &environment, &mut warnings)?;
        model = crate::merge::merge(model, one, &mut Vec::new()).unwrap_or(Value::Null);
    }
    let mut model = crate::merge::untag(model);
    let mut seen = std::collections::HashSet::new();
    warnings.retain(|w| seen.insert(w.clone()));
    let what = files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");

    let name = match &opts.project_name {
        Some(n) => normalize_name(n)?,
        None => match environment
            .get("COMPOSE_PROJECT_NAME")
            .filter(|n| !n.is_empty())
        {
            Some(n) => normalize_name(n)?,
            None => match model.get("name").and_then(Value::as_str) {
                Some(n) => normalize_name(n)?,
                None => normalize_name(
                    &dir.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                )?,
            },
        },
    };

    let mut profiles = opts.profiles.clone();
    if profiles.is_empty() {
        if let Some(p) = environment.get("COMPOSE_PROFILES") {
            profiles = p
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(String::from)
                .collect();
        }
    }
    drop_inactive_services(&mut model, &profiles);
    crate::project::complete(&mut model, &name).map_err(|e| invalid(format!("{what}: {e}")))?;

    // `name` first, as `config` prints it.
    if let Value::Mapping(top) = &mut model {
        top.remove("name");
        let mut out = Mapping::new();
        out.insert("name".into(), Value::String(name.clone()));
        for (k, v) in std::mem::take(top) {
            out.insert(k, v);
        }
        *top = out;
    }
    Ok(Project {
        name,
        dir,
        files,
        model,
        environment,
        warnings,
    })
}

/// One file, parsed, its merge keys applied, checked, interpolated and normalised.
fn read_file(
    file: &Path,
    dir: &Path,
    environment: &BTreeMap<String, String>,
    warnings: &mut Vec<String>,
) -> Result<Value> {
    let text = std::fs::read_to_string(file).map_err(io(file))?;
    let what = file.display().to_string();
    let mut model: Value = serde_norway::from_str(&text).map_err(|e| {
        let at = e
            .location()
            .map(|l| format!("line {}: ", l.line()))
            .unwrap_or_default();
        invalid(format!("{what}: yaml: {at}{e}"))
    })?;
    if model.is_null() {
        return Err(invalid(format!("{what}: empty compose file")));
    }
    apply_merge_keys(&mut model).map_err(|e| invalid(format!("{what}: {e}")))?;
    let Value::Mapping(top) = &model else {
        return Err(invalid(format!(
            "{what}: Top-level object must be a mapping"
        )));
    };
    for k in top.keys() {
        let k = key_text(k);
        if !TOP_LEVEL.contains(&k.as_str()) && !k.starts_with("x-") {
            return Err(invalid(format!(
                "{what}: (root) additional property {k} is not allowed"
            )));
        }
    }
    if top.contains_key("include") {
        return Err(invalid(format!("{what}: include is not implemented yet")));
    }
    interpolate_values(&mut model, &mut Vec::new(), environment, warnings)
        .map_err(|e| invalid(format!("{what}: {e}")))?;
    check_sections(&model, &what)?;
    crate::normalize::normalize_file(&mut model, dir, environment)
        .map_err(|e| invalid(format!("{what}: {e}")))?;
    resolve_extends(&mut model, file, environment, warnings, 0)?;
    Ok(model)
}

/// Replaces each service's `extends` by the service it names (in this file or in
/// `file`, relative to this one), merged under it by the merge rules: the base first,
/// the service's own keys over it. Bases that extend are resolved first; a cycle is an
/// error.
fn resolve_extends(
    model: &mut Value,
    file: &Path,
    environment: &BTreeMap<String, String>,
    warnings: &mut Vec<String>,
    depth: usize,
) -> Result<()> {
    let what = file.display().to_string();
    if depth > 16 {
        return Err(invalid(format!("{what}: extends nests too deeply")));
    }
    let names = crate::mapping_keys(model.get("services"));
    let mut done: Vec<String> = Vec::new();
    for name in &names {
        resolve_one(
            model,
            name,
            file,
            environment,
            warnings,
            depth,
            &mut Vec::new(),
            &mut done,
        )?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn resolve_one(
    model: &mut Value,
    name: &str,
    file: &Path,
    environment: &BTreeMap<String, String>,
    warnings: &mut Vec<String>,
    depth: usize,
    trail: &mut Vec<String>,
    done: &mut Vec<String>,
) -> Result<()> {
    let what = file.display().to_string();
    if done.iter().any(|d| d == name) {
        return Ok(());
    }
    if trail.iter().any(|t| t == name) {
        trail.push(name.to_string());
        return Err(invalid(format!(
            "{what}: circular reference with extends: {}",
            trail.join(" -> ")
        )));
    }
    let Some(ext) = model["services"][name].get("extends").cloned() else {
        done.push(name.to_string());
        return Ok(());
    };
    let (base_name, base_file) = match &ext {
        Value::String(s) => (s.clone(), None),
        Value::Mapping(_) => (
            ext.get("service")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    invalid(format!(
                        "{what}: services.{name}.extends: service is required"
                    ))
                })?
                .to_string(),
            ext.get("file").and_then(Value::as_str).map(String::from),
        ),
        _ => {
            return Err(invalid(format!(
                "{what}: services.{name}.extends must be a service name or a mapping"
            )))
        }
    };
    let base = match base_file {
        None => {
            if model["services"].get(base_name.as_str()).is_none() {
                return Err(invalid(format!(
                    "{what}: services.{name}.extends: no service {base_name:?}"
                )));
            }
            trail.push(name.to_string());
            resolve_one(
                model,
                &base_name,
                file,
                environment,
                warnings,
                depth,
                trail,
                done,
            )?;
            trail.pop();
            model["services"][base_name.as_str()].clone()
        }
        Some(f) => {
            let dir = file.parent().unwrap_or(Path::new("/"));
            let other = if f.starts_with('/') {
                PathBuf::from(&f)
            } else {
                dir.join(&f)
            };
            let other_dir = other.parent().unwrap_or(Path::new("/")).to_path_buf();
            let mut theirs = read_file(&other, &other_dir, environment, warnings)
                .map_err(|e| invalid(format!("{what}: services.{name}.extends: {e}")))?;
            resolve_extends(&mut theirs, &other, environment, warnings, depth + 1)?;
            theirs["services"]
                .get(base_name.as_str())
                .cloned()
                .ok_or_else(|| {
                    invalid(format!(
                        "{what}: services.{name}.extends: no service {base_name:?} in {}",
                        other.display()
                    ))
                })?
        }
    };
    let mut mine = model["services"][name].clone();
    if let Value::Mapping(m) = &mut mine {
        m.remove("extends");
    }
    let merged = crate::merge::merge(base, mine, &mut vec!["services".into(), name.into()])
        .unwrap_or(Value::Null);
    model["services"][name] = merged;
    done.push(name.to_string());
    Ok(())
}

fn key_text(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        other => serde_norway::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

fn has_merge_key(v: &Value) -> bool {
    match v {
        Value::Mapping(m) => m
            .iter()
            .any(|(k, v)| k.as_str() == Some("<<") || has_merge_key(v)),
        Value::Sequence(s) => s.iter().any(has_merge_key),
        Value::Tagged(t) => has_merge_key(&t.value),
        _ => false,
    }
}

/// Applies YAML merge keys (`<<: *anchor`), again until none is left (a merged mapping
/// may bring its own).
fn apply_merge_keys(v: &mut Value) -> std::result::Result<(), String> {
    for _ in 0..32 {
        if !has_merge_key(v) {
            return Ok(());
        }
        v.apply_merge().map_err(|e| format!("merge key: {e}"))?;
    }
    Err("merge keys nest too deeply".into())
}

/// Interpolates every string value (never a key), in place. `path` is where it is, for
/// the error.
fn interpolate_values(
    v: &mut Value,
    path: &mut Vec<String>,
    environment: &BTreeMap<String, String>,
    warnings: &mut Vec<String>,
) -> std::result::Result<(), String> {
    match v {
        Value::String(s) if s.contains('$') => {
            let out = crate::interpolate::interpolate(s, &|n| environment.get(n).cloned())
                .map_err(|e| format!("{}: {e}", path.join(".")))?;
            warnings.extend(out.warnings);
            *s = out.text;
        }
        Value::Mapping(m) => {
            for (k, v) in m.iter_mut() {
                path.push(key_text(k));
                interpolate_values(v, path, environment, warnings)?;
                path.pop();
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(format!("[{i}]"));
                interpolate_values(item, path, environment, warnings)?;
                path.pop();
            }
        }
        Value::Tagged(t) => interpolate_values(&mut t.value, path, environment, warnings)?,
        _ => {}
    }
    Ok(())
}

/// The sections are mappings of valid names.
fn check_sections(model: &Value, what: &str) -> Result<()> {
    for section in ["services", "networks", "volumes", "secrets", "configs"] {
        let Some(v) = model.get(section) else {
            continue;
        };
        let Value::Mapping(m) = v else {
            if v.is_null() {
                continue;
            }
            return Err(invalid(format!("{what}: {section} must be a mapping")));
        };
        for (k, body) in m {
            let name = key_text(k);
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            {
                return Err(invalid(format!(
                    "{what}: {section}: invalid name {name:?}: only [a-zA-Z0-9._-] are allowed"
                )));
            }
            if section == "services" && !matches!(body, Value::Mapping(_)) {
                return Err(invalid(format!(
                    "{what}: services.{name} must be a mapping"
                )));
            }
        }
    }
    Ok(())
}

/// Services with `profiles` run only when one of theirs is active.
fn drop_inactive_services(model: &mut Value, active: &[String]) {
    let Some(Value::Mapping(services)) = model.get_mut("services") else {
        return;
    };
    services.retain(
        |_, s| match s.get("profiles").and_then(Value::as_sequence) {
            Some(list) if !list.is_empty() => list
                .iter()
                .filter_map(Value::as_str)
                .any(|p| p == "*" || active.iter().any(|a| a == p)),
            _ => true,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(files: &[(&str, &str)], opts: impl FnOnce(&mut Options)) -> Result<Project> {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("My App");
        std::fs::create_dir_all(&root).unwrap();
        for (name, text) in files {
            let f = root.join(name);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, text).unwrap();
        }
        let mut o = Options {
            working_dir: root,
            ..Default::default()
        };
        opts(&mut o);
        let p = load(&o);
        drop(dir);
        p
    }

    #[test]
    fn names_files_and_env_are_found_as_docker_compose_finds_them() {
        let p = project(
            &[
                (
                    "docker-compose.yml",
                    "services:\n  web:\n    image: \"busybox:${TAG}\"\n",
                ),
                (
                    "compose.yaml",
                    "services:\n  web:\n    image: \"nginx:${TAG:-x}\"\n",
                ),
                (".env", "TAG=from-env-file\n"),
            ],
            |_| {},
        )
        .unwrap();
        // compose.yaml comes first; the directory names the project.
        assert!(p.files[0].ends_with("compose.yaml"));
        assert_eq!(p.name, "myapp");
        assert_eq!(p.model["services"]["web"]["image"], "nginx:from-env-file");
        // The environment wins over .env; -p over everything.
        let p = project(
            &[
                (
                    "compose.yaml",
                    "name: Named\nservices:\n  web:\n    image: \"b:${TAG}\"\n",
                ),
                (".env", "TAG=file\nCOMPOSE_PROJECT_NAME=fromenv\n"),
            ],
            |o| {
                o.environ.insert("TAG".into(), "shell".into());
            },
        )
        .unwrap();
        assert_eq!(p.model["services"]["web"]["image"], "b:shell");
        assert_eq!(p.name, "fromenv");
        let p = project(&[("compose.yaml", "name: Named\nservices: {}\n")], |o| {
            o.project_name = Some("Given_1".into())
        })
        .unwrap();
        assert_eq!(p.name, "given_1");
        let out = serde_norway::to_string(&p.model).unwrap();
        assert!(out.starts_with("name: given_1\n"), "{out}");
    }

    #[test]
    fn anchors_merge_keys_and_extensions() {
        let p = project(
            &[(
                "compose.yaml",
                concat!(
                    "x-common: &common\n",
                    "  restart: always\n",
                    "  environment:\n",
                    "    LEVEL: ${LEVEL:-info}\n",
                    "x-more: &more\n",
                    "  <<: *common\n",
                    "  user: \"1000\"\n",
                    "services:\n",
                    "  a:\n",
                    "    <<: *more\n",
                    "    image: busybox\n",
                    "  b:\n",
                    "    <<: *common\n",
                    "    image: busybox\n",
                    "    restart: \"no\"\n",
                ),
            )],
            |_| {},
        )
        .unwrap();
        let a = &p.model["services"]["a"];
        assert_eq!(a["restart"], "always");
        assert_eq!(a["user"], "1000");
        assert_eq!(a["environment"]["LEVEL"], "info");
        assert_eq!(p.model["services"]["b"]["restart"], "no");
        assert!(!serde_norway::to_string(&p.model).unwrap().contains("<<"));
    }

    #[test]
    fn profiles_decide_which_services_exist() {
        let file =
            "services:\n  web:\n    image: a\n  debug:\n    image: b\n    profiles: [debug]\n";
        let p = project(&[("compose.yaml", file)], |_| {}).unwrap();
        assert!(p.model["services"].get("debug").is_none());
        let p = project(&[("compose.yaml", file)], |o| {
            o.profiles = vec!["debug".into()]
        })
        .unwrap();
        assert!(p.model["services"].get("debug").is_some());
        let p = project(&[("compose.yaml", file)], |o| {
            o.environ
                .insert("COMPOSE_PROFILES".into(), "other, debug".into());
        })
        .unwrap();
        assert!(p.model["services"].get("debug").is_some());
    }

    #[test]
    fn bad_files_are_one_line_errors_naming_file_and_key() {
        // Every error is one line.
        let err = |files: &[(&str, &str)]| {
            let e = project(files, |_| {}).unwrap_err().to_string();
            assert_eq!(e.lines().count(), 1, "{e}");
            e
        };
        let e = err(&[("compose.yaml", "services:\n  web:\n    image: [unclosed\n")]);
        assert!(e.contains("compose.yaml: yaml: line"), "{e}");
        let e = err(&[("compose.yaml", "servics:\n  web: {}\n")]);
        assert!(
            e.ends_with("compose.yaml: (root) additional property servics is not allowed"),
            "{e}"
        );
        let e = err(&[(
            "compose.yaml",
            "services:\n  db:\n    environment:\n      - PASS=${DB_PASS:?set DB_PASS}\n",
        )]);
        assert!(
            e.ends_with("compose.yaml: services.db.environment.[0]: required variable DB_PASS is missing a value: set DB_PASS"),
            "{e}"
        );
        let e = err(&[("compose.yaml", "services:\n  web: nginx\n")]);
        assert!(e.ends_with("services.web must be a mapping"), "{e}");
        let e = err(&[("compose.yaml", "services:\n  \"we b\":\n    image: a\n")]);
        assert!(e.contains("invalid name \"we b\""), "{e}");
        let e = err(&[("compose.yaml", "- a\n- b\n")]);
        assert!(e.ends_with("Top-level object must be a mapping"), "{e}");
        let e = err(&[("other.yaml", "services: {}\n")]);
        assert!(e.starts_with("no configuration file provided"), "{e}");
        let e = err(&[("compose.yaml", "services: {}\n"), (".env", "A='x\n")]);
        assert!(e.contains(".env: line 1: unterminated"), "{e}");
    }

    #[test]
    fn unset_variables_warn_once_and_dollars_escape() {
        let p = project(
            &[(
                "compose.yaml",
                "services:\n  web:\n    image: \"a:${NOPE}\"\n    command: \"echo $$HOME ${NOPE}\"\n",
            )],
            |_| {},
        )
        .unwrap();
        assert_eq!(
            serde_norway::to_string(&p.model["services"]["web"]["command"]).unwrap(),
            "- echo\n- $HOME\n"
        );
        assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    }

    #[test]
    fn files_merge_in_order_and_the_override_file_is_found() {
        let base = concat!(
            "services:\n  web:\n    image: web:1\n    command: [serve]\n",
            "    ports: [\"8080:80\"]\n    environment: [A=1, B=2]\n",
            "    volumes: [./site:/site]\n",
        );
        let over = concat!(
            "services:\n  web:\n    command: serve --debug\n",
            "    ports: [\"8080:80\", \"9090:90\"]\n",
            "    environment:\n      B: changed\n      C: '3'\n",
            "    volumes: [./other:/site]\n",
            "  cache:\n    image: kv\n",
        );
        let p = project(
            &[("compose.yaml", base), ("compose.override.yaml", over)],
            |_| {},
        )
        .unwrap();
        assert_eq!(p.files.len(), 2);
        let web = &p.model["services"]["web"];
        assert_eq!(
            serde_norway::to_string(&web["command"]).unwrap(),
            "- serve\n- --debug\n"
        );
        assert_eq!(web["ports"].as_sequence().unwrap().len(), 2);
        assert_eq!(web["environment"]["A"], "1");
        assert_eq!(web["environment"]["B"], "changed");
        assert_eq!(web["environment"]["C"], "3");
        let vols = web["volumes"].as_sequence().unwrap();
        assert_eq!(vols.len(), 1);
        assert!(vols[0]["source"]
            .as_str()
            .unwrap()
            .ends_with("/My App/other"));
        assert!(p.model["services"]["cache"].is_mapping());
        // -f files, in their order (the override file is not added to them).
        let p = project(
            &[
                ("a.yaml", base),
                ("b.yaml", "services:\n  web:\n    image: web:2\n"),
            ],
            |o| o.files = vec!["a.yaml".into(), "b.yaml".into()],
        )
        .unwrap();
        assert_eq!(p.model["services"]["web"]["image"], "web:2");
        assert_eq!(p.model["networks"]["default"]["name"], "myapp_default");
    }

    #[test]
    fn extends_merges_a_base_service_from_this_file_or_another() {
        let p = project(
            &[
                (
                    "compose.yaml",
                    concat!(
                        "services:\n",
                        "  base:\n    image: busybox\n    user: root\n    environment: [TZ=utc, PORT=80]\n",
                        "    volumes: [\"common:/data:rw\"]\n",
                        "  common:\n    extends: base\n    security_opt: [label=role:ROLE]\n",
                        "  cli:\n    extends:\n      service: common\n    environment:\n      PORT: '8080'\n",
                        "    volumes: [\"mine:/data:ro\"]\n    security_opt: [label=user:USER]\n",
                        "  remote:\n    extends:\n      file: lib/common.yaml\n      service: tool\n",
                        "volumes:\n  common:\n  mine:\n",
                    ),
                ),
                (
                    "lib/common.yaml",
                    "services:\n  tool:\n    image: tool:1\n    volumes: [./cache:/cache]\n",
                ),
            ],
            |_| {},
        )
        .unwrap();
        let cli = &p.model["services"]["cli"];
        assert_eq!(cli["user"], "root");
        assert_eq!(cli["environment"]["TZ"], "utc");
        assert_eq!(cli["environment"]["PORT"], "8080");
        let vols = cli["volumes"].as_sequence().unwrap();
        assert_eq!(vols.len(), 1);
        assert_eq!(vols[0]["source"], "mine");
        assert_eq!(vols[0]["read_only"], true);
        assert_eq!(cli["security_opt"].as_sequence().unwrap().len(), 2);
        assert!(cli.get("extends").is_none());
        let remote = &p.model["services"]["remote"];
        assert_eq!(remote["image"], "tool:1");
        // Paths in the other file are its own directory's.
        assert!(remote["volumes"][0]["source"]
            .as_str()
            .unwrap()
            .ends_with("/lib/cache"));
        let e = project(
            &[(
                "compose.yaml",
                "services:\n  a:\n    extends: b\n  b:\n    extends: a\n",
            )],
            |_| {},
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("circular reference with extends: a -> b -> a"),
            "{e}"
        );
    }

    #[test]
    fn project_names_are_normalised() {
        assert_eq!(normalize_name("My App.v2").unwrap(), "myappv2");
        assert_eq!(normalize_name("__x-Y").unwrap(), "x-y");
        assert!(normalize_name("...").is_err());
    }
}
