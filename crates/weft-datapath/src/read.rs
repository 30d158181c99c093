//! Reading kernel state back: addresses, routes, neighbours (ARP/NDP) and
//! the bridge forwarding database. Used to choose free subnets, by `weft
//! demo` and inspect, and by tests that check what was really built.

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{RouteAttribute, RouteHeader, RouteMessage, RouteScope};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use weft_model::Mac;

use crate::error::{OpContext, Result};
use crate::link::route_addr_to_ip;
use crate::netlink::Netlink;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub ifindex: u32,
    pub addr: IpNet,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `0.0.0.0/0` or `::/0` for a default route.
    pub dest: IpNet,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    pub scope_link: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    pub ifindex: u32,
    pub ip: IpAddr,
    pub mac: Option<Mac>,
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdbEntry {
    pub mac: Mac,
    /// The bridge port (or device) the MAC was learned on.
    pub port: u32,
    /// The bridge, when the entry is in a bridge's table.
    pub bridge: Option<u32>,
    /// The bridge's or port's own address, not a learned one.
    pub local: bool,
    /// Static (NUD_NOARP/PERMANENT entries weft adds), not learned.
    pub permanent: bool,
    /// An entry of the device's own table (NTF_SELF), e.g. a VXLAN
    /// device's MAC -> remote VTEP entries.
    pub own: bool,
    /// Remote VTEP of a VXLAN FDB entry.
    pub dst: Option<IpAddr>,
}

impl Netlink {
    pub fn addresses(&mut self) -> Result<Vec<Address>> {
        let v = self
            .dump(RouteNetlinkMessage::GetAddress(AddressMessage::default()))
            .op(|| "list addresses".into())?;
        let mut out = Vec::new();
        for m in v {
            let RouteNetlinkMessage::NewAddress(a) = m else { continue };
            let ip = a.attributes.iter().find_map(|x| match x {
                AddressAttribute::Local(ip) => Some(*ip),
                _ => None,
            });
            let ip = ip.or_else(|| {
                a.attributes.iter().find_map(|x| match x {
                    AddressAttribute::Address(ip) => Some(*ip),
                    _ => None,
                })
            });
            if let Some(ip) = ip {
                if let Ok(addr) = IpNet::new(ip, a.header.prefix_len) {
                    out.push(Address { ifindex: a.header.index, addr });
                }
            }
        }
        Ok(out)
    }

    /// Unicast routes of the main table, both families.
    pub fn routes(&mut self) -> Result<Vec<Route>> {
        let mut out = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut req = RouteMessage::default();
            req.header.address_family = family;
            let v = self.dump(RouteNetlinkMessage::GetRoute(req)).op(|| "list routes".into())?;
            for m in v {
                let RouteNetlinkMessage::NewRoute(r) = m else { continue };
                if r.header.table != RouteHeader::RT_TABLE_MAIN {
                    continue;
                }
                let mut dest = None;
                let mut gateway = None;
                let mut oif = None;
                for a in &r.attributes {
                    match a {
                        RouteAttribute::Destination(d) => dest = route_addr_to_ip(d),
                        RouteAttribute::Gateway(g) => gateway = route_addr_to_ip(g),
                        RouteAttribute::Oif(i) => oif = Some(*i),
                        _ => {}
                    }
                }
                let zero: IpAddr = match family {
                    AddressFamily::Inet => [0u8; 4].into(),
                    _ => [0u8; 16].into(),
                };
                let Ok(dest) = IpNet::new(dest.unwrap_or(zero), r.header.destination_prefix_length)
                else {
                    continue;
                };
                out.push(Route {
                    dest,
                    gateway,
                    oif,
                    scope_link: r.header.scope == RouteScope::Link,
                });
            }
        }
        Ok(out)
    }

    /// ARP and NDP entries.
    pub fn neighbours(&mut self) -> Result<Vec<Neighbour>> {
        let mut out = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut req = NeighbourMessage::default();
            req.header.family = family;
            let v = self
                .dump(RouteNetlinkMessage::GetNeighbour(req))
                .op(|| "list neighbours".into())?;
            for m in v {
                let RouteNetlinkMessage::NewNeighbour(n) = m else { continue };
                let mut ip = None;
                let mut mac = None;
                for a in &n.attributes {
                    match a {
                        NeighbourAttribute::Destination(NeighbourAddress::Inet(v)) => {
                            ip = Some(IpAddr::V4(*v))
                        }
                        NeighbourAttribute::Destination(NeighbourAddress::Inet6(v)) => {
                            ip = Some(IpAddr::V6(*v))
                        }
                        NeighbourAttribute::LinkLayerAddress(b) => mac = mac_of(b),
                        _ => {}
                    }
                }
                if let Some(ip) = ip {
                    out.push(Neighbour {
                        ifindex: n.header.ifindex,
                        ip,
                        mac,
                        state: state_name(n.header.state),
                    });
                }
            }
        }
        Ok(out)
    }

    /// The bridge forwarding database (what `bridge fdb show` prints).
    pub fn fdb(&mut self) -> Result<Vec<FdbEntry>> {
        let mut req = NeighbourMessage::default();
        req.header.family = AddressFamily::Bridge;
        let v =
            self.dump(RouteNetlinkMessage::GetNeighbour(req)).op(|| "list bridge FDB".into())?;
        let mut out = Vec::new();
        for m in v {
            let RouteNetlinkMessage::NewNeighbour(n) = m else { continue };
            let mut mac = None;
            let mut bridge = None;
            let mut dst = None;
            for a in &n.attributes {
                match a {
                    NeighbourAttribute::LinkLayerAddress(b) => mac = mac_of(b),
                    NeighbourAttribute::Controller(i) => bridge = Some(*i),
                    // AF_BRIDGE dumps leave NDA_DST raw; read it by length.
                    NeighbourAttribute::Destination(a) => dst = crate::vtep::neighbour_ip(a),
                    _ => {}
                }
            }
            if let Some(mac) = mac {
                let own = n.header.flags.contains(NeighbourFlags::Own);
                let permanent =
                    matches!(n.header.state, NeighbourState::Permanent | NeighbourState::Noarp);
                out.push(FdbEntry {
                    mac,
                    port: n.header.ifindex,
                    bridge,
                    // Bridge entries for its own ports' addresses are permanent
                    // and not "self"; static entries weft adds are NOARP.
                    local: n.header.state == NeighbourState::Permanent && !own,
                    permanent,
                    own,
                    dst,
                });
            }
        }
        Ok(out)
    }
}

fn mac_of(b: &[u8]) -> Option<Mac> {
    (b.len() == 6).then(|| Mac([b[0], b[1], b[2], b[3], b[4], b[5]]))
}

fn state_name(s: NeighbourState) -> String {
    match s {
        NeighbourState::Incomplete => "INCOMPLETE",
        NeighbourState::Reachable => "REACHABLE",
        NeighbourState::Stale => "STALE",
        NeighbourState::Delay => "DELAY",
        NeighbourState::Probe => "PROBE",
        NeighbourState::Failed => "FAILED",
        NeighbourState::Noarp => "NOARP",
        NeighbourState::Permanent => "PERMANENT",
        _ => "NONE",
    }
    .to_string()
}
