//! Attacks: nothing outside the destination may change, whatever the tar says (`..`,
//! absolute names, links and whiteouts through symlinks, devices, planted symlinks).

use super::*;

#[test]
fn dotdot_entry_is_rejected() {
    let fx = Fixture::new();
    let mut t = Tar::new();
    t.file("../outside/escape", b"pwned");
    let err = apply(t, &fx.dest, &CP).unwrap_err();
    assert!(
        matches!(err, LayerError::PathEscapes { ref path } if path == "../outside/escape"),
        "{err}"
    );
    assert!(err.is_invalid_input());
    assert!(err.to_string().contains("../outside/escape"));
    fx.assert_outside_untouched();
}

#[test]
fn absolute_entry_is_rejected() {
    let fx = Fixture::new();
    let name = format!("{}/abs", fx.outside_abs());
    let mut t = Tar::new();
    t.file(&name, b"pwned");
    let err = apply(t, &fx.dest, &LAYER).unwrap_err();
    assert!(
        matches!(err, LayerError::AbsolutePath { ref path } if *path == name),
        "{err}"
    );
    fx.assert_outside_untouched();
}

#[test]
fn dotdot_in_the_middle_that_escapes_is_rejected() {
    let fx = Fixture::new();
    let mut t = Tar::new();
    t.dir("a/").file("a/../../outside/escape", b"pwned");
    let err = apply(t, &fx.dest, &CP).unwrap_err();
    assert!(matches!(err, LayerError::PathEscapes { .. }), "{err}");
    fx.assert_outside_untouched();
}

#[test]
fn pax_path_with_dotdot_is_rejected() {
    let fx = Fixture::new();
    let mut t = Tar::new();
    t.pax(&[("path", b"../outside/escape")])
        .file("innocent", b"pwned");
    let err = apply(t, &fx.dest, &CP).unwrap_err();
    assert!(matches!(err, LayerError::PathEscapes { .. }), "{err}");
    assert!(!fx.dest.join("innocent").exists());
    fx.assert_outside_untouched();
}

#[test]
fn gnu_long_name_with_dotdot_is_rejected() {
    let fx = Fixture::new();
    let long = format!("../outside/{}", "x".repeat(120));
    let mut t = Tar::new();
    let mut data = long.as_bytes().to_vec();
    data.push(0);
    t.raw(
        "././@LongLink",
        EntryType::GNULongName,
        0o644,
        &data,
        None,
        |_| {},
    )
    .file("innocent", b"pwned");
    let err = apply(t, &fx.dest, &CP).unwrap_err();
    assert!(
        matches!(err, LayerError::PathEscapes { ref path } if *path == long),
        "{err}"
    );
    fx.assert_outside_untouched();
}

#[test]
fn symlink_to_root_then_file_through_it_lands_inside() {
    let fx = Fixture::new();
    let mut t = Tar::new();
    t.symlink("evil", "/")
        .file(&format!("evil{}/pwned", fx.outside_abs()), b"pwned");
    apply(t, &fx.dest, &LAYER).unwrap();
    assert_eq!(
        fs::read(fx.outside_in_dest().join("pwned")).unwrap(),
        b"pwned"
    );
    fx.assert_outside_untouched();
}

#[test]
fn a_directory_removed_by_a_whiteout_is_made_again_not_written_through_its_old_self() {
    // The applier keeps the last parent directory open between entries: after a whiteout
    // removes that directory, later entries must go to a new one, not the removed one.
    // Then the same through a symlink put where a directory was.
    let fx = Fixture::new();
    let mut t = Tar::new();
    t.dir("etc/")
        .dir("a/")
        .dir("a/b/")
        .file("a/b/x", b"x")
        .file("a/.wh.b", b"")
        .file("a/b/y", b"y");
    apply(t, &fx.dest, &FLAT).unwrap();
    assert_eq!(fs::read(fx.dest.join("a/b/y")).unwrap(), b"y");
    assert!(!fx.dest.join("a/b/x").exists());
    let mut t = Tar::new();
    t.dir("a/b/")
        .file("a/b/x", b"x")
        .symlink("a/b", "/etc")
        .file("a/b/y", b"y");
    apply(t, &fx.dest, &LAYER).unwrap();
    assert_eq!(fs::read(fx.dest.join("etc/y")).unwrap(), b"y");
    fx.assert_outside_untouched();
}

