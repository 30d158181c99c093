use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use weft_model::{Mac, PortMapping};

use crate::ops::endpoint::{self, AttachRequest, NetnsRef};
use crate::ops::Context;
use crate::output;

#[derive(Args)]
pub struct Attach {
    /// The network to plug the container into.
    network: String,
    /// Container name or id (its namespace: /var/run/netns/CONTAINER unless
    /// --netns or --pid says otherwise).
    container: String,
    /// Path of the container's network namespace (default: /var/run/netns/CONTAINER).
    #[arg(long, conflicts_with = "pid")]
    netns: Option<PathBuf>,
    /// A process in the container; its network namespace is used.
    #[arg(long)]
    pid: Option<u32>,
    /// Interface name inside the container (default: the first free ethN).
    #[arg(long)]
    ifname: Option<String>,
    /// IPv4 address to use instead of the next free one.
    #[arg(long)]
    ip: Option<Ipv4Addr>,
    /// IPv6 address to use instead of the next free one.
    #[arg(long)]
    ip6: Option<Ipv6Addr>,
    /// MAC address (default: derived from network, container and ifname).
    #[arg(long)]
    mac: Option<Mac>,
    /// Forward a host port (or range) to the container, as docker does:
    /// [[HOST_IP:][HOST_PORT[-END]]:]CONTAINER_PORT[-END][/tcp|/udp|/sctp];
    /// without HOST_PORT a free one is chosen (shown in the output). Repeatable.
    #[arg(short = 'p', long = "publish", value_name = "PORTS")]
    publish: Vec<PortMapping>,
    /// Another DNS name for the container on this network. Repeatable.
    #[arg(long = "alias", value_name = "NAME")]
    aliases: Vec<String>,
    /// Print the endpoint as JSON (with the network's DNS servers).
    #[arg(long)]
    json: bool,
}

impl Attach {
    pub fn run(self, state_dir: &Path) -> Result<()> {
        self.run_with(&mut super::mutating(state_dir)?)
    }

    /// A relative `--netns` of a client of the daemon is relative to the
    /// client's working directory.
    pub fn resolve_netns(&mut self, cwd: &Path) {
        if let Some(p) = self.netns.as_mut().filter(|p| p.is_relative()) {
            *p = cwd.join(&*p);
        }
    }

    /// The file of the container's network namespace this command opens.
    pub fn netns_file(&self) -> PathBuf {
        self.netns_ref().file(&self.container)
    }

    fn netns_ref(&self) -> NetnsRef {
        match (&self.netns, self.pid) {
            (Some(p), _) => NetnsRef::Path(p.clone()),
            (None, Some(pid)) => NetnsRef::Pid(pid),
            (None, None) => NetnsRef::Named,
        }
    }

    /// Runs with an open context (the daemon keeps its contexts open).
    pub fn run_with(self, ctx: &mut Context) -> Result<()> {
        let netns = self.netns_ref();
        let (ep, net) = endpoint::attach(
            ctx,
            &AttachRequest {
                network: self.network,
                container: self.container,
                netns,
                ifname: self.ifname,
                ip: self.ip,
                ip6: self.ip6,
                mac: self.mac,
                ports: self.publish,
                aliases: self.aliases,
            },
        )?;
        let view = output::EndpointView { ep, gone: false };
        if self.json {
            let mut v = view.value();
            v["dns"] = serde_json::json!({ "nameservers": net.nameservers() });
            if let Some(pid) = self.pid {
                v["pid"] = pid.into();
            }
            output::json(&v)
        } else {
            output::endpoint_table(std::slice::from_ref(&view));
            Ok(())
        }
    }
}
