use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;

use crate::ops::context;

#[derive(Args)]
pub struct Agent {
    /// This host's address on the underlay (default: that of the default route's interface).
    #[arg(long)]
    underlay_ip: Option<IpAddr>,
    /// Seconds after which a silent host counts as dead.
    #[arg(long, default_value_t = 10)]
    ttl: i64,
    /// Seconds between full reconciliations.
    #[arg(long, default_value_t = 30)]
    resync: u64,
    /// Do not serve DNS for containers.
    #[arg(long)]
    no_dns: bool,
    /// Port of the DNS server on every network's gateway address.
    #[arg(long, default_value_t = 53)]
    dns_port: u16,
    /// Resolver for names that are not containers (IP or IP:PORT; default:
    /// the nameservers of /etc/resolv.conf). Repeatable.
    #[arg(long = "upstream", value_name = "ADDR")]
    upstreams: Vec<String>,
}

impl Agent {
    pub fn run(self, state_dir: &Path) -> Result<()> {
        context::require_net_admin()?;
        let Some(c) = context::cluster() else {
            bail!("the agent needs the cluster store: give --etcd URL (or set WEFT_ETCD)");
        };
        if self.ttl < 2 {
            bail!("--ttl must be at least 2 seconds");
        }
        let upstreams = super::dns::parse_upstreams(&self.upstreams)?;
        if !self.no_dns {
            super::dns::raise_open_files_limit();
        }
        weft_agent::run(weft_agent::AgentConfig {
            etcd: c.etcd_config(),
            node: c.node.clone(),
            underlay_ip: self.underlay_ip,
            state_dir: state_dir.to_path_buf(),
            ttl: self.ttl,
            resync: Duration::from_secs(self.resync.max(1)),
            dns: (!self.no_dns).then_some(weft_dns::Config { port: self.dns_port, upstreams }),
        })
    }
}
