//! The IPAM driver: pools that overlap no weft network and no host route,
//! and addresses that no weft endpoint holds. A pool's ID is the pool
//! itself (`weft:CIDR`), so identical requests get the same ID, as the
//! protocol asks, and nothing needs storing.

use std::collections::HashMap;
use std::net::IpAddr;

use anyhow::{anyhow, bail, Result};
use ipnet::IpNet;
use weft_model::{ipam, Driver};

use super::types::{self, Empty};
use super::State;
use crate::ops;

pub const LOCAL_SPACE: &str = "weft-local";
pub const GLOBAL_SPACE: &str = "weft-global";

/// Candidates tried for a free address: bounds the work on an IPv6 /64.
const MAX_PROBES: u128 = 1 << 16;

fn pool_id(pool: IpNet) -> String {
    format!("weft:{pool}")
}

fn pool_of(id: &str) -> Result<IpNet> {
    id.strip_prefix("weft:")
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| anyhow!("unknown pool {id:?}"))
}

pub fn request_pool(st: &mut State, req: types::RequestPool) -> Result<types::PoolReply> {
    if !req.sub_pool.is_empty() && req.sub_pool != req.pool {
        bail!("--ip-range is not supported by the weft IPAM driver; give only --subnet");
    }
    if let Some((k, _)) = req.options.as_ref().and_then(|o| o.iter().next()) {
        bail!("unknown IPAM option --ipam-opt {k} (the weft IPAM driver has none)");
    }
    let networks = st.ctx.store.networks()?;
    let pool = if req.pool.is_empty() {
        if req.v6 {
            bail!("weft has no default IPv6 pool: give an IPv6 --subnet");
        }
        let mut taken: Vec<IpNet> = networks.iter().flat_map(|n| n.subnets()).collect();
        taken.extend(st.pools.iter().copied());
        taken.extend(ops::network::host_taken(st.ctx.host()?)?);
        let v4 = ipam::pick_subnet(ipam::default_pool(), &taken).ok_or_else(|| {
            anyhow!("no free /24 left in weft's default pool 10.89.0.0/16; give --subnet")
        })?;
        IpNet::V4(v4)
    } else {
        let pool: IpNet =
            req.pool.parse().map_err(|_| anyhow!("malformed subnet {:?}", req.pool))?;
        if pool.trunc() != pool {
            bail!("subnet {pool} has host bits set; did you mean {}?", pool.trunc());
        }
        // A weft overlay network is shared by the Docker networks of every
        // host (`-o weft.overlay=`): its own subnet is the one pool that
        // may be requested again.
        let shared =
            networks.iter().any(|n| n.driver == Driver::Overlay && n.subnets().contains(&pool));
        if !shared {
            if let Some(n) =
                networks.iter().find(|n| n.subnets().iter().any(|s| ipam::overlaps(*s, pool)))
            {
                bail!("subnet {pool} overlaps weft network {} ({})", n.name, n.subnet);
            }
            if st.pools.iter().any(|p| ipam::overlaps(*p, pool)) {
                bail!("subnet {pool} overlaps a network being created");
            }
        }
        pool
    };
    st.pools.insert(pool);
    Ok(types::PoolReply { pool_id: pool_id(pool), pool: pool.to_string(), data: HashMap::new() })
}

pub fn release_pool(st: &mut State, req: types::PoolRef) -> Result<Empty> {
    if let Ok(p) = pool_of(&req.pool_id) {
        st.pools.remove(&p);
    }
    Ok(Empty {})
}

pub fn request_address(st: &mut State, req: types::RequestAddress) -> Result<types::AddressReply> {
    let pool = pool_of(&req.pool_id)?;
    let wanted: Option<IpAddr> = match req.address.as_str() {
        "" => None,
        s => Some(s.parse().map_err(|_| anyhow!("malformed address {s:?}"))?),
    };
    if let Some(a) = wanted {
        if !ipam::is_host_address(pool, a) {
            bail!("address {a} is not a host address of subnet {pool}");
        }
    }
    let net = st.ctx.store.networks()?.into_iter().find(|n| n.subnets().contains(&pool));
    let gateway = net.as_ref().map(|n| match pool {
        IpNet::V4(_) => IpAddr::V4(n.gateway),
        IpNet::V6(_) => n.gateway6.map_or(IpAddr::V4(n.gateway), IpAddr::V6),
    });
    let is_gateway = req
        .options
        .as_ref()
        .and_then(|o| o.get(types::ADDRESS_TYPE))
        .is_some_and(|t| t == types::GATEWAY_TYPE);
    let addr = if is_gateway {
        // Asked while the network is being created: before it exists,
        // except for a shared overlay, whose gateway is fixed.
        match (gateway, wanted) {
            (Some(g), Some(w)) if g != w => bail!("the gateway of this weft network is {g}"),
            (Some(g), _) => g,
            (None, Some(w)) => w,
            (None, None) => first_host(pool)?,
        }
    } else {
        let Some(net) = net else {
            bail!("weft has no network with subnet {pool} (--aux-address is not supported)");
        };
        let mut used: Vec<IpAddr> = Vec::new();
        for ep in st.ctx.store.endpoints(Some(&net.name))? {
            used.push(IpAddr::V4(ep.address.addr()));
            used.extend(ep.address6.map(|a| IpAddr::V6(a.addr())));
        }
        let used = |a: &IpAddr| used.contains(a) || st.held.contains(a);
        let reserved: Vec<IpAddr> = gateway.into_iter().collect();
        match wanted {
            Some(a) if reserved.contains(&a) => bail!("address {a} is the network's gateway"),
            Some(a) if used(&a) => {
                bail!("address {a} is already in use on weft network {}", net.name)
            }
            Some(a) => a,
            None => ipam::next_free(pool, &reserved, None, MAX_PROBES, |a| used(&a))
                .ok_or_else(|| anyhow!("no free address left in {pool}"))?,
        }
    };
    if !is_gateway {
        st.held.insert(addr);
    }
    Ok(types::AddressReply {
        address: format!("{addr}/{}", pool.prefix_len()),
        data: HashMap::new(),
    })
}

