//! Everyday use of the command line (issue 16), each point checked by
//! running the real binary in a sandbox and reading its output or the
//! kernel: ports and aliases in every view, explain on a published port,
//! logs with -v, the next free interface name, resolv.conf for named
//! namespaces, swapped and mistyped arguments, errors without root,
//! labelled output and true states, docker's port forms, help, version,
//! completion, man pages and `make install`.
//!
//! Snapshots (insta) pin the help text and the endpoint table; review a
//! change with `cargo insta review` or rewrite with INSTA_UPDATE=always.

mod harness;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use harness::{eventually, one_error_line, tcp_send, to_run, Sandbox, TcpProbe, WEFT};
use serde_json::Value;

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

fn ip_of(ep: &Value) -> String {
    s(&ep["address"]).split('/').next().unwrap().to_string()
}

/// weft run as root outside any sandbox (help, version, completion).
fn weft_plain(args: &[&str]) -> harness::Run {
    to_run(Command::new(WEFT).args(args).output().expect("spawn weft"))
}

// ---- 1. published ports and aliases in every view ----

#[test]
fn ports_and_aliases_show_in_every_view() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "front", "--subnet", "172.30.0.0/24"]);
    let c = sb.container("web");
    let name = sb.c(c).name.clone();
    let out = sb.weft_ok(&[
        "attach",
        "front",
        &name,
        "-p",
        "8080:80",
        "-p",
        "127.0.0.1:5353:53/udp",
        "--alias",
        "www",
    ]);
    let header = out.lines().next().unwrap();
    for col in ["PORTS", "ALIASES", "STATE"] {
        assert!(header.contains(col), "attach output lacks {col}: {out}");
    }
    let row = out.lines().nth(1).unwrap();
    assert!(row.contains("8080->80/tcp, 127.0.0.1:5353->53/udp"), "{out}");
    assert!(row.contains(" www "), "{out}");

    let ls = sb.weft_ok(&["endpoint", "ls"]);
    assert!(ls.contains("8080->80/tcp, 127.0.0.1:5353->53/udp"), "{ls}");
    let inspect = sb.weft_ok(&["network", "inspect", "front"]);
    assert!(
        inspect.contains(&format!(
            "ports:     8080->80/tcp ({name}), 127.0.0.1:5353->53/udp ({name})"
        )),
        "{inspect}"
    );

    let text = sb.weft_ok(&["topology", "--width", "100"]);
    for want in ["port 8080->80/tcp", "port 127.0.0.1:5353->53/udp", "alias www"] {
        assert!(text.contains(want), "topology text lacks {want:?}:\n{text}");
    }
    let dot = sb.weft_ok(&["topology", "--format", "dot"]);
    assert!(dot.contains("\\nport 8080->80/tcp") && dot.contains("\\nalias www"), "{dot}");
    let svg = sb.weft_ok(&["topology", "--format", "svg"]);
    assert!(svg.contains("port 8080-&gt;80/tcp") && svg.contains("alias www"), "{svg}");
    let t = sb.weft_json(&["topology", "--format", "json"]);
    let ep = &t["hosts"][0]["networks"][0]["endpoints"][0];
    assert_eq!(ep["ports"], serde_json::json!(["8080->80/tcp", "127.0.0.1:5353->53/udp"]));
    assert_eq!(ep["aliases"], serde_json::json!(["www"]));
}

/// The table a docker user reads like `docker ps`: fixed names (namespace
/// given by path), so addresses, MACs and veth names are fixed too.
#[test]
fn endpoint_table_snapshot() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "front", "--subnet", "172.30.0.0/24"]);
    sb.weft_ok(&["network", "create", "back", "--subnet", "10.89.5.0/24", "--internal"]);
    for (net, name, extra) in [
        ("front", "web", vec!["-p", "8080:80", "--alias", "www"]),
        ("front", "db", vec![]),
        ("back", "cache", vec!["--alias", "redis", "--alias", "kv"]),
    ] {
        let i = sb.container(name);
        let path = sb.c(i).path.display().to_string();
        let mut args = vec!["attach", net, name, "--netns", &path];
        args.extend(extra);
        sb.weft_ok(&args);
    }
    // db's container goes away: the table says so, as gc would.
    let db = sb.containers.remove(1);
    drop(db);
    insta::assert_snapshot!("endpoint_ls", sb.weft_ok(&["endpoint", "ls"]));
}

