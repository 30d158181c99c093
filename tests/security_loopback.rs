//! Attacks on the host's loopback (the CVE-2020-8558 pattern), in sandbox
//! namespaces: a published port sets `route_localnet` on the bridge, and
//! weft's DNAT runs before the kernel's martian check, so a packet sent to
//! 127.0.0.1 from a container, from a neighbour on the outside link or from
//! another weft network must be dropped by weft itself. Publishing on
//! 127.0.0.1 from the host keeps working; `route_localnet` goes back to 0
//! with the last port of the network that needs it; `[::1]:` is refused.

mod harness;

use std::time::Duration;

use harness::{tcp_send, Netns, Sandbox, TcpProbe};

const HOST: &str = "203.0.113.1";

/// Makes `ns` send everything for 127.0.0.0/8 to `gateway` out of `dev`,
/// as an attacker with CAP_NET_ADMIN in its own namespace can: its own
/// loopback routes are moved behind a policy rule, and it accepts replies
/// from 127.0.0.1 on `dev`.
fn route_loopback_out(ns: &Netns, gateway: &str, dev: &str) {
    ns.sh(&format!(
        "sysctl -qw net.ipv4.conf.all.route_localnet=1 net.ipv4.conf.{dev}.route_localnet=1 \
           net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.{dev}.rp_filter=0 && \
         ip rule add pref 100 lookup local && ip rule del pref 0 && \
         ip route add 127.0.0.0/8 via {gateway} dev {dev} table 100 && \
         ip rule add pref 10 to 127.0.0.0/8 lookup 100"
    ));
}

/// Whether a TCP connection from `from` to `ip:port` reached a server
/// listening on `listen` in `to` (the server saw it).
fn reaches(from: &Netns, ip: &str, port: u16, to: &Netns, listen: &str) -> bool {
    let probe = TcpProbe::listen(to, listen, Duration::from_secs(4));
    let sent = tcp_send(from, ip, port, 2);
    let got = probe.accepted();
    assert_eq!(sent, got.is_some(), "client and server disagree about {ip}:{port}: {got:?}");
    got.is_some()
}

fn route_localnet(sb: &Sandbox, bridge: &str) -> String {
    sb.host.sh(&format!("cat /proc/sys/net/ipv4/conf/{bridge}/route_localnet")).trim().to_string()
}

/// A container of a network with a published port reads a service of the
/// host that listens on 127.0.0.1 only; later containers of the network,
/// once the publishing one is gone, too.
#[test]
fn container_cannot_reach_the_hosts_loopback() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "n", "--subnet", "172.25.0.0/24"]);
    let web = sb.container("web");
    let evil = sb.container("evil");
    sb.attach("n", web, &["-p", "8080:80"]);
    sb.attach("n", evil, &[]);
    assert_eq!(route_localnet(&sb, "weft-n"), "1", "host-local publishing needs route_localnet");
    route_loopback_out(sb.c(evil), "172.25.0.1", "eth0");

    // The host's loopback-only service, and a published port by its
    // loopback address: neither answers the container.
    let secret = "127.0.0.1:9999";
    assert!(!reaches(sb.c(evil), "127.0.0.1", 9999, &sb.host, secret), "127.0.0.1-only service");
    assert!(!reaches(sb.c(evil), "127.0.0.1", 8080, sb.c(web), "0.0.0.0:80"), "127.0.0.1:8080");
    // The published port itself still answers at the gateway (hairpin).
    assert!(reaches(sb.c(evil), "172.25.0.1", 8080, sb.c(web), "0.0.0.0:80"), "hairpin");

    // The publisher goes: nothing left that needs route_localnet.
    let name = sb.c(web).name.clone();
    sb.weft_ok(&["detach", "n", &name]);
    assert_eq!(route_localnet(&sb, "weft-n"), "0", "route_localnet outlived the last port");
    assert!(!reaches(sb.c(evil), "127.0.0.1", 9999, &sb.host, secret), "after the detach");

    // A port published on a host address other than localhost does not
    // need it either; one on 0.0.0.0 does, and `weft gc` keeps it.
    let other = sb.container("other");
    sb.attach("n", other, &["-p", "172.25.0.1:8081:80"]);
    assert_eq!(route_localnet(&sb, "weft-n"), "0");
    let name = sb.c(other).name.clone();
    sb.weft_ok(&["detach", "n", &name]);
    sb.attach("n", other, &["-p", "8081:80"]);
    sb.weft_ok(&["gc"]);
    assert_eq!(route_localnet(&sb, "weft-n"), "1");
    assert!(!reaches(sb.c(evil), "127.0.0.1", 9999, &sb.host, secret), "after gc");
}

