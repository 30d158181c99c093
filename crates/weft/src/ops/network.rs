//! Creating, repairing and removing networks: store record, bridge,
//! firewall. Each step is undone if a later one fails.

use anyhow::{bail, Context as _, Result};
use ipnet::IpNet;
use weft_datapath::bridge::{self, BridgeSpec};
use weft_datapath::Netlink;
use weft_model::network::NetworkSpec;
use weft_model::{Endpoint, Mac, Network};

use super::context::now;
use super::{endpoint, failpoint, Context};

/// Fixed, so that results and diagrams can name it without asking the kernel.
pub fn bridge_mac(network: &str) -> Mac {
    Mac::derive(&["bridge", network])
}

/// Subnets already in use on the host: its routes and addresses, except
/// default routes and weft's own bridges (those are weft networks, which
/// the store checks itself).
pub fn host_taken(nl: &mut Netlink) -> Result<Vec<IpNet>> {
    let links = nl.links()?;
    let weft_bridge = |idx: Option<u32>| {
        idx.and_then(|i| links.iter().find(|l| l.index == i))
            .is_some_and(|l| bridge::is_weft_link(l) && l.kind.as_deref() == Some("bridge"))
    };
    let mut taken = Vec::new();
    for r in nl.routes()? {
        if r.dest.prefix_len() > 0 && !weft_bridge(r.oif) && !is_link_local(r.dest) {
            taken.push(r.dest.trunc());
        }
    }
    for a in nl.addresses()? {
        if !weft_bridge(Some(a.ifindex)) && !is_link_local(a.addr) && !a.addr.addr().is_loopback() {
            taken.push(a.addr.trunc());
        }
    }
    taken.sort();
    taken.dedup();
    Ok(taken)
}

fn is_link_local(n: IpNet) -> bool {
    match n {
        IpNet::V4(v) => v.addr().is_link_local(),
        IpNet::V6(v) => (v.addr().segments()[0] & 0xffc0) == 0xfe80 || v.addr().is_multicast(),
    }
}

/// Why there is no network `name`: the name, a near one (`did you mean`),
/// and, when `other` (the command's container argument) names a network,
/// that the two arguments look swapped.
pub fn missing(ctx: &Context, name: &str, other: Option<&str>) -> Result<String> {
    let nets = ctx.store.networks()?;
    let mut msg = format!("network {name} does not exist");
    if let Some(o) = other.filter(|o| nets.iter().any(|n| n.name == *o)) {
        msg.push_str(&format!(
            "; {o} is a network: the order is NETWORK CONTAINER (arguments swapped?)"
        ));
        return Ok(msg);
    }
    let near = nets
        .iter()
        .map(|n| (edit_distance(name, &n.name), &n.name))
        .filter(|(d, n)| *d <= 2.max(name.len() / 3) && *d < n.len())
        .min();
    match near {
        Some((_, n)) => msg.push_str(&format!(" (did you mean {n}?)")),
        None if nets.is_empty() => msg.push_str(" (there are no networks: weft network create)"),
        None => {}
    }
    Ok(msg)
}

/// Levenshtein distance, for `did you mean`.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

pub fn create(ctx: &mut Context, spec: &NetworkSpec) -> Result<Network> {
    if spec.driver == Some(weft_model::Driver::Overlay) && ctx.node.is_none() {
        bail!(
            "overlay network {} needs the cluster store: give --etcd URL (or set WEFT_ETCD) \
             and run `weft agent` on every host",
            spec.name
        );
    }
    let _own = ctx.share()?;
    // A namespace another store manages (or that this store, new or
    // damaged, has lost track of) is refused before anything changes.
    let links = ctx.host()?.links()?;
    super::owner::check_namespace(ctx, &links, &ctx.store.networks()?)?;
    let taken = host_taken(ctx.host()?)?;
    let net = ctx.store.create_network(spec, &taken, now())?;
    failpoint::hit("network-create-after-store");
    if net.driver == weft_model::Driver::Overlay {
        // Every host's agent builds its bridge and VXLAN device.
        return Ok(net);
    }
    if let Err(e) = build(ctx, &net) {
        let _ = ctx.store.remove_network(&net.name);
        // The bridge may exist half-made; sync drops our rules for it.
        let _ = bridge::delete_bridge(ctx.host()?, &net.bridge);
        let _ = ctx.sync_firewall();
        return Err(e.context(format!("create network {}", net.name)));
    }
    tracing::info!(
        network = net.name,
        subnet = %net.subnet,
        gateway = %net.gateway,
        bridge = net.bridge,
        "created network"
    );
    Ok(net)
}

