//! An endpoint: one container interface plugged into one network.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::{Mac, ModelError, PortMapping};

/// Lifecycle of an endpoint record. The record is written as `Creating`
/// (reserving its addresses) before any kernel change and turned `Ready`
/// after the last one, so a process killed in between leaves a record that
/// says exactly what to undo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointState {
    Creating,
    Ready,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub container: String,
    pub network: String,
    pub ifname: String,
    /// Address with the subnet's prefix length, e.g. `172.30.0.2/16`.
    pub address: Ipv4Net,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address6: Option<Ipv6Net>,
    pub mac: Mac,
    /// None on internal networks: no default route.
    pub gateway: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<Ipv6Addr>,
    pub host_veth: String,
    pub netns: String,
    /// The namespace `netns` named at attach time. A path can come to name
    /// another namespace (`/proc/PID/ns/net` after the pid is reused, a
    /// netns deleted and made again): whoever enters the container's
    /// namespace later checks it is still this one. Absent in records of
    /// older weft versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns_id: Option<NetnsId>,
    /// The host the container runs on (cluster mode; None on a single host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub state: EndpointState,
    /// Kernel boot id when the endpoint was made: after a reboot every
    /// namespace and veth is gone, so records of an older boot are stale.
    pub boot_id: String,
    /// Process that created the record; while `Creating`, a dead pid means
    /// the attach crashed midway.
    pub pid: u32,
    pub created: u64,
    /// Host ports forwarded to this endpoint (`--publish`); absent in
    /// records written before port publishing existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortMapping>,
    /// DNS names besides the container name (`--alias`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
}

/// A namespace's identity: the device and inode of its nsfs file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NetnsId {
    pub dev: u64,
    pub ino: u64,
}

impl std::fmt::Display for NetnsId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.dev, self.ino)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointKey {
    pub network: String,
    pub container: String,
    pub ifname: String,
}

impl Endpoint {
    pub fn key(&self) -> EndpointKey {
        EndpointKey {
            network: self.network.clone(),
            container: self.container.clone(),
            ifname: self.ifname.clone(),
        }
    }
}

impl std::fmt::Display for EndpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.network, self.container, self.ifname)
    }
}

pub fn check_container_name(name: &str) -> Result<(), ModelError> {
    // "." and ".." would name directories in /var/run/netns/CONTAINER.
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= 253
        && name.chars().all(|c| c.is_ascii_graphic() && c != '/');
    if ok {
        Ok(())
    } else {
        Err(ModelError::BadContainerName(name.to_string()))
    }
}
