//! Endpoints: allocation order, explicit addresses, exhaustion, reuse,
//! MAC uniqueness, IPv6, lifecycle.

mod common;

use std::net::IpAddr;

use common::{key, req, spec, spec6, store};
use weft_model::{EndpointState, Mac};
use weft_store::{SqliteStore, Store, StoreError};

fn addrs(s: &SqliteStore, net: &str) -> Vec<String> {
    s.endpoints(Some(net)).unwrap().iter().map(|e| e.address.to_string()).collect()
}

#[test]
fn sequential_allocation_skips_gateway() {
    let (_d, s) = store();
    s.create_network(&spec("a", "172.30.0.0/16"), &[], 0).unwrap();
    let e = s.reserve_endpoint(&req("a", "c1")).unwrap();
    assert_eq!(e.address.to_string(), "172.30.0.2/16");
    assert_eq!(e.gateway, Some("172.30.0.1".parse().unwrap()));
    assert_eq!(e.state, EndpointState::Creating);
    assert_eq!(e.address6, None);
    assert_eq!(s.endpoint(&key("a", "c1")).unwrap(), Some(e));
    assert_eq!(s.reserve_endpoint(&req("a", "c2")).unwrap().address.to_string(), "172.30.0.3/16");

    // A gateway in the middle of the subnet is stepped over, and neither the
    // network nor the broadcast address is ever handed out.
    let mut sp = spec("b", "10.0.0.0/29");
    sp.gateway = Some("10.0.0.3".parse().unwrap());
    s.create_network(&sp, &[], 0).unwrap();
    for c in ["c1", "c2", "c3", "c4", "c5"] {
        s.reserve_endpoint(&req("b", c)).unwrap();
    }
    let got = addrs(&s, "b");
    assert_eq!(got, ["10.0.0.1/29", "10.0.0.2/29", "10.0.0.4/29", "10.0.0.5/29", "10.0.0.6/29"]);
}

#[test]
fn exhaustion_is_exact_and_clear() {
    let (_d, s) = store();
    s.create_network(&spec("small", "10.0.0.0/29"), &[], 0).unwrap();
    // Six host addresses, one of them the gateway: five containers fit.
    for i in 0..5 {
        s.reserve_endpoint(&req("small", &format!("c{i}"))).unwrap();
    }
    let err = s.reserve_endpoint(&req("small", "c5")).unwrap_err();
    assert!(
        matches!(&err, StoreError::SubnetExhausted { network, subnet }
            if network == "small" && subnet.to_string() == "10.0.0.0/29"),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "network \"small\" has no free address left in 10.0.0.0/29; \
         detach a container or use a larger subnet"
    );
    assert_eq!(s.endpoints(Some("small")).unwrap().len(), 5);
}

#[test]
fn explicit_addresses_are_checked() {
    let (_d, s) = store();
    s.create_network(&spec("a", "10.0.0.0/24"), &[], 0).unwrap();
    let mut r = req("a", "fixed");
    r.ip = Some("10.0.0.50".parse().unwrap());
    let e = s.reserve_endpoint(&r).unwrap();
    assert_eq!(e.address.to_string(), "10.0.0.50/24");
    // An explicit address does not move the allocator.
    assert_eq!(s.reserve_endpoint(&req("a", "auto")).unwrap().address.to_string(), "10.0.0.2/24");

    let mut r = req("a", "other");
    r.ip = Some("10.0.0.50".parse().unwrap());
    let err = s.reserve_endpoint(&r).unwrap_err();
    assert!(
        matches!(&err, StoreError::AddressInUse { addr, container }
            if addr.to_string() == "10.0.0.50" && container == "fixed"),
        "{err}"
    );
    for (ip, why) in [
        ("10.0.0.1", "gateway"),
        ("10.0.0.0", "network, broadcast"),
        ("10.0.0.255", "network, broadcast"),
        ("10.0.1.5", "outside"),
    ] {
        r.ip = Some(ip.parse().unwrap());
        let err = s.reserve_endpoint(&r).unwrap_err();
        assert!(matches!(err, StoreError::BadAddress { .. }), "{ip}: {err}");
        assert!(err.to_string().contains(why), "{ip}: {err}");
    }
    assert_eq!(s.endpoint(&key("a", "other")).unwrap(), None);
}

