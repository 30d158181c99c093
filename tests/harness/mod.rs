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

pub mod cluster;
pub mod tls;

pub const WEFT: &str = env!("CARGO_BIN_EXE_weft");
/// Every namespace a test makes starts with this, so leftovers are findable.
pub const PREFIX: &str = "weft-t";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Fails the test, naming the Debian package, when `cmd` is not on PATH: a
/// test that passes without what it checks proves nothing. `scripts/deps
/// --test` installs them all.
pub fn require(cmd: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()));
    assert!(
        found,
        "{cmd} is not installed: apt-get install {package} (or run scripts/deps --test)"
    );
}

/// What every sandbox test runs: iproute2, ping, nft, and root.
fn require_basics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: geteuid cannot fail and takes no pointers.
        let root = unsafe { libc::geteuid() } == 0;
        assert!(root, "the end-to-end tests build network namespaces: run them as root");
        require("ip", "iproute2");
        require("ping", "iputils-ping");
        require("nft", "nftables");
    });
}

/// Waits up to 3 s for `cond`; panics with `what` if it never holds. For
/// what weft finishes in the background (a detached veth pair is deleted
/// by a reaper process, ~20 ms after the command returns).
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "still not true after 3 s: {what}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

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
        require_basics();
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

    /// Runs `f` on a thread of its own inside this namespace; the caller
    /// keeps `self` open until the thread is joined.
    pub fn spawn_in<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let fd = self.fd();
        std::thread::spawn(move || {
            // SAFETY: the namespace's fd stays open while the thread runs
            // (see above); setns moves only this thread.
            assert_eq!(unsafe { libc::setns(fd, libc::CLONE_NEWNET) }, 0, "setns");
            f()
        })
    }

    /// [`Netns::spawn_in`], waited for.
    pub fn run_in<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.spawn_in(f).join().expect("thread in namespace")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
        // weft attach writes /etc/netns/NAME/resolv.conf for a named
        // namespace; a test that drops its containers without detaching
        // them leaves it, so the guard removes it (test names are unique).
        if self.name.starts_with(PREFIX) {
            let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(&self.name));
        }
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
        one_error_line(&r)
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
    /// routes, weft's nftables table and the store's contents. (An IPv6
    /// address's `tentative` flag goes by itself once DAD is done.)
    pub fn snapshot(&self) -> String {
        let kernel = self.host.sh(
            "ip -o link show | sed 's/^[0-9]*: //' | cut -d' ' -f1-3 | sort; ip -o addr | sed 's/ tentative//' | sort; \
             ip route | sort; nft list table inet weft 2>/dev/null || true",
        );
        let nets = self.weft_ok(&["network", "ls", "--json"]);
        let eps = self.weft_ok(&["endpoint", "ls", "--json"]);
        format!("{kernel}\n{nets}\n{eps}")
    }
}

/// The failed run's error: exactly one line, `weft: error: ...`.
pub fn one_error_line(r: &Run) -> String {
    assert!(!r.ok, "should have failed, printed: {}", r.stdout);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {}", r.stderr);
    assert!(lines[0].starts_with("weft: error: "), "unexpected error: {}", lines[0]);
    lines[0].to_string()
}

pub fn to_run(o: Output) -> Run {
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

// ---- Additions for robustness, NAT/isolation and concurrency tests ----

impl Sandbox {
    /// `weft endpoint ls --json` as an array.
    pub fn endpoints(&self) -> Vec<Value> {
        self.weft_json(&["endpoint", "ls", "--json"]).as_array().expect("endpoint array").clone()
    }

    /// weft's nftables table (`nft -j list table inet weft`) as its list of
    /// objects; empty when the table does not exist.
    pub fn nft_objects(&self) -> Vec<Value> {
        let out = self.host.command("nft").args(["-j", "list", "table", "inet", "weft"]).output();
        let out = out.expect("spawn nft");
        if !out.status.success() {
            return Vec::new();
        }
        let v: Value = serde_json::from_slice(&out.stdout).expect("nft -j output");
        v["nftables"].as_array().cloned().unwrap_or_default()
    }

    /// Number of rules in weft's table.
    pub fn nft_rule_count(&self) -> usize {
        self.nft_objects().iter().filter(|o| o.get("rule").is_some()).count()
    }

    /// The elements of set `name` in weft's table, each flattened to a
    /// string ("weft-a", "weft-a . weft-a", "10.0.0.0/24"). None when the
    /// set (or the table) does not exist.
    pub fn nft_set(&self, name: &str) -> Option<Vec<String>> {
        let objs = self.nft_objects();
        let set = objs.iter().find_map(|o| o.get("set").filter(|s| s["name"] == name))?;
        Some(
            set["elem"].as_array().map(|a| a.iter().map(flatten_nft).collect()).unwrap_or_default(),
        )
    }

    /// The host namespace's links, `ip -j link show` parsed.
    pub fn host_links(&self) -> Vec<Value> {
        self.host.ip_json("link show").as_array().expect("link array").clone()
    }

    /// Names of the host namespace's links.
    pub fn host_link_names(&self) -> Vec<String> {
        self.host_links().iter().filter_map(|l| l["ifname"].as_str().map(String::from)).collect()
    }

    pub fn has_link(&self, name: &str) -> bool {
        self.host_link_names().iter().any(|n| n == name)
    }
}

/// An nft JSON set element as one string.
fn flatten_nft(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Object(o) => {
            if let Some(c) = o.get("concat").and_then(Value::as_array) {
                c.iter().map(flatten_nft).collect::<Vec<_>>().join(" . ")
            } else if let Some(p) = o.get("prefix") {
                format!("{}/{}", flatten_nft(&p["addr"]), p["len"])
            } else if let Some(e) = o.get("elem") {
                flatten_nft(&e["val"])
            } else if let Some(r) = o.get("range").and_then(Value::as_array) {
                r.iter().map(flatten_nft).collect::<Vec<_>>().join("-")
            } else {
                v.to_string()
            }
        }
        _ => v.to_string(),
    }
}

