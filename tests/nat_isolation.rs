//! NAT and isolation with real packets: a container reaches a server in an
//! "outside" namespace under the host's address; two weft networks cannot
//! reach each other; an internal network has no way out; the firewall's
//! rules do not grow with endpoints or networks.

mod harness;

use std::time::Duration;

use harness::{tcp_send, Sandbox, TcpProbe};
use serde_json::Value;

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

fn ip_of(ep: &Value) -> String {
    s(&ep["address"]).split('/').next().unwrap().to_string()
}

const PORT: u16 = 8080;

/// Whether a TCP connection from `from` to a server in `to` at `ip` gets
/// through (and the server saw it), and the source address it saw.
fn tcp(from: &harness::Netns, to: &harness::Netns, ip: &str) -> Option<String> {
    let probe = TcpProbe::listen(to, &format!("0.0.0.0:{PORT}"), Duration::from_secs(4));
    let sent = tcp_send(from, ip, PORT, 2);
    let got = probe.accepted();
    assert_eq!(sent, got.is_some(), "client and server disagree about {ip}:{PORT}: {got:?}");
    got.map(|(peer, data)| {
        assert_eq!(data, "hi\n");
        peer.ip().to_string()
    })
}

#[test]
fn container_reaches_outside_with_the_hosts_address() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "n", "--subnet", "172.22.0.0/24"]);
    sb.wire_outside();
    let c = sb.container("c");
    let e = sb.attach("n", c, &[]);
    assert_eq!(sb.nft_set("masq4").unwrap(), vec!["172.22.0.0/24"]);

    let out = sb.outside.as_ref().unwrap();
    let seen = tcp(sb.c(c), out, "203.0.113.2").expect("container cannot reach the outside server");
    assert_eq!(seen, "203.0.113.1", "the server must see the host's address (masquerade)");
    assert!(sb.c(c).ping("203.0.113.2"), "ping to the outside failed");

    // Nothing from outside may open a connection to the container, even
    // with a route to it.
    out.sh("ip route add 172.22.0.0/24 via 203.0.113.1");
    assert!(!out.ping(&ip_of(&e)), "the outside reached a container unsolicited");
    assert!(tcp(out, sb.c(c), &ip_of(&e)).is_none(), "the outside opened a TCP connection in");
}

#[test]
fn two_networks_cannot_reach_each_other() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "a", "--subnet", "172.22.1.0/24"]);
    sb.weft_ok(&["network", "create", "b", "--subnet", "172.22.2.0/24"]);
    let a1 = sb.container("a1");
    let a2 = sb.container("a2");
    let b1 = sb.container("b1");
    let b2 = sb.container("b2");
    let ea2 = sb.attach("a", a2, &[]);
    let ea1 = sb.attach("a", a1, &[]);
    let eb1 = sb.attach("b", b1, &[]);
    let eb2 = sb.attach("b", b2, &[]);

    // Each reaches its own peers: ping and TCP.
    assert!(sb.c(a1).ping(&ip_of(&ea2)), "a1 cannot ping a2");
    assert!(sb.c(b1).ping(&ip_of(&eb2)), "b1 cannot ping b2");
    assert_eq!(tcp(sb.c(a1), sb.c(a2), &ip_of(&ea2)), Some(ip_of(&ea1)));
    assert_eq!(tcp(sb.c(b1), sb.c(b2), &ip_of(&eb2)), Some(ip_of(&eb1)));

    // Neither reaches the other network, in either direction.
    assert!(!sb.c(a1).ping(&ip_of(&eb1)), "a1 pinged b1 across networks");
    assert!(!sb.c(b1).ping(&ip_of(&ea1)), "b1 pinged a1 across networks");
    assert!(tcp(sb.c(a1), sb.c(b1), &ip_of(&eb1)).is_none(), "a1 connected to b1");
    assert!(tcp(sb.c(b2), sb.c(a2), &ip_of(&ea2)).is_none(), "b2 connected to a2");

    // And still reach their own peers afterwards (nothing got stuck).
    assert!(sb.c(a2).ping(&ip_of(&ea1)));
    assert!(sb.c(b2).ping(&ip_of(&eb1)));
}

