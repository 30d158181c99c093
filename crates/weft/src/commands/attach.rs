use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use weft_model::Mac;

use crate::ops::endpoint::{self, AttachRequest, NetnsRef};
use crate::output;

#[derive(Args)]
pub struct Attach {
    network: String,
    /// Container name or id.
    container: String,
    /// Path of the container's network namespace (default: /var/run/netns/CONTAINER).
    #[arg(long, conflicts_with = "pid")]
    netns: Option<PathBuf>,
    /// A process in the container; its network namespace is used.
    #[arg(long)]
    pid: Option<u32>,
    /// Interface name inside the container.
    #[arg(long, default_value = "eth0")]
    ifname: String,
    /// IPv4 address to use instead of the next free one.
    #[arg(long)]
    ip: Option<Ipv4Addr>,
    /// IPv6 address to use instead of the next free one.
    #[arg(long)]
    ip6: Option<Ipv6Addr>,
    /// MAC address (default: derived from network, container and ifname).
    #[arg(long)]
    mac: Option<Mac>,
    #[arg(long)]
    json: bool,
}

impl Attach {
    pub fn run(self, state_dir: &Path) -> Result<()> {
        let mut ctx = super::mutating(state_dir)?;
        let netns = match (self.netns, self.pid) {
            (Some(p), _) => NetnsRef::Path(p),
            (None, Some(pid)) => NetnsRef::Pid(pid),
            (None, None) => NetnsRef::Named,
        };
        let ep = endpoint::attach(
            &mut ctx,
            &AttachRequest {
                network: self.network,
                container: self.container,
                netns,
                ifname: self.ifname,
                ip: self.ip,
                ip6: self.ip6,
                mac: self.mac,
            },
        )?;
        if self.json {
            output::json(&ep)
        } else {
            output::endpoint_table(std::slice::from_ref(&ep));
            Ok(())
        }
    }
}
