//! Attaching a container to a network and detaching it.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context as _, Result};
use weft_datapath::link::Link;
use weft_datapath::plug::{self, PlugSpec};
use weft_datapath::Netns;
use weft_model::endpoint::check_container_name;
use weft_model::{names, Endpoint, EndpointKey, Mac, Network, PortMapping};
use weft_store::EndpointRequest;

use super::context::now;
use super::{failpoint, network, publish, reaper, resolv, Context};

/// Where the container's network namespace is.
#[derive(Debug, Clone)]
pub enum NetnsRef {
    Path(PathBuf),
    Pid(u32),
    /// `/var/run/netns/CONTAINER`, what `ip netns add CONTAINER` makes.
    Named,
}

impl NetnsRef {
    /// The namespace file this reference names for `container`.
    pub fn file(&self, container: &str) -> PathBuf {
        match self {
            NetnsRef::Path(p) => p.clone(),
            NetnsRef::Pid(pid) => format!("/proc/{pid}/ns/net").into(),
            NetnsRef::Named => format!("/var/run/netns/{container}").into(),
        }
    }
}

pub struct AttachRequest {
    pub network: String,
    pub container: String,
    pub netns: NetnsRef,
    /// None: the first `ethN` free in the container (docker's way).
    pub ifname: Option<String>,
    pub ip: Option<Ipv4Addr>,
    pub ip6: Option<Ipv6Addr>,
    pub mac: Option<Mac>,
    /// Host ports to forward to the container (`--publish`).
    pub ports: Vec<PortMapping>,
    /// DNS names besides the container name (`--alias`).
    pub aliases: Vec<String>,
}

/// The host end's MAC is fixed too (the kernel would pick a random one), so
/// a CNI result can report it without a lookup.
pub fn host_veth_mac(key: &EndpointKey) -> Mac {
    Mac::derive(&["host", &key.network, &key.container, &key.ifname])
}

pub fn endpoint_alias(key: &EndpointKey) -> String {
    format!("weft:ep={}/{}/{}", key.network, key.container, key.ifname)
}

/// Whether an attach refuses host ports that a socket on the host listens
/// on. Podman binds the ports it publishes itself (conmon holds them for
/// the container's life, and its own bind fails on a taken port), so its
/// setups skip this check: a reload or restart would see Podman's sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostListeners {
    Refuse,
    RuntimeChecks,
}

/// The endpoint, ready, and its network as read for the attach (callers
/// reporting the network's settings need not read it again).
pub fn attach(ctx: &mut Context, req: &AttachRequest) -> Result<(Endpoint, Network)> {
    attach_with(ctx, req, HostListeners::Refuse)
}

/// [`attach`], choosing who checks for host sockets on published ports.
pub fn attach_with(
    ctx: &mut Context,
    req: &AttachRequest,
    listeners: HostListeners,
) -> Result<(Endpoint, Network)> {
    check_container_name(&req.container)?;
    if let Some(i) = &req.ifname {
        names::check_ifname(i)?;
    }
    let _own = ctx.share()?;
    // The network first: `attach CONTAINER NETWORK` (swapped) is then
    // reported as such, not as a missing namespace.
    let Some(net) = ctx.store.network(&req.network)? else {
        bail!("{}", network::missing(ctx, &req.network, Some(&req.container))?);
    };
    let netns = match &req.netns {
        NetnsRef::Path(p) => Netns::open(p)?,
        NetnsRef::Pid(pid) => Netns::of_pid(*pid)?,
        NetnsRef::Named => Netns::open(req.netns.file(&req.container)).map_err(|e| {
            anyhow!("{e} (give the container's namespace with --netns PATH or --pid PID)")
        })?,
    };
    refuse_host_namespace(&netns)?;
    let ifname = match &req.ifname {
        Some(i) => i.clone(),
        None => free_ifname(ctx, req, &netns)?,
    };
    let bridge = bridge_of(ctx, &net)?;
    // A Podman network kept idle has its gateways off its bridge.
    crate::netavark::linger::cancel(ctx, &net.name)?;

    publish::check_with(&net, &req.ports, listeners == HostListeners::Refuse)?;
    if let Some(mac) = req.mac {
        if mac == network::bridge_mac(&net.name) || Some(mac) == bridge.mac {
            // The bridge would take the container's frames for its own.
            let why = "it is the address of the network's bridge";
            return Err(weft_model::ModelError::BadMac(mac.to_string(), why).into());
        }
    }
    let ports = publish::choose_host_ports(ctx, &req.ports)?;

    let host_veth = names::host_veth_name(&req.network, &req.container, &ifname);
    let ep = ctx.store.reserve_endpoint(&EndpointRequest {
        network: req.network.clone(),
        container: req.container.clone(),
        ifname: ifname.clone(),
        netns: netns.path().display().to_string(),
        netns_id: Some(netns.id()),
        ip: req.ip,
        ip6: req.ip6,
        mac: req.mac.unwrap_or_else(|| Mac::derive(&[&req.network, &req.container, &ifname])),
        host_veth: host_veth.clone(),
        node: ctx.node.clone(),
        boot_id: ctx.boot_id.clone(),
        pid: std::process::id(),
        created: now(),
        ports,
        aliases: req.aliases.clone(),
    })?;
    failpoint::hit("attach-after-reserve");

    let alias = endpoint_alias(&ep.key());
    let spec = PlugSpec {
        bridge_index: bridge.index,
        host_veth: &host_veth,
        alias: &alias,
        ifname: &ep.ifname,
        mac: ep.mac,
        host_mac: host_veth_mac(&ep.key()),
        mtu: net.mtu,
        address: ep.address,
        address6: ep.address6,
        gateway: ep.gateway,
        gateway6: ep.gateway6,
    };
    let plugged = plug::plug(ctx.host()?, &netns, &spec)
        .map(|()| failpoint::hit("attach-after-plug"))
        .map_err(anyhow::Error::from);
    finish_plug(ctx, &ep, &net.bridge, &host_veth, plugged)
        .with_context(|| format!("attach {} to {}", req.container, req.network))?;
    // Names for processes started with `ip netns exec NAME` (not fatal:
    // the container is attached, only its resolv.conf is not).
    if let Some(name) = resolv::netns_name(&ep.netns) {
        if let Err(e) = resolv::add(name, &net.nameservers()) {
            tracing::warn!("{e:#}");
        }
    }
    tracing::info!(
        container = ep.container,
        network = ep.network,
        ifname = ep.ifname,
        address = %ep.address,
        host_veth = ep.host_veth,
        ports = ep.ports.len(),
        "attached"
    );
    Ok((Endpoint { state: weft_model::EndpointState::Ready, ..ep }, net))
}

