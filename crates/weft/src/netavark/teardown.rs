//! `teardown NETNS`: unplug the container from the networks Podman names.
//! Whatever is already gone (the namespace, the veth, the record, a second
//! teardown) is fine; a network Podman's setup created goes with its last
//! container, as netavark deletes its bridge. Every network is tried, and
//! the errors are reported together.

use anyhow::{anyhow, Result};
use weft_model::EndpointKey;

use super::types::NetworkOptions;
use super::{dns, owned, owner_key};
use crate::ops::endpoint;
use crate::ops::{network, Context};

pub fn teardown(ctx: &mut Context, opts: &NetworkOptions) -> Result<()> {
    let mut errors = Vec::new();
    for (name, per) in &opts.networks {
        let key = EndpointKey {
            network: name.clone(),
            container: opts.container_name.clone(),
            ifname: per.interface_name.clone(),
        };
        let done = match ctx.store.endpoint(&key) {
            Ok(Some(ep)) => endpoint::teardown(ctx, &ep),
            Ok(None) => Ok(()),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = done.and_then(|()| drop_if_unused(ctx, name)) {
            errors.push(format!("network {name}: {}", super::one_line(&e)));
        }
    }
    if let Err(e) = dns::stop_if_unused(ctx) {
        errors.push(super::one_line(&e));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(anyhow!("teardown of {}: {}", opts.container_name, errors.join("; ")))
    }
}

/// Removes a network Podman's setup created once no endpoint is left on it.
pub fn drop_if_unused(ctx: &mut Context, name: &str) -> Result<()> {
    if !owned(ctx, name)? {
        return Ok(());
    }
    if ctx.store.network(name)?.is_some() {
        if !ctx.store.endpoints(Some(name))?.is_empty() {
            return Ok(());
        }
        network::remove(ctx, name, false)?;
    }
    ctx.store.set_meta(&owner_key(name), "")?;
    Ok(())
}
