//! The host turned into a router: weft turns on IPv4 (and IPv6) forwarding
//! for its bridges. Traffic between two interfaces of the host that are
//! not weft's must not be forwarded because of weft: when weft turned
//! forwarding on, it drops such traffic and turns forwarding off with its
//! last network; when forwarding was on already, it leaves it alone. IPv6
//! forwarding makes the kernel ignore router advertisements on interfaces
//! with accept_ra=1: an uplink that takes its default route from them
//! keeps it (weft sets accept_ra=2 there, and undoes it).

mod harness;

use std::time::Duration;

use harness::{eventually, tcp_send, Netns, Sandbox, TcpProbe};

/// Two plain veth links from the sandbox host to two namespaces, `a`
/// (10.250.1.2, fd00:250:1::2) and `b` (10.250.2.2, fd00:250:2::2), each
/// routing everything through the host: a router would connect them.
struct Neighbours {
    a: Netns,
    b: Netns,
}

fn neighbours(sb: &Sandbox) -> Neighbours {
    let (a, b) = (Netns::new("na"), Netns::new("nb"));
    for (ns, i) in [(&a, 1), (&b, 2)] {
        let host_end = format!("nbr{i}");
        sb.host.sh(&format!(
            "ip link add {host_end} type veth peer name eth0 netns {ns} && \
             sysctl -qw net.ipv6.conf.{host_end}.accept_dad=0 && \
             ip addr add 10.250.{i}.1/24 dev {host_end} && \
             ip addr add fd00:250:{i}::1/64 dev {host_end} nodad && ip link set {host_end} up",
            ns = ns.name
        ));
        ns.sh(&format!(
            "sysctl -qw net.ipv6.conf.eth0.accept_dad=0 && \
             ip addr add 10.250.{i}.2/24 dev eth0 && ip addr add fd00:250:{i}::2/64 dev eth0 nodad && \
             ip link set eth0 up && ip route add default via 10.250.{i}.1 && \
             ip -6 route add default via fd00:250:{i}::1"
        ));
    }
    Neighbours { a, b }
}

impl Neighbours {
    /// Whether a TCP connection from `a` to `b` gets through, over IPv4 or
    /// IPv6.
    fn routed(&self, v6: bool) -> bool {
        let (listen, ip) =
            if v6 { ("[::]:7000", "fd00:250:2::2") } else { ("0.0.0.0:7000", "10.250.2.2") };
        let probe = TcpProbe::listen(&self.b, listen, Duration::from_secs(3));
        let sent = tcp_send(&self.a, ip, 7000, 1);
        let got = probe.accepted().is_some();
        assert_eq!(sent, got, "client and server disagree about {ip}");
        got
    }
}

fn sysctl(ns: &Netns, path: &str) -> String {
    ns.sh(&format!("cat /proc/sys/net/{path}")).trim().to_string()
}

fn set_forwarding(ns: &Netns, on: bool) {
    let v = u8::from(on);
    ns.sh(&format!("sysctl -qw net.ipv4.ip_forward={v} net.ipv6.conf.all.forwarding={v}"));
}

#[test]
fn weft_does_not_route_between_other_interfaces() {
    let mut sb = Sandbox::new();
    set_forwarding(&sb.host, false);
    let n = neighbours(&sb);
    assert!(!n.routed(false) && !n.routed(true), "the sandbox host routes before weft");

    sb.weft_ok(&[
        "network",
        "create",
        "n",
        "--subnet",
        "172.26.0.0/24",
        "--subnet6",
        "fd00:26::/64",
    ]);
    assert_eq!(sysctl(&sb.host, "ipv4/ip_forward"), "1");
    assert_eq!(sysctl(&sb.host, "ipv6/conf/all/forwarding"), "1");
    assert!(!n.routed(false), "IPv4 routed between non-weft interfaces after network create");
    assert!(!n.routed(true), "IPv6 routed between non-weft interfaces after network create");

    // weft's own traffic still flows: a container reaches a neighbour, and
    // a neighbour does not reach the container unasked.
    let c = sb.container("c");
    sb.attach("n", c, &[]);
    let probe = TcpProbe::listen(&n.a, "0.0.0.0:7001", Duration::from_secs(3));
    assert!(tcp_send(sb.c(c), "10.250.1.2", 7001, 2), "container -> neighbour");
    let (peer, _) = probe.accepted().expect("neighbour saw nothing");
    assert_eq!(peer.ip().to_string(), "10.250.1.1", "masqueraded to the host's address");

    // A second network and its removal change nothing; the last one
    // turns forwarding back off.
    sb.weft_ok(&["network", "create", "m", "--subnet", "172.26.1.0/24"]);
    sb.weft_ok(&["network", "rm", "m"]);
    assert!(!n.routed(false), "routed after the second network went");
    assert_eq!(sysctl(&sb.host, "ipv6/conf/all/forwarding"), "1", "n still has IPv6");
    sb.weft_ok(&["network", "rm", "n", "--force"]);
    assert_eq!(sysctl(&sb.host, "ipv4/ip_forward"), "0", "forwarding left on after network rm");
    assert_eq!(sysctl(&sb.host, "ipv6/conf/all/forwarding"), "0");
    assert!(!n.routed(false) && !n.routed(true), "routed after network rm");

    // Again, after an IPv4-only network: IPv6 forwarding is never touched.
    sb.weft_ok(&["network", "create", "v4", "--subnet", "172.26.2.0/24"]);
    assert_eq!(sysctl(&sb.host, "ipv6/conf/all/forwarding"), "0");
    assert!(!n.routed(false), "routed after the third network create");
    sb.weft_ok(&["network", "rm", "v4"]);
    assert_eq!(sysctl(&sb.host, "ipv4/ip_forward"), "0");
}

