//! Layer apply / write / diff. Tars are built in memory with raw names, since the tar crate's
//! path helpers refuse the hostile names these tests need. Every attack test puts an "outside"
//! directory next to the destination and checks it is byte-for-byte untouched afterwards.
//! Tests whose name ends in `_as_root` need root (chown, mknod, trusted.* xattrs) and are
//! skipped with a message otherwise.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_image::layer::{
    apply_tar, upper_changes, write_tree_tar, write_upper_tar, ApplyOptions, ApplyStats, Change,
    ChangeKind, LayerError,
};
use tar::{EntryType, Header};
use tempfile::TempDir;

/// Unpacking an image layer into its own layer dir.
const LAYER: ApplyOptions = ApplyOptions {
    allow_devices: true,
    overlay_whiteouts: true,
    preserve_owner: true,
};
/// `cp` into a container: no devices, whiteouts delete, files owned by the caller.
const CP: ApplyOptions = ApplyOptions {
    allow_devices: false,
    overlay_whiteouts: false,
    preserve_owner: false,
};
/// A layer applied onto a full tree.
const FLAT: ApplyOptions = ApplyOptions {
    allow_devices: true,
    overlay_whiteouts: false,
    preserve_owner: true,
};

const MTIME: u64 = 1_600_000_000;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipping: this test needs root");
            return;
        }
    };
}

// ------------------------------------------------------------------------------------------
// Tar building

/// A tar written header by header, names stored verbatim.
struct Tar {
    b: tar::Builder<Vec<u8>>,
}

impl Tar {
    fn new() -> Self {
        Tar {
            b: tar::Builder::new(Vec::new()),
        }
    }

    fn raw(
        &mut self,
        name: &str,
        ty: EntryType,
        mode: u32,
        data: &[u8],
        link: Option<&str>,
        f: impl FnOnce(&mut Header),
    ) -> &mut Self {
        let mut h = Header::new_gnu();
        let n = name.as_bytes();
        assert!(n.len() < 100, "test name too long: {name}");
        h.as_old_mut().name[..n.len()].copy_from_slice(n);
        if let Some(l) = link {
            h.set_link_name_literal(l).unwrap();
        }
        h.set_entry_type(ty);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(MTIME);
        h.set_uid(0);
        h.set_gid(0);
        f(&mut h);
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.raw(name, EntryType::Regular, 0o644, data, None, |_| {})
    }

    fn dir(&mut self, name: &str) -> &mut Self {
        self.raw(name, EntryType::Directory, 0o755, b"", None, |_| {})
    }

    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(name, EntryType::Symlink, 0o777, b"", Some(target), |_| {})
    }

    fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(name, EntryType::Link, 0o644, b"", Some(target), |_| {})
    }

    fn device(&mut self, name: &str, ty: EntryType, major: u32, minor: u32) -> &mut Self {
        self.raw(name, ty, 0o666, b"", None, |h| {
            h.set_device_major(major).unwrap();
            h.set_device_minor(minor).unwrap();
        })
    }

    fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        self.b
            .append_pax_extensions(records.iter().copied())
            .unwrap();
        self
    }

    fn finish(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

fn apply(tar: Tar, dest: &Path, opts: &ApplyOptions) -> Result<ApplyStats, LayerError> {
    apply_tar(&tar.finish()[..], dest, opts)
}

// ------------------------------------------------------------------------------------------
// Fixtures and inspection

/// A temp dir with `dest/` to apply into and `outside/` that must never change.
struct Fixture {
    tmp: TempDir,
    dest: PathBuf,
    outside: PathBuf,
    before: BTreeMap<PathBuf, String>,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("dest");
        let outside = tmp.path().join("outside");
        fs::create_dir(&dest).unwrap();
        fs::create_dir_all(outside.join("sub")).unwrap();
        fs::write(outside.join("secret"), "secret").unwrap();
        fs::write(outside.join("victim"), "victim").unwrap();
        fs::write(outside.join("sub/file"), "file").unwrap();
        fs::set_permissions(outside.join("secret"), fs::Permissions::from_mode(0o600)).unwrap();
        let before = snapshot(&outside);
        Fixture {
            tmp,
            dest,
            outside,
            before,
        }
    }

    /// The outside dir as an absolute path string, for hostile names.
    fn outside_abs(&self) -> String {
        self.outside.to_str().unwrap().to_string()
    }

    /// Where an absolute outside path lands when resolved with `dest` as `/`.
    fn outside_in_dest(&self) -> PathBuf {
        self.dest.join(self.outside.strip_prefix("/").unwrap())
    }

    fn assert_outside_untouched(&self) {
        assert_eq!(
            snapshot(&self.outside),
            self.before,
            "something outside the destination changed"
        );
        // Nothing new next to dest/ and outside/ either.
        let mut names: Vec<_> = fs::read_dir(self.tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["dest", "outside"]);
    }
}

