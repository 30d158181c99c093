//! Bad input, crashes and garbage collection: every refused command prints
//! one error line and leaves the sandbox exactly as it was; a process killed
//! midway, a vanished container, stray links and a reboot are all repaired
//! by `weft gc` (or by the next mutating command) with kernel state read back.

mod harness;

use std::os::unix::process::ExitStatusExt;
use std::thread::sleep;
use std::time::Duration;

use harness::{eventually, run_ok, Netns, Sandbox, WEFT};
use serde_json::Value;

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

/// A snapshot taken once the kernel has settled: no tentative (DAD) IPv6
/// addresses and two reads in a row identical, so that a later comparison
/// only sees what a command changed.
fn settled(sb: &Sandbox) -> String {
    let mut prev = sb.snapshot();
    for _ in 0..40 {
        sleep(Duration::from_millis(150));
        let cur = sb.snapshot();
        if cur == prev && !cur.contains("tentative") {
            return cur;
        }
        prev = cur;
    }
    panic!("sandbox state never settled:\n{prev}");
}

/// Runs weft expecting a refusal: one error line containing `fragment`, and
/// the sandbox (links, addresses, routes, nftables, store) unchanged.
fn refused(sb: &Sandbox, args: &[&str], fragment: &str) -> String {
    let before = settled(sb);
    let err = sb.weft_err(args);
    assert!(
        err.to_lowercase().contains(&fragment.to_lowercase()),
        "weft {args:?}: error lacks {fragment:?}: {err}"
    );
    let after = sb.snapshot();
    assert_eq!(before, after, "weft {args:?} failed ({err}) but changed the sandbox");
    err
}

fn addresses(sb: &Sandbox) -> Vec<String> {
    let mut v: Vec<String> = sb.endpoints().iter().map(|e| s(&e["address"]).to_string()).collect();
    v.sort();
    v
}

/// Container-side links other than lo.
fn container_ifaces(ns: &Netns) -> Vec<String> {
    ns.ip_json("link show")
        .as_array()
        .unwrap()
        .iter()
        .map(|l| s(&l["ifname"]).to_string())
        .filter(|n| n != "lo")
        .collect()
}

fn host_veths(sb: &Sandbox) -> Vec<String> {
    sb.host
        .ip_json("link show type veth")
        .as_array()
        .unwrap()
        .iter()
        .map(|l| s(&l["ifname"]).to_string())
        .collect()
}

/// The bare address of an endpoint ("172.30.0.2" of "172.30.0.2/16").
fn ip_of(ep: &Value) -> &str {
    s(&ep["address"]).split('/').next().unwrap()
}

fn gc(sb: &Sandbox) -> Value {
    sb.weft_json(&["gc", "--json"])
}

fn report_has(report: &Value, field: &str, needle: &str) -> bool {
    report[field].as_array().unwrap().iter().any(|x| s(x).contains(needle))
}

// ---------------------------------------------------------------- bad input

#[test]
fn duplicate_network_name_is_refused() {
    let sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "dup", "--subnet", "172.20.1.0/24"]);
    refused(&sb, &["network", "create", "dup", "--subnet", "172.20.2.0/24"], "already exists");
}

#[test]
fn overlapping_subnets_are_refused_v4_and_v6() {
    let sb = Sandbox::new();
    sb.weft_ok(&[
        "network",
        "create",
        "one",
        "--subnet",
        "172.20.0.0/16",
        "--subnet6",
        "fd00:20::/64",
    ]);
    // v4: inside, and around, the existing subnet.
    refused(&sb, &["network", "create", "two", "--subnet", "172.20.5.0/24"], "overlaps");
    refused(&sb, &["network", "create", "two", "--subnet", "172.16.0.0/12"], "overlaps");
    // v6: a distinct v4 subnet, but the v6 subnet overlaps.
    let err = refused(
        &sb,
        &["network", "create", "two", "--subnet", "172.21.0.0/24", "--subnet6", "fd00:20::/80"],
        "overlaps",
    );
    assert!(err.contains("fd00:20::"), "error should name the v6 subnet: {err}");
}

