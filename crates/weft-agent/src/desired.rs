//! What the kernel of one host should hold, computed from the cluster's
//! state alone (pure, unit-tested): for every overlay network, the remote
//! containers this host must reach through VXLAN.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use weft_datapath::vxlan::RemoteEntry;
use weft_model::{Driver, Endpoint, Network, Node};

/// The cluster as the agent last saw it.
#[derive(Debug, Clone, Default)]
pub struct View {
    pub networks: BTreeMap<String, Network>,
    pub nodes: BTreeMap<String, Node>,
    /// Keyed by "network/container/ifname".
    pub endpoints: BTreeMap<String, Endpoint>,
}

impl View {
    pub fn overlays(&self) -> impl Iterator<Item = &Network> {
        self.networks.values().filter(|n| n.driver == Driver::Overlay)
    }

    /// Remote entries of `network` for host `me`: every endpoint on another
    /// live node. Endpoints of nodes whose record is gone are left out (the
    /// host died; its keys lapse with its lease).
    pub fn remotes(&self, network: &str, me: &str) -> BTreeSet<RemoteEntry> {
        self.endpoints
            .values()
            .filter(|e| e.network == network)
            .filter_map(|e| {
                let node = e.node.as_deref()?;
                if node == me {
                    return None;
                }
                let vtep = self.nodes.get(node)?.underlay_ip;
                let mut ips = vec![IpAddr::V4(e.address.addr())];
                ips.extend(e.address6.map(|a| IpAddr::V6(a.addr())));
                ips.sort();
                Some(RemoteEntry { mac: e.mac, ips, vtep })
            })
            .collect()
    }
}

/// Entries to add and to remove to go from `actual` to `desired`.
pub fn diff(
    desired: &BTreeSet<RemoteEntry>,
    actual: &[RemoteEntry],
) -> (Vec<RemoteEntry>, Vec<RemoteEntry>) {
    let actual: BTreeSet<RemoteEntry> = actual.iter().cloned().collect();
    let add = desired.difference(&actual).cloned().collect();
    let remove = actual.difference(desired).cloned().collect();
    (add, remove)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_model::{EndpointState, Mac};

    fn ep(net: &str, c: &str, node: &str, ip: &str) -> Endpoint {
        Endpoint {
            container: c.into(),
            network: net.into(),
            ifname: "eth0".into(),
            address: format!("{ip}/24").parse().unwrap(),
            address6: None,
            mac: Mac::derive(&[net, c]),
            gateway: None,
            gateway6: None,
            host_veth: "v".into(),
            netns: "/x".into(),
            netns_id: None,
            node: Some(node.into()),
            state: EndpointState::Ready,
            boot_id: String::new(),
            pid: 0,
            created: 0,
            ports: Vec::new(),
            aliases: Vec::new(),
        }
    }

    fn node(name: &str, ip: &str) -> Node {
        Node {
            name: name.into(),
            underlay_ip: ip.parse().unwrap(),
            underlay_mtu: 1500,
            started: 0,
            lease: 1,
            version: String::new(),
        }
    }

    #[test]
    fn remotes_skip_own_and_dead_nodes() {
        let mut v = View::default();
        v.nodes.insert("a".into(), node("a", "10.0.0.1"));
        v.nodes.insert("b".into(), node("b", "10.0.0.2"));
        for e in [
            ep("o", "a1", "a", "10.9.0.2"),
            ep("o", "b1", "b", "10.9.0.3"),
            ep("o", "c1", "c", "10.9.0.4"),
            ep("other", "b2", "b", "10.8.0.2"),
        ] {
            v.endpoints.insert(e.key().to_string(), e);
        }
        let r = v.remotes("o", "a");
        assert_eq!(r.len(), 1);
        let e = r.iter().next().unwrap();
        assert_eq!(e.vtep.to_string(), "10.0.0.2");
        assert_eq!(e.ips[0].to_string(), "10.9.0.3");

        let stale = RemoteEntry { mac: Mac::derive(&["x"]), ips: vec![], vtep: e.vtep };
        let (add, remove) = diff(&r, std::slice::from_ref(&stale));
        assert_eq!(add.len(), 1);
        assert_eq!(remove, vec![stale]);
    }
}