#[test]
fn symlink_with_dotdot_chain_then_file_through_it_lands_inside() {
    let fx = Fixture::new();
    let mut t = Tar::new();
    t.dir("outside/")
        .symlink("evil", "../../../../../../../../outside")
        .file("evil/pwned", b"pwned")
        .symlink("deep/er/evil2", "../../../outside")
        .file("deep/er/evil2/pwned2", b"pwned");
    apply(t, &fx.dest, &CP).unwrap();
    assert_eq!(fs::read(fx.dest.join("outside/pwned")).unwrap(), b"pwned");
    assert_eq!(fs::read(fx.dest.join("outside/pwned2")).unwrap(), b"pwned");
    fx.assert_outside_untouched();
}

#[test]
fn dangling_escaping_symlink_as_parent_is_an_error_not_an_escape() {
    let fx = Fixture::new();
    let mut t = Tar::new();
    t.symlink("evil", "../outside").file("evil/pwned", b"pwned");
    let err = apply(t, &fx.dest, &CP).unwrap_err();
    assert!(
        matches!(err, LayerError::Entry { ref path, .. } if path == "evil/pwned"),
        "{err}"
    );
    fx.assert_outside_untouched();
}

#[test]
fn symlink_to_parent_then_hardlink_through_it_cannot_link_outside_file() {
    let fx = Fixture::new();
    let mut t = Tar::new();
    t.symlink("up", "..")
        .hardlink("stolen", "up/outside/secret");
    let err = apply(t, &fx.dest, &CP).unwrap_err();
    assert!(
        matches!(err, LayerError::Entry { ref path, .. } if path == "stolen"),
        "{err}"
    );
    assert!(!fx.dest.join("stolen").exists());
    fx.assert_outside_untouched();
}

#[test]
fn hardlink_named_through_parent_symlink_lands_inside() {
    let fx = Fixture::new();
    let mut t = Tar::new();
    t.file("file", b"data")
        .symlink("up", "../..")
        .hardlink("up/outside/planted", "file");
    apply(t, &fx.dest, &CP).unwrap();
    assert_eq!(fs::read(fx.dest.join("outside/planted")).unwrap(), b"data");
    fx.assert_outside_untouched();
}

#[test]
fn hardlink_target_with_dotdot_or_absolute_is_rejected() {
    let fx = Fixture::new();
    let secret = format!("{}/secret", fx.outside_abs());
    for target in [
        "../../etc/passwd",
        "../outside/secret",
        "/etc/passwd",
        secret.as_str(),
    ] {
        let mut t = Tar::new();
        t.hardlink("stolen", target);
        let err = apply(t, &fx.dest, &CP).unwrap_err();
        assert!(
            matches!(err, LayerError::LinkEscapes { ref path, target: ref tg } if path == "stolen" && tg == target),
            "{target}: {err}"
        );
        assert!(!fx.dest.join("stolen").exists());
    }
    fx.assert_outside_untouched();
}

#[test]
fn hardlink_to_an_escaping_symlink_links_the_symlink_not_its_target() {
    let fx = Fixture::new();
    let secret = format!("{}/secret", fx.outside_abs());
    let mut t = Tar::new();
    t.symlink("s", &secret).hardlink("h", "s");
    apply(t, &fx.dest, &CP).unwrap();
    let h = fs::symlink_metadata(fx.dest.join("h")).unwrap();
    assert!(h.file_type().is_symlink());
    fx.assert_outside_untouched();
}

