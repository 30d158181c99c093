//! Throwaway network namespaces: one sandbox "host" per tool and one per
//! container. They are made and deleted in batches (`ip -batch`) before and
//! after the timed loops, and deleted on drop, so an error or an interrupt
//! leaves nothing behind. Nothing here touches the machine's own namespace:
//! commands under test run in a sandbox host, entered by a short-lived
//! thread (see [`in_netns`]).

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// A named network namespace (`/run/netns/NAME`), kept open.
pub struct Ns {
    pub name: String,
    pub path: PathBuf,
    file: File,
}

/// A set of namespaces created together and deleted together on drop.
pub struct NsSet {
    pub list: Vec<Ns>,
}

impl NsSet {
    /// Creates every namespace in `names` (none may exist yet).
    pub fn create(names: &[String]) -> Result<NsSet> {
        let mut set = NsSet { list: Vec::with_capacity(names.len()) };
        // Delete whatever part was made if creation fails halfway: the
        // guard owns the names before `ip` runs.
        let pending = Pending(names.to_vec());
        ip_batch(names.iter().map(|n| format!("netns add {n}")), false)
            .context("create network namespaces")?;
        for name in names {
            let path = PathBuf::from(format!("/run/netns/{name}"));
            let file = File::open(&path).with_context(|| format!("open {}", path.display()))?;
            set.list.push(Ns { name: name.clone(), path, file });
        }
        std::mem::forget(pending);
        Ok(set)
    }
}

impl Drop for NsSet {
    fn drop(&mut self) {
        let names: Vec<String> = self.list.drain(..).map(|n| n.name).collect();
        delete(&names);
    }
}

/// Deletes namespaces made by a failed [`NsSet::create`].
struct Pending(Vec<String>);

impl Drop for Pending {
    fn drop(&mut self) {
        delete(&self.0);
    }
}

fn delete(names: &[String]) {
    if names.is_empty() {
        return;
    }
    if let Err(e) = ip_batch(names.iter().map(|n| format!("netns del {n}")), true) {
        eprintln!("weft-bench: warning: deleting namespaces: {e:#}");
    }
}

/// Runs `ip -batch -` with one command per line. With `force`, `ip` goes on
/// after a failing line (deleting a namespace that is already gone).
fn ip_batch(lines: impl Iterator<Item = String>, force: bool) -> Result<()> {
    let mut cmd = Command::new("ip");
    if force {
        cmd.arg("-force");
    }
    let mut child = cmd
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("run ip")?;
    {
        let mut stdin = child.stdin.take().expect("piped");
        let text: String = lines.map(|l| l + "\n").collect();
        stdin.write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() && !force {
        bail!("ip -batch: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Runs `f` on a fresh thread that has entered `ns`; processes spawned by
/// `f` are born in `ns`. The caller's thread never changes namespace.
pub fn in_netns<T: Send>(ns: &Ns, f: impl FnOnce() -> T + Send) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(move || {
            enter(ns)?;
            Ok(f())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("worker thread panicked"))?
    })
}

/// Moves the calling thread into `ns`. Only for threads the benchmark
/// made for this purpose: they never come back.
pub fn enter(ns: &Ns) -> Result<()> {
    // SAFETY: the fd is an open netns file owned by `ns`.
    if unsafe { libc::setns(ns.file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("enter netns {}: {}", ns.name, std::io::Error::last_os_error());
    }
    Ok(())
}

/// Runs a command inside `ns` and returns its stdout (setup and checks only,
/// never timed).
pub fn run_in(ns: &Ns, program: &str, args: &[&str]) -> Result<String> {
    let out = in_netns(ns, || Command::new(program).args(args).output())?
        .with_context(|| format!("run {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {} in {}: {}",
            args.join(" "),
            ns.name,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Number of veth interfaces in `ns` (leak check after the detach phase).
pub fn veth_count(ns: &Ns) -> Result<usize> {
    Ok(run_in(ns, "ip", &["-o", "link", "show", "type", "veth"])?.lines().count())
}
