//! The agent's cluster API against a real etcd: leases and what dies with
//! them, watches, reaping. Each test starts its own etcd on loopback.

mod common;
mod etcd_server;

use std::thread;
use std::time::{Duration, Instant};

use common::{key, req, spec, spec6};
use etcd_server::hosts::{host, node, on, raw, rt};
use etcd_server::EtcdServer;
use weft_model::EndpointState;
use weft_store::etcd::{Cluster, Event};
use weft_store::{EtcdStore, Store, StoreError};

/// Lease loss is not node death: the node is unreachable (its record
/// gone), but its endpoints, claims and blocks stay until it is reaped.
#[test]
fn a_host_whose_lease_lapsed_keeps_its_addresses_until_reaped() {
    let etcd = EtcdServer::start();
    let (cfg, rt) = (etcd.config(), rt());
    let cluster = rt.block_on(Cluster::connect(&cfg)).unwrap();
    let a = host(&cfg, &rt, &cluster, "a");
    let b = host(&cfg, &rt, &cluster, "b");
    a.store.create_network(&spec6("net", "10.7.0.0/24", "fd00:7::/64"), &[], 0).unwrap();
    for i in 0..3 {
        a.store.reserve_endpoint(&on("a", req("net", &format!("a{i}")))).unwrap();
        b.store.reserve_endpoint(&on("b", req("net", &format!("b{i}")))).unwrap();
    }
    assert_eq!(raw(&rt, &etcd, "/weft/ipam/net/blocks/").len(), 2);

    rt.block_on(cluster.revoke(a.lease)).unwrap();

    let all: Vec<String> =
        b.store.endpoints(None).unwrap().into_iter().map(|e| e.container).collect();
    assert_eq!(all.len(), 6, "a's endpoints must survive its lease: {all:?}");
    let keys = raw(&rt, &etcd, "/weft/");
    assert!(!keys.contains_key("/weft/nodes/a"));
    assert!(keys.contains_key("/weft/nodes/b"));
    let states = rt.block_on(cluster.node_states()).unwrap();
    let a_state = states.iter().find(|s| s.name == "a").expect("a listed");
    assert!(a_state.node.is_none() && a_state.endpoints == 3, "{a_state:?}");

    rt.block_on(cluster.reap_node("a")).unwrap();
    let left: Vec<String> =
        b.store.endpoints(None).unwrap().into_iter().map(|e| e.container).collect();
    assert_eq!(left, ["b0", "b1", "b2"]);
    let keys = raw(&rt, &etcd, "/weft/");
    // Only b's claims (v4, v6, MAC per endpoint), block and hint remain.
    let ipam: Vec<&String> = keys.keys().filter(|k| k.starts_with("/weft/ipam/")).collect();
    assert_eq!(ipam.len(), 3 * 3 + 1 + 1, "{ipam:?}");
    assert!(keys.iter().filter(|(k, _)| k.contains("/blocks/")).all(|(_, (v, _))| v == "b"));
    // a is gone for good: its endpoints cannot be re-made until it registers.
    assert!(matches!(
        a.store.reserve_endpoint(&on("a", req("net", "a9"))),
        Err(StoreError::NodeNotRegistered(_))
    ));
    // b can now take the freed block.
    let nodes = rt.block_on(cluster.nodes()).unwrap();
    assert_eq!(nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["b"]);
}

