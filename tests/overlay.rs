//! The seed's second half: one network across hosts. Simulated hosts are
//! namespaces on a shared underlay bridge, with a real etcd and one real
//! `weft agent` per host.

mod harness;

use std::time::Duration;

use harness::cluster::{eventually, Cluster};
use harness::Netns;
use serde_json::Value;

const NET: &str = "ov";

fn vx() -> String {
    format!("vx-{NET}")
}

/// The neighbour entries on a host's VXLAN device: ip -> MAC.
fn vx_neigh(c: &Cluster, host: usize, net: &str) -> Vec<(String, String)> {
    let v = c.hosts[host].ns.ip_json(&format!("neigh show dev vx-{net} nud permanent"));
    v.as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (n["dst"].as_str().unwrap().to_string(), n["lladdr"].as_str().unwrap_or("").to_string())
        })
        .collect()
}

fn has_remote(c: &Cluster, host: usize, net: &str, ip: &str) -> bool {
    vx_neigh(c, host, net).iter().any(|(d, _)| d == ip)
}

fn vx_tx_packets(ns: &Netns, dev: &str) -> u64 {
    let v = ns.ip_json(&format!("-s link show {dev}"));
    v[0]["stats64"]["tx"]["packets"].as_u64().unwrap_or(0)
}

fn setup(hosts: usize, per_host: usize) -> (Cluster, Vec<(usize, usize, String)>) {
    let mut c = Cluster::new(hosts);
    c.weft_ok(0, &["network", "create", NET, "--driver", "overlay", "--subnet", "10.90.0.0/24"]);
    let mut eps = Vec::new();
    for h in 0..hosts {
        // The agent builds the network's bridge and VXLAN device first.
        eventually("overlay bridge on every host", Duration::from_secs(10), || {
            c.hosts[h].ns.try_sh(&format!("ip link show {}", vx()))
        });
        for _ in 0..per_host {
            let (ip, idx) = c.attach(h, NET);
            eps.push((h, idx, ip));
        }
    }
    (c, eps)
}

#[test]
fn three_hosts_every_pair_talks_through_vxlan() {
    let (c, eps) = setup(3, 2);
    // ARP for every remote container is answered locally before any packet:
    // the entries are there as soon as the agents converge.
    for (h, _, _) in &eps {
        for (other, _, ip) in eps.iter().filter(|(o, _, _)| o != h) {
            let _ = other;
            eventually(&format!("host{h} knows {ip}"), Duration::from_secs(5), || {
                has_remote(&c, *h, NET, ip)
            });
        }
    }
    let tx_before: Vec<u64> = (0..3).map(|h| vx_tx_packets(&c.hosts[h].ns, &vx())).collect();
    for (h, i, _) in &eps {
        for (_, _, ip) in &eps {
            assert!(c.c(*h, *i).ping(ip), "host{h} container {i} cannot reach {ip}");
        }
    }
    for (h, before) in tx_before.iter().enumerate() {
        let after = vx_tx_packets(&c.hosts[h].ns, &vx());
        assert!(after >= before + 8, "host{h}: VXLAN device sent {} packets", after - before);
    }
    // TCP across hosts.
    let (server, client) = (c.c(0, 0), c.c(2, 1));
    let ip = &eps[0].2;
    assert!(tcp_works(server, client, ip), "TCP from host2 to host0 failed");
    // network inspect shows endpoints of every host with their node.
    let v: Value =
        serde_json::from_str(&c.weft_ok(1, &["network", "inspect", NET, "--json"])).unwrap();
    let mut nodes: Vec<&str> =
        v["endpoints"].as_array().unwrap().iter().map(|e| e["node"].as_str().unwrap()).collect();
    nodes.sort();
    assert_eq!(nodes, vec!["host0", "host0", "host1", "host1", "host2", "host2"]);
    assert_eq!(v["driver"], "overlay");
}

/// A one-shot TCP server in `server`'s namespace; the client connects to it.
fn tcp_works(server: &Netns, client: &Netns, ip: &str) -> bool {
    let mut srv = server
        .command("sh")
        .args(["-c", "timeout 5 python3 -c 'import socket;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind((\"0.0.0.0\",7777));s.listen();c,a=s.accept();c.sendall(b\"pong\")'"])
        .spawn()
        .expect("server");
    std::thread::sleep(Duration::from_millis(300));
    let ok = client.try_sh(&format!(
        "timeout 5 python3 -c 'import socket;s=socket.create_connection((\"{ip}\",7777),3);assert s.recv(4)==b\"pong\"'"
    ));
    let _ = srv.wait();
    ok
}

