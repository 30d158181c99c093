//! Simulated hosts of a cluster on one private etcd.

use std::collections::BTreeMap;

use tokio::runtime::Runtime;
use weft_model::Node;
use weft_store::etcd::Cluster;
use weft_store::{EndpointRequest, EtcdConfig, EtcdStore};

use super::EtcdServer;

/// For the async cluster API; the sync store runs its own, so never call
/// the store inside `block_on` of this one.
pub fn rt() -> Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

pub fn node(name: &str) -> Node {
    Node {
        name: name.into(),
        underlay_ip: "127.0.0.1".parse().unwrap(),
        underlay_mtu: 1500,
        started: 1_700_000_000,
        lease: 0,
        version: "test".into(),
    }
}

/// A simulated host: its node registered under a lease, and its store.
pub struct Host {
    pub store: EtcdStore,
    pub lease: i64,
}

pub fn host(cfg: &EtcdConfig, rt: &Runtime, cluster: &Cluster, name: &str) -> Host {
    let lease = rt.block_on(cluster.register_node(&node(name), 60)).unwrap();
    Host { store: EtcdStore::connect(cfg, name).unwrap(), lease }
}

/// The request, made on `node`.
pub fn on(node: &str, r: EndpointRequest) -> EndpointRequest {
    EndpointRequest { node: Some(node.into()), ..r }
}

/// Keys below `prefix` with their values and leases, read with a plain
/// etcd client.
pub fn raw(rt: &Runtime, etcd: &EtcdServer, prefix: &str) -> BTreeMap<String, (String, i64)> {
    rt.block_on(async {
        let mut c = etcd_client::Client::connect([&etcd.url], None).await.unwrap();
        let opts = etcd_client::GetOptions::new().with_prefix();
        let resp = c.get(prefix, Some(opts)).await.unwrap();
        resp.kvs()
            .iter()
            .map(|kv| {
                let v = String::from_utf8_lossy(kv.value()).into_owned();
                (kv.key_str().unwrap().to_string(), (v, kv.lease()))
            })
            .collect()
    })
}
