use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use ipnet::{Ipv4Net, Ipv6Net};
use weft_model::network::NetworkSpec;

use crate::ops::{self, Context};
use crate::output;

#[derive(Subcommand)]
pub enum NetworkCommand {
    /// Create a network: a bridge with the gateway address, NAT and isolation rules.
    Create(Create),
    /// List networks.
    Ls(Ls),
    /// Show one network and its endpoints.
    Inspect(Inspect),
    /// Remove a network, its bridge and its rules.
    Rm(Rm),
}

#[derive(Args)]
pub struct Create {
    /// Name of the new network.
    name: String,
    /// IPv4 subnet, e.g. 172.30.0.0/16 (default: first free /24 of 10.89.0.0/16).
    #[arg(long)]
    subnet: Option<Ipv4Net>,
    /// Gateway address on the bridge (default: first host address of the subnet).
    #[arg(long)]
    gateway: Option<Ipv4Addr>,
    /// IPv6 subnet, e.g. fd00:30::/64.
    #[arg(long)]
    subnet6: Option<Ipv6Net>,
    /// IPv6 gateway (default: first address of --subnet6).
    #[arg(long, requires = "subnet6")]
    gateway6: Option<Ipv6Addr>,
    /// MTU of the bridge and of every container interface.
    #[arg(long)]
    mtu: Option<u32>,
    /// Bridge interface name (default: weft-NAME), at most 15 bytes.
    #[arg(long)]
    bridge: Option<String>,
    /// No NAT and no route out: containers reach only each other.
    #[arg(long)]
    internal: bool,
    /// bridge (one host) or overlay (across hosts, needs --etcd).
    #[arg(long, value_enum, default_value = "bridge")]
    driver: DriverArg,
    /// VXLAN network identifier of an overlay network (default: derived from the name).
    #[arg(long)]
    vni: Option<u32>,
    /// Print the network as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum DriverArg {
    Bridge,
    Overlay,
}

#[derive(Args)]
pub struct Ls {
    /// Print JSON (stable field names) instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct Inspect {
    /// The network.
    name: String,
    /// Print JSON (stable field names) instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct Rm {
    /// The network.
    name: String,
    /// Detach every container still on the network first.
    #[arg(long, short)]
    force: bool,
}

impl NetworkCommand {
    pub fn run(self, state_dir: &Path) -> Result<()> {
        match self {
            NetworkCommand::Create(c) => {
                let mut ctx = super::mutating(state_dir)?;
                let spec = NetworkSpec {
                    name: c.name,
                    subnet: c.subnet,
                    gateway: c.gateway,
                    subnet6: c.subnet6,
                    gateway6: c.gateway6,
                    mtu: c.mtu,
                    bridge: c.bridge,
                    internal: c.internal,
                    open: false,
                    driver: Some(match c.driver {
                        DriverArg::Bridge => weft_model::Driver::Bridge,
                        DriverArg::Overlay => weft_model::Driver::Overlay,
                    }),
                    vni: c.vni,
                };
                let net = ops::network::create(&mut ctx, &spec)?;
                if c.json {
                    output::json(&output::NetworkView::new(&net, Vec::new()))
                } else {
                    let mut what = format!(
                        "created network {}: subnet {}, gateway {}",
                        net.name, net.subnet, net.gateway
                    );
                    if let (Some(s6), Some(g6)) = (net.subnet6, net.gateway6) {
                        what.push_str(&format!(", subnet6 {s6}, gateway6 {g6}"));
                    }
                    what.push_str(&format!(", bridge {}", net.bridge));
                    if net.internal {
                        what.push_str(", internal");
                    }
                    crate::output::line(&what);
                    Ok(())
                }
            }
            NetworkCommand::Ls(c) => {
                let mut ctx = Context::open(state_dir)?;
                let nets = ctx.store.networks()?;
                let eps = ctx.store.endpoints(None)?;
                let mut eps = output::endpoint_views(&mut ctx, eps);
                let views: Vec<output::NetworkView> = nets
                    .iter()
                    .map(|n| {
                        let (mine, rest) = std::mem::take(&mut eps)
                            .into_iter()
                            .partition(|e| e.ep.network == n.name);
                        eps = rest;
                        output::NetworkView::new(n, mine)
                    })
                    .collect();
                if c.json {
                    output::json(&views)
                } else {
                    output::network_table(&views);
                    Ok(())
                }
            }
            NetworkCommand::Inspect(c) => {
                let mut ctx = Context::open(state_dir)?;
                let Some(net) = ctx.store.network(&c.name)? else {
                    bail!("{}", ops::network::missing(&ctx, &c.name, None)?);
                };
                let eps = ctx.store.endpoints(Some(&c.name))?;
                let view = output::NetworkView::new(&net, output::endpoint_views(&mut ctx, eps));
                if c.json {
                    output::json(&view)
                } else {
                    output::network_details(&view);
                    Ok(())
                }
            }
            NetworkCommand::Rm(c) => {
                let mut ctx = super::mutating(state_dir)?;
                let (net, detached) = ops::network::remove(&mut ctx, &c.name, c.force)?;
                for ep in &detached {
                    crate::output::line(&format!(
                        "detached {} from {} ({} {})",
                        ep.container,
                        net.name,
                        ep.ifname,
                        ep.address.addr()
                    ));
                }
                crate::output::line(&format!("removed network {}", net.name));
                Ok(())
            }
        }
    }
}
