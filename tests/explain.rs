//! `weft explain`: a healthy path passes every step (exit 0); each injected
//! fault is named as the failing step (exit 1) with a fix.

mod harness;

use std::time::Duration;

use harness::cluster::{eventually, Cluster};
use harness::Sandbox;
use serde_json::Value;

/// What `weft explain --json` said and how it exited.
struct Explained {
    code: Option<i32>,
    json: Value,
    stderr: String,
}

impl Explained {
    fn steps(&self) -> Vec<String> {
        self.json["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["step"].as_str().unwrap().into())
            .collect()
    }

    fn failed(&self) -> Option<&str> {
        self.json["failed_step"].as_str()
    }

    fn step(&self, name: &str) -> &Value {
        let steps = self.json["steps"].as_array().unwrap();
        steps
            .iter()
            .find(|s| s["step"] == name)
            .unwrap_or_else(|| panic!("no step {name}: {}", self.json))
    }

    /// Asserts the walk failed at `step` (exit 1, one error line naming
    /// it) and returns that step.
    fn fails_at(&self, step: &str) -> &Value {
        assert_eq!(self.failed(), Some(step), "wrong failing step: {:#}", self.json);
        assert_eq!(self.code, Some(1), "exit status: {:?}", self.code);
        assert!(self.stderr.contains(&format!("({step}) fails")), "stderr: {}", self.stderr);
        assert_eq!(
            self.json["steps"].as_array().unwrap().last().unwrap()["step"],
            step,
            "walk went on after the failure"
        );
        let s = self.step(step);
        assert_eq!(s["status"], "fail");
        assert!(s["why"].as_str().is_some_and(|w| !w.is_empty()), "no why: {s}");
        s
    }
}

fn explain(sb: &Sandbox, args: &[&str]) -> Explained {
    let mut all = vec!["explain", "--json"];
    all.extend_from_slice(args);
    explained(sb.weft_cmd(&all))
}

fn explained(mut cmd: std::process::Command) -> Explained {
    let out = cmd.output().expect("spawn weft");
    let stdout = String::from_utf8_lossy(&out.stdout);
    Explained {
        code: out.status.code(),
        json: serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}")),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

/// Network `n` with containers `a` and `b`; returns (a, b, a's endpoint, b's endpoint).
fn two(sb: &mut Sandbox) -> (String, String, Value, Value) {
    sb.weft_ok(&["network", "create", "n", "--subnet", "172.26.0.0/24"]);
    let a = sb.container("a");
    let b = sb.container("b");
    let ea = sb.attach("n", a, &[]);
    let eb = sb.attach("n", b, &[]);
    (sb.c(a).name.clone(), sb.c(b).name.clone(), ea, eb)
}

const BRIDGED: [&str; 11] = [
    "netns",
    "interface",
    "route",
    "neighbour",
    "veth",
    "bridge-port",
    "fdb",
    "firewall",
    "peer-veth",
    "peer",
    "mtu",
];

#[test]
fn healthy_path_passes_every_step() {
    let mut sb = Sandbox::new();
    let (a, b, _, eb) = two(&mut sb);
    let e = explain(&sb, &[&a, &b]);
    assert_eq!(e.code, Some(0), "{:#}", e.json);
    assert_eq!(e.json["result"], "pass");
    assert_eq!(e.steps(), BRIDGED);
    for st in e.json["steps"].as_array().unwrap() {
        assert_eq!(st["status"], "pass", "{st}");
    }
    assert_eq!(e.json["address"], "172.26.0.3");
    assert!(s(&e.step("route")["facts"]).contains("direct"), "{}", e.step("route"));
    assert!(s(&e.step("firewall")["facts"]).contains("one network is one switch"));

    // The same by address, and after traffic: the neighbour and FDB steps
    // name the peer's MAC and port.
    assert!(sb.c(0).ping("172.26.0.3"));
    let e = explain(&sb, &[&a, "172.26.0.3"]);
    assert_eq!(e.code, Some(0), "{:#}", e.json);
    assert!(s(&e.step("neighbour")["facts"]).contains(s(&eb["mac"])), "{}", e.step("neighbour"));
    assert!(s(&e.step("fdb")["facts"]).contains(s(&eb["host_veth"])), "{}", e.step("fdb"));

    // Text: one numbered line per step, and the verdict.
    let text = sb.weft_ok(&["explain", &a, &b, "--width", "100"]);
    for (i, st) in BRIDGED.iter().enumerate() {
        let line = format!("{:>4}  ok    {st}", i + 1);
        assert!(text.contains(&line), "no line {line:?} in\n{text}");
    }
    assert!(text.trim_end().ends_with("result: every step passes"), "{text}");
    assert!(text.lines().all(|l| l.chars().count() <= 100), "{text}");
}

#[test]
fn probe_sends_a_packet_and_counts_it_on_every_hop() {
    let mut sb = Sandbox::new();
    let (a, b, ea, eb) = two(&mut sb);
    let e = explain(&sb, &[&a, &b, "--probe"]);
    assert_eq!(e.code, Some(0), "{:#}", e.json);
    let p = e.step("probe");
    assert_eq!(p["status"], "pass", "{p}");
    assert!(s(&p["facts"]).contains("answered"), "{p}");
    let counters = s(&p["notes"][0]);
    for hop in [s(&ea["host_veth"]), s(&eb["host_veth"])] {
        assert!(counters.contains(&format!("{hop} ")), "{hop} not counted: {counters}");
    }
    assert!(!counters.contains("+0"), "a hop did not see the packet: {counters}");

    // TCP to a port nobody listens on: refused, so it got there.
    let e = explain(&sb, &[&a, &b, "--proto", "tcp", "--port", "8080", "--probe"]);
    assert_eq!(e.code, Some(0), "{:#}", e.json);
    assert!(s(&e.step("probe")["facts"]).contains("refused"), "{}", e.step("probe"));
}

#[test]
fn peer_interface_down() {
    let mut sb = Sandbox::new();
    let (a, b, _, _) = two(&mut sb);
    sb.c(1).sh("ip link set eth0 down");
    let e = explain(&sb, &[&a, &b]);
    let st = e.fails_at("peer");
    assert!(s(&st["why"]).contains("eth0 is down"), "{st}");
    assert_eq!(s(&st["fix"]), format!("ip -n {b} link set eth0 up"));
    // The peer's host veth lost its carrier for that reason: not its fault.
    assert_eq!(e.step("peer-veth")["status"], "pass");
}

#[test]
fn host_veth_detached_from_the_bridge() {
    let mut sb = Sandbox::new();
    let (a, b, ea, eb) = two(&mut sb);
    let vb = s(&eb["host_veth"]).to_string();
    sb.host.sh(&format!("ip link set {vb} nomaster"));
    let e = explain(&sb, &[&a, &b]);
    let st = e.fails_at("peer-veth");
    assert!(s(&st["why"]).contains("is not a port of weft-n"), "{st}");
    assert_eq!(s(&st["fix"]), format!("ip link set {vb} master weft-n"));

    // The sender's own veth detached: the failing step is its veth.
    sb.host.sh(&format!("ip link set {vb} master weft-n"));
    let va = s(&ea["host_veth"]).to_string();
    sb.host.sh(&format!("ip link set {va} nomaster"));
    let e = explain(&sb, &[&a, &b]);
    let st = e.fails_at("veth");
    assert_eq!(s(&st["fix"]), format!("ip link set {va} master weft-n"));
}

#[test]
fn wrong_static_neighbour_entry() {
    let mut sb = Sandbox::new();
    let (a, b, _, eb) = two(&mut sb);
    sb.c(0).sh("ip neigh replace 172.26.0.3 lladdr 02:00:00:00:00:99 nud permanent dev eth0");
    let e = explain(&sb, &[&a, &b]);
    let st = e.fails_at("neighbour");
    let why = s(&st["why"]);
    assert!(why.contains("02:00:00:00:00:99") && why.contains(s(&eb["mac"])), "{st}");
    assert!(why.contains("static"), "{st}");
    assert_eq!(s(&st["fix"]), format!("ip -n {a} neigh del 172.26.0.3 dev eth0"));
}

#[test]
fn isolation_between_two_networks() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "a", "--subnet", "172.27.1.0/24"]);
    sb.weft_ok(&["network", "create", "b", "--subnet", "172.27.2.0/24"]);
    let x = sb.container("x");
    let y = sb.container("y");
    sb.attach("a", x, &[]);
    sb.attach("b", y, &[]);
    let (xn, yn) = (sb.c(x).name.clone(), sb.c(y).name.clone());
    let e = explain(&sb, &[&xn, &yn]);
    assert_eq!(
        e.steps(),
        [
            "netns",
            "interface",
            "route",
            "neighbour",
            "veth",
            "bridge-port",
            "fdb",
            "host-route",
            "firewall"
        ]
    );
    assert!(s(&e.step("route")["facts"]).contains("via 172.27.1.1"), "{}", e.step("route"));
    assert!(s(&e.step("host-route")["facts"]).contains("weft-b"), "{}", e.step("host-route"));
    let st = e.fails_at("firewall");
    assert!(s(&st["facts"]).contains("isolation"), "{st}");
    assert!(s(&st["why"]).contains("weft-a . weft-b not in @same_bridge"), "{st}");
    assert!(s(&st["fix"]).starts_with(&format!("weft attach b {xn}")), "{st}");
    // And the probe agrees: the packet reaches the host, never weft-b's side.
    let e = explain(&sb, &[&xn, &yn, "--probe"]);
    let p = e.step("probe");
    assert_eq!(p["status"], "fail", "{p}");
}