#[test]
fn released_address_is_not_reused_at_once() {
    let (_d, s) = store();
    s.create_network(&spec("a", "10.0.0.0/29"), &[], 0).unwrap();
    for c in ["c2", "c3", "c4"] {
        s.reserve_endpoint(&req("a", c)).unwrap();
    }
    let gone = s.remove_endpoint(&key("a", "c3")).unwrap().unwrap();
    assert_eq!(gone.address.to_string(), "10.0.0.3/29");
    assert_eq!(s.remove_endpoint(&key("a", "c3")).unwrap(), None);
    // Round robin: .5 and .6 come first, then the scan wraps to the freed .3.
    let next: Vec<String> = ["x", "y", "z"]
        .iter()
        .map(|c| s.reserve_endpoint(&req("a", c)).unwrap().address.to_string())
        .collect();
    assert_eq!(next, ["10.0.0.5/29", "10.0.0.6/29", "10.0.0.3/29"]);
    assert!(matches!(
        s.reserve_endpoint(&req("a", "full")),
        Err(StoreError::SubnetExhausted { .. })
    ));
}

#[test]
fn mac_must_be_unique_per_network() {
    let (_d, s) = store();
    s.create_network(&spec("a", "10.1.0.0/24"), &[], 0).unwrap();
    s.create_network(&spec("b", "10.2.0.0/24"), &[], 0).unwrap();
    let mac: Mac = "02:42:ac:11:00:02".parse().unwrap();
    let mut r = req("a", "c1");
    r.mac = mac;
    s.reserve_endpoint(&r).unwrap();
    let mut r = req("a", "c2");
    r.mac = mac;
    let err = s.reserve_endpoint(&r).unwrap_err();
    assert!(
        matches!(&err, StoreError::MacInUse { mac: m, network, container }
            if *m == mac && network == "a" && container == "c1"),
        "{err}"
    );
    r.network = "b".into();
    s.reserve_endpoint(&r).unwrap();
}

#[test]
fn same_key_twice_is_refused() {
    let (_d, s) = store();
    s.create_network(&spec("a", "10.1.0.0/24"), &[], 0).unwrap();
    s.reserve_endpoint(&req("a", "c1")).unwrap();
    let err = s.reserve_endpoint(&req("a", "c1")).unwrap_err();
    assert!(matches!(&err, StoreError::EndpointExists(k) if *k == key("a", "c1")), "{err}");
    // Another interface of the same container is a different endpoint.
    let mut r = req("a", "c1");
    r.ifname = "eth1".into();
    r.mac = Mac::derive(&["a", "c1", "eth1"]);
    s.reserve_endpoint(&r).unwrap();
}

#[test]
fn unknown_network_and_bad_names_are_refused() {
    let (_d, s) = store();
    let err = s.reserve_endpoint(&req("nope", "c1")).unwrap_err();
    assert!(matches!(&err, StoreError::NoSuchNetwork(n) if n == "nope"), "{err}");
    s.create_network(&spec("a", "10.1.0.0/24"), &[], 0).unwrap();
    let mut r = req("a", "c1");
    r.ifname = "a-very-long-ifname".into();
    assert!(matches!(s.reserve_endpoint(&r), Err(StoreError::Invalid(_))));
    let r = req("a", "bad/name");
    assert!(matches!(s.reserve_endpoint(&r), Err(StoreError::Invalid(_))));
}

#[test]
fn internal_network_has_no_gateway() {
    let (_d, s) = store();
    let mut sp = spec6("iso", "10.1.0.0/24", "fd00:1::/64");
    sp.internal = true;
    s.create_network(&sp, &[], 0).unwrap();
    let e = s.reserve_endpoint(&req("iso", "c1")).unwrap();
    assert_eq!(e.gateway, None);
    assert_eq!(e.gateway6, None);
    // The gateway address is still kept out of the pool.
    assert_eq!(e.address.to_string(), "10.1.0.2/24");
}

