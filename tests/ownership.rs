//! One owner for every address, record and kernel object (issue 13): gc
//! never removes what a live operation owns, and what weft removes is its
//! own.

mod harness;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use harness::cluster::{eventually, Cluster};
use harness::Sandbox;
use serde_json::{json, Value};

const ATTACHES: usize = 80;
const ATTACH_WORKERS: usize = 4;

/// `weft gc` in a loop (two loops at once) while 4 workers attach 80
/// containers: every attach that exited 0 must still have its eth0 and its
/// record. Before gc shared a lock with attach, gc acted on a link list
/// taken before the attach plugged its veth and removed the endpoint as
/// "veth is gone" or "attach was interrupted".
#[test]
fn gc_racing_attaches_never_removes_a_live_endpoint() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "race", "--subnet", "172.25.0.0/24"]);
    for i in 0..ATTACHES {
        sb.container(&format!("r{i}"));
    }
    let stop = AtomicBool::new(false);
    let gc_runs = AtomicUsize::new(0);
    let gc_errors = std::sync::Mutex::new(Vec::new());
    let mut attached = Vec::new();
    let sb = &sb;
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                while !stop.load(Ordering::SeqCst) {
                    let r = sb.weft(&["gc"]);
                    if !r.ok {
                        gc_errors.lock().unwrap().push(r.stderr);
                    }
                    gc_runs.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        let workers: Vec<_> = (0..ATTACH_WORKERS)
            .map(|w| {
                scope.spawn(move || {
                    let mut ok = Vec::new();
                    for i in (w..ATTACHES).step_by(ATTACH_WORKERS) {
                        let c = sb.c(i);
                        let path = c.path.to_str().unwrap();
                        let r = sb.weft(&["attach", "race", &c.name, "--netns", path]);
                        if r.ok {
                            ok.push(i);
                        }
                    }
                    ok
                })
            })
            .collect();
        for w in workers {
            attached.extend(w.join().expect("attach worker"));
        }
        stop.store(true, Ordering::SeqCst);
    });
    let gc_errors = gc_errors.into_inner().unwrap();
    assert!(gc_errors.is_empty(), "gc failed during the attaches: {gc_errors:?}");
    let runs = gc_runs.load(Ordering::SeqCst);
    assert!(runs >= 10, "gc ran only {runs} times during the attaches: no race tested");
    assert_eq!(attached.len(), ATTACHES, "every attach should succeed");

    let records: Vec<String> = sb
        .endpoints()
        .iter()
        .map(|e| e["container"].as_str().expect("container").to_string())
        .collect();
    let mut lost = Vec::new();
    for &i in &attached {
        let c = sb.c(i);
        let has_eth0 = c.try_sh("ip link show eth0");
        let has_record = records.contains(&c.name);
        if !has_eth0 || !has_record {
            lost.push(format!("{} (eth0: {has_eth0}, record: {has_record})", c.name));
        }
    }
    assert!(lost.is_empty(), "{} of {ATTACHES} attached containers lost: {lost:?}", lost.len());
}

/// Runs weft as a CNI plugin on cluster host `i` (etcd and node from the
/// environment, as a runtime would start it).
fn cni_on(c: &Cluster, i: usize, command: &str, container: &str, conf: &Value) -> harness::Run {
    use std::io::Write;
    let h = &c.hosts[i];
    let mut conf = conf.clone();
    conf["stateDir"] = h.state.path().display().to_string().into();
    let mut cmd = h.ns.command(harness::WEFT);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("WEFT_ETCD", harness::cluster::etcd_url())
        .env("WEFT_NODE", &h.name)
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_NETNS", "/proc/self/ns/net")
        .env("CNI_PATH", "/opt/cni/bin")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn weft");
    child.stdin.take().expect("stdin").write_all(conf.to_string().as_bytes()).expect("write conf");
    harness::to_run(child.wait_with_output().expect("wait weft"))
}