// ---- 2. explain on a published port; the table's fix line; gc counts it ----

#[test]
fn explain_follows_a_published_port_and_sees_its_table_gone() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "front", "--subnet", "172.30.0.0/24"]);
    let c = sb.container("web");
    let name = sb.c(c).name.clone();
    sb.weft_ok(&["attach", "front", &name, "-p", "8080:80"]);

    let explain = |sb: &Sandbox| {
        let r = sb.weft(&["explain", &name, "172.30.0.1", "--port", "8080", "--json"]);
        let v: Value = serde_json::from_str(&r.stdout).expect("explain --json");
        (r.ok, v)
    };
    let firewall_step = |v: &Value| {
        v["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|st| st["step"] == "firewall")
            .cloned()
            .unwrap_or_else(|| panic!("no firewall step: {v:#}"))
    };
    let (ok, v) = explain(&sb);
    assert!(ok, "{v:#}");
    let st = firewall_step(&v);
    assert_eq!(st["status"], "pass", "{st}");
    assert!(s(&st["facts"]).contains(&format!("published to {name} 172.30.0.2:80")), "{st}");

    sb.host.sh("nft delete table inet weft");
    let (ok, v) = explain(&sb);
    assert!(!ok, "explain passed with the table gone: {v:#}");
    let st = firewall_step(&v);
    assert_eq!(st["status"], "fail", "{st}");
    assert_eq!(st["fix"], "weft firewall reload", "{st}");
    assert_eq!((&v["result"], &v["failed_step"]), (&"fail".into(), &"firewall".into()), "{v:#}");
    // The text says the same, and the exit status is 1 with one error line.
    let r = sb.weft(&["explain", &name, "172.30.0.1", "--port", "8080"]);
    assert!(r.stdout.contains("fix: weft firewall reload"), "{}", r.stdout);
    assert!(one_error_line(&r).contains("table inet weft is missing"), "{}", r.stderr);
    // The topology's mark for the missing table gives the same fix.
    let topo = sb.weft_ok(&["topology", "--width", "120"]);
    assert!(topo.contains("fix: weft firewall reload"), "{topo}");

    // gc rebuilds it and counts that as a repair.
    let gc = sb.weft_ok(&["gc"]);
    assert!(gc.contains("rebuilt firewall table inet weft (was missing)"), "{gc}");
    assert!(gc.trim_end().ends_with("gc: 1 repair(s)"), "{gc}");
    assert!(sb.nft_rule_count() > 0, "gc did not rebuild the table");
    let (ok, v) = explain(&sb);
    assert!(ok, "{v:#}");
    assert_eq!(sb.weft_ok(&["gc"]).trim(), "gc: 0 repair(s)");
}

// ---- 3. -v logs; weft dns logs start, SERVFAIL and exit ----

#[test]
fn verbose_logs_every_change() {
    let mut sb = Sandbox::new();
    let quiet = sb.weft(&["network", "create", "q", "--subnet", "172.30.9.0/24"]);
    assert!(quiet.ok && quiet.stderr.is_empty(), "without -v: {}", quiet.stderr);
    let c = sb.container("c");
    let name = sb.c(c).name.clone();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["-v", "network", "create", "n", "--subnet", "172.30.8.0/24"], "created network"),
        (vec!["-v", "attach", "n", &name, "-p", "80"], "attached"),
        (vec!["-v", "detach", "n", &name], "detached"),
        (vec!["-v", "gc"], "gc done"),
        (vec!["-v", "network", "rm", "n"], "removed network"),
    ];
    for (args, want) in cases {
        let r = sb.weft(&args);
        assert!(r.ok, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(want), "weft {args:?} logged no {want:?}: {:?}", r.stderr);
        assert!(r.stderr.contains("INFO"), "{}", r.stderr);
    }
    // -v on attach also says which host port it chose.
    sb.weft_ok(&["network", "create", "m", "--subnet", "172.30.7.0/24"]);
    let r = sb.weft(&["-v", "attach", "m", &name, "-p", "80"]);
    assert!(r.stderr.contains("chose host port"), "{}", r.stderr);
}

