//! Data that outlives containers: named and anonymous volumes, bind mounts, --mount.

mod common;
use common::Berth;

#[test]
fn named_volume_outlives_its_container_and_is_seeded_from_the_image() {
    require_root!();
    let b = Berth::with_busybox();
    // First use creates the volume and copies the image's /data into it.
    assert_eq!(
        b.sh(
            &["-v", "store:/data"],
            "cat /data/seed.txt; echo kept > /data/new.txt"
        ),
        "seeded from the image\n"
    );
    assert!(b.ok(&["volume", "ls"]).contains("store"));
    assert_eq!(b.sh(&["-v", "store:/data"], "cat /data/new.txt"), "kept\n");
    let v: serde_json::Value =
        serde_json::from_str(&b.ok(&["volume", "inspect", "store"])).unwrap();
    assert_eq!(v[0]["Name"], "store");
    assert_eq!(v[0]["Driver"], "local");
    let mp = v[0]["Mountpoint"].as_str().unwrap().to_string();
    assert_eq!(
        std::fs::read_to_string(format!("{mp}/new.txt")).unwrap(),
        "kept\n"
    );
    // rm -v never touches a named volume.
    b.ok(&[
        "run",
        "--name",
        "user",
        "-v",
        "store:/data",
        "busybox:test",
        "true",
    ]);
    let (_, err) = b.fails(&["volume", "rm", "store"]);
    assert!(err.contains("volume is in use"), "{err}");
    b.ok(&["rm", "-v", "user"]);
    assert!(std::path::Path::new(&mp).join("new.txt").exists());
    b.ok(&["volume", "rm", "store"]);
    assert!(!std::path::Path::new(&mp).exists());
    assert!(b
        .fails(&["volume", "inspect", "store"])
        .1
        .contains("no such volume: store"));
    // nocopy: not seeded
    assert_eq!(
        b.sh(&["-v", "empty:/data:nocopy"], "ls /data | wc -l")
            .trim(),
        "0"
    );
}

#[test]
fn bind_mounts_read_write_and_read_only() {
    require_root!();
    let b = Berth::with_busybox();
    let host = b.dir.path().join("shared");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("in.txt"), "from host").unwrap();
    let spec = format!("{}:/mnt/h", host.display());
    assert_eq!(
        b.sh(
            &["-v", &spec],
            "cat /mnt/h/in.txt; echo back > /mnt/h/out.txt"
        ),
        "from host"
    );
    assert_eq!(
        std::fs::read_to_string(host.join("out.txt")).unwrap(),
        "back\n"
    );
    let ro = format!("{}:/mnt/h:ro", host.display());
    let out = b.sh(&["-v", &ro], "(echo x > /mnt/h/nope) 2>&1; echo rc=$?");
    assert!(out.contains("Read-only"), "{out}");
    let m = format!("type=bind,source={},target=/m,readonly", host.display());
    assert!(b
        .sh(&["--mount", &m], "touch /m/x 2>/dev/null; echo rc=$?")
        .contains("rc=1"));
    assert!(!host.join("x").exists());
    let (code, err) = b.fails(&[
        "run",
        "--rm",
        "--mount",
        "type=bind,source=/no/such/dir,target=/m",
        "busybox:test",
        "true",
    ]);
    assert_eq!(code, 125);
    assert!(err.contains("bind source path does not exist"), "{err}");
    // inspect shows the mounts
    b.ok(&[
        "create",
        "--name",
        "mnt",
        "-v",
        &spec,
        "-v",
        "named:/n",
        "busybox:test",
    ]);
    let v: serde_json::Value = serde_json::from_str(&b.ok(&["inspect", "mnt"])).unwrap();
    let mounts = v[0]["Mounts"].as_array().unwrap();
    assert!(mounts
        .iter()
        .any(|m| m["Type"] == "bind" && m["Destination"] == "/mnt/h" && m["RW"] == true));
    assert!(mounts
        .iter()
        .any(|m| m["Type"] == "volume" && m["Name"] == "named"));
}

#[test]
fn mount_tmpfs_and_anonymous_volumes_from_the_image() {
    require_root!();
    let b = Berth::new();
    b.ok(&[
        "import",
        "-c",
        "CMD [\"/bin/sh\"]",
        "-c",
        "VOLUME /data",
        common::busybox_tar().to_str().unwrap(),
        "withvol:1",
    ]);
    let out = b.ok(&[
        "run",
        "--rm",
        "--mount",
        "type=tmpfs,target=/t,tmpfs-size=1048576",
        "withvol:1",
        "sh",
        "-c",
        "df -k /t | tail -1; cat /data/seed.txt",
    ]);
    assert!(out.contains("1024"), "{out}");
    assert!(out.contains("seeded from the image"), "{out}");
    // An anonymous volume appears for the image's VOLUME; rm -v removes it.
    b.ok(&["run", "--name", "anon", "withvol:1", "true"]);
    let vols = b.ok(&["volume", "ls", "-q"]);
    assert_eq!(vols.lines().count(), 1, "{vols}");
    b.ok(&["rm", "-v", "anon"]);
    assert_eq!(b.ok(&["volume", "ls", "-q"]).lines().count(), 0);
    // --rm removes anonymous volumes too; prune removes unused anonymous ones.
    b.ok(&["run", "--rm", "withvol:1", "true"]);
    assert_eq!(b.ok(&["volume", "ls", "-q"]).lines().count(), 0);
    b.ok(&["run", "--name", "left", "withvol:1", "true"]);
    b.ok(&["rm", "left"]);
    b.ok(&["volume", "create", "keepme"]);
    let out = b.ok(&["volume", "prune", "-f"]);
    assert!(out.contains("Total reclaimed space"), "{out}");
    assert_eq!(b.ok(&["volume", "ls", "-q"]).trim(), "keepme");
    assert!(b
        .fails(&["volume", "create", "bad/name"])
        .1
        .contains("invalid characters"));
}
