//! `network create`: what a front end asks for, and the rules about it that need no
//! state (the subnet's overlap with other networks and a name in use are the create's
//! to check).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use berth_net::firewall::BRIDGE_PREFIX;
use berth_net::ipam::Subnet;

use crate::error::{EngineError, Result};

/// The driver option that sets the bridge's MTU.
pub const MTU_OPTION: &str = "com.docker.network.driver.mtu";
/// The driver option that names the bridge.
pub const BRIDGE_NAME_OPTION: &str = "com.docker.network.bridge.name";

/// What `network create` asks for.
#[derive(Debug, Clone, Default)]
pub struct NetworkSpec {
    pub name: String,
    pub driver: Option<String>,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
    pub internal: bool,
    /// `--ipv6` / `EnableIPv6` / compose's `enable_ipv6`
    pub ipv6: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

fn invalid(msg: impl Into<String>) -> EngineError {
    EngineError::Invalid(msg.into())
}

impl NetworkSpec {
    /// Docker's rules for a network that need nothing but the request.
    pub fn validate(&self) -> Result<()> {
        let driver = self.driver.as_deref().unwrap_or("bridge");
        if driver != "bridge" {
            return Err(EngineError::NotImplemented(format!(
                "network driver {driver:?} is not implemented yet (bridge is)"
            )));
        }
        if self.ipv6 {
            return Err(EngineError::NotImplemented(
                "IPv6 is not implemented yet in berth".into(),
            ));
        }
        let name_ok = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "_.-".contains(ch));
        if !name_ok {
            return Err(invalid(format!(
                "invalid network name {:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed",
                self.name
            )));
        }
        let subnet = self.subnet().transpose()?;
        if let Some(s) = subnet.filter(|s| s.prefix > 30) {
            return Err(invalid(format!("subnet {s} is too small for a network")));
        }
        if let Some(g) = self.gateway().transpose()? {
            if subnet.is_some_and(|s| !s.contains(g)) {
                return Err(invalid(format!("no matching subnet for gateway {g}")));
            }
        }
        if let Some(r) = self.ip_range().transpose()? {
            if subnet.is_some_and(|s| !s.contains(r.addr) || r.prefix < s.prefix) {
                return Err(invalid(format!("no matching subnet for range {r}")));
            }
        }
        if let Some(b) = self.options.get(BRIDGE_NAME_OPTION) {
            if !b.starts_with(BRIDGE_PREFIX) || b.len() > 15 {
                return Err(invalid(format!(
                    "bridge name {b:?}: berth's bridges are named {BRIDGE_PREFIX}… (at most 15 characters)"
                )));
            }
        }
        self.mtu()?;
        Ok(())
    }

    /// The subnet asked for, if any.
    pub fn subnet(&self) -> Option<Result<Subnet>> {
        self.subnet
            .as_ref()
            .map(|s| s.parse::<Subnet>().map_err(invalid))
    }

    /// The gateway asked for, if any.
    pub fn gateway(&self) -> Option<Result<Ipv4Addr>> {
        self.gateway.as_ref().map(|g| {
            g.parse()
                .map_err(|_| invalid(format!("invalid gateway {g}")))
        })
    }

    /// The range containers' addresses come from, if one is asked for.
    pub fn ip_range(&self) -> Option<Result<Subnet>> {
        self.ip_range
            .as_ref()
            .map(|r| r.parse::<Subnet>().map_err(invalid))
    }

    /// The MTU option, if given: a number from 68 to 65535.
    pub fn mtu(&self) -> Result<Option<u32>> {
        let Some(m) = self.options.get(MTU_OPTION) else {
            return Ok(None);
        };
        m.parse::<u32>()
            .ok()
            .filter(|m| (68..=65535).contains(m))
            .map(Some)
            .ok_or_else(|| {
                invalid(format!(
                    "invalid {MTU_OPTION} {m:?}: a number from 68 to 65535"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorClass;

    fn spec(f: impl FnOnce(&mut NetworkSpec)) -> NetworkSpec {
        let mut s = NetworkSpec {
            name: "shop".into(),
            ..Default::default()
        };
        f(&mut s);
        s
    }

    #[test]
    fn network_rules_refuse_with_dockers_words_and_classes() {
        spec(|_| {}).validate().unwrap();
        spec(|s| {
            s.subnet = Some("10.9.0.0/24".into());
            s.gateway = Some("10.9.0.1".into());
            s.ip_range = Some("10.9.0.128/25".into());
            s.options.insert(MTU_OPTION.into(), "1400".into());
        })
        .validate()
        .unwrap();
        let refused = |s: NetworkSpec| {
            let e = s.validate().unwrap_err();
            (e.class(), e.to_string())
        };
        let invalid = |m: &str| (ErrorClass::InvalidArgument, m.to_string());
        assert_eq!(
            refused(spec(|s| s.driver = Some("overlay".into()))),
            (
                ErrorClass::NotImplemented,
                "network driver \"overlay\" is not implemented yet (bridge is)".into()
            )
        );
        assert_eq!(
            refused(spec(|s| s.ipv6 = true)).0,
            ErrorClass::NotImplemented
        );
        assert_eq!(
            refused(spec(|s| s.name = "a b".into())),
            invalid("invalid network name \"a b\": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        );
        assert_eq!(
            refused(spec(|s| s.subnet = Some("10.9.0.0/31".into()))),
            invalid("subnet 10.9.0.0/31 is too small for a network")
        );
        assert_eq!(
            refused(spec(|s| {
                s.subnet = Some("10.9.0.0/24".into());
                s.gateway = Some("10.8.0.1".into());
            })),
            invalid("no matching subnet for gateway 10.8.0.1")
        );
        assert_eq!(
            refused(spec(|s| s.gateway = Some("nope".into()))),
            invalid("invalid gateway nope")
        );
        assert_eq!(
            refused(spec(|s| {
                s.options.insert(MTU_OPTION.into(), "9".into());
            }))
            .0,
            ErrorClass::InvalidArgument
        );
        assert_eq!(
            refused(spec(|s| {
                s.options
                    .insert(BRIDGE_NAME_OPTION.into(), "docker0".into());
            }))
            .0,
            ErrorClass::InvalidArgument
        );
    }
}
