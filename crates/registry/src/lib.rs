//! berth's registry: [`server`] implements the OCI distribution spec v1.1 over
//! [`storage::Storage`], a crash-safe, deduplicated layout on the local file system.

#![forbid(unsafe_code)]

pub mod access;
pub mod auth;
pub mod client;
pub mod digest;
pub mod server;
pub mod storage;
pub mod ui;
