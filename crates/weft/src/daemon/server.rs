//! The daemon's side: accept a connection, check who sent what, wait for
//! the client's go-ahead, run the command with a warm context, answer.

use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::{CommandFactory, FromArgMatches};

use super::conn::{Conn, Got, LINE_TIMEOUT};
use super::{net_ns, socket_path, FileId, Reply, Request};
use crate::commands::Command;
use crate::ops::{self, Context};

static STOP: AtomicBool = AtomicBool::new(false);

/// The main thread sees it within 100 ms and stops the daemon.
extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// A command, ready to run with a context.
type Job = dyn FnOnce(&mut Context) -> Result<()> + Send;

/// A request that passed every check, waiting for its client's go-ahead.
enum Prepared {
    Command(Box<Job>),
    Cni { inv: weft_cni::Invocation, config: String },
}

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
    /// backlog, slow clients; the workers are waited for by joining): a
    /// stopping daemon lets them finish, so a SIGTERM never leaves an
    /// attach half done.
    busy: Arc<AtomicUsize>,
    /// Of those, the threads waiting for a slow client.
    slow: Arc<AtomicUsize>,
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

/// How long a worker waits for a client's line before handing the client
/// to a thread of its own: a client writes each line at once, so only an
/// idle or stalled one takes longer, and it must not hold a worker.
const WORKER_PATIENCE: Duration = Duration::from_millis(10);

/// Slow clients waited for at once; beyond this, one more is declined at
/// once (nothing run; the CLI runs the command itself).
const MAX_SLOW: usize = 64;

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
        busy: Arc::default(),
        slow: Arc::default(),
        parser: Mutex::new(crate::Cli::command()),
    });
    let listener = Arc::new(listener);
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (daemon, listener) = (Arc::clone(&daemon), Arc::clone(&listener));
            std::thread::spawn(move || Daemon::work(&daemon, &listener))
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
            daemon.spawn(stream);
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

