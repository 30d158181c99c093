//! The far side of the walk, after SRC's bridge port: the bridge FDB,
//! then the peer's port on the same bridge (peer.rs), or the host's routing
//! and weft's firewall (gate.rs) towards another network, the host or the
//! outside, or the VXLAN device towards another host (overlay.rs).

use std::net::IpAddr;

use weft_datapath::link_detail::LinkDetail;
use weft_datapath::route_get::{Lookup, RouteKind, RouteQuery};
use weft_model::{Endpoint, Mac, Network};

use super::gate::src_addr;
use super::hint::ip;
use super::live::{open_netns, NsView};
use super::peer::MtuLink;
use super::steps::{Step, StepKind as K};
use super::walk::{net_of, Ends, Flow, SrcSide, Walk};

impl<'a> Walk<'a> {
    /// Everything after SRC's bridge port.
    pub fn beyond(&mut self, ends: &Ends<'a>, side: &SrcSide<'a>) -> Flow<()> {
        let net = net_of(self.nets, side.src).unwrap_or(ends.src_net);
        let Some(br) = side.bridge else { return Ok(()) };
        let segment = self.src_segment(side, net);
        if side.target.is_some() && side.target == br.link.mac {
            let mac = side.target.map(|m| m.to_string()).unwrap_or_default();
            self.push(Step::pass(
                K::Fdb,
                format!(
                    "{mac} is {}'s own address: the frame goes up into the host's IP stack",
                    net.bridge
                ),
            ))?;
            return self.routed(ends, side, net, segment);
        }
        let dst = ends.dst.filter(|d| d.network == net.name);
        let Some(mac) = side.target else {
            self.push(Step::pass(
                K::Fdb,
                format!(
                    "{}'s MAC is unknown until ARP answers; the broadcast floods every port of {}",
                    ends.dst_ip, net.bridge
                ),
            ))?;
            return match dst {
                Some(d) => self.bridged(ends, side, net, d, segment),
                None => self.nobody(ends, net),
            };
        };
        let Some(d) = dst else {
            self.fdb_report(br, mac, net)?;
            return self.nobody(ends, net);
        };
        if d.node.is_some() && d.node.as_deref() != self.node {
            return self.overlay(ends, side, net, d, mac, segment);
        }
        self.fdb_to_port(br, mac, d)?;
        self.bridged(ends, side, net, d, segment)
    }

    /// DST is in the subnet but no endpoint has it.
    fn nobody(&mut self, ends: &Ends<'a>, net: &Network) -> Flow<()> {
        let s = Step::fail(
            K::Peer,
            format!("no container on network {} has {}", net.name, ends.dst_ip),
            format!(
                "{} is not an address weft gave out (see weft endpoint ls --network {})",
                ends.dst_ip, net.name
            ),
        );
        self.stop(s)
    }

    fn fdb_report(&mut self, br: &LinkDetail, mac: Mac, net: &Network) -> Flow<()> {
        let facts = match self.host.fdb_entry(br.link.index, mac) {
            Some(e) => format!("{mac} -> port {} of {}", self.host.ns.name_of(e.port), net.bridge),
            None => format!("{mac} not in {}'s FDB: flooded to every port", net.bridge),
        };
        self.push(Step::pass(K::Fdb, facts))
    }

    fn fdb_to_port(&mut self, br: &LinkDetail, mac: Mac, d: &Endpoint) -> Flow<()> {
        let bridge = &br.link.name;
        let port = self.host.ns.link(&d.host_veth).map(|l| l.link.index);
        match self.host.fdb_entry(br.link.index, mac) {
            Some(e) if Some(e.port) == port || port.is_none() => {
                let at = self.host.ns.name_of(e.port);
                let facts = format!("{mac} -> port {at} of {bridge} ({})", d.container);
                self.push(Step::pass(K::Fdb, facts))
            }
            Some(e) => {
                let at = self.host.ns.name_of(e.port);
                let (c, v) = (&d.container, &d.host_veth);
                let why = format!("{bridge} sends {c}'s MAC to port {at}, but {c} is behind {v}");
                let s = Step::fail(K::Fdb, format!("{mac} -> port {at} of {bridge}"), why);
                self.stop(s.fix(format!("bridge fdb del {mac} dev {at} master")))
            }
            None => {
                let facts = format!(
                    "{mac} not in {bridge}'s FDB yet: the frame floods to every port; {}'s \
                     answer teaches the bridge its port",
                    d.container
                );
                self.push(Step::pass(K::Fdb, facts))
            }
        }
    }

    /// Same bridge: firewall (br_netfilter), the peer's port, the peer.
    fn bridged(
        &mut self,
        ends: &Ends<'a>,
        side: &SrcSide<'a>,
        net: &Network,
        d: &Endpoint,
        mut seg: Vec<MtuLink>,
    ) -> Flow<()> {
        self.firewall_bridged(&net.bridge, ends.dst_ip, side.src)?;
        let dst_ns =
            open_netns(d).and_then(|mut nl| NsView::read(&mut nl).map_err(|e| format!("{e:#}")));
        self.peer_veth(d, net, &dst_ns)?;
        self.peer(d, &dst_ns, ends.dst_ip)?;
        seg.extend(self.dst_segment(d, net, &dst_ns));
        self.mtu(&[(net, seg)])
    }

