//! The cluster store against a real etcd, with the single-host store's
//! rules: each test starts its own etcd on loopback (see `etcd_server`) and
//! is skipped when etcd is not installed. The cluster API (leases, watches,
//! reaping) is in etcd_cluster.rs, connection failures in etcd_connection.rs.

mod common;
mod etcd_server;

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Barrier};
use std::thread;

use common::{key, req, spec, spec6};
use etcd_server::hosts::{host, on, raw, rt, Host};
use etcd_server::EtcdServer;
use weft_model::network::NetworkSpec;
use weft_model::{Driver, EndpointState, Mac};
use weft_store::etcd::Cluster;
use weft_store::{EndpointRequest, EtcdConfig, EtcdStore, Store, StoreError};

#[test]
fn networks_follow_the_single_host_rules() {
    let etcd = EtcdServer::start();
    let s = EtcdStore::connect(&etcd.config(), "a").unwrap();
    let front = s.create_network(&spec("front", "10.1.0.0/16"), &[], 7).unwrap();
    assert_eq!(front.gateway, Ipv4Addr::new(10, 1, 0, 1));
    assert_eq!(s.network("front").unwrap(), Some(front.clone()));
    assert!(matches!(
        s.create_network(&spec("front", "10.9.0.0/16"), &[], 0),
        Err(StoreError::NetworkExists(n)) if n == "front"
    ));
    let same_bridge =
        NetworkSpec { bridge: Some("weft-front".into()), ..spec("other", "10.8.0.0/16") };
    assert!(matches!(
        s.create_network(&same_bridge, &[], 0),
        Err(StoreError::BridgeInUse { network, .. }) if network == "front"
    ));
    assert!(matches!(
        s.create_network(&spec("inner", "10.1.2.0/24"), &[], 0),
        Err(StoreError::SubnetOverlap { network, .. }) if network == "front"
    ));
    s.create_network(&spec6("dual", "10.2.0.0/24", "fd00:2::/64"), &[], 0).unwrap();
    assert!(matches!(
        s.create_network(&spec6("dual2", "10.3.0.0/24", "fd00::/16"), &[], 0),
        Err(StoreError::SubnetOverlap { network, .. }) if network == "dual"
    ));
    let host: ipnet::IpNet = "192.168.0.0/16".parse().unwrap();
    assert!(matches!(
        s.create_network(&spec("lan", "192.168.1.0/24"), &[host], 0),
        Err(StoreError::SubnetOverlapsHost { route, .. }) if route == host
    ));
    let auto = |name: &str| NetworkSpec { name: name.into(), ..Default::default() };
    assert_eq!(
        s.create_network(&auto("auto1"), &[], 0).unwrap().subnet.to_string(),
        "10.89.0.0/24"
    );
    assert_eq!(
        s.create_network(&auto("auto2"), &[], 0).unwrap().subnet.to_string(),
        "10.89.1.0/24"
    );

    let overlay = |name: &str, subnet: &str, vni| NetworkSpec {
        driver: Some(Driver::Overlay),
        vni: Some(vni),
        ..spec(name, subnet)
    };
    s.create_network(&overlay("ov1", "10.50.0.0/24", 42), &[], 0).unwrap();
    let err = s.create_network(&overlay("ov2", "10.51.0.0/24", 42), &[], 0).unwrap_err();
    assert!(matches!(&err, StoreError::VniInUse { vni: 42, network } if network == "ov1"), "{err}");
    assert!(err.to_string().contains("--vni"), "{err}");
    s.create_network(&overlay("ov3", "10.52.0.0/24", 43), &[], 0).unwrap();

    let names: Vec<String> = s.networks().unwrap().into_iter().map(|n| n.name).collect();
    assert_eq!(names, ["auto1", "auto2", "dual", "front", "ov1", "ov3"]);
    assert!(matches!(s.remove_network("nope"), Err(StoreError::NoSuchNetwork(_))));
    assert_eq!(s.remove_network("front").unwrap(), front);
    assert_eq!(s.network("front").unwrap(), None);
    // The subnet is free again.
    s.create_network(&spec("inner", "10.1.2.0/24"), &[], 0).unwrap();

    // Another prefix is another cluster.
    let other = EtcdConfig { prefix: "/elsewhere/".into(), ..etcd.config() };
    assert!(EtcdStore::connect(&other, "a").unwrap().networks().unwrap().is_empty());
}

