//! `teardown NETNS`: unplug the container from the networks Podman names.
//! Whatever is already gone (the namespace, the veth, the record, a second
//! teardown) is fine; a network Podman's setup created goes with its last
//! container, as netavark deletes its bridge. Every network is tried, and
//! the errors are reported together.

use std::path::Path;

use anyhow::{anyhow, Result};
use weft_model::{Endpoint, EndpointKey, EndpointState};

use super::types::NetworkOptions;
use super::{dns, linger, owned, owner_key};
use crate::ops::endpoint;
use crate::ops::{network, Context};

pub fn teardown(ctx: &mut Context, netns: &Path, opts: &NetworkOptions) -> Result<()> {
    let mut errors = Vec::new();
    for (name, per) in &opts.networks {
        let done = find(ctx, netns, opts, name, &per.interface_name).and_then(|ep| match ep {
            Some(ep) => endpoint::teardown(ctx, &ep),
            None => Ok(()),
        });
        if let Err(e) = done.and_then(|()| release(ctx, name)) {
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

/// Podman skips the teardown of a container whose network namespace
/// vanished (it cannot join it): such endpoints on Podman's networks are
/// reclaimed by the next setup or teardown, as `weft gc` would.
pub fn reclaim_vanished(ctx: &mut Context) -> Result<()> {
    let stale: Vec<Endpoint> = ctx
        .store
        .endpoints(None)?
        .into_iter()
        .filter(|e| e.state == EndpointState::Ready && e.node == ctx.node)
        .filter(|e| !Path::new(&e.netns).exists())
        .collect();
    for ep in stale {
        if owned(ctx, &ep.network)? {
            tracing::info!("{}: its network namespace {} is gone", ep.key(), ep.netns);
            endpoint::teardown(ctx, &ep)?;
            drop_if_unused(ctx, &ep.network)?;
        }
    }
    Ok(())
}

/// The container's endpoint on `network`: by name, or, for a container
/// renamed since its setup (`podman rename`), by its namespace.
fn find(
    ctx: &Context,
    netns: &Path,
    opts: &NetworkOptions,
    network: &str,
    ifname: &str,
) -> Result<Option<Endpoint>> {
    let key = EndpointKey {
        network: network.to_string(),
        container: opts.container_name.clone(),
        ifname: ifname.to_string(),
    };
    if let Some(ep) = ctx.store.endpoint(&key)? {
        return Ok(Some(ep));
    }
    let netns = netns.display().to_string();
    Ok(ctx
        .store
        .endpoints(Some(network))?
        .into_iter()
        .find(|e| e.netns == netns && e.ifname == ifname))
}

/// After a container left `name`: a network Podman's setup created, now
/// without endpoints, lingers (see `linger`) and goes a moment later.
fn release(ctx: &mut Context, name: &str) -> Result<()> {
    if !owned(ctx, name)? {
        return Ok(());
    }
    if ctx.store.network(name)?.is_none() {
        return drop_if_unused(ctx, name);
    }
    if ctx.store.endpoints(Some(name))?.is_empty() {
        linger::start(ctx, name)?;
    }
    Ok(())
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
