//! A network: one subnet on one virtual switch (a Linux bridge on each host).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::{ipam, names, ModelError};

pub const DEFAULT_MTU: u32 = 1500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// Containers of this host on a Linux bridge (the seed's docker0).
    Bridge,
    /// One L2 segment across hosts: a bridge per host joined by VXLAN.
    Overlay,
}

impl std::fmt::Display for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Driver::Bridge => "bridge",
            Driver::Overlay => "overlay",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub name: String,
    pub driver: Driver,
    pub bridge: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet6: Option<Ipv6Net>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<Ipv6Addr>,
    pub mtu: u32,
    /// No route out of the host and no NAT: containers reach only each other.
    pub internal: bool,
    /// Containers may open connections to other open networks' containers
    /// (Podman's networks without `isolate`); weft's own networks are
    /// isolated from every other network.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub open: bool,
    /// VXLAN network identifier (overlay networks only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    /// Seconds since the Unix epoch.
    pub created: u64,
}

/// VXLAN costs 50 bytes of the underlay's 1500 (outer Ethernet, IP, UDP, VXLAN).
pub const VXLAN_OVERHEAD: u32 = 50;
pub const DEFAULT_OVERLAY_MTU: u32 = DEFAULT_MTU - VXLAN_OVERHEAD;
/// VNIs are 24 bits.
pub const MAX_VNI: u32 = (1 << 24) - 1;

/// What a user asks for; [`NetworkSpec::build`] checks it and fills defaults.
#[derive(Debug, Clone, Default)]
pub struct NetworkSpec {
    pub name: String,
    pub subnet: Option<Ipv4Net>,
    pub gateway: Option<Ipv4Addr>,
    pub subnet6: Option<Ipv6Net>,
    pub gateway6: Option<Ipv6Addr>,
    pub mtu: Option<u32>,
    pub bridge: Option<String>,
    pub internal: bool,
    /// See [`Network::open`]; never for an internal network.
    pub open: bool,
    pub driver: Option<Driver>,
    pub vni: Option<u32>,
}

pub fn check_network_name(name: &str) -> Result<(), ModelError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ModelError::BadNetworkName(name.to_string()))
    }
}

impl NetworkSpec {
    /// Validates everything that needs no outside knowledge. `subnet` is the
    /// requested one or the one the caller picked from the pool.
    pub fn build(&self, subnet: Ipv4Net, created: u64) -> Result<Network, ModelError> {
        check_network_name(&self.name)?;
        check_canonical(IpNet::V4(subnet))?;
        check_not_reserved(IpNet::V4(subnet))?;
        let gateway = match self.gateway {
            Some(g) => {
                check_gateway(IpAddr::V4(g), IpNet::V4(subnet))?;
                g
            }
            None => ipam::first_host_v4(subnet)
                .ok_or_else(|| ModelError::SubnetTooSmall(subnet.to_string()))?,
        };
        if ipam::capacity(IpNet::V4(subnet)) < 2 {
            return Err(ModelError::SubnetTooSmall(subnet.to_string()));
        }
        let (subnet6, gateway6) = match self.subnet6 {
            Some(s6) => {
                check_canonical(IpNet::V6(s6))?;
                check_not_reserved(IpNet::V6(s6))?;
                if s6.prefix_len() > 126 {
                    return Err(ModelError::SubnetTooSmall(s6.to_string()));
                }
                let g6 = match self.gateway6 {
                    Some(g) => {
                        check_gateway(IpAddr::V6(g), IpNet::V6(s6))?;
                        g
                    }
                    None => Ipv6Addr::from(u128::from(s6.network()) + 1),
                };
                (Some(s6), Some(g6))
            }
            None => (None, None),
        };
        let driver = self.driver.unwrap_or(Driver::Bridge);
        let vni = match (driver, self.vni) {
            (Driver::Bridge, None) => None,
            (Driver::Bridge, Some(_)) => return Err(ModelError::VniWithoutOverlay),
            (Driver::Overlay, Some(v)) if v == 0 || v > MAX_VNI => {
                return Err(ModelError::BadVni(v));
            }
            (Driver::Overlay, Some(v)) => Some(v),
            // A stable default, so that the same name gives the same VNI.
            (Driver::Overlay, None) => {
                Some((names::stable_hash(&["vni", &self.name]) % u64::from(MAX_VNI - 1)) as u32 + 1)
            }
        };
        let default_mtu = match driver {
            Driver::Bridge => DEFAULT_MTU,
            Driver::Overlay => DEFAULT_OVERLAY_MTU,
        };
        let mtu = self.mtu.unwrap_or(default_mtu);
        if !(576..=65535).contains(&mtu) {
            return Err(ModelError::BadMtu(mtu));
        }
        let bridge = match &self.bridge {
            Some(b) => {
                names::check_ifname(b)?;
                b.clone()
            }
            None => names::default_bridge_name(&self.name),
        };
        Ok(Network {
            name: self.name.clone(),
            driver,
            vni,
            bridge,
            subnet,
            gateway,
            subnet6,
            gateway6,
            mtu,
            internal: self.internal,
            open: self.open && !self.internal,
            created,
        })
    }
}

