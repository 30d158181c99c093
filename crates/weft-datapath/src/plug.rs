//! Plugging a container into a bridge: the seed's veth pair, addresses and
//! routes. All-or-nothing: on any failure the veth pair is deleted, which
//! also removes everything configured on its container end.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoData, InfoKind, InfoVeth, LinkAttribute,
    LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::RouteNetlinkMessage;
use weft_model::Mac;

use crate::error::{DatapathError, OpContext, Result};
use crate::link::up_flags;
use crate::netlink::Netlink;
use crate::netns::Netns;

/// Ports a Linux bridge can have (`BR_MAX_PORTS` - 1).
pub const MAX_BRIDGE_PORTS: usize = 1023;

pub struct PlugSpec<'a> {
    /// Index of the network's bridge in the host namespace.
    pub bridge_index: u32,
    pub host_veth: &'a str,
    /// IFLA_IFALIAS of the host end: says which endpoint it belongs to.
    pub alias: &'a str,
    pub ifname: &'a str,
    pub mac: Mac,
    /// MAC of the host end.
    pub host_mac: Mac,
    pub mtu: u32,
    pub address: Ipv4Net,
    pub address6: Option<Ipv6Net>,
    pub gateway: Option<Ipv4Addr>,
    pub gateway6: Option<Ipv6Addr>,
}

/// Creates the veth pair with its host end up in the bridge and its other
/// end already inside the container namespace under its final name, then
/// configures the container side: lo up, addresses, default routes. The
/// subnet route is the kernel's own prefix route of the address (scope
/// link, no gateway), as in the seed.
pub fn plug(host: &mut Netlink, netns: &Netns, spec: &PlugSpec) -> Result<()> {
    if let Err(e) = create_veth(host, netns, spec, spec.bridge_index) {
        // A pair this endpoint left behind (retired by a detach a moment
        // ago and not yet reaped, or leaked by a crash) holds the names:
        // delete it now and try once more.
        if !matches!(e, DatapathError::Exists(_)) || !remove_leftover(host, spec)? {
            return Err(e);
        }
        create_veth(host, netns, spec, spec.bridge_index)?;
    }
    let configured = (|| {
        finish_host_end(host, spec)?;
        let mut ns = netns.netlink()?;
        configure_container(&mut ns, spec)
    })();
    if let Err(e) = configured {
        let _ = unplug(host, spec.host_veth);
        return Err(e);
    }
    Ok(())
}

/// Deletes the host link named like this endpoint's veth if it is a weft
/// veth that no live endpoint owns: retired, or carrying this endpoint's
/// own alias (the caller holds the endpoint's record, so the pair is a
/// leftover). Returns whether something was deleted.
fn remove_leftover(host: &mut Netlink, spec: &PlugSpec) -> Result<bool> {
    let Some(link) = host.link_by_name(spec.host_veth)? else {
        return Ok(false);
    };
    let alias = link.alias.as_deref().unwrap_or_default();
    if alias != RETIRED_ALIAS && alias != spec.alias {
        return Ok(false);
    }
    delete_index(host, link.index)?;
    Ok(true)
}

/// Creates the veth pair with its host end up in the bridge and its other
/// end left in the host namespace, unconfigured, under `spec.ifname`: for a
/// runtime that moves and configures the container end itself (Docker's
/// remote driver protocol). All-or-nothing like [`plug`].
pub fn plug_unmoved(host: &mut Netlink, spec: &PlugSpec) -> Result<()> {
    let created = match create_veth_in(host, None, spec, spec.bridge_index) {
        Err(e) if matches!(e, DatapathError::Exists(_)) && remove_leftover(host, spec)? => {
            create_veth_in(host, None, spec, spec.bridge_index)
        }
        r => r,
    };
    created?;
    if let Err(e) = finish_host_end(host, spec) {
        let _ = unplug(host, spec.host_veth);
        return Err(e);
    }
    Ok(())
}

fn create_veth(host: &mut Netlink, netns: &Netns, spec: &PlugSpec, bridge: u32) -> Result<()> {
    create_veth_in(host, Some(netns), spec, bridge)
}

