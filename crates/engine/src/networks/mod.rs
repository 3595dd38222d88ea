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

use crate::error::{io_err, EngineError, Result};
use crate::model::ContainerRecord;
use crate::specs::network::{BRIDGE_NAME_OPTION, MTU_OPTION};
pub use crate::specs::NetworkSpec;
use crate::Engine;

mod dns;
mod endpoints;
mod ports;

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
    pub fn inspect_network(&self, name: &str) -> Result<crate::views::NetworkInspect> {
        use crate::views::*;
        let n = self.find_network(name)?;
        let mut containers = BTreeMap::new();
        for m in self.endpoints_of_network(&n.id)? {
            // Docker lists the endpoints in use: containers that run, not those created
            // or stopped (whose addresses are kept until `rm`).
            let running = self
                .container_state(&m.container)
                .is_ok_and(|s| s.status.is_active());
            if !running {
                continue;
            }
            let name = self
                .find_container(&m.container)
                .map(|r| r.name)
                .unwrap_or_default();
            let member = NetworkMember {
                name,
                endpoint_id: endpoint_id_of(&n.id, &m.container),
                mac_address: m.mac,
                ipv4_address: format!("{}/{}", m.ip, n.subnet.prefix),
                ipv6_address: String::new(),
            };
            containers.insert(m.container, member);
        }
        Ok(NetworkInspect {
            name: n.name,
            id: n.id,
            created: n.created,
            scope: "local",
            driver: n.driver,
            enable_ipv6: false,
            ipam: Ipam {
                driver: "default",
                options: BTreeMap::new(),
                config: vec![IpamConfig {
                    subnet: n.subnet.to_string(),
                    gateway: n.gateway.to_string(),
                    ip_range: n.ip_range.map(|r| r.to_string()),
                }],
            },
            internal: n.internal,
            attachable: false,
            ingress: false,
            config_from: ConfigFrom::default(),
            config_only: false,
            containers,
            // The options given, as Docker shows them (a client such as compose compares
            // them with its file): not the bridge name berth chose.
            options: n.options,
            labels: n.labels,
        })
    }

    /// `host` and `none` as `network inspect` shows them.
    pub fn inspect_builtin_network(&self, name: &str) -> crate::views::NetworkInspect {
        use crate::views::*;
        NetworkInspect {
            name: name.to_string(),
            id: self.builtin_network_id(name),
            // Go's zero time: clients parse this field as a time.
            created: "0001-01-01T00:00:00Z".into(),
            scope: "local",
            driver: if name == "none" { "null" } else { name }.to_string(),
            enable_ipv6: false,
            ipam: Ipam {
                driver: "default",
                options: BTreeMap::new(),
                config: vec![],
            },
            internal: false,
            attachable: false,
            ingress: false,
            config_from: ConfigFrom::default(),
            config_only: false,
            containers: BTreeMap::new(),
            options: BTreeMap::new(),
            labels: BTreeMap::new(),
        }
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

    /// The network a container's `--network` names; None for `none`, `host`,
    /// `container:…` and `ns:PATH`.
    pub(crate) fn network_of_mode(&self, mode: &str) -> Result<Option<NetworkRecord>> {
        match mode {
            "" | "none" | "host" => Ok(None),
            m if m.starts_with("container:") || m.starts_with("ns:") => Ok(None),
            "default" => self.default_network().map(Some),
            m => self.find_network(m).map(Some),
        }
    }

    /// Where a container's network namespace is pinned while it runs.
    pub(crate) fn netns_path(&self, id: &str) -> PathBuf {
        self.run_root().join("netns").join(id)
    }
}