pub(crate) struct RemoveOnDrop(pub(crate) PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The uid of the process at the other end of a unix socket.
pub(crate) fn peer_uid(stream: &UnixStream) -> Option<u32> {
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

/// One of a number of threads, given back when dropped, also when the
/// thread panics: a count that is never left too high stalls no shutdown.
struct Count(Arc<AtomicUsize>);

impl Count {
    /// None if `max` are already counted.
    fn take(counter: &Arc<AtomicUsize>, max: usize) -> Option<Count> {
        if counter.fetch_add(1, Ordering::SeqCst) >= max {
            counter.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Count(Arc::clone(counter)))
    }
}

impl Drop for Count {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Where a connection is served: a worker does not wait for a slow client
/// (it hands it to a thread of its own); that thread waits up to the
/// line's deadline.
#[derive(Clone, Copy)]
enum Seat {
    Worker,
    Own,
}

impl Seat {
    /// With every slow-client thread taken, a worker hardly waits at all:
    /// a client writes its line right after connecting, so it is there
    /// already, and a flood of idle clients costs each one a millisecond
    /// of a worker, not 10.
    fn patience(self, slow: &AtomicUsize) -> Duration {
        match self {
            Seat::Worker if slow.load(Ordering::SeqCst) >= MAX_SLOW => Duration::from_millis(1),
            Seat::Worker => WORKER_PATIENCE,
            Seat::Own => LINE_TIMEOUT,
        }
    }
}

fn declined(why: &str) -> Reply {
    Reply::Declined { why: why.to_string() }
}

impl Daemon {
    /// A worker thread: serves one connection after another until the
    /// daemon stops.
    fn work(self: &Arc<Self>, listener: &UnixListener) {
        loop {
            match listener.accept() {
                // A bug that panics in one request must not cost the
                // daemon a worker: the client sees its connection closed
                // without a reply, as it would from a dying thread.
                Ok((stream, _)) => {
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        self.serve(Conn::new(stream), Seat::Worker)
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
    fn spawn(self: &Arc<Self>, stream: UnixStream) {
        let busy = Count::take(&self.busy, usize::MAX);
        let daemon = Arc::clone(self);
        // A panic ends the thread; dropping `busy` on the way out keeps
        // the count right, so shutdown does not wait for it.
        let _ = std::thread::Builder::new().spawn(move || {
            let _busy = busy;
            ops::failpoint::panic_once("daemon-drain");
            daemon.serve(Conn::new(stream), Seat::Own);
        });
    }

    /// Continues with a slow client on a thread of its own; declines it
    /// if too many are waited for already.
    fn hand_off(
        self: &Arc<Self>,
        mut conn: Conn,
        then: impl FnOnce(&Arc<Daemon>, Conn) + Send + 'static,
    ) {
        let Some(slow) = Count::take(&self.slow, MAX_SLOW) else {
            conn.send(&declined("the daemon is busy with slow clients; nothing was run"));
            return;
        };
        let busy = Count::take(&self.busy, usize::MAX);
        let daemon = Arc::clone(self);
        let _ = std::thread::Builder::new().spawn(move || {
            let _counts = (slow, busy);
            then(&daemon, conn);
        });
    }

    /// Reads the request; declines it, or says it is ready and waits for
    /// the go-ahead.
    fn serve(self: &Arc<Self>, mut conn: Conn, seat: Seat) {
        // Before reading a byte (the socket's mode keeps others out too).
        if !matches!(peer_uid(&conn.stream), Some(uid) if uid == 0 || uid == self.uid) {
            conn.send(&declined("the client's user may not use this daemon"));
            return;
        }
        let line = match conn.line(seat.patience(&self.slow)) {
            Got::Line(line) => line,
            Got::Slow => return self.hand_off(conn, |d, conn| d.serve(conn, Seat::Own)),
            Got::Failed(why) => {
                conn.send(&declined(why));
                return;
            }
        };
        match self.prepare(&line) {
            Ok(job) => {
                if conn.send(&Reply::Ready) {
                    self.go(conn, job, seat);
                }
            }
            Err(reply) => {
                conn.send(&reply);
            }
        }
    }

    /// Runs the command once its client says go, and only then: a client
    /// that gave up (its timeout, a signal) before saying it was told the
    /// command did not run, and it never runs later.
    fn go(self: &Arc<Self>, mut conn: Conn, job: Prepared, seat: Seat) {
        match conn.line(seat.patience(&self.slow)) {
            Got::Line(l) if l == b"go" => {}
            Got::Slow => return self.hand_off(conn, move |d, conn| d.go(conn, job, Seat::Own)),
            Got::Line(_) => {
                conn.send(&declined("no go-ahead from the client; nothing was run"));
                return;
            }
            Got::Failed(_) => {
                conn.send(&declined("no go-ahead from the client in time; nothing was run"));
                return;
            }
        }
        let reply = self.run(job);
        conn.send(&reply);
    }

    /// Checks who sent what: Ok with the command to run, or the reply
    /// that declines it.
    fn prepare(&self, body: &[u8]) -> Result<Prepared, Reply> {
        let Ok(req) = serde_json::from_slice::<Request>(body) else {
            return Err(declined("unreadable request"));
        };
        if req.version != super::VERSION {
            return Err(declined("the daemon runs another version of weft; restart it"));
        }
        if req.net_ns != self.net_ns {
            return Err(declined("the client is in another network namespace than the daemon"));
        }
        if req.state_dir_id != self.state_dir_id {
            return Err(declined("the daemon serves another state directory"));
        }
        if let Some(call) = req.cni {
            return self.prepare_cni(call, req.container_ns);
        }
        // Errors (bad flags, --help) are the client's to print.
        let Some(cli) = self.parse(&req.args) else {
            return Err(declined("not a command line the daemon runs"));
        };
        match cli.command {
            Command::Attach(mut a) => {
                a.resolve_netns(&req.cwd);
                // The same namespace file for the daemon as for the client.
                if req.container_ns.is_none() || FileId::of(&a.netns_file()) != req.container_ns {
                    return Err(declined("the daemon sees another container namespace"));
                }
                Ok(Prepared::Command(Box::new(move |ctx| a.run_with(ctx))))
            }
            Command::Detach(d) => Ok(Prepared::Command(Box::new(move |ctx| d.run_with(ctx)))),
            _ => Err(declined("only attach and detach run in the daemon")),
        }
    }

    fn run(&self, job: Prepared) -> Reply {
        match job {
            Prepared::Command(run) => {
                let (result, stdout) = crate::output::capture(|| {
                    ops::failpoint::panic_once("daemon-job");
                    self.with_context(run, Result::is_ok).and_then(|r| r)
                });
                match result {
                    Ok(()) => Reply::Done { code: 0, stdout, stderr: String::new() },
                    Err(e) => Reply::Done {
                        code: 1,
                        stdout,
                        stderr: format!("{}\n", crate::error_line(&e)),
                    },
                }
            }
            Prepared::Cni { inv, config } => self.run_cni(&inv, &config),
        }
    }

    fn parse(&self, args: &[String]) -> Option<crate::Cli> {
        // A request that panicked while parsing left the parser as it was.
        let mut parser = self.parser.lock().unwrap_or_else(|e| e.into_inner());
        let matches = parser.try_get_matches_from_mut(args).ok()?;
        crate::Cli::from_arg_matches(&matches).ok()
    }

    /// A plugin's ADD or DEL, checked as an attach is.
    fn prepare_cni(
        &self,
        call: super::CniCall,
        container_ns: Option<FileId>,
    ) -> Result<Prepared, Reply> {
        let var = |k: &str| call.vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let Ok(inv) = weft_cni::Invocation::from_vars(var) else {
            return Err(declined("not a CNI call the daemon runs"));
        };
        match inv.command {
            weft_cni::Command::Add => {
                if container_ns.is_none() || FileId::of(Path::new(&inv.netns)) != container_ns {
                    return Err(declined("the daemon sees another container namespace"));
                }
            }
            weft_cni::Command::Del => {}
            _ => return Err(declined("only ADD and DEL run in the daemon")),
        }
        Ok(Prepared::Cni { inv, config: call.config })
    }

    /// A plugin's ADD or DEL, answered as the plugin would.
    fn run_cni(&self, inv: &weft_cni::Invocation, config: &str) -> Reply {
        let mut hint = String::new();
        let outcome = self
            .with_context(
                |ctx| crate::cni::call_with(ctx, inv, config.as_bytes(), &mut hint),
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
        // A request that panicked holding the lock left the list as it was.
        let taken = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut ctx = match taken {
            Some(c) => c,
            None => Context::open(&self.state_dir)?,
        };
        let r = f(&mut ctx);
        if ok(&r) {
            self.idle.lock().unwrap_or_else(|e| e.into_inner()).push(ctx);
        }
        Ok(r)
    }
}
