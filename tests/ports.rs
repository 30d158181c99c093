//! Published ports with real packets, inside a sandbox "host" wired to an
//! "outside" namespace (host 203.0.113.1, outside 203.0.113.2): from the
//! outside, from the host itself (its address and 127.0.0.1), hairpin from
//! the container itself and from a peer; TCP, UDP, ranges; conflicts with
//! weft's own ports and with the host's listening sockets; the rule count
//! after 200 endpoints; `weft firewall reload` after the table is deleted.

mod harness;

use std::net::{SocketAddr, UdpSocket};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use harness::{tcp_send, Netns, Sandbox, TcpProbe};
use serde_json::{json, Value};

const HOST: &str = "203.0.113.1";
const OUTSIDE: &str = "203.0.113.2";

fn ip_of(ep: &Value) -> String {
    ep["address"].as_str().unwrap().split('/').next().unwrap().to_string()
}

/// A TCP connection from `from` to `ip:port`, served in `to` on
/// `container_port`: the client address the server saw, or None.
fn tcp(from: &Netns, ip: &str, port: u16, to: &Netns, container_port: u16) -> Option<String> {
    // The previous connection to this port may still be closing: wait
    // until the port can be listened on again.
    let free = to.spawn_in(move || {
        let start = Instant::now();
        while std::net::TcpListener::bind(("0.0.0.0", container_port)).is_err() {
            if start.elapsed() > Duration::from_secs(3) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    });
    assert!(free.join().unwrap(), "port {container_port} stays busy");
    let probe = TcpProbe::listen(to, &format!("0.0.0.0:{container_port}"), Duration::from_secs(4));
    let sent = tcp_send(from, ip, port, 2);
    let got = probe.accepted();
    assert_eq!(sent, got.is_some(), "client and server disagree about {ip}:{port}: {got:?}");
    got.map(|(peer, data)| {
        assert_eq!(data, "hi\n");
        peer.ip().to_string()
    })
}

/// A UDP server in `ns` that answers one datagram with "pong" and returns
/// the client address it saw.
fn udp_echo(ns: &Netns, port: u16) -> JoinHandle<Option<SocketAddr>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let h = ns.spawn_in(move || {
        let s = UdpSocket::bind(("0.0.0.0", port)).expect("bind udp");
        s.set_read_timeout(Some(Duration::from_secs(4))).unwrap();
        tx.send(()).unwrap();
        let mut buf = [0u8; 64];
        let (_, peer) = s.recv_from(&mut buf).ok()?;
        s.send_to(b"pong", peer).ok()?;
        Some(peer)
    });
    rx.recv().unwrap();
    h
}

/// Sends "ping" over UDP from `ns` to `addr`; whether "pong" came back.
fn udp_ask(ns: &Netns, addr: &str) -> bool {
    let addr: SocketAddr = addr.parse().unwrap();
    ns.spawn_in(move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.send_to(b"ping", addr).unwrap();
        let mut buf = [0u8; 16];
        matches!(s.recv_from(&mut buf), Ok((4, _)) if &buf[..4] == b"pong")
    })
    .join()
    .unwrap()
}

fn publish4(sb: &Sandbox) -> Vec<String> {
    let objs = sb.nft_objects();
    let map = objs.iter().find_map(|o| o.get("map").filter(|m| m["name"] == "publish4"));
    map.and_then(|m| m["elem"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|e| e.to_string())
        .collect()
}

#[test]
fn tcp_from_outside_host_localhost_and_hairpin() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "n", "--subnet", "172.23.0.0/24"]);
    sb.weft_ok(&["network", "create", "other", "--subnet", "172.23.1.0/24"]);
    sb.wire_outside();
    let web = sb.container("web");
    let peer = sb.container("peer");
    let far = sb.container("far");
    let e = sb.attach("n", web, &["-p", "8080:80", "--publish", "127.0.0.1:8181:81"]);
    assert_eq!(e["ports"][0]["host_port"], 8080);
    assert_eq!(e["dns"]["nameservers"], json!(["172.23.0.1"]));
    sb.attach("n", peer, &[]);
    let ef = sb.attach("other", far, &[]);
    let out = sb.outside.as_ref().unwrap();

    // From another machine: the container sees the real client address.
    assert_eq!(tcp(out, HOST, 8080, sb.c(web), 80).as_deref(), Some(OUTSIDE));
    // From the host itself: its own address, and loopback.
    assert!(tcp(&sb.host, HOST, 8080, sb.c(web), 80).is_some(), "host -> its address");
    assert!(tcp(&sb.host, "127.0.0.1", 8080, sb.c(web), 80).is_some(), "host -> 127.0.0.1");
    assert!(tcp(&sb.host, "127.0.0.1", 8181, sb.c(web), 81).is_some(), "127.0.0.1-only port");
    // ... which is published on 127.0.0.1 only.
    assert!(tcp(out, HOST, 8181, sb.c(web), 81).is_none(), "127.0.0.1-only port from outside");
    // Hairpin: the container to its own published port, a peer, another network.
    assert!(tcp(sb.c(web), HOST, 8080, sb.c(web), 80).is_some(), "hairpin to itself");
    assert!(tcp(sb.c(web), "172.23.0.1", 8080, sb.c(web), 80).is_some(), "via the gateway");
    assert!(tcp(sb.c(peer), HOST, 8080, sb.c(web), 80).is_some(), "peer on the network");
    assert_eq!(
        tcp(sb.c(far), HOST, 8080, sb.c(web), 80),
        Some(ip_of(&ef)),
        "a container of another network, seen with its own address"
    );
    // Unpublished ports stay closed; other destinations are not rewritten.
    assert!(tcp(out, HOST, 8081, sb.c(web), 80).is_none());
    assert!(tcp(sb.c(peer), OUTSIDE, 8080, out, 8080).is_some(), "traffic to elsewhere untouched");
}

