//! The network configuration a runtime passes on stdin. Unknown fields are
//! accepted (CNI configs carry settings for other plugins of a chain);
//! fields weft knows are type-checked.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use ipnet::{Ipv4Net, Ipv6Net};
use serde::Deserialize;
use serde_json::Value;
use weft_model::network::{check_network_name, NetworkSpec};
use weft_model::{Mac, PortMapping, Proto};

use crate::error::{CniError, Code};
use crate::version::Version;

#[derive(Debug, Clone, Deserialize)]
pub struct NetConf {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    /// The weft network this config plugs containers into.
    pub name: String,
    #[serde(rename = "type")]
    pub plugin: String,
    #[serde(default)]
    pub subnet: Option<Ipv4Net>,
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    #[serde(default)]
    pub subnet6: Option<Ipv6Net>,
    #[serde(default)]
    pub gateway6: Option<Ipv6Addr>,
    #[serde(default)]
    pub bridge: Option<String>,
    #[serde(default)]
    pub mtu: Option<u32>,
    /// Outbound NAT; `false` requires `internal: true`.
    #[serde(default, rename = "ipMasq")]
    pub ip_masq: Option<bool>,
    #[serde(default)]
    pub internal: Option<bool>,
    /// `bridge` (default) or `overlay` (needs the cluster store).
    #[serde(default)]
    pub driver: Option<weft_model::Driver>,
    /// VXLAN id of an overlay network.
    #[serde(default)]
    pub vni: Option<u32>,
    #[serde(default)]
    pub ipam: Option<Ipam>,
    /// weft's state directory (default /var/lib/weft, shared with the CLI).
    #[serde(default, rename = "stateDir")]
    pub state_dir: Option<PathBuf>,
    #[serde(default, rename = "runtimeConfig")]
    pub runtime_config: RuntimeConfig,
    #[serde(default)]
    pub args: Option<Args>,
    #[serde(default, rename = "prevResult")]
    pub prev_result: Option<Value>,
    #[serde(default, rename = "cni.dev/valid-attachments")]
    pub valid_attachments: Option<Vec<Attachment>>,
}

/// The standard `ipam` section. weft allocates addresses itself, so only
/// `{"type": "weft"}` (or no section) is accepted; `subnet`/`gateway` here
/// are read as the network's, as host-local users would write them.
#[derive(Debug, Clone, Deserialize)]
pub struct Ipam {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub subnet: Option<Ipv4Net>,
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
}

/// Capabilities the runtime fills in (`ips`, `mac`, `portMappings`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RuntimeConfig {
    /// Addresses as `10.1.0.7/24` or `10.1.0.7`.
    #[serde(default)]
    pub ips: Vec<String>,
    #[serde(default)]
    pub mac: Option<Mac>,
    #[serde(default, rename = "portMappings")]
    pub port_mappings: Vec<PortMappingConf>,
}

/// One entry of the `portMappings` capability, as the portmap plugin reads it.
#[derive(Debug, Clone, Deserialize)]
pub struct PortMappingConf {
    #[serde(rename = "hostPort")]
    pub host_port: u16,
    #[serde(rename = "containerPort")]
    pub container_port: u16,
    /// `tcp` (default), `udp` or `sctp`.
    #[serde(default)]
    pub protocol: Option<String>,
    /// Empty or absent: every host address.
    #[serde(default, rename = "hostIP")]
    pub host_ip: Option<String>,
}

