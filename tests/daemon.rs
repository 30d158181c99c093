//! `weft daemon`: the CLI hands attach and detach to a resident weft on
//! its state directory. The results must be the same as without it (kernel
//! state, store, errors), the CLI must run the command itself whenever the
//! daemon cannot run it exactly as the CLI would, and a dead daemon must
//! not break the CLI.

mod harness;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use harness::{eventually, one_error_line, to_run, Netns, Run, Sandbox, WEFT};

/// A `weft daemon` running in the sandbox host; killed on drop.
struct Daemon {
    child: Child,
    sock: PathBuf,
}

impl Daemon {
    fn start(sb: &Sandbox) -> Daemon {
        Daemon::start_with(sb, &[])
    }

    /// With extra environment (test hooks: `WEFT_FAILPOINT`).
    fn start_with(sb: &Sandbox, env: &[(&str, &str)]) -> Daemon {
        let child = sb
            .weft_cmd(&["daemon"])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn weft daemon");
        let sock = sb.state_dir().join("weft.sock");
        let d = Daemon { child, sock };
        // Connectable, not just present: a killed daemon leaves its file.
        eventually("the daemon listens", || {
            std::os::unix::net::UnixStream::connect(&d.sock).is_ok()
        });
        d
    }

    fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// SIGTERM, then how long the daemon took to exit (None: not within `limit`).
    fn stop_within(&mut self, limit: Duration) -> Option<Duration> {
        self.signal(libc::SIGTERM);
        self.exit_within(limit)
    }

    fn exit_within(&mut self, limit: Duration) -> Option<Duration> {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Some(t0.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal(libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// weft in the sandbox with `WEFT_DAEMON` set to `mode`.
fn weft_with(sb: &Sandbox, mode: &str, args: &[&str]) -> Run {
    to_run(sb.weft_cmd(args).env("WEFT_DAEMON", mode).output().expect("spawn weft"))
}

fn required(sb: &Sandbox, args: &[&str]) -> Run {
    weft_with(sb, "require", args)
}

#[test]
fn attach_and_detach_through_the_daemon_build_and_remove_the_same_network() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "dn", "--subnet", "10.61.0.0/24"]);
    let daemon = Daemon::start(&sb);
    let (a, b) = (sb.container("a"), sb.container("b"));

    let mut eps = Vec::new();
    for i in [a, b] {
        let r = required(&sb, &["attach", "dn", &sb.c(i).name.clone(), "--json"]);
        assert!(r.ok, "attach through the daemon: {}", r.stderr);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("attach --json");
        for field in ["container", "network", "ifname", "address", "mac", "gateway", "host_veth"] {
            assert!(v[field].is_string(), "{field} missing in {v}");
        }
        eps.push(v);
    }
    // The kernel state of a plain attach: host end a port of the bridge,
    // the seed's two routes in the container, and the two reach each other.
    for (i, ep) in [a, b].into_iter().zip(&eps) {
        let veth = ep["host_veth"].as_str().unwrap();
        let link = sb.host.ip_json(&format!("link show {veth}"));
        assert_eq!(link[0]["master"], "weft-dn", "{veth} not on the bridge");
        let routes = sb.c(i).ip_json("route show");
        let dsts: HashSet<&str> =
            routes.as_array().unwrap().iter().filter_map(|r| r["dst"].as_str()).collect();
        assert_eq!(dsts, HashSet::from(["default", "10.61.0.0/24"]), "routes: {routes}");
    }
    let addr_b = eps[1]["address"].as_str().unwrap().split('/').next().unwrap().to_string();
    assert!(sb.c(a).ping(&addr_b), "a cannot reach b");
    assert_eq!(sb.endpoints().len(), 2);

    // Errors come back as the CLI's own: one line, non-zero, nothing left.
    let e = one_error_line(&required(&sb, &["attach", "nope", &sb.c(a).name.clone()]));
    assert!(e.contains("network nope does not exist"), "{e}");
    let e = one_error_line(&required(&sb, &["attach", "dn", &sb.c(a).name.clone()]));
    assert!(e.contains("already"), "{e}");
    assert_eq!(sb.endpoints().len(), 2);

    for (i, ep) in [a, b].into_iter().zip(&eps) {
        let r = required(&sb, &["detach", "dn", &sb.c(i).name.clone()]);
        assert!(r.ok, "detach through the daemon: {}", r.stderr);
        let veth = ep["host_veth"].as_str().unwrap().to_string();
        eventually("the daemon's reaper deletes the pair", || !sb.has_link(&veth));
    }
    assert!(sb.endpoints().is_empty(), "records left: {:?}", sb.endpoints());
    drop(daemon);
}

#[test]
fn a_relative_netns_path_is_the_clients() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "rn", "--subnet", "10.62.0.0/24"]);
    let _daemon = Daemon::start(&sb);
    let c = sb.container("c");
    let name = sb.c(c).name.clone();
    let out = sb
        .weft_cmd(&["attach", "rn", "x", "--netns", &name])
        .env("WEFT_DAEMON", "require")
        .current_dir("/var/run/netns")
        .output()
        .expect("spawn weft");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(sb.c(c).ip_json("addr show eth0")[0]["addr_info"][0]["local"], "10.62.0.2");
}

