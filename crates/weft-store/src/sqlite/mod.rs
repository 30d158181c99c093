//! The single-host store: one SQLite database in the state directory.
//!
//! Several weft processes may run at once (two shells attaching at the same
//! moment), so every read-modify-write runs in a `BEGIN IMMEDIATE`
//! transaction: the write lock is taken before anything is read, which
//! serializes allocation across processes. WAL lets readers proceed while a
//! writer holds the lock; SQLite's busy timeout, backed by a retry here,
//! makes contention a short wait and never an error.

mod endpoint;
mod network;
mod wal;

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::thread::sleep;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use rusqlite::{Connection, ErrorCode, OptionalExtension};
use weft_model::network::NetworkSpec;
use weft_model::{Endpoint, EndpointKey, Network};

use crate::schema::{self, Outcome};
use crate::{EndpointRequest, Store, StoreError};

/// How long an operation waits for other processes to release the database.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Enough for every statement the store prepares, so none is re-parsed.
const STATEMENT_CACHE: usize = 64;

pub struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Connection>,
}

/// Above this size a closing store empties the WAL (see `Drop`).
const WAL_TRUNCATE_BYTES: u64 = 256 * 1024;

/// Every weft process opens the store afresh and, being its only user,
/// rebuilds SQLite's WAL index by reading the whole WAL. A checkpoint
/// records that the WAL may start over only in that index, so the record
/// dies with the process: unless the same process writes again (an attach
/// does, a detach does not), the WAL was never restarted. A run of 800
/// detaches grew it to 19 MB, and each detach's open read all of it
/// (detach 4 → 11 ms). So the last user empties it when it has grown:
/// a checkpoint that truncates the WAL, about every 60 frames.
impl Drop for SqliteStore {
    fn drop(&mut self) {
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        let big = std::fs::metadata(&wal).is_ok_and(|m| m.len() > WAL_TRUNCATE_BYTES);
        if !big {
            return;
        }
        let conn = self.conn.get_mut().unwrap_or_else(PoisonError::into_inner);
        // Not worth waiting for: another process using the store will
        // truncate it when it closes.
        let _ = conn.busy_timeout(Duration::from_millis(20));
        let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    }
}

/// Failure inside an operation, before the database path is attached.
enum Fail {
    Db(rusqlite::Error),
    Corrupt(String),
    Store(StoreError),
}

