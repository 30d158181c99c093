//! weft-soak: the churn soak of issue 13. Three simulated hosts (like the
//! tests' cluster: an underlay namespace with a bridge and a 3-member etcd,
//! host namespaces plugged into it, one real `weft agent` per host); four
//! workers attach and detach containers on random hosts, and at random
//! moments a fault is injected:
//!
//! - `crash`: a `weft attach` killed (SIGKILL) in the middle, after its
//!   veth was plugged (`WEFT_FAILPOINT=attach-after-plug`), then `weft gc`
//!   on that host;
//! - `agent`: a host's agent killed and started again 2 s later;
//! - `partition`: a host's underlay link down for 3 lease TTLs;
//! - `leader`: the etcd leader killed, started again 5 s later.
//!
//! After each fault the workers pause and the invariants are checked until
//! they hold (the time that takes is the convergence time of that fault):
//! no address held by two live containers; the store's records are the
//! live containers, with their kernel addresses; every live container
//! answers a ping from one container on every host. At the end, `weft gc`
//! runs on every host and no weft veth may be left without a record.
//!
//! Configuration (environment): `WEFT_BIN` (weft binary; required),
//! `SOAK_MINUTES` (default 2), `SOAK_MAX` (live containers, default 30),
//! `SOAK_FAULTS` (comma-separated kinds, default all), `BENCH_LOGS` (a
//! directory to keep the agents' and etcd's logs in), `SOAK_DIAG` (if set,
//! neighbour entries of every unreachable pair on stderr),
//! `BENCH_OUT` (JSON results; default bench/soak-results.json).
//! Nothing runs in, or changes, the machine's own namespace.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use weft_bench::config::{env_or, env_usize};
use weft_bench::interrupt;
use weft_bench::netns::Ns;

const ETCD_IP: &str = "10.210.0.254";
const NET: &str = "soak";
const SUBNET: &str = "10.97.0.0/24";
const HOSTS: usize = 3;
const MEMBERS: usize = 3;
const WORKERS: usize = 4;
const TTL: u64 = 3;

fn member_url(m: usize) -> String {
    format!("http://{ETCD_IP}:{}", 2379 + 10000 * m)
}

fn urls() -> String {
    (0..MEMBERS).map(member_url).collect::<Vec<_>>().join(",")
}

/// A child killed and reaped on drop.
struct Proc(Option<Child>);

