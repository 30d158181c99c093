//! Endpoints: address reservation (the attach hot path), readiness, release.
//!
//! Allocation never loads the network's endpoints: it starts after the
//! network's stored hint and asks the `(network, ip)` index about each
//! candidate, so its cost does not grow with the number of endpoints.

use std::net::IpAddr;

use ipnet::IpNet;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior};
use weft_model::endpoint::check_container_name;
use weft_model::{ipam, names, Endpoint, EndpointKey, EndpointState, Network, PortMapping};

use super::{decode, encode, Fail};
use crate::{EndpointRequest, StoreError};

/// IPv6 subnets are too large to scan; give up after this many taken
/// candidates (in practice the first one after the hint is free).
const V6_MAX_PROBES: u128 = 1 << 16;

/// A network row as the allocator needs it.
struct NetRow {
    net: Network,
    hint4: Option<IpAddr>,
    hint6: Option<IpAddr>,
    endpoints: u64,
}

pub(super) fn reserve(conn: &mut Connection, req: &EndpointRequest) -> Result<Endpoint, Fail> {
    check_container_name(&req.container)?;
    names::check_ifname(&req.ifname)?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let NetRow { net, hint4, hint6, endpoints } = network_row(&tx, &req.network)?;

    let key_taken = tx
        .prepare_cached(
            "SELECT 1 FROM endpoints WHERE network = ?1 AND container = ?2 AND ifname = ?3",
        )?
        .exists((&req.network, &req.container, &req.ifname))?;
    if key_taken {
        return Err(StoreError::EndpointExists(request_key(req)).into());
    }
    let mac_owner: Option<String> = tx
        .prepare_cached("SELECT container FROM endpoints WHERE network = ?1 AND mac = ?2")?
        .query_row((&req.network, req.mac.to_string()), |r| r.get(0))
        .optional()?;
    if let Some(container) = mac_owner {
        return Err(StoreError::MacInUse { mac: req.mac, network: net.name, container }.into());
    }

    weft_model::port::check_all(&req.ports)?;
    for a in &req.aliases {
        weft_model::port::check_alias(a)?;
    }
    check_ports(&tx, &req.ports)?;

    let v4 = Family {
        subnet: IpNet::V4(net.subnet),
        gateway: IpAddr::V4(net.gateway),
        hint: hint4,
        max_probes: u128::MAX,
    };
    let (ip4, new_hint4) = pick(&tx, &net.name, &v4, req.ip.map(IpAddr::V4), endpoints)?;
    let (ip6, new_hint6) = match (net.subnet6, net.gateway6) {
        (Some(s6), Some(g6)) => {
            let v6 = Family {
                subnet: IpNet::V6(s6),
                gateway: IpAddr::V6(g6),
                hint: hint6,
                max_probes: V6_MAX_PROBES,
            };
            let (ip, hint) = pick(&tx, &net.name, &v6, req.ip6.map(IpAddr::V6), endpoints)?;
            (Some(ip), hint)
        }
        _ => match req.ip6 {
            Some(a) => {
                return Err(StoreError::BadAddress {
                    addr: IpAddr::V6(a),
                    subnet: format!("network {:?}", net.name),
                    why: "the network has no IPv6 subnet",
                }
                .into())
            }
            None => (None, None),
        },
    };

    let IpAddr::V4(v4) = ip4 else { unreachable!("picked from an IPv4 subnet") };
    let v6 = match ip6 {
        Some(IpAddr::V6(a)) => Some(a),
        _ => None,
    };
    let endpoint = req.record(&net, v4, v6);
    tx.prepare_cached(
        "INSERT INTO endpoints (network, container, ifname, ip4, ip6, mac, data)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute((
        &req.network,
        &req.container,
        &req.ifname,
        sql_addr(ip4),
        ip6.map(sql_addr),
        req.mac.to_string(),
        encode(&endpoint)?,
    ))?;
    insert_ports(&tx, req)?;
    if new_hint4.is_some() || new_hint6.is_some() {
        tx.prepare_cached(
            "UPDATE networks SET hint4 = coalesce(?2, hint4), hint6 = coalesce(?3, hint6) WHERE name = ?1",
        )?
        .execute((&req.network, new_hint4.map(sql_addr), new_hint6.map(sql_addr)))?;
    }
    tx.commit()?;
    Ok(endpoint)
}

