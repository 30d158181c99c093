//! The kernel settings weft changes for its bridges, per network namespace
//! (/proc/sys/net resolves against the calling thread's): IP forwarding,
//! and `route_localnet` on bridges whose published ports the host reaches
//! by 127.0.0.1, and accept_ra=0 on bridges (containers are no routers).
//!
//! Forwarding is the host's, not weft's: weft turns it on only when it is
//! off, records that it did (a marker file in its state directory, written
//! before the switch so that a crash cannot lose it), and turns it off
//! again when its last network goes. While weft owns it, the table drops
//! forwarding between interfaces that are not weft's (see
//! [`crate::Guards`]); a host that routed before weft is left alone.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::FirewallError;

const IPV4: &str = "/proc/sys/net/ipv4/ip_forward";
const IPV6: &str = "/proc/sys/net/ipv6/conf/all/forwarding";
/// This thread's namespace (/proc/net follows the process's).
const IPV6_ROUTES: &str = "/proc/thread-self/net/ipv6_route";
/// Route flags of /proc/net/ipv6_route: learned from a router
/// advertisement (default route, prefix route).
const RTF_DEFAULT: u32 = 0x0001_0000;
const RTF_ADDRCONF: u32 = 0x0004_0000;

/// Which forwarding weft turned on itself, and so guards: the table then
/// drops forwarding between interfaces that are not weft's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Guards {
    pub forward4: bool,
    pub forward6: bool,
}

/// One family's forwarding switch and weft's marker for it.
struct Switch {
    path: &'static str,
    marker: &'static str,
}

const SWITCHES: [Switch; 2] =
    [Switch { path: IPV4, marker: "ipv4" }, Switch { path: IPV6, marker: "ipv6" }];

/// Brings forwarding in line with weft's networks, in two steps around
/// the table update so that no moment has weft's forwarding on without
/// its guard: [`Forwarding::prepare`] turns off what weft owns and no
/// longer needs and says which families weft owns (or will); the caller
/// applies the table with those [`Guards`]; [`Forwarding::enable`] then
/// turns on what is needed.
pub struct Forwarding {
    dir: PathBuf,
    want: [bool; 2],
    guards: Guards,
}

impl Forwarding {
    /// `state_dir` holds weft's markers; `v4`/`v6`: whether some network
    /// needs that family forwarded.
    pub fn prepare(state_dir: &Path, v4: bool, v6: bool) -> Result<Forwarding, FirewallError> {
        let dir = state_dir.join("forwarding");
        let want = [v4, v6];
        let mut ours = [false; 2];
        for (i, sw) in SWITCHES.iter().enumerate() {
            let marker = dir.join(sw.marker);
            let owned = marker.exists();
            if want[i] {
                // Ours if weft turned it on earlier, or will now.
                ours[i] = owned || read(sw.path)? != "1";
            } else if owned {
                write(sw.path, "0")?;
                if i == 1 {
                    restore_accept_ra(&marker)?;
                }
                remove(&marker)?;
            }
        }
        Ok(Forwarding { dir, want, guards: Guards { forward4: ours[0], forward6: ours[1] } })
    }

    pub fn guards(&self) -> Guards {
        self.guards
    }

    /// Turns on each wanted family that is off, marking it weft's first.
    /// Before IPv6 forwarding goes on, uplinks that take their routes from
    /// router advertisements get accept_ra=2: with forwarding on, the
    /// kernel ignores RAs on interfaces with accept_ra=1 and drops the
    /// routes learned from them.
    pub fn enable(&self) -> Result<(), FirewallError> {
        for (i, sw) in SWITCHES.iter().enumerate() {
            if !self.want[i] || read(sw.path)? == "1" {
                continue;
            }
            let marker = self.dir.join(sw.marker);
            let mut record = String::new();
            if i == 1 {
                for dev in ra_uplinks()? {
                    let p = accept_ra_path(&dev);
                    if read_dyn(&p)? == "1" {
                        record.push_str(&dev);
                        record.push('\n');
                        // Recorded before the change, so it is undone even
                        // after a crash between the two.
                        write_marker(&self.dir, &marker, &record)?;
                        write_dyn(&p, "2")?;
                    }
                }
            }
            write_marker(&self.dir, &marker, &record)?;
            write(sw.path, "1")?;
        }
        Ok(())
    }
}

/// Interfaces (not `lo`) with a route learned from a router advertisement.
fn ra_uplinks() -> Result<Vec<String>, FirewallError> {
    match std::fs::read_to_string(IPV6_ROUTES) {
        Ok(text) => Ok(parse_ra_uplinks(&text)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(sysctl_err(IPV6_ROUTES, e)),
    }
}

/// The devices of the routes in `/proc/net/ipv6_route` text that came
/// from router advertisements.
fn parse_ra_uplinks(text: &str) -> Vec<String> {
    let mut devs: Vec<String> = Vec::new();
    for line in text.lines() {
        // dest plen src plen nexthop metric refcnt use flags dev
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(flags), Some(dev)) = (f.get(8), f.get(9)) else { continue };
        let flags = u32::from_str_radix(flags, 16).unwrap_or(0);
        if flags & (RTF_DEFAULT | RTF_ADDRCONF) != 0
            && *dev != "lo"
            && !devs.iter().any(|d| d == dev)
        {
            devs.push(dev.to_string());
        }
    }
    devs
}

