//! The names of each network, built from the store's records. Pure: the
//! same networks and endpoints give the same zone, which the unit tests pin.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use weft_model::{Endpoint, EndpointState, Network};

/// Names of one network: container names and aliases, lowercase.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetZone {
    names: HashMap<String, Vec<IpAddr>>,
    ptr: HashMap<IpAddr, String>,
    subnets: Vec<IpNet>,
    /// No way out: nothing is forwarded upstream for it.
    internal: bool,
}

/// Every network's names, and the addresses the server listens on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Zone {
    nets: HashMap<String, NetZone>,
    /// Gateway addresses, each answering for its network.
    pub listen: Vec<(IpAddr, String)>,
}

impl Zone {
    /// Ready endpoints only: one still being attached has no interface yet.
    pub fn build(nets: &[Network], eps: &[Endpoint]) -> Zone {
        let mut zone = Zone::default();
        for n in nets {
            zone.listen.push((IpAddr::V4(n.gateway), n.name.clone()));
            if let Some(g6) = n.gateway6 {
                zone.listen.push((IpAddr::V6(g6), n.name.clone()));
            }
            zone.nets.insert(
                n.name.clone(),
                NetZone { subnets: n.subnets(), internal: n.internal, ..NetZone::default() },
            );
        }
        for ep in eps.iter().filter(|e| e.state == EndpointState::Ready) {
            let Some(nz) = zone.nets.get_mut(&ep.network) else {
                continue;
            };
            let addrs: Vec<IpAddr> = std::iter::once(IpAddr::V4(ep.address.addr()))
                .chain(ep.address6.map(|a| IpAddr::V6(a.addr())))
                .collect();
            for name in std::iter::once(&ep.container).chain(&ep.aliases) {
                let list = nz.names.entry(name.to_ascii_lowercase()).or_default();
                list.extend(&addrs);
                list.sort();
                list.dedup();
            }
            for a in &addrs {
                nz.ptr.insert(*a, ep.container.clone());
            }
        }
        zone
    }

    pub fn network(&self, name: &str) -> Option<&NetZone> {
        self.nets.get(name)
    }
}

impl NetZone {
    /// Addresses of `name` (case-insensitive, without the trailing dot).
    pub fn lookup(&self, name: &str) -> Option<&[IpAddr]> {
        self.names.get(&name.to_ascii_lowercase()).map(Vec::as_slice)
    }

    /// The container name of an address of this network.
    pub fn reverse(&self, ip: IpAddr) -> Option<&str> {
        self.ptr.get(&ip).map(String::as_str)
    }

    /// An internal network: its names are answered, no other name is.
    pub fn internal(&self) -> bool {
        self.internal
    }

    /// Whether `ip` is in one of the network's subnets: its reverse name is
    /// ours to answer, found or not.
    pub fn covers(&self, ip: IpAddr) -> bool {
        self.subnets.iter().any(|s| s.contains(&ip))
    }
}