/// Cluster mode: CNI GC and DEL on host 1 touch only host 1's endpoints.
/// Before, GC listed every endpoint of the network and tore down host 0's
/// live containers (their records and with them their addresses), and a
/// DEL of a container id that lives on host 0 removed its record.
#[test]
fn cni_gc_and_del_in_a_cluster_touch_only_this_nodes_endpoints() {
    let mut c = Cluster::new(2);
    c.weft_ok(0, &["network", "create", "ov", "--driver", "overlay", "--subnet", "10.91.0.0/24"]);
    for h in 0..2 {
        eventually("overlay bridge on every host", Duration::from_secs(10), || {
            c.hosts[h].ns.try_sh("ip link show vx-ov")
        });
    }
    let (a0, i0) = c.attach(0, "ov");
    let (a1, i1) = c.attach(1, "ov");
    let name0 = c.c(0, i0).name.clone();
    let name1 = c.c(1, i1).name.clone();

    let conf = json!({"cniVersion": "1.1.0", "name": "ov", "type": "weft",
                      "cni.dev/valid-attachments": []});
    let r = cni_on(&c, 1, "GC", "", &conf);
    assert!(r.ok, "GC on host1: {} {}", r.stdout, r.stderr);
    let r = cni_on(&c, 1, "DEL", &name0, &conf);
    assert!(r.ok, "DEL on host1 of host0's container: {} {}", r.stdout, r.stderr);

    let eps: Vec<Value> =
        serde_json::from_str(&c.weft_ok(0, &["endpoint", "ls", "--json"])).unwrap();
    let has = |name: &str| eps.iter().any(|e| e["container"] == name);
    assert!(has(&name0), "host0's endpoint {name0} ({a0}) was removed by host1: {eps:?}");
    assert!(!has(&name1), "host1's own endpoint {name1} ({a1}) should be collected: {eps:?}");
    assert!(c.c(0, i0).try_sh("ip link show eth0"), "host0's container lost its eth0");
    // The address is still host0's: a new attach on host1 does not get it.
    let (a2, _) = c.attach(1, "ov");
    assert_ne!(a2, a0, "host0's live address was handed out again");
}

/// Waits until the host's snapshot stops changing on its own (the
/// bridge's link-local address appears a moment after carrier, then
/// leaves "tentative"): the same twice, 500 ms apart.
fn settled(sb: &Sandbox) {
    let mut last = sb.snapshot();
    eventually("the sandbox's kernel state settles", Duration::from_secs(10), || {
        std::thread::sleep(Duration::from_millis(500));
        let now = sb.snapshot();
        let same = now == last && !now.contains("tentative");
        last = now;
        same
    });
}

/// weft with another state directory in the sandbox's namespace.
fn weft_in(sb: &Sandbox, state: &std::path::Path, args: &[&str]) -> harness::Run {
    let mut cmd = sb.host.command(harness::WEFT);
    cmd.arg("--state-dir").arg(state).args(args).env_remove("WEFT_FAILPOINT");
    harness::to_run(cmd.output().expect("spawn weft"))
}

/// Two state directories in one namespace: the second store is refused
/// with a clear error before it changes anything. Before, its gc deleted
/// the first store's live endpoint (a weft veth it had no record of) and
/// its network create rebuilt the firewall table from its own networks
/// only, dropping the first store's internal network from isolation.
#[test]
fn a_second_store_in_one_namespace_is_refused() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "a", "--subnet", "172.26.1.0/24", "--internal"]);
    let c = sb.container("a");
    let e = sb.attach("a", c, &[]);
    settled(&sb);
    let before = sb.snapshot();
    let internal_before = sb.nft_set("internal");
    assert!(internal_before.as_ref().is_some_and(|s| !s.is_empty()), "no internal set");

    let other = tempfile::tempdir().expect("tempdir");
    for args in [
        &["network", "create", "b", "--subnet", "172.26.2.0/24"][..],
        &["gc"],
        &["firewall", "reload"],
    ] {
        let r = weft_in(&sb, other.path(), args);
        let line = harness::one_error_line(&r);
        assert!(
            line.contains("holds weft's network a") && line.contains("gc --adopt"),
            "{args:?}: {line}"
        );
    }
    assert_eq!(sb.snapshot(), before, "the second store changed the first one's objects");
    assert_eq!(sb.nft_set("internal"), internal_before);
    assert!(sb.c(c).try_sh("ip link show eth0"), "the first store's container lost eth0");
    assert_eq!(sb.endpoints()[0]["address"], e["address"]);
}