#[test]
fn udp_and_ranges() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "n", "--subnet", "172.23.2.0/24"]);
    sb.wire_outside();
    let c = sb.container("c");
    sb.attach(
        "n",
        c,
        &["-p", "5300-5309:5300-5309/udp", "-p", "6000-6002:7000-7002", "-p", "53:5353/udp"],
    );
    let out = sb.outside.as_ref().unwrap();

    let echo = udp_echo(sb.c(c), 5305);
    assert!(udp_ask(out, &format!("{HOST}:5305")), "udp range from outside");
    assert_eq!(echo.join().unwrap().map(|p| p.ip().to_string()).as_deref(), Some(OUTSIDE));
    let echo = udp_echo(sb.c(c), 5353);
    assert!(udp_ask(&sb.host, "127.0.0.1:53"), "udp from localhost, port changed");
    assert!(echo.join().unwrap().is_some());
    let echo = udp_echo(sb.c(c), 5300);
    assert!(udp_ask(sb.c(c), &format!("{HOST}:5300")), "udp hairpin");
    assert!(echo.join().unwrap().is_some());
    // A shifted TCP range maps port by port.
    for (h, cport) in [(6000, 7000), (6002, 7002)] {
        assert_eq!(tcp(out, HOST, h, sb.c(c), cport).as_deref(), Some(OUTSIDE), "{h}->{cport}");
    }
    // A range is one element in the address map, not one per port.
    assert_eq!(publish4(&sb).len(), 3, "{:?}", publish4(&sb));
}

#[test]
fn conflicts_are_refused_and_leave_nothing() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "n", "--subnet", "172.23.3.0/24"]);
    let a = sb.container("a");
    let b = sb.container("b");
    sb.attach("n", a, &["-p", "8080:80", "-p", "9000-9010:9000-9010/udp"]);
    let before = sb.snapshot();
    let bname = sb.c(b).name.clone();

    for p in ["8080:81", "127.0.0.1:8080:80", "9005:53/udp", "8000-8100:8000-8100"] {
        let e = sb.weft_err(&["attach", "n", &bname, "-p", p]);
        assert!(
            e.contains("already published by container") && e.contains(&sb.c(a).name),
            "{p}: {e}"
        );
        assert_eq!(sb.snapshot(), before, "{p} left something behind");
    }
    // Overlapping within one attach.
    let e = sb.weft_err(&["attach", "n", &bname, "-p", "7000:70", "-p", "7000:71"]);
    assert!(e.contains("overlaps"), "{e}");

    // A socket of the host listening on the port.
    let tcp_listener = sb.host.run_in(|| std::net::TcpListener::bind("0.0.0.0:7070").unwrap());
    let udp_sock = sb.host.run_in(|| UdpSocket::bind("127.0.0.1:7171").unwrap());
    let e = sb.weft_err(&["attach", "n", &bname, "-p", "7070:80"]);
    assert!(e.contains("host port 7070/tcp is in use on this host"), "{e}");
    let e = sb.weft_err(&["attach", "n", &bname, "-p", "7100-7200:7100-7200/udp"]);
    assert!(e.contains("7171/udp is in use"), "{e}");
    assert_eq!(sb.snapshot(), before);
    // Same port, other protocol or host address: fine.
    sb.attach("n", b, &["-p", "8080:80/udp", "-p", "127.0.0.1:7171:80/tcp"]);
    drop((tcp_listener, udp_sock));

    // An internal network cannot publish.
    sb.weft_ok(&["network", "create", "vault", "--subnet", "172.23.4.0/24", "--internal"]);
    let v = sb.container("v");
    let e = sb.weft_err(&["attach", "vault", &sb.c(v).name.clone(), "-p", "6000:60"]);
    assert!(e.contains("internal"), "{e}");
}

