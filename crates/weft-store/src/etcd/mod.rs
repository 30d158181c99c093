//! The cluster store: networks, nodes and endpoints of every host in etcd.
//!
//! [`EtcdStore`] is the [`Store`] the CLI uses on a host of a cluster, with
//! the same rules and errors as the single-host store; its methods block
//! (it owns a small tokio runtime), so call it from plain threads, not from
//! async code. [`Cluster`] is the async side the agent uses: node
//! registration under a lease, snapshots and watches. The key layout is in
//! [`keys`].

mod client;
mod cluster;
mod endpoint;
mod ipam;
pub mod keys;
mod network;
mod ports;

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use ipnet::IpNet;
use tokio::runtime::Runtime;
use weft_model::network::NetworkSpec;
use weft_model::{Endpoint, EndpointKey, Network};

use crate::{EndpointRequest, Store, StoreError};
use client::{Conn, Fail};

pub use client::{CONNECT_TIMEOUT, REQUEST_TIMEOUT};
pub use cluster::{Cluster, Event, KeepAlive, NodeState, Snapshot, Watch};

/// Where the cluster store is and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// `http://host:port` or `https://host:port` URLs of etcd members.
    pub endpoints: Vec<String>,
    /// CA certificate (PEM) that signed etcd's server certificate.
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM), with `key`, for etcd's client-cert auth.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// User name and password for etcd's authentication (`etcdctl auth
    /// enable`); None: none.
    pub user: Option<(String, String)>,
    /// Every key weft writes starts with this; several clusters (or test
    /// runs) can share one etcd under different prefixes.
    pub prefix: String,
}

pub const DEFAULT_PREFIX: &str = "/weft/";

impl EtcdConfig {
    pub fn new(endpoints: Vec<String>) -> EtcdConfig {
        EtcdConfig {
            endpoints,
            ca: None,
            cert: None,
            key: None,
            user: None,
            prefix: DEFAULT_PREFIX.into(),
        }
    }
}

impl Default for EtcdConfig {
    fn default() -> EtcdConfig {
        EtcdConfig::new(Vec::new())
    }
}

/// The [`Store`] of one host of a cluster.
pub struct EtcdStore {
    rt: Runtime,
    conn: Conn,
    node: String,
    /// The last endpoint this store reserved, as written: the attach that
    /// follows with `set_ready` then needs no read.
    last: Mutex<Option<endpoint::Written>>,
}

impl EtcdStore {
    /// Connects and checks that etcd answers; an unreachable etcd is an
    /// error within [`CONNECT_TIMEOUT`] + [`REQUEST_TIMEOUT`] or less. `node`
    /// is this host's name: it scopes [`Store::meta`].
    pub fn connect(cfg: &EtcdConfig, node: &str) -> Result<EtcdStore, StoreError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(StoreError::Runtime)?;
        let conn = rt.block_on(async {
            let conn = Conn::new(cfg, false).await?;
            match conn.ping().await {
                Ok(()) => Ok(conn),
                Err(e) => Err(conn.error(e).await),
            }
        })?;
        Ok(EtcdStore { rt, conn, node: node.to_string(), last: Mutex::new(None) })
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    fn run<T>(
        &self,
        op: impl std::future::Future<Output = Result<T, Fail>>,
    ) -> Result<T, StoreError> {
        self.rt.block_on(async {
            match op.await {
                Ok(v) => Ok(v),
                Err(e) => Err(self.conn.error(e).await),
            }
        })
    }
}

impl Store for EtcdStore {
    fn create_network(
        &self,
        spec: &NetworkSpec,
        host_taken: &[IpNet],
        created: u64,
    ) -> Result<Network, StoreError> {
        self.run(network::create(&self.conn, spec, host_taken, created))
    }

    fn network(&self, name: &str) -> Result<Option<Network>, StoreError> {
        self.run(network::get(&self.conn, name))
    }

    fn networks(&self) -> Result<Vec<Network>, StoreError> {
        self.run(network::list(&self.conn))
    }

    fn remove_network(&self, name: &str) -> Result<Network, StoreError> {
        self.run(network::remove(&self.conn, name))
    }

    fn reserve_endpoint(&self, req: &EndpointRequest) -> Result<Endpoint, StoreError> {
        let written = self.run(endpoint::reserve(&self.conn, req))?;
        let e = written.0.clone();
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(written);
        Ok(e)
    }

    fn set_ready(&self, key: &EndpointKey) -> Result<(), StoreError> {
        let known = {
            let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
            last.take_if(|(e, _)| e.key() == *key)
        };
        self.run(endpoint::set_ready(&self.conn, key, known))
    }

    fn remove_endpoint(&self, key: &EndpointKey) -> Result<Option<Endpoint>, StoreError> {
        self.run(endpoint::remove(&self.conn, key))
    }

    fn endpoint(&self, key: &EndpointKey) -> Result<Option<Endpoint>, StoreError> {
        self.run(endpoint::get(&self.conn, key))
    }

    fn endpoints(&self, network: Option<&str>) -> Result<Vec<Endpoint>, StoreError> {
        self.run(endpoint::list(&self.conn, network))
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let k = self.conn.keys.node_meta(&self.node, key);
        self.run(async {
            match self.conn.get(&k).await? {
                Some(kv) => Ok(Some(String::from_utf8_lossy(kv.value()).into_owned())),
                None => Ok(None),
            }
        })
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let k = self.conn.keys.node_meta(&self.node, key);
        self.run(self.conn.put(&k, value))
    }
}

/// Optimistic transactions retry this often before reporting contention.
const MAX_ATTEMPTS: u32 = 64;

/// A short, growing, jittered pause between optimistic attempts, so that
/// hosts that collided do not collide again in lockstep.
async fn backoff(attempt: u32) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let base = 1u64 << attempt.min(6);
    let jitter = u64::from(nanos) % (base * 1000);
    tokio::time::sleep(std::time::Duration::from_micros(base * 500 + jitter)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_is_send() {
        fn send<T: Send>() {}
        send::<EtcdStore>();
        send::<Box<dyn Store>>();
    }
}
