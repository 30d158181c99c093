//! `weft explain`: walks the path a packet from SRC to DST would take, as
//! the seed walks its ping: the route SRC's kernel picks, the neighbour
//! entry, the veth into the bridge, the bridge's FDB, then either the
//! peer's port (one network) or the host's routing and weft's firewall.
//! Each step reads the kernel's own answer (RTM_GETROUTE, neighbour and
//! FDB dumps, nft's listing); the walk stops at the first step that fails.
//! This file resolves SRC and DST and walks SRC's side; far.rs the rest.

use std::net::IpAddr;

use anyhow::{bail, Result};
use weft_datapath::link_detail::LinkDetail;
use weft_datapath::route_get::{Lookup, RouteKind, RouteQuery};
use weft_datapath::Netlink;
use weft_model::{Endpoint, Mac, Network};

use super::facts;
use super::firewall::Sets;
use super::hint::{ip, ip_in};
use super::live::{open_netns, HostView, NsView};
use super::steps::{Step, StepKind as K};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
}

impl Proto {
    pub fn number(self, v6: bool) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Icmp if v6 => 58,
            Proto::Icmp => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
        }
    }
}

/// SRC and DST resolved against the store.
pub struct Ends<'a> {
    pub src: &'a Endpoint,
    pub src_net: &'a Network,
    pub dst_ip: IpAddr,
    pub dst: Option<&'a Endpoint>,
}

pub fn resolve<'a>(
    nets: &'a [Network],
    eps: &'a [Endpoint],
    src: &str,
    dst: &str,
) -> Result<Ends<'a>> {
    let srcs: Vec<&Endpoint> = eps.iter().filter(|e| e.container == src).collect();
    if srcs.is_empty() {
        bail!("container {src} is not attached to any weft network (see weft endpoint ls)");
    }
    let (dst_ip, dst_ep) = match dst.parse::<IpAddr>() {
        Ok(ip) => (ip, eps.iter().find(|e| owns(e, ip))),
        Err(_) => {
            let dsts: Vec<&Endpoint> = eps.iter().filter(|e| e.container == dst).collect();
            let shared = dsts.iter().find(|d| srcs.iter().any(|s| s.network == d.network));
            let Some(d) = shared.or(dsts.first()) else {
                bail!("{dst} is neither a container on a weft network nor an address");
            };
            (d.address.addr().into(), Some(*d))
        }
    };
    let chosen = dst_ep
        .and_then(|d| srcs.iter().find(|s| s.network == d.network))
        .or_else(|| srcs.iter().find(|s| net_of(nets, s).is_some_and(|n| in_subnet(n, dst_ip))))
        .or_else(|| srcs.iter().find(|s| s.gateway.is_some()))
        .unwrap_or(&srcs[0]);
    let Some(src_net) = net_of(nets, chosen) else {
        bail!("network {} of {src} is not in the store", chosen.network);
    };
    Ok(Ends { src: chosen, src_net, dst_ip, dst: dst_ep })
}

pub fn owns(e: &Endpoint, ip: IpAddr) -> bool {
    IpAddr::from(e.address.addr()) == ip || e.address6.is_some_and(|a| IpAddr::from(a.addr()) == ip)
}

pub fn net_of<'a>(nets: &'a [Network], ep: &Endpoint) -> Option<&'a Network> {
    nets.iter().find(|n| n.name == ep.network)
}

fn in_subnet(n: &Network, ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => n.subnet.contains(&v),
        IpAddr::V6(v) => n.subnet6.is_some_and(|s| s.contains(&v)),
    }
}

pub fn is_gateway(n: &Network, ip: IpAddr) -> bool {
    IpAddr::from(n.gateway) == ip || n.gateway6.is_some_and(|g| IpAddr::from(g) == ip)
}

