//! Links the `weft` binary as a position-dependent executable. weft is a
//! short-lived process on the attach path; as a PIE its loader first
//! applies ~19,000 relocations, copying every page they touch, about 0.3 ms
//! of a 3 ms attach. Only the binaries get the flag: libraries and
//! proc-macros are shared objects and stay position-independent.
fn main() {
    println!("cargo::rustc-link-arg-bins=-no-pie");
    println!("cargo::rustc-link-arg-bins=-static-libgcc");
}
