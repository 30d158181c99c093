//! Cluster-wide address allocation without an etcd round trip per candidate.
//!
//! Each host allocates IPv4 addresses from blocks it owns (a `/26`, or the
//! whole subnet when that is smaller): it reads the claims of its blocks
//! once, picks locally, and writes the endpoint with its claim in one
//! transaction. When its blocks are full it claims a free block with a
//! create-if-absent transaction; when no block is free it takes any free
//! address of the subnet. The claim keys, not the blocks, guarantee that no
//! address is handed out twice. IPv6 addresses mirror the IPv4 one (host
//! part = IPv4 offset in its subnet), so they need no blocks and collide
//! only with addresses someone chose by hand.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use weft_model::{ipam, Network};

use super::client::{key_str, ranges, Conn, Fail, MAX_TXN_OPS};
use crate::StoreError;

/// Smallest block a host claims: 64 addresses.
pub const BLOCK_PREFIX: u8 = 26;
/// Blocks whose claims one read fetches while looking for a free address.
const BLOCKS_PER_READ: usize = 8;
/// IPv6 subnets are too large to scan; give up after this many taken
/// candidates, as the single-host store does.
const V6_MAX_PROBES: u128 = 1 << 16;

/// The blocks of an IPv4 subnet.
#[derive(Debug, Clone, Copy)]
pub struct Blocks {
    subnet: Ipv4Net,
    prefix: u8,
}

impl Blocks {
    pub fn new(subnet: Ipv4Net) -> Blocks {
        Blocks { subnet, prefix: subnet.prefix_len().max(BLOCK_PREFIX) }
    }

    pub fn size(&self) -> u64 {
        1 << (32 - self.prefix)
    }

    /// Start of the block holding `a`.
    pub fn of(&self, a: Ipv4Addr) -> u32 {
        let mask = !((self.size() - 1) as u32);
        u32::from(a) & mask
    }

    /// The lowest block nobody owns. `owned` is sorted, so this walks the
    /// owned blocks once instead of every block of a large subnet.
    pub fn first_free(&self, owned: &BTreeMap<u32, String>) -> Option<u32> {
        let first = u64::from(u32::from(self.subnet.network()));
        let end = u64::from(u32::from(self.subnet.broadcast())) + 1;
        let mut candidate = first;
        for &start in owned.keys() {
            let start = u64::from(start);
            if start > candidate {
                break;
            }
            if start == candidate {
                candidate += self.size();
            }
        }
        (candidate < end).then_some(candidate as u32)
    }

    /// Usable addresses of the block at `start`, in order.
    pub fn hosts(&self, start: u32, gateway: Ipv4Addr) -> impl Iterator<Item = Ipv4Addr> {
        let subnet = IpNet::V4(self.subnet);
        (u64::from(start)..u64::from(start) + self.size())
            .map(|a| Ipv4Addr::from(a as u32))
            .filter(move |a| *a != gateway && ipam::is_host_address(subnet, IpAddr::V4(*a)))
    }
}

/// The order in which a host searches its blocks: from the block holding
/// the hint (the last address it handed out) on, wrapping around, and that
/// block once more at the end for its addresses before the hint.
pub fn search_order(own: &[u32], blocks: &Blocks, hint: Option<Ipv4Addr>) -> Vec<u32> {
    let at = hint.and_then(|h| own.iter().position(|b| *b == blocks.of(h)));
    match at {
        Some(i) => {
            let mut order: Vec<u32> = own[i..].iter().chain(&own[..i]).copied().collect();
            order.push(own[i]);
            order
        }
        None => own.to_vec(),
    }
}

