//! Which store owns the weft objects of this network namespace.
//!
//! Every store has an id (a random value kept in its metadata), and every
//! bridge weft makes names it in its alias: `weft:net=NAME owner=ID`. One
//! store per network namespace: a command that would change a namespace
//! whose bridges belong to another store (or that holds weft's bridges
//! while this store is new, empty or damaged) stops with an error instead
//! of treating them as leftovers. `weft gc --adopt` rebuilds this store
//! from what the kernel holds. See docs/ownership.md.

use std::collections::HashSet;
use std::io::Read;
use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use ipnet::IpNet;
use weft_datapath::link::Link;
use weft_datapath::Netns;
use weft_model::network::NetworkSpec;
use weft_model::{Driver, Endpoint, Mac, Network};
use weft_store::{EndpointRequest, StoreError};

use super::context::now;
use super::Context;

const STORE_ID: &str = "store_id";
const NET_PREFIX: &str = "weft:net=";
const EP_PREFIX: &str = "weft:ep=";
/// The agent's overlay bridges (`weft_agent::reconcile::overlay_alias`).
const OVERLAY_PREFIX: &str = "weft:onet=";

/// This store's id, made on first use.
pub fn store_id(ctx: &Context) -> Result<String> {
    if let Some(id) = ctx.store.meta(STORE_ID)? {
        return Ok(id);
    }
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("read /dev/urandom for the store id")?;
    let fresh: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    // Two processes making one at once agree on whichever came first.
    Ok(ctx.store.init_meta(STORE_ID, &fresh)?)
}

/// The alias of a network's bridge: its network, its owner and what the
/// kernel cannot tell (internal), so the store can be rebuilt from it.
pub fn bridge_alias(net: &Network, owner: &str) -> String {
    let internal = if net.internal { " internal" } else { "" };
    format!("{NET_PREFIX}{} owner={owner}{internal}", net.name)
}

/// What a bridge's alias says.
#[derive(Debug, PartialEq, Eq)]
pub struct BridgeMark {
    pub network: String,
    /// None on bridges made before owners were recorded.
    pub owner: Option<String>,
    pub internal: bool,
}

pub fn parse_bridge_alias(alias: &str) -> Option<BridgeMark> {
    let mut words = alias.strip_prefix(NET_PREFIX)?.split(' ');
    let network = words.next().filter(|n| !n.is_empty())?.to_string();
    let mut mark = BridgeMark { network, owner: None, internal: false };
    for w in words {
        if let Some(o) = w.strip_prefix("owner=") {
            mark.owner = Some(o.to_string());
        } else if w == "internal" {
            mark.internal = true;
        }
    }
    Some(mark)
}

/// weft's single-host bridges in `links`, with what their alias says.
pub fn weft_bridges(links: &[Link]) -> impl Iterator<Item = (&Link, BridgeMark)> {
    links.iter().filter(|l| l.kind.as_deref() == Some("bridge")).filter_map(|l| {
        let mark = parse_bridge_alias(l.alias.as_deref()?)?;
        Some((l, mark))
    })
}

/// Whether this store owns a bridge. One made before owners were
/// recorded is taken as this store's unless the store is empty.
fn owns(me: &str, mark: &BridgeMark, nets: &[Network]) -> bool {
    match &mark.owner {
        Some(o) => o == me,
        None => !nets.is_empty(),
    }
}

/// Refuses to work on a namespace whose weft bridges another store owns,
/// or that holds weft's bridges while this store has no network at all.
pub fn check_namespace(ctx: &Context, links: &[Link], nets: &[Network]) -> Result<()> {
    // A cluster agent's overlay bridges: the cluster store's. A single-host
    // store next to them would rebuild the firewall table without them.
    if ctx.node.is_none() {
        let overlay = links.iter().find(|l| {
            l.kind.as_deref() == Some("bridge")
                && l.alias.as_deref().is_some_and(|a| a.starts_with(OVERLAY_PREFIX))
        });
        if let Some(l) = overlay {
            bail!(
                "this network namespace is managed by a weft cluster agent (overlay bridge {});                  one store per network namespace: give this command the cluster's --etcd and                  --node",
                l.name
            );
        }
    }
    let me = store_id(ctx)?;
    let Some((l, mark)) = weft_bridges(links).find(|(_, m)| !owns(&me, m, nets)) else {
        return Ok(());
    };
    let whose = mark.owner.as_deref().map(|o| format!(" of store {o}")).unwrap_or_default();
    if nets.is_empty() {
        bail!(
            "the store in {} is new, empty or damaged, but this network namespace holds weft's \
             network {} (bridge {}{whose}): run `weft gc --adopt` to rebuild the store from the \
             kernel, or use the state directory that manages this namespace",
            ctx.state_dir.display(),
            mark.network,
            l.name
        );
    }
    bail!(
        "this network namespace is managed by another weft store (bridge {} of network {}{whose}); \
         one store per network namespace: use that store's state directory (or `weft gc --adopt` \
         to take its objects over)",
        l.name,
        mark.network
    );
}

