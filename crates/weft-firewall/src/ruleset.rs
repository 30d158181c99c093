//! The nftables batch that (re)builds weft's table. Pure: the same input
//! gives the same JSON, which is what the snapshot test pins down.
//!
//! Rules are fixed; networks only add elements to named sets:
//! - `bridges` (ifname): every weft bridge
//! - `internal` (ifname): bridges of internal networks
//! - `same_bridge` (ifname . ifname): `b . b` for every bridge
//! - `masq4` / `masq6` (prefix intervals): subnets of non-internal networks
//!
//! One chain depends on the host rather than the networks: `foreign`, with
//! one rule per family whose forwarding weft turned on ([`Guards`]), after
//! one that lets bridged frames pass.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashSet};

use ipnet::{Ipv4Net, Ipv6Net};
use nftables::batch::Batch;
use nftables::expr::{
    Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix, CT,
};
use nftables::schema::{
    Chain, Element, NfListObject, Nftables, Rule, Set, SetFlag, SetType, SetTypeValue, Table,
};
use nftables::stmt::{Match, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use crate::publish::{self, PortRule};
use crate::{Guards, NetRules};

/// Names of the sets in weft's table.
pub mod sets {
    pub const BRIDGES: &str = "bridges";
    pub const INTERNAL: &str = "internal";
    pub const SAME_BRIDGE: &str = "same_bridge";
    pub const MASQ4: &str = "masq4";
    pub const MASQ6: &str = "masq6";
}

const FORWARD: &str = "forward";
const POSTROUTING: &str = "postrouting";
/// Forwarding between interfaces that are not weft's, present only while
/// weft owns forwarding (see `sysctl.rs`): a chain of its own, so that the
/// `forward` chain's rules stay fixed.
const FOREIGN: &str = "foreign";
/// `priority filter` and `priority srcnat`.
const PRIO_FILTER: i32 = 0;
const PRIO_SRCNAT: i32 = 100;

/// The batch that replaces table `inet <table>` with one for `nets`, in one
/// transaction: add the table (so that deleting it cannot fail), delete it
/// with everything in it, then create it afresh. With no networks the table
/// is only removed. Bridge names are taken as given; `Firewall::apply`
/// refuses those that nft would misread.
pub fn ruleset(table: &str, nets: &[NetRules]) -> Nftables<'static> {
    build(table, nets, None, Guards::default())
}

/// [`ruleset`] plus port publishing (see `publish.rs`): its maps, chains and
/// fixed rules, and the elements of `ports`; and `guards` for the
/// forwarding weft turned on. This is the table weft applies; with no
/// networks the table is only removed.
pub fn ruleset_with_ports(
    table: &str,
    nets: &[NetRules],
    ports: &[PortRule],
    guards: Guards,
) -> Nftables<'static> {
    build(table, nets, Some(ports), guards)
}

