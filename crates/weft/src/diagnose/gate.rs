//! weft's firewall on the path: the forward chain's verdict for the
//! packet, and masquerade on the way out.

use std::net::IpAddr;

use weft_model::Endpoint;

use super::firewall::{self, Action, Decision, Packet};
use super::steps::{Status, Step, StepKind as K};
use super::walk::{is_link_local, Ends, Flow, Walk};

impl<'a> Walk<'a> {
    /// A bridged frame: the forward hook sees it only under br_netfilter,
    /// with the bridge as both interfaces.
    pub(super) fn firewall_bridged(
        &mut self,
        bridge: &str,
        dst: IpAddr,
        src: &Endpoint,
    ) -> Flow<()> {
        let Some(sets) = self.sets.clone() else { return self.no_table() };
        let family = if dst.is_ipv4() { "iptables" } else { "ip6tables" };
        let brnf = std::fs::read_to_string(format!("/proc/sys/net/bridge/bridge-nf-call-{family}"))
            .is_ok_and(|v| v.trim() == "1");
        let p = Packet {
            iif: bridge,
            oif: bridge,
            saddr: src_addr(src, dst),
            established: false,
            dnat: false,
        };
        let d = firewall::forward(&p, &sets);
        let facts = format!(
            "bridged within {bridge}; forward chain (iif {bridge} oif {bridge}): {}",
            describe(&d)
        );
        if !brnf {
            return self.firewall_pass(
                Step::pass(K::Firewall, facts)
                    .note("br_netfilter is off here: bridged frames do not meet nftables at all"),
            );
        }
        match d.action {
            Action::Drop => self.stop(
                Step::fail(K::Firewall, facts, d.why)
                    .fix("weft firewall reload   (rebuilds weft's table)"),
            ),
            _ => self.firewall_pass(Step::pass(K::Firewall, facts).note(d.why)),
        }
    }

    pub(super) fn firewall_routed(
        &mut self,
        ends: &Ends,
        src: &Endpoint,
        iif: &str,
        oif: &str,
        saddr: IpAddr,
    ) -> Flow<()> {
        let Some(sets) = self.sets.clone() else { return self.no_table() };
        let p = Packet { iif, oif, saddr, established: false, dnat: false };
        let d = firewall::forward(&p, &sets);
        let facts = format!("forward chain, iif {iif} oif {oif}: {}", describe(&d));
        if d.action != Action::Drop {
            return self.firewall_pass(Step::pass(K::Firewall, facts).note(d.why));
        }
        let reason = match d.rule {
            Some(3) => "internal networks have no way out",
            Some(4) => "internal networks let nothing in from other networks",
            Some(6) => "weft isolates its networks from each other",
            Some(7) => "containers take no unsolicited connections from outside",
            _ => "weft's firewall drops it",
        };
        let why = format!("{reason} ({})", d.why);
        let join = ends.dst.filter(|_| matches!(d.rule, Some(4 | 6))).map(|dst| {
            format!(
                "weft attach {} {} --ifname eth1   (a container on both networks reaches both)",
                dst.network, src.container
            )
        });
        let fix = match d.rule {
            Some(3) => Some(format!(
                "none: network {} is internal by design; attach {} to a non-internal network \
                 for a way out",
                src.network, src.container
            )),
            _ => join,
        };
        self.stop(Step::fail(K::Firewall, facts, why).fix_opt(fix))
    }

    /// A passing firewall step; a warning when the live forward chain is
    /// not weft's, since the verdict assumes weft's rules.
    fn firewall_pass(&mut self, step: Step) -> Flow<()> {
        let live =
            self.host.firewall.as_ref().ok().and_then(|st| st.chains.get("forward").copied());
        match live {
            Some(n) if n != firewall::FORWARD_RULES => {
                let why = format!(
                    "the forward chain has {n} rules, weft's has {}: changed by hand? \
                     The verdict assumes weft's rules",
                    firewall::FORWARD_RULES
                );
                self.push(Step {
                    status: Status::Warn,
                    why: Some(why),
                    fix: Some("weft firewall reload".into()),
                    ..step
                })
            }
            _ => self.push(step),
        }
    }

    fn no_table(&mut self) -> Flow<()> {
        let (facts, why) = match &self.host.firewall {
            Err(e) => ("cannot read table inet weft".to_string(), e.clone()),
            Ok(_) => (
                "table inet weft is absent".to_string(),
                "nothing isolates weft's networks and nothing is NATed".to_string(),
            ),
        };
        self.push(Step::warn(K::Firewall, facts, why).fix("weft firewall reload"))
    }

    pub(super) fn nat(&mut self, oif: &str, oif_index: u32, saddr: IpAddr) -> Flow<()> {
        let Some(sets) = self.sets.clone() else { return Ok(()) };
        let p = Packet { iif: "", oif, saddr, established: false, dnat: false };
        let out_addr = self
            .host
            .ns
            .addrs_of(oif_index)
            .into_iter()
            .find(|a| a.addr().is_ipv4() == saddr.is_ipv4() && !is_link_local(a.addr()))
            .map(|a| a.addr().to_string())
            .unwrap_or_else(|| "(none)".into());
        let beyond = format!("beyond {oif} the path leaves weft: not checked");
        match firewall::postrouting(&p, &sets) {
            Some(d) => self.push(
                Step::pass(
                    K::Nat,
                    format!("masquerade ({}): leaves {oif} as {out_addr}", describe(&d)),
                )
                .note(d.why)
                .note(beyond),
            ),
            None => self.push(
                Step::warn(
                    K::Nat,
                    format!("no masquerade: leaves {oif} as {saddr}"),
                    format!("{saddr} is in no @masq set: replies need a route back"),
                )
                .fix("weft firewall reload")
                .note(beyond),
            ),
        }
    }
}

fn describe(d: &Decision) -> String {
    let verdict = match d.action {
        Action::Accept => "accept",
        Action::Drop => "drop",
        Action::Masquerade => "masquerade",
    };
    match d.rule {
        Some(n) => format!("rule {n} \"{}\" -> {verdict}", d.comment),
        None => format!("{} -> {verdict}", d.comment),
    }
}

/// SRC's address in DST's family.
pub(super) fn src_addr(src: &Endpoint, dst: IpAddr) -> IpAddr {
    match (dst, src.address6) {
        (IpAddr::V6(_), Some(a6)) => a6.addr().into(),
        _ => src.address.addr().into(),
    }
}
