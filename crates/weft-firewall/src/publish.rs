//! Published ports: destination NAT from a host port to a container, with
//! a fixed set of rules that look the packet up in four maps. Publishing a
//! port adds map elements (one per mapping, a range being one interval
//! element), never rules, in one nft transaction.
//!
//! ```text
//! chain localnet (filter, raw)     iifname != "lo" ip daddr 127.0.0.0/8 drop
//!                                  iifname != "lo" ip saddr 127.0.0.0/8 drop
//! chain prerouting (nat, dstnat)   fib daddr type local jump publish
//! chain output     (nat, dstnat)   fib daddr type local jump publish   (the host itself, 127.0.0.1 too)
//! chain publish
//!   dnat ip  to KEY4 map @publish4 : KEY4 map @publish4_port   port changes
//!   dnat ip  to KEY4 map @publish4                            same port (ranges 8000-8009:8000-8009)
//!   (the same for ip6)
//! chain postrouting (appended)
//!   ct status dnat ip saddr . oifname @hairpin4 masquerade      hairpin: from the network the port leads to
//!   ct status dnat ip6 saddr . oifname @hairpin6 masquerade     (else the reply would skip the host)
//!   ct status dnat ip saddr 127.0.0.0/8 masquerade              from the host's loopback
//! ```
//! `localnet` closes the CVE-2020-8558 pattern: `fib daddr type local`
//! holds for 127.0.0.1, and destination NAT runs before the kernel's
//! martian check, so without it a packet sent to 127.0.0.1 from a
//! neighbour or a container would reach a port published on 127.0.0.1;
//! and `route_localnet` on a bridge (which publishing needs, for the host
//! to reach its ports by 127.0.0.1) would let a container reach services
//! of the host that listen on 127.0.0.1 only. It drops before conntrack,
//! by the address on the wire, so replies to the host's own connections to
//! 127.0.0.1 (which arrive addressed to the bridge's address and are
//! un-NATed later) pass. The same holds for sources: `route_localnet` also
//! skips the martian-source check, so a container could send from
//! 127.0.0.2 to a host service that trusts loopback; replies to the host's
//! localhost publishing carry the container's address until un-NATed.
//! IPv6 needs no such rules: the kernel drops a packet from or to ::1 that
//! did not come from `lo` before any hook (RFC 4291 2.5.3).
//!
//! KEY is `daddr . l4proto . dport`; the address part is `0.0.0.0/0` (`::/0`)
//! when the port is published on every host address. `hairpin4`/`hairpin6`
//! hold `subnet . bridge` per network (elements per network, like the
//! table's other sets).
//!
//! nft cannot shift a port range in a NAT statement, so a range whose
//! container ports differ from its host ports adds one `_port` element per
//! port (still no rule); a range with equal ports is one element and the
//! kernel keeps the destination port.

use std::borrow::Cow;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use nftables::batch::Batch;
use nftables::expr::{
    Expression, Fib, FibFlag, FibResult, Map as MapExpr, Meta, MetaKey, NamedExpression, Payload,
    PayloadField, Prefix, Range, SetItem, CT,
};
use nftables::schema::{
    Chain, Element, Map, NfListObject, Nftables, Rule, Set, SetFlag, SetType, SetTypeValue,
};
use nftables::stmt::{JumpTarget, Match, NATFamily, Operator, Statement, NAT};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use weft_model::{Endpoint, PortMapping};

use crate::NetRules;

/// Names of the maps and chains of port publishing.
pub mod maps {
    pub const PUBLISH4: &str = "publish4";
    pub const PUBLISH4_PORT: &str = "publish4_port";
    pub const PUBLISH6: &str = "publish6";
    pub const PUBLISH6_PORT: &str = "publish6_port";
    pub const HAIRPIN4: &str = "hairpin4";
    pub const HAIRPIN6: &str = "hairpin6";
}

const LOCALNET: &str = "localnet";
const PREROUTING: &str = "prerouting";
const OUTPUT: &str = "output";
const PUBLISH: &str = "publish";
const POSTROUTING: &str = "postrouting";
/// `priority dstnat`.
const PRIO_DSTNAT: i32 = -100;
/// `priority raw`: before conntrack and NAT.
const PRIO_RAW: i32 = -300;

