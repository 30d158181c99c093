//! Repairs what a crash, a reboot or a vanished container left behind.
//! The store is the truth for what should exist; links carry an alias
//! ("weft:...") that marks them as weft's, so foreign links are never
//! touched.

use std::collections::HashSet;

use anyhow::Result;
use serde::Serialize;
use weft_datapath::{bridge, plug, Netns};
use weft_firewall::{Firewall, TableStatus};
use weft_model::{Endpoint, EndpointState};

use super::{network, Context};

#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Endpoints removed from the store (container gone, crash, reboot).
    pub endpoints: Vec<String>,
    /// weft veths deleted because no endpoint owns them.
    pub veths: Vec<String>,
    /// weft bridges deleted because no network owns them.
    pub bridges: Vec<String>,
    /// Networks whose bridge was rebuilt.
    pub repaired: Vec<String>,
    /// weft's nftables table, when the rebuild changed it: what was wrong.
    pub firewall: Vec<String>,
}

impl Report {
    pub fn count(&self) -> usize {
        self.endpoints.len()
            + self.veths.len()
            + self.bridges.len()
            + self.repaired.len()
            + self.firewall.len()
    }
}

/// What differs between weft's table before and after a rebuild, if
/// anything (element order aside).
fn table_change(before: &TableStatus, after: &TableStatus) -> Option<String> {
    let sorted = |m: &std::collections::BTreeMap<String, Vec<String>>| {
        m.iter()
            .map(|(k, v)| {
                let mut v = v.clone();
                v.sort();
                (k.clone(), v)
            })
            .collect::<Vec<_>>()
    };
    let table = "table inet weft";
    if !before.present && after.present {
        Some(format!("{table} (was missing)"))
    } else if before.chains != after.chains {
        Some(format!("{table} (rules differed: {} now {})", before.rules, after.rules))
    } else if sorted(&before.sets) != sorted(&after.sets)
        || sorted(&before.maps) != sorted(&after.maps)
    {
        Some(format!("{table} (set or map elements differed)"))
    } else {
        None
    }
}

/// Why an endpoint record is stale, or None when it is live.
fn stale(ep: &Endpoint, boot_id: &str, live_veths: &HashSet<String>) -> Option<&'static str> {
    if ep.boot_id != boot_id {
        return Some("host rebooted");
    }
    if ep.state == EndpointState::Creating {
        return if pid_alive(ep.pid) { None } else { Some("attach was interrupted") };
    }
    match Netns::open(&ep.netns) {
        Err(_) => return Some("netns is gone"),
        // The path now names another namespace: the pid was reused, or
        // the named netns was deleted and made again.
        Ok(ns) if ep.netns_id.is_some_and(|id| id != ns.id()) => {
            return Some("netns is gone (its path names another namespace now)")
        }
        Ok(_) => {}
    }
    if !live_veths.contains(&ep.host_veth) {
        return Some("veth is gone");
    }
    None
}

fn pid_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    pid != 0 && unsafe { libc::kill(pid as i32, 0) } == 0
}

/// Drops endpoint records of an earlier boot: their namespaces and veths
/// died with it. Cheap (one meta read) when the boot id is unchanged, so
/// every mutating command calls it.
pub fn reclaim_after_reboot(ctx: &mut Context) -> Result<Vec<String>> {
    if ctx.store.meta("boot_id")?.as_deref() == Some(ctx.boot_id.as_str()) {
        return Ok(Vec::new());
    }
    let mut removed = Vec::new();
    for ep in local_endpoints(ctx)? {
        if ep.boot_id != ctx.boot_id {
            ctx.store.remove_endpoint(&ep.key())?;
            if let Err(e) = super::resolv::refresh(ctx, &ep.netns) {
                tracing::warn!("{e:#}");
            }
            removed.push(ep.key().to_string());
        }
    }
    let boot = ctx.boot_id.clone();
    ctx.store.set_meta("boot_id", &boot)?;
    Ok(removed)
}

/// Endpoints of this host: all of them on a single host, this node's in a
/// cluster (other hosts' records are theirs to repair).
pub fn local_endpoints(ctx: &Context) -> Result<Vec<Endpoint>> {
    let mut eps = ctx.store.endpoints(None)?;
    eps.retain(|e| e.node == ctx.node);
    Ok(eps)
}

pub fn run(ctx: &mut Context) -> Result<Report> {
    let mut report = Report { endpoints: reclaim_after_reboot(ctx)?, ..Default::default() };
    let links = ctx.host()?.links()?;
    // A retired veth is on its way out: it does not keep a record alive.
    let live: HashSet<String> = links
        .iter()
        .filter(|l| l.alias.as_deref() != Some(plug::RETIRED_ALIAS))
        .map(|l| l.name.clone())
        .collect();

    for ep in local_endpoints(ctx)? {
        if let Some(why) = stale(&ep, &ctx.boot_id, &live) {
            plug::unplug(ctx.host()?, &ep.host_veth)?;
            ctx.store.remove_endpoint(&ep.key())?;
            tracing::info!(endpoint = %ep.key(), why, "gc: removed endpoint");
            if let Err(e) = super::resolv::refresh(ctx, &ep.netns) {
                tracing::warn!("{e:#}");
            }
            report.endpoints.push(format!("{} ({why})", ep.key()));
        }
    }

    let nets = ctx.store.networks()?;
    let owned_veths: HashSet<String> =
        local_endpoints(ctx)?.into_iter().map(|e| e.host_veth).collect();
    let owned_bridges: HashSet<&str> = nets.iter().map(|n| n.bridge.as_str()).collect();
    for l in &links {
        if !bridge::is_weft_link(l) {
            continue;
        }
        let alias = l.alias.as_deref().unwrap_or_default();
        let leaked = alias.starts_with("weft:ep=") && !owned_veths.contains(&l.name);
        if leaked || alias == plug::RETIRED_ALIAS {
            // An attach still in progress owns its veth through a Creating
            // record, which is in owned_veths; anything else is a leak. A
            // retired pair whose reaper died is deleted here.
            if plug::unplug(ctx.host()?, &l.name)? {
                tracing::info!(veth = l.name, "gc: deleted leaked veth");
                report.veths.push(l.name.clone());
            }
        } else if alias.starts_with("weft:net=")
            && l.kind.as_deref() == Some("bridge")
            && !owned_bridges.contains(l.name.as_str())
            && bridge::delete_bridge(ctx.host()?, &l.name)?
        {
            tracing::info!(bridge = l.name, "gc: deleted bridge of no network");
            report.bridges.push(l.name.clone());
        }
    }

    for net in nets.iter().filter(|n| n.driver == weft_model::Driver::Bridge) {
        if !live.contains(&net.bridge) {
            network::build(ctx, net)?;
            tracing::info!(network = net.name, bridge = net.bridge, "gc: rebuilt network");
            report.repaired.push(net.name.clone());
        }
    }
    let fw = Firewall::new();
    let before = fw.status();
    ctx.sync_firewall()?;
    if let (Ok(b), Ok(a)) = (before, fw.status()) {
        if let Some(what) = table_change(&b, &a) {
            tracing::info!("gc: rebuilt {what}");
            report.firewall.push(what);
        }
    }
    tracing::info!(repairs = report.count(), "gc done");
    Ok(report)
}
