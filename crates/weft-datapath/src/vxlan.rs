//! The overlay's kernel side: a VXLAN device per network, plugged into the
//! network's bridge, with static forwarding and neighbour entries for every
//! remote container, so that nothing is flooded or learned: ARP for a
//! remote container is answered by the VXLAN device itself (proxy mode).

use std::net::IpAddr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use weft_model::Mac;

use crate::bridge::is_weft_link;
use crate::error::{DatapathError, OpContext, Result};
use crate::link::{link_message, up_flags, Link};
use crate::netlink::Netlink;

/// The IANA VXLAN port.
pub const VXLAN_PORT: u16 = 4789;

pub struct VxlanSpec<'a> {
    pub name: &'a str,
    pub alias: &'a str,
    pub vni: u32,
    /// This host's underlay address: the source of encapsulated packets.
    pub local: IpAddr,
    /// The underlay interface carrying them.
    pub underlay_index: u32,
    pub mtu: u32,
    pub mac: Mac,
}

/// Makes sure the VXLAN device exists (learning off, ARP/ND proxy on), is a
/// port of `bridge_index`, and is up. Returns the device.
pub fn ensure_vxlan(nl: &mut Netlink, spec: &VxlanSpec, bridge_index: u32) -> Result<Link> {
    let link = match nl.link_by_name(spec.name)? {
        Some(l) if is_weft_link(&l) && l.kind.as_deref() == Some("vxlan") => l,
        Some(_) => return Err(DatapathError::ForeignLink { name: spec.name.to_string() }),
        None => {
            let mut info = vec![
                InfoVxlan::Id(spec.vni),
                InfoVxlan::Link(spec.underlay_index),
                InfoVxlan::Port(VXLAN_PORT),
                InfoVxlan::Learning(false),
                InfoVxlan::Proxy(true),
            ];
            match spec.local {
                IpAddr::V4(a) => info.push(InfoVxlan::Local(a)),
                IpAddr::V6(a) => info.push(InfoVxlan::Local6(a)),
            }
            let mut m = LinkMessage::default();
            m.attributes.push(LinkAttribute::IfName(spec.name.to_string()));
            m.attributes.push(LinkAttribute::Address(spec.mac.0.to_vec()));
            m.attributes.push(LinkAttribute::Mtu(spec.mtu));
            m.attributes.push(LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Vxlan),
                LinkInfo::Data(InfoData::Vxlan(info)),
            ]));
            nl.exec(RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL)
                .op(|| format!("create VXLAN device {} (VNI {})", spec.name, spec.vni))?;
            let l = nl.link_by_name(spec.name)?.ok_or_else(|| {
                DatapathError::Other(format!("VXLAN device {} vanished after creation", spec.name))
            })?;
            if let Err(e) = nl.set_alias(l.index, spec.name, spec.alias) {
                let _ = nl.delete_link(l.index, spec.name);
                return Err(e);
            }
            l
        }
    };
    if link.master != Some(bridge_index) {
        nl.set_master(link.index, spec.name, bridge_index)?;
    }
    if !link.up {
        let mut m = link_message(link.index);
        up_flags(&mut m);
        nl.exec(RouteNetlinkMessage::SetLink(m), 0).op(|| format!("bring {} up", spec.name))?;
    }
    Ok(link)
}

fn neighbour(family: AddressFamily, ifindex: u32, flags: NeighbourFlags) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = family;
    m.header.ifindex = ifindex;
    m.header.state = NeighbourState::Noarp;
    m.header.flags = flags;
    m
}

fn neigh_addr(ip: IpAddr) -> NeighbourAddress {
    match ip {
        IpAddr::V4(v) => NeighbourAddress::Inet(v),
        IpAddr::V6(v) => NeighbourAddress::Inet6(v),
    }
}

fn family_of(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// What one remote container needs on this host: the bridge sends its MAC
/// to the VXLAN port, the VXLAN device sends it to the remote VTEP, and the
/// VXLAN device answers ARP/ND for its IPs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RemoteEntry {
    pub mac: Mac,
    pub ips: Vec<IpAddr>,
    pub vtep: IpAddr,
}