fn check_canonical(net: IpNet) -> Result<(), ModelError> {
    if net.addr() != net.network() {
        return Err(ModelError::SubnetNotCanonical(net.to_string(), net.trunc().to_string()));
    }
    Ok(())
}

/// Ranges that must never be a network: a bridge address there would
/// shadow the host's loopback, "this network", link-local (cloud metadata
/// services live at 169.254.169.254), multicast or reserved space.
const RESERVED: [(&str, &str); 10] = [
    ("0.0.0.0/8", "\"this network\""),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved for future use and broadcast"),
    ("::/127", "the unspecified and loopback addresses"),
    ("::ffff:0:0/96", "IPv4-mapped addresses"),
    ("fe80::/10", "link-local"),
    ("ff00::/8", "multicast"),
    ("fec0::/10", "deprecated site-local"),
];

fn check_not_reserved(net: IpNet) -> Result<(), ModelError> {
    for (range, what) in RESERVED {
        let r: IpNet = range.parse().expect("valid reserved range");
        let overlaps = match (net, r) {
            (IpNet::V4(_), IpNet::V4(_)) | (IpNet::V6(_), IpNet::V6(_)) => {
                r.contains(&net.network()) || net.contains(&r.network())
            }
            _ => false,
        };
        if overlaps {
            return Err(ModelError::ReservedSubnet(net.to_string(), range, what));
        }
    }
    Ok(())
}

fn check_gateway(gateway: IpAddr, subnet: IpNet) -> Result<(), ModelError> {
    if !subnet.contains(&gateway) {
        return Err(ModelError::GatewayOutsideSubnet {
            gateway: gateway.to_string(),
            subnet: subnet.to_string(),
        });
    }
    if !ipam::is_host_address(subnet, gateway) {
        return Err(ModelError::GatewayReserved(gateway.to_string()));
    }
    Ok(())
}

impl Network {
    /// The gateway with the subnet's prefix, as it sits on the bridge.
    pub fn gateway_cidr(&self) -> Ipv4Net {
        Ipv4Net::new(self.gateway, self.subnet.prefix_len()).expect("prefix of a valid subnet")
    }

    pub fn gateway6_cidr(&self) -> Option<Ipv6Net> {
        let (s, g) = (self.subnet6?, self.gateway6?);
        Ipv6Net::new(g, s.prefix_len()).ok()
    }

    /// Where the network's containers send DNS queries: its gateways, which
    /// `weft dns` answers on (also on `--internal` networks, whose
    /// containers have no default route through them).
    pub fn nameservers(&self) -> Vec<String> {
        std::iter::once(IpAddr::V4(self.gateway))
            .chain(self.gateway6.map(IpAddr::V6))
            .map(|g| g.to_string())
            .collect()
    }