#[test]
fn bridge_name_of_a_foreign_interface_is_refused() {
    let sb = Sandbox::new();
    // The kernel may lack the dummy driver; a veth is just as foreign.
    sb.host.sh("ip link add taken0 type dummy 2>/dev/null || ip link add taken0 type veth peer name taken0p");
    sb.host.sh("ip link add takenbr type bridge");
    refused(
        &sb,
        &["network", "create", "n", "--subnet", "172.20.3.0/24", "--bridge", "taken0"],
        "taken0",
    );
    refused(
        &sb,
        &["network", "create", "n", "--subnet", "172.20.3.0/24", "--bridge", "takenbr"],
        "takenbr",
    );
    assert!(sb.has_link("taken0") && sb.has_link("takenbr"), "foreign links were touched");
}

#[test]
fn bridge_name_over_15_bytes_is_refused() {
    let sb = Sandbox::new();
    refused(
        &sb,
        &["network", "create", "n", "--subnet", "172.20.4.0/24", "--bridge", "abcdefghijklmnop"],
        "15",
    );
}

#[test]
fn gateway_outside_subnet_is_refused() {
    let sb = Sandbox::new();
    refused(
        &sb,
        &["network", "create", "n", "--subnet", "172.20.5.0/24", "--gateway", "172.20.6.1"],
        "172.20.6.1",
    );
}

#[test]
fn attach_to_unknown_network_is_refused() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "real", "--subnet", "172.20.7.0/24"]);
    let c = sb.container("c");
    let name = sb.c(c).name.clone();
    refused(&sb, &["attach", "nosuch", &name], "nosuch");
    assert!(container_ifaces(sb.c(c)).is_empty());
}

#[test]
fn attach_with_a_regular_file_as_netns_is_refused() {
    let sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "n", "--subnet", "172.20.8.0/24"]);
    let file = sb.state_dir().join("not-a-netns");
    std::fs::write(&file, "hello").unwrap();
    let path = file.display().to_string();
    refused(&sb, &["attach", "n", "c1", "--netns", &path], "not a network namespace");
}

#[test]
fn attach_without_netns_for_unknown_container_is_refused() {
    let sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "n", "--subnet", "172.20.9.0/24"]);
    let ghost = harness::unique("ghost");
    let err = refused(&sb, &["attach", "n", &ghost], "does not exist");
    assert!(err.contains(&format!("/var/run/netns/{ghost}")), "error should name the path: {err}");
}

#[test]
fn attach_ip_outside_subnet_is_refused() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "n", "--subnet", "172.20.10.0/24"]);
    let c = sb.container("c");
    let name = sb.c(c).name.clone();
    refused(&sb, &["attach", "n", &name, "--ip", "172.20.11.5"], "172.20.11.5");
    // Network, gateway and broadcast addresses are never handed out either.
    for reserved in ["172.20.10.0", "172.20.10.1", "172.20.10.255"] {
        refused(&sb, &["attach", "n", &name, "--ip", reserved], reserved);
    }
    assert!(container_ifaces(sb.c(c)).is_empty());
}

#[test]
fn attach_ip_already_used_is_refused() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "n", "--subnet", "172.20.12.0/24"]);
    let a = sb.container("a");
    let b = sb.container("b");
    let ea = sb.attach("n", a, &["--ip", "172.20.12.50"]);
    assert_eq!(s(&ea["address"]), "172.20.12.50/24");
    let name = sb.c(b).name.clone();
    refused(&sb, &["attach", "n", &name, "--ip", "172.20.12.50"], "already used");
    assert!(container_ifaces(sb.c(b)).is_empty());
}

#[test]
fn exhausted_subnet_refuses_the_sixth_container_and_leaves_nothing() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "small", "--subnet", "172.20.13.0/29"]);
    for i in 0..5 {
        let c = sb.container(&format!("c{i}"));
        sb.attach("small", c, &[]);
    }
    let want: Vec<String> = (2..=6).map(|i| format!("172.20.13.{i}/29")).collect();
    assert_eq!(addresses(&sb), want, "a /29 holds exactly .2-.6");
    let sixth = sb.container("c5");
    let name = sb.c(sixth).name.clone();
    refused(&sb, &["attach", "small", &name], "no free address");
    assert!(container_ifaces(sb.c(sixth)).is_empty(), "the failed attach left an interface");
    assert_eq!(host_veths(&sb).len(), 5);
}

