//! Converging one host's kernel to the cluster view: per overlay network a
//! bridge (with the network's gateway, as on every host) and a VXLAN port,
//! plus static entries for every remote container; stale entries and the
//! devices of deleted networks are removed. Level-triggered: safe to run at
//! any time, and after a crash it repairs whatever the crash left.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;

use anyhow::{Context as _, Result};
use weft_datapath::bridge::{self, BridgeSpec};
use weft_datapath::link::Link;
use weft_datapath::vxlan::{self, RemoteEntry, VxlanSpec};
use weft_datapath::Netlink;
use weft_firewall::{Firewall, NetRules, PortRule};
use weft_model::network::VXLAN_OVERHEAD;
use weft_model::{names, Mac, Network};

use crate::desired::{diff, View};

/// Alias of the bridges and VXLAN devices the agent owns; distinct from
/// the CLI's `weft:net=`, so single-host cleanup never touches them.
pub fn overlay_alias(network: &str) -> String {
    format!("weft:onet={network}")
}

pub struct Underlay {
    pub ip: IpAddr,
    pub index: u32,
    pub mtu: u32,
}

pub struct Host {
    pub node: String,
    pub underlay: Underlay,
    pub nl: Netlink,
}

/// Counts of what one pass changed, for logs and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Changes {
    pub added: usize,
    pub removed: usize,
    pub devices: usize,
}

impl Host {
    /// Bridge and VXLAN device of one overlay network, created if missing.
    pub fn ensure_network(&mut self, net: &Network) -> Result<Link> {
        let alias = overlay_alias(&net.name);
        let br = BridgeSpec {
            name: &net.bridge,
            alias: &alias,
            // Per host: frames of one host's gateway must not look like
            // another host's bridge when they cross the overlay.
            mac: Mac::derive(&["bridge", &net.name, &self.node]),
            mtu: net.mtu,
            gateway: net.gateway_cidr(),
            gateway6: net.gateway6_cidr(),
        };
        bridge::ensure_bridge(&mut self.nl, &br)
            .with_context(|| format!("bridge {} of overlay network {}", net.bridge, net.name))?;
        let bridge_index = self
            .nl
            .link_by_name(&net.bridge)?
            .with_context(|| format!("bridge {} vanished", net.bridge))?
            .index;
        let name = names::vxlan_name(&net.name);
        let spec = VxlanSpec {
            name: &name,
            alias: &alias,
            vni: net.vni.unwrap_or(1),
            local: self.underlay.ip,
            underlay_index: self.underlay.index,
            mtu: self.underlay.mtu.saturating_sub(VXLAN_OVERHEAD),
            mac: weft_model::node::vtep_mac(&self.node, &net.name),
        };
        if net.mtu > spec.mtu {
            tracing::warn!(
                "overlay {}: container MTU {} exceeds what the underlay carries ({}); \
                 large packets will be dropped",
                net.name,
                net.mtu,
                spec.mtu
            );
        }
        Ok(vxlan::ensure_vxlan(&mut self.nl, &spec, bridge_index)?)
    }

    /// Applies the remote entries of one network: adds the missing, removes
    /// the stale ones.
    pub fn sync_entries(&mut self, vx: u32, desired: &BTreeSet<RemoteEntry>) -> Result<Changes> {
        let actual = vxlan::remotes(&mut self.nl, vx)?;
        let (add, remove) = diff(desired, &actual);
        for e in &remove {
            vxlan::remove_remote(&mut self.nl, vx, e)?;
        }
        for e in &add {
            vxlan::add_remote(&mut self.nl, vx, e)?;
        }
        // Containers here may cache an older MAC for these addresses (an
        // address released and given to a new container elsewhere).
        if !add.is_empty() {
            if let Some(bridge) = self.nl.link_by_index(vx)?.and_then(|l| l.master) {
                for e in &add {
                    for ip in &e.ips {
                        if let std::net::IpAddr::V4(v4) = ip {
                            if let Err(err) = weft_datapath::garp::announce(bridge, e.mac, *v4) {
                                tracing::debug!("announcing {v4}: {err}");
                            }
                        }
                    }
                }
            }
        }
        Ok(Changes { added: add.len(), removed: remove.len(), devices: 0 })
    }