    /// Both subnets, for overlap checks.
    pub fn subnets(&self) -> Vec<IpNet> {
        let mut v = vec![IpNet::V4(self.subnet)];
        v.extend(self.subnet6.map(IpNet::V6));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> NetworkSpec {
        NetworkSpec { name: name.into(), ..Default::default() }
    }

    #[test]
    fn defaults() {
        let n = spec("front").build("172.30.0.0/16".parse().unwrap(), 0).unwrap();
        assert_eq!(n.gateway, "172.30.0.1".parse::<Ipv4Addr>().unwrap());
        assert_eq!(n.bridge, "weft-front");
        assert_eq!(n.mtu, 1500);
        assert_eq!(n.gateway_cidr().to_string(), "172.30.0.1/16");
    }

    #[test]
    fn nameservers_are_the_gateways() {
        let n = spec("front").build("172.30.0.0/16".parse().unwrap(), 0).unwrap();
        assert_eq!(n.nameservers(), ["172.30.0.1"]);
        let mut sp = spec("dual");
        sp.subnet6 = Some("fd00:30::/64".parse().unwrap());
        let n = sp.build("172.31.0.0/16".parse().unwrap(), 0).unwrap();
        assert_eq!(n.nameservers(), ["172.31.0.1", "fd00:30::1"]);
    }

    #[test]
    fn rejects_bad_input() {
        let s: Ipv4Net = "10.1.0.0/24".parse().unwrap();
        let mut sp = spec("n");
        sp.gateway = Some("10.2.0.1".parse().unwrap());
        assert!(matches!(sp.build(s, 0), Err(ModelError::GatewayOutsideSubnet { .. })));
        sp.gateway = Some("10.1.0.255".parse().unwrap());
        assert!(matches!(sp.build(s, 0), Err(ModelError::GatewayReserved(_))));
        let mut sp = spec("n");
        sp.bridge = Some("a-bridge-name-too-long".into());
        assert!(matches!(sp.build(s, 0), Err(ModelError::BadIfname(..))));
        assert!(spec("bad name").build(s, 0).is_err());
        assert!(spec("n").build("10.1.0.1/24".parse().unwrap(), 0).is_err());
        assert!(spec("n").build("10.1.0.0/31".parse().unwrap(), 0).is_err());
        for bad in ["127.0.0.0/24", "0.0.0.0/8", "169.254.0.0/16", "224.1.0.0/24", "240.0.0.0/4"] {
            let e = spec("n").build(bad.parse().unwrap(), 0).unwrap_err();
            assert!(matches!(e, ModelError::ReservedSubnet(..)), "{bad}: {e}");
        }
        // Wider than a reserved range counts too: 0.0.0.0/1 holds 127/8.
        assert!(spec("n").build("0.0.0.0/1".parse().unwrap(), 0).is_err());
        for bad in ["::/64", "::1/128", "fe80::/64", "ff02::/16", "::ffff:0:0/104"] {
            let mut sp = spec("n");
            sp.subnet6 = Some(bad.parse().unwrap());
            let e = sp.build(s, 0).unwrap_err();
            assert!(matches!(e, ModelError::ReservedSubnet(..)), "{bad}: {e}");
        }
        let mut sp = spec("n");
        sp.subnet6 = Some("fd00:1::/64".parse().unwrap());
        assert!(sp.build("100.64.0.0/24".parse().unwrap(), 0).is_ok());
        let mut sp = spec("n");
        sp.mtu = Some(100);
        assert_eq!(sp.build(s, 0), Err(ModelError::BadMtu(100)));
    }

    #[test]
    fn json_field_names_are_stable() {
        let n = spec("front").build("172.30.0.0/16".parse().unwrap(), 0).unwrap();
        let v = serde_json::to_value(&n).unwrap();
        for k in ["name", "driver", "subnet", "gateway", "bridge", "mtu", "internal"] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        assert_eq!(v["driver"], "bridge");
        assert_eq!(v["subnet"], "172.30.0.0/16");
    }
}