/// A container that sends from a loopback address (it owns its namespace:
/// route_localnet on its own eth0) must not look like a local process to
/// the host's services, which often trust 127.0.0.0/8. The bridge's
/// route_localnet skips the kernel's martian-source check.
#[test]
fn container_cannot_pose_as_the_hosts_loopback() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "n", "--subnet", "172.25.4.0/24"]);
    let web = sb.container("web");
    let evil = sb.container("evil");
    sb.attach("n", web, &["-p", "8080:80"]);
    sb.attach("n", evil, &[]);
    // The kernel's default; reverse-path filtering would hide the hole.
    sb.host.sh("sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.weft-n.rp_filter=0");
    sb.c(evil)
        .sh("sysctl -qw net.ipv4.conf.all.route_localnet=1 net.ipv4.conf.eth0.route_localnet=1");
    let server = sb.host.run_in(|| std::net::UdpSocket::bind("0.0.0.0:9998").expect("bind"));
    server.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    for from in ["127.0.0.2:0", "127.0.0.1:0"] {
        sb.c(evil).run_in(move || {
            let s = std::net::UdpSocket::bind(from).expect("bind loopback");
            s.send_to(b"trust me", "172.25.4.1:9998").expect("send")
        });
    }
    let mut buf = [0u8; 16];
    let got = server.recv_from(&mut buf).ok().map(|(_, peer)| peer);
    assert!(got.is_none(), "the host took a datagram from {got:?} through the bridge");
}

/// A port published on 127.0.0.1 is for the host alone: a neighbour on the
/// outside link and a container of another weft network that send their
/// packets to 127.0.0.1 through the host do not reach it; the host does.
#[test]
fn localhost_port_is_for_the_host_alone() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "n", "--subnet", "172.25.1.0/24"]);
    sb.weft_ok(&["network", "create", "other", "--subnet", "172.25.2.0/24"]);
    sb.wire_outside();
    let web = sb.container("web");
    let far = sb.container("far");
    let ew = sb.attach("n", web, &["-p", "127.0.0.1:8181:81", "-p", "8080:80"]);
    sb.attach("other", far, &[]);
    let out = sb.outside.as_ref().unwrap();
    route_loopback_out(out, HOST, "uplink");
    route_loopback_out(sb.c(far), "172.25.2.1", "eth0");

    assert!(!reaches(out, "127.0.0.1", 8181, sb.c(web), "0.0.0.0:81"), "from the outside link");
    assert!(!reaches(sb.c(far), "127.0.0.1", 8181, sb.c(web), "0.0.0.0:81"), "other network");
    assert!(!reaches(out, "127.0.0.1", 8080, sb.c(web), "0.0.0.0:80"), "0.0.0.0 port by 127.0.0.1");
    // Nor by routing straight to the container (CVE-2025-54388 in Docker).
    out.sh("ip route add 172.25.1.0/24 via 203.0.113.1");
    let addr = ew["address"].as_str().unwrap().split('/').next().unwrap().to_string();
    assert!(!reaches(out, &addr, 81, sb.c(web), "0.0.0.0:81"), "straight to the container");

    // The host itself, by 127.0.0.1: both ports; the outside by the
    // host's address: only the port published on every address.
    assert!(reaches(&sb.host, "127.0.0.1", 8181, sb.c(web), "0.0.0.0:81"), "host, localhost port");
    assert!(reaches(&sb.host, "127.0.0.1", 8080, sb.c(web), "0.0.0.0:80"), "host, 0.0.0.0 port");
    assert!(reaches(out, HOST, 8080, sb.c(web), "0.0.0.0:80"), "outside by the host's address");
    assert!(!reaches(out, HOST, 8181, sb.c(web), "0.0.0.0:81"), "localhost port by host address");
    // And a container of the other network still reaches the open port.
    let probe = TcpProbe::listen(sb.c(web), "0.0.0.0:80", Duration::from_secs(4));
    assert!(tcp_send(sb.c(far), HOST, 8080, 2));
    assert!(probe.accepted().is_some());
}

/// IPv6 has no route_localnet: the kernel never lets a packet from ::1
/// leave through a bridge, so a port published on [::1] could never work.
/// It is refused with one clear line, and nothing is left behind.
#[test]
fn ipv6_localhost_publishing_is_refused() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&[
        "network",
        "create",
        "n",
        "--subnet",
        "172.25.3.0/24",
        "--subnet6",
        "fd00:25:3::/64",
    ]);
    let c = sb.container("c");
    let before = sb.snapshot();
    let name = sb.c(c).name.clone();
    let e = sb.weft_err(&["attach", "n", &name, "-p", "[::1]:8080:80"]);
    assert!(e.contains("[::1]") && e.contains("127.0.0.1"), "{e}");
    assert_eq!(sb.snapshot(), before, "a refused attach left something behind");
    // Other IPv6 addresses publish as before.
    let e = sb.attach("n", c, &["-p", "[fd00:25:3::1]:8080:80"]);
    assert_eq!(e["ports"][0]["host_port"], 8080);
}
