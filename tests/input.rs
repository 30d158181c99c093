//! Untrusted input from the CLI and from CNI runtimes (issue 12, items 6, 8
//! and 9): namespace paths that are no namespaces (a FIFO must not hang
//! weft), reserved ranges as subnets, a container MAC equal to its bridge's,
//! a failed first ADD, relative and reused namespace paths, and a CNI
//! result that names only what really exists. Each refusal is one error
//! line (or one CNI error object) and leaves the sandbox as it was.

mod harness;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::cluster::Proc;
use harness::{eventually, one_error_line, to_run, CniRun, Netns, Run, Sandbox, WEFT};
use serde_json::{json, Value};

/// Runs `cmd` but gives up after 10 s (a weft that hangs is killed, and
/// the test then fails on the time it took rather than hanging itself).
fn bounded(mut cmd: Command) -> (Run, Duration) {
    let start = Instant::now();
    let mut child =
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null()).spawn().unwrap();
    while child.try_wait().unwrap().is_none() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    (to_run(out), start.elapsed())
}

fn cni_env<'a>(cmd: &'a str, id: &'a str, ns: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![("CNI_COMMAND", cmd), ("CNI_CONTAINERID", id), ("CNI_NETNS", ns), ("CNI_IFNAME", "eth0")]
}

fn cni_conf(name: &str, subnet: &str) -> Value {
    json!({"cniVersion": "1.0.0", "name": name, "type": "weft", "subnet": subnet})
}

fn cni_code(r: &CniRun) -> u64 {
    assert!(!r.ok, "expected a CNI error, got {}", r.raw);
    assert_eq!(r.raw.trim().lines().count(), 1, "one error object: {}", r.raw);
    r.stdout["code"].as_u64().unwrap_or_else(|| panic!("no code: {}", r.raw))
}

/// weft's networks, bridges (links with weft's alias) and nftables rules.
fn weft_things(sb: &Sandbox) -> (Vec<Value>, Vec<String>, usize) {
    let nets = sb.weft_json(&["network", "ls", "--json"]).as_array().unwrap().clone();
    let bridges = sb
        .host_links()
        .iter()
        .filter(|l| l["ifalias"].as_str().is_some_and(|a| a.starts_with("weft:")))
        .map(|l| l["ifname"].as_str().unwrap().to_string())
        .collect();
    (nets, bridges, sb.nft_rule_count())
}

// ------------------------------------------------ namespace paths (6, 8)

#[test]
fn a_fifo_as_netns_is_refused_at_once_by_cni_and_cli() {
    let sb = Sandbox::new();
    let fifo = sb.state_dir().join("fifo");
    run_ok_cmd(Command::new("mkfifo").arg(&fifo));
    let fifo = fifo.to_str().unwrap();
    let before = sb.snapshot();

    // CNI: nothing ever writes to the FIFO, so an open for reading blocks.
    let mut cmd = sb.host.command(WEFT);
    cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in cni_env("ADD", "fifo", fifo) {
        cmd.env(k, v);
    }
    let mut conf = cni_conf("fifonet", "10.78.1.0/24");
    conf["stateDir"] = json!(sb.state_dir());
    let conf_file = sb.state_dir().join("conf.json");
    std::fs::write(&conf_file, serde_json::to_vec(&conf).unwrap()).unwrap();
    cmd.stdin(std::fs::File::open(&conf_file).unwrap());
    let start = Instant::now();
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    while child.try_wait().unwrap().is_none() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert!(start.elapsed() < Duration::from_secs(5), "CNI ADD hung on a FIFO as CNI_NETNS");
    let err: Value = serde_json::from_slice(&out.stdout).expect("CNI error JSON");
    assert_eq!(err["code"], 4, "{err}");
    assert!(err["msg"].as_str().unwrap().contains("FIFO"), "{err}");
    assert_eq!(before, sb.snapshot(), "a refused ADD changed the sandbox");

    // CLI.
    sb.weft_ok(&["network", "create", "n", "--subnet", "10.78.2.0/24"]);
    let before_cli = sb.snapshot();
    let (r, took) = bounded(sb.weft_cmd(&["attach", "n", "c", "--netns", fifo]));
    assert!(took < Duration::from_secs(5), "weft attach hung on a FIFO as --netns");
    let line = one_error_line(&r);
    assert!(line.contains("is a FIFO, not a network namespace"), "{line}");
    assert_eq!(before_cli, sb.snapshot(), "a refused attach changed the sandbox");
}

fn run_ok_cmd(cmd: &mut Command) {
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn container_names_that_are_paths_are_refused() {
    let sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "n", "--subnet", "10.78.3.0/24"]);
    let before = sb.snapshot();
    for bad in ["..", ".", "../../proc/1/ns/net"] {
        let r = to_run(sb.weft_cmd(&["attach", "n", bad]).output().unwrap());
        let line = one_error_line(&r);
        assert!(line.contains("container name"), "{bad}: {line}");
    }
    // CNI container ids and interface names.
    let c = Netns::new("c");
    let p = c.path.to_str().unwrap();
    let conf = cni_conf("n", "10.78.3.0/24");
    for (id, ifname) in [("../x", "eth0"), ("a b", "eth0"), ("ok", "../eth0"), ("ok", "a/b")] {
        let env = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", id),
            ("CNI_NETNS", p),
            ("CNI_IFNAME", ifname),
        ];
        assert_eq!(cni_code(&sb.cni(&env, &conf)), 4, "{id} {ifname}");
    }
    assert_eq!(before, sb.snapshot());
}

