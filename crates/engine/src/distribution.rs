//! `pull`, `push`, `login`: images to and from registries, through
//! `berth_registry::client`. The network side runs on a current-thread tokio runtime
//! made for the call, so the process stays single-threaded (libcontainer needs that).
//! Every manifest and blob is checked against its digest before it is stored; blobs
//! already in the store are not downloaded again, and a registry that already has a blob
//! is not sent it again.

use std::io::Write;

use berth_image::compression::Compression;
use berth_image::config::{
    host_platform, ImageConfig, Index, Manifest, Platform, MEDIA_DOCKER_LIST, MEDIA_OCI_INDEX,
};
use berth_image::digest::Digest;
use berth_image::import::NewImage;
use berth_image::reference::Reference;
use berth_registry::auth::{self, Credentials};
use berth_registry::client::Client;
use futures_util::{StreamExt, TryStreamExt};
use rusqlite::params;

use crate::error::{EngineError, Result};
use crate::Engine;

/// How many layers move at once.
const PARALLEL: usize = 3;

/// A blob that is a layer: its chain id, diff id, short id and where its progress goes.
type BlobLayer<'a> = (&'a Digest, &'a Digest, &'a str, &'a dyn Fn(Progress<'_>));

/// Feeds the unpacker, if it still listens (when it stopped, its error is reported
/// once the download ends).
async fn send(tx: &mut Option<tokio::sync::mpsc::Sender<bytes::Bytes>>, chunk: bytes::Bytes) {
    if let Some(t) = tx {
        if t.send(chunk).await.is_err() {
            *tx = None;
        }
    }
}

/// Sizes as Docker shows them: decimal units, 4 significant digits (`12.35MB`).
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    let digits = if v >= 1000.0 {
        0
    } else if v >= 100.0 {
        1
    } else if v >= 10.0 {
        2
    } else {
        3
    };
    let s = format!("{v:.digits$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{}", UNITS[i])
}

#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// `os/arch[/variant]`; the host's when None.
    pub platform: Option<String>,
    /// Registries spoken to over plain HTTP besides loopback ones.
    pub insecure: Vec<String>,
    /// Credentials for the image's registry instead of the stored ones (`berth login`).
    pub credentials: Option<Credentials>,
}

/// What `pull` and `push` report as they go, for a display like Docker's.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// A line of its own (`latest: Pulling from library/x`).
    Line(&'a str),
    /// A layer's state, by its short id; `bytes` is (done, total) while it moves.
    Layer {
        id: &'a str,
        status: &'a str,
        bytes: Option<(u64, u64)>,
    },
}

impl Progress<'_> {
    fn layer<'a>(id: &'a str, status: &'a str) -> Progress<'a> {
        Progress::Layer {
            id,
            status,
            bytes: None,
        }
    }
}

/// One `search` result.
pub struct SearchResult {
    pub name: String,
    pub description: String,
    pub stars: u64,
    pub official: bool,
    pub automated: bool,
}

/// What a pull did.
pub struct Pulled {
    pub reference: Reference,
    pub digest: String,
    pub id: Digest,
    /// False when the image was there already, up to date.
    pub downloaded: bool,
}

fn unavailable(e: impl std::fmt::Display) -> EngineError {
    EngineError::Unavailable(e.to_string())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(unavailable)
}

impl Engine {
    /// `ADD URL`: the body of a plain GET, and its Last-Modified time (seconds since the
    /// epoch; 0 when the server gives none).
    pub(crate) fn download(&self, url: &str) -> Result<(Vec<u8>, i64)> {
        let rt = runtime()?;
        rt.block_on(async {
            let client = reqwest::Client::builder()
                .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(unavailable)?;
            let resp = client
                .get(url)
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| unavailable(format!("failed to load {url}: {e}")))?;
            let mtime = resp
                .headers()
                .get(reqwest::header::LAST_MODIFIED)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
                .map_or(0, |t| t.timestamp());
            let body = resp
                .bytes()
                .await
                .map_err(|e| unavailable(format!("failed to load {url}: {e}")))?;
            Ok((body.to_vec(), mtime))
        })
    }
}

