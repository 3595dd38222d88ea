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
        r#"["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","GREETING=hi","OTHER=x y"]"#
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
    // Stages that need each other, and a .dockerignore that cannot be read.
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM second AS first\nRUN true\nFROM first AS second\nRUN true\n",
    )
    .unwrap();
    let (_, err) = b.fails(&["build", ctx.to_str().unwrap()]);
    assert!(
        err.contains("circular dependency detected on stage"),
        "{err}"
    );
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox:test\n").unwrap();
    std::fs::create_dir(ctx.join(".dockerignore")).unwrap();
    let (_, err) = b.fails(&["build", ctx.to_str().unwrap()]);
    assert!(err.contains(".dockerignore"), "{err}");
    std::fs::remove_dir(ctx.join(".dockerignore")).unwrap();
    // Errors name the file given with -f.
    let other = ctx.join("app.dockerfile");
    std::fs::write(
        &other,
        "FROM busybox:test
COPY missing /x
",
    )
    .unwrap();
    let (_, err) = b.fails(&[
        "build",
        "-f",
        other.to_str().unwrap(),
        ctx.to_str().unwrap(),
    ]);
    assert!(err.contains("app.dockerfile:2:1: "), "{err}");
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

#[test]
fn copy_from_stages_and_images_keeps_owners_and_resolves_names() {
    require_root!();
    let b = Berth::with_busybox();
    // A file on the host that a stage's symlink names: it must never be copied.
    let host_secret = b.root.parent().unwrap().join("host-secret");
    std::fs::write(&host_secret, "host only\n").unwrap();
    let df = format!(
        r#"FROM busybox:test AS build
RUN mkdir -p /out/sub && echo built > /out/app && chown 5:6 /out/app \
 && echo deep > /out/sub/d && ln -s /out/app /out/link \
 && ln -s {secret} /out/evil && ln -s /etc/passwd /out/passwd

FROM scratch AS files
COPY f.txt /f.txt

FROM busybox:test
COPY --from=build /out/ /app/
COPY --from=build /out/link /linked
COPY --from=build /out/passwd /stage-passwd
COPY --from=files /f.txt /from-scratch-stage
COPY --from=busybox:test /etc/group /image-group
COPY --chown=web f.txt /owned1
COPY --chown=web:extra f.txt /owned2
COPY --chown=77 f.txt /owned3
COPY --chown=1:2 f.txt /owned4
"#,
        secret = host_secret.display()
    );
    let ctx = context(&b, "from", &[("Dockerfile", &df), ("f.txt", "ctx\n")]);
    build(&b, &ctx, &["-t", "from:1"]);
    let stat = |p: &str| b.ok(&["run", "--rm", "from:1", "stat", "-c", "%u:%g", p]);
    assert_eq!(stat("/app/app"), "5:6\n", "a stage's owners are kept");
    assert_eq!(stat("/from-scratch-stage"), "0:0\n");
    assert_eq!(stat("/owned1"), "33:33\n");
    assert_eq!(stat("/owned2"), "33:50\n");
    assert_eq!(stat("/owned3"), "77:77\n");
    assert_eq!(stat("/owned4"), "1:2\n");
    assert_eq!(
        b.ok(&[
            "run",
            "--rm",
            "from:1",
            "cat",
            "/linked",
            "/app/sub/d",
            "/from-scratch-stage"
        ]),
        "built\ndeep\nctx\n"
    );
    // Symlinks resolve inside the stage: its /etc/passwd, never the host's.
    let passwd = b.ok(&["run", "--rm", "from:1", "cat", "/stage-passwd"]);
    assert!(passwd.contains("web:x:33"), "{passwd}");
    assert!(b
        .ok(&["run", "--rm", "from:1", "cat", "/image-group"])
        .contains("extra:x:50"));
    // A dangling in-stage symlink is copied as a symlink, still dangling.
    assert_eq!(
        b.ok(&["run", "--rm", "from:1", "readlink", "/app/evil"])
            .trim(),
        host_secret.display().to_string()
    );
    for (line, want) in [
        ("COPY --from=build /out/evil /x", "not found"),
        (
            "COPY --chown=nobody-here f.txt /x",
            "unable to find user nobody-here",
        ),
        ("COPY --from=nostage:none /x /x", "nostage"),
    ] {
        let df = format!("FROM busybox:test AS build\nRUN mkdir /out && ln -s {} /out/evil\nFROM busybox:test\n{line}\n", host_secret.display());
        std::fs::write(ctx.join("Dockerfile"), df).unwrap();
        let (_, err) = b.fails(&["build", ctx.to_str().unwrap()]);
        assert!(err.contains(want), "{line}: {err}");
        assert!(err.contains("Dockerfile:4:1"), "{line}: {err}");
    }
    assert!(b.container_ids().is_empty());
}

