//! Endpoints: reservation (the attach hot path), readiness, release.
//!
//! A reservation is one read of everything it checks, the address pick (see
//! [`super::ipam`]), and ONE transaction that writes the endpoint with its
//! address and MAC claims (none under a lease: see `keys`), on condition that
//! none of them exists and that the network and the node's registration are
//! the ones read. Whatever lost a race starts over from the read.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use etcd_client::{Compare, CompareOp, GetOptions, KeyValue, PutOptions, Txn, TxnOp};
use weft_model::endpoint::check_container_name;
use weft_model::{ipam as model_ipam, names, Endpoint, EndpointKey, EndpointState, Network};

use super::client::{decode, encode, key_str, ranges, revision, Conn, Fail};
use super::ipam::{self, NetView};
use super::ports::NodePorts;
use super::{backoff, MAX_ATTEMPTS};
use crate::{EndpointRequest, StoreError};

/// A record as written, with its revision: what [`set_ready`] needs to
/// rewrite it without reading it first.
pub(super) type Written = (Endpoint, i64);

pub(super) async fn reserve(conn: &Conn, req: &EndpointRequest) -> Result<Written, Fail> {
    check_container_name(&req.container)?;
    names::check_ifname(&req.ifname)?;
    let key = request_key(req);
    let node = req.node.as_deref().ok_or_else(|| StoreError::NodeRequired(key.clone()))?;
    // A taken mirror of the IPv4 address sends IPv6 to a scan from then on.
    let mut scan_v6 = false;
    for attempt in 0..MAX_ATTEMPTS {
        match try_reserve(conn, req, &key, node, scan_v6).await {
            Ok(Outcome::Done(written)) => return Ok(*written),
            Ok(Outcome::Retry { v6_taken }) => scan_v6 |= v6_taken,
            Err(Fail::Stale) => {}
            Err(e) => return Err(e),
        }
        backoff(attempt).await;
    }
    Err(StoreError::Contention(format!("attach {key}")).into())
}

enum Outcome {
    Done(Box<Written>),
    /// Lost a race for an address the store picked.
    Retry {
        v6_taken: bool,
    },
}

/// What the first read of a reservation found.
struct Found {
    net: Network,
    net_rev: i64,
    node_rev: i64,
    blocks: BTreeMap<u32, String>,
    hint: Option<Ipv4Addr>,
    ports: NodePorts,
}

async fn read(
    conn: &Conn,
    req: &EndpointRequest,
    key: &EndpointKey,
    node: &str,
) -> Result<Found, Fail> {
    let k = &conn.keys;
    let (_, reads) = conn
        .read(vec![
            TxnOp::get(k.network(&req.network), None),
            TxnOp::get(k.node(node), None),
            TxnOp::get(k.endpoint(key), Some(GetOptions::new().with_count_only())),
            TxnOp::get(k.mac_claim(&req.network, req.mac), None),
            TxnOp::get(k.blocks(&req.network), Some(GetOptions::new().with_prefix())),
            TxnOp::get(k.hint(&req.network, node), None),
            TxnOp::get(k.ports(node), None),
        ])
        .await?;
    let net_kv =
        reads[0].kvs().first().ok_or_else(|| StoreError::NoSuchNetwork(req.network.clone()))?;
    let net: Network = decode(&format_args!("network {:?}", req.network), net_kv.value())?;
    let node_kv =
        reads[1].kvs().first().ok_or_else(|| StoreError::NodeNotRegistered(node.to_string()))?;
    if reads[2].count() > 0 {
        return Err(StoreError::EndpointExists(key.clone()).into());
    }
    if let Some(owner) = reads[3].kvs().first() {
        return Err(StoreError::MacInUse {
            mac: req.mac,
            network: net.name,
            container: claim_owner(conn, owner),
        }
        .into());
    }
    weft_model::port::check_all(&req.ports)?;
    for a in &req.aliases {
        weft_model::port::check_alias(a)?;
    }
    let ports = NodePorts::parse(conn, node, reads[6].kvs().first())?;
    ports.check(&req.ports)?;
    let mut blocks = BTreeMap::new();
    for kv in reads[4].kvs() {
        if let Some(start) = k.parse_block(&req.network, key_str(kv)?) {
            blocks.insert(start, String::from_utf8_lossy(kv.value()).into_owned());
        }
    }
    let hint = reads[5].kvs().first().and_then(|kv| kv.value_str().ok()?.parse().ok());
    Ok(Found {
        net_rev: net_kv.mod_revision(),
        node_rev: node_kv.create_revision(),
        net,
        blocks,
        hint,
        ports,
    })
}

