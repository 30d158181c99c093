//! Building the topology: the store says what should exist, the kernel what
//! does; each endpoint, bridge and the firewall get marks where they differ.

use std::collections::BTreeMap;

use weft_datapath::link_detail::LinkDetail;
use weft_model::{Endpoint, EndpointState, Network};

use super::firewall::{Sets, FORWARD_RULES, MASQ_RULES};
use super::hint::{ip, ip_in};
use super::live::{HostView, NsState};
use super::model::*;

/// What to draw: networks and endpoints from the store, the local host's
/// kernel state, and the name weft knows this host by (cluster node).
pub struct Inputs<'a> {
    pub networks: &'a [Network],
    pub endpoints: &'a [Endpoint],
    pub host: &'a HostView,
    pub containers: &'a BTreeMap<String, NsState>,
    pub node: Option<&'a str>,
    /// Podman networks weft keeps unused for a moment, gateways off.
    pub idle: &'a [String],
}

pub fn topology(inp: &Inputs) -> Topology {
    let local_name = inp.node.map_or_else(|| inp.host.name.clone(), str::to_string);
    let is_local = |ep: &Endpoint| ep.node.as_deref().is_none_or(|n| Some(n) == inp.node);
    let sets = inp.host.firewall.as_ref().ok().filter(|s| s.present).map(Sets::from_status);
    let uplinks = uplinks(inp.host);

    let mut local = Host {
        name: local_name,
        observed: true,
        firewall: Some(firewall(inp, sets.is_some())),
        networks: Vec::new(),
        uplinks,
    };
    for net in inp.networks {
        let eps: Vec<&Endpoint> =
            inp.endpoints.iter().filter(|e| e.network == net.name && is_local(e)).collect();
        local.networks.push(network(inp, net, &eps, sets.as_ref(), &local.uplinks));
    }

    // Endpoints other hosts run (overlay networks): store view only.
    let mut remote: BTreeMap<&str, Vec<&Endpoint>> = BTreeMap::new();
    for ep in inp.endpoints.iter().filter(|e| !is_local(e)) {
        remote.entry(ep.node.as_deref().unwrap_or("?")).or_default().push(ep);
    }
    let mut hosts = vec![local];
    for (name, eps) in remote {
        let mut networks = Vec::new();
        for net in inp.networks {
            let mine: Vec<&Endpoint> =
                eps.iter().copied().filter(|e| e.network == net.name).collect();
            if !mine.is_empty() {
                networks.push(unobserved_network(net, &mine));
            }
        }
        hosts.push(Host {
            name: name.to_string(),
            observed: false,
            uplinks: Vec::new(),
            firewall: None,
            networks,
        });
    }
    Topology { hosts }
}

fn uplinks(host: &HostView) -> Vec<Uplink> {
    let mut out: Vec<Uplink> = Vec::new();
    for r in host.routes.iter().filter(|r| r.dest.prefix_len() == 0) {
        let Some(l) = r.oif.and_then(|i| host.ns.link_at(i)) else { continue };
        if let Some(u) = out.iter_mut().find(|u| u.name == l.link.name) {
            if u.gateway.is_none() {
                u.gateway = r.gateway.map(|g| g.to_string());
            }
            continue;
        }
        out.push(Uplink {
            name: l.link.name.clone(),
            addresses: global_addrs(host, l),
            gateway: r.gateway.map(|g| g.to_string()),
            mtu: l.link.mtu,
            up: l.link.up,
        });
    }
    out
}

/// Addresses except IPv6 link-local ones (every interface has one).
fn global_addrs(host: &HostView, l: &LinkDetail) -> Vec<String> {
    host.ns
        .addrs_of(l.link.index)
        .iter()
        .filter(
            |a| !matches!(a.addr(), std::net::IpAddr::V6(v) if v.segments()[0] & 0xffc0 == 0xfe80),
        )
        .map(|a| a.to_string())
        .collect()
}