#[test]
fn device_node_is_rejected_without_allow_devices() {
    let fx = Fixture::new();
    for ty in [EntryType::Char, EntryType::Block] {
        let mut t = Tar::new();
        t.device("dev/sda", ty, 8, 0);
        let err = apply(t, &fx.dest, &CP).unwrap_err();
        assert!(
            matches!(err, LayerError::DeviceNotAllowed { ref path } if path == "dev/sda"),
            "{err}"
        );
    }
    assert!(
        !fx.dest.join("dev").exists(),
        "rejected before touching the tree"
    );
    fx.assert_outside_untouched();
}

#[test]
fn whiteout_with_dotdot_is_rejected() {
    let fx = Fixture::new();
    for name in [
        "../.wh.outside",
        "../outside/.wh.victim",
        "a/../../outside/.wh..wh..opq",
    ] {
        for opts in [CP, LAYER] {
            let mut t = Tar::new();
            t.file(name, b"");
            let err = apply(t, &fx.dest, &opts).unwrap_err();
            assert!(
                matches!(err, LayerError::PathEscapes { .. }),
                "{name}: {err}"
            );
        }
    }
    fx.assert_outside_untouched();
}

#[test]
fn whiteout_through_symlink_does_not_delete_outside() {
    let fx = Fixture::new();
    let mut t = Tar::new();
    t.symlink("evil", &fx.outside_abs())
        .file("evil/.wh.victim", b"")
        .symlink("evil2", "../outside")
        .file("evil2/.wh.victim", b"")
        .symlink("up", "..")
        .file("up/outside/.wh.victim", b"");
    apply(t, &fx.dest, &CP).unwrap();
    fx.assert_outside_untouched();
}

#[test]
fn whiteout_of_symlink_removes_the_link_not_its_target() {
    let fx = Fixture::new();
    std::os::unix::fs::symlink(&fx.outside, fx.dest.join("link")).unwrap();
    let mut t = Tar::new();
    t.file(".wh.link", b"");
    apply(t, &fx.dest, &CP).unwrap();
    assert!(fs::symlink_metadata(fx.dest.join("link")).is_err());
    fx.assert_outside_untouched();
}

#[test]
fn opaque_whiteout_through_symlink_does_not_empty_outside() {
    let fx = Fixture::new();
    let mut t = Tar::new();
    t.symlink("evil", &fx.outside_abs())
        .file("evil/.wh..wh..opq", b"")
        .symlink("evil2", "../outside")
        .file("evil2/.wh..wh..opq", b"");
    apply(t, &fx.dest, &CP).unwrap();
    fx.assert_outside_untouched();
}

#[test]
fn opaque_dir_pruning_does_not_follow_symlinks_inside_it() {
    let fx = Fixture::new();
    fs::create_dir(fx.dest.join("d")).unwrap();
    std::os::unix::fs::symlink(&fx.outside, fx.dest.join("d/link")).unwrap();
    // A lower `d/link` is removed (unlinked, not followed).
    let mut t = Tar::new();
    t.file("d/.wh..wh..opq", b"");
    apply(t, &fx.dest, &CP).unwrap();
    assert!(fs::symlink_metadata(fx.dest.join("d/link")).is_err());
    fx.assert_outside_untouched();

    // This layer's own `d/link` is kept, and not descended into.
    let mut t = Tar::new();
    t.symlink("d/link", &fx.outside_abs())
        .file("d/.wh..wh..opq", b"");
    apply(t, &fx.dest, &CP).unwrap();
    assert!(fs::symlink_metadata(fx.dest.join("d/link"))
        .unwrap()
        .file_type()
        .is_symlink());
    fx.assert_outside_untouched();
}

#[test]
fn existing_symlink_in_dest_is_replaced_not_written_through() {
    let fx = Fixture::new();
    std::os::unix::fs::symlink(fx.outside.join("secret"), fx.dest.join("link")).unwrap();
    std::os::unix::fs::symlink(&fx.outside, fx.dest.join("dirlink")).unwrap();
    let mut t = Tar::new();
    t.file("link", b"overwritten")
        .raw("dirlink/", EntryType::Directory, 0o777, b"", None, |_| {});
    apply(t, &fx.dest, &CP).unwrap();
    let link = fs::symlink_metadata(fx.dest.join("link")).unwrap();
    assert!(link.is_file());
    assert_eq!(fs::read(fx.dest.join("link")).unwrap(), b"overwritten");
    assert!(fs::symlink_metadata(fx.dest.join("dirlink"))
        .unwrap()
        .is_dir());
    fx.assert_outside_untouched();
}