#[test]
fn ipv6_is_allocated_alongside_ipv4() {
    let (_d, s) = store();
    s.create_network(&spec6("d", "10.1.0.0/24", "fd00:1::/64"), &[], 0).unwrap();
    let e = s.reserve_endpoint(&req("d", "c1")).unwrap();
    assert_eq!(e.address.to_string(), "10.1.0.2/24");
    assert_eq!(e.address6.unwrap().to_string(), "fd00:1::2/64");
    assert_eq!(e.gateway6, Some("fd00:1::1".parse().unwrap()));
    let e = s.reserve_endpoint(&req("d", "c2")).unwrap();
    assert_eq!(e.address6.unwrap().to_string(), "fd00:1::3/64");

    let mut r = req("d", "c3");
    r.ip6 = Some("fd00:1::2".parse().unwrap());
    let err = s.reserve_endpoint(&r).unwrap_err();
    assert!(
        matches!(&err, StoreError::AddressInUse { container, .. } if container == "c1"),
        "{err}"
    );
    r.ip6 = Some("fd00:1::".parse().unwrap());
    assert!(matches!(s.reserve_endpoint(&r), Err(StoreError::BadAddress { .. })));
    r.ip6 = Some("fd00:1::abcd".parse().unwrap());
    let e = s.reserve_endpoint(&r).unwrap();
    assert_eq!(e.address6.unwrap().to_string(), "fd00:1::abcd/64");
    assert_eq!(e.address.to_string(), "10.1.0.4/24");

    // A v6 address on a v4-only network is refused.
    s.create_network(&spec("v4", "10.2.0.0/24"), &[], 0).unwrap();
    let mut r = req("v4", "c1");
    r.ip6 = Some("fd00:1::9".parse().unwrap());
    let err = s.reserve_endpoint(&r).unwrap_err();
    assert!(err.to_string().contains("no IPv6 subnet"), "{err}");
}

#[test]
fn failed_reservation_leaves_nothing_behind() {
    let (_d, s) = store();
    s.create_network(&spec6("d", "10.1.0.0/24", "fd00:1::/64"), &[], 0).unwrap();
    s.reserve_endpoint(&req("d", "c1")).unwrap();
    // v4 is allocated first, then v6 fails: neither the record nor the hint
    // may change.
    let mut r = req("d", "c2");
    r.ip6 = Some("fd00:1::2".parse().unwrap());
    assert!(s.reserve_endpoint(&r).is_err());
    assert_eq!(s.endpoints(None).unwrap().len(), 1);
    assert_eq!(s.reserve_endpoint(&req("d", "c3")).unwrap().address.to_string(), "10.1.0.3/24");
}

#[test]
fn ready_and_remove_lifecycle() {
    let (_d, s) = store();
    s.create_network(&spec("a", "10.1.0.0/24"), &[], 0).unwrap();
    let e = s.reserve_endpoint(&req("a", "c1")).unwrap();
    s.set_ready(&key("a", "c1")).unwrap();
    let ready = s.endpoint(&key("a", "c1")).unwrap().unwrap();
    assert_eq!(ready.state, EndpointState::Ready);
    assert_eq!(ready.address, e.address);
    let err = s.set_ready(&key("a", "ghost")).unwrap_err();
    assert!(matches!(&err, StoreError::NoSuchEndpoint(k) if *k == key("a", "ghost")), "{err}");
    let gone = s.remove_endpoint(&key("a", "c1")).unwrap().unwrap();
    assert_eq!(gone.state, EndpointState::Ready);
    assert_eq!(s.endpoint(&key("a", "c1")).unwrap(), None);
}

#[test]
fn endpoints_sorted_by_network_then_address() {
    let (_d, s) = store();
    s.create_network(&spec("b", "10.2.0.0/24"), &[], 0).unwrap();
    s.create_network(&spec("a", "10.1.0.0/24"), &[], 0).unwrap();
    let fixed = |net: &str, c: &str, ip: &str| {
        let mut r = req(net, c);
        r.ip = Some(ip.parse().unwrap());
        s.reserve_endpoint(&r).unwrap();
    };
    fixed("b", "z", "10.2.0.9");
    fixed("a", "y", "10.1.0.200");
    fixed("b", "x", "10.2.0.10");
    fixed("a", "w", "10.1.0.30");
    let all: Vec<(String, IpAddr)> = s
        .endpoints(None)
        .unwrap()
        .into_iter()
        .map(|e| (e.network, IpAddr::V4(e.address.addr())))
        .collect();
    let want: Vec<(String, IpAddr)> =
        [("a", "10.1.0.30"), ("a", "10.1.0.200"), ("b", "10.2.0.9"), ("b", "10.2.0.10")]
            .iter()
            .map(|(n, a)| (n.to_string(), a.parse().unwrap()))
            .collect();
    assert_eq!(all, want);
    assert_eq!(addrs(&s, "b"), ["10.2.0.9/24", "10.2.0.10/24"]);
    assert!(s.endpoints(Some("none")).unwrap().is_empty());
}

#[test]
fn store_is_usable_as_trait_object() {
    let (_d, s) = store();
    let boxed: Box<dyn Store> = Box::new(s);
    fn assert_send<T: Send>(_: &T) {}
    assert_send(&boxed);
    boxed.create_network(&spec("a", "10.1.0.0/24"), &[], 0).unwrap();
    assert_eq!(boxed.networks().unwrap().len(), 1);
}
