//! Link flags for the `weft` binary. It is position-independent (PIE, or
//! static-pie with scripts/static-cargo): weft runs as root and parses
//! untrusted input (DNS queries, CNI configs, daemon requests), so its
//! code and data get randomised addresses (ASLR) like every other root
//! daemon's. BENCHMARKS.md ("Hardened binaries") has what it costs.
//!
//! Also records what `weft --version` says of the build: the git commit and
//! its date (not the build time, so that a rebuild of one commit is the
//! same binary), `unknown` outside a git checkout.
use std::process::Command;

fn main() {
    println!("cargo::rustc-link-arg-bins=-static-libgcc");

    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let date = git(&["log", "-1", "--format=%cs"]).unwrap_or_else(|| "unknown".into());
    let target = std::env::var("TARGET").unwrap_or_default();
    let profile = std::env::var("PROFILE").unwrap_or_default();
    let static_crt = std::env::var("CARGO_CFG_TARGET_FEATURE")
        .is_ok_and(|f| f.split(',').any(|x| x == "crt-static"));
    println!(
        "cargo::rustc-env=WEFT_BUILD_INFO=commit {commit}, {date}, {target} {profile}{}",
        if static_crt { " static" } else { "" }
    );
    // A new commit (HEAD moves, or the branch it names does) changes the line.
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        println!("cargo::rerun-if-changed={dir}/HEAD");
        println!("cargo::rerun-if-changed={dir}/logs/HEAD");
    }
    println!("cargo::rerun-if-changed=build.rs");
}