/// Everything about a tree that an escape could change: type, mode, owner, links, size,
/// mtime and content of every entry, the root included.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(root: &Path, p: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let md = fs::symlink_metadata(p).unwrap();
        let content = if md.is_file() {
            String::from_utf8_lossy(&fs::read(p).unwrap()).into_owned()
        } else if md.file_type().is_symlink() {
            fs::read_link(p).unwrap().display().to_string()
        } else {
            String::new()
        };
        out.insert(
            p.strip_prefix(root).unwrap().to_path_buf(),
            format!(
                "{:o} {}:{} nlink={} size={} mtime={}.{} {content}",
                md.mode(),
                md.uid(),
                md.gid(),
                md.nlink(),
                md.size(),
                md.mtime(),
                md.mtime_nsec()
            ),
        );
        if md.is_dir() {
            for e in fs::read_dir(p).unwrap() {
                walk(root, &e.unwrap().path(), out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn lget_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: both strings are NUL-terminated and `buf` is writable for buf.len() bytes.
    let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return None;
    }
    buf.truncate(r as usize);
    Some(buf)
}

fn lset_xattr(path: &Path, name: &str, value: &[u8]) {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    // SAFETY: both strings are NUL-terminated and `value` is a live slice of value.len() bytes.
    let r = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(r, 0, "setxattr {name} on {}", path.display());
}

fn mknod_whiteout(path: &Path) {
    nix::sys::stat::mknod(
        path,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        0,
    )
    .unwrap();
}

fn is_whiteout(path: &Path) -> bool {
    fs::symlink_metadata(path)
        .map(|md| md.file_type().is_char_device() && md.rdev() == 0)
        .unwrap_or(false)
}

/// One parsed tar entry: (path, type, link target, mtime, pax records).
type Parsed = (
    String,
    EntryType,
    Option<String>,
    u64,
    Vec<(String, Vec<u8>)>,
);

fn parse_tar(bytes: &[u8]) -> Vec<Parsed> {
    let mut a = tar::Archive::new(bytes);
    let mut out = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let path = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        let link = e
            .link_name_bytes()
            .map(|l| String::from_utf8(l.into_owned()).unwrap());
        let ty = e.header().entry_type();
        let mtime = e.header().mtime().unwrap();
        let mut pax = Vec::new();
        if let Some(exts) = e.pax_extensions().unwrap() {
            for x in exts {
                let x = x.unwrap();
                pax.push((x.key().unwrap().to_string(), x.value_bytes().to_vec()));
            }
        }
        out.push((path, ty, link, mtime, pax));
    }
    out
}

fn find<'a>(entries: &'a [Parsed], path: &str) -> &'a Parsed {
    entries
        .iter()
        .find(|e| e.0.trim_end_matches('/') == path)
        .unwrap_or_else(|| panic!("no entry {path} in {:?}", names(entries)))
}

fn names(entries: &[Parsed]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e.0.trim_end_matches('/').to_string())
        .collect()
}

// ------------------------------------------------------------------------------------------
// Happy paths