fn firewall(inp: &Inputs, present: bool) -> FirewallView {
    let mut fw =
        FirewallView { table: "inet weft".into(), present, forward_rules: 0, marks: Vec::new() };
    match &inp.host.firewall {
        Err(e) => fw.marks.push(Mark::error(format!("cannot read the table: {e}"), None)),
        Ok(st) if !st.present => {
            if !inp.networks.is_empty() {
                fw.marks.push(Mark::error(
                    "table inet weft is missing: no isolation, no NAT, no published ports",
                    Some("weft firewall reload".into()),
                ));
            }
        }
        Ok(st) => {
            let forward = st.chains.get("forward").copied().unwrap_or(0);
            fw.forward_rules = forward;
            let post = st.chains.get("postrouting").copied().unwrap_or(0);
            if forward != FORWARD_RULES || post < MASQ_RULES {
                fw.marks.push(Mark::warning(
                    format!(
                        "chain forward has {forward} rules, postrouting {post}; weft's have {FORWARD_RULES} and \
                         {MASQ_RULES} or more: changed by hand?"
                    ),
                    Some("weft firewall reload".into()),
                ));
            }
        }
    }
    fw
}

fn network(
    inp: &Inputs,
    net: &Network,
    eps: &[&Endpoint],
    sets: Option<&Sets>,
    uplinks: &[Uplink],
) -> NetView {
    let host = inp.host;
    let br = host.ns.link(&net.bridge);
    let mut marks = Vec::new();
    let bridge = match br {
        None => {
            marks.push(Mark::missing(format!("bridge {}", net.bridge)));
            BridgeView::missing(&net.bridge)
        }
        Some(b) => {
            let addresses = global_addrs(host, b);
            if !b.link.up {
                marks.push(Mark::error(
                    format!("bridge {} is down", net.bridge),
                    Some(ip(&format!("link set {} up", net.bridge))),
                ));
            }
            let gw = net.gateway_cidr().to_string();
            if inp.idle.contains(&net.name) {
                marks.push(Mark::warning(
                    format!(
                        "idle: a Podman network without containers, removed in a moment; \
                         its gateway {gw} returns with the next container"
                    ),
                    None,
                ));
            } else if !addresses.contains(&gw) {
                marks.push(Mark::error(
                    format!("bridge {} lacks the gateway address {gw}", net.bridge),
                    Some(ip(&format!("addr add {gw} dev {}", net.bridge))),
                ));
            }
            BridgeView {
                name: net.bridge.clone(),
                present: true,
                up: b.link.up,
                mac: b.link.mac.map(|m| m.to_string()),
                mtu: Some(b.link.mtu),
                addresses,
                ports: host.ns.links.iter().filter(|l| l.link.master == Some(b.link.index)).count(),
            }
        }
    };
    if let Some(s) = sets {
        let pair = format!("{b} . {b}", b = net.bridge);
        let missing = !s.bridges.contains(&net.bridge)
            || !s.same_bridge.contains(&pair)
            || (net.internal && !s.internal.contains(&net.bridge));
        if missing {
            marks.push(Mark::error(
                format!("bridge {} is missing from weft's firewall sets", net.bridge),
                Some("weft gc".into()),
            ));
        }
    }
    let vxlan = br.and_then(|b| {
        let v = host.ns.links.iter().find(|l| {
            l.link.kind.as_deref() == Some("vxlan") && l.link.master == Some(b.link.index)
        })?;
        Some(VxlanView {
            name: v.link.name.clone(),
            up: v.link.up,
            in_bridge: true,
            remote_entries: host.vteps.get(&v.link.index).map_or(0, Vec::len),
        })
    });
    let egress = (!net.internal).then(|| uplinks.first().map(|u| u.name.clone())).flatten();
    let endpoints = eps.iter().map(|e| endpoint(inp, net, br, e)).collect();
    network_view(net, bridge, vxlan, egress, endpoints, marks)
}

/// The store's record of `net` with what was observed of it.
fn network_view(
    net: &Network,
    bridge: BridgeView,
    vxlan: Option<VxlanView>,
    egress: Option<String>,
    endpoints: Vec<EndpointView>,
    marks: Vec<Mark>,
) -> NetView {
    NetView {
        name: net.name.clone(),
        driver: net.driver.to_string(),
        subnet: net.subnet.to_string(),
        gateway: net.gateway.to_string(),
        subnet6: net.subnet6.map(|s| s.to_string()),
        internal: net.internal,
        mtu: net.mtu,
        endpoints,
        bridge,
        vxlan,
        egress,
        marks,
    }
}