fn build(
    table: &str,
    nets: &[NetRules],
    ports: Option<&[PortRule]>,
    guards: Guards,
) -> Nftables<'static> {
    let t = |s: &str| -> Cow<'static, str> { Cow::Owned(s.to_string()) };
    let table_obj =
        || NfListObject::Table(Table { family: NfFamily::INet, name: t(table), handle: None });
    let mut b = Batch::new();
    b.add(table_obj());
    b.delete(table_obj());
    if nets.is_empty() {
        return b.to_nftables();
    }
    b.add(table_obj());

    let ifname = SetTypeValue::Single(SetType::Ifname);
    let pair = SetTypeValue::Concatenated(Cow::Owned(vec![SetType::Ifname, SetType::Ifname]));
    let set_defs = [
        (sets::BRIDGES, ifname.clone(), false),
        (sets::INTERNAL, ifname, false),
        (sets::SAME_BRIDGE, pair, false),
        (sets::MASQ4, SetTypeValue::Single(SetType::Ipv4Addr), true),
        (sets::MASQ6, SetTypeValue::Single(SetType::Ipv6Addr), true),
    ];
    for (name, set_type, interval) in set_defs {
        b.add(NfListObject::Set(Box::new(Set {
            family: NfFamily::INet,
            table: t(table),
            name: t(name),
            set_type,
            flags: interval.then(|| HashSet::from([SetFlag::Interval])),
            ..Set::default()
        })));
    }

    for (name, kind, hook, prio) in [
        (FORWARD, NfChainType::Filter, NfHook::Forward, PRIO_FILTER),
        (POSTROUTING, NfChainType::NAT, NfHook::Postrouting, PRIO_SRCNAT),
    ] {
        b.add(NfListObject::Chain(Chain {
            family: NfFamily::INet,
            table: t(table),
            name: t(name),
            _type: Some(kind),
            hook: Some(hook),
            prio: Some(prio),
            // Accept: traffic that is not weft's is none of weft's business
            // (routing it only because weft turned forwarding on is: see
            // chain `foreign`).
            policy: Some(NfChainPolicy::Accept),
            ..Chain::default()
        }));
    }

    for (chain, comment, expr) in rules() {
        b.add(NfListObject::Rule(Rule {
            family: NfFamily::INet,
            table: t(table),
            chain: t(chain),
            expr: Cow::Owned(expr),
            comment: Some(t(comment)),
            ..Rule::default()
        }));
    }

    let foreign = guard_rules(guards);
    if !foreign.is_empty() {
        b.add(NfListObject::Chain(Chain {
            family: NfFamily::INet,
            table: t(table),
            name: t(FOREIGN),
            _type: Some(NfChainType::Filter),
            hook: Some(NfHook::Forward),
            prio: Some(PRIO_FILTER),
            policy: Some(NfChainPolicy::Accept),
            ..Chain::default()
        }));
    }
    for (comment, expr) in foreign {
        b.add(NfListObject::Rule(Rule {
            family: NfFamily::INet,
            table: t(table),
            chain: t(FOREIGN),
            expr: Cow::Owned(expr),
            comment: Some(t(comment)),
            ..Rule::default()
        }));
    }

    if ports.is_some() {
        publish::add_machinery(&mut b, table, nets);
    }

    for (name, elem) in elements(nets) {
        if !elem.is_empty() {
            b.add(NfListObject::Element(Element {
                family: NfFamily::INet,
                table: t(table),
                name: t(name),
                elem: Cow::Owned(elem),
            }));
        }
    }
    if let Some(ports) = ports {
        publish::add_elements(&mut b, table, ports);
    }
    b.to_nftables()
}

/// The fixed rules, in order. The first verdict wins, so order is policy.
fn rules() -> Vec<(&'static str, &'static str, Vec<Statement<'static>>)> {
    use sets::*;
    let (iif, oif) = (|| meta(MetaKey::Iifname), || meta(MetaKey::Oifname));
    let both = || Expression::Named(NamedExpression::Concat(vec![iif(), oif()]));
    let accept = || Statement::Accept(None);
    let drop = || Statement::Drop(None);
    let saddr = |proto: &'static str| {
        Expression::Named(NamedExpression::Payload(Payload::PayloadField(PayloadField {
            protocol: proto.into(),
            field: "saddr".into(),
        })))
    };
    vec![
        (
            FORWARD,
            "replies to connections that containers opened",
            vec![is(oif(), BRIDGES), ct("state", &["established", "related"]), accept()],
        ),
        (
            FORWARD,
            "one network is one switch (matters under br_netfilter)",
            vec![is(both(), SAME_BRIDGE), accept()],
        ),
        (FORWARD, "internal network: no way out", vec![is(iif(), INTERNAL), drop()]),
        (FORWARD, "internal network: no way in", vec![is(oif(), INTERNAL), drop()]),
        (
            FORWARD,
            "published ports (DNAT) are open to all, other networks too",
            vec![is(oif(), BRIDGES), ct("status", &["dnat"]), accept()],
        ),
        (
            FORWARD,
            "isolation: no traffic between two weft networks",
            vec![is(iif(), BRIDGES), is(oif(), BRIDGES), drop()],
        ),
        (FORWARD, "no unsolicited connections into containers", vec![is(oif(), BRIDGES), drop()]),
        (FORWARD, "containers may open connections out", vec![is(iif(), BRIDGES), accept()]),
        (
            POSTROUTING,
            "leave the host with the host's address",
            vec![is(saddr("ip"), MASQ4), is_not(oif(), BRIDGES), Statement::Masquerade(None)],
        ),
        (
            POSTROUTING,
            "leave the host with the host's address",
            vec![is(saddr("ip6"), MASQ6), is_not(oif(), BRIDGES), Statement::Masquerade(None)],
        ),
    ]
}

