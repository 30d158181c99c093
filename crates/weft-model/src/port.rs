//! Published ports: a host port (or range) forwarded to a container port,
//! as `--publish [[HOST_IP:][HOST_PORT[-END]]:]CONTAINER_PORT[-END][/PROTO]`
//! writes it (docker's forms) and CNI's `portMappings` capability carries
//! it. Without a host port (`-p 80`, `-p 127.0.0.1::80`) the mapping is
//! "dynamic": host port 0 until the attach chooses a free one.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ModelError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Proto {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Proto, ModelError> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            "sctp" => Ok(Proto::Sctp),
            _ => Err(ModelError::BadPort(s.to_string(), "protocol must be tcp, udp or sctp")),
        }
    }
}

/// One published port or range. Ranges on both sides have the same length
/// and map in order: host `8080-8089` to container `80-89` sends 8083 to 83.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortMapping {
    pub protocol: Proto,
    /// Only traffic to this host address; None: every address of the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    /// Last port of the host range; equal to `host_port` for one port.
    pub host_port_end: u16,
    pub container_port: u16,
    pub container_port_end: u16,
}

impl PortMapping {
    /// One port, every host address.
    pub fn single(protocol: Proto, host_port: u16, container_port: u16) -> PortMapping {
        PortMapping {
            protocol,
            host_ip: None,
            host_port,
            host_port_end: host_port,
            container_port,
            container_port_end: container_port,
        }
    }

    /// No host port given: the attach chooses one (`-p 80`).
    pub fn is_dynamic(&self) -> bool {
        self.host_port == 0 && self.host_port_end == 0
    }

    /// Checks ports and range lengths.
    pub fn check(&self) -> Result<(), ModelError> {
        let bad = |why| Err(ModelError::BadPort(self.to_string(), why));
        if (self.host_port == 0 && !self.is_dynamic()) || self.container_port == 0 {
            return bad("port 0 cannot be published");
        }
        if self.container_port_end < self.container_port
            || (!self.is_dynamic() && self.host_port_end < self.host_port)
        {
            return bad("a range must go from low to high");
        }
        if !self.is_dynamic()
            && self.host_port_end - self.host_port != self.container_port_end - self.container_port
        {
            return bad("the host and container ranges must have the same length");
        }
        if let Some(ip) = self.host_ip {
            if ip.is_multicast() {
                return bad("the host address cannot be a multicast address");
            }
        }
        Ok(())
    }