/// Rules that port publishing adds to weft's table.
pub const RULES: usize = 11;

/// Whether the host reaches this published port by 127.0.0.1, which needs
/// `route_localnet` on the network's bridge: ports published on every
/// IPv4 address, or on a 127.0.0.0/8 one.
pub fn reached_by_loopback(m: &PortMapping) -> bool {
    m.covers_family(false) && m.host_addr().is_none_or(|a| a.is_loopback())
}

/// One published port of one endpoint, with the addresses it leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRule {
    pub mapping: PortMapping,
    pub addr: Ipv4Addr,
    /// The endpoint's IPv6 address; without it only IPv4 is published.
    pub addr6: Option<Ipv6Addr>,
}

impl PortRule {
    /// The published ports of an endpoint.
    pub fn of(ep: &Endpoint) -> Vec<PortRule> {
        ep.ports
            .iter()
            .map(|m| PortRule {
                mapping: *m,
                addr: ep.address.addr(),
                addr6: ep.address6.map(|a| a.addr()),
            })
            .collect()
    }
}

/// Maps, chains and rules of port publishing, added to a table being built.
pub(crate) fn add_machinery(b: &mut Batch<'static>, table: &str, nets: &[NetRules]) {
    let t = |s: &str| -> Cow<'static, str> { Cow::Owned(s.to_string()) };
    let key = |addr: SetType| {
        SetTypeValue::Concatenated(Cow::Owned(vec![addr, SetType::InetProto, SetType::InetService]))
    };
    for (name, addr, value) in [
        (maps::PUBLISH4, SetType::Ipv4Addr, SetType::Ipv4Addr),
        (maps::PUBLISH4_PORT, SetType::Ipv4Addr, SetType::InetService),
        (maps::PUBLISH6, SetType::Ipv6Addr, SetType::Ipv6Addr),
        (maps::PUBLISH6_PORT, SetType::Ipv6Addr, SetType::InetService),
    ] {
        b.add(NfListObject::Map(Box::new(Map {
            family: NfFamily::INet,
            table: t(table),
            name: t(name),
            set_type: key(addr),
            map: SetTypeValue::Single(value),
            flags: Some(HashSet::from([SetFlag::Interval])),
            ..Map::default()
        })));
    }
    for (name, addr) in [(maps::HAIRPIN4, SetType::Ipv4Addr), (maps::HAIRPIN6, SetType::Ipv6Addr)] {
        b.add(NfListObject::Set(Box::new(Set {
            family: NfFamily::INet,
            table: t(table),
            name: t(name),
            set_type: SetTypeValue::Concatenated(Cow::Owned(vec![addr, SetType::Ifname])),
            flags: Some(HashSet::from([SetFlag::Interval])),
            ..Set::default()
        })));
    }
    let base = |hook, kind, prio| Some((hook, kind, prio));
    for (name, base) in [
        (LOCALNET, base(NfHook::Prerouting, NfChainType::Filter, PRIO_RAW)),
        (PREROUTING, base(NfHook::Prerouting, NfChainType::NAT, PRIO_DSTNAT)),
        (OUTPUT, base(NfHook::Output, NfChainType::NAT, PRIO_DSTNAT)),
        (PUBLISH, None),
    ] {
        b.add(NfListObject::Chain(Chain {
            family: NfFamily::INet,
            table: t(table),
            name: t(name),
            _type: base.map(|(_, kind, _)| kind),
            hook: base.map(|(hook, _, _)| hook),
            prio: base.map(|(_, _, prio)| prio),
            policy: base.map(|_| NfChainPolicy::Accept),
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
    let s = |v: String| Expression::String(Cow::Owned(v));
    let entry = |addr: String, len: u8, bridge: &str| {
        Expression::Named(NamedExpression::Concat(vec![
            Expression::Named(NamedExpression::Prefix(Prefix {
                addr: Box::new(s(addr)),
                len: u32::from(len),
            })),
            s(bridge.to_string()),
        ]))
    };
    let mut v4: Vec<(String, u8, &str)> = nets
        .iter()
        .map(|n| (n.subnet.trunc().network().to_string(), n.subnet.prefix_len(), n.bridge.as_str()))
        .collect();
    let mut v6: Vec<(String, u8, &str)> = nets
        .iter()
        .filter_map(|n| {
            n.subnet6
                .map(|s6| (s6.trunc().network().to_string(), s6.prefix_len(), n.bridge.as_str()))
        })
        .collect();
    for (name, list) in [(maps::HAIRPIN4, &mut v4), (maps::HAIRPIN6, &mut v6)] {
        list.sort();
        list.dedup();
        if !list.is_empty() {
            let elem = list.iter().map(|(a, l, br)| entry(a.clone(), *l, br)).collect();
            b.add(element(table, name, elem));
        }
    }
}

fn rules() -> Vec<(&'static str, &'static str, Vec<Statement<'static>>)> {
    let local = || {
        Statement::Match(Match {
            left: Expression::Named(NamedExpression::Fib(Fib {
                result: FibResult::Type,
                flags: HashSet::from([FibFlag::Daddr]),
            })),
            right: Expression::String("local".into()),
            op: Operator::EQ,
        })
    };
    let jump = || Statement::Jump(JumpTarget { target: PUBLISH.into() });
    let dnat = |v6: bool, with_port: bool| {
        let (fam, addr_map, port_map) = if v6 {
            (NATFamily::IP6, maps::PUBLISH6, maps::PUBLISH6_PORT)
        } else {
            (NATFamily::IP, maps::PUBLISH4, maps::PUBLISH4_PORT)
        };
        let lookup = |map: &str| {
            Expression::Named(NamedExpression::Map(Box::new(MapExpr {
                key: lookup_key(v6),
                data: Expression::String(Cow::Owned(format!("@{map}"))),
            })))
        };
        vec![
            l4proto_is_ported(),
            Statement::DNAT(Some(NAT {
                addr: Some(lookup(addr_map)),
                family: Some(fam),
                port: with_port.then(|| lookup(port_map)),
                flags: None,
            })),
        ]
    };
    let ct_dnat = || {
        Statement::Match(Match {
            left: Expression::Named(NamedExpression::CT(CT {
                key: "status".into(),
                family: None,
                dir: None,
            })),
            right: Expression::String("dnat".into()),
            op: Operator::IN,
        })
    };
    let masq = || Statement::Masquerade(None);
    let meta = |key| Expression::Named(NamedExpression::Meta(Meta { key }));
    let hairpin = |proto: &'static str, set: &str| {
        vec![
            ct_dnat(),
            Statement::Match(Match {
                left: Expression::Named(NamedExpression::Concat(vec![
                    payload(proto, "saddr"),
                    meta(MetaKey::Oifname),
                ])),
                right: Expression::String(Cow::Owned(format!("@{set}"))),
                op: Operator::EQ,
            }),
            masq(),
        ]
    };
    let loopback = || {
        Expression::Named(NamedExpression::Prefix(Prefix {
            addr: Box::new(Expression::String("127.0.0.0".into())),
            len: 8,
        }))
    };
    let not_from_lo = |field: &'static str| {
        vec![
            Statement::Match(Match {
                left: meta(MetaKey::Iifname),
                right: Expression::String("lo".into()),
                op: Operator::NEQ,
            }),
            Statement::Match(Match {
                left: payload("ip", field),
                right: loopback(),
                op: Operator::EQ,
            }),
            Statement::Drop(None),
        ]
    };
    vec![
        (LOCALNET, "loopback addresses come from lo only (CVE-2020-8558)", not_from_lo("daddr")),
        (LOCALNET, "nobody outside poses as the host's loopback", not_from_lo("saddr")),
        (PREROUTING, "published ports: traffic to the host's addresses", vec![local(), jump()]),
        (OUTPUT, "published ports: traffic from the host itself", vec![local(), jump()]),
        (PUBLISH, "published port, container port differs", dnat(false, true)),
        (PUBLISH, "published port, same port in the container", dnat(false, false)),
        (PUBLISH, "published port, container port differs", dnat(true, true)),
        (PUBLISH, "published port, same port in the container", dnat(true, false)),
        (
            POSTROUTING,
            "hairpin: a container reaching a published port on its own network",
            hairpin("ip", maps::HAIRPIN4),
        ),
        (
            POSTROUTING,
            "hairpin: a container reaching a published port on its own network",
            hairpin("ip6", maps::HAIRPIN6),
        ),
        (
            POSTROUTING,
            "published ports reached from the host's loopback (route_localnet)",
            vec![
                ct_dnat(),
                Statement::Match(Match {
                    left: payload("ip", "saddr"),
                    right: loopback(),
                    op: Operator::EQ,
                }),
                masq(),
            ],
        ),
    ]
}

fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(PayloadField {
        protocol: protocol.into(),
        field: field.into(),
    })))
}

