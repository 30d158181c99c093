//! Deleting a veth pair in the background. The kernel makes whoever
//! deletes a network device wait for an RCU barrier, about 20 ms on these
//! machines and most of a detach. A detach therefore retires the pair (down
//! and marked: the container is cut off at once, see `plug::retire`) and
//! hands the deletion to a child process that outlives the command, so a
//! runtime stopping many containers does not queue behind the kernel.
//! If the child dies first, the retired pair is still marked and `weft gc`
//! (or the next attach of the same endpoint) deletes it.

use std::time::Duration;

use weft_datapath::{netns, plug};

/// How long a reaper waits for more retired pairs before deleting.
const BATCH_WAIT: Duration = Duration::from_millis(20);

/// Deletes the host link `index` (its veth peer goes with it) from a
/// detached grandchild process. Returns false when no process could be
/// started; the caller then deletes it itself.
pub fn delete_later(index: u32) -> bool {
    // SAFETY: fork in a process whose other threads (if any) hold no lock
    // the children need: glibc's fork resets the malloc locks, and the
    // children only open a netlink socket, send one request and _exit.
    unsafe {
        match libc::fork() {
            -1 => false,
            0 => {
                // The middle child exits at once so that the grandchild is
                // adopted by init, never a zombie of a long-lived caller.
                if libc::fork() == 0 {
                    reap(index);
                }
                libc::_exit(0);
            }
            child => {
                let mut status = 0;
                libc::waitpid(child, &mut status, 0);
                true
            }
        }
    }
}

/// The grandchild: lets go of the caller's files (a runtime waiting for the
/// plugin's stdout to close must not wait for this), deletes, exits.
fn reap(index: u32) -> ! {
    // SAFETY: plain system calls on file descriptors this process owns.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
        }
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
        libc::setsid();
    }
    // Wait a little, then delete every retired pair at once: a runtime
    // stopping many containers retires them faster than the kernel deletes
    // them one by one, and each deletion holds the kernel's network lock
    // through an RCU grace period. Whatever is retired meanwhile goes in
    // the same request; `index` only if nothing else took it.
    std::thread::sleep(BATCH_WAIT);
    let ok = netns::host_netlink()
        .and_then(|mut nl| {
            plug::delete_retired(&mut nl)?;
            plug::delete_index(&mut nl, index)
        })
        .is_ok();
    // SAFETY: ends this process without running the parent's exit handlers.
    unsafe { libc::_exit(if ok { 0 } else { 1 }) }
}
