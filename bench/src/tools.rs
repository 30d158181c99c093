//! The two tools under test and how one operation of each is invoked: a
//! whole process per operation, as a container runtime runs a CNI plugin.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::sandbox::{self, Ns};

/// Same minimal environment for both tools.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The network's name for both tools.
pub const NETWORK: &str = "benchnet";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Op {
    Attach,
    Detach,
}

pub enum Tool {
    Weft {
        bin: PathBuf,
        state_dir: PathBuf,
        /// Invoke weft as a CNI plugin (env + this config on stdin) rather
        /// than through its CLI.
        cni_conf: Option<String>,
        /// Some: the CLI hands its commands to `weft daemon` (started in
        /// `setup`, stopped when the tool is dropped).
        daemon: Option<Daemon>,
    },
    /// The reference CNI `bridge` plugin with `host-local` IPAM.
    Cni { cni_path: PathBuf, conf: String },
}

/// A container: a pre-created network namespace and an id.
pub struct Container<'a> {
    pub id: String,
    pub ns: &'a Ns,
}

/// One timed operation.
#[derive(Clone, Debug)]
pub struct Sample {
    /// When it started, since the start of the workload.
    pub start: Duration,
    pub dur: Duration,
    /// CPU time (user + system) the operation's processes used.
    pub cpu: Duration,
    pub ok: bool,
    /// First line of stderr when it failed.
    pub error: Option<String>,
    /// The address the container got (attach only).
    pub addr: Option<String>,
}

/// A running `weft daemon`.
#[derive(Default)]
pub struct Daemon {
    child: std::sync::Mutex<Option<std::process::Child>>,
    pid: std::sync::atomic::AtomicI32,
}

impl Daemon {
    /// CPU time the daemon has used so far (all its threads, also those
    /// that ended): its share of an operation is the difference.
    fn cpu(&self) -> Duration {
        let pid = self.pid.load(std::sync::atomic::Ordering::SeqCst);
        let mut clock: libc::clockid_t = 0;
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: plain out-pointers to locals; pid is our child.
        unsafe {
            if pid <= 0
                || libc::clock_getcpuclockid(pid, &mut clock) != 0
                || libc::clock_gettime(clock, &mut ts) != 0
            {
                return Duration::ZERO;
            }
        }
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.lock().ok().and_then(|mut c| c.take()) {
            // SAFETY: signalling our own child, not yet reaped.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
            let _ = c.wait();
        }
    }
}

impl Tool {
    pub fn weft(bin: &Path, state_dir: &Path, via_cni: bool, subnet: &str, daemon: bool) -> Tool {
        let cni_conf = via_cni.then(|| {
            serde_json::json!({
                "cniVersion": "1.0.0",
                "name": NETWORK,
                "type": "weft",
                "subnet": subnet,
                "stateDir": state_dir,
            })
            .to_string()
        });
        Tool::Weft {
            bin: bin.to_path_buf(),
            state_dir: state_dir.to_path_buf(),
            cni_conf,
            daemon: daemon.then(Daemon::default),
        }
    }

    /// ipMasq and isGateway on, a /16, host-local keeping its leases in
    /// `data_dir`, a default route like weft's.
    pub fn cni(cni_path: &Path, subnet: &str, data_dir: &Path) -> Tool {
        let conf = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": NETWORK,
            "type": "bridge",
            "bridge": "cnibench0",
            "isGateway": true,
            "ipMasq": true,
            "ipam": {
                "type": "host-local",
                "subnet": subnet,
                "dataDir": data_dir,
                "routes": [{ "dst": "0.0.0.0/0" }],
            },
        });
        Tool::Cni { cni_path: cni_path.to_path_buf(), conf: conf.to_string() }
    }

    pub fn key(&self) -> &'static str {
        match self {
            Tool::Weft { daemon: None, .. } => "weft",
            Tool::Weft { daemon: Some(_), .. } => "weftd",
            Tool::Cni { .. } => "cni",
        }
    }

    /// Untimed setup inside the sandbox host: weft needs its network made
    /// first; the CNI plugin makes its bridge on the first ADD.
    pub fn setup(&self, host: &Ns, subnet: &str) -> Result<()> {
        match self {
            Tool::Weft { bin, state_dir, daemon, .. } => {
                let bin_s = bin.to_string_lossy();
                let dir = state_dir.to_string_lossy();
                sandbox::run_in(
                    host,
                    &bin_s,
                    &["--state-dir", &dir, "network", "create", NETWORK, "--subnet", subnet],
                )?;
                if let Some(d) = daemon {
                    start_daemon(host, bin, state_dir, d)?;
                }
                Ok(())
            }
            Tool::Cni { .. } => Ok(()),
        }
    }

    fn command(&self, op: Op, c: &Container) -> (Command, Option<&[u8]>) {
        match self {
            Tool::Weft { bin, cni_conf: Some(conf), daemon, .. } => {
                let mut cmd = Command::new(bin);
                cni_env(&mut cmd, op, c, Path::new("/usr/lib/cni"));
                cmd.env("WEFT_DAEMON", if daemon.is_some() { "require" } else { "off" });
                (cmd, Some(conf.as_bytes()))
            }
            Tool::Weft { bin, state_dir, cni_conf: None, daemon } => {
                let mut cmd = Command::new(bin);
                cmd.env_clear().env("PATH", PATH).arg("--state-dir").arg(state_dir);
                // Through the daemon or not at all: a silent fallback would
                // measure the other mode.
                cmd.env("WEFT_DAEMON", if daemon.is_some() { "require" } else { "off" });
                match op {
                    Op::Attach => {
                        cmd.args(["attach", NETWORK, &c.id, "--json", "--netns"]).arg(&c.ns.path)
                    }
                    Op::Detach => cmd.args(["detach", NETWORK, &c.id]),
                };
                (cmd, None)
            }
            Tool::Cni { cni_path, conf } => {
                let mut cmd = Command::new(cni_path.join("bridge"));
                cni_env(&mut cmd, op, c, cni_path);
                (cmd, Some(conf.as_bytes()))
            }
        }
    }

    /// Runs one operation as a whole process and times it, from before the
    /// spawn to after its exit and output. Must run on a thread inside the
    /// tool's sandbox host (see `sandbox::in_netns`).
    pub fn run(&self, op: Op, c: &Container, epoch: Instant) -> Sample {
        let (mut cmd, input) = self.command(op, c);
        cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let daemon = match self {
            Tool::Weft { daemon: Some(d), .. } => Some(d),
            _ => None,
        };
        let daemon_cpu0 = daemon.map(Daemon::cpu);
        let t0 = Instant::now();
        let mut result = spawn_and_reap(&mut cmd, input);
        let dur = t0.elapsed();
        let start = t0.duration_since(epoch);
        if let (Some(d), Some(c0), Ok(done)) = (daemon, daemon_cpu0, result.as_mut()) {
            done.cpu += d.cpu().saturating_sub(c0);
        }
        match result {
            Ok(done) if done.success => Sample {
                start,
                dur,
                cpu: done.cpu,
                ok: true,
                error: None,
                addr: (op == Op::Attach).then(|| self.address(&done.stdout)).flatten(),
            },
            Ok(done) => Sample {
                start,
                dur,
                cpu: done.cpu,
                ok: false,
                error: Some(format!("{}: {}", done.status, first_line(&done.stderr, &done.stdout))),
                addr: None,
            },
            Err(e) => Sample {
                start,
                dur,
                cpu: Duration::ZERO,
                ok: false,
                error: Some(format!("{e:#}")),
                addr: None,
            },
        }
    }

    /// The container's address from the tool's output (weft's `--json`
    /// endpoint, the CNI result's first IP).
    fn address(&self, stdout: &[u8]) -> Option<String> {
        let v: serde_json::Value = serde_json::from_slice(stdout).ok()?;
        let a = match self {
            Tool::Weft { cni_conf: None, .. } => &v["address"],
            Tool::Weft { .. } => &v["ips"][0]["address"],
            Tool::Cni { .. } => &v["ips"][0]["address"],
        };
        a.as_str().map(str::to_string)
    }
}