#[test]
fn detach_and_reattach_propagate_to_other_hosts() {
    let (mut c, eps) = setup(3, 1);
    let (h0, i0, ip0) = eps[0].clone();
    for h in 1..3 {
        eventually("entry present", Duration::from_secs(5), || has_remote(&c, h, NET, &ip0));
    }
    let name = c.c(h0, i0).name.clone();
    c.weft_ok(h0, &["detach", NET, &name]);
    for h in 1..3 {
        let t =
            eventually("entry removed", Duration::from_secs(5), || !has_remote(&c, h, NET, &ip0));
        eprintln!("host{h} removed the entry {t:?} after detach");
    }
    let (ip, idx) = c.attach(h0, NET);
    for h in 1..3 {
        eventually("new entry", Duration::from_secs(5), || has_remote(&c, h, NET, &ip));
    }
    assert!(c.c(1, 0).ping(&ip));
    assert!(c.c(h0, idx).ping(&eps[2].2));
}

#[test]
fn a_killed_agent_converges_after_restart() {
    let (mut c, eps) = setup(3, 1);
    let (ip0, ip2) = (eps[0].2.clone(), eps[2].2.clone());
    eventually("host1 has host0's container", Duration::from_secs(5), || {
        has_remote(&c, 1, NET, &ip0)
    });
    c.hosts[1].agent.kill();
    // Meanwhile: a container leaves host0, another joins host2, and a stale
    // entry (as a crashed agent might leave) appears on host1.
    let name0 = c.c(0, 0).name.clone();
    c.weft_ok(0, &["detach", NET, &name0]);
    let (ip_new, _) = c.attach(2, NET);
    c.hosts[1].ns.sh(&format!(
        "ip neigh add 10.90.0.250 lladdr 02:00:00:00:02:50 nud permanent dev {}",
        vx()
    ));
    std::thread::sleep(Duration::from_millis(300));
    assert!(has_remote(&c, 1, NET, &ip0), "nothing should change while the agent is down");
    c.start_agent(1);
    eventually("host1 converged", Duration::from_secs(10), || {
        let n = vx_neigh(&c, 1, NET);
        let ips: Vec<&str> = n.iter().map(|(d, _)| d.as_str()).collect();
        !ips.contains(&ip0.as_str())
            && !ips.contains(&"10.90.0.250")
            && ips.contains(&ip_new.as_str())
            && ips.contains(&ip2.as_str())
    });
    assert!(c.c(1, 0).ping(&ip_new));
    // The stale VXLAN forwarding entry went too, and every remaining one
    // points at a live host's underlay address.
    let fdb: Value =
        serde_json::from_str(&c.hosts[1].ns.sh(&format!("bridge -j fdb show dev {} self", vx())))
            .unwrap();
    let dsts: Vec<&str> =
        fdb.as_array().unwrap().iter().filter_map(|e| e["dst"].as_str()).collect();
    assert!(!dsts.contains(&"10.200.0.77"), "stale VXLAN FDB entry survived: {dsts:?}");
    assert!(dsts.iter().all(|d| ["10.200.0.1", "10.200.0.3"].contains(d)), "{dsts:?}");
}

