//! Links, addresses and routes: the rtnetlink requests weft needs, each one
//! message. Higher-level steps (a bridge, a plugged endpoint) build on these.

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    InfoBridge, InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, LinkAttribute,
    LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use weft_model::Mac;

use crate::error::{OpContext, Result};
use crate::netlink::Netlink;

/// What weft reads back about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub kind: Option<String>,
    pub alias: Option<String>,
    pub mac: Option<Mac>,
    pub mtu: u32,
    pub up: bool,
    /// Carrier: the peer end is up too.
    pub lower_up: bool,
    /// Index of the bridge this link is a port of.
    pub master: Option<u32>,
    /// Index of a veth's peer in its own namespace.
    pub peer_index: Option<u32>,
    /// The namespace of a veth's peer, when it is another one: its id as
    /// this namespace knows it (see `Netlink::nsid_of`).
    pub peer_netnsid: Option<i32>,
}

impl Link {
    pub(crate) fn from_message(m: &LinkMessage) -> Link {
        let mut l = Link {
            index: m.header.index,
            name: String::new(),
            kind: None,
            alias: None,
            mac: None,
            mtu: 0,
            up: m.header.flags.contains(LinkFlags::Up),
            lower_up: m.header.flags.contains(LinkFlags::LowerUp),
            master: None,
            peer_index: None,
            peer_netnsid: None,
        };
        for a in &m.attributes {
            match a {
                LinkAttribute::IfName(n) => l.name = n.clone(),
                LinkAttribute::IfAlias(s) => l.alias = Some(s.clone()),
                LinkAttribute::Address(b) if b.len() == 6 => {
                    l.mac = Some(Mac([b[0], b[1], b[2], b[3], b[4], b[5]]))
                }
                LinkAttribute::Mtu(v) => l.mtu = *v,
                LinkAttribute::Controller(i) => l.master = Some(*i),
                LinkAttribute::Link(i) => l.peer_index = Some(*i),
                LinkAttribute::LinkNetNsId(i) => l.peer_netnsid = Some(*i),
                LinkAttribute::LinkInfo(infos) => {
                    for i in infos {
                        if let LinkInfo::Kind(k) = i {
                            l.kind = Some(k.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
        l
    }
}

pub(crate) fn link_message(index: u32) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = index;
    m
}

pub(crate) fn up_flags(m: &mut LinkMessage) {
    m.header.flags |= LinkFlags::Up;
    m.header.change_mask |= LinkFlags::Up;
}

impl Netlink {
    pub fn link_by_name(&mut self, name: &str) -> Result<Option<Link>> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.get(RouteNetlinkMessage::GetLink(m)) {
            Ok(v) => Ok(v.iter().find_map(as_link)),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e).op(|| format!("look up interface {name}")),
        }
    }

    pub fn link_by_index(&mut self, index: u32) -> Result<Option<Link>> {
        match self.get(RouteNetlinkMessage::GetLink(link_message(index))) {
            Ok(v) => Ok(v.iter().find_map(as_link)),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e).op(|| format!("look up interface #{index}")),
        }
    }

    pub fn links(&mut self) -> Result<Vec<Link>> {
        let v = self
            .dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))
            .op(|| "list interfaces".into())?;
        Ok(v.iter().filter_map(as_link).collect())
    }

    pub fn set_up(&mut self, index: u32, name: &str) -> Result<()> {
        let mut m = link_message(index);
        up_flags(&mut m);
        self.exec(RouteNetlinkMessage::SetLink(m), 0).op(|| format!("bring {name} up"))
    }

    pub fn set_down(&mut self, index: u32, name: &str) -> Result<()> {
        let mut m = link_message(index);
        m.header.change_mask |= LinkFlags::Up;
        self.exec(RouteNetlinkMessage::SetLink(m), 0).op(|| format!("bring {name} down"))
    }

    pub fn set_alias(&mut self, index: u32, name: &str, alias: &str) -> Result<()> {
        let mut m = link_message(index);
        m.attributes.push(LinkAttribute::IfAlias(alias.to_string()));
        self.exec(RouteNetlinkMessage::SetLink(m), 0).op(|| format!("set alias of {name}"))
    }

    pub fn set_master(&mut self, index: u32, name: &str, master: u32) -> Result<()> {
        let mut m = link_message(index);
        m.attributes.push(LinkAttribute::Controller(master));
        self.exec(RouteNetlinkMessage::SetLink(m), 0).op(|| format!("plug {name} into bridge"))
    }