fn endpoint(inp: &Inputs, net: &Network, br: Option<&LinkDetail>, ep: &Endpoint) -> EndpointView {
    let host = inp.host;
    let mut marks = Vec::new();
    if ep.state == EndpointState::Creating {
        marks.push(Mark::warning("attach in progress, or interrupted", Some("weft gc".into())));
    }
    let veth = host.ns.link(&ep.host_veth);
    let (iface, peer_index) = match inp.containers.get(&ep.netns) {
        None | Some(Err(_)) => {
            let why = match inp.containers.get(&ep.netns) {
                Some(Err(e)) => e.clone(),
                _ => format!("netns {} not read", ep.netns),
            };
            marks.push(Mark::error(why, Some("weft gc".into())));
            (None, None)
        }
        Some(Ok(ns)) => match ns.link(&ep.ifname) {
            None => {
                marks.push(Mark::error(
                    format!("no {} in the container", ep.ifname),
                    Some(format!(
                        "weft detach {n} {c} && weft attach {n} {c}",
                        n = ep.network,
                        c = ep.container
                    )),
                ));
                (
                    Some(IfView {
                        present: false,
                        up: false,
                        mtu: 0,
                        mac: None,
                        addresses: vec![],
                    }),
                    None,
                )
            }
            Some(l) => {
                let addrs = ns.addrs_of(l.link.index);
                let in_ns = |args: String| Some(ip_in(&ep.netns, &args));
                if !l.link.up {
                    marks.push(Mark::error(
                        format!("{} is down in the container", ep.ifname),
                        in_ns(format!("link set {} up", ep.ifname)),
                    ));
                }
                for want in std::iter::once(ipnet::IpNet::V4(ep.address))
                    .chain(ep.address6.map(ipnet::IpNet::V6))
                {
                    if !addrs.contains(&want) {
                        marks.push(Mark::error(
                            format!("{} lacks its address {want}", ep.ifname),
                            in_ns(format!("addr add {want} dev {}", ep.ifname)),
                        ));
                    }
                }
                if l.link.mac.is_some_and(|m| m != ep.mac) {
                    marks.push(Mark::warning(
                        format!(
                            "{} has MAC {}, the store says {}",
                            ep.ifname,
                            l.link.mac.unwrap_or(ep.mac),
                            ep.mac
                        ),
                        None,
                    ));
                }
                if l.link.mtu != net.mtu {
                    marks.push(mtu_mark(
                        &ep.ifname,
                        l.link.mtu,
                        net.mtu,
                        in_ns(format!("link set {} mtu {}", ep.ifname, net.mtu)),
                    ));
                }
                let view = IfView {
                    present: true,
                    up: l.link.up,
                    mtu: l.link.mtu,
                    mac: l.link.mac.map(|m| m.to_string()),
                    addresses: super::facts::shown_addrs(ns, l),
                };
                (Some(view), Some((l.link.index, l.link.up)))
            }
        },
    };
    let mut fdb_port = None;
    let host_veth = match veth {
        None => {
            marks.push(Mark::missing(format!("host veth {}", ep.host_veth)));
            VethView::missing(&ep.host_veth)
        }
        Some(v) => {
            veth_marks(&mut marks, net, br, v, peer_index);
            if let Some(b) = br {
                match host.fdb_entry(b.link.index, ep.mac) {
                    Some(e) if e.port != v.link.index => {
                        let port = host.ns.name_of(e.port);
                        marks.push(Mark::error(
                            format!(
                                "{} sends {} to port {port}, not {}",
                                net.bridge, ep.mac, ep.host_veth
                            ),
                            Some(format!("bridge fdb del {} dev {port} master", ep.mac)),
                        ));
                        fdb_port = Some(port);
                    }
                    Some(_) => fdb_port = Some(ep.host_veth.clone()),
                    // Traffic has flowed through a forwarding port, yet the
                    // bridge does not know the MAC behind it.
                    None if v.counters.rx_packets > 0
                        && v.link.master == Some(b.link.index)
                        && v.port.as_ref().is_some_and(|p| p.forwarding()) =>
                    {
                        marks.push(Mark::warning(
                            format!(
                                "{} is not in {}'s FDB, yet {} has received {} packets (idle over 5 min?)",
                                ep.mac, net.bridge, ep.host_veth, v.counters.rx_packets
                            ),
                            None,
                        ));
                    }
                    None => {}
                }
            }
            VethView {
                name: ep.host_veth.clone(),
                present: true,
                up: v.link.up,
                carrier: v.link.lower_up,
                mtu: Some(v.link.mtu),
                master: v.link.master.map(|m| host.ns.name_of(m)),
                port_state: v.port.as_ref().map(|p| p.state.clone()),
            }
        }
    };
    endpoint_view(ep, host_veth, iface, fdb_port, marks)
}

