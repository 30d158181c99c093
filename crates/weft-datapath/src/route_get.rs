//! Asking the kernel which route a packet would take (`ip route get`), via
//! RTM_GETROUTE. The answer is the kernel's own decision, policy routing
//! and reverse-path checks included, so weft never re-implements routing.

use std::net::IpAddr;

use netlink_packet_route::route::{RouteAttribute, RouteMessage, RouteType};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::{OpContext, Result};
use crate::link::{route_addr, route_addr_to_ip};
use crate::netlink::Netlink;

/// A packet to route. With `iif` the lookup is for a packet arriving on that
/// interface (forwarding, as on a router); without, for one sent locally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteQuery {
    pub dst: IpAddr,
    pub src: Option<IpAddr>,
    pub iif: Option<u32>,
    pub oif: Option<u32>,
    /// IP protocol number (6 tcp, 17 udp, 1 icmp) and destination port: only
    /// matter to policy rules that select on them.
    pub proto: Option<u8>,
    pub dport: Option<u16>,
}

impl RouteQuery {
    pub fn to(dst: IpAddr) -> RouteQuery {
        RouteQuery { dst, src: None, iif: None, oif: None, proto: None, dport: None }
    }
}

/// What the kernel would do with the packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteKind {
    /// Sent out of `oif`, directly or via a gateway.
    Unicast,
    /// Delivered to this namespace's own stack.
    Local,
    Broadcast,
    Multicast,
    /// Dropped by a route of that type (blackhole, unreachable, prohibit).
    Reject(String),
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteAnswer {
    pub kind: RouteKind,
    pub oif: Option<u32>,
    pub gateway: Option<IpAddr>,
    /// The source address the kernel picks for a locally sent packet.
    pub prefsrc: Option<IpAddr>,
    pub table: Option<u32>,
}

/// A lookup either finds a route or the kernel says why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found(RouteAnswer),
    /// ENETUNREACH (no route), EHOSTUNREACH (e.g. forwarding is off for an
    /// `iif` lookup), EINVAL (e.g. a martian source), ...
    Refused {
        errno: i32,
        reason: String,
    },
}

impl Netlink {
    pub fn route_get(&mut self, q: &RouteQuery) -> Result<Lookup> {
        let mut m = RouteMessage::default();
        let full = match q.dst {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        m.header.address_family = match q.dst {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        // Strict checking wants table, protocol, scope and type left 0 and
        // prefix lengths either 0 or full.
        m.header.destination_prefix_length = full;
        m.attributes.push(RouteAttribute::Destination(route_addr(q.dst)));
        if let Some(src) = q.src {
            m.header.source_prefix_length = full;
            m.attributes.push(RouteAttribute::Source(route_addr(src)));
        }
        if let Some(i) = q.iif {
            m.attributes.push(RouteAttribute::Iif(i));
        }
        if let Some(o) = q.oif {
            m.attributes.push(RouteAttribute::Oif(o));
        }
        if let Some(p) = q.proto {
            m.attributes.push(RouteAttribute::IpProto(p));
            if let Some(d) = q.dport.filter(|_| p == 6 || p == 17) {
                m.attributes.push(RouteAttribute::Dport(d));
            }
        }
        let answers = match self.get(RouteNetlinkMessage::GetRoute(m)) {
            Ok(v) => v,
            Err(e) => match e.raw_os_error() {
                Some(
                    errno @ (libc::ENETUNREACH
                    | libc::EHOSTUNREACH
                    | libc::EINVAL
                    | libc::EACCES
                    | libc::EPERM
                    | libc::EXDEV),
                ) => {
                    let reason = std::io::Error::from_raw_os_error(errno).to_string();
                    return Ok(Lookup::Refused { errno, reason });
                }
                _ => return Err(e).op(|| format!("look up the route to {}", q.dst)),
            },
        };
        let Some(r) = answers.iter().find_map(|a| match a {
            RouteNetlinkMessage::NewRoute(r) => Some(r),
            _ => None,
        }) else {
            return Ok(Lookup::Refused { errno: 0, reason: "no answer".into() });
        };
        let mut ans = RouteAnswer {
            kind: match r.header.kind {
                RouteType::Unicast => RouteKind::Unicast,
                RouteType::Local => RouteKind::Local,
                RouteType::Broadcast => RouteKind::Broadcast,
                RouteType::Multicast => RouteKind::Multicast,
                RouteType::BlackHole => RouteKind::Reject("blackhole".into()),
                RouteType::Unreachable => RouteKind::Reject("unreachable".into()),
                RouteType::Prohibit => RouteKind::Reject("prohibit".into()),
                other => RouteKind::Other(format!("{other:?}").to_lowercase()),
            },
            oif: None,
            gateway: None,
            prefsrc: None,
            table: Some(u32::from(r.header.table)),
        };
        for a in &r.attributes {
            match a {
                RouteAttribute::Oif(i) => ans.oif = Some(*i),
                RouteAttribute::Gateway(g) => ans.gateway = route_addr_to_ip(g),
                RouteAttribute::PrefSource(s) => ans.prefsrc = route_addr_to_ip(s),
                RouteAttribute::Table(t) => ans.table = Some(*t),
                _ => {}
            }
        }
        Ok(Lookup::Found(ans))
    }
}
