//! `weft dns`: the DNS server for this host's networks, in the foreground.
//!
//! It follows the store by polling SQLite's `PRAGMA data_version` every few
//! milliseconds: the number changes exactly when another process commits
//! (an attach, a detach), reading it touches only the WAL index in shared
//! memory (microseconds), and it cannot miss a change the way a file watch
//! can when SQLite checkpoints or recreates its WAL file. A change rebuilds
//! the zone from the records, so a container resolves within one poll
//! interval after its attach returns, and stops resolving after its detach.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use clap::Args;
use weft_dns::{Config, Zone};
use weft_store::{SqliteStore, Store};

#[derive(Args)]
pub struct Dns {
    /// A resolver for names that are not containers (IP or IP:PORT);
    /// default: the nameservers of /etc/resolv.conf. Repeatable.
    #[arg(long = "upstream", value_name = "ADDR")]
    upstreams: Vec<String>,
    /// Port to answer on, on every network's gateway address.
    #[arg(long, default_value_t = 53)]
    port: u16,
    /// How often to look for changes in the store, in milliseconds.
    #[arg(long, default_value_t = 10)]
    poll_ms: u64,
    /// Hold an exclusive lock on this file and write the pid into it; exit
    /// at once, successfully, if another server holds it (how weft as
    /// Podman's backend starts one server per state directory).
    #[arg(long, value_name = "PATH")]
    pid_file: Option<std::path::PathBuf>,
}

impl Dns {
    pub fn run(self, state_dir: &Path) -> Result<()> {
        if crate::ops::context::cluster().is_some() {
            bail!("weft dns follows the embedded store of one host; with a cluster store, `weft agent` serves DNS");
        }
        let _pid_lock = match &self.pid_file {
            Some(p) => match crate::ops::context::try_lock(p) {
                Ok(f) => {
                    write_pid(&f)?;
                    Some(f)
                }
                Err(_) => return Ok(()),
            },
            None => None,
        };
        raise_open_files_limit();
        let upstreams = self.upstreams()?;
        let store = SqliteStore::open(state_dir)?;
        let z = zone(&store)?;
        tracing::info!(
            "weft dns starting: port {} on {} gateway address(es), upstream resolvers \
             {upstreams:?}",
            self.port,
            z.listen.len(),
        );
        exit_on_signal();
        let (tx, rx) = tokio::sync::watch::channel(Arc::new(z));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let poll = Duration::from_millis(self.poll_ms.max(1));
        std::thread::Builder::new().name("store-watch".into()).spawn(move || {
            if let Err(e) = follow(&store, &tx, poll) {
                eprintln!("weft: error: dns: {e:#}");
                std::process::exit(1);
            }
        })?;
        rt.block_on(weft_dns::serve(Config { port: self.port, upstreams }, rx));
        tracing::info!("weft dns stopped");
        Ok(())
    }

    fn upstreams(&self) -> Result<Vec<SocketAddr>> {
        parse_upstreams(&self.upstreams)
    }
}

fn write_pid(mut f: &std::fs::File) -> Result<()> {
    use std::io::Write;
    f.set_len(0)?;
    writeln!(f, "{}", std::process::id())?;
    Ok(())
}

/// Every TCP client holds a descriptor (up to 5 s idle) and every forward
/// one more (at most 512): a service's usual soft limit of 1024 let a
/// container's few thousand connections stop the server accepting and
/// forwarding. The soft limit goes up to the hard one (Go's runtime does
/// the same for every Go program, dockerd's embedded DNS included).
pub fn raise_open_files_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write `lim`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                tracing::warn!(
                    "cannot raise the open files limit: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
    }
}

/// `--upstream` values (IP or IP:PORT), or the nameservers of
/// /etc/resolv.conf when none is given.
pub fn parse_upstreams(given: &[String]) -> Result<Vec<SocketAddr>> {
    if given.is_empty() {
        let conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        return Ok(weft_dns::from_resolv_conf(&conf));
    }
    given
        .iter()
        .map(|s| {
            s.parse::<SocketAddr>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                .with_context(|| format!("--upstream {s:?}: give an address, IP or IP:PORT"))
        })
        .collect()
}

/// SIGTERM and SIGINT end `weft dns` with a log line saying so. They are
/// blocked in every thread (set before any is started) and taken by one
/// that waits for them.
fn exit_on_signal() {
    // SAFETY: sigset_t is plain data that sigemptyset initialises.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t; blocking signals has no other effect.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    std::thread::spawn(move || {
        let mut sig = 0;
        // SAFETY: `set` and `sig` are valid for the call.
        if unsafe { libc::sigwait(&set, &mut sig) } == 0 {
            let name = if sig == libc::SIGTERM { "SIGTERM" } else { "SIGINT" };
            tracing::info!("weft dns: {name} received, exiting");
            std::process::exit(0);
        }
    });
}

fn zone(store: &SqliteStore) -> Result<Zone> {
    Ok(Zone::build(&store.networks()?, &store.endpoints(None)?))
}

/// Sends a new zone whenever another process commits to the store.
fn follow(
    store: &SqliteStore,
    tx: &tokio::sync::watch::Sender<Arc<Zone>>,
    poll: Duration,
) -> Result<()> {
    let mut seen = store.data_version()?;
    loop {
        std::thread::sleep(poll);
        let now = store.data_version()?;
        if now == seen {
            continue;
        }
        seen = now;
        let z = zone(store)?;
        tracing::debug!("store changed: zone rebuilt");
        if **tx.borrow() != z && tx.send(Arc::new(z)).is_err() {
            return Ok(());
        }
    }
}