#[test]
fn attaching_the_same_container_twice_is_refused() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "n", "--subnet", "172.20.14.0/24"]);
    let c = sb.container("c");
    let e = sb.attach("n", c, &[]);
    let name = sb.c(c).name.clone();
    refused(&sb, &["attach", "n", &name], "already");
    // The first attachment is intact and still works.
    assert_eq!(container_ifaces(sb.c(c)), vec!["eth0".to_string()]);
    assert!(sb.c(c).ping("172.20.14.1"));
    assert_eq!(addresses(&sb), vec![s(&e["address"]).to_string()]);
}

#[test]
fn detach_of_unknown_container_or_network_is_refused() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "n", "--subnet", "172.20.15.0/24"]);
    let c = sb.container("c");
    sb.attach("n", c, &[]);
    refused(&sb, &["detach", "n", "nobody"], "nobody");
    let name = sb.c(c).name.clone();
    refused(&sb, &["detach", "other", &name], "other");
}

#[test]
fn network_rm_with_endpoints_needs_force() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "keep", "--subnet", "172.20.16.0/24"]);
    sb.weft_ok(&["network", "create", "gone", "--subnet", "172.20.17.0/24"]);
    let k = sb.container("k");
    sb.attach("keep", k, &[]);
    let mut eps = Vec::new();
    let mut ids = Vec::new();
    for i in 0..3 {
        let c = sb.container(&format!("g{i}"));
        eps.push(sb.attach("gone", c, &[]));
        ids.push(c);
    }
    assert!(sb.nft_set("bridges").unwrap().contains(&"weft-gone".to_string()));

    refused(&sb, &["network", "rm", "gone"], "--force");

    sb.weft_ok(&["network", "rm", "gone", "--force"]);
    assert!(!sb.has_link("weft-gone"), "bridge still there");
    // The veth pairs are retired at once and deleted in the background.
    eventually("veths of the removed network deleted", || {
        eps.iter().all(|e| !sb.has_link(s(&e["host_veth"])))
            && ids.iter().all(|&c| container_ifaces(sb.c(c)).is_empty())
    });
    assert_eq!(sb.nft_set("bridges").unwrap(), vec!["weft-keep"]);
    assert_eq!(sb.nft_set("same_bridge").unwrap(), vec!["weft-keep . weft-keep"]);
    assert_eq!(sb.nft_set("masq4").unwrap(), vec!["172.20.16.0/24"]);
    let eps_left = sb.endpoints();
    assert_eq!(eps_left.len(), 1);
    assert_eq!(s(&eps_left[0]["network"]), "keep");
    let nets = sb.weft_json(&["network", "ls", "--json"]);
    let names: Vec<&str> = nets.as_array().unwrap().iter().map(|n| s(&n["name"])).collect();
    assert_eq!(names, vec!["keep"]);
    // The survivor is untouched.
    assert!(sb.c(k).ping("172.20.16.1"));
}

#[test]
fn not_root_is_refused_with_a_permission_error() {
    let sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "n", "--subnet", "172.20.18.0/24"]);
    let before = settled(&sb);
    let out = sb
        .host
        .command("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", WEFT])
        .arg("--state-dir")
        .arg(sb.state_dir())
        .args(["network", "create", "m", "--subnet", "172.20.19.0/24"])
        .output()
        .expect("spawn setpriv");
    assert!(!out.status.success(), "unprivileged network create succeeded");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {stderr}");
    assert!(lines[0].starts_with("weft: error: "), "{stderr}");
    assert!(lines[0].contains("permission denied"), "not a permission error: {stderr}");
    assert_eq!(before, sb.snapshot(), "an unprivileged command changed the sandbox");
}

// ---------------------------------------------------------------- crash & gc

/// Runs an attach that kills itself at `failpoint`; returns the record the
/// crash left in the store.
fn crashed_attach(sb: &Sandbox, network: &str, container: &str, failpoint: &str) -> Value {
    let out = sb
        .weft_cmd(&["attach", network, container, "--json"])
        .env("WEFT_FAILPOINT", failpoint)
        .output()
        .expect("spawn weft");
    assert_eq!(out.status.signal(), Some(libc::SIGKILL), "failpoint {failpoint} did not fire");
    let eps = sb.endpoints();
    let ep = eps.iter().find(|e| e["container"] == container);
    let ep = ep.unwrap_or_else(|| panic!("{failpoint}: no record left by the crash: {eps:?}"));
    assert_eq!(s(&ep["state"]), "creating");
    ep.clone()
}

