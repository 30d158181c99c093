//! ADD and DEL.

use std::net::IpAddr;
use std::path::Path;

use weft_cni::result::{Dns, Interface, IpConfig, Route};
use weft_cni::{CniError, CniResult, Code, Invocation, NetConf, Version};
use weft_model::{Endpoint, EndpointKey, EndpointState, Network};
use weft_store::StoreError;

use super::to_cni;
use crate::ops::endpoint::{self, host_veth_mac, AttachRequest, NetnsRef};
use crate::ops::{network, Context};

pub fn add(
    ctx: &mut Context,
    inv: &Invocation,
    conf: &NetConf,
    v: Version,
) -> Result<CniResult, CniError> {
    // Replacing a stale endpoint and attaching are one operation for gc.
    let _own = ctx.share().map_err(to_cni)?;
    // Checked before anything is created: a bad CNI_NETNS must leave no
    // network behind either.
    let ns = weft_datapath::Netns::open(&inv.netns)
        .map_err(|e| CniError::new(Code::InvalidEnvironment, format!("CNI_NETNS: {e}")))?;
    endpoint::refuse_host_namespace(&ns)
        .map_err(|e| CniError::new(Code::InvalidEnvironment, format!("CNI_NETNS: {e}")))?;
    let (net, created) = ensure_network(ctx, conf)?;
    let attached = endpoint_for(ctx, inv, conf, &net, &ns);
    let ep = match attached {
        Ok(ep) => ep,
        Err(e) => {
            // The first ADD made the network for this container: a failed
            // one must not leave it (bridge, rules) behind. The store
            // refuses if another ADD has attached to it meanwhile.
            if created {
                let _ = network::remove(ctx, &net.name, false);
            }
            return Err(e);
        }
    };
    let mine = result_for(&net, &ep, &served_nameservers(&net));
    match &conf.prev_result {
        Some(prev) => {
            let mut r = CniResult::from_prev(prev)?;
            r.merge(mine);
            Ok(r)
        }
        None => {
            let _ = v;
            Ok(mine)
        }
    }
}

/// ADD is idempotent: the same container, interface and namespace get the
/// endpoint they already have; anything else is attached afresh.
fn endpoint_for(
    ctx: &mut Context,
    inv: &Invocation,
    conf: &NetConf,
    net: &Network,
    ns: &weft_datapath::Netns,
) -> Result<Endpoint, CniError> {
    let key = EndpointKey {
        network: net.name.clone(),
        container: inv.container_id.clone(),
        ifname: inv.ifname.clone(),
    };
    let existing = ctx.store.endpoint(&key).map_err(|e| to_cni(e.into()))?;
    if let Some(ep) = &existing {
        let same_ns = Path::new(&ep.netns) == ns.path() && ep.netns_id.is_none_or(|i| i == ns.id());
        if ep.state == EndpointState::Ready && same_ns {
            return Ok(ep.clone());
        }
        endpoint::teardown(ctx, ep).map_err(to_cni)?;
    }
    let ips = conf.requested_ips(inv.arg("IP"))?;
    let req = AttachRequest {
        network: net.name.clone(),
        container: inv.container_id.clone(),
        netns: NetnsRef::Path(ns.path().to_path_buf()),
        ifname: Some(inv.ifname.clone()),
        ip: ips.iter().find_map(|ip| match ip {
            IpAddr::V4(a) => Some(*a),
            _ => None,
        }),
        ip6: ips.iter().find_map(|ip| match ip {
            IpAddr::V6(a) => Some(*a),
            _ => None,
        }),
        mac: conf.requested_mac(inv.arg("MAC"))?,
        ports: conf.requested_ports()?,
        aliases: Vec::new(),
    };
    Ok(endpoint::attach(ctx, &req).map_err(to_cni)?.0)
}