    /// One full pass over everything.
    pub fn reconcile(&mut self, view: &View, state_dir: &Path) -> Result<Changes> {
        let mut total = Changes::default();
        let mut mine = BTreeSet::new();
        for net in view.overlays() {
            let vx = self.ensure_network(net)?;
            mine.insert(vx.name.clone());
            mine.insert(net.bridge.clone());
            let c = self.sync_entries(vx.index, &view.remotes(&net.name, &self.node))?;
            total.added += c.added;
            total.removed += c.removed;
        }
        // Devices of overlay networks that no longer exist.
        for l in self.nl.links()? {
            let owned = l.alias.as_deref().is_some_and(|a| a.starts_with("weft:onet="));
            if owned && !mine.contains(&l.name) {
                tracing::info!("removing {} of a deleted overlay network", l.name);
                self.nl.delete_link(l.index, &l.name)?;
                total.devices += 1;
            }
        }
        sync_firewall(view, &self.node, state_dir)?;
        Ok(total)
    }
}

/// The host's nftables table from the cluster's networks, under the same
/// lock the CLI takes.
pub fn sync_firewall(view: &View, node: &str, state_dir: &Path) -> Result<()> {
    let lock = state_dir.join("firewall.lock");
    let _guard = lock_file(&lock)?;
    let rules: Vec<NetRules> = view.networks.values().map(NetRules::from).collect();
    let v6 = view.networks.values().any(|n| n.subnet6.is_some());
    // Forwarding weft turns on is guarded and turned off with the last
    // network (markers in the state dir the CLI shares).
    let forwarding = weft_firewall::Forwarding::prepare(state_dir, !rules.is_empty(), v6)?;
    // The rebuilt table keeps the ports this host's containers publish.
    let ports: Vec<PortRule> = view
        .endpoints
        .values()
        .filter(|e| e.node.as_deref() == Some(node))
        .flat_map(PortRule::of)
        .collect();
    Firewall::new().apply_with_ports(&rules, &ports, forwarding.guards())?;
    forwarding.enable()?;
    // Containers are no routers: the host takes no RA from its bridges.
    for n in view.networks.values() {
        if let Err(e) = weft_firewall::refuse_router_advertisements(&n.bridge) {
            tracing::warn!("{e}");
        }
    }
    Ok(())
}

fn lock_file(path: &Path) -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let f = std::fs::File::options().create(true).truncate(false).write(true).open(path)?;
    // SAFETY: flock on an fd we own; released when the file closes.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        anyhow::bail!("lock {}: {}", path.display(), std::io::Error::last_os_error());
    }
    Ok(f)
}

/// The underlay: the interface holding `ip`, or the one of the default
/// route when no address is given.
pub fn find_underlay(nl: &mut Netlink, ip: Option<IpAddr>) -> Result<Underlay> {
    let links = nl.links()?;
    let addrs = nl.addresses()?;
    let (index, ip) = match ip {
        Some(ip) => {
            let a = addrs
                .iter()
                .find(|a| a.addr.addr() == ip)
                .with_context(|| format!("--underlay-ip {ip} is not an address of this host"))?;
            (a.ifindex, ip)
        }
        None => {
            let r = nl
                .routes()?
                .into_iter()
                .find(|r| r.dest.prefix_len() == 0 && r.dest.addr().is_ipv4() && r.oif.is_some())
                .context("no default route to pick the underlay from; give --underlay-ip")?;
            let index = r.oif.expect("filtered");
            let a = addrs
                .iter()
                .find(|a| a.ifindex == index && a.addr.addr().is_ipv4())
                .context("the default route's interface has no IPv4 address; give --underlay-ip")?;
            (index, a.addr.addr())
        }
    };
    let link = links.iter().find(|l| l.index == index).context("underlay interface vanished")?;
    Ok(Underlay { ip, index, mtu: link.mtu })
}
