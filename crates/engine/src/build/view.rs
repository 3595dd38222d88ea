//! Views of file systems a build step reads but must not change: a stage's or an image's
//! layers (`COPY --from`, `RUN --mount=from=`, user names for `--chown`) and the context
//! seen writable (`RUN --mount=type=bind,rw`, whose writes are thrown away).
//!
//! A view is an overlay mount under `RUN_ROOT/build/PID-START-N`, with a throwaway upper
//! dir; it goes when the step is done. A build killed before that leaves the directory,
//! and the next build unmounts and removes what no living build owns. The same goes for
//! the temporary images RUN steps start from, listed in `RUN_ROOT/build/PID-START-images`.
//! (The step's container dies with its build: its monitor watches the build process.)

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use berth_image::digest::{chain_ids, Digest};

use crate::error::{io_err, Result};
use crate::{sys, Engine};

/// A mounted view; unmounted and removed on drop.
pub(crate) struct View {
    dir: PathBuf,
    /// Where the file system is seen.
    pub root: PathBuf,
    mounted: bool,
}

impl Drop for View {
    fn drop(&mut self) {
        if self.mounted {
            let _ = sys::unmount(&self.root);
        }
        // Never remove through a mount that is still there: it would empty the layers.
        if !sys::is_mountpoint(&self.root) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// This process, as `PID-START`: what owns its views, temporary images and containers.
pub(crate) fn owner_tag() -> String {
    let pid = std::process::id() as i32;
    format!("{pid}-{}", sys::process_start_time(pid).unwrap_or(0))
}

impl Engine {
    fn views_dir(&self) -> PathBuf {
        self.run_root().join("build")
    }

    /// A read-only view of `layers` (bottom first), unpacking any not yet unpacked.
    pub(crate) fn layer_view(&self, layers: &[(Digest, Digest)]) -> Result<View> {
        if layers.is_empty() {
            return self.view(None);
        }
        self.unpack_layers(layers)?;
        let diff_ids: Vec<Digest> = layers.iter().map(|(_, d)| d.clone()).collect();
        let lower = self.layers.lowerdir_option(&chain_ids(&diff_ids))?;
        self.view(Some(&lower))
    }

    /// A view of host directory `dir` whose writes are thrown away.
    pub(crate) fn scratch_view(&self, dir: &Path) -> Result<View> {
        let lower = dir.display().to_string();
        if lower.contains([',', ':']) {
            return Err(crate::error::EngineError::Invalid(format!(
                "{lower}: a path with ',' or ':' cannot be mounted writable"
            )));
        }
        self.view(Some(&lower))
    }

    /// An empty directory that goes with the view (for files made for one step).
    pub(crate) fn empty_view(&self) -> Result<View> {
        self.view(None)
    }

    /// A view of the overlay lower dirs `lower` (relative to the layer store, or
    /// absolute), or an empty directory.
    fn view(&self, lower: Option<&str>) -> Result<View> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = self.views_dir().join(format!("{}-{n}", owner_tag()));
        let root = dir.join("root");
        for d in [&root, &dir.join("upper"), &dir.join("work")] {
            std::fs::create_dir_all(d).map_err(io_err(d))?;
        }
        let mut view = View {
            dir: dir.clone(),
            root,
            mounted: false,
        };
        if let Some(lower) = lower {
            sys::mount_overlay(
                self.layers.root(),
                lower,
                &dir.join("upper"),
                &dir.join("work"),
                &view.root,
                true,
            )?;
            view.mounted = true;
        }
        Ok(view)
    }

    fn temporary_list(&self) -> PathBuf {
        self.views_dir().join(format!("{}-images", owner_tag()))
    }

    /// Records a temporary image this build made, for the sweep if the build is killed.
    pub(crate) fn note_temporary(&self, id: &Digest) {
        use std::io::Write;
        let _ = std::fs::create_dir_all(self.views_dir());
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.temporary_list())
        {
            let _ = writeln!(f, "{id}");
        }
    }

    /// Forgets the list of temporary images (the build removed them).
    pub(crate) fn forget_temporary(&self) {
        let _ = std::fs::remove_file(self.temporary_list());
    }

    /// Removes the untagged images a dead build listed as temporary.
    fn sweep_temporary(&self, list: &Path) {
        for id in std::fs::read_to_string(list).unwrap_or_default().lines() {
            if self.find_image(id).is_ok_and(|row| row.tags.is_empty()) {
                let _ = self.remove_image(id, false);
            }
        }
        let _ = std::fs::remove_file(list);
    }

    /// Unmounts and removes the views of builds that are no longer running, and the
    /// temporary images they left.
    pub(crate) fn sweep_views(&self) {
        let Ok(rd) = std::fs::read_dir(self.views_dir()) else {
            return;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let mut parts = name.splitn(3, '-');
            let (Some(pid), Some(start)) = (parts.next(), parts.next()) else {
                continue;
            };
            let (Ok(pid), Ok(start)) = (pid.parse::<i32>(), start.parse::<u64>()) else {
                continue;
            };
            if sys::process_alive(pid, start) {
                continue;
            }
            if parts.next() == Some("images") {
                self.sweep_temporary(&e.path());
                continue;
            }
            drop(View {
                dir: e.path(),
                root: e.path().join("root"),
                mounted: true,
            });
        }
    }
}

impl Engine {
    /// The whole file system of image `name` as one tar (`build --output type=tar`).
    pub fn image_tree_tar<W: std::io::Write>(&self, name: &str, w: W) -> Result<()> {
        let row = self.find_image(name)?;
        let view = self.layer_view(&row.layers)?;
        berth_image::layer::write_tree_tar(&view.root, w)?;
        Ok(())
    }

    /// Writes the file system of image `name` into directory `dest`, made if missing
    /// (`build --output type=local`). Owners are kept; nothing lands outside `dest`.
    pub fn image_tree_into(&self, name: &str, dest: &Path) -> Result<()> {
        let row = self.find_image(name)?;
        let view = self.layer_view(&row.layers)?;
        std::fs::create_dir_all(dest).map_err(io_err(dest))?;
        let (reader, writer) = std::io::pipe().map_err(io_err(dest))?;
        let root = view.root.clone();
        std::thread::scope(|s| {
            let w = s.spawn(move || berth_image::layer::write_tree_tar(&root, writer));
            let applied = berth_image::layer::apply_tar(
                reader,
                dest,
                &berth_image::layer::ApplyOptions {
                    allow_devices: true,
                    overlay_whiteouts: false,
                    preserve_owner: true,
                },
            );
            let written = w.join().expect("tar writer does not panic");
            applied?;
            written?;
            Ok(())
        })
    }
}
