//! weft-overlay-bench: the overlay benchmark of issue 4, on a simulated
//! cluster like the tests' (tests/harness/cluster.rs): an "underlay"
//! namespace with a bridge and a real etcd, host namespaces plugged into
//! it, one real `weft agent` per host. Run through `bench/overlay.sh`.
//!
//! 1. Convergence. Two hosts A and B; a probe container on B. N times: a
//!    container namespace is made on A (untimed, as a runtime makes it
//!    before calling the plugin), then the clock starts, `weft attach`
//!    runs on A, and the probe on B pings the new address (ICMP from this
//!    process, in the probe's namespace) as soon as B's VXLAN device has
//!    the address's permanent neighbour entry (seen by `ip monitor neigh`)
//!    and the attach has returned, retrying every 20 ms; the clock stops at
//!    the first echo reply. Also recorded: when the attach returned and
//!    when B's entry appeared.
//! 2. Throughput and latency, container to container across the two
//!    hosts: iperf3 (TCP) and ping, over weft's overlay and over the same
//!    path built by hand on two more host namespaces on the same underlay
//!    (bridge + VXLAN device with proxy ARP, learning off, static FDB and
//!    neighbour entries, same MTU, no weft, no firewall), alternating
//!    rounds. The underlay itself (host to host) is measured for scale.
//!
//! Configuration (environment):
//! - `WEFT_BIN`        weft binary (overlay.sh sets it: scripts/weft-bin)
//! - `OVL_N`           convergence samples (default 100)
//! - `OVL_ROUNDS`      iperf3/ping rounds per path (default 3)
//! - `OVL_IPERF_SECS`  seconds per iperf3 run (default 5)
//! - `OVL_PINGS`       pings per RTT round (default 200)
//! - `BENCH_OUT`       JSON results (default `bench/overlay-results.json`)
//! - `BENCH_LOGS`      if set, a directory to keep the agents' logs in
//! - `BENCH_PREFIX`    prefix of every namespace and temp dir (default
//!   `wovl-PID`); bench/overlay.sh cleans up what carries it
//!
//! Nothing runs in, or changes, the machine's own namespace: every command
//! runs in a namespace made here, and all are deleted on exit (guards; the
//! entry script's trap covers a kill).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use weft_bench::config::{env_or, env_usize};
use weft_bench::interrupt;
use weft_bench::netns::Ns;
use weft_bench::numbers::{median, percentile};

const ETCD_IP: &str = "10.200.0.254";
const NET: &str = "ovb";
const SUBNET: &str = "10.95.0.0/22";
/// The hand-built path: VNI, container subnet, container MACs.
const MANUAL_VNI: u32 = 4242;
const MANUAL_IPS: [&str; 2] = ["10.96.0.1", "10.96.0.2"];
const MANUAL_MACS: [&str; 2] = ["02:96:00:00:00:01", "02:96:00:00:00:02"];

// ---- namespaces, processes, files: all guards ----

/// A child process killed and reaped on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A directory removed on drop.
struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---- the simulated cluster ----

struct Host {
    name: String,
    ip: String,
    state: PathBuf,
    // Drop order: the agent, then the namespace.
    agent: Option<Proc>,
    ns: Ns,
}

struct Cluster {
    prefix: String,
    weft: PathBuf,
    // Drop order: containers, hosts (agents), etcd, underlay, files.
    containers: Vec<Ns>,
    hosts: Vec<Host>,
    etcd: Option<Proc>,
    underlay: Ns,
    dir: Dir,
}

impl Drop for Cluster {
    /// With `BENCH_LOGS` set, the agents' logs are kept there.
    fn drop(&mut self) {
        let Ok(dest) = std::env::var("BENCH_LOGS") else { return };
        let _ = std::fs::create_dir_all(&dest);
        for h in &self.hosts {
            let _ = std::fs::copy(
                h.state.join("agent.log"),
                Path::new(&dest).join(format!("{}-agent.log", h.name)),
            );
        }
    }
}

fn etcd_url() -> String {
    format!("http://{ETCD_IP}:2379")
}