/// `meta l4proto { tcp, udp, sctp }`: `th dport` means something only for
/// these, and nft insists on the check before a transport-header map.
fn l4proto_is_ported() -> Statement<'static> {
    let protos = ["tcp", "udp", "sctp"]
        .iter()
        .map(|p| SetItem::Element(Expression::String((*p).into())))
        .collect();
    Statement::Match(Match {
        left: Expression::Named(NamedExpression::Meta(Meta { key: MetaKey::L4proto })),
        right: Expression::Named(NamedExpression::Set(protos)),
        op: Operator::EQ,
    })
}

/// `ip daddr . meta l4proto . th dport` (ip6 for IPv6).
fn lookup_key(v6: bool) -> Expression<'static> {
    Expression::Named(NamedExpression::Concat(vec![
        payload(if v6 { "ip6" } else { "ip" }, "daddr"),
        Expression::Named(NamedExpression::Meta(Meta { key: MetaKey::L4proto })),
        payload("th", "dport"),
    ]))
}

/// One map element of a published port, before it is written as nft JSON
/// (`elements`) or as a netlink attribute (`nfnl`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub map: &'static str,
    pub v6: bool,
    /// The host address the port is published on; None: every address
    /// (`0.0.0.0/0`, `::/0`).
    pub host: Option<IpAddr>,
    pub proto: weft_model::Proto,
    /// First and last host port (equal for a single port).
    pub ports: (u16, u16),
    pub value: Value,
}

