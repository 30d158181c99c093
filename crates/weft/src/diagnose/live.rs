//! What the kernel says right now: the host namespace (links with port
//! state and counters, addresses, routes, neighbours, bridge FDB, weft's
//! nftables table) and each container namespace weft knows of. Read once,
//! then both `topology` and `explain` reason over it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::Result;
use ipnet::IpNet;
use weft_datapath::link_detail::LinkDetail;
use weft_datapath::read::{FdbEntry, Neighbour, Route};
use weft_datapath::vtep::VtepEntry;
use weft_datapath::{Netlink, Netns};
use weft_firewall::{Firewall, TableStatus};
use weft_model::Endpoint;

/// One namespace's links, addresses and neighbours.
pub struct NsView {
    pub links: Vec<LinkDetail>,
    pub addrs: Vec<weft_datapath::read::Address>,
    pub neigh: Vec<Neighbour>,
}

impl NsView {
    pub fn read(nl: &mut Netlink) -> Result<NsView> {
        Ok(NsView { links: nl.link_details()?, addrs: nl.addresses()?, neigh: nl.neighbours()? })
    }

    pub fn link(&self, name: &str) -> Option<&LinkDetail> {
        self.links.iter().find(|l| l.link.name == name)
    }

    pub fn link_at(&self, index: u32) -> Option<&LinkDetail> {
        self.links.iter().find(|l| l.link.index == index)
    }

    pub fn name_of(&self, index: u32) -> String {
        self.link_at(index).map_or_else(|| format!("#{index}"), |l| l.link.name.clone())
    }

    pub fn addrs_of(&self, index: u32) -> Vec<IpNet> {
        self.addrs.iter().filter(|a| a.ifindex == index).map(|a| a.addr).collect()
    }

    pub fn neighbour(&self, index: u32, ip: IpAddr) -> Option<&Neighbour> {
        self.neigh.iter().find(|n| n.ifindex == index && n.ip == ip)
    }
}

/// The host namespace, as weft (and the kernel) see it.
pub struct HostView {
    pub name: String,
    pub ns: NsView,
    pub routes: Vec<Route>,
    pub fdb: Vec<FdbEntry>,
    /// Each VXLAN device's remote entries (MAC -> VTEP), by ifindex.
    pub vteps: BTreeMap<u32, Vec<VtepEntry>>,
    /// weft's nftables table, or why it could not be read.
    pub firewall: Result<TableStatus, String>,
}

impl HostView {
    pub fn read(nl: &mut Netlink) -> Result<HostView> {
        let mut ns = NsView::read(nl)?;
        // The kernel applies a carrier change to a bridge port later, from
        // its link-watch work (up to a second on a busy host): a port that
        // is up with carrier but still "disabled" is settling, not broken.
        for _ in 0..30 {
            if !ns.links.iter().any(settling) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
            ns = NsView::read(nl)?;
        }
        let mut vteps = BTreeMap::new();
        for l in ns.links.iter().filter(|l| l.link.kind.as_deref() == Some("vxlan")) {
            vteps.insert(l.link.index, nl.vteps(l.link.index)?);
        }
        Ok(HostView {
            name: hostname(),
            ns,
            routes: nl.routes()?,
            fdb: nl.fdb()?,
            vteps,
            firewall: Firewall::new().status().map_err(|e| e.to_string()),
        })
    }

    /// The bridge's FDB entry for `mac` (learned or static), not the
    /// bridge's own addresses.
    pub fn fdb_entry(&self, bridge: u32, mac: weft_model::Mac) -> Option<&FdbEntry> {
        self.fdb.iter().find(|e| e.bridge == Some(bridge) && e.mac == mac && !e.local)
    }
}

fn settling(l: &LinkDetail) -> bool {
    l.link.up && l.link.lower_up && l.port.as_ref().is_some_and(|p| p.state == "disabled")
}

/// A container namespace: its state, or why it cannot be looked at.
pub type NsState = Result<NsView, String>;

/// Container namespaces by path, each read once even when several
/// endpoints live in it.
pub fn read_containers(eps: &[&Endpoint]) -> BTreeMap<String, NsState> {
    let mut out = BTreeMap::new();
    for ep in eps {
        if out.contains_key(&ep.netns) {
            continue;
        }
        let state =
            open_netns(ep).and_then(|mut nl| NsView::read(&mut nl).map_err(|e| format!("{e:#}")));
        out.insert(ep.netns.clone(), state);
    }
    out
}

/// The namespace of an endpoint's container, while its path still names
/// the namespace the container was attached in (a reused pid or a netns
/// made again under the same name is not the container: diagnosing, let
/// alone probing from, it would be about someone else).
pub fn container_netns(ep: &Endpoint) -> Result<Netns, String> {
    let ns = Netns::open(&ep.netns).map_err(|e| e.to_string())?;
    if ep.netns_id.is_some_and(|id| id != ns.id()) {
        return Err(format!(
            "netns {} names another namespace now: the container is gone",
            ep.netns
        ));
    }
    Ok(ns)
}

pub fn open_netns(ep: &Endpoint) -> Result<Netlink, String> {
    container_netns(ep).and_then(|ns| ns.netlink().map_err(|e| e.to_string()))
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