#[test]
fn lease_expiry_without_renewal_makes_the_node_unreachable_not_gone() {
    let etcd = EtcdServer::start();
    let (cfg, rt) = (etcd.config(), rt());
    let cluster = rt.block_on(Cluster::connect(&cfg)).unwrap();
    let lease = rt.block_on(cluster.register_node(&node("a"), 1)).unwrap();
    let s = EtcdStore::connect(&cfg, "a").unwrap();
    s.create_network(&spec("net", "10.9.0.0/24"), &[], 0).unwrap();
    s.reserve_endpoint(&on("a", req("net", "c1"))).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !rt.block_on(cluster.nodes()).unwrap().is_empty() {
        assert!(Instant::now() < deadline, "lease {lease:x} never expired");
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(s.endpoints(None).unwrap().len(), 1, "the endpoint died with the lease");
    assert!(!raw(&rt, &etcd, "/weft/ipam/").is_empty());
    // Past a grace period (here 0 s, last seen 10 s ago) an agent reaps it.
    rt.block_on(cluster.touch_node("a", 1000)).unwrap();
    assert!(rt.block_on(cluster.reap_expired(60, 1005)).unwrap().is_empty());
    assert_eq!(rt.block_on(cluster.reap_expired(0, 1010)).unwrap(), ["a"]);
    assert!(s.endpoints(None).unwrap().is_empty());
    assert!(raw(&rt, &etcd, "/weft/ipam/").is_empty());
}

#[test]
fn nodes_register_renew_and_reuse_their_lease() {
    let etcd = EtcdServer::start();
    let (cfg, rt) = (etcd.config(), rt());
    rt.block_on(async {
        let cluster = Cluster::connect(&cfg).await.unwrap();
        let lease = cluster.register_node(&node("a"), 2).await.unwrap();
        let mut keep = cluster.keep_alive(lease).await.unwrap();
        assert_eq!(keep.lease(), lease);
        // Renewed past its TTL, the node stays.
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(700)).await;
            assert!(keep.renew().await.unwrap() > 0);
        }
        let nodes = cluster.nodes().await.unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].lease, lease);
        // A restarted agent gets the same lease back, given or not.
        assert_eq!(cluster.register_node_with(&node("a"), 2, Some(lease)).await.unwrap(), lease);
        assert_eq!(cluster.register_node(&node("a"), 2).await.unwrap(), lease);

        cluster.revoke(lease).await.unwrap();
        assert!(
            matches!(keep.renew().await, Err(StoreError::LeaseLost { lease: l }) if l == lease)
        );
        assert!(matches!(cluster.keep_alive(lease).await, Err(StoreError::LeaseLost { .. })));
        assert!(cluster.nodes().await.unwrap().is_empty());
        let fresh = cluster.register_node_with(&node("a"), 2, Some(lease)).await.unwrap();
        assert_ne!(fresh, lease);
    });
}

#[test]
fn reap_removes_what_a_vanished_node_left() {
    let etcd = EtcdServer::start();
    let (cfg, rt) = (etcd.config(), rt());
    let cluster = rt.block_on(Cluster::connect(&cfg)).unwrap();
    let a = host(&cfg, &rt, &cluster, "a");
    let b = host(&cfg, &rt, &cluster, "b");
    a.store.create_network(&spec("n1", "10.10.0.0/24"), &[], 0).unwrap();
    a.store.create_network(&spec6("n2", "10.11.0.0/24", "fd00:11::/64"), &[], 0).unwrap();
    for n in ["n1", "n2"] {
        for i in 0..40 {
            a.store.reserve_endpoint(&on("a", req(n, &format!("a{i}")))).unwrap();
        }
        b.store.reserve_endpoint(&on("b", req(n, "b0"))).unwrap();
    }
    a.store.set_meta("boot_id", "x").unwrap();
    assert!(matches!(rt.block_on(cluster.reap_node("a")), Err(StoreError::NodeAlive(_))));

    // The record vanishes but, say, the keys were written without a lease.
    rt.block_on(async {
        let mut c = etcd_client::Client::connect([&etcd.url], None).await.unwrap();
        c.delete("/weft/nodes/a", None).await.unwrap();
    });
    let deleted = rt.block_on(cluster.reap_node("a")).unwrap();
    // 40 endpoints with v4+MAC claims, 40 with v4+v6+MAC, 2 blocks, 2 hints, 1 meta.
    assert_eq!(deleted, 40 * 3 + 40 * 4 + 2 + 2 + 1);
    let left: Vec<String> =
        b.store.endpoints(None).unwrap().into_iter().map(|e| e.container).collect();
    assert_eq!(left, ["b0", "b0"]);
    let keys = raw(&rt, &etcd, "/weft/");
    assert!(keys.keys().all(|k| !k.contains("/nodemeta/a/")));
    assert!(keys.iter().filter(|(k, _)| k.contains("/blocks/")).all(|(_, (v, _))| v == "b"));
    assert_eq!(rt.block_on(cluster.reap_node("a")).unwrap(), 0);
}