impl From<rusqlite::Error> for Fail {
    fn from(e: rusqlite::Error) -> Fail {
        Fail::Db(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Fail {
        Fail::Store(e)
    }
}

impl From<weft_model::ModelError> for Fail {
    fn from(e: weft_model::ModelError) -> Fail {
        Fail::Store(StoreError::Invalid(e))
    }
}

/// Parses a stored JSON record; `what` names it in the error.
fn decode<T: serde::de::DeserializeOwned>(
    what: &dyn std::fmt::Display,
    json: &str,
) -> Result<T, Fail> {
    serde_json::from_str(json).map_err(|e| Fail::Corrupt(format!("{what}: {e}")))
}

fn encode<T: serde::Serialize>(record: &T) -> Result<String, Fail> {
    serde_json::to_string(record).map_err(|e| Fail::Corrupt(format!("cannot encode record: {e}")))
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
}

/// Runs `op` until it stops failing with "busy". SQLite's own busy handler
/// covers nearly every case, but a few (WAL recovery, changing the journal
/// mode of a fresh file) fail at once; every operation is one transaction,
/// so running it again is safe.
fn retry<T>(mut op: impl FnMut() -> Result<T, Fail>) -> Result<T, Fail> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match op() {
            Err(Fail::Db(e)) if is_busy(&e) && start.elapsed() < BUSY_TIMEOUT => {
                sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// Waits for another connection's write lock: true to try again. SQLite's
/// own handler (`busy_timeout`) sleeps 1, 2, 5, 10, 15 ms... between
/// tries, while a weft write holds the lock for about 0.1 ms: with 4
/// processes attaching at once, waiters slept milliseconds after the lock
/// was free. Short pauses first, then longer ones, about 10 s in all
/// (`BUSY_TIMEOUT`).
fn on_busy(tries: i32) -> bool {
    let pause = match tries {
        0..20 => Duration::from_micros(50),
        20..100 => Duration::from_micros(200),
        _ => Duration::from_millis(1),
    };
    // 20 × 50 µs + 80 × 200 µs + 1 ms per try after the 100th.
    let budget_tries = 100 + BUSY_TIMEOUT.as_millis() as i32;
    if tries >= budget_tries {
        return false;
    }
    sleep(pause);
    true
}

fn connect(path: &Path) -> Result<Connection, Fail> {
    let conn = Connection::open(path)?;
    conn.busy_handler(Some(on_busy))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // WAL: readers never wait for the writer, and a commit is one append
    // without fsync. The mode is not checked: where WAL is impossible (no
    // shared memory) SQLite keeps its rollback journal, slower but correct.
    let _mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    // NORMAL with WAL: a crash of weft or of the machine may lose the last
    // commits, but never corrupts the file.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    keep_wal_files(&conn);
    // No checkpoint when the last connection closes: that checkpoint's
    // fsyncs dominated a short command's time. The WAL is durable on its
    // own; the next opener rebuilds its index from it, and the automatic
    // checkpoint (every 256 pages) keeps that read short. Measured with
    // one process per operation: 256 beat 64 and 24, whose more frequent
    // checkpoints (fsyncs) cost more than the shorter WAL reads save.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
    conn.pragma_update(None, "wal_autocheckpoint", 256)?;
    Ok(conn)
}

/// Each weft command is a short process and usually the database's only
/// connection: by default SQLite would create the -wal and -shm files on
/// open and delete them on close, which on a disk filesystem costs a file
/// creation, a deletion and directory syncs (~15 ms measured on ext4 with
/// discard) per command. Keeping the files makes it an open of existing
/// files.
fn keep_wal_files(conn: &Connection) {
    let mut on: std::os::raw::c_int = 1;
    // SAFETY: the handle is a live connection owned by `conn`; the pointer
    // is to a c_int as SQLITE_FCNTL_PERSIST_WAL requires, valid for the call.
    unsafe {
        rusqlite::ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            rusqlite::ffi::SQLITE_FCNTL_PERSIST_WAL,
            (&mut on as *mut std::os::raw::c_int).cast(),
        );
    }
}

impl SqliteStore {
    /// Opens `state_dir/weft.db`, creating the directory (mode 0700) and the
    /// database as needed.
    pub fn open(state_dir: &Path) -> Result<SqliteStore, StoreError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir)
            .map_err(|source| StoreError::StateDir { path: state_dir.to_path_buf(), source })?;
        let path = state_dir.join("weft.db");
        check_damage(&path)?;
        let fail = |e| into_error(&path, e);
        let mut conn = retry(|| connect(&path)).map_err(fail)?;
        match retry(|| Ok(schema::migrate(&mut conn)?)).map_err(fail)? {
            Outcome::Current => Ok(SqliteStore { path, conn: Mutex::new(conn) }),
            Outcome::TooNew(found) => {
                Err(StoreError::SchemaTooNew { path, found, supported: schema::VERSION })
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A number that changes whenever another connection (another weft
    /// process) commits to the database: `PRAGMA data_version`. With WAL it
    /// reads only the shared-memory index, so polling it every few
    /// milliseconds is cheap; a watcher re-reads the store when it changes.
    pub fn data_version(&self) -> Result<i64, StoreError> {
        self.run(|c| Ok(c.pragma_query_value(None, "data_version", |r| r.get(0))?))
    }

    fn run<T>(
        &self,
        mut op: impl FnMut(&mut Connection) -> Result<T, Fail>,
    ) -> Result<T, StoreError> {
        // A panic inside `op` rolled its transaction back when it unwound,
        // so the connection behind a poisoned lock is still consistent.
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        retry(|| op(&mut conn)).map_err(|e| into_error(&self.path, e))
    }
}

/// Refuses a database whose log SQLite would silently cut short. Another
/// process may be writing the log this moment (a torn read looks like
/// damage), so it looks again before it says so.
fn check_damage(path: &Path) -> Result<(), StoreError> {
    for pause in [5, 20, 50] {
        if wal::damage(path).is_none() {
            return Ok(());
        }
        sleep(Duration::from_millis(pause));
    }
    match wal::damage(path) {
        Some(why) => Err(StoreError::Damaged { path: path.to_path_buf(), why }),
        None => Ok(()),
    }
}

fn into_error(path: &Path, e: Fail) -> StoreError {
    match e {
        Fail::Db(source) => StoreError::Db { context: format!("store {}", path.display()), source },
        Fail::Corrupt(what) => StoreError::Corrupt(format!("{}: {what}", path.display())),
        Fail::Store(e) => e,
    }
}

impl Store for SqliteStore {
    fn create_network(
        &self,
        spec: &NetworkSpec,
        host_taken: &[IpNet],
        created: u64,
    ) -> Result<Network, StoreError> {
        self.run(|c| network::create(c, spec, host_taken, created))
    }

    fn network(&self, name: &str) -> Result<Option<Network>, StoreError> {
        self.run(|c| network::get(c, name))
    }

    fn networks(&self) -> Result<Vec<Network>, StoreError> {
        self.run(|c| network::list(c))
    }

    fn remove_network(&self, name: &str) -> Result<Network, StoreError> {
        self.run(|c| network::remove(c, name))
    }

    fn reserve_endpoint(&self, req: &EndpointRequest) -> Result<Endpoint, StoreError> {
        self.run(|c| endpoint::reserve(c, req))
    }

    fn set_ready(&self, key: &EndpointKey) -> Result<(), StoreError> {
        self.run(|c| endpoint::set_ready(c, key))
    }

    fn remove_endpoint(&self, key: &EndpointKey) -> Result<Option<Endpoint>, StoreError> {
        self.run(|c| endpoint::remove(c, key))
    }

    fn endpoint(&self, key: &EndpointKey) -> Result<Option<Endpoint>, StoreError> {
        self.run(|c| endpoint::get(c, key))
    }

    fn endpoints(&self, network: Option<&str>) -> Result<Vec<Endpoint>, StoreError> {
        self.run(|c| endpoint::list(c, network))
    }

    fn container_endpoints(
        &self,
        network: &str,
        container: &str,
    ) -> Result<Vec<Endpoint>, StoreError> {
        self.run(|c| endpoint::of_container(c, network, container))
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.run(|c| {
            let mut stmt = c.prepare_cached("SELECT value FROM meta WHERE key = ?1")?;
            Ok(stmt.query_row([key], |r| r.get(0)).optional()?)
        })
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.run(|c| {
            let mut stmt = c.prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?;
            stmt.execute([key, value])?;
            Ok(())
        })
    }

    fn init_meta(&self, key: &str, value: &str) -> Result<String, StoreError> {
        self.run(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
            )?
            .execute([key, value])?;
            let v: String = tx
                .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
                .query_row([key], |r| r.get(0))?;
            tx.commit()?;
            Ok(v)
        })
    }
}