/// Another stack's bridge (docker0, a libvirt network) keeps switching
/// between its ports while weft guards forwarding: under br_netfilter,
/// which Docker loads, its frames pass the forward hook with the bridge as
/// both interfaces, yet they are switched, not routed.
#[test]
fn other_bridges_still_switch() {
    let mut sb = Sandbox::new();
    set_forwarding(&sb.host, false);
    let brnf = "/proc/sys/net/bridge/bridge-nf-call-iptables";
    if sb.host.try_sh(&format!("test -e {brnf}")) {
        sb.host.sh(&format!("echo 1 > {brnf}"));
    }
    sb.host.sh("ip link add br-other type bridge && ip link set br-other up");
    let (x, y) = (sb.container("x"), sb.container("y"));
    for (i, ns) in [(2, x), (3, y)] {
        sb.host.sh(&format!(
            "ip link add ob{i} type veth peer name eth0 netns {ns} && \
             ip link set ob{i} master br-other up",
            ns = sb.c(ns).name
        ));
        sb.c(ns).sh(&format!("ip addr add 10.251.0.{i}/24 dev eth0 && ip link set eth0 up"));
    }
    let switched = |sb: &Sandbox| {
        let probe = TcpProbe::listen(sb.c(y), "0.0.0.0:7002", Duration::from_secs(3));
        let sent = tcp_send(sb.c(x), "10.251.0.3", 7002, 1);
        assert_eq!(sent, probe.accepted().is_some());
        sent
    };
    assert!(switched(&sb), "the plain bridge does not switch before weft");
    sb.weft_ok(&["network", "create", "n", "--subnet", "172.26.6.0/24"]);
    assert!(switched(&sb), "weft's forwarding guard broke another bridge");
}

/// A host that routed before weft keeps routing, with and after weft.
#[test]
fn a_router_stays_a_router() {
    let sb = Sandbox::new();
    set_forwarding(&sb.host, true);
    let n = neighbours(&sb);
    assert!(n.routed(false) && n.routed(true), "the sandbox host should route");
    sb.weft_ok(&[
        "network",
        "create",
        "n",
        "--subnet",
        "172.26.3.0/24",
        "--subnet6",
        "fd00:26:3::/64",
    ]);
    assert!(n.routed(false) && n.routed(true), "weft stopped the host's own routing");
    sb.weft_ok(&["network", "rm", "n"]);
    assert_eq!(
        sysctl(&sb.host, "ipv4/ip_forward"),
        "1",
        "weft turned off forwarding it did not own"
    );
    assert_eq!(sysctl(&sb.host, "ipv6/conf/all/forwarding"), "1");
    assert!(n.routed(false) && n.routed(true), "no longer routes after network rm");
}

