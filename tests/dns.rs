//! `weft dns` in a sandbox host: containers resolve peers by name and
//! alias, addresses back to names, nothing across networks; other names go
//! to an upstream resolver (a tiny one run here, in the "outside" netns);
//! attach and detach show within a poll; random bytes never crash it.

mod harness;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use harness::{Netns, Sandbox};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use serde_json::Value;

const UPSTREAM_ANSWER: &str = "198.51.100.7";

fn ip_of(ep: &Value) -> String {
    ep["address"].as_str().unwrap().split('/').next().unwrap().to_string()
}

/// One query over UDP from inside `ns`; None if nothing came back.
fn ask(ns: &Netns, server: &str, name: &str, qtype: RecordType) -> Option<Message> {
    let server: SocketAddr = format!("{server}:53").parse().unwrap();
    let name = Name::from_ascii(name).unwrap();
    ns.spawn_in(move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        let mut m = Message::new();
        m.set_id(4242).set_message_type(MessageType::Query).set_op_code(OpCode::Query);
        m.set_recursion_desired(true).add_query(Query::query(name, qtype));
        s.send_to(&m.to_vec().unwrap(), server).unwrap();
        let mut buf = [0u8; 2048];
        let (n, _) = s.recv_from(&mut buf).ok()?;
        Some(Message::from_vec(&buf[..n]).expect("a DNS answer"))
    })
    .join()
    .unwrap()
}

/// The addresses (A/AAAA) or names (PTR) of an answer, as text.
fn answers(m: &Message) -> Vec<String> {
    m.answers()
        .iter()
        .map(|r| match r.data() {
            RData::A(a) => a.to_string(),
            RData::AAAA(a) => a.to_string(),
            RData::PTR(p) => p.to_string(),
            other => format!("{other:?}"),
        })
        .collect()
}

fn resolve(ns: &Netns, server: &str, name: &str) -> Result<Vec<String>, ResponseCode> {
    let m = ask(ns, server, name, RecordType::A).unwrap_or_else(|| panic!("no answer for {name}"));
    match m.response_code() {
        ResponseCode::NoError => Ok(answers(&m)),
        code => Err(code),
    }
}

/// `weft dns` running in the sandbox host; killed on drop.
struct DnsServer(Child);

impl DnsServer {
    fn start(sb: &Sandbox, upstream: &str) -> DnsServer {
        DnsServer::start_to(sb, upstream, Stdio::inherit())
    }

    fn start_to(sb: &Sandbox, upstream: &str, stderr: Stdio) -> DnsServer {
        let mut cmd = sb.weft_cmd(&["dns", "--upstream", upstream, "--poll-ms", "5"]);
        // The usual soft limit of a service (systemd's default): the
        // server must not depend on a test runner's higher one.
        // SAFETY: setrlimit is async-signal-safe; it only reads `lim`.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
                if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                lim.rlim_cur = lim.rlim_cur.min(1024);
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.stdout(Stdio::null()).stderr(stderr).spawn().expect("spawn weft dns");
        DnsServer(child)
    }