fn crash_then_gc(failpoint: &str, veth_left: bool) {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "n", "--subnet", "172.20.20.0/24"]);
    let live = sb.container("live");
    sb.attach("n", live, &[]);
    let victim = sb.container("victim");
    let vname = sb.c(victim).name.clone();
    let ep = crashed_attach(&sb, "n", &vname, failpoint);
    let veth = s(&ep["host_veth"]).to_string();
    assert_eq!(sb.has_link(&veth), veth_left, "{failpoint}: host veth presence after crash");
    assert_eq!(!container_ifaces(sb.c(victim)).is_empty(), veth_left);

    let report = gc(&sb);
    assert!(report_has(&report, "endpoints", &vname), "gc did not remove the record: {report}");

    let eps = sb.endpoints();
    assert_eq!(eps.len(), 1, "only the live endpoint should remain: {eps:?}");
    assert!(!sb.has_link(&veth), "host veth {veth} survived gc");
    assert!(container_ifaces(sb.c(victim)).is_empty(), "container still has eth0 after gc");
    assert_eq!(host_veths(&sb).len(), 1);

    // The address the crashed attach had reserved is free again. (IPAM
    // hands out the next address after the last one and wraps around, so a
    // plain attach would not reuse it at once: ask for it by --ip, which is
    // refused while any record holds it.)
    let next = sb.container("next");
    let e = sb.attach("n", next, &["--ip", ip_of(&ep)]);
    assert_eq!(e["address"], ep["address"], "the crashed attach's address was not freed");
    assert!(sb.c(next).ping("172.20.20.2"), "the new container cannot reach the live one");
    // And the victim itself can be attached again.
    sb.weft_ok(&["attach", "n", &vname]);
}

#[test]
fn crash_after_reserve_then_gc_frees_everything() {
    crash_then_gc("attach-after-reserve", false);
}

#[test]
fn crash_after_plug_then_gc_frees_everything() {
    crash_then_gc("attach-after-plug", true);
}

#[test]
fn gc_reclaims_endpoints_whose_netns_vanished() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "n", "--subnet", "172.20.21.0/24"]);
    let keep = sb.container("keep");
    sb.attach("n", keep, &[]);
    let gone = sb.container("gone");
    let e = sb.attach("n", gone, &[]);
    let gone_name = sb.c(gone).name.clone();
    // Deleted behind weft's back: the guard (and its open fd) go too.
    let ns = sb.containers.pop().unwrap();
    drop(ns);

    let report = gc(&sb);
    assert!(report_has(&report, "endpoints", &gone_name), "gc kept the endpoint: {report}");
    let eps = sb.endpoints();
    assert_eq!(eps.len(), 1);
    assert_eq!(eps[0]["container"].as_str(), Some(sb.c(keep).name.as_str()));
    assert!(!sb.has_link(s(&e["host_veth"])), "the vanished container's veth survived gc");

    let next = sb.container("next");
    let e2 = sb.attach("n", next, &["--ip", ip_of(&e)]);
    assert_eq!(e2["address"], e["address"], "the address was not freed");
    assert!(sb.c(next).ping("172.20.21.2"));
}

#[test]
fn gc_deletes_stray_weft_links_and_keeps_foreign_ones() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "n", "--subnet", "172.20.22.0/24"]);
    let c = sb.container("c");
    let e = sb.attach("n", c, &[]);
    sb.host.sh("ip link add vwstray000001 type veth peer name vwstray000001p && \
         ip link set vwstray000001 alias 'weft:ep=x/y/z' && \
         ip link add foreign0 type veth peer name foreign0p && \
         ip link add ghostbr type bridge && ip link set ghostbr alias 'weft:net=ghost' && \
         ip link add plainbr type bridge");
    let report = gc(&sb);
    assert!(report_has(&report, "veths", "vwstray000001"), "{report}");
    assert!(report_has(&report, "bridges", "ghostbr"), "{report}");
    let names = sb.host_link_names();
    for gone in ["vwstray000001", "vwstray000001p", "ghostbr"] {
        assert!(!names.iter().any(|n| n == gone), "gc left {gone}: {names:?}");
    }
    for kept in ["foreign0", "foreign0p", "plainbr", "weft-n", s(&e["host_veth"])] {
        assert!(names.iter().any(|n| n == kept), "gc deleted {kept}: {names:?}");
    }
    assert_eq!(sb.endpoints().len(), 1, "gc removed a live endpoint");
    assert!(sb.c(c).ping("172.20.22.1"), "the live endpoint stopped working");
    // A second gc has nothing left to do.
    let again = gc(&sb);
    for f in ["endpoints", "veths", "bridges", "repaired"] {
        assert!(again[f].as_array().unwrap().is_empty(), "second gc still repaired: {again}");
    }
}

