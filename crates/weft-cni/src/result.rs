//! The result of ADD (and the prevResult of a chain), shaped for the
//! version the runtime asked for.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::error::{CniError, Code};
use crate::version::Version;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default)]
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// CIDR, e.g. `10.89.0.2/24`.
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniResult {
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub dns: Dns,
}

impl CniResult {
    /// Reads a prevResult (any supported version; `version` fields of
    /// pre-1.0 results are dropped).
    pub fn from_prev(v: &Value) -> Result<CniResult, CniError> {
        let mut v = v.clone();
        if let Some(ips) = v.get_mut("ips").and_then(Value::as_array_mut) {
            for ip in ips {
                if let Some(o) = ip.as_object_mut() {
                    o.remove("version");
                }
            }
        }
        serde_json::from_value(v)
            .map_err(|e| CniError::new(Code::InvalidConfig, format!("invalid prevResult: {e}")))
    }

    /// Appends `other`, renumbering its interface indexes (chaining).
    pub fn merge(&mut self, other: CniResult) {
        let base = self.interfaces.len();
        self.interfaces.extend(other.interfaces);
        self.ips.extend(other.ips.into_iter().map(|mut ip| {
            ip.interface = ip.interface.map(|i| i + base);
            ip
        }));
        self.routes.extend(other.routes);
        if self.dns == Dns::default() {
            self.dns = other.dns;
        }
    }

    /// The JSON the runtime gets, in its version.
    pub fn to_json(&self, v: Version) -> Value {
        let mut out = Map::new();
        out.insert("cniVersion".into(), json!(v.as_str()));
        let interfaces: Vec<Value> = self
            .interfaces
            .iter()
            .map(|i| {
                let mut o = serde_json::to_value(i).expect("serializes");
                if v < Version::V1_1_0 {
                    // `mtu` on interfaces arrived in 1.1.0.
                    o.as_object_mut().expect("object").remove("mtu");
                }
                o
            })
            .collect();
        out.insert("interfaces".into(), Value::Array(interfaces));
        let ips: Vec<Value> = self
            .ips
            .iter()
            .map(|ip| {
                let mut o = serde_json::to_value(ip).expect("serializes");
                if v.ips_have_version() {
                    let fam = if ip.address.contains(':') { "6" } else { "4" };
                    o.as_object_mut().expect("object").insert("version".into(), json!(fam));
                }
                o
            })
            .collect();
        out.insert("ips".into(), Value::Array(ips));
        out.insert("routes".into(), serde_json::to_value(&self.routes).expect("serializes"));
        out.insert("dns".into(), serde_json::to_value(&self.dns).expect("serializes"));
        Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![Interface {
                name: "eth0".into(),
                mac: "02:00:00:00:00:01".into(),
                mtu: Some(1500),
                sandbox: Some("/var/run/netns/x".into()),
            }],
            ips: vec![IpConfig {
                address: "10.0.0.2/24".into(),
                gateway: Some("10.0.0.1".into()),
                interface: Some(0),
            }],
            routes: vec![Route { dst: "0.0.0.0/0".into(), gw: Some("10.0.0.1".into()) }],
            dns: Dns::default(),
        }
    }

    #[test]
    fn versions_shape_the_result() {
        let old = sample().to_json(Version::V0_3_1);
        assert_eq!(old["cniVersion"], "0.3.1");
        assert_eq!(old["ips"][0]["version"], "4");
        assert!(old["interfaces"][0].get("mtu").is_none());
        let new = sample().to_json(Version::V1_1_0);
        assert!(new["ips"][0].get("version").is_none());
        assert_eq!(new["interfaces"][0]["mtu"], 1500);
    }

    #[test]
    fn prev_result_round_trip_and_merge() {
        let prev = CniResult::from_prev(&sample().to_json(Version::V0_4_0)).unwrap();
        assert_eq!(prev.ips[0].address, "10.0.0.2/24");
        let mut a = prev.clone();
        a.merge(sample());
        assert_eq!(a.interfaces.len(), 2);
        assert_eq!(a.ips[1].interface, Some(1));
    }
}