#[test]
fn a_relative_netns_is_stored_as_an_absolute_path() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "n", "--subnet", "10.78.4.0/24"]);
    let c = sb.container("c");
    let name = sb.c(c).name.clone();
    let r = to_run(
        sb.weft_cmd(&["attach", "n", "web", "--netns", &name, "--json"])
            .current_dir("/var/run/netns")
            .env("WEFT_DAEMON", "off")
            .output()
            .unwrap(),
    );
    assert!(r.ok, "{}", r.stderr);
    let ep: Value = serde_json::from_str(&r.stdout).unwrap();
    let stored = std::path::Path::new(ep["netns"].as_str().unwrap());
    assert!(stored.is_absolute(), "stored as {stored:?}");
    let ino =
        |p: &std::path::Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    assert_eq!(ino(stored), ino(&sb.c(c).path), "{stored:?} is not the container's namespace");
    // gc from another directory keeps the live endpoint.
    let report: Value =
        serde_json::from_str(&run_in(&sb, "/", &["gc", "--json"]).stdout).expect("gc JSON");
    assert_eq!(report["endpoints"], json!([]), "gc tore down a live endpoint: {report}");
    assert_eq!(sb.endpoints().len(), 1);
}

fn run_in(sb: &Sandbox, dir: &str, args: &[&str]) -> Run {
    let r = to_run(sb.weft_cmd(args).current_dir(dir).output().unwrap());
    assert!(r.ok, "weft {args:?}: {}", r.stderr);
    r
}

#[test]
fn gc_notices_a_netns_path_that_names_another_namespace_now() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "n", "--subnet", "10.78.5.0/24"]);
    let c = sb.container("c");
    sb.attach("n", c, &[]);
    let name = sb.c(c).name.clone();
    // The container's namespace stays alive (the guard holds it open), but
    // its path now names a new, empty namespace: the endpoint's container
    // is not there, as after a pid was reused.
    run_ok_cmd(
        Command::new("sh").arg("-c").arg(format!("ip netns del {name} && ip netns add {name}")),
    );
    // `weft explain` neither reads nor probes from that other namespace.
    let out = sb.weft_cmd(&["explain", "--json", &name, "10.78.5.1"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("names another namespace now"), "{text}");
    let report = sb.weft_json(&["gc", "--json"]);
    assert_eq!(report["endpoints"].as_array().map(Vec::len), Some(1), "{report}");
    assert!(sb.endpoints().is_empty());
}

#[test]
fn a_reused_pid_does_not_keep_a_dead_containers_endpoint() {
    let sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "n", "--subnet", "10.78.6.0/24"]);
    let (a, b) = (Netns::new("a"), Netns::new("b"));
    // A PID namespace of our own, so the pid can be reused on purpose:
    // the first container process gets pid 2, dies, and after
    // ns_last_pid=1 the second container's process gets pid 2 again.
    let script = format!(
        "set -e
         nsenter --net={a} sleep 60 & pid=$!
         [ $pid = 2 ]
         {weft} --state-dir {state} attach n web --pid 2 >/dev/null
         kill $pid; wait $pid || true
         echo 1 >/proc/sys/kernel/ns_last_pid
         nsenter --net={b} sleep 60 & pid=$!
         [ $pid = 2 ]
         {weft} --state-dir {state} gc --json
         kill $pid",
        a = a.path.display(),
        b = b.path.display(),
        weft = WEFT,
        state = sb.state_dir().display(),
    );
    let r = to_run(
        sb.host
            .command("unshare")
            .args(["--pid", "--fork", "--mount-proc", "sh", "-c", &script])
            .env("WEFT_DAEMON", "off")
            .output()
            .unwrap(),
    );
    assert!(r.ok, "{}", r.stderr);
    let report: Value = serde_json::from_str(&r.stdout).expect("gc JSON");
    assert_eq!(report["endpoints"].as_array().map(Vec::len), Some(1), "{report}");
    assert!(sb.endpoints().is_empty());
}

// --------------------------------------------------------- subnets (8)

