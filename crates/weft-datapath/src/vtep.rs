//! A VXLAN device's own forwarding table: which remote VTEP (underlay
//! address) each MAC is sent to, what `bridge fdb show dev vx-NET self`
//! prints as `dst`.
//!
//! In AF_BRIDGE dumps netlink-packet-route leaves NDA_DST unparsed
//! (`NeighbourAddress::Other`); [`neighbour_ip`] reads it by length.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use weft_model::Mac;

use crate::error::{OpContext, Result};
use crate::netlink::Netlink;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VtepEntry {
    pub mac: Mac,
    pub vtep: IpAddr,
}

impl Netlink {
    /// The entries of device `index`'s own table (NTF_SELF) that name a
    /// remote VTEP.
    pub fn vteps(&mut self, index: u32) -> Result<Vec<VtepEntry>> {
        let mut req = NeighbourMessage::default();
        req.header.family = AddressFamily::Bridge;
        let v = self
            .dump(RouteNetlinkMessage::GetNeighbour(req))
            .op(|| "list VXLAN forwarding entries".into())?;
        let mut out = Vec::new();
        for m in v {
            let RouteNetlinkMessage::NewNeighbour(n) = m else { continue };
            if n.header.ifindex != index || !n.header.flags.contains(NeighbourFlags::Own) {
                continue;
            }
            let mut mac = None;
            let mut vtep = None;
            for a in &n.attributes {
                match a {
                    NeighbourAttribute::LinkLayerAddress(b) if b.len() == 6 => {
                        mac = Some(Mac([b[0], b[1], b[2], b[3], b[4], b[5]]))
                    }
                    NeighbourAttribute::Destination(d) => vtep = neighbour_ip(d),
                    _ => {}
                }
            }
            if let (Some(mac), Some(vtep)) = (mac, vtep) {
                out.push(VtepEntry { mac, vtep });
            }
        }
        Ok(out)
    }
}

/// An NDA_DST address, also when the message family left it raw.
pub fn neighbour_ip(a: &NeighbourAddress) -> Option<IpAddr> {
    match a {
        NeighbourAddress::Inet(v) => Some(IpAddr::V4(*v)),
        NeighbourAddress::Inet6(v) => Some(IpAddr::V6(*v)),
        NeighbourAddress::Other(b) => match b.len() {
            4 => Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
            16 => {
                let mut o = [0u8; 16];
                o.copy_from_slice(b);
                Some(IpAddr::V6(Ipv6Addr::from(o)))
            }
            _ => None,
        },
        _ => None,
    }
}