#[test]
fn run_mounts_bind_cache_tmpfs_and_secrets() {
    require_root!();
    let b = Berth::with_busybox();
    let df = r#"FROM busybox:test AS tools
RUN echo tool > /tool

FROM busybox:test
RUN --mount=type=bind,source=data,target=/mnt cat /mnt/d.txt > /from-bind
RUN --mount=type=bind,source=data,target=/mnt,rw echo changed > /mnt/d.txt && cat /mnt/d.txt > /rw-seen
RUN --mount=from=tools,source=/tool,target=/t cp /t /tool-copy
RUN --mount=type=cache,target=/cache echo x >> /cache/count && wc -l < /cache/count > /count-seen
RUN --mount=type=tmpfs,target=/scratch grep -q ' /scratch tmpfs' /proc/mounts && echo ok > /tmpfs-ok
RUN --mount=type=secret,id=tok test "$(cat /run/secrets/tok)" = s3cret && stat -c %a /run/secrets/tok > /secret-mode
RUN --mount=type=secret,id=tok,env=TOK test "$TOK" = s3cret && echo ok > /env-ok
"#;
    let ctx = context(
        &b,
        "mounts",
        &[("Dockerfile", df), ("data/d.txt", "bound\n")],
    );
    let secret = ctx.parent().unwrap().join("tok");
    std::fs::write(&secret, "s3cret").unwrap();
    let sec = format!("id=tok,src={}", secret.display());
    build(&b, &ctx, &["-t", "m:1", "--secret", &sec]);
    assert_eq!(
        b.ok(&[
            "run",
            "--rm",
            "m:1",
            "cat",
            "/from-bind",
            "/rw-seen",
            "/tool-copy",
            "/count-seen",
            "/tmpfs-ok",
            "/secret-mode",
            "/env-ok"
        ]),
        "bound\nchanged\ntool\n1\nok\n400\nok\n"
    );
    // Writes to an rw bind mount are thrown away; mount points and secrets are not
    // left in the image.
    assert_eq!(
        std::fs::read_to_string(ctx.join("data/d.txt")).unwrap(),
        "bound\n"
    );
    for p in ["/mnt", "/t", "/cache", "/scratch", "/run/secrets", "/run"] {
        let (_, err) = b.fails(&["run", "--rm", "m:1", "ls", "-d", p]);
        assert!(err.contains("No such file"), "{p}: {err}");
    }
    // The cache mount keeps its files from build to build; `builder prune` empties it.
    build(&b, &ctx, &["-t", "m:2", "--no-cache", "--secret", &sec]);
    assert_eq!(b.ok(&["run", "--rm", "m:2", "cat", "/count-seen"]), "2\n");
    b.ok(&["builder", "prune", "-f"]);
    build(&b, &ctx, &["-t", "m:3", "--secret", &sec]);
    assert_eq!(b.ok(&["run", "--rm", "m:3", "cat", "/count-seen"]), "1\n");
    // A changed file under a bind mount re-runs the step that reads it.
    std::fs::write(ctx.join("data/d.txt"), "rebound\n").unwrap();
    build(&b, &ctx, &["-t", "m:4", "--secret", &sec]);
    assert_eq!(
        b.ok(&["run", "--rm", "m:4", "cat", "/from-bind"]),
        "rebound\n"
    );
    // A required secret that was not given is an error.
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:test\nRUN --mount=type=secret,id=missing,required true\n",
    )
    .unwrap();
    let (_, err) = b.fails(&["build", ctx.to_str().unwrap()]);
    assert!(err.contains("secret missing not found"), "{err}");
    assert!(b.container_ids().is_empty());
}

#[test]
fn outputs_go_to_a_directory_a_tar_or_an_archive() {
    require_root!();
    let b = Berth::with_busybox();
    let df = "FROM scratch\nCOPY f.txt /dir/f.txt\n";
    let ctx = context(&b, "out", &[("Dockerfile", df), ("f.txt", "out\n")]);
    let images = b.ok(&["images", "-q"]);
    let dir = ctx.parent().unwrap().join("local-out");
    build(
        &b,
        &ctx,
        &["-o", &format!("type=local,dest={}", dir.display())],
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("dir/f.txt")).unwrap(),
        "out\n"
    );
    let tar = ctx.parent().unwrap().join("fs.tar");
    build(
        &b,
        &ctx,
        &["--output", &format!("type=tar,dest={}", tar.display())],
    );
    let list = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&tar)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&list.stdout).contains("dir/f.txt"));
    // Nothing named, nothing new among the images.
    assert_eq!(b.ok(&["images", "-q"]), images);
    let archive = ctx.parent().unwrap().join("img.tar");
    build(
        &b,
        &ctx,
        &[
            "-t",
            "out:1",
            "-o",
            &format!("type=oci,dest={}", archive.display()),
        ],
    );
    let list = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&archive)
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.contains("index.json") && list.contains("oci-layout"),
        "{list}"
    );
    let (_, err) = b.fails(&["build", "-o", "type=registry", ctx.to_str().unwrap()]);
    assert!(err.contains("not implemented yet"), "{err}");
}