/// Host veths of containers that are alive but have no record in the
/// store: weft's alias, up, not the host-side pair of a veth in this
/// namespace (the other end is in a container). An attach records the
/// endpoint before it brings its veth up, and a detach takes the veth
/// down before it removes the record (a crash there leaves it down, for
/// gc to delete), so such a veth means the store lost data.
pub fn unrecorded<'a>(links: &'a [Link], records: &[Endpoint]) -> Vec<&'a Link> {
    let known: HashSet<&str> = records.iter().map(|e| e.host_veth.as_str()).collect();
    links
        .iter()
        .filter(|l| l.alias.as_deref().is_some_and(|a| a.starts_with(EP_PREFIX)))
        .filter(|l| l.up && !known.contains(l.name.as_str()))
        // The other end in this namespace too: a pair made by hand or half
        // made, not a container's.
        .filter(|l| l.peer_netnsid.is_some())
        .collect()
}

/// What [`adopt`] recorded, and what it could not because someone else
/// holds it, one line each.
#[derive(Debug, Default)]
pub struct Adopted {
    pub adopted: Vec<String>,
    pub conflicts: Vec<String>,
}

/// Rebuilds this store from the kernel: a network per weft bridge it does
/// not know (its address is the gateway, its alias gives the name), and an
/// endpoint per unrecorded container veth, with the addresses and MAC the
/// container has. Marks the bridges as this store's.
pub fn adopt(ctx: &mut Context, links: &[Link]) -> Result<Adopted> {
    let mut done = adopt_networks(ctx, links)?;
    let eps = adopt_endpoints(ctx, links)?;
    done.extend(eps.adopted);
    Ok(Adopted { adopted: done, conflicts: eps.conflicts })
}

/// In a cluster: records this host's live containers whose records are
/// gone (the node was removed while it was unreachable: `weft node rm`,
/// or its grace period ran out). An address another host took meanwhile
/// is a conflict, reported, never silently kept.
///
/// Also removes this host's records whose container is gone (see
/// `gc::reap_stale`), which only gc would otherwise free.
pub fn reassert(ctx: &mut Context) -> Result<Adopted> {
    let _own = ctx.exclusive()?;
    let links = ctx.host()?.links()?;
    let removed = super::gc::reap_stale(ctx, &links, super::gc::Evidence::Kernel)?;
    let mut done = adopt_endpoints(ctx, &links)?;
    done.adopted.extend(removed.into_iter().map(|r| format!("removed {r}")));
    Ok(done)
}

fn adopt_networks(ctx: &mut Context, links: &[Link]) -> Result<Vec<String>> {
    let me = store_id(ctx)?;
    let mut done = Vec::new();
    let addrs = ctx.host()?.addresses()?;
    for (l, mark) in weft_bridges(links) {
        let net = match ctx.store.network(&mark.network)? {
            Some(n) => n,
            None => {
                let spec = spec_from_bridge(l, &mark, &addrs)?;
                let n = ctx.store.create_network(&spec, &[], now()).with_context(|| {
                    format!("adopt network {} (bridge {})", mark.network, l.name)
                })?;
                done.push(format!("network {} ({} on {})", n.name, n.subnet, n.bridge));
                n
            }
        };
        if net.bridge == l.name && mark.owner.as_deref() != Some(me.as_str()) {
            ctx.host()?.set_alias(l.index, &l.name, &bridge_alias(&net, &me))?;
        }
    }
    Ok(done)
}

fn adopt_endpoints(ctx: &mut Context, links: &[Link]) -> Result<Adopted> {
    let mut done = Adopted::default();
    let records = super::gc::local_endpoints(ctx)?;
    let orphans: Vec<Link> = unrecorded(links, &records).into_iter().cloned().collect();
    if orphans.is_empty() {
        return Ok(done);
    }
    let spaces = netns_candidates();
    for v in &orphans {
        let alias = v.alias.as_deref().unwrap_or_default();
        let Some((network, container, ifname)) = parse_endpoint_alias(alias) else {
            continue;
        };
        let Some(found) = find_peer(ctx.host()?, &spaces, v, ifname)? else {
            tracing::warn!("adopt: no container end of {} ({alias}) found", v.name);
            continue;
        };
        let req = EndpointRequest {
            network: network.to_string(),
            container: container.to_string(),
            ifname: ifname.to_string(),
            netns: found.netns.display().to_string(),
            netns_id: Netns::open(&found.netns).ok().map(|ns| ns.id()),
            ip: found.ip4,
            ip6: found.ip6,
            mac: found.mac.unwrap_or_else(|| Mac::derive(&[network, container, ifname])),
            host_veth: v.name.clone(),
            node: ctx.node.clone(),
            boot_id: ctx.boot_id.clone(),
            pid: 0,
            created: now(),
            ports: Vec::new(),
            aliases: Vec::new(),
        };
        let key = format!("{network}/{container}/{ifname}");
        let ep = match ctx.store.reserve_endpoint(&req) {
            Ok(ep) => ep,
            Err(
                e @ (StoreError::AddressInUse { .. }
                | StoreError::MacInUse { .. }
                | StoreError::EndpointExists(_)
                | StoreError::NoSuchNetwork(_)),
            ) => {
                done.conflicts.push(format!("endpoint {key} (veth {}): {e}", v.name));
                continue;
            }
            Err(e) => return Err(anyhow::Error::from(e).context(format!("adopt endpoint {key}"))),
        };
        ctx.store.set_ready(&ep.key())?;
        done.adopted.push(format!("endpoint {} ({})", ep.key(), ep.address));
    }
    Ok(done)
}