/// After plugging an endpoint's pair: publishes its ports and marks it
/// ready, or, when any step (the plugging included) failed, undoes them
/// all, so that a failed attach leaves nothing behind.
pub fn finish_plug(
    ctx: &mut Context,
    ep: &Endpoint,
    bridge: &str,
    host_veth: &str,
    plugged: Result<()>,
) -> Result<()> {
    let done = plugged
        .and_then(|()| publish::publish(ctx, ep, bridge))
        .and_then(|()| Ok(ctx.store.set_ready(&ep.key())?));
    if let Err(e) = done {
        let _ = plug::unplug(ctx.host()?, host_veth);
        let _ = ctx.store.remove_endpoint(&ep.key());
        let _ = publish::unpublish(ctx, ep);
        return Err(e);
    }
    Ok(())
}

/// weft never plugs the host into itself: a "container" namespace that is
/// the one weft runs in, or the host's, would get the container end of the
/// veth and a default route via the gateway, taking over the host's
/// routing. The host's is PID 1's; where PID 1 cannot be inspected (a
/// process with fewer capabilities than init may not), the namespaces of
/// the processes that started weft stand for it: runtimes, shells and
/// service managers run in the host's namespace, not in a container's.
pub fn refuse_host_namespace(netns: &Netns) -> Result<()> {
    let id = Some(netns.id());
    let ns_of = |pid: &str| weft_datapath::netns::id_of(format!("/proc/{pid}/ns/net"));
    let whose = if id == ns_of("thread-self") {
        "weft's own network namespace".to_string()
    } else if id == ns_of("1") {
        "the host's network namespace (that of PID 1)".to_string()
    } else if let Some(pid) = ancestors().into_iter().find(|p| id == ns_of(&p.to_string())) {
        format!("the host's network namespace (that of PID {pid}, which started weft)")
    } else {
        return Ok(());
    };
    bail!(
        "{} is {whose}, not a container's: weft plugs containers into networks, never the host",
        netns.path().display()
    )
}