pub fn add_remote(nl: &mut Netlink, vxlan: u32, e: &RemoteEntry) -> Result<()> {
    // VXLAN's own table: MAC -> remote VTEP.
    let mut m = neighbour(AddressFamily::Bridge, vxlan, NeighbourFlags::Own);
    m.header.state = NeighbourState::Permanent;
    m.attributes.push(NeighbourAttribute::LinkLayerAddress(e.mac.0.to_vec()));
    m.attributes.push(NeighbourAttribute::Destination(neigh_addr(e.vtep)));
    nl.exec(RouteNetlinkMessage::NewNeighbour(m), NLM_F_CREATE | NLM_F_REPLACE)
        .op(|| format!("add VXLAN FDB entry {} -> {}", e.mac, e.vtep))?;
    // The bridge's table: MAC -> the VXLAN port, static, so that the first
    // frame is not flooded to every local port.
    let mut m = neighbour(AddressFamily::Bridge, vxlan, NeighbourFlags::Controller);
    m.attributes.push(NeighbourAttribute::LinkLayerAddress(e.mac.0.to_vec()));
    nl.exec(RouteNetlinkMessage::NewNeighbour(m), NLM_F_CREATE | NLM_F_REPLACE)
        .op(|| format!("add bridge FDB entry {} -> VXLAN port", e.mac))?;
    for ip in &e.ips {
        let mut m = neighbour(family_of(*ip), vxlan, NeighbourFlags::empty());
        m.header.state = NeighbourState::Permanent;
        m.attributes.push(NeighbourAttribute::Destination(neigh_addr(*ip)));
        m.attributes.push(NeighbourAttribute::LinkLayerAddress(e.mac.0.to_vec()));
        nl.exec(RouteNetlinkMessage::NewNeighbour(m), NLM_F_CREATE | NLM_F_REPLACE)
            .op(|| format!("add neighbour {ip} -> {}", e.mac))?;
    }
    Ok(())
}

/// Removes what [`add_remote`] added; entries already gone are fine.
pub fn remove_remote(nl: &mut Netlink, vxlan: u32, e: &RemoteEntry) -> Result<()> {
    let gone = |r: std::io::Result<()>| match r {
        Err(err) if matches!(err.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENODEV)) => Ok(()),
        r => r,
    };
    for ip in &e.ips {
        let mut m = neighbour(family_of(*ip), vxlan, NeighbourFlags::empty());
        m.attributes.push(NeighbourAttribute::Destination(neigh_addr(*ip)));
        gone(nl.exec(RouteNetlinkMessage::DelNeighbour(m), 0))
            .op(|| format!("delete neighbour {ip}"))?;
    }
    let mut m = neighbour(AddressFamily::Bridge, vxlan, NeighbourFlags::Controller);
    m.attributes.push(NeighbourAttribute::LinkLayerAddress(e.mac.0.to_vec()));
    gone(nl.exec(RouteNetlinkMessage::DelNeighbour(m), 0))
        .op(|| format!("delete bridge FDB entry {}", e.mac))?;
    let mut m = neighbour(AddressFamily::Bridge, vxlan, NeighbourFlags::Own);
    m.attributes.push(NeighbourAttribute::LinkLayerAddress(e.mac.0.to_vec()));
    m.attributes.push(NeighbourAttribute::Destination(neigh_addr(e.vtep)));
    gone(nl.exec(RouteNetlinkMessage::DelNeighbour(m), 0))
        .op(|| format!("delete VXLAN FDB entry {}", e.mac))?;
    Ok(())
}

/// The remote entries currently programmed on a VXLAN device, grouped per
/// MAC, for level-triggered reconciliation.
pub fn remotes(nl: &mut Netlink, vxlan: u32) -> Result<Vec<RemoteEntry>> {
    let fdb = nl.fdb()?;
    let neigh = nl.neighbours()?;
    let mut out: Vec<RemoteEntry> = fdb
        .iter()
        .filter(|f| f.port == vxlan && f.own)
        .filter_map(|f| Some(RemoteEntry { mac: f.mac, ips: Vec::new(), vtep: f.dst? }))
        .collect();
    for n in neigh.iter().filter(|n| n.ifindex == vxlan && n.state == "PERMANENT") {
        let Some(mac) = n.mac else { continue };
        match out.iter_mut().find(|e| e.mac == mac) {
            Some(e) => e.ips.push(n.ip),
            // A neighbour without its FDB entry (half-removed): reported
            // with an unspecified VTEP so reconciliation deletes it.
            None => out.push(RemoteEntry {
                mac,
                ips: vec![n.ip],
                vtep: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            }),
        }
    }
    for e in &mut out {
        e.ips.sort();
    }
    out.sort();
    Ok(out)
}