/// The store's record of `ep` with what was observed of it.
fn endpoint_view(
    ep: &Endpoint,
    host_veth: VethView,
    interface: Option<IfView>,
    fdb_port: Option<String>,
    marks: Vec<Mark>,
) -> EndpointView {
    EndpointView {
        container: ep.container.clone(),
        ifname: ep.ifname.clone(),
        address: ep.address.to_string(),
        address6: ep.address6.map(|a| a.to_string()),
        mac: ep.mac.to_string(),
        netns: ep.netns.clone(),
        state: format!("{:?}", ep.state).to_lowercase(),
        ports: ep.ports.iter().map(crate::output::port_text).collect(),
        aliases: ep.aliases.clone(),
        host_veth,
        interface,
        fdb_port,
        marks,
    }
}

/// The host end: up, in the right bridge, paired with the container's
/// interface, forwarding, same MTU. `peer` is the container interface's
/// index and whether it is up.
fn veth_marks(
    marks: &mut Vec<Mark>,
    net: &Network,
    br: Option<&LinkDetail>,
    v: &LinkDetail,
    peer: Option<(u32, bool)>,
) {
    let name = &v.link.name;
    if !v.link.up {
        marks.push(Mark::error(
            format!("host veth {name} is down"),
            Some(ip(&format!("link set {name} up"))),
        ));
    } else if !v.link.lower_up && peer.is_none_or(|(_, up)| up) {
        marks.push(Mark::error(format!("host veth {name} has no carrier"), None));
    }
    if let Some(b) = br {
        if v.link.master != Some(b.link.index) {
            marks.push(Mark::error(
                format!("host veth {name} is not a port of {}", net.bridge),
                Some(ip(&format!("link set {name} master {}", net.bridge))),
            ));
        } else if let Some(p) = &v.port {
            // A port without carrier is "disabled": that is the carrier's
            // fault, already marked.
            if !p.forwarding() && v.link.up && v.link.lower_up {
                marks.push(Mark::error(
                    format!("bridge port {name} is {}, not forwarding", p.state),
                    Some(format!("bridge link set dev {name} state 3")),
                ));
            }
            if !p.learning {
                marks.push(Mark::warning(
                    format!("learning is off on port {name}: the bridge floods"),
                    None,
                ));
            }
        }
    }
    if let (Some(pi), Some((idx, _))) = (v.link.peer_index, peer) {
        if pi != idx {
            marks.push(Mark::error(
                format!("host veth {name} is not paired with the container's interface"),
                Some("weft gc".into()),
            ));
        }
    }
    if v.link.mtu != net.mtu {
        marks.push(mtu_mark(
            name,
            v.link.mtu,
            net.mtu,
            Some(ip(&format!("link set {name} mtu {}", net.mtu))),
        ));
    }
}

fn mtu_mark(ifname: &str, have: u32, want: u32, fix: Option<String>) -> Mark {
    Mark::error(format!("{ifname} has MTU {have}, the network {want}"), fix)
}

/// A network on another host: the store's records, no kernel state.
fn unobserved_network(net: &Network, eps: &[&Endpoint]) -> NetView {
    let endpoints = eps
        .iter()
        .map(|ep| endpoint_view(ep, VethView::missing(&ep.host_veth), None, None, Vec::new()))
        .collect();
    network_view(net, BridgeView::missing(&net.bridge), None, None, endpoints, Vec::new())
}
