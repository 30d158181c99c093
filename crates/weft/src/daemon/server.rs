//! The daemon's side: accept a connection, check who sent what, run the
//! command with a warm context, answer.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::{CommandFactory, FromArgMatches};

use super::{net_ns, socket_path, FileId, Reply, Request};
use crate::commands::Command;
use crate::ops::{self, Context};

static STOP: AtomicBool = AtomicBool::new(false);

/// The main thread sees it within 100 ms and stops the daemon.
extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// A command, ready to run with a context.
type Job = dyn FnOnce(&mut Context) -> Result<()>;

/// What every request is checked against.
struct Daemon {
    state_dir: PathBuf,
    state_dir_id: FileId,
    net_ns: u64,
    uid: u32,
    /// Open contexts (database connection, host netlink socket) not in use;
    /// a request takes one or opens one, and puts it back.
    idle: Mutex<Vec<Context>>,
    /// Requests being served by threads of their own (a stopping daemon's
    /// backlog; the workers are waited for by joining): a stopping daemon
    /// lets them finish, so a SIGTERM never leaves an attach half done.
    busy: AtomicUsize,
    /// weft's command line parser, built once: building it (every command,
    /// every option) cost more than parsing a line with it.
    parser: Mutex<clap::Command>,
}

/// How long a stopping daemon waits for the requests it is serving.
const DRAIN: Duration = Duration::from_secs(30);

/// Threads waiting in accept(2): a connection wakes one of them directly,
/// no thread is started per request. Requests beyond this many wait in the
/// listen backlog (the kernel makes link changes one at a time anyway).
const WORKERS: usize = 8;

pub fn run(state_dir: &Path) -> Result<()> {
    ops::context::require_net_admin()?;
    if ops::context::cluster().is_some() {
        bail!("weft daemon serves single-host networks; with a cluster store, run `weft agent`");
    }
    let mut first = Context::open(state_dir)?;
    // Once, not per request: the boot cannot change under a running daemon.
    ops::gc::reclaim_after_reboot(&mut first)?;
    let state_dir = state_dir
        .canonicalize()
        .with_context(|| format!("state directory {}", state_dir.display()))?;
    let sock = socket_path(&state_dir);
    // One daemon per state directory, held until this process ends; a
    // socket file present without the lock is a killed daemon's.
    let _lock = ops::context::try_lock(&state_dir.join("daemon.lock"))
        .with_context(|| format!("a weft daemon already serves {}", sock.display()))?;
    let _ = std::fs::remove_file(&sock);
    let listener =
        UnixListener::bind(&sock).with_context(|| format!("listen on {}", sock.display()))?;
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600))?;
    let _remove = RemoveOnDrop(sock.clone());
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
    }
    ops::reaper::run_in_thread();
    let daemon = Arc::new(Daemon {
        state_dir_id: FileId::of(&state_dir).context("state directory")?,
        state_dir,
        net_ns: net_ns(),
        // SAFETY: geteuid cannot fail.
        uid: unsafe { libc::geteuid() },
        idle: Mutex::new(vec![first]),
        busy: AtomicUsize::new(0),
        parser: Mutex::new(crate::Cli::command()),
    });
    let listener = Arc::new(listener);
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (daemon, listener) = (Arc::clone(&daemon), Arc::clone(&listener));
            std::thread::spawn(move || daemon.work(&listener))
        })
        .collect();
    eprintln!("weft daemon: serving {}", sock.display());
    while !STOP.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
    // Stopping. New clients find no socket and run commands themselves;
    // those already connected (waiting in the backlog, their request
    // sent) are served, not reset: they could not tell whether a reset
    // command had run.
    let _ = std::fs::remove_file(&sock);
    listener.set_nonblocking(true)?;
    // Twice: a client that found the file just before it went may still be
    // queuing its connection.
    for pass in 0..2 {
        if pass > 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
        while let Ok((stream, _)) = listener.accept() {
            Arc::clone(&daemon).spawn(stream);
        }
    }
    // Wakes the workers still waiting in accept (it fails with EINVAL); a
    // worker serving a request finishes it first.
    // SAFETY: shutdown(2) of the listening socket this function owns.
    unsafe { libc::shutdown(listener.as_raw_fd(), libc::SHUT_RDWR) };
    let t0 = Instant::now();
    let running =
        || daemon.busy.load(Ordering::SeqCst) > 0 || workers.iter().any(|w| !w.is_finished());
    while running() && t0.elapsed() < DRAIN {
        std::thread::sleep(Duration::from_millis(5));
    }
    // The pairs detached last, not left to `weft gc`.
    ops::reaper::delete_now();
    eprintln!("weft daemon: stopped");
    Ok(())
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The uid of the process at the other end of a unix socket.
fn peer_uid(stream: &UnixStream) -> Option<u32> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(cred.uid)
}