fn parse_endpoint_alias(alias: &str) -> Option<(&str, &str, &str)> {
    let mut parts = alias.strip_prefix(EP_PREFIX)?.splitn(3, '/');
    Some((parts.next()?, parts.next()?, parts.next()?))
}

fn spec_from_bridge(
    l: &Link,
    mark: &BridgeMark,
    addrs: &[weft_datapath::read::Address],
) -> Result<NetworkSpec> {
    let mut spec = NetworkSpec {
        name: mark.network.clone(),
        mtu: Some(l.mtu),
        bridge: Some(l.name.clone()),
        internal: mark.internal,
        driver: Some(Driver::Bridge),
        ..NetworkSpec::default()
    };
    for a in addrs.iter().filter(|a| a.ifindex == l.index) {
        match a.addr {
            IpNet::V4(v4) if spec.subnet.is_none() && !v4.addr().is_link_local() => {
                spec.subnet = Some(v4.trunc());
                spec.gateway = Some(v4.addr());
            }
            IpNet::V6(v6)
                if spec.subnet6.is_none() && (v6.addr().segments()[0] & 0xffc0) != 0xfe80 =>
            {
                spec.subnet6 = Some(v6.trunc());
                spec.gateway6 = Some(v6.addr());
            }
            _ => {}
        }
    }
    if spec.subnet.is_none() {
        bail!("bridge {} of network {} has no IPv4 address to adopt", l.name, mark.network);
    }
    Ok(spec)
}

/// Network namespaces a container may be in: named ones first (their
/// path outlives a process), then every process's; one path per namespace.
fn netns_candidates() -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = Vec::new();
    let mut dirs = |dir: &str, suffix: &str| {
        if let Ok(rd) = std::fs::read_dir(dir) {
            let mut found: Vec<PathBuf> = rd
                .flatten()
                .filter(|e| {
                    suffix.is_empty() || e.file_name().to_string_lossy().parse::<u32>().is_ok()
                })
                .map(|e| if suffix.is_empty() { e.path() } else { e.path().join(suffix) })
                .collect();
            found.sort();
            paths.extend(found);
        }
    };
    dirs("/var/run/netns", "");
    dirs("/proc", "ns/net");
    let mut seen = HashSet::new();
    let own = weft_datapath::netns::current_inode();
    paths.retain(|p| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(p).is_ok_and(|m| m.ino() != own && seen.insert((m.dev(), m.ino())))
    });
    paths
}

struct Peer {
    netns: PathBuf,
    ip4: Option<std::net::Ipv4Addr>,
    ip6: Option<std::net::Ipv6Addr>,
    mac: Option<Mac>,
}

/// The container end of host veth `v`: in the namespace the host knows by
/// `v`'s peer namespace id, the link named `ifname` that is `v`'s peer.
/// (Indexes alone would match in many namespaces: every container's eth0
/// is index 2 or so.)
fn find_peer(
    host: &mut weft_datapath::Netlink,
    spaces: &[PathBuf],
    v: &Link,
    ifname: &str,
) -> Result<Option<Peer>> {
    let (Some(peer_index), Some(nsid)) = (v.peer_index, v.peer_netnsid) else {
        return Ok(None);
    };
    for path in spaces {
        let Ok(ns) = Netns::open(path) else { continue };
        if host.nsid_of(&ns).ok().flatten() != Some(nsid) {
            continue;
        }
        let Ok(mut nl) = ns.netlink() else { continue };
        let Ok(links) = nl.links() else { continue };
        let Some(l) = links
            .iter()
            .find(|l| l.index == peer_index && l.name == ifname && l.peer_index == Some(v.index))
        else {
            continue;
        };
        let mut peer = Peer { netns: path.clone(), ip4: None, ip6: None, mac: l.mac };
        for a in nl.addresses()?.iter().filter(|a| a.ifindex == l.index) {
            match a.addr.addr() {
                IpAddr::V4(ip) if peer.ip4.is_none() => peer.ip4 = Some(ip),
                IpAddr::V6(ip) if peer.ip6.is_none() && (ip.segments()[0] & 0xffc0) != 0xfe80 => {
                    peer.ip6 = Some(ip)
                }
                _ => {}
            }
        }
        return Ok(Some(peer));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_alias_round_trips() {
        let m = parse_bridge_alias("weft:net=n1 owner=abc internal").unwrap();
        assert_eq!(
            m,
            BridgeMark { network: "n1".into(), owner: Some("abc".into()), internal: true }
        );
        let legacy = parse_bridge_alias("weft:net=ghost").unwrap();
        assert_eq!(legacy.owner, None);
        assert!(parse_bridge_alias("weft:onet=x").is_none());
        assert!(parse_bridge_alias("weft:net=").is_none());
    }
}
