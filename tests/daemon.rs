//! `weft daemon`: the CLI hands attach and detach to a resident weft on
//! its state directory. The results must be the same as without it (kernel
//! state, store, errors), the CLI must run the command itself whenever the
//! daemon cannot run it exactly as the CLI would, and a dead daemon must
//! not break the CLI.

mod harness;

use std::collections::HashSet;
use std::path::PathBuf;
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
        let child = sb
            .weft_cmd(&["daemon"])
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
