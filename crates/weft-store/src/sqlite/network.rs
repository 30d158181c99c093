//! Networks: creation with its uniqueness and overlap rules, lookup, removal.

use ipnet::IpNet;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use weft_model::network::NetworkSpec;
use weft_model::Network;

use super::{decode, encode, Fail};
use crate::StoreError;

pub(super) fn create(
    conn: &mut Connection,
    spec: &NetworkSpec,
    host_taken: &[IpNet],
    created: u64,
) -> Result<Network, Fail> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Networks are few; reading them all keeps the overlap rules in Rust.
    let others = list(&tx)?;
    let net = crate::rules::admit(&others, spec, host_taken, created)?;
    tx.execute(
        "INSERT INTO networks (name, bridge, data) VALUES (?1, ?2, ?3)",
        (&net.name, &net.bridge, encode(&net)?),
    )?;
    tx.commit()?;
    Ok(net)
}

pub(super) fn get(conn: &Connection, name: &str) -> Result<Option<Network>, Fail> {
    let mut stmt = conn.prepare_cached("SELECT data FROM networks WHERE name = ?1")?;
    let data: Option<String> = stmt.query_row([name], |r| r.get(0)).optional()?;
    data.map(|d| decode(&format_args!("network {name:?}"), &d)).transpose()
}

pub(super) fn list(conn: &Connection) -> Result<Vec<Network>, Fail> {
    let mut stmt = conn.prepare_cached("SELECT name, data FROM networks ORDER BY name")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (name, data) = row?;
        out.push(decode(&format_args!("network {name:?}"), &data)?);
    }
    Ok(out)
}

pub(super) fn remove(conn: &mut Connection, name: &str) -> Result<Network, Fail> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let row: Option<(String, u64)> = tx
        .query_row("SELECT data, endpoint_count FROM networks WHERE name = ?1", [name], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let (data, count) = row.ok_or_else(|| StoreError::NoSuchNetwork(name.to_string()))?;
    if count > 0 {
        return Err(StoreError::HasEndpoints { network: name.to_string(), count }.into());
    }
    let net = decode(&format_args!("network {name:?}"), &data)?;
    tx.execute("DELETE FROM networks WHERE name = ?1", [name])?;
    tx.commit()?;
    Ok(net)
}
