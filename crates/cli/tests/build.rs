//! `berth build`: Dockerfiles on busybox images, checked by running what they make.

mod common;

use common::Berth;
use std::path::{Path, PathBuf};

/// A build context in the test's temp dir: `files` are (path, content).
fn context(b: &Berth, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = b.root.parent().unwrap().join(name);
    for (p, content) in files {
        let p = dir.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
    }
    dir
}

/// `build EXTRA CTX`, asserting success: (stdout, stderr with the progress).
fn build_output(b: &Berth, ctx: &Path, extra: &[&str]) -> (String, String) {
    let mut args = vec!["build"];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    let out = b.run(&args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), err)
}

fn build(b: &Berth, ctx: &Path, extra: &[&str]) -> String {
    build_output(b, ctx, extra).0
}

/// `build` with its progress (stderr) too.
fn build_progress(b: &Berth, ctx: &Path, extra: &[&str]) -> String {
    build_output(b, ctx, extra).1
}

const APP: &str = r#"# syntax=docker/dockerfile:1
ARG BASE=busybox:test
FROM ${BASE} AS base
ENV GREETING=hi \
    OTHER="x y"
WORKDIR /app
COPY a.txt .
COPY sub /app/sub/
ARG WHO=world
RUN echo "$GREETING $WHO" > /app/greeting
RUN <<EOF
echo from heredoc > /app/here
EOF
COPY <<inline.txt /app/
made inline
inline.txt
LABEL org.test=yes
EXPOSE 8080 53/udp
VOLUME /data
STOPSIGNAL SIGINT
USER 1000:1000
ENTRYPOINT ["cat"]
CMD ["/app/greeting"]
"#;