/// The IPv6 address that mirrors `v4`: same offset from its subnet's start.
pub fn mirror_v6(
    subnet4: Ipv4Net,
    v4: Ipv4Addr,
    subnet6: Ipv6Net,
    gateway6: Ipv6Addr,
) -> Option<Ipv6Addr> {
    let offset = u128::from(u32::from(v4) - u32::from(subnet4.network()));
    let host_bits = 128 - u32::from(subnet6.prefix_len());
    if host_bits < 128 && offset >> host_bits != 0 {
        return None;
    }
    let a = Ipv6Addr::from(u128::from(subnet6.network()) + offset);
    (a != gateway6 && ipam::is_host_address(IpNet::V6(subnet6), IpAddr::V6(a))).then_some(a)
}

/// What the allocator knows of one network from the first read.
pub struct NetView<'a> {
    pub net: &'a Network,
    pub net_rev: i64,
    pub node: &'a str,
    pub node_rev: i64,
    /// Every claimed block and its owner.
    pub blocks: BTreeMap<u32, String>,
    pub hint: Option<Ipv4Addr>,
}

/// Picks a free IPv4 address for `view.node`: in its blocks, else in a newly
/// claimed block, else anywhere in the subnet.
pub async fn pick_v4(conn: &Conn, view: &mut NetView<'_>) -> Result<Ipv4Addr, Fail> {
    let blocks = Blocks::new(view.net.subnet);
    let gateway = view.net.gateway;
    let own: Vec<u32> =
        view.blocks.iter().filter(|(_, n)| *n == view.node).map(|(b, _)| *b).collect();
    if let Some(a) = pick_in_blocks(conn, view, &blocks, &own).await? {
        return Ok(a);
    }
    // Every new block is tried once; a block lost to another host is skipped.
    while let Some(start) = blocks.first_free(&view.blocks) {
        if claim_block(conn, view, start).await? {
            if let Some(a) = pick_in_blocks(conn, view, &blocks, &[start]).await? {
                return Ok(a);
            }
        }
        // Ours but full (of addresses others took when no block was free),
        // or another host's now: either way first_free moves on.
        view.blocks.entry(start).or_default();
    }
    // No block is free: any free address of the subnet will do.
    let (from, to) = conn.keys.claims4_range(
        &view.net.name,
        u32::from(view.net.subnet.network()),
        u64::from(u32::from(view.net.subnet.broadcast())) + 1,
    );
    let taken = claimed4(conn, &view.net.name, vec![(from, to)]).await?;
    let subnet = IpNet::V4(view.net.subnet);
    let hint = view.hint.map(IpAddr::V4);
    match ipam::next_free(subnet, &[IpAddr::V4(gateway)], hint, u128::MAX, |a| match a {
        IpAddr::V4(v) => taken.contains(&v),
        IpAddr::V6(_) => true,
    }) {
        Some(IpAddr::V4(a)) => Ok(a),
        _ => Err(StoreError::SubnetExhausted { network: view.net.name.clone(), subnet }.into()),
    }
}

/// A free address in `own` blocks, searched after the hint, reading the
/// claims of a few blocks per round trip.
async fn pick_in_blocks(
    conn: &Conn,
    view: &NetView<'_>,
    blocks: &Blocks,
    own: &[u32],
) -> Result<Option<Ipv4Addr>, Fail> {
    let order = search_order(own, blocks, view.hint);
    let hint_block = view.hint.map(|h| blocks.of(h));
    let mut taken = HashSet::new();
    let mut read: HashSet<u32> = HashSet::new();
    for (i, chunk) in order.chunks(BLOCKS_PER_READ).enumerate() {
        let ranges: Vec<(String, String)> = chunk
            .iter()
            .filter(|b| read.insert(**b))
            .map(|b| conn.keys.claims4_range(&view.net.name, *b, u64::from(*b) + blocks.size()))
            .collect();
        if !ranges.is_empty() {
            taken.extend(claimed4(conn, &view.net.name, ranges).await?);
        }
        for (j, &b) in chunk.iter().enumerate() {
            let position = i * BLOCKS_PER_READ + j;
            let is_hint_block = Some(b) == hint_block && view.hint.is_some();
            let hint = view.hint.unwrap_or(Ipv4Addr::UNSPECIFIED);
            let found = blocks.hosts(b, view.net.gateway).find(|a| {
                // The hint's block is searched twice: after the hint first,
                // before it last.
                let in_pass = match (is_hint_block, position) {
                    (false, _) => true,
                    (true, 0) => *a > hint,
                    (true, _) => *a <= hint,
                };
                in_pass && !taken.contains(a)
            });
            if found.is_some() {
                return Ok(found);
            }
        }
    }
    Ok(None)
}

