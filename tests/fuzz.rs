//! Property tests of weft's untrusted inputs through the real binary
//! (issue 12, item 6): CNI configs on stdin, DNS packets to `weft dns`,
//! requests on the daemon's socket. Generated inputs, a bounded number of
//! cases each (a few seconds in all, so CI runs them): no panic, a failure
//! is one error (line or JSON object), a refused input leaves nothing
//! behind, and the servers still answer afterwards. Port specs and CNI
//! config parsing are also property-tested in their crates.

mod harness;

use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::time::Duration;

use harness::cluster::Proc;
use harness::{eventually, to_run, Netns, Sandbox};
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};

fn runner(cases: u32) -> TestRunner {
    // Fixed seed: CI runs the same cases every time; failures reproduce.
    TestRunner::new_with_rng(
        Config { cases, failure_persistence: None, ..Config::default() },
        proptest::test_runner::TestRng::deterministic_rng(
            proptest::test_runner::RngAlgorithm::ChaCha,
        ),
    )
}

// ------------------------------------------------------------ CNI stdin

fn cni_config() -> impl Strategy<Value = Value> {
    let version = prop_oneof![Just("1.0.0"), Just("0.4.0"), Just("1.1.0"), Just("2.0"), Just("")];
    let name = prop_oneof![
        prop_oneof![Just("fz"), Just("fz-2"), Just("../x"), Just("")].prop_map(String::from),
        "[a-z.]{1,8}",
    ];
    let kind = prop_oneof![4 => Just("weft"), 1 => Just("bridge")];
    let subnet = prop_oneof![
        Just(json!("10.81.0.0/24")),
        Just(json!("127.0.0.0/24")),
        Just(json!("224.0.0.0/4")),
        Just(json!("10.81.0.1/24")),
        Just(json!("10.81.0.0/31")),
        Just(json!(42)),
        Just(Value::Null),
    ];
    let ips = prop::collection::vec(
        prop_oneof![
            Just("10.81.0.9/24".to_string()),
            Just("10.99.0.9".to_string()),
            Just("10.81.0.0".to_string()),
            "[0-9./:]{0,12}"
        ],
        0..3,
    );
    let mac = prop_oneof![
        Just(Value::Null),
        Just(json!("02:00:00:00:00:09")),
        Just(json!("01:00:00:00:00:01")),
        Just(json!("zz")),
    ];
    let port = (any::<u16>(), any::<u16>(), prop_oneof![Just("tcp"), Just("udp"), Just("icmp")])
        .prop_map(|(h, c, p)| json!({"hostPort": h, "containerPort": c, "protocol": p}));
    (
        version,
        name,
        kind,
        subnet,
        prop::option::of(any::<u32>()),
        any::<bool>(),
        ips,
        mac,
        prop::collection::vec(port, 0..3),
    )
        .prop_map(|(v, n, k, s, mtu, internal, ips, mac, ports)| {
            json!({"cniVersion": v, "name": n, "type": k, "subnet": s, "mtu": mtu,
                   "internal": internal, "ipMasq": !internal,
                   "runtimeConfig": {"ips": ips, "mac": mac, "portMappings": ports}})
        })
}