    fn alive(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A tiny upstream resolver in `ns` at `addr`:53: `upstream.test` is
/// 198.51.100.7, names under `silent.test` get no answer at all (an
/// upstream that does not respond), every other name NXDOMAIN. It records
/// every query it sees. Stops on drop.
struct Upstream {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Seen>>>,
    thread: Option<JoinHandle<()>>,
}

/// One query as the upstream saw it.
#[derive(Debug, Clone)]
struct Seen {
    from: SocketAddr,
    id: u16,
    name: String,
}

impl Upstream {
    fn start(ns: &Netns, addr: &str) -> Upstream {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (flag, log) = (stop.clone(), seen.clone());
        let at: SocketAddr = format!("{addr}:53").parse().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = ns.spawn_in(move || {
            let s = UdpSocket::bind(at).expect("bind upstream");
            s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
            tx.send(()).unwrap();
            let mut buf = [0u8; 2048];
            while !flag.load(Ordering::Relaxed) {
                let Ok((n, peer)) = s.recv_from(&mut buf) else { continue };
                let Ok(q) = Message::from_vec(&buf[..n]) else { continue };
                let Some(query) = q.queries().first() else { continue };
                let name = query.name().to_ascii().to_ascii_lowercase();
                log.lock().unwrap().push(Seen { from: peer, id: q.id(), name: name.clone() });
                if name.ends_with(".silent.test.") {
                    continue;
                }
                let mut r = Message::new();
                r.set_id(q.id()).set_message_type(MessageType::Response).set_op_code(OpCode::Query);
                r.set_recursion_available(true).add_queries(q.queries().to_vec());
                if name == "upstream.test." && query.query_type() == RecordType::A {
                    let a = RData::A(A(UPSTREAM_ANSWER.parse().unwrap()));
                    r.add_answer(Record::from_rdata(query.name().clone(), 60, a));
                } else {
                    r.set_response_code(ResponseCode::NXDomain);
                }
                let _ = s.send_to(&r.to_vec().unwrap(), peer);
            }
        });
        rx.recv().unwrap();
        Upstream { stop, seen, thread: Some(thread) }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Waits until `f` holds, polling every 2 ms; returns how long it took.
fn within(limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
    start.elapsed()
}

struct World {
    sb: Sandbox,
    a1: usize,
    a2: usize,
    b1: usize,
    /// A container of the internal network `i`.
    i1: usize,
    ea2: Value,
    eb1: Value,
    upstream: Upstream,
    dns: DnsServer,
}

const GW_A: &str = "172.25.0.1";
const GW_B: &str = "172.25.1.1";
const GW_I: &str = "172.25.2.1";

fn world() -> World {
    let mut sb = Sandbox::new();
    sb.weft_ok(&[
        "network",
        "create",
        "a",
        "--subnet",
        "172.25.0.0/24",
        "--subnet6",
        "fd00:25::/64",
    ]);
    sb.weft_ok(&["network", "create", "b", "--subnet", "172.25.1.0/24"]);
    sb.weft_ok(&["network", "create", "i", "--subnet", "172.25.2.0/24", "--internal"]);
    let a1 = sb.container("a1");
    let a2 = sb.container("a2");
    let b1 = sb.container("b1");
    let i1 = sb.container("i1");
    sb.attach("a", a1, &[]);
    sb.attach("i", i1, &["--alias", "vault"]);
    let ea2 = sb.attach("a", a2, &["--alias", "db", "--alias", "Cache.Local"]);
    let eb1 = sb.attach("b", b1, &[]);
    assert_eq!(ea2["aliases"], serde_json::json!(["db", "Cache.Local"]));
    assert_eq!(ea2["dns"]["nameservers"], serde_json::json!([GW_A, "fd00:25::1"]));
    sb.wire_outside();
    let upstream = Upstream::start(sb.outside.as_ref().unwrap(), "203.0.113.2");
    let dns = DnsServer::start(&sb, "203.0.113.2");
    let c = &sb.containers[a1];
    within(Duration::from_secs(10), "weft dns answering", || {
        ask(c, GW_A, "x", RecordType::A).is_some()
    });
    World { sb, a1, a2, b1, i1, ea2, eb1, upstream, dns }
}

#[test]
fn names_aliases_ptr_and_no_answers_across_networks() {
    let w = world();
    let (a1, b1) = (w.sb.c(w.a1), w.sb.c(w.b1));
    let a2_name = w.sb.c(w.a2).name.clone();
    let a2_ip = ip_of(&w.ea2);
    assert_eq!(resolve(a1, GW_A, &a2_name), Ok(vec![a2_ip.clone()]));
    assert_eq!(resolve(a1, GW_A, "db"), Ok(vec![a2_ip.clone()]));
    assert_eq!(resolve(a1, GW_A, "cache.local"), Ok(vec![a2_ip.clone()]), "aliases ignore case");
    let six = ask(a1, GW_A, &a2_name, RecordType::AAAA).unwrap();
    assert_eq!(answers(&six), [ip_of_6(&w.ea2)]);
    // Reverse: the address gives the container name.
    let rev: IpAddr = a2_ip.parse().unwrap();
    let ptr_name = match rev {
        IpAddr::V4(v) => {
            let o = v.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(_) => unreachable!(),
    };
    let ptr = ask(a1, GW_A, &ptr_name, RecordType::PTR).unwrap();
    assert_eq!(answers(&ptr), [format!("{a2_name}.")]);

    // Not across networks: b's container is unknown on a, a's on b.
    let b1_name = w.sb.c(w.b1).name.clone();
    assert_eq!(resolve(a1, GW_A, &b1_name), Err(ResponseCode::NXDomain));
    assert_eq!(resolve(b1, GW_B, &a2_name), Err(ResponseCode::NXDomain));
    assert_eq!(resolve(b1, GW_B, &b1_name), Ok(vec![ip_of(&w.eb1)]));
    // ... nor by asking the other network's gateway, which b1 can route to.
    let refused = ask(b1, GW_A, &a2_name, RecordType::A).unwrap();
    assert_eq!(refused.response_code(), ResponseCode::Refused);
    assert!(refused.answers().is_empty());
}

fn ip_of_6(ep: &Value) -> String {
    ep["address6"].as_str().unwrap().split('/').next().unwrap().to_string()
}

#[test]
fn other_names_go_upstream() {
    let w = world();
    let a1 = w.sb.c(w.a1);
    assert_eq!(resolve(a1, GW_A, "upstream.test"), Ok(vec![UPSTREAM_ANSWER.to_string()]));
    assert_eq!(resolve(a1, GW_A, "nowhere.test"), Err(ResponseCode::NXDomain));
    // Reverse names outside the network's subnets are the upstream's too.
    assert_eq!(
        ask(a1, GW_A, "7.100.51.198.in-addr.arpa", RecordType::PTR).unwrap().response_code(),
        ResponseCode::NXDomain
    );
}

#[test]
fn attach_and_detach_show_at_once() {
    let mut w = world();
    let c = w.sb.container("late");
    let name = w.sb.c(c).name.clone();
    let a1 = w.sb.c(w.a1);
    assert_eq!(resolve(a1, GW_A, &name), Err(ResponseCode::NXDomain));
    let e = w.sb.attach("a", c, &["--alias", "late-alias"]);
    let a1 = w.sb.c(w.a1);
    let ip = ip_of(&e);
    let took = within(Duration::from_millis(500), "attached container resolves", || {
        resolve(a1, GW_A, &name) == Ok(vec![ip.clone()])
    });
    eprintln!("resolvable {took:?} after attach returned");
    assert!(took < Duration::from_millis(100), "attach took {took:?} to show in DNS");
    w.sb.weft_ok(&["detach", "a", &name]);
    let took = within(Duration::from_millis(500), "detached container gone", || {
        resolve(a1, GW_A, "late-alias") == Err(ResponseCode::NXDomain)
    });
    eprintln!("gone {took:?} after detach returned");
    assert!(took < Duration::from_millis(100), "detach took {took:?} to show in DNS");
    assert!(w.dns.alive());
}

#[test]
fn random_bytes_never_crash_it() {
    let mut w = world();
    let a1 = w.sb.c(w.a1);
    let a2_name = w.sb.c(w.a2).name.clone();
    let valid = {
        let mut m = Message::new();
        m.set_id(7).add_query(Query::query(Name::from_ascii(&a2_name).unwrap(), RecordType::A));
        m.to_vec().unwrap()
    };
    let sent = a1
        .spawn_in(move || {
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
            let mut next = move || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            };
            let mut sent = 0;
            for i in 0..4000 {
                let pkt: Vec<u8> = if i % 2 == 0 {
                    // Pure noise, 0 to 600 bytes.
                    (0..next() % 600).map(|_| next() as u8).collect()
                } else {
                    // A valid query with a few bytes flipped, cut or extended:
                    // these get past the first checks of a parser.
                    let mut p = valid.clone();
                    for _ in 0..1 + next() % 4 {
                        let at = (next() as usize) % p.len();
                        p[at] = next() as u8;
                    }
                    match next() % 3 {
                        0 => p.truncate((next() as usize) % p.len()),
                        1 => p.extend((0..next() % 40).map(|_| next() as u8)),
                        _ => {}
                    }
                    p
                };
                if s.send_to(&pkt, (GW_A, 53)).is_ok() {
                    sent += 1;
                }
            }
            sent
        })
        .join()
        .unwrap();
    assert_eq!(sent, 4000);
    // Garbage over TCP too: a length prefix that lies, then a close.
    let gw: SocketAddr = format!("{GW_A}:53").parse().unwrap();
    a1.spawn_in(move || {
        use std::io::Write;
        for junk in [&[0xff, 0xff, 1, 2, 3][..], &[0, 3, 9, 9, 9], &[0, 0], &[7]] {
            if let Ok(mut t) = std::net::TcpStream::connect_timeout(&gw, Duration::from_secs(1)) {
                let _ = t.write_all(junk);
            }
        }
    })
    .join()
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(w.dns.alive(), "weft dns died");
    let a1 = w.sb.c(w.a1);
    assert_eq!(resolve(a1, GW_A, &a2_name), Ok(vec![ip_of(&w.ea2)]), "still answering");
}

/// No answer at all, or a refusal without records.
fn never_answered(m: Option<Message>) -> bool {
    m.is_none_or(|m| m.response_code() == ResponseCode::Refused && m.answers().is_empty())
}

/// A network with no way out has no way out by DNS either: a name asked
/// from an internal network never reaches the upstream (the query carries
/// data out, the answer brings data in: a tunnel). Its own names resolve.
#[test]
fn internal_networks_never_ask_the_upstream() {
    let w = world();
    let i1 = w.sb.c(w.i1);
    assert_eq!(resolve(i1, GW_I, "vault").map(|v| v.len()), Ok(1), "own names resolve");
    for (name, qtype) in [
        ("upstream.test", RecordType::A),
        ("upstream.test", RecordType::AAAA),
        ("upstream.test", RecordType::TXT),
        ("c2VjcmV0.exfil.silent.test", RecordType::A),
        ("7.100.51.198.in-addr.arpa", RecordType::PTR),
    ] {
        let m = ask(i1, GW_I, name, qtype).unwrap_or_else(|| panic!("no answer for {name}"));
        assert_eq!(m.response_code(), ResponseCode::Refused, "{name} {qtype}");
        assert!(m.answers().is_empty(), "{name}: {m:?}");
    }
    // The upstream is there and reachable: a network with a way out asks it.
    let a1 = w.sb.c(w.a1);
    assert_eq!(resolve(a1, GW_A, "upstream.test"), Ok(vec![UPSTREAM_ANSWER.to_string()]));
    let names: Vec<String> = w.upstream.seen().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["upstream.test."], "the upstream saw the internal network's queries");
}

/// Only a network's own containers get answers from its gateway: not a
/// host outside, not a container of another network (both can route to
/// the gateway address, it is the host's), and nothing of theirs goes
/// upstream.
#[test]
fn outside_hosts_and_other_networks_are_refused() {
    let w = world();
    let out = w.sb.outside.as_ref().unwrap();
    out.sh("ip route add 172.25.0.0/16 via 203.0.113.1");
    let a2_name = w.sb.c(w.a2).name.clone();
    for gw in [GW_A, GW_B, GW_I] {
        for name in ["upstream.test", "leak.silent.test", a2_name.as_str(), "vault"] {
            let m = ask(out, gw, name, RecordType::A);
            assert!(never_answered(m.clone()), "outside asked {gw} for {name}: {m:?}");
        }
    }
    let (a1, b1) = (w.sb.c(w.a1), w.sb.c(w.b1));
    for name in ["upstream.test", "leak.silent.test", a2_name.as_str()] {
        let m = ask(b1, GW_A, name, RecordType::A);
        assert!(never_answered(m.clone()), "b1 asked a's gateway for {name}: {m:?}");
    }
    let m = ask(a1, GW_I, "vault", RecordType::A);
    assert!(never_answered(m.clone()), "a1 asked the internal gateway: {m:?}");
    let m = ask(a1, GW_I, "upstream.test", RecordType::A);
    assert!(never_answered(m.clone()), "a1 asked the internal gateway: {m:?}");
    assert!(w.upstream.seen().is_empty(), "forwarded: {:?}", w.upstream.seen());
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).expect("the server's fds").count()
}

/// One container asks thousands of outside names while the upstream stays
/// silent: every pending forward holds a socket, so without a bound the
/// server runs out of file descriptors. Its pending forwards are bounded:
/// the fd count stays small, local names still resolve, and another
/// container's outside names still go upstream.
#[test]
fn a_flood_of_outside_names_does_not_pin_the_servers_fds() {
    let w = world();
    let pid = w.dns.0.id();
    let before = open_fds(pid);
    let (a1, a2) = (w.sb.c(w.a1), w.sb.c(w.a2));
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let flood = a1.spawn_in(move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        let t0 = Instant::now();
        let mut sent = 0u32;
        while t0.elapsed() < Duration::from_millis(3000) {
            for _ in 0..10 {
                let _ = s.send_to(&silent_query("q", sent), (GW_A, 53));
                sent += 1;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        flag.store(true, Ordering::SeqCst);
        sent
    });
    let watching = done.clone();
    let sampler = std::thread::spawn(move || {
        let mut most = 0;
        while !watching.load(Ordering::SeqCst) {
            most = most.max(open_fds(pid));
            std::thread::sleep(Duration::from_millis(10));
        }
        most
    });
    // In the middle of the flood: local names for the flooder itself,
    // outside names for its neighbour (a datagram may be lost in the
    // flood: asked again until answered).
    std::thread::sleep(Duration::from_millis(1000));
    let a2_name = a2.name.clone();
    let a2_ip = ip_of(&w.ea2);
    let answered = |ns: &Netns, name: &str, want: &str| {
        let m = ask(ns, GW_A, name, RecordType::A);
        m.is_some_and(|m| answers(&m) == [want.to_string()])
    };
    within(Duration::from_secs(3), "a local name mid-flood", || answered(a1, &a2_name, &a2_ip));
    within(Duration::from_secs(3), "a neighbour's outside name mid-flood", || {
        answered(a2, "upstream.test", UPSTREAM_ANSWER)
    });
    let checked_during = !done.load(Ordering::SeqCst);
    let sent = flood.join().unwrap();
    let most = sampler.join().unwrap();
    eprintln!("{sent} queries sent; server fds: {before} before, at most {most} during");
    assert!(checked_during, "the flood ended before the checks");
    assert!(sent > 1000, "only {sent} queries sent");
    assert!(most < before + 100, "server fds went from {before} to {most} during the flood");
    within(Duration::from_secs(5), "fds back to what they were", || open_fds(pid) <= before + 2);
    assert_eq!(resolve(a1, GW_A, &a2_name), Ok(vec![a2_ip]), "still answering");
}

/// One query over TCP (two-byte length, then the message).
fn ask_tcp(ns: &Netns, server: &str, name: &str) -> Option<Message> {
    use std::io::{Read, Write};
    let server: SocketAddr = format!("{server}:53").parse().unwrap();
    let name = Name::from_ascii(name).unwrap();
    ns.spawn_in(move || {
        let mut t = std::net::TcpStream::connect_timeout(&server, Duration::from_secs(1)).ok()?;
        t.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut m = Message::new();
        m.set_id(99).set_recursion_desired(true).add_query(Query::query(name, RecordType::A));
        let body = m.to_vec().unwrap();
        let mut framed = (body.len() as u16).to_be_bytes().to_vec();
        framed.extend(body);
        t.write_all(&framed).ok()?;
        let mut len = [0u8; 2];
        t.read_exact(&mut len).ok()?;
        let mut body = vec![0u8; u16::from_be_bytes(len) as usize];
        t.read_exact(&mut body).ok()?;
        Some(Message::from_vec(&body).expect("a DNS answer"))
    })
    .join()
    .unwrap()
}

/// Thousands of TCP connections held open by one container, against a
/// server started with the usual soft limit of 1024 open files: it keeps
/// answering (UDP, a new TCP connection, an outside name), and lets go of
/// them.
#[test]
fn thousands_of_tcp_connections_are_survived() {
    const N: usize = 3000;
    let mut w = world();
    let pid = w.dns.0.id();
    let before = open_fds(pid);
    let a1 = w.sb.c(w.a1);
    let a2_name = w.sb.c(w.a2).name.clone();
    let a2_ip = ip_of(&w.ea2);
    let gw: SocketAddr = format!("{GW_A}:53").parse().unwrap();
    let held = a1
        .spawn_in(move || {
            (0..N)
                .map_while(|_| {
                    std::net::TcpStream::connect_timeout(&gw, Duration::from_secs(2)).ok()
                })
                .collect::<Vec<_>>()
        })
        .join()
        .unwrap();
    assert_eq!(held.len(), N, "connections opened");
    assert_eq!(resolve(a1, GW_A, &a2_name), Ok(vec![a2_ip.clone()]), "UDP while held");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let nofile = limits.lines().find(|l| l.starts_with("Max open files")).unwrap_or("").to_string();
    eprintln!("server: {} fds while {N} connections are held ({nofile})", open_fds(pid));
    // A forward takes a socket of its own: one must still be there.
    let up = resolve(a1, GW_A, "upstream.test");
    assert_eq!(up, Ok(vec![UPSTREAM_ANSWER.to_string()]), "outside name while held");
    let m = ask_tcp(a1, GW_A, &a2_name).expect("a TCP answer while held");
    assert_eq!(answers(&m), std::slice::from_ref(&a2_ip));
    drop(held);
    within(Duration::from_secs(8), "connections let go", || open_fds(pid) <= before + 2);
    assert!(w.dns.alive(), "weft dns died");
    let m = ask_tcp(a1, GW_A, &a2_name).expect("a TCP answer after");
    assert_eq!(answers(&m), [a2_ip]);
}

/// Forwarded queries leave the host: their ids and source ports must not
/// be guessable, or an off-path host could forge the upstream's answer.
/// Random values pass this; a counter or a fixed port does not.
#[test]
fn upstream_query_ids_and_ports_are_unpredictable() {
    const N: usize = 64;
    let w = world();
    let a1 = w.sb.c(w.a1);
    for i in 0..N {
        assert_eq!(resolve(a1, GW_A, &format!("n{i}.test")), Err(ResponseCode::NXDomain));
    }
    let seen = w.upstream.seen();
    assert_eq!(seen.len(), N, "{seen:?}");
    let ids: HashSet<u16> = seen.iter().map(|s| s.id).collect();
    let ports: HashSet<u16> = seen.iter().map(|s| s.from.port()).collect();
    assert!(ids.len() >= N - 4 && ports.len() >= N - 4, "repeats: {seen:?}");
    let near = |a: u16, b: u16| a.abs_diff(b) < 64;
    let near_ids = seen.windows(2).filter(|p| near(p[0].id, p[1].id)).count();
    let near_ports = seen.windows(2).filter(|p| near(p[0].from.port(), p[1].from.port())).count();
    assert!(near_ids <= 4 && near_ports <= 4, "successive values close together: {seen:?}");
    assert!(seen.iter().all(|s| s.from.port() >= 1024), "{seen:?}");
}

/// The same flood from 24 addresses of the subnet at once (a container
/// can take its neighbours' addresses): the per-client bound alone would
/// allow 24 × 32 forwards; the bound for the whole server (512) holds.
#[test]
fn a_flood_from_many_addresses_is_bounded_in_all() {
    const ADDRS: u8 = 24;
    let w = world();
    let pid = w.dns.0.id();
    let before = open_fds(pid);
    let a1 = w.sb.c(w.a1);
    for i in 0..ADDRS {
        a1.sh(&format!("ip addr add 172.25.0.{}/24 dev eth0", 100 + i));
    }
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let flood = a1.spawn_in(move || {
        let socks: Vec<UdpSocket> = (0..ADDRS)
            .map(|i| UdpSocket::bind(format!("172.25.0.{}:0", 100 + i)).unwrap())
            .collect();
        let t0 = Instant::now();
        let mut sent = 0u32;
        while t0.elapsed() < Duration::from_millis(2500) {
            for s in &socks {
                let _ = s.send_to(&silent_query("m", sent), (GW_A, 53));
                sent += 1;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        flag.store(true, Ordering::SeqCst);
        sent
    });
    let mut most = 0;
    while !done.load(Ordering::SeqCst) {
        most = most.max(open_fds(pid));
        std::thread::sleep(Duration::from_millis(10));
    }
    let sent = flood.join().unwrap();
    eprintln!("{sent} queries from {ADDRS} addresses; server fds: {before} before, at most {most}");
    assert!(most < before + 512 + 20, "server fds went from {before} to {most}");
    assert!(most > before + 32, "the flood never got past one client's bound ({most})");
    within(Duration::from_secs(5), "fds back to what they were", || open_fds(pid) <= before + 2);
    let a2_name = w.sb.c(w.a2).name.clone();
    assert_eq!(resolve(a1, GW_A, &a2_name), Ok(vec![ip_of(&w.ea2)]), "still answering");
}

/// Every query and every malformed datagram is a container's to send at
/// will: none may add a line to the host's log (the server's own start
/// and stop lines only), or a container writes to the host's disk at line
/// rate, and its query names end up in the journal.
#[test]
fn queries_and_garbage_do_not_flood_the_log() {
    const GW: &str = "172.25.3.1";
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "l", "--subnet", "172.25.3.0/24"]);
    let c = sb.container("l1");
    sb.attach("l", c, &[]);
    let log = sb.state_dir().join("dns.log");
    let file = std::fs::File::create(&log).unwrap();
    let _dns = DnsServer::start_to(&sb, "127.0.0.1:9", Stdio::from(file));
    let ns = sb.c(c);
    within(Duration::from_secs(10), "weft dns answering", || {
        ask(ns, GW, "x", RecordType::A).is_some()
    });
    std::thread::sleep(Duration::from_millis(100));
    let lines = || std::fs::read_to_string(&log).unwrap().lines().count();
    let before = lines();
    ns.spawn_in(move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        for i in 0..300u16 {
            let mut m = Message::new();
            let name = Name::from_ascii(format!("secret-{i}")).unwrap();
            m.set_id(i).add_query(Query::query(name, RecordType::A));
            s.send_to(&m.to_vec().unwrap(), (GW, 53)).unwrap();
            s.send_to(&[0x12, 0x34, 0x01], (GW, 53)).unwrap();
            std::thread::sleep(Duration::from_micros(200));
        }
    })
    .join()
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let text = std::fs::read_to_string(&log).unwrap();
    let grown = lines() - before;
    assert!(grown < 5, "600 datagrams added {grown} log lines:\n{text}");
    assert!(!text.contains("secret-"), "query names in the log:\n{text}");
}

/// A recursive A query, id `n`, for `{prefix}{n}.silent.test.`: a name the
/// silent upstream never answers.
fn silent_query(prefix: &str, n: u32) -> Vec<u8> {
    let mut m = Message::new();
    let name = Name::from_ascii(format!("{prefix}{n}.silent.test.")).unwrap();
    m.set_id(n as u16).set_recursion_desired(true);
    m.add_query(Query::query(name, RecordType::A));
    m.to_vec().unwrap()
}