/// Puts accept_ra back to 1 on the interfaces weft set to 2 (unless
/// someone changed it since, or the interface is gone).
fn restore_accept_ra(marker: &Path) -> Result<(), FirewallError> {
    let list = std::fs::read_to_string(marker).unwrap_or_default();
    for dev in list.lines().filter(|d| !d.is_empty() && !d.contains('/') && *d != "..") {
        let p = accept_ra_path(dev);
        if std::fs::read_to_string(&p).is_ok_and(|v| v.trim() == "2") {
            write_dyn(&p, "1")?;
        }
    }
    Ok(())
}

fn accept_ra_path(dev: &str) -> String {
    format!("/proc/sys/net/ipv6/conf/{dev}/accept_ra")
}

/// Sets `route_localnet` on `bridge`: on, packets with a 127.0.0.0/8
/// source may leave through it, so that a port published on the host
/// reaches its container from 127.0.0.1 (destination NAT in `output`, then
/// masquerade to the bridge's address). It also lets 127.0.0.0/8 in from
/// the bridge, which the table's `localnet` chain drops before routing.
/// Off when no port of the network is reachable by 127.0.0.1; a bridge
/// that does not exist (here) has nothing to turn off.
pub fn set_route_localnet(bridge: &str, on: bool) -> Result<(), FirewallError> {
    let path = format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet");
    let fail = |e: std::io::Error| FirewallError::Sysctl {
        path: "/proc/sys/net/ipv4/conf/BRIDGE/route_localnet",
        why: format!("{bridge}: {e}"),
    };
    let want = if on { "1" } else { "0" };
    match std::fs::read_to_string(&path) {
        Ok(v) if v.trim() == want => Ok(()),
        Ok(_) => std::fs::write(&path, want).map_err(fail),
        Err(e) if e.kind() == ErrorKind::NotFound && !on => Ok(()),
        Err(e) => Err(fail(e)),
    }
}

/// Sets accept_ra=0 on a weft bridge: the host must never take a route or
/// an address from a router advertisement that a container sends. (With
/// IPv6 forwarding off, the kernel's default accept_ra=1 listens to them.)
/// A bridge without IPv6, or already gone, has nothing to change.
pub fn refuse_router_advertisements(bridge: &str) -> Result<(), FirewallError> {
    let path = accept_ra_path(bridge);
    match std::fs::read_to_string(&path) {
        Ok(v) if v.trim() == "0" => Ok(()),
        Ok(_) => write_dyn(&path, "0"),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FirewallError::Sysctl { path: "accept_ra", why: format!("{path}: {e}") }),
    }
}

fn read(path: &'static str) -> Result<String, FirewallError> {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).map_err(|e| sysctl_err(path, e))
}

fn write(path: &'static str, v: &str) -> Result<(), FirewallError> {
    std::fs::write(path, v).map_err(|e| sysctl_err(path, e))
}

fn read_dyn(path: &str) -> Result<String, FirewallError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| FirewallError::Sysctl { path: "accept_ra", why: format!("{path}: {e}") })
}

fn write_dyn(path: &str, v: &str) -> Result<(), FirewallError> {
    std::fs::write(path, v)
        .map_err(|e| FirewallError::Sysctl { path: "accept_ra", why: format!("{path}: {e}") })
}

fn write_marker(dir: &Path, marker: &Path, text: &str) -> Result<(), FirewallError> {
    let fail = |e: std::io::Error| FirewallError::Marker {
        path: marker.display().to_string(),
        why: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    let f = std::fs::File::create(marker).map_err(fail)?;
    std::io::Write::write_all(&mut &f, text.as_bytes()).map_err(fail)?;
    f.sync_all().map_err(fail)
}

fn remove(marker: &Path) -> Result<(), FirewallError> {
    match std::fs::remove_file(marker) {
        Err(e) if e.kind() != ErrorKind::NotFound => {
            Err(FirewallError::Marker { path: marker.display().to_string(), why: e.to_string() })
        }
        _ => Ok(()),
    }
}

fn sysctl_err(path: &'static str, e: std::io::Error) -> FirewallError {
    FirewallError::Sysctl {
        path,
        why: match e.kind() {
            ErrorKind::NotFound if path == IPV6 => "IPv6 is disabled on this host".to_string(),
            ErrorKind::PermissionDenied => format!("{e}; run as root"),
            _ if e.raw_os_error() == Some(libc::EROFS) => {
                format!("{e}; /proc/sys is mounted read-only here")
            }
            _ => e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_uplinks_with_routes_from_router_advertisements() {
        let z = "00000000000000000000000000000000";
        let text = format!(
            "{z} 00 {z} 00 fe80000000000000000000000000000a 00000400 00000001 00000000 00450003     eth0\n\
             20010db8000000000000000000000000 40 {z} 00 {z} 00000100 00000001 00000000 00040001     eth0\n\
             fd000000000000000000000000000000 40 {z} 00 {z} 00000100 00000001 00000000 00000001   weft-a\n\
             {z} 00 {z} 00 {z} ffffffff 00000001 00000000 00200200       lo\n"
        );
        assert_eq!(parse_ra_uplinks(&text), ["eth0"]);
    }
}