#[test]
fn the_same_dockerfile_and_context_make_the_same_image_on_two_roots() {
    require_root!();
    let one = Berth::with_busybox();
    // The same base image on the other root, as a pull would bring it.
    let two = Berth::new();
    let base = one.root.parent().unwrap().join("base.tar");
    one.ok(&["save", "-o", base.to_str().unwrap(), "busybox:test"]);
    two.ok(&["load", "-i", base.to_str().unwrap()]);
    let df = "FROM busybox:test\nCOPY . /src/\nRUN mkdir /made && echo made > /made/file && touch /src/a.txt\nENV X=1\nCMD [\"cat\", \"/made/file\"]\n";
    let ctx = context(
        &one,
        "repro",
        &[("Dockerfile", df), ("a.txt", "a\n"), ("d/b.txt", "b\n")],
    );
    let a = build(&one, &ctx, &["-q"]);
    // Some time passes, and the files are touched: nothing of it shows.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::process::Command::new("touch")
        .arg(ctx.join("d/b.txt"))
        .status()
        .unwrap();
    let b = build(&two, &ctx, &["-q"]);
    assert_eq!(a, b, "same image id on both roots");
    let a2 = build(&one, &ctx, &["-q", "--no-cache"]);
    assert_eq!(a, a2, "an uncached rebuild is the same image too");
    // SOURCE_DATE_EPOCH sets every time in the image.
    let c = build(
        &one,
        &ctx,
        &[
            "-q",
            "-t",
            "r:1",
            "--build-arg",
            "SOURCE_DATE_EPOCH=1700000000",
        ],
    );
    assert_ne!(a, c);
    assert_eq!(one.inspect("r:1", "{{.Created}}"), "2023-11-14T22:13:20Z");
    let mtime = one.ok(&[
        "run",
        "--rm",
        "r:1",
        "stat",
        "-c",
        "%Y",
        "/made/file",
        "/src/a.txt",
    ]);
    assert_eq!(mtime, "1700000000\n1700000000\n");
}

/// Starts `build` of a Dockerfile whose RUN sleeps, and waits for the step's container.
fn start_sleeping_build(b: &Berth, ctx: &Path) -> std::process::Child {
    let mut cmd = b.cmd();
    cmd.args(["build", "-t", "never:1"]).arg(ctx);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let child = cmd.spawn().unwrap();
    assert!(
        common::eventually(30, || b.ok(&["ps", "-q"]).lines().count() == 1),
        "the RUN step's container never ran"
    );
    child
}

#[test]
fn an_interrupted_build_leaves_no_tag_container_or_mount() {
    require_root!();
    let b = Berth::with_busybox();
    let df = "FROM busybox:test AS s\nRUN echo s > /s\nFROM busybox:test\nCOPY --from=s /s /s\nRUN --mount=from=s,target=/m sleep 60\n";
    let ctx = context(&b, "int", &[("Dockerfile", df)]);
    let leftovers = || {
        std::fs::read_dir(b.run_root.join("build"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    // Ctrl-C: the build stops at once and cleans up after itself.
    let mut child = start_sleeping_build(&b, &ctx);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(b.container_ids().is_empty());
    assert_eq!(b.ok(&["images", "-q"]).lines().count(), 1);
    assert_eq!(leftovers(), 0);
    // kill -9: the step's container dies with the build, and the next build sweeps
    // the temporary image and the mounts.
    let mut child = start_sleeping_build(&b, &ctx);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        common::eventually(10, || b.container_ids().is_empty()),
        "the step's container outlived its build"
    );
    assert!(leftovers() > 0);
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox:test\nRUN true\n").unwrap();
    build(&b, &ctx, &["-t", "next:1"]);
    assert_eq!(leftovers(), 0);
    assert!(b.run(&["image", "inspect", "never:1"]).status.code() != Some(0));
    assert_eq!(b.ok(&["images", "-q"]).lines().count(), 2);
}

#[test]
fn a_remembered_file_digest_is_not_trusted_once_the_file_changed() {
    require_root!();
    let b = Berth::with_busybox();
    let ctx = context(
        &b,
        "memo",
        &[
            ("Dockerfile", "FROM busybox:test\nCOPY f.txt /f.txt\n"),
            ("f.txt", "one"),
        ],
    );
    // Files older than two seconds (whole seconds) have their digests remembered.
    std::thread::sleep(std::time::Duration::from_millis(3100));
    build(&b, &ctx, &["-t", "memo:1"]);
    // Same size, same mtime, new content: only the ctime tells.
    let f = ctx.join("f.txt");
    let mtime = std::fs::metadata(&f).unwrap().modified().unwrap();
    std::fs::write(&f, "two").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let progress = build_progress(&b, &ctx, &["-t", "memo:2"]);
    assert!(!progress.contains("CACHED"), "{progress}");
    assert_eq!(b.ok(&["run", "--rm", "memo:2", "cat", "/f.txt"]), "two");
}

/// A tiny HTTP server on loopback: every GET of `/dir/file.txt` gets `body`, anything
/// else a 404. Serves until the test process ends.
fn serve(body: &'static str) -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            reader.read_line(&mut request).unwrap_or(0);
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 2 {
                line.clear();
            }
            let mut stream = stream;
            let response = if request.starts_with("GET /dir/file.txt") {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Tue, 14 Nov 2023 22:13:20 GMT\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into()
            };
            let _ = stream.write_all(response.as_bytes());
        }
    });
    port
}

