//! `berth build` and `berth builder prune`: flags as `docker build` takes them, progress
//! on stderr as BuildKit's plain output, the image id on stdout with `-q`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use berth_engine::build::BuildOptions;
use berth_engine::Engine;
use clap::{Args, Subcommand};

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

pub fn build(engine: &Engine, a: &BuildArgs) -> CliResult<u8> {
    if !a.secret.is_empty() {
        return Err(not_yet("build --secret"));
    }
    if !a.output.is_empty() {
        return Err(not_yet("build --output"));
    }
    if let Some(p) = &a.platform {
        let host = berth_image::config::host_platform();
        if *p != format!("{}/{}", host.os, host.architecture) {
            return Err(not_yet(&format!("building for platform {p}")));
        }
    }
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
    let mut tags = Vec::new();
    for t in &a.tags {
        let r = berth_image::Reference::parse(t)
            .map_err(|e| Failure::new(1, format!("invalid tag {t:?}: {e}")))?;
        tags.push(r.to_string());
    }
    let mut opts = BuildOptions {
        context: PathBuf::from(&a.context),
        tags,
        build_args: kv(&a.build_args),
        target: a.target.clone(),
        labels: kv(&a.labels),
        no_cache: a.no_cache,
        pull: a.pull,
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
    let id = engine.build(&opts, &mut |line| {
        if !quiet {
            eprintln!("{line}");
        }
    })?;
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
