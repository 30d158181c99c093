//! The topology as the renderers (text, dot, svg, json) draw it: hosts,
//! each with its uplinks, firewall and networks; a network with its bridge
//! (and, for an overlay, its VXLAN device) and the containers plugged into
//! it. Live kernel state sits next to what the store says, and every
//! disagreement is a [`Mark`]. Field names are the JSON output's.

use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Topology {
    pub hosts: Vec<Host>,
}

#[derive(Debug, Serialize)]
pub struct Host {
    pub name: String,
    /// Kernel state was read (this host). Other hosts of an overlay network
    /// show what the store knows of them only.
    pub observed: bool,
    pub uplinks: Vec<Uplink>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub firewall: Option<FirewallView>,
    pub networks: Vec<NetView>,
}

/// An interface carrying a default route: where traffic leaves the host.
#[derive(Debug, Serialize)]
pub struct Uplink {
    pub name: String,
    pub addresses: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    pub mtu: u32,
    pub up: bool,
}

#[derive(Debug, Serialize)]
pub struct FirewallView {
    /// `inet weft`.
    pub table: String,
    pub present: bool,
    /// Rules in its forward chain (weft's fixed ruleset has 8).
    pub forward_rules: usize,
    pub marks: Vec<Mark>,
}

#[derive(Debug, Serialize)]
pub struct NetView {
    pub name: String,
    pub driver: String,
    pub subnet: String,
    pub gateway: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet6: Option<String>,
    pub internal: bool,
    pub mtu: u32,
    pub bridge: BridgeView,
    /// The overlay's VXLAN port on this host's bridge.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vxlan: Option<VxlanView>,
    /// Where traffic to the outside leaves (masqueraded), if anywhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub egress: Option<String>,
    pub endpoints: Vec<EndpointView>,
    pub marks: Vec<Mark>,
}

#[derive(Debug, Serialize)]
pub struct BridgeView {
    pub name: String,
    pub present: bool,
    pub up: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    pub addresses: Vec<String>,
    /// Number of ports (veths, VXLAN device).
    pub ports: usize,
}

#[derive(Debug, Serialize)]
pub struct VxlanView {
    pub name: String,
    pub up: bool,
    pub in_bridge: bool,
    /// Static FDB entries pointing at remote hosts' VTEPs.
    pub remote_entries: usize,
}

#[derive(Debug, Serialize)]
pub struct EndpointView {
    pub container: String,
    pub ifname: String,
    pub address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address6: Option<String>,
    pub mac: String,
    pub netns: String,
    /// The store's record state: `ready`, or `creating` mid-attach.
    pub state: String,
    /// Published ports, as docker shows them (`8080->80/tcp`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    /// DNS names besides the container's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    pub host_veth: VethView,
    /// The container's end, None when its namespace cannot be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface: Option<IfView>,
    /// The bridge port on which the bridge learned this endpoint's MAC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fdb_port: Option<String>,
    pub marks: Vec<Mark>,
}

#[derive(Debug, Serialize)]
pub struct VethView {
    pub name: String,
    pub present: bool,
    pub up: bool,
    /// The container end is up too.
    pub carrier: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The bridge it is a port of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_state: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct IfView {
    pub present: bool,
    pub up: bool,
    pub mtu: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    pub addresses: Vec<String>,
}

/// Live state that disagrees with the store, and how to fix it.
#[derive(Debug, Clone, Serialize)]
pub struct Mark {
    pub level: Level,
    pub what: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Error,
    Warning,
}

impl Mark {
    pub fn error(what: impl Into<String>, fix: Option<String>) -> Mark {
        Mark { level: Level::Error, what: what.into(), fix }
    }

    pub fn warning(what: impl Into<String>, fix: Option<String>) -> Mark {
        Mark { level: Level::Warning, what: what.into(), fix }
    }

    /// Something weft made is gone: `weft gc` recreates or forgets it.
    pub fn missing(what: String) -> Mark {
        Mark::error(format!("{what} is missing"), Some("weft gc".into()))
    }
}

impl BridgeView {
    pub fn missing(name: &str) -> BridgeView {
        BridgeView {
            name: name.to_string(),
            present: false,
            up: false,
            mac: None,
            mtu: None,
            addresses: Vec::new(),
            ports: 0,
        }
    }
}

impl VethView {
    pub fn missing(name: &str) -> VethView {
        VethView {
            name: name.to_string(),
            present: false,
            up: false,
            carrier: false,
            mtu: None,
            master: None,
            port_state: None,
        }
    }
}

impl EndpointView {
    pub fn has_errors(&self) -> bool {
        self.marks.iter().any(|m| m.level == Level::Error)
    }

    /// The wire between container and bridge is broken (down, detached).
    pub fn wire_broken(&self) -> bool {
        let v = &self.host_veth;
        !v.present || !v.up || !v.carrier || v.port_state.as_deref() != Some("forwarding")
    }
}
