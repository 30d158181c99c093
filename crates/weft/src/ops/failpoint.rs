//! Crash injection for tests: `WEFT_FAILPOINT=NAME` makes the process kill
//! itself with SIGKILL at the point NAME, as a crash or `kill -9` would.
//! Costs one environment lookup per point.

pub fn hit(name: &str) {
    if std::env::var_os("WEFT_FAILPOINT").is_some_and(|v| v == name) {
        // SAFETY: raise has no memory-safety preconditions.
        unsafe {
            libc::raise(libc::SIGKILL);
        }
    }
}

/// A panic at the point NAME, the first time only: a bug in the code
/// around it, which must cost no more than the one request it hit.
pub fn panic_once(name: &str) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static FIRED: AtomicBool = AtomicBool::new(false);
    if std::env::var_os("WEFT_FAILPOINT").is_some_and(|v| v == name)
        && !FIRED.swap(true, Ordering::SeqCst)
    {
        panic!("failpoint {name}");
    }
}