/// weft's parent, its parent, ... up to (not including) PID 1.
fn ancestors() -> Vec<u32> {
    // SAFETY: getppid has no preconditions.
    let mut pid = unsafe { libc::getppid() } as u32;
    let mut out = Vec::new();
    while pid > 1 && out.len() < 64 {
        out.push(pid);
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // "PID (COMM) STATE PPID ...": COMM may hold spaces and ')'.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        pid = after.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    }
    out
}

/// The first `ethN` that is neither an interface in the container nor one
/// weft recorded for it. A container already on this network keeps
/// `eth0`-style naming out of it: attaching it twice is refused by the
/// store, as before, not turned into a second interface.
fn free_ifname(ctx: &mut Context, req: &AttachRequest, netns: &Netns) -> Result<String> {
    let mine = ctx.store.container_endpoints(&req.network, &req.container)?;
    if let Some(ep) = mine.first() {
        bail!(
            "container {} is already attached to network {} (as {}); give --ifname for \
             another interface on it",
            req.container,
            req.network,
            ep.ifname
        );
    }
    let taken: Vec<String> = netns
        .netlink()
        .and_then(|mut nl| nl.links())
        .map(|ls| ls.into_iter().map(|l| l.name).collect())
        .with_context(|| format!("list interfaces in {}", netns.path().display()))?;
    let mut name = None;
    for n in (0..).map(|i| format!("eth{i}")) {
        if !taken.contains(&n) || leftover_of(ctx, req, &n)? {
            name = Some(n);
            break;
        }
    }
    let name = name.expect("some ethN is free");
    tracing::debug!(container = req.container, ifname = name, "chose interface name");
    Ok(name)
}

/// Whether the container's `ifname` is the end of a pair this network
/// retired (a detach moments ago, its reaper not done yet): plugging it
/// again deletes that pair first, so the name is free.
fn leftover_of(ctx: &mut Context, req: &AttachRequest, ifname: &str) -> Result<bool> {
    let host_veth = names::host_veth_name(&req.network, &req.container, ifname);
    let link = ctx.host()?.link_by_name(&host_veth)?;
    Ok(link.is_some_and(|l| l.alias.as_deref() == Some(plug::RETIRED_ALIAS)))
}

/// The network's bridge on this host. One whose bridge is gone (reboot,
/// manual deletion) is rebuilt here rather than failing every attach until
/// someone runs gc; an overlay's bridge is its agent's to make.
pub fn bridge_of(ctx: &mut Context, net: &Network) -> Result<Link> {
    match ctx.host()?.link_by_name(&net.bridge)? {
        Some(b) => Ok(b),
        None if net.driver == weft_model::Driver::Overlay => bail!(
            "overlay network {} is not set up on this host yet: is `weft agent` running here?",
            net.name
        ),
        None => {
            network::build(ctx, net)?;
            ctx.host()?
                .link_by_name(&net.bridge)?
                .ok_or_else(|| anyhow!("bridge {} missing", net.bridge))
        }
    }
}

/// Removes the container's endpoints on the network (one per ifname, or
/// just `ifname`). Returns what was removed.
pub fn detach(
    ctx: &mut Context,
    network: &str,
    container: &str,
    ifname: Option<&str>,
) -> Result<Vec<Endpoint>> {
    let _own = ctx.share()?;
    if ctx.store.network(network)?.is_none() {
        bail!("{}", network::missing(ctx, network, Some(container))?);
    }
    let eps: Vec<Endpoint> = ctx
        .store
        .container_endpoints(network, container)?
        .into_iter()
        .filter(|e| ifname.is_none_or(|i| e.ifname == i))
        .filter(|e| e.node == ctx.node)
        .collect();
    if eps.is_empty() {
        bail!("container {container} is not attached to network {network}");
    }
    for ep in &eps {
        teardown(ctx, ep)?;
        tracing::info!(
            container = ep.container,
            network = ep.network,
            ifname = ep.ifname,
            address = %ep.address.addr(),
            "detached"
        );
    }
    Ok(eps)
}

/// Takes the veth down (the container is cut off at once), removes the
/// record and with it the address, retires the veth and deletes the pair
/// in the background (see `reaper`). A store that refuses the removal
/// (read-only, full, unreachable) gets the veth back up: one error, nothing
/// half done. It is not retired before the record is gone, because another
/// detach's reaper deletes every retired pair. A crash in between leaves a
/// record whose veth is down or retired; `weft gc` removes both.
pub fn teardown(ctx: &mut Context, ep: &Endpoint) -> Result<()> {
    // Another host's container is alive there: its record and address are
    // that host's to free.
    if ep.node != ctx.node {
        bail!(
            "endpoint {} belongs to node {}, not this one; detach it there",
            ep.key(),
            ep.node.as_deref().unwrap_or("(single host)")
        );
    }
    let what = || format!("detach {} from {}", ep.container, ep.network);
    let cut = plug::set_carrier(ctx.host()?, &ep.host_veth, false).with_context(what)?;
    if let Err(e) = ctx.store.remove_endpoint(&ep.key()) {
        if cut {
            let _ = plug::set_carrier(ctx.host()?, &ep.host_veth, true);
        }
        return Err(anyhow::Error::from(e).context(what()));
    }
    let retired = cut && plug::retire(ctx.host()?, &ep.host_veth).with_context(what)?;
    publish::unpublish(ctx, ep)?;
    if retired && !reaper::delete_later() {
        plug::unplug(ctx.host()?, &ep.host_veth)?;
    }
    if let Err(e) = resolv::refresh(ctx, &ep.netns) {
        tracing::warn!("{e:#}");
    }
    Ok(())
}