#[test]
fn watch_sees_every_change_in_order() {
    let etcd = EtcdServer::start();
    let (cfg, rt) = (etcd.config(), rt());
    let cluster = rt.block_on(Cluster::connect(&cfg)).unwrap();
    let s = EtcdStore::connect(&cfg, "a").unwrap();
    s.create_network(&spec("before", "10.30.0.0/24"), &[], 0).unwrap();
    let snap = rt.block_on(cluster.snapshot()).unwrap();
    assert_eq!(snap.networks.len(), 1);
    assert!(snap.nodes.is_empty() && snap.endpoints.is_empty());
    let mut watch = rt.block_on(cluster.watch(snap.revision + 1)).unwrap();

    s.create_network(&spec("net", "10.31.0.0/24"), &[], 0).unwrap();
    let lease = rt.block_on(cluster.register_node(&node("a"), 60)).unwrap();
    let e = s.reserve_endpoint(&on("a", req("net", "c1"))).unwrap();
    s.set_ready(&e.key()).unwrap();
    s.remove_endpoint(&e.key()).unwrap();
    s.remove_network("net").unwrap();
    rt.block_on(cluster.revoke(lease)).unwrap();

    let mut seen = Vec::new();
    let mut last = snap.revision;
    while seen.len() < 7 {
        let next =
            rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), watch.next()).await });
        let (rev, ev) = next.expect("event within 5 s").unwrap();
        assert!(rev > last, "revisions go up");
        last = rev;
        seen.push(ev);
    }
    let ready = weft_model::Endpoint { state: EndpointState::Ready, ..e.clone() };
    assert!(matches!(&seen[0], Event::NetworkPut(n) if n.name == "net"));
    assert!(matches!(&seen[1], Event::NodePut(n) if n.name == "a" && n.lease == lease));
    assert_eq!(seen[2], Event::EndpointPut(e.clone()));
    assert_eq!(seen[3], Event::EndpointPut(ready));
    assert_eq!(seen[4], Event::EndpointDeleted(key("net", "c1")));
    assert_eq!(seen[5], Event::NetworkDeleted("net".into()));
    assert_eq!(seen[6], Event::NodeDeleted("a".into()));
    assert!(watch.revision() >= last);
}

#[test]
fn watching_compacted_history_says_so() {
    let etcd = EtcdServer::start();
    let (cfg, rt) = (etcd.config(), rt());
    let s = EtcdStore::connect(&cfg, "a").unwrap();
    for i in 0..3u8 {
        s.create_network(&spec(&format!("n{i}"), &format!("10.{}.0.0/24", 60 + i)), &[], 0)
            .unwrap();
    }
    rt.block_on(async {
        let cluster = Cluster::connect(&cfg).await.unwrap();
        let rev = cluster.snapshot().await.unwrap().revision;
        let mut c = etcd_client::Client::connect([&etcd.url], None).await.unwrap();
        c.compact(rev, None).await.unwrap();
        let err = match cluster.watch(2).await {
            Err(e) => e,
            Ok(mut w) => w.next().await.unwrap_err(),
        };
        assert!(matches!(err, StoreError::Compacted(r) if r == rev), "{err}");
        // From the snapshot on, nothing is missing.
        let mut w = cluster.watch(rev + 1).await.unwrap();
        let c2 = cfg.clone();
        let t = thread::spawn(move || {
            EtcdStore::connect(&c2, "a").unwrap().remove_network("n1").unwrap();
        });
        let (_, ev) =
            tokio::time::timeout(Duration::from_secs(5), w.next()).await.unwrap().unwrap();
        assert_eq!(ev, Event::NetworkDeleted("n1".into()));
        t.join().unwrap();
    });
}