/// Empties the store as a crash or a full disk could: the database cut to
/// 0 bytes, its WAL gone.
fn zero_the_store(sb: &Sandbox) {
    let dir = sb.state_dir();
    std::fs::write(dir.join("weft.db"), b"").expect("truncate db");
    for f in ["weft.db-wal", "weft.db-shm"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
}

/// A store lost (0-byte database) while containers run: every command that
/// would act on it says so, and `weft gc --adopt` rebuilds networks and
/// endpoints from the kernel, so their addresses are not handed out again.
/// Before, the empty store re-created the network over the old bridge and
/// gave a live container's address to the next attach, and gc deleted the
/// live containers' veths as leaks.
#[test]
fn a_lost_store_is_an_error_and_gc_adopt_rebuilds_it() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&[
        "network",
        "create",
        "n",
        "--subnet",
        "172.26.3.0/24",
        "--subnet6",
        "fd00:26:3::/64",
    ]);
    let c0 = sb.container("c");
    let c1 = sb.container("c");
    let e0 = sb.attach("n", c0, &[]);
    let e1 = sb.attach("n", c1, &[]);
    zero_the_store(&sb);

    let line = sb.weft_err(&["network", "create", "n", "--subnet", "172.26.3.0/24"]);
    assert!(line.contains("new, empty or damaged") && line.contains("gc --adopt"), "{line}");
    let line = sb.weft_err(&["gc"]);
    assert!(line.contains("gc --adopt"), "{line}");
    assert!(sb.c(c0).try_sh("ip link show eth0"), "gc deleted a live container's eth0");

    let report = sb.weft_json(&["gc", "--adopt", "--json"]);
    let adopted = report["adopted"].as_array().expect("adopted list");
    assert_eq!(adopted.len(), 3, "network and two endpoints: {report}");
    let eps = sb.endpoints();
    for e in [&e0, &e1] {
        let got = eps.iter().find(|x| x["container"] == e["container"]);
        let got = got.unwrap_or_else(|| panic!("{} not adopted: {eps:?}", e["container"]));
        assert_eq!(got["address"], e["address"]);
        assert_eq!(got["address6"], e["address6"]);
        assert_eq!(got["mac"], e["mac"]);
    }
    // A new container gets a new address; the old ones keep working, and a
    // second gc finds nothing to do.
    let c2 = sb.container("c");
    let e2 = sb.attach("n", c2, &[]);
    assert!(e2["address"] != e0["address"] && e2["address"] != e1["address"]);
    let ip0 = e0["address"].as_str().unwrap().split('/').next().unwrap().to_string();
    assert!(sb.c(c2).ping(&ip0), "the adopted container is unreachable");
    let again = sb.weft_json(&["gc", "--json"]);
    for f in ["endpoints", "veths", "bridges", "adopted"] {
        assert!(again[f].as_array().unwrap().is_empty(), "second gc still repaired: {again}");
    }
    // And detach works on an adopted endpoint.
    sb.weft_ok(&["detach", "n", &sb.c(c0).name.clone()]);
}

/// A detach whose store cannot be written (a read-only state directory,
/// or a full disk) fails with one error and leaves the container working.
/// Before, it had already taken the container's link down.
#[test]
fn detach_with_a_read_only_store_leaves_the_container_working() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "n", "--subnet", "172.26.4.0/24"]);
    let c = sb.container("c");
    sb.attach("n", c, &[]);
    settled(&sb);
    let before = sb.snapshot();
    // The state directory read-only for this one command (a private mount
    // namespace: nothing else sees the read-only mount).
    let dir = sb.state_dir().display().to_string();
    let script = format!(
        "mount --bind {dir} {dir} && mount -o remount,bind,ro {dir} && \
         exec {} --state-dir {dir} detach n {}",
        harness::WEFT,
        sb.c(c).name
    );
    let out =
        sb.host.command("unshare").args(["-m", "sh", "-c", &script]).output().expect("unshare");
    let r = harness::to_run(out);
    let line = harness::one_error_line(&r);
    assert!(line.contains("detach"), "{line}");
    assert_eq!(sb.snapshot(), before, "the failed detach changed something");
    assert!(sb.c(c).ping("172.26.4.1"), "the container was cut off by a failed detach");
}

fn addr_of(out: &str) -> String {
    let v: Value = serde_json::from_str(out).expect("attach json");
    v["address"].as_str().unwrap().split('/').next().unwrap().to_string()
}

