//! A host of the cluster, as its agent registers it.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::Mac;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    /// Where other hosts send this host's VXLAN packets.
    pub underlay_ip: IpAddr,
    /// MTU of the underlay interface; overlay links use 50 bytes less.
    pub underlay_mtu: u32,
    /// Seconds since the Unix epoch when the agent (re)started.
    pub started: u64,
    /// The etcd lease that keeps this record (and the node's endpoints and
    /// address blocks) alive; it lapses when the host dies.
    #[serde(default)]
    pub lease: i64,
    /// weft version of the agent.
    #[serde(default)]
    pub version: String,
}

/// Stable MAC of a VXLAN device on a host.
pub fn vtep_mac(node: &str, network: &str) -> Mac {
    Mac::derive(&["vtep", node, network])
}
