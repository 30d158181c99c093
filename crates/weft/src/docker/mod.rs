//! `weft docker-plugin`: Docker's networks on weft, through libnetwork's
//! remote network driver and IPAM driver protocol (HTTP/JSON on a unix
//! socket that dockerd finds in /run/docker/plugins).
//!
//! How Docker's objects map onto weft's:
//! - a Docker network is a weft network named `docker-SHORTID` with bridge
//!   `br-SHORTID` (SHORTID: the first 12 hex digits of Docker's network ID,
//!   as `docker network ls` shows it); `-o weft.overlay=NAME` makes it
//!   weft's existing overlay network NAME instead;
//! - a Docker endpoint is a weft endpoint whose container is Docker's
//!   endpoint ID and whose interface is `eth` (Docker names it ethN);
//! - the IPAM driver hands out addresses that no weft endpoint of the
//!   network holds; the endpoint record, written at Join, owns the address
//!   from then on (Docker's ReleaseAddress only ends the IPAM's hold).
//!
//! Docker moves and configures the container's end of the veth pair itself
//! (name, addresses, routes); weft makes the pair, plugs it into the
//! bridge and publishes the endpoint's ports.

mod ipam;
mod network;
pub mod server;
mod types;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};

use anyhow::{Context as _, Result};
use ipnet::IpNet;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::ops::Context;
use server::Reply;

/// What the plugin keeps between Docker's calls.
pub struct State {
    pub ctx: Context,
    /// Endpoints Docker created and has not joined yet (the address and
    /// MAC it gave, the ports to publish), by endpoint ID.
    pending: HashMap<String, network::Pending>,
    /// Addresses the IPAM handed out and Docker has not released: they are
    /// not handed out again even before an endpoint record holds them.
    held: HashSet<IpAddr>,
    /// Pools handed out and not released, so that two networks created at
    /// once do not get the same one.
    pools: HashSet<IpNet>,
}

pub struct Plugin {
    state: Mutex<State>,
}

impl Plugin {
    pub fn new(ctx: Context) -> Plugin {
        Plugin {
            state: Mutex::new(State {
                ctx,
                pending: HashMap::new(),
                held: HashSet::new(),
                pools: HashSet::new(),
            }),
        }
    }

    /// Calls are served one at a time: Docker's are quick and mostly
    /// sequential, and one context keeps the store and netlink socket warm.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answers one call: the route's JSON, the error (one line) when
    /// it failed, 404 for a method weft does not implement.
    pub fn handle(&self, method: &str, body: &[u8]) -> Reply {
        tracing::info!("docker: {method} {}", String::from_utf8_lossy(body));
        let result = match method {
            "Plugin.Activate" => {
                reply(&types::Activate { implements: vec!["NetworkDriver", "IpamDriver"] })
            }
            "NetworkDriver.GetCapabilities" => {
                reply(&types::Capabilities { scope: "local", connectivity_scope: "local" })
            }
            "NetworkDriver.CreateNetwork" => self.call(body, network::create_network),
            "NetworkDriver.DeleteNetwork" => self.call(body, network::delete_network),
            "NetworkDriver.CreateEndpoint" => self.call(body, network::create_endpoint),
            "NetworkDriver.EndpointOperInfo" => self.call(body, network::oper_info),
            "NetworkDriver.DeleteEndpoint" => self.call(body, network::delete_endpoint),
            "NetworkDriver.Join" => self.call(body, network::join),
            "NetworkDriver.Leave" => self.call(body, network::leave),
            // Ports are published with the endpoint at Join (Docker gives
            // them to one endpoint per container, in CreateEndpoint).
            "NetworkDriver.ProgramExternalConnectivity"
            | "NetworkDriver.RevokeExternalConnectivity"
            | "NetworkDriver.DiscoverNew"
            | "NetworkDriver.DiscoverDelete" => reply(&types::Empty {}),
            "IpamDriver.GetCapabilities" => {
                reply(&types::IpamCapabilities { requires_mac_address: false })
            }
            "IpamDriver.GetDefaultAddressSpaces" => reply(&types::AddressSpaces {
                local_default_address_space: ipam::LOCAL_SPACE,
                global_default_address_space: ipam::GLOBAL_SPACE,
            }),
            "IpamDriver.RequestPool" => self.call(body, ipam::request_pool),
            "IpamDriver.ReleasePool" => self.call(body, ipam::release_pool),
            "IpamDriver.RequestAddress" => self.call(body, ipam::request_address),
            "IpamDriver.ReleaseAddress" => self.call(body, ipam::release_address),
            _ => return Reply::NotFound,
        };
        match result {
            Ok(b) => Reply::Json(b),
            Err(e) => {
                let line = crate::error_line(&e);
                let msg = line.strip_prefix("weft: error: ").unwrap_or(&line);
                tracing::warn!("docker: {method} failed: {msg}");
                // The network driver protocol names the field Err, the
                // IPAM protocol Error; each side ignores the other's.
                let msg = format!("weft: {msg}");
                let body = serde_json::json!({ "Err": msg, "Error": msg });
                Reply::Json(serde_json::to_vec(&body).unwrap_or_default())
            }
        }
    }

    fn call<T: DeserializeOwned, R: Serialize>(
        &self,
        body: &[u8],
        f: impl FnOnce(&mut State, T) -> Result<R>,
    ) -> Result<Vec<u8>> {
        let req: T = serde_json::from_slice(body).context("malformed request")?;
        let r = f(&mut self.lock(), req)?;
        reply(&r)
    }
}

fn reply(r: &impl Serialize) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(r)?)
}
