//! `weft demo`: the seed's single-host scenario, built for real inside a
//! throwaway sandbox namespace and shown from live kernel state. Nothing
//! outside the sandbox is touched; the namespaces die with the process.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{anyhow, bail, Context as _, Result};
use clap::Args;
use weft_datapath::Netns;
use weft_model::network::NetworkSpec;
use weft_model::Endpoint;

use crate::ops::endpoint::{AttachRequest, NetnsRef};
use crate::ops::{self, Context};

#[derive(Args)]
pub struct Demo {
    /// Keep going after a failed ping (show everything anyway).
    #[arg(long)]
    keep_going: bool,
}

impl Demo {
    pub fn run(self) -> Result<()> {
        ops::context::require_net_admin()?;
        // The sandbox "host" is a fresh netns entered by this one thread:
        // weft's netlink sockets and the nft it runs all live there.
        let keep_going = self.keep_going;
        std::thread::spawn(move || -> Result<()> {
            new_netns().context("create sandbox host namespace")?;
            let dir = StateDir::new()?;
            run_demo(&dir.0, keep_going)
        })
        .join()
        .map_err(|_| anyhow!("demo thread panicked"))?
    }
}

/// Moves the calling thread into a new, empty network namespace.
fn new_netns() -> Result<()> {
    // SAFETY: unshare affects only the calling thread's namespaces.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        bail!("unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// A container namespace held open by a file descriptor: it lives until
/// the file is closed. Made on a short-lived thread so that the caller
/// stays where it is.
fn container_netns() -> Result<File> {
    std::thread::spawn(|| -> Result<File> {
        new_netns()?;
        Ok(File::open("/proc/thread-self/ns/net")?)
    })
    .join()
    .map_err(|_| anyhow!("netns thread panicked"))?
}

struct StateDir(PathBuf);

impl StateDir {
    fn new() -> Result<StateDir> {
        let p = std::env::temp_dir().join(format!("weft-demo-{}", std::process::id()));
        std::fs::create_dir_all(&p)?;
        Ok(StateDir(p))
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn ns_path(f: &File) -> PathBuf {
    PathBuf::from(format!("/proc/{}/fd/{}", std::process::id(), f.as_raw_fd()))
}

fn step(n: u32, what: &str) {
    println!("\n\x1b[1m{n}. {what}\x1b[0m");
}

fn run_demo(state_dir: &std::path::Path, keep_going: bool) -> Result<()> {
    println!(
        "weft demo: the seed's single-host container network, built in a throwaway sandbox netns"
    );
    let mut ctx = Context::open(state_dir)?;
    ctx.host()?.set_up(1, "lo")?;

    step(1, "a network: bridge weft0 (the seed's docker0) with the gateway 172.17.0.1/16");
    let net = ops::network::create(
        &mut ctx,
        &NetworkSpec {
            name: "demo".into(),
            subnet: Some("172.17.0.0/16".parse()?),
            bridge: Some("weft0".into()),
            ..Default::default()
        },
    )?;
    println!("   $ weft network create demo --subnet 172.17.0.0/16 --bridge weft0");
    println!(
        "   bridge {} up, address {}, outbound NAT and isolation rules in table inet weft",
        net.bridge,
        net.gateway_cidr()
    );

    step(2, "two containers, each in its own network namespace, plugged in by a veth pair");
    let ns1 = container_netns()?;
    let ns2 = container_netns()?;
    let mut eps = Vec::new();
    for (name, f) in [("busybox-1", &ns1), ("busybox-2", &ns2)] {
        let (ep, _) = ops::endpoint::attach(
            &mut ctx,
            &AttachRequest {
                network: "demo".into(),
                container: name.into(),
                netns: NetnsRef::Path(ns_path(f)),
                ifname: Some("eth0".into()),
                ip: None,
                ip6: None,
                mac: None,
                ports: Vec::new(),
                aliases: Vec::new(),
            },
        )?;
        println!(
            "   $ weft attach demo {name}   ->  eth0 {} ({}), host end {}",
            ep.address, ep.mac, ep.host_veth
        );
        eps.push(ep);
    }

    step(3, "inside busybox-1: its routes (the seed's two: subnet direct, default via the bridge)");
    let mut nl1 = Netns::open(ns_path(&ns1))?.netlink()?;
    for r in nl1.routes()?.iter().filter(|r| r.dest.addr().is_ipv4()) {
        let gw = r.gateway.map(|g| g.to_string()).unwrap_or_else(|| "0.0.0.0".into());
        println!(
            "   {:<18} gateway {:<12} {}",
            r.dest.to_string(),
            gw,
            if r.scope_link { "direct (scope link)" } else { "via gateway" }
        );
    }

    step(4, "ping across the bridge, both ways");
    let mut ok = true;
    for (from, f, to) in [("busybox-1", &ns1, &eps[1]), ("busybox-2", &ns2, &eps[0])] {
        let good = ping(f, &to.address.addr().to_string())?;
        println!(
            "   {from} -> {} ({}): {}",
            to.container,
            to.address.addr(),
            if good { "reply received" } else { "NO REPLY" }
        );
        ok &= good;
    }

    step(5, "what made it work: ARP over the bridge, and the bridge's MAC table (FDB)");
    for n in nl1.neighbours()?.iter().filter(|n| n.ip.is_ipv4()) {
        let who = eps
            .iter()
            .find(|e| e.address.addr() == n.ip)
            .map(|e| e.container.as_str())
            .unwrap_or("gateway");
        println!(
            "   busybox-1 ARP: {} is at {} ({who}, {})",
            n.ip,
            n.mac.map(|m| m.to_string()).unwrap_or_default(),
            n.state
        );
    }
    show_fdb(&mut ctx, &net.bridge, &eps)?;
    draw(&net.bridge, &net.gateway.to_string(), &eps);

    step(6, "clean up");
    for ep in &eps {
        ops::endpoint::detach(&mut ctx, "demo", &ep.container, None)?;
    }
    ops::network::remove(&mut ctx, "demo", false)?;
    println!(
        "   detached both, removed the network; the sandbox namespaces vanish with this process"
    );
    if !ok && !keep_going {
        bail!("a ping failed: the containers could not reach each other");
    }
    Ok(())
}

fn ping(ns: &File, addr: &str) -> Result<bool> {
    let fd = ns.as_raw_fd();
    let mut cmd = Command::new("ping");
    cmd.args(["-c", "1", "-W", "2", addr]);
    // SAFETY: between fork and exec only setns (async-signal-safe) runs.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().context("run ping (install iputils-ping)")?;
    Ok(out.status.success())
}

fn show_fdb(ctx: &mut Context, bridge: &str, eps: &[Endpoint]) -> Result<()> {
    let nl = ctx.host()?;
    let br = nl.link_by_name(bridge)?.ok_or_else(|| anyhow!("bridge {bridge} missing"))?;
    let links = nl.links()?;
    for e in nl.fdb()? {
        if e.local || e.bridge != Some(br.index) {
            continue;
        }
        let Some(ep) = eps.iter().find(|ep| ep.mac == e.mac) else { continue };
        let port = links.iter().find(|l| l.index == e.port).map(|l| l.name.as_str()).unwrap_or("?");
        println!("   {bridge} FDB: {} -> port {port} ({})", e.mac, ep.container);
    }
    Ok(())
}

fn draw(bridge: &str, gateway: &str, eps: &[Endpoint]) {
    let a = &eps[0];
    let b = &eps[1];
    println!();
    println!("   +------------------+      +------------------+");
    println!("   | {:<16} |      | {:<16} |", a.container, b.container);
    println!("   | {:<16} |      | {:<16} |", a.address.addr(), b.address.addr());
    println!("   | eth0             |      | eth0             |");
    println!("   +--------|---------+      +--------|---------+");
    println!("   +--------|-------------------------|---------+");
    println!("   | {:<16}         {:>16} |", a.host_veth, b.host_veth);
    println!("   | {:^41} |", format!("{bridge}  {gateway}"));
    println!("   +-------------------------------------------+  sandbox host namespace");
}
