//! Several weft processes at once: 4 workers attach 50 containers each at
//! the same moment; every container gets its own address, its own port on
//! the bridge, and is reachable. Then 4 workers detach them all at once.

mod harness;

use std::collections::{BTreeSet, HashSet};
use std::sync::Barrier;
use std::time::Instant;

use harness::{eventually, Sandbox};
use serde_json::Value;

const WORKERS: usize = 4;
const PER_WORKER: usize = 50;
const N: usize = WORKERS * PER_WORKER;

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

/// Runs `weft ARGS CONTAINER` for every container of each worker's share,
/// the workers in parallel, each one process after the other. Returns the
/// failures as "container: stderr".
fn in_parallel(sb: &Sandbox, args: &[&str]) -> Vec<String> {
    let start = Barrier::new(WORKERS);
    let mut failures = Vec::new();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..WORKERS)
            .map(|w| {
                let start = &start;
                scope.spawn(move || {
                    start.wait();
                    let mut failed = Vec::new();
                    for i in w * PER_WORKER..(w + 1) * PER_WORKER {
                        let name = &sb.c(i).name;
                        let mut full = args.to_vec();
                        full.push(name);
                        let out = sb.weft_cmd(&full).output().expect("spawn weft");
                        if !out.status.success() {
                            failed.push(format!(
                                "{name}: {}",
                                String::from_utf8_lossy(&out.stderr).trim()
                            ));
                        }
                    }
                    failed
                })
            })
            .collect();
        for h in handles {
            failures.extend(h.join().expect("worker panicked"));
        }
    });
    failures
}

/// Pings every address from `from`, 50 at a time; returns those that did
/// not answer.
fn unreachable(from: &harness::Netns, addrs: &[String], wait: u32) -> Vec<String> {
    let mut lost = Vec::new();
    for batch in addrs.chunks(50) {
        let script = format!(
            "for ip in {}; do (ping -c1 -W{wait} $ip >/dev/null 2>&1 || echo $ip) & done; wait",
            batch.join(" ")
        );
        lost.extend(from.sh(&script).lines().map(String::from));
    }
    lost
}

#[test]
fn four_workers_attach_200_containers_at_once() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "big", "--subnet", "172.24.0.0/24"]);
    for i in 0..N {
        sb.container(&format!("c{i}"));
    }

    let t = Instant::now();
    let failures = in_parallel(&sb, &["attach", "big"]);
    let took = t.elapsed();
    assert!(
        failures.is_empty(),
        "{} of {N} attaches failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{N} attaches by {WORKERS} workers in {took:?}");

    // The store: 200 endpoints, 200 distinct addresses inside the subnet,
    // none of them reserved.
    let eps = sb.endpoints();
    assert_eq!(eps.len(), N);
    let addrs: BTreeSet<&str> = eps.iter().map(|e| s(&e["address"])).collect();
    assert_eq!(addrs.len(), N, "duplicate addresses handed out");
    for a in &addrs {
        let (ip, len) = a.split_once('/').unwrap();
        assert_eq!(len, "24");
        let last: u32 = ip.strip_prefix("172.24.0.").expect("outside the subnet").parse().unwrap();
        assert!((2..=254).contains(&last), "reserved address handed out: {a}");
    }
    assert!(eps.iter().all(|e| s(&e["state"]) == "ready"));

    // The kernel: 200 veths, all ports of the bridge, exactly the store's.
    let ports: HashSet<String> = sb
        .host
        .ip_json("link show master weft-big")
        .as_array()
        .unwrap()
        .iter()
        .map(|l| s(&l["ifname"]).to_string())
        .collect();
    let veths: HashSet<String> = eps.iter().map(|e| s(&e["host_veth"]).to_string()).collect();
    assert_eq!(ports.len(), N, "bridge ports");
    assert_eq!(ports, veths, "bridge ports differ from the store's veths");

    // Every container has the store's address on eth0 (read with ip -n,
    // one shell for all 200).
    let script: String =
        (0..N).map(|i| format!("ip -n {} -j -4 addr show dev eth0; echo;", sb.c(i).name)).collect();
    let out = sb.host.sh(&script);
    let mut in_kernel = BTreeSet::new();
    for (i, line) in out.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let v: Value = serde_json::from_str(line).unwrap();
        let a = &v[0]["addr_info"][0];
        let cidr = format!("{}/{}", s(&a["local"]), a["prefixlen"]);
        let ep = eps.iter().find(|e| e["container"] == sb.c(i).name.as_str()).unwrap();
        assert_eq!(cidr, s(&ep["address"]), "container {i}'s eth0 address");
        in_kernel.insert(cidr);
    }
    assert_eq!(in_kernel.len(), N);

    // Every container is reachable from container 0.
    let me = eps.iter().find(|e| e["container"] == sb.c(0).name.as_str()).unwrap();
    let others: Vec<String> = addrs
        .iter()
        .filter(|a| **a != s(&me["address"]))
        .map(|a| a.split('/').next().unwrap().to_string())
        .collect();
    assert_eq!(others.len(), N - 1);
    let lost = unreachable(sb.c(0), &others, 1);
    // One retry with more patience: a loaded 2-core machine may be slow
    // to answer the first ARP; a missing port would still fail.
    let lost = if lost.is_empty() { lost } else { unreachable(sb.c(0), &lost, 3) };
    assert!(lost.is_empty(), "unreachable from container 0: {lost:?}");

    // Four workers detach everything at once.
    let t = Instant::now();
    let failures = in_parallel(&sb, &["detach", "big"]);
    eprintln!("{N} detaches by {WORKERS} workers in {:?}", t.elapsed());
    assert!(
        failures.is_empty(),
        "{} of {N} detaches failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(sb.endpoints().is_empty(), "store not empty after detaching all");
    // Every pair is retired at once and deleted by reapers moments later.
    eventually("all veths deleted", || {
        sb.host.ip_json("link show type veth").as_array().unwrap().is_empty()
    });
    assert!(sb.host.ip_json("link show master weft-big").as_array().unwrap().is_empty());
    let script: String = (0..N)
        .map(|i| format!("ip -n {} -o link show | grep -v ': lo:' || true;", sb.c(i).name))
        .collect();
    let left = sb.host.sh(&script);
    assert!(left.trim().is_empty(), "container interfaces left:\n{left}");
}
