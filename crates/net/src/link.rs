//! Bridges and veth pairs over netlink (rtnetlink), each call synchronous on a small
//! current-thread runtime of its own (the callers are short CLI processes; the monitor
//! never calls these).

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::Path;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::link::{InfoData, InfoVeth};
use rtnetlink::packet_route::route::{RouteAttribute, RouteMetric};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::{NetError, Result};

fn nl(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetError {
    let what = what.into();
    move |e| NetError::Netlink {
        what,
        message: e.to_string(),
    }
}

fn exists(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -libc::EEXIST)
}

/// Runs `f` with a netlink handle of the calling thread's network namespace.
fn with_handle<T>(f: impl AsyncFnOnce(Handle) -> Result<T>) -> Result<T> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(crate::io("starting the netlink runtime"))?;
    rt.block_on(async {
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(crate::io("opening a netlink socket"))?;
        let task = tokio::spawn(conn);
        let out = f(handle).await;
        task.abort();
        out
    })
}

async fn index_of(h: &Handle, name: &str) -> Result<Option<u32>> {
    let mut links = h.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(l) => Ok(l.map(|l| l.header.index)),
        Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(nl(format!("looking up {name}"))(e)),
    }
}

async fn add_address(h: &Handle, index: u32, ip: Ipv4Addr, prefix: u8, what: &str) -> Result<()> {
    match h
        .address()
        .add(index, IpAddr::V4(ip), prefix)
        .execute()
        .await
    {
        Err(e) if exists(&e) => Ok(()),
        r => r.map_err(nl(format!("adding {ip}/{prefix} to {what}"))),
    }
}

/// Makes bridge `name` with address `gateway/prefix`, up; one that exists is kept.
///
/// The bridge gets a fixed MAC (from the gateway's address): left alone, a bridge takes
/// the lowest MAC among its ports, so a container leaving would change the gateway's MAC
/// under the others' ARP caches, and they would lose it (their name server with it)
/// until those entries expire.
pub fn ensure_bridge(name: &str, gateway: Ipv4Addr, prefix: u8, mtu: u32) -> Result<()> {
    let mac = crate::ipam::mac_for(gateway).to_vec();
    with_handle(async |h| -> Result<()> {
        if index_of(&h, name).await?.is_none() {
            match h
                .link()
                .add(
                    LinkBridge::new(name)
                        .address(mac.clone())
                        .mtu(mtu)
                        .up()
                        .build(),
                )
                .execute()
                .await
            {
                Err(e) if exists(&e) => {}
                r => r.map_err(nl(format!("creating bridge {name}")))?,
            }
        }
        let index = index_of(&h, name)
            .await?
            .ok_or_else(|| NetError::Invalid(format!("bridge {name} vanished")))?;
        add_address(&h, index, gateway, prefix, name).await?;
        h.link()
            .set(
                LinkUnspec::new_with_index(index)
                    .address(mac)
                    .mtu(mtu)
                    .up()
                    .build(),
            )
            .execute()
            .await
            .map_err(nl(format!("setting {name} up")))
    })?;
    // Published ports are reachable on 127.0.0.1: connections to it are routed to the
    // bridge, which must accept loopback sources.
    let p = format!("/proc/sys/net/ipv4/conf/{name}/route_localnet");
    std::fs::write(&p, "1").map_err(crate::io(p))?;
    // A connection from a container to a published port on the gateway is DNATed back
    // into a bridge: the kernel routes it only when the bridge forwards (with
    // forwarding off it drops it before conntrack ever confirms it).
    let p = format!("/proc/sys/net/ipv4/conf/{name}/forwarding");
    std::fs::write(&p, "1").map_err(crate::io(p))
}

/// Turns on IPv4 forwarding for the host, as Docker does when it sets up its bridge:
/// containers on a bridge reach other networks through the host. (Writing it sets
/// every interface's `forwarding`, the bridges' included.)
pub fn enable_ip_forward() -> Result<()> {
    let p = "/proc/sys/net/ipv4/ip_forward";
    if std::fs::read_to_string(p).is_ok_and(|v| v.trim() == "1") {
        return Ok(());
    }
    std::fs::write(p, "1").map_err(crate::io(p))
}

/// Removes link `name` (and a veth's peer with it); missing is fine.
pub fn delete_link(name: &str) -> Result<()> {
    with_handle(async |h| match index_of(&h, name).await? {
        Some(i) => match h.link().del(i).execute().await {
            Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::ENODEV => Ok(()),
            r => r.map_err(nl(format!("deleting {name}"))),
        },
        None => Ok(()),
    })
}

