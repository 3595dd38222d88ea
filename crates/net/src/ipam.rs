//! IPv4 address management: subnets, gateways, the next free address, and a free subnet
//! for a new network that overlaps none the host routes or other networks use.

use std::collections::HashSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network, `ADDR/PREFIX`, kept with its host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subnet {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Subnet> {
        (prefix <= 32).then(|| Subnet {
            addr: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        })
    }

    fn base(&self) -> u32 {
        u32::from(self.addr)
    }

    /// The number of addresses, network and broadcast included.
    pub fn size(&self) -> u64 {
        1u64 << (32 - self.prefix)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == self.base()
    }

    pub fn overlaps(&self, other: &Subnet) -> bool {
        let p = self.prefix.min(other.prefix);
        self.base() & mask(p) == other.base() & mask(p)
    }

    /// The `n`th address (0 is the network address).
    pub fn nth(&self, n: u64) -> Option<Ipv4Addr> {
        (n < self.size()).then(|| Ipv4Addr::from(self.base() + n as u32))
    }

    /// Whether `ip` is one of the subnet's host addresses (neither its network nor its
    /// broadcast address).
    pub fn is_host(&self, ip: Ipv4Addr) -> bool {
        let n = u64::from(u32::from(ip).wrapping_sub(self.base()));
        self.contains(ip) && (self.prefix > 30 || (n != 0 && n != self.size() - 1))
    }

    /// The first host address: the gateway, by Docker's convention.
    pub fn gateway(&self) -> Option<Ipv4Addr> {
        (self.prefix <= 30).then(|| self.nth(1)).flatten()
    }

    /// The first address in `range` (or the whole subnet) that is a host address of this
    /// subnet and not in `used`.
    pub fn allocate(&self, used: &HashSet<Ipv4Addr>, range: Option<&Subnet>) -> Option<Ipv4Addr> {
        if self.prefix > 30 {
            return None;
        }
        let r = range.unwrap_or(self);
        let (first, last) = (
            r.base().max(self.base() + 1),
            r.base() + (r.size() - 1) as u32,
        );
        let last = last.min(self.base() + (self.size() - 2) as u32);
        (first..=last)
            .map(Ipv4Addr::from)
            .find(|ip| !used.contains(ip))
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = String;

    fn from_str(s: &str) -> Result<Subnet, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("invalid subnet {s}: want ADDRESS/PREFIX"))?;
        let addr: Ipv4Addr = a
            .parse()
            .map_err(|_| format!("invalid subnet {s}: {a} is not an IPv4 address"))?;
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("invalid subnet {s}: bad prefix length {p}"))?;
        Subnet::new(addr, prefix).ok_or_else(|| format!("invalid subnet {s}"))
    }
}

/// The pools new networks take their /24 from when no subnet is given: chosen clear of
/// Docker's defaults (172.17-31.0.0/16, 192.168.0.0/16) and podman's (10.88.0.0/16).
pub const DEFAULT_POOLS: &[(Ipv4Addr, u8)] = &[(Ipv4Addr::new(10, 210, 0, 0), 16)];

/// The first /24 of the pools that overlaps nothing in `taken`.
pub fn pick_subnet(taken: &[Subnet]) -> Option<Subnet> {
    for &(addr, prefix) in DEFAULT_POOLS {
        let pool = Subnet::new(addr, prefix)?;
        for i in 0..(pool.size() / 256) {
            let candidate = Subnet::new(Ipv4Addr::from(pool.base() + (i as u32) * 256), 24)?;
            if !taken.iter().any(|t| t.overlaps(&candidate)) {
                return Some(candidate);
            }
        }
    }
    None
}

/// The IPv4 networks the host's routing table already covers (from /proc/net/route),
/// default route aside.
pub fn host_routes() -> Vec<Subnet> {
    let Ok(text) = std::fs::read_to_string("/proc/net/route") else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let dest = u32::from_str_radix(f.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(f.get(7)?, 16).ok()?;
            // The kernel prints the network-order word as a host-order number.
            let dest = Ipv4Addr::from(dest.to_ne_bytes());
            let prefix = mask.count_ones() as u8;
            (prefix > 0).then(|| Subnet::new(dest, prefix)).flatten()
        })
        .collect()
}

/// The MTU of the interface the host's default route leaves by (1500 when there is
/// none): the largest packet a container's traffic to the outside can be.
pub fn uplink_mtu() -> u32 {
    let uplink = std::fs::read_to_string("/proc/net/route")
        .ok()
        .and_then(|text| {
            text.lines().skip(1).find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.get(1) == Some(&"00000000") && f.get(7) == Some(&"00000000"))
                    .then(|| f[0].to_string())
            })
        });
    uplink
        .and_then(|i| std::fs::read_to_string(format!("/sys/class/net/{i}/mtu")).ok())
        .and_then(|m| m.trim().parse().ok())
        .unwrap_or(1500)
}

/// A MAC address for `ip` as Docker makes them: 02:42 and the address's four bytes.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Subnet {
        x.parse().unwrap()
    }

    #[test]
    fn subnets_parse_clear_host_bits_and_refuse_nonsense() {
        assert_eq!(s("10.1.2.3/24").to_string(), "10.1.2.0/24");
        assert!("10.1.2.0".parse::<Subnet>().is_err());
        assert!("10.1.2.0/33".parse::<Subnet>().is_err());
        assert!("10.1.300.0/24".parse::<Subnet>().is_err());
        assert_eq!(s("10.1.2.0/24").gateway(), Some(Ipv4Addr::new(10, 1, 2, 1)));
        assert_eq!(s("10.1.2.0/31").gateway(), None);
        let net = s("10.1.2.0/24");
        assert!(net.is_host(Ipv4Addr::new(10, 1, 2, 1)));
        assert!(net.is_host(Ipv4Addr::new(10, 1, 2, 254)));
        assert!(!net.is_host(Ipv4Addr::new(10, 1, 2, 0)));
        assert!(!net.is_host(Ipv4Addr::new(10, 1, 2, 255)));
        assert!(!net.is_host(Ipv4Addr::new(10, 1, 3, 7)));
    }

    #[test]
    fn allocation_skips_network_gateway_used_and_broadcast() {
        let net = s("10.0.0.0/29");
        let mut used: HashSet<Ipv4Addr> = [net.gateway().unwrap()].into_iter().collect();
        let mut got = Vec::new();
        while let Some(ip) = net.allocate(&used, None) {
            used.insert(ip);
            got.push(ip.to_string());
        }
        assert_eq!(
            got,
            ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
        );
        let range = s("10.0.0.4/30");
        let used = HashSet::new();
        assert_eq!(
            net.allocate(&used, Some(&range)),
            Some(Ipv4Addr::new(10, 0, 0, 4))
        );
    }

    #[test]
    fn a_new_subnet_overlaps_nothing_taken() {
        let first = pick_subnet(&[]).unwrap();
        assert_eq!(first.to_string(), "10.210.0.0/24");
        let next = pick_subnet(&[first, s("10.210.1.128/25")]).unwrap();
        assert_eq!(next.to_string(), "10.210.2.0/24");
        assert!(pick_subnet(&[s("10.0.0.0/8")]).is_none());
        assert!(s("10.0.0.0/8").overlaps(&s("10.210.3.0/24")));
        assert!(!s("10.210.3.0/24").overlaps(&s("10.210.4.0/24")));
    }
}