#[test]
fn mtu_mismatch_on_the_path() {
    let mut sb = Sandbox::new();
    let (a, b, _, eb) = two(&mut sb);
    sb.c(1).sh("ip link set eth0 mtu 1400");
    let e = explain(&sb, &[&a, &b]);
    let st = e.fails_at("mtu");
    assert!(s(&st["why"]).contains(&format!("eth0 ({b}) has MTU 1400")), "{st}");
    assert_eq!(s(&st["fix"]), format!("ip -n {b} link set eth0 mtu 1500"));

    // The peer's host veth instead: the bridge follows its smallest port,
    // but the veth is the one to fix.
    sb.c(1).sh("ip link set eth0 mtu 1500");
    let vb = s(&eb["host_veth"]).to_string();
    sb.host.sh(&format!("ip link set {vb} mtu 1400"));
    let e = explain(&sb, &[&a, &b]);
    let st = e.fails_at("mtu");
    assert_eq!(s(&st["fix"]), format!("ip link set {vb} mtu 1500"), "{st}");
}

#[test]
fn routed_paths_gateway_outside_and_internal() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "o", "--subnet", "172.28.0.0/24"]);
    sb.weft_ok(&["network", "create", "i", "--subnet", "172.28.1.0/24", "--internal"]);
    sb.wire_outside();
    let c = sb.container("c");
    let d = sb.container("d");
    sb.attach("o", c, &[]);
    sb.attach("i", d, &[]);
    let (cn, dn) = (sb.c(c).name.clone(), sb.c(d).name.clone());

    // The gateway is the host itself.
    let e = explain(&sb, &[&cn, "172.28.0.1"]);
    assert_eq!(e.code, Some(0), "{:#}", e.json);
    assert!(s(&e.step("host-route")["facts"]).contains("address of the host"));

    // The outside: routed, accepted, masqueraded; the probe is answered.
    let e = explain(&sb, &[&cn, "203.0.113.2", "--probe"]);
    assert_eq!(e.code, Some(0), "{:#}", e.json);
    assert!(s(&e.step("nat")["facts"]).contains("masquerade"), "{}", e.step("nat"));
    assert!(s(&e.step("nat")["facts"]).contains("203.0.113.1"), "{}", e.step("nat"));
    assert_eq!(e.step("probe")["status"], "pass");

    // An internal network has no route out.
    let e = explain(&sb, &[&dn, "203.0.113.2"]);
    let st = e.fails_at("route");
    assert!(s(&st["why"]).contains("internal"), "{st}");

    // Unknown names are an error, not a verdict.
    let err = sb.weft_err(&["explain", "nobody", &cn]);
    assert!(err.contains("nobody is not attached"), "{err}");
}

