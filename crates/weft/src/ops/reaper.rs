//! Deleting a veth pair in the background. The kernel makes whoever
//! deletes a network device wait for an RCU barrier, about 20 ms on these
//! machines and most of a detach. A detach therefore retires the pair (down
//! and marked: the container is cut off at once, see `plug::retire`) and
//! hands the deletion to a child process that outlives the command, so a
//! runtime stopping many containers does not queue behind the kernel.
//! If the child dies first, the retired pair is still marked and `weft gc`
//! (or the next attach of the same endpoint) deletes it.

use std::sync::mpsc::{channel, Sender};
use std::sync::{Mutex, OnceLock};

use weft_datapath::{netns, plug};

/// Set in `weft daemon`: a thread of the daemon deletes retired pairs, so
/// no process is forked per detach.
static IN_PROCESS: OnceLock<Mutex<Sender<()>>> = OnceLock::new();

/// Deletes every retired veth pair of this namespace now, in one request;
/// false (and a warning) when that failed.
pub fn delete_now() -> bool {
    let done = netns::host_netlink().and_then(|mut nl| plug::delete_retired(&mut nl));
    if let Err(e) = &done {
        tracing::warn!("deleting retired veth pairs: {e}");
    }
    done.is_ok()
}

/// Starts this process's reaper thread; later `delete_later` calls wake it.
pub fn run_in_thread() {
    let (tx, rx) = channel::<()>();
    if IN_PROCESS.set(Mutex::new(tx)).is_err() {
        return;
    }
    std::thread::spawn(move || {
        while rx.recv().is_ok() {
            // One request for everything retired meanwhile (see `reap`).
            while rx.try_recv().is_ok() {}
            delete_now();
        }
    });
}

/// Deletes every retired veth pair (`plug::retire`) from a detached child
/// process. Returns false when no process could be started; the caller
/// then deletes its pair itself.
///
/// One fork, not waited for: weft commands and CNI calls exit a moment
/// later, and the child, adopted by init (or the caller's subreaper), is
/// reaped there; it is a zombie of weft for at most that moment. A double
/// fork would cost this command a second process copy and a wait.
pub fn delete_later() -> bool {
    if let Some(tx) = IN_PROCESS.get() {
        return tx.lock().is_ok_and(|tx| tx.send(()).is_ok());
    }
    // SAFETY: fork in a process whose other threads (if any) hold no lock
    // the child needs: glibc's fork resets the malloc locks, and the child
    // only opens a netlink socket, sends one request and _exits.
    unsafe {
        match libc::fork() {
            -1 => false,
            0 => reap(),
            _ => true,
        }
    }
}

/// The child: lets go of the caller's files (a runtime waiting for the
/// plugin's stdout to close must not wait for this), deletes, exits.
fn reap() -> ! {
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
    // Every retired pair at once, this detach's and any other: a runtime
    // stopping many containers retires them faster than the kernel
    // deletes them, and while one reaper holds the kernel's network lock
    // through a deletion the next ones queue; whichever gets it next takes
    // everything retired meanwhile in one request (one lock hold and RCU
    // wait per batch). No deliberate delay: the same container attached
    // again right away would otherwise find its old pair still there and
    // have to delete it itself, waiting the ~20 ms this avoids.
    let ok = delete_now();
    // SAFETY: ends this process without running the parent's exit handlers.
    unsafe { libc::_exit(if ok { 0 } else { 1 }) }
}
