//! weft's per-host agent: keeps this host registered in the cluster store
//! and its kernel converged to the store's view (overlay bridges, VXLAN
//! devices, static forwarding and neighbour entries, firewall).
//!
//! Two threads: the etcd side (async: lease, snapshot, watch) turns the
//! store into a stream of updates; the kernel side (synchronous netlink)
//! applies them. Changes are applied incrementally as they arrive, and the
//! whole state is reconciled at start, after every reconnect and
//! periodically, so whatever drifted (a crashed agent, a hand-made change)
//! converges.

pub mod desired;
mod etcd_side;
pub mod reconcile;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use weft_model::Driver;
use weft_store::etcd::Event;
use weft_store::EtcdConfig;

use crate::desired::View;
use crate::reconcile::{find_underlay, Host};

pub struct AgentConfig {
    pub etcd: EtcdConfig,
    pub node: String,
    pub underlay_ip: Option<IpAddr>,
    pub state_dir: PathBuf,
    /// Lease TTL: how long after this host stops renewing the others
    /// treat it as unreachable (its entries withdrawn, its addresses kept).
    pub ttl: i64,
    /// How long a node may stay unreachable before this agent removes it
    /// and frees its addresses (flannel keeps a subnet lease 24 h).
    pub node_grace: Duration,
    /// Full reconcile period.
    pub resync: Duration,
    /// Serve DNS for the cluster's containers on each network's gateway
    /// on this host (names resolve across hosts); None: no DNS.
    pub dns: Option<weft_dns::Config>,
}

/// What the etcd side tells the kernel side.
pub(crate) enum Update {
    /// A complete, consistent view (after connecting or reconnecting).
    Snapshot(View),
    Event(Box<Event>),
}