/// The CNI protocol's environment for one ADD (attach) or DEL (detach).
fn cni_env(cmd: &mut Command, op: Op, c: &Container, cni_path: &Path) {
    cmd.env_clear()
        .env("PATH", PATH)
        .env(
            "CNI_COMMAND",
            match op {
                Op::Attach => "ADD",
                Op::Detach => "DEL",
            },
        )
        .env("CNI_CONTAINERID", &c.id)
        .env("CNI_NETNS", &c.ns.path)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", cni_path);
}

fn first_line(stderr: &[u8], stdout: &[u8]) -> String {
    let text = String::from_utf8_lossy(if stderr.is_empty() { stdout } else { stderr });
    text.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string()
}

struct Done {
    success: bool,
    status: String,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// User + system CPU time of the process and the children it waited
    /// for (the reference plugin's host-local and iptables), from wait4.
    cpu: Duration,
}

/// Spawns, feeds stdin, reads the (small) outputs, and reaps the process
/// with wait4 to get its CPU time as well.
fn spawn_and_reap(cmd: &mut Command, input: Option<&[u8]>) -> Result<Done> {
    let mut child = cmd.spawn().context("spawn")?;
    if let Some(bytes) = input {
        let mut stdin = child.stdin.take().expect("piped");
        stdin.write_all(bytes).context("write config")?;
    }
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    // Outputs are a few hundred bytes: reading one pipe to the end, then
    // the other, cannot fill a pipe buffer and deadlock.
    child.stdout.take().expect("piped").read_to_end(&mut stdout)?;
    child.stderr.take().expect("piped").read_to_end(&mut stderr)?;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data; zeroed is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pid is our child, not reaped yet (std's Child is never
        // waited on); status and ru are valid out-pointers.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err).context("wait4");
        }
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let exited = libc::WIFEXITED(status);
    Ok(Done {
        success: exited && libc::WEXITSTATUS(status) == 0,
        status: if exited {
            format!("exit {}", libc::WEXITSTATUS(status))
        } else {
            format!("signal {}", libc::WTERMSIG(status))
        },
        stdout,
        stderr,
        cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
    })
}

/// Starts `weft daemon` in the sandbox host and waits for its socket.
fn start_daemon(host: &Ns, bin: &Path, state_dir: &Path, d: &Daemon) -> Result<()> {
    let child = sandbox::in_netns(host, || {
        Command::new(bin)
            .env_clear()
            .env("PATH", PATH)
            .arg("--state-dir")
            .arg(state_dir)
            .arg("daemon")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawn weft daemon")
    })??;
    d.pid.store(child.id() as i32, std::sync::atomic::Ordering::SeqCst);
    *d.child.lock().expect("not poisoned") = Some(child);
    let sock = state_dir.join("weft.sock");
    let t0 = Instant::now();
    while !sock.exists() {
        if t0.elapsed() > Duration::from_secs(5) {
            bail!("weft daemon did not create {}", sock.display());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Checks that `bin` exists and is executable before anything is built.
pub fn check_executable(bin: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(bin) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(()),
        Ok(_) => bail!("{} is not an executable file", bin.display()),
        Err(e) => bail!("{}: {e}", bin.display()),
    }
}
