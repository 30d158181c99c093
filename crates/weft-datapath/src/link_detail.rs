//! Links with what diagnosis needs beyond [`Link`]: the bridge port state
//! (IFLA_INFO_SLAVE_DATA, what `ip -d link` shows as "bridge_slave"), the
//! operational state and the packet counters (IFLA_STATS64). One dump
//! answers all of it.

use netlink_packet_route::link::{
    BridgePortState, InfoBridgePort, InfoPortData, LinkAttribute, LinkInfo, LinkMessage, State,
};
use netlink_packet_route::RouteNetlinkMessage;

use crate::error::{OpContext, Result};
use crate::link::Link;
use crate::netlink::Netlink;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkDetail {
    pub link: Link,
    /// `up`, `down`, `lowerlayerdown`, `unknown`...
    pub oper_state: String,
    /// Set when the link is a bridge port.
    pub port: Option<BridgePort>,
    pub counters: Counters,
    /// The namespace id (as this namespace numbers it) a veth's peer is in.
    pub peer_netnsid: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgePort {
    /// `forwarding`, `learning`, `listening`, `blocking` or `disabled`
    /// (a port whose link has no carrier is disabled).
    pub state: String,
    pub learning: bool,
    pub unicast_flood: bool,
    pub isolated: bool,
}

impl BridgePort {
    pub fn forwarding(&self) -> bool {
        self.state == "forwarding"
    }
}

/// The link's packet counters since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
}

impl Netlink {
    pub fn link_details(&mut self) -> Result<Vec<LinkDetail>> {
        let v = self
            .dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))
            .op(|| "list interfaces".into())?;
        Ok(v.iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(detail(l)),
                _ => None,
            })
            .collect())
    }

    /// Only the counters of one link (cheap enough to poll around a probe).
    pub fn counters(&mut self, index: u32) -> Result<Option<Counters>> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        match self.get(RouteNetlinkMessage::GetLink(m)) {
            Ok(v) => Ok(v.iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(detail(l).counters),
                _ => None,
            })),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e).op(|| format!("read counters of interface #{index}")),
        }
    }
}

/// What `Link` reads, plus what only the diagnostics need.
fn detail(m: &LinkMessage) -> LinkDetail {
    let mut d = LinkDetail {
        link: Link::from_message(m),
        oper_state: "unknown".into(),
        port: None,
        counters: Counters::default(),
        peer_netnsid: None,
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::LinkNetNsId(i) => d.peer_netnsid = Some(*i),
            LinkAttribute::OperState(s) => d.oper_state = oper_state(*s),
            LinkAttribute::Stats64(s) => {
                d.counters = Counters {
                    rx_packets: s.rx_packets,
                    tx_packets: s.tx_packets,
                    rx_bytes: s.rx_bytes,
                    tx_bytes: s.tx_bytes,
                    rx_dropped: s.rx_dropped,
                    tx_dropped: s.tx_dropped,
                    rx_errors: s.rx_errors,
                    tx_errors: s.tx_errors,
                }
            }
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::PortData(InfoPortData::BridgePort(p)) = i {
                        d.port = Some(bridge_port(p))
                    }
                }
            }
            _ => {}
        }
    }
    d
}

fn bridge_port(attrs: &[InfoBridgePort]) -> BridgePort {
    // Kernel defaults, in case an attribute is missing.
    let mut p = BridgePort {
        state: "disabled".into(),
        learning: true,
        unicast_flood: true,
        isolated: false,
    };
    for a in attrs {
        match a {
            InfoBridgePort::State(s) => {
                p.state = match s {
                    BridgePortState::Disabled => "disabled".into(),
                    BridgePortState::Listening => "listening".into(),
                    BridgePortState::Learning => "learning".into(),
                    BridgePortState::Forwarding => "forwarding".into(),
                    BridgePortState::Blocking => "blocking".into(),
                    BridgePortState::Other(n) => format!("state {n}"),
                    other => format!("{other:?}").to_lowercase(),
                }
            }
            InfoBridgePort::Learning(b) => p.learning = *b,
            InfoBridgePort::UnicastFlood(b) => p.unicast_flood = *b,
            InfoBridgePort::Isolated(b) => p.isolated = *b,
            _ => {}
        }
    }
    p
}

fn oper_state(s: State) -> String {
    match s {
        State::Up => "up",
        State::Down => "down",
        State::LowerLayerDown => "lowerlayerdown",
        State::Dormant => "dormant",
        State::NotPresent => "notpresent",
        State::Testing => "testing",
        _ => "unknown",
    }
    .into()
}