/// The walk stops at the first failing step, or on an error reading the
/// kernel (which is not a verdict about the path).
pub enum Halt {
    Failed,
    Error(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Halt {
    fn from(e: E) -> Halt {
        Halt::Error(e.into())
    }
}

pub type Flow<T> = std::result::Result<T, Halt>;

/// State of one walk: what was read, and the steps so far.
pub struct Walk<'a> {
    pub host: &'a HostView,
    pub host_nl: &'a mut Netlink,
    pub nets: &'a [Network],
    pub eps: &'a [Endpoint],
    /// weft's sets, None when its table is missing or unreadable.
    pub sets: Option<Sets>,
    /// This host's cluster node name: endpoints of other nodes are remote.
    pub node: Option<&'a str>,
    pub proto: Proto,
    pub port: Option<u16>,
    pub steps: Vec<Step>,
}

/// What SRC's side of the walk found out.
pub struct SrcSide<'a> {
    pub src: &'a Endpoint,
    pub ns: NsView,
    /// SRC's bridge; None when the packet never leaves SRC.
    pub bridge: Option<&'a LinkDetail>,
    /// The MAC the first frame goes to, when known.
    pub target: Option<Mac>,
    pub local: bool,
}

impl<'a> Walk<'a> {
    /// Records a step; a failing one ends the walk.
    pub fn push(&mut self, s: Step) -> Flow<()> {
        let failed = s.status == super::steps::Status::Fail;
        self.steps.push(s);
        if failed {
            Err(Halt::Failed)
        } else {
            Ok(())
        }
    }

    /// Records a failing step and ends the walk.
    pub fn stop<T>(&mut self, s: Step) -> Flow<T> {
        self.steps.push(s);
        Err(Halt::Failed)
    }

    pub fn query(&self, dst: IpAddr) -> RouteQuery {
        RouteQuery {
            proto: Some(self.proto.number(dst.is_ipv6())),
            dport: self.port,
            ..RouteQuery::to(dst)
        }
    }

