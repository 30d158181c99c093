//! Published ports of endpoints: checks before an attach reserves them, and
//! the firewall's map elements after. The store refuses a port another
//! endpoint publishes (in its reservation transaction); this module refuses
//! one that a socket on the host listens on, which the store cannot see.

use std::net::IpAddr;

use anyhow::{bail, Result};
use weft_firewall::{Firewall, PortRule};
use weft_model::{Endpoint, Network, PortMapping, Proto};

use super::context::lock;
use super::Context;

/// What an attach with `ports` must refuse before anything is reserved:
/// ports on a network they cannot reach, and host ports a socket holds.
pub fn check(net: &Network, ports: &[PortMapping]) -> Result<()> {
    check_with(net, ports, true)
}

/// [`check`]; `host_sockets: false` leaves host sockets to a runtime that
/// binds its published ports itself (Podman).
pub fn check_with(net: &Network, ports: &[PortMapping], host_sockets: bool) -> Result<()> {
    weft_model::port::check_all(ports)?;
    if ports.is_empty() {
        return Ok(());
    }
    if net.internal {
        bail!(
            "network {} is internal: nothing from outside reaches it, so it cannot publish ports",
            net.name
        );
    }
    for p in ports {
        if p.host_ip.is_some_and(|a| a.is_ipv6() && a.to_canonical().is_loopback()) {
            bail!(
                "cannot publish {p}: IPv6 has no route_localnet, so the kernel never lets a \
                 connection from [::1] leave for a container; publish on 127.0.0.1 instead"
            );
        }
        if matches!(p.host_ip, Some(IpAddr::V6(_))) && net.subnet6.is_none() {
            bail!("cannot publish {p}: network {} has no IPv6 subnet", net.name);
        }
        if !host_sockets {
            continue;
        }
        if let Some(l) = listeners().into_iter().find(|l| l.clashes(p)) {
            bail!(
                "host port {}/{} is in use on this host: a socket listens on {} \
                 (`ss -lnp sport = :{}` shows which); choose another host port",
                l.port,
                l.proto,
                std::net::SocketAddr::new(l.addr, l.port),
                l.port
            );
        }
    }
    Ok(())
}

/// The mappings with a host port chosen for each dynamic one (`-p 80`):
/// the first free block in the kernel's ephemeral range (as docker does),
/// free meaning published by no endpoint of this host, by no other mapping
/// of this attach, and held by no socket. Two attaches choosing at once may
/// pick the same port; the store's reservation refuses the second.
pub fn choose_host_ports(ctx: &Context, ports: &[PortMapping]) -> Result<Vec<PortMapping>> {
    if !ports.iter().any(PortMapping::is_dynamic) {
        return Ok(ports.to_vec());
    }
    let mut taken: Vec<PortMapping> = ports.iter().filter(|p| !p.is_dynamic()).copied().collect();
    for ep in super::gc::local_endpoints(ctx)? {
        taken.extend(ep.ports);
    }
    let sockets = listeners();
    let (lo, hi) = ephemeral_range();
    let mut out = Vec::with_capacity(ports.len());
    for p in ports {
        if !p.is_dynamic() {
            out.push(*p);
            continue;
        }
        let span = (p.container_port_end - p.container_port) as u32;
        let found = (u32::from(lo)..=u32::from(hi).saturating_sub(span)).find_map(|start| {
            let c =
                PortMapping { host_port: start as u16, host_port_end: (start + span) as u16, ..*p };
            let free =
                !taken.iter().any(|t| t.overlaps(&c)) && !sockets.iter().any(|l| l.clashes(&c));
            free.then_some(c)
        });
        let Some(c) = found else {
            bail!("cannot publish {p}: no free host port in {lo}-{hi}");
        };
        tracing::info!(mapping = %c, "chose host port");
        taken.push(c);
        out.push(c);
    }
    Ok(out)
}

/// net.ipv4.ip_local_port_range, the ports the kernel picks from itself.
fn ephemeral_range() -> (u16, u16) {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range");
    let mut it = text.as_deref().unwrap_or("").split_whitespace().filter_map(|v| v.parse().ok());
    match (it.next(), it.next()) {
        (Some(lo), Some(hi)) if lo > 0 && lo <= hi => (lo, hi),
        _ => (32768, 60999),
    }
}

/// Adds the endpoint's map elements (one nft transaction). If that fails
/// (table deleted or flushed, a stale element in the way), the whole table
/// is rebuilt from the store instead, which already holds this endpoint.
pub fn publish(ctx: &mut Context, ep: &Endpoint, bridge: &str) -> Result<()> {
    if ep.ports.is_empty() {
        return Ok(());
    }
    let nl = ctx.host()?;
    if let Some(veth) = nl.link_by_name(&ep.host_veth)? {
        nl.set_hairpin(veth.index, &veth.name, true)?;
    }
    let added = {
        // Under the lock: an unpublish deciding that the network no longer
        // needs route_localnet either sees this endpoint or runs first.
        let _lock = lock(&ctx.state_dir.join("firewall.lock"))?;
        if ep.ports.iter().any(weft_firewall::reached_by_loopback) {
            weft_firewall::set_route_localnet(bridge, true)?;
        }
        Firewall::new().publish(&PortRule::of(ep))
    };
    if let Err(e) = added {
        tracing::info!("publishing by elements failed ({e}); rebuilding the table");
        ctx.sync_firewall()?;
    }
    Ok(())
}

