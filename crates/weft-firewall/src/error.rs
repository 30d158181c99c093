//! Errors of the firewall; each message is one line a user can act on.

#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error("nftables: `{0}` not found; install the nftables package")]
    NftNotFound(String),
    #[error("nftables: cannot run `{program}`: {error}")]
    NftSpawn { program: String, error: std::io::Error },
    /// `message` is nft's stderr condensed to its error lines.
    #[error("nftables: {action} table {table} failed: {message}")]
    Nft { action: &'static str, table: String, message: String },
    #[error("nftables: cannot read `nft -j list table {table}` output: {why}")]
    BadListing { table: String, why: String },
    #[error("network {network}: bridge name {bridge:?} cannot be used in nftables: {why}")]
    BadBridge { network: String, bridge: String, why: String },
    #[error("cannot set {path}: {why}")]
    Sysctl { path: &'static str, why: String },
    /// weft's record of the forwarding it turned on (state directory).
    #[error("cannot record weft's forwarding in {path}: {why}")]
    Marker { path: String, why: String },
}
