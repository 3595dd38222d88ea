//! Networks: Docker's `network` objects over `berth-net`. A network is a row (its subnet,
//! gateway and bridge) and a Linux bridge named `bb-…`; a container on it gets, at each
//! start, a network namespace pinned under `RUN_ROOT/netns/ID` with a veth pair into the
//! bridge and the address it was given at its first start (kept until `rm`). The monitor
//! removes the namespace when the container stops for good, which takes the veth with it.
//!
//! The default network `bridge` is made the first time it is needed; `host` and `none`
//! are listed as Docker lists them. Isolation between networks and NAT are one nftables
//! table per root, written whole from the networks table after every change.

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;

use berth_net::firewall;
use berth_net::ipam::{self, Subnet};
use berth_net::link::{self, Attachment};
use rusqlite::{params, OptionalExtension};
use serde_json::json;

use crate::error::{io_err, EngineError, Result};
use crate::model::ContainerRecord;
use crate::specs::network::{BRIDGE_NAME_OPTION, MTU_OPTION};
pub use crate::specs::NetworkSpec;
use crate::Engine;

/// The name of the default network.
pub const DEFAULT_NETWORK: &str = "bridge";

/// A network as the database keeps it.
#[derive(Debug, Clone)]
pub struct NetworkRecord {
    pub id: String,
    pub name: String,
    pub driver: String,
    pub subnet: Subnet,
    pub gateway: Ipv4Addr,
    pub ip_range: Option<Subnet>,
    pub bridge: String,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    pub created: String,
}

/// The MTU of berth's bridges unless a network asks for another
/// (`-o com.docker.network.driver.mtu=…`): large, as loopback's, since the traffic on a
/// bridge stays on the host; the containers' default routes carry the uplink's MTU.
pub const DEFAULT_MTU: u32 = 65520;

impl NetworkRecord {
    pub fn mtu(&self) -> u32 {
        self.options
            .get(MTU_OPTION)
            .and_then(|m| m.parse().ok())
            .unwrap_or(DEFAULT_MTU)
    }
}

/// A container's place on a network.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub network: NetworkRecord,
    pub container: String,
    pub ip: Ipv4Addr,
    pub mac: String,
    /// Names (besides the container's) it has on this network.
    pub aliases: Vec<String>,
    /// Its interface: `eth{position}`.
    pub position: u32,
}

fn endpoint_id_of(network: &str, container: &str) -> String {
    hash(&format!("{network}:{container}"))
}

/// The id Docker would show for an endpoint: stable for the pair.
pub(crate) fn endpoint_id(ep: &Endpoint) -> String {
    endpoint_id_of(&ep.network.id, &ep.container)
}

impl Endpoint {
    /// The interface's name in the container.
    pub fn interface(&self) -> String {
        format!("eth{}", self.position)
    }

    /// The host end of its veth pair (at most 15 bytes).
    fn host_if(&self) -> String {
        match self.position {
            0 => format!("veth{}", &self.container[..11]),
            p => format!("veth{}-{p}", &self.container[..9]),
        }
    }
}

/// What `--ip`, `--mac-address` and `--network-alias` (or `network connect --ip
/// --alias`) ask of a container's endpoint on a network.
#[derive(Debug, Clone, Default)]
pub struct EndpointRequest {
    pub ip: Option<String>,
    pub mac: Option<String>,
    pub aliases: Vec<String>,
}

/// An endpoint as listed for its network.
struct Member {
    container: String,
    ip: String,
    mac: String,
}

fn invalid(msg: impl Into<String>) -> EngineError {
    EngineError::Invalid(msg.into())
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let v: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16))
        .collect::<std::result::Result<_, _>>()
        .ok()?;
    v.try_into().ok()
}

fn hash(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

const COLUMNS: &str =
    "id, name, driver, subnet, gateway, ip_range, bridge, internal, labels, options, created";

fn from_row(r: &rusqlite::Row) -> rusqlite::Result<NetworkRecord> {
    let text = |i: usize| r.get::<_, String>(i);
    let bad = |i: usize, what: &str| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("bad {what}").into(),
        )
    };
    Ok(NetworkRecord {
        id: text(0)?,
        name: text(1)?,
        driver: text(2)?,
        subnet: text(3)?.parse().map_err(|_| bad(3, "subnet"))?,
        gateway: text(4)?.parse().map_err(|_| bad(4, "gateway"))?,
        ip_range: {
            let t = text(5)?;
            if t.is_empty() {
                None
            } else {
                Some(t.parse().map_err(|_| bad(5, "ip range"))?)
            }
        },
        bridge: text(6)?,
        internal: r.get::<_, i64>(7)? != 0,
        labels: serde_json::from_str(&text(8)?).unwrap_or_default(),
        options: serde_json::from_str(&text(9)?).unwrap_or_default(),
        created: text(10)?,
    })
}