/// Deletes the endpoint's map elements; once its record is gone, a rebuild
/// from the store is the fallback that cannot leave them behind. The last
/// port of the network that the host reaches by 127.0.0.1 takes
/// `route_localnet` with it.
pub fn unpublish(ctx: &Context, ep: &Endpoint) -> Result<()> {
    if ep.ports.is_empty() {
        return Ok(());
    }
    let _lock = lock(&ctx.state_dir.join("firewall.lock"))?;
    if let Err(e) = Firewall::new().unpublish(&PortRule::of(ep)) {
        tracing::info!("unpublishing by elements failed ({e}); rebuilding the table");
        drop(_lock);
        return ctx.sync_firewall();
    }
    if ep.ports.iter().any(weft_firewall::reached_by_loopback) {
        let mut eps = ctx.store.endpoints(Some(&ep.network))?;
        eps.retain(|e| e.node == ctx.node);
        if !needs_route_localnet(&ep.network, &eps) {
            if let Some(net) = ctx.store.network(&ep.network)? {
                // Not fatal: the bridge may be gone with its network.
                if let Err(e) = weft_firewall::set_route_localnet(&net.bridge, false) {
                    tracing::debug!("{e}");
                }
            }
        }
    }
    Ok(())
}

/// Whether some endpoint of `network` among `eps` (this host's) publishes
/// a port the host reaches by 127.0.0.1, which needs `route_localnet` on
/// the network's bridge.
pub fn needs_route_localnet(network: &str, eps: &[Endpoint]) -> bool {
    eps.iter()
        .filter(|e| e.network == network)
        .flat_map(|e| &e.ports)
        .any(weft_firewall::reached_by_loopback)
}

/// A socket of the host's namespace that holds a port.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listener {
    proto: Proto,
    addr: IpAddr,
    port: u16,
}

impl Listener {
    fn clashes(&self, p: &PortMapping) -> bool {
        if self.proto != p.protocol || self.port < p.host_port || self.port > p.host_port_end {
            return false;
        }
        match p.host_addr() {
            None => true,
            // `::` may take IPv4 too (unless v6only, which weft does not ask).
            Some(want) => self.addr == want || self.addr.is_unspecified(),
        }
    }
}

/// Listening TCP sockets, unconnected UDP sockets and SCTP endpoints of
/// the calling process's network namespace. TCP and UDP come from
/// sock_diag (/proc/net/tcp would walk every connection of the host, which
/// costs milliseconds); SCTP from /proc, when the module is loaded.
fn listeners() -> Vec<Listener> {
    use weft_datapath::sockets;
    let mut out = Vec::new();
    for (found, proto) in
        [(sockets::tcp_listeners(), Proto::Tcp), (sockets::udp_receivers(), Proto::Udp)]
    {
        match found {
            Ok(list) => {
                out.extend(list.into_iter().map(|b| Listener { proto, addr: b.addr, port: b.port }))
            }
            Err(e) => tracing::warn!("cannot list the host's {proto} sockets: {e}"),
        }
    }
    if let Ok(text) = std::fs::read_to_string("/proc/net/sctp/eps") {
        out.extend(parse_sctp(&text));
    }
    out
}

/// `/proc/net/sctp/eps`: `ENDPT SOCK STY SST HBKT LPORT UID INODE LADDRS...`.
fn parse_sctp(text: &str) -> Vec<Listener> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let Some(port) = f.get(5).and_then(|p| p.parse().ok()) else {
            continue;
        };
        for a in f.iter().skip(8).filter_map(|a| a.trim_start_matches('*').parse().ok()) {
            out.push(Listener { proto: Proto::Sctp, addr: a, port });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clashes() {
        let l = |a: &str, port| Listener { proto: Proto::Tcp, addr: a.parse().unwrap(), port };
        let p = |s: &str| s.parse::<PortMapping>().unwrap();
        assert!(l("127.0.0.1", 8080).clashes(&p("8080:80")));
        assert!(l("0.0.0.0", 8085).clashes(&p("8080-8090:8080-8090")));
        assert!(!l("0.0.0.0", 8080).clashes(&p("8080:80/udp")));
        assert!(!l("127.0.0.1", 8080).clashes(&p("10.0.0.1:8080:80")));
        assert!(l("::", 8080).clashes(&p("10.0.0.1:8080:80")));
        assert!(!l("0.0.0.0", 8081).clashes(&p("8080:80")));
    }

    #[test]
    fn parses_sctp_eps() {
        let t = " ENDPT     SOCK   STY SST HBKT LPORT   UID INODE LADDRS\n\
                 ffff 0 2 10 5 9999 0 123 10.0.0.1 *127.0.0.1\n";
        let l = parse_sctp(t);
        assert_eq!(l.len(), 2);
        assert_eq!(l[1].addr, "127.0.0.1".parse::<IpAddr>().unwrap());
    }
}
