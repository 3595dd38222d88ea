//! berth's registry beyond the distribution API: the web page (checked in headless
//! Chromium), `/metrics`, and `registry gc` while serving.

mod common;

use common::{berth_registry, Berth};

fn chromium() -> Option<std::path::PathBuf> {
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .into_iter()
    .map(std::path::PathBuf::from)
    .find(|p| p.exists())
}

/// The page as Chromium renders it (its DOM after parsing).
fn render(browser: &std::path::Path, url: &str) -> String {
    let out = std::process::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--dump-dom",
            url,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_web_page_shows_repositories_tags_layers_and_history_in_chromium() {
    require_root!();
    let Some(browser) = chromium() else {
        eprintln!("skipped: chromium not installed (apt-get install chromium)");
        return;
    };
    let reg = berth_registry(&[]);
    let b = Berth::with_busybox();
    for name in ["team/bb:1", "team/bb:2", "tools/x:latest"] {
        let full = format!("{}/{name}", reg.host);
        b.ok(&["tag", "busybox:test", &full]);
        b.ok(&["push", &full]);
    }
    let home = render(&browser, &format!("{}/", reg.base));
    assert!(home.contains("<h1>Repositories</h1>"), "{home}");
    assert!(
        home.contains("href=\"/ui/r/team/bb\"") && home.contains("tools/x"),
        "{home}"
    );
    let repo = render(&browser, &format!("{}/ui/r/team/bb", reg.base));
    assert!(repo.contains(">1</a>") && repo.contains(">2</a>"), "{repo}");
    let layer_size = b.inspect("busybox:test", "{{.Size}}");
    let m = render(&browser, &format!("{}/ui/m/team/bb/1", reg.base));
    let digest = b.inspect(
        &format!("{}/team/bb:1", reg.host),
        "{{index .RepoDigests 0}}",
    );
    assert!(
        m.contains(digest.split('@').nth(1).unwrap()),
        "the manifest digest: {m}"
    );
    assert!(
        m.contains("id=\"layers\"") && m.contains(" MB</td>"),
        "layer sizes: {m}"
    );
    assert!(m.contains("berth import"), "history: {m}");
    assert!(m.contains("[\"/bin/sh\"]"), "config: {m}");
    assert!(!layer_size.is_empty());
    // A screenshot renders too (a PNG of the page).
    let dir = tempfile::tempdir().unwrap();
    let shot = dir.path().join("page.png");
    let out = std::process::Command::new(&browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=1000,700",
        ])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("{}/ui/m/team/bb/1", reg.base))
        .output()
        .unwrap();
    assert!(out.status.success());
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 5000,
        "{} bytes",
        png.len()
    );
    // Unknown pages are 404s, and names are checked.
    let c = reqwest::blocking::Client::new();
    assert_eq!(
        c.get(format!("{}/ui/r/nope", reg.base))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        404
    );
    assert_eq!(
        c.get(format!("{}/ui/r/..%2f..", reg.base))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        404
    );
    // Metrics count what was served.
    let metrics = c
        .get(format!("{}/metrics", reg.base))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("berth_registry_requests_total{method=\"PUT\",code=\"201\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("berth_registry_request_duration_seconds_count"),
        "{metrics}"
    );
}

#[test]
fn gc_while_serving_removes_what_no_manifest_references() {
    require_root!();
    let reg = berth_registry(&[]);
    let b = Berth::with_busybox();
    let keep = format!("{}/keep/bb:1", reg.host);
    let drop = format!("{}/drop/other:1", reg.host);
    b.ok(&["tag", "busybox:test", &keep]);
    b.ok(&["push", &keep]);
    // A second image with its own layer.
    let cid = b
        .ok(&[
            "run",
            "-d",
            "busybox:test",
            "sh",
            "-c",
            "echo data > /new-file",
        ])
        .trim()
        .to_string();
    b.ok(&["wait", &cid]);
    b.ok(&["commit", &cid, &drop]);
    b.ok(&["push", &drop]);
    let digest = b.inspect(&drop, "{{index .RepoDigests 0}}");
    let digest = digest.split('@').nth(1).unwrap();
    let c = reqwest::blocking::Client::new();
    let r = c
        .delete(format!("{}/v2/drop/other/manifests/{digest}", reg.base))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let gc = |args: &[&str]| {
        let out = std::process::Command::new(common::berth_bin())
            .args(["registry", "gc", "--root"])
            .arg(reg.dir.path())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Just pushed: within the default grace nothing goes.
    assert!(gc(&[]).starts_with("removed 0 blobs"), "grace");
    let dry = gc(&["--grace", "0s", "--dry-run"]);
    assert!(
        dry.starts_with("would remove 3 blobs"),
        "manifest, config and the new layer: {dry}"
    );
    let done = gc(&["--grace", "0s"]);
    assert!(done.starts_with("removed 3 blobs"), "{done}");
    // The kept image still pulls and runs; the registry kept serving throughout.
    let other = Berth::new();
    other.ok(&["pull", &keep]);
    assert_eq!(other.ok(&["run", "--rm", &keep, "echo", "kept"]), "kept\n");
    assert!(gc(&["--grace", "0s"]).starts_with("removed 0 blobs"));
    let (code, err) = Berth::new().fails(&["registry", "gc", "--root", "/nonexistent"]);
    assert_eq!(code, 1);
    assert!(err.contains("not a registry root"), "{err}");
}

/// The server logs a line per request; when whoever read its log goes away, it keeps
/// serving (it ignores SIGPIPE and write errors on its log).
#[test]
fn the_server_outlives_a_closed_log_pipe() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(common::berth_bin())
        .args(["registry", "serve", "--addr", "127.0.0.1:0", "--root"])
        .arg(dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // The pipe's read end is closed here.
    let base = line.trim().rsplit_once(" on ").unwrap().1.to_string();
    let c = reqwest::blocking::Client::new();
    for _ in 0..3 {
        let r = c.get(format!("{base}/v2/")).send().unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    assert!(child.try_wait().unwrap().is_none(), "still running");
    let _ = child.kill();
    let _ = child.wait();
}