/// Lease loss is not node death (item 2): host 1 is cut from the underlay
/// for 3 TTLs while host 0 attaches three containers. Host 1 is shown
/// unreachable, its addresses stay taken, and after the heal every
/// container reaches every other. Before, host 1's records died with its
/// lease, host 0 was handed host 1's addresses, and nothing re-registered
/// host 1's endpoints.
#[test]
fn a_partitioned_host_keeps_its_addresses_and_comes_back() {
    let mut c = Cluster::with_agent_args(2, &["--ttl", "2", "--resync", "2"]);
    c.weft_ok(0, &["network", "create", "ov", "--driver", "overlay", "--subnet", "10.92.0.0/24"]);
    for h in 0..2 {
        eventually("overlay bridge on every host", Duration::from_secs(10), || {
            c.hosts[h].ns.try_sh("ip link show vx-ov")
        });
    }
    let mut addrs = vec![c.attach(1, "ov"), c.attach(1, "ov")];
    let host1_addrs: Vec<String> = addrs.iter().map(|(a, _)| a.clone()).collect();

    c.hosts[1].ns.sh("ip link set eth0 down");
    eventually("host1 unreachable", Duration::from_secs(15), || {
        c.state_of(0, 1).as_deref() == Some("unreachable")
    });
    let mut host0 = Vec::new();
    for _ in 0..3 {
        let (a, i) = c.attach(0, "ov");
        assert!(!host1_addrs.contains(&a), "host1's live address {a} was handed out again");
        host0.push((a, i));
    }
    std::thread::sleep(Duration::from_secs(4));
    let eps: Vec<Value> =
        serde_json::from_str(&c.weft_ok(0, &["endpoint", "ls", "--json"])).unwrap();
    assert_eq!(eps.len(), 5, "host1's endpoints must stay recorded: {eps:?}");

    c.hosts[1].ns.sh("ip link set eth0 up");
    let t = eventually("host1 alive again", Duration::from_secs(20), || {
        c.state_of(0, 1).as_deref() == Some("alive")
    });
    eprintln!("host1 registered again {t:?} after the heal");
    addrs.extend(host0.iter().cloned());
    let all: Vec<(usize, usize, String)> = addrs
        .iter()
        .enumerate()
        .map(|(n, (a, i))| (if n < 2 { 1 } else { 0 }, *i, a.clone()))
        .collect();
    let mut unique: Vec<&String> = all.iter().map(|(_, _, a)| a).collect();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), all.len(), "duplicate addresses: {all:?}");
    for (h, i, _) in &all {
        for (_, _, to) in &all {
            let ns = c.c(*h, *i);
            eventually(&format!("{} reaches {to}", ns.name), Duration::from_secs(15), || {
                ns.try_sh(&format!("ping -c1 -W1 {to}"))
            });
        }
    }
}