/// What an element maps to: the container's address, or its port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Value {
    Addr(IpAddr),
    Port(u16),
}

/// The map elements of `ports`, in map order (publish4, publish4_port,
/// publish6, publish6_port).
pub(crate) fn entries(ports: &[PortRule]) -> Vec<Entry> {
    let mut out: [Vec<Entry>; 4] = Default::default();
    for r in ports {
        let m = &r.mapping;
        let fams: [(bool, Option<IpAddr>); 2] =
            [(false, Some(IpAddr::V4(r.addr))), (true, r.addr6.map(IpAddr::V6))];
        for (v6, target) in fams {
            let Some(target) = target.filter(|_| m.covers_family(v6)) else {
                continue;
            };
            let (main, by_port) = if v6 {
                (maps::PUBLISH6, maps::PUBLISH6_PORT)
            } else {
                (maps::PUBLISH4, maps::PUBLISH4_PORT)
            };
            let base = if v6 { 2 } else { 0 };
            let entry = |map, ports, value| Entry {
                map,
                v6,
                host: m.host_addr(),
                proto: m.protocol,
                ports,
                value,
            };
            out[base].push(entry(main, (m.host_port, m.host_port_end), Value::Addr(target)));
            if !m.same_ports() {
                for i in 0..=(m.host_port_end - m.host_port) {
                    let p = m.host_port + i;
                    out[base + 1].push(entry(by_port, (p, p), Value::Port(m.container_port + i)));
                }
            }
        }
    }
    out.into_iter().flatten().collect()
}

