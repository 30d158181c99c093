//! Networks: the same rules as the single-host store, made race-free across
//! hosts by comparing the revision of the `netlock` key, which every create
//! and remove rewrites: whoever read a stale list of networks fails its
//! transaction and checks again.

use etcd_client::{Compare, CompareOp, DeleteOptions, GetOptions, Txn, TxnOp};
use ipnet::IpNet;
use weft_model::network::NetworkSpec;
use weft_model::Network;

use super::client::{decode, encode, key_str, Conn, Fail};
use super::{backoff, MAX_ATTEMPTS};
use crate::StoreError;

pub(super) async fn create(
    conn: &Conn,
    spec: &NetworkSpec,
    host_taken: &[IpNet],
    created: u64,
) -> Result<Network, Fail> {
    let keys = &conn.keys;
    for attempt in 0..MAX_ATTEMPTS {
        let (_, reads) = conn
            .read(vec![
                TxnOp::get(keys.networks(), Some(GetOptions::new().with_prefix())),
                TxnOp::get(keys.netlock(), None),
            ])
            .await?;
        let lock_rev = reads[1].kvs().first().map_or(0, |kv| kv.mod_revision());
        let others = decode_networks(reads[0].kvs())?;
        let net = crate::rules::admit(&others, spec, host_taken, created)?;
        let txn = Txn::new()
            .when(vec![
                Compare::mod_revision(keys.netlock(), CompareOp::Equal, lock_rev),
                Compare::version(keys.network(&net.name), CompareOp::Equal, 0),
            ])
            .and_then(vec![
                TxnOp::put(keys.network(&net.name), encode(&net)?, None),
                TxnOp::put(keys.netlock(), net.name.as_str(), None),
            ]);
        if conn.txn(txn).await?.succeeded() {
            return Ok(net);
        }
        backoff(attempt).await;
    }
    Err(StoreError::Contention(format!("create network {}", spec.name)).into())
}

fn decode_networks(kvs: &[etcd_client::KeyValue]) -> Result<Vec<Network>, Fail> {
    kvs.iter().map(|kv| decode(&format_args!("network {:?}", key_str(kv)?), kv.value())).collect()
}

pub(super) async fn get(conn: &Conn, name: &str) -> Result<Option<Network>, Fail> {
    match conn.get(&conn.keys.network(name)).await? {
        Some(kv) => Ok(Some(decode(&format_args!("network {name:?}"), kv.value())?)),
        None => Ok(None),
    }
}

/// Sorted by name: etcd returns keys in byte order.
pub(super) async fn list(conn: &Conn) -> Result<Vec<Network>, Fail> {
    decode_networks(&conn.get_prefix(&conn.keys.networks(), false).await?)
}

pub(super) async fn remove(conn: &Conn, name: &str) -> Result<Network, Fail> {
    let keys = &conn.keys;
    let endpoints = keys.endpoints(Some(name));
    for attempt in 0..MAX_ATTEMPTS {
        let (_, reads) = conn
            .read(vec![
                TxnOp::get(keys.network(name), None),
                TxnOp::get(keys.netlock(), None),
                TxnOp::get(
                    endpoints.as_str(),
                    Some(GetOptions::new().with_prefix().with_count_only()),
                ),
            ])
            .await?;
        let kv =
            reads[0].kvs().first().ok_or_else(|| StoreError::NoSuchNetwork(name.to_string()))?;
        let count = reads[2].count() as u64;
        if count > 0 {
            return Err(StoreError::HasEndpoints { network: name.to_string(), count }.into());
        }
        let net: Network = decode(&format_args!("network {name:?}"), kv.value())?;
        let lock_rev = reads[1].kvs().first().map_or(0, |kv| kv.mod_revision());
        let txn = Txn::new()
            .when(vec![
                Compare::mod_revision(keys.network(name), CompareOp::Equal, kv.mod_revision()),
                Compare::mod_revision(keys.netlock(), CompareOp::Equal, lock_rev),
                // No endpoint appeared since the read: every key of the
                // range must have version 0, which holds only when none exists.
                Compare::version(endpoints.as_str(), CompareOp::Equal, 0).with_prefix(),
            ])
            .and_then(vec![
                TxnOp::delete(keys.network(name), None),
                TxnOp::put(keys.netlock(), name, None),
                // Blocks and hints of the hosts that used the network.
                TxnOp::delete(keys.ipam(name), Some(DeleteOptions::new().with_prefix())),
            ]);
        if conn.txn(txn).await?.succeeded() {
            return Ok(net);
        }
        backoff(attempt).await;
    }
    Err(StoreError::Contention(format!("remove network {name}")).into())
}