/// The pair, its peer in `netns` (None: the host namespace).
fn create_veth_in(
    host: &mut Netlink,
    netns: Option<&Netns>,
    spec: &PlugSpec,
    bridge: u32,
) -> Result<()> {
    // The peer cannot be created up: veth_open fails with ENOTCONN until
    // both ends exist. It is brought up from inside the container.
    let mut peer = LinkMessage::default();
    peer.attributes.push(LinkAttribute::IfName(spec.ifname.to_string()));
    peer.attributes.push(LinkAttribute::Address(spec.mac.0.to_vec()));
    peer.attributes.push(LinkAttribute::Mtu(spec.mtu));
    if let Some(ns) = netns {
        peer.attributes.push(LinkAttribute::NetNsFd(ns.fd()));
    }
    one_queue(&mut peer);

    // Created down: it comes up in `finish_host_end`, after IPv6 address
    // generation is off.
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(spec.host_veth.to_string()));
    m.attributes.push(LinkAttribute::Address(spec.host_mac.0.to_vec()));
    m.attributes.push(LinkAttribute::Mtu(spec.mtu));
    m.attributes.push(LinkAttribute::Controller(bridge));
    one_queue(&mut m);
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
    ]));
    host.exec(RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL).map_err(|e| {
        if e.raw_os_error() == Some(libc::EEXIST) {
            DatapathError::Exists(format!(
                "cannot create veth {} / {}: an interface of that name exists on the host or \
                 in {} (is the container already attached? try --ifname)",
                spec.host_veth,
                spec.ifname,
                netns.map_or("the host namespace".into(), |n| n.path().display().to_string())
            ))
        } else if e.raw_os_error() == Some(libc::EXFULL) {
            // Port numbers of a Linux bridge are 10 bits, 0 reserved.
            DatapathError::Other(format!(
                "the network's bridge has no free port: a Linux bridge holds at most {MAX_BRIDGE_PORTS} \
                 interfaces; spread the containers over more networks"
            ))
        } else {
            DatapathError::Kernel {
                op: format!("create veth pair {} / {}", spec.host_veth, spec.ifname),
                cause: e,
            }
        }
    })
}

/// Alias, no IPv6 link-local address, up: one request. A bridge port
/// needs no IPv6 address of its own; without one the host keeps no
/// per-port IPv6 routes and multicast state, which made attaches slower as
/// ports accumulated.
fn finish_host_end(host: &mut Netlink, spec: &PlugSpec) -> Result<()> {
    // No IPv6 at all on the port, not even its multicast route: the kernel
    // walks the whole IPv6 routing table when a device with routes goes
    // down, so each detach cost more with every port there was. Bridging
    // IPv6 does not need it. Best effort: a read-only /proc/sys only makes
    // detach slower.
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", spec.host_veth), "1");
    let mut m = LinkMessage::default();
    up_flags(&mut m);
    m.attributes.push(LinkAttribute::IfName(spec.host_veth.to_string()));
    m.attributes.push(LinkAttribute::IfAlias(spec.alias.to_string()));
    m.attributes.push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(vec![
        AfSpecInet6::AddrGenMode(In6AddrGenMode::None),
    ])]));
    host.exec(RouteNetlinkMessage::SetLink(m), 0).op(|| format!("bring up {}", spec.host_veth))
}

/// No IPv6 link-local address on a container interface of an IPv4-only
/// network. With one, every attach sends duplicate address detection and
/// MLD reports, which the bridge floods to every port and every container's
/// IPv6 stack processes: attach and detach grew with the number of
/// containers (an attach next to 800 others cost 6.4 ms of CPU instead of
/// 3.5). Must come before the link goes up, when the address is made.
fn no_link_local(ns: &mut Netlink, ifindex: u32, ifname: &str) -> Result<()> {
    let mut m = LinkMessage::default();
    m.header.index = ifindex;
    m.attributes.push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(vec![
        AfSpecInet6::AddrGenMode(In6AddrGenMode::None),
    ])]));
    ns.exec(RouteNetlinkMessage::SetLink(m), 0)
        .op(|| format!("turn off IPv6 address generation on {ifname}"))
}

/// One TX and one RX queue: with the default (one per CPU) the kernel
/// waits for an expedited RCU grace period per queue set at creation.
fn one_queue(m: &mut LinkMessage) {
    m.attributes.push(LinkAttribute::NumTxQueues(1));
    m.attributes.push(LinkAttribute::NumRxQueues(1));
}

fn configure_container(ns: &mut Netlink, spec: &PlugSpec) -> Result<()> {
    // Loopback is index 1 in every network namespace.
    ns.set_up(1, "lo")?;
    let ifindex = ns
        .link_by_name(spec.ifname)?
        .ok_or_else(|| DatapathError::Other(format!("{} vanished in the container", spec.ifname)))?
        .index;
    if spec.address6.is_none() {
        no_link_local(ns, ifindex, spec.ifname)?;
    }
    ns.set_up(ifindex, spec.ifname)?;
    ns.add_address(ifindex, spec.ifname, IpNet::V4(spec.address), true)?;
    if let Some(a6) = spec.address6 {
        ns.add_address(ifindex, spec.ifname, IpNet::V6(a6), true)?;
    }
    if let Some(gw) = spec.gateway {
        add_default(ns, default_route_v4(), IpAddr::V4(gw), ifindex)?;
    }
    if let Some(gw6) = spec.gateway6 {
        add_default(ns, default_route_v6(), IpAddr::V6(gw6), ifindex)?;
    }
    Ok(())
}

