//! Link flags for the `weft` binary. It is position-independent (PIE, or
//! static-pie with scripts/static-cargo): weft runs as root and parses
//! untrusted input (DNS queries, CNI configs, daemon requests), so its
//! code and data get randomised addresses (ASLR) like every other root
//! daemon's. BENCHMARKS.md ("Hardened binaries") has what it costs.
fn main() {
    println!("cargo::rustc-link-arg-bins=-static-libgcc");
}
