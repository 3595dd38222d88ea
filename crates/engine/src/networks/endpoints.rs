//! A container's endpoints: joining and leaving networks, the veth into the bridge, addresses.

use super::*;

impl Engine {
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
    pub(super) fn ensure_bridge_of(&self, net: &NetworkRecord) -> Result<()> {
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
    pub(super) fn plug(&self, ns: &std::path::Path, ep: &Endpoint, route: bool) -> Result<()> {
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

    /// Forgets a removed container's addresses and unpins its namespace; its names
    /// leave the networks' name servers.
    pub(crate) fn disconnect_removed(&self, id: &str) -> Result<()> {
        self.db
            .execute("DELETE FROM endpoints WHERE container = ?1", [id])?;
        let _ = berth_net::netns::remove(&self.netns_path(id));
        self.refresh_dns(None)
    }
}