#[test]
fn add_downloads_urls_as_files() {
    require_root!();
    let b = Berth::with_busybox();
    let port = serve("downloaded\n");
    let url = format!("http://127.0.0.1:{port}/dir/file.txt");
    let sum = {
        use sha2::Digest;
        format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(b"downloaded\n"))
        )
    };
    let df = format!("FROM busybox:test\nADD {url} /dl/\nADD --checksum={sum} {url} /dl2\n");
    let ctx = context(&b, "url", &[("Dockerfile", &df)]);
    build(
        &b,
        &ctx,
        &["-t", "url:1", "--build-arg", "SOURCE_DATE_EPOCH=1800000000"],
    );
    assert_eq!(
        b.ok(&["run", "--rm", "url:1", "cat", "/dl/file.txt", "/dl2"]),
        "downloaded\ndownloaded\n"
    );
    // Mode 0600 and the server's Last-Modified time, as Docker gives them.
    assert_eq!(
        b.ok(&[
            "run",
            "--rm",
            "url:1",
            "stat",
            "-c",
            "%a %Y",
            "/dl/file.txt"
        ]),
        "600 1700000000\n"
    );
    for (line, want) in [
        (
            format!("ADD --checksum=sha256:{} {url} /x", "0".repeat(64)),
            "digest mismatch",
        ),
        (format!("ADD http://127.0.0.1:{port}/missing /x"), "404"),
        (
            format!("ADD http://127.0.0.1:{port}/ /dir/"),
            "cannot determine a file name",
        ),
    ] {
        std::fs::write(
            ctx.join("Dockerfile"),
            format!("FROM busybox:test\n{line}\n"),
        )
        .unwrap();
        let (_, err) = b.fails(&["build", ctx.to_str().unwrap()]);
        assert!(err.contains(want), "{line}: {err}");
    }
}

#[test]
fn independent_stages_build_at_the_same_time() {
    require_root!();
    let b = Berth::with_busybox();
    // Each stage waits (up to 20 s) for the other to show up in a shared cache mount:
    // built one after the other, the first would give up and fail.
    let wait = |me: &str, other: &str| {
        format!(
            "RUN --mount=type=cache,id=rendezvous,target=/r touch /r/{me} && \
             for i in $(seq 200); do [ -e /r/{other} ] && break; sleep 0.1; done && \
             [ -e /r/{other} ] && echo {me} > /{me}"
        )
    };
    let df = format!(
        "FROM busybox:test AS a\n{}\n\nFROM busybox:test AS b\n{}\n\nFROM busybox:test AS unused\nRUN exit 1\n\nFROM busybox:test\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n",
        wait("a", "b"),
        wait("b", "a")
    );
    let ctx = context(&b, "par", &[("Dockerfile", &df)]);
    let progress = build_progress(&b, &ctx, &["-t", "par:1"]);
    assert!(
        progress.contains("[a 2/2]") && progress.contains("[b 2/2]"),
        "{progress}"
    );
    assert_eq!(b.ok(&["run", "--rm", "par:1", "cat", "/a", "/b"]), "a\nb\n");
    assert!(b.container_ids().is_empty());
    assert_eq!(b.ok(&["images", "-q"]).lines().count(), 2);
}