fn first_host(pool: IpNet) -> Result<IpAddr> {
    let (first, _) = ipam::host_range(pool).ok_or_else(|| anyhow!("subnet {pool} is too small"))?;
    Ok(ipam::from_u128(pool, first))
}

/// Ends the IPAM's hold; an endpoint record that holds the address keeps
/// it until the endpoint is removed.
pub fn release_address(st: &mut State, req: types::ReleaseAddress) -> Result<Empty> {
    if let Ok(a) = req.address.parse::<IpAddr>() {
        st.held.remove(&a);
    }
    Ok(Empty {})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::Plugin;
    use weft_model::network::NetworkSpec;

    /// A plugin on a fresh embedded store holding network `n`, 10.9.0.0/29.
    fn plugin(dir: &std::path::Path) -> Plugin {
        let ctx = crate::ops::Context::open(dir).expect("store");
        let spec = NetworkSpec {
            name: "n".into(),
            subnet: Some("10.9.0.0/29".parse().unwrap()),
            ..Default::default()
        };
        ctx.store.create_network(&spec, &[], 0).expect("network");
        Plugin::new(ctx)
    }

    fn ask(p: &Plugin, address: &str, gateway: bool) -> Result<String> {
        let options = gateway.then(|| {
            HashMap::from([(types::ADDRESS_TYPE.to_string(), types::GATEWAY_TYPE.to_string())])
        });
        let req = types::RequestAddress {
            pool_id: "weft:10.9.0.0/29".into(),
            address: address.into(),
            options,
        };
        request_address(&mut p.lock(), req).map(|r| r.address)
    }

    #[test]
    fn addresses_are_held_until_released_and_the_gateway_is_the_network_s() {
        let dir = tempfile::tempdir().unwrap();
        let p = plugin(dir.path());
        assert_eq!(ask(&p, "", true).unwrap(), "10.9.0.1/29");
        assert!(ask(&p, "10.9.0.3", true).unwrap_err().to_string().contains("gateway"));
        // 10.9.0.2 .. 10.9.0.6: five, each once.
        let mut got: Vec<String> = (0..5).map(|_| ask(&p, "", false).unwrap()).collect();
        got.sort();
        assert_eq!(
            got,
            ["10.9.0.2/29", "10.9.0.3/29", "10.9.0.4/29", "10.9.0.5/29", "10.9.0.6/29"]
        );
        assert!(ask(&p, "", false).unwrap_err().to_string().contains("no free address"));
        assert!(ask(&p, "10.9.0.4", false).unwrap_err().to_string().contains("in use"));
        assert!(ask(&p, "10.9.0.1", false).unwrap_err().to_string().contains("gateway"));
        assert!(ask(&p, "10.9.9.9", false).is_err());
        let release = types::ReleaseAddress { address: "10.9.0.4".into() };
        release_address(&mut p.lock(), release).unwrap();
        assert_eq!(ask(&p, "", false).unwrap(), "10.9.0.4/29");
    }

    #[test]
    fn pools_do_not_overlap_weft_networks_and_ids_name_them() {
        let dir = tempfile::tempdir().unwrap();
        let p = plugin(dir.path());
        let req = |pool: &str, sub: &str| types::RequestPool {
            pool: pool.into(),
            sub_pool: sub.into(),
            options: None,
            v6: false,
        };
        let r = request_pool(&mut p.lock(), req("10.10.0.0/24", "")).unwrap();
        assert_eq!((r.pool_id.as_str(), r.pool.as_str()), ("weft:10.10.0.0/24", "10.10.0.0/24"));
        assert_eq!(pool_of(&r.pool_id).unwrap().to_string(), "10.10.0.0/24");
        let e = request_pool(&mut p.lock(), req("10.9.0.0/24", "")).unwrap_err();
        assert!(e.to_string().contains("overlaps weft network n"), "{e}");
        let e = request_pool(&mut p.lock(), req("10.10.0.0/25", "")).unwrap_err();
        assert!(e.to_string().contains("being created"), "{e}");
        let e = request_pool(&mut p.lock(), req("10.11.0.0/24", "10.11.0.0/25")).unwrap_err();
        assert!(e.to_string().contains("--ip-range"), "{e}");
        assert!(pool_of("10.10.0.0/24").is_err());
    }
}
