//! Typed requests for the engine's verbs, and Docker's rules for them.
//!
//! Every front end turns its own input into one of these: the CLI its flags, the API
//! service Docker's JSON, compose its normalised model. The engine validates the request
//! itself (`validate`, called by the verb), so a request that one front end refuses every
//! front end refuses, with the same message and the same error class. Front ends parse
//! syntax (a size, a duration, a port range) and leave every rule about values to this
//! module: podman's `specgen` is the model.
//!
//! This module decides and never touches the system: it is unit-tested without root.

pub mod build;
pub mod container;
pub mod exec;
pub mod network;
pub mod parse;
pub mod pod;
pub mod volume;

pub use build::BuildSpec;
pub use container::{ContainerSpec, UpdateSpec};
pub use exec::ExecSpec;
pub use network::NetworkSpec;
pub use pod::PodSpec;
pub use volume::VolumeSpec;
