//! Helpers shared by the store's tests.
#![allow(dead_code)]

use tempfile::TempDir;
use weft_model::network::NetworkSpec;
use weft_model::{EndpointKey, Mac};
use weft_store::{EndpointRequest, SqliteStore};

pub fn store() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    (dir, store)
}

pub fn spec(name: &str, subnet: &str) -> NetworkSpec {
    NetworkSpec { name: name.into(), subnet: Some(subnet.parse().unwrap()), ..Default::default() }
}

pub fn spec6(name: &str, subnet: &str, subnet6: &str) -> NetworkSpec {
    NetworkSpec { subnet6: Some(subnet6.parse().unwrap()), ..spec(name, subnet) }
}

pub fn req(network: &str, container: &str) -> EndpointRequest {
    EndpointRequest {
        network: network.into(),
        container: container.into(),
        ifname: "eth0".into(),
        netns: format!("/run/netns/{container}"),
        netns_id: None,
        ip: None,
        ip6: None,
        mac: Mac::derive(&[network, container, "eth0"]),
        host_veth: weft_model::names::host_veth_name(network, container, "eth0"),
        node: None,
        boot_id: "boot-1".into(),
        pid: 4242,
        created: 1_700_000_000,
        ports: Vec::new(),
        aliases: Vec::new(),
    }
}

pub fn key(network: &str, container: &str) -> EndpointKey {
    EndpointKey { network: network.into(), container: container.into(), ifname: "eth0".into() }
}