async fn try_reserve(
    conn: &Conn,
    req: &EndpointRequest,
    key: &EndpointKey,
    node: &str,
    scan_v6: bool,
) -> Result<Outcome, Fail> {
    let found = read(conn, req, key, node).await?;
    let net = &found.net;
    let ip4 = match req.ip {
        Some(a) => {
            check_requested(IpAddr::V4(a), net.subnet.into(), net.gateway.into()).map(|_| a)?
        }
        None => {
            let mut view = NetView {
                net,
                net_rev: found.net_rev,
                node,
                node_rev: found.node_rev,
                blocks: found.blocks.clone(),
                hint: found.hint,
            };
            ipam::pick_v4(conn, &mut view).await?
        }
    };
    let ip6 = match (net.subnet6, net.gateway6, req.ip6) {
        (Some(s6), Some(g6), Some(a)) => {
            check_requested(IpAddr::V6(a), s6.into(), g6.into())?;
            Some(a)
        }
        (Some(s6), Some(g6), None) => {
            let mirror = ipam::mirror_v6(net.subnet, ip4, s6, g6);
            match mirror.filter(|_| !scan_v6) {
                Some(a) => Some(a),
                None => Some(ipam::pick_v6(conn, net, s6, g6, mirror).await?),
            }
        }
        (_, _, Some(a)) => {
            return Err(StoreError::BadAddress {
                addr: IpAddr::V6(a),
                subnet: format!("network {:?}", net.name),
                why: "the network has no IPv6 subnet",
            }
            .into())
        }
        _ => None,
    };
    let endpoint = req.record(net, ip4, ip6);
    commit(conn, req, &found, node, endpoint).await
}

/// The single-host store's checks of an address the user asked for.
fn check_requested(addr: IpAddr, subnet: ipnet::IpNet, gateway: IpAddr) -> Result<(), Fail> {
    let bad = |why| StoreError::BadAddress { addr, subnet: subnet.to_string(), why };
    if !subnet.contains(&addr) {
        return Err(bad("it is outside the subnet").into());
    }
    if !model_ipam::is_host_address(subnet, addr) {
        return Err(bad("it is the subnet's network, broadcast or anycast address").into());
    }
    if addr == gateway {
        return Err(bad("it is the gateway").into());
    }
    Ok(())
}

