//! `setup NETNS`: plug the container into each network Podman names, with
//! the addresses Podman chose (weft runs no second IPAM), and print one
//! status block per network.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use anyhow::{bail, Context as _, Result};
use ipnet::IpNet;
use weft_model::network::NetworkSpec;
use weft_model::{Driver, Endpoint, EndpointKey, EndpointState, Mac, Network, PortMapping};

use super::types::{NetAddress, NetInterface, NetworkInfo, NetworkOptions, StatusBlock};
use super::{dns, owned, teardown};
use crate::ops::endpoint::{self, AttachRequest, HostListeners, NetnsRef};
use crate::ops::{network, Context};

pub fn setup(
    ctx: &mut Context,
    netns: &Path,
    opts: &NetworkOptions,
) -> Result<BTreeMap<String, StatusBlock>> {
    // Checked first: a bad namespace (or the host's own) must leave no
    // network behind either.
    endpoint::refuse_host_namespace(&weft_datapath::Netns::open(netns)?)?;
    let ports = opts.ports()?;
    // A container publishes its ports once, on its first network that can
    // carry them; `podman network connect` passes them again.
    let published = ctx
        .store
        .endpoints(None)?
        .iter()
        .any(|e| e.container == opts.container_name && !e.ports.is_empty());
    let mut ports_left = if published { Vec::new() } else { ports };
    let mut done: Vec<Endpoint> = Vec::new();
    let mut out = BTreeMap::new();
    for (name, per) in &opts.networks {
        let info = &opts.network_info[name];
        let step = attach_one(ctx, netns, opts, name, info, per, &mut ports_left);
        match step {
            Ok((ep, net)) => {
                out.insert(name.clone(), status(&net, info, &ep));
                done.push(ep);
            }
            Err(e) => {
                // All or nothing: what this setup made goes again.
                for ep in &done {
                    let _ = endpoint::teardown(ctx, ep);
                    let _ = teardown::drop_if_unused(ctx, &ep.network);
                }
                let _ = teardown::drop_if_unused(ctx, name);
                return Err(e);
            }
        }
    }
    // After `nft flush ruleset` (what `podman network reload` follows)
    // weft's table is gone: rebuild it from the store.
    if !weft_firewall::Firewall::new().table_present()? {
        ctx.sync_firewall()?;
    }
    if opts.networks.keys().any(|n| opts.network_info[n].dns_enabled) {
        dns::ensure_running(&ctx.state_dir)?;
    }
    Ok(out)
}

fn attach_one(
    ctx: &mut Context,
    netns: &Path,
    opts: &NetworkOptions,
    name: &str,
    info: &NetworkInfo,
    per: &super::types::PerNetworkOptions,
    ports_left: &mut Vec<PortMapping>,
) -> Result<(Endpoint, Network)> {
    // An idle network comes back in use in `attach_with`.
    let net = ensure_network(ctx, name, info)?;
    let ips = per.static_ips.as_deref().unwrap_or_default();
    let ip = ips.iter().find_map(|ip| match ip {
        IpAddr::V4(a) => Some(*a),
        _ => None,
    });
    let ip6 = ips.iter().find_map(|ip| match ip {
        IpAddr::V6(a) => Some(*a),
        _ => None,
    });
    if ip.is_none() {
        // Podman 4.3 always chooses the addresses itself.
        bail!(
            "network {name}: Podman passed no IPv4 address (static_ips) for {}",
            opts.container_name
        );
    }
    let mac = match per.static_mac.as_deref().filter(|m| !m.is_empty()) {
        Some(m) => Some(m.parse::<Mac>()?),
        None => None,
    };
    let key = EndpointKey {
        network: net.name.clone(),
        container: opts.container_name.clone(),
        ifname: per.interface_name.clone(),
    };
    let netns_path = netns.display().to_string();
    if let Some(old) = ctx.store.endpoint(&key)? {
        let same = old.state == EndpointState::Ready
            && old.netns == netns_path
            && Some(old.address.addr()) == ip
            && old.address6.map(|a| a.addr()) == ip6;
        if same {
            return Ok((old, net));
        }
        // Left by a setup whose teardown never came (a crashed conmon):
        // the container is being set up anew.
        endpoint::teardown(ctx, &old)?;
    }
    let ports = if net.internal { Vec::new() } else { std::mem::take(ports_left) };
    let req = AttachRequest {
        network: net.name.clone(),
        container: opts.container_name.clone(),
        netns: NetnsRef::Path(netns.to_path_buf()),
        ifname: Some(per.interface_name.clone()),
        ip,
        ip6,
        mac,
        ports,
        aliases: if info.dns_enabled {
            per.aliases.clone().unwrap_or_default()
        } else {
            Vec::new()
        },
    };
    let (ep, net) = endpoint::attach_with(ctx, &req, HostListeners::RuntimeChecks)?;
    Ok((ep, net))
}