impl Cluster {
    fn new(prefix: &str, weft: &Path) -> Result<Cluster> {
        let dir = Dir(std::env::temp_dir().join(prefix));
        std::fs::create_dir_all(&dir.0).context("temp dir")?;
        let underlay = Ns::new(format!("{prefix}-ul"))?;
        underlay.sh(&format!(
            "ip link add ul0 type bridge && ip addr add {ETCD_IP}/24 dev ul0 && ip link set ul0 up"
        ))?;
        let mut c = Cluster {
            prefix: prefix.to_string(),
            weft: weft.to_path_buf(),
            containers: Vec::new(),
            hosts: Vec::new(),
            etcd: None,
            underlay,
            dir,
        };
        c.start_etcd()?;
        Ok(c)
    }

    fn start_etcd(&mut self) -> Result<()> {
        let data = self.dir.0.join("etcd");
        let log = File::create(self.dir.0.join("etcd.log"))?;
        let url = etcd_url();
        let peer = format!("http://{ETCD_IP}:2380");
        let child = self
            .underlay
            .command("etcd")
            .args(["--name", "bench", "--data-dir"])
            .arg(&data)
            .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("bench={peer}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("start etcd (Debian package etcd-server)")?;
        self.etcd = Some(Proc(child));
        let deadline = Instant::now() + Duration::from_secs(20);
        while self
            .underlay
            .sh(&format!("ETCDCTL_API=3 etcdctl --endpoints {url} endpoint health"))
            .is_err()
        {
            if Instant::now() > deadline {
                bail!("etcd did not start");
            }
            interrupt::check()?;
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// A host namespace on the underlay with address 10.200.0.`n`.
    fn add_bare_host(&mut self, tag: &str, n: u8) -> Result<usize> {
        let ns = Ns::new(format!("{}-{tag}", self.prefix))?;
        let ip = format!("10.200.0.{n}");
        let port = format!("ulp{n}");
        self.underlay.sh(&format!(
            "ip link add {port} type veth peer name eth0 netns {ns} && \
             ip link set {port} master ul0 && ip link set {port} up",
            ns = ns.name
        ))?;
        ns.sh(&format!("ip addr add {ip}/24 dev eth0 && ip link set eth0 up"))?;
        let state = self.dir.0.join(tag);
        std::fs::create_dir_all(&state)?;
        self.hosts.push(Host { name: tag.to_string(), ip, state, agent: None, ns });
        Ok(self.hosts.len() - 1)
    }

    fn add_weft_host(&mut self, tag: &str, n: u8) -> Result<usize> {
        let i = self.add_bare_host(tag, n)?;
        let h = &self.hosts[i];
        let log = File::create(h.state.join("agent.log"))?;
        let child =
            h.ns.command(self.weft.to_str().context("weft path")?)
                .args(["--etcd", &etcd_url(), "--node", &h.name, "--state-dir"])
                .arg(&h.state)
                .args(["-v", "agent", "--underlay-ip", &h.ip])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .context("start weft agent")?;
        self.hosts[i].agent = Some(Proc(child));
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let out = self.weft(i, &["node", "ls", "--json"]);
            if out.as_ref().is_ok_and(|o| o.contains(&format!("\"{tag}\""))) {
                break;
            }
            if Instant::now() > deadline {
                bail!("agent on {tag} did not register: {out:?}");
            }
            interrupt::check()?;
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(i)
    }

    fn weft_cmd(&self, i: usize, args: &[&str]) -> Command {
        let h = &self.hosts[i];
        let mut cmd = h.ns.command(self.weft.to_str().unwrap_or("weft"));
        cmd.args(["--etcd", &etcd_url(), "--node", &h.name, "--state-dir"])
            .arg(&h.state)
            .args(args)
            .env_remove("WEFT_FAILPOINT");
        cmd
    }

    fn weft(&self, i: usize, args: &[&str]) -> Result<String> {
        let out = self.weft_cmd(i, args).output().context("spawn weft")?;
        if !out.status.success() {
            bail!("weft {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn container(&mut self, tag: &str) -> Result<usize> {
        self.containers.push(Ns::new(format!("{}-{tag}", self.prefix))?);
        Ok(self.containers.len() - 1)
    }

    /// Attaches container `c` on host `i`; returns its IPv4 address.
    fn attach(&self, i: usize, c: usize) -> Result<Ipv4Addr> {
        let ns = &self.containers[c];
        let path = ns.path.as_str();
        let out = self.weft(i, &["attach", NET, &ns.name, "--netns", path, "--json"])?;
        parse_addr(&out)
    }
}

fn parse_addr(attach_json: &str) -> Result<Ipv4Addr> {
    let v: Value = serde_json::from_str(attach_json).context("attach JSON")?;
    let a = v["address"].as_str().context("no address in attach output")?;
    a.split('/').next().unwrap_or_default().parse().context("attach address")
}

// ---- ICMP from inside a namespace ----

/// A ping socket (SOCK_DGRAM/IPPROTO_ICMP: the kernel fills in the
/// identifier and checksum) made inside `ns`.
fn ping_socket(ns: &Ns) -> Result<OwnedFd> {
    ns.sh("sysctl -qw net.ipv4.ping_group_range='0 2147483647'")?;
    std::thread::scope(|s| {
        s.spawn(|| -> Result<OwnedFd> {
            ns.enter()?;
            // SAFETY: socket(2); the fd is owned by the OwnedFd below.
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_ICMP) };
            if fd < 0 {
                bail!("ICMP socket: {}", std::io::Error::last_os_error());
            }
            // SAFETY: fd is a fresh, valid descriptor nobody else owns.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        })
        .join()
        .map_err(|_| anyhow!("ping socket thread panicked"))?
    })
}

/// Sends one echo request to `dst` and waits up to `wait` for its reply.
fn ping_once(sock: &OwnedFd, dst: Ipv4Addr, seq: u16, wait: Duration) -> Result<bool> {
    let mut pkt = [0u8; 16];
    pkt[0] = 8; // echo request
    pkt[6..8].copy_from_slice(&seq.to_be_bytes());
    // SAFETY: zeroed sockaddr_in is a valid value; fields set below.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_addr.s_addr = u32::from(dst).to_be();
    let fd = sock.as_raw_fd();
    // SAFETY: sendto(2) with a valid buffer and sockaddr of the given size.
    let n = unsafe {
        libc::sendto(
            fd,
            pkt.as_ptr().cast(),
            pkt.len(),
            0,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        // No route / no neighbour yet: not a reply, try again.
        return match e.raw_os_error() {
            Some(libc::EHOSTUNREACH) | Some(libc::ENETUNREACH) => Ok(false),
            _ => Err(e).context("send echo request"),
        };
    }
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: poll(2) on one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as libc::c_int) };
        if r <= 0 {
            continue;
        }
        let mut buf = [0u8; 256];
        // SAFETY: recv(2) into a buffer of the given size.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        if n >= 8 && buf[0] == 0 && buf[6..8] == seq.to_be_bytes() {
            return Ok(true);
        }
    }
}

// ---- statistics ----

fn summary(ms: &[f64]) -> Value {
    let mut s = ms.to_vec();
    s.sort_by(f64::total_cmp);
    json!({
        "n": s.len(),
        "p50_ms": percentile(&s, 50.0),
        "p90_ms": percentile(&s, 90.0),
        "p99_ms": percentile(&s, 99.0),
        "max_ms": s.last().copied().unwrap_or(f64::NAN),
        "mean_ms": if s.is_empty() { f64::NAN } else { s.iter().sum::<f64>() / s.len() as f64 },
    })
}

// ---- 1. convergence ----

/// `ip -o monitor neigh` in `ns`: every line with the time it was read.
fn neigh_monitor(ns: &Ns) -> Result<(Proc, mpsc::Receiver<(Instant, String)>)> {
    let mut child = ns
        .command("ip")
        .args(["-o", "monitor", "neigh"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("ip monitor")?;
    let out = child.stdout.take().context("monitor stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    Ok((Proc(child), rx))
}

fn convergence(c: &mut Cluster, a: usize, b: usize, n: usize) -> Result<Value> {
    // The probe on B, and one warm-up container on A.
    let probe = c.container("probe")?;
    let probe_ip = c.attach(b, probe)?;
    let warm = c.container("warm")?;
    let warm_ip = c.attach(a, warm)?;
    let sock = ping_socket(&c.containers[probe])?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seq = 0u16;
    while !ping_once(&sock, warm_ip, seq, Duration::from_millis(200))? {
        seq = seq.wrapping_add(1);
        if Instant::now() > deadline {
            bail!("probe {probe_ip} on B never reached {warm_ip} on A");
        }
        interrupt::check()?;
    }
    // Containers are made before the clock runs, as a runtime would.
    let first = c.containers.len();
    for k in 0..n {
        c.container(&format!("a{k}"))?;
    }
    let (_mon, events) = neigh_monitor(&c.hosts[b].ns)?;
    std::thread::sleep(Duration::from_millis(200));
    let vx = format!("vx-{NET}");
    let (mut total, mut attach_ms, mut neigh_ms, mut retries) = (vec![], vec![], vec![], 0usize);
    let (mut tries_per_sample, mut slow) = (vec![], vec![]);
    for k in 0..n {
        interrupt::check()?;
        while events.try_recv().is_ok() {}
        let t0 = Instant::now();
        let ip = c.attach(a, first + k)?;
        let t_attach = t0.elapsed();
        let needle = format!("{ip} dev {vx} ");
        let neigh_at = loop {
            let left = Duration::from_secs(5).saturating_sub(t0.elapsed());
            match events.recv_timeout(left) {
                Ok((at, line)) if line.contains(&needle) && line.contains("PERMANENT") => {
                    break at;
                }
                Ok(_) => {}
                Err(_) => bail!("B never got the neighbour entry for {ip} (sample {k})"),
            }
        };
        let mut tries = 0;
        loop {
            seq = seq.wrapping_add(1);
            if ping_once(&sock, ip, seq, Duration::from_millis(20))? {
                break;
            }
            tries += 1;
            if tries == 10 {
                // Slow: keep what the neighbour tables said, to explain it.
                let probe_neigh = c.containers[probe].sh("ip neigh show").unwrap_or_default();
                let new_neigh = c.containers[first + k].sh("ip neigh show").unwrap_or_default();
                slow.push(json!({
                    "sample": k, "address": ip.to_string(),
                    "probe_neigh": probe_neigh, "new_container_neigh": new_neigh,
                }));
            }
            if t0.elapsed() > Duration::from_secs(5) {
                bail!("no reply from {ip} within 5 s (sample {k})");
            }
        }
        let done = t0.elapsed();
        retries += tries;
        tries_per_sample.push(tries);
        total.push(done.as_secs_f64() * 1e3);
        attach_ms.push(t_attach.as_secs_f64() * 1e3);
        neigh_ms.push(neigh_at.saturating_duration_since(t0).as_secs_f64() * 1e3);
    }
    Ok(json!({
        "samples": n,
        "attach_to_first_reply": summary(&total),
        "attach_command": summary(&attach_ms),
        "attach_to_entry_on_b": summary(&neigh_ms),
        "ping_retries": retries,
        "ping_retries_per_sample": tries_per_sample,
        "slow_samples": slow,
        "raw_ms": total,
    }))
}

// ---- 2. throughput and latency ----

/// A hand-built overlay host: bridge + VXLAN (proxy ARP, learning off) +
/// one container, static entries to the other host's container.
fn manual_host(c: &mut Cluster, h: usize, me: usize, mtu: u32) -> Result<usize> {
    let other = 1 - me;
    let ctr = c.container(&format!("m{me}c"))?;
    let cname = c.containers[ctr].name.clone();
    let host = &c.hosts[h];
    let peer_host_ip = format!("10.200.0.{}", 11 + other);
    host.ns.sh(&format!(
        "ip link add brm type bridge && ip link set brm mtu {mtu} up && \
         ip link add vxm mtu {mtu} type vxlan id {MANUAL_VNI} local {ip} dev eth0 dstport 4789 \
            nolearning proxy && \
         ip link set vxm master brm && ip link set vxm up && \
         ip link add vm0 mtu {mtu} type veth peer name eth0 netns {cname} && \
         ip link set vm0 master brm && ip link set vm0 up && \
         bridge fdb add {rmac} dev vxm dst {peer_host_ip} self permanent && \
         bridge fdb add {rmac} dev vxm master static && \
         ip neigh add {rip} lladdr {rmac} dev vxm nud permanent",
        ip = host.ip,
        rmac = MANUAL_MACS[other],
        rip = MANUAL_IPS[other],
    ))?;
    c.containers[ctr].sh(&format!(
        "ip link set eth0 address {mac} mtu {mtu} && ip addr add {ip}/24 dev eth0 && \
         ip link set eth0 up",
        mac = MANUAL_MACS[me],
        ip = MANUAL_IPS[me],
    ))?;
    Ok(ctr)
}

fn iperf(server: &Ns, client: &Ns, dst: &str, secs: usize) -> Result<Value> {
    let mut last = String::new();
    // A run that reports no result (iperf3 -J says why in "error") is
    // tried again, up to three times.
    for _ in 0..3 {
        let _srv = Proc(
            server
                .command("iperf3")
                .args(["-s", "-1", "-p", "5201"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("iperf3 (Debian package iperf3)")?,
        );
        // The client starts once the server listens.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !server.sh("ss -Hltn 'sport = :5201'")?.contains("5201") {
            interrupt::check()?;
            if Instant::now() > deadline {
                bail!("iperf3 server in {} did not listen", server.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = client
            .command("iperf3")
            .args(["-c", dst, "-p", "5201", "-t", &secs.to_string(), "-J"])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if let Some(bps) = v["end"]["sum_received"]["bits_per_second"].as_f64() {
            let retr = v["end"]["sum_sent"]["retransmits"].as_u64().unwrap_or(0);
            return Ok(json!({"gbit_s": bps / 1e9, "retransmits": retr}));
        }
        last = v["error"].as_str().map_or_else(|| text.chars().take(300).collect(), String::from);
        eprintln!("iperf3 to {dst}: no result ({last}); again");
    }
    bail!("iperf3 to {dst} failed: {last}")
}

/// RTTs in ms of `count` pings at 10 ms intervals.
fn ping_rtts(from: &Ns, dst: &str, count: usize) -> Result<Vec<f64>> {
    let out = from.sh(&format!("ping -n -c {count} -i 0.01 -W 1 {dst}"))?;
    Ok(out
        .lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.split_whitespace().next()?.parse().ok())
        .collect())
}

struct PathUnderTest<'a> {
    label: &'static str,
    server: &'a Ns,
    client: &'a Ns,
    dst: String,
    /// Hosts that get a copy of weft's nftables table for the time of this
    /// path's runs (to tell the firewall's cost from the overlay's).
    with_weft_nft: Vec<&'a Ns>,
    /// ... and also a table that exempts the VXLAN packets (UDP 4789) from
    /// connection tracking.
    notrack: bool,
}

fn throughput(
    c: &mut Cluster,
    a: usize,
    b: usize,
    rounds: usize,
    secs: usize,
    pings: usize,
) -> Result<Value> {
    // weft's path: two fresh containers on A and B.
    let wa = c.container("tpa")?;
    c.attach(a, wa)?;
    let wb = c.container("tpb")?;
    let wb_ip = c.attach(b, wb)?;
    // (Not /sys/class/net: sysfs shows the namespace it was mounted in.)
    let link: Value = serde_json::from_str(&c.containers[wa].sh("ip -j link show eth0")?)?;
    let mtu = link[0]["mtu"].as_u64().context("container MTU")? as u32;
    // The same path by hand, on two more hosts of the same underlay.
    let ma = c.add_bare_host("m0", 11)?;
    let mb = c.add_bare_host("m1", 12)?;
    let mca = manual_host(c, ma, 0, mtu)?;
    let mcb = manual_host(c, mb, 1, mtu)?;
    let paths = [
        PathUnderTest {
            label: "weft",
            server: &c.containers[wb],
            client: &c.containers[wa],
            dst: wb_ip.to_string(),
            with_weft_nft: vec![],
            notrack: false,
        },
        PathUnderTest {
            label: "manual",
            server: &c.containers[mcb],
            client: &c.containers[mca],
            dst: MANUAL_IPS[1].to_string(),
            with_weft_nft: vec![],
            notrack: false,
        },
        PathUnderTest {
            label: "manual+weft-nft",
            server: &c.containers[mcb],
            client: &c.containers[mca],
            dst: MANUAL_IPS[1].to_string(),
            with_weft_nft: vec![&c.hosts[ma].ns, &c.hosts[mb].ns],
            notrack: false,
        },
        PathUnderTest {
            label: "manual+weft-nft+notrack",
            server: &c.containers[mcb],
            client: &c.containers[mca],
            dst: MANUAL_IPS[1].to_string(),
            with_weft_nft: vec![&c.hosts[ma].ns, &c.hosts[mb].ns],
            notrack: true,
        },
        PathUnderTest {
            label: "underlay",
            server: &c.hosts[mb].ns,
            client: &c.hosts[ma].ns,
            dst: c.hosts[mb].ip.clone(),
            with_weft_nft: vec![],
            notrack: false,
        },
    ];
    // weft's table as host A has it (rules for its bridge and sets; on the
    // hand-built hosts they match nothing but cost what any such table
    // costs: conntrack and the hooks).
    let weft_nft = c.hosts[a].ns.sh("nft list table inet weft")?;
    let nft_file = c.dir.0.join("weft.nft");
    std::fs::write(&nft_file, &weft_nft)?;
    let nft_path = nft_file.to_str().context("nft file path")?.to_string();
    let notrack_file = c.dir.0.join("notrack.nft");
    std::fs::write(
        &notrack_file,
        "table inet weftbench_notrack {\n\
         \tchain pre { type filter hook prerouting priority raw; udp dport 4789 notrack; }\n\
         \tchain out { type filter hook output priority raw; udp dport 4789 notrack; }\n}\n",
    )?;
    let notrack_path = notrack_file.to_str().context("nft file path")?.to_string();
    for p in &paths {
        if ping_rtts(p.client, &p.dst, 3)?.is_empty() {
            bail!("{} path: no ping reply from {}", p.label, p.dst);
        }
    }
    let mut gbit: Vec<Vec<f64>> = vec![vec![]; paths.len()];
    let mut retr: Vec<u64> = vec![0; paths.len()];
    let mut rtts: Vec<Vec<f64>> = vec![vec![]; paths.len()];
    for round in 0..rounds {
        // Alternate the order so neither path always runs first.
        let order: Vec<usize> = if round % 2 == 0 {
            (0..paths.len()).collect()
        } else {
            (0..paths.len()).rev().collect()
        };
        for &i in &order {
            interrupt::check()?;
            let p = &paths[i];
            for h in &p.with_weft_nft {
                h.sh(&format!("nft -f {nft_path}"))?;
                if p.notrack {
                    h.sh(&format!("nft -f {notrack_path}"))?;
                }
            }
            let r = iperf(p.server, p.client, &p.dst, secs);
            let rtt = r.is_ok().then(|| ping_rtts(p.client, &p.dst, pings));
            for h in &p.with_weft_nft {
                h.sh("nft delete table inet weft")?;
                if p.notrack {
                    h.sh("nft delete table inet weftbench_notrack")?;
                }
            }
            let r = r?;
            eprintln!(
                "round {round}: {} {:.2} Gbit/s",
                p.label,
                r["gbit_s"].as_f64().unwrap_or(0.0)
            );
            gbit[i].push(r["gbit_s"].as_f64().unwrap_or(f64::NAN));
            retr[i] += r["retransmits"].as_u64().unwrap_or(0);
            rtts[i].extend(rtt.context("ping")??);
        }
    }
    let mut out = serde_json::Map::new();
    for (i, p) in paths.iter().enumerate() {
        let mut r = rtts[i].clone();
        r.sort_by(f64::total_cmp);
        out.insert(
            p.label.to_string(),
            json!({
                "gbit_s_median": median(&gbit[i]),
                "gbit_s_runs": gbit[i],
                "retransmits": retr[i],
                "rtt_ms_p50": percentile(&r, 50.0),
                "rtt_ms_p99": percentile(&r, 99.0),
                "rtt_ms_mean": r.iter().sum::<f64>() / r.len().max(1) as f64,
                "pings": r.len(),
            }),
        );
    }
    let get = |path: &str, k: &str| out[path][k].as_f64().unwrap_or(f64::NAN);
    let ratio_tp = get("weft", "gbit_s_median") / get("manual", "gbit_s_median");
    let ratio_rtt = get("manual", "rtt_ms_p50") / get("weft", "rtt_ms_p50");
    let ratio_fw = get("weft", "gbit_s_median") / get("manual+weft-nft", "gbit_s_median");
    out.insert("mtu".into(), json!(mtu));
    out.insert("rounds".into(), json!(rounds));
    out.insert("iperf_secs".into(), json!(secs));
    out.insert("ratio_throughput_weft_over_manual".into(), json!(ratio_tp));
    out.insert("ratio_rtt_p50_manual_over_weft".into(), json!(ratio_rtt));
    out.insert("ratio_throughput_weft_over_manual_with_weft_nft".into(), json!(ratio_fw));
    Ok(Value::Object(out))
}

fn run() -> Result<Value> {
    let prefix = env_or("BENCH_PREFIX", &format!("wovl-{}", std::process::id()));
    let weft = PathBuf::from(env_or("WEFT_BIN", "target/release/weft"));
    let weft = weft.canonicalize().with_context(|| format!("{}: not found", weft.display()))?;
    let n = env_usize("OVL_N", 100)?;
    let rounds = env_usize("OVL_ROUNDS", 3)?;
    let secs = env_usize("OVL_IPERF_SECS", 5)?;
    let pings = env_usize("OVL_PINGS", 200)?;

    let mut c = Cluster::new(&prefix, &weft)?;
    let a = c.add_weft_host("hosta", 1)?;
    let b = c.add_weft_host("hostb", 2)?;
    c.weft(a, &["network", "create", NET, "--driver", "overlay", "--subnet", SUBNET])?;
    let deadline = Instant::now() + Duration::from_secs(10);
    for h in [a, b] {
        while c.hosts[h].ns.sh(&format!("ip link show vx-{NET}")).is_err() {
            if Instant::now() > deadline {
                bail!("the agents did not build vx-{NET}");
            }
            interrupt::check()?;
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    eprintln!("convergence: {n} attaches on A, first reply from B");
    let conv = convergence(&mut c, a, b, n)?;
    eprintln!("throughput/latency: {rounds} rounds of iperf3 ({secs} s) and {pings} pings");
    let tp = throughput(&mut c, a, b, rounds, secs, pings)?;
    let mut uname = Command::new("uname").arg("-r").output()?.stdout;
    uname.retain(|c| !c.is_ascii_whitespace());
    Ok(json!({
        "kernel": String::from_utf8_lossy(&uname),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "convergence": conv,
        "throughput": tp,
    }))
}

fn main() -> ExitCode {
    if std::env::args().any(|a| a == "-h" || a == "--help") {
        println!("usage: weft-overlay-bench   (configured by environment; see the source header)");
        return ExitCode::SUCCESS;
    }
    interrupt::install();
    match run() {
        Ok(v) => {
            let out = env_or("BENCH_OUT", "bench/overlay-results.json");
            let text = serde_json::to_string_pretty(&v).unwrap_or_default();
            if let Err(e) = std::fs::write(&out, format!("{text}\n")) {
                eprintln!("weft-overlay-bench: write {out}: {e}");
            }
            print_summary(&v);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("weft-overlay-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_summary(v: &Value) {
    let c = &v["convergence"];
    let t = &v["throughput"];
    let f = |x: &Value| x.as_f64().unwrap_or(f64::NAN);
    println!("## overlay benchmark ({} CPUs, kernel {})", v["cpus"], v["kernel"]);
    println!(
        "convergence over {} attaches: attach start -> first reply on B: p50 {:.1} ms, p99 {:.1} ms (max {:.1})",
        c["samples"],
        f(&c["attach_to_first_reply"]["p50_ms"]),
        f(&c["attach_to_first_reply"]["p99_ms"]),
        f(&c["attach_to_first_reply"]["max_ms"]),
    );
    println!(
        "  attach command: p50 {:.1} ms, p99 {:.1} ms; entry on B after attach start: p50 {:.1} ms, p99 {:.1} ms",
        f(&c["attach_command"]["p50_ms"]),
        f(&c["attach_command"]["p99_ms"]),
        f(&c["attach_to_entry_on_b"]["p50_ms"]),
        f(&c["attach_to_entry_on_b"]["p99_ms"]),
    );
    for p in ["weft", "manual", "manual+weft-nft", "manual+weft-nft+notrack", "underlay"] {
        println!(
            "{p:>24}: {:.2} Gbit/s (median of [{}]), RTT p50 {:.3} ms p99 {:.3} ms",
            f(&t[p]["gbit_s_median"]),
            t[p]["gbit_s_runs"]
                .as_array()
                .map(|a| a.iter().map(|x| format!("{:.2}", f(x))).collect::<Vec<_>>().join(", "))
                .unwrap_or_default(),
            f(&t[p]["rtt_ms_p50"]),
            f(&t[p]["rtt_ms_p99"]),
        );
    }
    println!(
        "ratio weft/manual: throughput {:.3}, RTT (manual/weft) {:.3}; \
         throughput weft/(manual+weft-nft) {:.3}",
        f(&t["ratio_throughput_weft_over_manual"]),
        f(&t["ratio_rtt_p50_manual_over_weft"]),
        f(&t["ratio_throughput_weft_over_manual_with_weft_nft"]),
    );
}
