//! The agent's view of the cluster (async): its node's registration under a
//! lease, the list of nodes, a consistent snapshot and the changes after it,
//! and the removal of what a dead node left behind.

use std::collections::VecDeque;

use etcd_client::{
    Compare, CompareOp, DeleteOptions, EventType, GetOptions, LeaseKeepAliveStream, LeaseKeeper,
    PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions, WatchStream,
};
use weft_model::{Endpoint, EndpointKey, Network, Node};

use super::client::{decode, encode, key_str, timed, Conn, Fail, MAX_TXN_OPS};
use super::endpoint::decode_endpoints;
use super::keys::Kind;
use super::EtcdConfig;
use crate::StoreError;

/// The async cluster API, on the same settings as [`super::EtcdStore`].
#[derive(Clone)]
pub struct Cluster {
    conn: Conn,
}

/// Every network, node and endpoint at one revision; watch from
/// `revision + 1` to follow on without a gap.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub revision: i64,
    /// Sorted by name.
    pub networks: Vec<Network>,
    /// Sorted by name.
    pub nodes: Vec<Node>,
    /// Sorted by network, then IPv4 address.
    pub endpoints: Vec<Endpoint>,
}

/// A change seen by [`Watch`]. Deletions include lease expiry: a dead
/// node's record and endpoints vanish this way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    NetworkPut(Network),
    NetworkDeleted(String),
    NodePut(Node),
    NodeDeleted(String),
    EndpointPut(Endpoint),
    EndpointDeleted(EndpointKey),
}

impl Cluster {
    /// Connects and checks that etcd answers, like [`super::EtcdStore::connect`].
    /// The connection pings etcd while idle, so a watch or a lease renewal
    /// on a dead etcd fails instead of waiting forever.
    pub async fn connect(cfg: &EtcdConfig) -> Result<Cluster, StoreError> {
        Ok(Cluster { conn: Conn::connect(cfg, true).await? })
    }

    async fn run<T>(
        &self,
        op: impl std::future::Future<Output = Result<T, Fail>>,
    ) -> Result<T, StoreError> {
        match op.await {
            Ok(v) => Ok(v),
            Err(e) => Err(self.conn.error(e).await),
        }
    }

    /// Registers `node` under a new lease of `ttl_secs`; returns the lease.
    pub async fn register_node(&self, node: &Node, ttl_secs: i64) -> Result<i64, StoreError> {
        self.register_node_with(node, ttl_secs, None).await
    }

    /// Registers `node`, reusing a lease that is still alive: `lease` (the
    /// one the agent had before it restarted) or else the one of the node's
    /// current record. The node's endpoints and blocks are attached to that
    /// lease, so a quick restart keeps them; only when it has expired is a
    /// new lease of `ttl_secs` granted. `node.lease` is set to the lease in
    /// the stored record.
    pub async fn register_node_with(
        &self,
        node: &Node,
        ttl_secs: i64,
        lease: Option<i64>,
    ) -> Result<i64, StoreError> {
        self.run(async {
            let key = self.conn.keys.node(&node.name);
            let mut candidates: Vec<i64> = lease.into_iter().collect();
            if let Some(kv) = self.conn.get(&key).await? {
                candidates.extend(Some(kv.lease()).filter(|l| *l != 0));
            }
            let mut leases = self.conn.client().lease_client();
            let mut id = None;
            for c in candidates {
                let ttl = timed(leases.time_to_live(c, None)).await?.ttl();
                if ttl > 0 {
                    id = Some(c);
                    break;
                }
            }
            let id = match id {
                Some(id) => id,
                None => timed(leases.grant(ttl_secs, None)).await?.id(),
            };
            let record = Node { lease: id, ..node.clone() };
            let put = PutOptions::new().with_lease(id);
            let mut kv = self.conn.client().kv_client();
            timed(kv.put(key, encode(&record)?, Some(put))).await?;
            Ok(id)
        })
        .await
    }