/// The `args.cni` convention for static addresses.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Args {
    #[serde(default)]
    pub cni: ArgsCni,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ArgsCni {
    #[serde(default)]
    pub ips: Vec<String>,
    #[serde(default)]
    pub mac: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

impl NetConf {
    /// Parses stdin: broken JSON is code 6, valid JSON with wrong or missing
    /// fields is code 7, an unknown version code 1.
    pub fn parse(bytes: &[u8]) -> Result<(NetConf, Version), CniError> {
        if bytes.len() > crate::MAX_CONFIG_BYTES {
            return Err(CniError::new(
                Code::InvalidConfig,
                format!(
                    "config is {} bytes; the limit is {}",
                    bytes.len(),
                    crate::MAX_CONFIG_BYTES
                ),
            ));
        }
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| CniError::new(Code::Decode, format!("config is not valid JSON: {e}")))?;
        let version = value.get("cniVersion").and_then(Value::as_str).map(str::to_string);
        let conf: NetConf = serde_json::from_value(value).map_err(|e| {
            CniError::new(Code::InvalidConfig, format!("invalid network config: {e}"))
        })?;
        let v = Version::require(&conf.cni_version)?;
        conf.check().map_err(|e| e.in_version(version.as_deref().unwrap_or_default()))?;
        Ok((conf, v))
    }

    fn check(&self) -> Result<(), CniError> {
        let bad = |m: String| Err(CniError::new(Code::InvalidConfig, m));
        if self.plugin != "weft" {
            return bad(format!("type is {:?}; this plugin is \"weft\"", self.plugin));
        }
        if let Err(e) = check_network_name(&self.name) {
            return bad(e.to_string());
        }
        if let Some(kind) = self.ipam.as_ref().and_then(|i| i.kind.as_deref()) {
            if kind != "weft" {
                return bad(format!(
                    "ipam type {kind:?} is not supported: weft allocates addresses itself; \
                     use {{\"type\": \"weft\"}} or leave ipam out"
                ));
            }
        }
        if self.ip_masq == Some(false) && self.internal != Some(true) {
            return bad(
                "ipMasq false needs internal true: weft networks with a way out are NATed".into()
            );
        }
        Ok(())
    }

    /// The weft network this config describes, for creating it on first ADD.
    pub fn network_spec(&self) -> NetworkSpec {
        let ipam = self.ipam.as_ref();
        NetworkSpec {
            name: self.name.clone(),
            subnet: self.subnet.or(ipam.and_then(|i| i.subnet)),
            gateway: self.gateway.or(ipam.and_then(|i| i.gateway)),
            subnet6: self.subnet6,
            gateway6: self.gateway6,
            mtu: self.mtu,
            bridge: self.bridge.clone(),
            internal: self.internal.unwrap_or(false),
            open: false,
            driver: self.driver,
            vni: self.vni,
        }
    }

    /// A requested static IPv4 / IPv6 address: runtimeConfig.ips, then
    /// args.cni.ips, then CNI_ARGS IP=.
    pub fn requested_ips(
        &self,
        cni_args_ip: Option<&str>,
    ) -> Result<Vec<std::net::IpAddr>, CniError> {
        let mut out: Vec<std::net::IpAddr> = Vec::new();
        let extra = self.args.as_ref().map(|a| a.cni.ips.clone()).unwrap_or_default();
        let all = self.runtime_config.ips.iter().chain(extra.iter()).map(String::as_str);
        for s in all.chain(cni_args_ip) {
            let ip =
                s.split('/').next().unwrap_or_default().parse().map_err(|_| {
                    CniError::new(Code::InvalidConfig, format!("bad IP address {s:?}"))
                })?;
            out.push(ip);
        }
        Ok(out)
    }

    /// The `portMappings` capability as weft's published ports.
    pub fn requested_ports(&self) -> Result<Vec<PortMapping>, CniError> {
        let bad = |m: String| CniError::new(Code::InvalidConfig, format!("portMappings: {m}"));
        let mut out = Vec::new();
        for pm in &self.runtime_config.port_mappings {
            let protocol: Proto = match pm.protocol.as_deref().filter(|p| !p.is_empty()) {
                Some(p) => p.parse().map_err(|e: weft_model::ModelError| bad(e.to_string()))?,
                None => Proto::Tcp,
            };
            let host_ip = match pm.host_ip.as_deref().filter(|s| !s.is_empty()) {
                Some(s) => {
                    Some(s.parse().map_err(|_| bad(format!("hostIP {s:?} is not an address")))?)
                }
                None => None,
            };
            // The runtime chooses host ports; a result could not tell it one
            // weft chose (the CLI's `-p 80`).
            if pm.host_port == 0 {
                return Err(bad("port 0 cannot be published".into()));
            }
            let m = PortMapping {
                host_ip,
                ..PortMapping::single(protocol, pm.host_port, pm.container_port)
            };
            m.check().map_err(|e| bad(e.to_string()))?;
            out.push(m);
        }
        weft_model::port::check_all(&out).map_err(|e| bad(e.to_string()))?;
        Ok(out)
    }

    pub fn requested_mac(&self, cni_args_mac: Option<&str>) -> Result<Option<Mac>, CniError> {
        if let Some(m) = self.runtime_config.mac {
            return Ok(Some(m));
        }
        let s =
            self.args.as_ref().and_then(|a| a.cni.mac.clone()).or(cni_args_mac.map(String::from));
        s.map(|s| {
            s.parse().map_err(|e: weft_model::ModelError| {
                CniError::new(Code::InvalidConfig, e.to_string())
            })
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_a_full_config() {
        let (c, v) = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"front","type":"weft","subnet":"10.1.0.0/24",
                "ipMasq":true,"mtu":1400,"ipam":{"type":"weft"},"someOtherPlugin":{"x":1},
                "runtimeConfig":{"ips":["10.1.0.9/24"],"mac":"02:00:00:00:00:09"}}"#,
        )
        .unwrap();
        assert_eq!(v, Version::V1_0_0);
        assert_eq!(c.network_spec().subnet.unwrap().to_string(), "10.1.0.0/24");
        assert_eq!(c.requested_ips(None).unwrap()[0].to_string(), "10.1.0.9");
        assert_eq!(c.requested_mac(None).unwrap().unwrap().to_string(), "02:00:00:00:00:09");
    }

    #[test]
    fn port_mappings() {
        let (c, _) = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"n","type":"weft","runtimeConfig":{"portMappings":[
                {"hostPort":8080,"containerPort":80,"protocol":"tcp"},
                {"hostPort":53,"containerPort":53,"protocol":"udp","hostIP":"127.0.0.1"},
                {"hostPort":9000,"containerPort":90,"hostIP":""}]}}"#,
        )
        .unwrap();
        let p: Vec<String> = c.requested_ports().unwrap().iter().map(|p| p.to_string()).collect();
        assert_eq!(p, ["8080:80/tcp", "127.0.0.1:53:53/udp", "9000:90/tcp"]);
        let (c, _) = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"n","type":"weft","runtimeConfig":{"portMappings":[
                {"hostPort":8080,"containerPort":80,"protocol":"icmp"}]}}"#,
        )
        .unwrap();
        assert_eq!(c.requested_ports().unwrap_err().code, 7);
    }

    #[test]
    fn error_codes() {
        let code = |s: &str| NetConf::parse(s.as_bytes()).unwrap_err().code;
        assert_eq!(code("{not json"), 6);
        assert_eq!(code(r#"{"cniVersion":"9.9.9","name":"n","type":"weft"}"#), 1);
        assert_eq!(code(r#"{"cniVersion":"1.0.0","type":"weft"}"#), 7);
        assert_eq!(code(r#"{"cniVersion":"1.0.0","name":"n","type":"weft","mtu":"big"}"#), 7);
        assert_eq!(code(r#"{"cniVersion":"1.0.0","name":"n","type":"bridge"}"#), 7);
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","name":"n","type":"weft","ipam":{"type":"host-local"}}"#),
            7
        );
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","name":"n","type":"weft","subnet":"10.0.0.0/99"}"#),
            7
        );
        assert_eq!(code(r#"{"cniVersion":"1.0.0","name":"bad name","type":"weft"}"#), 7);
        let huge = format!(
            r#"{{"cniVersion":"1.0.0","name":"n","type":"weft","pad":"{}"}}"#,
            "x".repeat(2 << 20)
        );
        assert_eq!(code(&huge), 7);
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "[a-z0-9./:]{0,12}".prop_map(Value::String),
            Just(Value::from("10.0.0.0/24")),
            Just(Value::from("1.0.0")),
            Just(Value::from("weft")),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("cniVersion".to_string()),
                        Just("name".to_string()),
                        Just("type".to_string()),
                        Just("subnet".to_string()),
                        Just("ipam".to_string()),
                        Just("runtimeConfig".to_string()),
                        Just("ips".to_string()),
                        Just("mac".to_string()),
                        Just("mtu".to_string()),
                        Just("args".to_string()),
                        "[a-z]{1,6}",
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Arbitrary bytes and arbitrary JSON never panic, and every
        /// failure carries one of the spec's decode/config/version codes.
        #[test]
        fn never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            if let Err(e) = NetConf::parse(&bytes) {
                prop_assert!([1, 6, 7].contains(&e.code));
            }
        }

        #[test]
        fn never_panics_on_json(v in json_value()) {
            let bytes = serde_json::to_vec(&v).unwrap();
            match NetConf::parse(&bytes) {
                Ok((c, _)) => {
                    let _ = c.requested_ips(None);
                    let _ = c.requested_mac(None);
                    let _ = c.network_spec();
                }
                Err(e) => prop_assert!([1, 6, 7].contains(&e.code), "code {}", e.code),
            }
        }
    }
}
