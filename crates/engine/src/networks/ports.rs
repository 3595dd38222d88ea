//! Published ports: the root's nftables table of DNAT rules and what is bound.

use super::*;

impl Engine {
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
}
