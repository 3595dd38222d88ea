//! Images end to end: import, load, save, tag, rmi, inspect, history, prune; bad and
//! hostile input; images with many layers; images made from containers.

mod common;
use common::{busybox_tar, Berth};
use sha2::{Digest, Sha256};
use std::io::Write;

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// A tar with the given (name, content) regular files, raw names (no sanitising).
fn raw_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// A docker-archive (legacy layout) with one image made of `layers` (uncompressed tars).
fn docker_archive(tag: &str, layers: &[Vec<u8>], cmd: &[&str]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("sha256:{}", sha(l)))
        .collect();
    let config = serde_json::json!({
        "architecture": if cfg!(target_arch = "aarch64") { "arm64" } else { "amd64" },
        "os": "linux",
        "created": "2026-01-01T00:00:00Z",
        "config": {"Cmd": cmd, "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_name = format!("{}.json", sha(&config_bytes));
    let mut b = tar::Builder::new(Vec::new());
    let add = |b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append_data(&mut h, name, data).unwrap();
    };
    let mut layer_paths = Vec::new();
    for l in layers {
        let p = format!("{}/layer.tar", sha(l));
        add(&mut b, &p, l);
        layer_paths.push(p);
    }
    add(&mut b, &config_name, &config_bytes);
    let manifest =
        serde_json::json!([{"Config": config_name, "RepoTags": [tag], "Layers": layer_paths}]);
    add(
        &mut b,
        "manifest.json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    b.into_inner().unwrap()
}

#[test]
fn import_plain_gzip_zstd_and_stdin() {
    require_root!();
    let b = Berth::new();
    let raw = std::fs::read(busybox_tar()).unwrap();
    let gz = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&raw).unwrap();
        e.finish().unwrap()
    };
    let zst = zstd::encode_all(&raw[..], 3).unwrap();
    let d = b.dir.path();
    std::fs::write(d.join("r.tar.gz"), &gz).unwrap();
    std::fs::write(d.join("r.tar.zst"), &zst).unwrap();
    let id1 = b.ok(&["import", busybox_tar().to_str().unwrap(), "bb:plain"]);
    let id2 = b.ok(&["import", d.join("r.tar.gz").to_str().unwrap(), "bb:gz"]);
    let id3 = b.ok(&["import", d.join("r.tar.zst").to_str().unwrap(), "bb:zst"]);
    assert!(id1.starts_with("sha256:") && id2.starts_with("sha256:") && id3.starts_with("sha256:"));
    // The same content gives the same layer.
    let l = |t: &str| b.ok(&["image", "inspect", "-f", "{{json .RootFS.Layers}}", t]);
    assert_eq!(l("bb:plain"), l("bb:gz"));
    assert_eq!(l("bb:gz"), l("bb:zst"));
    let mut child = b
        .cmd()
        .args(["import", "-", "bb:stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&gz).unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    assert_eq!(
        b.ok(&["run", "--rm", "bb:stdin", "/bin/echo", "imported"]),
        "imported\n"
    );
    let images = b.ok(&["images"]);
    assert!(images.starts_with("REPOSITORY   TAG"), "{images}");
    assert!(images.contains("IMAGE ID") && images.contains("CREATED") && images.contains("SIZE"));
    assert_eq!(
        b.ok(&["images", "-q"]).lines().count(),
        4,
        "identical imports differ only by created time"
    );
    // No registry knows these images: no digest, as Docker shows local images.
    let digests = b.ok(&["images", "--digests"]);
    assert!(
        digests.contains("DIGEST") && digests.contains("<none>") && !digests.contains("sha256:"),
        "{digests}"
    );
    assert!(b
        .ok(&["images", "--no-trunc", "-q"])
        .lines()
        .all(|l| l.len() == 71));
    assert!(b.ok(&["images", "bb"]).lines().count() == 5);
}

#[test]
fn import_rejects_tars_that_escape_the_root_and_leaves_nothing() {
    require_root!();
    let b = Berth::new();
    let outside = b.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    for (i, name) in [
        "../../../../../../tmp/escape-x",
        "/etc/abs-x",
        "a/../../escape-y",
    ]
    .iter()
    .enumerate()
    {
        let tar = raw_tar(&[(name, b"evil")]);
        let p = b.dir.path().join(format!("evil{i}.tar"));
        std::fs::write(&p, tar).unwrap();
        let (code, err) = b.fails(&["import", p.to_str().unwrap(), "evil:1"]);
        assert_eq!(code, 1);
        assert!(err.contains("escape") || err.contains("absolute"), "{err}");
    }
    assert!(!std::path::Path::new("/tmp/escape-x").exists());
    assert!(
        b.ok(&["images", "-q"]).is_empty(),
        "no half image is visible"
    );
    // A symlink to / followed by a file through it lands inside the image.
    let mut t = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    h.set_cksum();
    t.append_link(&mut h, "evil", outside.to_str().unwrap())
        .unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(4);
    h.set_mode(0o644);
    h.set_cksum();
    t.append_data(&mut h, "evil/pwned", &b"evil"[..]).unwrap();
    let p = b.dir.path().join("symlink.tar");
    std::fs::write(&p, t.into_inner().unwrap()).unwrap();
    let _ = b.run(&["import", p.to_str().unwrap(), "sym:1"]);
    assert!(
        !outside.join("pwned").exists(),
        "a layer wrote outside its root"
    );
}

#[test]
fn corrupt_truncated_or_mismatching_archives_load_nothing() {
    require_root!();
    let b = Berth::new();
    let layer = raw_tar(&[("hello.txt", b"hi")]);
    let good = docker_archive("good:1", std::slice::from_ref(&layer), &["/bin/true"]);
    let d = b.dir.path();
    std::fs::write(d.join("trunc.tar"), &good[..good.len() / 2]).unwrap();
    let (code, _) = b.fails(&["load", "-i", d.join("trunc.tar").to_str().unwrap()]);
    assert_eq!(code, 1);
    // A layer whose content does not match the config's diff id.
    let mut bad = docker_archive("bad:1", std::slice::from_ref(&layer), &["/bin/true"]);
    let pos = bad.windows(2).position(|w| w == b"hi").unwrap();
    bad[pos] = b'H';
    std::fs::write(d.join("bad.tar"), &bad).unwrap();
    let (_, err) = b.fails(&["load", "-i", d.join("bad.tar").to_str().unwrap()]);
    assert!(
        err.contains("does not match") || err.contains("diff id"),
        "{err}"
    );
    std::fs::write(d.join("junk.tar"), b"not a tar at all").unwrap();
    b.fails(&["load", "-i", d.join("junk.tar").to_str().unwrap()]);
    assert!(b
        .fails(&["load", "-i", "/no/such/file.tar"])
        .1
        .contains("/no/such/file.tar"));
    assert!(b.ok(&["images", "-q"]).is_empty());
    // and the good one loads
    std::fs::write(d.join("good.tar"), &good).unwrap();
    assert_eq!(
        b.ok(&["load", "-i", d.join("good.tar").to_str().unwrap()]),
        "Loaded image: good:1\n"
    );
}

#[test]
fn images_with_130_layers_run() {
    require_root!();
    let b = Berth::with_busybox();
    // Take busybox as the bottom layer and add 129 one-file layers.
    let mut layers = vec![std::fs::read(busybox_tar()).unwrap()];
    for i in 0..129 {
        let name = format!("f{i}");
        layers.push(raw_tar(&[(&name, format!("layer {i}\n").as_bytes())]));
    }
    let archive = docker_archive("tall:1", &layers, &["/bin/sh"]);
    let p = b.dir.path().join("tall.tar");
    std::fs::write(&p, archive).unwrap();
    b.ok(&["load", "-i", p.to_str().unwrap()]);
    assert_eq!(
        b.ok(&["run", "--rm", "tall:1", "/bin/cat", "/f0", "/f128"]),
        "layer 0\nlayer 128\n"
    );
    assert_eq!(b.ok(&["history", "-q", "tall:1"]).lines().count(), 130);
}

#[test]
fn tag_rmi_rules_and_prune() {
    require_root!();
    let b = Berth::with_busybox();
    b.ok(&["tag", "busybox:test", "other/name:v2"]);
    assert!(b.ok(&["images"]).contains("other/name"));
    // Untagging one of two tags keeps the image.
    assert_eq!(b.ok(&["rmi", "other/name:v2"]), "Untagged: other/name:v2\n");
    // An image a container uses cannot be removed without -f.
    b.ok(&["create", "--name", "user", "busybox:test"]);
    let (code, err) = b.fails(&["rmi", "busybox:test"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("container") && err.contains("is using"),
        "{err}"
    );
    b.ok(&["rm", "user"]);
    let out = b.ok(&["rmi", "busybox:test"]);
    assert!(
        out.contains("Untagged: busybox:test") && out.contains("Deleted: sha256:"),
        "{out}"
    );
    assert!(b.ok(&["images", "-q"]).is_empty());
    // Its layer and blobs are gone too.
    assert_eq!(
        std::fs::read_dir(b.root.join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
    assert!(b
        .fails(&["rmi", "busybox:test"])
        .1
        .contains("no such image: busybox:test"));
    assert!(b
        .fails(&["tag", "nope", "x:1"])
        .1
        .contains("no such image: nope"));
    assert!(
        b.fails(&["tag", "hello", "Bad:Ref"])
            .1
            .contains("invalid reference format")
            || b.fails(&["tag", "hello", "Bad:Ref"])
                .1
                .contains("no such image")
    );
    // Prune: dangling images go, tagged ones stay (and -a takes unused tagged ones).
    let b = Berth::with_busybox();
    b.ok(&[
        "run",
        "--name",
        "cc",
        "busybox:test",
        "sh",
        "-c",
        "echo 1 > /x",
    ]);
    b.ok(&["commit", "cc", "snap:1"]);
    b.ok(&["commit", "cc", "snap:1"]); // the first snap:1 is now dangling
    assert!(b.ok(&["images"]).contains("<none>"));
    let out = b.ok(&["image", "prune", "-f"]);
    assert!(out.contains("deleted: sha256:"), "{out}");
    assert!(!b.ok(&["images"]).contains("<none>"));
    b.ok(&["rm", "cc"]);
    b.ok(&["image", "prune", "-a", "-f"]);
    assert!(b.ok(&["images", "-q"]).is_empty());
}

#[test]
fn image_inspect_and_history_look_like_dockers() {
    require_root!();
    let b = Berth::with_busybox();
    let v: serde_json::Value =
        serde_json::from_str(&b.ok(&["image", "inspect", "busybox:test"])).unwrap();
    let i = &v[0];
    assert!(i["Id"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(i["RepoTags"][0], "busybox:test");
    assert_eq!(i["Os"], "linux");
    assert_eq!(i["Config"]["Cmd"][0], "/bin/sh");
    assert_eq!(i["RootFS"]["Type"], "layers");
    assert!(i["Size"].as_u64().unwrap() > 1_000_000);
    assert_eq!(
        i["RepoDigests"],
        serde_json::json!([]),
        "never pulled or pushed"
    );
    let h = b.ok(&["history", "busybox:test"]);
    assert!(h.starts_with("IMAGE          CREATED"), "{h}");
    assert!(h.contains("berth import"), "{h}");
    assert!(b
        .fails(&["image", "inspect", "nope:1"])
        .1
        .contains("no such image: nope:1"));
}

#[test]
fn save_load_round_trip_between_roots_keeps_ids() {
    require_root!();
    let a = Berth::with_busybox();
    a.ok(&[
        "run",
        "--name",
        "cc",
        "busybox:test",
        "sh",
        "-c",
        "echo layered > /layered",
    ]);
    a.ok(&["commit", "cc", "two:layers"]);
    let archive = a.dir.path().join("out.tar");
    a.ok(&[
        "save",
        "-o",
        archive.to_str().unwrap(),
        "two:layers",
        "busybox:test",
    ]);
    let b = Berth::new();
    let out = b.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert!(
        out.contains("Loaded image: two:layers") && out.contains("Loaded image: busybox:test"),
        "{out}"
    );
    let id = |x: &Berth| x.ok(&["image", "inspect", "-f", "{{.Id}}", "two:layers"]);
    assert_eq!(id(&a), id(&b));
    assert_eq!(
        b.ok(&["run", "--rm", "two:layers", "cat", "/layered"]),
        "layered\n"
    );
    // save to stdout, load from stdin
    let saved = a.cmd().args(["save", "busybox:test"]).output().unwrap();
    assert!(saved.status.success());
    let c = Berth::new();
    let mut child = c
        .cmd()
        .args(["load"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&saved.stdout)
        .unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    assert!(c.ok(&["images"]).contains("busybox"));
    assert!(a
        .fails(&["save", "-o", archive.to_str().unwrap(), "missing:1"])
        .1
        .contains("no such image"));
}

#[test]
fn diff_commit_export_and_cp() {
    require_root!();
    let b = Berth::with_busybox();
    b.ok(&[
        "run",
        "--name",
        "wk",
        "busybox:test",
        "sh",
        "-c",
        "echo new > /root/new.txt; rm /bin/vi; mkdir /opt; echo y > /opt/y",
    ]);
    let diff = b.ok(&["diff", "wk"]);
    for line in [
        "C /bin",
        "D /bin/vi",
        "A /opt",
        "A /opt/y",
        "C /root",
        "A /root/new.txt",
    ] {
        assert!(
            diff.lines().any(|l| l == line),
            "missing {line:?} in:\n{diff}"
        );
    }
    assert!(
        !diff.contains("/etc/hosts") && !diff.contains("/proc"),
        "mount points leak into diff:\n{diff}"
    );
    let id = b.ok(&[
        "commit",
        "-m",
        "msg",
        "-c",
        "CMD [\"cat\", \"/root/new.txt\"]",
        "wk",
        "made:1",
    ]);
    assert!(id.starts_with("sha256:"));
    assert_eq!(b.ok(&["run", "--rm", "made:1"]), "new\n");
    assert_eq!(
        b.run(&["run", "--rm", "made:1", "ls", "/bin/vi"])
            .status
            .code(),
        Some(1),
        "whiteout lost in commit"
    );
    // The image did not change: a new version is a new image.
    assert_eq!(
        b.run(&["run", "--rm", "busybox:test", "ls", "/bin/vi"])
            .status
            .code(),
        Some(0)
    );
    assert!(b.ok(&["history", "made:1"]).contains("msg"));
    // export
    let out = b.cmd().args(["export", "wk"]).output().unwrap();
    let mut names = Vec::new();
    let mut a = tar::Archive::new(&out.stdout[..]);
    for e in a.entries().unwrap() {
        names.push(e.unwrap().path().unwrap().to_string_lossy().into_owned());
    }
    assert!(
        names
            .iter()
            .any(|n| n.trim_start_matches("./") == "root/new.txt"),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.trim_start_matches("./") == "bin/vi"));
    // cp both ways
    let host = b.dir.path().join("h");
    std::fs::create_dir(&host).unwrap();
    b.ok(&[
        "cp",
        "wk:/root/new.txt",
        host.join("got.txt").to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(host.join("got.txt")).unwrap(),
        "new\n"
    );
    b.ok(&["cp", "wk:/opt", host.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(host.join("opt/y")).unwrap(), "y\n");
    std::fs::write(host.join("up.txt"), "uploaded").unwrap();
    b.ok(&["cp", host.join("up.txt").to_str().unwrap(), "wk:/tmp/"]);
    b.ok(&["start", "-a", "wk"]);
    assert!(b.ok(&["diff", "wk"]).contains("A /tmp/up.txt"));
    assert!(b
        .fails(&["cp", "wk:/no/such", host.to_str().unwrap()])
        .1
        .contains("Could not find"));
}

#[test]
fn cp_never_follows_a_symlink_out_of_the_container() {
    require_root!();
    let b = Berth::with_busybox();
    let secret_dir = b.dir.path().join("hostdir");
    std::fs::create_dir(&secret_dir).unwrap();
    std::fs::write(secret_dir.join("secret"), "host secret").unwrap();
    let target = secret_dir.to_str().unwrap().to_string();
    // Inside the container: links that would point at host paths if followed on the host.
    b.ok(&["run", "--name", "evil", "busybox:test", "sh", "-c", &format!("ln -s {target} /root/link; ln -s ../../../../../../../ /root/up; ln -s / /root/rootlink")]);
    let out_dir = b.dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    // Copying out through the link reads the container's path, not the host's.
    let r = b.run(&[
        "cp",
        "evil:/root/link/secret",
        out_dir.join("s").to_str().unwrap(),
    ]);
    assert!(
        !r.status.success()
            || std::fs::read_to_string(out_dir.join("s"))
                .map(|s| s != "host secret")
                .unwrap_or(true)
    );
    let r = b.run(&[
        "cp",
        &format!("evil:/root/up{}/secret", target),
        out_dir.join("s2").to_str().unwrap(),
    ]);
    assert!(
        !r.status.success()
            || std::fs::read_to_string(out_dir.join("s2"))
                .map(|s| s != "host secret")
                .unwrap_or(true)
    );
    // Copying in through a link lands inside the container, never on the host.
    std::fs::write(out_dir.join("payload"), "payload").unwrap();
    let _ = b.run(&[
        "cp",
        out_dir.join("payload").to_str().unwrap(),
        "evil:/root/link/",
    ]);
    let _ = b.run(&[
        "cp",
        out_dir.join("payload").to_str().unwrap(),
        &format!("evil:/root/rootlink{}/", target),
    ]);
    assert!(
        !secret_dir.join("payload").exists(),
        "cp wrote outside the container"
    );
    // A tar from stdin with an escaping entry is refused and writes nothing outside.
    let evil = raw_tar(&[("../../../../../../../../tmp/berth-cp-escape", b"x")]);
    let mut child = b
        .cmd()
        .args(["cp", "-", "evil:/tmp"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&evil).unwrap();
    assert!(!child.wait_with_output().unwrap().status.success());
    assert!(!std::path::Path::new("/tmp/berth-cp-escape").exists());
}

#[test]
fn commit_of_a_running_container_freezes_it_and_thaws_it_again() {
    require_root!();
    let b = Berth::with_busybox();
    b.ok(&[
        "run",
        "-d",
        "--name",
        "busy",
        "busybox:test",
        "sh",
        "-c",
        "echo before > /state; while true; do sleep 0.05; done",
    ]);
    assert!(common::eventually(5, || b
        .run(&["exec", "busy", "cat", "/state"])
        .stdout
        == b"before\n"));
    b.ok(&["commit", "busy", "live:1"]);
    assert_eq!(
        b.ok(&["run", "--rm", "live:1", "cat", "/state"]),
        "before\n"
    );
    // Thawed: it still runs and answers.
    assert_eq!(b.inspect("busy", "{{.State.Status}}"), "running");
    assert_eq!(b.ok(&["exec", "busy", "echo", "alive"]), "alive\n");
    b.ok(&["commit", "--pause=false", "busy", "live:2"]);
    let ps = b.ok(&["ps", "-s"]);
    assert!(ps.contains("SIZE") && ps.contains("virtual"), "{ps}");
}

#[test]
fn image_prune_help_puts_the_prompt_text_on_force_not_on_filter() {
    let out = std::process::Command::new(common::berth_bin())
        .args(["image", "prune", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    let line = |flag: &str| {
        help.lines()
            .find(|l| l.contains(flag))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        line("--force").contains("Do not prompt for confirmation"),
        "{help}"
    );
    assert!(!line("--filter").contains("Do not prompt"), "{help}");
}
