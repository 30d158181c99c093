//! The rules every backend applies when a network is created, so the
//! embedded and the cluster store refuse exactly the same things.

use ipnet::IpNet;
use weft_model::network::NetworkSpec;
use weft_model::{ipam, Driver, Network};

use crate::StoreError;

/// Checks `spec` against the other networks and the host's routes, picks a
/// subnet from the default pool when none is given, and builds the record.
pub(crate) fn admit(
    others: &[Network],
    spec: &NetworkSpec,
    host_taken: &[IpNet],
    created: u64,
) -> Result<Network, StoreError> {
    if others.iter().any(|o| o.name == spec.name) {
        return Err(StoreError::NetworkExists(spec.name.clone()));
    }
    let subnet = match spec.subnet {
        Some(s) => s,
        None => {
            let mut taken: Vec<IpNet> = others.iter().flat_map(Network::subnets).collect();
            taken.extend_from_slice(host_taken);
            ipam::pick_subnet(ipam::default_pool(), &taken).ok_or(StoreError::NoFreeSubnet)?
        }
    };
    let net = spec.build(subnet, created)?;
    if let Some(o) = others.iter().find(|o| o.bridge == net.bridge) {
        return Err(StoreError::BridgeInUse { bridge: net.bridge, network: o.name.clone() });
    }
    if net.driver == Driver::Overlay {
        let same = others.iter().find(|o| o.driver == Driver::Overlay && o.vni == net.vni);
        if let (Some(o), Some(vni)) = (same, net.vni) {
            return Err(StoreError::VniInUse { vni, network: o.name.clone() });
        }
    }
    for subnet in net.subnets() {
        for o in others {
            if o.subnets().into_iter().any(|s| ipam::overlaps(subnet, s)) {
                return Err(StoreError::SubnetOverlap { subnet, network: o.name.clone() });
            }
        }
        if let Some(route) = host_taken.iter().find(|r| ipam::overlaps(subnet, **r)) {
            return Err(StoreError::SubnetOverlapsHost { subnet, route: *route });
        }
    }
    Ok(net)
}
