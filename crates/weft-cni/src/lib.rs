//! The Container Network Interface protocol as weft speaks it: the plugin
//! side of CNI spec 1.1.0 and the older versions runtimes still send
//! (0.3.0, 0.3.1, 0.4.0, 1.0.0). Pure data: parsing what the runtime gives
//! (environment, JSON config on stdin) and shaping what weft answers
//! (results, errors, version info) in the version the runtime asked for.

pub mod config;
pub mod env;
pub mod error;
pub mod result;
pub mod version;

pub use config::NetConf;
pub use env::{Command, Invocation};
pub use error::{CniError, Code};
pub use result::{CniResult, Interface, IpConfig, Route};
pub use version::Version;

/// Largest config weft reads from stdin; real configs are a few KiB.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;
