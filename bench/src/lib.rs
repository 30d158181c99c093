//! What the benchmarks share (weft-bench, weft-overlay-bench,
//! weft-ports-bench): configuration from the environment, Ctrl-C that
//! still cleans up, a guard for the namespaces they make, percentiles.

pub mod config;
pub mod interrupt;
pub mod netns;
pub mod numbers;
