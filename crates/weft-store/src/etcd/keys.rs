//! Where every record lives in etcd. `{p}` is the configured prefix
//! (default `/weft/`); every value is JSON unless said otherwise.
//!
//! | key                                          | value                 | lease            |
//! |----------------------------------------------|-----------------------|------------------|
//! | `{p}networks/{name}`                         | `Network`             | none             |
//! | `{p}netlock`                                 | name of the last network created or removed | none |
//! | `{p}nodes/{node}`                            | `Node`                | the node's       |
//! | `{p}nodemeta/{node}/{key}`                   | plain text            | none             |
//! | `{p}endpoints/{network}/{container}/{ifname}`| `Endpoint`            | none             |
//! | `{p}ipam/{network}/v4/{8 hex digits}`        | endpoint key (claim)  | none             |
//! | `{p}ipam/{network}/v6/{32 hex digits}`       | endpoint key (claim)  | none             |
//! | `{p}ipam/{network}/mac/{12 hex digits}`      | endpoint key (claim)  | none             |
//! | `{p}ipam/{network}/blocks/{8 hex digits}`    | owning node's name    | none             |
//! | `{p}ipam/{network}/hint/{node}`              | last IPv4 address the node handed out | none |
//! | `{p}ports/{node}`                            | host ports the node's endpoints publish | none |
//!
//! `netlock` is an optimistic lock: every network create and remove rewrites
//! it and compares its revision, so two hosts cannot both create networks
//! with overlapping subnets. Claims are the uniqueness guarantee for
//! addresses and MACs: the endpoint record and its claims are written in one
//! transaction that requires the claims to be absent, so nothing is handed
//! out twice whatever the block bookkeeping says. Blocks (`/26` or the subnet
//! if smaller) only let each host allocate among addresses nobody else is
//! trying, without an etcd round trip per candidate. Addresses are fixed-width
//! hex so that keys sort numerically and a block's claims are one range read.
//! Only the node record is attached to the node's lease: it says the node
//! is reachable. What a host writes for its endpoints is not: a host whose
//! lease lapsed (partitioned from etcd, agent stopped) may still run those
//! containers, so their addresses stay taken until the node is removed
//! (`weft node rm`, or an agent reaping it after its grace period; see
//! `Cluster::reap_node` and docs/ownership.md). `nodemeta/{node}/seen`
//! is when its agent last renewed its lease.

use std::net::{Ipv4Addr, Ipv6Addr};

use weft_model::{EndpointKey, Mac};

/// The configured prefix, always ending in `/`.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

/// What a key under the prefix is, for watchers and snapshots.
#[derive(Debug, PartialEq, Eq)]
pub enum Kind {
    Network(String),
    Node(String),
    Endpoint(EndpointKey),
    /// Claims, blocks, hints, metadata, the lock.
    Other,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        let mut prefix = prefix.to_string();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        Keys { prefix }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn networks(&self) -> String {
        format!("{}networks/", self.prefix)
    }

    pub fn network(&self, name: &str) -> String {
        format!("{}networks/{name}", self.prefix)
    }

    pub fn netlock(&self) -> String {
        format!("{}netlock", self.prefix)
    }

    pub fn nodes(&self) -> String {
        format!("{}nodes/", self.prefix)
    }

    pub fn node(&self, name: &str) -> String {
        format!("{}nodes/{name}", self.prefix)
    }

    pub fn node_meta_dir(&self, node: &str) -> String {
        format!("{}nodemeta/{node}/", self.prefix)
    }

    pub fn node_meta(&self, node: &str, key: &str) -> String {
        format!("{}nodemeta/{node}/{key}", self.prefix)
    }

    /// Every node's metadata.
    pub fn node_meta_all(&self) -> String {
        format!("{}nodemeta/", self.prefix)
    }

