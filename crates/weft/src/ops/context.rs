//! Shared state of one weft invocation: the store, the host's netlink
//! socket, the firewall, and this boot's identity.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use weft_datapath::Netlink;
use weft_firewall::{Firewall, Forwarding, NetRules, PortRule};
use weft_store::{EtcdStore, SqliteStore, Store};

static CLUSTER: std::sync::OnceLock<Option<crate::config::Cluster>> = std::sync::OnceLock::new();

/// Records the cluster settings of this process (from flags, env, config
/// file) once at start; every Context opened afterwards uses them.
pub fn set_cluster(c: Option<crate::config::Cluster>) {
    let _ = CLUSTER.set(c);
}

pub fn cluster() -> Option<&'static crate::config::Cluster> {
    CLUSTER.get().and_then(Option::as_ref)
}

pub struct Context {
    pub state_dir: PathBuf,
    pub store: Box<dyn Store>,
    pub boot_id: String,
    /// This host's name in a cluster; None on a single host.
    pub node: Option<String>,
    nl: Option<Netlink>,
    /// How many [`Ownership`] guards of this context are alive: an
    /// operation nested in another (CNI ADD replacing an endpoint, gc
    /// tearing one down) runs under the outer one's lock.
    owning: Arc<AtomicUsize>,
}

/// Attach, detach, network create and remove hold the state directory's
/// ownership lock shared; `weft gc` holds it exclusive. gc decides from a
/// list of links and a list of records read at different moments; with
/// no operation in flight while it runs, a record still `Creating` is a
/// crashed attach and a record without its veth has really lost it. Held
/// until dropped.
pub struct Ownership {
    /// The locked files; empty for a nested guard.
    files: Vec<File>,
    owning: Arc<AtomicUsize>,
}

