//! `load_archive` / `save_archive`: every archive layout, built in memory, and the ways a
//! hostile or broken archive must fail.

use std::fs;
use std::io::{Read, Write};
use std::path::PathBuf;

use berth_image::archive::{load_archive, save_archive, ArchiveError, SaveImage};
use berth_image::config::{
    host_platform, Descriptor, Index, Manifest, Platform, MEDIA_OCI_CONFIG, MEDIA_OCI_INDEX,
    MEDIA_OCI_LAYER, MEDIA_OCI_MANIFEST,
};
use berth_image::{ContentStore, Digest};
use serde_json::{json, Value};

struct Env {
    dir: tempfile::TempDir,
    store: ContentStore,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(&dir.path().join("blobs")).unwrap();
        fs::create_dir(dir.path().join("tmp")).unwrap();
        Env { dir, store }
    }

    fn tmp(&self) -> PathBuf {
        self.dir.path().join("tmp")
    }

    fn load(&self, archive: &[u8]) -> Result<Vec<berth_image::archive::LoadedImage>, ArchiveError> {
        let res = load_archive(archive, &self.store, &self.tmp());
        // The extraction dir is gone whatever happened.
        assert_eq!(
            fs::read_dir(self.tmp()).unwrap().count(),
            0,
            "temp dir left behind"
        );
        res
    }

    fn blobs(&self) -> Vec<Digest> {
        let mut v = self.store.list().unwrap();
        v.sort();
        v
    }
}

fn layer_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b).unwrap();
    gz.finish().unwrap()
}

fn zstd(b: &[u8]) -> Vec<u8> {
    zstd::encode_all(b, 3).unwrap()
}

fn config(diff_ids: &[&Digest], cmd: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": host_platform().architecture,
        "os": "linux",
        "config": {"Cmd": [cmd]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap()
}

fn blob_path(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

fn desc(media_type: &str, bytes: &[u8]) -> Descriptor {
    Descriptor {
        media_type: media_type.into(),
        digest: Digest::of(bytes),
        size: bytes.len() as u64,
        annotations: None,
        platform: None,
    }
}

fn annotated(d: &Descriptor, pairs: &[(&str, &str)]) -> Descriptor {
    Descriptor {
        annotations: Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..d.clone()
    }
}

enum E {
    File(String, Vec<u8>),
    Dir(String),
    Symlink(String, String),
    CharDevice(String),
    /// A regular file whose name is written into the header as is, unchecked.
    RawName(String, Vec<u8>),
}

fn file(name: impl Into<String>, data: impl Into<Vec<u8>>) -> E {
    E::File(name.into(), data.into())
}

fn archive(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        match e {
            E::File(name, data) => {
                h.set_size(data.len() as u64);
                b.append_data(&mut h, name, &data[..]).unwrap();
            }
            E::Dir(name) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                b.append_data(&mut h, name, std::io::empty()).unwrap();
            }
            E::Symlink(name, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, name, target).unwrap();
            }
            E::CharDevice(name) => {
                h.set_entry_type(tar::EntryType::Char);
                h.set_size(0);
                h.set_device_major(1).unwrap();
                h.set_device_minor(3).unwrap();
                b.append_data(&mut h, name, std::io::empty()).unwrap();
            }
            E::RawName(name, data) => {
                let slot = &mut h.as_old_mut().name;
                slot.fill(0);
                slot[..name.len()].copy_from_slice(name.as_bytes());
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
                h.set_cksum();
                b.append(&h, &data[..]).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

/// (name, type, contents) of each entry, in order.
fn entries(archive: &[u8]) -> Vec<(String, tar::EntryType, Vec<u8>)> {
    let mut a = tar::Archive::new(archive);
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let kind = e.header().entry_type();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (name, kind, data)
        })
        .collect()
}

fn entry<'a>(all: &'a [(String, tar::EntryType, Vec<u8>)], name: &str) -> &'a [u8] {
    &all.iter()
        .find(|(n, _, _)| n == name)
        .unwrap_or_else(|| panic!("no {name}"))
        .2
}

