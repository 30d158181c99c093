//! The kernel side of weft, spoken over rtnetlink: network namespaces,
//! bridges, veth pairs, addresses, routes, neighbours and the bridge FDB.
//! It knows nothing of the store: callers say what to build.

pub mod bridge;
pub mod error;
pub mod garp;
pub mod link;
pub mod link_detail;
pub mod netlink;
pub mod netns;
pub mod plug;
pub mod probe;
pub mod read;
pub mod route_get;
pub mod sockets;
pub mod vtep;
pub mod vxlan;

pub use error::{DatapathError, Result};
pub use netlink::Netlink;
pub use netns::Netns;