/// Brings the kernel in line with a stored network: bridge with gateway
/// address, up, and firewall rules. Also repairs a network whose bridge
/// vanished (host reboot, someone deleted it).
pub fn build(ctx: &mut Context, net: &Network) -> Result<()> {
    // Two processes may build the same network at once (CNI ADDs racing on
    // first use): one creates the bridge, the other must not see it before
    // it carries weft's alias.
    let _lock = super::context::lock(&ctx.state_dir.join("network.lock"))?;
    let alias = super::owner::bridge_alias(net, &super::owner::store_id(ctx)?);
    let spec = BridgeSpec {
        name: &net.bridge,
        alias: &alias,
        mac: bridge_mac(&net.name),
        mtu: net.mtu,
        gateway: net.gateway_cidr(),
        gateway6: net.gateway6_cidr(),
    };
    let created = bridge::ensure_bridge(ctx.host()?, &spec)?;
    if let Err(e) = reconnect(ctx, net).and_then(|()| ctx.sync_firewall()) {
        if created {
            let _ = bridge::delete_bridge(ctx.host()?, &net.bridge);
        }
        return Err(e);
    }
    Ok(())
}

/// Plugs the network's endpoints whose veths outlived their bridge (it was
/// deleted by hand) back into it, so that a rebuilt network works for the
/// containers already on it, not only for new ones.
fn reconnect(ctx: &mut Context, net: &Network) -> Result<()> {
    let eps = ctx.store.endpoints(Some(&net.name))?;
    if eps.is_empty() {
        return Ok(());
    }
    let nl = ctx.host()?;
    let Some(br) = nl.link_by_name(&net.bridge)? else {
        bail!("bridge {} missing", net.bridge);
    };
    for ep in &eps {
        if let Some(l) = nl.link_by_name(&ep.host_veth)? {
            if l.master != Some(br.index) {
                nl.set_master(l.index, &l.name, br.index)?;
            }
        }
    }
    Ok(())
}

/// Removes the network; with `force`, detaches its containers first.
/// Returns the network and the endpoints it detached.
pub fn remove(ctx: &mut Context, name: &str, force: bool) -> Result<(Network, Vec<Endpoint>)> {
    let _own = ctx.share()?;
    let Some(net) = ctx.store.network(name)? else {
        bail!("{}", missing(ctx, name, None)?);
    };
    let eps = ctx.store.endpoints(Some(name))?;
    if !eps.is_empty() {
        if !force {
            let names: Vec<&str> = eps.iter().map(|e| e.container.as_str()).take(5).collect();
            bail!(
                "network {name} has {} endpoint(s) ({}{}); detach them or use --force",
                eps.len(),
                names.join(", "),
                if eps.len() > 5 { ", ..." } else { "" }
            );
        }
        let remote: Vec<String> = eps
            .iter()
            .filter(|e| e.node != ctx.node)
            .map(|e| format!("{} on {}", e.container, e.node.as_deref().unwrap_or("?")))
            .collect();
        if !remote.is_empty() {
            bail!(
                "network {name} has endpoints on other hosts ({}); detach them there",
                remote.join(", ")
            );
        }
        for ep in &eps {
            endpoint::teardown(ctx, ep)?;
            tracing::info!(container = ep.container, network = name, "detached (--force)");
        }
    }
    ctx.store.remove_network(name)?;
    // Whoever removes it: a network of the same name made later is not
    // the one Podman's setup made (nor idle).
    crate::netavark::forget(ctx, name)?;
    let deleted = bridge::delete_bridge(ctx.host()?, &net.bridge)
        .with_context(|| format!("delete bridge {} of network {name}", net.bridge));
    ctx.sync_firewall()?;
    deleted?;
    tracing::info!(network = name, bridge = net.bridge, detached = eps.len(), "removed network");
    Ok((net, eps))
}

#[cfg(test)]
mod tests {
    #[test]
    fn edit_distance() {
        assert_eq!(super::edit_distance("front", "front"), 0);
        assert_eq!(super::edit_distance("fornt", "front"), 2);
        assert_eq!(super::edit_distance("frnt", "front"), 1);
        assert_eq!(super::edit_distance("", "ab"), 2);
    }
}