#[test]
fn the_cli_runs_the_command_itself_when_the_daemon_cannot() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "fn", "--subnet", "10.63.0.0/24"]);
    let mut daemon = Daemon::start(&sb);
    let c = sb.container("c");
    let name = sb.c(c).name.clone();

    // A client in another network namespace: the daemon refuses, and the
    // CLI says so with WEFT_DAEMON=require.
    let other = Netns::new("other");
    let r = to_run(
        other
            .command(WEFT)
            .args(["--state-dir", sb.state_dir().to_str().unwrap(), "attach", "fn", &name])
            .env("WEFT_DAEMON", "require")
            .output()
            .expect("spawn weft"),
    );
    let e = one_error_line(&r);
    assert!(e.contains("another network namespace"), "{e}");
    assert!(sb.endpoints().is_empty());

    // Other commands are never handed over.
    let e = one_error_line(&required(&sb, &["network", "ls"]));
    assert!(e.contains("only attach and detach"), "{e}");

    // A daemon killed hard leaves its socket file behind: the CLI runs
    // the command itself, and `require` reports the dead daemon.
    daemon.signal(libc::SIGKILL);
    let _ = daemon.child.wait();
    assert!(daemon.sock.exists(), "a killed daemon cannot remove its socket");
    let e = one_error_line(&required(&sb, &["attach", "fn", &name]));
    assert!(e.contains("no daemon"), "{e}");
    let r = weft_with(&sb, "auto", &["attach", "fn", &name, "--json"]);
    assert!(r.ok, "attach without a live daemon: {}", r.stderr);
    assert_eq!(sb.endpoints().len(), 1);

    // A new daemon replaces the stale socket.
    drop(daemon);
    let daemon = Daemon::start(&sb);
    let r = required(&sb, &["detach", "fn", &name]);
    assert!(r.ok, "{}", r.stderr);
    assert!(sb.endpoints().is_empty());

    // SIGTERM: the daemon stops and removes its socket.
    daemon.signal(libc::SIGTERM);
    let t0 = Instant::now();
    while daemon.sock.exists() {
        assert!(t0.elapsed() < Duration::from_secs(3), "socket still there after SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_second_daemon_on_the_same_state_dir_is_refused() {
    let sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "sn", "--subnet", "10.64.0.0/24"]);
    let _daemon = Daemon::start(&sb);
    let e = sb.weft_err(&["daemon"]);
    assert!(e.contains("already serves"), "{e}");
}

