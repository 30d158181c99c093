//! More of issue 4 (one network across hosts): outbound NAT through each
//! container's own host, etcd behind TLS, and the CLI's errors when etcd
//! is missing, unreachable or not trusted. Same simulated cluster as
//! tests/overlay.rs (namespaces on a shared underlay bridge, a real etcd,
//! one real `weft agent` per host).

mod harness;

use std::time::{Duration, Instant};

use harness::cluster::{eventually, Cluster};
use harness::tls;
use harness::{tcp_send, Netns, Run, Sandbox, TcpProbe};

const NET: &str = "ovx";

fn vx(net: &str) -> String {
    format!("vx-{net}")
}

fn has_remote(ns: &Netns, net: &str, ip: &str) -> bool {
    let v = ns.ip_json(&format!("neigh show dev {} nud permanent", vx(net)));
    v.as_array().unwrap().iter().any(|n| n["dst"] == ip)
}

/// The run failed with exactly one `weft: error: ...` line; returns it.
fn one_error_line(what: &str, r: &Run) -> String {
    assert!(!r.ok, "{what} should have failed, printed: {}", r.stdout);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: expected one error line, got:\n{}", r.stderr);
    assert!(lines[0].starts_with("weft: error: "), "{what}: unexpected error: {}", lines[0]);
    lines[0].to_string()
}

/// An "outside" network wired to a cluster host: the host gets `host_ip`
/// on a veth whose other end (in a new namespace) has `peer_ip`, and its
/// default route leads there. Both are /24.
fn wire_outside(host: &Netns, host_ip: &str, peer_ip: &str) -> Netns {
    let out = Netns::new("xo");
    let veth = "outside0";
    host.sh(&format!(
        "ip link add {veth} type veth peer name uplink netns {out} && \
         ip addr add {host_ip}/24 dev {veth} && ip link set {veth} up && \
         ip route add default via {peer_ip}",
        out = out.name
    ));
    out.sh(&format!("ip addr add {peer_ip}/24 dev uplink && ip link set uplink up"));
    out
}

/// Overlay network NET on hosts 0 and 1, one container on each, both
/// hosts programmed for the other's; returns their addresses.
fn one_container_per_host(c: &mut Cluster, subnet: &str) -> (String, String) {
    c.weft_ok(0, &["network", "create", NET, "--driver", "overlay", "--subnet", subnet]);
    for h in 0..2 {
        eventually("overlay device on every host", Duration::from_secs(10), || {
            c.hosts[h].ns.try_sh(&format!("ip link show {}", vx(NET)))
        });
    }
    let (ip0, _) = c.attach(0, NET);
    let (ip1, _) = c.attach(1, NET);
    eventually("the hosts know each other's container", Duration::from_secs(5), || {
        has_remote(&c.hosts[0].ns, NET, &ip1) && has_remote(&c.hosts[1].ns, NET, &ip0)
    });
    (ip0, ip1)
}

#[test]
fn overlay_containers_reach_the_outside_through_their_own_host() {
    let mut c = Cluster::new(2);
    let (_, ip1) = one_container_per_host(&mut c, "10.93.0.0/24");
    // Each host has its own outside world, both with a server at the same
    // address: which server a container reaches tells which host it left
    // through, and the source the server sees tells whether it was NATed.
    let server = "203.0.113.2";
    let host_ips = ["203.0.113.1", "203.0.113.11"];
    let outs: Vec<Netns> =
        (0..2).map(|h| wire_outside(&c.hosts[h].ns, host_ips[h], server)).collect();
    for h in 0..2 {
        assert!(c.c(h, 0).ping(server), "container on host{h} cannot ping its host's outside");
    }
    let probes: Vec<TcpProbe> = outs
        .iter()
        .map(|o| TcpProbe::listen(o, &format!("{server}:8080"), Duration::from_secs(8)))
        .collect();
    for h in 0..2 {
        assert!(tcp_send(c.c(h, 0), server, 8080, 5), "TCP from host{h}'s container failed");
    }
    for (h, probe) in probes.into_iter().enumerate() {
        let (peer, data) = probe
            .accepted()
            .unwrap_or_else(|| panic!("the server outside host{h} saw no connection"));
        assert_eq!(
            peer.ip().to_string(),
            host_ips[h],
            "the server outside host{h} saw the wrong source (not NATed to host{h})"
        );
        assert_eq!(data.trim(), "hi");
    }
    // The overlay itself still works next to the outside traffic.
    assert!(c.c(0, 0).ping(&ip1));
}

#[test]
fn etcd_over_tls_agents_and_cli() {
    let mut c = Cluster::with_tls(2);
    let (ip0, ip1) = one_container_per_host(&mut c, "10.94.0.0/24");
    assert!(c.c(0, 0).ping(&ip1), "host0 -> host1 over the overlay (etcd with TLS)");
    assert!(c.c(1, 0).ping(&ip0), "host1 -> host0 over the overlay (etcd with TLS)");
    let v: serde_json::Value =
        serde_json::from_str(&c.weft_ok(1, &["network", "inspect", NET, "--json"])).unwrap();
    assert_eq!(v["endpoints"].as_array().unwrap().len(), 2);
    // etcd really demands TLS: plain http to it gets nowhere.
    let plain = vec!["--etcd".to_string(), format!("http://{}:2379", harness::cluster::ETCD_IP)];
    let t = Instant::now();
    let r = c.weft_with(0, &plain, &["network", "ls"]);
    let line = one_error_line("http against an https etcd", &r);
    eprintln!("http against https ({:?}): {line}", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(6), "took {:?}", t.elapsed());
}