/// Whether link `name` exists in this namespace.
pub fn link_exists(name: &str) -> Result<bool> {
    with_handle(async |h| Ok(index_of(&h, name).await?.is_some()))
}

/// How a container joins a bridge.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub bridge: String,
    /// The veth end on the host (at most 15 bytes).
    pub host_if: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    /// The default route; None for internal networks.
    pub gateway: Option<Ipv4Addr>,
    pub mac: [u8; 6],
    /// The interface's name in the container (`eth0`, `eth1`, …).
    pub name: String,
    /// Both ends' MTU (the bridge's).
    pub mtu: u32,
    /// The default route's MTU, when it is below the interface's: traffic that leaves
    /// the host is sized for its uplink, traffic on the host (other containers, the
    /// host itself, published ports) uses the bridge's large MTU.
    pub route_mtu: Option<u32>,
}

/// Brings `lo` up in the namespace at `netns` (a pod's, before its CNI plugins run).
pub fn loopback_up(netns: &Path) -> Result<()> {
    crate::netns::within(netns, || with_handle(async |h| set_lo_up(&h).await))
}

async fn set_lo_up(h: &Handle) -> Result<()> {
    if let Some(lo) = index_of(h, "lo").await? {
        h.link()
            .set(LinkUnspec::new_with_index(lo).up().build())
            .execute()
            .await
            .map_err(nl("setting lo up"))?;
    }
    Ok(())
}

/// Connects the namespace at `netns` to a bridge: a veth pair whose host end joins the
/// bridge and whose other end, in the namespace, gets the address, the MAC, and (when a
/// gateway is given) the default route. `lo` comes up too.
///
/// The pair is made with its container end already in the namespace and named, in one
/// request (it can only be set up from there, once the pair exists): moving a link between namespaces afterwards waits for an RCU grace
/// period (about 20 ms here, the largest part of a start).
pub fn attach(netns: &Path, a: &Attachment) -> Result<()> {
    let ns =
        std::fs::File::open(netns).map_err(crate::io(format!("opening {}", netns.display())))?;
    with_handle(async |h| {
        let bridge = index_of(&h, &a.bridge)
            .await?
            .ok_or_else(|| NetError::Invalid(format!("no bridge {}", a.bridge)))?;
        // A pair of the same name may still be there: the kernel destroys a namespace
        // (and the veth in it) asynchronously after its last reference goes, so a quick
        // stop and start can find the old host end. It is ours by its name.
        if let Some(i) = index_of(&h, &a.host_if).await? {
            match h.link().del(i).execute().await {
                Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::ENODEV => {}
                r => r.map_err(nl(format!("removing the old {}", a.host_if)))?,
            }
        }
        let peer = rtnetlink::LinkMessageBuilder::<LinkUnspec>::new()
            .name(a.name.clone())
            .address(a.mac.to_vec())
            .mtu(a.mtu)
            .setns_by_fd(ns.as_raw_fd())
            .build();
        let pair = LinkVeth::new(&a.host_if, &a.name)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .mtu(a.mtu)
            .controller(bridge)
            .up()
            .build();
        h.link()
            .add(pair)
            .execute()
            .await
            .map_err(nl(format!("creating veth {} into {}", a.host_if, a.bridge)))
    })?;
    let a = a.clone();
    crate::netns::within(netns, move || {
        with_handle(async |h| {
            let i = index_of(&h, &a.name)
                .await?
                .ok_or_else(|| NetError::Invalid(format!("no {} in the container", a.name)))?;
            add_address(&h, i, a.ip, a.prefix, &a.name).await?;
            h.link()
                .set(LinkUnspec::new_with_index(i).up().build())
                .execute()
                .await
                .map_err(nl(format!("setting {} up", a.name)))?;
            set_lo_up(&h).await?;
            if let Some(gw) = a.gateway {
                let mut route = RouteMessageBuilder::<Ipv4Addr>::new().gateway(gw).build();
                if let Some(mtu) = a.route_mtu {
                    route
                        .attributes
                        .push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(mtu)]));
                }
                match h.route().add(route).execute().await {
                    Err(e) if exists(&e) => {}
                    r => r.map_err(nl(format!("adding the default route via {gw}")))?,
                }
            }
            Ok(())
        })
    })
}