    /// Hairpin mode on a bridge port: frames may leave through the port they
    /// came in on. A container reaching its own published port through the
    /// host needs it (the reply is routed back out of its own port).
    pub fn set_hairpin(&mut self, index: u32, name: &str, on: bool) -> Result<()> {
        let mut m = link_message(index);
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(on)])),
        ]));
        // RTM_NEWLINK on an existing link: the kernel's way to change port options.
        self.exec(RouteNetlinkMessage::NewLink(m), 0).op(|| format!("set hairpin mode of {name}"))
    }

    pub fn delete_link(&mut self, index: u32, name: &str) -> Result<()> {
        self.exec(RouteNetlinkMessage::DelLink(link_message(index)), 0)
            .op(|| format!("delete interface {name}"))
    }

    /// Creates a bridge, down, with a fixed MAC (otherwise it would take the
    /// lowest MAC of its ports and change as containers come and go) and
    /// without multicast snooping: with it on, every port that comes or
    /// goes makes the kernel restart snooping timers on every other port,
    /// so attach and detach grew with the number of containers. Multicast
    /// is then flooded, as on a plain switch.
    pub fn add_bridge(&mut self, name: &str, mac: Mac, mtu: u32) -> Result<()> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        m.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
        m.attributes.push(LinkAttribute::Mtu(mtu));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Bridge),
            LinkInfo::Data(InfoData::Bridge(vec![InfoBridge::MulticastSnooping(false)])),
        ]));
        self.exec(RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL)
            .op(|| format!("create bridge {name}"))
    }

    pub fn add_address(&mut self, index: u32, name: &str, addr: IpNet, nodad: bool) -> Result<()> {
        let mut m = AddressMessage::default();
        m.header.index = index;
        m.header.prefix_len = addr.prefix_len();
        m.header.scope = AddressScope::Universe;
        let ip = addr.addr();
        match ip {
            IpAddr::V4(_) => {
                m.header.family = AddressFamily::Inet;
                m.attributes.push(AddressAttribute::Local(ip));
                m.attributes.push(AddressAttribute::Address(ip));
                if let IpNet::V4(n) = addr {
                    if n.prefix_len() < 31 {
                        m.attributes.push(AddressAttribute::Broadcast(n.broadcast()));
                    }
                }
            }
            IpAddr::V6(_) => {
                m.header.family = AddressFamily::Inet6;
                m.attributes.push(AddressAttribute::Address(ip));
                if nodad {
                    // Addresses come from IPAM and are unique: skipping
                    // duplicate detection makes them usable at once.
                    m.attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
                }
            }
        }
        self.exec(RouteNetlinkMessage::NewAddress(m), NLM_F_CREATE | NLM_F_EXCL)
            .op(|| format!("add address {addr} to {name}"))
    }

    /// Removes an address from a link (the prefix route goes with it).
    pub fn delete_address(&mut self, index: u32, name: &str, addr: IpNet) -> Result<()> {
        let mut m = AddressMessage::default();
        m.header.index = index;
        m.header.prefix_len = addr.prefix_len();
        m.header.family = match addr {
            IpNet::V4(_) => AddressFamily::Inet,
            IpNet::V6(_) => AddressFamily::Inet6,
        };
        m.attributes.push(AddressAttribute::Local(addr.addr()));
        m.attributes.push(AddressAttribute::Address(addr.addr()));
        self.exec(RouteNetlinkMessage::DelAddress(m), 0)
            .op(|| format!("remove address {addr} from {name}"))
    }

    /// Adds a unicast route in the main table: via `gateway` when given,
    /// else directly on the link (scope link).
    pub fn add_route(&mut self, dest: IpNet, gateway: Option<IpAddr>, oif: u32) -> Result<()> {
        self.add_route_metric(dest, gateway, oif, 0)
    }

    /// [`Netlink::add_route`] with a metric (0: the kernel's default).
    pub fn add_route_metric(
        &mut self,
        dest: IpNet,
        gateway: Option<IpAddr>,
        oif: u32,
        metric: u32,
    ) -> Result<()> {
        let mut m = RouteMessage::default();
        m.header.address_family = match dest {
            IpNet::V4(_) => AddressFamily::Inet,
            IpNet::V6(_) => AddressFamily::Inet6,
        };
        m.header.destination_prefix_length = dest.prefix_len();
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::Static;
        m.header.kind = RouteType::Unicast;
        m.header.scope = if gateway.is_some() { RouteScope::Universe } else { RouteScope::Link };
        if dest.prefix_len() > 0 {
            m.attributes.push(RouteAttribute::Destination(route_addr(dest.network())));
        }
        if let Some(gw) = gateway {
            m.attributes.push(RouteAttribute::Gateway(route_addr(gw)));
        }
        m.attributes.push(RouteAttribute::Oif(oif));
        if metric > 0 {
            m.attributes.push(RouteAttribute::Priority(metric));
        }
        self.exec(RouteNetlinkMessage::NewRoute(m), NLM_F_CREATE | NLM_F_EXCL).op(
            || match gateway {
                Some(gw) => format!("add route {dest} via {gw}"),
                None => format!("add route {dest}"),
            },
        )
    }
}

pub(crate) fn route_addr(ip: IpAddr) -> RouteAddress {
    match ip {
        IpAddr::V4(v) => RouteAddress::Inet(v),
        IpAddr::V6(v) => RouteAddress::Inet6(v),
    }
}

fn as_link(m: &RouteNetlinkMessage) -> Option<Link> {
    match m {
        RouteNetlinkMessage::NewLink(l) => Some(Link::from_message(l)),
        _ => None,
    }
}

impl Netlink {
    /// Sets the alias of a link named `name` (no index lookup needed).
    pub fn set_alias_by_name(&mut self, name: &str, alias: &str) -> Result<()> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        m.attributes.push(LinkAttribute::IfAlias(alias.to_string()));
        self.exec(RouteNetlinkMessage::SetLink(m), 0).op(|| format!("set alias of {name}"))
    }
}

pub(crate) fn route_addr_to_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v) => Some(IpAddr::V4(*v)),
        RouteAddress::Inet6(v) => Some(IpAddr::V6(*v)),
        _ => None,
    }
}