#[test]
fn reserved_ranges_are_refused_as_subnets() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    for bad in ["127.0.0.0/24", "0.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "240.0.0.0/4"] {
        let r = to_run(sb.weft_cmd(&["network", "create", "n", "--subnet", bad]).output().unwrap());
        let line = one_error_line(&r);
        assert!(line.contains("reserved"), "{bad}: {line}");
    }
    for bad in ["::/64", "fe80::/64", "ff02::/64"] {
        let args = ["network", "create", "n", "--subnet", "10.78.7.0/24", "--subnet6", bad];
        let line = one_error_line(&to_run(sb.weft_cmd(&args).output().unwrap()));
        assert!(line.contains("reserved"), "{bad}: {line}");
    }
    // The CNI plugin's first ADD creates the network: refused the same.
    let c = Netns::new("c");
    let r = sb.cni(&cni_env("ADD", "c1", c.path.to_str().unwrap()), &cni_conf("n", "127.0.0.0/24"));
    assert_eq!(cni_code(&r), 7);
    assert!(r.stdout["msg"].as_str().unwrap().contains("loopback"), "{}", r.raw);
    assert_eq!(before, sb.snapshot(), "a refused subnet changed the sandbox");
}

// ------------------------------------------------------------- MAC (8)

#[test]
fn a_container_mac_equal_to_the_bridges_is_refused() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "n", "--subnet", "10.78.8.0/24", "--bridge", "wb8"]);
    let c = sb.container("c");
    let link = sb.host.ip_json("link show wb8");
    let mac = link[0]["address"].as_str().unwrap().to_string();
    let before = sb.snapshot();
    let name = sb.c(c).name.clone();
    let r = to_run(sb.weft_cmd(&["attach", "n", &name, "--mac", &mac]).output().unwrap());
    let line = one_error_line(&r);
    assert!(line.contains("bridge"), "{line}");
    assert_eq!(before, sb.snapshot());
    // Through CNI too.
    let mut conf = cni_conf("n", "10.78.8.0/24");
    conf["bridge"] = json!("wb8");
    conf["runtimeConfig"] = json!({"mac": mac});
    let r = sb.cni(&cni_env("ADD", "c1", sb.c(c).path.to_str().unwrap()), &conf);
    assert_eq!(cni_code(&r), 7, "{}", r.raw);
    assert!(r.stdout["msg"].as_str().unwrap().contains("bridge"), "{}", r.raw);
    assert_eq!(before, sb.snapshot());
}

// ------------------------------------------------- first ADD failing (8)

#[test]
fn a_first_cni_add_that_fails_leaves_no_network_bridge_or_rules() {
    let sb = Sandbox::new();
    let c = Netns::new("c");
    let before = weft_things(&sb);
    assert_eq!(before, (Vec::new(), Vec::new(), 0));
    let mut env = cni_env("ADD", "c1", c.path.to_str().unwrap());
    // An address outside the subnet: refused after the network was made.
    env.push(("CNI_ARGS", "IP=10.99.0.5"));
    let r = sb.cni(&env, &cni_conf("first", "10.78.9.0/24"));
    assert!(!r.ok, "{}", r.raw);
    assert_eq!(weft_things(&sb), before, "the failed first ADD left its network behind");
    // The same ADD without the bad address works.
    let r =
        sb.cni(&cni_env("ADD", "c1", c.path.to_str().unwrap()), &cni_conf("first", "10.78.9.0/24"));
    assert!(r.ok, "{}", r.raw);
}

// ------------------------------------------------ honest results (9)

#[test]
fn the_cni_result_names_a_nameserver_only_when_one_serves() {
    let sb = Sandbox::new();
    let (c1, c2) = (Netns::new("c1"), Netns::new("c2"));
    let conf = cni_conf("dnsnet", "10.78.10.0/24");
    let r = sb.cni(&cni_env("ADD", "c1", c1.path.to_str().unwrap()), &conf);
    assert!(r.ok, "{}", r.raw);
    assert_eq!(r.stdout["dns"], json!({}), "no DNS server runs: {}", r.raw);

    let _dns = Proc(Some(
        sb.weft_cmd(&["dns", "--upstream", "127.0.0.1:9", "--poll-ms", "5"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    ));
    eventually("weft dns answers on the gateway", || {
        sb.host.sh("ss -Hnlu").contains("10.78.10.1:53")
    });
    let r = sb.cni(&cni_env("ADD", "c2", c2.path.to_str().unwrap()), &conf);
    assert!(r.ok, "{}", r.raw);
    assert_eq!(r.stdout["dns"]["nameservers"], json!(["10.78.10.1"]), "{}", r.raw);
}

#[test]
fn the_cni_result_has_no_gateway_on_an_internal_network() {
    let sb = Sandbox::new();
    let c = Netns::new("c");
    let mut conf = cni_conf("inner", "10.78.11.0/24");
    conf["internal"] = json!(true);
    conf["ipMasq"] = json!(false);
    let r = sb.cni(&cni_env("ADD", "c1", c.path.to_str().unwrap()), &conf);
    assert!(r.ok, "{}", r.raw);
    let ips = r.stdout["ips"].as_array().unwrap();
    assert_eq!(ips.len(), 1);
    assert!(ips[0].get("gateway").is_none(), "gateway on an internal network: {}", r.raw);
    assert!(r.stdout.get("routes").is_none_or(|r| r == &json!([])), "{}", r.raw);
    // And no default route inside, as the result says.
    assert!(!c.sh("ip route").contains("default"));
}