impl Proc {
    fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Host {
    name: String,
    ip: String,
    ns: Ns,
    state: PathBuf,
}

struct Container {
    host: usize,
    ns: Ns,
    addr: String,
}

struct Soak {
    weft: String,
    prefix: String,
    dir: PathBuf,
    underlay: Ns,
    hosts: Vec<Host>,
    agents: Mutex<Vec<Proc>>,
    etcd: Mutex<Vec<Proc>>,
    live: Mutex<Vec<Container>>,
    next: AtomicUsize,
    /// Workers wait while set (invariants being checked).
    paused: AtomicBool,
    busy: AtomicUsize,
    stop: AtomicBool,
    ops: Mutex<BTreeMap<&'static str, usize>>,
}

impl Drop for Soak {
    /// Processes first, then their files; the namespaces go after this.
    fn drop(&mut self) {
        self.agents.get_mut().map(Vec::clear).ok();
        self.etcd.get_mut().map(Vec::clear).ok();
        if let Some(keep) = std::env::var_os("BENCH_LOGS") {
            let _ = std::fs::create_dir_all(&keep);
            for f in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
                if f.path().extension().is_some_and(|e| e == "log") {
                    let _ = std::fs::copy(f.path(), PathBuf::from(&keep).join(f.file_name()));
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A small xorshift generator: no dependency for a few random choices.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn seed() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos())
        as u64
}

impl Soak {
    fn weft(&self, h: usize, args: &[&str]) -> Command {
        let host = &self.hosts[h];
        let mut cmd = host.ns.command(&self.weft);
        cmd.args(["--etcd", &urls(), "--node", &host.name, "--state-dir"])
            .arg(&host.state)
            .args(args)
            .env_remove("WEFT_FAILPOINT");
        cmd
    }

    fn weft_ok(&self, h: usize, args: &[&str]) -> Result<String> {
        let out = self.weft(h, args).output().context("spawn weft")?;
        if !out.status.success() {
            bail!("host{h}: weft {args:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn count(&self, what: &'static str) {
        *self.ops.lock().unwrap().entry(what).or_default() += 1;
    }

    fn start_member(&self, m: usize) -> Result<Proc> {
        let peer = |m: usize| format!("http://{ETCD_IP}:{}", 2380 + 10000 * m);
        let initial: Vec<String> = (0..MEMBERS).map(|m| format!("m{m}={}", peer(m))).collect();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("etcd{m}.log")))?;
        let child = self
            .underlay
            .command("etcd")
            .args(["--name", &format!("m{m}"), "--data-dir"])
            .arg(self.dir.join(format!("etcd{m}")))
            .args(["--listen-client-urls", &member_url(m), "--advertise-client-urls"])
            .arg(member_url(m))
            .args(["--listen-peer-urls", &peer(m), "--initial-advertise-peer-urls", &peer(m)])
            .args(["--initial-cluster", &initial.join(","), "--initial-cluster-state", "new"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("start etcd (install etcd-server)")?;
        Ok(Proc(Some(child)))
    }

    fn start_agent(&self, h: usize) -> Result<Proc> {
        let host = &self.hosts[h];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("agent{h}.log")))?;
        let child = self
            .weft(h, &["agent", "--underlay-ip", &host.ip, "--ttl", &TTL.to_string()])
            .args(["--resync", "2", "--no-dns"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("start agent")?;
        Ok(Proc(Some(child)))
    }

    fn leader(&self) -> Result<usize> {
        let out = self.underlay.sh(&format!(
            "ETCDCTL_API=3 etcdctl --endpoints {} endpoint status -w json 2>/dev/null || true",
            urls()
        ))?;
        let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        for s in v.as_array().into_iter().flatten() {
            if s["Status"]["leader"] == s["Status"]["header"]["member_id"] {
                let url = s["Endpoint"].as_str().unwrap_or_default();
                if let Some(m) = (0..MEMBERS).find(|&m| member_url(m) == url) {
                    return Ok(m);
                }
            }
        }
        bail!("no etcd leader: {out}")
    }

    fn attach(&self, h: usize) -> Result<()> {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let ns = Ns::new(format!("{}-c{n}", self.prefix))?;
        let out =
            self.weft(h, &["attach", NET, &ns.name, "--netns", &ns.path, "--json"]).output()?;
        if !out.status.success() {
            self.count("attach failed");
            return Ok(());
        }
        let v: Value = serde_json::from_slice(&out.stdout)?;
        let addr = v["address"].as_str().unwrap_or_default().split('/').next().unwrap_or_default();
        self.live.lock().unwrap().push(Container { host: h, ns, addr: addr.to_string() });
        self.count("attach");
        Ok(())
    }

    fn detach(&self, rng: &mut Rng) -> Result<()> {
        let c = {
            let mut live = self.live.lock().unwrap();
            if live.is_empty() {
                return Ok(());
            }
            let i = rng.below(live.len());
            live.swap_remove(i)
        };
        let out = self.weft(c.host, &["detach", NET, &c.ns.name]).output()?;
        if out.status.success() {
            self.count("detach");
        } else {
            // Still attached: it stays live.
            self.count("detach failed");
            self.live.lock().unwrap().push(c);
        }
        Ok(())
    }

    fn worker(&self, seed: u64) -> Result<()> {
        let mut rng = Rng::new(seed);
        let max = env_usize("SOAK_MAX", 30)?;
        while !self.stop.load(Ordering::SeqCst) {
            interrupt::check()?;
            if self.paused.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            self.busy.fetch_add(1, Ordering::SeqCst);
            let n = self.live.lock().unwrap().len();
            let r = if n < max && rng.below(3) != 0 {
                self.attach(rng.below(HOSTS))
            } else {
                self.detach(&mut rng)
            };
            self.busy.fetch_sub(1, Ordering::SeqCst);
            r?;
        }
        Ok(())
    }

    /// Pauses the workers and waits for their operations in flight.
    fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
        while self.busy.load(Ordering::SeqCst) > 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
    }

    /// The invariants that do not hold now, one line each.
    fn violations(&self) -> Vec<String> {
        let mut bad = Vec::new();
        let live = self.live.lock().unwrap();
        // No address held twice, in the kernel.
        let mut seen = HashSet::new();
        for c in live.iter() {
            let have =
                c.ns.sh("ip -4 -o addr show dev eth0 | awk '{print $4}'").unwrap_or_default();
            let have = have.trim().split('/').next().unwrap_or_default().to_string();
            if have != c.addr {
                bad.push(format!("{} has {have:?}, attached with {}", c.ns.name, c.addr));
            }
            if !seen.insert(c.addr.clone()) {
                bad.push(format!("address {} held twice", c.addr));
            }
        }
        // The store's records are the live containers.
        match self.weft_ok(0, &["endpoint", "ls", "--json"]) {
            Ok(out) => {
                let eps: Vec<Value> = serde_json::from_str(&out).unwrap_or_default();
                let recorded: HashSet<(String, String)> = eps
                    .iter()
                    .map(|e| {
                        let a = e["address"].as_str().unwrap_or_default();
                        (
                            e["container"].as_str().unwrap_or_default().to_string(),
                            a.split('/').next().unwrap_or_default().to_string(),
                        )
                    })
                    .collect();
                let expected: HashSet<(String, String)> =
                    live.iter().map(|c| (c.ns.name.clone(), c.addr.clone())).collect();
                for x in expected.difference(&recorded) {
                    bad.push(format!("live {x:?} has no record"));
                }
                for x in recorded.difference(&expected) {
                    bad.push(format!("record {x:?} has no live container"));
                }
            }
            Err(e) => bad.push(format!("endpoint ls: {e}")),
        }
        // Everyone reaches everyone, seen from one container per host.
        let addrs: Vec<&str> = live.iter().map(|c| c.addr.as_str()).collect();
        for h in 0..HOSTS {
            let Some(from) = live.iter().find(|c| c.host == h) else { continue };
            let script = format!(
                "for ip in {}; do (ping -c1 -W1 $ip >/dev/null 2>&1 || echo $ip) & done; wait",
                addrs.join(" ")
            );
            for lost in from.ns.sh(&script).unwrap_or_default().lines() {
                bad.push(format!("host{h} cannot reach {lost}"));
                if std::env::var_os("SOAK_DIAG").is_some() {
                    let to = live.iter().find(|c| c.addr == lost);
                    let dst = to.map(|c| c.host).unwrap_or(9);
                    let mut d = format!(
                        "diag {h}->{lost} (on host{dst}): src neigh [{}]",
                        from.ns.sh(&format!("ip neigh show {lost}")).unwrap_or_default().trim()
                    );
                    for (i, host) in self.hosts.iter().enumerate() {
                        let n = host
                            .ns
                            .sh(&format!(
                                "ip neigh show {lost} dev vx-soak; ip neigh show {} dev vx-soak",
                                from.addr
                            ))
                            .unwrap_or_default();
                        d += &format!(" | host{i} vx neigh [{}]", n.trim().replace('\n', "; "));
                    }
                    if let Some(t) = to {
                        d += &format!(
                            " | dst neigh [{}]",
                            t.ns.sh(&format!("ip neigh show {}", from.addr))
                                .unwrap_or_default()
                                .trim()
                        );
                    }
                    eprintln!("{d}");
                }
            }
        }
        bad
    }

    /// Checks the invariants until they hold (or 60 s); returns how long
    /// that took and what still failed.
    fn converge(&self) -> (Duration, Vec<String>) {
        let t = Instant::now();
        let mut shown = 0;
        loop {
            let bad = self.violations();
            if bad.is_empty() || t.elapsed() > Duration::from_secs(60) {
                return (t.elapsed(), bad);
            }
            // What is not converged yet, now and then (diagnosis).
            if t.elapsed() >= Duration::from_secs(5 * shown) {
                shown += 1;
                eprintln!("soak: after {:?}: {}", t.elapsed(), bad.join("; "));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn fault(&self, kind: &str, rng: &mut Rng) -> Result<()> {
        let h = rng.below(HOSTS);
        match kind {
            "crash" => {
                let n = self.next.fetch_add(1, Ordering::SeqCst);
                let ns = Ns::new(format!("{}-x{n}", self.prefix))?;
                let _ = self
                    .weft(h, &["attach", NET, &ns.name, "--netns", &ns.path])
                    .env("WEFT_FAILPOINT", "attach-after-plug")
                    .output()?;
                drop(ns);
                self.pause();
                self.weft_ok(h, &["gc"])?;
            }
            "agent" => {
                self.agents.lock().unwrap()[h].kill();
                std::thread::sleep(Duration::from_secs(2));
                let p = self.start_agent(h)?;
                self.agents.lock().unwrap()[h] = p;
            }
            "partition" => {
                self.hosts[h].ns.sh("ip link set eth0 down")?;
                std::thread::sleep(Duration::from_secs(3 * TTL));
                self.hosts[h].ns.sh("ip link set eth0 up")?;
            }
            "leader" => {
                let m = self.leader()?;
                self.etcd.lock().unwrap()[m].kill();
                std::thread::sleep(Duration::from_secs(5));
                let p = self.start_member(m)?;
                self.etcd.lock().unwrap()[m] = p;
            }
            _ => unreachable!("fault kinds are listed in main"),
        }
        Ok(())
    }
}

fn setup(weft: String) -> Result<Soak> {
    let prefix = env_or("BENCH_PREFIX", &format!("wsoak{}", std::process::id()));
    let dir = std::env::temp_dir().join(&prefix);
    std::fs::create_dir_all(&dir)?;
    let underlay = Ns::new(format!("{prefix}-ul"))?;
    underlay.sh(&format!(
        "ip link add ul0 type bridge && ip addr add {ETCD_IP}/24 dev ul0 && ip link set ul0 up"
    ))?;
    let mut hosts = Vec::new();
    for h in 0..HOSTS {
        let ns = Ns::new(format!("{prefix}-h{h}"))?;
        let ip = format!("10.210.0.{}", h + 1);
        underlay.sh(&format!(
            "ip link add {prefix}u{h} type veth peer name eth0 netns {} && \
             ip link set {prefix}u{h} master ul0 up",
            ns.name
        ))?;
        ns.sh(&format!("ip addr add {ip}/24 dev eth0 && ip link set eth0 up"))?;
        let state = dir.join(format!("state{h}"));
        hosts.push(Host { name: format!("host{h}"), ip, ns, state });
    }
    let soak = Soak {
        weft,
        prefix,
        dir,
        underlay,
        hosts,
        agents: Mutex::new(Vec::new()),
        etcd: Mutex::new(Vec::new()),
        live: Mutex::new(Vec::new()),
        next: AtomicUsize::new(0),
        paused: AtomicBool::new(false),
        busy: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        ops: Mutex::new(BTreeMap::new()),
    };
    for m in 0..MEMBERS {
        let p = soak.start_member(m)?;
        soak.etcd.lock().unwrap().push(p);
    }
    let t = Instant::now();
    while soak.leader().is_err() {
        if t.elapsed() > Duration::from_secs(30) {
            bail!("etcd did not start");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for h in 0..HOSTS {
        let p = soak.start_agent(h)?;
        soak.agents.lock().unwrap().push(p);
    }
    let t = Instant::now();
    while soak
        .weft_ok(0, &["network", "create", NET, "--driver", "overlay", "--subnet", SUBNET])
        .is_err()
    {
        if t.elapsed() > Duration::from_secs(30) {
            bail!("could not create the overlay network");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    for h in 0..HOSTS {
        let t = Instant::now();
        while soak.hosts[h].ns.sh("ip link show vx-soak").is_err() {
            if t.elapsed() > Duration::from_secs(30) {
                bail!("host{h}'s agent did not build the network");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(soak)
}

fn run() -> Result<Value> {
    interrupt::install();
    let weft = std::env::var("WEFT_BIN").context("WEFT_BIN: the weft binary to soak")?;
    let minutes = env_usize("SOAK_MINUTES", 2)?;
    let soak = setup(weft)?;
    let deadline = Instant::now() + Duration::from_secs(60 * minutes as u64);
    let all = ["crash", "agent", "partition", "leader"];
    let chosen = env_or("SOAK_FAULTS", &all.join(","));
    let kinds: Vec<&str> =
        all.iter().copied().filter(|k| chosen.split(',').any(|c| c == *k)).collect();
    if kinds.is_empty() {
        bail!("SOAK_FAULTS: none of {all:?}");
    }
    let mut faults: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut violations: Vec<String> = Vec::new();
    let mut rng = Rng::new(seed());
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                let soak = &soak;
                let s = seed() ^ ((w as u64 + 1) * 0x9e37_79b9);
                scope.spawn(move || soak.worker(s))
            })
            .collect();
        let mut i = rng.below(kinds.len());
        while Instant::now() < deadline {
            interrupt::check()?;
            std::thread::sleep(Duration::from_secs(5 + rng.below(10) as u64));
            let kind = kinds[i % kinds.len()];
            i += 1;
            eprintln!("soak: fault {kind}");
            soak.fault(kind, &mut rng)?;
            soak.pause();
            let (took, bad) = soak.converge();
            eprintln!("soak: {kind}: converged in {took:?}, {} violation(s)", bad.len());
            faults.entry(kind).or_default().push(took.as_secs_f64());
            violations.extend(bad.into_iter().map(|b| format!("after {kind}: {b}")));
            soak.resume();
        }
        soak.stop.store(true, Ordering::SeqCst);
        for w in workers {
            w.join().expect("worker")?;
        }
        Ok(())
    })?;
    // The end: gc everywhere, then nothing of weft's without an owner.
    soak.pause();
    let (took, bad) = soak.converge();
    violations.extend(bad.into_iter().map(|b| format!("at the end: {b}")));
    for h in 0..HOSTS {
        if let Err(e) = soak.weft_ok(h, &["gc"]) {
            violations.push(format!("gc on host{h}: {e}"));
        }
    }
    let live = soak.live.lock().unwrap().len();
    let mut veths = 0;
    for h in 0..HOSTS {
        veths += soak.hosts[h]
            .ns
            .sh("ip -o link show | grep -c 'alias weft:ep=' || true")?
            .trim()
            .parse::<usize>()
            .unwrap_or(0);
    }
    if veths != live {
        violations.push(format!("{veths} weft veths for {live} live containers after gc"));
    }
    let ops = soak.ops.lock().unwrap().clone();
    Ok(json!({
        "minutes": minutes,
        "operations": ops,
        "faults": faults.iter().map(|(k, v)| (k.to_string(), json!({
            "count": v.len(),
            "converge_max_s": v.iter().cloned().fold(0.0, f64::max),
            "converge_s": v,
        }))).collect::<serde_json::Map<_, _>>(),
        "final_converge_s": took.as_secs_f64(),
        "live_at_end": live,
        "violations": violations,
    }))
}

fn main() -> ExitCode {
    match run() {
        Ok(v) => {
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            let out = env_or("BENCH_OUT", "bench/soak-results.json");
            let _ = std::fs::write(&out, format!("{v:#}\n"));
            if v["violations"].as_array().is_some_and(|a| a.is_empty()) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("weft-soak: {e:#}");
            ExitCode::FAILURE
        }
    }
}