#[test]
fn etcd_tls_with_the_wrong_ca_fails_clearly_and_quickly() {
    let c = Cluster::with_tls(1);
    let wrong = c.certs().client_args(&c.certs().other_ca());
    for args in [
        &["network", "ls"][..],
        &["node", "ls"],
        &["network", "create", NET, "--driver", "overlay"],
    ] {
        let t = Instant::now();
        let r = c.weft_with(0, &wrong, args);
        let took = t.elapsed();
        let line = one_error_line(&format!("{args:?} with the wrong CA"), &r);
        eprintln!("wrong CA, {args:?} ({took:?}): {line}");
        assert!(took < Duration::from_secs(5), "{args:?} took {took:?} to fail");
        assert!(line.contains("etcd"), "the error does not say etcd: {line}");
        let l = line.to_lowercase();
        assert!(
            l.contains("certificate") || l.contains("--etcd-ca") || l.contains("tls"),
            "the error does not point at TLS / the CA: {line}"
        );
    }
    // The failed create left nothing behind.
    assert!(!c.weft_ok(0, &["network", "ls"]).contains(NET));
    // Without a client certificate etcd (--client-cert-auth) refuses too.
    let no_cert = vec![
        "--etcd".to_string(),
        tls::etcd_tls_url(),
        "--etcd-ca".to_string(),
        c.certs().ca().display().to_string(),
    ];
    let t = Instant::now();
    let r = c.weft_with(0, &no_cert, &["network", "ls"]);
    let took = t.elapsed();
    let line = one_error_line("no client certificate", &r);
    eprintln!("no client certificate ({took:?}): {line}");
    assert!(took < Duration::from_secs(5), "took {took:?} to fail");
    assert!(line.contains("etcd"), "{line}");
}

/// weft in `sb`'s host namespace against `etcd`, with nothing from the
/// environment or a config file.
fn weft_against(sb: &Sandbox, etcd: &str, args: &[&str]) -> (Run, Duration) {
    let mut cmd = sb.weft_cmd(&[]);
    cmd.env_remove("WEFT_ETCD").env_remove("WEFT_CONFIG");
    cmd.args(["--config", "/nonexistent/weft.conf", "--etcd", etcd, "--node", "n1"]).args(args);
    let t = Instant::now();
    let o = cmd.output().expect("spawn weft");
    let run = Run {
        ok: o.status.success(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    };
    (run, t.elapsed())
}

#[test]
fn unreachable_etcd_fails_clearly_within_five_seconds() {
    let sb = Sandbox::new();
    // 10.200.0.254 is a local address with nothing listening (refused);
    // 10.201.0.254 is a neighbour namespace that drops every packet it
    // gets (a silent etcd: no answer at all).
    sb.host.sh("ip addr add 10.200.0.254/32 dev lo");
    let silent = Netns::new("sil");
    sb.host.sh(&format!(
        "ip link add sil0 type veth peer name eth0 netns {} && \
         ip addr add 10.201.0.1/24 dev sil0 && ip link set sil0 up",
        silent.name
    ));
    silent.sh("ip addr add 10.201.0.254/24 dev eth0 && ip link set eth0 up && \
         nft add table inet sink && \
         nft 'add chain inet sink in { type filter hook input priority 0; policy drop; }'");
    let ns = Netns::new("unr");
    let path = ns.path.to_str().unwrap().to_string();
    let commands: Vec<Vec<&str>> = vec![
        vec!["network", "ls"],
        vec!["node", "ls", "--json"],
        vec!["network", "create", NET, "--driver", "overlay"],
        vec!["attach", NET, &ns.name, "--netns", &path],
    ];
    for (etcd, why) in
        [("http://10.200.0.254:2379", "refused"), ("http://10.201.0.254:2379", "silent")]
    {
        for args in &commands {
            let (r, took) = weft_against(&sb, etcd, args);
            let line = one_error_line(&format!("{args:?} against a {why} etcd"), &r);
            eprintln!("{why} etcd, {args:?} ({took:?}): {line}");
            assert!(took < Duration::from_secs(5), "{args:?} took {took:?} against a {why} etcd");
            assert!(line.contains("etcd"), "the error does not name etcd: {line}");
            assert!(line.contains(&etcd[7..]), "the error does not name the endpoint: {line}");
        }
    }
    assert!(!ns.try_sh("ip link show eth0"), "a failed attach left an interface");
}

#[test]
fn overlay_network_without_etcd_fails_clearly() {
    let sb = Sandbox::new();
    let mut cmd = sb.weft_cmd(&["network", "create", NET, "--driver", "overlay"]);
    cmd.env_remove("WEFT_ETCD").env_remove("WEFT_CONFIG");
    cmd.args(["--config", "/nonexistent/weft.conf"]);
    let o = cmd.output().expect("spawn weft");
    let r = Run {
        ok: o.status.success(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    };
    let line = one_error_line("overlay network without etcd", &r);
    eprintln!("{line}");
    assert!(line.contains("--etcd"), "the error does not say what to give: {line}");
    assert!(line.contains(NET), "the error does not name the network: {line}");
    // Nothing was made.
    assert!(!sb.weft_ok(&["network", "ls"]).contains(NET));
    assert!(!sb.has_link(&format!("vx-{NET}")));
}