/// `weft dns` in the sandbox host, its stderr in a file; killed on drop.
struct Dns {
    child: Child,
    log: PathBuf,
}

impl Dns {
    fn start(sb: &Sandbox, args: &[&str]) -> Dns {
        let log = sb.state_dir().join("dns.log");
        let mut all = vec!["dns"];
        all.extend_from_slice(args);
        let child = sb
            .weft_cmd(&all)
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("spawn weft dns");
        let d = Dns { child, log };
        eventually("weft dns serving", || d.log().contains("serving DNS on"));
        d
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn terminate(&mut self) {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn weft_dns_logs_start_servfail_and_exit() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "n", "--subnet", "172.30.6.0/24"]);
    let c = sb.container("c");
    sb.attach("n", c, &[]);
    // An upstream where nothing listens: every forwarded name is SERVFAIL.
    let mut dns = Dns::start(&sb, &["--upstream", "127.0.0.1:9"]);
    assert!(dns.log().contains("weft dns starting: port 53 on 1 gateway address"), "{}", dns.log());
    // A query from the container for a name weft does not know.
    sb.c(c).try_sh("timeout 5 busybox nslookup nowhere.invalid 172.30.6.1");
    eventually("SERVFAIL logged", || dns.log().contains("SERVFAIL"));
    assert!(dns.log().contains("nowhere.invalid"), "{}", dns.log());
    dns.terminate();
    assert!(dns.log().contains("SIGTERM received, exiting"), "{}", dns.log());
}

// ---- 4. a second network: the next free interface name ----

#[test]
fn a_second_network_gets_the_next_free_interface() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "a", "--subnet", "172.30.1.0/24"]);
    sb.weft_ok(&["network", "create", "b", "--subnet", "172.30.2.0/24"]);
    let c = sb.container("c");
    let e0 = sb.attach("a", c, &[]);
    let e1 = sb.attach("b", c, &[]);
    assert_eq!((s(&e0["ifname"]), s(&e1["ifname"])), ("eth0", "eth1"));
    // Its network's first address: nothing was used up by a failed try.
    assert_eq!(s(&e1["address"]), "172.30.2.2/24");
    let links = sb.c(c).ip_json("-4 addr show");
    let addrs: Vec<(String, String)> = links
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["ifname"] != "lo")
        .map(|l| (s(&l["ifname"]).to_string(), s(&l["addr_info"][0]["local"]).to_string()))
        .collect();
    assert_eq!(
        addrs,
        vec![("eth0".into(), "172.30.1.2".into()), ("eth1".into(), "172.30.2.2".into())]
    );
    // An interface someone else made is skipped too.
    sb.c(c).sh("ip link add eth2 type veth peer name x2");
    sb.weft_ok(&["network", "create", "d", "--subnet", "172.30.3.0/24"]);
    assert_eq!(s(&sb.attach("d", c, &[])["ifname"]), "eth3");
    // The same network again is still refused, not a second interface.
    let name = sb.c(c).name.clone();
    let e = sb.weft_err(&["attach", "a", &name]);
    assert!(e.contains("already attached to network a (as eth0)"), "{e}");
    assert!(e.contains("--ifname"), "{e}");
}

// ---- 5. names resolve in named namespaces ----

