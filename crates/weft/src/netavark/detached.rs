//! Starting weft itself in the background from a Podman helper call: the
//! DNS server and the remover of idle networks outlive the call.

use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result};

/// Starts `weft ARGS...` in a session of its own (conmon's cleanup and
/// Podman's session end before it does); not waited for. Its output goes
/// to `log` (made afresh), else nowhere.
pub fn spawn<I, S>(args: I, what: &str, log: Option<&Path>) -> Result<()>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let exe = std::env::current_exe().context("find weft's own binary")?;
    let (stdout, stderr) = match log {
        Some(path) => {
            let f = File::create(path).with_context(|| format!("create {}", path.display()))?;
            (Stdio::from(f.try_clone()?), Stdio::from(f))
        }
        None => (Stdio::null(), Stdio::null()),
    };
    let mut cmd = Command::new(exe);
    cmd.args(args).stdin(Stdio::null()).stdout(stdout).stderr(stderr).env_remove("CNI_COMMAND");
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
