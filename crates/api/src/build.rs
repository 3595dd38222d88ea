//! `POST /build`: the legacy builder's API, as the docker CLI (without BuildKit) and
//! the SDKs use it. The body is the context as a tar; the answer a JSON stream of
//! `{"stream": …}` lines, then `{"aux": {"ID": …}}`.
//!
//! The query becomes the engine's `BuildSpec`, and the engine builds it here, on the
//! response's thread (a build never moves the process's working directory); a client
//! that goes away cancels it.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path};
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::http::{Response, StatusCode};
use berth_engine::specs::build::{self as spec, BuildSpec};
use berth_engine::{Engine, EngineError, Result};
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

/// A JSON-map parameter (`buildargs`, `labels`) as a map.
fn map_param(q: &[(String, String)], name: &str) -> Result<BTreeMap<String, String>> {
    let Some(text) = param(q, name).filter(|t| !t.is_empty()) else {
        return Ok(BTreeMap::new());
    };
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| EngineError::Invalid(format!("invalid {name}: {e}")))?;
    Ok(v.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect())
}

/// The engine's build request for the query; the context and the Dockerfile come later.
fn build_spec(q: &[(String, String)]) -> Result<BuildSpec> {
    if let Some(k) = NOT_YET
        .iter()
        .find(|k| param(q, k).is_some_and(|v| !v.is_empty() && v != "0" && v != "[]"))
    {
        return Err(EngineError::NotImplemented(format!(
            "build option {k} is not implemented yet in berth serve"
        )));
    }
    if let Some(p) = param(q, "platform").filter(|p| !p.is_empty()) {
        spec::platform(&p)?;
    }
    Ok(BuildSpec {
        tags: q
            .iter()
            .filter(|(k, v)| k == "t" && !v.is_empty())
            .map(|(_, t)| spec::tag(t))
            .collect::<Result<_>>()?,
        build_args: map_param(q, "buildargs")?,
        labels: map_param(q, "labels")?,
        target: param(q, "target").filter(|t| !t.is_empty()),
        network_none: spec::network_none(&param(q, "networkmode").unwrap_or_default())?,
        no_cache: flag(q, "nocache"),
        pull: flag(q, "pull"),
        ..Default::default()
    })
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
    e: &Engine,
    q: &[(String, String)],
    body: Box<dyn Read + Send>,
) -> Response<Body> {
    let mut spec = match build_spec(q) {
        Ok(s) => s,
        Err(err) => return engine_error(err),
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
    spec.dockerfile = match dockerfile_in(ctx.path(), &dockerfile) {
        Ok(p) => Some(p),
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    spec.context = ctx.path().to_path_buf();
    // The names as the client gave them, for its "Successfully tagged" lines.
    let names: Vec<String> = q
        .iter()
        .filter(|(k, v)| k == "t" && !v.is_empty())
        .map(|(_, t)| t.clone())
        .collect();
    let quiet = flag(q, "q");
    let opts = e.opts.clone();
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
        // A client that went away stops the build, even in a step that prints nothing.
        let cancel = AtomicBool::new(false);
        let done = AtomicBool::new(false);
        let gone = w.gone();
        let built = std::thread::scope(|scope| {
            scope.spawn(|| {
                while !done.load(Ordering::SeqCst) {
                    if gone() {
                        cancel.store(true, Ordering::SeqCst);
                        return;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            });
            // The watcher ends with the build, even one that panics.
            struct Done<'a>(&'a AtomicBool);
            impl Drop for Done<'_> {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::SeqCst);
                }
            }
            let _done = Done(&done);
            Engine::open(opts).and_then(|e| {
                e.build(
                    &spec,
                    &mut |line| {
                        if !quiet && say(w, line).is_err() {
                            cancel.store(true, Ordering::SeqCst);
                        }
                    },
                    &cancel,
                )
            })
        });
        let id = match built {
            Ok(id) => id.to_string(),
            Err(err) => {
                let _ = w.message(&stream_error(&berth_engine::monitor::error_chain(&err)));
                return;
            }
        };
        let _ = w.message(&json!({"aux": {"ID": id}}));
        let short = id.trim_start_matches("sha256:");
        let _ = say(
            w,
            &format!("Successfully built {}", &short[..12.min(short.len())]),
        );
        for t in &names {
            let _ = say(w, &format!("Successfully tagged {t}"));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_engine::ErrorClass;

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
    fn build_options_become_the_engines_build_request() {
        let q = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let s = build_spec(&q(&[
            ("t", "a:1"),
            ("t", "b:2"),
            ("buildargs", r#"{"V":"1"}"#),
            ("labels", r#"{"team":"shop"}"#),
            ("networkmode", "none"),
            ("nocache", "1"),
        ]))
        .unwrap();
        assert_eq!(s.tags, ["docker.io/library/a:1", "docker.io/library/b:2"]);
        assert_eq!(s.build_args["V"], "1");
        assert_eq!(s.labels["team"], "shop");
        assert!(s.network_none && s.no_cache && !s.pull);
        let class = |pairs: &[(&str, &str)]| build_spec(&q(pairs)).unwrap_err().class();
        assert_eq!(class(&[("memory", "1000000")]), ErrorClass::NotImplemented);
        assert_eq!(
            class(&[("networkmode", "bridge")]),
            ErrorClass::NotImplemented
        );
        assert_eq!(class(&[("t", "Bad:Tag")]), ErrorClass::InvalidArgument);
        assert_eq!(class(&[("buildargs", "{")]), ErrorClass::InvalidArgument);
    }
}