/// Three layers: base (shared), app, extra; their tars and diff ids.
struct Layers {
    base: Vec<u8>,
    app: Vec<u8>,
    extra: Vec<u8>,
}

impl Layers {
    fn new() -> Layers {
        Layers {
            base: layer_tar(&[("bin/sh", b"#!shell"), ("etc/os-release", b"ID=test")]),
            app: layer_tar(&[("app/run", b"run")]),
            extra: layer_tar(&[("etc/extra", &b"x".repeat(5000))]),
        }
    }
}

#[test]
fn save_then_load_round_trips_two_images_sharing_a_layer() {
    let src = Env::new();
    let l = Layers::new();
    let (base, app, extra) = (
        Digest::of(&l.base),
        Digest::of(&l.app),
        Digest::of(&l.extra),
    );
    // Stored the way pulls leave them: compressed, plain and zstd.
    let base_gz = src.store.write_bytes(&gzip(&l.base), None).unwrap();
    let app_blob = src.store.write_bytes(&l.app, None).unwrap();
    let extra_zst = src.store.write_bytes(&zstd(&l.extra), None).unwrap();
    let cfg1 = src
        .store
        .write_bytes(&config(&[&base, &app], "one"), None)
        .unwrap();
    let cfg2 = src
        .store
        .write_bytes(&config(&[&base, &extra], "two"), None)
        .unwrap();
    let images = vec![
        SaveImage {
            config_digest: cfg1.clone(),
            layers: vec![
                (base_gz.clone(), base.clone()),
                (app_blob.clone(), app.clone()),
            ],
            repo_tags: vec![
                "docker.io/library/busybox:latest".into(),
                "docker.io/library/busybox:1.36".into(),
            ],
        },
        SaveImage {
            config_digest: cfg2.clone(),
            layers: vec![
                (base_gz.clone(), base.clone()),
                (extra_zst.clone(), extra.clone()),
            ],
            repo_tags: vec!["quay.io/x/y:v1".into()],
        },
    ];
    let mut out = Vec::new();
    save_archive(&images, &src.store, &mut out).unwrap();
    let mut again = Vec::new();
    save_archive(&images, &src.store, &mut again).unwrap();
    assert_eq!(out, again, "save is deterministic");
    assert_eq!(
        fs::read_dir(src.dir.path().join("blobs/tmp"))
            .unwrap()
            .count(),
        0
    );

    let all = entries(&out);
    let names: Vec<&str> = all.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names[0], "blobs/");
    assert_eq!(names[1], "blobs/sha256/");
    assert_eq!(all[0].1, tar::EntryType::Directory);
    assert_eq!(all[1].1, tar::EntryType::Directory);
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "entries in lexical order");
    assert_eq!(
        names.iter().filter(|n| **n == blob_path(&base)).count(),
        1,
        "shared layer written once"
    );
    // 3 layers + 2 configs + 2 manifests, then the three documents.
    assert_eq!(names.len(), 2 + 7 + 3);
    assert_eq!(
        &names[names.len() - 3..],
        ["index.json", "manifest.json", "oci-layout"]
    );
    assert_eq!(
        entry(&all, &blob_path(&base)),
        &l.base[..],
        "layers are saved uncompressed"
    );
    assert_eq!(entry(&all, &blob_path(&extra)), &l.extra[..]);

    let docker: Value = serde_json::from_slice(entry(&all, "manifest.json")).unwrap();
    assert_eq!(
        docker,
        json!([
            {"Config": blob_path(&cfg1), "RepoTags": ["busybox:latest", "busybox:1.36"],
             "Layers": [blob_path(&base), blob_path(&app)]},
            {"Config": blob_path(&cfg2), "RepoTags": ["quay.io/x/y:v1"],
             "Layers": [blob_path(&base), blob_path(&extra)]},
        ])
    );
    let index: Index = serde_json::from_slice(entry(&all, "index.json")).unwrap();
    assert_eq!(index.manifests.len(), 3);
    let names_in_index: Vec<(String, String)> = index
        .manifests
        .iter()
        .map(|d| {
            let a = d.annotations.as_ref().unwrap();
            (
                a["io.containerd.image.name"].clone(),
                a["org.opencontainers.image.ref.name"].clone(),
            )
        })
        .collect();
    assert_eq!(
        names_in_index,
        [
            (
                "docker.io/library/busybox:latest".to_string(),
                "latest".to_string()
            ),
            (
                "docker.io/library/busybox:1.36".to_string(),
                "1.36".to_string()
            ),
            ("quay.io/x/y:v1".to_string(), "v1".to_string()),
        ]
    );
    let m1: Manifest =
        serde_json::from_slice(entry(&all, &blob_path(&index.manifests[0].digest))).unwrap();
    assert_eq!(m1.config.digest, cfg1);
    assert_eq!(
        m1.layers
            .iter()
            .map(|d| d.digest.clone())
            .collect::<Vec<_>>(),
        [base.clone(), app.clone()]
    );
    assert_eq!(m1.layers[0].size, l.base.len() as u64);
    assert_eq!(
        entry(&all, "oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#
    );

    let dst = Env::new();
    let loaded = dst.load(&out).unwrap();
    assert_eq!(loaded.len(), 2);
    assert_eq!(loaded[0].config_digest, cfg1);
    assert_eq!(loaded[1].config_digest, cfg2);
    assert_eq!(
        loaded[0].layers,
        [(base.clone(), base.clone()), (app.clone(), app.clone())]
    );
    assert_eq!(
        loaded[1].layers,
        [(base.clone(), base.clone()), (extra.clone(), extra.clone())]
    );
    assert_eq!(
        loaded[0].repo_tags,
        [
            "docker.io/library/busybox:latest",
            "docker.io/library/busybox:1.36"
        ]
    );
    assert_eq!(loaded[1].repo_tags, ["quay.io/x/y:v1"]);
    assert_eq!(
        loaded[0].manifest_digest, index.manifests[0].digest,
        "the archive's manifest is kept"
    );
    assert_eq!(loaded[1].manifest_digest, index.manifests[2].digest);
    assert_eq!(loaded[0].config.config.cmd, Some(vec!["one".to_string()]));
    // 3 layers, 2 configs, 2 manifests.
    assert_eq!(dst.blobs().len(), 7);
    for img in &loaded {
        dst.store.read(&img.manifest_digest).unwrap();
    }

    // Loading into a store that has everything already is fine and changes nothing.
    let before = src.blobs();
    let reloaded = src.load(&out).unwrap();
    assert_eq!(reloaded.len(), 2);
    // New: the uncompressed base and extra layers, and the two manifests of the archive.
    assert_eq!(src.blobs().len(), before.len() + 4);
}

