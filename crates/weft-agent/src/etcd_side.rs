//! The etcd side of the agent: register the node under a lease and keep
//! it alive, then stream a snapshot and the changes after it. Any failure
//! (etcd down, watch compacted) leads to reconnect with backoff and a fresh
//! snapshot; the kernel keeps its entries meanwhile, so traffic between
//! existing containers goes on.

use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::time::Duration;

use weft_model::Node;
use weft_store::etcd::{Cluster, Snapshot};
use weft_store::{EtcdConfig, StoreError};

use crate::desired::View;
use crate::Update;

pub fn run(
    cfg: EtcdConfig,
    node: Node,
    ttl: i64,
    grace: Duration,
    lease_file: PathBuf,
    tx: Sender<Update>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the etcd runtime: {e}");
            return;
        }
    };
    rt.block_on(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            match session(&cfg, &node, ttl, grace, &lease_file, &tx).await {
                Ok(()) => return, // the kernel side is gone
                Err(e) => {
                    tracing::warn!("etcd: {e}; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    });
}

/// One connection's life. Returns Ok only when the receiver is gone.
async fn session(
    cfg: &EtcdConfig,
    node: &Node,
    ttl: i64,
    grace: Duration,
    lease_file: &PathBuf,
    tx: &Sender<Update>,
) -> Result<(), StoreError> {
    let cluster = Cluster::connect(cfg).await?;
    let saved = std::fs::read_to_string(lease_file).ok().and_then(|s| s.trim().parse().ok());
    let lease = cluster.register_node_with(node, ttl, saved).await?;
    let _ = std::fs::write(lease_file, lease.to_string());
    tracing::info!("registered node {} (lease {lease:x}, ttl {ttl}s)", node.name);
    let mut keep = cluster.keep_alive(lease).await?;
    cluster.touch_node(&node.name, now()).await?;
    let mut last_touch = std::time::Instant::now();

    let snap = cluster.snapshot().await?;
    let rev = snap.revision;
    if tx.send(Update::Snapshot(view_of(snap))).is_err() {
        return Ok(());
    }
    let mut watch = cluster.watch(rev + 1).await?;
    let period = Duration::from_millis((ttl as u64 * 1000 / 3).max(500));
    let mut tick = tokio::time::interval(period);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                keep.renew().await?;
                if last_touch.elapsed() >= TOUCH_EVERY.min(grace / 4) {
                    last_touch = std::time::Instant::now();
                    cluster.touch_node(&node.name, now()).await?;
                    for gone in cluster.reap_expired(grace.as_secs(), now()).await? {
                        tracing::warn!(
                            "node {gone} was unreachable for longer than {grace:?}: removed, \
                             its addresses are free"
                        );
                    }
                }
            }
            ev = watch.next() => match ev {
                Ok((_, ev)) => {
                    if tx.send(Update::Event(Box::new(ev))).is_err() {
                        return Ok(());
                    }
                }
                Err(StoreError::Corrupt(why)) => tracing::warn!("skipping a record: {why}"),
                Err(e) => return Err(e),
            }
        }
    }
}

/// How often the agent records that its node is alive, and looks for
/// nodes unreachable past their grace period.
const TOUCH_EVERY: Duration = Duration::from_secs(30);

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn view_of(s: Snapshot) -> View {
    View {
        networks: s.networks.into_iter().map(|n| (n.name.clone(), n)).collect(),
        nodes: s.nodes.into_iter().map(|n| (n.name.clone(), n)).collect(),
        endpoints: s.endpoints.into_iter().map(|e| (e.key().to_string(), e)).collect(),
    }
}
