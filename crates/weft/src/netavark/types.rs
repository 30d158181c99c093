//! netavark's JSON, as Podman 4.3 (containers/common 0.50) writes it on
//! stdin and reads it back from stdout. Field names and shapes follow
//! netavark's published `network::types`; unknown fields are ignored, as
//! netavark does, because newer Podmans add some.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use anyhow::{bail, Context as _, Result};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use weft_model::{PortMapping, Proto};

/// What `setup` and `teardown` read on stdin.
#[derive(Debug, Clone, Deserialize)]
pub struct NetworkOptions {
    /// weft's endpoints carry the name (Podman's names are unique), so
    /// that `weft endpoint ls` and `weft topology` show it.
    pub container_name: String,
    /// Per network (by name): how the container is plugged in.
    pub networks: BTreeMap<String, PerNetworkOptions>,
    /// Per network (by name): the network's definition.
    pub network_info: HashMap<String, NetworkInfo>,
    #[serde(default)]
    pub port_mappings: Option<Vec<PortSpec>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PerNetworkOptions {
    pub interface_name: String,
    #[serde(default)]
    pub static_ips: Option<Vec<IpAddr>>,
    #[serde(default)]
    pub static_mac: Option<String>,
    #[serde(default)]
    pub aliases: Option<Vec<String>>,
}

/// A network definition (`/etc/containers/networks/NAME.json`).
#[derive(Debug, Clone, Deserialize)]
pub struct NetworkInfo {
    #[serde(default)]
    pub id: String,
    pub driver: String,
    #[serde(default)]
    pub network_interface: Option<String>,
    #[serde(default)]
    pub subnets: Option<Vec<Subnet>>,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub dns_enabled: bool,
    #[serde(default)]
    pub options: Option<HashMap<String, String>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Subnet {
    pub subnet: IpNet,
    #[serde(default)]
    pub gateway: Option<IpAddr>,
}

/// One `-p`: `range` ports from `host_port` and `container_port` on, for
/// each protocol of the comma-separated `protocol`.
#[derive(Debug, Clone, Deserialize)]
pub struct PortSpec {
    #[serde(default)]
    pub host_ip: String,
    pub container_port: u16,
    pub host_port: u16,
    #[serde(default)]
    pub range: u16,
    #[serde(default)]
    pub protocol: String,
}

/// What `setup` prints for one network.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StatusBlock {
    pub interfaces: BTreeMap<String, NetInterface>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_server_ips: Vec<IpAddr>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_search_domains: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NetInterface {
    pub mac_address: String,
    pub subnets: Vec<NetAddress>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NetAddress {
    /// The interface's address with the subnet's prefix.
    pub ipnet: IpNet,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
}

/// The only error shape Podman accepts.
#[derive(Debug, Serialize)]
pub struct ErrorReply<'a> {
    pub error: &'a str,
}

impl NetworkOptions {
    pub fn parse(input: &[u8]) -> Result<NetworkOptions> {
        let opts: NetworkOptions =
            serde_json::from_slice(input).context("read the network options from stdin")?;
        for name in opts.networks.keys() {
            if !opts.network_info.contains_key(name) {
                bail!("network {name} is in \"networks\" but has no \"network_info\"");
            }
        }
        Ok(opts)
    }

    /// The published ports as weft's mappings: one per protocol and range.
    pub fn ports(&self) -> Result<Vec<PortMapping>> {
        let mut out = Vec::new();
        for p in self.port_mappings.iter().flatten() {
            let host_ip = match p.host_ip.as_str() {
                "" => None,
                s => Some(s.parse::<IpAddr>().with_context(|| format!("port host_ip {s:?}"))?),
            };
            let last = |first: u16| {
                let n = p.range.max(1);
                first
                    .checked_add(n - 1)
                    .with_context(|| format!("port range {first} + {n} passes 65535"))
            };
            let protocols = if p.protocol.is_empty() { "tcp" } else { p.protocol.as_str() };
            for proto in protocols.split(',') {
                let m = PortMapping {
                    protocol: proto.trim().parse::<Proto>()?,
                    host_ip,
                    host_port: p.host_port,
                    host_port_end: last(p.host_port)?,
                    container_port: p.container_port,
                    container_port_end: last(p.container_port)?,
                };
                m.check()?;
                out.push(m);
            }
        }
        Ok(out)
    }
}

impl NetworkInfo {
    /// The IPv4 subnet and the optional IPv6 one, each with its gateway
    /// (weft's networks have one of each at most).
    pub fn subnets(&self) -> (Option<&Subnet>, Option<&Subnet>) {
        let all = self.subnets.as_deref().unwrap_or_default();
        let v4 = all.iter().find(|s| matches!(s.subnet, IpNet::V4(_)));
        let v6 = all.iter().find(|s| matches!(s.subnet, IpNet::V6(_)));
        (v4, v6)
    }