#[test]
fn gc_deletes_a_retired_pair_whose_reaper_died() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "n", "--subnet", "172.20.26.0/24"]);
    let c = sb.container("c");
    let e = sb.attach("n", c, &[]);
    let veth = s(&e["host_veth"]).to_string();
    // What a detach leaves when its reaper is killed before it deletes:
    // the pair down and marked (here the record too, as if the detach
    // itself died right after retiring).
    sb.host.sh(&format!("ip link set {veth} down && ip link set {veth} alias weft:retired"));
    let report = gc(&sb);
    assert!(report_has(&report, "endpoints", "veth is gone"), "{report}");
    assert!(!sb.has_link(&veth), "gc left the retired veth");
    assert!(container_ifaces(sb.c(c)).is_empty(), "container end survived");
    assert!(sb.endpoints().is_empty());
    sb.attach("n", c, &[]);
    assert!(sb.c(c).ping("172.20.26.1"), "re-attach after gc does not work");
}

#[test]
fn reattach_right_after_detach_reuses_the_names() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "n", "--subnet", "172.20.27.0/24"]);
    let c = sb.container("c");
    let name = sb.c(c).name.clone();
    for round in 0..5 {
        // Same container, same ifname: the host veth name is the same, and
        // the previous pair may still be waiting for its reaper.
        let e = sb.attach("n", c, &[]);
        assert!(sb.c(c).ping("172.20.27.1"), "round {round}: gateway unreachable");
        assert_eq!(host_veths(&sb).iter().filter(|v| **v == s(&e["host_veth"])).count(), 1);
        sb.weft_ok(&["detach", "n", &name]);
    }
    eventually("no veth left", || host_veths(&sb).is_empty());
    assert!(container_ifaces(sb.c(c)).is_empty());
}

#[test]
fn gc_rebuilds_a_bridge_deleted_by_hand() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "n", "--subnet", "172.20.23.0/24"]);
    let a = sb.container("a");
    sb.attach("n", a, &[]);
    sb.host.sh("ip link del weft-n");
    assert!(!sb.has_link("weft-n"));

    let report = gc(&sb);
    assert!(report_has(&report, "repaired", "n"), "gc did not rebuild the network: {report}");
    let br = &sb.host.ip_json("addr show weft-n")[0];
    assert!(br["flags"].as_array().unwrap().iter().any(|f| f == "UP"), "bridge down: {br}");
    let addrs: Vec<String> = br["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| format!("{}/{}", s(&a["local"]), a["prefixlen"]))
        .collect();
    assert!(addrs.contains(&"172.20.23.1/24".to_string()), "gateway missing: {addrs:?}");
    assert!(sb.nft_set("bridges").unwrap().contains(&"weft-n".to_string()));

    // Attach works again and the new container reaches its gateway.
    let b = sb.container("b");
    let eb = sb.attach("n", b, &[]);
    assert!(sb.c(b).ping("172.20.23.1"), "new container cannot reach the rebuilt gateway");
    let l = &sb.host.ip_json(&format!("link show {}", s(&eb["host_veth"])))[0];
    assert_eq!(s(&l["master"]), "weft-n");
}