#[test]
fn save_merges_repeated_images_and_leaves_untagged_images_unnamed() {
    let src = Env::new();
    let l = Layers::new();
    let base = src.store.write_bytes(&l.base, None).unwrap();
    let cfg = src
        .store
        .write_bytes(&config(&[&base], "sh"), None)
        .unwrap();
    let img = |tags: &[&str]| SaveImage {
        config_digest: cfg.clone(),
        layers: vec![(base.clone(), base.clone())],
        repo_tags: tags.iter().map(|t| t.to_string()).collect(),
    };
    let mut out = Vec::new();
    save_archive(
        &[
            img(&["docker.io/library/a:1"]),
            img(&["docker.io/library/a:1", "localhost/b:2"]),
        ],
        &src.store,
        &mut out,
    )
    .unwrap();
    let all = entries(&out);
    let docker: Value = serde_json::from_slice(entry(&all, "manifest.json")).unwrap();
    assert_eq!(docker[0]["RepoTags"], json!(["a:1", "localhost/b:2"]));
    assert_eq!(docker.as_array().unwrap().len(), 1);

    let mut untagged = Vec::new();
    save_archive(&[img(&[])], &src.store, &mut untagged).unwrap();
    let all = entries(&untagged);
    let docker: Value = serde_json::from_slice(entry(&all, "manifest.json")).unwrap();
    assert_eq!(docker[0]["RepoTags"], Value::Null);
    let index: Index = serde_json::from_slice(entry(&all, "index.json")).unwrap();
    assert_eq!(index.manifests.len(), 1);
    assert!(index.manifests[0].annotations.is_none());
    let loaded = Env::new().load(&untagged).unwrap();
    assert!(loaded[0].repo_tags.is_empty());
}