/// The network named by the config, and whether this call created it;
/// created on first use from the
/// config's settings. A config that contradicts an existing network is an
/// error rather than silently ignored.
fn ensure_network(ctx: &mut Context, conf: &NetConf) -> Result<(Network, bool), CniError> {
    let spec = conf.network_spec();
    let mut created = false;
    let net = match ctx.store.network(&conf.name).map_err(|e| to_cni(e.into()))? {
        Some(n) => n,
        None => match network::create(ctx, &spec) {
            Ok(n) => {
                created = true;
                n
            }
            // Another ADD created it a moment ago.
            Err(e)
                if matches!(e.downcast_ref::<StoreError>(), Some(StoreError::NetworkExists(_))) =>
            {
                ctx.store.network(&conf.name).map_err(|e| to_cni(e.into()))?.ok_or_else(|| {
                    CniError::new(Code::TryAgainLater, "network vanished during ADD")
                })?
            }
            Err(e) => return Err(to_cni(e)),
        },
    };
    let mismatch = |what: &str, conf: String, have: String| {
        Err(CniError::new(
            Code::InvalidConfig,
            format!("network {} exists with {what} {have}, but the config says {conf}", net.name),
        ))
    };
    if let Some(s) = spec.subnet.filter(|s| *s != net.subnet) {
        return mismatch("subnet", s.to_string(), net.subnet.to_string());
    }
    if let Some(b) = spec.bridge.as_ref().filter(|b| **b != net.bridge) {
        return mismatch("bridge", b.clone(), net.bridge.clone());
    }
    if spec.internal != net.internal {
        return mismatch("internal", spec.internal.to_string(), net.internal.to_string());
    }
    Ok((net, created))
}

/// The network's gateways that a DNS server (`weft dns`, `weft agent`)
/// really answers on: a runtime writes what the result lists into the
/// container's resolv.conf, and a nameserver nobody serves would make
/// every lookup there time out.
fn served_nameservers(net: &Network) -> Vec<IpAddr> {
    let Ok(bound) = weft_datapath::sockets::udp_receivers() else {
        return Vec::new();
    };
    std::iter::once(IpAddr::V4(net.gateway))
        .chain(net.gateway6.map(IpAddr::V6))
        .filter(|g| bound.iter().any(|b| b.addr == *g && b.port == 53))
        .collect()
}

/// The result for `ep`; `nameservers` are the ones that serve its network.
pub fn result_for(net: &Network, ep: &Endpoint, nameservers: &[IpAddr]) -> CniResult {
    let interfaces = vec![
        Interface {
            name: net.bridge.clone(),
            mac: network::bridge_mac(&net.name).to_string(),
            mtu: Some(net.mtu),
            sandbox: None,
        },
        Interface {
            name: ep.host_veth.clone(),
            mac: host_veth_mac(&ep.key()).to_string(),
            mtu: Some(net.mtu),
            sandbox: None,
        },
        Interface {
            name: ep.ifname.clone(),
            mac: ep.mac.to_string(),
            mtu: Some(net.mtu),
            sandbox: Some(ep.netns.clone()),
        },
    ];
    // An internal network's containers have no way out through the
    // gateway: the result names none (ep.gateway is None there).
    let mut ips = vec![IpConfig {
        address: ep.address.to_string(),
        gateway: ep.gateway.map(|g| g.to_string()),
        interface: Some(2),
    }];
    let mut routes = Vec::new();
    if let Some(gw) = ep.gateway {
        routes.push(Route { dst: "0.0.0.0/0".into(), gw: Some(gw.to_string()) });
    }
    if let Some(a6) = ep.address6 {
        ips.push(IpConfig {
            address: a6.to_string(),
            gateway: ep.gateway6.map(|g| g.to_string()),
            interface: Some(2),
        });
        if let Some(gw6) = ep.gateway6 {
            routes.push(Route { dst: "::/0".into(), gw: Some(gw6.to_string()) });
        }
    }
    let nameservers = nameservers.iter().map(IpAddr::to_string).collect();
    let dns = Dns { nameservers, ..Dns::default() };
    CniResult { interfaces, ips, routes, dns }
}

/// DEL succeeds whenever the endpoint is gone afterwards: unknown network,
/// unknown container, namespace already deleted, second DEL.
pub fn del(ctx: &mut Context, inv: &Invocation, conf: &NetConf) -> Result<(), CniError> {
    let _own = ctx.share().map_err(to_cni)?;
    let key = EndpointKey {
        network: conf.name.clone(),
        container: inv.container_id.clone(),
        ifname: inv.ifname.clone(),
    };
    match ctx.store.endpoint(&key).map_err(|e| to_cni(e.into()))? {
        // The same container id on another host is that host's: nothing
        // of it is here to delete.
        Some(ep) if ep.node != ctx.node => {
            tracing::info!("DEL: {} belongs to node {:?}; left alone", ep.key(), ep.node)
        }
        Some(ep) => endpoint::teardown(ctx, &ep).map_err(to_cni)?,
        None => {}
    }
    Ok(())
}