/// A container on several networks gets a default route from each: the
/// first attached wins (metric 0), later ones stand by with higher metrics.
fn add_default(ns: &mut Netlink, dest: IpNet, gw: IpAddr, ifindex: u32) -> Result<()> {
    let mut metric = 0;
    loop {
        match ns.add_route_metric(dest, Some(gw), ifindex, metric) {
            Err(e) if e.is_exists() && metric < 1100 => {
                metric = if metric == 0 { 1000 } else { metric + 1 }
            }
            r => return r,
        }
    }
}

fn default_route_v4() -> IpNet {
    IpNet::V4(Ipv4Net::default())
}

fn default_route_v6() -> IpNet {
    IpNet::V6(Ipv6Net::default())
}

/// Alias of a veth pair that is detached and waiting to be deleted.
pub const RETIRED_ALIAS: &str = "weft:retired";

/// Device group of retired host ends ("weft" in ASCII), so that one request
/// deletes all of them at once (`delete_retired`).
pub const RETIRED_GROUP: u32 = 0x7765_6674;

/// Takes a veth pair out of service without deleting it: the host end goes
/// down, which drops the container end's carrier and so cuts the container
/// off, and its alias and device group mark it for deletion
/// (`delete_retired`). Deleting a veth makes the kernel wait for an RCU
/// barrier (about 20 ms here); this is one small request, by name. False
/// when the veth does not exist.
pub fn retire(host: &mut Netlink, host_veth: &str) -> Result<bool> {
    let mut m = LinkMessage::default();
    m.header.change_mask |= LinkFlags::Up;
    m.attributes.push(LinkAttribute::IfName(host_veth.to_string()));
    m.attributes.push(LinkAttribute::IfAlias(RETIRED_ALIAS.to_string()));
    m.attributes.push(LinkAttribute::Group(RETIRED_GROUP));
    match host.exec(RouteNetlinkMessage::SetLink(m), 0) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(false),
        Err(e) => Err(e).op(|| format!("retire veth {host_veth}")),
    }
}

/// Brings a host veth down (the container loses its carrier) or back up,
/// by name, without marking it: a detach cuts the container off first and
/// retires the pair only once the record is gone, so a store that refuses
/// the removal leaves nothing to undo but this. False when the veth does
/// not exist.
pub fn set_carrier(host: &mut Netlink, host_veth: &str, up: bool) -> Result<bool> {
    let mut m = LinkMessage::default();
    m.header.change_mask |= LinkFlags::Up;
    if up {
        m.header.flags |= LinkFlags::Up;
    }
    m.attributes.push(LinkAttribute::IfName(host_veth.to_string()));
    match host.exec(RouteNetlinkMessage::SetLink(m), 0) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(false),
        Err(e) => Err(e).op(|| format!("set veth {host_veth} {}", if up { "up" } else { "down" })),
    }
}

/// Deletes every retired pair of this namespace in one request: the kernel
/// unregisters them together, with one RCU wait for all instead of one
/// each, and takes its lock once. False when there was none.
pub fn delete_retired(host: &mut Netlink) -> Result<bool> {
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::Group(RETIRED_GROUP));
    match host.exec(RouteNetlinkMessage::DelLink(m), 0) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(false),
        Err(e) => Err(e).op(|| "delete retired veths".to_string()),
    }
}

/// Deletes a host veth by index. False when it is already gone.
fn delete_index(host: &mut Netlink, index: u32) -> Result<bool> {
    match host.exec(RouteNetlinkMessage::DelLink(crate::link::link_message(index)), 0) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(false),
        Err(e) => Err(e).op(|| format!("delete veth #{index}")),
    }
}

/// Deletes a host veth by name (its peer goes with it). Returns false when
/// it did not exist, e.g. because the container's netns is already gone.
pub fn unplug(host: &mut Netlink, host_veth: &str) -> Result<bool> {
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(host_veth.to_string()));
    match host.exec(RouteNetlinkMessage::DelLink(m), 0) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(false),
        Err(e) => Err(e).op(|| format!("delete veth {host_veth}")),
    }
}
