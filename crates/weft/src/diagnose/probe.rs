//! `weft explain --probe`: sends one real packet from SRC and reads the
//! packet counters of every interface on its way, before and after, to say
//! how far it got. Counters also count other traffic (ARP, replies), so a
//! hop that moved is "seen", one that did not is certainly not.

use std::time::Duration;

use anyhow::Result;
use weft_datapath::probe::{send_probe, ProbeOutcome, ProbeProto};
use weft_datapath::route_get::{Lookup, RouteKind, RouteQuery};
use weft_datapath::Netlink;

use super::live::{container_netns, open_netns, HostView};
use super::steps::{Step, StepKind as K};
use super::walk::{Ends, Proto};

const WAIT: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, PartialEq, Eq)]
enum At {
    Src,
    Host,
    Dst,
}

struct Hop {
    label: String,
    at: At,
    index: u32,
    /// Count received packets (else sent ones).
    rx: bool,
}

pub fn run(
    host: &HostView,
    host_nl: &mut Netlink,
    ends: &Ends,
    node: Option<&str>,
    proto: Proto,
    port: Option<u16>,
) -> Result<Step> {
    let src = ends.src;
    let dst_ip = ends.dst_ip;
    let ns = match container_netns(src) {
        Ok(ns) => ns,
        Err(e) => {
            return Ok(Step::fail(
                K::Probe,
                "not sent",
                format!("cannot enter {}: {e}", src.container),
            ))
        }
    };
    let mut src_nl = ns.netlink()?;
    let dst = ends.dst.filter(|d| d.node.is_none() || d.node.as_deref() == node);
    let mut dst_nl = dst.and_then(|d| open_netns(d).ok());

    let mut hops = Vec::new();
    let mut hop = |label: String, at: At, index: Option<u32>, rx: bool| {
        if let Some(index) = index {
            hops.push(Hop { label, at, index, rx });
        }
    };
    let link = |nl: &mut Netlink, name: &str| nl.link_by_name(name).ok().flatten().map(|l| l.index);
    hop(
        format!("{}@{}", src.ifname, src.container),
        At::Src,
        link(&mut src_nl, &src.ifname),
        false,
    );
    hop(src.host_veth.clone(), At::Host, host.ns.link(&src.host_veth).map(|l| l.link.index), true);
    let mut dst_side = |hop: &mut dyn FnMut(String, At, Option<u32>, bool),
                        d: &weft_model::Endpoint| {
        hop(d.host_veth.clone(), At::Host, host.ns.link(&d.host_veth).map(|l| l.link.index), false);
        let idx = dst_nl.as_mut().and_then(|nl| link(nl, &d.ifname));
        hop(format!("{}@{}", d.ifname, d.container), At::Dst, idx, true);
    };
    match dst.filter(|d| d.network == src.network) {
        Some(d) => dst_side(&mut hop, d),
        None => {
            let bridge = host.ns.links.iter().find(|l| {
                Some(l.link.index) == host.ns.link(&src.host_veth).and_then(|v| v.link.master)
            });
            if let Some(b) = bridge {
                hop(
                    format!("{} (up to the host)", b.link.name),
                    At::Host,
                    Some(b.link.index),
                    true,
                );
                let q = RouteQuery {
                    src: Some(src.address.addr().into()),
                    iif: Some(b.link.index),
                    ..RouteQuery::to(dst_ip)
                };
                if let Ok(Lookup::Found(a)) = host_nl.route_get(&q) {
                    if a.kind == RouteKind::Unicast {
                        let oif = a.oif.unwrap_or(0);
                        let name = host.ns.name_of(oif);
                        hop(format!("{name} (out)"), At::Host, Some(oif), false);
                        if let Some(d) = dst.filter(|_| host.ns.link_at(oif).is_some()) {
                            dst_side(&mut hop, d);
                        }
                    }
                }
            }
        }
    }

    let mut read =
        |hops: &[Hop], src_nl: &mut Netlink, dst_nl: &mut Option<Netlink>| -> Vec<Option<u64>> {
            hops.iter()
                .map(|h| {
                    let nl = match h.at {
                        At::Src => Some(&mut *src_nl),
                        At::Host => Some(&mut *host_nl),
                        At::Dst => dst_nl.as_mut(),
                    };
                    let c = nl?.counters(h.index).ok().flatten()?;
                    Some(if h.rx { c.rx_packets } else { c.tx_packets })
                })
                .collect()
        };
    let before = read(&hops, &mut src_nl, &mut dst_nl);
    let pproto = match proto {
        Proto::Icmp => ProbeProto::Icmp,
        Proto::Tcp => ProbeProto::Tcp(port.unwrap_or(80)),
        Proto::Udp => ProbeProto::Udp(port.unwrap_or(53)),
    };
    let (outcome, sent) = send_probe(&ns, dst_ip, pproto, WAIT)?;
    // A hop saw the probe if its counter moved by at least what was sent.
    let need = u64::from(sent.max(1));
    std::thread::sleep(Duration::from_millis(100));
    let after = read(&hops, &mut src_nl, &mut dst_nl);

    let mut seen = Vec::new();
    let mut last_seen = None;
    let mut first_unseen = None;
    for (i, h) in hops.iter().enumerate() {
        let delta = match (before[i], after[i]) {
            (Some(b), Some(a)) => Some(a.saturating_sub(b)),
            _ => None,
        };
        let dir = if h.rx { "rx" } else { "tx" };
        match delta {
            Some(n) => seen.push(format!("{} {dir} +{n}", h.label)),
            None => seen.push(format!("{} {dir} ?", h.label)),
        }
        match delta {
            Some(n) if n >= need && first_unseen.is_none() => last_seen = Some(h.label.clone()),
            Some(_) if first_unseen.is_none() => first_unseen = Some(h.label.clone()),
            _ => {}
        }
    }
    let what = match proto {
        Proto::Icmp => format!("{sent} ICMP echo requests"),
        Proto::Tcp => format!("a TCP SYN to port {}", port.unwrap_or(80)),
        Proto::Udp => format!("{sent} UDP datagrams to port {}", port.unwrap_or(53)),
    };
    let counted = format!("packets counted on the way: {}", seen.join(", "));
    let step = match outcome {
        ProbeOutcome::Answered { rtt } => Step::pass(
            K::Probe,
            format!("sent {what} to {dst_ip}: answered after {:.1} ms", rtt.as_secs_f64() * 1e3),
        ),
        ProbeOutcome::Refused => Step::pass(
            K::Probe,
            format!(
                "sent {what} to {dst_ip}: refused by its stack (it got there; nothing listens)"
            ),
        ),
        other => {
            let got = match other {
                ProbeOutcome::Unreachable(w) => format!("unreachable: {w}"),
                ProbeOutcome::SendFailed(w) => format!("not sent: {w}"),
                _ => format!("no answer within {} s", WAIT.as_secs()),
            };
            let why = match (last_seen, first_unseen) {
                (Some(l), Some(u)) => format!("last seen at {l}, never at {u}"),
                (None, Some(u)) => format!("never seen, not even at {u}"),
                (Some(l), None) => format!("seen as far as {l}, but no answer came back"),
                (None, None) => "no counters to tell where it went".to_string(),
            };
            Step::fail(K::Probe, format!("sent {what} to {dst_ip}: {got}"), why)
        }
    };
    Ok(step.note(counted))
}
