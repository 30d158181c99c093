use std::path::Path;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use weft_store::etcd::Cluster;

use crate::ops::context;
use crate::output;

#[derive(Subcommand)]
pub enum NodeCommand {
    /// List the hosts of the cluster: underlay addresses and liveness.
    Ls(Ls),
    /// Remove a host that is gone for good: its endpoints, address blocks
    /// and published ports are deleted and its addresses become free.
    /// Refused while the host is registered (its agent renews its lease).
    Rm(Rm),
}

#[derive(Args)]
pub struct Ls {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct Rm {
    /// The host's node name, as `weft node ls` shows it.
    node: String,
}

impl NodeCommand {
    pub fn run(self, _state_dir: &Path) -> Result<()> {
        let Some(cfg) = context::cluster() else {
            bail!("nodes exist only in a cluster: give --etcd URL (or set WEFT_ETCD)");
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let cluster = rt.block_on(Cluster::connect(&cfg.etcd_config()))?;
        match self {
            NodeCommand::Ls(c) => ls(&rt, &cluster, c.json),
            NodeCommand::Rm(c) => {
                let keys = rt.block_on(cluster.reap_node(&c.node))?;
                println!("removed node {}: {keys} record(s)", c.node);
                Ok(())
            }
        }
    }
}

fn ls(rt: &tokio::runtime::Runtime, cluster: &Cluster, json: bool) -> Result<()> {
    let states = rt.block_on(cluster.node_states())?;
    if json {
        // Registered nodes as before (their record), with the state added;
        // unreachable ones by name.
        let rows: Vec<serde_json::Value> = states
            .iter()
            .map(|s| {
                let mut v = match &s.node {
                    Some(n) => serde_json::to_value(n).expect("serializes"),
                    None => serde_json::json!({ "name": s.name }),
                };
                v["state"] = state(s).into();
                v["endpoints"] = s.endpoints.into();
                v["last_seen"] = s.last_seen.into();
                v
            })
            .collect();
        return output::json(&rows);
    }
    let rows: Vec<Vec<String>> = states
        .iter()
        .map(|s| {
            let (ip, mtu, lease) = match &s.node {
                Some(n) => (
                    n.underlay_ip.to_string(),
                    n.underlay_mtu.to_string(),
                    format!("{:x}", n.lease),
                ),
                None => ("-".into(), "-".into(), "-".into()),
            };
            vec![s.name.clone(), ip, mtu, lease, s.endpoints.to_string(), state(s).into()]
        })
        .collect();
    output::table(&["NODE", "UNDERLAY", "MTU", "LEASE", "ENDPOINTS", "STATE"], &rows);
    Ok(())
}

/// "alive" while the node's lease lives; "unreachable" when it lapsed but
/// the node's endpoints are still recorded (it may be alive behind a
/// partition: its addresses stay taken until `weft node rm`).
fn state(s: &weft_store::etcd::NodeState) -> &'static str {
    if s.node.is_some() {
        "alive"
    } else {
        "unreachable"
    }
}