    /// Starts renewing `lease`; [`StoreError::LeaseLost`] if it has expired.
    pub async fn keep_alive(&self, lease: i64) -> Result<KeepAlive, StoreError> {
        let mut leases = self.conn.client().lease_client();
        match timed(leases.keep_alive(lease)).await {
            Ok((keeper, stream)) => Ok(KeepAlive { conn: self.conn.clone(), keeper, stream }),
            Err(Fail::Etcd(etcd_client::Error::LeaseKeepAliveError(_))) => {
                Err(StoreError::LeaseLost { lease })
            }
            Err(e) => Err(self.conn.error(e).await),
        }
    }

    /// Ends a lease now: etcd deletes the node record, endpoints, claims and
    /// blocks attached to it, as if the host had died.
    pub async fn revoke(&self, lease: i64) -> Result<(), StoreError> {
        let mut leases = self.conn.client().lease_client();
        self.run(async { timed(leases.revoke(lease)).await.map(drop) }).await
    }

    /// Registered nodes, sorted by name.
    pub async fn nodes(&self) -> Result<Vec<Node>, StoreError> {
        self.run(async {
            let kvs = self.conn.get_prefix(&self.conn.keys.nodes(), false).await?;
            kvs.iter()
                .map(|kv| decode(&format_args!("node {:?}", key_str(kv)?), kv.value()))
                .collect()
        })
        .await
    }

