//! Throwaway network namespaces for tests that touch the kernel.
//!
//! `sandbox(f)` runs `f` on a new thread that has unshared its network
//! namespace: nft, ip and /proc/sys/net see only that namespace, and it
//! vanishes with the thread, so nothing can leak onto the machine, even
//! on panic. `Ns` is a further namespace (a "container") kept alive by a
//! worker thread that runs closures in it; commands run from there (`ip`)
//! inherit it. Nothing is bind-mounted, so there is nothing to clean up.

#![allow(dead_code)] // each test binary uses a part

use std::any::Any;
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::sync::mpsc;
use std::thread::JoinHandle;

fn inode(path: &str) -> u64 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("stat {path}: {e}")).ino()
}

/// init_net's inode number (PROC_NET_INIT_INO), fixed by the kernel.
const INIT_NET_INO: u64 = 0xEFFF_FFF9;

/// Panics unless the calling thread is in a namespace of its own: neither
/// init's nor the test process's (/proc/self is the main thread). Reading
/// /proc/1/ns/net may be refused (pid 1 can be more privileged than we
/// are), hence the fixed inode as well.
pub fn assert_sandboxed() {
    let now = inode("/proc/thread-self/ns/net");
    assert_ne!(now, INIT_NET_INO, "refusing to run: in the init network namespace");
    assert_ne!(now, inode("/proc/self/ns/net"), "refusing to run: in the test process's namespace");
    if let Ok(init) = std::fs::metadata("/proc/1/ns/net") {
        assert_ne!(now, init.ino(), "refusing to run: in pid 1's network namespace");
    }
}

/// Moves the calling thread into a fresh network namespace and proves it.
fn enter_fresh_netns() {
    // SAFETY: unshare takes no pointers; CLONE_NEWNET affects only this thread.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(
        rc,
        0,
        "unshare(CLONE_NEWNET): {} (tests need root)",
        std::io::Error::last_os_error()
    );
    assert_sandboxed();
    cmd("ip link set lo up");
}

/// Runs `f` in a fresh network namespace on its own thread.
pub fn sandbox<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            enter_fresh_netns();
            f()
        });
        h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// Runs a command (words split on spaces) and returns its stdout; panics
/// with its stderr if it fails.
pub fn cmd(line: &str) -> String {
    assert_sandboxed();
    let words: Vec<&str> = line.split_whitespace().collect();
    let out =
        Command::new(words[0]).args(&words[1..]).output().unwrap_or_else(|e| panic!("{line}: {e}"));
    assert!(out.status.success(), "{line}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `nft -f -` with a text ruleset.
pub fn nft_text(ruleset: &str) {
    use std::io::Write;
    assert_sandboxed();
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("run nft");
    child.stdin.take().unwrap().write_all(ruleset.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "nft -f - failed for:\n{ruleset}");
}

/// `nft -j list ruleset`, parsed.
pub fn ruleset_json() -> serde_json::Value {
    serde_json::from_str(&cmd("nft -j list ruleset")).expect("nft prints JSON")
}

/// The value of a sysctl file as the calling thread's namespace sees it.
pub fn sysctl(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}")).trim().to_string()
}

/// Writes a sysctl file of the calling thread's namespace, a sandbox's only.
pub fn set_sysctl(path: &str, value: &str) {
    assert_sandboxed();
    std::fs::write(path, value).unwrap_or_else(|e| panic!("{path}: {e}"));
}

type Job = Box<dyn FnOnce() + Send>;

/// A network namespace held by a worker thread.
pub struct Ns {
    /// Thread id of the worker: `ip link set X netns <tid>` moves a link in.
    pub tid: i32,
    jobs: Option<mpsc::Sender<Job>>,
    worker: Option<JoinHandle<()>>,
}

impl Ns {
    pub fn new() -> Ns {
        let (tx, rx) = mpsc::channel::<Job>();
        let (tid_tx, tid_rx) = mpsc::channel();
        let worker = std::thread::spawn(move || {
            enter_fresh_netns();
            // SAFETY: gettid has no preconditions.
            tid_tx.send(unsafe { libc::gettid() }).unwrap();
            for job in rx {
                job();
            }
        });
        let tid = tid_rx.recv().expect("namespace worker started");
        Ns { tid, jobs: Some(tx), worker: Some(worker) }
    }

    /// Runs `f` inside the namespace. Sockets made there stay bound to it.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel::<Result<T, Box<dyn Any + Send>>>();
        let job: Job = Box::new(move || {
            let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
        });
        self.jobs.as_ref().unwrap().send(job).expect("namespace worker alive");
        rx.recv().expect("job ran").unwrap_or_else(|p| std::panic::resume_unwind(p))
    }

    /// `cmd` inside the namespace.
    pub fn cmd(&self, line: &str) -> String {
        let line = line.to_string();
        self.run(move || cmd(&line))
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}
