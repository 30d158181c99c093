//! Ethernet MAC addresses.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::names::stable_hash;
use crate::ModelError;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// A locally administered unicast MAC derived from a stable key, so an
    /// endpoint keeps its MAC across re-attach and `weft gc` (ARP caches
    /// elsewhere stay valid).
    pub fn derive(parts: &[&str]) -> Mac {
        let h = stable_hash(parts).to_be_bytes();
        // 0x02 prefix: locally administered, unicast (like Docker's 02:42:..).
        Mac([0x02, h[1], h[2], h[3], h[4], h[5]])
    }

    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }

    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Mac {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Mac, ModelError> {
        let bad = |why| ModelError::BadMac(s.to_string(), why);
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(bad("expected six hex octets like 02:42:ac:11:00:02"));
        }
        let mut out = [0u8; 6];
        for (o, p) in out.iter_mut().zip(&parts) {
            if p.len() != 2 {
                return Err(bad("expected six hex octets like 02:42:ac:11:00:02"));
            }
            *o = u8::from_str_radix(p, 16).map_err(|_| bad("not hexadecimal"))?;
        }
        let mac = Mac(out);
        if mac.is_multicast() {
            return Err(bad("multicast addresses cannot be assigned to an interface"));
        }
        if mac.is_zero() {
            return Err(bad("the all-zero address cannot be assigned"));
        }
        Ok(mac)
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Mac, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print() {
        let m: Mac = "02:42:AC:11:00:02".parse().unwrap();
        assert_eq!(m.to_string(), "02:42:ac:11:00:02");
        assert!("01:00:5e:00:00:01".parse::<Mac>().is_err());
        assert!("00:00:00:00:00:00".parse::<Mac>().is_err());
        assert!("02:42:ac:11:00".parse::<Mac>().is_err());
        assert!("zz:42:ac:11:00:02".parse::<Mac>().is_err());
    }

    #[test]
    fn derived_is_local_unicast_and_stable() {
        let a = Mac::derive(&["net", "c1", "eth0"]);
        assert_eq!(a, Mac::derive(&["net", "c1", "eth0"]));
        assert_ne!(a, Mac::derive(&["net", "c2", "eth0"]));
        assert_eq!(a.0[0] & 0x03, 0x02);
    }
}