pub fn run(cfg: AgentConfig) -> Result<()> {
    std::fs::create_dir_all(&cfg.state_dir)
        .with_context(|| format!("create state dir {}", cfg.state_dir.display()))?;
    let mut nl = weft_datapath::netns::host_netlink()?;
    let underlay = find_underlay(&mut nl, cfg.underlay_ip)?;
    tracing::info!(
        "node {}: underlay {} (ifindex {}, mtu {})",
        cfg.node,
        underlay.ip,
        underlay.index,
        underlay.mtu
    );
    let node = weft_model::Node {
        name: cfg.node.clone(),
        underlay_ip: underlay.ip,
        underlay_mtu: underlay.mtu,
        started: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        lease: 0,
        version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let mut host = Host { node: cfg.node.clone(), underlay, nl };

    let (tx, rx) = mpsc::channel();
    let etcd_cfg = cfg.etcd.clone();
    let lease_file = cfg.state_dir.join("agent.lease");
    let (ttl, grace) = (cfg.ttl, cfg.node_grace);
    std::thread::Builder::new()
        .name("etcd".into())
        .spawn(move || etcd_side::run(etcd_cfg, node, ttl, grace, lease_file, tx))
        .context("start etcd thread")?;

    let zones = match cfg.dns.clone() {
        Some(dns) => Some(start_dns(dns)?),
        None => None,
    };
    let publish = |v: &View| {
        if let Some(tx) = &zones {
            let nets: Vec<_> = v.networks.values().cloned().collect();
            let eps: Vec<_> = v.endpoints.values().cloned().collect();
            tx.send_replace(std::sync::Arc::new(weft_dns::Zone::build(&nets, &eps)));
        }
    };

    let mut view: Option<View> = None;
    let mut last_full = Instant::now();
    let mut last_fw_check = Instant::now();
    loop {
        // Wake at least every second to check the firewall table.
        let wait = cfg.resync.saturating_sub(last_full.elapsed()).min(FIREWALL_CHECK);
        if last_fw_check.elapsed() >= FIREWALL_CHECK {
            last_fw_check = Instant::now();
            if let Some(v) = view.as_ref().filter(|v| !v.networks.is_empty()) {
                restore_firewall(v, &cfg);
            }
        }
        match rx.recv_timeout(wait) {
            Ok(Update::Snapshot(v)) => {
                full(&mut host, &v, &cfg);
                publish(&v);
                view = Some(v);
                last_full = Instant::now();
            }
            Ok(Update::Event(ev)) => {
                let Some(v) = view.as_mut() else { continue };
                let start = Instant::now();
                if let Err(e) = apply(&mut host, v, *ev, &cfg) {
                    tracing::warn!("incremental update failed ({e:#}); reconciling everything");
                    full(&mut host, v, &cfg);
                    last_full = Instant::now();
                }
                publish(v);
                tracing::debug!("event applied in {:?}", start.elapsed());
            }
            Err(RecvTimeoutError::Timeout) if last_full.elapsed() >= cfg.resync => {
                if let Some(v) = &view {
                    full(&mut host, v, &cfg);
                }
                last_full = Instant::now();
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => anyhow::bail!("etcd thread ended"),
        }
    }
}

/// How often the agent checks that weft's nftables table is intact.
const FIREWALL_CHECK: Duration = Duration::from_secs(1);

/// Someone deleted or flushed weft's table (a firewall reload by another
/// tool): rebuild it from the cluster view, within a second.
fn restore_firewall(view: &View, cfg: &AgentConfig) {
    let intact = weft_firewall::Firewall::new().status().map(|s| s.present && s.rules > 0);
    if let Ok(false) = intact {
        tracing::warn!("weft's nftables table was deleted or flushed; restoring it");
        if let Err(e) = reconcile::sync_firewall(view, &cfg.node, &cfg.state_dir) {
            tracing::warn!("restoring the firewall failed: {e:#}");
        }
    }
}

/// The DNS server on its own thread; the returned sender takes new zones.
fn start_dns(
    config: weft_dns::Config,
) -> Result<tokio::sync::watch::Sender<std::sync::Arc<weft_dns::Zone>>> {
    let empty = std::sync::Arc::new(weft_dns::Zone::build(&[], &[]));
    let (tx, rx) = tokio::sync::watch::channel(empty);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the DNS runtime")?;
    std::thread::Builder::new()
        .name("dns".into())
        .spawn(move || rt.block_on(weft_dns::serve(config, rx)))
        .context("start DNS thread")?;
    Ok(tx)
}

fn full(host: &mut Host, view: &View, cfg: &AgentConfig) {
    let start = Instant::now();
    match host.reconcile(view, &cfg.state_dir) {
        Ok(c) => tracing::info!(
            "reconciled in {:?}: {} added, {} removed, {} devices removed",
            start.elapsed(),
            c.added,
            c.removed,
            c.devices
        ),
        Err(e) => tracing::warn!("reconcile failed: {e:#}"),
    }
}

/// Applies one change. Endpoint changes touch only their network's entries
/// (the fast path for attach/detach on other hosts); anything else
/// reconciles everything.
fn apply(host: &mut Host, view: &mut View, ev: Event, cfg: &AgentConfig) -> Result<()> {
    let network = match ev {
        Event::EndpointPut(ep) => {
            let net = ep.network.clone();
            view.endpoints.insert(ep.key().to_string(), ep);
            net
        }
        Event::EndpointDeleted(key) => {
            view.endpoints.remove(&key.to_string());
            key.network
        }
        Event::NetworkPut(n) => {
            view.networks.insert(n.name.clone(), n);
            return host.reconcile(view, &cfg.state_dir).map(drop);
        }
        Event::NetworkDeleted(name) => {
            view.networks.remove(&name);
            view.endpoints.retain(|_, e| e.network != name);
            return host.reconcile(view, &cfg.state_dir).map(drop);
        }
        Event::NodePut(n) => {
            view.nodes.insert(n.name.clone(), n);
            return host.reconcile(view, &cfg.state_dir).map(drop);
        }
        Event::NodeDeleted(name) => {
            view.nodes.remove(&name);
            return host.reconcile(view, &cfg.state_dir).map(drop);
        }
    };
    let Some(net) = view.networks.get(&network).filter(|n| n.driver == Driver::Overlay) else {
        return Ok(());
    };
    let vx = host.ensure_network(net)?;
    let c = host.sync_entries(vx.index, &view.remotes(&network, &host.node))?;
    if c.added + c.removed > 0 {
        tracing::info!("{network}: {} entries added, {} removed", c.added, c.removed);
    }
    Ok(())
}
