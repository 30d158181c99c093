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