#[test]
fn concurrent_overlapping_creates_exactly_one_wins() {
    let etcd = EtcdServer::start();
    let cfg = etcd.config();
    for round in 0..8u8 {
        let start = Arc::new(Barrier::new(2));
        let attempts: Vec<_> = [("a", 16), ("b", 17)]
            .into_iter()
            .map(|(who, prefix)| {
                let (cfg, start) = (cfg.clone(), start.clone());
                thread::spawn(move || {
                    let s = EtcdStore::connect(&cfg, who).unwrap();
                    let subnet = format!("10.{round}.0.0/{prefix}");
                    start.wait();
                    s.create_network(&spec(&format!("{who}{round}"), &subnet), &[], 0)
                })
            })
            .collect();
        let results: Vec<_> = attempts.into_iter().map(|t| t.join().unwrap()).collect();
        let won = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(won, 1, "round {round}: {results:?}");
        let lost = results.iter().find_map(|r| r.as_ref().err()).unwrap();
        assert!(matches!(lost, StoreError::SubnetOverlap { .. }), "{lost}");
    }
    assert_eq!(EtcdStore::connect(&cfg, "c").unwrap().networks().unwrap().len(), 8);
}

#[test]
fn network_removal_and_attach_do_not_race() {
    let etcd = EtcdServer::start();
    let (cfg, rt) = (etcd.config(), rt());
    let cluster = rt.block_on(Cluster::connect(&cfg)).unwrap();
    let a = host(&cfg, &rt, &cluster, "a");
    let b = host(&cfg, &rt, &cluster, "b");
    for round in 0..10 {
        a.store.create_network(&spec("net", "10.12.0.0/24"), &[], 0).unwrap();
        let start = Barrier::new(2);
        let (attach, removed) = thread::scope(|s| {
            let remover = s.spawn(|| {
                start.wait();
                b.store.remove_network("net")
            });
            start.wait();
            let attach = a.store.reserve_endpoint(&on("a", req("net", &format!("c{round}"))));
            (attach, remover.join().unwrap())
        });
        // Either the attach came first and the removal was refused, or the
        // removal came first and the attach found no network.
        match (&attach, &removed) {
            (Ok(e), Err(StoreError::HasEndpoints { .. })) => {
                a.store.remove_endpoint(&e.key()).unwrap();
                a.store.remove_network("net").unwrap();
            }
            (Err(StoreError::NoSuchNetwork(_)), Ok(_)) => {}
            other => panic!("round {round}: {other:?}"),
        }
        assert!(a.store.endpoints(None).unwrap().is_empty());
        assert!(raw(&rt, &etcd, "/weft/ipam/").is_empty(), "round {round}");
    }
}

/// Network removal relies on this: a compare over a key range holds for
/// every key in it, and for an empty range compares as version 0.
#[test]
fn etcd_prefix_compare_holds_only_for_an_empty_range() {
    use etcd_client::{Compare, CompareOp, Txn, TxnOp};
    let etcd = EtcdServer::start();
    rt().block_on(async {
        let mut c = etcd_client::Client::connect([&etcd.url], None).await.unwrap();
        let empty = || {
            Txn::new()
                .when(vec![Compare::version("/p/", CompareOp::Equal, 0).with_prefix()])
                .and_then(vec![TxnOp::put("/ok", "1", None)])
        };
        assert!(c.txn(empty()).await.unwrap().succeeded());
        c.put("/p/x", "1", None).await.unwrap();
        assert!(!c.txn(empty()).await.unwrap().succeeded());
    });
}

