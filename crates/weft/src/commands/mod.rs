//! One file per command: a clap struct and what it runs.

mod agent;
mod attach;
mod completion;
mod daemon;
mod demo;
mod detach;
mod dns;
mod docker_plugin;
mod endpoint;
mod explain;
mod firewall;
mod gc;
mod network;
mod node;
mod topology;

use std::path::Path;

use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum Command {
    /// Create, list, inspect and remove networks.
    #[command(subcommand)]
    Network(network::NetworkCommand),
    /// Plug a container into a network (a veth pair into the network's bridge).
    Attach(attach::Attach),
    /// Unplug a container from a network and release its address.
    ///
    /// The container is cut off at once (its interface loses carrier); the
    /// veth pair itself is deleted moments later by a background process,
    /// so the command does not wait for the kernel's ~20 ms device teardown.
    Detach(detach::Detach),
    /// List endpoints (container interfaces on weft networks).
    #[command(subcommand)]
    Endpoint(endpoint::EndpointCommand),
    /// Repair state left by crashes, reboots and vanished containers.
    Gc(gc::Gc),
    /// Serve `attach` and `detach` from a resident process (foreground).
    ///
    /// Optional: the CLI hands these commands to a daemon running on its
    /// state directory, which saves each one the cost of opening the store,
    /// and runs them itself when there is none.
    Daemon(daemon::Daemon),
    /// Serve Docker's networks (libnetwork remote network and IPAM driver).
    ///
    /// Long-running; dockerd finds it by its socket
    /// (`docker network create -d weft --ipam-driver weft NET`).
    DockerPlugin(docker_plugin::DockerPlugin),
    /// Run the per-host agent of a cluster (overlay networks).
    Agent(agent::Agent),
    /// Hosts of the cluster.
    #[command(subcommand)]
    Node(node::NodeCommand),
    /// Build the seed's two-container scenario in a throwaway sandbox and show it.
    Demo(demo::Demo),
    /// Draw the live network: containers, veth pairs, bridges, uplink (text, dot, svg, json).
    Topology(topology::Topology),
    /// Walk the path of a packet from a container to a container or address, step by step.
    Explain(explain::Explain),
    /// Answer DNS for containers on each network's gateway (foreground).
    Dns(dns::Dns),
    /// weft's nftables table: rebuild it from the store, or show it.
    #[command(subcommand)]
    Firewall(firewall::FirewallCommand),
    /// Print a shell completion script (e.g. `weft completion bash >
    /// /etc/bash_completion.d/weft`).
    Completion(completion::Completion),
    /// Write the man pages into a directory (used by `make install`).
    #[command(hide = true)]
    Man(completion::Man),
}

impl Command {
    pub fn run(self, state_dir: &Path) -> Result<()> {
        match self {
            Command::Network(c) => c.run(state_dir),
            Command::Attach(c) => c.run(state_dir),
            Command::Detach(c) => c.run(state_dir),
            Command::Endpoint(c) => c.run(state_dir),
            Command::Gc(c) => c.run(state_dir),
            Command::Agent(c) => c.run(state_dir),
            Command::Daemon(c) => c.run(state_dir),
            Command::DockerPlugin(c) => c.run(state_dir),
            Command::Node(c) => c.run(state_dir),
            Command::Demo(c) => c.run(),
            Command::Topology(c) => c.run(state_dir),
            Command::Explain(c) => c.run(state_dir),
            Command::Firewall(c) => c.run(state_dir),
            Command::Dns(c) => c.run(state_dir),
            Command::Completion(c) => c.run(),
            Command::Man(c) => c.run(),
        }
    }
}

/// Context for a command that changes the network: checks privileges and
/// reclaims endpoints of an earlier boot first.
fn mutating(state_dir: &Path) -> Result<crate::ops::Context> {
    crate::ops::context::require_net_admin()?;
    let mut ctx = crate::ops::Context::open(state_dir)?;
    crate::ops::gc::reclaim_after_reboot(&mut ctx)?;
    Ok(ctx)
}