/// The registries berth treats as insecure: `BERTH_INSECURE_REGISTRIES` (comma-separated).
pub fn insecure_registries() -> Vec<String> {
    std::env::var("BERTH_INSECURE_REGISTRIES")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn parse_platform(s: &str) -> Result<Platform> {
    let mut parts = s.split('/');
    let (Some(os), Some(arch)) = (parts.next(), parts.next()) else {
        return Err(EngineError::Invalid(format!(
            "invalid platform {s:?}: expected os/arch[/variant]"
        )));
    };
    Ok(Platform {
        os: os.into(),
        architecture: arch.into(),
        variant: parts.next().map(String::from),
    })
}

fn client_for(r: &Reference, insecure: &[String]) -> Result<Client> {
    Client::new(&r.domain, auth::lookup(&r.domain), insecure).map_err(unavailable)
}

impl Engine {
    /// Pulls `name`; `progress` hears what happens, as Docker's pull reports it.
    pub fn pull(
        &self,
        name: &str,
        opts: &PullOptions,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<Pulled> {
        let r = Reference::parse(name)?;
        // berth.toml's mirrors for this name first, then its registry.
        let sources = crate::config::load()?.pull_sources(&r.domain, &r.path);
        let want = match &opts.platform {
            Some(p) => parse_platform(p)?,
            None => host_platform(),
        };
        let reference = r
            .digest
            .as_ref()
            .map(|d| d.to_string())
            .or_else(|| r.tag.clone())
            .unwrap_or_else(|| "latest".into());
        progress(Progress::Line(&format!(
            "{}: Pulling from {}",
            r.tag.as_deref().unwrap_or(&reference),
            r.path
        )));
        let rt = runtime()?;
        let (client, repo, (bytes, media_type, _)) =
            rt.block_on(first_manifest(&sources, opts, &reference, &r))?;
        let (top_digest, manifest_bytes, manifest_digest) = rt.block_on(async {
            let digest = Digest::of(&bytes);
            if let Some(d) = &r.digest {
                if *d != digest {
                    return Err(EngineError::Invalid(format!(
                        "manifest digest mismatch: asked for {d}, the registry sent {digest}"
                    )));
                }
            }
            let kind = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["mediaType"].as_str().map(String::from))
                .unwrap_or(media_type);
            if kind == MEDIA_OCI_INDEX || kind == MEDIA_DOCKER_LIST {
                let index: Index = serde_json::from_slice(&bytes)
                    .map_err(|e| EngineError::Invalid(format!("invalid image index: {e}")))?;
                let m = choose(&index, &want).ok_or_else(|| {
                    EngineError::NoSuchImage(format!(
                        "no matching manifest for {}/{}{} in the manifest list entries",
                        want.os,
                        want.architecture,
                        want.variant
                            .as_ref()
                            .map(|v| format!("/{v}"))
                            .unwrap_or_default()
                    ))
                })?;
                let (inner, _, _) = client
                    .manifest(&repo, &m.to_string())
                    .await
                    .map_err(unavailable)?;
                if Digest::of(&inner) != m {
                    return Err(EngineError::Invalid(format!(
                        "manifest {m} from the registry does not match its digest"
                    )));
                }
                Ok((digest, inner, m))
            } else {
                Ok((digest.clone(), bytes, digest))
            }
        })?;
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes).map_err(|e| {
            EngineError::Invalid(format!("unsupported manifest (schema 1 or malformed): {e}"))
        })?;
        // Already here and up to date?
        if let Ok(row) = self.find_image(&manifest.config.digest.to_string()) {
            if row.manifest == manifest_digest {
                // The image is here; the tag pulled may still be new (or moved).
                let mut newly_tagged = false;
                if r.digest.is_none() {
                    newly_tagged = !row.tags.contains(&r.to_string());
                    self.db.execute(
                        "INSERT OR REPLACE INTO tags (name, image) VALUES (?1, ?2)",
                        params![r.to_string(), row.id.to_string()],
                    )?;
                }
                self.record_pull(&r, &row.id, &top_digest)?;
                return Ok(Pulled {
                    reference: r,
                    digest: top_digest.to_string(),
                    id: row.id,
                    downloaded: newly_tagged,
                });
            }
        }
        // The config first: its diff ids name the layers' unpacked dirs.
        if !self.store.contains(&manifest.config.digest) {
            rt.block_on(self.fetch_blob(&client, &repo, &manifest.config.digest, None, &|_| {}))?;
        }
        let config_bytes = self.store.read(&manifest.config.digest)?;
        let config: ImageConfig = serde_json::from_slice(&config_bytes)
            .map_err(|e| EngineError::Invalid(format!("invalid image config: {e}")))?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(EngineError::Invalid(format!(
                "the image config lists {} layers, the manifest {}",
                config.rootfs.diff_ids.len(),
                manifest.layers.len()
            )));
        }
        let chains = berth_image::digest::chain_ids(&config.rootfs.diff_ids);
        // Then the layers, a few at a time, each unpacked while it downloads.
        let progress = std::cell::RefCell::new(progress);
        let report = |p: Progress<'_>| (progress.borrow_mut())(p);
        let mut waiting = 0;
        for desc in &manifest.layers {
            let short = &desc.digest.hex()[..12];
            if self.store.contains(&desc.digest) {
                // Unpacked by `register` if it is not yet.
                report(Progress::layer(short, "Already exists"));
            } else {
                report(Progress::layer(short, "Pulling fs layer"));
                waiting += 1;
                if waiting > PARALLEL {
                    report(Progress::layer(short, "Waiting"));
                }
            }
        }
        rt.block_on(async {
            let results: Vec<Result<()>> = futures_util::stream::iter(
                manifest
                    .layers
                    .iter()
                    .zip(&config.rootfs.diff_ids)
                    .zip(&chains)
                    .filter(|((desc, _), _)| !self.store.contains(&desc.digest))
                    .map(|((desc, diff_id), chain)| {
                        let (client, repo, report) = (&client, &repo, &report);
                        async move {
                            let short = &desc.digest.hex()[..12];
                            let on_bytes = |done| {
                                report(Progress::Layer {
                                    id: short,
                                    status: "Downloading",
                                    bytes: Some((done, desc.size)),
                                })
                            };
                            let layer = Some((chain, diff_id, short, report as _));
                            self.fetch_blob(client, repo, &desc.digest, layer, &on_bytes)
                                .await?;
                            report(Progress::layer(short, "Pull complete"));
                            Ok(())
                        }
                    }),
            )
            .buffered(PARALLEL)
            .collect()
            .await;
            results.into_iter().collect::<Result<Vec<()>>>()
        })?;
        self.store
            .write_bytes(&manifest_bytes, Some(&manifest_digest))?;
        let new = NewImage {
            manifest_digest,
            config_digest: manifest.config.digest.clone(),
            layers: manifest
                .layers
                .iter()
                .map(|l| l.digest.clone())
                .zip(config.rootfs.diff_ids.iter().cloned())
                .collect(),
            config,
        };
        let tags: Vec<String> = if r.digest.is_none() {
            vec![r.to_string()]
        } else {
            Vec::new()
        };
        let id = self.register(&new, &tags)?;
        self.record_pull(&r, &id, &top_digest)?;
        Ok(Pulled {
            reference: r,
            digest: top_digest.to_string(),
            id,
            downloaded: true,
        })
    }

    /// Downloads a blob into the store, checking its digest; nothing is stored when it
    /// does not match. With `layer` (chain id, diff id, short id, reporter) the layer is
    /// unpacked as it arrives, on a blocking thread fed through a bounded channel, and
    /// removed again if the blob turns out wrong or incomplete. The download goes to the
    /// store's partial file for the blob: bytes an interrupted pull left there are not
    /// fetched again (a `Range` request), though they are hashed and unpacked again.
    async fn fetch_blob(
        &self,
        client: &Client,
        repo: &str,
        digest: &Digest,
        layer: Option<BlobLayer<'_>>,
        on_bytes: &dyn Fn(u64),
    ) -> Result<()> {
        let mut blob = match self.store.partial(digest)? {
            Some(p) => p,
            // Another pull is fetching it right now: this one fetches its own copy.
            None => self.store.temp()?,
        };
        let resp = client
            .blob(repo, &digest.to_string(), blob.offset)
            .await
            .map_err(unavailable)?;
        if blob.offset > 0 && !berth_registry::client::resumed_at(&resp, blob.offset) {
            blob.restart()?;
        }
        let mut hasher = berth_image::digest::Hasher::new(std::io::sink());
        let mut unpacker = None;
        let mut tx = None;
        if let Some((chain, diff_id, ..)) = layer {
            if !self.layers.exists(chain) {
                let (t, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(32);
                let layers = berth_image::layers::LayerStore::open(self.layers.root())?;
                let (chain, diff_id, blob) = (chain.clone(), diff_id.clone(), digest.clone());
                unpacker = Some(tokio::task::spawn_blocking(move || {
                    let reader = ChannelReader {
                        rx,
                        buf: bytes::Bytes::new(),
                    };
                    Engine::unpack_layer(&layers, &chain, &blob, &diff_id, reader)
                }));
                tx = Some(t);
            }
        }
        let mut done = 0u64;
        if blob.offset > 0 {
            if let Some((.., short, report)) = layer {
                let at = format!("Resuming at {}", human_size(blob.offset));
                report(Progress::layer(short, &at));
            }
            // What the last pull got: hashed and unpacked again, not downloaded.
            let mut old =
                std::fs::File::open(&blob.path).map_err(crate::error::io_err(&blob.path))?;
            while done < blob.offset {
                let mut chunk = vec![0; (blob.offset - done).min(1 << 20) as usize];
                std::io::Read::read_exact(&mut old, &mut chunk)
                    .map_err(crate::error::io_err(&blob.path))?;
                done += chunk.len() as u64;
                hasher
                    .write_all(&chunk)
                    .map_err(crate::error::io_err(&blob.path))?;
                send(&mut tx, bytes::Bytes::from(chunk)).await;
                on_bytes(done);
            }
        }
        let mut stream = resp.bytes_stream();
        let received: Result<()> = async {
            while let Some(chunk) = stream.try_next().await.map_err(|e| {
                unavailable(format!(
                    "downloading {digest}: {}; the {} received are kept and the next pull resumes from there",
                    berth_image::error_chain(&e),
                    human_size(done)
                ))
            })? {
                hasher
                    .write_all(&chunk)
                    .map_err(crate::error::io_err(&blob.path))?;
                blob.file
                    .write_all(&chunk)
                    .map_err(crate::error::io_err(&blob.path))?;
                done += chunk.len() as u64;
                send(&mut tx, chunk).await;
                on_bytes(done);
            }
            Ok(())
        }
        .await;
        drop(tx);
        let (got, _, _) = hasher.finish();
        let whole = received.is_ok() && got == *digest;
        if whole {
            if let Some((.., short, report)) = layer {
                report(Progress::layer(short, "Verifying Checksum"));
                report(Progress::layer(short, "Download complete"));
            }
        }
        // The blob's fsync overlaps the end of the unpacking.
        let synced = match (whole, blob.file.try_clone()) {
            (true, Ok(f)) => Some(tokio::task::spawn_blocking(move || f.sync_all())),
            _ => None,
        };
        let unpacked = match unpacker {
            Some(u) => Some(u.await.map_err(unavailable)?),
            None => None,
        };
        if let Some(s) = synced {
            let _ = s.await;
        }
        if !whole {
            if let (Some((chain, ..)), Some(Ok(_))) = (layer, &unpacked) {
                let _ = self.layers.remove(chain);
            }
        }
        received?;
        if got != *digest {
            blob.discard();
            return Err(EngineError::Invalid(format!(
                "blob {digest} from the registry does not match its digest (got {got}); nothing was stored"
            )));
        }
        if let Some(r) = unpacked {
            r?;
        }
        blob.commit(digest)?;
        Ok(())
    }

    /// `manifest` with every layer in `c`'s compression: layers are recompressed in
    /// parallel (a thread each) into the store, once (a cache under `compressed/` maps a
    /// blob to its recompressed form), and the new manifest is stored too.
    fn recompressed(&self, manifest: &Manifest, c: Compression) -> Result<(Vec<u8>, Manifest)> {
        let cache_dir = self
            .root()
            .join("compressed")
            .join(format!("{c:?}").to_lowercase());
        std::fs::create_dir_all(&cache_dir).map_err(crate::error::io_err(&cache_dir))?;
        let store = &self.store;
        let results: Vec<Result<(Digest, u64)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = manifest
                .layers
                .iter()
                .map(|l| {
                    let cache_dir = &cache_dir;
                    scope.spawn(move || -> Result<(Digest, u64)> {
                        let head = {
                            let mut f = std::fs::File::open(store.path(&l.digest))
                                .map_err(crate::error::io_err(store.path(&l.digest)))?;
                            let mut b = [0u8; 8];
                            let n = std::io::Read::read(&mut f, &mut b).unwrap_or(0);
                            b[..n].to_vec()
                        };
                        if Compression::detect(&head) == c {
                            return Ok((l.digest.clone(), l.size));
                        }
                        let cached = cache_dir.join(l.digest.hex());
                        if let Some((d, n)) = std::fs::read_to_string(&cached).ok().and_then(|t| {
                            let (d, n) = t.trim().split_once(' ')?;
                            Some((Digest::parse(d).ok()?, n.parse::<u64>().ok()?))
                        }) {
                            if store.contains(&d) {
                                return Ok((d, n));
                            }
                        }
                        let src = store.open_verified(&l.digest)?;
                        let (mut reader, writer) =
                            std::io::pipe().map_err(crate::error::io_err(&cached))?;
                        let (d, n) = std::thread::scope(|inner| {
                            let worker = inner.spawn(move || -> std::io::Result<()> {
                                let (_, raw) = berth_image::compression::decompress(src)?;
                                berth_image::compression::compress(c, raw, writer)?;
                                Ok(())
                            });
                            let stored = store.write_from(&mut reader, None);
                            drop(reader);
                            let compressed = worker.join().expect("the compressor does not panic");
                            compressed.map_err(crate::error::io_err(&cached))?;
                            stored.map_err(EngineError::from)
                        })?;
                        let _ = std::fs::write(&cached, format!("{d} {n}"));
                        Ok((d, n))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a compressor thread does not panic"))
                .collect()
        });
        let mut out = manifest.clone();
        out.media_type = Some(berth_image::config::MEDIA_OCI_MANIFEST.into());
        for (layer, res) in out.layers.iter_mut().zip(results) {
            let (d, n) = res?;
            layer.digest = d;
            layer.size = n;
            layer.media_type = format!(
                "{}{}",
                berth_image::config::MEDIA_OCI_LAYER,
                c.media_suffix()
            );
        }
        let bytes = serde_json::to_vec(&out).expect("manifests serialise");
        self.store.write_bytes(&bytes, None)?;
        Ok((bytes, out))
    }

    /// Remembers `repository@digest` for the image (its RepoDigests) and records the event.
    fn record_pull(&self, r: &Reference, id: &Digest, digest: &Digest) -> Result<()> {
        self.record_repo_digest(r, id, digest)?;
        self.emit(
            "image",
            "pull",
            &r.familiar(),
            [("name".to_string(), r.familiar())].into_iter().collect(),
        );
        Ok(())
    }

    fn record_repo_digest(&self, r: &Reference, id: &Digest, digest: &Digest) -> Result<()> {
        self.db.execute(
            "INSERT OR REPLACE INTO repo_digests (repository, digest, image) VALUES (?1, ?2, ?3)",
            params![r.repository(), digest.to_string(), id.to_string()],
        )?;
        Ok(())
    }

    /// The `repository@digest` names recorded for an image.
    pub fn repo_digests(&self, id: &Digest) -> Result<Vec<(String, String)>> {
        let mut st = self
            .db
            .prepare("SELECT repository, digest FROM repo_digests WHERE image = ?1 ORDER BY repository, digest")?;
        let rows = st
            .query_map([id.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<std::result::Result<Vec<(String, String)>, _>>()?;
        Ok(rows)
    }

    /// Pushes `name`; returns the manifest digest. `progress` hears what happens, as
    /// Docker's push reports it (layers only; the config blob goes up unannounced).
    pub fn push(
        &self,
        name: &str,
        insecure: &[String],
        compression: Option<Compression>,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<Digest> {
        let r = Reference::parse(name)?;
        let row = self.find_image(&r.to_string())?;
        let mut manifest_bytes = self.store.read(&row.manifest)?;
        let mut manifest: Manifest = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| EngineError::Invalid(format!("stored manifest: {e}")))?;
        if let Some(c) = compression {
            (manifest_bytes, manifest) = self.recompressed(&manifest, c)?;
        }
        let media_type = manifest
            .media_type
            .clone()
            .unwrap_or_else(|| berth_image::config::MEDIA_OCI_MANIFEST.into());
        let client = client_for(&r, insecure)?;
        let tag = r.tag.clone().unwrap_or_else(|| "latest".into());
        progress(Progress::Line(&format!(
            "The push refers to repository [{}]",
            r.repository()
        )));
        // Another repository on the same registry that has this image's blobs.
        let mount_from: Option<String> = self
            .repo_digests(&row.id)?
            .into_iter()
            .filter_map(|(repo, _)| Reference::parse(&repo).ok())
            .find(|o| o.domain == r.domain && o.path != r.path)
            .map(|o| o.path);
        let rt = runtime()?;
        let repo = r.path.clone();
        let progress = std::cell::RefCell::new(progress);
        let report = |p: Progress<'_>| (progress.borrow_mut())(p);
        // Docker lists the layers top first.
        let mut blobs: Vec<(Digest, u64, Option<String>)> = manifest
            .layers
            .iter()
            .rev()
            .map(|l| {
                (
                    l.digest.clone(),
                    l.size,
                    Some(l.digest.hex()[..12].to_string()),
                )
            })
            .collect();
        blobs.push((manifest.config.digest.clone(), manifest.config.size, None));
        for (i, (_, _, short)) in blobs.iter().enumerate() {
            if let Some(short) = short {
                report(Progress::layer(short, "Preparing"));
                if i >= PARALLEL {
                    report(Progress::layer(short, "Waiting"));
                }
            }
        }
        // Bytes sent so far of each blob being uploaded, shown by a ticker.
        let pushed: Vec<std::sync::Arc<std::sync::atomic::AtomicU64>> =
            blobs.iter().map(|_| Default::default()).collect();
        let uploading: Vec<std::cell::Cell<bool>> =
            blobs.iter().map(|_| Default::default()).collect();
        let digest = rt.block_on(async {
            let store = &self.store;
            let client = &client;
            let repo = &repo;
            let mount_from = &mount_from;
            let (report, pushed, uploading) = (&report, &pushed, &uploading);
            let work = futures_util::stream::iter(blobs.iter().enumerate().map(
                |(i, (d, size, short))| async move {
                    let say = |status: &str| {
                        if let Some(short) = short {
                            report(Progress::layer(short, status));
                        }
                    };
                    let ds = d.to_string();
                    if client.blob_exists(repo, &ds).await.map_err(unavailable)? {
                        say("Layer already exists");
                        return Ok(());
                    }
                    if let Some(from) = mount_from {
                        if client.mount(repo, from, &ds).await.map_err(unavailable)? {
                            say(&format!("Mounted from {from}"));
                            return Ok(());
                        }
                    }
                    let path = store.path(d);
                    let counter = &pushed[i];
                    uploading[i].set(short.is_some());
                    let uploaded = client
                        .upload(repo, &ds, *size, || match std::fs::File::open(&path) {
                            Ok(f) => {
                                let counter = counter.clone();
                                counter.store(0, std::sync::atomic::Ordering::Relaxed);
                                reqwest::Body::wrap_stream(
                                    tokio_util::io::ReaderStream::with_capacity(
                                        tokio::fs::File::from_std(f),
                                        256 << 10,
                                    )
                                    .inspect_ok(move |b| {
                                        counter.fetch_add(
                                            b.len() as u64,
                                            std::sync::atomic::Ordering::Relaxed,
                                        );
                                    }),
                                )
                            }
                            Err(_) => reqwest::Body::from(Vec::new()),
                        })
                        .await;
                    uploading[i].set(false);
                    uploaded.map_err(unavailable)?;
                    say("Pushed");
                    Ok::<(), EngineError>(())
                },
            ))
            .buffered(PARALLEL)
            .try_collect::<Vec<()>>();
            let ticker = async {
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    for (i, (_, size, short)) in blobs.iter().enumerate() {
                        if let (true, Some(short)) = (uploading[i].get(), short) {
                            report(Progress::Layer {
                                id: short,
                                status: "Pushing",
                                bytes: Some((
                                    pushed[i].load(std::sync::atomic::Ordering::Relaxed),
                                    *size,
                                )),
                            });
                        }
                    }
                }
            };
            futures_util::pin_mut!(work, ticker);
            match futures_util::future::select(work, ticker).await {
                futures_util::future::Either::Left((done, _)) => done?,
                futures_util::future::Either::Right(_) => unreachable!("the ticker never ends"),
            };
            let sent = client
                .put_manifest(repo, &tag, &media_type, manifest_bytes.clone())
                .await
                .map_err(unavailable)?;
            let digest = Digest::of(&manifest_bytes);
            if let Some(s) = sent {
                if s != digest.to_string() {
                    return Err(EngineError::Invalid(format!(
                        "the registry stored the manifest as {s}, expected {digest}"
                    )));
                }
            }
            Ok(digest)
        })?;
        report(Progress::Line(&format!(
            "{tag}: digest: {digest} size: {}",
            manifest_bytes.len()
        )));
        self.record_repo_digest(&r, &row.id, &digest)?;
        self.emit(
            "image",
            "push",
            &r.familiar(),
            [("name".to_string(), r.familiar())].into_iter().collect(),
        );
        Ok(digest)
    }

    /// The tags a registry holds for `name`'s repository (`pull --all-tags`).
    pub fn remote_tags(&self, name: &str, insecure: &[String]) -> Result<Vec<String>> {
        let r = Reference::parse(name)?;
        let last = name.rsplit('/').next().unwrap_or(name);
        if r.digest.is_some() || last.contains(':') {
            return Err(EngineError::Invalid(
                "tag can't be used with --all-tags/-a".into(),
            ));
        }
        let client = client_for(&r, insecure)?;
        runtime()?
            .block_on(client.tags(&r.path))
            .map_err(|e| not_found_or(&r, e))
    }

    /// The local tags of `name`'s repository, as full references (`push --all-tags`).
    pub fn local_tags_of_repository(&self, name: &str) -> Result<Vec<String>> {
        let r = Reference::parse(name)?;
        let last = name.rsplit('/').next().unwrap_or(name);
        if r.digest.is_some() || last.contains(':') {
            return Err(EngineError::Invalid(
                "tag can't be used with --all-tags/-a".into(),
            ));
        }
        let repo = r.repository();
        let mut out: Vec<String> = self
            .list_image_rows()?
            .into_iter()
            .flat_map(|row| row.tags)
            .filter(|t| {
                Reference::parse(t).is_ok_and(|x| x.repository() == repo && x.digest.is_none())
            })
            .collect();
        out.sort();
        if out.is_empty() {
            return Err(EngineError::NoSuchImage(r.familiar_repository()));
        }
        Ok(out)
    }

    /// `search [REGISTRY/]TERM`: (name, description, stars, official, automated) rows
    /// from the registry's search API (Docker Hub's when no registry is named).
    pub fn search(
        &self,
        term: &str,
        limit: usize,
        insecure: &[String],
    ) -> Result<Vec<SearchResult>> {
        let (host, term) = match term.split_once('/') {
            Some((h, t)) if h.contains('.') || h.contains(':') || h == "localhost" => {
                (h.to_string(), t.to_string())
            }
            _ => ("docker.io".to_string(), term.to_string()),
        };
        let client = Client::new(&host, auth::lookup(&host), insecure).map_err(unavailable)?;
        let v = runtime()?
            .block_on(client.search(&term, limit))
            .map_err(unavailable)?;
        Ok(v["results"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| SearchResult {
                name: r["name"].as_str().unwrap_or_default().to_string(),
                description: r["description"].as_str().unwrap_or_default().to_string(),
                stars: r["star_count"].as_u64().unwrap_or(0),
                official: r["is_official"].as_bool().unwrap_or(false),
                automated: r["is_automated"].as_bool().unwrap_or(false),
            })
            .collect())
    }

    /// Checks `creds` against `server` and stores them in Docker's config.json.
    pub fn login(&self, server: &str, creds: Credentials, insecure: &[String]) -> Result<()> {
        let host = normalise_server(server);
        let client = Client::new(&host, Some(creds.clone()), insecure).map_err(unavailable)?;
        runtime()?
            .block_on(client.ping())
            .map_err(|e| EngineError::Unavailable(format!("login to {host} failed: {e}")))?;
        auth::store(&host, &creds).map_err(crate::error::io_err(auth::config_path()))
    }

    /// Forgets the credentials for `server`; false when there were none.
    pub fn logout(&self, server: &str) -> Result<bool> {
        let host = normalise_server(server);
        auth::remove(&host).map_err(crate::error::io_err(auth::config_path()))
    }
}

/// A blocking reader over chunks sent from the async side.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    buf: bytes::Bytes,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.buf.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.buf = b,
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        self.buf = self.buf.slice(n..);
        Ok(n)
    }
}

/// `https://host/v1/` → `host`; Docker Hub's names → `docker.io`.
pub fn normalise_server(s: &str) -> String {
    let s = s
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let s = s.split('/').next().unwrap_or(s);
    match s {
        "" | "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".into(),
        other => other.into(),
    }
}

/// The index entry for `want` (os, architecture, and variant when both give one).
fn choose(index: &Index, want: &Platform) -> Option<Digest> {
    index
        .manifests
        .iter()
        .filter(|m| {
            m.platform.as_ref().is_some_and(|p| {
                p.os == want.os
                    && p.architecture == want.architecture
                    && (want.variant.is_none() || p.variant.is_none() || p.variant == want.variant)
            })
        })
        .map(|m| m.digest.clone())
        .next()
}

/// A manifest request's failure: a registry that has no such manifest or repository is
/// a missing image (Docker's words), anything else the registry's unavailability.
/// The manifest `reference` of the first source that has it: a mirror that fails, lacks
/// it or sends content that is not the digest asked for passes to the next; the last one's error is the pull's. Returns the client
/// and repository the rest of the pull uses.
async fn first_manifest(
    sources: &[crate::config::PullSource],
    opts: &PullOptions,
    reference: &str,
    r: &Reference,
) -> Result<(Client, String, (Vec<u8>, String, Option<String>))> {
    for (i, src) in sources.iter().enumerate() {
        let mut insecure = opts.insecure.clone();
        if src.insecure {
            insecure.push(src.host.clone());
        }
        let last = i + 1 == sources.len();
        // Credentials given are for the image's own registry, not for a mirror's.
        let credentials = match &opts.credentials {
            Some(c) if src.host == r.domain => Some(c.clone()),
            _ => auth::lookup(&src.host),
        };
        let client = match Client::new(&src.host, credentials, &insecure) {
            Ok(c) => c,
            Err(_) if !last => continue,
            Err(e) => return Err(unavailable(e)),
        };
        match client.manifest(&src.repository, reference).await {
            // A mirror that sends other content than the digest asked for is passed
            // over like one that fails (the pull checks the digest again).
            Ok(found)
                if !last
                    && r.digest
                        .as_ref()
                        .is_some_and(|d| *d != Digest::of(&found.0)) =>
            {
                continue
            }
            Ok(found) => return Ok((client, src.repository.clone(), found)),
            Err(_) if !last => continue,
            Err(e) => return Err(not_found_or(r, e)),
        }
    }
    Err(EngineError::Invalid(format!(
        "no registry to pull {} from",
        r.familiar()
    )))
}

fn not_found_or(r: &Reference, e: berth_registry::client::ClientError) -> EngineError {
    if e.is_not_found() {
        EngineError::NoSuchImage(format!("manifest for {} not found: {e}", r.familiar()))
    } else {
        EngineError::Unavailable(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_normalise_like_dockers() {
        assert_eq!(normalise_server("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalise_server("localhost:5000"), "localhost:5000");
        assert_eq!(normalise_server("http://127.0.0.1:5000/"), "127.0.0.1:5000");
    }
}
