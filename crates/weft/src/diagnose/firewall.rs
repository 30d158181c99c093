//! Which of weft's rules a packet meets. weft's table has a fixed list of
//! rules (weft-firewall's ruleset.rs) and only its named sets change, so the
//! verdict follows from the live set contents (read back with `nft -j`) and
//! this mirror of the rule order. A unit test keeps the mirror in step with
//! the ruleset weft applies.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use weft_firewall::{sets, TableStatus};

/// weft's `forward` chain has exactly these rules; `postrouting` starts
/// with the two masquerade rules (port publishing appends its own).
pub const FORWARD_RULES: usize = 8;
pub const MASQ_RULES: usize = 2;

/// The live contents of weft's sets.
#[derive(Debug, Default, Clone)]
pub struct Sets {
    pub bridges: BTreeSet<String>,
    pub internal: BTreeSet<String>,
    /// `iif . oif` pairs as nft prints them: `weft-a . weft-a`.
    pub same_bridge: BTreeSet<String>,
    pub masq: Vec<IpNet>,
}

impl Sets {
    pub fn from_status(st: &TableStatus) -> Sets {
        let names = |n: &str| -> BTreeSet<String> {
            st.sets.get(n).map(|v| v.iter().cloned().collect()).unwrap_or_default()
        };
        let mut masq = Vec::new();
        for set in [sets::MASQ4, sets::MASQ6] {
            for e in st.sets.get(set).into_iter().flatten() {
                // Intervals print as prefixes; a lone address is a /32 or /128.
                if let Ok(n) = e.parse::<IpNet>() {
                    masq.push(n);
                } else if let Ok(ip) = e.parse::<IpAddr>() {
                    masq.push(IpNet::from(ip));
                }
            }
        }
        Sets {
            bridges: names(sets::BRIDGES),
            internal: names(sets::INTERNAL),
            same_bridge: names(sets::SAME_BRIDGE),
            masq,
        }
    }
}

/// A packet as the forward and postrouting hooks see it. For bridged
/// traffic under br_netfilter both interfaces are the bridge.
pub struct Packet<'a> {
    pub iif: &'a str,
    pub oif: &'a str,
    pub saddr: IpAddr,
    /// A reply in a connection the container opened (ct state established).
    pub established: bool,
    /// Destination-NATed by a published port (ct status dnat).
    pub dnat: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Accept,
    Drop,
    Masquerade,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub chain: &'static str,
    /// Position in the chain, from 1; None for the chain's policy.
    pub rule: Option<usize>,
    /// The rule's comment, as `nft list table inet weft` shows it.
    pub comment: &'static str,
    pub action: Action,
    /// Which set elements made it match.
    pub why: String,
}

type Test = fn(&Packet, &Sets) -> Option<String>;

/// weft's rules in order: chain, comment, test, action.
const RULES: [(&str, &str, Test, Action); 10] = [
    ("forward", "replies to connections that containers opened", r_established, Action::Accept),
    ("forward", "one network is one switch (matters under br_netfilter)", r_same, Action::Accept),
    ("forward", "internal network: no way out", r_internal_out, Action::Drop),
    ("forward", "internal network: no way in", r_internal_in, Action::Drop),
    (
        "forward",
        "published ports (DNAT) are open to all, other networks too",
        r_dnat,
        Action::Accept,
    ),
    ("forward", "isolation: no traffic between two weft networks", r_isolation, Action::Drop),
    ("forward", "no unsolicited connections into containers", r_into, Action::Drop),
    ("forward", "containers may open connections out", r_out, Action::Accept),
    ("postrouting", "leave the host with the host's address", r_masq4, Action::Masquerade),
    ("postrouting", "leave the host with the host's address", r_masq6, Action::Masquerade),
];

/// The forward chain's verdict: its first matching rule, else the policy
/// (accept: traffic that is not weft's is none of weft's business).
pub fn forward(p: &Packet, s: &Sets) -> Decision {
    first_match("forward", p, s).unwrap_or(Decision {
        chain: "forward",
        rule: None,
        comment: "policy accept",
        action: Action::Accept,
        why: format!("neither {} nor {} is a weft bridge", p.iif, p.oif),
    })
}

/// Masquerade in postrouting, if any rule applies.
pub fn postrouting(p: &Packet, s: &Sets) -> Option<Decision> {
    first_match("postrouting", p, s)
}

fn first_match(chain: &'static str, p: &Packet, s: &Sets) -> Option<Decision> {
    let mut pos = 0;
    for (c, comment, test, action) in RULES {
        if c != chain {
            continue;
        }
        pos += 1;
        if let Some(why) = test(p, s) {
            return Some(Decision { chain, rule: Some(pos), comment, action, why });
        }
    }
    None
}

fn inset(set: &BTreeSet<String>, name: &str, label: &str) -> Option<String> {
    set.contains(name).then(|| format!("{name} in @{label}"))
}

fn r_established(p: &Packet, s: &Sets) -> Option<String> {
    let b = inset(&s.bridges, p.oif, sets::BRIDGES)?;
    p.established.then(|| format!("{b}, ct state established"))
}

