//! The documentation runs as written: every ```` ```sh test ```` block of README.md and
//! docs/*.md runs, in order, against a fresh root per page (with `berth` on PATH bound to
//! it), and a ```` ```text ```` block right after one is its exact output. So a page
//! cannot drift from what berth does. What an example leaves running in its process
//! group is killed when it ends.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Berth;

/// One tested example: where it starts, its script, the output it must print.
#[derive(Debug, PartialEq)]
struct Example {
    line: usize,
    script: String,
    expect: Option<String>,
}

/// The page's tested examples, in order.
fn examples(text: &str) -> Vec<Example> {
    let mut out: Vec<Example> = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    // Whether the last block closed was a tested one with nothing after it but blanks.
    let mut expecting = false;
    while let Some((n, line)) = lines.next() {
        let info = match line.trim_start().strip_prefix("```") {
            Some(info) => info.trim(),
            None => {
                if !line.trim().is_empty() {
                    expecting = false;
                }
                continue;
            }
        };
        let mut body = String::new();
        for (_, l) in lines.by_ref() {
            if l.trim_start().starts_with("```") {
                break;
            }
            body.push_str(l);
            body.push('\n');
        }
        match info {
            "sh test" => {
                out.push(Example {
                    line: n + 1,
                    script: body,
                    expect: None,
                });
                expecting = true;
            }
            "text" if expecting => {
                out.last_mut().expect("a tested block").expect = Some(body);
                expecting = false;
            }
            _ => expecting = false,
        }
    }
    out
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `page`'s examples; `image`: import `busybox:1` first, as the README's tour makes
/// it (the pages build on that).
fn run_page(page: &str, image: bool) {
    require_root!();
    let path = repo_root().join(page);
    let text = std::fs::read_to_string(&path).unwrap();
    let list = examples(&text);
    assert!(!list.is_empty(), "{page} has no tested example");
    let b = Berth::new();
    if image {
        b.ok(&[
            "import",
            "-c",
            "CMD [\"/bin/sh\"]",
            common::busybox_tar().to_str().unwrap(),
            "busybox:1",
        ]);
    }
    let work = b.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    // `berth` on PATH is a script that becomes the binary on this root, so an example's
    // `berth … &` leaves `$!` naming berth itself, which the example can stop.
    let bin = b.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let wrapper = bin.join("berth");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec {} --root {} --run-root {} \"$@\"\n",
            common::berth_bin().display(),
            b.root.display(),
            b.run_root.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for ex in list {
        use std::os::unix::process::CommandExt;
        let child = Command::new("bash")
            .arg("-c")
            .arg(format!("set -euo pipefail\n{}", ex.script))
            .current_dir(&work)
            .env("PATH", &path)
            .env("BERTH_MONITOR", common::monitor_bin())
            .process_group(0)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let group = child.id() as i32;
        let out = child.wait_with_output().unwrap();
        // Whatever the example left running in its group (a server it started) goes too.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(group),
            nix::sys::signal::Signal::SIGKILL,
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{page}:{}: the example failed ({:?}):\n{}\nstdout:\n{stdout}\nstderr:\n{}",
            ex.line,
            out.status.code(),
            ex.script,
            String::from_utf8_lossy(&out.stderr)
        );
        if let Some(want) = ex.expect {
            let trim = |s: &str| {
                s.lines()
                    .map(str::trim_end)
                    .collect::<Vec<_>>()
                    .join("\n")
                    .trim_end()
                    .to_string()
            };
            assert_eq!(
                trim(&stdout),
                trim(&want),
                "{page}:{}: the example's output is not the page's",
                ex.line
            );
        }
    }
}

#[test]
fn tested_blocks_and_their_output_are_found() {
    let page = "intro\n```sh test\necho a\n```\n\n```text\na\n```\n```sh\nnot run\n```\n```text\nnot an output\n```\n```sh test\ntrue\n```\nprose\n```text\nnot after it\n```\n";
    assert_eq!(
        examples(page),
        [
            Example {
                line: 2,
                script: "echo a\n".into(),
                expect: Some("a\n".into())
            },
            Example {
                line: 15,
                script: "true\n".into(),
                expect: None
            },
        ]
    );
}

#[test]
fn the_readme_tour_runs_as_written() {
    run_page("README.md", false);
}

#[test]
fn docs_containers_run_as_written() {
    run_page("docs/containers.md", true);
}

#[test]
fn docs_images_run_as_written() {
    run_page("docs/images.md", true);
}

#[test]
fn docs_build_runs_as_written() {
    run_page("docs/build.md", true);
}

#[test]
fn docs_registry_runs_as_written() {
    run_page("docs/registry.md", true);
}

#[test]
fn docs_networks_run_as_written() {
    run_page("docs/networks.md", true);
}

#[test]
fn docs_compose_runs_as_written() {
    run_page("docs/compose.md", true);
}

#[test]
fn docs_docker_api_runs_as_written() {
    run_page("docs/docker-api.md", true);
}