/// Refuses a mapping that overlaps one already published. Runs inside the
/// `BEGIN IMMEDIATE` transaction of the reservation, so two processes cannot
/// both pass the check for the same port.
fn check_ports(tx: &Transaction, ports: &[PortMapping]) -> Result<(), Fail> {
    let mut stmt = tx.prepare_cached(
        "SELECT network, container, mapping FROM ports
         WHERE proto = ?1 AND port_lo <= ?3 AND port_hi >= ?2",
    )?;
    for p in ports {
        let rows = stmt.query_map((p.protocol.as_str(), p.host_port, p.host_port_end), |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
        })?;
        for row in rows {
            let (network, container, mapping) = row?;
            let theirs: PortMapping = decode_mapping(&mapping)?;
            if theirs.overlaps(p) {
                return Err(StoreError::PortInUse {
                    port: p.to_string(),
                    theirs: theirs.to_string(),
                    network,
                    container,
                }
                .into());
            }
        }
    }
    Ok(())
}

fn decode_mapping(s: &str) -> Result<PortMapping, Fail> {
    s.parse().map_err(|e| Fail::Corrupt(format!("published port {s:?}: {e}")))
}

fn insert_ports(tx: &Transaction, req: &EndpointRequest) -> Result<(), Fail> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO ports (network, container, ifname, proto, host_ip, port_lo, port_hi, mapping)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for p in &req.ports {
        stmt.execute((
            &req.network,
            &req.container,
            &req.ifname,
            p.protocol.as_str(),
            p.host_ip.map(|ip| ip.to_string()).unwrap_or_default(),
            p.host_port,
            p.host_port_end,
            p.to_string(),
        ))?;
    }
    Ok(())
}

fn network_row(tx: &Transaction, name: &str) -> Result<NetRow, Fail> {
    let row = tx
        .prepare_cached("SELECT data, hint4, hint6, endpoint_count FROM networks WHERE name = ?1")?
        .query_row([name], |r| {
            let hint4: Option<u32> = r.get(1)?;
            let hint6: Option<[u8; 16]> = r.get(2)?;
            Ok((
                r.get::<_, String>(0)?,
                hint4.map(|a| IpAddr::V4(a.into())),
                hint6.map(|a| IpAddr::V6(a.into())),
                r.get(3)?,
            ))
        })
        .optional()?;
    let (data, hint4, hint6, endpoints) =
        row.ok_or_else(|| StoreError::NoSuchNetwork(name.to_string()))?;
    let net = decode(&format_args!("network {name:?}"), &data)?;
    Ok(NetRow { net, hint4, hint6, endpoints })
}

/// One address family of a network, as the allocator sees it.
struct Family {
    subnet: IpNet,
    gateway: IpAddr,
    hint: Option<IpAddr>,
    max_probes: u128,
}

/// Checks the requested address, or allocates the next free one after the
/// hint. Returns the address and, when allocated, the new hint.
fn pick(
    tx: &Transaction,
    network: &str,
    fam: &Family,
    requested: Option<IpAddr>,
    endpoints: u64,
) -> Result<(IpAddr, Option<IpAddr>), Fail> {
    let column = match fam.subnet {
        IpNet::V4(_) => "SELECT container FROM endpoints WHERE network = ?1 AND ip4 = ?2",
        IpNet::V6(_) => "SELECT container FROM endpoints WHERE network = ?1 AND ip6 = ?2",
    };
    let mut owner_of = tx.prepare_cached(column)?;
    if let Some(addr) = requested {
        let bad = |why| StoreError::BadAddress { addr, subnet: fam.subnet.to_string(), why };
        if !fam.subnet.contains(&addr) {
            return Err(bad("it is outside the subnet").into());
        }
        if !ipam::is_host_address(fam.subnet, addr) {
            return Err(bad("it is the subnet's network, broadcast or anycast address").into());
        }
        if addr == fam.gateway {
            return Err(bad("it is the gateway").into());
        }
        let owner: Option<String> =
            owner_of.query_row((network, sql_addr(addr)), |r| r.get(0)).optional()?;
        if let Some(container) = owner {
            return Err(StoreError::AddressInUse { addr, container }.into());
        }
        return Ok((addr, None));
    }

    let exhausted =
        || StoreError::SubnetExhausted { network: network.to_string(), subnet: fam.subnet };
    // Every endpoint holds one address of the subnet and the gateway one
    // more: when they fill it, say so without probing every address.
    if u128::from(endpoints) >= ipam::capacity(fam.subnet).saturating_sub(1) {
        return Err(exhausted().into());
    }
    let mut failure = None;
    let free = ipam::next_free(fam.subnet, &[fam.gateway], fam.hint, fam.max_probes, |a| {
        match owner_of.exists((network, sql_addr(a))) {
            Ok(used) => used,
            Err(e) => {
                // Stop the scan here; the error is reported below.
                failure = Some(e);
                false
            }
        }
    });
    if let Some(e) = failure {
        return Err(e.into());
    }
    let addr = free.ok_or_else(exhausted)?;
    Ok((addr, Some(addr)))
}

