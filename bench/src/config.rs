//! Benchmarks are configured by environment variables.

use anyhow::{Context, Result};

/// The variable's value, or `default` when unset or empty.
pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_string())
}

pub fn env_usize(name: &str, default: usize) -> Result<usize> {
    env_or(name, &default.to_string()).parse().with_context(|| format!("{name}: not a number"))
}