/// The address a reverse name stands for: `4.3.2.1.in-addr.arpa` or the
/// 32 nibbles of `ip6.arpa`, case-insensitive, without the trailing dot.
pub fn parse_reverse(name: &str) -> Option<IpAddr> {
    let lower = name.to_ascii_lowercase();
    if let Some(v4) = lower.strip_suffix(".in-addr.arpa") {
        let mut octets: Vec<u8> = v4.split('.').map(|o| o.parse().ok()).collect::<Option<_>>()?;
        if octets.len() != 4 {
            return None;
        }
        octets.reverse();
        return Some(IpAddr::from([octets[0], octets[1], octets[2], octets[3]]));
    }
    let v6 = lower.strip_suffix(".ip6.arpa")?;
    let nibbles: Vec<u8> = v6
        .split('.')
        .map(|n| if n.len() == 1 { u8::from_str_radix(n, 16).ok() } else { None })
        .collect::<Option<_>>()?;
    if nibbles.len() != 32 {
        return None;
    }
    let mut b = [0u8; 16];
    for (i, pair) in nibbles.rchunks(2).enumerate() {
        // rchunks from the end: the last two labels are the first byte.
        b[i] = (pair[1] << 4) | pair[0];
    }
    Some(IpAddr::from(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_model::network::NetworkSpec;
    use weft_model::Mac;

    fn net(name: &str, subnet: &str, v6: Option<&str>) -> Network {
        NetworkSpec {
            name: name.into(),
            subnet6: v6.map(|s| s.parse().unwrap()),
            ..Default::default()
        }
        .build(subnet.parse().unwrap(), 0)
        .unwrap()
    }

    fn ep(net: &str, c: &str, ip: &str, ip6: Option<&str>, aliases: &[&str]) -> Endpoint {
        Endpoint {
            container: c.into(),
            network: net.into(),
            ifname: "eth0".into(),
            address: format!("{ip}/24").parse().unwrap(),
            address6: ip6.map(|a| format!("{a}/64").parse().unwrap()),
            mac: Mac::derive(&[net, c]),
            gateway: None,
            gateway6: None,
            host_veth: "v".into(),
            netns: "/x".into(),
            netns_id: None,
            node: None,
            state: EndpointState::Ready,
            boot_id: String::new(),
            pid: 0,
            created: 0,
            ports: Vec::new(),
            aliases: aliases.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn names_aliases_reverse_and_isolation() {
        let nets = [net("a", "10.1.0.0/24", Some("fd00:1::/64")), net("b", "10.2.0.0/24", None)];
        let mut creating = ep("a", "half", "10.1.0.9", None, &[]);
        creating.state = EndpointState::Creating;
        let eps = [
            ep("a", "Web", "10.1.0.2", Some("fd00:1::2"), &["www", "front.svc"]),
            ep("a", "db", "10.1.0.3", None, &[]),
            ep("b", "other", "10.2.0.2", None, &["www"]),
            creating,
        ];
        let z = Zone::build(&nets, &eps);
        let a = z.network("a").unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(a.lookup("web").unwrap(), [ip("10.1.0.2"), ip("fd00:1::2")]);
        assert_eq!(a.lookup("WWW").unwrap(), a.lookup("web").unwrap());
        assert_eq!(a.lookup("front.svc").unwrap().len(), 2);
        assert!(a.lookup("other").is_none(), "no names across networks");
        assert!(a.lookup("half").is_none(), "not before it is ready");
        assert_eq!(z.network("b").unwrap().lookup("www").unwrap(), [ip("10.2.0.2")]);
        assert_eq!(a.reverse(ip("10.1.0.3")), Some("db"));
        assert_eq!(a.reverse(ip("10.2.0.2")), None);
        assert!(a.covers(ip("10.1.0.200")) && !a.covers(ip("10.2.0.2")));
        assert!(!a.internal());
        let mut i = net("i", "10.3.0.0/24", None);
        i.internal = true;
        assert!(Zone::build(&[i], &[]).network("i").unwrap().internal(), "internal carried over");
        assert_eq!(
            z.listen,
            [
                (ip("10.1.0.1"), "a".to_string()),
                (ip("fd00:1::1"), "a".into()),
                (ip("10.2.0.1"), "b".into())
            ]
        );
    }

    #[test]
    fn reverse_names() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(parse_reverse("2.0.1.10.in-addr.arpa"), ip("10.1.0.2"));
        assert_eq!(parse_reverse("2.0.1.10.IN-ADDR.ARPA"), ip("10.1.0.2"));
        let v6 = "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.0.0.d.f.ip6.arpa";
        assert_eq!(parse_reverse(v6), ip("fd00:1::2"));
        for bad in ["1.2.3.in-addr.arpa", "256.0.0.1.in-addr.arpa", "x.ip6.arpa", "example.com", ""]
        {
            assert_eq!(parse_reverse(bad), None, "{bad}");
        }
    }
}
