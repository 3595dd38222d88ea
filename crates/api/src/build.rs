//! `POST /build`: the legacy builder's API, as the docker CLI (without BuildKit) and
//! the SDKs use it. The body is the context as a tar; the answer a JSON stream of
//! `{"stream": …}` lines, then `{"aux": {"ID": …}}`.
//!
//! The build runs as a `berth build` child process: a build mounts and changes
//! directory on its worker threads, which a service process serving other requests
//! must not share.

use std::io::{BufRead, Read};
use std::path::{Component, Path};

use axum::body::Body;
use axum::http::{Response, StatusCode};
use berth_engine::Engine;
use serde_json::{json, Value};

use crate::*;

/// Query parameters of Docker's build endpoint that change what is built and that
/// berth does not do yet: refused rather than ignored.
const NOT_YET: [&str; 6] = [
    "remote",
    "extrahosts",
    "squash",
    "cpusetcpus",
    "memory",
    "cgroupparent",
];

/// A JSON-map parameter (`buildargs`, `labels`) as `KEY=VALUE` strings.
fn kv_param(q: &[(String, String)], name: &str) -> Result<Vec<String>, String> {
    let Some(text) = param(q, name).filter(|t| !t.is_empty()) else {
        return Ok(Vec::new());
    };
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("invalid {name}: {e}"))?;
    Ok(v.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some(format!("{k}={}", v.as_str()?)))
        .collect())
}

/// The `berth build` arguments for the query (the context and file come later).
fn build_args(q: &[(String, String)]) -> Result<Vec<String>, String> {
    if let Some(k) = NOT_YET
        .iter()
        .find(|k| param(q, k).is_some_and(|v| !v.is_empty() && v != "0" && v != "[]"))
    {
        return Err(format!(
            "build option {k} is not implemented yet in berth serve"
        ));
    }
    let mut args = vec!["build".to_string(), "--progress".into(), "plain".into()];
    for (k, v) in q {
        if k == "t" && !v.is_empty() {
            args.extend(["-t".to_string(), v.clone()]);
        }
    }
    for kv in kv_param(q, "buildargs")? {
        args.extend(["--build-arg".to_string(), kv]);
    }
    for kv in kv_param(q, "labels")? {
        args.extend(["--label".to_string(), kv]);
    }
    if let Some(t) = param(q, "target").filter(|t| !t.is_empty()) {
        args.extend(["--target".to_string(), t]);
    }
    if let Some(n) = param(q, "networkmode").filter(|n| !n.is_empty()) {
        args.extend(["--network".to_string(), n]);
    }
    if let Some(p) = param(q, "platform").filter(|p| !p.is_empty()) {
        args.extend(["--platform".to_string(), p]);
    }
    if flag(q, "nocache") {
        args.push("--no-cache".into());
    }
    if flag(q, "pull") {
        args.push("--pull".into());
    }
    Ok(args)
}

/// The Dockerfile's place inside the context; never outside it.
fn dockerfile_in(ctx: &Path, name: &str) -> Result<std::path::PathBuf, String> {
    let rel = Path::new(name);
    if rel
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!(
            "the Dockerfile ({name}) must be a path inside the build context"
        ));
    }
    Ok(ctx.join(rel))
}

/// `POST /build`.
pub(crate) fn build(
    roots: &Roots,
    e: &Engine,
    q: &[(String, String)],
    body: Box<dyn Read + Send>,
) -> Response<Body> {
    let mut args = match build_args(q) {
        Ok(a) => a,
        Err(msg) if msg.contains("not implemented") => {
            return error(StatusCode::NOT_IMPLEMENTED, msg)
        }
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    let ctx = match tempfile::Builder::new()
        .prefix("berth-build-")
        .tempdir_in(e.tmp_dir())
    {
        Ok(d) => d,
        Err(err) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("build context: {err}"),
            )
        }
    };
    let dockerfile = param(q, "dockerfile")
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "Dockerfile".into());
    let dockerfile = match dockerfile_in(ctx.path(), &dockerfile) {
        Ok(p) => p,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    let quiet = flag(q, "q");
    let roots = roots.clone();
    streamed_response("application/json", move |w| {
        let say =
            |w: &mut BodyWriter, line: &str| w.message(&json!({ "stream": format!("{line}\n") }));
        // The context: a tar, checked as every layer is (nothing lands outside it).
        let unpacked = berth_image::layer::apply_tar(
            body,
            ctx.path(),
            &berth_image::layer::ApplyOptions {
                allow_devices: false,
                overlay_whiteouts: false,
                preserve_owner: false,
            },
        );
        if let Err(err) = unpacked {
            let _ = w.message(&stream_error(&format!("build context: {err}")));
            return;
        }
        let iid = ctx.path().join(".berth-iid");
        args.extend([
            "--iidfile".to_string(),
            iid.display().to_string(),
            "-f".into(),
            dockerfile.display().to_string(),
            ctx.path().display().to_string(),
        ]);
        let exe = berth_engine::berth_exe().unwrap_or_else(|_| "berth".into());
        let child = std::process::Command::new(exe)
            .arg("--root")
            .arg(&roots.root)
            .arg("--run-root")
            .arg(&roots.run_root)
            .args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(err) => {
                let _ = w.message(&stream_error(&format!("starting the build: {err}")));
                return;
            }
        };
        let mut last = String::new();
        let stderr = child.stderr.take().expect("piped");
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            // berth build's own error line comes back as the stream's error.
            if !quiet && !line.starts_with("Error: ") && say(w, &line).is_err() {
                // The client went: stop the build (it cleans up on SIGTERM).
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(child.id() as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            last = line;
        }
        let ok = child.wait().map(|s| s.success()).unwrap_or(false);
        let id = std::fs::read_to_string(&iid).unwrap_or_default();
        if !ok || id.is_empty() {
            let msg = last
                .strip_prefix("Error: ")
                .unwrap_or(&last)
                .trim()
                .to_string();
            let _ = w.message(&stream_error(if msg.is_empty() {
                "the build failed"
            } else {
                &msg
            }));
            return;
        }
        let _ = w.message(&json!({"aux": {"ID": id.trim()}}));
        let short = id.trim().trim_start_matches("sha256:");
        let _ = say(
            w,
            &format!("Successfully built {}", &short[..12.min(short.len())]),
        );
        for t in args.windows(2).filter(|w| w[0] == "-t").map(|w| &w[1]) {
            let _ = say(w, &format!("Successfully tagged {t}"));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dockerfile_outside_the_context_is_refused() {
        let ctx = Path::new("/ctx");
        assert_eq!(
            dockerfile_in(ctx, "sub/Dockerfile.dev").unwrap(),
            Path::new("/ctx/sub/Dockerfile.dev")
        );
        assert!(dockerfile_in(ctx, "../etc/passwd").is_err());
        assert!(dockerfile_in(ctx, "/etc/passwd").is_err());
        assert!(dockerfile_in(ctx, "a/../../x").is_err());
    }

    #[test]
    fn build_options_become_berth_build_flags() {
        let q = vec![
            ("t".to_string(), "a:1".to_string()),
            ("t".to_string(), "b:2".to_string()),
            ("buildargs".to_string(), r#"{"V":"1"}"#.to_string()),
            ("nocache".to_string(), "1".to_string()),
        ];
        let args = build_args(&q).unwrap();
        assert_eq!(
            args.join(" "),
            "build --progress plain -t a:1 -t b:2 --build-arg V=1 --no-cache"
        );
        let q = vec![("memory".to_string(), "1000000".to_string())];
        assert!(build_args(&q).unwrap_err().contains("not implemented"));
    }
}