#[test]
fn existing_absolute_symlink_in_dest_resolves_inside_dest() {
    let fx = Fixture::new();
    std::os::unix::fs::symlink(&fx.outside, fx.dest.join("dir")).unwrap();
    fs::create_dir_all(fx.outside_in_dest()).unwrap();
    let mut t = Tar::new();
    t.file("dir/pwned", b"pwned")
        .file("dir/secret", b"replaced");
    apply(t, &fx.dest, &CP).unwrap();
    assert_eq!(
        fs::read(fx.outside_in_dest().join("pwned")).unwrap(),
        b"pwned"
    );
    assert_eq!(
        fs::read(fx.outside_in_dest().join("secret")).unwrap(),
        b"replaced"
    );
    fx.assert_outside_untouched();
}

#[test]
fn symlink_entry_metadata_does_not_touch_its_target_as_root() {
    require_root!();
    let fx = Fixture::new();
    let secret = format!("{}/secret", fx.outside_abs());
    let mut t = Tar::new();
    t.raw("s", EntryType::Symlink, 0o777, b"", Some(&secret), |h| {
        h.set_uid(4242);
        h.set_gid(4242);
        h.set_mtime(5);
    })
    .pax(&[("SCHILY.xattr.trusted.test", b"x")])
    .raw("s2", EntryType::Symlink, 0o777, b"", Some(&secret), |_| {});
    apply(t, &fx.dest, &LAYER).unwrap();
    let s = fs::symlink_metadata(fx.dest.join("s")).unwrap();
    assert_eq!(s.uid(), 4242);
    assert_eq!(s.mtime(), 5);
    assert_eq!(
        lget_xattr(&fx.dest.join("s2"), "trusted.test").as_deref(),
        Some(&b"x"[..])
    );
    assert_eq!(lget_xattr(&fx.outside.join("secret"), "trusted.test"), None);
    fx.assert_outside_untouched();
}

#[test]
fn device_entry_over_planted_symlink_does_not_chmod_its_target_as_root() {
    require_root!();
    let fx = Fixture::new();
    let secret = format!("{}/secret", fx.outside_abs());
    let mut t = Tar::new();
    t.symlink("dev/null", &secret)
        .device("dev/null", EntryType::Char, 1, 3)
        .symlink("fifo", &secret)
        .raw("fifo", EntryType::Fifo, 0o777, b"", None, |h| h.set_uid(99));
    apply(t, &fx.dest, &LAYER).unwrap();
    assert!(fs::symlink_metadata(fx.dest.join("dev/null"))
        .unwrap()
        .file_type()
        .is_char_device());
    assert!(fs::symlink_metadata(fx.dest.join("fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    fx.assert_outside_untouched();
}

#[test]
fn deferred_dir_mtime_does_not_follow_a_symlink_that_replaced_the_dir() {
    let fx = Fixture::new();
    let mut t = Tar::new();
    t.raw("d/", EntryType::Directory, 0o777, b"", None, |h| {
        h.set_mtime(1)
    })
    .symlink("d", &fx.outside_abs());
    apply(t, &fx.dest, &CP).unwrap();
    assert!(fs::symlink_metadata(fx.dest.join("d"))
        .unwrap()
        .file_type()
        .is_symlink());
    fx.assert_outside_untouched();
}

#[test]
fn dot_entry_of_non_directory_type_is_rejected() {
    let fx = Fixture::new();
    let mut t = Tar::new();
    t.symlink("./", &fx.outside_abs());
    let err = apply(t, &fx.dest, &CP).unwrap_err();
    assert!(matches!(err, LayerError::InvalidName { .. }), "{err}");
    fx.assert_outside_untouched();
}