#[test]
fn parallel_clients_get_distinct_addresses_through_the_daemon() {
    const WORKERS: usize = 4;
    const PER: usize = 25;
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "pn", "--subnet", "10.65.0.0/24"]);
    let _daemon = Daemon::start(&sb);
    for i in 0..WORKERS * PER {
        sb.container(&format!("p{i}"));
    }
    let failures: Vec<String> = std::thread::scope(|s| {
        let sb = &sb;
        let handles: Vec<_> = (0..WORKERS)
            .map(|w| {
                s.spawn(move || {
                    let mut failed = Vec::new();
                    for i in (w * PER)..((w + 1) * PER) {
                        let r = required(sb, &["attach", "pn", &sb.c(i).name]);
                        if !r.ok {
                            failed.push(r.stderr);
                        }
                    }
                    failed
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("worker")).collect()
    });
    assert!(failures.is_empty(), "failures: {failures:?}");
    let eps = sb.endpoints();
    let addrs: HashSet<&str> = eps.iter().filter_map(|e| e["address"].as_str()).collect();
    assert_eq!(addrs.len(), WORKERS * PER, "addresses not distinct");
    let ports = sb.host.ip_json("link show master weft-pn");
    assert_eq!(ports.as_array().map(Vec::len), Some(WORKERS * PER));
}

#[test]
fn stopping_the_daemon_lets_running_commands_finish() {
    const N: usize = 12;
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "tn", "--subnet", "10.66.0.0/24"]);
    let daemon = Daemon::start(&sb);
    for i in 0..N {
        sb.container(&format!("t{i}"));
    }
    // Attaches race the SIGTERM: each is served by the daemon, which
    // finishes it before exiting, or finds no daemon and runs locally.
    let results: Vec<Run> = std::thread::scope(|s| {
        let sb = &sb;
        let handles: Vec<_> = (0..N)
            .map(|i| s.spawn(move || weft_with(sb, "auto", &["attach", "tn", &sb.c(i).name])))
            .collect();
        std::thread::sleep(Duration::from_millis(5));
        daemon.signal(libc::SIGTERM);
        handles.into_iter().map(|h| h.join().expect("attach thread")).collect()
    });
    for r in &results {
        assert!(r.ok, "attach failed: {}", r.stderr);
    }
    let eps = sb.endpoints();
    assert_eq!(eps.len(), N);
    assert!(eps.iter().all(|e| e["state"] == "ready"), "half-done endpoints: {eps:?}");
    let ports = sb.host.ip_json("link show master weft-tn");
    assert_eq!(ports.as_array().map(Vec::len), Some(N));
}

#[test]
fn cni_add_and_del_through_the_daemon() {
    let mut sb = Sandbox::new();
    // No network yet: the first ADD makes it, inside the daemon.
    let _daemon = Daemon::start(&sb);
    let c = sb.container("c");
    let ns = sb.c(c).path.to_str().unwrap().to_string();
    let conf = serde_json::json!({"cniVersion": "1.0.0", "name": "cn", "type": "weft", "subnet": "10.67.0.0/24"});
    let env = |cmd: &'static str, id: &'static str| {
        vec![
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", id),
            ("CNI_NETNS", ns.as_str()),
            ("CNI_IFNAME", "eth0"),
            ("WEFT_DAEMON", "require"),
        ]
    };
    let r = sb.cni(&env("ADD", "ctr1"), &conf);
    assert!(r.ok, "ADD through the daemon: {} {}", r.raw, r.stderr);
    assert_eq!(r.stdout["cniVersion"], "1.0.0");
    assert_eq!(r.stdout["ips"][0]["address"], "10.67.0.2/24", "{}", r.raw);
    assert_eq!(sb.c(c).ip_json("addr show eth0")[0]["addr_info"][0]["local"], "10.67.0.2");
    assert_eq!(sb.host.ip_json("link show master weft-cn").as_array().map(Vec::len), Some(1));

    // A failure comes back as the plugin's error JSON, nothing left.
    let r = sb.cni(&env("ADD", "ctr2"), &conf);
    assert!(!r.ok, "second eth0 in the same namespace: {}", r.raw);
    assert!(r.stdout["code"].is_number() && r.stdout["msg"].is_string(), "{}", r.raw);
    assert_eq!(sb.endpoints().len(), 1);

    let r = sb.cni(&env("DEL", "ctr1"), &conf);
    assert!(r.ok && r.raw.trim().is_empty(), "DEL through the daemon: {} {}", r.raw, r.stderr);
    assert!(sb.endpoints().is_empty());
    eventually("eth0 is gone from the container", || !sb.c(c).try_sh("ip link show eth0"));
}