/// A `docker save` archive from before Docker 25: `<id>/layer.tar`, `<id>/json`,
/// `<config hex>.json`, `manifest.json`, with a layer shared by two images as a symlink.
fn legacy_archive(l: &Layers, shared_link: &str, extra: Vec<E>) -> (Vec<u8>, Digest, Digest) {
    let (base, app) = (Digest::of(&l.base), Digest::of(&l.app));
    let cfg1 = config(&[&base, &app], "one");
    let cfg2 = config(&[&base], "two");
    let (id1, id2, id3) = ("1".repeat(64), "2".repeat(64), "3".repeat(64));
    let manifest = json!([
        {"Config": format!("{}.json", Digest::of(&cfg1).hex()), "RepoTags": ["busybox:latest"],
         "Layers": [format!("{id1}/layer.tar"), format!("{id2}/layer.tar")]},
        {"Config": format!("{}.json", Digest::of(&cfg2).hex()), "RepoTags": ["example.com/team/app:v2"],
         "Layers": [format!("{id3}/layer.tar")]},
    ]);
    let mut entries = vec![
        E::Dir(format!("{id1}/")),
        file(format!("{id1}/VERSION"), "1.0"),
        file(format!("{id1}/json"), r#"{"id":"1"}"#),
        file(format!("{id1}/layer.tar"), l.base.clone()),
        E::CharDevice(format!("{id1}/null")),
        E::Dir(format!("{id2}/")),
        file(format!("{id2}/layer.tar"), l.app.clone()),
        E::Dir(format!("{id3}/")),
        E::Symlink(format!("{id3}/layer.tar"), shared_link.to_string()),
        file(format!("{}.json", Digest::of(&cfg1).hex()), cfg1.clone()),
        file(format!("{}.json", Digest::of(&cfg2).hex()), cfg2.clone()),
        file("repositories", r#"{"busybox":{"latest":"2222"}}"#),
    ];
    entries.extend(extra);
    entries.push(file(
        "manifest.json",
        serde_json::to_vec(&manifest).unwrap(),
    ));
    (archive(&entries), Digest::of(&cfg1), Digest::of(&cfg2))
}

#[test]
fn loads_legacy_docker_archive_with_symlinked_duplicate_layer() {
    let env = Env::new();
    let l = Layers::new();
    let (base, app) = (Digest::of(&l.base), Digest::of(&l.app));
    let (a, cfg1, cfg2) = legacy_archive(&l, &format!("../{}/layer.tar", "1".repeat(64)), vec![]);
    let loaded = env.load(&a).unwrap();
    assert_eq!(loaded.len(), 2);
    assert_eq!(loaded[0].config_digest, cfg1);
    assert_eq!(
        loaded[0].layers,
        [(base.clone(), base.clone()), (app.clone(), app.clone())]
    );
    assert_eq!(loaded[0].repo_tags, ["docker.io/library/busybox:latest"]);
    assert_eq!(loaded[1].config_digest, cfg2);
    assert_eq!(loaded[1].layers, [(base.clone(), base.clone())]);
    assert_eq!(loaded[1].repo_tags, ["example.com/team/app:v2"]);
    // berth wrote OCI manifests for them.
    let m: Manifest =
        serde_json::from_slice(&env.store.read(&loaded[0].manifest_digest).unwrap()).unwrap();
    assert_eq!(m.media_type.as_deref(), Some(MEDIA_OCI_MANIFEST));
    assert_eq!(m.config.media_type, MEDIA_OCI_CONFIG);
    assert_eq!(m.config.digest, cfg1);
    assert_eq!(m.layers[0].media_type, MEDIA_OCI_LAYER);
    assert_eq!(m.layers[1].digest, app);
    assert_eq!(m.layers[1].size, l.app.len() as u64);
    // 2 layers, 2 configs, 2 manifests.
    assert_eq!(env.blobs().len(), 6);
    // The same archive again yields the same manifests.
    assert_eq!(env.load(&a).unwrap(), loaded);
}

#[test]
fn loads_oci_archive_with_gzip_and_zstd_layers() {
    let env = Env::new();
    let l = Layers::new();
    let (base, extra) = (Digest::of(&l.base), Digest::of(&l.extra));
    let (base_gz, extra_zst) = (gzip(&l.base), zstd(&l.extra));
    let cfg = config(&[&base, &extra], "sh");
    let manifest = serde_json::to_vec(&Manifest {
        schema_version: 2,
        media_type: Some(MEDIA_OCI_MANIFEST.into()),
        config: desc(MEDIA_OCI_CONFIG, &cfg),
        layers: vec![
            desc(&format!("{MEDIA_OCI_LAYER}+gzip"), &base_gz),
            desc(&format!("{MEDIA_OCI_LAYER}+zstd"), &extra_zst),
        ],
        annotations: None,
    })
    .unwrap();
    let host = host_platform();
    let other = Descriptor {
        platform: Some(Platform {
            architecture: if host.architecture == "s390x" {
                "ppc64le".into()
            } else {
                "s390x".into()
            },
            os: "linux".into(),
            variant: None,
        }),
        // Not in the archive: only the host's manifest was saved.
        ..desc(MEDIA_OCI_MANIFEST, b"some other manifest")
    };
    let mine = Descriptor {
        platform: Some(host.clone()),
        ..desc(MEDIA_OCI_MANIFEST, &manifest)
    };
    let nested = serde_json::to_vec(&Index {
        schema_version: 2,
        media_type: Some(MEDIA_OCI_INDEX.into()),
        manifests: vec![other, mine],
        annotations: None,
    })
    .unwrap();
    let index = Index {
        schema_version: 2,
        media_type: None,
        manifests: vec![
            annotated(
                &desc(MEDIA_OCI_INDEX, &nested),
                &[("org.opencontainers.image.ref.name", "example.com/app:v1")],
            ),
            annotated(
                &desc(MEDIA_OCI_MANIFEST, &manifest),
                &[
                    ("io.containerd.image.name", "app:v2"),
                    ("org.opencontainers.image.ref.name", "v2"),
                ],
            ),
            // A bare tag names no repository.
            annotated(
                &desc(MEDIA_OCI_MANIFEST, &manifest),
                &[("org.opencontainers.image.ref.name", "latest")],
            ),
        ],
        annotations: None,
    };
    let a = archive(&[
        file("index.json", serde_json::to_vec(&index).unwrap()),
        file("oci-layout", r#"{"imageLayoutVersion":"1.0.0"}"#),
        file(blob_path(&Digest::of(&base_gz)), base_gz.clone()),
        file(blob_path(&Digest::of(&extra_zst)), extra_zst.clone()),
        file(blob_path(&Digest::of(&nested)), nested.clone()),
        file(blob_path(&Digest::of(&manifest)), manifest.clone()),
        file(blob_path(&Digest::of(&cfg)), cfg.clone()),
    ]);
    let loaded = env.load(&a).unwrap();
    assert_eq!(loaded.len(), 1);
    let img = &loaded[0];
    assert_eq!(img.manifest_digest, Digest::of(&manifest));
    assert_eq!(img.config_digest, Digest::of(&cfg));
    assert_eq!(
        img.layers,
        [
            (Digest::of(&base_gz), base),
            (Digest::of(&extra_zst), extra)
        ]
    );
    assert_eq!(
        img.repo_tags,
        ["example.com/app:v1", "docker.io/library/app:v2"]
    );
    // Blobs are stored as they were in the archive.
    assert_eq!(env.store.read(&Digest::of(&base_gz)).unwrap(), base_gz);
    assert_eq!(env.store.read(&Digest::of(&extra_zst)).unwrap(), extra_zst);
    assert_eq!(env.store.read(&img.manifest_digest).unwrap(), manifest);
    // Two layers, the config and the manifest; not the index.
    assert_eq!(env.blobs().len(), 4);
}

#[test]
fn oci_index_without_the_host_platform_is_rejected() {
    let env = Env::new();
    let nested = serde_json::to_vec(&Index {
        schema_version: 2,
        media_type: Some(MEDIA_OCI_INDEX.into()),
        manifests: vec![Descriptor {
            platform: Some(Platform {
                architecture: "mips64le".into(),
                os: "plan9".into(),
                variant: None,
            }),
            ..desc(MEDIA_OCI_MANIFEST, b"x")
        }],
        annotations: None,
    })
    .unwrap();
    let index = json!({"schemaVersion": 2, "manifests": [desc(MEDIA_OCI_INDEX, &nested)]});
    let a = archive(&[
        file("oci-layout", r#"{"imageLayoutVersion":"1.0.0"}"#),
        file("index.json", serde_json::to_vec(&index).unwrap()),
        file(blob_path(&Digest::of(&nested)), nested.clone()),
    ]);
    let err = env.load(&a).unwrap_err();
    assert!(matches!(err, ArchiveError::NoPlatform { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("has no manifest for platform linux/"),
        "{err}"
    );
}

#[test]
fn loads_docker_25_archive() {
    let env = Env::new();
    let l = Layers::new();
    let (base, app) = (Digest::of(&l.base), Digest::of(&l.app));
    // With the containerd image store, layers are saved compressed.
    let app_gz = gzip(&l.app);
    let cfg = config(&[&base, &app], "sh");
    let manifest = serde_json::to_vec(&Manifest {
        schema_version: 2,
        media_type: Some(MEDIA_OCI_MANIFEST.into()),
        config: desc(MEDIA_OCI_CONFIG, &cfg),
        layers: vec![
            desc(MEDIA_OCI_LAYER, &l.base),
            desc(&format!("{MEDIA_OCI_LAYER}+gzip"), &app_gz),
        ],
        annotations: None,
    })
    .unwrap();
    let index = Index {
        schema_version: 2,
        media_type: Some(MEDIA_OCI_INDEX.into()),
        manifests: vec![annotated(
            &desc(MEDIA_OCI_MANIFEST, &manifest),
            &[
                (
                    "io.containerd.image.name",
                    "docker.io/library/busybox:latest",
                ),
                ("org.opencontainers.image.ref.name", "latest"),
            ],
        )],
        annotations: None,
    };
    let docker = json!([{
        "Config": blob_path(&Digest::of(&cfg)),
        "RepoTags": ["busybox:latest"],
        "Layers": [blob_path(&base), blob_path(&Digest::of(&app_gz))],
    }]);
    // Documents first this time: the order of entries must not matter.
    let a = archive(&[
        file("manifest.json", serde_json::to_vec(&docker).unwrap()),
        file("index.json", serde_json::to_vec(&index).unwrap()),
        E::Dir("blobs/".into()),
        E::Dir("blobs/sha256/".into()),
        file(blob_path(&Digest::of(&app_gz)), app_gz.clone()),
        file(blob_path(&Digest::of(&cfg)), cfg.clone()),
        file(blob_path(&Digest::of(&manifest)), manifest.clone()),
        file(blob_path(&base), l.base.clone()),
        file("oci-layout", r#"{"imageLayoutVersion":"1.0.0"}"#),
    ]);
    let loaded = env.load(&a).unwrap();
    assert_eq!(loaded.len(), 1);
    let img = &loaded[0];
    assert_eq!(
        img.manifest_digest,
        Digest::of(&manifest),
        "the archive's manifest is used"
    );
    assert_eq!(img.config_digest, Digest::of(&cfg));
    assert_eq!(
        img.layers,
        [(base.clone(), base), (Digest::of(&app_gz), app)]
    );
    assert_eq!(img.repo_tags, ["docker.io/library/busybox:latest"]);
    assert_eq!(env.store.read(&img.manifest_digest).unwrap(), manifest);
    assert_eq!(env.blobs().len(), 4);
}

#[test]
fn layer_not_matching_diff_ids_leaves_the_store_unchanged() {
    let env = Env::new();
    let l = Layers::new();
    let (base, app, extra) = (
        Digest::of(&l.base),
        Digest::of(&l.app),
        Digest::of(&l.extra),
    );
    // The base layer was already there (and must stay); app is new and valid; the third
    // layer's content is not what the config says.
    env.store.write_bytes(&l.base, None).unwrap();
    env.store.write_bytes(b"unrelated", None).unwrap();
    let before = env.blobs();
    let cfg = config(&[&base, &app, &extra], "sh");
    let cfg_name = format!("{}.json", Digest::of(&cfg).hex());
    let manifest = json!([{"Config": cfg_name, "RepoTags": ["a:1"], "Layers": ["a/layer.tar", "b/layer.tar", "c/layer.tar"]}]);
    let a = archive(&[
        file(cfg_name.clone(), cfg),
        file("a/layer.tar", l.base.clone()),
        file("b/layer.tar", l.app.clone()),
        file("c/layer.tar", layer_tar(&[("etc/extra", b"tampered")])),
        file("manifest.json", serde_json::to_vec(&manifest).unwrap()),
    ]);
    let err = env.load(&a).unwrap_err();
    assert!(matches!(err, ArchiveError::DiffIdMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("layer c/layer.tar does not match the image config: expected diff id {extra}, got sha256:")),
        "{msg}"
    );
    assert_eq!(env.blobs(), before);
    assert_eq!(
        fs::read_dir(env.dir.path().join("blobs/tmp"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn config_not_matching_its_name_is_rejected() {
    let env = Env::new();
    let l = Layers::new();
    let base = Digest::of(&l.base);
    let cfg = config(&[&base], "sh");
    let name = format!("{}.json", Digest::of(b"something else").hex());
    let manifest = json!([{"Config": name, "RepoTags": ["a:1"], "Layers": ["a/layer.tar"]}]);
    let a = archive(&[
        file("a/layer.tar", l.base.clone()),
        file(name.clone(), cfg.clone()),
        file("manifest.json", serde_json::to_vec(&manifest).unwrap()),
    ]);
    let err = env.load(&a).unwrap_err();
    assert!(matches!(err, ArchiveError::ConfigMismatch { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("got {}", Digest::of(&cfg))),
        "{err}"
    );
    assert!(env.blobs().is_empty());

    // In an OCI archive, the config must match its descriptor.
    let bad = Descriptor {
        digest: Digest::of(b"not the config"),
        ..desc(MEDIA_OCI_CONFIG, &cfg)
    };
    let manifest = serde_json::to_vec(&Manifest {
        schema_version: 2,
        media_type: Some(MEDIA_OCI_MANIFEST.into()),
        config: bad.clone(),
        layers: vec![desc(MEDIA_OCI_LAYER, &l.base)],
        annotations: None,
    })
    .unwrap();
    let index = json!({"schemaVersion": 2, "manifests": [desc(MEDIA_OCI_MANIFEST, &manifest)]});
    let a = archive(&[
        file("oci-layout", r#"{"imageLayoutVersion":"1.0.0"}"#),
        file("index.json", serde_json::to_vec(&index).unwrap()),
        file(blob_path(&Digest::of(&manifest)), manifest.clone()),
        file(blob_path(&bad.digest), cfg.clone()),
        file(blob_path(&base), l.base.clone()),
    ]);
    let err = env.load(&a).unwrap_err();
    assert!(matches!(err, ArchiveError::BlobMismatch { .. }), "{err}");
    assert!(env.blobs().is_empty());
}

#[test]
fn truncated_or_corrupt_archive_is_rejected() {
    let l = Layers::new();
    let (a, _, _) = legacy_archive(&l, &format!("../{}/layer.tar", "1".repeat(64)), vec![]);
    for cut in [
        a.len() / 4,
        a.len() / 2,
        a.len() * 3 / 4,
        a.len() - 1024 - 100,
    ] {
        let env = Env::new();
        let res = env.load(&a[..cut]);
        assert!(res.is_err(), "cut at {cut} of {}", a.len());
        assert!(env.blobs().is_empty(), "cut at {cut}");
    }
    // A damaged header fails its checksum.
    let mut bad = a.clone();
    bad[10] ^= 0x55;
    let env = Env::new();
    assert!(matches!(env.load(&bad), Err(ArchiveError::Read(_))));
    // So does garbage.
    assert!(matches!(env.load(&[7u8; 4096]), Err(ArchiveError::Read(_))));
}

#[test]
fn dotdot_or_absolute_entry_names_are_rejected_and_nothing_is_written_outside() {
    let env = Env::new();
    let sibling = env.dir.path().join("sibling");
    fs::create_dir(&sibling).unwrap();
    let absolute = sibling.join("absolute");
    for name in [
        "../evil",
        "../../sibling/evil",
        "a/../../../sibling/evil",
        absolute.to_str().unwrap(),
    ] {
        let a = archive(&[
            file("manifest.json", "[]"),
            E::RawName(name.to_string(), b"pwned".to_vec()),
        ]);
        let err = env.load(&a).unwrap_err();
        assert!(
            matches!(err, ArchiveError::UnsafePath { .. }),
            "{name}: {err}"
        );
        assert!(err.to_string().contains(name), "{err}");
        assert_eq!(fs::read_dir(&sibling).unwrap().count(), 0, "{name}");
        assert!(!env.dir.path().join("evil").exists());
        assert!(!env.tmp().join("evil").exists());
    }
    // `..` that stays inside is only a spelling.
    let l = Layers::new();
    let (legacy, _, _) = legacy_archive(
        &l,
        &format!("./x/../../{}/./layer.tar", "1".repeat(64)),
        vec![],
    );
    env.load(&legacy).unwrap();
}

#[test]
fn symlink_escaping_the_temp_dir_is_rejected() {
    let l = Layers::new();
    for target in [
        "../../../../../../etc/passwd",
        "/etc/passwd",
        "../../sibling/layer.tar",
    ] {
        let env = Env::new();
        let sibling = env.dir.path().join("sibling");
        fs::create_dir(&sibling).unwrap();
        fs::write(sibling.join("layer.tar"), &l.base).unwrap();
        let (a, _, _) = legacy_archive(&l, target, vec![]);
        let err = env.load(&a).unwrap_err();
        assert!(
            matches!(err, ArchiveError::LinkEscape { .. }),
            "{target}: {err}"
        );
        assert!(err.to_string().contains("outside the archive"), "{err}");
        assert!(env.blobs().is_empty());
    }
    // Links that each stay inside on paper but escape together are caught when followed:
    // `y` -> `.`, so `<id3>/../y/..` is the parent of the root.
    let env = Env::new();
    let (a, _, _) = legacy_archive(
        &l,
        "../y/../etc/passwd",
        vec![E::Symlink("y".into(), ".".into())],
    );
    let err = env.load(&a).unwrap_err();
    assert!(matches!(err, ArchiveError::LinkEscape { .. }), "{err}");
    assert!(env.blobs().is_empty());
}

#[test]
fn archive_without_manifest_is_rejected() {
    let env = Env::new();
    let a = archive(&[file("hello.txt", "hi"), E::Dir("blobs/".into())]);
    let err = env.load(&a).unwrap_err();
    assert!(matches!(err, ArchiveError::NoManifest));
    assert_eq!(
        err.to_string(),
        "archive has no manifest.json or index.json"
    );
    // An empty tar stream is no archive either.
    assert!(matches!(env.load(&[]), Err(ArchiveError::NoManifest)));
    assert!(matches!(
        env.load(&archive(&[file("manifest.json", "[]")])),
        Err(ArchiveError::NoImages)
    ));
}
