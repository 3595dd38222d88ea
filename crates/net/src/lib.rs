//! Container networking for berth, knowing containers only as an id and a network
//! namespace: address management ([`ipam`]), persistent network namespaces ([`netns`]),
//! bridges and veth pairs over netlink ([`link`], with rtnetlink), and isolation and NAT
//! with nftables ([`firewall`], through the `nft` tool as netavark does).

#![forbid(unsafe_code)]

pub mod cni;
pub mod dns;
pub mod firewall;
pub mod ipam;
pub mod link;
pub mod netns;

/// Why a network operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{0}")]
    Invalid(String),
    #[error("netlink: {what}: {message}")]
    Netlink { what: String, message: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("nft: {0}")]
    Firewall(String),
}

pub type Result<T> = std::result::Result<T, NetError>;

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetError {
    let what = what.into();
    move |source| NetError::Io { what, source }
}