#[test]
fn apply_creates_files_dirs_symlinks_hardlinks_with_modes_owners_mtimes_as_root() {
    require_root!();
    let fx = Fixture::new();
    let mut t = Tar::new();
    t.raw("./", EntryType::Directory, 0o755, b"", None, |_| {})
        .raw("etc/", EntryType::Directory, 0o750, b"", None, |h| {
            h.set_uid(12);
            h.set_gid(34);
            h.set_mtime(1000);
        })
        .raw(
            "etc/passwd",
            EntryType::Regular,
            0o640,
            b"root:x:0:0",
            None,
            |h| {
                h.set_uid(1000);
                h.set_gid(1001);
                h.set_mtime(2000);
            },
        )
        .raw(
            "./bin/busybox",
            EntryType::Regular,
            0o4755,
            b"ELF",
            None,
            |h| {
                h.set_uid(0);
                h.set_gid(0);
            },
        )
        .hardlink("bin/ls", "./bin/busybox")
        .raw(
            "bin/sh",
            EntryType::Symlink,
            0o777,
            b"",
            Some("/bin/busybox"),
            |h| {
                h.set_uid(7);
                h.set_gid(8);
                h.set_mtime(3000);
            },
        )
        .raw("bin/fifo", EntryType::Fifo, 0o620, b"", None, |_| {})
        .file("a//b/./c", b"normalised");
    let stats = apply(t, &fx.dest, &LAYER).unwrap();
    assert_eq!(stats.entries, 8);
    assert_eq!(stats.bytes, 10 + 3 + 10);

    let d = &fx.dest;
    let etc = fs::metadata(d.join("etc")).unwrap();
    assert!(etc.is_dir());
    assert_eq!(etc.mode() & 0o7777, 0o750);
    assert_eq!((etc.uid(), etc.gid()), (12, 34));
    assert_eq!(etc.mtime(), 1000, "dir mtime is set after its children");

    let passwd = fs::metadata(d.join("etc/passwd")).unwrap();
    assert_eq!(fs::read(d.join("etc/passwd")).unwrap(), b"root:x:0:0");
    assert_eq!(passwd.mode() & 0o7777, 0o640);
    assert_eq!((passwd.uid(), passwd.gid()), (1000, 1001));
    assert_eq!(passwd.mtime(), 2000);

    let bb = fs::metadata(d.join("bin/busybox")).unwrap();
    assert_eq!(bb.mode() & 0o7777, 0o4755, "setuid bit kept");
    let ls = fs::metadata(d.join("bin/ls")).unwrap();
    assert_eq!(ls.ino(), bb.ino(), "hardlink shares the inode");
    assert_eq!(bb.nlink(), 2);

    let sh = fs::symlink_metadata(d.join("bin/sh")).unwrap();
    assert!(sh.file_type().is_symlink());
    assert_eq!(
        fs::read_link(d.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    assert_eq!((sh.uid(), sh.gid()), (7, 8), "lchown, not chown");
    assert_eq!(sh.mtime(), 3000);

    let fifo = fs::symlink_metadata(d.join("bin/fifo")).unwrap();
    assert!(fifo.file_type().is_fifo());
    assert_eq!(fifo.mode() & 0o7777, 0o620);

    assert_eq!(fs::read(d.join("a/b/c")).unwrap(), b"normalised");
    assert_eq!(
        fs::metadata(d).unwrap().mtime(),
        MTIME as i64,
        "./ sets the root"
    );
    fx.assert_outside_untouched();
}

#[test]
fn apply_without_preserve_owner_leaves_files_owned_by_caller() {
    let fx = Fixture::new();
    let mut t = Tar::new();
    t.raw("f", EntryType::Regular, 0o644, b"x", None, |h| {
        h.set_uid(4242);
        h.set_gid(4243);
    });
    apply(t, &fx.dest, &CP).unwrap();
    let md = fs::metadata(fx.dest.join("f")).unwrap();
    assert_eq!(md.uid(), nix::unistd::geteuid().as_raw());
    assert_eq!(md.gid(), nix::unistd::getegid().as_raw());
}

#[test]
fn apply_sets_dir_mtime_after_children_are_written() {
    let fx = Fixture::new();
    let mut t = Tar::new();
    t.raw("d/", EntryType::Directory, 0o755, b"", None, |h| {
        h.set_mtime(1234)
    })
    .file("d/a", b"a")
    .dir("d/sub/")
    .file("d/sub/b", b"b");
    apply(t, &fx.dest, &CP).unwrap();
    assert_eq!(fs::metadata(fx.dest.join("d")).unwrap().mtime(), 1234);
    assert_eq!(
        fs::metadata(fx.dest.join("d/sub")).unwrap().mtime(),
        MTIME as i64
    );
}

#[test]
fn apply_merges_existing_dir_and_updates_its_mode() {
    let fx = Fixture::new();
    fs::create_dir(fx.dest.join("d")).unwrap();
    fs::write(fx.dest.join("d/old"), "old").unwrap();
    let mut t = Tar::new();
    t.raw("d/", EntryType::Directory, 0o711, b"", None, |_| {})
        .file("d/new", b"new");
    apply(t, &fx.dest, &CP).unwrap();
    assert_eq!(fs::read(fx.dest.join("d/old")).unwrap(), b"old");
    assert_eq!(fs::read(fx.dest.join("d/new")).unwrap(), b"new");
    assert_eq!(
        fs::metadata(fx.dest.join("d")).unwrap().mode() & 0o7777,
        0o711
    );
}

#[test]
fn apply_replaces_existing_file_with_dir_and_dir_with_file() {
    let fx = Fixture::new();
    fs::write(fx.dest.join("x"), "file").unwrap();
    fs::create_dir_all(fx.dest.join("y/z")).unwrap();
    fs::write(fx.dest.join("y/z/deep"), "deep").unwrap();
    let mut t = Tar::new();
    t.dir("x/").file("y", b"now a file");
    apply(t, &fx.dest, &CP).unwrap();
    assert!(fs::metadata(fx.dest.join("x")).unwrap().is_dir());
    assert_eq!(fs::read(fx.dest.join("y")).unwrap(), b"now a file");
}

#[test]
fn apply_cleans_dotdot_that_stays_inside() {
    let fx = Fixture::new();
    let mut t = Tar::new();
    t.file("a/../b", b"b").file("./c/./d/../e", b"e");
    apply(t, &fx.dest, &CP).unwrap();
    assert_eq!(fs::read(fx.dest.join("b")).unwrap(), b"b");
    assert_eq!(fs::read(fx.dest.join("c/e")).unwrap(), b"e");
    fx.assert_outside_untouched();
}

#[test]
fn hardlink_keeps_old_content_when_its_target_is_replaced_later() {
    let fx = Fixture::new();
    let mut t = Tar::new();
    t.file("a", b"old").hardlink("b", "a").file("a", b"new");
    apply(t, &fx.dest, &CP).unwrap();
    assert_eq!(fs::read(fx.dest.join("a")).unwrap(), b"new");
    assert_eq!(fs::read(fx.dest.join("b")).unwrap(), b"old");
}

#[test]
fn hardlink_to_a_replaced_target_links_the_newest_file() {
    let fx = Fixture::new();
    let mut t = Tar::new();
    t.file("a", b"old").file("a", b"new").hardlink("b", "a");
    apply(t, &fx.dest, &CP).unwrap();
    assert_eq!(fs::read(fx.dest.join("b")).unwrap(), b"new");
    assert_eq!(
        fs::metadata(fx.dest.join("a")).unwrap().ino(),
        fs::metadata(fx.dest.join("b")).unwrap().ino()
    );
}

#[test]
fn pax_xattrs_are_applied_and_overlay_xattrs_are_dropped_as_root() {
    require_root!();
    let fx = Fixture::new();
    let mut t = Tar::new();
    t.pax(&[
        ("SCHILY.xattr.user.test", b"hello"),
        ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
        ("SCHILY.xattr.trusted.overlay.redirect", b"/etc"),
    ])
    .dir("d/")
    .pax(&[
        ("SCHILY.xattr.user.file", b"v"),
        ("uid", b"5000"),
        ("mtime", b"1234.5"),
    ])
    .file("d/f", b"x");
    apply(t, &fx.dest, &FLAT).unwrap();
    let d = fx.dest.join("d");
    assert_eq!(lget_xattr(&d, "user.test").as_deref(), Some(&b"hello"[..]));
    assert_eq!(lget_xattr(&d, "trusted.overlay.opaque"), None);
    assert_eq!(lget_xattr(&d, "trusted.overlay.redirect"), None);
    let f = fx.dest.join("d/f");
    assert_eq!(lget_xattr(&f, "user.file").as_deref(), Some(&b"v"[..]));
    let md = fs::metadata(&f).unwrap();
    assert_eq!(md.uid(), 5000, "pax uid wins over the header");
    assert_eq!((md.mtime(), md.mtime_nsec()), (1234, 500_000_000));
}

#[test]
fn devices_are_created_when_allowed_as_root() {
    require_root!();
    let fx = Fixture::new();
    let mut t = Tar::new();
    t.device("dev/null", EntryType::Char, 1, 3)
        .device("dev/loop9", EntryType::Block, 7, 9);
    apply(t, &fx.dest, &LAYER).unwrap();
    let null = fs::symlink_metadata(fx.dest.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
    assert_eq!(null.mode() & 0o7777, 0o666);
    let lp = fs::symlink_metadata(fx.dest.join("dev/loop9")).unwrap();
    assert!(lp.file_type().is_block_device());
}

#[test]
fn global_pax_header_is_ignored() {
    let fx = Fixture::new();
    let mut t = Tar::new();
    t.raw(
        "pax_global_header",
        EntryType::XGlobalHeader,
        0o644,
        b"52 comment=0123456789012345678901234567890123456789\n",
        None,
        |_| {},
    )
    .file("f", b"x");
    let stats = apply(t, &fx.dest, &CP).unwrap();
    assert_eq!(stats.entries, 1);
    assert!(!fx.dest.join("pax_global_header").exists());
}

#[test]
fn unsupported_entry_type_is_rejected() {
    let fx = Fixture::new();
    let mut t = Tar::new();
    t.raw("vol", EntryType::new(b'V'), 0o644, b"", None, |_| {});
    let err = apply(t, &fx.dest, &CP).unwrap_err();
    assert!(
        matches!(err, LayerError::UnsupportedType { ref path, .. } if path == "vol"),
        "{err}"
    );
    assert!(err.is_invalid_input());
}

#[test]
fn long_names_and_long_symlink_targets_round_trip() {
    let fx = Fixture::new();
    let long_dir = "d".repeat(60);
    let src = fx.tmp.path().join("src");
    let deep = src.join(&long_dir).join(&long_dir);
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("f".repeat(90)), "long").unwrap();
    let target = format!("/{}/{}", "t".repeat(80), "u".repeat(80));
    std::os::unix::fs::symlink(&target, src.join("s")).unwrap();
    let mut out = Vec::new();
    write_tree_tar(&src, &mut out).unwrap();
    apply_tar(&out[..], &fx.dest, &CP).unwrap();
    let back = fx.dest.join(&long_dir).join(&long_dir).join("f".repeat(90));
    assert_eq!(fs::read(back).unwrap(), b"long");
    assert_eq!(
        fs::read_link(fx.dest.join("s")).unwrap(),
        Path::new(&target)
    );
}

// ------------------------------------------------------------------------------------------
// Whiteouts

#[test]
fn whiteout_in_overlay_mode_becomes_char_device_as_root() {
    require_root!();
    let fx = Fixture::new();
    let mut t = Tar::new();
    t.dir("etc/").file("etc/.wh.gone", b"").file(".wh.top", b"");
    apply(t, &fx.dest, &LAYER).unwrap();
    assert!(is_whiteout(&fx.dest.join("etc/gone")));
    assert!(is_whiteout(&fx.dest.join("top")));
    assert!(!fx.dest.join("etc/.wh.gone").exists());
}

#[test]
fn whiteout_in_tree_mode_removes_files_and_whole_dirs() {
    let fx = Fixture::new();
    fs::write(fx.dest.join("gone"), "x").unwrap();
    fs::create_dir_all(fx.dest.join("gonedir/a/b")).unwrap();
    fs::write(fx.dest.join("gonedir/a/b/f"), "x").unwrap();
    std::os::unix::fs::symlink(&fx.outside, fx.dest.join("gonedir/a/link")).unwrap();
    fs::write(fx.dest.join("kept"), "x").unwrap();
    let mut t = Tar::new();
    t.file(".wh.gone", b"")
        .file(".wh.gonedir", b"")
        .file(".wh.missing", b"")
        .file("nodir/.wh.missing", b"");
    apply(t, &fx.dest, &CP).unwrap();
    assert!(!fx.dest.join("gone").exists());
    assert!(!fx.dest.join("gonedir").exists());
    assert!(fx.dest.join("kept").exists());
    assert!(!fx.dest.join(".wh.gone").exists());
    fx.assert_outside_untouched();
}

#[test]
fn opaque_dir_in_overlay_mode_sets_xattr_as_root() {
    require_root!();
    let fx = Fixture::new();
    let mut t = Tar::new();
    t.dir("d/")
        .file("d/.wh..wh..opq", b"")
        .file("d/new", b"new");
    apply(t, &fx.dest, &LAYER).unwrap();
    let d = fx.dest.join("d");
    assert_eq!(
        lget_xattr(&d, "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(!d.join(".wh..wh..opq").exists());
    assert_eq!(fs::read(d.join("new")).unwrap(), b"new");
}

#[test]
fn opaque_dir_in_tree_mode_removes_lower_entries_before_new_ones() {
    let fx = Fixture::new();
    let d = fx.dest.join("d");
    fs::create_dir_all(d.join("sub")).unwrap();
    fs::write(d.join("old"), "old").unwrap();
    fs::write(d.join("sub/old2"), "old").unwrap();
    let mut t = Tar::new();
    t.dir("d/")
        .file("d/.wh..wh..opq", b"")
        .file("d/new", b"new")
        .file("d/sub/new2", b"new");
    apply(t, &fx.dest, &CP).unwrap();
    assert!(!d.join("old").exists());
    assert!(!d.join("sub/old2").exists());
    assert!(d.join("new").exists());
    assert!(d.join("sub/new2").exists());
}

#[test]
fn opaque_dir_in_tree_mode_keeps_entries_of_the_same_layer_written_before_it() {
    let fx = Fixture::new();
    let d = fx.dest.join("d");
    fs::create_dir_all(d.join("sub")).unwrap();
    fs::write(d.join("old"), "old").unwrap();
    fs::write(d.join("sub/old2"), "old").unwrap();
    let mut t = Tar::new();
    t.file("d/new", b"new")
        .file("d/sub/new2", b"new")
        .file("d/.wh..wh..opq", b"");
    apply(t, &fx.dest, &CP).unwrap();
    assert!(!d.join("old").exists());
    assert!(
        !d.join("sub/old2").exists(),
        "sub is this layer's, its lower content is not"
    );
    assert_eq!(fs::read(d.join("new")).unwrap(), b"new");
    assert_eq!(fs::read(d.join("sub/new2")).unwrap(), b"new");
}

#[test]
fn aufs_metadata_entries_are_skipped() {
    let fx = Fixture::new();
    let mut t = Tar::new();
    t.dir(".wh..wh.plnk/")
        .file(".wh..wh.plnk/123.456", b"x")
        .file(".wh..wh.aufs", b"")
        .file("d/.wh..wh.orph", b"");
    apply(t, &fx.dest, &LAYER).unwrap();
    assert!(!fx.dest.join(".wh..wh.plnk").exists());
    assert!(!fx.dest.join(".wh..wh.aufs").exists());
    assert!(!fx.dest.join("d/.wh..wh.orph").exists());
}

#[test]
fn whiteout_of_dot_or_dotdot_is_rejected() {
    let fx = Fixture::new();
    for name in [".wh..", "sub/.wh...", ".wh."] {
        let mut t = Tar::new();
        t.file(name, b"");
        let err = apply(t, &fx.dest, &CP).unwrap_err();
        assert!(
            matches!(err, LayerError::InvalidName { .. }),
            "{name}: {err}"
        );
    }
    fx.assert_outside_untouched();
}

// ------------------------------------------------------------------------------------------
// Writing

#[test]
fn write_upper_tar_turns_overlay_whiteouts_back_into_wh_entries_as_root() {
    require_root!();
    let fx = Fixture::new();
    let upper = &fx.dest;
    let mut t = Tar::new();
    t.dir("etc/")
        .pax(&[("SCHILY.xattr.user.k", b"v")])
        .file("etc/a", b"aaa")
        .hardlink("etc/b", "etc/a")
        .symlink("etc/s", "/etc/a")
        .file("etc/.wh.gone", b"")
        .dir("op/")
        .file("op/.wh..wh..opq", b"")
        .file("op/-first", b"x")
        .file("op/x", b"x")
        .raw("fifo", EntryType::Fifo, 0o600, b"", None, |_| {})
        .file(".wh.top", b"");
    apply(t, upper, &LAYER).unwrap();

    let mut out = Vec::new();
    write_upper_tar(upper, &mut out, Some(1000)).unwrap();
    let entries = parse_tar(&out);
    assert_eq!(
        names(&entries),
        [
            ".wh.top",
            "etc",
            "etc/.wh.gone",
            "etc/a",
            "etc/b",
            "etc/s",
            "fifo",
            "op",
            "op/.wh..wh..opq",
            "op/-first",
            "op/x"
        ]
    );
    assert_eq!(find(&entries, ".wh.top").1, EntryType::Regular);
    assert_eq!(find(&entries, "etc/.wh.gone").1, EntryType::Regular);
    let b = find(&entries, "etc/b");
    assert_eq!((b.1, b.2.as_deref()), (EntryType::Link, Some("etc/a")));
    let a = find(&entries, "etc/a");
    assert!(a
        .4
        .iter()
        .any(|(k, v)| k == "SCHILY.xattr.user.k" && v == b"v"));
    assert_eq!(find(&entries, "etc/s").2.as_deref(), Some("/etc/a"));
    for e in &entries {
        assert!(e.3 <= 1000, "{} mtime {} not clamped", e.0, e.3);
        assert!(
            !e.4.iter()
                .any(|(k, _)| k.starts_with("SCHILY.xattr.trusted.overlay.")),
            "{} leaks an overlay xattr",
            e.0
        );
    }

    // And back: the same overlay layer dir.
    let again = fx.tmp.path().join("again");
    fs::create_dir(&again).unwrap();
    apply_tar(&out[..], &again, &LAYER).unwrap();
    assert!(is_whiteout(&again.join("etc/gone")));
    assert!(is_whiteout(&again.join("top")));
    assert_eq!(
        lget_xattr(&again.join("op"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(
        fs::metadata(again.join("etc/a")).unwrap().ino(),
        fs::metadata(again.join("etc/b")).unwrap().ino()
    );
    assert_eq!(
        lget_xattr(&again.join("etc/a"), "user.k").as_deref(),
        Some(&b"v"[..])
    );
}

#[test]
fn write_upper_tar_is_reproducible() {
    let fx = Fixture::new();
    let mut t = Tar::new();
    t.dir("z/")
        .file("z/b", b"b")
        .file("z/a", b"a")
        .file("m", b"m")
        .symlink("l", "m");
    apply(t, &fx.dest, &CP).unwrap();
    let mut one = Vec::new();
    let mut two = Vec::new();
    write_upper_tar(&fx.dest, &mut one, Some(0)).unwrap();
    write_upper_tar(&fx.dest, &mut two, Some(0)).unwrap();
    assert_eq!(one, two);
    let entries = parse_tar(&one);
    assert_eq!(names(&entries), ["l", "m", "z", "z/a", "z/b"]);
    assert!(entries.iter().all(|e| e.3 == 0));
}

#[test]
fn write_upper_tar_refuses_redirect_dirs_as_root() {
    require_root!();
    let fx = Fixture::new();
    fs::create_dir(fx.dest.join("moved")).unwrap();
    lset_xattr(&fx.dest.join("moved"), "trusted.overlay.redirect", b"/orig");
    let err = write_upper_tar(&fx.dest, Vec::new(), None).unwrap_err();
    assert!(
        matches!(err, LayerError::UnsupportedOverlay { .. }),
        "{err}"
    );
}

#[test]
fn write_tree_tar_keeps_devices_and_does_not_follow_symlinks_as_root() {
    require_root!();
    let fx = Fixture::new();
    let root = &fx.dest;
    std::os::unix::fs::symlink(&fx.outside, root.join("out")).unwrap();
    mknod_whiteout(&root.join("wh"));
    fs::write(root.join("f"), "f").unwrap();
    fs::hard_link(root.join("f"), root.join("g")).unwrap();
    let mut out = Vec::new();
    write_tree_tar(root, &mut out).unwrap();
    let entries = parse_tar(&out);
    assert_eq!(names(&entries), ["f", "g", "out", "wh"]);
    assert_eq!(find(&entries, "out").1, EntryType::Symlink);
    assert_eq!(
        find(&entries, "wh").1,
        EntryType::Char,
        "no whiteout translation"
    );
    assert_eq!(find(&entries, "g").1, EntryType::Link);
    fx.assert_outside_untouched();
}

// ------------------------------------------------------------------------------------------
// Diff

#[test]
fn upper_changes_reports_added_changed_deleted_like_docker_as_root() {
    require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let top = tmp.path().join("l1");
    let bottom = tmp.path().join("l2");
    let upper = tmp.path().join("upper");
    for (p, c) in [
        ("etc/passwd", "root"),
        ("etc/group", "root"),
        ("var/lib/x/a", "a"),
        ("var/lib/x/b", "b"),
        ("usr/bin/old", "old"),
        ("usr/bin/kept", "kept"),
    ] {
        let p = bottom.join(p);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, c).unwrap();
    }
    // The top lower layer deletes usr/bin/old and adds var/lib/x/fromtop.
    fs::create_dir_all(top.join("usr/bin")).unwrap();
    mknod_whiteout(&top.join("usr/bin/old"));
    fs::create_dir_all(top.join("var/lib/x")).unwrap();
    fs::write(top.join("var/lib/x/fromtop"), "t").unwrap();

    fs::create_dir_all(upper.join("etc")).unwrap();
    fs::write(upper.join("etc/passwd"), "root\nnew").unwrap();
    fs::write(upper.join("etc/new"), "new").unwrap();
    mknod_whiteout(&upper.join("etc/group"));
    fs::create_dir_all(upper.join("var/lib/x")).unwrap();
    lset_xattr(&upper.join("var/lib/x"), "trusted.overlay.opaque", b"y");
    fs::write(upper.join("var/lib/x/b"), "b2").unwrap();
    fs::write(upper.join("var/lib/x/c"), "c").unwrap();
    fs::create_dir_all(upper.join("usr/bin")).unwrap();
    fs::write(upper.join("usr/bin/old"), "back").unwrap();

    let changes = upper_changes(&upper, &[top, bottom]).unwrap();
    let got: Vec<String> = changes.iter().map(Change::to_string).collect();
    assert_eq!(
        got,
        [
            "C /etc",
            "D /etc/group",
            "A /etc/new",
            "C /etc/passwd",
            "C /usr",
            "C /usr/bin",
            "A /usr/bin/old",
            "C /var",
            "C /var/lib",
            "C /var/lib/x",
            "D /var/lib/x/a",
            "C /var/lib/x/b",
            "A /var/lib/x/c",
            "D /var/lib/x/fromtop",
        ]
    );
}

#[test]
fn upper_changes_without_lowers_reports_everything_added() {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir_all(tmp.path().join("a/b")).unwrap();
    fs::write(tmp.path().join("a/b/c"), "c").unwrap();
    let changes = upper_changes(tmp.path(), &[]).unwrap();
    assert_eq!(
        changes,
        [
            Change {
                kind: ChangeKind::Added,
                path: "/a".into()
            },
            Change {
                kind: ChangeKind::Added,
                path: "/a/b".into()
            },
            Change {
                kind: ChangeKind::Added,
                path: "/a/b/c".into()
            },
        ]
    );
}

#[test]
fn change_kind_displays_as_docker_letters() {
    assert_eq!(ChangeKind::Added.to_string(), "A");
    assert_eq!(ChangeKind::Changed.to_string(), "C");
    assert_eq!(ChangeKind::Deleted.to_string(), "D");
}

#[test]
fn deep_trees_are_walked_up_to_the_limit_and_refused_beyond_it_without_crashing() {
    // Regression: the recursive walkers overflowed a test thread's stack at 1000 levels. A
    // container can nest directories arbitrarily deep; beyond the limit (or the fd limit) the
    // walkers must fail cleanly. The first part stays well under a 1024 fd limit.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir_all(root.join("a/".repeat(500))).unwrap();
    let mut out = Vec::new();
    write_tree_tar(&root, &mut out).unwrap();
    assert_eq!(parse_tar(&out).len(), 500);
    assert_eq!(upper_changes(&root, &[]).unwrap().len(), 500);

    fs::create_dir_all(root.join("a/".repeat(1100))).unwrap();
    let err = write_tree_tar(&root, Vec::new()).unwrap_err();
    assert!(matches!(err, LayerError::Walk { .. }), "{err}");
    assert!(upper_changes(&root, &[]).is_err());
    let mut t = Tar::new();
    t.file(".wh.a", b"");
    assert!(apply(t, &root, &CP).is_err());
}

// Declared last: the attacks use the macros above.
mod attacks;