/// Claimed IPv4 addresses in the given key ranges.
async fn claimed4(
    conn: &Conn,
    network: &str,
    ranges: Vec<(String, String)>,
) -> Result<HashSet<Ipv4Addr>, Fail> {
    let mut taken = HashSet::new();
    for chunk in ranges.chunks(MAX_TXN_OPS) {
        let ops = chunk
            .iter()
            .map(|(from, to)| {
                TxnOp::get(
                    from.as_str(),
                    Some(GetOptions::new().with_range(to.as_str()).with_keys_only()),
                )
            })
            .collect();
        let (_, reads) = conn.read(ops).await?;
        for r in &reads {
            for kv in r.kvs() {
                if let Some(a) = conn.keys.parse_claim4(network, key_str(kv)?) {
                    taken.insert(a);
                }
            }
        }
    }
    Ok(taken)
}

/// Claims the block at `start` for the node; false if another host has it.
/// The block is the node's until the node is removed (not when its lease
/// is lost: the node may still hand out addresses of it). If the network was removed (or
/// recreated) or the node's registration changed since the first read, the
/// whole reservation starts over ([`Fail::Stale`]).
async fn claim_block(conn: &Conn, view: &NetView<'_>, start: u32) -> Result<bool, Fail> {
    let k = &conn.keys;
    let block = k.block(&view.net.name, start);
    let txn = Txn::new()
        .when(vec![
            Compare::version(block.as_str(), CompareOp::Equal, 0),
            Compare::mod_revision(k.network(&view.net.name), CompareOp::Equal, view.net_rev),
            Compare::create_revision(k.node(view.node), CompareOp::Equal, view.node_rev),
        ])
        .and_then(vec![TxnOp::put(block.as_str(), view.node, None)])
        .or_else(vec![TxnOp::get(block.as_str(), Some(GetOptions::new().with_count_only()))]);
    let resp = conn.txn(txn).await?;
    if resp.succeeded() {
        return Ok(true);
    }
    match ranges(&resp).first() {
        Some(r) if r.count() > 0 => Ok(false),
        _ => Err(Fail::Stale),
    }
}

