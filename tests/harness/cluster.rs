//! N simulated hosts on one machine: an "underlay" namespace with a bridge
//! that every host's `eth0` plugs into, etcd listening inside it, and one
//! `weft agent` per host namespace with its own state dir and `--node`.
//! Everything is a guard: agents and etcd are killed, namespaces deleted.
//! `Cluster::with_tls` puts etcd behind TLS with client certificates.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::tls::{etcd_tls_url, Certs};
use super::{unique, Netns, Run, WEFT};

pub const ETCD_IP: &str = "10.200.0.254";

pub fn etcd_url() -> String {
    format!("http://{ETCD_IP}:2379")
}

/// Client URL of member `m` of a multi-member etcd (member 0 is `etcd_url`).
pub fn member_url(m: usize) -> String {
    format!("http://{ETCD_IP}:{}", 2379 + 10000 * m)
}

/// A child process killed (SIGKILL) and reaped on drop.
pub struct Proc(pub Option<Child>);

impl Proc {
    pub fn kill(&mut self) {
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

pub struct Host {
    pub name: String,
    pub ip: String,
    pub agent: Proc,
    pub containers: Vec<Netns>,
    pub ns: Netns,
    pub state: tempfile::TempDir,
}

pub struct Cluster {
    // Drop order: agents and containers (inside hosts), etcd, certificates,
    // then the underlay namespace.
    pub hosts: Vec<Host>,
    pub etcd: Proc,
    /// Members 1.. of a multi-member etcd (`with_etcd_members`); `etcd` is
    /// member 0.
    pub more_etcd: Vec<Proc>,
    pub members: usize,
    /// Some: etcd serves https only and wants a client certificate.
    pub certs: Option<Certs>,
    pub etcd_dir: tempfile::TempDir,
    pub underlay: Netns,
    /// Extra arguments of every `weft agent` (`--ttl 2`, ...).
    pub agent_args: Vec<String>,
}

impl Cluster {
    pub fn new(n: usize) -> Cluster {
        Cluster::build(n, None, &[], 1)
    }

    pub fn with_tls(n: usize) -> Cluster {
        Cluster::build(n, Some(Certs::generate()), &[], 1)
    }

    /// Agents started with `args` besides the usual ones.
    pub fn with_agent_args(n: usize, args: &[&str]) -> Cluster {
        Cluster::build(n, None, args, 1)
    }

    /// etcd as users run it: `members` members (all in the underlay, on
    /// ETCD_IP, ports 2379, 12379, 22379...); weft is given all of them.
    pub fn with_etcd_members(n: usize, members: usize) -> Cluster {
        Cluster::build(n, None, &[], members)
    }

    fn build(n: usize, certs: Option<Certs>, agent_args: &[&str], members: usize) -> Cluster {
        let underlay = Netns::new("ul");
        underlay.sh(&format!(
            "ip link add ul0 type bridge && ip addr add {ETCD_IP}/24 dev ul0 && ip link set ul0 up"
        ));
        let etcd_dir = tempfile::tempdir().expect("tempdir");
        let agent_args = agent_args.iter().map(|a| a.to_string()).collect();
        let mut c = Cluster {
            hosts: Vec::new(),
            etcd: Proc(None),
            more_etcd: Vec::new(),
            members,
            certs,
            etcd_dir,
            underlay,
            agent_args,
        };
        if members > 1 {
            c.start_etcd_members();
        } else {
            c.start_etcd();
        }
        for i in 0..n {
            c.add_host(i);
        }
        c
    }

    /// The certificates of a `with_tls` cluster.
    pub fn certs(&self) -> &Certs {
        self.certs.as_ref().expect("a cluster made with Cluster::with_tls")
    }

    /// The global flags that reach this cluster's etcd.
    pub fn client_args(&self) -> Vec<String> {
        match &self.certs {
            Some(certs) => certs.client_args(&certs.ca()),
            None if self.members > 1 => {
                let urls: Vec<String> = (0..self.members).map(member_url).collect();
                vec!["--etcd".into(), urls.join(",")]
            }
            None => vec!["--etcd".into(), etcd_url()],
        }
    }

    /// A multi-member etcd, every member with its own data dir and log.
    fn start_etcd_members(&mut self) {
        let peer = |m: usize| format!("http://{ETCD_IP}:{}", 2380 + 10000 * m);
        let initial: Vec<String> = (0..self.members).map(|m| format!("m{m}={}", peer(m))).collect();
        for m in 0..self.members {
            let dir = self.etcd_dir.path().join(format!("data{m}"));
            let log = std::fs::File::create(self.etcd_dir.path().join(format!("etcd{m}.log")))
                .expect("log");
            let child = self
                .underlay
                .command("etcd")
                .args(["--name", &format!("m{m}"), "--data-dir", dir.to_str().unwrap()])
                .args(["--listen-client-urls", &member_url(m), "--advertise-client-urls"])
                .arg(member_url(m))
                .args(["--listen-peer-urls", &peer(m), "--initial-advertise-peer-urls", &peer(m)])
                .args(["--initial-cluster", &initial.join(","), "--initial-cluster-state", "new"])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start etcd (install etcd-server)");
            if m == 0 {
                self.etcd = Proc(Some(child));
            } else {
                self.more_etcd.push(Proc(Some(child)));
            }
        }
        let urls: Vec<String> = (0..self.members).map(member_url).collect();
        let health =
            format!("ETCDCTL_API=3 etcdctl --endpoints {} endpoint health", urls.join(","));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.underlay.try_sh(&health) {
            assert!(Instant::now() < deadline, "etcd members did not start: {}", self.etcd_log());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The process id of the etcd member that leads now.
    pub fn etcd_leader_pid(&self) -> u32 {
        let urls: Vec<String> = (0..self.members).map(member_url).collect();
        let out = self.underlay.sh(&format!(
            "ETCDCTL_API=3 etcdctl --endpoints {} endpoint status -w json",
            urls.join(",")
        ));
        let v: serde_json::Value = serde_json::from_str(&out).expect("etcdctl status json");
        let leader = v.as_array().unwrap().iter().find(|s| {
            s["Status"]["leader"].as_u64().is_some()
                && s["Status"]["leader"] == s["Status"]["header"]["member_id"]
        });
        let leader = leader.unwrap_or_else(|| panic!("no leader in {out}"));
        let url = leader["Endpoint"].as_str().unwrap();
        let m = (0..self.members).find(|&m| member_url(m) == url).expect("leader is a member");
        let proc = if m == 0 { &self.etcd } else { &self.more_etcd[m - 1] };
        proc.0.as_ref().expect("member running").id()
    }

    pub fn start_etcd(&mut self) {
        let dir = self.etcd_dir.path().join("data");
        let log = std::fs::File::create(self.etcd_dir.path().join("etcd.log")).expect("log");
        let url = if self.certs.is_some() { etcd_tls_url() } else { etcd_url() };
        let peer = format!("http://{ETCD_IP}:2380");
        let mut args: Vec<String> = [
            "--name",
            "weft-test",
            "--data-dir",
            dir.to_str().unwrap(),
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
            "--initial-cluster",
            &format!("weft-test={peer}"),
        ]
        .map(String::from)
        .to_vec();
        super::require("etcd", "etcd-server");
        super::require("etcdctl", "etcd-client");
        let mut health = format!("ETCDCTL_API=3 etcdctl --endpoints {url}");
        if let Some(certs) = &self.certs {
            let p = |f: &str| certs.path(f).display().to_string();
            args.extend(
                ["--cert-file", &p("server.crt"), "--key-file", &p("server.key")].map(String::from),
            );
            args.extend(
                ["--trusted-ca-file", &p("ca.crt"), "--client-cert-auth"].map(String::from),
            );
            health += &format!(
                " --cacert {} --cert {} --key {}",
                p("ca.crt"),
                p("client.crt"),
                p("client.key")
            );
        }
        health += " endpoint health";
        let child = self
            .underlay
            .command("etcd")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd (install etcd-server)");
        self.etcd = Proc(Some(child));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.underlay.try_sh(&health) {
            assert!(Instant::now() < deadline, "etcd did not start: {}", self.etcd_log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn etcd_log(&self) -> String {
        std::fs::read_to_string(self.etcd_dir.path().join("etcd.log")).unwrap_or_default()
    }

    pub fn stop_etcd(&mut self) {
        self.etcd.kill();
    }

    fn add_host(&mut self, i: usize) {
        let ns = Netns::new(&format!("h{i}"));
        let ip = format!("10.200.0.{}", i + 1);
        let port = format!("u{}-{i}", std::process::id() % 100000);
        self.underlay.sh(&format!(
            "ip link add {port} type veth peer name eth0 netns {ns} && ip link set {port} master ul0 && ip link set {port} up",
            ns = ns.name
        ));
        ns.sh(&format!("ip addr add {ip}/24 dev eth0 && ip link set eth0 up"));
        let host = Host {
            name: format!("host{i}"),
            ip,
            agent: Proc(None),
            containers: Vec::new(),
            ns,
            state: tempfile::tempdir().expect("tempdir"),
        };
        self.hosts.push(host);
        self.start_agent(i);
    }

    pub fn start_agent(&mut self, i: usize) {
        let h = &self.hosts[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(h.state.path().join("agent.log"))
            .expect("agent log");
        let child =
            h.ns.command(WEFT)
                .args(self.client_args())
                .args(["--node", &h.name, "--state-dir"])
                .arg(h.state.path())
                .args(["-v", "agent", "--underlay-ip", &h.ip])
                .args(&self.agent_args)
                .env_remove("WEFT_FAILPOINT")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start agent");
        self.hosts[i].agent = Proc(Some(child));
        // Registered when `node ls` shows it alive (an unreachable node is
        // listed too, while its endpoints are kept).
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let r = self.weft(i, &["node", "ls", "--json"]);
            if r.ok && self.node_state(&r.stdout, i).as_deref() == Some("alive") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "agent {i} did not register: {} / {}",
                r.stderr,
                self.agent_log(i)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Host `i`'s state in `node ls --json` output: "alive", "unreachable",
    /// or None when it is not listed.
    pub fn node_state(&self, ls_json: &str, i: usize) -> Option<String> {
        let v: serde_json::Value = serde_json::from_str(ls_json).ok()?;
        let n = v.as_array()?.iter().find(|n| n["name"] == self.hosts[i].name.as_str())?;
        n["state"].as_str().map(String::from)
    }

    /// Host `i`'s state as host `from` sees it.
    pub fn state_of(&self, from: usize, i: usize) -> Option<String> {
        self.node_state(&self.weft_ok(from, &["node", "ls", "--json"]), i)
    }

    pub fn agent_log(&self, i: usize) -> String {
        std::fs::read_to_string(self.hosts[i].state.path().join("agent.log")).unwrap_or_default()
    }

    /// weft on host `i` with the given etcd flags (`--etcd ...`) instead of
    /// the cluster's own.
    pub fn weft_cmd_with(&self, i: usize, client: &[String], args: &[&str]) -> Command {
        let h = &self.hosts[i];
        let mut cmd = h.ns.command(WEFT);
        cmd.args(client)
            .args(["--node", &h.name, "--state-dir"])
            .arg(h.state.path())
            .args(args)
            .env_remove("WEFT_FAILPOINT");
        cmd
    }

    pub fn weft_cmd(&self, i: usize, args: &[&str]) -> Command {
        self.weft_cmd_with(i, &self.client_args(), args)
    }

    pub fn weft_with(&self, i: usize, client: &[String], args: &[&str]) -> Run {
        let o = self.weft_cmd_with(i, client, args).output().expect("spawn weft");
        Run {
            ok: o.status.success(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    pub fn weft(&self, i: usize, args: &[&str]) -> Run {
        self.weft_with(i, &self.client_args(), args)
    }

    pub fn weft_ok(&self, i: usize, args: &[&str]) -> String {
        let r = self.weft(i, args);
        assert!(r.ok, "host{i}: weft {args:?} failed: {}", r.stderr);
        r.stdout
    }

    /// A container namespace on host `i`, attached to `net`; returns its
    /// address (without prefix) and the container's index on that host.
    pub fn attach(&mut self, i: usize, net: &str) -> (String, usize) {
        let ns = Netns::new(&format!("h{i}c"));
        let path: PathBuf = ns.path.clone();
        let name = ns.name.clone();
        self.hosts[i].containers.push(ns);
        let out =
            self.weft_ok(i, &["attach", net, &name, "--netns", path.to_str().unwrap(), "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("attach json");
        let addr = v["address"].as_str().unwrap().split('/').next().unwrap().to_string();
        (addr, self.hosts[i].containers.len() - 1)
    }

    pub fn c(&self, host: usize, idx: usize) -> &Netns {
        &self.hosts[host].containers[idx]
    }
}

/// Waits until `f` holds, polling every 20 ms; returns the time it took.
pub fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

pub fn unique_name(tag: &str) -> String {
    unique(tag)
}
