//! Names for Podman's containers: netavark starts aardvark-dns; weft starts
//! its own `weft dns` once (it answers on every network's gateway and
//! follows the store), and stops it when no Podman network is left.
//!
//! The server holds an exclusive lock on its pid file while it runs, so
//! "is it running" is a lock probe, and two setups racing to start it end
//! with one server (the loser sees the lock and exits).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result};

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
    let exe = std::env::current_exe().context("find weft's own binary")?;
    let mut cmd = Command::new(exe);
    cmd.arg("--state-dir")
        .arg(state_dir)
        .arg("dns")
        .arg("--pid-file")
        .arg(&pid_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .env_remove("CNI_COMMAND");
    // SAFETY: setsid is async-signal-safe; it detaches the server from
    // Podman's session so that it outlives this process.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    cmd.spawn().context("start weft dns")?;
    Ok(())
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
