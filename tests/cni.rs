//! weft as a CNI plugin: the real binary, env + stdin, in sandbox
//! namespaces. Results are parsed into typed structs that refuse unknown
//! fields, per spec version.

mod harness;

use harness::{eventually, Netns, Sandbox};
use serde::Deserialize;
use serde_json::{json, Value};

const VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct CniResult {
    #[serde(rename = "cniVersion")]
    cni_version: String,
    interfaces: Vec<Interface>,
    ips: Vec<Ip>,
    #[serde(default)]
    routes: Vec<Route>,
    #[serde(default)]
    dns: Dns,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Interface {
    name: String,
    mac: String,
    #[serde(default)]
    mtu: Option<u32>,
    #[serde(default)]
    sandbox: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Ip {
    #[serde(default)]
    version: Option<String>,
    address: String,
    #[serde(default)]
    gateway: Option<String>,
    #[serde(default)]
    interface: Option<usize>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Route {
    dst: String,
    #[serde(default)]
    gw: Option<String>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Dns {
    #[serde(default)]
    nameservers: Vec<String>,
    #[serde(default)]
    domain: Option<String>,
    #[serde(default)]
    search: Vec<String>,
    #[serde(default)]
    options: Vec<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct CniError {
    #[serde(rename = "cniVersion")]
    cni_version: String,
    code: u32,
    msg: String,
    #[serde(default)]
    #[allow(dead_code)]
    details: Option<String>,
}

fn conf(version: &str) -> Value {
    json!({"cniVersion": version, "name": "cninet", "type": "weft", "subnet": "10.77.0.0/24"})
}

fn env<'a>(cmd: &'a str, id: &'a str, ns: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![("CNI_COMMAND", cmd), ("CNI_CONTAINERID", id), ("CNI_NETNS", ns), ("CNI_IFNAME", "eth0")]
}

fn add(sb: &Sandbox, version: &str, id: &str, ns: &Netns) -> CniResult {
    let r = sb.cni(&env("ADD", id, ns.path.to_str().unwrap()), &conf(version));
    assert!(r.ok, "ADD failed: {} {}", r.raw, r.stderr);
    serde_json::from_value(r.stdout)
        .unwrap_or_else(|e| panic!("result shape ({version}): {e}: {}", r.raw))
}

fn err(r: &harness::CniRun) -> CniError {
    assert!(!r.ok, "expected failure, got {}", r.raw);
    serde_json::from_value(r.stdout.clone())
        .unwrap_or_else(|e| panic!("error shape: {e}: {}", r.raw))
}

fn endpoints(sb: &Sandbox) -> Vec<Value> {
    sb.weft_json(&["endpoint", "ls", "--json"]).as_array().unwrap().clone()
}

#[test]
fn add_check_del_in_every_version() {
    let mut sb = Sandbox::new();
    for (i, v) in VERSIONS.iter().enumerate() {
        let c = sb.container("c");
        let ns = sb.c(c);
        let id = format!("ctr{i}");
        let res = add(&sb, v, &id, ns);
        assert_eq!(res.cni_version, *v);
        // Three interfaces: bridge, host veth, container interface with its sandbox.
        assert_eq!(res.interfaces.len(), 3);
        assert_eq!(res.interfaces[2].name, "eth0");
        assert_eq!(res.interfaces[2].sandbox.as_deref(), Some(ns.path.to_str().unwrap()));
        assert_eq!(res.interfaces[2].mtu.is_some(), *v == "1.1.0");
        let ip = &res.ips[0];
        assert_eq!(ip.version.as_deref(), if v.starts_with('0') { Some("4") } else { None });
        assert_eq!(ip.interface, Some(2));
        assert_eq!(ip.gateway.as_deref(), Some("10.77.0.1"));
        assert_eq!(res.routes[0].dst, "0.0.0.0/0");
        assert_eq!(res.routes[0].gw.as_deref(), Some("10.77.0.1"));
        // What the result says is what the kernel has.
        let link = &ns.ip_json("link show eth0")[0];
        assert_eq!(link["address"], res.interfaces[2].mac.as_str());
        let host = &sb.host.ip_json(&format!("link show {}", res.interfaces[1].name))[0];
        assert_eq!(host["address"], res.interfaces[1].mac.as_str());
        assert_eq!(host["master"], res.interfaces[0].name.as_str());
        let addr = ip.address.split('/').next().unwrap();
        assert!(ns.ip_json("-4 addr show eth0")[0]["addr_info"][0]["local"] == addr);
        assert!(ns.ping("10.77.0.1"), "container cannot reach its gateway");

        if *v >= "0.4.0" {
            let mut c = conf(v);
            c["prevResult"] = serde_json::to_value(json!({"cniVersion": v})).unwrap();
            let r = sb.cni(&env("CHECK", &id, ns.path.to_str().unwrap()), &c);
            assert!(r.ok, "CHECK failed: {}", r.raw);
        }
        let r = sb.cni(&env("DEL", &id, ns.path.to_str().unwrap()), &conf(v));
        assert!(r.ok && r.raw.trim().is_empty(), "DEL: {} {}", r.raw, r.stderr);
        eventually("container interface deleted after DEL", || !ns.try_sh("ip link show eth0"));
        let veth = res.interfaces[1].name.clone();
        eventually("host veth deleted", || !sb.host.try_sh(&format!("ip link show {veth}")));
    }
    assert!(endpoints(&sb).is_empty());
}

#[test]
fn add_is_idempotent_and_shows_in_weft_endpoint_ls() {
    let mut sb = Sandbox::new();
    let c = sb.container("c");
    let a = add(&sb, "1.0.0", "same", sb.c(c));
    let b = add(&sb, "1.0.0", "same", sb.c(c));
    assert_eq!(a.ips[0].address, b.ips[0].address);
    assert_eq!(a.interfaces[2].mac, b.interfaces[2].mac);
    let eps = endpoints(&sb);
    assert_eq!(eps.len(), 1);
    assert_eq!(eps[0]["container"], "same");
    assert_eq!(eps[0]["network"], "cninet");
}

#[test]
fn del_edge_cases_all_succeed() {
    let mut sb = Sandbox::new();
    let c = sb.container("c");
    let path = sb.c(c).path.to_str().unwrap().to_string();
    let res = add(&sb, "1.0.0", "gone", sb.c(c));
    // The namespace disappears before DEL (runtime already cleaned up).
    sb.containers.remove(c);
    let r = sb.cni(&env("DEL", "gone", &path), &conf("1.0.0"));
    assert!(r.ok, "DEL with vanished netns: {}", r.raw);
    assert!(endpoints(&sb).is_empty(), "address not released");
    let veth = res.interfaces[1].name.clone();
    eventually("host veth deleted", || !sb.host.try_sh(&format!("ip link show {veth}")));
    // Empty CNI_NETNS, twice, unknown container, unknown network.
    for (id, net) in [("gone", "cninet"), ("gone", "cninet"), ("never", "cninet"), ("x", "nonet")] {
        let mut cf = conf("1.0.0");
        cf["name"] = json!(net);
        let r = sb.cni(&env("DEL", id, ""), &cf);
        assert!(r.ok, "DEL {id}/{net}: {}", r.raw);
    }
    // DEL after a failed ADD.
    let file = sb.state_dir().join("not-a-netns");
    std::fs::write(&file, b"").unwrap();
    let r = sb.cni(&env("ADD", "failed", file.to_str().unwrap()), &conf("1.0.0"));
    assert_eq!(err(&r).code, 4);
    let r = sb.cni(&env("DEL", "failed", file.to_str().unwrap()), &conf("1.0.0"));
    assert!(r.ok, "DEL after failed ADD: {}", r.raw);
}

#[test]
fn check_names_what_drifted() {
    let mut sb = Sandbox::new();
    let c = sb.container("c");
    let ns = sb.c(c);
    let p = ns.path.to_str().unwrap();
    add(&sb, "1.0.0", "drift", ns);
    let mut cf = conf("1.0.0");
    cf["prevResult"] = json!({"cniVersion": "1.0.0"});
    let check = || sb.cni(&env("CHECK", "drift", p), &cf);
    assert!(check().ok);

    ns.sh("ip addr flush dev eth0 && ip addr add 10.77.0.200/24 dev eth0 && ip route add default via 10.77.0.1");
    let e = err(&check());
    assert_eq!(e.code, 102);
    assert!(
        e.msg.contains("address 10.77.0.2/24 is missing") && e.msg.contains("10.77.0.200/24"),
        "{}",
        e.msg
    );

    ns.sh("ip addr flush dev eth0 && ip addr add 10.77.0.2/24 dev eth0");
    let e = err(&check());
    assert!(e.msg.contains("default route via 10.77.0.1 is missing"), "{}", e.msg);

    ns.sh("ip route add default via 10.77.0.1");
    assert!(check().ok);
    ns.sh("ip link set eth0 address 02:00:00:00:00:99");
    assert!(err(&check()).msg.contains("MAC is 02:00:00:00:00:99"));

    // CHECK does not exist before 0.4.0; it needs prevResult.
    let mut old = conf("0.3.1");
    old["prevResult"] = json!({});
    assert_eq!(err(&sb.cni(&env("CHECK", "drift", p), &old)).code, 1);
    assert_eq!(err(&sb.cni(&env("CHECK", "drift", p), &conf("1.0.0"))).code, 7);
    // Unknown container.
    assert_eq!(err(&sb.cni(&env("CHECK", "nobody", p), &cf)).code, 3);
}

#[test]
fn gc_removes_everything_not_in_valid_attachments() {
    let mut sb = Sandbox::new();
    let mut results = Vec::new();
    for i in 0..3 {
        let c = sb.container("c");
        results.push(add(&sb, "1.1.0", &format!("g{i}"), sb.c(c)));
    }
    // A veth leaked by some crash, marked as weft's.
    sb.host.sh("ip link add vwleak type veth peer name vwleakp && ip link set vwleak alias weft:ep=cninet/ghost/eth0");
    let mut cf = conf("1.1.0");
    cf["cni.dev/valid-attachments"] = json!([{"containerID": "g0", "ifname": "eth0"}]);
    let r = sb.cni(&[("CNI_COMMAND", "GC")], &cf);
    assert!(r.ok, "GC: {} {}", r.raw, r.stderr);
    let eps = endpoints(&sb);
    assert_eq!(eps.len(), 1);
    assert_eq!(eps[0]["container"], "g0");
    // The collected pairs are retired at once and deleted moments later.
    for (i, res) in results.iter().enumerate() {
        let show = format!("ip link show {}", res.interfaces[1].name);
        if i == 0 {
            assert!(sb.host.try_sh(&show), "GC deleted the valid attachment's veth");
        } else {
            eventually(&format!("veth of g{i} deleted"), || !sb.host.try_sh(&show));
        }
    }
    assert!(!sb.host.try_sh("ip link show vwleak"), "leaked veth survived GC");
    // GC is 1.1.0 only.
    assert_eq!(err(&sb.cni(&[("CNI_COMMAND", "GC")], &conf("1.0.0"))).code, 1);
}

#[test]
fn eight_concurrent_adds_on_a_new_network() {
    let mut sb = Sandbox::new();
    let idx: Vec<usize> = (0..8).map(|_| sb.container("c")).collect();
    let results: Vec<CniResult> = std::thread::scope(|s| {
        let hs: Vec<_> = idx
            .iter()
            .map(|&i| {
                let sb = &sb;
                s.spawn(move || add(sb, "1.0.0", &format!("par{i}"), sb.c(i)))
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("ADD thread")).collect()
    });
    let mut addrs: Vec<&str> = results.iter().map(|r| r.ips[0].address.as_str()).collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 8, "addresses: {addrs:?}");
    assert_eq!(endpoints(&sb).len(), 8);
    assert_eq!(sb.weft_json(&["network", "ls", "--json"]).as_array().unwrap().len(), 1);
    let first = results[0].ips[0].address.split('/').next().unwrap().to_string();
    for &i in &idx[1..] {
        assert!(sb.c(i).ping(&first), "container {i} cannot reach {first}");
    }
}

/// What is wrong, the CNI environment, stdin, and the expected error code.
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<u8>, u32);

#[test]
fn malformed_input_gets_the_right_code_and_changes_nothing() {
    let mut sb = Sandbox::new();
    let c = sb.container("c");
    let p = sb.c(c).path.to_str().unwrap().to_string();
    let before = sb.snapshot();
    let file = sb.state_dir().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let good = serde_json::to_vec(&conf("1.0.0")).unwrap();
    let huge = format!(
        r#"{{"cniVersion":"1.0.0","name":"n","type":"weft","pad":"{}"}}"#,
        "x".repeat(3 << 20)
    );
    let cases: Vec<Case> = vec![
        ("invalid JSON", env("ADD", "m", &p), b"{\"cniVersion\": ".to_vec(), 6),
        (
            "unknown version",
            env("ADD", "m", &p),
            br#"{"cniVersion":"7.0.0","name":"n","type":"weft"}"#.to_vec(),
            1,
        ),
        (
            "missing name",
            env("ADD", "m", &p),
            br#"{"cniVersion":"1.0.0","type":"weft"}"#.to_vec(),
            7,
        ),
        (
            "wrong type",
            env("ADD", "m", &p),
            br#"{"cniVersion":"1.0.0","name":"n","type":"weft","mtu":"x"}"#.to_vec(),
            7,
        ),
        (
            "bad subnet",
            env("ADD", "m", &p),
            br#"{"cniVersion":"1.0.0","name":"n","type":"weft","subnet":"300.0.0.0/8"}"#.to_vec(),
            7,
        ),
        (
            "foreign ipam",
            env("ADD", "m", &p),
            br#"{"cniVersion":"1.0.0","name":"n","type":"weft","ipam":{"type":"dhcp"}}"#.to_vec(),
            7,
        ),
        ("not a netns", env("ADD", "m", file.to_str().unwrap()), good.clone(), 4),
        ("missing netns", env("ADD", "m", "/nonexistent/netns"), good.clone(), 4),
        (
            "no container id",
            vec![("CNI_COMMAND", "ADD"), ("CNI_NETNS", &p), ("CNI_IFNAME", "eth0")],
            good.clone(),
            4,
        ),
        (
            "bad ifname",
            vec![
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "m"),
                ("CNI_NETNS", &p),
                ("CNI_IFNAME", "way-too-long-ifname"),
            ],
            good.clone(),
            4,
        ),
        ("unknown command", vec![("CNI_COMMAND", "FROB")], good.clone(), 4),
        ("huge config", env("ADD", "m", &p), huge.into_bytes(), 7),
    ];
    for (what, e, stdin, code) in cases {
        let r = sb.cni_raw(&e, &stdin);
        let er = err(&r);
        assert_eq!(er.code, code, "{what}: {}", r.raw);
        assert!(!er.msg.is_empty() && !er.cni_version.is_empty(), "{what}");
        assert!(!r.stderr.contains("panicked"), "{what} panicked: {}", r.stderr);
    }
    assert_eq!(before, sb.snapshot(), "malformed input changed something");
}

#[test]
fn chained_prev_result_and_status_and_version() {
    let mut sb = Sandbox::new();
    let c = sb.container("c");
    let p = sb.c(c).path.to_str().unwrap().to_string();
    let mut cf = conf("1.0.0");
    cf["prevResult"] = json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "other0", "mac": "02:00:00:00:00:01"}],
        "ips": [{"address": "192.0.2.5/24", "interface": 0}],
    });
    let r = sb.cni(&env("ADD", "chain", &p), &cf);
    assert!(r.ok, "{}", r.raw);
    let res: CniResult = serde_json::from_value(r.stdout).unwrap();
    assert_eq!(res.interfaces.len(), 4);
    assert_eq!(res.interfaces[0].name, "other0");
    assert_eq!(res.ips[1].interface, Some(3), "our IP must point at our container interface");

    let r = sb.cni(&[("CNI_COMMAND", "STATUS")], &conf("1.1.0"));
    assert!(r.ok && r.raw.trim().is_empty(), "STATUS: {}", r.raw);
    let r = sb.cni_raw(&[("CNI_COMMAND", "VERSION")], br#"{"cniVersion":"1.1.0"}"#);
    assert!(r.ok);
    assert_eq!(r.stdout["supportedVersions"], json!(VERSIONS));
}
