//! The virtual switch: a Linux bridge with the network's gateway address.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use weft_model::names::ALIAS_PREFIX;
use weft_model::Mac;

use crate::error::{DatapathError, Result};
use crate::link::Link;
use crate::netlink::Netlink;

pub struct BridgeSpec<'a> {
    pub name: &'a str,
    /// IFLA_IFALIAS marking the bridge as weft's (starts with "weft:").
    pub alias: &'a str,
    pub mac: Mac,
    pub mtu: u32,
    pub gateway: Ipv4Net,
    pub gateway6: Option<Ipv6Net>,
}

pub fn is_weft_link(l: &Link) -> bool {
    l.alias.as_deref().is_some_and(|a| a.starts_with(ALIAS_PREFIX))
}

/// Makes sure the bridge exists, carries the gateway address(es) and is
/// up. A bridge weft made earlier is adopted (that is how a half-made
/// network is completed); any other interface of that name is refused.
/// Returns whether the bridge was created by this call.
pub fn ensure_bridge(nl: &mut Netlink, spec: &BridgeSpec) -> Result<bool> {
    let (link, created) = match nl.link_by_name(spec.name)? {
        Some(l) if is_weft_link(&l) && l.kind.as_deref() == Some("bridge") => (l, false),
        Some(_) => return Err(DatapathError::ForeignLink { name: spec.name.to_string() }),
        None => {
            nl.add_bridge(spec.name, spec.mac, spec.mtu)?;
            let l = nl.link_by_name(spec.name)?.ok_or_else(|| {
                DatapathError::Other(format!("bridge {} vanished after creation", spec.name))
            })?;
            (l, true)
        }
    };
    let configured = (|| {
        if created {
            nl.set_alias(link.index, spec.name, spec.alias)?;
        }
        let mut addrs = vec![IpNet::V4(spec.gateway)];
        addrs.extend(spec.gateway6.map(IpNet::V6));
        for a in addrs {
            match nl.add_address(link.index, spec.name, a, true) {
                Err(e) if e.is_exists() && !created => {}
                r => r?,
            }
        }
        nl.set_up(link.index, spec.name)
    })();
    if let Err(e) = configured {
        if created {
            let _ = nl.delete_link(link.index, spec.name);
        }
        return Err(e);
    }
    Ok(created)
}

/// Deletes the bridge if it exists and is weft's. Returns whether it did.
pub fn delete_bridge(nl: &mut Netlink, name: &str) -> Result<bool> {
    match nl.link_by_name(name)? {
        Some(l) if is_weft_link(&l) => {
            nl.delete_link(l.index, name)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Takes the gateway address(es) off a weft bridge kept without containers,
/// so that its subnets count as free on the host (as if it were gone), or
/// (`on`) puts them back. Absent addresses, and a bridge that is gone or
/// not weft's, are left as they are.
pub fn set_gateways(nl: &mut Netlink, name: &str, gateways: &[IpNet], on: bool) -> Result<()> {
    let Some(link) = nl.link_by_name(name)?.filter(is_weft_link) else {
        return Ok(());
    };
    for a in gateways {
        let done = if on {
            nl.add_address(link.index, name, *a, true)
        } else {
            nl.delete_address(link.index, name, *a)
        };
        match done {
            Err(e) if on && e.is_exists() => {}
            Err(e) if !on && e.errno() == Some(libc::EADDRNOTAVAIL) => {}
            r => r?,
        }
    }
    Ok(())
}
