//! `berth build` and `berth builder prune`: flags as `docker build` takes them, progress
//! on stderr as BuildKit's plain output, the image id on stdout with `-q`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use berth_engine::specs::build::{self as spec, BuildSpec};
use berth_engine::Engine;
use clap::{Args, Subcommand};
use nix::sys::signal::{SigHandler, Signal};

use crate::format::human_size;
use crate::{CliResult, Failure};

#[derive(Args)]
pub struct BuildArgs {
    /// Name and optionally a tag (name:tag)
    #[arg(short = 't', long = "tag")]
    tags: Vec<String>,
    /// Name of the Dockerfile (default: CONTEXT/Dockerfile; "-" reads it from stdin)
    #[arg(short = 'f', long = "file")]
    file: Option<String>,
    /// Set build-time variables
    #[arg(long = "build-arg")]
    build_args: Vec<String>,
    /// Set the target build stage to build
    #[arg(long)]
    target: Option<String>,
    /// Set metadata for an image
    #[arg(long = "label")]
    labels: Vec<String>,
    /// Do not use cache when building the image
    #[arg(long)]
    no_cache: bool,
    /// Always attempt to pull a newer version of the image
    #[arg(long)]
    pull: bool,
    /// Suppress the build output and print image ID on success
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Write the image ID to the file
    #[arg(long)]
    iidfile: Option<PathBuf>,
    /// Type of progress output (auto, plain, quiet)
    #[arg(long, default_value = "auto")]
    progress: String,
    /// Set target platform for build
    #[arg(long)]
    platform: Option<String>,
    /// Secret to expose to the build (id=mysecret[,src=/local/secret])
    #[arg(long)]
    secret: Vec<String>,
    /// Networking mode for the RUN instructions during build (default, host, none)
    #[arg(long, default_value = "default")]
    network: String,
    /// Output destination (type=docker|oci|local,dest=path)
    #[arg(short = 'o', long)]
    output: Vec<String>,
    /// Build context: a directory, or "-" for a tar archive or a Dockerfile on stdin
    context: String,
}

#[derive(Subcommand)]
pub enum BuilderCmd {
    /// Remove build cache
    Prune {
        /// Remove all unused build cache, not just dangling ones
        #[arg(short = 'a', long)]
        all: bool,
        /// Do not prompt for confirmation
        #[arg(short = 'f', long)]
        force: bool,
    },
}

fn not_yet(what: &str) -> Failure {
    Failure::new(1, format!("{what} is not implemented yet"))
}

/// Where `--output` sends the result.
enum Output {
    /// The image store (`type=docker` or `type=image` without a destination).
    Store,
    /// An image archive, loadable by `docker load` and an OCI layout (`type=docker|oci`).
    Archive(String),
    /// The file system, as a directory (`type=local`) or a tar (`type=tar`; `-` = stdout).
    Local(PathBuf),
    Tar(String),
}

fn parse_output(list: &[String]) -> CliResult<Output> {
    let [spec] = list else {
        return match list.len() {
            0 => Ok(Output::Store),
            _ => Err(not_yet("more than one --output")),
        };
    };
    if !spec.contains('=') {
        // `-o DIR` is type=local, `-o -` a tar on stdout.
        return Ok(if spec == "-" {
            Output::Tar("-".into())
        } else {
            Output::Local(PathBuf::from(spec))
        });
    }
    let mut kind = None;
    let mut dest = None;
    for field in spec.split(',') {
        match field.split_once('=') {
            Some(("type", v)) => kind = Some(v.to_string()),
            Some(("dest", v)) => dest = Some(v.to_string()),
            _ => {
                return Err(Failure::new(
                    1,
                    format!("invalid --output {spec:?}: unknown field {field:?}"),
                ))
            }
        }
    }
    let need = |dest: Option<String>, kind: &str| {
        dest.ok_or_else(|| Failure::new(1, format!("--output type={kind} needs dest=")))
    };
    match kind.as_deref() {
        Some("docker" | "image") if dest.is_none() => Ok(Output::Store),
        Some(k @ ("docker" | "oci")) => Ok(Output::Archive(need(dest, k)?)),
        Some("local") => Ok(Output::Local(PathBuf::from(need(dest, "local")?))),
        Some("tar") => Ok(Output::Tar(need(dest, "tar")?)),
        Some(k) => Err(not_yet(&format!("--output type={k}"))),
        None => Err(Failure::new(
            1,
            format!("invalid --output {spec:?}: no type="),
        )),
    }
}