#[test]
fn gc_reconnects_endpoints_of_a_rebuilt_bridge() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "n", "--subnet", "172.20.24.0/24"]);
    let a = sb.container("a");
    let ea = sb.attach("n", a, &[]);
    sb.host.sh("ip link del weft-n");
    gc(&sb);
    // The endpoint survived gc (its netns and veth are alive), so it must
    // be a port of the rebuilt bridge again, not an orphaned veth.
    assert_eq!(sb.endpoints().len(), 1);
    let l = &sb.host.ip_json(&format!("link show {}", s(&ea["host_veth"])))[0];
    assert_eq!(
        l["master"].as_str(),
        Some("weft-n"),
        "endpoint kept by gc is not plugged into the rebuilt bridge: {l}"
    );
    assert!(sb.c(a).ping("172.20.24.1"), "old container cannot reach the rebuilt gateway");
}

#[test]
fn reboot_reclaims_endpoints_of_the_older_boot() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "n", "--subnet", "172.20.25.0/24"]);
    let old: Vec<usize> = (0..2).map(|i| sb.container(&format!("old{i}"))).collect();
    let old_eps: Vec<Value> = old.iter().map(|&c| sb.attach("n", c, &[])).collect();
    assert_eq!(sb.endpoints().len(), 2);
    // A reboot takes the containers (and their veths) with it. (A live
    // container without a record is not a stray: gc refuses to delete it,
    // see tests/ownership.rs.)
    for _ in &old {
        drop(sb.containers.remove(0));
    }

    // A new boot id: the first mutating command reclaims the old records.
    let boot = "00000000-test-boot-0000-000000000002";
    let weft = |sb: &Sandbox, args: &[&str]| {
        let out = sb.weft_cmd(args).env("WEFT_BOOT_ID", boot).output().expect("spawn weft");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    weft(&sb, &["network", "create", "other", "--subnet", "172.20.26.0/24"]);
    assert!(sb.endpoints().is_empty(), "records of the older boot were not reclaimed");

    // Their addresses are free: new containers can have them.
    for (i, old_ep) in old_eps.iter().enumerate() {
        let c = sb.container(&format!("new{i}"));
        let name = sb.c(c).name.clone();
        let args = ["attach", "n", &name, "--json", "--ip", ip_of(old_ep)];
        let e: Value = serde_json::from_str(&weft(&sb, &args)).unwrap();
        assert_eq!(e["address"], old_ep["address"], "address of the older boot not freed");
        assert_eq!(s(&e["boot_id"]), boot);
    }
    // gc keeps the new endpoints; the old veths are gone.
    let report: Value = serde_json::from_str(&weft(&sb, &["gc", "--json"])).unwrap();
    for e in &old_eps {
        eventually(&format!("old veth gone: {report}"), || !sb.has_link(s(&e["host_veth"])));
    }
    assert_eq!(sb.endpoints().len(), 2);
    assert_eq!(host_veths(&sb).len(), 2);
}

#[test]
fn failed_network_create_leaves_no_bridge_behind() {
    // A clash found only after the store record was written (the bridge
    // name is a foreign link): the record, bridge and rules are undone.
    let sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "a", "--subnet", "172.20.27.0/24"]);
    run_ok(sb.host.command("ip").args(["link", "add", "weft-b", "type", "bridge"]));
    refused(&sb, &["network", "create", "b", "--subnet", "172.20.28.0/24"], "weft-b");
    assert_eq!(sb.nft_set("bridges").unwrap(), vec!["weft-a"]);
}

/// A Linux bridge has at most 1023 ports. The bridge is filled to one free
/// port with veth pairs: one more attach takes it, the next is
/// refused with an error that says why, and leaves nothing behind.
#[test]
fn a_full_bridge_is_a_clear_error() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "full", "--subnet", "10.71.0.0/16"]);
    let batch: String = (0..1022)
        .map(|i| format!("link add wfd{i} master weft-full type veth peer name wfp{i}\n"))
        .collect();
    let mut ip = sb.host.command("ip");
    ip.args(["-batch", "-"]).stdin(std::process::Stdio::piped());
    let mut child = ip.spawn().expect("spawn ip -batch");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), batch.as_bytes())
        .expect("write batch");
    assert!(child.wait().expect("ip -batch").success(), "filler ports not created");
    let (a, b) = (sb.container("a"), sb.container("b"));
    sb.attach("full", a, &[]);
    let e = refused(&sb, &["attach", "full", &sb.c(b).name.clone()], "at most 1023");
    assert!(e.contains("no free port"), "{e}");
}
