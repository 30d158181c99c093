//! The seed's single-host scenario, end to end, with real kernel state read
//! back: veth pairs on a bridge, routes, ARP, the bridge's FDB, NAT and
//! isolation.

mod harness;

use harness::{eventually, Sandbox};
use serde_json::Value;

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

#[test]
fn seed_scenario_two_containers_on_a_bridge() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "front", "--subnet", "172.30.0.0/16"]);
    let a = sb.container("c1");
    let b = sb.container("c2");
    let ea = sb.attach("front", a, &[]);
    let eb = sb.attach("front", b, &[]);
    assert_eq!(s(&ea["address"]), "172.30.0.2/16");
    assert_eq!(s(&eb["address"]), "172.30.0.3/16");
    assert_eq!(s(&ea["gateway"]), "172.30.0.1");
    for k in ["container", "network", "ifname", "address", "mac", "gateway", "host_veth", "netns"] {
        assert!(ea.get(k).is_some(), "attach JSON lacks {k}: {ea}");
    }

    // Both directions, real packets.
    assert!(sb.c(a).ping("172.30.0.3"), "c1 cannot reach c2");
    assert!(sb.c(b).ping("172.30.0.2"), "c2 cannot reach c1");

    // Exactly the seed's two routes: the subnet direct, default via the bridge.
    let routes = sb.c(a).ip_json("-4 route show");
    let mut got: Vec<String> = routes
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {}",
                s(&r["dst"]),
                r["gateway"].as_str().unwrap_or("-"),
                s(&r["dev"]),
                r["scope"].as_str().unwrap_or("global")
            )
        })
        .collect();
    got.sort();
    assert_eq!(got, vec!["172.30.0.0/16 - eth0 link", "default 172.30.0.1 eth0 global"]);

    // The peer's MAC was learned by ARP.
    let neigh = sb.c(a).ip_json("-4 neigh show dev eth0");
    let peer = neigh.as_array().unwrap().iter().find(|n| s(&n["dst"]) == "172.30.0.3");
    let peer = peer.unwrap_or_else(|| panic!("no ARP entry for c2 in c1: {neigh}"));
    assert_eq!(s(&peer["lladdr"]), s(&eb["mac"]));

    // The container interface: name, MAC, MTU, up.
    let link = &sb.c(a).ip_json("link show eth0")[0];
    assert_eq!(s(&link["address"]), s(&ea["mac"]));
    assert_eq!(link["mtu"], 1500);
    assert!(link["flags"].as_array().unwrap().iter().any(|f| f == "UP"));

    // Host side: each veth is a port of the bridge, and the bridge's FDB
    // maps each container MAC to that container's own port.
    for e in [&ea, &eb] {
        let l = &sb.host.ip_json(&format!("link show {}", s(&e["host_veth"])))[0];
        assert_eq!(s(&l["master"]), "weft-front");
        let fdb: Value =
            serde_json::from_str(&sb.host.sh("bridge -j fdb show br weft-front")).unwrap();
        let entry = fdb.as_array().unwrap().iter().find(|f| s(&f["mac"]) == s(&e["mac"]));
        let entry = entry.unwrap_or_else(|| panic!("{} not in FDB: {fdb}", s(&e["mac"])));
        assert_eq!(s(&entry["ifname"]), s(&e["host_veth"]));
    }
    // What keeps attach and detach flat as containers accumulate: on an
    // IPv4-only network no container has an IPv6 address (nothing to
    // announce to every port), host ends have IPv6 off (no per-port routes),
    // and the bridge does not snoop multicast.
    assert!(sb.c(a).sh("ip -6 -o addr show dev eth0").trim().is_empty(), "eth0 has IPv6");
    for e in [&ea, &eb] {
        let v =
            sb.host.sh(&format!("cat /proc/sys/net/ipv6/conf/{}/disable_ipv6", s(&e["host_veth"])));
        assert_eq!(v.trim(), "1", "IPv6 still on for {}", s(&e["host_veth"]));
    }
    let bd = &sb.host.ip_json("-d link show weft-front")[0];
    assert_eq!(bd["linkinfo"]["info_data"]["mcast_snooping"], 0, "{bd}");

    let br = &sb.host.ip_json("addr show weft-front")[0];
    let addrs: Vec<String> = br["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| format!("{}/{}", s(&a["local"]), a["prefixlen"]))
        .collect();
    assert!(addrs.contains(&"172.30.0.1/16".to_string()), "bridge addresses: {addrs:?}");

    // Detach cuts the container off at once (its eth0 loses carrier, or is
    // already gone), releases the address, and the veth pair is deleted in
    // the background moments later.
    sb.weft_ok(&["detach", "front", &sb.c(a).name.clone()]);
    let eps = sb.weft_json(&["endpoint", "ls", "--json"]);
    assert_eq!(eps.as_array().unwrap().len(), 1);
    assert!(sb.c(a).try_sh("! ip link show eth0 || ip link show eth0 | grep -q NO-CARRIER"));
    let veth = s(&ea["host_veth"]);
    eventually("detached veth deleted", || {
        !sb.host.try_sh(&format!("ip link show {veth}")) && !sb.c(a).try_sh("ip link show eth0")
    });
}

#[test]
fn ipv6_dual_stack() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&[
        "network",
        "create",
        "six",
        "--subnet",
        "172.31.0.0/24",
        "--subnet6",
        "fd00:31::/64",
    ]);
    let a = sb.container("c1");
    let b = sb.container("c2");
    let ea = sb.attach("six", a, &[]);
    let eb = sb.attach("six", b, &[]);
    assert_eq!(s(&ea["address6"]), "fd00:31::2/64");
    // Dual stack keeps the link-local address IPv6 expects.
    assert!(sb.c(a).sh("ip -6 -o addr show dev eth0 scope link").contains("fe80::"));
    assert_eq!(s(&eb["address6"]), "fd00:31::3/64");
    assert!(sb.c(a).try_sh("ping -6 -c 1 -W 2 fd00:31::3"), "v6 ping failed");
    assert!(sb.c(b).try_sh("ping -6 -c 1 -W 2 fd00:31::1"), "v6 ping to gateway failed");
    let routes = sb.c(a).ip_json("-6 route show");
    let def =
        routes.as_array().unwrap().iter().find(|r| s(&r["dst"]) == "default").expect("v6 default");
    assert_eq!(s(&def["gateway"]), "fd00:31::1");
    let neigh = sb.c(a).ip_json("-6 neigh show dev eth0");
    assert!(
        neigh
            .as_array()
            .unwrap()
            .iter()
            .any(|n| s(&n["dst"]) == "fd00:31::3" && s(&n["lladdr"]) == s(&eb["mac"])),
        "no NDP entry for the peer: {neigh}"
    );
}