    /// Through the gateway: the host's routing, weft's firewall, then NAT
    /// out, the host itself, or another network's bridge.
    fn routed(
        &mut self,
        ends: &Ends<'a>,
        side: &SrcSide<'a>,
        net: &Network,
        seg: Vec<MtuLink>,
    ) -> Flow<()> {
        let Some(br) = side.bridge else { return Ok(()) };
        let src_ip = src_addr(side.src, ends.dst_ip);
        let Some(oif) = self.host_route(br, src_ip, ends.dst_ip)? else {
            return self.mtu(&[(net, seg)]);
        };
        let oif_name = self.host.ns.name_of(oif);
        self.firewall_routed(ends, side.src, &br.link.name, &oif_name, src_ip)?;
        let dst_net = ends.dst.and_then(|d| net_of(self.nets, d)).filter(|n| n.bridge == oif_name);
        match (ends.dst, dst_net) {
            (Some(d), Some(dn)) => {
                let host = self.host;
                let target =
                    self.neighbour_in(K::HostNeighbour, &host.ns, oif, dn, ends.dst_ip, None)?;
                let Some(dbr) = self.host.ns.link(&dn.bridge) else { return Ok(()) };
                match target {
                    Some(mac) => self.fdb_to_port(dbr, mac, d)?,
                    None => self.push(Step::pass(
                        K::Fdb,
                        format!("{}'s MAC unknown until ARP answers", ends.dst_ip),
                    ))?,
                }
                let dst_ns = open_netns(d)
                    .and_then(|mut nl| NsView::read(&mut nl).map_err(|e| format!("{e:#}")));
                self.peer_veth(d, dn, &dst_ns)?;
                self.peer(d, &dst_ns, ends.dst_ip)?;
                let mut dseg = Vec::new();
                if let Some(l) = self.host.ns.link(&dn.bridge) {
                    dseg.push(MtuLink {
                        label: dn.bridge.clone(),
                        mtu: l.link.mtu,
                        fix: ip(&format!("link set {} mtu {}", dn.bridge, dn.mtu)),
                        bridge: true,
                    });
                }
                dseg.extend(self.dst_segment(d, dn, &dst_ns));
                self.mtu(&[(net, seg), (dn, dseg)])
            }
            _ => {
                self.nat(&oif_name, oif, src_ip)?;
                self.mtu(&[(net, seg)])
            }
        }
    }

    /// The host's route for a packet arriving on the bridge from SRC.
    /// None when it is for the host itself.
    fn host_route(&mut self, br: &LinkDetail, src: IpAddr, dst: IpAddr) -> Flow<Option<u32>> {
        let q = RouteQuery { src: Some(src), iif: Some(br.link.index), ..self.query(dst) };
        let bridge = &br.link.name;
        match self.host_nl.route_get(&q)? {
            Lookup::Refused { errno, reason } => {
                let sysctl = if dst.is_ipv4() {
                    "net.ipv4.ip_forward"
                } else {
                    "net.ipv6.conf.all.forwarding"
                };
                let path = format!("/proc/sys/{}", sysctl.replace('.', "/"));
                let off = std::fs::read_to_string(path).is_ok_and(|v| v.trim() == "0");
                let facts = format!("{dst} from {src} arriving on {bridge}: {reason}");
                let s = if off {
                    Step::fail(
                        K::HostRoute,
                        facts,
                        format!("forwarding is off on the host ({sysctl} = 0)"),
                    )
                    .fix(format!("sysctl -w {sysctl}=1   (or weft gc, which turns it on)"))
                } else if errno == libc::ENETUNREACH {
                    Step::fail(K::HostRoute, facts, format!("the host has no route to {dst}"))
                } else {
                    Step::fail(
                        K::HostRoute,
                        facts,
                        format!(
                            "the host refuses {src} -> {dst} from {bridge} (reverse-path filter?)"
                        ),
                    )
                };
                self.stop(s)
            }
            Lookup::Found(a) => match a.kind {
                RouteKind::Local => {
                    let step = Step::pass(
                        K::HostRoute,
                        format!(
                            "{dst} is an address of the host: delivered to its own stack \
                             (weft filters no input)"
                        ),
                    );
                    self.push(step)?;
                    self.published_port(dst)?;
                    Ok(None)
                }
                RouteKind::Unicast => {
                    let oif = a.oif.unwrap_or(0);
                    let dev = self.host.ns.name_of(oif);
                    let facts = match a.gateway {
                        Some(g) => format!("{dst} from {bridge}: via {g} dev {dev}"),
                        None => format!("{dst} from {bridge}: dev {dev}, direct"),
                    };
                    self.push(Step::pass(K::HostRoute, facts))?;
                    Ok(Some(oif))
                }
                other => {
                    let s = Step::fail(
                        K::HostRoute,
                        format!("{dst} from {bridge}: {other:?} route"),
                        "the host's route drops it",
                    );
                    self.stop(s)
                }
            },
        }
    }
}