/// Past its grace period an unreachable host is removed and its addresses
/// freed; when it comes back its agent records its live containers again,
/// and one whose address another host took meanwhile is reported as a
/// conflict by `weft gc`, not silently kept.
#[test]
fn a_host_back_after_its_grace_period_reasserts_and_reports_conflicts() {
    let mut c = Cluster::with_agent_args(2, &["--ttl", "2", "--resync", "2", "--node-grace", "3"]);
    c.weft_ok(0, &["network", "create", "ov", "--driver", "overlay", "--subnet", "10.93.0.0/24"]);
    for h in 0..2 {
        eventually("overlay bridge on every host", Duration::from_secs(10), || {
            c.hosts[h].ns.try_sh("ip link show vx-ov")
        });
    }
    let (kept, _) = c.attach(1, "ov");
    let (taken, _) = c.attach(1, "ov");
    c.hosts[1].ns.sh("ip link set eth0 down");
    eventually("host1 removed after its grace period", Duration::from_secs(30), || {
        c.state_of(0, 1).is_none()
    });
    // Host1's address is free now; host0 takes it on purpose.
    let ns = harness::Netns::new("h0c");
    let path = ns.path.to_str().unwrap().to_string();
    let out = c.weft_ok(0, &["attach", "ov", &ns.name, "--netns", &path, "--ip", &taken, "--json"]);
    assert_eq!(addr_of(&out), taken);
    c.hosts[0].containers.push(ns);

    c.hosts[1].ns.sh("ip link set eth0 up");
    let recorded = |c: &Cluster| {
        let eps: Vec<Value> =
            serde_json::from_str(&c.weft_ok(0, &["endpoint", "ls", "--json"])).unwrap();
        eps.iter().any(|e| {
            e["node"] == "host1" && e["address"].as_str().unwrap().starts_with(&format!("{kept}/"))
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !recorded(&c) {
        assert!(
            std::time::Instant::now() < deadline,
            "host1's live endpoint was not recorded again: {}",
            c.agent_log(1)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let r = c.weft(1, &["gc"]);
    assert!(!r.ok && r.stderr.contains("no record of 1 live"), "gc on host1: {}", r.stderr);
    let r = c.weft(1, &["gc", "--adopt"]);
    assert!(!r.ok, "gc --adopt on host1 must fail on the conflict: {}", r.stdout);
    assert!(
        r.stdout.contains("CONFLICT") && r.stderr.contains("conflict"),
        "{} / {}",
        r.stdout,
        r.stderr
    );
    assert!(c.agent_log(1).contains("address conflict"), "{}", c.agent_log(1));
}

/// A write-ahead log damaged in its first frame: SQLite would stop reading
/// there and serve an older store (here: one without the network and its
/// endpoints), so the next attach would get a live container's address.
/// weft says the store is damaged, and `weft gc --adopt` sets it aside and
/// rebuilds it from the kernel.
#[test]
fn a_damaged_wal_is_an_error_and_gc_adopt_rebuilds_the_store() {
    use std::io::{Seek, SeekFrom, Write};
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "w", "--subnet", "172.26.5.0/24"]);
    let c = sb.container("c");
    let e = sb.attach("w", c, &[]);
    let wal = sb.state_dir().join("weft.db-wal");
    let len = std::fs::metadata(&wal).expect("the store has a write-ahead log").len();
    assert!(len > 3 * 4096, "the log holds too little to damage: {len} bytes");
    let mut f = std::fs::OpenOptions::new().write(true).open(&wal).unwrap();
    f.seek(SeekFrom::Start(32 + 24 + 100)).unwrap();
    f.write_all(&[0x5a; 64]).unwrap();
    drop(f);

    for args in
        [&["endpoint", "ls"][..], &["attach", "w", "x", "--netns", "/proc/self/ns/net"], &["gc"]]
    {
        let line = sb.weft_err(args);
        assert!(line.contains("is damaged") && line.contains("gc --adopt"), "{args:?}: {line}");
    }
    let out = sb.weft_ok(&["gc", "--adopt"]);
    assert!(out.contains("set the damaged store aside"), "{out}");
    let eps = sb.endpoints();
    assert_eq!(eps.len(), 1, "{eps:?}");
    assert_eq!(eps[0]["address"], e["address"]);
    let c2 = sb.container("c");
    let e2 = sb.attach("w", c2, &[]);
    assert_ne!(e2["address"], e["address"], "a live container's address was handed out again");
}

/// https:// etcd with a certificate from a CA the host already trusts
/// needs no --etcd-ca: weft reads the system's CA bundle (SSL_CERT_FILE
/// here, standing in for /etc/ssl/certs/ca-certificates.crt, which a test
/// must not change). A bundle without that CA fails on the certificate.
#[test]
fn https_etcd_is_trusted_through_the_system_ca_bundle() {
    let c = Cluster::with_tls(1);
    let certs = c.certs();
    let bundle = certs.path("system-bundle.pem");
    let both = [certs.other_ca(), certs.ca()]
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect::<String>();
    std::fs::write(&bundle, both).unwrap();
    let client: Vec<String> = vec![
        "--etcd".into(),
        harness::tls::etcd_tls_url(),
        "--etcd-cert".into(),
        certs.client_cert().display().to_string(),
        "--etcd-key".into(),
        certs.client_key().display().to_string(),
    ];
    let run = |bundle: &std::path::Path| {
        let mut cmd = c.weft_cmd_with(0, &client, &["network", "ls"]);
        harness::to_run(cmd.env("SSL_CERT_FILE", bundle).output().expect("spawn weft"))
    };
    let r = run(&bundle);
    assert!(r.ok, "system bundle with the CA: {}", r.stderr);
    let r = run(&certs.other_ca());
    let line = harness::one_error_line(&r);
    assert!(line.to_lowercase().contains("certificate") || line.contains("TLS"), "{line}");
}

/// etcd with authentication on: weft logs in with WEFT_ETCD_USER and
/// WEFT_ETCD_PASSWORD (the password never on the command line); without
/// them, or with a wrong password, one clear error.
#[test]
fn etcd_with_user_and_password() {
    let c = Cluster::new(1);
    let url = harness::cluster::etcd_url();
    let ctl = format!("ETCDCTL_API=3 etcdctl --endpoints {url}");
    c.underlay.sh(&format!(
        "{ctl} user add root:rootpw && {ctl} user grant-role root root && {ctl} auth enable"
    ));
    let run = |creds: Option<(&str, &str)>, args: &[&str]| {
        let mut cmd = c.weft_cmd(0, args);
        cmd.env_remove("WEFT_ETCD_USER").env_remove("WEFT_ETCD_PASSWORD");
        if let Some((u, p)) = creds {
            cmd.env("WEFT_ETCD_USER", u).env("WEFT_ETCD_PASSWORD", p);
        }
        harness::to_run(cmd.output().expect("spawn weft"))
    };
    let create =
        ["network", "create", "authnet", "--driver", "overlay", "--subnet", "10.95.0.0/24"];
    for creds in [None, Some(("root", "wrong"))] {
        let r = run(creds, &create);
        let line = harness::one_error_line(&r);
        assert!(line.contains("etcd"), "{creds:?}: {line}");
        eprintln!("{creds:?}: {line}");
    }
    let r = run(Some(("root", "rootpw")), &create);
    assert!(r.ok, "with the password: {}", r.stderr);
    let r = run(Some(("root", "rootpw")), &["network", "ls"]);
    assert!(r.ok && r.stdout.contains("authnet"), "{} {}", r.stdout, r.stderr);
}

/// etcd as users run it (item 4): three members, the leader killed (-9)
/// while two hosts attach containers. No address is held twice, every
/// attach that succeeded has its record and its eth0, every one that
/// failed left no record, and attaches succeed again within seconds.
#[test]
fn etcd_leader_killed_during_attach_churn() {
    const PER_HOST: usize = 16;
    let c = Cluster::with_etcd_members(2, 3);
    c.weft_ok(0, &["network", "create", "ov", "--driver", "overlay", "--subnet", "10.96.0.0/24"]);
    for h in 0..2 {
        eventually("overlay bridge on every host", Duration::from_secs(10), || {
            c.hosts[h].ns.try_sh("ip link show vx-ov")
        });
    }
    let spaces: Vec<Vec<harness::Netns>> = (0..2)
        .map(|h| (0..PER_HOST).map(|_| harness::Netns::new(&format!("h{h}e"))).collect())
        .collect();
    let done = AtomicUsize::new(0);
    let start = std::time::Instant::now();
    let mut results: Vec<(usize, usize, bool, Duration, String)> = Vec::new();
    let mut killed_at = Duration::ZERO;
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|h| {
                let (c, spaces, done) = (&c, &spaces, &done);
                scope.spawn(move || {
                    let mut out = Vec::new();
                    for (i, ns) in spaces[h].iter().enumerate() {
                        let path = ns.path.to_str().unwrap();
                        let r = c.weft(h, &["attach", "ov", &ns.name, "--netns", path, "--json"]);
                        let why = if r.ok { addr_of(&r.stdout) } else { r.stderr.clone() };
                        out.push((h, i, r.ok, start.elapsed(), why));
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                    out
                })
            })
            .collect();
        while done.load(Ordering::SeqCst) < 6 {
            std::thread::sleep(Duration::from_millis(10));
        }
        let pid = c.etcd_leader_pid();
        killed_at = start.elapsed();
        harness::run_ok(std::process::Command::new("kill").args(["-9", &pid.to_string()]));
        for w in workers {
            results.extend(w.join().expect("attach worker"));
        }
    });

    let eps: Vec<Value> =
        serde_json::from_str(&c.weft_ok(0, &["endpoint", "ls", "--json"])).unwrap();
    let mut addrs = Vec::new();
    let mut problems = Vec::new();
    for (h, i, ok, _, why) in &results {
        let ns = &spaces[*h][*i];
        let record = eps.iter().find(|e| e["container"] == ns.name.as_str());
        if *ok {
            addrs.push(why.clone());
            if record.is_none() || !ns.try_sh("ip link show eth0") {
                problems.push(format!(
                    "{} attached but lost (record: {})",
                    ns.name,
                    record.is_some()
                ));
            }
        } else if record.is_some() {
            problems.push(format!("{} failed ({why}) but has a record", ns.name));
        }
    }
    assert!(problems.is_empty(), "{problems:?}");
    let n = addrs.len();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), n, "an address is held twice");
    // How long attaches failed after the kill, per host.
    for h in 0..2 {
        let failed: Vec<&Duration> =
            results.iter().filter(|r| r.0 == h && !r.2).map(|r| &r.3).collect();
        let resumed =
            results.iter().filter(|r| r.0 == h && r.2 && r.3 > killed_at).map(|r| r.3).min();
        let resumed =
            resumed.unwrap_or_else(|| panic!("host{h}: no attach succeeded after the kill"));
        eprintln!(
            "host{h}: {} failed attach(es); first success {:?} after the leader was killed",
            failed.len(),
            resumed - killed_at
        );
        assert!(
            resumed - killed_at < Duration::from_secs(10),
            "attaches did not resume within 10 s"
        );
    }
    assert!(results.iter().filter(|r| r.2).count() >= PER_HOST, "{results:?}");
}

