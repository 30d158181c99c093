use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;

use crate::ops::{self, context};

#[derive(Args)]
pub struct Agent {
    /// This host's address on the underlay (default: that of the default route's interface).
    #[arg(long)]
    underlay_ip: Option<IpAddr>,
    /// Seconds after which a silent host counts as unreachable: the others
    /// stop sending to its containers, whose addresses stay taken.
    #[arg(long, default_value_t = 10)]
    ttl: i64,
    /// Seconds a host may stay unreachable before the agents remove it and
    /// free its addresses (`weft node rm` does it at once).
    #[arg(long, default_value_t = 86400)]
    node_grace: u64,
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
        // Not in a namespace another (single-host) store manages: the
        // agent's firewall table would drop that store's networks. An etcd
        // that does not answer yet is waited for as before (the etcd
        // thread retries); the check is then skipped.
        match ops::Context::open(state_dir) {
            Ok(mut ctx) => {
                let links = ctx.host()?.links()?;
                ops::owner::check_namespace(&ctx, &links, &ctx.store.networks()?)?;
            }
            Err(e) => tracing::warn!("not checking who owns this namespace: {e:#}"),
        }
        reassert_in_background(state_dir, Duration::from_secs(self.resync.max(1)));
        weft_agent::run(weft_agent::AgentConfig {
            etcd: c.etcd_config(),
            node: c.node.clone(),
            underlay_ip: self.underlay_ip,
            state_dir: state_dir.to_path_buf(),
            ttl: self.ttl,
            node_grace: Duration::from_secs(self.node_grace),
            resync: Duration::from_secs(self.resync.max(1)),
            dns: (!self.no_dns).then_some(weft_dns::Config { port: self.dns_port, upstreams }),
        })
    }
}

/// Re-asserts this host's endpoints now and then (see
/// [`ops::owner::reassert`]): a host that was removed while it was
/// unreachable records its live containers again when it is back, and
/// reports those whose address someone else took meanwhile.
fn reassert_in_background(state_dir: &Path, every: Duration) {
    let state_dir = state_dir.to_path_buf();
    std::thread::spawn(move || loop {
        // Not registered yet (or etcd unreachable): try again soon.
        let mut pause = Duration::from_secs(1);
        match ops::Context::open(&state_dir).and_then(|mut ctx| ops::owner::reassert(&mut ctx)) {
            Ok(r) => {
                for line in &r.adopted {
                    tracing::warn!("repaired: {line}");
                }
                for line in &r.conflicts {
                    tracing::error!("address conflict: {line}");
                }
                pause = every;
            }
            Err(e) => tracing::debug!("re-asserting endpoints: {e:#}"),
        }
        std::thread::sleep(pause.min(every));
    });
}