/// `weft ARGS` with WEFT_DAEMON=require, killed if it has not ended within
/// `limit`: Some(result), or None for a command that hung.
fn required_within(sb: &Sandbox, args: &[&str], limit: Duration) -> Option<Run> {
    let mut child = sb
        .weft_cmd(args)
        .env("WEFT_DAEMON", "require")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn weft");
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if let Ok(Some(_)) = child.try_wait() {
            return Some(to_run(child.wait_with_output().expect("weft output")));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Clients that connect and send nothing, or half a request, hold nobody
/// up (more of them than the daemon has threads for slow clients): the
/// next attach goes through the daemon at once, and the daemon lets the
/// idle ones go (a read timeout, or declined at once).
#[test]
fn idle_clients_never_stall_others() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "in", "--subnet", "10.68.0.0/24"]);
    let daemon = Daemon::start(&sb);
    let c = sb.container("c");
    let mut idle: Vec<UnixStream> =
        (0..80).map(|_| UnixStream::connect(&daemon.sock).expect("connect")).collect();
    for _ in 0..4 {
        let mut s = UnixStream::connect(&daemon.sock).expect("connect");
        s.write_all(br#"{"version":"#).unwrap();
        idle.push(s);
    }
    std::thread::sleep(Duration::from_millis(100));
    let t0 = Instant::now();
    let r = required_within(&sb, &["attach", "in", &sb.c(c).name.clone()], Duration::from_secs(8))
        .expect("attach hung behind idle clients");
    assert!(r.ok, "attach through the daemon: {}", r.stderr);
    let took = t0.elapsed();
    eprintln!("attach took {took:?} with {} idle clients", idle.len());
    assert!(took < Duration::from_secs(2), "attach took {took:?}");
    assert_eq!(sb.endpoints().len(), 1);
    // Each idle client is let go, with nothing run for it.
    let t0 = Instant::now();
    for mut s in idle {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut reply = Vec::new();
        let _ = s.read_to_end(&mut reply);
        assert!(t0.elapsed() < Duration::from_secs(10), "an idle client was kept");
    }
    assert_eq!(sb.endpoints().len(), 1);
}

/// A request that never ends is cut off at a size limit, not read (and
/// held in memory) without end; the daemon goes on serving.
#[test]
fn requests_have_a_size_limit() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "zn", "--subnet", "10.69.0.0/24"]);
    let daemon = Daemon::start(&sb);
    let mut s = UnixStream::connect(&daemon.sock).expect("connect");
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    // Whitespace: a JSON parser would take all of it before a value.
    let chunk = vec![b' '; 64 * 1024];
    let mut written = 0usize;
    while written < 64 << 20 {
        match s.write(&chunk) {
            Ok(n) => written += n,
            Err(_) => break,
        }
    }
    eprintln!("the daemon took {written} bytes of an endless request");
    assert!(written < 4 << 20, "the daemon read {written} bytes of one request");
    let c = sb.container("c");
    let r = required(&sb, &["attach", "zn", &sb.c(c).name.clone()]);
    assert!(r.ok, "attach after the endless request: {}", r.stderr);
}

/// The device and inode of `path`, as the daemon's requests carry them.
fn file_id(path: &Path) -> serde_json::Value {
    let m = std::fs::metadata(path).expect("stat");
    serde_json::json!({"dev": m.dev(), "ino": m.ino()})
}

/// The reproduced hole: a client gave up on its command (it waited long
/// behind others and said it failed), and the daemon ran it later anyway.
/// Here a client sends a whole attach request and leaves at once, as a
/// client that timed out does: the daemon must never run it.
#[test]
fn a_command_whose_client_left_never_runs() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "ln", "--subnet", "10.70.0.0/24"]);
    let daemon = Daemon::start(&sb);
    let c = sb.container("c");
    let name = sb.c(c).name.clone();
    let state_dir = sb.state_dir().to_str().unwrap().to_string();
    let request = serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "args": [WEFT, "--state-dir", state_dir, "attach", "ln", name],
        "state_dir": state_dir,
        "cwd": "/",
        "net_ns": file_id(&sb.host.path)["ino"],
        "state_dir_id": file_id(sb.state_dir()),
        "container_ns": file_id(&sb.c(c).path),
        "cni": null,
    });
    let mut s = UnixStream::connect(&daemon.sock).expect("connect");
    let mut line = serde_json::to_vec(&request).unwrap();
    line.push(b'\n');
    s.write_all(&line).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    drop(s);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(sb.endpoints().is_empty(), "the daemon ran a command its client left");
    assert!(!sb.c(c).try_sh("ip link show eth0"), "eth0 appeared in the container");
    // The same request from a client that stays is run (the request was good).
    let r = required(&sb, &["attach", "ln", &name]);
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(sb.endpoints().len(), 1);
}