impl Daemon {
    /// A worker thread: serves one connection after another until the
    /// daemon stops.
    fn work(&self, listener: &UnixListener) {
        loop {
            match listener.accept() {
                // A bug that panics in one request must not cost the
                // daemon a worker: the client sees its connection closed
                // without a reply, as it would from a dying thread.
                Ok((stream, _)) => {
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        self.serve(stream)
                    }));
                }
                Err(_) if STOP.load(Ordering::SeqCst) => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // Out of file descriptors and the like: try again shortly.
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    /// A thread for one connection (a stopping daemon's backlog).
    fn spawn(self: Arc<Self>, stream: UnixStream) {
        self.busy.fetch_add(1, Ordering::SeqCst);
        std::thread::spawn(move || {
            ops::failpoint::panic_once("daemon-drain");
            self.serve(stream);
            self.busy.fetch_sub(1, Ordering::SeqCst);
        });
    }

    fn serve(&self, mut stream: UnixStream) {
        let reply = self.handle(&mut stream);
        if let Ok(body) = serde_json::to_vec(&reply) {
            let _ = stream.write_all(&body);
        }
    }

    fn handle(&self, stream: &mut UnixStream) -> Reply {
        let declined = |why: &str| Reply::Declined { why: why.to_string() };
        match peer_uid(stream) {
            Some(uid) if uid == 0 || uid == self.uid => {}
            _ => return declined("the client's user may not use this daemon"),
        }
        let mut body = Vec::new();
        if stream.read_to_end(&mut body).is_err() {
            return declined("unreadable request");
        }
        let Ok(req) = serde_json::from_slice::<Request>(&body) else {
            return declined("unreadable request");
        };
        if req.version != super::VERSION {
            return declined("the daemon runs another version of weft; restart it");
        }
        if req.net_ns != self.net_ns {
            return declined("the client is in another network namespace than the daemon");
        }
        if req.state_dir_id != self.state_dir_id {
            return declined("the daemon serves another state directory");
        }
        if let Some(call) = &req.cni {
            return self.cni(call, req.container_ns);
        }
        // Errors (bad flags, --help) are the client's to print.
        let Some(cli) = self.parse(&req.args) else {
            return declined("not a command line the daemon runs");
        };
        let run: Box<Job> = match cli.command {
            Command::Attach(mut a) => {
                a.resolve_netns(&req.cwd);
                // The same namespace file for the daemon as for the client.
                if req.container_ns.is_none() || FileId::of(&a.netns_file()) != req.container_ns {
                    return declined("the daemon sees another container namespace");
                }
                Box::new(move |ctx| a.run_with(ctx))
            }
            Command::Detach(d) => Box::new(move |ctx| d.run_with(ctx)),
            _ => return declined("only attach and detach run in the daemon"),
        };
        let (result, stdout) = crate::output::capture(|| {
            ops::failpoint::panic_once("daemon-job");
            self.with_context(run, Result::is_ok).and_then(|r| r)
        });
        match result {
            Ok(()) => Reply::Done { code: 0, stdout, stderr: String::new() },
            Err(e) => {
                Reply::Done { code: 1, stdout, stderr: format!("{}\n", crate::error_line(&e)) }
            }
        }
    }

    fn parse(&self, args: &[String]) -> Option<crate::Cli> {
        // A request that panicked while parsing left the parser as it was.
        let mut parser = self.parser.lock().unwrap_or_else(|e| e.into_inner());
        let matches = parser.try_get_matches_from_mut(args).ok()?;
        crate::Cli::from_arg_matches(&matches).ok()
    }

    /// A plugin's ADD or DEL, answered as the plugin would.
    fn cni(&self, call: &super::CniCall, container_ns: Option<FileId>) -> Reply {
        let declined = |why: &str| Reply::Declined { why: why.to_string() };
        let var = |k: &str| call.vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let Ok(inv) = weft_cni::Invocation::from_vars(var) else {
            return declined("not a CNI call the daemon runs");
        };
        match inv.command {
            weft_cni::Command::Add => {
                if container_ns.is_none() || FileId::of(Path::new(&inv.netns)) != container_ns {
                    return declined("the daemon sees another container namespace");
                }
            }
            weft_cni::Command::Del => {}
            _ => return declined("only ADD and DEL run in the daemon"),
        }
        let mut hint = String::new();
        let outcome = self
            .with_context(
                |ctx| crate::cni::call_with(ctx, &inv, call.config.as_bytes(), &mut hint),
                Result::is_ok,
            )
            // No context could be opened: the store's error.
            .unwrap_or_else(|e| Err(crate::cni::to_cni(e)));
        let (stdout, ok) = crate::cni::reply(outcome, &hint);
        Reply::Done { code: u8::from(!ok), stdout, stderr: String::new() }
    }

    /// Runs `f` with an idle context (or a new one; endpoints of an earlier
    /// boot were reclaimed when the daemon started). `ok` tells whether `f` succeeded: after
    /// a failure the context may hold half a conversation (a netlink reply
    /// not read to its end), so it is not reused.
    fn with_context<T>(
        &self,
        f: impl FnOnce(&mut Context) -> T,
        ok: impl FnOnce(&T) -> bool,
    ) -> Result<T> {
        let taken = self.idle.lock().ok().and_then(|mut v| v.pop());
        let mut ctx = match taken {
            Some(c) => c,
            None => Context::open(&self.state_dir)?,
        };
        let r = f(&mut ctx);
        if ok(&r) {
            if let Ok(mut v) = self.idle.lock() {
                v.push(ctx);
            }
        }
        Ok(r)
    }
}