/// A host that stops renewing its lease is unreachable: the others
/// withdraw its entries, but its addresses stay taken (it may be alive
/// behind a partition) until `weft node rm` removes it.
#[test]
fn a_dead_host_disappears_from_the_others() {
    let (mut c, eps) = setup(3, 1);
    let ip2 = eps[2].2.clone();
    for h in 0..2 {
        eventually("entry", Duration::from_secs(5), || has_remote(&c, h, NET, &ip2));
    }
    // Host 2 dies for good: its agent and its namespaces.
    let dead = c.hosts.pop().unwrap();
    drop(dead);
    let t = eventually("dead host's entries withdrawn", Duration::from_secs(30), || {
        !has_remote(&c, 0, NET, &ip2) && !has_remote(&c, 1, NET, &ip2)
    });
    eprintln!("dead host's entries gone after {t:?}");
    let host2_eps = |c: &Cluster| {
        let v: Value =
            serde_json::from_str(&c.weft_ok(0, &["network", "inspect", NET, "--json"])).unwrap();
        v["endpoints"].as_array().unwrap().iter().filter(|e| e["node"] == "host2").count()
    };
    assert_eq!(host2_eps(&c), 1, "an unreachable host's endpoint must stay recorded");
    let nodes: Value = serde_json::from_str(&c.weft_ok(0, &["node", "ls", "--json"])).unwrap();
    let host2 = nodes.as_array().unwrap().iter().find(|n| n["name"] == "host2").cloned();
    assert_eq!(host2.map(|n| n["state"].clone()), Some("unreachable".into()), "{nodes}");

    c.weft_ok(0, &["node", "rm", "host2"]);
    assert_eq!(host2_eps(&c), 0, "node rm left the endpoint");
    let nodes: Value = serde_json::from_str(&c.weft_ok(0, &["node", "ls", "--json"])).unwrap();
    assert!(nodes.as_array().unwrap().iter().all(|n| n["name"] != "host2"), "{nodes}");
}

#[test]
fn etcd_outage_keeps_traffic_and_attach_recovers() {
    let (mut c, eps) = setup(2, 1);
    let ip1 = eps[1].2.clone();
    eventually("entry", Duration::from_secs(5), || has_remote(&c, 0, NET, &ip1));
    c.stop_etcd();
    let start = std::time::Instant::now();
    let mut pings = 0;
    while start.elapsed() < Duration::from_secs(10) {
        assert!(c.c(0, 0).ping(&ip1), "cross-host ping failed during the etcd outage");
        pings += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(pings >= 10);
    // New attaches fail clearly and quickly while etcd is down.
    let ns = Netns::new("down");
    let t = std::time::Instant::now();
    let r = c.weft(0, &["attach", NET, &ns.name, "--netns", ns.path.to_str().unwrap()]);
    assert!(!r.ok && r.stderr.contains("etcd"), "attach during outage: {}", r.stderr);
    assert!(t.elapsed() < Duration::from_secs(8), "attach took {:?} to fail", t.elapsed());
    assert!(!ns.try_sh("ip link show eth0"), "failed attach left an interface");
    c.start_etcd();
    let mut attached = None;
    eventually("attach works again", Duration::from_secs(20), || {
        let r =
            c.weft(1, &["attach", NET, &ns.name, "--netns", ns.path.to_str().unwrap(), "--json"]);
        if r.ok {
            attached = Some(r.stdout);
        }
        r.ok
    });
    let v: Value = serde_json::from_str(&attached.unwrap()).unwrap();
    let ip = v["address"].as_str().unwrap().split('/').next().unwrap().to_string();
    eventually("host0 learns the new container", Duration::from_secs(15), || {
        has_remote(&c, 0, NET, &ip)
    });
    assert!(c.c(0, 0).ping(&ip));
}

#[test]
fn two_hosts_attach_fifty_each_concurrently() {
    let mut c = Cluster::new(2);
    c.weft_ok(0, &["network", "create", NET, "--driver", "overlay", "--subnet", "10.91.0.0/24"]);
    let mut names = Vec::new();
    for h in 0..2 {
        eventually("overlay ready", Duration::from_secs(10), || {
            c.hosts[h].ns.try_sh(&format!("ip link show {}", vx()))
        });
        for _ in 0..50 {
            let ns = Netns::new(&format!("p{h}"));
            names.push((h, ns.name.clone(), ns.path.to_str().unwrap().to_string()));
            c.hosts[h].containers.push(ns);
        }
    }
    std::thread::scope(|s| {
        for h in 0..2 {
            let c = &c;
            let mine: Vec<_> = names.iter().filter(|(x, _, _)| *x == h).cloned().collect();
            s.spawn(move || {
                for (_, name, path) in mine {
                    c.weft_ok(h, &["attach", NET, &name, "--netns", &path]);
                }
            });
        }
    });
    let v: Value = serde_json::from_str(&c.weft_ok(0, &["endpoint", "ls", "--json"])).unwrap();
    let mut addrs: Vec<&str> =
        v.as_array().unwrap().iter().map(|e| e["address"].as_str().unwrap()).collect();
    assert_eq!(addrs.len(), 100);
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 100, "an address was handed out twice");
}