/// Map elements of `ports` as nft JSON, per map; maps without elements are
/// left out.
pub(crate) fn elements(ports: &[PortRule]) -> Vec<(&'static str, Vec<Expression<'static>>)> {
    let s = |v: String| Expression::String(Cow::Owned(v));
    let num = |p: u16| Expression::Number(u32::from(p));
    let mut out: Vec<(&'static str, Vec<Expression<'static>>)> = Vec::new();
    for e in entries(ports) {
        let host = match e.host {
            Some(ip) => s(ip.to_string()),
            None => Expression::Named(NamedExpression::Prefix(Prefix {
                addr: Box::new(s(if e.v6 { "::" } else { "0.0.0.0" }.to_string())),
                len: 0,
            })),
        };
        let ports = if e.ports.0 == e.ports.1 {
            num(e.ports.0)
        } else {
            Expression::Range(Box::new(Range { range: [num(e.ports.0), num(e.ports.1)] }))
        };
        let key = Expression::Named(NamedExpression::Concat(vec![
            host,
            s(e.proto.as_str().to_string()),
            ports,
        ]));
        let value = match e.value {
            Value::Addr(a) => s(a.to_string()),
            Value::Port(p) => num(p),
        };
        let pair = Expression::List(vec![key, value]);
        match out.last_mut() {
            Some((map, list)) if *map == e.map => list.push(pair),
            _ => out.push((e.map, vec![pair])),
        }
    }
    out
}

/// Adds the elements of `ports` (for a table being built, or on its own).
pub(crate) fn add_elements(b: &mut Batch<'static>, table: &str, ports: &[PortRule]) {
    for (name, elem) in elements(ports) {
        b.add(element(table, name, elem));
    }
}

fn element(
    table: &str,
    name: &'static str,
    elem: Vec<Expression<'static>>,
) -> NfListObject<'static> {
    NfListObject::Element(Element {
        family: NfFamily::INet,
        table: Cow::Owned(table.to_string()),
        name: Cow::Borrowed(name),
        elem: Cow::Owned(elem),
    })
}

/// One transaction adding the map elements of `ports`.
pub fn publish_batch(table: &str, ports: &[PortRule]) -> Nftables<'static> {
    let mut b = Batch::new();
    add_elements(&mut b, table, ports);
    b.to_nftables()
}

/// One transaction deleting exactly the map elements of `ports`.
pub fn unpublish_batch(table: &str, ports: &[PortRule]) -> Nftables<'static> {
    let mut b = Batch::new();
    for (name, elem) in elements(ports) {
        // Deleting from a map names the keys only.
        let keys = elem
            .into_iter()
            .map(|e| match e {
                Expression::List(mut kv) => kv.swap_remove(0),
                other => other,
            })
            .collect();
        b.delete(element(table, name, keys));
    }
    b.to_nftables()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(spec: &str, v6: bool) -> PortRule {
        PortRule {
            mapping: spec.parse().unwrap(),
            addr: "10.89.0.2".parse().unwrap(),
            addr6: v6.then(|| "fd00::2".parse().unwrap()),
        }
    }

    fn lines(rs: &Nftables) -> String {
        rs.objects.iter().map(|o| serde_json::to_string(o).unwrap() + "\n").collect()
    }

    #[test]
    fn snapshot_elements() {
        let ports = [
            rule("8080:80", true),
            rule("127.0.0.1:5353:53/udp", true),
            rule("9000-9009:9000-9009/tcp", false),
            rule("7000-7002:8000-8002/sctp", false),
            rule("[fd00::1]:443:8443", true),
        ];
        insta::assert_snapshot!(lines(&publish_batch("weft", &ports)));
        insta::assert_snapshot!(lines(&unpublish_batch("weft", &ports)));
    }

    #[test]
    fn a_range_is_one_element() {
        let e = elements(&[rule("9000-9999:9000-9999/udp", true)]);
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e.iter().all(|(_, v)| v.len() == 1));
    }

    #[test]
    fn no_ipv6_without_an_ipv6_address() {
        let e = elements(&[rule("8080:80", false)]);
        assert_eq!(
            e.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            [maps::PUBLISH4, maps::PUBLISH4_PORT]
        );
    }

    #[test]
    fn machinery_has_a_fixed_number_of_rules() {
        let mut b = Batch::new();
        add_machinery(&mut b, "weft", &[]);
        let n = b
            .to_nftables()
            .objects
            .iter()
            .filter(|o| {
                matches!(
                    o,
                    nftables::schema::NfObject::CmdObject(nftables::schema::NfCmd::Add(
                        NfListObject::Rule(_)
                    ))
                )
            })
            .count();
        assert_eq!(n, RULES);
    }
}
