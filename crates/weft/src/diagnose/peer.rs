//! DST's end of a bridged path: its host veth, its interface, and the MTU
//! of every link of each L2 segment.

use std::net::IpAddr;

use weft_model::{Endpoint, Network};

use super::facts;
use super::hint::{ip, ip_in};
use super::live::NsView;
use super::steps::{Step, StepKind as K};
use super::walk::{Flow, SrcSide, Walk};

/// One link of an L2 segment, for the MTU comparison.
pub(super) struct MtuLink {
    pub label: String,
    pub mtu: u32,
    pub fix: String,
    /// A bridge takes the smallest MTU of its ports: blame a port first.
    pub bridge: bool,
}

impl<'a> Walk<'a> {
    pub(super) fn src_segment(&self, side: &SrcSide, net: &Network) -> Vec<MtuLink> {
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

    pub(super) fn dst_segment(
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

    pub(super) fn peer_veth(
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
        let state = v.port.as_ref().map_or("not a port", |p| p.state.as_str());
        let (facts, master) = facts::veth(&self.host.ns, v, Some(state));
        if !v.link.up {
            return self.stop(
                Step::fail(K::PeerVeth, facts, format!("host veth {name} is down"))
                    .fix(ip(&format!("link set {name} up"))),
            );
        }
        if master.as_deref() != Some(net.bridge.as_str()) {
            let s = Step::fail(K::PeerVeth, facts, facts::not_a_port(name, &net.bridge, master))
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

    pub(super) fn peer(
        &mut self,
        d: &Endpoint,
        dst_ns: &Result<NsView, String>,
        dst: IpAddr,
    ) -> Flow<()> {
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
            return self.stop(facts::interface_gone(K::Peer, d));
        };
        let addrs = ns.addrs_of(l.link.index);
        let facts = facts::interface(&format!("{}'s {}", d.container, d.ifname), ns, l);
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
    pub(super) fn mtu(&mut self, segments: &[(&Network, Vec<MtuLink>)]) -> Flow<()> {
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
}