/// `--secret id=ID[,src=FILE|,env=VAR]`: the secret's bytes by id. With neither, the
/// environment variable ID if set, else the file ID.
fn read_secrets(list: &[String]) -> CliResult<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    for spec in list {
        let (mut id, mut src, mut env) = (None, None, None);
        for field in spec.split(',') {
            match field.split_once('=') {
                Some(("id", v)) => id = Some(v.to_string()),
                Some(("src" | "source", v)) => src = Some(v.to_string()),
                Some(("env", v)) => env = Some(v.to_string()),
                Some(("type", "file" | "env")) => {}
                _ => {
                    return Err(Failure::new(
                        1,
                        format!("invalid --secret {spec:?}: unexpected {field:?}"),
                    ))
                }
            }
        }
        let id = id
            .or_else(|| env.clone())
            .ok_or_else(|| Failure::new(1, format!("invalid --secret {spec:?}: no id=")))?;
        let value = match (src, env) {
            (Some(f), _) => std::fs::read(&f)
                .map_err(|e| Failure::new(1, format!("secret {id}: reading {f}: {e}")))?,
            (None, Some(v)) => std::env::var(&v)
                .map_err(|_| {
                    Failure::new(
                        1,
                        format!("secret {id}: environment variable {v} is not set"),
                    )
                })?
                .into_bytes(),
            (None, None) => match std::env::var(&id) {
                Ok(v) => v.into_bytes(),
                Err(_) => std::fs::read(&id)
                    .map_err(|e| Failure::new(1, format!("secret {id}: reading {id}: {e}")))?,
            },
        };
        out.insert(id, value);
    }
    Ok(out)
}

pub fn build(engine: &Engine, a: &BuildArgs) -> CliResult<u8> {
    let output = parse_output(&a.output)?;
    let secrets = read_secrets(&a.secret)?;
    if let Some(p) = &a.platform {
        spec::platform(p).map_err(|e| Failure::new(1, e.to_string()))?;
    }
    let network_none =
        spec::network_none(&a.network).map_err(|e| Failure::new(1, e.to_string()))?;
    let quiet = a.quiet || a.progress == "quiet";
    if !matches!(a.progress.as_str(), "auto" | "plain" | "tty" | "quiet") {
        return Err(Failure::new(
            1,
            format!(
                "invalid progress mode {:?}: use auto, plain or quiet",
                a.progress
            ),
        ));
    }
    let kv = |list: &[String]| -> BTreeMap<String, String> {
        list.iter()
            .map(|l| match l.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                // `--build-arg NAME`: the value comes from the environment, if set.
                None => (l.clone(), std::env::var(l).unwrap_or_default()),
            })
            .collect()
    };
    let tags = a
        .tags
        .iter()
        .map(|t| spec::tag(t))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure::new(1, e.to_string()))?;
    let mut opts = BuildSpec {
        context: PathBuf::from(&a.context),
        tags,
        build_args: kv(&a.build_args),
        target: a.target.clone(),
        labels: kv(&a.labels),
        no_cache: a.no_cache,
        pull: a.pull,
        secrets,
        network_none,
        ..Default::default()
    };
    let _stdin_context;
    if a.context == "-" {
        // A Dockerfile on stdin (no context), or a tar of the context.
        let mut input = Vec::new();
        std::io::stdin().read_to_end(&mut input)?;
        let dir = tempfile::Builder::new()
            .prefix("berth-build-")
            .tempdir_in(engine.tmp_dir())
            .map_err(|e| Failure::new(1, format!("build context: {e}")))?;
        if input.len() >= 512 && &input[257..262] == b"ustar" {
            berth_image::layer::apply_tar(
                &input[..],
                dir.path(),
                &berth_image::layer::ApplyOptions {
                    allow_devices: false,
                    overlay_whiteouts: false,
                    preserve_owner: false,
                },
            )
            .map_err(|e| Failure::new(1, format!("build context: {e}")))?;
        } else {
            opts.dockerfile_text = Some(String::from_utf8_lossy(&input).into_owned());
        }
        opts.context = dir.path().to_path_buf();
        _stdin_context = dir;
    }
    match a.file.as_deref() {
        Some("-") => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            opts.dockerfile_text = Some(text);
        }
        Some(f) => opts.dockerfile = Some(PathBuf::from(f)),
        None => {}
    }
    let id = run_build(engine, &opts, quiet)?;
    let id_text = id.to_string();
    match &output {
        Output::Store => {}
        Output::Archive(dest) => {
            write_to(dest, |w| engine.save(std::slice::from_ref(&id_text), w))?
        }
        Output::Tar(dest) => write_to(dest, |w| engine.image_tree_tar(&id_text, w))?,
        Output::Local(dir) => engine.image_tree_into(&id_text, dir)?,
    }
    if !matches!(output, Output::Store) && opts.tags.is_empty() {
        // The result went elsewhere; do not leave an unnamed image behind. Its layers
        // stay in the build cache.
        let _ = engine.remove_image(&id_text, false);
    }
    if matches!(&output, Output::Tar(d) | Output::Archive(d) if d == "-") {
        return Ok(0);
    }
    if let Some(p) = &a.iidfile {
        std::fs::write(p, id.to_string())
            .map_err(|e| Failure::new(1, format!("writing {}: {e}", p.display())))?;
    }
    if quiet {
        println!("{id}");
    } else {
        eprintln!("writing image {id} done");
        for t in &opts.tags {
            eprintln!("naming to {t} done");
        }
    }
    Ok(0)
}