#[test]
fn endpoints_need_a_registered_node() {
    let etcd = EtcdServer::start();
    let s = EtcdStore::connect(&etcd.config(), "a").unwrap();
    s.create_network(&spec("net", "10.5.0.0/24"), &[], 0).unwrap();
    let err = s.reserve_endpoint(&req("net", "c1")).unwrap_err();
    assert!(matches!(err, StoreError::NodeRequired(_)), "{err}");
    let err = s.reserve_endpoint(&on("ghost", req("net", "c1"))).unwrap_err();
    assert!(matches!(&err, StoreError::NodeNotRegistered(n) if n == "ghost"), "{err}");
    assert_eq!(
        err.to_string(),
        "node \"ghost\" is not registered in etcd: is `weft agent --node ghost` running on this host?"
    );
    assert!(s.endpoints(None).unwrap().is_empty());
}

#[test]
fn endpoints_follow_the_single_host_rules() {
    let etcd = EtcdServer::start();
    let (cfg, rt) = (etcd.config(), rt());
    let cluster = rt.block_on(Cluster::connect(&cfg)).unwrap();
    let Host { store: s, lease } = host(&cfg, &rt, &cluster, "a");
    s.create_network(&spec("net", "10.5.0.0/24"), &[], 0).unwrap();
    assert!(matches!(
        s.reserve_endpoint(&on("a", req("nope", "c1"))),
        Err(StoreError::NoSuchNetwork(_))
    ));

    let c1 = s.reserve_endpoint(&on("a", req("net", "c1"))).unwrap();
    assert_eq!(c1.address.to_string(), "10.5.0.2/24");
    assert_eq!(c1.state, EndpointState::Creating);
    assert_eq!(c1.node.as_deref(), Some("a"));
    assert_eq!(c1.gateway, Some(Ipv4Addr::new(10, 5, 0, 1)));
    let c2 = s.reserve_endpoint(&on("a", req("net", "c2"))).unwrap();
    assert_eq!(c2.address.addr(), Ipv4Addr::new(10, 5, 0, 3));

    assert!(matches!(
        s.reserve_endpoint(&on("a", req("net", "c1"))),
        Err(StoreError::EndpointExists(k)) if k == key("net", "c1")
    ));
    let same_mac = EndpointRequest { mac: c1.mac, ..on("a", req("net", "c3")) };
    assert!(matches!(
        s.reserve_endpoint(&same_mac),
        Err(StoreError::MacInUse { container, .. }) if container == "c1"
    ));
    let fixed =
        |ip: &str| EndpointRequest { ip: Some(ip.parse().unwrap()), ..on("a", req("net", "c3")) };
    assert!(matches!(
        s.reserve_endpoint(&fixed("10.5.0.3")),
        Err(StoreError::AddressInUse { container, .. }) if container == "c2"
    ));
    for bad in ["10.5.0.1", "10.5.0.0", "10.5.0.255", "10.6.0.9"] {
        assert!(
            matches!(s.reserve_endpoint(&fixed(bad)), Err(StoreError::BadAddress { .. })),
            "{bad}"
        );
    }
    let v6_on_v4 =
        EndpointRequest { ip6: Some("fd00::9".parse().unwrap()), ..on("a", req("net", "c3")) };
    assert!(matches!(s.reserve_endpoint(&v6_on_v4), Err(StoreError::BadAddress { .. })));
    let c3 = s.reserve_endpoint(&fixed("10.5.0.200")).unwrap();
    assert_eq!(c3.address.addr(), Ipv4Addr::new(10, 5, 0, 200));

    // Records and claims are under no lease: a node whose lease lapses
    // (partitioned, agent stopped) keeps its addresses until removed.
    s.set_ready(&key("net", "c1")).unwrap();
    assert_eq!(s.endpoint(&key("net", "c1")).unwrap().unwrap().state, EndpointState::Ready);
    let keys = raw(&rt, &etcd, "/weft/");
    assert_ne!(lease, 0);
    assert_eq!(keys["/weft/endpoints/net/c1/eth0"].1, 0);
    assert_eq!(keys["/weft/ipam/net/v4/0a050002"], ("/weft/endpoints/net/c1/eth0".into(), 0));
    assert!(
        keys.contains_key(&format!("/weft/ipam/net/mac/{}", c1.mac.to_string().replace(':', "")))
    );
    assert_eq!(keys["/weft/ipam/net/blocks/0a050000"], ("a".into(), 0));

    // Listing is by address, like the single-host store.
    let listed: Vec<String> =
        s.endpoints(Some("net")).unwrap().into_iter().map(|e| e.container).collect();
    assert_eq!(listed, ["c1", "c2", "c3"]);
    assert!(matches!(s.remove_network("net"), Err(StoreError::HasEndpoints { count: 3, .. })));

    // Release: claims go with the record; the address is not reused at once.
    assert_eq!(s.remove_endpoint(&key("net", "c1")).unwrap().unwrap().container, "c1");
    assert_eq!(s.remove_endpoint(&key("net", "c1")).unwrap(), None);
    assert!(matches!(s.set_ready(&key("net", "c1")), Err(StoreError::NoSuchEndpoint(_))));
    assert!(!raw(&rt, &etcd, "/weft/ipam/net/v4/").contains_key("/weft/ipam/net/v4/0a050002"));
    let c4 = s.reserve_endpoint(&on("a", req("net", "c4"))).unwrap();
    assert_eq!(c4.address.addr(), Ipv4Addr::new(10, 5, 0, 4));
    // A MAC freed by a detach can be used again.
    let reuse = EndpointRequest { mac: c1.mac, ..on("a", req("net", "c5")) };
    s.reserve_endpoint(&reuse).unwrap();

    // Metadata is per node.
    s.set_meta("boot_id", "boot-a").unwrap();
    assert_eq!(s.meta("boot_id").unwrap().as_deref(), Some("boot-a"));
    assert_eq!(EtcdStore::connect(&cfg, "b").unwrap().meta("boot_id").unwrap(), None);

    for c in ["c2", "c3", "c4", "c5"] {
        s.remove_endpoint(&key("net", c)).unwrap().unwrap();
    }
    s.remove_network("net").unwrap();
    // Blocks and hints went with the network; nothing of it is left.
    assert!(raw(&rt, &etcd, "/weft/ipam/").is_empty(), "{:?}", raw(&rt, &etcd, "/weft/ipam/"));
}

