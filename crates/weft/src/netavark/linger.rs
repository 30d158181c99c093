//! A Podman network outlives its last container by [`LINGER`]. netavark
//! deletes its bridge with the last container, so every `podman run --rm`
//! on an otherwise empty network pays for a bridge, its firewall rules and
//! the kernel's wait when the bridge is deleted again; weft keeps the
//! network that long, and the next container plugs into it as it is.
//!
//! The last teardown stamps the network idle (store meta, the time) and
//! starts a detached `weft netavark linger`, which sleeps, takes the Podman
//! lock and removes every owned network idle for longer than [`LINGER`].
//! A setup clears the stamp. Nothing depends on that child surviving: every
//! setup and teardown, and `weft gc`, remove expired networks too.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};

use super::{dns, owned, teardown};
use crate::ops::Context;

pub const LINGER: Duration = Duration::from_secs(3);

pub(super) fn idle_key(network: &str) -> String {
    format!("podman-idle:{network}")
}

fn now_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

/// When `network` became idle, if it is.
fn idle_since(ctx: &Context, network: &str) -> Result<Option<u128>> {
    Ok(ctx.store.meta(&idle_key(network))?.and_then(|v| v.parse().ok()))
}

/// Marks `network` (whose last container just left) idle and starts the
/// child that removes it later; removes it now if no child can start.
pub fn start(ctx: &mut Context, network: &str) -> Result<()> {
    ctx.store.set_meta(&idle_key(network), &now_ms().to_string())?;
    gateways(ctx, network, false)?;
    if let Err(e) = spawn_remover(&ctx.state_dir) {
        tracing::warn!("{e:#}; removing network {network} now");
        return remove(ctx, network);
    }
    Ok(())
}

/// `network` is in use again: its gateways go back on its bridge, unless
/// something else on the host took its subnet meanwhile (it looked free):
/// then the error says so and the network stays idle.
pub fn cancel(ctx: &mut Context, network: &str) -> Result<()> {
    if idle_since(ctx, network)?.is_none() {
        return Ok(());
    }
    if let Some(net) = ctx.store.network(network)? {
        let mut mine = vec![ipnet::IpNet::V4(net.subnet)];
        mine.extend(net.subnet6.map(ipnet::IpNet::V6));
        let taken = crate::ops::network::host_taken(ctx.host()?)?;
        if let Some(t) = taken.iter().find(|t| mine.iter().any(|m| overlaps(**t, *m))) {
            bail!(
                "network {network}: its subnet overlaps {t}, which a host interface took \
                 while the network was unused; change one of them"
            );
        }
    }
    gateways(ctx, network, true)?;
    ctx.store.set_meta(&idle_key(network), "")?;
    Ok(())
}