impl Engine {
    /// Held while subnets are chosen and bridges made: host-wide, since every berth root
    /// on the host shares its routes.
    pub(crate) fn network_lock(&self) -> Result<nix::fcntl::Flock<std::fs::File>> {
        let path = ["/run/lock", "/run"]
            .iter()
            .map(|d| PathBuf::from(d).join("berth-networks.lock"))
            .find(|p| p.parent().is_some_and(|d| d.is_dir()))
            .unwrap_or_else(|| self.run_root().join("networks.lock"));
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| crate::error::sys_err(format!("locking {}", path.display()))(e))
    }

    /// This root's nftables table.
    fn firewall_table(&self) -> String {
        format!("berth_{}", &hash(&self.root().display().to_string())[..12])
    }

    fn apply_firewall(&self) -> Result<()> {
        let rules: Vec<firewall::Rules> = self
            .network_rows()?
            .into_iter()
            .map(|n| firewall::Rules {
                bridge: n.bridge,
                subnet: n.subnet,
                internal: n.internal,
            })
            .collect();
        if rules.is_empty() {
            // No network, no published port: nothing of this root stays in the firewall.
            firewall::remove_table(&self.ports_table())
                .map_err(|e| invalid(format!("removing the port table: {e}")))?;
        }
        firewall::apply(&self.firewall_table(), &rules)
            .map_err(|e| invalid(format!("setting up the firewall: {e}")))
    }

    fn network_rows(&self) -> Result<Vec<NetworkRecord>> {
        let mut st = self
            .db
            .prepare(&format!("SELECT {COLUMNS} FROM networks ORDER BY created"))?;
        let rows = st
            .query_map([], from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// `network create`: makes network `c` (its bridge, its firewall rules); returns its
    /// id.
    pub fn create_network(&self, c: &NetworkSpec) -> Result<String> {
        if matches!(c.name.as_str(), "host" | "none" | DEFAULT_NETWORK) {
            return Err(EngineError::Conflict(format!(
                "network with name {} already exists",
                c.name
            )));
        }
        self.make_network(c)
    }

    fn make_network(&self, c: &NetworkSpec) -> Result<String> {
        c.validate()?;
        let driver = "bridge".to_string();
        let _lock = self.network_lock()?;
        if self.find_network_row(&c.name)?.is_some() {
            return Err(EngineError::Conflict(format!(
                "network with name {} already exists",
                c.name
            )));
        }
        let existing = self.network_rows()?;
        let subnet = match c.subnet().transpose()? {
            Some(s) => {
                if let Some(n) = existing.iter().find(|n| n.subnet.overlaps(&s)) {
                    return Err(invalid(format!(
                        "Pool overlaps with other one on this address space ({} of network {})",
                        n.subnet, n.name
                    )));
                }
                s
            }
            None => {
                let mut taken: Vec<Subnet> = existing.iter().map(|n| n.subnet).collect();
                taken.extend(ipam::host_routes());
                ipam::pick_subnet(&taken).ok_or_else(|| {
                    invalid("could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network")
                })?
            }
        };
        // Checked against the subnet picked here when none was asked for.
        let gateway = match c.gateway().transpose()? {
            Some(g) if !subnet.contains(g) => {
                return Err(invalid(format!("no matching subnet for gateway {g}")))
            }
            Some(g) => g,
            None => subnet.gateway().expect("prefix <= 30"),
        };
        let ip_range = match c.ip_range().transpose()? {
            Some(r) if !subnet.contains(r.addr) || r.prefix < subnet.prefix => {
                return Err(invalid(format!("no matching subnet for range {r}")))
            }
            r => r,
        };
        let default = c.name == DEFAULT_NETWORK;
        let id = if default {
            hash(&format!("{}:default", self.root().display()))
        } else {
            crate::names::new_id()
        };
        let bridge = match c.options.get(BRIDGE_NAME_OPTION) {
            Some(b) => b.clone(),
            None => format!("{}{}", firewall::BRIDGE_PREFIX, &id[..12]),
        };
        let mtu = c.mtu()?.unwrap_or(DEFAULT_MTU);
        let labels = c.labels.clone();
        link::ensure_bridge(&bridge, gateway, subnet.prefix, mtu)
            .map_err(|e| invalid(format!("creating the network's bridge: {e}")))?;
        if !c.internal {
            link::enable_ip_forward()
                .map_err(|e| invalid(format!("turning on IP forwarding: {e}")))?;
        }
        let inserted = self.db.execute(
            &format!("INSERT INTO networks ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
            params![
                id,
                c.name,
                driver,
                subnet.to_string(),
                gateway.to_string(),
                ip_range.map(|r| r.to_string()).unwrap_or_default(),
                bridge,
                c.internal as i64,
                serde_json::to_string(&labels).expect("labels serialise"),
                serde_json::to_string(&c.options).expect("options serialise"),
                crate::now(),
            ],
        );
        if let Err(e) = inserted {
            let _ = link::delete_link(&bridge);
            return Err(e.into());
        }
        if let Err(e) = self.apply_firewall() {
            let _ = self.db.execute("DELETE FROM networks WHERE id = ?1", [&id]);
            let _ = link::delete_link(&bridge);
            let _ = self.apply_firewall();
            return Err(e);
        }
        self.emit_network("create", &id, &c.name, &driver, None);
        Ok(id)
    }

    /// A network event, with Docker's attributes (and the container's id for connect
    /// and disconnect).
    fn emit_network(
        &self,
        action: &str,
        id: &str,
        name: &str,
        driver: &str,
        container: Option<&str>,
    ) {
        let mut attributes: BTreeMap<String, String> = [
            ("name".to_string(), name.to_string()),
            ("type".to_string(), driver.to_string()),
        ]
        .into_iter()
        .collect();
        if let Some(c) = container {
            attributes.insert("container".into(), c.to_string());
        }
        self.emit("network", action, id, attributes);
    }

    fn find_network_row(&self, name: &str) -> Result<Option<NetworkRecord>> {
        let by_name = self
            .db
            .query_row(
                &format!("SELECT {COLUMNS} FROM networks WHERE name = ?1"),
                [name],
                from_row,
            )
            .optional()?;
        if by_name.is_some() {
            return Ok(by_name);
        }
        let mut st = self.db.prepare(&format!(
            "SELECT {COLUMNS} FROM networks WHERE id LIKE ?1 || '%'"
        ))?;
        let found = st
            .query_map([name], from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.into_iter().next()),
            _ => Err(invalid(format!(
                "network {name} is ambiguous ({} matches found based on ID prefix)",
                found.len()
            ))),
        }
    }

    /// The default network, made when it is first needed, on the subnet berth.toml
    /// asks for (made again on it when that changed and no container uses it).
    fn default_network(&self) -> Result<NetworkRecord> {
        let existing = self.find_network_row(DEFAULT_NETWORK)?;
        let wanted = || -> Result<Option<Subnet>> {
            let c = crate::config::load()?;
            c.network
                .default_subnet
                .map(|s| {
                    s.parse().map_err(|e| {
                        invalid(format!(
                            "{}: default_subnet: {e}",
                            crate::config::path().display()
                        ))
                    })
                })
                .transpose()
        };
        if let Some(n) = existing {
            match wanted()? {
                Some(w) if w != n.subnet && self.endpoints_of_network(&n.id)?.is_empty() => {
                    let _lock = self.network_lock()?;
                    self.db
                        .execute("DELETE FROM networks WHERE id = ?1", [&n.id])?;
                    link::delete_link(&n.bridge)
                        .map_err(|e| invalid(format!("removing the bridge: {e}")))?;
                }
                _ => return Ok(n),
            }
        }
        let bridge = format!(
            "{}{}",
            firewall::BRIDGE_PREFIX,
            &hash(&self.root().display().to_string())[..12]
        );
        let made = self.make_network(&NetworkSpec {
            name: DEFAULT_NETWORK.into(),
            subnet: wanted()?.map(|s| s.to_string()),
            options: [
                ("com.docker.network.bridge.name".to_string(), bridge),
                (
                    "com.docker.network.bridge.default_bridge".to_string(),
                    "true".into(),
                ),
            ]
            .into_iter()
            .collect(),
            ..Default::default()
        });
        match made {
            Ok(_) => {}
            // Made by another process meanwhile.
            Err(EngineError::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
        self.find_network_row(DEFAULT_NETWORK)?
            .ok_or_else(|| invalid("the default network vanished"))
    }

    /// A network by name, id or id prefix (`bridge` is made if need be).
    pub fn find_network(&self, name: &str) -> Result<NetworkRecord> {
        if name == DEFAULT_NETWORK {
            return self.default_network();
        }
        self.find_network_row(name)?
            .ok_or_else(|| EngineError::NoSuchNetwork(name.to_string()))
    }

    /// Every network, the default one first (made if need be).
    pub fn list_networks(&self) -> Result<Vec<NetworkRecord>> {
        self.default_network()?;
        let mut rows = self.network_rows()?;
        rows.sort_by_key(|n| n.name != DEFAULT_NETWORK);
        Ok(rows)
    }

    /// The id `network ls` shows for `host` and `none`, which have no row.
    pub fn builtin_network_id(&self, name: &str) -> String {
        hash(&format!("{}:{name}", self.root().display()))
    }

    fn endpoints_of_network(&self, id: &str) -> Result<Vec<Member>> {
        let mut st = self
            .db
            .prepare("SELECT container, ip, mac FROM endpoints WHERE network = ?1 ORDER BY ip")?;
        let rows = st
            .query_map([id], |r| {
                Ok(Member {
                    container: r.get(0)?,
                    ip: r.get(1)?,
                    mac: r.get(2)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// `network inspect`, shaped like Docker's.
    pub fn inspect_network(&self, name: &str) -> Result<serde_json::Value> {
        let n = self.find_network(name)?;
        let mut containers = serde_json::Map::new();
        for m in self.endpoints_of_network(&n.id)? {
            let cname = self
                .find_container(&m.container)
                .map(|r| r.name)
                .unwrap_or_default();
            containers.insert(
                m.container.clone(),
                json!({
                    "Name": cname,
                    "EndpointID": endpoint_id_of(&n.id, &m.container),
                    "MacAddress": m.mac,
                    "IPv4Address": format!("{}/{}", m.ip, n.subnet.prefix),
                    "IPv6Address": "",
                }),
            );
        }
        let mut config = json!({"Subnet": n.subnet.to_string(), "Gateway": n.gateway.to_string()});
        if let Some(r) = n.ip_range {
            config["IPRange"] = json!(r.to_string());
        }
        // The options given, as Docker shows them (a client such as compose compares
        // them with its file): not the bridge name berth chose.
        let options = n.options.clone();
        Ok(json!({
            "Name": n.name,
            "Id": n.id,
            "Created": n.created,
            "Scope": "local",
            "Driver": n.driver,
            "EnableIPv6": false,
            "IPAM": {"Driver": "default", "Options": {}, "Config": [config]},
            "Internal": n.internal,
            "Attachable": false,
            "Ingress": false,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": false,
            "Containers": containers,
            "Options": options,
            "Labels": n.labels,
        }))
    }

    /// `network rm`: refused for the predefined networks and while containers use it.
    pub fn remove_network(&self, name: &str) -> Result<String> {
        if matches!(name, "host" | "none" | DEFAULT_NETWORK) {
            return Err(invalid(format!(
                "{name} is a pre-defined network and cannot be removed"
            )));
        }
        let _lock = self.network_lock()?;
        let n = self
            .find_network_row(name)?
            .ok_or_else(|| EngineError::NoSuchNetwork(name.to_string()))?;
        if n.name == DEFAULT_NETWORK {
            return Err(invalid(format!(
                "{} is a pre-defined network and cannot be removed",
                n.name
            )));
        }
        if !self.endpoints_of_network(&n.id)?.is_empty() {
            return Err(invalid(format!(
                "error while removing network: network {} id {} has active endpoints",
                n.name, n.id
            )));
        }
        self.stop_dns_server(&n);
        self.db
            .execute("DELETE FROM networks WHERE id = ?1", [&n.id])?;
        link::delete_link(&n.bridge).map_err(|e| invalid(format!("removing the bridge: {e}")))?;
        self.apply_firewall()?;
        self.emit_network("destroy", &n.id, &n.name, &n.driver, None);
        Ok(n.id)
    }

    /// `network prune`: removes the user-defined networks no container uses; returns
    /// their names.
    pub fn prune_networks(&self) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for n in self.network_rows()? {
            if n.name == DEFAULT_NETWORK || !self.endpoints_of_network(&n.id)?.is_empty() {
                continue;
            }
            self.remove_network(&n.id)?;
            removed.push(n.name);
        }
        Ok(removed)
    }

    /// The network a container's `--network` names; None for `none`, `host` and
    /// `container:…`.
    pub(crate) fn network_of_mode(&self, mode: &str) -> Result<Option<NetworkRecord>> {
        match mode {
            "" | "none" | "host" => Ok(None),
            m if m.starts_with("container:") => Ok(None),
            "default" => self.default_network().map(Some),
            m => self.find_network(m).map(Some),
        }
    }

    /// Where a container's network namespace is pinned while it runs.
    pub(crate) fn netns_path(&self, id: &str) -> PathBuf {
        self.run_root().join("netns").join(id)
    }

    /// The container's endpoints, with their networks.
    pub fn container_endpoints(&self, id: &str) -> Result<Vec<Endpoint>> {
        // The network's columns first, as `from_row` reads them; the endpoint's after.
        let mut st = self.db.prepare(&format!(
            "SELECT {}, e.ip, e.mac, e.aliases, e.position FROM endpoints e JOIN networks n ON n.id = e.network WHERE e.container = ?1 ORDER BY e.position",
            COLUMNS
                .split(", ")
                .map(|c| format!("n.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))?;
        let rows = st
            .query_map([id], |r| {
                let ip: String = r.get(11)?;
                Ok(Endpoint {
                    network: from_row(r)?,
                    container: id.to_string(),
                    ip: ip.parse().unwrap_or(Ipv4Addr::UNSPECIFIED),
                    mac: r.get(12)?,
                    aliases: serde_json::from_str(&r.get::<_, String>(13)?).unwrap_or_default(),
                    position: r.get(14)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Gives container `container` a place on `net`: an address (the one asked for, or
    /// the first free one), a MAC, its aliases and the next free interface. The caller
    /// holds the network lock, and makes the row visible with whatever else it writes.
    pub(crate) fn add_endpoint(
        &self,
        container: &str,
        net: &NetworkRecord,
        req: &EndpointRequest,
    ) -> Result<Endpoint> {
        let user_defined = net.name != DEFAULT_NETWORK;
        if !req.aliases.is_empty() && !user_defined {
            return Err(invalid(
                "network-scoped alias is supported only for containers in user defined networks",
            ));
        }
        if req.ip.is_some() && !user_defined {
            return Err(invalid(
                "user specified IP address is supported on user defined networks only",
            ));
        }
        let members = self.endpoints_of_network(&net.id)?;
        if members.iter().any(|m| m.container == container) {
            let name = self
                .find_container(container)
                .map(|r| r.name)
                .unwrap_or_else(|_| container.to_string());
            return Err(EngineError::Conflict(format!(
                "endpoint with name {name} already exists in network {}",
                net.name
            )));
        }
        let mut used: HashSet<Ipv4Addr> =
            members.iter().filter_map(|m| m.ip.parse().ok()).collect();
        used.insert(net.gateway);
        let ip = match &req.ip {
            Some(text) => {
                let ip: Ipv4Addr = text
                    .parse()
                    .map_err(|_| invalid(format!("invalid IPv4 address: {text}")))?;
                if !net.subnet.is_host(ip) {
                    return Err(invalid(format!(
                        "no configured subnet of network {} contains the IP address {ip}",
                        net.name
                    )));
                }
                if used.contains(&ip) {
                    return Err(invalid(format!("Address already in use: {ip}")));
                }
                ip
            }
            None => net
                .subnet
                .allocate(&used, net.ip_range.as_ref())
                .ok_or_else(|| {
                    invalid(format!(
                        "no available IPv4 addresses on network {}",
                        net.name
                    ))
                })?,
        };
        let mac = match &req.mac {
            Some(m) => {
                let mac =
                    parse_mac(m).ok_or_else(|| invalid(format!("invalid MAC address: {m}")))?;
                if mac[0] & 1 == 1 {
                    return Err(invalid(format!(
                        "invalid MAC address: {m} is a multicast address"
                    )));
                }
                mac_text(mac)
            }
            None => mac_text(ipam::mac_for(ip)),
        };
        let taken: HashSet<u32> = self
            .container_endpoints(container)?
            .iter()
            .map(|e| e.position)
            .collect();
        let position = (0..).find(|p| !taken.contains(p)).expect("a free position");
        self.db.execute(
            "INSERT INTO endpoints (network, container, ip, mac, aliases, position) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                net.id,
                container,
                ip.to_string(),
                mac,
                serde_json::to_string(&req.aliases).expect("aliases serialise"),
                position
            ],
        )?;
        Ok(Endpoint {
            network: net.clone(),
            container: container.to_string(),
            ip,
            mac,
            aliases: req.aliases.clone(),
            position,
        })
    }

    /// Makes `net`'s bridge and rules again if they are gone (after a reboot the rows
    /// stay, the bridge does not). A stat, not a netlink round trip: this is on every
    /// start.
    fn ensure_bridge_of(&self, net: &NetworkRecord) -> Result<()> {
        if std::path::Path::new("/sys/class/net")
            .join(&net.bridge)
            .exists()
        {
            return Ok(());
        }
        let _lock = self.network_lock()?;
        link::ensure_bridge(&net.bridge, net.gateway, net.subnet.prefix, net.mtu()).map_err(
            |e| {
                invalid(format!(
                    "making the bridge of network {} again: {e}",
                    net.name
                ))
            },
        )?;
        if !net.internal {
            link::enable_ip_forward()
                .map_err(|e| invalid(format!("turning on IP forwarding: {e}")))?;
        }
        self.apply_firewall()
    }

    /// Plugs endpoint `ep` into the namespace at `ns`; with `route`, its gateway becomes
    /// the default route.
    fn plug(&self, ns: &std::path::Path, ep: &Endpoint, route: bool) -> Result<()> {
        let net = &ep.network;
        self.ensure_bridge_of(net)?;
        link::attach(
            ns,
            &Attachment {
                bridge: net.bridge.clone(),
                host_if: ep.host_if(),
                ip: ep.ip,
                prefix: net.subnet.prefix,
                gateway: route.then_some(net.gateway),
                mac: parse_mac(&ep.mac).unwrap_or_else(|| ipam::mac_for(ep.ip)),
                name: ep.interface(),
                mtu: net.mtu(),
                route_mtu: {
                    let uplink = ipam::uplink_mtu();
                    (route && uplink < net.mtu()).then_some(uplink)
                },
            },
        )
        .map_err(|e| invalid(format!("connecting to network {}: {e}", net.name)))
    }

    /// Gives a container about to start its network namespace, pinned at
    /// [`Engine::netns_path`], with an interface on each of its networks (their
    /// addresses were given at create or `network connect`, and are kept until `rm`).
    /// The first network with a way out gives the default route. Returns the namespace
    /// and the endpoints.
    pub(crate) fn connect_for_start(
        &self,
        rec: &ContainerRecord,
    ) -> Result<(PathBuf, Vec<Endpoint>)> {
        let endpoints = self.container_endpoints(&rec.id)?;
        let ns = self.netns_path(&rec.id);
        let dir = ns.parent().expect("netns has a parent");
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        // Left by a monitor that was killed: a namespace of a container that is not
        // running.
        let _ = berth_net::netns::remove(&ns);
        berth_net::netns::create(&ns)
            .map_err(|e| invalid(format!("creating the network namespace: {e}")))?;
        let mut routed = false;
        for ep in &endpoints {
            let route = !routed && !ep.network.internal;
            routed |= route;
            if let Err(e) = self.plug(&ns, ep, route) {
                let _ = berth_net::netns::remove(&ns);
                return Err(e);
            }
        }
        Ok((ns, endpoints))
    }

    /// `network connect`: puts a container on one more network, at once if it runs
    /// (a new interface in its namespace), else at its next start.
    pub fn connect_container(
        &self,
        network: &str,
        container: &str,
        req: &EndpointRequest,
    ) -> Result<()> {
        let net = self.find_network(network)?;
        let rec = self.find_container(container)?;
        let mode = rec.host_config.network_mode.as_str();
        if mode == "host" {
            return Err(invalid(
                "container cannot be disconnected from host network or connected to host network",
            ));
        }
        if mode.starts_with("container:") {
            return Err(invalid(
                "container sharing network namespace with another container or host cannot be connected to any other network",
            ));
        }
        if mode == "none" || mode.is_empty() {
            return Err(invalid(
                "container cannot be connected to multiple networks with one of the networks in private (none) mode",
            ));
        }
        let _guard = self.lock_container(&rec.id)?;
        let ep = {
            let _lock = self.network_lock()?;
            self.add_endpoint(&rec.id, &net, req)?
        };
        let ns = self.netns_path(&rec.id);
        let running = self
            .container_state(&rec.id)
            .map(|s| s.status.is_active())
            .unwrap_or(false);
        if running && ns.exists() {
            let routed = self
                .container_endpoints(&rec.id)?
                .iter()
                .any(|e| e.position != ep.position && !e.network.internal);
            let plugged = self
                .plug(&ns, &ep, !routed && !net.internal)
                .and_then(|()| {
                    if Self::has_dns(&net) {
                        self.ensure_dns_server(&net)?;
                    }
                    Ok(())
                });
            if let Err(e) = plugged {
                let _ = link::delete_link(&ep.host_if());
                self.db.execute(
                    "DELETE FROM endpoints WHERE network = ?1 AND container = ?2",
                    [&net.id, &rec.id],
                )?;
                return Err(e);
            }
        }
        self.refresh_dns(None)?;
        self.emit_network("connect", &net.id, &net.name, &net.driver, Some(&rec.id));
        Ok(())
    }

    /// `network disconnect`: takes a container off a network (its interface goes at
    /// once if it runs).
    pub fn disconnect_container(&self, network: &str, container: &str) -> Result<()> {
        let net = self.find_network(network)?;
        let rec = self.find_container(container)?;
        let _guard = self.lock_container(&rec.id)?;
        let Some(ep) = self
            .container_endpoints(&rec.id)?
            .into_iter()
            .find(|e| e.network.id == net.id)
        else {
            return Err(invalid(format!(
                "container {} is not connected to network {}",
                rec.id, net.name
            )));
        };
        if self.netns_path(&rec.id).exists() {
            // Deleting the host end takes the container's end with it.
            link::delete_link(&ep.host_if())
                .map_err(|e| invalid(format!("disconnecting from network {}: {e}", net.name)))?;
        }
        self.db.execute(
            "DELETE FROM endpoints WHERE network = ?1 AND container = ?2",
            [&net.id, &rec.id],
        )?;
        self.refresh_dns(None)?;
        self.emit_network("disconnect", &net.id, &net.name, &net.driver, Some(&rec.id));
        Ok(())
    }

    /// This root's table of published ports.
    pub(crate) fn ports_table(&self) -> String {
        format!("{}_ports", self.firewall_table())
    }

    /// Publishes a starting container's ports (`-p`, `-P` with the image's exposed
    /// ports) at `ip`: each host port is reserved by a socket bound to it, which the
    /// monitor holds while the container runs (so a port taken by anything else is an
    /// error now), then mapped to the container by nftables. Returns the ports as bound,
    /// the sockets, and the firewall's elements.
    pub(crate) fn publish_ports(
        &self,
        rec: &ContainerRecord,
        ip: Ipv4Addr,
    ) -> Result<(
        Vec<crate::model::PublishedPort>,
        Vec<std::os::fd::OwnedFd>,
        Vec<firewall::PortMap>,
    )> {
        let hc = &rec.host_config;
        let mut wanted: Vec<(String, crate::model::PortBinding)> = Vec::new();
        for (port, bindings) in &hc.port_bindings {
            for b in bindings {
                wanted.push((port.clone(), b.clone()));
            }
        }
        if hc.publish_all_ports {
            for port in rec.config.exposed_ports.iter().flat_map(|m| m.keys()) {
                if !hc.port_bindings.contains_key(port) {
                    wanted.push((port.clone(), Default::default()));
                }
            }
        }
        let mut published = Vec::new();
        let mut fds = Vec::new();
        let mut maps = Vec::new();
        for (port, b) in wanted {
            let (num, proto) = port.split_once('/').unwrap_or((&port, "tcp"));
            let container_port: u16 = num
                .parse()
                .map_err(|_| invalid(format!("invalid container port {port}")))?;
            let host_ip: Ipv4Addr = if b.host_ip.is_empty() {
                Ipv4Addr::UNSPECIFIED
            } else {
                b.host_ip.parse().map_err(|_| {
                    invalid(format!("invalid host IP {} (IPv4 only for now)", b.host_ip))
                })?
            };
            let host_port: u16 = if b.host_port.is_empty() {
                0
            } else {
                b.host_port
                    .parse()
                    .map_err(|_| invalid(format!("invalid host port {}", b.host_port)))?
            };
            let addr = std::net::SocketAddrV4::new(host_ip, host_port);
            let taken = |e: std::io::Error| {
                invalid(format!(
                    "driver failed programming external connectivity on endpoint {}: Bind for {host_ip}:{host_port} failed: port is already allocated ({e})",
                    rec.name
                ))
            };
            let (fd, bound): (std::os::fd::OwnedFd, u16) = match proto {
                "tcp" => {
                    let l = std::net::TcpListener::bind(addr).map_err(taken)?;
                    let p = l.local_addr().map_err(taken)?.port();
                    (l.into(), p)
                }
                "udp" => {
                    let u = std::net::UdpSocket::bind(addr).map_err(taken)?;
                    let p = u.local_addr().map_err(taken)?.port();
                    (u.into(), p)
                }
                other => return Err(invalid(format!("invalid protocol {other} in {port}"))),
            };
            fds.push(fd);
            maps.push(firewall::PortMap {
                host_ip: (!host_ip.is_unspecified()).then_some(host_ip),
                proto: proto.to_string(),
                host_port: bound,
                ip,
                port: container_port,
            });
            published.push(crate::model::PublishedPort {
                container_port: format!("{container_port}/{proto}"),
                host_ip: host_ip.to_string(),
                host_port: bound,
            });
        }
        if !maps.is_empty() {
            let _lock = self.network_lock()?;
            firewall::publish(&self.ports_table(), &maps)
                .map_err(|e| invalid(format!("publishing ports: {e}")))?;
        }
        Ok((published, fds, maps))
    }

    /// The ports a running container has published (empty when it is not running).
    pub fn published_ports(&self, id: &str) -> Vec<crate::model::PublishedPort> {
        let running = self
            .container_state(id)
            .map(|s| s.status.is_active())
            .unwrap_or(false);
        if !running {
            return Vec::new();
        }
        std::fs::read(self.container_dir(id).join("ports.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Forgets a removed container's addresses and unpins its namespace; its names
    /// leave the networks' name servers.
    pub(crate) fn disconnect_removed(&self, id: &str) -> Result<()> {
        self.db
            .execute("DELETE FROM endpoints WHERE container = ?1", [id])?;
        let _ = berth_net::netns::remove(&self.netns_path(id));
        self.refresh_dns(None)
    }

    fn dns_dir(&self) -> PathBuf {
        self.run_root().join("dns")
    }

    /// Whether a network resolves its containers' names: every one but the default,
    /// as in Docker.
    pub(crate) fn has_dns(net: &NetworkRecord) -> bool {
        net.name != DEFAULT_NETWORK
    }

    /// Rewrites the records of every network's name server (through a temp file and a
    /// rename each) from the endpoints of the running containers; `change` is a
    /// container starting (true) or stopping (false) whose state does not say so yet.
    /// On its network a container is found by its name, its short id and its aliases
    /// there; a container on several networks also finds the others' names on them
    /// (records scoped to its address, so nobody else does).
    pub(crate) fn refresh_dns(&self, change: Option<(&str, bool)>) -> Result<()> {
        let mut st = self
            .db
            .prepare("SELECT container, network, ip, aliases FROM endpoints ORDER BY ip")?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        drop(st);
        let networks: BTreeMap<String, NetworkRecord> = self
            .network_rows()?
            .into_iter()
            .filter(Self::has_dns)
            .map(|n| (n.id.clone(), n))
            .collect();
        /// A running container on a network: its id, its address there, its names there.
        type Named<'a> = (&'a str, &'a str, Vec<String>);
        // network -> its running containers.
        let mut names: BTreeMap<&str, Vec<Named>> = BTreeMap::new();
        let mut running: BTreeMap<&str, bool> = BTreeMap::new();
        for (c, n, ip, aliases) in &rows {
            if !networks.contains_key(n.as_str()) {
                continue;
            }
            let up = *running.entry(c).or_insert_with(|| match change {
                Some((id, up)) if id == c => up,
                _ => self
                    .container_state(c)
                    .map(|s| s.status.is_active())
                    .unwrap_or(false),
            });
            if !up {
                continue;
            }
            let Ok(rec) = self.find_container(c) else {
                continue;
            };
            let mut all = vec![rec.name.clone(), c[..12].to_string()];
            all.extend(serde_json::from_str::<Vec<String>>(aliases).unwrap_or_default());
            names.entry(n).or_default().push((c, ip, all));
        }
        let dir = self.dns_dir();
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        for id in networks.keys() {
            let mut text = String::new();
            let members = names
                .get(id.as_str())
                .map(Vec::as_slice)
                .unwrap_or_default();
            for (_, ip, all) in members {
                for name in all {
                    text.push_str(&format!("{name} {ip}\n"));
                }
            }
            // Members on other networks too see those networks' names.
            for (c, source, _) in members {
                let shared = names
                    .iter()
                    .filter(|(o, theirs)| {
                        **o != id.as_str() && theirs.iter().any(|(k, _, _)| k == c)
                    })
                    .map(|(_, theirs)| theirs);
                for theirs in shared {
                    for (_, ip, all) in theirs {
                        for name in all {
                            text.push_str(&format!("{name} {ip} {source}\n"));
                        }
                    }
                }
            }
            let p = dir.join(format!("{id}.hosts"));
            berth_image::fsutil::replace_file(&p, text.as_bytes()).map_err(io_err(&p))?;
        }
        Ok(())
    }

    /// The pid of `net`'s name server, if it runs (its pid file names it with its start
    /// time, so a reused pid is not taken for it).
    fn dns_server_pid(&self, net: &NetworkRecord) -> Option<i32> {
        let pidfile = self.dns_dir().join(format!("{}.pid", net.id));
        let (pid, start) =
            crate::monitor::parse_owner(std::fs::read_to_string(pidfile).ok()?.trim())?;
        crate::sys::process_alive(pid, start).then_some(pid)
    }

    /// Starts `net`'s name server (on its gateway's port 53) unless it runs.
    fn ensure_dns_server(&self, net: &NetworkRecord) -> Result<()> {
        let pidfile = self.dns_dir().join(format!("{}.pid", net.id));
        if self.dns_server_pid(net).is_some() {
            return Ok(());
        }
        let exe = crate::berth_exe().map_err(io_err("the berth binary"))?;
        let records = self.dns_dir().join(format!("{}.hosts", net.id));
        let mut cmd = std::process::Command::new(&exe);
        cmd.arg("dns-serve")
            .arg("--addr")
            .arg(format!("{}:53", net.gateway))
            .arg("--records")
            .arg(&records)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        // SAFETY: setsid is async-signal-safe; the server outlives this process.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(io_err(&exe))?;
        let pid = child.id() as i32;
        let start = crate::sys::process_start_time(pid).unwrap_or(0);
        berth_image::fsutil::replace_file(&pidfile, format!("{pid}-{start}").as_bytes())
            .map_err(io_err(&pidfile))?;
        Ok(())
    }

    /// Stops `net`'s name server and removes its files.
    fn stop_dns_server(&self, net: &NetworkRecord) {
        if let Some(pid) = self.dns_server_pid(net) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = std::fs::remove_file(self.dns_dir().join(format!("{}.pid", net.id)));
        let _ = std::fs::remove_file(self.dns_dir().join(format!("{}.hosts", net.id)));
    }

    /// A starting container's names go to its networks' name servers (started if need
    /// be). Returns the one its resolv.conf points to: the first of its networks that
    /// has one.
    pub(crate) fn dns_for_start(
        &self,
        rec: &ContainerRecord,
        endpoints: &[Endpoint],
    ) -> Result<Option<Ipv4Addr>> {
        let with_dns: Vec<&NetworkRecord> = endpoints
            .iter()
            .map(|e| &e.network)
            .filter(|n| Self::has_dns(n))
            .collect();
        if with_dns.is_empty() {
            return Ok(None);
        }
        self.refresh_dns(Some((&rec.id, true)))?;
        for n in &with_dns {
            self.ensure_dns_server(n)?;
        }
        Ok(Some(with_dns[0].gateway))
    }
}
