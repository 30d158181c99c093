//! weft's state: networks and endpoints, behind one [`Store`] trait.
//!
//! [`SqliteStore`] keeps a single host's state in an embedded database that
//! several weft processes may use at once; [`EtcdStore`] keeps a cluster's
//! in etcd, shared by every host (see [`etcd`]). Validation of single records lives in weft-model;
//! what needs to see other records (duplicates, overlaps, free addresses) is
//! decided here, atomically.

mod error;
pub mod etcd;
mod rules;
mod schema;
mod sqlite;

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use weft_model::network::NetworkSpec;
use weft_model::{Endpoint, EndpointKey, Mac, Network, PortMapping};

pub use error::StoreError;
pub use etcd::{EtcdConfig, EtcdStore};
pub use sqlite::SqliteStore;

/// Where weft keeps its networks and endpoints. Every method is atomic: a
/// failed call leaves the store as it was.
pub trait Store: Send {
    /// Refuses a duplicate name, a bridge name another network uses, and a
    /// subnet (IPv4 or IPv6) overlapping another network or one of
    /// `host_taken` (the host's routes and addresses). Without `spec.subnet`,
    /// picks the first free /24 of the default pool.
    fn create_network(
        &self,
        spec: &NetworkSpec,
        host_taken: &[IpNet],
        created: u64,
    ) -> Result<Network, StoreError>;

    fn network(&self, name: &str) -> Result<Option<Network>, StoreError>;

    /// Sorted by name.
    fn networks(&self) -> Result<Vec<Network>, StoreError>;

    /// Refuses while the network has endpoints.
    fn remove_network(&self, name: &str) -> Result<Network, StoreError>;

    /// Records a new endpoint in state `Creating` with its addresses: the
    /// requested ones after checking them, otherwise the next free ones after
    /// the last address handed out (so a released address is not reused at
    /// once). The MAC must be unique within the network.
    fn reserve_endpoint(&self, req: &EndpointRequest) -> Result<Endpoint, StoreError>;

    /// Marks an endpoint `Ready`, once its kernel side is complete.
    fn set_ready(&self, key: &EndpointKey) -> Result<(), StoreError>;

    /// Returns the removed endpoint, None if there was none.
    fn remove_endpoint(&self, key: &EndpointKey) -> Result<Option<Endpoint>, StoreError>;

    fn endpoint(&self, key: &EndpointKey) -> Result<Option<Endpoint>, StoreError>;

    /// All endpoints, or those of one network; sorted by network, then address.
    fn endpoints(&self, network: Option<&str>) -> Result<Vec<Endpoint>, StoreError>;

    /// One container's endpoints on one network (one per ifname).
    fn container_endpoints(
        &self,
        network: &str,
        container: &str,
    ) -> Result<Vec<Endpoint>, StoreError> {
        let mut eps = self.endpoints(Some(network))?;
        eps.retain(|e| e.container == container);
        Ok(eps)
    }

    /// Small key/value metadata, such as the boot id the state belongs to.
    fn meta(&self, key: &str) -> Result<Option<String>, StoreError>;

    fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError>;

    /// Sets `key` to `value` unless it has a value already; returns the
    /// value it has now. Atomic where the backend allows it.
    fn init_meta(&self, key: &str, value: &str) -> Result<String, StoreError> {
        if let Some(v) = self.meta(key)? {
            return Ok(v);
        }
        self.set_meta(key, value)?;
        Ok(value.to_string())
    }
}

/// What an attach asks of [`Store::reserve_endpoint`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointRequest {
    pub network: String,
    pub container: String,
    pub ifname: String,
    pub netns: String,
    /// The namespace `netns` named when the request was made.
    pub netns_id: Option<weft_model::endpoint::NetnsId>,
    /// A fixed IPv4 address; None lets the store choose.
    pub ip: Option<Ipv4Addr>,
    /// A fixed IPv6 address, on networks with an IPv6 subnet.
    pub ip6: Option<Ipv6Addr>,
    pub mac: Mac,
    pub host_veth: String,
    /// The host the container runs on (cluster stores); None on one host.
    pub node: Option<String>,
    pub boot_id: String,
    pub pid: u32,
    pub created: u64,
    /// Host ports to publish; the store refuses one that overlaps a port
    /// another endpoint publishes, in the same transaction.
    pub ports: Vec<PortMapping>,
    /// DNS names besides the container name.
    pub aliases: Vec<String>,
}

impl EndpointRequest {
    /// The record both backends write once they have chosen the addresses:
    /// state Creating, addresses with the subnets' prefixes, no gateway on
    /// internal networks.
    pub fn record(
        &self,
        net: &weft_model::Network,
        ip4: Ipv4Addr,
        ip6: Option<Ipv6Addr>,
    ) -> Endpoint {
        let prefix = "prefix of a valid subnet";
        Endpoint {
            container: self.container.clone(),
            network: self.network.clone(),
            ifname: self.ifname.clone(),
            address: ipnet::Ipv4Net::new(ip4, net.subnet.prefix_len()).expect(prefix),
            address6: match (ip6, net.subnet6) {
                (Some(a), Some(s6)) => Some(ipnet::Ipv6Net::new(a, s6.prefix_len()).expect(prefix)),
                _ => None,
            },
            mac: self.mac,
            node: self.node.clone(),
            gateway: (!net.internal).then_some(net.gateway),
            gateway6: net.gateway6.filter(|_| !net.internal),
            host_veth: self.host_veth.clone(),
            netns: self.netns.clone(),
            netns_id: self.netns_id,
            state: weft_model::EndpointState::Creating,
            boot_id: self.boot_id.clone(),
            pid: self.pid,
            created: self.created,
            ports: self.ports.clone(),
            aliases: self.aliases.clone(),
        }
    }
}
