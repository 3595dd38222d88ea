//! The build corpus: every directory of `tests/build-corpus` is a Dockerfile (with its
//! `context/`, and the extra `build` arguments in `args`, one per line) and what the image
//! it makes must be: `expect` lines `FORMAT => VALUE` for `inspect -f`, and `check.sh`, a
//! script run in the image that fails when a file is not as it should be.
//!
//! The differential test builds the same Dockerfiles with a private dockerd (BuildKit)
//! and compares the config and the file listing of the two images, except for the cases
//! with a `nodocker` file, which says why docker cannot build them here.

mod common;
use common::peers::{self, private_dockerd};
use common::Berth;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/build-corpus");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Dockerfile").is_file())
        .collect();
    cases.sort();
    cases
}

fn name(case: &Path) -> String {
    case.file_name().unwrap().to_string_lossy().into_owned()
}

/// The case's context: its `context/` dir, or an empty dir beside the store.
fn context_of(case: &Path, scratch: &Path) -> PathBuf {
    let ctx = case.join("context");
    if ctx.is_dir() {
        return ctx;
    }
    let empty = scratch.join("empty-context");
    std::fs::create_dir_all(&empty).unwrap();
    empty
}

fn extra_args(case: &Path) -> Vec<String> {
    std::fs::read_to_string(case.join("args"))
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// The `build` arguments for a case, tagging it `corpus/NAME`.
fn build_args(b: &Berth, case: &Path) -> Vec<String> {
    let mut args = vec![
        "build".to_string(),
        "-q".into(),
        "-t".into(),
        format!("corpus/{}", name(case)),
        "-f".into(),
        case.join("Dockerfile").display().to_string(),
    ];
    args.extend(extra_args(case));
    args.push(
        context_of(case, b.root.parent().unwrap())
            .display()
            .to_string(),
    );
    args
}

/// The config fields the differential test compares, as `inspect -f` formats.
const CONFIG_FIELDS: &[&str] = &[
    "{{json .Config.Env}}",
    "{{json .Config.Cmd}}",
    "{{json .Config.Entrypoint}}",
    "{{json .Config.WorkingDir}}",
    "{{json .Config.User}}",
    "{{json .Config.ExposedPorts}}",
    "{{json .Config.Labels}}",
    "{{json .Config.Volumes}}",
    "{{json .Config.StopSignal}}",
    "{{json .Config.Healthcheck}}",
    "{{json .Config.OnBuild}}",
    "{{json .Config.Shell}}",
];

/// Two `inspect -f` outputs are the same: equal JSON values (key order aside), or equal
/// text. An empty string is the same as null: Go's templates see the zero value of a
/// field that docker's JSON leaves out (`StopSignal`), berth's see the field missing.
fn same(a: &str, b: &str) -> bool {
    if matches!((a, b), ("\"\"", "null") | ("null", "\"\"")) {
        return true;
    }
    match (
        serde_json::from_str::<serde_json::Value>(a),
        serde_json::from_str::<serde_json::Value>(b),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// Checks one built case; returns what is wrong, if anything.
fn verify(b: &Berth, case: &Path, image: &str) -> Vec<String> {
    let mut wrong = Vec::new();
    for line in std::fs::read_to_string(case.join("expect"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        let (fmt, want) = line
            .split_once(" => ")
            .expect("expect lines are FORMAT => VALUE");
        let got = b.inspect(image, fmt);
        if !same(&got, want) {
            wrong.push(format!("{fmt}: got {got}, want {want}"));
        }
    }
    let check = case.join("check.sh");
    if check.is_file() {
        let mount = format!("{}:/.corpus-check.sh:ro", check.display());
        let out = b.run(&[
            "run",
            "--rm",
            "-u",
            "0",
            "--entrypoint",
            "/bin/sh",
            "-v",
            &mount,
            image,
            "-x",
            "/.corpus-check.sh",
        ]);
        if !out.status.success() {
            wrong.push(format!(
                "check.sh failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    wrong
}

#[test]
fn every_corpus_dockerfile_builds_the_image_it_describes() {
    require_root!();
    let cases = corpus();
    assert!(cases.len() >= 40, "the corpus has {} cases", cases.len());
    let b = Berth::with_busybox();
    let mut failures = BTreeMap::new();
    for case in &cases {
        let args = build_args(&b, case);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = b.run(&args);
        if !out.status.success() {
            failures.insert(
                name(case),
                vec![format!(
                    "build failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )],
            );
            continue;
        }
        let wrong = verify(&b, case, &format!("corpus/{}", name(case)));
        if !wrong.is_empty() {
            failures.insert(name(case), wrong);
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A file listing of an exported container file system: path, type, mode, owner, size
/// and link target of every entry but those the runtime makes (`/dev`, `/proc`, `/sys`,
/// `/etc/hosts` and friends, volume mount points), for comparing two engines' images.
/// Times are left out.
fn listing(export: &[u8], volumes: &[String]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut a = tar::Archive::new(export);
    for e in a.entries().unwrap() {
        let e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let path = format!("/{}", path.trim_start_matches("./").trim_end_matches('/'));
        let runtime_made = [
            "/dev",
            "/proc",
            "/sys",
            "/etc/hosts",
            "/etc/hostname",
            "/etc/resolv.conf",
            "/etc/mtab",
            "/.dockerenv",
        ];
        if path == "/"
            || volumes.contains(&path)
            || runtime_made
                .iter()
                .any(|p| path == *p || path.starts_with(&format!("{p}/")))
        {
            continue;
        }
        let h = e.header();
        let kind = h.entry_type();
        let size = if kind.is_file() { h.size().unwrap() } else { 0 };
        let link = e
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.insert(
            path,
            format!(
                "{:?} {:o} {}:{} {size} {link}",
                kind,
                h.mode().unwrap() & 0o7777,
                h.uid().unwrap(),
                h.gid().unwrap()
            ),
        );
    }
    out
}

#[test]
fn docker_builds_the_corpus_into_the_same_images() {
    require_root!();
    let Some(d) = private_dockerd("{}\n") else {
        return;
    };
    let b = Berth::with_busybox();
    let saved = d.dir.path("busybox.tar");
    b.ok(&["save", "-o", saved.to_str().unwrap(), "busybox:test"]);
    d.ok(&["load", "-i", saved.to_str().unwrap()]);
    let mut failures = BTreeMap::new();
    let mut compared = 0;
    for case in corpus() {
        if case.join("nodocker").exists() {
            continue;
        }
        let n = name(&case);
        let tag = format!("corpus/{n}");
        let args = build_args(&b, &case);
        let mut docker = d.cmd();
        // The private dockerd has no bridge; RUN steps need no network here.
        docker
            .env("DOCKER_BUILDKIT", "1")
            .args(&args[..1])
            .args(["--network", "none"])
            .args(&args[1..]);
        let out = peers::output(&mut docker);
        if !out.status.success() {
            failures.insert(
                n,
                vec![format!(
                    "docker build failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )],
            );
            continue;
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let built = b.run(&args);
        if !built.status.success() {
            failures.insert(n, vec!["berth build failed".into()]);
            continue;
        }
        compared += 1;
        let mut wrong = Vec::new();
        for f in CONFIG_FIELDS {
            let theirs = d
                .ok(&["image", "inspect", "-f", f, &tag])
                .trim()
                .to_string();
            let ours = b.inspect(&tag, f);
            if !same(&theirs, &ours) {
                wrong.push(format!("{f}: docker {theirs}, berth {ours}"));
            }
        }
        // Volume mount points are made by the runtime, as /dev is.
        let volumes: Vec<String> = serde_json::from_str::<BTreeMap<String, serde_json::Value>>(
            &b.inspect(&tag, "{{json .Config.Volumes}}"),
        )
        .map(|m| m.into_keys().collect())
        .unwrap_or_default();
        let theirs = {
            let id = d.ok(&["create", &tag, "true"]).trim().to_string();
            let out = peers::output(d.cmd().args(["export", &id]));
            d.ok(&["rm", &id]);
            listing(&out.stdout, &volumes)
        };
        let ours = {
            let id = b.ok(&["create", &tag, "true"]).trim().to_string();
            let out = b.run(&["export", &id]);
            b.ok(&["rm", &id]);
            listing(&out.stdout, &volumes)
        };
        for (path, t) in &theirs {
            match ours.get(path) {
                Some(o) if o == t => {}
                Some(o) => wrong.push(format!("{path}: docker {t}, berth {o}")),
                None => wrong.push(format!("{path}: only docker has it ({t})")),
            }
        }
        for (path, o) in &ours {
            if !theirs.contains_key(path) {
                wrong.push(format!("{path}: only berth has it ({o})"));
            }
        }
        if !wrong.is_empty() {
            failures.insert(n, wrong);
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(compared >= 30, "only {compared} cases were compared");
}
