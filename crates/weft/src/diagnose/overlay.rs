//! To another host over the overlay: the bridge hands the frame to the
//! VXLAN device, whose own table names the remote host's VTEP.

use weft_datapath::route_get::{Lookup, RouteKind, RouteQuery};
use weft_model::{Endpoint, Mac, Network};

use super::hint::ip;
use super::peer::MtuLink;
use super::steps::{Step, StepKind as K};
use super::walk::{Ends, Flow, SrcSide, Walk};

impl<'a> Walk<'a> {
    /// To another host over the overlay: the bridge hands the frame to the
    /// VXLAN device, whose own FDB names the remote host's VTEP.
    pub(super) fn overlay(
        &mut self,
        ends: &Ends<'a>,
        side: &SrcSide<'a>,
        net: &Network,
        d: &Endpoint,
        mac: Mac,
        seg: Vec<MtuLink>,
    ) -> Flow<()> {
        let host = self.host;
        let Some(br) = side.bridge else { return Ok(()) };
        let node = d.node.clone().unwrap_or_default();
        let vx = host.ns.links.iter().find(|l| {
            l.link.kind.as_deref() == Some("vxlan") && l.link.master == Some(br.link.index)
        });
        let Some(vx) = vx else {
            let s = Step::fail(
                K::Fdb,
                format!("{} has no VXLAN port", net.bridge),
                format!(
                    "{} is on host {node}, but this host's bridge has no tunnel to it",
                    d.container
                ),
            )
            .fix("run weft agent on this host (it builds the overlay)");
            return self.stop(s);
        };
        let vname = &vx.link.name;
        match host.fdb_entry(br.link.index, mac) {
            Some(e) if e.port == vx.link.index => self.push(Step::pass(
                K::Fdb,
                format!("{mac} -> port {vname} of {} ({} on host {node})", net.bridge, d.container),
            ))?,
            other => {
                let at = other.map_or_else(
                    || "no entry".to_string(),
                    |e| format!("port {}", host.ns.name_of(e.port)),
                );
                let s = Step::fail(
                    K::Fdb,
                    format!("{mac}: {at} in {}", net.bridge),
                    format!("{} is on host {node}: its MAC belongs on {vname}", d.container),
                )
                .fix("weft agent reconciles the overlay's entries (is it running?)");
                return self.stop(s);
            }
        }
        let entry = host.vteps.get(&vx.link.index).and_then(|v| v.iter().find(|e| e.mac == mac));
        let Some(vtep) = entry.map(|e| e.vtep) else {
            let s = Step::fail(
                K::VxlanFdb,
                format!("{vname} has no entry for {mac}"),
                "without it the VXLAN device drops the frame (learning is off)",
            )
            .fix("weft agent reconciles the overlay's entries (is it running?)");
            return self.stop(s);
        };
        self.push(Step::pass(
            K::VxlanFdb,
            format!("{mac} -> VTEP {vtep} (host {node}) via {vname}"),
        ))?;
        match self.host_nl.route_get(&RouteQuery::to(vtep))? {
            Lookup::Found(a) if a.kind == RouteKind::Unicast => {
                let dev = host.ns.name_of(a.oif.unwrap_or(0));
                self.push(Step::pass(
                    K::Underlay,
                    format!(
                        "{vtep} dev {dev}{}",
                        a.gateway.map(|g| format!(" via {g}")).unwrap_or_default()
                    ),
                ))?
            }
            other => {
                let s = Step::fail(
                    K::Underlay,
                    format!("no usable route to {vtep}: {other:?}"),
                    format!("host {node}'s underlay address is unreachable from here"),
                );
                return self.stop(s);
            }
        }
        self.firewall_bridged(&net.bridge, ends.dst_ip, side.src)?;
        self.push(Step::pass(
            K::Peer,
            format!(
                "{} is on host {node}: not observable from here (run weft explain there)",
                d.container
            ),
        ))?;
        let mut seg = seg;
        seg.push(MtuLink {
            label: vname.clone(),
            mtu: vx.link.mtu,
            fix: ip(&format!("link set {vname} mtu {}", net.mtu)),
            bridge: false,
        });
        self.mtu(&[(net, seg)])
    }
}
