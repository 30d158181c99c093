//! The simulated cluster of `cluster.rs` with etcd behind TLS: a throwaway
//! CA, a server certificate for etcd's underlay address and a client
//! certificate, made with `openssl` in a temp dir. etcd serves https only
//! and demands client certificates (`--client-cert-auth`); agents and CLI
//! run with `--etcd https://... --etcd-ca --etcd-cert --etcd-key`.
//!
//! Additive to the harness: it reuses `Netns`, `Proc` and `Host` and keeps
//! its own cluster type, so `Cluster` stays as it is. A test file includes
//! it next to the harness:
//!
//! ```ignore
//! mod harness;
//! #[path = "harness/tls.rs"]
//! mod tls;
//! ```
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::cluster::{Host, Proc, ETCD_IP};
use crate::harness::{Netns, Run, WEFT};

pub fn etcd_tls_url() -> String {
    format!("https://{ETCD_IP}:2379")
}

/// A CA, etcd's server certificate (SAN = IP:ETCD_IP), a client
/// certificate, and a second, unrelated CA for the wrong-CA cases.
pub struct Certs {
    pub dir: tempfile::TempDir,
}

impl Certs {
    pub fn generate() -> Certs {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        // ECDSA P-256: fast to make, accepted by etcd (Go) and rustls.
        let key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
        let ca_ext = "-addext basicConstraints=critical,CA:TRUE \
                      -addext keyUsage=critical,keyCertSign,cRLSign";
        std::fs::write(
            d.join("server.ext"),
            format!(
                "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
                 extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:{ETCD_IP}\n"
            ),
        )
        .expect("server.ext");
        std::fs::write(
            d.join("client.ext"),
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=clientAuth\n",
        )
        .expect("client.ext");
        let script = format!(
            "set -e; cd {d}
             openssl req -x509 {key} {ca_ext} -keyout ca.key -out ca.crt -days 2 -subj /CN=weft-test-ca
             openssl req -x509 {key} {ca_ext} -keyout other-ca.key -out other-ca.crt -days 2 -subj /CN=weft-test-other-ca
             openssl req {key} -keyout server.key -out server.csr -subj /CN=etcd
             openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
                 -out server.crt -days 2 -extfile server.ext
             openssl req {key} -keyout client.key -out client.csr -subj /CN=weft-client
             openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
                 -out client.crt -days 2 -extfile client.ext",
            d = d.display()
        );
        let out = Command::new("sh")
            .args(["-c", &script])
            .output()
            .expect("run openssl (Debian package `openssl`)");
        assert!(out.status.success(), "openssl failed: {}", String::from_utf8_lossy(&out.stderr));
        Certs { dir }
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    pub fn ca(&self) -> PathBuf {
        self.path("ca.crt")
    }

    pub fn other_ca(&self) -> PathBuf {
        self.path("other-ca.crt")
    }

    pub fn client_cert(&self) -> PathBuf {
        self.path("client.crt")
    }

    pub fn client_key(&self) -> PathBuf {
        self.path("client.key")
    }

    /// The global flags of a client that trusts `ca` and presents the
    /// client certificate.
    pub fn client_args(&self, ca: &Path) -> Vec<String> {
        vec![
            "--etcd".into(),
            etcd_tls_url(),
            "--etcd-ca".into(),
            ca.display().to_string(),
            "--etcd-cert".into(),
            self.client_cert().display().to_string(),
            "--etcd-key".into(),
            self.client_key().display().to_string(),
        ]
    }
}

pub struct TlsCluster {
    // Drop order as in `Cluster`: hosts (agents, containers), etcd, files,
    // then the underlay namespace.
    pub hosts: Vec<Host>,
    pub etcd: Proc,
    pub certs: Certs,
    pub etcd_dir: tempfile::TempDir,
    pub underlay: Netns,
}

impl TlsCluster {
    pub fn new(n: usize) -> TlsCluster {
        let certs = Certs::generate();
        let underlay = Netns::new("ult");
        underlay.sh(&format!(
            "ip link add ul0 type bridge && ip addr add {ETCD_IP}/24 dev ul0 && ip link set ul0 up"
        ));
        let etcd_dir = tempfile::tempdir().expect("tempdir");
        let mut c = TlsCluster { hosts: Vec::new(), etcd: Proc(None), certs, etcd_dir, underlay };
        c.start_etcd();
        for i in 0..n {
            c.add_host(i);
        }
        c
    }