/// A single-host store in a namespace a cluster agent manages (and the
/// converse) is refused: each would rebuild weft's firewall table without
/// the other's networks.
#[test]
fn a_single_host_store_next_to_a_cluster_agent_is_refused() {
    let c = Cluster::new(1);
    c.weft_ok(0, &["network", "create", "ov", "--driver", "overlay", "--subnet", "10.98.0.0/24"]);
    eventually("overlay bridge", Duration::from_secs(10), || {
        c.hosts[0].ns.try_sh("ip link show vx-ov")
    });
    let other = tempfile::tempdir().expect("tempdir");
    let single = |args: &[&str]| {
        let mut cmd = c.hosts[0].ns.command(harness::WEFT);
        cmd.arg("--state-dir").arg(other.path()).args(args);
        cmd.env_remove("WEFT_ETCD").env_remove("WEFT_NODE").env_remove("WEFT_FAILPOINT");
        harness::to_run(cmd.output().expect("spawn weft"))
    };
    eventually("the agent's firewall table", Duration::from_secs(10), || {
        c.hosts[0].ns.try_sh("nft list table inet weft")
    });
    let before = c.hosts[0].ns.sh("nft list table inet weft");
    for args in
        [&["network", "create", "solo", "--subnet", "172.26.6.0/24"][..], &["firewall", "reload"]]
    {
        let line = harness::one_error_line(&single(args));
        assert!(line.contains("cluster agent"), "{args:?}: {line}");
    }
    assert_eq!(c.hosts[0].ns.sh("nft list table inet weft"), before, "the table changed");

    // The converse: an agent started where a single-host store has networks.
    let plain = harness::Netns::new("solo");
    let port = format!("us{}", std::process::id() % 100000);
    c.underlay.sh(&format!(
        "ip link add {port} type veth peer name eth0 netns {} && ip link set {port} master ul0 up",
        plain.name
    ));
    plain.sh("ip addr add 10.200.0.50/24 dev eth0 && ip link set eth0 up");
    let state = tempfile::tempdir().expect("tempdir");
    let mut cmd = plain.command(harness::WEFT);
    cmd.arg("--state-dir").arg(state.path()).args([
        "network",
        "create",
        "solo",
        "--subnet",
        "172.26.7.0/24",
    ]);
    assert!(cmd.status().expect("spawn weft").success());
    let mut agent = plain.command(harness::WEFT);
    agent
        .args(c.client_args())
        .args(["--node", "solo", "--state-dir"])
        .arg(other.path())
        .args(["agent"]);
    let r = harness::to_run(agent.output().expect("spawn agent"));
    let line = harness::one_error_line(&r);
    assert!(
        line.contains("holds weft's network solo") || line.contains("another weft store"),
        "{line}"
    );
}
