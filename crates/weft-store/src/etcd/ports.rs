//! Published host ports. A host port is a resource of one host, so clashes
//! are checked among the endpoints of the same node: each node has one
//! record listing every port its endpoints publish, rewritten (under a
//! revision compare) in the same transaction that adds or removes such an
//! endpoint. Ranges make one claim key per port impractical; a host
//! publishes few ports, so one small record per node is enough.

use etcd_client::{Compare, CompareOp, KeyValue, PutOptions, TxnOp};
use serde::{Deserialize, Serialize};
use weft_model::{EndpointKey, PortMapping};

use super::client::{decode, encode, Conn, Fail};
use crate::StoreError;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Published {
    network: String,
    container: String,
    ifname: String,
    mapping: PortMapping,
}

impl Published {
    fn is(&self, k: &EndpointKey) -> bool {
        self.network == k.network && self.container == k.container && self.ifname == k.ifname
    }
}

/// A node's ports record as read, with the revision to compare.
pub struct NodePorts {
    key: String,
    rev: i64,
    list: Vec<Published>,
}

impl NodePorts {
    pub fn parse(conn: &Conn, node: &str, kv: Option<&KeyValue>) -> Result<NodePorts, Fail> {
        let key = conn.keys.ports(node);
        let list = match kv {
            Some(kv) => decode(&format_args!("published ports of node {node:?}"), kv.value())?,
            None => Vec::new(),
        };
        Ok(NodePorts { key, rev: kv.map_or(0, KeyValue::mod_revision), list })
    }

    /// Refuses a mapping that overlaps one another endpoint of the node
    /// publishes.
    pub fn check(&self, ports: &[PortMapping]) -> Result<(), StoreError> {
        for p in ports {
            if let Some(theirs) = self.list.iter().find(|t| t.mapping.overlaps(p)) {
                return Err(StoreError::PortInUse {
                    port: p.to_string(),
                    theirs: theirs.mapping.to_string(),
                    network: theirs.network.clone(),
                    container: theirs.container.clone(),
                });
            }
        }
        Ok(())
    }

    /// The record is still the one read.
    pub fn unchanged(&self) -> Compare {
        Compare::mod_revision(self.key.as_str(), CompareOp::Equal, self.rev)
    }

    /// Writes the record with `ports` of endpoint `k` added.
    pub fn with(&self, k: &EndpointKey, ports: &[PortMapping]) -> Result<TxnOp, Fail> {
        let mut list = self.list.clone();
        list.extend(ports.iter().map(|p| Published {
            network: k.network.clone(),
            container: k.container.clone(),
            ifname: k.ifname.clone(),
            mapping: *p,
        }));
        // Kept through a lost lease, as the endpoints are.
        Ok(TxnOp::put(self.key.as_str(), encode(&list)?, None))
    }

    /// Writes the record without the ports of endpoint `k`, or deletes it
    /// when none is left.
    pub fn without(&self, k: &EndpointKey) -> Result<TxnOp, Fail> {
        let list: Vec<&Published> = self.list.iter().filter(|p| !p.is(k)).collect();
        if list.is_empty() {
            return Ok(TxnOp::delete(self.key.as_str(), None));
        }
        // The record keeps its lease (none since leases stopped carrying
        // endpoints; older records keep their node's).
        let put = PutOptions::new().with_ignore_lease();
        Ok(TxnOp::put(self.key.as_str(), encode(&list)?, Some(put)))
    }
}
