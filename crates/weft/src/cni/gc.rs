//! GC: everything of this network that the runtime no longer knows goes.

use std::collections::HashSet;

use weft_cni::{CniError, NetConf, Version};

use super::{mutating, require, to_cni};
use crate::ops::{endpoint, gc};

pub fn gc(conf: &NetConf, v: Version) -> Result<(), CniError> {
    require(v, v.has_status_gc(), "GC")?;
    let mut ctx = mutating(conf)?;
    // With no ADD or DEL in flight (see `gc::run`).
    let _own = ctx.exclusive().map_err(to_cni)?;
    let valid: HashSet<(&str, &str)> = conf
        .valid_attachments
        .iter()
        .flatten()
        .map(|a| (a.container_id.as_str(), a.ifname.as_str()))
        .collect();
    let mut eps = ctx.store.endpoints(Some(&conf.name)).map_err(|e| to_cni(e.into()))?;
    // In a cluster the network's records include other hosts' containers,
    // which this runtime does not know about: only this node's are its.
    eps.retain(|e| e.node == ctx.node);
    for ep in eps {
        if !valid.contains(&(ep.container.as_str(), ep.ifname.as_str())) {
            tracing::info!("gc: removing {}", ep.key());
            endpoint::teardown(&mut ctx, &ep).map_err(to_cni)?;
        }
    }
    // Leaked links and records whatever their network (crashes, reboots).
    gc::run(&mut ctx, false).map_err(to_cni)?;
    Ok(())
}