/// IPv4 as an integer, IPv6 as 16 big-endian bytes: both order numerically.
fn sql_addr(a: IpAddr) -> Value {
    match a {
        IpAddr::V4(v) => Value::Integer(i64::from(u32::from(v))),
        IpAddr::V6(v) => Value::Blob(v.octets().to_vec()),
    }
}

fn request_key(req: &EndpointRequest) -> EndpointKey {
    EndpointKey {
        network: req.network.clone(),
        container: req.container.clone(),
        ifname: req.ifname.clone(),
    }
}

pub(super) fn set_ready(conn: &Connection, key: &EndpointKey) -> Result<(), Fail> {
    // The state lives in the JSON record; patch it in place, in one
    // statement, so no read-modify-write round trip is needed.
    let ready = match serde_json::to_value(EndpointState::Ready) {
        Ok(serde_json::Value::String(s)) => s,
        _ => unreachable!("EndpointState serializes to a string"),
    };
    let changed = conn
        .prepare_cached(
            "UPDATE endpoints SET data = json_set(data, '$.state', ?4)
             WHERE network = ?1 AND container = ?2 AND ifname = ?3",
        )?
        .execute((&key.network, &key.container, &key.ifname, ready))?;
    if changed == 0 {
        return Err(StoreError::NoSuchEndpoint(key.clone()).into());
    }
    Ok(())
}

pub(super) fn remove(conn: &Connection, key: &EndpointKey) -> Result<Option<Endpoint>, Fail> {
    let mut stmt = conn.prepare_cached(
        "DELETE FROM endpoints WHERE network = ?1 AND container = ?2 AND ifname = ?3 RETURNING data",
    )?;
    let mut rows = stmt.query((&key.network, &key.container, &key.ifname))?;
    let data: Option<String> = match rows.next()? {
        Some(row) => Some(row.get(0)?),
        None => None,
    };
    // Step to the end: the implicit commit happens there, and its error
    // would be lost if the statement were merely reset.
    while rows.next()?.is_some() {}
    data.map(|d| decode(&format_args!("endpoint {key}"), &d)).transpose()
}

pub(super) fn get(conn: &Connection, key: &EndpointKey) -> Result<Option<Endpoint>, Fail> {
    let data: Option<String> = conn
        .prepare_cached(
            "SELECT data FROM endpoints WHERE network = ?1 AND container = ?2 AND ifname = ?3",
        )?
        .query_row((&key.network, &key.container, &key.ifname), |r| r.get(0))
        .optional()?;
    data.map(|d| decode(&format_args!("endpoint {key}"), &d)).transpose()
}

pub(super) fn list(conn: &Connection, network: Option<&str>) -> Result<Vec<Endpoint>, Fail> {
    // Two statements rather than `?1 IS NULL OR ...`, which defeats the index.
    let mut stmt = match network {
        Some(_) => conn.prepare_cached(
            "SELECT network, container, ifname, data FROM endpoints WHERE network = ?1 ORDER BY ip4",
        )?,
        None => conn.prepare_cached(
            "SELECT network, container, ifname, data FROM endpoints ORDER BY network, ip4",
        )?,
    };
    let params: Vec<&str> = network.into_iter().collect();
    let rows = stmt.query_map(rusqlite::params_from_iter(params), |r| {
        let key = EndpointKey { network: r.get(0)?, container: r.get(1)?, ifname: r.get(2)? };
        Ok((key, r.get::<_, String>(3)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (key, data) = row?;
        out.push(decode(&format_args!("endpoint {key}"), &data)?);
    }
    Ok(out)
}

/// One container's endpoints on one network: an indexed prefix of the
/// primary key, so detach costs the same with 10 or 10,000 endpoints.
pub(super) fn of_container(
    conn: &Connection,
    network: &str,
    container: &str,
) -> Result<Vec<Endpoint>, Fail> {
    let mut stmt = conn.prepare_cached(
        "SELECT ifname, data FROM endpoints WHERE network = ?1 AND container = ?2 ORDER BY ifname",
    )?;
    let rows = stmt.query_map([network, container], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (ifname, data) = row?;
        out.push(decode(&format_args!("endpoint {network}/{container}/{ifname}"), &data)?);
    }
    Ok(out)
}
