//! weft's vocabulary: networks, endpoints, MAC addresses, interface names,
//! and the IP address allocator. Pure data and arithmetic, no I/O, so every
//! rule here is unit- and property-tested without root.

pub mod endpoint;
pub mod ipam;
pub mod mac;
pub mod names;
pub mod network;
pub mod node;
pub mod port;

pub use endpoint::{Endpoint, EndpointKey, EndpointState};
pub use mac::Mac;
pub use network::{Driver, Network};
pub use node::Node;
pub use port::{PortMapping, Proto};

/// Errors of model validation; each message is one line a user can act on.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModelError {
    #[error("interface name {0:?} is invalid: {1}")]
    BadIfname(String, &'static str),
    #[error("network name {0:?} is invalid: use 1-64 characters from [A-Za-z0-9_.-], starting with a letter or digit")]
    BadNetworkName(String),
    #[error(
        "container name {0:?} is invalid: use 1-253 printable characters without '/' or spaces, other than \".\" and \"..\""
    )]
    BadContainerName(String),
    #[error("gateway {gateway} is outside subnet {subnet}")]
    GatewayOutsideSubnet { gateway: String, subnet: String },
    #[error("gateway {0} is the network or broadcast address of its subnet")]
    GatewayReserved(String),
    #[error("subnet {0} is too small: it needs room for a gateway and at least one container")]
    SubnetTooSmall(String),
    #[error("subnet {0} is not in canonical form; did you mean {1}?")]
    SubnetNotCanonical(String, String),
    #[error("subnet {0} overlaps {1}, which is reserved ({2}); choose a private range such as 10.0.0.0/8 or fd00::/8")]
    ReservedSubnet(String, &'static str, &'static str),
    #[error("MTU {0} is out of range 576-65535")]
    BadMtu(u32),
    #[error("MAC address {0:?} is invalid: {1}")]
    BadMac(String, &'static str),
    #[error("VNI {0} is out of range 1-16777215")]
    BadVni(u32),
    #[error("--vni is only for overlay networks (--driver overlay)")]
    VniWithoutOverlay,
    #[error("address {addr} is not usable in {subnet}: {why}")]
    BadAddress { addr: String, subnet: String, why: &'static str },
    #[error("published port {0:?} is invalid: {1}")]
    BadPort(String, &'static str),
    #[error("published port {0} overlaps {1}: publish each host port once")]
    PortsOverlap(String, String),
    #[error(
        "alias {0:?} is invalid: use DNS labels of letters, digits, '-' and '_', separated by dots"
    )]
    BadAlias(String),
}
