//! Kernel interface names and the stable names weft derives for its links.

use crate::ModelError;

/// Linux's IFNAMSIZ is 16 including the trailing NUL.
pub const IFNAME_MAX: usize = 15;

/// Every link weft creates carries this prefix in its alias (IFLA_IFALIAS),
/// so `weft gc` can tell its own leftovers from links other tools made.
pub const ALIAS_PREFIX: &str = "weft:";

/// Checks the rules the kernel applies to interface names (dev_valid_name).
pub fn check_ifname(name: &str) -> Result<(), ModelError> {
    let bad = |why| Err(ModelError::BadIfname(name.to_string(), why));
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > IFNAME_MAX {
        return bad("longer than 15 bytes");
    }
    if name == "." || name == ".." {
        return bad("reserved name");
    }
    if name.bytes().any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0) {
        return bad("contains '/', ':', NUL or whitespace");
    }
    Ok(())
}

/// FNV-1a, 64 bit: a stable hash (unlike std's SipHash with random keys) so
/// that names and MACs derived from it are the same in every process.
pub fn stable_hash(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain(std::iter::once(0u8)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Default bridge name: `weft-NAME` when that is a valid interface name,
/// otherwise `weft-` and a hash of the network name.
pub fn default_bridge_name(network: &str) -> String {
    let plain = format!("weft-{network}");
    if check_ifname(&plain).is_ok() {
        plain
    } else {
        format!("weft-{:010x}", stable_hash(&[network]) & 0xff_ffff_ffff)
    }
}

/// VXLAN device of an overlay network on each host: `vx-NAME` when it
/// fits, otherwise `vx-` and a hash.
pub fn vxlan_name(network: &str) -> String {
    let plain = format!("vx-{network}");
    if check_ifname(&plain).is_ok() {
        plain
    } else {
        format!("vx-{:010x}", stable_hash(&["vxlan", network]) & 0xff_ffff_ffff)
    }
}

/// Host-side veth name of an endpoint: `vw` and 12 hex digits derived from
/// the endpoint's identity. Deterministic, so a crashed attach can be found
/// and undone by name.
pub fn host_veth_name(network: &str, container: &str, ifname: &str) -> String {
    format!("vw{:012x}", stable_hash(&[network, container, ifname]) & 0xffff_ffff_ffff)
}

/// Temporary name of the container-side veth end while it is still in the
/// host namespace (it is renamed to the requested ifname inside the netns).
pub fn temp_peer_name(host_veth: &str) -> String {
    format!("{}p", &host_veth[..host_veth.len().min(IFNAME_MAX - 1)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifname_rules() {
        assert!(check_ifname("eth0").is_ok());
        assert!(check_ifname("abcdefghijklmno").is_ok());
        assert!(check_ifname("abcdefghijklmnop").is_err());
        assert!(check_ifname("").is_err());
        assert!(check_ifname("a/b").is_err());
        assert!(check_ifname("a b").is_err());
    }

    #[test]
    fn derived_names_fit_ifnamsiz() {
        for n in ["a", "frontend", "a-very-long-network-name-indeed"] {
            let b = default_bridge_name(n);
            check_ifname(&b).unwrap();
            let v = host_veth_name(n, "c", "eth0");
            check_ifname(&v).unwrap();
            check_ifname(&temp_peer_name(&v)).unwrap();
        }
        assert_eq!(default_bridge_name("front"), "weft-front");
        assert_eq!(host_veth_name("n", "c", "eth0"), host_veth_name("n", "c", "eth0"));
        assert_ne!(host_veth_name("n", "c", "eth0"), host_veth_name("n", "c", "eth1"));
    }
}