fn overlaps(a: ipnet::IpNet, b: ipnet::IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Names of the networks kept idle now (for `weft topology`/`explain`,
/// which would otherwise report their bridges' missing gateways).
pub fn idle_networks(ctx: &Context) -> Result<Vec<String>> {
    let mut idle = Vec::new();
    for net in ctx.store.networks()? {
        if idle_since(ctx, &net.name)?.is_some() {
            idle.push(net.name);
        }
    }
    Ok(idle)
}

/// Takes the idle network's gateway addresses off its bridge, or puts them
/// back: an idle network holds no subnet on the host, so that Podman can
/// give it to a network it creates meanwhile (Podman refuses subnets the
/// host's interfaces use).
fn gateways(ctx: &mut Context, network: &str, on: bool) -> Result<()> {
    let Some(net) = ctx.store.network(network)? else { return Ok(()) };
    let mut addrs = vec![ipnet::IpNet::V4(net.gateway_cidr())];
    addrs.extend(net.gateway6_cidr().map(ipnet::IpNet::V6));
    weft_datapath::bridge::set_gateways(ctx.host()?, &net.bridge, &addrs, on)?;
    Ok(())
}

/// Removes every idle Podman network for which `due` holds (given how
/// long it has been idle, and the network); returns their names. Runs
/// under the Podman lock.
fn remove_idle(
    ctx: &mut Context,
    due: impl Fn(Duration, &weft_model::Network) -> bool,
) -> Result<Vec<String>> {
    let now = now_ms();
    let mut gone = Vec::new();
    let mut failed = Vec::new();
    for net in ctx.store.networks()? {
        if !owned(ctx, &net.name)? {
            continue;
        }
        let empty = ctx.store.endpoints(Some(&net.name))?.is_empty();
        let Some(since) = idle_since(ctx, &net.name)? else {
            if empty {
                // Left empty without the last teardown's mark (a crash
                // between the two, or `weft gc` reaping its container):
                // idle from now.
                ctx.store.set_meta(&idle_key(&net.name), &now.to_string())?;
                if let Err(e) = gateways(ctx, &net.name, false) {
                    failed.push(format!("{}: {e:#}", net.name));
                }
            }
            continue;
        };
        let idle = Duration::from_millis(now.saturating_sub(since).try_into().unwrap_or(u64::MAX));
        if !due(idle, &net) {
            continue;
        }
        let done = if empty {
            remove(ctx, &net.name).map(|()| gone.push(net.name.clone()))
        } else {
            // A container came without clearing the mark (`weft attach`).
            cancel(ctx, &net.name)
        };
        if let Err(e) = done {
            failed.push(format!("{}: {e:#}", net.name));
        }
    }
    if !gone.is_empty() {
        dns::stop_if_unused(ctx)?;
    }
    if !failed.is_empty() {
        bail!("idle Podman networks: {}", failed.join("; "));
    }
    Ok(gone)
}

/// Removes the Podman networks idle for longer than [`LINGER`].
pub fn remove_expired(ctx: &mut Context) -> Result<Vec<String>> {
    remove_idle(ctx, |idle, _| idle >= LINGER)
}

/// Removes idle Podman networks that would stand in the way of `want`
/// (its bridge name, or an overlapping subnet): Podman reuses both once it
/// has removed a network, which weft may still be keeping.
pub fn remove_in_the_way(ctx: &mut Context, want: &weft_model::network::NetworkSpec) -> Result<()> {
    remove_idle(ctx, |_, have| {
        have.name != want.name
            && (want.bridge.as_ref().is_some_and(|b| *b == have.bridge)
                || want.subnet.is_some_and(|s| overlaps(s.into(), have.subnet.into()))
                || want
                    .subnet6
                    .zip(have.subnet6)
                    .is_some_and(|(w, h)| overlaps(w.into(), h.into())))
    })?;
    Ok(())
}

fn remove(ctx: &mut Context, network: &str) -> Result<()> {
    teardown::drop_if_unused(ctx, network)?;
    ctx.store.set_meta(&idle_key(network), "")?;
    Ok(())
}

/// For `weft gc`: [`remove_expired`] under the Podman lock.
pub fn gc(ctx: &mut Context) -> Result<Vec<String>> {
    let _lock = crate::ops::context::lock(&ctx.state_dir.join("podman.lock"))?;
    remove_expired(ctx)
}

/// `weft netavark linger`: the child [`start`] left behind.
pub fn run_child(state_dir: &std::path::Path) -> Result<()> {
    std::thread::sleep(LINGER + Duration::from_millis(100));
    let mut ctx = Context::open(state_dir)?;
    let _lock = crate::ops::context::lock(&ctx.state_dir.join("podman.lock"))?;
    for name in remove_expired(&mut ctx)? {
        tracing::info!("network {name}: removed after {} s without containers", LINGER.as_secs());
    }
    Ok(())
}

fn spawn_remover(state_dir: &std::path::Path) -> Result<()> {
    // What the last one said (a network it could not remove) is kept in
    // the state directory until the next one starts.
    let log = state_dir.join("podman-linger.log");
    super::detached::spawn(
        ["netavark", "linger"],
        "the remover of idle Podman networks",
        Some(&log),
    )
}