    /// (node, key) of a metadata key.
    pub fn parse_node_meta<'a>(&self, key: &'a str) -> Option<(&'a str, &'a str)> {
        key.strip_prefix(self.prefix.as_str())?.strip_prefix("nodemeta/")?.split_once('/')
    }

    /// All endpoints, or with `Some(network)` those of one network.
    pub fn endpoints(&self, network: Option<&str>) -> String {
        match network {
            Some(n) => format!("{}endpoints/{n}/", self.prefix),
            None => format!("{}endpoints/", self.prefix),
        }
    }

    pub fn endpoint(&self, k: &EndpointKey) -> String {
        format!("{}endpoints/{}/{}/{}", self.prefix, k.network, k.container, k.ifname)
    }

    pub fn ipam(&self, network: &str) -> String {
        format!("{}ipam/{network}/", self.prefix)
    }

    pub fn claims4(&self, network: &str) -> String {
        format!("{}ipam/{network}/v4/", self.prefix)
    }

    pub fn claim4(&self, network: &str, a: Ipv4Addr) -> String {
        format!("{}{:08x}", self.claims4(network), u32::from(a))
    }

    /// Claims of `[start, end)`: a range whose end may be 2^32.
    pub fn claims4_range(&self, network: &str, start: u32, end: u64) -> (String, String) {
        let from = format!("{}{start:08x}", self.claims4(network));
        let to = match u32::try_from(end) {
            Ok(e) => format!("{}{e:08x}", self.claims4(network)),
            Err(_) => prefix_end(&self.claims4(network)),
        };
        (from, to)
    }

    pub fn claims6(&self, network: &str) -> String {
        format!("{}ipam/{network}/v6/", self.prefix)
    }

    pub fn claim6(&self, network: &str, a: Ipv6Addr) -> String {
        format!("{}{:032x}", self.claims6(network), u128::from(a))
    }

    pub fn mac_claim(&self, network: &str, mac: Mac) -> String {
        let m = mac.0;
        format!(
            "{}ipam/{network}/mac/{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            self.prefix, m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }

    pub fn blocks(&self, network: &str) -> String {
        format!("{}ipam/{network}/blocks/", self.prefix)
    }

    pub fn block(&self, network: &str, start: u32) -> String {
        format!("{}{start:08x}", self.blocks(network))
    }

    pub fn hint(&self, network: &str, node: &str) -> String {
        format!("{}ipam/{network}/hint/{node}", self.prefix)
    }

    pub fn ports(&self, node: &str) -> String {
        format!("{}ports/{node}", self.prefix)
    }

    /// The block start encoded in a key from [`Keys::blocks`].
    pub fn parse_block(&self, network: &str, key: &str) -> Option<u32> {
        let hex = key.strip_prefix(&self.blocks(network))?;
        (hex.len() == 8).then(|| u32::from_str_radix(hex, 16).ok()).flatten()
    }

    /// The address encoded in a key from [`Keys::claim4`].
    pub fn parse_claim4(&self, network: &str, key: &str) -> Option<Ipv4Addr> {
        let hex = key.strip_prefix(&self.claims4(network))?;
        (hex.len() == 8).then(|| u32::from_str_radix(hex, 16).ok().map(Ipv4Addr::from)).flatten()
    }

    /// The address encoded in a key from [`Keys::claim6`].
    pub fn parse_claim6(&self, network: &str, key: &str) -> Option<Ipv6Addr> {
        let hex = key.strip_prefix(&self.claims6(network))?;
        (hex.len() == 32).then(|| u128::from_str_radix(hex, 16).ok().map(Ipv6Addr::from)).flatten()
    }

    pub fn kind(&self, key: &str) -> Kind {
        let Some(rest) = key.strip_prefix(&self.prefix) else { return Kind::Other };
        if let Some(name) = rest.strip_prefix("networks/") {
            return Kind::Network(name.to_string());
        }
        if let Some(name) = rest.strip_prefix("nodes/") {
            return Kind::Node(name.to_string());
        }
        if rest.starts_with("endpoints/") {
            return self.parse_endpoint(key).map_or(Kind::Other, Kind::Endpoint);
        }
        Kind::Other
    }

    /// The endpoint a key from [`Keys::endpoint`] (or a claim's value) names.
    pub fn parse_endpoint(&self, key: &str) -> Option<EndpointKey> {
        let rest = key.strip_prefix(&self.endpoints(None))?;
        let mut parts = rest.split('/');
        let (network, container, ifname) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || [network, container, ifname].iter().any(|p| p.is_empty()) {
            return None;
        }
        Some(EndpointKey {
            network: network.to_string(),
            container: container.to_string(),
            ifname: ifname.to_string(),
        })
    }
}

/// The smallest key after every key starting with `prefix`, as etcd's
/// `--prefix` computes it.
pub fn prefix_end(prefix: &str) -> String {
    let mut bytes = prefix.as_bytes().to_vec();
    while let Some(last) = bytes.pop() {
        if last < 0xff {
            bytes.push(last + 1);
            return String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    "\0".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let k = Keys::new("/weft");
        let ep = EndpointKey { network: "n".into(), container: "c".into(), ifname: "eth0".into() };
        assert_eq!(k.endpoint(&ep), "/weft/endpoints/n/c/eth0");
        assert_eq!(k.kind(&k.endpoint(&ep)), Kind::Endpoint(ep.clone()));
        assert_eq!(k.kind("/weft/networks/n"), Kind::Network("n".into()));
        assert_eq!(k.kind("/weft/nodes/a"), Kind::Node("a".into()));
        assert_eq!(k.kind("/weft/ipam/n/v4/0a000002"), Kind::Other);
        assert_eq!(k.kind("/other/networks/n"), Kind::Other);
        assert_eq!(k.claim4("n", "10.0.0.2".parse().unwrap()), "/weft/ipam/n/v4/0a000002");
        assert_eq!(
            k.parse_claim4("n", "/weft/ipam/n/v4/0a000002"),
            Some("10.0.0.2".parse().unwrap())
        );
        let a6: Ipv6Addr = "fd00::2".parse().unwrap();
        assert_eq!(k.parse_claim6("n", &k.claim6("n", a6)), Some(a6));
        assert_eq!(k.block("n", 0x0a00_0040), "/weft/ipam/n/blocks/0a000040");
        assert_eq!(k.parse_block("n", "/weft/ipam/n/blocks/0a000040"), Some(0x0a00_0040));
        assert_eq!(
            k.mac_claim("n", Mac([2, 0x42, 0, 0, 0, 0xff])),
            "/weft/ipam/n/mac/0242000000ff"
        );
    }

    #[test]
    fn claim_ranges_sort_numerically() {
        let k = Keys::new("/weft/");
        let (from, to) = k.claims4_range("n", 0x0a00_0000, 0x0a00_0040);
        assert!(from <= k.claim4("n", "10.0.0.0".parse().unwrap()));
        assert!(k.claim4("n", "10.0.0.63".parse().unwrap()) < to);
        assert!(k.claim4("n", "10.0.0.64".parse().unwrap()) >= to);
        let (_, to) = k.claims4_range("n", 0xffff_ffc0, 1 << 32);
        assert_eq!(to, "/weft/ipam/n/v40");
        assert!(k.claim4("n", "255.255.255.254".parse().unwrap()) < to);
    }

    #[test]
    fn network_prefixes_do_not_nest() {
        let k = Keys::new("/weft/");
        assert!(!k
            .endpoint(&EndpointKey {
                network: "ab".into(),
                container: "c".into(),
                ifname: "e".into()
            })
            .starts_with(&k.endpoints(Some("a"))));
        assert_eq!(prefix_end("/weft/"), "/weft0");
    }
}
