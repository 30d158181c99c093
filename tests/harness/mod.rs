//! Test harness: sandbox "host" namespaces, container namespaces and the
//! real `weft` binary run inside them. Every namespace is a guard deleted
//! on drop, also when the test panics, so `cargo test` leaves nothing.
#![allow(dead_code)]

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

pub const WEFT: &str = env!("CARGO_BIN_EXE_weft");
/// Every namespace a test makes starts with this, so leftovers are findable.
pub const PREFIX: &str = "weft-t";

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub fn unique(tag: &str) -> String {
    format!("{PREFIX}{}-{}-{tag}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst))
}

/// A named network namespace (`ip netns add`), deleted on drop.
pub struct Netns {
    pub name: String,
    pub path: PathBuf,
    file: File,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        Netns::named(&unique(tag))
    }

    pub fn named(name: &str) -> Netns {
        run_ok(Command::new("ip").args(["netns", "add", name]));
        let path = PathBuf::from(format!("/var/run/netns/{name}"));
        let file = File::open(&path).expect("open netns");
        let ns = Netns { name: name.to_string(), path, file };
        ns.sh("ip link set lo up");
        ns
    }

    /// A command that will run inside this namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        let fd = self.file.as_raw_fd();
        // SAFETY: only setns runs between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd
    }

    /// Runs a shell snippet in the namespace; panics on failure.
    pub fn sh(&self, script: &str) -> String {
        let out = self.command("sh").args(["-c", script]).output().expect("spawn sh");
        assert!(
            out.status.success(),
            "`{script}` in {} failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a shell snippet; returns whether it succeeded.
    pub fn try_sh(&self, script: &str) -> bool {
        self.command("sh").args(["-c", script]).output().expect("spawn sh").status.success()
    }

    /// `ip -j ...` parsed.
    pub fn ip_json(&self, args: &str) -> Value {
        let out = self.sh(&format!("ip -j {args}"));
        serde_json::from_str(if out.trim().is_empty() { "[]" } else { &out }).expect("ip -j output")
    }

    pub fn ping(&self, addr: &str) -> bool {
        self.try_sh(&format!("ping -c 1 -W 2 {addr}"))
    }

    pub fn fd(&self) -> i32 {
        self.file.as_raw_fd()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

/// One simulated host: its own netns and weft state dir.
pub struct Sandbox {
    // Drop order: containers and outside first, then the host namespace
    // (which takes weft's bridges, veths and nftables table with it).
    pub containers: Vec<Netns>,
    pub outside: Option<Netns>,
    pub host: Netns,
    pub state: tempfile::TempDir,
}

pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            containers: Vec::new(),
            outside: None,
            host: Netns::new("host"),
            state: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// The weft binary with this sandbox's state dir, inside its netns.
    pub fn weft_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = self.host.command(WEFT);
        cmd.arg("--state-dir").arg(self.state.path()).args(args);
        cmd.env_remove("WEFT_FAILPOINT");
        cmd
    }

    pub fn weft(&self, args: &[&str]) -> Run {
        to_run(self.weft_cmd(args).output().expect("spawn weft"))
    }

    /// Runs weft and panics with its stderr if it fails.
    pub fn weft_ok(&self, args: &[&str]) -> String {
        let r = self.weft(args);
        assert!(r.ok, "weft {args:?} failed: {}", r.stderr);
        r.stdout
    }

    pub fn weft_json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.weft_ok(args)).expect("weft JSON output")
    }

    /// Runs weft expecting failure: returns its one-line error.
    pub fn weft_err(&self, args: &[&str]) -> String {
        let r = self.weft(args);
        assert!(!r.ok, "weft {args:?} should have failed, printed: {}", r.stdout);
        let lines: Vec<&str> = r.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected one error line, got: {}", r.stderr);
        assert!(lines[0].starts_with("weft: error: "), "unexpected error: {}", lines[0]);
        lines[0].to_string()
    }

    /// A fresh container namespace; returns its index in `containers`.
    pub fn container(&mut self, tag: &str) -> usize {
        self.containers.push(Netns::new(tag));
        self.containers.len() - 1
    }

    pub fn c(&self, i: usize) -> &Netns {
        &self.containers[i]
    }

    /// Attaches container `i` under its netns name and returns the JSON.
    pub fn attach(&self, network: &str, i: usize, extra: &[&str]) -> Value {
        let c = &self.containers[i];
        let mut args = vec!["attach", network, &c.name, "--json"];
        args.extend_from_slice(extra);
        self.weft_json(&args)
    }

    /// An "outside" netns wired to the sandbox host: the host is 203.0.113.1
    /// and routes everything else to the outside at 203.0.113.2.
    pub fn wire_outside(&mut self) -> &Netns {
        let out = Netns::new("out");
        let veth = format!("wo{}", COUNTER.fetch_add(1, Ordering::SeqCst));
        self.host.sh(&format!(
            "ip link add {veth} type veth peer name uplink netns {out} && \
             ip addr add 203.0.113.1/24 dev {veth} && ip link set {veth} up && \
             ip route add default via 203.0.113.2",
            out = out.name
        ));
        out.sh("ip addr add 203.0.113.2/24 dev uplink && ip link set uplink up");
        self.outside = Some(out);
        self.outside.as_ref().expect("just set")
    }

    /// Everything a failed command must leave untouched: links, addresses,
    /// routes, weft's nftables table and the store's contents.
    pub fn snapshot(&self) -> String {
        let kernel = self.host.sh(
            "ip -o link show | sed 's/^[0-9]*: //' | cut -d' ' -f1-3 | sort; ip -o addr | sort; \
             ip route | sort; nft list table inet weft 2>/dev/null || true",
        );
        let nets = self.weft_ok(&["network", "ls", "--json"]);
        let eps = self.weft_ok(&["endpoint", "ls", "--json"]);
        format!("{kernel}\n{nets}\n{eps}")
    }
}

fn to_run(o: Output) -> Run {
    Run {
        ok: o.status.success(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

pub fn run_ok(cmd: &mut Command) -> String {
    let o = cmd.output().expect("spawn");
    assert!(o.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}