/// With forwarding on only because of weft, the host routes for weft's
/// networks and nothing else: traffic between two interfaces that are not
/// weft bridges is dropped, per family weft turned on.
///
/// Under br_netfilter, frames that another stack's bridge switches between
/// its ports pass this hook too, with the bridge as both interfaces: they
/// are not routed, so they pass. (nft cannot compare iifname with oifname,
/// so routing between two other bridges is not guarded.)
fn guard_rules(g: Guards) -> Vec<(&'static str, Vec<Statement<'static>>)> {
    let mut out = Vec::new();
    if g.forward4 || g.forward6 {
        let kind = |key| {
            Statement::Match(Match {
                left: meta(key),
                right: Expression::String("bridge".into()),
                op: Operator::EQ,
            })
        };
        out.push((
            "switched by a bridge, not routed (br_netfilter)",
            vec![kind(MetaKey::Iifkind), kind(MetaKey::Oifkind), Statement::Accept(None)],
        ));
    }
    for (on, family) in [(g.forward4, "ipv4"), (g.forward6, "ipv6")] {
        if !on {
            continue;
        }
        out.push((
            "weft turned forwarding on: it routes for its own networks only",
            vec![
                Statement::Match(Match {
                    left: meta(MetaKey::Nfproto),
                    right: Expression::String(family.into()),
                    op: Operator::EQ,
                }),
                is_not(meta(MetaKey::Iifname), sets::BRIDGES),
                is_not(meta(MetaKey::Oifname), sets::BRIDGES),
                Statement::Drop(None),
            ],
        ));
    }
    out
}

/// Set contents, sorted and deduplicated so that the batch is stable and
/// nft never sees a duplicate or overlapping interval.
fn elements(nets: &[NetRules]) -> Vec<(&'static str, Vec<Expression<'static>>)> {
    let bridges: BTreeSet<&str> = nets.iter().map(|n| n.bridge.as_str()).collect();
    let internal: BTreeSet<&str> =
        nets.iter().filter(|n| n.internal).map(|n| n.bridge.as_str()).collect();
    let outbound = || nets.iter().filter(|n| !n.internal);
    let v4: Vec<Ipv4Net> = outbound().map(|n| n.subnet.trunc()).collect();
    let v6: Vec<Ipv6Net> = outbound().filter_map(|n| n.subnet6.map(|s| s.trunc())).collect();
    let s = |v: &str| Expression::String(Cow::Owned(v.to_string()));
    let prefix = |addr: String, len: u8| {
        Expression::Named(NamedExpression::Prefix(Prefix {
            addr: Box::new(Expression::String(Cow::Owned(addr))),
            len: u32::from(len),
        }))
    };
    vec![
        (sets::BRIDGES, bridges.iter().map(|b| s(b)).collect()),
        (sets::INTERNAL, internal.iter().map(|b| s(b)).collect()),
        (
            sets::SAME_BRIDGE,
            same_switch(nets)
                .iter()
                .map(|(a, b)| Expression::Named(NamedExpression::Concat(vec![s(a), s(b)])))
                .collect(),
        ),
        (
            sets::MASQ4,
            Ipv4Net::aggregate(&v4)
                .iter()
                .map(|n| prefix(n.network().to_string(), n.prefix_len()))
                .collect(),
        ),
        (
            sets::MASQ6,
            Ipv6Net::aggregate(&v6)
                .iter()
                .map(|n| prefix(n.network().to_string(), n.prefix_len()))
                .collect(),
        ),
    ]
}

/// Bridge pairs forwarded as one switch: each bridge with itself, and
/// every ordered pair of open networks' bridges (Podman's networks reach
/// each other unless isolated).
fn same_switch(nets: &[NetRules]) -> BTreeSet<(&str, &str)> {
    let mut pairs: BTreeSet<(&str, &str)> =
        nets.iter().map(|n| (n.bridge.as_str(), n.bridge.as_str())).collect();
    let open: BTreeSet<&str> =
        nets.iter().filter(|n| n.open && !n.internal).map(|n| n.bridge.as_str()).collect();
    for a in &open {
        for b in &open {
            pairs.insert((a, b));
        }
    }
    pairs
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn set_ref(set: &str) -> Expression<'static> {
    Expression::String(Cow::Owned(format!("@{set}")))
}

