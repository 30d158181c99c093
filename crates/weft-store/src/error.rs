//! What can go wrong in a store; each message is one line a user can act on.

use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use weft_model::{EndpointKey, Mac, ModelError};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("network {0:?} already exists; pick another name or remove it first")]
    NetworkExists(String),
    #[error("no network named {0:?}; `weft network ls` lists them")]
    NoSuchNetwork(String),
    #[error("bridge {bridge} is already used by network {network:?}; choose another bridge name")]
    BridgeInUse { bridge: String, network: String },
    #[error("subnet {subnet} overlaps network {network:?}; choose a subnet that does not")]
    SubnetOverlap { subnet: IpNet, network: String },
    #[error(
        "subnet {subnet} overlaps host route or address {route}; choose a subnet that does not"
    )]
    SubnetOverlapsHost { subnet: IpNet, route: IpNet },
    #[error("no free /24 left in the default pool 10.89.0.0/16; pass an explicit subnet")]
    NoFreeSubnet,
    #[error("network {network:?} still has {count} endpoint(s); detach them before removing it")]
    HasEndpoints { network: String, count: u64 },
    #[error("endpoint {0} already exists; detach it first")]
    EndpointExists(EndpointKey),
    #[error("no endpoint {0}")]
    NoSuchEndpoint(EndpointKey),
    #[error("address {addr} is not usable in {subnet}: {why}")]
    BadAddress { addr: IpAddr, subnet: String, why: &'static str },
    #[error("address {addr} is already used by container {container:?}; pick another or let weft choose")]
    AddressInUse { addr: IpAddr, container: String },
    #[error("MAC {mac} is already used by container {container:?} on network {network:?}")]
    MacInUse { mac: Mac, network: String, container: String },
    #[error("network {network:?} has no free address left in {subnet}; detach a container or use a larger subnet")]
    SubnetExhausted { network: String, subnet: IpNet },
    #[error(transparent)]
    Invalid(#[from] ModelError),
    #[error("{context}: {source}")]
    Db { context: String, source: rusqlite::Error },
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    /// Damage SQLite would pass over silently, reading an older or empty
    /// store: handing out addresses live containers hold.
    #[error("store {path} is damaged ({why}); weft will not read it as empty or old: run `weft gc --adopt` to set it aside and rebuild the store from the kernel")]
    Damaged { path: PathBuf, why: String },
    #[error("store {path}: schema version {found} is newer than this weft understands ({supported}); upgrade weft")]
    SchemaTooNew { path: PathBuf, found: i64, supported: i64 },
    #[error("create state directory {path}: {source}")]
    StateDir { path: PathBuf, source: std::io::Error },
    #[error("VNI {vni} is already used by network {network:?}; choose another with --vni")]
    VniInUse { vni: u32, network: String },
    #[error("etcd {endpoints} unreachable: {why} (is etcd running? check --etcd)")]
    Unreachable { endpoints: String, why: String },
    #[error("etcd {endpoints}: {context}: {source}")]
    Etcd { endpoints: String, context: String, source: etcd_client::Error },
    #[error("etcd settings: {0}")]
    EtcdConfig(String),
    /// The TLS handshake with etcd failed: etcd answers, but one side does
    /// not trust the other's certificate.
    #[error("etcd {endpoints}: TLS handshake failed: {why} (check --etcd-ca, --etcd-cert and --etcd-key)")]
    TlsHandshake { endpoints: String, why: String },
    #[error("etcd TLS: read {what} {path}: {source}")]
    EtcdTls { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("start the etcd client: {0}")]
    Runtime(std::io::Error),
    #[error("endpoint {0} names no node: the cluster store must know which host the container runs on (--node or WEFT_NODE)")]
    NodeRequired(EndpointKey),
    #[error(
        "node {0:?} is not registered in etcd: is `weft agent --node {0}` running on this host?"
    )]
    NodeNotRegistered(String),
    #[error("node {0:?} is registered and alive; stop its agent or let its lease expire before reaping it")]
    NodeAlive(String),
    #[error("etcd lease {lease:x} has expired: the other hosts see this node as unreachable until it registers again (its endpoints are kept)")]
    LeaseLost { lease: i64 },
    #[error(
        "etcd history up to revision {0} was compacted; take a new snapshot and watch from there"
    )]
    Compacted(i64),
    #[error("{0}: gave up after too many conflicting concurrent changes in etcd; try again")]
    Contention(String),
    #[error("host port {port} is already published by container {container:?} (network {network:?}, {theirs}); choose another host port")]
    PortInUse { port: String, theirs: String, network: String, container: String },
}