impl Drop for Ownership {
    fn drop(&mut self) {
        self.owning.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Context {
    /// The embedded store of this host, or the cluster store when the
    /// process was given etcd endpoints.
    pub fn open(state_dir: &Path) -> Result<Context> {
        let (store, node): (Box<dyn Store>, Option<String>) = match cluster() {
            Some(c) => {
                (Box::new(EtcdStore::connect(&c.etcd_config(), &c.node)?), Some(c.node.clone()))
            }
            None => (
                Box::new(SqliteStore::open(state_dir).map_err(|e| open_error(state_dir, e))?),
                None,
            ),
        };
        Ok(Context {
            state_dir: state_dir.to_path_buf(),
            store,
            boot_id: boot_id(),
            node,
            nl: None,
            owning: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The ownership lock, shared: operations run side by side, but not
    /// while gc runs. Costs two opens and three flocks (about 10 µs).
    pub fn share(&self) -> Result<Ownership> {
        self.own(false)
    }

    /// The ownership lock, exclusive: waits for operations in flight and
    /// holds new ones back until dropped.
    pub fn exclusive(&self) -> Result<Ownership> {
        self.own(true)
    }

    fn own(&self, exclusive: bool) -> Result<Ownership> {
        let nested = self.owning.fetch_add(1, Ordering::SeqCst) > 0;
        // Made first: an error below drops it, which undoes the count.
        let mut guard = Ownership { files: Vec::new(), owning: Arc::clone(&self.owning) };
        if nested {
            return Ok(guard);
        }
        // A waiting gc would starve behind a stream of overlapping shared
        // holders (flock favours none): it takes the gate first, which
        // holds new operations back, while those holding the lock finish.
        let gate = self.state_dir.join("gc.gate");
        let main = self.state_dir.join("ownership.lock");
        if exclusive {
            guard.files.push(flock_readable(&gate, libc::LOCK_EX)?);
            guard.files.push(flock_readable(&main, libc::LOCK_EX)?);
        } else {
            let g = flock_readable(&gate, libc::LOCK_SH)?;
            guard.files.push(flock_readable(&main, libc::LOCK_SH)?);
            drop(g);
        }
        Ok(guard)
    }

    /// The netlink socket of weft's own ("host") namespace, opened once.
    pub fn host(&mut self) -> Result<&mut Netlink> {
        if self.nl.is_none() {
            self.nl = Some(weft_datapath::netns::host_netlink()?);
        }
        Ok(self.nl.as_mut().expect("just set"))
    }

    /// Rebuilds weft's nftables table from the store, with the forwarding
    /// and `route_localnet` it needs. Serialized by a lock file so that two
    /// processes changing networks at once cannot apply an older list last.
    pub fn sync_firewall(&self) -> Result<()> {
        let _lock = lock(&self.state_dir.join("firewall.lock"))?;
        let nets = self.store.networks()?;
        let rules: Vec<NetRules> = nets.iter().map(NetRules::from).collect();
        let v6 = nets.iter().any(|n| n.subnet6.is_some());
        let forwarding = Forwarding::prepare(&self.state_dir, !nets.is_empty(), v6)?;
        // Published ports of this host's endpoints (a cluster store holds
        // other hosts' too): the rebuilt table keeps them.
        let eps: Vec<_> =
            self.store.endpoints(None)?.into_iter().filter(|e| e.node == self.node).collect();
        let ports: Vec<PortRule> = eps.iter().flat_map(PortRule::of).collect();
        Firewall::new().apply_with_ports(&rules, &ports, forwarding.guards())?;
        forwarding.enable()?;
        for n in &nets {
            let on = super::publish::needs_route_localnet(&n.name, &eps);
            // Not fatal: a bridge being rebuilt (or an overlay network's
            // the agent has yet to make) gets it when it publishes.
            if let Err(e) = weft_firewall::set_route_localnet(&n.bridge, on)
                .and_then(|()| weft_firewall::refuse_router_advertisements(&n.bridge))
            {
                tracing::warn!("{e}");
            }
        }
        Ok(())
    }
}

/// One line for a store that would not open: the store's error carries its
/// cause twice over (its own text and its source), and a user without root
/// needs to hear that first.
fn open_error(state_dir: &Path, e: weft_store::StoreError) -> anyhow::Error {
    use weft_store::StoreError as E;
    // Says so itself (with the path), and `weft gc --adopt` recognises it.
    if matches!(e, E::Damaged { .. }) {
        return e.into();
    }
    let denied = match &e {
        E::StateDir { source, .. } => source.kind() == std::io::ErrorKind::PermissionDenied,
        E::Db { .. } => !is_root(),
        _ => false,
    };
    if denied {
        return anyhow::anyhow!(
            "cannot open weft's state in {}: permission denied; weft needs root (run it with sudo)",
            state_dir.display()
        );
    }
    // Its Display only: the chain below it repeats the same cause.
    anyhow::anyhow!("cannot open weft's state in {}: {e}", state_dir.display())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// An exclusive advisory lock held until the returned file is dropped.
pub fn lock(path: &Path) -> Result<File> {
    flock(path, libc::LOCK_EX)
}

/// [`lock`], or an error at once if another process holds it.
pub fn try_lock(path: &Path) -> Result<File> {
    flock(path, libc::LOCK_EX | libc::LOCK_NB)
}

fn flock(path: &Path, how: libc::c_int) -> Result<File> {
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("open lock {}", path.display()))?;
    flock_file(f, path, how)
}

/// [`flock`] on a file opened for reading when it exists: a read-only
/// state directory then fails where the store is written, with the
/// store's error, not here.
fn flock_readable(path: &Path, how: libc::c_int) -> Result<File> {
    let f = match File::open(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // A cluster store has no database to create the directory.
            if let Some(dir) = path.parent() {
                use std::os::unix::fs::DirBuilderExt;
                let _ = std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir);
            }
            File::options().create(true).truncate(false).write(true).open(path)
        }
        r => r,
    };
    let f = f.with_context(|| format!("open lock {}", path.display()))?;
    flock_file(f, path, how)
}

fn flock_file(f: File, path: &Path, how: libc::c_int) -> Result<File> {
    // SAFETY: flock on an fd we own; it is released when the file closes.
    if unsafe { libc::flock(f.as_raw_fd(), how) } != 0 {
        bail!("lock {}: {}", path.display(), std::io::Error::last_os_error());
    }
    Ok(f)
}

/// The kernel's boot id: changes on every boot, so endpoint records from an
/// earlier boot are recognisably stale.
///
/// Test hook: a non-empty `WEFT_BOOT_ID` environment variable replaces the
/// kernel's value, so tests can simulate a reboot without one.
pub fn boot_id() -> String {
    if let Some(id) = std::env::var("WEFT_BOOT_ID").ok().filter(|s| !s.is_empty()) {
        return id;
    }
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// weft changes the network: it needs CAP_NET_ADMIN (root normally has it).
pub fn require_net_admin() -> Result<()> {
    const CAP_NET_ADMIN: u32 = 12;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    if eff & (1 << CAP_NET_ADMIN) == 0 {
        bail!("permission denied: weft needs root (CAP_NET_ADMIN) to change the network; run it with sudo");
    }
    Ok(())
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