#[test]
fn a_dockerfile_becomes_an_image_with_its_config_and_files() {
    require_root!();
    let b = Berth::with_busybox();
    let ctx = context(
        &b,
        "app",
        &[
            ("Dockerfile", APP),
            ("a.txt", "hello\n"),
            ("sub/b.txt", "deep\n"),
            ("secret.txt", "no\n"),
            (".dockerignore", "secret.txt\n"),
        ],
    );
    let progress = build_progress(&b, &ctx, &["-t", "app:1"]);
    assert!(
        progress.contains("naming to docker.io/library/app:1"),
        "{progress}"
    );
    assert_eq!(b.ok(&["run", "--rm", "app:1"]), "hi world\n");
    assert_eq!(
        b.ok(&[
            "run",
            "--rm",
            "app:1",
            "/app/here",
            "/app/a.txt",
            "/app/sub/b.txt",
            "/app/inline.txt"
        ]),
        "from heredoc\nhello\ndeep\nmade inline\n"
    );
    assert_eq!(
        b.inspect("app:1", "{{json .Config.Env}}"),
        r#"["GREETING=hi","OTHER=x y"]"#
    );
    for (f, want) in [
        ("{{.Config.WorkingDir}}", "/app"),
        ("{{.Config.User}}", "1000:1000"),
        ("{{json .Config.Entrypoint}}", r#"["cat"]"#),
        ("{{json .Config.Cmd}}", r#"["/app/greeting"]"#),
        (
            "{{json .Config.ExposedPorts}}",
            r#"{"53/udp":{},"8080/tcp":{}}"#,
        ),
        ("{{json .Config.Volumes}}", r#"{"/data":{}}"#),
        ("{{index .Config.Labels \"org.test\"}}", "yes"),
        ("{{.Config.StopSignal}}", "SIGINT"),
    ] {
        assert_eq!(b.inspect("app:1", f), want, "{f}");
    }
    // The build arg is not in the image, and .dockerignore kept the secret out.
    let (_, err) = b.fails(&["run", "--rm", "app:1", "/secret.txt"]);
    assert!(err.contains("No such file"), "{err}");
    // One history row per instruction but ARG, as BuildKit writes them.
    let history = b.ok(&["history", "-q", "app:1"]);
    assert_eq!(history.lines().count(), 14 + 1, "{history}");
    // Nothing left behind: no containers, no temporary images.
    assert!(b.container_ids().is_empty());
    assert_eq!(b.ok(&["images", "-q"]).lines().count(), 2);
}

#[test]
fn the_cache_reuses_steps_until_an_input_changes() {
    require_root!();
    let b = Berth::with_busybox();
    let df = "FROM busybox:test\nCOPY a.txt /a.txt\nRUN cat /a.txt > /copy; cat /proc/sys/kernel/random/uuid > /stamp\nCOPY b.txt /b.txt\nRUN cat /proc/sys/kernel/random/uuid > /stamp2\n";
    let ctx = context(
        &b,
        "c",
        &[("Dockerfile", df), ("a.txt", "1"), ("b.txt", "1")],
    );
    let first = build(&b, &ctx, &["-q"]);
    let progress = build_progress(&b, &ctx, &[]);
    assert_eq!(progress.matches("CACHED").count(), 4, "{progress}");
    assert_eq!(
        build(&b, &ctx, &["-q"]),
        first,
        "a build from the cache is the same image"
    );
    // Touching a file changes nothing; changing b.txt re-runs only what follows it.
    std::process::Command::new("touch")
        .arg(ctx.join("a.txt"))
        .status()
        .unwrap();
    assert_eq!(build(&b, &ctx, &["-q"]), first);
    std::fs::write(ctx.join("b.txt"), "2").unwrap();
    let progress = build_progress(&b, &ctx, &["-t", "c:2"]);
    assert_eq!(progress.matches("CACHED").count(), 2, "{progress}");
    assert_eq!(
        b.ok(&["run", "--rm", "c:2", "cat", "/b.txt", "/copy"]),
        "21"
    );
    let stamp = b.ok(&["run", "--rm", "c:2", "cat", "/stamp"]);
    let progress = build_progress(&b, &ctx, &["--no-cache", "-t", "c:3"]);
    assert_eq!(progress.matches("CACHED").count(), 0, "{progress}");
    assert_ne!(b.ok(&["run", "--rm", "c:3", "cat", "/stamp"]), stamp);
    // `builder prune` forgets it all.
    let pruned = b.ok(&["builder", "prune", "-f"]);
    assert!(pruned.contains("Deleted build cache objects"), "{pruned}");
    let progress = build_progress(&b, &ctx, &[]);
    assert_eq!(progress.matches("CACHED").count(), 0, "{progress}");
}

#[test]
fn stages_build_only_what_the_target_needs() {
    require_root!();
    let b = Berth::with_busybox();
    let df = "FROM busybox:test AS broken\nRUN exit 1\n\nFROM busybox:test AS one\nRUN echo one > /one\n\nFROM one AS two\nRUN echo two > /two\n\nFROM busybox:test\nRUN exit 2\n";
    let ctx = context(&b, "s", &[("Dockerfile", df)]);
    build(&b, &ctx, &["--target", "two", "-t", "two:1"]);
    assert_eq!(
        b.ok(&["run", "--rm", "two:1", "cat", "/one", "/two"]),
        "one\ntwo\n"
    );
    let (code, err) = b.fails(&["build", "--target", "nope", ctx.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("target stage \"nope\" could not be found"),
        "{err}"
    );
    // The last stage fails: the exit code is named, nothing is tagged, nothing is left.
    let (_, err) = b.fails(&["build", "-t", "bad:1", ctx.to_str().unwrap()]);
    assert!(err.contains("exit code: 2"), "{err}");
    assert!(b.run(&["image", "inspect", "bad:1"]).status.code() != Some(0));
    assert!(b.container_ids().is_empty());
}

#[test]
fn bad_dockerfiles_and_contexts_get_clear_errors() {
    require_root!();
    let b = Berth::with_busybox();
    let ctx = context(&b, "bad", &[("ok.txt", "x")]);
    for (df, want) in [
        (
            "FROM busybox:test\nFORM x\n",
            "Dockerfile:2:1: unknown instruction: FORM",
        ),
        (
            "FROM busybox:test\nCOPY ../etc/passwd /x\n",
            "forbidden path outside the build context",
        ),
        (
            "FROM busybox:test\nCOPY nothere /x\n",
            "\"/nothere\": not found",
        ),
        (
            "FROM busybox:test\nCOPY ok.txt ok.txt /x\n",
            "the destination must be a directory and end with a /",
        ),
        ("ENV a=b\n", "Dockerfile:1:1"),
        ("FROM no-such-image:here\n", "no-such-image"),
    ] {
        std::fs::write(ctx.join("Dockerfile"), df).unwrap();
        let (code, err) = b.fails(&["build", ctx.to_str().unwrap()]);
        assert_eq!(code, 1, "{df}");
        assert!(err.contains(want), "{df}: {err}");
        assert_eq!(
            err.trim().lines().last().map(|l| l.starts_with("Error: ")),
            Some(true),
            "{err}"
        );
    }
    // A symlink in the context that points out of it is refused too.
    std::os::unix::fs::symlink("/etc", ctx.join("etc")).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:test\nCOPY etc/passwd /x\n",
    )
    .unwrap();
    let (_, err) = b.fails(&["build", ctx.to_str().unwrap()]);
    assert!(err.contains("outside the build context"), "{err}");
    assert_eq!(b.ok(&["images", "-q"]).lines().count(), 1);
}

#[test]
fn add_unpacks_local_archives_and_stdin_gives_the_dockerfile() {
    require_root!();
    let b = Berth::with_busybox();
    let ctx = context(&b, "add", &[("tree/x/y.txt", "inside\n")]);
    let st = std::process::Command::new("tar")
        .args(["-czf"])
        .arg(ctx.join("t.tar.gz"))
        .arg("-C")
        .arg(ctx.join("tree"))
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let mut cmd = b.cmd();
    cmd.args([
        "build",
        "-q",
        "-t",
        "add:1",
        "--build-arg",
        "DEST=/opt",
        "-f",
        "-",
    ])
    .arg(&ctx)
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            b"FROM busybox:test\nARG DEST\nADD t.tar.gz ${DEST}/\nADD tree/x/y.txt /plain/\n",
        )
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("sha256:"));
    assert_eq!(
        b.ok(&[
            "run",
            "--rm",
            "add:1",
            "cat",
            "/opt/x/y.txt",
            "/plain/y.txt"
        ]),
        "inside\ninside\n"
    );
}