#[test]
fn detach_removes_exactly_its_elements() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "n", "--subnet", "172.23.5.0/24"]);
    sb.wire_outside();
    let a = sb.container("a");
    let b = sb.container("b");
    sb.attach("n", a, &["-p", "8080:80"]);
    sb.attach("n", b, &["-p", "8081:80", "-p", "8082-8083:8082-8083"]);
    assert_eq!(publish4(&sb).len(), 3);
    let aname = sb.c(a).name.clone();
    sb.weft_ok(&["detach", "n", &aname]);
    let left = publish4(&sb);
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.iter().all(|e| !e.contains("8080")), "{left:?}");
    let out = sb.outside.as_ref().unwrap();
    assert!(tcp(out, HOST, 8081, sb.c(b), 80).is_some());
    assert!(tcp(out, HOST, 8080, sb.c(a), 80).is_none());
    // The port is free again.
    sb.attach("n", a, &["-p", "8080:80"]);
    assert!(tcp(out, HOST, 8080, sb.c(a), 80).is_some());
}

#[test]
fn rule_count_constant_after_200_endpoints_with_ports() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "n", "--subnet", "172.24.0.0/22"]);
    let first = sb.container("c");
    sb.attach("n", first, &["-p", "10000:80"]);
    let rules = sb.nft_rule_count();
    let start = Instant::now();
    for i in 1..200u16 {
        let c = sb.container("c");
        let p = format!("{}:80", 10000 + i);
        let name = sb.c(c).name.clone();
        sb.weft_ok(&["attach", "n", &name, "-p", &p]);
    }
    eprintln!("199 attaches with a published port: {:?}", start.elapsed());
    assert_eq!(sb.nft_rule_count(), rules, "rules grew with published ports");
    assert_eq!(publish4(&sb).len(), 200);
}

#[test]
fn reload_restores_a_deleted_table() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "n", "--subnet", "172.23.6.0/24"]);
    sb.wire_outside();
    let c = sb.container("c");
    sb.attach("n", c, &["-p", "8080:80", "-p", "5300:53/udp"]);
    let want = sb.nft_objects().len();
    let elems = publish4(&sb);
    sb.host.sh("nft delete table inet weft");
    let out = sb.outside.as_ref().unwrap();
    assert!(tcp(out, HOST, 8080, sb.c(c), 80).is_none(), "no table, no published port");
    let msg = sb.weft_ok(&["firewall", "reload"]);
    assert!(msg.contains("reloaded table inet weft"), "{msg}");
    assert_eq!(publish4(&sb), elems);
    assert_eq!(sb.nft_objects().len(), want);
    assert_eq!(tcp(out, HOST, 8080, sb.c(c), 80).as_deref(), Some(OUTSIDE));

    // Flushed (rules and elements gone, table left): the same.
    sb.host.sh("nft flush table inet weft");
    let out = sb.outside.as_ref().unwrap();
    assert!(tcp(out, HOST, 8080, sb.c(c), 80).is_none(), "flushed table, no published port");
    sb.weft_ok(&["firewall", "reload"]);
    assert_eq!(publish4(&sb), elems);
    assert_eq!(tcp(out, HOST, 8080, sb.c(c), 80).as_deref(), Some(OUTSIDE));
}

#[test]
fn cni_port_mappings() {
    let mut sb = Sandbox::new();
    sb.wire_outside();
    let c = sb.container("c");
    let conf = json!({
        "cniVersion": "1.0.0", "name": "cniports", "type": "weft", "subnet": "10.78.0.0/24",
        "runtimeConfig": {"portMappings": [
            {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
            {"hostPort": 5353, "containerPort": 53, "protocol": "udp"}
        ]}
    });
    let ns = sb.c(c).path.to_str().unwrap().to_string();
    let env = |cmd| {
        vec![
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", "ctr1"),
            ("CNI_NETNS", ns.as_str()),
            ("CNI_IFNAME", "eth0"),
        ]
    };
    let r = sb.cni(&env("ADD"), &conf);
    assert!(r.ok, "ADD: {} {}", r.raw, r.stderr);
    // No DNS server serves the network here: the result names none
    // (tests/input.rs the_cni_result_names_a_nameserver_only_when_one_serves).
    assert_eq!(r.stdout["dns"], json!({}));
    let out = sb.outside.as_ref().unwrap();
    assert_eq!(tcp(out, HOST, 8080, sb.c(c), 80).as_deref(), Some(OUTSIDE));
    let echo = udp_echo(sb.c(c), 53);
    assert!(udp_ask(out, &format!("{HOST}:5353")));
    echo.join().unwrap();
    assert_eq!(publish4(&sb).len(), 2);
    let r = sb.cni(&env("DEL"), &conf);
    assert!(r.ok, "DEL: {} {}", r.raw, r.stderr);
    assert!(publish4(&sb).is_empty());
}