#[test]
fn named_namespaces_get_a_resolv_conf_and_names_resolve() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "n", "--subnet", "172.30.5.0/24"]);
    sb.weft_ok(&["network", "create", "m", "--subnet", "172.30.4.0/24"]);
    let a = sb.container("a");
    let b = sb.container("b");
    sb.attach("n", a, &[]);
    let eb = sb.attach("n", b, &["--alias", "bee"]);
    let (an, bn) = (sb.c(a).name.clone(), sb.c(b).name.clone());
    let conf = PathBuf::from(format!("/etc/netns/{an}/resolv.conf"));
    let text = std::fs::read_to_string(&conf).expect("weft wrote resolv.conf");
    assert!(text.starts_with("# written by weft"), "{text}");
    assert!(text.contains("nameserver 172.30.5.1\n"), "{text}");
    // A second network adds its gateway.
    sb.attach("m", a, &[]);
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(text.contains("nameserver 172.30.5.1\nnameserver 172.30.4.1\n"), "{text}");

    // `ip netns exec` mounts it: a process there resolves its peers.
    let dns = Dns::start(&sb, &["--upstream", "127.0.0.1:9"]);
    eventually("weft dns on both gateways", || dns.log().matches("serving DNS on").count() == 2);
    for name in [bn.as_str(), "bee"] {
        let out = Command::new("ip")
            .args(["netns", "exec", &an, "getent", "hosts", name])
            .output()
            .expect("ip netns exec");
        let got = String::from_utf8_lossy(&out.stdout);
        assert!(got.starts_with(&format!("{} ", ip_of(&eb))), "{name} resolved to {got:?}");
    }

    // Detach rewrites it from what is left, and removes it with the last.
    sb.weft_ok(&["detach", "n", &an]);
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(!text.contains("172.30.5.1") && text.contains("nameserver 172.30.4.1"), "{text}");
    sb.weft_ok(&["detach", "m", &an]);
    assert!(!conf.exists() && !conf.parent().unwrap().exists(), "resolv.conf left behind");

    // A file weft did not write is left alone.
    let mine = PathBuf::from(format!("/etc/netns/{bn}/resolv.conf"));
    std::fs::write(&mine, "nameserver 192.0.2.53\n").unwrap();
    sb.weft_ok(&["detach", "n", &bn]);
    assert_eq!(std::fs::read_to_string(&mine).unwrap(), "nameserver 192.0.2.53\n");
    std::fs::remove_dir_all(mine.parent().unwrap()).unwrap();
}

// ---- 6. swapped and mistyped arguments ----

#[test]
fn swapped_and_mistyped_arguments_are_named() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "front", "--subnet", "172.30.0.0/24"]);
    let c = sb.container("c");
    let name = sb.c(c).name.clone();
    let before = sb.snapshot();
    let e = sb.weft_err(&["attach", &name, "front"]);
    assert!(e.contains(&format!("network {name} does not exist")), "{e}");
    assert!(e.contains("front is a network") && e.contains("swapped"), "{e}");
    let e = sb.weft_err(&["attach", "fornt", &name]);
    assert!(e.ends_with("network fornt does not exist (did you mean front?)"), "{e}");
    for cmd in [vec!["network", "inspect", "frnt"], vec!["endpoint", "ls", "--network", "frnt"]] {
        let e = sb.weft_err(&cmd);
        assert!(e.contains("did you mean front?"), "{cmd:?}: {e}");
    }
    let e = sb.weft_err(&["detach", "frontt", &name]);
    assert!(e.contains("did you mean front?"), "{e}");
    let e = sb.weft_err(&["topology", "fron"]);
    assert!(e.contains("did you mean front?"), "{e}");
    // Nothing like any network: no suggestion.
    let e = sb.weft_err(&["network", "inspect", "zzzzzz"]);
    assert!(e.ends_with("network zzzzzz does not exist"), "{e}");
    assert_eq!(before, sb.snapshot(), "a refused command changed something");
}

// ---- 7. without root: one line that says so ----

