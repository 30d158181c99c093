//! A packet to one of the host's own addresses with a port: if weft
//! publishes that port, the DNAT in weft's table sends it on to a
//! container, and that translation is what can break (the table deleted or
//! flushed, the port's map element gone).

use std::net::IpAddr;

use weft_model::{Endpoint, PortMapping, Proto as PortProto};

use super::steps::{Step, StepKind as K};
use super::walk::{Flow, Proto, Walk};

/// The published mapping that catches `dst:port`, and its endpoint.
pub fn lookup<'e>(
    eps: &'e [Endpoint],
    node: Option<&str>,
    proto: PortProto,
    dst: IpAddr,
    port: u16,
) -> Option<(&'e Endpoint, PortMapping)> {
    eps.iter().filter(|e| e.node.as_deref() == node).find_map(|e| {
        e.ports
            .iter()
            .find(|m| {
                m.protocol == proto
                    && (m.host_port..=m.host_port_end).contains(&port)
                    && m.covers_family(dst.is_ipv6())
                    && m.host_addr().is_none_or(|a| a == dst)
            })
            .map(|m| (e, *m))
    })
}

/// How the mapping reads as the key of its `publish4`/`publish6` element.
fn element_key(m: &PortMapping, v6: bool) -> String {
    let addr = match m.host_addr() {
        Some(a) => a.to_string(),
        None if v6 => "::/0".into(),
        None => "0.0.0.0/0".into(),
    };
    let ports = if m.host_port == m.host_port_end {
        m.host_port.to_string()
    } else {
        format!("{}-{}", m.host_port, m.host_port_end)
    };
    format!("{addr} . {} . {ports} :", m.protocol)
}

impl Walk<'_> {
    /// After "delivered to the host's own stack": the published port's
    /// DNAT, checked against weft's table as the kernel has it.
    pub fn published_port(&mut self, dst: IpAddr) -> Flow<()> {
        let (Some(port), Some(proto)) = (self.port, port_proto(self.proto)) else {
            return Ok(());
        };
        let Some((ep, m)) = lookup(self.eps, self.node, proto, dst, port) else {
            let s = Step::pass(
                K::Firewall,
                format!("{port}/{proto} is not a port weft publishes on {dst}"),
            )
            .note("a process on the host itself must listen on it");
            return self.push(s);
        };
        let cport = m.container_port + (port - m.host_port);
        let target = match dst {
            IpAddr::V6(_) => ep.address6.map(|a| a.addr().to_string()),
            IpAddr::V4(_) => Some(ep.address.addr().to_string()),
        }
        .unwrap_or_else(|| "?".into());
        let facts = format!(
            "{dst}:{port}/{proto} is published to {} {target}:{cport} ({})",
            ep.container,
            crate::output::port_text(&m)
        );
        let map = if dst.is_ipv6() { "publish6" } else { "publish4" };
        let table = match &self.host.firewall {
            Ok(st) => st,
            Err(e) => {
                let s = Step::warn(K::Firewall, facts, format!("cannot read weft's table: {e}"));
                return self.push(s);
            }
        };
        if !table.present {
            let s = Step::fail(
                K::Firewall,
                facts,
                "table inet weft is missing: nothing translates the port to the container",
            )
            .fix("weft firewall reload");
            return self.stop(s);
        }
        let key = element_key(&m, dst.is_ipv6());
        let found = table.maps.get(map).is_some_and(|els| els.iter().any(|e| e.starts_with(&key)));
        if !found {
            let s = Step::fail(
                K::Firewall,
                facts,
                format!("map {map} of table inet weft has no element for it: no DNAT"),
            )
            .fix("weft firewall reload");
            return self.stop(s);
        }
        let s = Step::pass(K::Firewall, format!("{facts}: DNAT by map {map}")).note(format!(
            "from here it goes to {}: `weft explain` with {} as destination and --port \
             {cport} walks that part",
            ep.container, ep.container
        ));
        self.push(s)
    }
}

fn port_proto(p: Proto) -> Option<PortProto> {
    match p {
        Proto::Tcp => Some(PortProto::Tcp),
        Proto::Udp => Some(PortProto::Udp),
        Proto::Icmp => None,
    }
}
