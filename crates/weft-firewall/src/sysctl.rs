//! IP forwarding, which the bridges' gateways need to route containers'
//! traffic out. Per network namespace: only the caller's is changed.

use std::io::ErrorKind;

use crate::FirewallError;

const IPV4: &str = "/proc/sys/net/ipv4/ip_forward";
/// Note: turning this on makes the kernel ignore router advertisements on
/// interfaces whose accept_ra is 1 (a host that takes its IPv6 default
/// route from RAs needs accept_ra=2 on its uplink).
const IPV6: &str = "/proc/sys/net/ipv6/conf/all/forwarding";

/// Turns on IPv4 forwarding (and IPv6 forwarding when `v6`) in the network
/// namespace of the calling thread; leaves a value that is already 1 alone.
pub fn enable_forwarding(v6: bool) -> Result<(), FirewallError> {
    set_on(IPV4)?;
    if v6 {
        set_on(IPV6)?;
    }
    Ok(())
}

/// /proc/sys/net resolves against the calling thread's network namespace,
/// so a thread that entered another one writes that one's value.
fn set_on(path: &'static str) -> Result<(), FirewallError> {
    let fail = |e: std::io::Error| FirewallError::Sysctl {
        path,
        why: match e.kind() {
            ErrorKind::NotFound if path == IPV6 => "IPv6 is disabled on this host".to_string(),
            ErrorKind::PermissionDenied => format!("{e}; run as root"),
            _ if e.raw_os_error() == Some(libc::EROFS) => {
                format!("{e}; /proc/sys is mounted read-only here")
            }
            _ => e.to_string(),
        },
    };
    if std::fs::read_to_string(path).map_err(fail)?.trim() == "1" {
        return Ok(());
    }
    std::fs::write(path, "1").map_err(fail)
}

/// Lets packets with a 127.0.0.0/8 source leave through `bridge`, so that
/// a port published on the host reaches its container from 127.0.0.1
/// (destination NAT in `output`, then masquerade to the bridge's address).
/// Only this interface of the calling thread's namespace is changed.
pub fn enable_route_localnet(bridge: &str) -> Result<(), FirewallError> {
    let path = format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet");
    let fail = |e: std::io::Error| FirewallError::Sysctl {
        path: "/proc/sys/net/ipv4/conf/BRIDGE/route_localnet",
        why: format!("{bridge}: {e}"),
    };
    if std::fs::read_to_string(&path).map_err(fail)?.trim() == "1" {
        return Ok(());
    }
    std::fs::write(&path, "1").map_err(fail)
}
