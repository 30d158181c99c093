//! IP address management arithmetic: which addresses of a subnet may be
//! handed out, the next free one after a hint, and free subnets from a pool.
//! Storage and locking live in weft-store; this module only decides.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net};

/// First and last assignable address as integers. IPv4 excludes the network
/// and broadcast addresses; IPv6 excludes the subnet-router anycast address
/// (the all-zero host part). None when nothing is assignable.
pub fn host_range(subnet: IpNet) -> Option<(u128, u128)> {
    let (net, last) = match subnet {
        IpNet::V4(n) => {
            if n.prefix_len() > 30 {
                return None;
            }
            (u128::from(u32::from(n.network())), u128::from(u32::from(n.broadcast())) - 1)
        }
        IpNet::V6(n) => {
            if n.prefix_len() > 127 {
                return None;
            }
            (u128::from(n.network()), u128::from(n.broadcast()))
        }
    };
    Some((net + 1, last))
}

pub fn capacity(subnet: IpNet) -> u128 {
    host_range(subnet).map_or(0, |(a, b)| b - a + 1)
}

pub fn is_host_address(subnet: IpNet, addr: IpAddr) -> bool {
    let Some((first, last)) = host_range(subnet) else { return false };
    let a = to_u128(addr);
    subnet.contains(&addr) && (first..=last).contains(&a)
}

pub fn first_host_v4(subnet: Ipv4Net) -> Option<Ipv4Addr> {
    host_range(IpNet::V4(subnet)).map(|(a, _)| Ipv4Addr::from(a as u32))
}

pub fn to_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    }
}

pub fn from_u128(subnet: IpNet, v: u128) -> IpAddr {
    match subnet {
        IpNet::V4(_) => IpAddr::V4(Ipv4Addr::from(v as u32)),
        IpNet::V6(_) => IpAddr::V6(Ipv6Addr::from(v)),
    }
}

/// Picks the first free address of `subnet`, scanning from just after `hint`
/// (the last address handed out) and wrapping around, so a freed address is
/// not reused at once (peers may still cache its MAC). `reserved` (gateways)
/// and anything `is_used` reports are skipped. At most `max_probes` candidates
/// are tried, which bounds the work on huge IPv6 subnets; None means full.
pub fn next_free(
    subnet: IpNet,
    reserved: &[IpAddr],
    hint: Option<IpAddr>,
    max_probes: u128,
    mut is_used: impl FnMut(IpAddr) -> bool,
) -> Option<IpAddr> {
    let (first, last) = host_range(subnet)?;
    let size = last - first + 1;
    let start = match hint.map(to_u128) {
        Some(h) if h >= first && h < last => h + 1,
        _ => first,
    };
    let reserved: Vec<u128> = reserved.iter().map(|a| to_u128(*a)).collect();
    for i in 0..size.min(max_probes) {
        let v = first + (start - first + i) % size;
        if reserved.contains(&v) {
            continue;
        }
        let addr = from_u128(subnet, v);
        if !is_used(addr) {
            return Some(addr);
        }
    }
    None
}

pub fn overlaps(a: IpNet, b: IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The default pool: 10.89.0.0/24, 10.89.1.0/24, ... 10.89.255.0/24.
pub fn default_pool() -> impl Iterator<Item = Ipv4Net> {
    (0..=255u8).map(|i| Ipv4Net::new(Ipv4Addr::new(10, 89, i, 0), 24).expect("valid /24"))
}

/// First pool subnet that overlaps none of `taken` (other networks, host
/// routes and addresses).
pub fn pick_subnet(mut pool: impl Iterator<Item = Ipv4Net>, taken: &[IpNet]) -> Option<Ipv4Net> {
    pool.find(|s| !taken.iter().any(|t| overlaps(IpNet::V4(*s), *t)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn never_network_or_broadcast() {
        let n = net("10.0.0.0/30");
        assert_eq!(capacity(n), 2);
        assert!(!is_host_address(n, "10.0.0.0".parse().unwrap()));
        assert!(!is_host_address(n, "10.0.0.3".parse().unwrap()));
        assert!(is_host_address(n, "10.0.0.1".parse().unwrap()));
        assert_eq!(capacity(net("10.0.0.0/31")), 0);
    }

    #[test]
    fn pool_skips_taken() {
        let taken = [net("10.89.0.0/16")];
        assert_eq!(pick_subnet(default_pool(), &taken), None);
        let taken = [net("10.89.0.0/24"), net("10.89.1.128/25")];
        assert_eq!(pick_subnet(default_pool(), &taken).unwrap().to_string(), "10.89.2.0/24");
        let taken = [net("0.0.0.0/0")];
        assert_eq!(pick_subnet(default_pool(), &taken), None);
    }

    #[test]
    fn round_robin_after_hint() {
        let n = net("10.0.0.0/29"); // hosts .1-.6
        let gw: IpAddr = "10.0.0.1".parse().unwrap();
        let got = next_free(n, &[gw], Some("10.0.0.4".parse().unwrap()), u128::MAX, |_| false);
        assert_eq!(got, Some("10.0.0.5".parse().unwrap()));
        let got = next_free(n, &[gw], Some("10.0.0.6".parse().unwrap()), u128::MAX, |_| false);
        assert_eq!(got, Some("10.0.0.2".parse().unwrap()));
    }

    proptest! {
        /// Allocating until full hands out every host address exactly once,
        /// never the reserved, network or broadcast address.
        #[test]
        fn fills_subnet_exactly(prefix in 24u8..=30, third in 0u8..=255, hint_off in 0u32..300) {
            let s = IpNet::V4(Ipv4Net::new(Ipv4Addr::new(10, 7, third, 0), prefix).unwrap());
            let gw = IpAddr::V4(first_host_v4(match s { IpNet::V4(v) => v, _ => unreachable!() }).unwrap());
            let mut used: HashSet<IpAddr> = HashSet::new();
            let mut hint = Some(from_u128(s, to_u128(s.network()) + u128::from(hint_off)));
            while let Some(a) = next_free(s, &[gw], hint, u128::MAX, |a| used.contains(&a)) {
                prop_assert!(is_host_address(s, a));
                prop_assert_ne!(a, gw);
                prop_assert!(used.insert(a), "handed out twice: {}", a);
                hint = Some(a);
            }
            prop_assert_eq!(used.len() as u128, capacity(s) - 1);
        }

        #[test]
        fn v6_stays_inside(prefix in 64u8..=120) {
            let s = IpNet::V6(format!("fd00:1::/{prefix}").parse().unwrap());
            let a = next_free(s, &[], None, 16, |_| false).unwrap();
            prop_assert!(s.contains(&a));
            prop_assert_ne!(a, s.network());
        }
    }
}