    /// Number of ports in the range.
    pub fn len(&self) -> u32 {
        u32::from(self.container_port_end - self.container_port) + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether the container port equals the host port throughout.
    pub fn same_ports(&self) -> bool {
        self.host_port == self.container_port
    }

    /// The host address as the datapath matches it: None (or 0.0.0.0 / ::)
    /// means every address.
    pub fn host_addr(&self) -> Option<IpAddr> {
        self.host_ip.filter(|ip| !ip.is_unspecified())
    }

    /// Whether traffic of family `v6` is published (an unspecified address
    /// of the other family, `0.0.0.0` or `::`, limits it to its own).
    pub fn covers_family(&self, v6: bool) -> bool {
        match self.host_ip {
            None => true,
            Some(ip) => ip.is_ipv6() == v6,
        }
    }

    /// Whether both would catch some of the same packets: same protocol,
    /// overlapping ports, and host addresses that can coincide.
    pub fn overlaps(&self, other: &PortMapping) -> bool {
        if self.is_dynamic() || other.is_dynamic() {
            return false;
        }
        if self.protocol != other.protocol
            || self.host_port > other.host_port_end
            || other.host_port > self.host_port_end
        {
            return false;
        }
        match (self.host_ip, other.host_ip) {
            (None, _) | (_, None) => true,
            (Some(a), Some(b)) if a.is_ipv6() != b.is_ipv6() => false,
            (Some(a), Some(b)) => a == b || a.is_unspecified() || b.is_unspecified(),
        }
    }
}

/// `[[HOST_IP:][HOST_PORT[-END]]:]CONTAINER_PORT[-END][/PROTO]` (IPv6 host
/// addresses in brackets: `[::1]:8080:80`); an empty or absent host port
/// is dynamic.
impl FromStr for PortMapping {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<PortMapping, ModelError> {
        let bad = |why| ModelError::BadPort(s.to_string(), why);
        let (spec, protocol) = match s.rsplit_once('/') {
            Some((spec, p)) => {
                (spec, p.parse().map_err(|_| bad("protocol must be tcp, udp or sctp"))?)
            }
            None => (s, Proto::Tcp),
        };
        let (host_ip, rest) = if let Some(r) = spec.strip_prefix('[') {
            let (ip, rest) =
                r.split_once("]:").ok_or_else(|| bad("expected [IPV6]:HOST:CONTAINER"))?;
            (Some(ip.parse().map_err(|_| bad("invalid host address"))?), rest)
        } else {
            match spec.matches(':').count() {
                0 => (None, spec),
                1 => (None, spec),
                2 => {
                    let (ip, rest) = spec.split_once(':').expect("two colons");
                    (Some(ip.parse().map_err(|_| bad("invalid host address"))?), rest)
                }
                _ => return Err(bad("expected [HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTO]")),
            }
        };
        let (host, container) = match rest.split_once(':') {
            Some((h, c)) => (h, c),
            None if host_ip.is_none() => ("", rest),
            None => return Err(bad("expected [HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTO]")),
        };
        let range = |r: &str| -> Result<(u16, u16), ModelError> {
            let port = |p: &str| match p.trim().parse::<u16>() {
                Ok(0) => Err(bad("port 0 cannot be published")),
                Ok(n) => Ok(n),
                Err(_) => Err(bad("ports are numbers 1-65535")),
            };
            if r.is_empty() {
                return Ok((0, 0));
            }
            match r.split_once('-') {
                Some((a, b)) => Ok((port(a)?, port(b)?)),
                None => port(r).map(|p| (p, p)),
            }
        };
        let (host_port, host_port_end) = range(host)?;
        let (container_port, container_port_end) = range(container)?;
        if container_port == 0 {
            return Err(bad("the container port is missing"));
        }
        let m = PortMapping {
            protocol,
            host_ip,
            host_port,
            host_port_end,
            container_port,
            container_port_end,
        };
        m.check()?;
        Ok(m)
    }
}

/// The `--publish` form, parseable again.
impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host_ip {
            Some(IpAddr::V6(ip)) => write!(f, "[{ip}]:")?,
            Some(ip) => write!(f, "{ip}:")?,
            None => {}
        }
        let range = |f: &mut fmt::Formatter<'_>, a: u16, b: u16| {
            if a == b {
                write!(f, "{a}")
            } else {
                write!(f, "{a}-{b}")
            }
        };
        if !self.is_dynamic() {
            range(f, self.host_port, self.host_port_end)?;
        }
        if self.host_ip.is_some() || !self.is_dynamic() {
            f.write_str(":")?;
        }
        range(f, self.container_port, self.container_port_end)?;
        write!(f, "/{}", self.protocol)
    }
}

/// Checks each mapping and refuses two in one list that overlap.
pub fn check_all(ports: &[PortMapping]) -> Result<(), ModelError> {
    for (i, p) in ports.iter().enumerate() {
        p.check()?;
        if let Some(q) = ports[..i].iter().find(|q| q.overlaps(p)) {
            return Err(ModelError::PortsOverlap(p.to_string(), q.to_string()));
        }
    }
    Ok(())
}

