//! Seeing the network as the seed draws it: `weft topology` (what exists,
//! read from the kernel next to what the store says) and `weft explain`
//! (the path of one packet, step by step, stopping where it breaks).
//!
//! live.rs reads the kernel once; build.rs turns store + kernel into the
//! topology model (model.rs), which render_{text,dot,svg}.rs draw. walk.rs
//! walks a packet's path from SRC, far.rs beyond SRC's bridge, with gate.rs
//! (weft's firewall, judged by firewall.rs), peer.rs (DST's end, MTU) and
//! overlay.rs; the steps (steps.rs) say what was found; probe.rs sends a
//! real packet.

mod build;
mod facts;
mod far;
mod firewall;
mod gate;
mod hint;
mod live;
pub mod model;
mod overlay;
mod peer;
mod probe;
mod published;
pub mod render_dot;
pub mod render_svg;
pub mod render_text;
pub mod steps;
mod walk;

use std::collections::BTreeMap;

use anyhow::{bail, Result};

use crate::ops::Context;
pub use walk::Proto;

/// The topology of this host (and, for overlays, what the store knows of
/// the others); only `network` when given.
pub fn topology(ctx: &mut Context, network: Option<&str>) -> Result<model::Topology> {
    let mut nets = ctx.store.networks()?;
    if let Some(n) = network {
        nets.retain(|x| x.name == n);
        if nets.is_empty() {
            bail!("{}", crate::ops::network::missing(ctx, n, None)?);
        }
    }
    let eps: Vec<_> = ctx
        .store
        .endpoints(network)?
        .into_iter()
        .filter(|e| nets.iter().any(|n| n.name == e.network))
        .collect();
    let node = ctx.node.clone();
    let host = live::HostView::read(ctx.host()?)?;
    let local: Vec<_> =
        eps.iter().filter(|e| e.node.is_none() || e.node.as_deref() == node.as_deref()).collect();
    let containers: BTreeMap<_, _> = live::read_containers(&local);
    let idle = crate::netavark::linger::idle_networks(ctx)?;
    Ok(build::topology(&build::Inputs {
        networks: &nets,
        endpoints: &eps,
        host: &host,
        containers: &containers,
        node: node.as_deref(),
        idle: &idle,
    }))
}

pub struct ExplainRequest {
    pub src: String,
    pub dst: String,
    pub proto: Proto,
    pub port: Option<u16>,
    pub probe: bool,
}

pub fn explain(ctx: &mut Context, req: &ExplainRequest) -> Result<steps::Explanation> {
    let nets = ctx.store.networks()?;
    let eps = ctx.store.endpoints(None)?;
    let node = ctx.node.clone();
    let ends = walk::resolve(&nets, &eps, &req.src, &req.dst)?;
    let host_nl = ctx.host()?;
    let host = live::HostView::read(host_nl)?;
    let sets = host.firewall.as_ref().ok().filter(|s| s.present).map(firewall::Sets::from_status);
    let mut w = walk::Walk {
        host: &host,
        host_nl,
        nets: &nets,
        eps: &eps,
        sets,
        node: node.as_deref(),
        proto: req.proto,
        port: req.port,
        steps: Vec::new(),
    };
    let walked =
        w.src_side(&ends).and_then(|side| if side.local { Ok(()) } else { w.beyond(&ends, &side) });
    if let Err(walk::Halt::Error(e)) = walked {
        return Err(e);
    }
    if req.probe {
        let step = probe::run(&host, w.host_nl, &ends, node.as_deref(), req.proto, req.port)?;
        w.steps.push(step);
    }
    let mut e = steps::Explanation {
        src: req.src.clone(),
        dst: req.dst.clone(),
        address: ends.dst_ip.to_string(),
        proto: req.proto.name().to_string(),
        port: req.port,
        steps: w.steps,
        result: "pass",
        failed_step: None,
    };
    e.finish();
    Ok(e)
}

/// Text width: the terminal's (or $COLUMNS), else 100; within 60..=200.
pub fn width(given: Option<usize>) -> usize {
    let from_env = || std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok());
    let from_tty = || {
        // SAFETY: TIOCGWINSZ only fills the winsize struct we pass.
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: fd 1 is ours; a non-tty just makes the ioctl fail.
        let ok = unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) } == 0;
        (ok && ws.ws_col > 0).then_some(usize::from(ws.ws_col))
    };
    given.or_else(from_env).or_else(from_tty).unwrap_or(100).clamp(60, 200)
}
