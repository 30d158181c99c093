//! Real packets through weft's rules. Inside a sandbox namespace (the
//! "host") three bridges carry containers, each a namespace of its own, and
//! a veth leads to an "outside" namespace standing for the internet:
//!
//! ```text
//!   a1 a2 (net a, IPv4+IPv6)    b1 (net b)    i1 i2 (net i, internal)
//!      \ /                        |              \ /
//!    weft-a                    weft-b          weft-i
//!          \____________ host (sandbox) ___________/
//!                              | up0 192.0.2.1 / 2001:db8::1
//!                          outside 192.0.2.2 / 2001:db8::2
//! ```
//!
//! Every container has a default route via its bridge, the internal one's
//! too (a container may add one itself): only the firewall stops it. The
//! outside has a route back to the containers, so without masquerade its
//! server would see their own addresses. A control round before weft's
//! table exists shows that each blocked path really works without it.

mod sandbox;

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use sandbox::{cmd, sandbox, set_sysctl, Ns};
use weft_firewall::{Firewall, NetRules};

/// How long a connection attempt may take before it counts as dropped.
const PATIENCE: Duration = Duration::from_millis(800);

struct Container {
    ns: Ns,
    ip: IpAddr,
    ip6: Option<IpAddr>,
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A bridge with the gateway addresses of a network, and its NetRules.
fn network(name: &str, prefix: &str, prefix6: Option<&str>, internal: bool) -> NetRules {
    let bridge = format!("weft-{name}");
    cmd(&format!("ip link add {bridge} type bridge"));
    cmd(&format!("ip addr add {prefix}.1/24 dev {bridge}"));
    if let Some(p6) = prefix6 {
        cmd(&format!("ip -6 addr add {p6}::1/64 dev {bridge} nodad"));
    }
    cmd(&format!("ip link set {bridge} up"));
    NetRules {
        name: name.into(),
        bridge,
        subnet: format!("{prefix}.0/24").parse().unwrap(),
        subnet6: prefix6.map(|p| format!("{p}::/64").parse().unwrap()),
        internal,
        open: false,
    }
}

/// A container namespace plugged into `net` by a veth pair, host end `host_if`.
fn container(net: &NetRules, host_if: &str, host: u8, v6: bool) -> Container {
    let ns = Ns::new();
    cmd(&format!("ip link add {host_if} type veth peer name eth0 netns {}", ns.tid));
    cmd(&format!("ip link set {host_if} master {} up", net.bridge));
    let v4 = net.subnet.network().octets();
    let (addr, gw) = (
        format!("{}.{}.{}.{host}", v4[0], v4[1], v4[2]),
        format!("{}.{}.{}.1", v4[0], v4[1], v4[2]),
    );
    ns.cmd(&format!("ip addr add {addr}/24 dev eth0"));
    ns.cmd("ip link set eth0 up");
    ns.cmd(&format!("ip route add default via {gw}"));
    let ip6 = match (v6, net.subnet6) {
        (true, Some(s6)) => {
            let (a6, gw6) = (format!("{}{host:x}", s6.network()), format!("{}1", s6.network()));
            ns.cmd(&format!("ip -6 addr add {a6}/64 dev eth0 nodad"));
            ns.cmd(&format!("ip -6 route add default via {gw6}"));
            Some(ip(&a6))
        }
        _ => None,
    };
    Container { ns, ip: ip(&addr), ip6 }
}

/// The outside world: a namespace behind the host's uplink `up0`.
fn outside() -> Container {
    let ns = Ns::new();
    cmd(&format!("ip link add up0 type veth peer name eth0 netns {}", ns.tid));
    cmd("ip addr add 192.0.2.1/24 dev up0");
    cmd("ip -6 addr add 2001:db8::1/64 dev up0 nodad");
    cmd("ip link set up0 up");
    ns.cmd("ip addr add 192.0.2.2/24 dev eth0");
    ns.cmd("ip -6 addr add 2001:db8::2/64 dev eth0 nodad");
    ns.cmd("ip link set eth0 up");
    ns.cmd("ip route add default via 192.0.2.1");
    ns.cmd("ip -6 route add default via 2001:db8::1");
    Container { ns, ip: ip("192.0.2.2"), ip6: Some(ip("2001:db8::2")) }
}

/// Connects over TCP from `from` to a server listening on `addr` in `to`;
/// returns the client address the server saw. A dropped SYN gives TimedOut.
fn connect(from: &Container, to: &Container, addr: IpAddr) -> Result<IpAddr, ErrorKind> {
    let listener = to.ns.run(move || TcpListener::bind(SocketAddr::new(addr, 0)).unwrap());
    let server = listener.local_addr().unwrap();
    let stream =
        from.ns.run(move || TcpStream::connect_timeout(&server, PATIENCE).map_err(|e| e.kind()))?;
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        match listener.accept() {
            Ok((_, peer)) => {
                drop(stream);
                return Ok(peer.ip());
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("connected to {server} but the server saw nothing: {e}"),
        }
    }
}

#[test]
fn packets_obey_the_rules() {
    sandbox(|| {
        let nets = [
            network("a", "10.89.0", Some("fd00:a"), false),
            network("b", "10.89.1", None, false),
            network("i", "10.89.2", None, true),
        ];
        let a1 = container(&nets[0], "va1", 2, true);
        let a2 = container(&nets[0], "va2", 3, true);
        let b1 = container(&nets[1], "vb1", 2, false);
        let i1 = container(&nets[2], "vi1", 2, false);
        let i2 = container(&nets[2], "vi2", 3, false);
        let out = outside();
        let (out4, out6) = (out.ip, out.ip6.unwrap());
        set_sysctl("/proc/sys/net/ipv4/ip_forward", "1");
        set_sysctl("/proc/sys/net/ipv6/conf/all/forwarding", "1");

        // Control: without weft's table everything is routed, nothing rewritten.
        assert_eq!(connect(&a1, &out, out4), Ok(a1.ip));
        assert_eq!(connect(&a1, &b1, b1.ip), Ok(a1.ip));
        assert_eq!(connect(&i1, &out, out4), Ok(i1.ip));
        assert_eq!(connect(&out, &a1, a1.ip), Ok(out4));

        let fw = Firewall::new();
        fw.apply(&nets).unwrap();
        let dropped = Err(ErrorKind::TimedOut);

        // Masquerade: the outside sees the host's uplink address.
        assert_eq!(connect(&a1, &out, out4), Ok(ip("192.0.2.1")));
        assert_eq!(connect(&a1, &out, out6), Ok(ip("2001:db8::1")));
        assert_eq!(connect(&b1, &out, out4), Ok(ip("192.0.2.1")));
        // One network is one switch, internal ones included.
        assert_eq!(connect(&a1, &a2, a2.ip), Ok(a1.ip));
        assert_eq!(connect(&a1, &a2, a2.ip6.unwrap()), Ok(a1.ip6.unwrap()));
        assert_eq!(connect(&i1, &i2, i2.ip), Ok(i1.ip));
        // Isolation between networks, both ways.
        assert_eq!(connect(&a1, &b1, b1.ip), dropped);
        assert_eq!(connect(&b1, &a1, a1.ip), dropped);
        assert_eq!(connect(&a1, &i1, i1.ip), dropped);
        // Internal: no way out, no way in.
        assert_eq!(connect(&i1, &out, out4), dropped);
        assert_eq!(connect(&out, &i1, i1.ip), dropped);
        // No unsolicited inbound, IPv4 or IPv6.
        assert_eq!(connect(&out, &a1, a1.ip), dropped);
        assert_eq!(connect(&out, &a1, a1.ip6.unwrap()), dropped);

        // Removing the table restores plain routing.
        fw.remove().unwrap();
        assert_eq!(connect(&a1, &b1, b1.ip), Ok(a1.ip));
    });
}