/// Sends one router advertisement (router lifetime 1800 s, no options)
/// from `ns` out of `dev` to all nodes, as a router on the uplink would.
fn send_ra(ns: &Netns, dev: &str) {
    let ifindex: u32 =
        ns.sh(&format!("ip -o link show dev {dev} | cut -d: -f1")).trim().parse().expect("ifindex");
    let fd = ns.fd();
    std::thread::spawn(move || {
        // SAFETY: plain socket calls on a thread that only lives for them;
        // the namespace fd stays open while the caller holds `ns`.
        unsafe {
            assert_eq!(libc::setns(fd, libc::CLONE_NEWNET), 0, "setns");
            let s = libc::socket(libc::AF_INET6, libc::SOCK_RAW, libc::IPPROTO_ICMPV6);
            assert!(s >= 0, "raw ICMPv6 socket: {}", std::io::Error::last_os_error());
            let hops: libc::c_int = 255;
            let set = |opt, v: *const libc::c_void, len| {
                assert_eq!(libc::setsockopt(s, libc::IPPROTO_IPV6, opt, v, len), 0, "setsockopt");
            };
            set(libc::IPV6_MULTICAST_HOPS, (&hops as *const libc::c_int).cast(), 4);
            set(libc::IPV6_MULTICAST_IF, (&ifindex as *const u32).cast(), 4);
            // Type 134, code 0, checksum (the kernel fills it in), hop
            // limit 64, flags 0, router lifetime 1800, reachable and
            // retransmit timers 0.
            let ra: [u8; 16] = [134, 0, 0, 0, 64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0];
            let mut to: libc::sockaddr_in6 = std::mem::zeroed();
            to.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            to.sin6_addr.s6_addr = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
            to.sin6_scope_id = ifindex;
            let n = libc::sendto(
                s,
                ra.as_ptr().cast(),
                ra.len(),
                0,
                (&to as *const libc::sockaddr_in6).cast(),
                std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            );
            assert_eq!(n, 16, "send RA: {}", std::io::Error::last_os_error());
            libc::close(s);
        }
    })
    .join()
    .expect("RA sender");
}

/// The sandbox host's default IPv6 routes learned from router
/// advertisements.
fn ra_default(sb: &Sandbox) -> Vec<String> {
    let routes = sb.host.ip_json("-6 route show default proto ra");
    routes.as_array().unwrap().iter().map(|r| r["dev"].as_str().unwrap_or("").to_string()).collect()
}

#[test]
fn uplink_keeps_its_router_advertisements() {
    let mut sb = Sandbox::new();
    set_forwarding(&sb.host, false);
    sb.wire_outside();
    let out = sb.outside.as_ref().unwrap();
    // Link-local addresses must have finished DAD to send and receive RAs.
    eventually("link-local addresses usable", || {
        !out.sh("ip -6 addr show dev uplink").contains("tentative")
            && !sb.host.sh("ip -6 addr show").contains("tentative")
            && out.sh("ip -6 addr show dev uplink scope link").contains("fe80")
    });
    send_ra(out, "uplink");
    eventually("the host took a default route from the RA", || !ra_default(&sb).is_empty());
    let uplink = ra_default(&sb).remove(0);
    let accept_ra = |sb: &Sandbox| sysctl(&sb.host, &format!("ipv6/conf/{uplink}/accept_ra"));
    assert_eq!(accept_ra(&sb), "1");

    sb.weft_ok(&[
        "network",
        "create",
        "n",
        "--subnet",
        "172.26.4.0/24",
        "--subnet6",
        "fd00:26:4::/64",
    ]);
    assert_eq!(sysctl(&sb.host, "ipv6/conf/all/forwarding"), "1");
    assert_eq!(ra_default(&sb), vec![uplink.clone()], "IPv6 forwarding dropped the RA route");
    assert_eq!(accept_ra(&sb), "2");
    // And the uplink still listens to its router.
    sb.host.sh("ip -6 route del default proto ra");
    send_ra(sb.outside.as_ref().unwrap(), "uplink");
    eventually("a new RA is taken", || ra_default(&sb) == vec![uplink.clone()]);

    sb.weft_ok(&["network", "rm", "n"]);
    assert_eq!(sysctl(&sb.host, "ipv6/conf/all/forwarding"), "0");
    assert_eq!(accept_ra(&sb), "1", "accept_ra not restored");
    assert_eq!(ra_default(&sb), vec![uplink], "route lost after network rm");
}

/// A container sends router advertisements to its bridge: the host must
/// not take a default route (or addresses) from a container. With no IPv6
/// network, weft leaves IPv6 forwarding off, where a bridge with the
/// kernel's default accept_ra=1 would listen to them.
#[test]
fn container_cannot_become_the_hosts_router() {
    let mut sb = Sandbox::new();
    set_forwarding(&sb.host, false);
    sb.weft_ok(&["network", "create", "n", "--subnet", "172.26.5.0/24"]);
    let c = sb.container("evil");
    sb.attach("n", c, &[]);
    // The attacker owns its namespace: IPv6 on, a link-local address of
    // its own (RAs must come from one).
    sb.c(c).sh("sysctl -qw net.ipv6.conf.eth0.disable_ipv6=0 && \
         ip -6 addr add fe80::66/64 dev eth0 nodad");
    send_ra(sb.c(c), "eth0");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        ra_default(&sb).is_empty(),
        "the host routes IPv6 via a container: {:?}",
        ra_default(&sb)
    );
    assert_eq!(sysctl(&sb.host, "ipv6/conf/weft-n/accept_ra"), "0");
}