/// Builds `opts` with BuildKit's plain progress on stderr (with `quiet`, only the last
/// lines of a step that fails); Ctrl-C stops the build cleanly.
pub fn run_build(
    engine: &Engine,
    opts: &BuildSpec,
    quiet: bool,
) -> CliResult<berth_image::digest::Digest> {
    // Ctrl-C (or a TERM, or a closed terminal) stops the build cleanly: the running
    // step's container is killed, temporary images and mounts go, nothing is tagged.
    static CANCEL: AtomicBool = AtomicBool::new(false);
    extern "C" fn on_signal(_: libc::c_int) {
        CANCEL.store(true, Ordering::SeqCst);
    }
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        let _ = unsafe { nix::sys::signal::signal(sig, SigHandler::Handler(on_signal)) };
    }
    // The last lines of the step that fails are shown even with -q.
    let mut recent: std::collections::VecDeque<String> = Default::default();
    let built = engine.build(
        opts,
        &mut |line| {
            if !quiet {
                eprintln!("{line}");
            } else {
                if line.starts_with('#') && line.contains(" [") {
                    recent.clear();
                }
                if recent.len() == 10 {
                    recent.pop_front();
                }
                recent.push_back(line.to_string());
            }
        },
        &CANCEL,
    );
    match built {
        Ok(id) => Ok(id),
        Err(e) => {
            for l in &recent {
                eprintln!("{l}");
            }
            if CANCEL.load(Ordering::SeqCst) {
                return Err(Failure::new(130, berth_engine::build::CANCELLED));
            }
            Err(e.into())
        }
    }
}

/// Writes to file `dest` (through a temp file and a rename) or to stdout (`-`).
fn write_to(
    dest: &str,
    f: impl FnOnce(&mut dyn std::io::Write) -> berth_engine::Result<()>,
) -> CliResult<()> {
    if dest == "-" {
        let mut out = std::io::stdout().lock();
        f(&mut out)?;
        return Ok(());
    }
    let path = std::path::Path::new(dest);
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| Failure::new(1, format!("writing {dest}: {e}")))?;
    {
        let mut w = std::io::BufWriter::new(tmp.as_file_mut());
        f(&mut w)?;
        std::io::Write::flush(&mut w)?;
    }
    tmp.persist(path)
        .map_err(|e| Failure::new(1, format!("writing {dest}: {e}")))?;
    Ok(())
}

pub fn builder(engine: &Engine, cmd: &BuilderCmd) -> CliResult<u8> {
    match cmd {
        BuilderCmd::Prune { .. } => {
            let (n, bytes) = engine.prune_build_cache()?;
            println!("Deleted build cache objects: {n}");
            println!("Total:\t{}", human_size(bytes));
            Ok(0)
        }
    }
}