/// A TCP server on a thread inside a namespace: it listens on `addr` and
/// waits up to `wait` for one connection. `accepted()` says who connected
/// (the source address the server saw) and what was sent, or None.
pub struct TcpProbe {
    pub addr: std::net::SocketAddr,
    handle: Option<std::thread::JoinHandle<Option<(std::net::SocketAddr, String)>>>,
}

impl TcpProbe {
    pub fn listen(ns: &Netns, addr: &str, wait: std::time::Duration) -> TcpProbe {
        use std::io::Read;
        let fd = ns.fd();
        let addr: std::net::SocketAddr = addr.parse().expect("socket address");
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = std::thread::spawn(move || {
            // SAFETY: fd stays open while the caller holds `ns`; setns only
            // moves this short-lived thread.
            if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
                let _ = tx.send(Err(std::io::Error::last_os_error()));
                return None;
            }
            // The previous connection on this port may still be closing
            // (its socket lingers a moment after both ends closed): retry.
            let start = std::time::Instant::now();
            let listener = loop {
                match std::net::TcpListener::bind(addr) {
                    Ok(l) => break l,
                    Err(e)
                        if e.kind() == std::io::ErrorKind::AddrInUse
                            && start.elapsed() < std::time::Duration::from_secs(3) =>
                    {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return None;
                    }
                }
            };
            listener.set_nonblocking(true).expect("nonblocking");
            let _ = tx.send(Ok(()));
            let deadline = std::time::Instant::now() + wait;
            while std::time::Instant::now() < deadline {
                match listener.accept() {
                    Ok((mut s, peer)) => {
                        s.set_nonblocking(false).expect("blocking");
                        s.set_read_timeout(Some(std::time::Duration::from_secs(2))).ok();
                        let mut buf = String::new();
                        let _ = s.read_to_string(&mut buf);
                        return Some((peer, buf));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                    Err(_) => return None,
                }
            }
            None
        });
        rx.recv().expect("probe thread").unwrap_or_else(|e| panic!("listen on {addr}: {e}"));
        TcpProbe { addr, handle: Some(handle) }
    }

    /// Waits for the server thread: the peer it saw and what it read.
    pub fn accepted(mut self) -> Option<(std::net::SocketAddr, String)> {
        self.handle.take().expect("joined once").join().expect("probe thread panicked")
    }
}

/// Sends one line over TCP from inside `ns` (bash's /dev/tcp), giving up
/// after `secs` seconds. Returns whether the connection was made.
pub fn tcp_send(ns: &Netns, ip: &str, port: u16, secs: u32) -> bool {
    ns.try_sh(&format!("timeout {secs} bash -c 'echo hi >/dev/tcp/{ip}/{port}'"))
}

/// What a CNI invocation printed and how it exited.
pub struct CniRun {
    pub ok: bool,
    pub stdout: serde_json::Value,
    pub raw: String,
    pub stderr: String,
}

impl Sandbox {
    /// Runs weft as a CNI plugin: `env` are the CNI_* variables, `conf`
    /// goes to stdin. `stateDir` is forced to this sandbox's.
    pub fn cni(&self, env: &[(&str, &str)], conf: &serde_json::Value) -> CniRun {
        let mut conf = conf.clone();
        if let Some(o) = conf.as_object_mut() {
            o.insert("stateDir".into(), self.state.path().display().to_string().into());
        }
        self.cni_raw(env, serde_json::to_vec(&conf).expect("json").as_slice())
    }

    pub fn cni_raw(&self, env: &[(&str, &str)], stdin: &[u8]) -> CniRun {
        use std::io::Write;
        let mut cmd = self.host.command(WEFT);
        cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
        cmd.env("CNI_PATH", "/opt/cni/bin");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("spawn weft");
        let mut input = child.stdin.take().expect("stdin");
        let data = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let out = child.wait_with_output().expect("wait weft");
        let _ = writer.join();
        let raw = String::from_utf8_lossy(&out.stdout).into_owned();
        let stdout = if raw.trim().is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&raw).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {raw}"))
        };
        CniRun {
            ok: out.status.success(),
            stdout,
            raw,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}