    pub fn option(&self, key: &str) -> Option<&str> {
        self.options.as_ref()?.get(key).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Podman 4.3.1's setup input for `podman run --network n1 --ip 10.99.0.7
    // --mac-address ... --network-alias foo -p 8080:80 -p
    // 127.0.0.1:9000-9001:9000-9001/udp`, as captured.
    const PODMAN_43: &str = r#"{"container_id":"f507e3983df0acd72ac977527558773568aa0330f2fcc6e134949c7417b26975","container_name":"c1","port_mappings":[{"host_ip":"","container_port":80,"host_port":8080,"range":1,"protocol":"tcp"},{"host_ip":"127.0.0.1","container_port":9000,"host_port":9000,"range":2,"protocol":"udp"}],"networks":{"n1":{"static_ips":["10.99.0.7"],"aliases":["foo","f507e3983df0"],"static_mac":"02:11:22:33:44:55","interface_name":"eth0"}},"network_info":{"n1":{"name":"n1","id":"7d231dfe","driver":"bridge","network_interface":"podman1","created":"2026-12-05T05:46:15.215049808Z","subnets":[{"subnet":"10.99.0.0/24","gateway":"10.99.0.1"}],"ipv6_enabled":false,"internal":true,"dns_enabled":true,"options":{"isolate":"true","mtu":"1400"},"ipam_options":{"driver":"host-local"}}}}"#;

    #[test]
    fn reads_podman_43_input() {
        let o = NetworkOptions::parse(PODMAN_43.as_bytes()).unwrap();
        assert_eq!(o.container_name, "c1");
        let n = &o.networks["n1"];
        assert_eq!(n.interface_name, "eth0");
        assert_eq!(n.static_mac.as_deref(), Some("02:11:22:33:44:55"));
        let info = &o.network_info["n1"];
        assert_eq!(info.network_interface.as_deref(), Some("podman1"));
        assert_eq!(info.option("mtu"), Some("1400"));
        assert_eq!(info.subnets().0.unwrap().subnet.to_string(), "10.99.0.0/24");
        let ports = o.ports().unwrap();
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[1].to_string(), "127.0.0.1:9000-9001:9000-9001/udp");
    }

    #[test]
    fn splits_protocols_and_rejects_bad_ports() {
        let mut o = NetworkOptions::parse(PODMAN_43.as_bytes()).unwrap();
        o.port_mappings = Some(vec![PortSpec {
            host_ip: String::new(),
            container_port: 53,
            host_port: 5353,
            range: 0,
            protocol: "tcp,udp".into(),
        }]);
        let p = o.ports().unwrap();
        assert_eq!(p.iter().map(|m| m.protocol).collect::<Vec<_>>(), [Proto::Tcp, Proto::Udp]);
        o.port_mappings.as_mut().unwrap()[0].protocol = "icmp".into();
        assert!(o.ports().is_err());
        o.port_mappings.as_mut().unwrap()[0] = PortSpec {
            host_ip: String::new(),
            container_port: 65535,
            host_port: 65535,
            range: 2,
            protocol: "tcp".into(),
        };
        assert!(o.ports().is_err());
    }

    #[test]
    fn status_block_shape() {
        let mut s = StatusBlock::default();
        s.interfaces.insert(
            "eth0".into(),
            NetInterface {
                mac_address: "02:11:22:33:44:55".into(),
                subnets: vec![NetAddress {
                    ipnet: "10.99.0.7/24".parse().unwrap(),
                    gateway: Some("10.99.0.1".parse().unwrap()),
                }],
            },
        );
        s.dns_server_ips.push("10.99.0.1".parse().unwrap());
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"interfaces":{"eth0":{"mac_address":"02:11:22:33:44:55","subnets":[{"ipnet":"10.99.0.7/24","gateway":"10.99.0.1"}]}},"dns_server_ips":["10.99.0.1"]}"#
        );
    }
}
