//! OCI images for berth: references, digests, the content store, image documents, layer
//! unpacking and diffing, and the archive formats (`import`, `load`, `save`).
//!
//! Main types: [`Digest`], [`Reference`], [`ContentStore`] (blobs by digest, verified on
//! write and on read), [`LayerStore`] (each layer unpacked once by chain id), and the
//! [`layer`] functions that turn tars into directories and back.
//!
//! This crate never touches the engine's database and never spawns processes. Unpacking
//! never writes outside the destination directory: every path is resolved as if the
//! destination were `/`.

pub mod archive;
pub mod compression;
pub mod config;
pub mod digest;
pub mod fsutil;
pub mod import;
pub mod layer;
pub mod layers;
pub mod reference;
pub mod store;

pub use digest::{chain_ids, Digest};
pub use layers::LayerStore;
pub use reference::Reference;
pub use store::ContentStore;

/// An error and its causes on one line, each cause once (libraries often repeat their
/// source's text in their own message).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}