/// The one transaction of a reservation.
async fn commit(
    conn: &Conn,
    req: &EndpointRequest,
    found: &Found,
    node: &str,
    endpoint: Endpoint,
) -> Result<Outcome, Fail> {
    let k = &conn.keys;
    let net = &req.network;
    let ep_key = k.endpoint(&endpoint.key());
    let claim4 = k.claim4(net, endpoint.address.addr());
    let claim6 = endpoint.address6.map(|a| k.claim6(net, a.addr()));
    let mac = k.mac_claim(net, req.mac);
    let absent = |key: &str| Compare::version(key, CompareOp::Equal, 0);
    // No lease: a node that loses its lease (partitioned, agent stopped)
    // may still be running these containers, so their records and claims
    // stay until the node is removed (`weft node rm`, or its grace period).

    let mut when = vec![
        Compare::mod_revision(k.network(net), CompareOp::Equal, found.net_rev),
        Compare::create_revision(k.node(node), CompareOp::Equal, found.node_rev),
        absent(&ep_key),
        absent(&mac),
        absent(&claim4),
    ];
    let mut then = vec![
        TxnOp::put(ep_key.as_str(), encode(&endpoint)?, None),
        TxnOp::put(claim4.as_str(), ep_key.as_str(), None),
        TxnOp::put(mac.as_str(), ep_key.as_str(), None),
    ];
    if !req.ports.is_empty() {
        when.push(found.ports.unchanged());
        then.push(found.ports.with(&endpoint.key(), &req.ports)?);
    }
    if req.ip.is_none() {
        let hint = endpoint.address.addr().to_string();
        then.push(TxnOp::put(k.hint(net, node), hint, None));
    }
    let mut otherwise = vec![
        TxnOp::get(k.network(net), Some(GetOptions::new().with_count_only())),
        TxnOp::get(k.node(node), Some(GetOptions::new().with_count_only())),
        TxnOp::get(ep_key.as_str(), Some(GetOptions::new().with_count_only())),
        TxnOp::get(mac.as_str(), None),
        TxnOp::get(claim4.as_str(), None),
    ];
    if let Some(c6) = &claim6 {
        when.push(absent(c6));
        then.push(TxnOp::put(c6.as_str(), ep_key.as_str(), None));
        otherwise.push(TxnOp::get(c6.as_str(), None));
    }
    let resp = conn.txn(Txn::new().when(when).and_then(then).or_else(otherwise)).await?;
    if resp.succeeded() {
        return Ok(Outcome::Done(Box::new((endpoint, revision(&resp)))));
    }

    // Say why, in the order the first read checks.
    let got = ranges(&resp);
    if got[0].count() == 0 {
        return Err(StoreError::NoSuchNetwork(net.clone()).into());
    }
    if got[1].count() == 0 {
        return Err(StoreError::NodeNotRegistered(node.to_string()).into());
    }
    if got[2].count() > 0 {
        return Err(StoreError::EndpointExists(endpoint.key()).into());
    }
    if let Some(owner) = got[3].kvs().first() {
        let container = claim_owner(conn, owner);
        return Err(StoreError::MacInUse { mac: req.mac, network: net.clone(), container }.into());
    }
    if let Some(owner) = got[4].kvs().first() {
        if req.ip.is_some() {
            let addr = IpAddr::V4(endpoint.address.addr());
            return Err(
                StoreError::AddressInUse { addr, container: claim_owner(conn, owner) }.into()
            );
        }
    }
    let v6_owner = got.get(5).and_then(|r| r.kvs().first());
    if let (Some(owner), Some(a)) = (v6_owner, endpoint.address6) {
        if req.ip6.is_some() {
            let addr = IpAddr::V6(a.addr());
            return Err(
                StoreError::AddressInUse { addr, container: claim_owner(conn, owner) }.into()
            );
        }
    }
    Ok(Outcome::Retry { v6_taken: v6_owner.is_some() })
}

/// The container a claim's value (an endpoint key) names.
fn claim_owner(conn: &Conn, claim: &KeyValue) -> String {
    let value = String::from_utf8_lossy(claim.value());
    conn.keys.parse_endpoint(&value).map_or_else(|| value.into_owned(), |k| k.container)
}

fn request_key(req: &EndpointRequest) -> EndpointKey {
    EndpointKey {
        network: req.network.clone(),
        container: req.container.clone(),
        ifname: req.ifname.clone(),
    }
}

/// Claims that exist for `e`, removed with it.
fn claim_keys(conn: &Conn, e: &Endpoint) -> Vec<String> {
    let k = &conn.keys;
    let mut keys = vec![k.claim4(&e.network, e.address.addr()), k.mac_claim(&e.network, e.mac)];
    keys.extend(e.address6.map(|a| k.claim6(&e.network, a.addr())));
    keys
}

