//! CHECK: does the container's interface still look the way weft made it?

use std::net::IpAddr;

use ipnet::IpNet;
use weft_cni::{CniError, Code, Invocation, NetConf, Version};
use weft_datapath::Netns;
use weft_model::{EndpointKey, EndpointState};

use super::{require, state_dir, to_cni};
use crate::ops::Context;

pub fn check(inv: &Invocation, conf: &NetConf, v: Version) -> Result<(), CniError> {
    require(v, v.has_check(), "CHECK")?;
    if conf.prev_result.is_none() {
        return Err(CniError::new(Code::InvalidConfig, "CHECK needs prevResult"));
    }
    let mut ctx = Context::open(&state_dir(conf)).map_err(to_cni)?;
    let key = EndpointKey {
        network: conf.name.clone(),
        container: inv.container_id.clone(),
        ifname: inv.ifname.clone(),
    };
    let ep = ctx.store.endpoint(&key).map_err(|e| to_cni(e.into()))?.ok_or_else(|| {
        CniError::new(Code::UnknownContainer, format!("no endpoint {key} in weft's store"))
    })?;
    let drift = |m: String| Err(CniError::new(Code::Drift, m));
    if ep.state != EndpointState::Ready {
        return drift(format!("endpoint {key} is still being created"));
    }
    let net = ctx.store.network(&conf.name).map_err(|e| to_cni(e.into()))?.ok_or_else(|| {
        CniError::new(Code::InvalidConfig, format!("network {} does not exist", conf.name))
    })?;

    // Host side: the veth exists and is a port of the network's bridge.
    let host = ctx.host().map_err(to_cni)?;
    let bridge = host.link_by_name(&net.bridge).map_err(|e| to_cni(e.into()))?;
    let veth = host.link_by_name(&ep.host_veth).map_err(|e| to_cni(e.into()))?;
    match (bridge, veth) {
        (None, _) => return drift(format!("bridge {} is missing", net.bridge)),
        (_, None) => return drift(format!("host veth {} is missing", ep.host_veth)),
        (Some(b), Some(h)) if h.master != Some(b.index) => {
            return drift(format!(
                "host veth {} is not a port of bridge {}",
                ep.host_veth, net.bridge
            ))
        }
        (_, Some(h)) if !h.up => return drift(format!("host veth {} is down", ep.host_veth)),
        _ => {}
    }

    // Container side, read from inside the namespace.
    let ns = Netns::open(&inv.netns)
        .map_err(|e| CniError::new(Code::InvalidEnvironment, e.to_string()))?;
    let where_ = format!("{} in {}", ep.ifname, inv.netns);
    if ep.netns_id.is_some_and(|id| id != ns.id()) {
        return drift(format!("{where_}: not the namespace the container was attached in"));
    }
    let mut nl = ns.netlink().map_err(|e| to_cni(e.into()))?;
    let Some(link) = nl.link_by_name(&ep.ifname).map_err(|e| to_cni(e.into()))? else {
        return drift(format!("{where_}: interface is missing"));
    };
    if link.mac != Some(ep.mac) {
        let found = link.mac.map(|m| m.to_string()).unwrap_or_default();
        return drift(format!("{where_}: MAC is {found}, expected {}", ep.mac));
    }
    if !link.up {
        return drift(format!("{where_}: interface is down"));
    }
    if link.mtu != net.mtu {
        return drift(format!("{where_}: MTU is {}, expected {}", link.mtu, net.mtu));
    }
    let addrs: Vec<IpNet> = nl
        .addresses()
        .map_err(|e| to_cni(e.into()))?
        .into_iter()
        .filter(|a| a.ifindex == link.index)
        .map(|a| a.addr)
        .collect();
    let mut want = vec![IpNet::V4(ep.address)];
    want.extend(ep.address6.map(IpNet::V6));
    for w in &want {
        if !addrs.contains(w) {
            let found: Vec<String> = addrs
                .iter()
                .filter(|a| a.addr().is_ipv4() == w.addr().is_ipv4())
                .map(|a| a.to_string())
                .collect();
            let found = if found.is_empty() { "none".to_string() } else { found.join(", ") };
            return drift(format!("{where_}: address {w} is missing (found: {found})"));
        }
    }
    let routes = nl.routes().map_err(|e| to_cni(e.into()))?;
    let on_link = |r: &&weft_datapath::read::Route| r.oif == Some(link.index);
    for (gw, fam) in [(ep.gateway.map(IpAddr::V4), "IPv4"), (ep.gateway6.map(IpAddr::V6), "IPv6")] {
        let Some(gw) = gw else { continue };
        let ok = routes
            .iter()
            .filter(on_link)
            .any(|r| r.dest.prefix_len() == 0 && r.gateway == Some(gw));
        if !ok {
            return drift(format!("{where_}: {fam} default route via {gw} is missing"));
        }
    }
    let subnet = IpNet::V4(ep.address.trunc());
    if !routes.iter().filter(on_link).any(|r| r.dest == subnet && r.gateway.is_none()) {
        return drift(format!("{where_}: direct route to {subnet} is missing"));
    }
    Ok(())
}
