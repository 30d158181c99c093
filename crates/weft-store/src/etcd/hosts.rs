//! Host names of etcd endpoints that weft resolves itself. The static weft
//! has no NSS modules it could load, so glibc's resolver inside it cannot
//! be relied on for `localhost` or /etc/hosts names (it would try to
//! dlopen the system's libnss_*.so into a static process). `localhost`
//! (RFC 6761: always loopback) and names in /etc/hosts are replaced by
//! their address; anything else is left to the resolver. For https the
//! certificate is still checked against the name the user gave.

use std::net::IpAddr;

/// `endpoints` with the names weft could resolve replaced by addresses,
/// and the TLS server name to check when an https endpoint was rewritten.
/// https endpoints are rewritten only when they all name the same host:
/// one client checks one server name.
pub fn pin(endpoints: &[String], etc_hosts: &str) -> (Vec<String>, Option<String>) {
    let https_names: Vec<&str> = endpoints
        .iter()
        .filter(|e| e.starts_with("https://"))
        .filter_map(|e| split(e).map(|(_, host, _)| host))
        .collect();
    let one_https_name = https_names.windows(2).all(|w| w[0].eq_ignore_ascii_case(w[1]));
    let mut server_name = None;
    let out = endpoints
        .iter()
        .map(|e| {
            let Some((scheme, host, rest)) = split(e) else { return e.clone() };
            let https = scheme.eq_ignore_ascii_case("https");
            if https && !one_https_name {
                return e.clone();
            }
            match lookup(host, etc_hosts) {
                Some(ip) => {
                    if https {
                        server_name = Some(host.to_string());
                    }
                    let ip = match ip {
                        IpAddr::V4(a) => a.to_string(),
                        IpAddr::V6(a) => format!("[{a}]"),
                    };
                    format!("{scheme}://{ip}{rest}")
                }
                None => e.clone(),
            }
        })
        .collect();
    (out, server_name)
}

/// `scheme`, host name and the rest (`:port/path`) of a URL whose host is
/// a name, not an address literal.
fn split(url: &str) -> Option<(&str, &str, &str)> {
    let (scheme, after) = url.split_once("://")?;
    let end = after.find([':', '/']).unwrap_or(after.len());
    let (host, rest) = after.split_at(end);
    if host.is_empty() || host.starts_with('[') || host.parse::<IpAddr>().is_ok() {
        return None;
    }
    Some((scheme, host, rest))
}

fn lookup(host: &str, etc_hosts: &str) -> Option<IpAddr> {
    let host = host.trim_end_matches('.');
    let lower = host.to_ascii_lowercase();
    if lower == "localhost" || lower.ends_with(".localhost") {
        return Some(IpAddr::from([127, 0, 0, 1]));
    }
    etc_hosts.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or_default();
        let mut fields = line.split_whitespace();
        let addr: IpAddr = fields.next()?.parse().ok()?;
        fields.any(|n| n.eq_ignore_ascii_case(host)).then_some(addr)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTS: &str = "127.0.0.1 localhost\n# 10.0.0.9 etcd\n10.1.2.3  etcd-a etcd-a.lan # x\n\
                         fd00::5 etcd6\n";

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn pins_localhost_and_etc_hosts_names() {
        let (out, name) = pin(
            &v(&["http://localhost:2379", "http://ETCD-A:2379/", "http://etcd6", "http://other:1"]),
            HOSTS,
        );
        assert_eq!(
            out,
            [
                "http://127.0.0.1:2379",
                "http://10.1.2.3:2379/",
                "http://[fd00::5]",
                "http://other:1"
            ]
        );
        assert_eq!(name, None);
        let (out, _) = pin(&v(&["http://10.0.0.1:2379", "http://[::1]:2379", "etcd"]), HOSTS);
        assert_eq!(out, ["http://10.0.0.1:2379", "http://[::1]:2379", "etcd"]);
    }

    #[test]
    fn https_keeps_the_name_for_the_certificate() {
        let (out, name) = pin(&v(&["https://etcd-a:2379", "https://etcd-a:2380"]), HOSTS);
        assert_eq!(out, ["https://10.1.2.3:2379", "https://10.1.2.3:2380"]);
        assert_eq!(name.as_deref(), Some("etcd-a"));
        // Two names cannot both be checked by one client: left alone.
        let given = v(&["https://etcd-a:2379", "https://localhost:2379"]);
        assert_eq!(pin(&given, HOSTS), (given.clone(), None));
    }
}