#[test]
fn overlay_path_and_a_missing_remote_fdb_entry() {
    let mut c = Cluster::new(2);
    c.weft_ok(0, &["network", "create", "ov", "--driver", "overlay", "--subnet", "10.91.0.0/24"]);
    for h in 0..2 {
        eventually("the overlay's VXLAN device", Duration::from_secs(10), || {
            c.hosts[h].ns.try_sh("ip link show vx-ov")
        });
    }
    let (_, a) = c.attach(0, "ov");
    let (ipb, b) = c.attach(1, "ov");
    let (an, bn) = (c.c(0, a).name.clone(), c.c(1, b).name.clone());
    eventually("host 0 learns the remote container", Duration::from_secs(10), || {
        c.hosts[0].ns.try_sh(&format!("ip neigh show dev vx-ov {ipb} | grep -q lladdr"))
    });
    let run = |c: &Cluster| explained(c.weft_cmd(0, &["explain", "--json", &an, &bn]));

    let e = run(&c);
    assert_eq!(e.code, Some(0), "{:#}", e.json);
    let steps = e.steps();
    for want in ["fdb", "vxlan-fdb", "underlay", "peer", "mtu"] {
        assert!(steps.iter().any(|s| s == want), "no {want} step: {steps:?}");
    }
    assert!(s(&e.step("vxlan-fdb")["facts"]).contains("VTEP"), "{}", e.step("vxlan-fdb"));

    // With the agent stopped nothing repairs it: drop the VXLAN device's
    // entry for the remote container's MAC.
    c.hosts[0].agent.kill();
    let eps: Value = serde_json::from_str(&c.weft_ok(0, &["endpoint", "ls", "--json"])).unwrap();
    let mac = eps.as_array().unwrap().iter().find(|e| e["container"] == bn.as_str()).unwrap()
        ["mac"]
        .as_str()
        .unwrap()
        .to_string();
    c.hosts[0].ns.sh(&format!("bridge fdb del {mac} dev vx-ov self"));
    let e = run(&c);
    let st = e.fails_at("vxlan-fdb");
    assert!(s(&st["facts"]).contains(&mac), "{st}");
}