fn r_same(p: &Packet, s: &Sets) -> Option<String> {
    let pair = format!("{} . {}", p.iif, p.oif);
    inset(&s.same_bridge, &pair, sets::SAME_BRIDGE)
}

fn r_internal_out(p: &Packet, s: &Sets) -> Option<String> {
    inset(&s.internal, p.iif, sets::INTERNAL)
}

fn r_internal_in(p: &Packet, s: &Sets) -> Option<String> {
    inset(&s.internal, p.oif, sets::INTERNAL)
}

fn r_dnat(p: &Packet, s: &Sets) -> Option<String> {
    let b = inset(&s.bridges, p.oif, sets::BRIDGES)?;
    p.dnat.then(|| format!("{b}, ct status dnat"))
}

fn r_isolation(p: &Packet, s: &Sets) -> Option<String> {
    let i = inset(&s.bridges, p.iif, sets::BRIDGES)?;
    let o = inset(&s.bridges, p.oif, sets::BRIDGES)?;
    Some(format!("{i} and {o}, but {} . {} not in @{}", p.iif, p.oif, sets::SAME_BRIDGE))
}

fn r_into(p: &Packet, s: &Sets) -> Option<String> {
    inset(&s.bridges, p.oif, sets::BRIDGES).map(|b| format!("{b}, a new connection"))
}

fn r_out(p: &Packet, s: &Sets) -> Option<String> {
    inset(&s.bridges, p.iif, sets::BRIDGES)
}

fn masq(p: &Packet, s: &Sets, v4: bool) -> Option<String> {
    if p.saddr.is_ipv4() != v4 || s.bridges.contains(p.oif) {
        return None;
    }
    let net = s.masq.iter().find(|n| n.contains(&p.saddr))?;
    let set = if v4 { sets::MASQ4 } else { sets::MASQ6 };
    Some(format!("{} in @{set} ({net}), {} not in @{}", p.saddr, p.oif, sets::BRIDGES))
}

fn r_masq4(p: &Packet, s: &Sets) -> Option<String> {
    masq(p, s, true)
}

fn r_masq6(p: &Packet, s: &Sets) -> Option<String> {
    masq(p, s, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_firewall::NetRules;

    fn sets() -> Sets {
        let mut s = Sets::default();
        for b in ["weft-a", "weft-b", "weft-i"] {
            s.bridges.insert(b.into());
            s.same_bridge.insert(format!("{b} . {b}"));
        }
        s.internal.insert("weft-i".into());
        s.masq.push("10.1.0.0/24".parse().unwrap());
        s
    }

    fn pkt<'a>(iif: &'a str, oif: &'a str) -> Packet<'a> {
        Packet { iif, oif, saddr: "10.1.0.2".parse().unwrap(), established: false, dnat: false }
    }

    #[test]
    fn verdicts_of_the_fixed_rules() {
        let s = sets();
        let d = forward(&pkt("weft-a", "weft-a"), &s);
        assert_eq!((d.rule, d.action), (Some(2), Action::Accept));
        let d = forward(&pkt("weft-a", "weft-b"), &s);
        assert_eq!((d.rule, d.action), (Some(6), Action::Drop));
        assert!(d.why.contains("weft-a . weft-b not in @same_bridge"), "{}", d.why);
        let d = forward(&pkt("weft-i", "eth0"), &s);
        assert_eq!((d.rule, d.action), (Some(3), Action::Drop));
        let d = forward(&pkt("weft-a", "eth0"), &s);
        assert_eq!((d.rule, d.action), (Some(8), Action::Accept));
        let d = forward(&pkt("eth0", "weft-a"), &s);
        assert_eq!((d.rule, d.action), (Some(7), Action::Drop));
        let d = forward(&pkt("eth0", "eth1"), &s);
        assert_eq!((d.rule, d.action), (None, Action::Accept));
        let m = postrouting(&pkt("weft-a", "eth0"), &s).unwrap();
        assert_eq!((m.rule, m.action), (Some(1), Action::Masquerade));
        assert!(postrouting(&pkt("weft-a", "weft-b"), &s).is_none());
    }

    /// The mirror has the rules of the table weft applies, in its order.
    #[test]
    fn mirror_matches_the_applied_ruleset() {
        let net = NetRules {
            name: "a".into(),
            bridge: "weft-a".into(),
            subnet: "10.1.0.0/24".parse().unwrap(),
            subnet6: None,
            internal: false,
            open: false,
        };
        let batch = serde_json::to_value(weft_firewall::ruleset("weft", &[net])).unwrap();
        let applied: Vec<(String, String)> = batch["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|o| o.get("add")?.get("rule"))
            .map(|r| (r["chain"].as_str().unwrap().into(), r["comment"].as_str().unwrap().into()))
            .collect();
        let mirror: Vec<(String, String)> =
            RULES.iter().map(|(c, m, _, _)| (c.to_string(), m.to_string())).collect();
        assert_eq!(applied, mirror);
        assert_eq!(RULES.len(), FORWARD_RULES + MASQ_RULES);
    }
}
