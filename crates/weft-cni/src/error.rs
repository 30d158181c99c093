//! CNI errors: `{"cniVersion", "code", "msg", "details"}` on stdout.

use serde::Serialize;

/// The spec's well-known error codes, and weft's own (>= 100).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    IncompatibleVersion = 1,
    UnsupportedField = 2,
    UnknownContainer = 3,
    InvalidEnvironment = 4,
    Io = 5,
    Decode = 6,
    InvalidConfig = 7,
    TryAgainLater = 11,
    NotAvailable = 50,
    LimitedConnectivity = 51,
    /// A kernel or store operation failed (weft-specific).
    Internal = 100,
    /// The configured address space is full (weft-specific).
    AddressesExhausted = 101,
    /// CHECK found the container's interface differs from the record.
    Drift = 102,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{msg}")]
pub struct CniError {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub code: u32,
    pub msg: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    pub fn new(code: Code, msg: impl Into<String>) -> CniError {
        CniError {
            cni_version: crate::version::LATEST.to_string(),
            code: code as u32,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn details(mut self, d: impl Into<String>) -> CniError {
        self.details = d.into();
        self
    }

    /// Errors are reported in the version the runtime spoke, when known.
    pub fn in_version(mut self, v: &str) -> CniError {
        if crate::version::Version::parse(v).is_some() {
            self.cni_version = v.to_string();
        }
        self
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("error serializes")
    }
}
