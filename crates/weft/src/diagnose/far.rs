//! The far side of the walk, after SRC's bridge port: the bridge FDB, then
//! either the peer's port on the same bridge, the host's routing and
//! weft's firewall (another network, the host, the outside), or the VXLAN
//! device towards another host; finally the MTU of each L2 segment.

use std::net::IpAddr;

use weft_datapath::link_detail::LinkDetail;
use weft_datapath::route_get::{Lookup, RouteKind, RouteQuery};
use weft_model::{Endpoint, Mac, Network};

use super::firewall::{self, Action, Decision, Packet};
use super::hint::{ip, ip_in};
use super::live::{open_netns, NsView};
use super::steps::{Step, StepKind as K};
use super::walk::{is_link_local, net_of, Ends, Flow, SrcSide, Walk};

/// One link of an L2 segment, for the MTU comparison.
struct MtuLink {
    label: String,
    mtu: u32,
    fix: String,
    /// A bridge takes the smallest MTU of its ports: blame a port first.
    bridge: bool,
}

impl<'a> Walk<'a> {
    /// Everything after SRC's bridge port.
    pub fn beyond(&mut self, ends: &Ends<'a>, side: &SrcSide<'a>) -> Flow<()> {
        let net = net_of(self.nets, side.src).unwrap_or(ends.src_net);
        let br = side.bridge;
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
                self.push(Step::pass(K::Fdb, format!("{mac} -> port {at} of {bridge} ({})", d.container)))
            }
            Some(e) => {
                let at = self.host.ns.name_of(e.port);
                let s = Step::fail(
                    K::Fdb,
                    format!("{mac} -> port {at} of {bridge}"),
                    format!("{bridge} sends {}'s MAC to port {at}, but {} is behind {}", d.container, d.container, d.host_veth),
                )
                .fix(format!("bridge fdb del {mac} dev {at} master"));
                self.stop(s)
            }
            None => self.push(Step::pass(
                K::Fdb,
                format!("{mac} not in {bridge}'s FDB yet: the frame floods to every port; {}'s answer teaches the bridge its port", d.container),
            )),
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
        let dst_ns = open_netns(&d.netns)
            .and_then(|mut nl| NsView::read(&mut nl).map_err(|e| format!("{e:#}")));
        self.peer_veth(d, net, &dst_ns)?;
        self.peer(d, &dst_ns, ends.dst_ip)?;
        seg.extend(self.dst_segment(d, net, &dst_ns));
        self.mtu(&[(net, seg)])
    }

    fn src_segment(&self, side: &SrcSide, net: &Network) -> Vec<MtuLink> {
        let src = side.src;
        let mut seg = Vec::new();
        if let Some(l) = side.ns.link(&src.ifname) {
            seg.push(MtuLink {
                label: format!("{} ({})", src.ifname, src.container),
                mtu: l.link.mtu,
                fix: ip_in(&src.netns, &format!("link set {} mtu {}", src.ifname, net.mtu)),
                bridge: false,
            });
        }
        for name in [&src.host_veth, &net.bridge] {
            if let Some(l) = self.host.ns.link(name) {
                seg.push(MtuLink {
                    label: name.clone(),
                    mtu: l.link.mtu,
                    fix: ip(&format!("link set {name} mtu {}", net.mtu)),
                    bridge: *name == net.bridge,
                });
            }
        }
        seg
    }

    fn dst_segment(
        &self,
        d: &Endpoint,
        net: &Network,
        dst_ns: &Result<NsView, String>,
    ) -> Vec<MtuLink> {
        let mut seg = Vec::new();
        if let Some(l) = self.host.ns.link(&d.host_veth) {
            seg.push(MtuLink {
                label: d.host_veth.clone(),
                mtu: l.link.mtu,
                fix: ip(&format!("link set {} mtu {}", d.host_veth, net.mtu)),
                bridge: false,
            });
        }
        if let Some(l) = dst_ns.as_ref().ok().and_then(|ns| ns.link(&d.ifname)) {
            seg.push(MtuLink {
                label: format!("{} ({})", d.ifname, d.container),
                mtu: l.link.mtu,
                fix: ip_in(&d.netns, &format!("link set {} mtu {}", d.ifname, net.mtu)),
                bridge: false,
            });
        }
        seg
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
        let br = side.bridge;
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
                let dst_ns = open_netns(&d.netns)
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
                    self.push(Step::pass(K::HostRoute, format!("{dst} is an address of the host: delivered to its own stack (weft filters no input)")))?;
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

    /// A bridged frame: the forward hook sees it only under br_netfilter,
    /// with the bridge as both interfaces.
    fn firewall_bridged(&mut self, bridge: &str, dst: IpAddr, src: &Endpoint) -> Flow<()> {
        let Some(sets) = self.sets.clone() else { return self.no_table() };
        let family = if dst.is_ipv4() { "iptables" } else { "ip6tables" };
        let brnf = std::fs::read_to_string(format!("/proc/sys/net/bridge/bridge-nf-call-{family}"))
            .is_ok_and(|v| v.trim() == "1");
        let p = Packet {
            iif: bridge,
            oif: bridge,
            saddr: src_addr(src, dst),
            established: false,
            dnat: false,
        };
        let d = firewall::forward(&p, &sets);
        let facts = format!(
            "bridged within {bridge}; forward chain (iif {bridge} oif {bridge}): {}",
            describe(&d)
        );
        if !brnf {
            return self.push(
                Step::pass(K::Firewall, facts)
                    .note("br_netfilter is off here: bridged frames do not meet nftables at all"),
            );
        }
        match d.action {
            Action::Drop => self.stop(
                Step::fail(K::Firewall, facts, d.why).fix("weft gc   (rebuilds weft's table)"),
            ),
            _ => self.push(Step::pass(K::Firewall, facts).note(d.why)),
        }
    }

    fn firewall_routed(
        &mut self,
        ends: &Ends,
        src: &Endpoint,
        iif: &str,
        oif: &str,
        saddr: IpAddr,
    ) -> Flow<()> {
        let Some(sets) = self.sets.clone() else { return self.no_table() };
        let p = Packet { iif, oif, saddr, established: false, dnat: false };
        let d = firewall::forward(&p, &sets);
        let facts = format!("forward chain, iif {iif} oif {oif}: {}", describe(&d));
        if d.action != Action::Drop {
            return self.push(Step::pass(K::Firewall, facts).note(d.why));
        }
        let reason = match d.rule {
            Some(3) => "internal networks have no way out",
            Some(4) => "internal networks let nothing in from other networks",
            Some(6) => "weft isolates its networks from each other",
            Some(7) => "containers take no unsolicited connections from outside",
            _ => "weft's firewall drops it",
        };
        let why = format!("{reason} ({})", d.why);
        let join = ends.dst.filter(|_| matches!(d.rule, Some(4 | 6))).map(|dst| {
            format!(
                "weft attach {} {} --ifname eth1   (a container on both networks reaches both)",
                dst.network, src.container
            )
        });
        let fix = match d.rule {
            Some(3) => Some(format!("none: network {} is internal by design; attach {} to a non-internal network for a way out", src.network, src.container)),
            _ => join,
        };
        self.stop(Step::fail(K::Firewall, facts, why).fix_opt(fix))
    }

    fn no_table(&mut self) -> Flow<()> {
        let (facts, why) = match &self.host.firewall {
            Err(e) => ("cannot read table inet weft".to_string(), e.clone()),
            Ok(_) => (
                "table inet weft is absent".to_string(),
                "nothing isolates weft's networks and nothing is NATed".to_string(),
            ),
        };
        self.push(Step::warn(K::Firewall, facts, why).fix("weft gc"))
    }

    fn nat(&mut self, oif: &str, oif_index: u32, saddr: IpAddr) -> Flow<()> {
        let Some(sets) = self.sets.clone() else { return Ok(()) };
        let p = Packet { iif: "", oif, saddr, established: false, dnat: false };
        let out_addr = self
            .host
            .ns
            .addrs_of(oif_index)
            .into_iter()
            .find(|a| a.addr().is_ipv4() == saddr.is_ipv4() && !is_link_local(a.addr()))
            .map(|a| a.addr().to_string())
            .unwrap_or_else(|| "(none)".into());
        let beyond = format!("beyond {oif} the path leaves weft: not checked");
        match firewall::postrouting(&p, &sets) {
            Some(d) => self.push(
                Step::pass(
                    K::Nat,
                    format!("masquerade ({}): leaves {oif} as {out_addr}", describe(&d)),
                )
                .note(d.why)
                .note(beyond),
            ),
            None => self.push(
                Step::warn(
                    K::Nat,
                    format!("no masquerade: leaves {oif} as {saddr}"),
                    format!("{saddr} is in no @masq set: replies need a route back"),
                )
                .fix("weft gc")
                .note(beyond),
            ),
        }
    }

    fn peer_veth(
        &mut self,
        d: &Endpoint,
        net: &Network,
        dst_ns: &Result<NsView, String>,
    ) -> Flow<()> {
        let name = &d.host_veth;
        let Some(v) = self.host.ns.link(name) else {
            let s = Step::fail(
                K::PeerVeth,
                format!("host veth {name} of {} is missing", d.container),
                "the host end of its veth pair is gone",
            )
            .fix("weft gc");
            return self.stop(s);
        };
        let master = v.link.master.map(|m| self.host.ns.name_of(m));
        let state = v.port.as_ref().map_or("not a port", |p| p.state.as_str());
        let facts = format!(
            "{name} {}, {}, {}, {state}, mtu {}",
            if v.link.up { "up" } else { "DOWN" },
            if v.link.lower_up { "carrier" } else { "NO CARRIER" },
            master.as_deref().map_or_else(|| "in no bridge".into(), |m| format!("port of {m}")),
            v.link.mtu
        );
        if !v.link.up {
            return self.stop(
                Step::fail(K::PeerVeth, facts, format!("host veth {name} is down"))
                    .fix(ip(&format!("link set {name} up"))),
            );
        }
        if master.as_deref() != Some(net.bridge.as_str()) {
            let now = master.map_or_else(
                || "it is in no bridge".to_string(),
                |m| format!("it is a port of {m}"),
            );
            let s = Step::fail(
                K::PeerVeth,
                facts,
                format!("{name} is not a port of {}: {now}", net.bridge),
            )
            .fix(ip(&format!("link set {name} master {}", net.bridge)));
            return self.stop(s);
        }
        // No carrier because the container's end is down: that is the
        // next step's finding, not this one's.
        let inner_down =
            dst_ns.as_ref().ok().and_then(|ns| ns.link(&d.ifname)).is_some_and(|l| !l.link.up);
        if !v.link.lower_up || state != "forwarding" {
            if inner_down || dst_ns.is_err() {
                return self.push(Step::pass(K::PeerVeth, facts).note(format!(
                    "no carrier: {}'s end is down or gone (next step)",
                    d.container
                )));
            }
            let why = if v.link.lower_up {
                format!("port {name} does not forward ({state})")
            } else {
                format!("{name} has no carrier")
            };
            return self.stop(
                Step::fail(K::PeerVeth, facts, why)
                    .fix(format!("bridge link set dev {name} state 3")),
            );
        }
        self.push(Step::pass(K::PeerVeth, facts))
    }

    fn peer(&mut self, d: &Endpoint, dst_ns: &Result<NsView, String>, dst: IpAddr) -> Flow<()> {
        let ns = match dst_ns {
            Ok(ns) => ns,
            Err(e) => {
                let s = Step::fail(
                    K::Peer,
                    format!("{}'s namespace {}", d.container, d.netns),
                    e.clone(),
                )
                .fix("weft gc   (the container is gone; gc removes its endpoints)");
                return self.stop(s);
            }
        };
        let Some(l) = ns.link(&d.ifname) else {
            let s = Step::fail(
                K::Peer,
                format!("no {} in {}", d.ifname, d.container),
                "the container's end of the veth pair is gone",
            )
            .fix(format!(
                "weft detach {n} {c} && weft attach {n} {c}",
                n = d.network,
                c = d.container
            ));
            return self.stop(s);
        };
        let addrs = ns.addrs_of(l.link.index);
        let shown: Vec<String> =
            addrs.iter().filter(|a| !is_link_local(a.addr())).map(|a| a.to_string()).collect();
        let mac = l.link.mac.map(|m| m.to_string()).unwrap_or_default();
        let facts = format!(
            "{}'s {} {}, {}, {mac}, mtu {}",
            d.container,
            d.ifname,
            if l.link.up { "up" } else { "DOWN" },
            if shown.is_empty() { "no address".into() } else { shown.join(" ") },
            l.link.mtu
        );
        if !l.link.up {
            let s = Step::fail(
                K::Peer,
                facts,
                format!("{}'s {} is down: nothing receives the frame", d.container, d.ifname),
            )
            .fix(ip_in(&d.netns, &format!("link set {} up", d.ifname)));
            return self.stop(s);
        }
        if !addrs.iter().any(|a| a.addr() == dst) {
            let want = if dst.is_ipv4() {
                d.address.to_string()
            } else {
                d.address6.map(|a| a.to_string()).unwrap_or_else(|| dst.to_string())
            };
            let s =
                Step::fail(K::Peer, facts, format!("{}'s {} lacks {dst}", d.container, d.ifname))
                    .fix(ip_in(&d.netns, &format!("addr add {want} dev {}", d.ifname)));
            return self.stop(s);
        }
        if l.link.mac.is_some_and(|m| m != d.mac) {
            return self.push(Step::warn(
                K::Peer,
                facts,
                format!("its MAC is not the store's {}", d.mac),
            ));
        }
        self.push(Step::pass(K::Peer, facts))
    }

    /// Every link of an L2 segment must have the network's MTU: a frame
    /// bigger than the receiving link's MTU is dropped where it meets it.
    fn mtu(&mut self, segments: &[(&Network, Vec<MtuLink>)]) -> Flow<()> {
        let facts: Vec<String> = segments
            .iter()
            .map(|(_, seg)| {
                seg.iter().map(|l| format!("{} {}", l.label, l.mtu)).collect::<Vec<_>>().join(", ")
            })
            .collect();
        let facts = facts.join(" | ");
        for (net, seg) in segments {
            let off = |l: &&MtuLink| l.mtu != net.mtu;
            if let Some(bad) =
                seg.iter().filter(off).find(|l| !l.bridge).or_else(|| seg.iter().find(off))
            {
                let min = seg.iter().map(|l| l.mtu).min().unwrap_or(bad.mtu);
                let why = format!(
                    "{} has MTU {}, network {} has {}: frames over {min} bytes are dropped on this path",
                    bad.label, bad.mtu, net.name, net.mtu
                );
                return self.stop(Step::fail(K::Mtu, facts, why).fix(bad.fix.clone()));
            }
        }
        let all: Vec<u32> = segments.iter().map(|(n, _)| n.mtu).collect();
        let same = all.windows(2).all(|w| w[0] == w[1]);
        let summary = if same {
            format!("{} all along: {facts}", all.first().copied().unwrap_or(0))
        } else {
            facts
        };
        self.push(Step::pass(K::Mtu, summary))
    }

    /// To another host over the overlay: the bridge hands the frame to the
    /// VXLAN device, whose own FDB names the remote host's VTEP.
    fn overlay(
        &mut self,
        ends: &Ends<'a>,
        side: &SrcSide<'a>,
        net: &Network,
        d: &Endpoint,
        mac: Mac,
        seg: Vec<MtuLink>,
    ) -> Flow<()> {
        let host = self.host;
        let br = side.bridge;
        let node = d.node.clone().unwrap_or_default();
        let vx = host.ns.links.iter().find(|l| {
            l.link.kind.as_deref() == Some("vxlan") && l.link.master == Some(br.link.index)
        });
        let Some(vx) = vx else {
            let s = Step::fail(
                K::Fdb,
                format!("{} has no VXLAN port", net.bridge),
                format!(
                    "{} is on host {node}, but this host's bridge has no tunnel to it",
                    d.container
                ),
            )
            .fix("run weft agent on this host (it builds the overlay)");
            return self.stop(s);
        };
        let vname = &vx.link.name;
        match host.fdb_entry(br.link.index, mac) {
            Some(e) if e.port == vx.link.index => self.push(Step::pass(
                K::Fdb,
                format!("{mac} -> port {vname} of {} ({} on host {node})", net.bridge, d.container),
            ))?,
            other => {
                let at = other.map_or_else(
                    || "no entry".to_string(),
                    |e| format!("port {}", host.ns.name_of(e.port)),
                );
                let s = Step::fail(
                    K::Fdb,
                    format!("{mac}: {at} in {}", net.bridge),
                    format!("{} is on host {node}: its MAC belongs on {vname}", d.container),
                )
                .fix("weft agent reconciles the overlay's entries (is it running?)");
                return self.stop(s);
            }
        }
        let entry =
            host.fdb.iter().find(|e| e.port == vx.link.index && e.mac == mac && e.dst.is_some());
        let Some(vtep) = entry.and_then(|e| e.dst) else {
            let s = Step::fail(
                K::VxlanFdb,
                format!("{vname} has no entry for {mac}"),
                "without it the VXLAN device drops the frame (learning is off)",
            )
            .fix("weft agent reconciles the overlay's entries (is it running?)");
            return self.stop(s);
        };
        self.push(Step::pass(
            K::VxlanFdb,
            format!("{mac} -> VTEP {vtep} (host {node}) via {vname}"),
        ))?;
        match self.host_nl.route_get(&RouteQuery::to(vtep))? {
            Lookup::Found(a) if a.kind == RouteKind::Unicast => {
                let dev = host.ns.name_of(a.oif.unwrap_or(0));
                self.push(Step::pass(
                    K::Underlay,
                    format!(
                        "{vtep} dev {dev}{}",
                        a.gateway.map(|g| format!(" via {g}")).unwrap_or_default()
                    ),
                ))?
            }
            other => {
                let s = Step::fail(
                    K::Underlay,
                    format!("no usable route to {vtep}: {other:?}"),
                    format!("host {node}'s underlay address is unreachable from here"),
                );
                return self.stop(s);
            }
        }
        self.firewall_bridged(&net.bridge, ends.dst_ip, side.src)?;
        self.push(Step::pass(
            K::Peer,
            format!(
                "{} is on host {node}: not observable from here (run weft explain there)",
                d.container
            ),
        ))?;
        let mut seg = seg;
        seg.push(MtuLink {
            label: vname.clone(),
            mtu: vx.link.mtu,
            fix: ip(&format!("link set {vname} mtu {}", net.mtu)),
            bridge: false,
        });
        self.mtu(&[(net, seg)])
    }
}

fn describe(d: &Decision) -> String {
    let verdict = match d.action {
        Action::Accept => "accept",
        Action::Drop => "drop",
        Action::Masquerade => "masquerade",
    };
    match d.rule {
        Some(n) => format!("rule {n} \"{}\" -> {verdict}", d.comment),
        None => format!("{} -> {verdict}", d.comment),
    }
}

/// SRC's address in DST's family.
fn src_addr(src: &Endpoint, dst: IpAddr) -> IpAddr {
    match (dst, src.address6) {
        (IpAddr::V6(_), Some(a6)) => a6.addr().into(),
        _ => src.address.addr().into(),
    }
}