#[test]
fn cni_configs_never_panic_and_a_refused_one_leaves_nothing() {
    let sb = Sandbox::new();
    let c = Netns::new("c");
    let path = c.path.to_str().unwrap().to_string();
    let state =
        || (sb.weft_ok(&["network", "ls", "--json"]), sb.weft_ok(&["endpoint", "ls", "--json"]));
    let n = std::cell::Cell::new(0);
    runner(48)
        .run(&cni_config(), |conf| {
            n.set(n.get() + 1);
            let id = format!("fz{}", n.get());
            let before = state();
            let env = [
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", id.as_str()),
                ("CNI_NETNS", path.as_str()),
                ("CNI_IFNAME", "eth0"),
            ];
            let r = sb.cni(&env, &conf);
            prop_assert!(!r.stderr.contains("panicked"), "{conf}: {}", r.stderr);
            prop_assert_eq!(r.raw.trim().lines().count(), 1, "{}: {}", conf, r.raw);
            if r.ok {
                // Undo it: the next case starts from an empty namespace.
                let del = [
                    ("CNI_COMMAND", "DEL"),
                    ("CNI_CONTAINERID", id.as_str()),
                    ("CNI_NETNS", path.as_str()),
                    ("CNI_IFNAME", "eth0"),
                ];
                prop_assert!(sb.cni(&del, &conf).ok);
                let name = conf["name"].as_str().unwrap();
                sb.weft_ok(&["network", "rm", name]);
            } else {
                let code = r.stdout["code"].as_u64().unwrap_or(0);
                prop_assert!([1, 4, 6, 7, 11].contains(&code), "{}: {}", conf, r.raw);
                prop_assert_eq!(&before, &state(), "{} failed but left something", conf);
            }
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------- DNS packets

fn query(name: &str, qtype: RecordType) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(7).set_message_type(MessageType::Query).set_op_code(OpCode::Query);
    m.set_recursion_desired(true).add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m.to_vec().unwrap()
}

/// Garbage, and real queries with bytes overwritten or cut short.
fn dns_packet() -> impl Strategy<Value = Vec<u8>> {
    let mutated = (
        prop_oneof![
            Just("box"),
            Just("box.weft"),
            Just("x.example"),
            Just("9.0.81.10.in-addr.arpa")
        ],
        prop_oneof![
            Just(RecordType::A),
            Just(RecordType::AAAA),
            Just(RecordType::PTR),
            Just(RecordType::ANY),
            Just(RecordType::TXT)
        ],
        prop::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(name, t, flips, cut)| {
            let mut p = query(name, t);
            for (i, b) in flips {
                let i = i % p.len();
                p[i] = b;
            }
            let keep = 1 + cut.index(p.len());
            p.truncate(keep);
            p
        });
    prop_oneof![prop::collection::vec(any::<u8>(), 0..600), mutated]
}

fn ask(c: &Netns, server: SocketAddr, packet: Vec<u8>, wait: Duration) -> Option<Vec<u8>> {
    c.run_in(move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_read_timeout(Some(wait)).unwrap();
        s.send_to(&packet, server).unwrap();
        let mut buf = [0u8; 4096];
        s.recv_from(&mut buf).ok().map(|(n, _)| buf[..n].to_vec())
    })
}

#[test]
fn dns_packets_never_stop_the_server() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "n", "--subnet", "10.81.1.0/24"]);
    let c = sb.container("box");
    let name = sb.c(c).name.clone();
    sb.weft_ok(&["attach", "n", &name, "--alias", "box"]);
    let mut dns = Proc(Some(
        sb.weft_cmd(&["dns", "--upstream", "127.0.0.1:9", "--poll-ms", "5"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let server: SocketAddr = "10.81.1.1:53".parse().unwrap();
    let answers_box = |sb: &Sandbox| {
        let reply = ask(sb.c(c), server, query("box", RecordType::A), Duration::from_millis(500));
        reply.and_then(|r| Message::from_vec(&r).ok()).is_some_and(|m| {
            m.answers().iter().any(|a| matches!(a.data(), RData::A(ip) if ip.0.octets()[3] == 2))
        })
    };
    eventually("weft dns answers", || answers_box(&sb));
    runner(400)
        .run(&dns_packet(), |p| {
            // Most garbage gets no reply; don't wait long for one.
            let _ = ask(sb.c(c), server, p, Duration::from_millis(5));
            Ok(())
        })
        .unwrap();
    let child = dns.0.as_mut().unwrap();
    assert!(child.try_wait().unwrap().is_none(), "weft dns died");
    assert!(answers_box(&sb), "weft dns stopped answering after the fuzzing");
    dns.kill();
}

// ------------------------------------------------------ daemon requests

fn daemon_request() -> impl Strategy<Value = Vec<u8>> {
    let valid = json!({"version": "0", "args": ["weft", "attach", "n", "x"], "state_dir": "/",
                       "cwd": "/", "net_ns": 1, "state_dir_id": {"dev": 1, "ino": 1},
                       "container_ns": null, "cni": null})
    .to_string()
    .into_bytes();
    let mutated =
        (prop::collection::vec((any::<usize>(), any::<u8>()), 0..8), any::<prop::sample::Index>())
            .prop_map(move |(flips, cut)| {
                let mut p = valid.clone();
                for (i, b) in flips {
                    let i = i % p.len();
                    p[i] = b;
                }
                p.truncate(cut.index(p.len() + 1));
                p
            });
    prop_oneof![prop::collection::vec(any::<u8>(), 0..2048), mutated]
}

#[test]
fn daemon_requests_never_stop_the_daemon_or_change_anything() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "n", "--subnet", "10.81.2.0/24"]);
    let mut daemon = Proc(Some(
        sb.weft_cmd(&["daemon"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap(),
    ));
    let sock = sb.state_dir().join("weft.sock");
    eventually("the daemon listens", || UnixStream::connect(&sock).is_ok());
    let before = sb.snapshot();
    runner(64)
        .run(&daemon_request(), |body| {
            let mut s = UnixStream::connect(&sock).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = s.write_all(&body);
            let _ = s.shutdown(std::net::Shutdown::Write);
            let mut reply = Vec::new();
            let _ = s.read_to_end(&mut reply);
            prop_assert!(
                reply.is_empty() || serde_json::from_slice::<Value>(&reply).is_ok(),
                "reply is not JSON: {}",
                String::from_utf8_lossy(&reply)
            );
            Ok(())
        })
        .unwrap();
    assert!(daemon.0.as_mut().unwrap().try_wait().unwrap().is_none(), "the daemon died");
    assert_eq!(before, sb.snapshot(), "a garbage request changed something");
    // And it still serves a real client.
    let c = sb.container("c");
    let name = sb.c(c).name.clone();
    let r = to_run(
        sb.weft_cmd(&["attach", "n", &name]).env("WEFT_DAEMON", "require").output().unwrap(),
    );
    assert!(r.ok, "{}", r.stderr);
    daemon.kill();
}