#[test]
fn dual_stack_addresses_mirror_and_avoid_taken_ones() {
    let etcd = EtcdServer::start();
    let (cfg, rt) = (etcd.config(), rt());
    let cluster = rt.block_on(Cluster::connect(&cfg)).unwrap();
    let s = host(&cfg, &rt, &cluster, "a").store;
    s.create_network(&spec6("ds", "10.6.0.0/24", "fd00:6::/64"), &[], 0).unwrap();
    let c1 = s.reserve_endpoint(&on("a", req("ds", "c1"))).unwrap();
    assert_eq!(c1.address.to_string(), "10.6.0.2/24");
    assert_eq!(c1.address6.unwrap().to_string(), "fd00:6::2/64");
    assert_eq!(c1.gateway6, Some("fd00:6::1".parse().unwrap()));
    // c2 takes by hand the IPv6 address c3 would mirror.
    let c2 =
        EndpointRequest { ip6: Some("fd00:6::4".parse().unwrap()), ..on("a", req("ds", "c2")) };
    assert_eq!(s.reserve_endpoint(&c2).unwrap().address.addr(), Ipv4Addr::new(10, 6, 0, 3));
    let c3 = s.reserve_endpoint(&on("a", req("ds", "c3"))).unwrap();
    assert_eq!(c3.address.addr(), Ipv4Addr::new(10, 6, 0, 4));
    assert_eq!(c3.address6.unwrap().addr(), "fd00:6::5".parse::<std::net::Ipv6Addr>().unwrap());
    let taken =
        EndpointRequest { ip6: Some("fd00:6::2".parse().unwrap()), ..on("a", req("ds", "c4")) };
    assert!(matches!(
        s.reserve_endpoint(&taken),
        Err(StoreError::AddressInUse { addr: IpAddr::V6(_), container }) if container == "c1"
    ));
    let gw6 =
        EndpointRequest { ip6: Some("fd00:6::1".parse().unwrap()), ..on("a", req("ds", "c4")) };
    assert!(matches!(s.reserve_endpoint(&gw6), Err(StoreError::BadAddress { .. })));
}

