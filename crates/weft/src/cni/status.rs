//! STATUS: is weft ready to ADD?

use weft_cni::{CniError, Code, NetConf, Version};
use weft_firewall::Firewall;

use super::{require, state_dir};
use crate::ops::Context;

pub fn status(conf: &NetConf, v: Version) -> Result<(), CniError> {
    require(v, v.has_status_gc(), "STATUS")?;
    let unavailable =
        |what: &str, e: String| CniError::new(Code::NotAvailable, format!("{what}: {e}"));
    crate::ops::context::require_net_admin()
        .map_err(|e| unavailable("privileges", e.to_string()))?;
    let mut ctx =
        Context::open(&state_dir(conf)).map_err(|e| unavailable("store", format!("{e:#}")))?;
    ctx.store.networks().map_err(|e| unavailable("store", e.to_string()))?;
    ctx.host().map_err(|e| unavailable("netlink", format!("{e:#}")))?;
    Firewall::new().status().map_err(|e| unavailable("nftables", e.to_string()))?;
    Ok(())
}