#[test]
fn internal_network_has_no_way_out() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "open", "--subnet", "172.22.3.0/24"]);
    sb.weft_ok(&["network", "create", "sealed", "--subnet", "172.22.4.0/24", "--internal"]);
    sb.wire_outside();
    let i1 = sb.container("i1");
    let i2 = sb.container("i2");
    let o1 = sb.container("o1");
    let e1 = sb.attach("sealed", i1, &[]);
    let e2 = sb.attach("sealed", i2, &[]);
    sb.attach("open", o1, &[]);
    assert!(e1["gateway"].is_null(), "internal endpoint has a gateway: {e1}");

    // Only the subnet route, no default.
    let routes = sb.c(i1).ip_json("-4 route show");
    let dsts: Vec<&str> = routes.as_array().unwrap().iter().map(|r| s(&r["dst"])).collect();
    assert_eq!(dsts, vec!["172.22.4.0/24"], "internal container routes: {routes}");
    assert!(sb.c(i1).ip_json("-6 route show default").as_array().unwrap().is_empty());

    // Its peers, yes; the outside, no.
    assert!(sb.c(i1).ping(&ip_of(&e2)), "internal containers cannot reach each other");
    let out = sb.outside.as_ref().unwrap();
    assert!(!sb.c(i1).ping("203.0.113.2"), "internal container pinged the outside");
    assert!(tcp(sb.c(i1), out, "203.0.113.2").is_none(), "internal container reached outside");

    // Not even with a default route it adds itself: the firewall drops it.
    sb.c(i1).sh("ip route add default via 172.22.4.1");
    assert!(!sb.c(i1).ping("203.0.113.2"), "internal network forwarded traffic out");
    assert!(tcp(sb.c(i1), out, "203.0.113.2").is_none(), "internal network forwarded TCP out");

    // The normal network next to it still gets out.
    assert_eq!(tcp(sb.c(o1), out, "203.0.113.2").as_deref(), Some("203.0.113.1"));
    assert_eq!(sb.nft_set("internal").unwrap(), vec!["weft-sealed"]);
    assert_eq!(sb.nft_set("masq4").unwrap(), vec!["172.22.3.0/24"], "internal subnet is NATed");
}

#[test]
fn rule_count_does_not_grow_with_endpoints_or_networks() {
    let mut sb = Sandbox::new();
    // As on a host that does not route (a new namespace copies the
    // machine's IPv4 setting): weft turns forwarding on, and guards it.
    sb.host.sh("sysctl -qw net.ipv4.ip_forward=0 net.ipv6.conf.all.forwarding=0");
    sb.weft_ok(&["network", "create", "n", "--subnet", "172.22.5.0/24"]);
    let first = sb.container("c0");
    sb.attach("n", first, &[]);
    let with_one = sb.nft_rule_count();
    assert!(with_one > 0, "no rules in weft's table");
    for i in 1..20 {
        let c = sb.container(&format!("c{i}"));
        sb.attach("n", c, &[]);
    }
    assert_eq!(sb.endpoints().len(), 20);
    assert_eq!(sb.nft_rule_count(), with_one, "rules grew with endpoints (1 -> 20)");

    sb.weft_ok(&[
        "network",
        "create",
        "m",
        "--subnet",
        "172.22.6.0/24",
        "--subnet6",
        "fd00:22::/64",
    ]);
    sb.weft_ok(&["network", "create", "k", "--subnet", "172.22.7.0/24", "--internal"]);
    // The first IPv6 network turns IPv6 forwarding on, which adds its
    // guard to chain `foreign` (security_forward.rs): a fixed rule and one
    // per family weft turned on, whatever the number of networks.
    let foreign = sb
        .nft_objects()
        .iter()
        .filter(|o| o.get("rule").is_some_and(|r| r["chain"] == "foreign"))
        .count();
    assert_eq!(foreign, 3, "bridged frames pass, then one guard per family");
    assert_eq!(sb.nft_rule_count(), with_one + 1, "rules grew with networks (1 -> 3)");
    let mut bridges = sb.nft_set("bridges").unwrap();
    bridges.sort();
    assert_eq!(bridges, vec!["weft-k", "weft-m", "weft-n"]);
}

#[test]
fn network_rm_removes_its_bridge_and_set_elements() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&[
        "network",
        "create",
        "a",
        "--subnet",
        "172.22.8.0/24",
        "--subnet6",
        "fd00:8::/64",
    ]);
    sb.weft_ok(&["network", "create", "b", "--subnet", "172.22.9.0/24", "--internal"]);
    sb.weft_ok(&["network", "create", "c", "--subnet", "172.22.10.0/24"]);
    let x = sb.container("x");
    sb.attach("c", x, &[]);
    assert_eq!(sb.nft_set("internal").unwrap(), vec!["weft-b"]);

    sb.weft_ok(&["network", "rm", "b"]);
    assert!(!sb.has_link("weft-b"), "bridge of b still there");
    assert_eq!(sb.nft_set("bridges").unwrap(), vec!["weft-a", "weft-c"]);
    assert_eq!(sb.nft_set("same_bridge").unwrap(), vec!["weft-a . weft-a", "weft-c . weft-c"]);
    assert!(sb.nft_set("internal").unwrap().is_empty());

    sb.weft_ok(&["network", "rm", "a"]);
    assert!(!sb.has_link("weft-a"), "bridge of a still there");
    assert_eq!(sb.nft_set("bridges").unwrap(), vec!["weft-c"]);
    assert_eq!(sb.nft_set("masq4").unwrap(), vec!["172.22.10.0/24"]);
    assert!(sb.nft_set("masq6").unwrap().is_empty(), "a's v6 subnet still NATed");

    // The last network takes weft's whole table with it.
    sb.weft_ok(&["network", "rm", "c", "--force"]);
    assert!(!sb.has_link("weft-c"));
    assert!(sb.nft_objects().is_empty(), "weft's table survived its last network");
    assert!(sb.host.ip_json("link show type veth").as_array().unwrap().is_empty());
}
