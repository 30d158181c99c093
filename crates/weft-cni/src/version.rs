//! Spec versions and what each one allows.

use serde::Serialize;

use crate::error::{CniError, Code};

pub const LATEST: &str = "1.1.0";
pub const SUPPORTED: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    V0_3_0,
    V0_3_1,
    V0_4_0,
    V1_0_0,
    V1_1_0,
}

impl Version {
    pub fn parse(s: &str) -> Option<Version> {
        Some(match s {
            "0.3.0" => Version::V0_3_0,
            "0.3.1" => Version::V0_3_1,
            "0.4.0" => Version::V0_4_0,
            "1.0.0" => Version::V1_0_0,
            "1.1.0" => Version::V1_1_0,
            _ => return None,
        })
    }

    pub fn require(s: &str) -> Result<Version, CniError> {
        Version::parse(s).ok_or_else(|| {
            CniError::new(
                Code::IncompatibleVersion,
                format!("unsupported CNI version {s:?}; weft supports {}", SUPPORTED.join(", ")),
            )
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Version::V0_3_0 => "0.3.0",
            Version::V0_3_1 => "0.3.1",
            Version::V0_4_0 => "0.4.0",
            Version::V1_0_0 => "1.0.0",
            Version::V1_1_0 => "1.1.0",
        }
    }

    /// Results before 1.0.0 tag each IP with `"version": "4"|"6"`.
    pub fn ips_have_version(self) -> bool {
        self < Version::V1_0_0
    }

    /// CHECK exists from 0.4.0 on; STATUS and GC from 1.1.0.
    pub fn has_check(self) -> bool {
        self >= Version::V0_4_0
    }

    pub fn has_status_gc(self) -> bool {
        self >= Version::V1_1_0
    }
}

/// The VERSION command's answer.
#[derive(Serialize)]
pub struct VersionInfo {
    #[serde(rename = "cniVersion")]
    pub cni_version: &'static str,
    #[serde(rename = "supportedVersions")]
    pub supported_versions: [&'static str; 5],
}

pub fn info() -> VersionInfo {
    VersionInfo { cni_version: LATEST, supported_versions: SUPPORTED }
}