const PER_HOST: usize = 50;

#[test]
fn two_hosts_attaching_at_once_never_share_an_address() {
    let etcd = EtcdServer::start();
    let (cfg, rt) = (etcd.config(), rt());
    let cluster = rt.block_on(Cluster::connect(&cfg)).unwrap();
    EtcdStore::connect(&cfg, "a")
        .unwrap()
        .create_network(&spec("shared", "10.20.0.0/16"), &[], 0)
        .unwrap();
    let hosts: Vec<(String, Host)> =
        ["a", "b"].iter().map(|n| (n.to_string(), host(&cfg, &rt, &cluster, n))).collect();
    let start = Arc::new(Barrier::new(hosts.len()));
    let workers: Vec<_> = hosts
        .into_iter()
        .map(|(name, h)| {
            let start = start.clone();
            thread::spawn(move || {
                start.wait();
                for i in 0..PER_HOST {
                    let e = h
                        .store
                        .reserve_endpoint(&on(&name, req("shared", &format!("{name}-c{i}"))))
                        .unwrap();
                    h.store.set_ready(&e.key()).unwrap();
                }
                h
            })
        })
        .collect();
    let hosts: Vec<Host> = workers.into_iter().map(|w| w.join().unwrap()).collect();

    let eps = hosts[0].store.endpoints(Some("shared")).unwrap();
    assert_eq!(eps.len(), 2 * PER_HOST);
    let distinct: HashSet<Ipv4Addr> = eps.iter().map(|e| e.address.addr()).collect();
    assert_eq!(distinct.len(), 2 * PER_HOST, "an address was handed out twice");
    assert!(eps.iter().all(|e| e.state == EndpointState::Ready));

    // Each host allocated inside the blocks it claimed.
    let blocks: BTreeMap<u32, String> = raw(&rt, &etcd, "/weft/ipam/shared/blocks/")
        .into_iter()
        .map(|(k, (owner, _))| {
            (u32::from_str_radix(k.rsplit('/').next().unwrap(), 16).unwrap(), owner)
        })
        .collect();
    for n in ["a", "b"] {
        assert!(blocks.values().any(|o| o == n), "host {n} claimed no block: {blocks:?}");
    }
    for e in &eps {
        let block = u32::from(e.address.addr()) & !63;
        assert_eq!(blocks.get(&block), e.node.as_ref(), "{} outside its node's blocks", e.address);
    }
    let claims = raw(&rt, &etcd, "/weft/ipam/shared/v4/");
    assert_eq!(claims.len(), 2 * PER_HOST);
}

#[test]
fn mac_of_the_request_is_unique_per_network_only() {
    let etcd = EtcdServer::start();
    let (cfg, rt) = (etcd.config(), rt());
    let cluster = rt.block_on(Cluster::connect(&cfg)).unwrap();
    let s = host(&cfg, &rt, &cluster, "a").store;
    s.create_network(&spec("n1", "10.13.0.0/24"), &[], 0).unwrap();
    s.create_network(&spec("n2", "10.14.0.0/24"), &[], 0).unwrap();
    let mac: Mac = "02:42:ac:11:00:02".parse().unwrap();
    s.reserve_endpoint(&EndpointRequest { mac, ..on("a", req("n1", "c")) }).unwrap();
    s.reserve_endpoint(&EndpointRequest { mac, ..on("a", req("n2", "c")) }).unwrap();
}