    pub fn start_etcd(&mut self) {
        let dir = self.etcd_dir.path().join("data");
        let log = std::fs::File::create(self.etcd_dir.path().join("etcd.log")).expect("log");
        let url = etcd_tls_url();
        let p = |f: &str| self.certs.path(f).display().to_string();
        let child = self
            .underlay
            .command("etcd")
            .args([
                "--name",
                "weft-test",
                "--data-dir",
                dir.to_str().unwrap(),
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
                "--listen-peer-urls",
                &format!("http://{ETCD_IP}:2380"),
                "--initial-advertise-peer-urls",
                &format!("http://{ETCD_IP}:2380"),
                "--initial-cluster",
                &format!("weft-test=http://{ETCD_IP}:2380"),
                "--cert-file",
                &p("server.crt"),
                "--key-file",
                &p("server.key"),
                "--trusted-ca-file",
                &p("ca.crt"),
                "--client-cert-auth",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd (install etcd-server)");
        self.etcd = Proc(Some(child));
        let health = format!(
            "ETCDCTL_API=3 etcdctl --endpoints {url} --cacert {} --cert {} --key {} endpoint health",
            p("ca.crt"),
            p("client.crt"),
            p("client.key")
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.underlay.try_sh(&health) {
            assert!(Instant::now() < deadline, "etcd (TLS) did not start: {}", self.etcd_log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn etcd_log(&self) -> String {
        std::fs::read_to_string(self.etcd_dir.path().join("etcd.log")).unwrap_or_default()
    }

    fn add_host(&mut self, i: usize) {
        let ns = Netns::new(&format!("t{i}"));
        let ip = format!("10.200.0.{}", i + 1);
        let port = format!("v{}-{i}", std::process::id() % 100000);
        self.underlay.sh(&format!(
            "ip link add {port} type veth peer name eth0 netns {ns} && ip link set {port} master ul0 && ip link set {port} up",
            ns = ns.name
        ));
        ns.sh(&format!("ip addr add {ip}/24 dev eth0 && ip link set eth0 up"));
        self.hosts.push(Host {
            name: format!("host{i}"),
            ip,
            agent: Proc(None),
            containers: Vec::new(),
            ns,
            state: tempfile::tempdir().expect("tempdir"),
        });
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
                .args(self.certs.client_args(&self.certs.ca()))
                .args(["--node", &h.name, "--state-dir"])
                .arg(h.state.path())
                .args(["-v", "agent", "--underlay-ip", &h.ip])
                .env_remove("WEFT_FAILPOINT")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start agent");
        self.hosts[i].agent = Proc(Some(child));
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let r = self.weft(i, &["node", "ls", "--json"]);
            if r.ok && r.stdout.contains(&format!("\"{}\"", self.hosts[i].name)) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "agent {i} did not register over TLS: {} / {}",
                r.stderr,
                self.agent_log(i)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn agent_log(&self, i: usize) -> String {
        std::fs::read_to_string(self.hosts[i].state.path().join("agent.log")).unwrap_or_default()
    }

    /// weft on host `i` with the given client flags (`--etcd ...`) instead
    /// of the good ones.
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
        self.weft_cmd_with(i, &self.certs.client_args(&self.certs.ca()), args)
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
        self.weft_with(i, &self.certs.client_args(&self.certs.ca()), args)
    }

    pub fn weft_ok(&self, i: usize, args: &[&str]) -> String {
        let r = self.weft(i, args);
        assert!(r.ok, "host{i}: weft {args:?} failed: {}", r.stderr);
        r.stdout
    }

    /// A container namespace on host `i`, attached to `net`; returns its
    /// address (without prefix) and its index on that host.
    pub fn attach(&mut self, i: usize, net: &str) -> (String, usize) {
        let ns = Netns::new(&format!("t{i}c"));
        let path = ns.path.clone();
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