#[test]
fn two_overlay_networks_are_isolated() {
    let (mut c, eps) = setup(2, 1);
    c.weft_ok(
        1,
        &["network", "create", "other", "--driver", "overlay", "--subnet", "10.92.0.0/24"],
    );
    eventually("second overlay", Duration::from_secs(10), || {
        c.hosts[0].ns.try_sh("ip link show vx-other")
    });
    let (ip_other, idx) = c.attach(0, "other");
    // Same host, different network: dropped by the firewall.
    assert!(!c.c(0, idx).ping(&eps[0].2));
    // Other host, different network: no entry, no path.
    assert!(!c.c(0, idx).ping(&eps[1].2));
    assert!(!c.c(1, 0).ping(&ip_other));
    assert!(!has_remote(&c, 1, NET, &ip_other));
    // Each network still works.
    assert!(c.c(0, 0).ping(&eps[1].2));
}

/// One A query over UDP from inside `ns` to `server`:53; the answers.
fn resolve(ns: &Netns, server: &str, name: &str) -> Vec<String> {
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    use hickory_proto::rr::{Name, RData, RecordType};
    let server: std::net::SocketAddr = format!("{server}:53").parse().unwrap();
    let name = Name::from_ascii(name).unwrap();
    let fd = ns.fd();
    std::thread::spawn(move || {
        // SAFETY: the caller keeps the namespace open; setns moves only this thread.
        assert_eq!(unsafe { libc::setns(fd, libc::CLONE_NEWNET) }, 0, "setns");
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        let mut m = Message::new();
        m.set_id(7).set_message_type(MessageType::Query).set_op_code(OpCode::Query);
        m.add_query(Query::query(name, RecordType::A));
        s.send_to(&m.to_vec().unwrap(), server).unwrap();
        let mut buf = [0u8; 2048];
        let Ok((n, _)) = s.recv_from(&mut buf) else { return Vec::new() };
        let m = Message::from_vec(&buf[..n]).expect("a DNS answer");
        m.answers()
            .iter()
            .filter_map(|r| match r.data() {
                RData::A(a) => Some(a.to_string()),
                _ => None,
            })
            .collect()
    })
    .join()
    .unwrap()
}

#[test]
fn names_resolve_across_hosts_through_the_agent() {
    let (mut c, eps) = setup(2, 1);
    let (remote, remote_ip) = (c.c(1, 0).name.clone(), eps[1].2.clone());
    // A container on host0 asks its own gateway (host0's agent) for the
    // container on host1.
    let t = eventually("remote name resolves", Duration::from_secs(10), || {
        resolve(c.c(0, 0), "10.90.0.1", &remote) == vec![remote_ip.clone()]
    });
    eprintln!("resolved after {t:?}");
    // A new container on host1 resolves on host0 as soon as the agent
    // hears of it, and stops after detach.
    let (ip, idx) = c.attach(1, NET);
    let name = c.c(1, idx).name.clone();
    eventually("new name", Duration::from_secs(5), || {
        resolve(c.c(0, 0), "10.90.0.1", &name) == vec![ip.clone()]
    });
    c.weft_ok(1, &["detach", NET, &name]);
    eventually("detached name gone", Duration::from_secs(5), || {
        resolve(c.c(0, 0), "10.90.0.1", &name).is_empty()
    });
}

#[test]
fn the_agent_restores_a_deleted_or_flushed_firewall_table_within_a_second() {
    let (c, _) = setup(1, 1);
    let rules = |c: &Cluster| -> usize {
        let out =
            c.hosts[0].ns.sh("nft -j list table inet weft 2>/dev/null || echo '{\"nftables\":[]}'");
        let v: Value = serde_json::from_str(&out).unwrap();
        v["nftables"].as_array().unwrap().iter().filter(|o| o.get("rule").is_some()).count()
    };
    eventually("table built", Duration::from_secs(5), || rules(&c) > 0);
    let before = rules(&c);
    c.hosts[0].ns.sh("nft delete table inet weft");
    let t = eventually("table restored", Duration::from_secs(3), || rules(&c) == before);
    assert!(t < Duration::from_millis(2500), "restored after {t:?}");
    c.hosts[0].ns.sh("nft flush table inet weft");
    let t = eventually("flushed table restored", Duration::from_secs(3), || rules(&c) == before);
    eprintln!("restored after {t:?}");
}
