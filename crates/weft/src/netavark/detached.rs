//! Starting weft itself in the background from a Podman helper call: the
//! DNS server and the remover of idle networks outlive the call.

use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result};

/// Starts `weft ARGS...` without stdio, in a session of its own (conmon's
/// cleanup and Podman's session end before it does); not waited for.
pub fn spawn<I, S>(args: I, what: &str) -> Result<()>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let exe = std::env::current_exe().context("find weft's own binary")?;
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .env_remove("CNI_COMMAND");
    // SAFETY: setsid is async-signal-safe and touches no memory.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    cmd.spawn().with_context(|| format!("start {what}"))?;
    Ok(())
}