fn is(left: Expression<'static>, set: &str) -> Statement<'static> {
    Statement::Match(Match { left, right: set_ref(set), op: Operator::EQ })
}

fn is_not(left: Expression<'static>, set: &str) -> Statement<'static> {
    Statement::Match(Match { left, right: set_ref(set), op: Operator::NEQ })
}

/// `ct <key> a,b`: a bitmask test, hence `in`.
fn ct(key: &'static str, values: &[&'static str]) -> Statement<'static> {
    let mut v: Vec<Expression<'static>> =
        values.iter().map(|s| Expression::String((*s).into())).collect();
    let right = if v.len() == 1 { v.remove(0) } else { Expression::List(v) };
    let left =
        Expression::Named(NamedExpression::CT(CT { key: key.into(), family: None, dir: None }));
    Statement::Match(Match { left, right, op: Operator::IN })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nftables::schema::{NfCmd, NfObject};

    fn net(name: &str, subnet: &str, subnet6: Option<&str>, internal: bool) -> NetRules {
        NetRules {
            name: name.into(),
            bridge: format!("weft-{name}"),
            subnet: subnet.parse().unwrap(),
            subnet6: subnet6.map(|s| s.parse().unwrap()),
            internal,
            open: false,
        }
    }

    #[test]
    fn open_networks_forward_to_each_other_only() {
        let mut a = net("a", "10.1.0.0/24", None, false);
        let mut b = net("b", "10.2.0.0/24", None, false);
        let c = net("c", "10.3.0.0/24", None, false);
        a.open = true;
        b.open = true;
        let nets = [a, b, c];
        let pairs: Vec<(&str, &str)> = same_switch(&nets).into_iter().collect();
        assert_eq!(
            pairs,
            [
                ("weft-a", "weft-a"),
                ("weft-a", "weft-b"),
                ("weft-b", "weft-a"),
                ("weft-b", "weft-b"),
                ("weft-c", "weft-c")
            ]
        );
    }

    /// One command per line: reviewable in a diff.
    fn lines(rs: &Nftables) -> String {
        rs.objects.iter().map(|o| serde_json::to_string(o).unwrap() + "\n").collect()
    }

    fn count(rs: &Nftables, pred: impl Fn(&NfListObject) -> bool) -> usize {
        rs.objects
            .iter()
            .filter(|o| matches!(o, NfObject::CmdObject(NfCmd::Add(x)) if pred(x)))
            .count()
    }

    #[test]
    fn snapshot_two_networks() {
        let nets = [
            net("front", "10.89.0.0/24", Some("fd00:89::/64"), false),
            net("back", "10.89.1.0/24", None, true),
        ];
        insta::assert_snapshot!(lines(&ruleset("weft", &nets)));
    }

    #[test]
    fn rules_do_not_grow_with_networks() {
        let rules = |n: usize| {
            let nets: Vec<_> = (0..n)
                .map(|i| net(&format!("n{i}"), &format!("10.9.{i}.0/24"), None, i % 2 == 0))
                .collect();
            count(&ruleset("weft", &nets), |x| matches!(x, NfListObject::Rule(_)))
        };
        assert_eq!(rules(1), 10);
        assert_eq!(rules(2), rules(200));
    }

    #[test]
    fn guards_drop_foreign_forwarding_per_family() {
        let nets = [net("a", "10.1.0.0/24", None, false)];
        let foreign = |g: Guards| {
            let rs = ruleset_with_ports("weft", &nets, &[], g);
            let chain = count(&rs, |x| matches!(x, NfListObject::Chain(c) if c.name == FOREIGN));
            let rules = count(&rs, |x| matches!(x, NfListObject::Rule(r) if r.chain == FOREIGN));
            (chain, rules, lines(&rs))
        };
        assert_eq!(foreign(Guards::default()).0, 0);
        let (chain, rules, text) = foreign(Guards { forward4: false, forward6: true });
        assert_eq!((chain, rules), (1, 2));
        assert!(text.contains(r#"{"meta":{"key":"nfproto"}},"right":"ipv6""#), "{text}");
        assert_eq!(foreign(Guards { forward4: true, forward6: true }).1, 3);
    }

    #[test]
    fn no_networks_only_removes_the_table() {
        let rs = ruleset("weft", &[]);
        assert_eq!(rs.objects.len(), 2);
        assert!(matches!(
            &rs.objects[1],
            NfObject::CmdObject(NfCmd::Delete(NfListObject::Table(_)))
        ));
    }

    #[test]
    fn elements_are_deduplicated_and_merged() {
        let mut a = net("a", "10.1.0.0/25", None, false);
        let b = net("b", "10.1.0.128/25", None, false);
        a.bridge = b.bridge.clone();
        let e = elements(&[a, b]);
        let json = |i: usize| serde_json::to_string(&e[i].1).unwrap();
        assert_eq!(json(0), r#"["weft-b"]"#);
        assert_eq!(json(3), r#"[{"prefix":{"addr":"10.1.0.0","len":24}}]"#);
    }
}