    /// netns, interface, route, neighbour, veth, bridge-port.
    pub fn src_side(&mut self, ends: &Ends<'a>) -> Flow<SrcSide<'a>> {
        let mut src = ends.src;
        let dst = ends.dst_ip;
        let mut nl = match open_netns(src) {
            Ok(nl) => nl,
            Err(e) => {
                let s = Step::fail(K::Netns, format!("{} in {}", src.container, src.netns), e)
                    .fix("weft gc   (the container is gone; gc removes its endpoints)");
                return self.stop(s);
            }
        };
        let ns = NsView::read(&mut nl)?;
        self.push(Step::pass(K::Netns, format!("{} in {}", src.container, src.netns)))?;
        self.interface(src, &ns, dst)?;

        let Some((oif, gateway)) = self.route(ends, &mut nl)? else {
            return Ok(SrcSide { src, ns, bridge: None, target: None, local: true });
        };
        let oif_name = ns.name_of(oif);
        if oif_name != src.ifname {
            match self.eps.iter().find(|e| e.container == src.container && e.ifname == oif_name) {
                Some(other) => src = other,
                None => {
                    let s = Step::fail(
                        K::Route,
                        format!("{dst} dev {oif_name} in {}", src.container),
                        format!("the route leaves by {oif_name}, which is not a weft interface"),
                    );
                    return self.stop(s);
                }
            }
        }
        let net = net_of(self.nets, src).unwrap_or(ends.src_net);
        let facts = match gateway {
            Some(gw) => format!(
                "{dst} via {gw} dev {oif_name}: through the gateway (bridge {})",
                net.bridge
            ),
            None => format!("{dst} dev {oif_name}: direct, on the subnet (scope link)"),
        };
        let mut step = Step::pass(K::Route, facts);
        if let Some(gw) = gateway.filter(|gw| !is_gateway(net, *gw)) {
            step = Step::warn(
                K::Route,
                step.facts,
                format!("gateway {gw} is not network {}'s gateway {}", net.name, net.gateway),
            );
        }
        self.push(step)?;

        let next_hop = gateway.unwrap_or(dst);
        let target = self.neighbour(src, net, &ns, oif, next_hop)?;
        self.veth(src, net, &ns)?;
        let bridge = Some(self.bridge_port(src, net)?);
        Ok(SrcSide { src, ns, bridge, target, local: false })
    }

    /// The kernel's own route lookup inside SRC: the output interface and
    /// gateway, or None when DST is SRC itself.
    fn route(&mut self, ends: &Ends<'a>, nl: &mut Netlink) -> Flow<Option<(u32, Option<IpAddr>)>> {
        let (src, dst) = (ends.src, ends.dst_ip);
        let a = match nl.route_get(&self.query(dst))? {
            Lookup::Found(a) => a,
            Lookup::Refused { reason, .. } => {
                let internal = ends.src_net.internal && !in_subnet(ends.src_net, dst);
                let why = if internal {
                    format!(
                        "network {} is internal: no default route, no way out (by design)",
                        src.network
                    )
                } else {
                    format!("{}'s routing table has no route to {dst}", src.container)
                };
                let fix = src.gateway.filter(|_| !internal).map(|gw| {
                    ip_in(&src.netns, &format!("route add default via {gw} dev {}", src.ifname))
                });
                let facts = format!("no route to {dst} in {}: {reason}", src.container);
                return self.stop(Step::fail(K::Route, facts, why).fix_opt(fix));
            }
        };
        match a.kind {
            RouteKind::Unicast => Ok(Some((a.oif.unwrap_or(0), a.gateway))),
            RouteKind::Local => {
                let facts =
                    format!("{dst} is an address of {} itself: delivered locally", src.container);
                self.push(Step::pass(K::Route, facts))?;
                Ok(None)
            }
            other => {
                let facts = format!("{dst}: a {other:?} route in {}", src.container);
                let why =
                    format!("the route to {dst} is of type {other:?}: the kernel will not send it");
                self.stop(Step::fail(K::Route, facts, why))
            }
        }
    }

    fn interface(&mut self, src: &Endpoint, ns: &NsView, dst: IpAddr) -> Flow<()> {
        let Some(l) = ns.link(&src.ifname) else {
            return self.push(facts::interface_gone(K::Interface, src));
        };
        let addrs = ns.addrs_of(l.link.index);
        let facts = facts::interface(&src.ifname, ns, l);
        if !l.link.up {
            let s = Step::fail(
                K::Interface,
                facts,
                format!("{} is down in {}", src.ifname, src.container),
            )
            .fix(ip_in(&src.netns, &format!("link set {} up", src.ifname)));
            return self.push(s);
        }
        let want = match dst {
            IpAddr::V4(_) => Some(ipnet::IpNet::V4(src.address)),
            IpAddr::V6(_) => src.address6.map(ipnet::IpNet::V6),
        };
        if let Some(w) = want.filter(|w| !addrs.contains(w)) {
            let s =
                Step::fail(K::Interface, facts, format!("{} lacks its address {w}", src.ifname))
                    .fix(ip_in(&src.netns, &format!("addr add {w} dev {}", src.ifname)));
            return self.push(s);
        }
        self.push(Step::pass(K::Interface, facts))
    }

    /// Whose MAC `ip` should resolve to on network `net`: the bridge's for
    /// the gateway, else the endpoint's that has it.
    pub fn expected_mac(&self, net: &Network, ip: IpAddr) -> Option<(Mac, String)> {
        if is_gateway(net, ip) {
            let br = self.host.ns.link(&net.bridge)?;
            return br.link.mac.map(|m| (m, format!("bridge {} (the gateway)", net.bridge)));
        }
        self.eps
            .iter()
            .find(|e| e.network == net.name && owns(e, ip))
            .map(|e| (e.mac, format!("{}'s {}", e.container, e.ifname)))
    }

    /// The ARP/NDP entry for the next hop in namespace `ns` on `oif`.
    /// `kind` is Neighbour (in SRC) or HostNeighbour (on the host).
    pub fn neighbour_in(
        &mut self,
        kind: K,
        ns: &NsView,
        oif: u32,
        net: &Network,
        next_hop: IpAddr,
        fix_ns: Option<&str>,
    ) -> Flow<Option<Mac>> {
        let expected = self.expected_mac(net, next_hop);
        let dev = ns.name_of(oif);
        let del = format!("neigh del {next_hop} dev {dev}");
        let fix = fix_ns.map_or_else(|| ip(&del), |p| ip_in(p, &del));
        let Some(n) = ns.neighbour(oif, next_hop) else {
            let facts = format!(
                "no entry for {next_hop} on {dev} yet: ARP/NDP asks the whole bridge who has it"
            );
            self.push(Step::pass(kind, facts))?;
            return Ok(expected.map(|e| e.0));
        };
        let mac = n.mac.map(|m| m.to_string()).unwrap_or_else(|| "(none)".into());
        let facts = format!("{next_hop} is at {mac} on {dev} ({})", n.state);
        match (n.state.as_str(), n.mac, &expected) {
            ("INCOMPLETE" | "FAILED", _, _) => {
                let why = "resolution got no answer: the steps below say where the path breaks";
                self.push(Step::warn(kind, facts, why))?;
                Ok(expected.map(|e| e.0))
            }
            (state, Some(m), Some((want, whose))) if m != *want => {
                let kind_of = if state == "PERMANENT" {
                    "a static entry (never expires)"
                } else {
                    "a stale entry"
                };
                let why = format!(
                    "{kind_of} points {next_hop} at {m}, but {whose} has {want}: frames go to a \
                     MAC nobody answers to"
                );
                self.push(Step::fail(kind, facts, why).fix(fix))?;
                Ok(Some(m))
            }
            (_, m, Some((_, whose))) => {
                self.push(Step::pass(kind, format!("{facts}, which is {whose}")))?;
                Ok(m)
            }
            (_, m, None) => {
                self.push(Step::pass(kind, facts))?;
                Ok(m)
            }
        }
    }

    fn neighbour(
        &mut self,
        src: &Endpoint,
        net: &Network,
        ns: &NsView,
        oif: u32,
        hop: IpAddr,
    ) -> Flow<Option<Mac>> {
        self.neighbour_in(K::Neighbour, ns, oif, net, hop, Some(&src.netns))
    }

    fn veth(&mut self, src: &Endpoint, net: &Network, ns: &NsView) -> Flow<()> {
        let name = &src.host_veth;
        let Some(v) = self.host.ns.link(name) else {
            let s = Step::fail(
                K::Veth,
                format!("host veth {name} is missing"),
                "the host end of the veth pair is gone",
            )
            .fix("weft gc");
            return self.push(s);
        };
        let br = self.host.ns.link(&net.bridge);
        let (facts, master) = facts::veth(&self.host.ns, v, None);
        if !v.link.up {
            let s = Step::fail(K::Veth, facts, format!("host veth {name} is down"))
                .fix(ip(&format!("link set {name} up")));
            return self.push(s);
        }
        if let Some(b) = br.filter(|b| v.link.master != Some(b.link.index)) {
            let s = Step::fail(K::Veth, facts, facts::not_a_port(name, &b.link.name, master))
                .fix(ip(&format!("link set {name} master {}", net.bridge)));
            return self.push(s);
        }
        let inside = ns.link(&src.ifname);
        if inside.is_some_and(|i| v.link.peer_index.is_some_and(|p| p != i.link.index)) {
            let s = Step::fail(
                K::Veth,
                facts,
                format!("{name} is not the peer of {}'s {}", src.container, src.ifname),
            )
            .fix("weft gc");
            return self.push(s);
        }
        if !v.link.lower_up {
            let s = Step::fail(
                K::Veth,
                facts,
                format!("{name} has no carrier though {} is up", src.ifname),
            );
            return self.push(s);
        }
        self.push(Step::pass(K::Veth, facts))
    }

    fn bridge_port(&mut self, src: &Endpoint, net: &Network) -> Flow<&'a LinkDetail> {
        let host = self.host;
        let Some(br) = host.ns.link(&net.bridge) else {
            let s = Step::fail(
                K::BridgePort,
                format!("bridge {} is missing", net.bridge),
                format!("network {}'s bridge does not exist", net.name),
            )
            .fix("weft gc");
            return self.stop(s);
        };
        let port = host.ns.link(&src.host_veth).and_then(|v| v.port.as_ref());
        let state = port.map_or("not a port", |p| p.state.as_str());
        let mut facts = format!(
            "{} {}, mtu {}; port {} {state}",
            net.bridge,
            if br.link.up { "up" } else { "DOWN" },
            br.link.mtu,
            src.host_veth
        );
        if port.is_some_and(|p| !p.learning) {
            facts.push_str(", learning off");
        }
        if !br.link.up {
            let s = Step::fail(K::BridgePort, facts, format!("bridge {} is down", net.bridge))
                .fix(ip(&format!("link set {} up", net.bridge)));
            return self.stop(s);
        }
        if !port.is_some_and(|p| p.forwarding()) {
            let s = Step::fail(
                K::BridgePort,
                facts,
                format!("port {} does not forward ({state})", src.host_veth),
            )
            .fix(format!("bridge link set dev {} state 3", src.host_veth));
            return self.stop(s);
        }
        self.push(Step::pass(K::BridgePort, facts))?;
        Ok(br)
    }
}

pub fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => v.is_link_local(),
        IpAddr::V6(v) => v.segments()[0] & 0xffc0 == 0xfe80,
    }
}