/// The weft network for Podman's definition: the one already in the store
/// when it matches, else created (and marked as Podman's, so the last
/// teardown removes it again). A weft network of the same name that says
/// otherwise is an error, not silently changed.
fn ensure_network(ctx: &mut Context, name: &str, info: &NetworkInfo) -> Result<Network> {
    let spec = spec(name, info)?;
    if let Some(have) = ctx.store.network(name)? {
        match mismatch(&have, &spec) {
            None => return Ok(have),
            Some(why) if owned(ctx, name)? && ctx.store.endpoints(Some(name))?.is_empty() => {
                // Podman's network was removed and made again with other
                // settings while weft kept the old one: replace it.
                tracing::info!("network {name}: {why}; rebuilding it");
                network::remove(ctx, name, false)?;
            }
            Some(why) => bail!(
                "network {name} exists in weft with other settings ({why}); \
                 remove it with `weft network rm {name}` or rename the Podman network"
            ),
        }
    }
    super::linger::remove_in_the_way(ctx, &spec)?;
    // Marked first: a crash right after the create leaves a network the
    // next teardown of this name cleans up.
    ctx.store.set_meta(
        &super::owner_key(name),
        if info.id.is_empty() { "podman" } else { info.id.as_str() },
    )?;
    match network::create(ctx, &spec) {
        Ok(n) => Ok(n),
        Err(e) => {
            let _ = ctx.store.set_meta(&super::owner_key(name), "");
            Err(e.context(format!("network {name}")))
        }
    }
}

fn spec(name: &str, info: &NetworkInfo) -> Result<NetworkSpec> {
    if info.driver != "bridge" {
        bail!(
            "network {name}: driver {:?} is not supported by weft (only \"bridge\"); \
             use Podman's own netavark for it",
            info.driver
        );
    }
    if info.option("vlan").is_some_and(|v| !v.is_empty() && v != "0") {
        bail!("network {name}: option vlan is not supported by weft");
    }
    let (v4, v6) = info.subnets();
    let Some(v4) = v4 else {
        bail!(
            "network {name}: weft needs an IPv4 subnet; IPv6-only networks are not supported yet"
        );
    };
    let IpNet::V4(subnet) = v4.subnet else { unreachable!("an IPv4 subnet") };
    let gateway = match v4.gateway {
        Some(IpAddr::V4(g)) => Some(g),
        Some(g) => bail!("network {name}: gateway {g} is not an IPv4 address"),
        None => None,
    };
    let (subnet6, gateway6) = match v6 {
        Some(s) => {
            let IpNet::V6(s6) = s.subnet else { unreachable!("an IPv6 subnet") };
            let g6 = match s.gateway {
                Some(IpAddr::V6(g)) => Some(g),
                Some(g) => bail!("network {name}: gateway {g} is not an IPv6 address"),
                None => None,
            };
            (Some(s6), g6)
        }
        None => (None, None),
    };
    let mtu = match info.option("mtu").filter(|m| !m.is_empty()) {
        Some(m) => Some(m.parse::<u32>().with_context(|| format!("network {name}: mtu {m:?}"))?),
        None => None,
    };
    Ok(NetworkSpec {
        name: name.to_string(),
        subnet: Some(subnet),
        gateway,
        subnet6,
        gateway6,
        mtu,
        bridge: info.network_interface.clone().filter(|b| !b.is_empty()),
        internal: info.internal,
        // Podman's networks reach each other unless created with
        // `-o isolate=true` (or `strict`), as with its own netavark.
        open: !matches!(info.option("isolate"), Some("true" | "strict")),
        driver: Some(Driver::Bridge),
        vni: None,
    })
}

