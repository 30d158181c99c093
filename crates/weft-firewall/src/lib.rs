//! weft's firewall: masquerade for outbound traffic, isolation between
//! networks, and internal networks with no way in or out, all in one
//! nftables table that weft owns (`inet weft`) and nobody else touches.
//!
//! The table holds a fixed set of rules; what differs per network lives in
//! named sets (bridge names, subnets). So adding a network adds set
//! elements, never rules, and the whole table is rebuilt from the desired
//! list in one atomic nft transaction whenever a network is created or
//! removed. Endpoints touch the firewall only to publish ports, which adds
//! or deletes map elements (see [`publish`]), never rules.
//!
//! weft opens the host no more than it must: packets to 127.0.0.0/8 that
//! did not come from `lo` are dropped before any NAT (the CVE-2020-8558
//! pattern; see `publish.rs`), and forwarding that weft turned on serves
//! weft's networks only (see `sysctl.rs`).

mod error;
mod libnft;
mod nfnl;
mod nft;
pub mod publish;
mod ruleset;
mod sysctl;

pub use error::FirewallError;
pub use nft::{Firewall, TableStatus, DEFAULT_TABLE};
pub use publish::{maps, reached_by_loopback, PortRule};
pub use ruleset::{ruleset, ruleset_with_ports, sets};
pub use sysctl::{refuse_router_advertisements, set_route_localnet, Forwarding, Guards};

use ipnet::{Ipv4Net, Ipv6Net};

/// What the firewall needs to know about one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetRules {
    pub name: String,
    pub bridge: String,
    pub subnet: Ipv4Net,
    pub subnet6: Option<Ipv6Net>,
    /// No masquerade, and no forwarding in or out of the bridge.
    pub internal: bool,
    /// Forwarding to and from other open networks is allowed.
    pub open: bool,
}

impl From<&weft_model::Network> for NetRules {
    fn from(n: &weft_model::Network) -> NetRules {
        NetRules {
            name: n.name.clone(),
            bridge: n.bridge.clone(),
            subnet: n.subnet,
            subnet6: n.subnet6,
            internal: n.internal,
            open: n.open,
        }
    }
}

/// Bridge names go into nftables as strings, where a leading `@` means a
/// set reference and `*` a wildcard: such names would silently match the
/// wrong interfaces, so they are refused.
fn check(nets: &[NetRules]) -> Result<(), FirewallError> {
    for n in nets {
        let bad = |why: &str| FirewallError::BadBridge {
            network: n.name.clone(),
            bridge: n.bridge.clone(),
            why: why.to_string(),
        };
        weft_model::names::check_ifname(&n.bridge).map_err(|e| bad(&e.to_string()))?;
        if n.bridge.starts_with('@') || n.bridge.contains(['*', '\\', '"']) {
            return Err(bad("nftables reads '@', '*', '\\' and '\"' as syntax; rename the bridge"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(bridge: &str) -> NetRules {
        NetRules {
            name: "n".into(),
            bridge: bridge.into(),
            subnet: "10.0.0.0/24".parse().unwrap(),
            subnet6: None,
            internal: false,
            open: false,
        }
    }

    #[test]
    fn refuses_bridge_names_nft_would_misread() {
        assert!(check(&[net("weft-a")]).is_ok());
        for b in ["@bridges", "weft*", "a\"b", "", "much-too-long-bridge-name"] {
            let e = check(&[net(b)]).unwrap_err().to_string();
            assert!(e.starts_with("network n: bridge name"), "{e}");
        }
    }

    #[test]
    fn from_network() {
        let spec = weft_model::network::NetworkSpec {
            name: "front".into(),
            subnet6: Some("fd00:1::/64".parse().unwrap()),
            internal: true,
            ..Default::default()
        };
        let n = spec.build("10.89.0.0/24".parse().unwrap(), 0).unwrap();
        let r = NetRules::from(&n);
        assert_eq!(r.bridge, "weft-front");
        assert_eq!(r.subnet6, n.subnet6);
        assert!(r.internal);
    }
}