/// A free IPv6 address near `around` (the mirror of the IPv4 address, or
/// the start of the subnet), for when the mirror is unusable or taken.
pub async fn pick_v6(
    conn: &Conn,
    net: &Network,
    subnet6: Ipv6Net,
    gateway6: Ipv6Addr,
    around: Option<Ipv6Addr>,
) -> Result<Ipv6Addr, Fail> {
    let dir = conn.keys.claims6(&net.name);
    let kvs = conn.get_prefix(&dir, true).await?;
    let mut taken = HashSet::new();
    for kv in &kvs {
        if let Some(a) = conn.keys.parse_claim6(&net.name, key_str(kv)?) {
            taken.insert(a);
        }
    }
    let subnet = IpNet::V6(subnet6);
    let hint = around.map(|a| IpAddr::V6(Ipv6Addr::from(u128::from(a).saturating_sub(1))));
    let free = ipam::next_free(subnet, &[IpAddr::V6(gateway6)], hint, V6_MAX_PROBES, |a| match a {
        IpAddr::V6(v) => taken.contains(&v),
        IpAddr::V4(_) => true,
    });
    match free {
        Some(IpAddr::V6(a)) => Ok(a),
        _ => Err(StoreError::SubnetExhausted { network: net.name.clone(), subnet }.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(starts: &[&str]) -> BTreeMap<u32, String> {
        starts.iter().map(|s| (u32::from(s.parse::<Ipv4Addr>().unwrap()), "x".into())).collect()
    }

    #[test]
    fn blocks_of_a_subnet() {
        let b = Blocks::new("10.0.0.0/24".parse().unwrap());
        assert_eq!(b.size(), 64);
        assert_eq!(b.of("10.0.0.130".parse().unwrap()), u32::from(Ipv4Addr::new(10, 0, 0, 128)));
        assert_eq!(b.first_free(&owned(&[])), Some(u32::from(Ipv4Addr::new(10, 0, 0, 0))));
        let all = owned(&["10.0.0.0", "10.0.0.64", "10.0.0.192"]);
        assert_eq!(b.first_free(&all), Some(u32::from(Ipv4Addr::new(10, 0, 0, 128))));
        let full = owned(&["10.0.0.0", "10.0.0.64", "10.0.0.128", "10.0.0.192"]);
        assert_eq!(b.first_free(&full), None);
        // A small subnet is one block.
        let small = Blocks::new("10.0.0.8/29".parse().unwrap());
        assert_eq!(small.size(), 8);
        assert_eq!(small.first_free(&owned(&["10.0.0.8"])), None);
        // The top of the address space does not overflow.
        let top = Blocks::new("255.255.255.0/24".parse().unwrap());
        assert_eq!(
            top.first_free(&owned(&[
                "255.255.255.0",
                "255.255.255.64",
                "255.255.255.128",
                "255.255.255.192"
            ])),
            None
        );
    }

    #[test]
    fn hosts_skip_gateway_network_broadcast() {
        let b = Blocks::new("10.0.0.0/24".parse().unwrap());
        let gw: Ipv4Addr = "10.0.0.1".parse().unwrap();
        let first: Vec<Ipv4Addr> = b.hosts(u32::from(Ipv4Addr::new(10, 0, 0, 0)), gw).collect();
        assert_eq!(first.len(), 62);
        assert_eq!(first[0], Ipv4Addr::new(10, 0, 0, 2));
        let last: Vec<Ipv4Addr> = b.hosts(u32::from(Ipv4Addr::new(10, 0, 0, 192)), gw).collect();
        assert_eq!(last.len(), 63);
        assert_eq!(*last.last().unwrap(), Ipv4Addr::new(10, 0, 0, 254));
    }

    #[test]
    fn search_starts_at_the_hint() {
        let b = Blocks::new("10.0.0.0/24".parse().unwrap());
        let own = [0x0a00_0000, 0x0a00_0080];
        assert_eq!(search_order(&own, &b, None), own.to_vec());
        let order = search_order(&own, &b, Some("10.0.0.130".parse().unwrap()));
        assert_eq!(order, vec![0x0a00_0080, 0x0a00_0000, 0x0a00_0080]);
    }

    #[test]
    fn v6_mirrors_v4() {
        let s4: Ipv4Net = "10.0.0.0/24".parse().unwrap();
        let s6: Ipv6Net = "fd00::/64".parse().unwrap();
        let g6: Ipv6Addr = "fd00::1".parse().unwrap();
        assert_eq!(
            mirror_v6(s4, "10.0.0.7".parse().unwrap(), s6, g6),
            Some("fd00::7".parse().unwrap())
        );
        assert_eq!(mirror_v6(s4, "10.0.0.1".parse().unwrap(), s6, g6), None);
        let tiny: Ipv6Net = "fd00::/126".parse().unwrap();
        assert_eq!(mirror_v6(s4, "10.0.0.9".parse().unwrap(), tiny, g6), None);
        assert_eq!(
            mirror_v6(s4, "10.0.0.2".parse().unwrap(), tiny, g6),
            Some("fd00::2".parse().unwrap())
        );
    }
}
