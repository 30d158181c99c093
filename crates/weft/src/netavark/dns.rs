//! Names for Podman's containers: netavark starts aardvark-dns; weft starts
//! its own `weft dns` once (it answers on every network's gateway and
//! follows the store), and stops it when no Podman network is left.
//!
//! The server holds an exclusive lock on its pid file while it runs, so
//! "is it running" is a lock probe, and two setups racing to start it end
//! with one server (the loser sees the lock and exits).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::ops::context::try_lock;
use crate::ops::Context;

pub fn pid_file(state_dir: &Path) -> PathBuf {
    state_dir.join("podman-dns.pid")
}

pub fn ensure_running(state_dir: &Path) -> Result<()> {
    let pid_file = pid_file(state_dir);
    match try_lock(&pid_file) {
        // Held: a server runs.
        Err(_) => return Ok(()),
        Ok(lock) => drop(lock),
    }
    let args: [&OsStr; 5] = [
        "--state-dir".as_ref(),
        state_dir.as_os_str(),
        "dns".as_ref(),
        "--pid-file".as_ref(),
        pid_file.as_os_str(),
    ];
    super::detached::spawn(args, "weft dns", None)
}

/// Stops the server once no network Podman's setup made is left.
pub fn stop_if_unused(ctx: &Context) -> Result<()> {
    let nets = ctx.store.networks()?;
    for n in &nets {
        if super::owned(ctx, &n.name)? {
            return Ok(());
        }
    }
    let pid_file = pid_file(&ctx.state_dir);
    if !pid_file.exists() || try_lock(&pid_file).is_ok() {
        // No server holds it.
        return Ok(());
    }
    let pid = std::fs::read_to_string(&pid_file).ok().and_then(|s| s.trim().parse::<i32>().ok());
    let Some(pid) = pid.filter(|p| *p > 1) else {
        // Locked a moment ago and not written yet: it is starting.
        return Ok(());
    };
    // SAFETY: plain kill(2) of the server that holds the lock.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    Ok(())
}