#[test]
fn host_ports_clash_only_on_the_same_host() {
    let etcd = EtcdServer::start();
    let (cfg, rt) = (etcd.config(), rt());
    let cluster = rt.block_on(Cluster::connect(&cfg)).unwrap();
    let a = host(&cfg, &rt, &cluster, "a");
    let b = host(&cfg, &rt, &cluster, "b");
    a.store.create_network(&spec("n1", "10.15.0.0/24"), &[], 0).unwrap();
    a.store.create_network(&spec("n2", "10.16.0.0/24"), &[], 0).unwrap();
    let publish = |node: &str, net: &str, c: &str, p: &str| EndpointRequest {
        ports: vec![p.parse().unwrap()],
        aliases: vec![format!("{c}.svc")],
        ..on(node, req(net, c))
    };
    let c1 = a.store.reserve_endpoint(&publish("a", "n1", "c1", "8080:80/tcp")).unwrap();
    assert_eq!(c1.aliases, ["c1.svc"]);
    let err =
        a.store.reserve_endpoint(&publish("a", "n2", "c2", "8000-8090:8000-8090/tcp")).unwrap_err();
    assert!(
        matches!(&err, StoreError::PortInUse { container, network, .. } if container == "c1" && network == "n1"),
        "{err}"
    );
    // Another protocol, or another host, is another port.
    a.store.reserve_endpoint(&publish("a", "n2", "c3", "8080:80/udp")).unwrap();
    b.store.reserve_endpoint(&publish("b", "n1", "c4", "8080:80/tcp")).unwrap();
    let bad_alias =
        EndpointRequest { aliases: vec!["no spaces".into()], ..on("a", req("n1", "c5")) };
    assert!(matches!(a.store.reserve_endpoint(&bad_alias), Err(StoreError::Invalid(_))));

    // Detach frees the port.
    a.store.remove_endpoint(&key("n1", "c1")).unwrap().unwrap();
    a.store.reserve_endpoint(&publish("a", "n2", "c2", "8000-8090:8000-8090/tcp")).unwrap();
    a.store.remove_endpoint(&key("n2", "c2")).unwrap().unwrap();
    a.store.remove_endpoint(&key("n2", "c3")).unwrap().unwrap();
    assert!(!raw(&rt, &etcd, "/weft/ports/").contains_key("/weft/ports/a"));
    assert_ne!(b.lease, 0);
    assert_eq!(raw(&rt, &etcd, "/weft/ports/")["/weft/ports/b"].1, 0, "ports outlive the lease");
}

#[test]
fn set_ready_after_someone_else_rewrote_the_record() {
    let etcd = EtcdServer::start();
    let (cfg, rt) = (etcd.config(), rt());
    let cluster = rt.block_on(Cluster::connect(&cfg)).unwrap();
    let first = host(&cfg, &rt, &cluster, "a").store;
    let second = EtcdStore::connect(&cfg, "a").unwrap();
    first.create_network(&spec("net", "10.17.0.0/24"), &[], 0).unwrap();
    // `first` remembers the record it wrote; `second` replaces it.
    first.reserve_endpoint(&on("a", req("net", "c"))).unwrap();
    second.remove_endpoint(&key("net", "c")).unwrap().unwrap();
    let fixed =
        EndpointRequest { ip: Some("10.17.0.99".parse().unwrap()), ..on("a", req("net", "c")) };
    second.reserve_endpoint(&fixed).unwrap();
    first.set_ready(&key("net", "c")).unwrap();
    let e = first.endpoint(&key("net", "c")).unwrap().unwrap();
    assert_eq!((e.state, e.address.addr()), (EndpointState::Ready, Ipv4Addr::new(10, 17, 0, 99)));
    second.remove_endpoint(&key("net", "c")).unwrap().unwrap();
    assert!(matches!(first.set_ready(&key("net", "c")), Err(StoreError::NoSuchEndpoint(_))));
}
