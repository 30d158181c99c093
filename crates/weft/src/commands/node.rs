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
}

#[derive(Args)]
pub struct Ls {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

impl NodeCommand {
    pub fn run(self, _state_dir: &Path) -> Result<()> {
        let NodeCommand::Ls(c) = self;
        let Some(cfg) = context::cluster() else {
            bail!("nodes exist only in a cluster: give --etcd URL (or set WEFT_ETCD)");
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let nodes = rt.block_on(async {
            let cluster = Cluster::connect(&cfg.etcd_config()).await?;
            cluster.nodes().await
        })?;
        if c.json {
            return output::json(&nodes);
        }
        // A node is listed only while its lease lives: listed means alive.
        let rows: Vec<Vec<String>> = nodes
            .iter()
            .map(|n| {
                vec![
                    n.name.clone(),
                    n.underlay_ip.to_string(),
                    n.underlay_mtu.to_string(),
                    format!("{:x}", n.lease),
                    "alive".into(),
                ]
            })
            .collect();
        output::table(&["NODE", "UNDERLAY", "MTU", "LEASE", "STATE"], &rows);
        Ok(())
    }
}