    /// Networks, nodes and endpoints read in one transaction, so at one
    /// revision. Claims and blocks, which only the allocator needs, are left
    /// out: one read of the whole prefix would carry them too.
    pub async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        self.run(async {
            let k = &self.conn.keys;
            let prefix = || Some(GetOptions::new().with_prefix());
            let (revision, reads) = self
                .conn
                .read(vec![
                    TxnOp::get(k.networks(), prefix()),
                    TxnOp::get(k.nodes(), prefix()),
                    TxnOp::get(k.endpoints(None), prefix()),
                ])
                .await?;
            let networks = reads[0]
                .kvs()
                .iter()
                .map(|kv| decode(&format_args!("network {:?}", key_str(kv)?), kv.value()))
                .collect::<Result<_, _>>()?;
            let nodes = reads[1]
                .kvs()
                .iter()
                .map(|kv| decode(&format_args!("node {:?}", key_str(kv)?), kv.value()))
                .collect::<Result<_, _>>()?;
            let mut endpoints = decode_endpoints(reads[2].kvs())?;
            endpoints.sort_by(|a, b| {
                (&a.network, a.address.addr()).cmp(&(&b.network, b.address.addr()))
            });
            Ok(Snapshot { revision, networks, nodes, endpoints })
        })
        .await
    }

    /// Follows every change from `from_revision` on (use a snapshot's
    /// revision + 1); 0 means from now.
    pub async fn watch(&self, from_revision: i64) -> Result<Watch, StoreError> {
        let mut client = self.conn.client().watch_client();
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(from_revision)
            .with_progress_notify();
        let prefix = self.conn.keys.prefix().to_string();
        let mut stream = match timed(client.watch(prefix, Some(opts))).await {
            Ok(s) => s,
            Err(e) => return Err(self.conn.error(e).await),
        };
        // The first message confirms the watch, or says why it is refused.
        let mut watch = Watch {
            conn: self.conn.clone(),
            pending: VecDeque::new(),
            revision: from_revision.saturating_sub(1),
            stream: None,
        };
        match timed(stream.message()).await {
            Ok(Some(resp)) => watch.absorb(resp)?,
            Ok(None) => return Err(closed(&self.conn).await),
            Err(e) => return Err(self.conn.error(e).await),
        }
        watch.stream = Some(stream);
        Ok(watch)
    }

    /// Deletes what a dead node left: its endpoints with their claims, its
    /// address blocks and hints, its published ports, its metadata. Refused while the node is
    /// registered (its lease will do this when it expires). Returns how
    /// many keys were deleted.
    pub async fn reap_node(&self, name: &str) -> Result<u64, StoreError> {
        self.run(reap(&self.conn, name)).await
    }

    /// Records that `node` is alive now (`nodemeta/{node}/seen`, seconds
    /// since the epoch, no lease): what a grace period counts from.
    pub async fn touch_node(&self, node: &str, now: u64) -> Result<(), StoreError> {
        let key = self.conn.keys.node_meta(node, SEEN);
        self.run(self.conn.put(&key, &now.to_string())).await
    }

    /// Every node the cluster knows: registered ones (reachable) and those
    /// whose lease lapsed but whose endpoints are still recorded
    /// (unreachable, possibly alive: their addresses stay taken). Sorted
    /// by name.
    pub async fn node_states(&self) -> Result<Vec<NodeState>, StoreError> {
        self.run(async {
            let k = &self.conn.keys;
            let prefix = || Some(GetOptions::new().with_prefix());
            let (_, reads) = self
                .conn
                .read(vec![
                    TxnOp::get(k.nodes(), prefix()),
                    TxnOp::get(k.endpoints(None), prefix()),
                    TxnOp::get(k.node_meta_all(), prefix()),
                ])
                .await?;
            let mut states: std::collections::BTreeMap<String, NodeState> = Default::default();
            for kv in reads[0].kvs() {
                let node: Node = decode(&format_args!("node {:?}", key_str(kv)?), kv.value())?;
                let name = node.name.clone();
                states.entry(name.clone()).or_insert_with(|| NodeState::named(&name)).node =
                    Some(node);
            }
            for e in decode_endpoints(reads[1].kvs())? {
                if let Some(n) = e.node.as_deref() {
                    states.entry(n.to_string()).or_insert_with(|| NodeState::named(n)).endpoints +=
                        1;
                }
            }
            for kv in reads[2].kvs() {
                let Some((n, what)) = k.parse_node_meta(key_str(kv)?) else { continue };
                if what != SEEN {
                    continue;
                }
                let seen = String::from_utf8_lossy(kv.value()).trim().parse().ok();
                states.entry(n.to_string()).or_insert_with(|| NodeState::named(n)).last_seen = seen;
            }
            Ok(states.into_values().collect())
        })
        .await
    }

    /// Removes (as [`Cluster::reap_node`]) every node unreachable for
    /// longer than `grace_secs`: no registration, last seen that long ago.
    /// A node never seen (records older than the `seen` key) is left for
    /// `weft node rm`. Returns the nodes removed.
    pub async fn reap_expired(&self, grace_secs: u64, now: u64) -> Result<Vec<String>, StoreError> {
        let mut gone = Vec::new();
        for s in self.node_states().await? {
            let expired =
                s.node.is_none() && s.last_seen.is_some_and(|t| now.saturating_sub(t) > grace_secs);
            if !expired {
                continue;
            }
            match self.reap_node(&s.name).await {
                Ok(_) => gone.push(s.name),
                // It came back meanwhile.
                Err(StoreError::NodeAlive(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(gone)
    }
}

const SEEN: &str = "seen";

/// A node as `weft node ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeState {
    pub name: String,
    /// Its registration: Some while its lease lives (reachable).
    pub node: Option<Node>,
    /// Endpoints recorded for it.
    pub endpoints: usize,
    /// When its agent last renewed its lease (seconds since the epoch).
    pub last_seen: Option<u64>,
}

impl NodeState {
    fn named(name: &str) -> NodeState {
        NodeState { name: name.to_string(), node: None, endpoints: 0, last_seen: None }
    }
}

async fn closed(conn: &Conn) -> StoreError {
    let why = "etcd closed the watch stream".to_string();
    match conn.error(Fail::Timeout).await {
        StoreError::Unreachable { endpoints, why: probe } => {
            StoreError::Unreachable { endpoints, why: format!("{why} ({probe})") }
        }
        other => other,
    }
}

/// Renews a lease; call [`KeepAlive::renew`] every third of its TTL.
pub struct KeepAlive {
    conn: Conn,
    keeper: LeaseKeeper,
    stream: LeaseKeepAliveStream,
}

impl KeepAlive {
    pub fn lease(&self) -> i64 {
        self.keeper.id()
    }

    /// Renews once; returns the TTL left, in seconds.
    /// [`StoreError::LeaseLost`] means the lease expired (the node's keys are
    /// gone: register again); any other error means etcd did not answer:
    /// make a new `KeepAlive` once it does, before the TTL runs out.
    pub async fn renew(&mut self) -> Result<i64, StoreError> {
        let lease = self.keeper.id();
        let res = timed(async {
            self.keeper.keep_alive().await?;
            self.stream.message().await
        })
        .await;
        match res {
            Ok(Some(r)) if r.ttl() > 0 => Ok(r.ttl()),
            Ok(Some(_)) => Err(StoreError::LeaseLost { lease }),
            Ok(None) => Err(closed(&self.conn).await),
            Err(e) => Err(self.conn.error(e).await),
        }
    }
}

/// Changes under the prefix, in revision order.
pub struct Watch {
    conn: Conn,
    stream: Option<WatchStream>,
    pending: VecDeque<(i64, Result<Event, StoreError>)>,
    revision: i64,
}

impl Watch {
    /// The revision up to which every change has been returned (or is
    /// pending in this watch); resume from `revision() + 1`.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The next change and its revision. An undecodable record is returned
    /// as [`StoreError::Corrupt`] and skipped: the watch goes on. Other
    /// errors end it: [`StoreError::Compacted`] (snapshot again) or etcd
    /// unreachable (reconnect, snapshot, watch). Cancel-safe: in a
    /// `select!` that drops it, no event is lost.
    pub async fn next(&mut self) -> Result<(i64, Event), StoreError> {
        loop {
            if let Some((rev, ev)) = self.pending.pop_front() {
                return ev.map(|e| (rev, e));
            }
            let Some(stream) = self.stream.as_mut() else {
                return Err(closed(&self.conn).await);
            };
            match stream.message().await {
                Ok(Some(resp)) => self.absorb(resp)?,
                Ok(None) => {
                    self.stream = None;
                    return Err(closed(&self.conn).await);
                }
                Err(e) => {
                    self.stream = None;
                    return Err(self.conn.error(Fail::Etcd(e)).await);
                }
            }
        }
    }

    fn absorb(&mut self, resp: etcd_client::WatchResponse) -> Result<(), StoreError> {
        if resp.canceled() {
            self.stream = None;
            if resp.compact_revision() > 0 {
                return Err(StoreError::Compacted(resp.compact_revision()));
            }
            return Err(StoreError::Unreachable {
                endpoints: self.conn.endpoints().to_string(),
                why: format!("etcd canceled the watch: {}", resp.cancel_reason()),
            });
        }
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let rev = kv.mod_revision();
            self.revision = self.revision.max(rev);
            let Ok(key) = kv.key_str() else { continue };
            let put = matches!(ev.event_type(), EventType::Put);
            let event = match (self.conn.keys.kind(key), put) {
                (Kind::Network(n), true) => {
                    decode(&format_args!("network {n:?}"), kv.value()).map(Event::NetworkPut)
                }
                (Kind::Network(n), false) => Ok(Event::NetworkDeleted(n)),
                (Kind::Node(n), true) => {
                    decode(&format_args!("node {n:?}"), kv.value()).map(Event::NodePut)
                }
                (Kind::Node(n), false) => Ok(Event::NodeDeleted(n)),
                (Kind::Endpoint(k), true) => {
                    decode(&format_args!("endpoint {k}"), kv.value()).map(Event::EndpointPut)
                }
                (Kind::Endpoint(k), false) => Ok(Event::EndpointDeleted(k)),
                (Kind::Other, _) => continue,
            };
            let event = event.map_err(|e| match e {
                Fail::Corrupt(what) => StoreError::Corrupt(what),
                _ => StoreError::Corrupt(format!("{key}: undecodable")),
            });
            self.pending.push_back((rev, event));
        }
        if let Some(h) = resp.header() {
            // A progress notification: nothing before this revision is left.
            if resp.events().is_empty() && self.stream.is_some() {
                self.revision = self.revision.max(h.revision());
            }
        }
        Ok(())
    }
}

async fn reap(conn: &Conn, name: &str) -> Result<u64, Fail> {
    let k = &conn.keys;
    let node_key = k.node(name);
    let prefix = || Some(GetOptions::new().with_prefix());
    let (_, reads) = conn
        .read(vec![
            TxnOp::get(node_key.as_str(), Some(GetOptions::new().with_count_only())),
            TxnOp::get(k.networks(), Some(GetOptions::new().with_prefix().with_keys_only())),
            TxnOp::get(k.endpoints(None), prefix()),
        ])
        .await?;
    if reads[0].count() > 0 {
        return Err(StoreError::NodeAlive(name.to_string()).into());
    }
    let networks: Vec<String> = reads[1]
        .kvs()
        .iter()
        .filter_map(|kv| match k.kind(kv.key_str().ok()?) {
            Kind::Network(n) => Some(n),
            _ => None,
        })
        .collect();

    // Each endpoint goes with its claims, in one transaction.
    let mut groups: Vec<Vec<TxnOp>> = Vec::new();
    for e in decode_endpoints(reads[2].kvs())? {
        if e.node.as_deref() != Some(name) {
            continue;
        }
        let mut ops = vec![TxnOp::delete(k.endpoint(&e.key()), None)];
        ops.push(TxnOp::delete(k.claim4(&e.network, e.address.addr()), None));
        ops.push(TxnOp::delete(k.mac_claim(&e.network, e.mac), None));
        ops.extend(e.address6.map(|a| TxnOp::delete(k.claim6(&e.network, a.addr()), None)));
        groups.push(ops);
    }
    for chunk in networks.chunks(MAX_TXN_OPS) {
        let ops = chunk.iter().map(|n| TxnOp::get(k.blocks(n), prefix())).collect();
        let (_, blocks) = conn.read(ops).await?;
        for (n, r) in chunk.iter().zip(&blocks) {
            let mut ops: Vec<TxnOp> = r
                .kvs()
                .iter()
                .filter(|kv| kv.value() == name.as_bytes())
                .map(|kv| TxnOp::delete(kv.key(), None))
                .collect();
            ops.push(TxnOp::delete(k.hint(n, name), None));
            groups.push(ops);
        }
    }
    groups.push(vec![
        TxnOp::delete(k.node_meta_dir(name), Some(DeleteOptions::new().with_prefix())),
        TxnOp::delete(k.ports(name), None),
    ]);

    let mut deleted = 0;
    let mut batch: Vec<TxnOp> = Vec::new();
    for group in groups {
        if !batch.is_empty() && batch.len() + group.len() > MAX_TXN_OPS {
            deleted +=
                delete_unless_registered(conn, &node_key, name, std::mem::take(&mut batch)).await?;
        }
        batch.extend(group);
    }
    if !batch.is_empty() {
        deleted += delete_unless_registered(conn, &node_key, name, batch).await?;
    }
    Ok(deleted)
}

/// Runs deletions unless the node registered again meanwhile.
async fn delete_unless_registered(
    conn: &Conn,
    node_key: &str,
    name: &str,
    ops: Vec<TxnOp>,
) -> Result<u64, Fail> {
    let txn = Txn::new()
        .when(vec![Compare::create_revision(node_key, CompareOp::Equal, 0)])
        .and_then(ops);
    let resp = conn.txn(txn).await?;
    if !resp.succeeded() {
        return Err(StoreError::NodeAlive(name.to_string()).into());
    }
    Ok(resp
        .op_responses()
        .iter()
        .map(|r| match r {
            TxnOpResponse::Delete(d) => d.deleted() as u64,
            _ => 0,
        })
        .sum())
}
