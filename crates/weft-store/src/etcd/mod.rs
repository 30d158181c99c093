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
mod hosts;
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
    cfg: EtcdConfig,
    /// The member this store talks to; replaced by another one when it
    /// stops answering (see [`EtcdStore::run_again`]).
    conn: Mutex<Conn>,
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
        let conn = rt.block_on(Conn::connect(cfg, false))?;
        Ok(EtcdStore {
            rt,
            cfg: cfg.clone(),
            conn: Mutex::new(conn),
            node: node.to_string(),
            last: Mutex::new(None),
        })
    }

    fn conn(&self) -> Conn {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Runs `op` on the current member.
    fn run<T, F>(&self, op: impl FnOnce(Conn) -> F) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = Result<T, Fail>>,
    {
        let conn = self.conn();
        self.rt.block_on(async {
            match op(conn.clone()).await {
                Ok(v) => Ok(v),
                Err(e) => Err(conn.error(e).await),
            }
        })
    }

    /// Runs `op`, and once more on another member when the first one
    /// stopped answering (killed, partitioned away: a 3-member etcd loses
    /// its leader and goes on). Only for operations whose second run is
    /// right whether or not the first one took effect.
    fn run_again<T, F>(&self, op: impl Fn(Conn) -> F) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = Result<T, Fail>>,
    {
        match self.run(&op) {
            Err(StoreError::Unreachable { .. }) if self.failover() => self.run(&op),
            r => r,
        }
    }

    /// Connects to a member that answers, if there is another one; false
    /// when there is no other member.
    fn failover(&self) -> bool {
        if self.cfg.endpoints.len() < 2 {
            return false;
        }
        match self.rt.block_on(Conn::connect(&self.cfg, false)) {
            Ok(c) => {
                *self.conn.lock().unwrap_or_else(PoisonError::into_inner) = c;
                true
            }
            Err(_) => false,
        }
    }
}

impl Store for EtcdStore {
    fn create_network(
        &self,
        spec: &NetworkSpec,
        host_taken: &[IpNet],
        created: u64,
    ) -> Result<Network, StoreError> {
        // Not run again: a create whose answer was lost would find its own
        // network and report it as taken.
        self.run(|c| async move { network::create(&c, spec, host_taken, created).await })
    }

    fn network(&self, name: &str) -> Result<Option<Network>, StoreError> {
        self.run_again(|c| async move { network::get(&c, name).await })
    }

    fn networks(&self) -> Result<Vec<Network>, StoreError> {
        self.run_again(|c| async move { network::list(&c).await })
    }

    fn remove_network(&self, name: &str) -> Result<Network, StoreError> {
        self.run(|c| async move { network::remove(&c, name).await })
    }

    fn reserve_endpoint(&self, req: &EndpointRequest) -> Result<Endpoint, StoreError> {
        let written = match self.run(|c| async move { endpoint::reserve(&c, req).await }) {
            Err(StoreError::Unreachable { .. }) if self.failover() => {
                // The reservation may have been written before the member
                // died: then the record is this request's, and it is the
                // answer (a reservation reported failed must not stay).
                let key = request_key(req);
                let found = self.run(|c| {
                    let key = key.clone();
                    async move { endpoint::get_written(&c, &key).await }
                })?;
                match found {
                    Some(w) if is_from(&w.0, req) => w,
                    _ => self.run(|c| async move { endpoint::reserve(&c, req).await })?,
                }
            }
            r => r?,
        };
        let e = written.0.clone();
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(written);
        Ok(e)
    }

    fn set_ready(&self, key: &EndpointKey) -> Result<(), StoreError> {
        let known = {
            let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
            last.take_if(|(e, _)| e.key() == *key)
        };
        match self.run(|c| async move { endpoint::set_ready(&c, key, known).await }) {
            // Read afresh on the next member: the first write may have
            // changed the revision `known` names.
            Err(StoreError::Unreachable { .. }) if self.failover() => {
                self.run(|c| async move { endpoint::set_ready(&c, key, None).await })
            }
            r => r,
        }
    }

    fn remove_endpoint(&self, key: &EndpointKey) -> Result<Option<Endpoint>, StoreError> {
        self.run_again(|c| async move { endpoint::remove(&c, key).await })
    }

    fn endpoint(&self, key: &EndpointKey) -> Result<Option<Endpoint>, StoreError> {
        self.run_again(|c| async move { endpoint::get(&c, key).await })
    }

    fn endpoints(&self, network: Option<&str>) -> Result<Vec<Endpoint>, StoreError> {
        self.run_again(|c| async move { endpoint::list(&c, network).await })
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.run_again(|c| async move {
            let k = c.keys.node_meta(&self.node, key);
            match c.get(&k).await? {
                Some(kv) => Ok(Some(String::from_utf8_lossy(kv.value()).into_owned())),
                None => Ok(None),
            }
        })
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.run_again(|c| async move {
            let k = c.keys.node_meta(&self.node, key);
            c.put(&k, value).await
        })
    }
}

fn request_key(req: &EndpointRequest) -> EndpointKey {
    EndpointKey {
        network: req.network.clone(),
        container: req.container.clone(),
        ifname: req.ifname.clone(),
    }
}

/// Whether a stored endpoint is the one `req` asked for (same process,
/// moment and namespace), not an older one of the same name.
fn is_from(e: &Endpoint, req: &EndpointRequest) -> bool {
    e.pid == req.pid
        && e.created == req.created
        && e.boot_id == req.boot_id
        && e.netns == req.netns
        && e.node == req.node
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
