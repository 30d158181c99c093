//! An explanation: the steps of a packet's path with the live values at
//! each, the first failing one with why and a fix, and how to print it.

use std::fmt::Write;

use serde::Serialize;

/// The kinds of step a path can have, in the order a packet meets them.
/// A bridged path (one network) goes netns → interface → route → neighbour
/// → veth → bridge-port → fdb → firewall → peer-veth → peer → mtu; a routed
/// one leaves through the gateway: fdb → host-route → firewall → nat (→
/// host-neighbour → fdb of the other bridge → peer...). An overlay path
/// crosses to another host: fdb → vxlan-fdb → underlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    /// SRC's network namespace can be entered.
    Netns,
    /// SRC's interface: present, up, its address.
    Interface,
    /// The kernel's route lookup in SRC (RTM_GETROUTE).
    Route,
    /// SRC's ARP/NDP entry for the next hop.
    Neighbour,
    /// SRC's host veth: up, carrier, a port of the bridge.
    Veth,
    /// The bridge and SRC's port on it: forwarding.
    BridgePort,
    /// The bridge FDB entry for the next hop's MAC.
    Fdb,
    /// Overlay: the VXLAN device's entry for the MAC, naming the remote VTEP.
    VxlanFdb,
    /// Overlay: the host's route to the remote host's underlay address.
    Underlay,
    /// The host's route lookup for a packet arriving from the bridge.
    HostRoute,
    /// weft's forward chain: the rule whose verdict applies.
    Firewall,
    /// weft's postrouting chain: masquerade or not.
    Nat,
    /// The host's ARP/NDP entry for DST on DST's bridge.
    HostNeighbour,
    /// DST's host veth: up, carrier, a forwarding port of its bridge.
    PeerVeth,
    /// DST's interface: present, up, the address.
    Peer,
    /// MTU of every link of each L2 segment agrees.
    Mtu,
    /// A real packet sent with --probe.
    Probe,
}

impl StepKind {
    pub fn name(self) -> &'static str {
        match self {
            StepKind::Netns => "netns",
            StepKind::Interface => "interface",
            StepKind::Route => "route",
            StepKind::Neighbour => "neighbour",
            StepKind::Veth => "veth",
            StepKind::BridgePort => "bridge-port",
            StepKind::Fdb => "fdb",
            StepKind::VxlanFdb => "vxlan-fdb",
            StepKind::Underlay => "underlay",
            StepKind::HostRoute => "host-route",
            StepKind::Firewall => "firewall",
            StepKind::Nat => "nat",
            StepKind::HostNeighbour => "host-neighbour",
            StepKind::PeerVeth => "peer-veth",
            StepKind::Peer => "peer",
            StepKind::Mtu => "mtu",
            StepKind::Probe => "probe",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    /// Passes, but something disagrees with the store or looks wrong.
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub step: StepKind,
    pub status: Status,
    /// What was looked at, with the live values.
    pub facts: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Step {
    pub fn pass(step: StepKind, facts: impl Into<String>) -> Step {
        Step {
            step,
            status: Status::Pass,
            facts: facts.into(),
            notes: vec![],
            why: None,
            fix: None,
        }
    }

    pub fn warn(step: StepKind, facts: impl Into<String>, why: impl Into<String>) -> Step {
        Step { status: Status::Warn, why: Some(why.into()), ..Step::pass(step, facts) }
    }

    pub fn fail(step: StepKind, facts: impl Into<String>, why: impl Into<String>) -> Step {
        Step { status: Status::Fail, why: Some(why.into()), ..Step::pass(step, facts) }
    }

    pub fn fix(mut self, fix: impl Into<String>) -> Step {
        self.fix = Some(fix.into());
        self
    }

    pub fn fix_opt(mut self, fix: Option<String>) -> Step {
        self.fix = fix;
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Step {
        self.notes.push(note.into());
        self
    }
}

#[derive(Debug, Serialize)]
pub struct Explanation {
    pub src: String,
    pub dst: String,
    /// The address DST resolved to.
    pub address: String,
    pub proto: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub steps: Vec<Step>,
    /// `pass` or `fail`.
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_step: Option<StepKind>,
}

impl Explanation {
    pub fn finish(&mut self) {
        self.failed_step = self.steps.iter().find(|s| s.status == Status::Fail).map(|s| s.step);
        self.result = if self.failed_step.is_some() { "fail" } else { "pass" };
    }

    pub fn failure(&self) -> Option<(usize, &Step)> {
        self.steps
            .iter()
            .enumerate()
            .find(|(_, s)| s.status == Status::Fail)
            .map(|(i, s)| (i + 1, s))
    }
}

pub fn render_text(e: &Explanation, width: usize) -> String {
    let mut o = String::new();
    let port = e.port.map(|p| format!(" port {p}")).unwrap_or_default();
    let dst = if e.dst == e.address { e.dst.clone() } else { format!("{} ({})", e.dst, e.address) };
    let _ = writeln!(o, "{} -> {dst}, {}{port}", e.src, e.proto);
    let name_w = e.steps.iter().map(|s| s.step.name().len()).max().unwrap_or(5);
    let lead = 4 + 2 + 4 + 2 + name_w + 2;
    for (i, s) in e.steps.iter().enumerate() {
        let status = match s.status {
            Status::Pass => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        };
        let head = format!("{:>4}  {status:<4}  {:<name_w$}  ", i + 1, s.step.name());
        wrap(&mut o, &head, &s.facts, lead, width);
        for n in &s.notes {
            wrap(&mut o, &" ".repeat(lead), n, lead, width);
        }
        if let Some(w) = &s.why {
            wrap(&mut o, &format!("{}why: ", " ".repeat(lead)), w, lead + 5, width);
        }
        if let Some(f) = &s.fix {
            let _ = writeln!(o, "{}fix: {f}", " ".repeat(lead));
        }
    }
    match e.failure() {
        Some((n, s)) => {
            let why = s.why.as_deref().unwrap_or("");
            let _ = writeln!(o, "result: FAIL at step {n} ({}): {why}", s.step.name());
        }
        None => {
            let warns = e.steps.iter().filter(|s| s.status == Status::Warn).count();
            if warns > 0 {
                let _ = writeln!(o, "result: every step passes ({warns} with warnings)");
            } else {
                let _ = writeln!(o, "result: every step passes");
            }
        }
    }
    o
}

/// Writes `head` then `text` wrapped at word boundaries to `width`, with
/// continuation lines indented by `indent`.
pub fn wrap(o: &mut String, head: &str, text: &str, indent: usize, width: usize) {
    let mut line = head.to_string();
    let mut fresh = true;
    for word in text.split(' ') {
        let len = line.chars().count();
        if !fresh && len + 1 + word.chars().count() > width {
            let _ = writeln!(o, "{}", line.trim_end());
            line = " ".repeat(indent);
            fresh = true;
        }
        if !fresh {
            line.push(' ');
        }
        line.push_str(word);
        fresh = false;
    }
    let _ = writeln!(o, "{}", line.trim_end());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_long_facts_under_the_column() {
        let mut o = String::new();
        wrap(&mut o, "   1  ok    route  ", &"word ".repeat(30), 19, 60);
        assert!(o.lines().all(|l| l.len() <= 60), "{o}");
        assert!(o.lines().skip(1).all(|l| l.starts_with(&" ".repeat(19))), "{o}");
    }
}
