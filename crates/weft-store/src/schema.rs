//! The on-disk layout of the SQLite store, versioned with `PRAGMA user_version`.
//!
//! Every record is kept whole as JSON (`data`), so adding a field to the model
//! needs no migration; the other columns exist only to index, to order and to
//! let SQLite itself refuse duplicates even if a bug slipped past the checks.

use rusqlite::{Connection, TransactionBehavior};

/// Bump when the tables change, and add a step to [`MIGRATIONS`].
pub const VERSION: i64 = 2;

/// `MIGRATIONS[n]` takes a database from version `n` to `n + 1`.
const MIGRATIONS: [&str; VERSION as usize] = [V1, V2];

/// Addresses are kept as integers (IPv4) and 16-byte big-endian blobs (IPv6)
/// so that order and equality are numeric. `hint4`/`hint6` remember the last
/// address handed out, so allocation resumes after it instead of rescanning.
/// `endpoint_count` is kept by triggers so "is the subnet full?" is one read.
const V1: &str = "
CREATE TABLE networks (
    name           TEXT PRIMARY KEY NOT NULL,
    bridge         TEXT NOT NULL UNIQUE,
    hint4          INTEGER,
    hint6          BLOB,
    endpoint_count INTEGER NOT NULL DEFAULT 0,
    data           TEXT NOT NULL
) STRICT;

CREATE TABLE endpoints (
    network   TEXT NOT NULL REFERENCES networks(name),
    container TEXT NOT NULL,
    ifname    TEXT NOT NULL,
    ip4       INTEGER NOT NULL,
    ip6       BLOB,
    mac       TEXT NOT NULL,
    data      TEXT NOT NULL,
    PRIMARY KEY (network, container, ifname),
    UNIQUE (network, ip4),
    UNIQUE (network, ip6),
    UNIQUE (network, mac)
) STRICT, WITHOUT ROWID;

CREATE TRIGGER endpoints_count_insert AFTER INSERT ON endpoints BEGIN
    UPDATE networks SET endpoint_count = endpoint_count + 1 WHERE name = NEW.network;
END;
CREATE TRIGGER endpoints_count_delete AFTER DELETE ON endpoints BEGIN
    UPDATE networks SET endpoint_count = endpoint_count - 1 WHERE name = OLD.network;
END;

CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) STRICT, WITHOUT ROWID;
";

/// Published host ports, one row per `--publish`, so that an attach finds a
/// clash with one indexed range query inside its transaction (the endpoint
/// record keeps the same list for everything else). `host_ip` is '' for
/// every address; `mapping` is the `--publish` form, for messages.
const V2: &str = "
CREATE TABLE ports (
    network   TEXT NOT NULL,
    container TEXT NOT NULL,
    ifname    TEXT NOT NULL,
    proto     TEXT NOT NULL,
    host_ip   TEXT NOT NULL,
    port_lo   INTEGER NOT NULL,
    port_hi   INTEGER NOT NULL,
    mapping   TEXT NOT NULL,
    FOREIGN KEY (network, container, ifname)
        REFERENCES endpoints (network, container, ifname) ON DELETE CASCADE
) STRICT;
CREATE INDEX ports_by_port ON ports (proto, port_lo);
CREATE INDEX ports_by_endpoint ON ports (network, container, ifname);
";

pub enum Outcome {
    Current,
    /// Written by a newer weft; refuse rather than misread it.
    TooNew(i64),
}

/// Brings the schema to [`VERSION`]. Changes run under `BEGIN IMMEDIATE` and
/// re-read the version, so when several processes open a fresh store at once
/// exactly one creates the tables.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<Outcome> {
    // The common case, an up-to-date store, needs no write lock.
    let found = user_version(conn)?;
    if found == VERSION {
        return Ok(Outcome::Current);
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found = user_version(&tx)?;
    if found > VERSION {
        return Ok(Outcome::TooNew(found));
    }
    for step in &MIGRATIONS[found.max(0) as usize..] {
        tx.execute_batch(step)?;
    }
    if found != VERSION {
        tx.pragma_update(None, "user_version", VERSION)?;
    }
    tx.commit()?;
    Ok(Outcome::Current)
}

fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
}