/// `known`: the record as this process wrote it, which saves the read
/// when nobody changed it since (the attach path: reserve, then ready).
pub(super) async fn set_ready(
    conn: &Conn,
    key: &EndpointKey,
    mut known: Option<Written>,
) -> Result<(), Fail> {
    let ep_key = conn.keys.endpoint(key);
    for attempt in 0..MAX_ATTEMPTS {
        let (mut e, rev) = match known.take() {
            Some(w) => w,
            None => {
                let kv = conn.get(&ep_key).await?;
                let kv = kv.ok_or_else(|| StoreError::NoSuchEndpoint(key.clone()))?;
                (decode(&format_args!("endpoint {key}"), kv.value())?, kv.mod_revision())
            }
        };
        e.state = EndpointState::Ready;
        // The record keeps its lease (its node's), and is rewritten only if
        // nobody changed it since the read.
        let txn = Txn::new()
            .when(vec![Compare::mod_revision(ep_key.as_str(), CompareOp::Equal, rev)])
            .and_then(vec![TxnOp::put(
                ep_key.as_str(),
                encode(&e)?,
                Some(PutOptions::new().with_ignore_lease()),
            )]);
        if conn.txn(txn).await?.succeeded() {
            return Ok(());
        }
        if attempt > 0 {
            backoff(attempt).await;
        }
    }
    Err(StoreError::Contention(format!("mark endpoint {key} ready")).into())
}

pub(super) async fn remove(conn: &Conn, key: &EndpointKey) -> Result<Option<Endpoint>, Fail> {
    let ep_key = conn.keys.endpoint(key);
    for attempt in 0..MAX_ATTEMPTS {
        let Some(kv) = conn.get(&ep_key).await? else { return Ok(None) };
        let e: Endpoint = decode(&format_args!("endpoint {key}"), kv.value())?;
        let mut when =
            vec![Compare::mod_revision(ep_key.as_str(), CompareOp::Equal, kv.mod_revision())];
        let mut ops = vec![TxnOp::delete(ep_key.as_str(), None)];
        ops.extend(claim_keys(conn, &e).into_iter().map(|c| TxnOp::delete(c, None)));
        if let (false, Some(node)) = (e.ports.is_empty(), e.node.as_deref()) {
            let record = conn.get(&conn.keys.ports(node)).await?;
            let ports = NodePorts::parse(conn, node, record.as_ref())?;
            when.push(ports.unchanged());
            ops.push(ports.without(key)?);
        }
        let txn = Txn::new().when(when).and_then(ops);
        if conn.txn(txn).await?.succeeded() {
            return Ok(Some(e));
        }
        backoff(attempt).await;
    }
    Err(StoreError::Contention(format!("detach endpoint {key}")).into())
}

/// The record with its revision, as [`reserve`] returns it.
pub(super) async fn get_written(conn: &Conn, key: &EndpointKey) -> Result<Option<Written>, Fail> {
    match conn.get(&conn.keys.endpoint(key)).await? {
        Some(kv) => {
            let e = decode(&format_args!("endpoint {key}"), kv.value())?;
            Ok(Some((e, kv.mod_revision())))
        }
        None => Ok(None),
    }
}

pub(super) async fn get(conn: &Conn, key: &EndpointKey) -> Result<Option<Endpoint>, Fail> {
    match conn.get(&conn.keys.endpoint(key)).await? {
        Some(kv) => Ok(Some(decode(&format_args!("endpoint {key}"), kv.value())?)),
        None => Ok(None),
    }
}

/// Sorted by network, then IPv4 address, as the single-host store lists.
pub(super) async fn list(conn: &Conn, network: Option<&str>) -> Result<Vec<Endpoint>, Fail> {
    let kvs = conn.get_prefix(&conn.keys.endpoints(network), false).await?;
    let mut out = decode_endpoints(&kvs)?;
    out.sort_by(|a, b| (&a.network, a.address.addr()).cmp(&(&b.network, b.address.addr())));
    Ok(out)
}

pub(super) fn decode_endpoints(kvs: &[KeyValue]) -> Result<Vec<Endpoint>, Fail> {
    kvs.iter().map(|kv| decode(&format_args!("endpoint {}", key_str(kv)?), kv.value())).collect()
}