/// A DNS name for a container (`--alias`): dot-separated labels of letters,
/// digits, `-` and `_`, at most 63 bytes each and 253 in all.
pub fn check_alias(name: &str) -> Result<(), ModelError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(ModelError::BadAlias(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PortMapping {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_every_form() {
        assert_eq!(p("8080:80"), PortMapping::single(Proto::Tcp, 8080, 80));
        assert_eq!(p("53:5353/udp"), PortMapping::single(Proto::Udp, 53, 5353));
        let r = p("127.0.0.1:8000-8009:9000-9009/sctp");
        assert_eq!(r.host_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(
            (r.host_port, r.host_port_end, r.container_port, r.container_port_end),
            (8000, 8009, 9000, 9009)
        );
        assert_eq!(r.protocol, Proto::Sctp);
        assert_eq!(r.len(), 10);
        let v6 = p("[fd00::1]:443:8443/TCP");
        assert_eq!(v6.host_ip, Some("fd00::1".parse().unwrap()));
        for s in [
            "8080:80",
            "53:5353/udp",
            "127.0.0.1:8000-8009:9000-9009/sctp",
            "[fd00::1]:443:8443/tcp",
            "80/tcp",
            "127.0.0.1::80/tcp",
            "[::1]::80-81/udp",
        ] {
            let m = p(s);
            assert_eq!(p(&m.to_string()), m, "{s}");
        }
        assert_eq!(p("8080:80").to_string(), "8080:80/tcp");
        // docker's forms without a host port: chosen at attach.
        let d = p("80");
        assert!(d.is_dynamic() && d.container_port == 80 && d.host_ip.is_none());
        let d = p("127.0.0.1::53/udp");
        assert!(d.is_dynamic() && d.host_ip.is_some() && d.protocol == Proto::Udp);
        assert_eq!(p("90-99").len(), 10);
        assert_eq!(p(":80"), p("80"));
        assert!(!p("80").overlaps(&p("80")));
    }

    #[test]
    fn refuses_bad_forms() {
        for s in [
            "",
            "/tcp",
            "8080:",
            "0:80",
            "80:0",
            "70000:80",
            "8080:80/icmp",
            "a:80",
            "1.2.3:80:80",
            "8000-8009:80",
            "8009-8000:80-89",
            "::1:80:80",
            "[::1:80:80",
            "1:2:3:4",
        ] {
            let e = s.parse::<PortMapping>().unwrap_err().to_string();
            assert!(e.starts_with("published port"), "{s}: {e}");
        }
    }

    #[test]
    fn overlap() {
        assert!(p("8080:80").overlaps(&p("8080:81")));
        assert!(!p("8080:80").overlaps(&p("8080:80/udp")));
        assert!(p("8000-8010:8000-8010").overlaps(&p("8010:80")));
        assert!(!p("8000-8010:8000-8010").overlaps(&p("8011:80")));
        assert!(p("10.0.0.1:80:80").overlaps(&p("80:80")));
        assert!(!p("10.0.0.1:80:80").overlaps(&p("10.0.0.2:80:80")));
        assert!(!p("10.0.0.1:80:80").overlaps(&p("[::1]:80:80")));
        assert!(p("0.0.0.0:80:80").overlaps(&p("10.0.0.2:80:80")));
        assert!(check_all(&[p("80:80"), p("81:81"), p("80:80/udp")]).is_ok());
        let e = check_all(&[p("80-90:80-90"), p("85:85")]).unwrap_err().to_string();
        assert!(e.contains("85:85/tcp") && e.contains("80-90:80-90/tcp"), "{e}");
    }

    #[test]
    fn old_records_and_json_shape() {
        let j = serde_json::to_value(p("8080:80")).unwrap();
        assert_eq!(
            j,
            serde_json::json!({"protocol": "tcp", "host_port": 8080, "host_port_end": 8080,
                               "container_port": 80, "container_port_end": 80})
        );
    }

    #[test]
    fn aliases() {
        for ok in ["web", "db-1", "a.b.c", "x_y"] {
            check_alias(ok).unwrap();
        }
        for bad in ["", "a..b", "a b", "é", ".a", &"x".repeat(64)] {
            assert!(check_alias(bad).is_err(), "{bad}");
        }
    }

    use proptest::prelude::*;

    /// Port specs as a user might mistype them: pieces of real specs.
    fn spec_text() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            "[0-9]{1,6}",
            Just(":".to_string()),
            Just("-".to_string()),
            Just("/".to_string()),
            Just("[".to_string()),
            Just("]".to_string()),
            prop_oneof![Just("tcp"), Just("udp"), Just("sctp"), Just("icmp")]
                .prop_map(String::from),
            prop_oneof![Just("127.0.0.1"), Just("::1"), Just("0.0.0.0"), Just("fe80::1")]
                .prop_map(String::from),
            any::<char>().prop_map(String::from),
        ];
        prop::collection::vec(piece, 0..10).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Any text: a mapping that checks out and prints back to itself,
        /// or one error line; never a panic.
        #[test]
        fn any_spec_parses_or_fails_in_one_line(s in spec_text()) {
            match s.parse::<PortMapping>() {
                Ok(m) => {
                    prop_assert!(m.check().is_ok(), "{s}");
                    prop_assert_eq!(m.to_string().parse::<PortMapping>(), Ok(m));
                }
                Err(e) => prop_assert!(!e.to_string().contains('\n'), "{s}: {e}"),
            }
        }
    }
}