/// A bug that panics in the middle of a command: the client is told the
/// outcome is unknown and how to check, the daemon serves the next
/// command, and stops promptly.
#[test]
fn a_panic_in_a_command_is_reported_as_unknown_and_costs_nothing_else() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "pn2", "--subnet", "10.71.0.0/24"]);
    let mut daemon = Daemon::start_with(&sb, &[("WEFT_FAILPOINT", "daemon-job")]);
    let (a, b) = (sb.container("a"), sb.container("b"));
    let e = one_error_line(&required(&sb, &["attach", "pn2", &sb.c(a).name.clone()]));
    assert!(e.contains("unknown") && e.contains("weft endpoint ls"), "{e}");
    let r = required(&sb, &["attach", "pn2", &sb.c(b).name.clone()]);
    assert!(r.ok, "the next attach: {}", r.stderr);
    let took = daemon.stop_within(Duration::from_secs(5)).expect("the daemon did not stop");
    assert!(took < Duration::from_secs(2), "stopping took {took:?}");
}

/// A panic in a thread serving a stopping daemon's backlog: the daemon
/// still stops as soon as the commands it runs are done (not after its
/// 30 s drain limit), and the client whose thread panicked runs its
/// command itself (nothing was run for it).
#[test]
fn a_panic_while_draining_does_not_stall_shutdown() {
    const BUSY: usize = 8;
    const WAITING: usize = 3;
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "dr", "--subnet", "10.72.0.0/24"]);
    let mut daemon = Daemon::start_with(&sb, &[("WEFT_FAILPOINT", "daemon-drain")]);
    for i in 0..BUSY + WAITING {
        sb.container(&format!("d{i}"));
    }
    // Another process holds the store's write lock: the workers' attaches
    // wait for it, so the next clients wait in the listen backlog.
    let db = rusqlite::Connection::open(sb.state_dir().join("weft.db")).expect("open the store");
    db.execute_batch("BEGIN IMMEDIATE").expect("lock the store");
    let results: Vec<Run> = std::thread::scope(|s| {
        let sb = &sb;
        let mut handles = Vec::new();
        // `auto` everywhere: whichever client's thread panics runs its
        // command itself (the order of connections is the scheduler's).
        for i in 0..BUSY {
            handles.push(s.spawn(move || weft_with(sb, "auto", &["attach", "dr", &sb.c(i).name])));
        }
        std::thread::sleep(Duration::from_millis(1500));
        for i in BUSY..BUSY + WAITING {
            handles.push(s.spawn(move || weft_with(sb, "auto", &["attach", "dr", &sb.c(i).name])));
        }
        std::thread::sleep(Duration::from_millis(800));
        daemon.signal(libc::SIGTERM);
        std::thread::sleep(Duration::from_millis(300));
        db.execute_batch("ROLLBACK").expect("unlock the store");
        let took = daemon.exit_within(Duration::from_secs(10));
        assert!(
            took.is_some_and(|t| t < Duration::from_secs(5)),
            "the daemon stopped {took:?} after its commands could finish"
        );
        handles.into_iter().map(|h| h.join().expect("attach thread")).collect()
    });
    for r in &results {
        assert!(r.ok, "attach failed: {}", r.stderr);
    }
    let mut log = String::new();
    daemon.child.stderr.take().expect("piped").read_to_string(&mut log).unwrap();
    assert!(log.contains("failpoint daemon-drain"), "no drain thread panicked: {log}");
    let eps = sb.endpoints();
    assert_eq!(eps.len(), BUSY + WAITING);
    assert!(eps.iter().all(|e| e["state"] == "ready"), "half-done endpoints: {eps:?}");
}