/// Why `have` is not the network `want` describes, if it is not.
fn mismatch(have: &Network, want: &NetworkSpec) -> Option<String> {
    let differs = |what: &str, have: String, want: String| {
        Some(format!("{what} {have}, Podman's definition says {want}"))
    };
    if want.subnet.is_some_and(|s| s != have.subnet) {
        return differs("subnet", have.subnet.to_string(), want.subnet?.to_string());
    }
    if want.gateway.is_some_and(|g| g != have.gateway) {
        return differs("gateway", have.gateway.to_string(), want.gateway?.to_string());
    }
    if want.subnet6 != have.subnet6 {
        let show = |s: Option<ipnet::Ipv6Net>| s.map_or("none".to_string(), |s| s.to_string());
        return differs("IPv6 subnet", show(have.subnet6), show(want.subnet6));
    }
    if want.bridge.as_ref().is_some_and(|b| *b != have.bridge) {
        return differs("bridge", have.bridge.clone(), want.bridge.clone()?);
    }
    if (want.open && !want.internal) != have.open {
        return differs("isolation", (!have.open).to_string(), (!want.open).to_string());
    }
    if want.internal != have.internal {
        return differs("internal", have.internal.to_string(), want.internal.to_string());
    }
    let mtu = want.mtu.unwrap_or(weft_model::network::DEFAULT_MTU);
    if mtu != have.mtu {
        return differs("mtu", have.mtu.to_string(), mtu.to_string());
    }
    None
}

fn status(net: &Network, info: &NetworkInfo, ep: &Endpoint) -> StatusBlock {
    let mut subnets =
        vec![NetAddress { ipnet: IpNet::V4(ep.address), gateway: Some(IpAddr::V4(net.gateway)) }];
    if let Some(a6) = ep.address6 {
        subnets.push(NetAddress { ipnet: IpNet::V6(a6), gateway: net.gateway6.map(IpAddr::V6) });
    }
    let mut block = StatusBlock::default();
    block
        .interfaces
        .insert(ep.ifname.clone(), NetInterface { mac_address: ep.mac.to_string(), subnets });
    if info.dns_enabled {
        // weft's DNS answers on the gateways (see `dns`).
        block.dns_server_ips = net.nameservers().iter().filter_map(|s| s.parse().ok()).collect();
    }
    block
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(json: &str) -> NetworkInfo {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn spec_from_podman_definition() {
        let i = info(
            r#"{"name":"n1","id":"x","driver":"bridge","network_interface":"podman1",
                "subnets":[{"subnet":"10.99.0.0/24","gateway":"10.99.0.254"},
                           {"subnet":"fd00:99::/64","gateway":"fd00:99::1"}],
                "internal":true,"dns_enabled":true,"options":{"mtu":"1400","isolate":"true"}}"#,
        );
        let s = spec("n1", &i).unwrap();
        assert_eq!(s.subnet.unwrap().to_string(), "10.99.0.0/24");
        assert_eq!(s.gateway.unwrap().to_string(), "10.99.0.254");
        assert_eq!(s.subnet6.unwrap().to_string(), "fd00:99::/64");
        assert_eq!(s.bridge.as_deref(), Some("podman1"));
        assert_eq!(s.mtu, Some(1400));
        assert!(s.internal);
        let net = s.build(s.subnet.unwrap(), 0).unwrap();
        assert_eq!(mismatch(&net, &s), None);
        let mut other = s.clone();
        other.mtu = Some(1500);
        assert!(mismatch(&net, &other).unwrap().contains("mtu 1400"));
    }

    #[test]
    fn refuses_what_weft_cannot_do() {
        let mac = info(r#"{"name":"m","driver":"macvlan","subnets":[{"subnet":"10.9.0.0/24"}]}"#);
        assert!(spec("m", &mac).unwrap_err().to_string().contains("driver \"macvlan\""));
        let v6 = info(r#"{"name":"s","driver":"bridge","subnets":[{"subnet":"fd00::/64"}]}"#);
        assert!(spec("s", &v6).unwrap_err().to_string().contains("IPv6-only"));
        let mtu = info(
            r#"{"name":"b","driver":"bridge","subnets":[{"subnet":"10.9.0.0/24"}],"options":{"mtu":"big"}}"#,
        );
        assert!(spec("b", &mtu).is_err());
    }
}
