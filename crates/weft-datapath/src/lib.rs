//! The kernel side of weft, spoken over rtnetlink: network namespaces,
//! bridges, veth pairs, addresses, routes, neighbours and the bridge FDB.
//! It knows nothing of the store: callers say what to build.

pub mod bridge;
pub mod error;
pub mod link;
pub mod netlink;
pub mod netns;
pub mod plug;
pub mod read;
pub mod vxlan;

pub use error::{DatapathError, Result};
pub use netlink::Netlink;
pub use netns::Netns;