/// Runs weft as user nobody: a copy of the binary in a directory anyone
/// may enter (the build directory may be under a private home).
fn as_nobody(args: &[&str]) -> harness::Run {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("weft");
    std::fs::copy(WEFT, &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .args(args)
        .env_remove("WEFT_STATE_DIR")
        .output()
        .expect("setpriv (util-linux)");
    to_run(out)
}

#[test]
fn without_root_errors_say_so_once() {
    let sb = Sandbox::new();
    // A state directory it cannot create, and an existing one it cannot open.
    let missing = sb.state_dir().join("sub");
    let r = as_nobody(&["--state-dir", missing.to_str().unwrap(), "network", "ls"]);
    let e = one_error_line(&r);
    assert_eq!(
        e,
        format!(
            "weft: error: cannot open weft's state in {}: permission denied; weft needs root \
             (run it with sudo)",
            missing.display()
        )
    );
    // weft's own directory (mode 0700, as weft makes /var/lib/weft), its
    // store in it.
    sb.weft_ok(&["network", "ls"]);
    assert!(sb.state_dir().join("weft.db").exists());
    std::fs::set_permissions(sb.state_dir(), std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .unwrap();
    let r = as_nobody(&["--state-dir", sb.state_dir().to_str().unwrap(), "endpoint", "ls"]);
    let e = one_error_line(&r);
    assert!(e.contains("permission denied; weft needs root"), "{e}");
    assert_eq!(e.matches("permission denied").count(), 1, "{e}");
    // A change to the network says it needs root before touching anything.
    let r = as_nobody(&["--state-dir", sb.state_dir().to_str().unwrap(), "network", "create", "x"]);
    let e = one_error_line(&r);
    assert!(e.contains("weft needs root (CAP_NET_ADMIN)"), "{e}");
}

// ---- 8. output that says what happened; true states; one-line errors ----

#[test]
fn output_says_what_happened() {
    let mut sb = Sandbox::new();
    // The subnet it picked is in the output.
    let out = sb.weft_ok(&["network", "create", "back"]);
    assert_eq!(
        out.trim(),
        "created network back: subnet 10.89.0.0/24, gateway 10.89.0.1, bridge weft-back"
    );
    let out = sb.weft_ok(&["network", "create", "v", "--subnet", "172.30.3.0/24", "--internal"]);
    assert_eq!(
        out.trim(),
        "created network v: subnet 172.30.3.0/24, gateway 172.30.3.1, bridge weft-v, internal"
    );
    let c = sb.container("c");
    let d = sb.container("d");
    let (cn, dn) = (sb.c(c).name.clone(), sb.c(d).name.clone());
    sb.attach("back", c, &[]);
    // Detach says what it did.
    let out = sb.weft_ok(&["detach", "back", &cn]);
    assert_eq!(out.trim(), format!("detached {cn} from back (eth0 10.89.0.2 released)"));

    // --pid: the JSON's pid is the one given; weft's own is attach_pid.
    let mut sleeper =
        sb.c(d).command("sleep").arg("30").spawn().expect("a process in the container");
    let pid = sleeper.id();
    let e = sb.weft_json(&["attach", "back", &dn, "--pid", &pid.to_string(), "--json"]);
    assert_eq!(e["pid"], pid, "{e:#}");
    assert!(e["attach_pid"].as_u64().is_some_and(|p| p != u64::from(pid)), "{e:#}");
    let listed = sb.endpoints();
    assert!(listed[0].get("pid").is_none(), "{listed:?}");
    assert_eq!(listed[0]["state"], "ready");
    // The process ends: its namespace is gone, and the state says so.
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    assert_eq!(sb.endpoints()[0]["state"], "gone");
    let table = sb.weft_ok(&["endpoint", "ls"]);
    assert!(table.lines().nth(1).unwrap().ends_with("gone"), "{table}");

    // rm --force names what it detached.
    sb.attach("back", c, &[]);
    let mut want: Vec<String> = sb
        .endpoints()
        .iter()
        .map(|e| format!("detached {} from back (eth0 {})", s(&e["container"]), ip_of(e)))
        .collect();
    want.push("removed network back".to_string());
    want.sort();
    let out = sb.weft_ok(&["network", "rm", "--force", "back"]);
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(lines, want);
    assert!(sb.endpoints().is_empty());
}

#[test]
fn argument_errors_are_one_line() {
    let cases: &[(&[&str], &str)] = &[
        (&["attach"], "the following required arguments were not provided: <NETWORK>, <CONTAINER>; see 'weft attach --help'"),
        (&["netwrk", "ls"], "unrecognized subcommand 'netwrk' (a similar subcommand exists: 'network')"),
        (&["attach", "n", "c", "--ip", "1.2.3"], "invalid value '1.2.3' for '--ip <IP>'"),
        (&["attach", "n", "c", "-p", "80:"], "published port \"80:\""),
        (&["network", "ls", "--bogus"], "unexpected argument '--bogus' found"),
    ];
    for (args, want) in cases {
        let r = weft_plain(args);
        let e = one_error_line(&r);
        assert!(e.contains(want), "weft {args:?}: {e}");
    }
    let r = to_run(Command::new(WEFT).arg("attach").output().unwrap());
    assert!(!r.ok);
    let code = Command::new(WEFT).arg("attach").status().unwrap().code();
    assert_eq!(code, Some(2), "usage errors exit 2");
}

// ---- 9. docker's port forms ----

#[test]
fn docker_port_forms() {
    let mut sb = Sandbox::new();
    sb.wire_outside();
    sb.weft_ok(&["network", "create", "n", "--subnet", "172.30.10.0/24"]);
    let c = sb.container("c");
    let e = sb.attach(
        "n",
        c,
        &["-p", "8080:80/tcp", "-p", "80", "-p", "127.0.0.1::53/udp", "-p", "8000-8002:90-92"],
    );
    let ports = e["ports"].as_array().unwrap();
    let (lo, hi) = {
        let r = sb.host.sh("cat /proc/sys/net/ipv4/ip_local_port_range");
        let mut it = r.split_whitespace().map(|v| v.parse::<u64>().unwrap());
        (it.next().unwrap(), it.next().unwrap())
    };
    let chosen = ports[1]["host_port"].as_u64().unwrap();
    assert!((lo..=hi).contains(&chosen), "-p 80 got host port {chosen}");
    assert_eq!(ports[1]["container_port"], 80);
    assert_eq!(ports[2]["host_ip"], "127.0.0.1");
    assert!((lo..=hi).contains(&ports[2]["host_port"].as_u64().unwrap()));
    assert_eq!(
        (ports[3]["host_port_end"].as_u64(), ports[3]["container_port"].as_u64()),
        (Some(8002), Some(90))
    );
    // The chosen port is shown, and it works from outside.
    let table = sb.weft_ok(&["endpoint", "ls"]);
    assert!(table.contains(&format!("8080->80/tcp, {chosen}->80/tcp, ")), "{table}");
    let outside = sb.outside.as_ref().unwrap();
    let probe = TcpProbe::listen(sb.c(c), "0.0.0.0:80", Duration::from_secs(4));
    assert!(tcp_send(outside, "203.0.113.1", chosen as u16, 2), "no connection to {chosen}");
    assert!(probe.accepted().is_some(), "the container saw nothing on {chosen}");
    // Two `-p 80` on two containers get two different ports.
    let d = sb.container("d");
    let e2 = sb.attach("n", d, &["-p", "80"]);
    assert_ne!(e2["ports"][0]["host_port"].as_u64(), Some(chosen));
    // Forms weft refuses say what it takes.
    let name = sb.c(d).name.clone();
    let err = sb.weft_err(&["attach", "n", &name, "--ifname", "eth9", "-p", "8000-8009:80"]);
    assert!(err.contains("same length"), "{err}");
}

// ---- 10. help, version, completion, man pages, make install ----

#[test]
fn help_is_per_command_and_described() {
    let top = weft_plain(&["--help"]).stdout;
    for want in
        ["Global options:", "Cluster options (global):", "--etcd <URLS>", "--state-dir <DIR>"]
    {
        assert!(top.contains(want), "weft --help lacks {want:?}:\n{top}");
    }
    let attach = weft_plain(&["attach", "--help"]).stdout;
    for global in ["--etcd", "--node", "--state-dir", "--config", "--verbose"] {
        assert!(!attach.contains(global), "attach --help shows {global}:\n{attach}");
    }
    insta::assert_snapshot!("attach_help", attach);
    for args in [
        ["network", "ls", "--help"],
        ["endpoint", "ls", "--help"],
        ["network", "inspect", "--help"],
    ] {
        let h = weft_plain(&args).stdout;
        let json = h.lines().find(|l| l.trim_start().starts_with("--json")).unwrap_or("");
        assert!(json.contains("Print JSON"), "{args:?}: --json undescribed:\n{h}");
    }
    // Every argument and option of every command says what it is.
    let commands = all_commands(&[]);
    assert!(commands.contains(&vec!["network".to_string(), "create".to_string()]), "{commands:?}");
    assert!(commands.len() > 15, "{commands:?}");
    for cmd in commands {
        let mut args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        args.push("-h");
        let h = weft_plain(&args).stdout;
        for l in h.lines().filter(|l| l.starts_with("  ")) {
            let t = l.trim();
            let item = t.starts_with('-') || t.starts_with('<');
            let described = t.split("  ").filter(|p| !p.trim().is_empty()).count() > 1;
            assert!(!item || described, "weft {cmd:?}: {t:?} has no description:\n{h}");
        }
    }
    let inspect = weft_plain(&["network", "inspect", "--help"]).stdout;
    assert!(inspect.contains("<NAME>  The network"), "{inspect}");
    // Global options still work after the command.
    let sb = Sandbox::new();
    let r = sb.weft(&["network", "ls", "-v"]);
    assert!(r.ok, "{}", r.stderr);
}

/// Every command and subcommand, from the help's Commands lists.
fn all_commands(prefix: &[String]) -> Vec<Vec<String>> {
    let mut args: Vec<&str> = prefix.iter().map(String::as_str).collect();
    args.push("--help");
    let h = weft_plain(&args).stdout;
    let mut out = Vec::new();
    let mut in_list = false;
    for l in h.lines() {
        if l.starts_with("Commands:") {
            in_list = true;
        } else if in_list && l.starts_with("  ") {
            let name = l.split_whitespace().next().unwrap().to_string();
            if name != "help" {
                let mut cmd = prefix.to_vec();
                cmd.push(name);
                out.extend(all_commands(&cmd));
                out.push(cmd);
            }
        } else {
            in_list = false;
        }
    }
    out
}

#[test]
fn version_names_the_commit() {
    let v = weft_plain(&["--version"]).stdout;
    let want = format!("weft {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(v.starts_with(&want), "{v}");
    let head = Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output();
    if let Some(h) = head.ok().filter(|h| h.status.success()) {
        // Built from this checkout: the commit is HEAD's, or one before it
        // when the tree moved on since the build.
        let commit = v.split("commit ").nth(1).unwrap().split(',').next().unwrap();
        assert_eq!(commit.len(), 12, "{v}");
        let ok = Command::new("git").args(["cat-file", "-e", commit]).status().unwrap().success();
        assert!(
            ok,
            "{commit} is not a commit of this repository ({})",
            String::from_utf8_lossy(&h.stdout)
        );
    }
    assert!(v.contains("x86_64") || v.contains("aarch64") || v.contains("-linux-"), "{v}");
}

#[test]
fn make_install_and_uninstall() {
    let root = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let make = |target: &str| {
        let out = Command::new("make")
            .arg("-C")
            .arg(&repo)
            .arg(target)
            .arg(format!("DESTDIR={}", root.path().display()))
            .arg("PREFIX=/usr")
            .arg(format!("WEFT={WEFT}"))
            .output()
            .expect("make");
        assert!(out.status.success(), "make {target}: {}", String::from_utf8_lossy(&out.stderr));
    };
    make("install");
    let at = |p: &str| root.path().join(p.trim_start_matches('/'));
    for f in [
        "/usr/bin/weft",
        "/usr/share/bash-completion/completions/weft",
        "/usr/share/zsh/site-functions/_weft",
        "/usr/share/fish/vendor_completions.d/weft.fish",
        "/usr/share/man/man1/weft.1",
        "/usr/share/man/man1/weft-attach.1",
        "/usr/share/man/man1/weft-network-create.1",
        "/usr/lib/systemd/system/weft.service",
        "/usr/lib/systemd/system/weft-dns.service",
    ] {
        assert!(at(f).is_file(), "make install did not install {f}");
    }
    let unit = std::fs::read_to_string(at("/usr/lib/systemd/system/weft.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/weft daemon"), "{unit}");
    let bash = std::fs::read_to_string(at("/usr/share/bash-completion/completions/weft")).unwrap();
    assert!(bash.contains("_weft()") && bash.contains("attach"), "bash completion");
    let man = std::fs::read_to_string(at("/usr/share/man/man1/weft-attach.1")).unwrap();
    assert!(man.contains(".TH weft-attach 1") && man.contains("publish"), "{man}");
    let installed = Command::new(at("/usr/bin/weft")).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&installed.stdout).starts_with("weft "));

    make("uninstall");
    let left: Vec<PathBuf> = walk(root.path());
    assert!(left.is_empty(), "make uninstall left {left:?}");
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn completion_scripts() {
    for shell in ["bash", "zsh", "fish"] {
        let r = weft_plain(&["completion", shell]);
        assert!(r.ok && r.stdout.contains("attach") && r.stdout.contains("network"), "{shell}");
    }
    let e = one_error_line(&weft_plain(&["completion", "tcsh"]));
    assert!(e.contains("invalid value 'tcsh'"), "{e}");

    // `weft completion bash | head -1`: weft ends quietly when the reader
    // is gone (no panic about a broken pipe), as `weft endpoint ls | head`. The script (70 KB) is more
    // than a pipe holds (64 KiB), so weft is still writing when it goes.
    let mut child = Command::new(WEFT)
        .args(["completion", "bash"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 8];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.is_empty(), "{stderr}");
    assert_eq!(out.status.code(), Some(141), "the status a SIGPIPE gives");
}

// ---- the README's tour prints what it says ----

/// Runs the README's Tour (its `console` block) in a sandbox and compares
/// each command's output with the README's, line by line. Containers get
/// the sandbox's names (mapped back to `web` and `db`); MACs and veth names
/// derive from those names, so they are masked, and runs of spaces (column
/// widths) are compared as one.
#[test]
fn readme_tour_matches_what_the_commands_print() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let tour = readme.split("## Tour").nth(1).expect("a Tour section");
    let block =
        tour.split("```console\n").nth(1).expect("a console block").split("```").next().unwrap();
    let mut steps: Vec<(String, Vec<String>)> = Vec::new();
    for l in block.lines() {
        match l.strip_prefix("$ ") {
            Some(cmd) => steps.push((cmd.to_string(), Vec::new())),
            None => steps.last_mut().expect("output after a command").1.push(l.to_string()),
        }
    }
    assert!(steps.len() > 10, "{steps:?}");

    let mut sb = Sandbox::new();
    let mut names: Vec<(String, &str)> = Vec::new();
    let mask = |s: &str| -> String {
        s.split_whitespace()
            .map(|w| {
                let hex = |t: &str| t.chars().all(|c| c.is_ascii_hexdigit());
                if w.len() == 17 && w.split(':').count() == 6 {
                    "MAC".to_string()
                } else if w.len() == 14 && w.starts_with("vw") && hex(&w[2..]) {
                    "VETH".to_string()
                } else {
                    w.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    for (cmd, want) in steps {
        if cmd.starts_with("ip netns add") {
            for tag in ["web", "db"] {
                let i = sb.container(tag);
                names.push((sb.c(i).name.clone(), tag));
            }
            continue;
        }
        let args: Vec<String> = cmd
            .strip_prefix("weft ")
            .unwrap_or_else(|| panic!("not a weft command: {cmd}"))
            .split_whitespace()
            .map(|a| names.iter().find(|(_, t)| *t == a).map_or(a.to_string(), |(n, _)| n.clone()))
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = sb.weft(&args);
        let mut got = format!("{}{}", r.stdout, r.stderr);
        for (n, t) in &names {
            got = got.replace(n.as_str(), t);
        }
        let got: Vec<String> = got.lines().map(mask).collect();
        let want: Vec<String> = want.iter().map(|l| mask(l)).collect();
        assert_eq!(got, want, "`{cmd}` prints otherwise than the README says");
    }
}
