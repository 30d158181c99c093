//! A private etcd for one test: loopback only, free ports, a temporary data
//! directory (on tmpfs when there is one, so fsync costs nothing), killed
//! with SIGKILL and removed when dropped.
#![allow(dead_code)]

pub mod hosts;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use weft_store::EtcdConfig;

pub const ETCD: &str = "/usr/bin/etcd";

pub struct EtcdServer {
    child: Child,
    dir: TempDir,
    pub port: u16,
    pub url: String,
}

/// TLS material for a server started with [`EtcdServer::start_tls`].
pub struct Tls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl EtcdServer {
    /// Fails the test, naming the package, when etcd is not installed.
    pub fn start() -> EtcdServer {
        Self::start_with(None)
    }

    /// Like [`EtcdServer::start`], with the data directory under `base`
    /// (a disk, to measure what fsync costs).
    pub fn start_in(base: &Path) -> EtcdServer {
        require_etcd();
        (0..5)
            .find_map(|_| Self::try_start(None, Some(base)))
            .expect("etcd did not start after 5 tries")
    }

    /// Requires client certificates signed by `server.ca`; `client` is one.
    pub fn start_tls(server: &Tls, client: &Tls) -> EtcdServer {
        Self::start_with(Some((server, client)))
    }

    fn start_with(tls: Option<(&Tls, &Tls)>) -> EtcdServer {
        require_etcd();
        // A port picked here may be taken by someone else before etcd binds
        // it; then etcd exits and we try other ports.
        for _ in 0..5 {
            if let Some(s) = Self::try_start(tls, None) {
                return s;
            }
        }
        panic!("etcd did not start after 5 tries");
    }

    fn try_start(tls: Option<(&Tls, &Tls)>, base: Option<&Path>) -> Option<EtcdServer> {
        let shm = Path::new("/dev/shm");
        let base = base.unwrap_or(if shm.is_dir() { shm } else { Path::new("/tmp") });
        let dir = tempfile::Builder::new().prefix("weft-etcd-").tempdir_in(base).unwrap();
        let (client, peer) = free_ports();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).unwrap();
        let mut cmd = Command::new(ETCD);
        cmd.args(["--name", "t", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("t={peer_url}"), "--initial-cluster-state", "new"])
            .args(["--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some((t, _)) = tls {
            cmd.arg("--cert-file").arg(&t.cert).arg("--key-file").arg(&t.key);
            cmd.arg("--trusted-ca-file").arg(&t.ca).arg("--client-cert-auth");
        }
        let child = cmd.spawn().expect("spawn etcd");
        let mut server = EtcdServer { child, dir, port: client, url };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = server.child.try_wait() {
                eprintln!("etcd exited:\n{}", server.log());
                return None;
            }
            let ready = match tls {
                None => healthy(client),
                Some((_, c)) => healthy_tls(&server.url, c),
            };
            if ready {
                return Some(server);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("etcd did not become healthy within 30 s:\n{}", server.log());
    }

    pub fn config(&self) -> EtcdConfig {
        EtcdConfig::new(vec![self.url.clone()])
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        // Child::kill sends SIGKILL; the TempDir then removes the data.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test that needs etcd fails, naming the package, where it is missing:
/// a test that passes without running proves nothing.
pub fn require_etcd() {
    assert!(
        Path::new(ETCD).exists(),
        "{ETCD} is not installed: apt-get install etcd-server (or run scripts/deps --test)"
    );
}

/// Two distinct ports nothing listens on right now.
pub fn free_ports() -> (u16, u16) {
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let b = TcpListener::bind("127.0.0.1:0").unwrap();
    (a.local_addr().unwrap().port(), b.local_addr().unwrap().port())
}

/// etcd's `/health` says true once it has a leader and serves requests.
fn healthy(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let req =
        format!("GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.contains("\"health\":\"true\"")
}

/// With TLS, `/health` needs a client certificate: ask etcdctl.
fn healthy_tls(url: &str, client: &Tls) -> bool {
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", url, "--dial-timeout", "1s", "--cacert"])
        .arg(&client.ca)
        .arg("--cert")
        .arg(&client.cert)
        .arg("--key")
        .arg(&client.key)
        .args(["endpoint", "health"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| {
            panic!("etcdctl: {e}: apt-get install etcd-client (or scripts/deps --test)")
        })
        .success()
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made
/// with the openssl command (the test fails, naming the package, without it).
pub fn make_tls(dir: &Path) -> Tls {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output();
        match out {
            Ok(o) if o.status.success() => true,
            Ok(o) => panic!("openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr)),
            Err(e) => panic!("openssl: {e}: apt-get install openssl (or run scripts/deps --test)"),
        }
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let ca = [&["req", "-x509"][..], &ec, &["-keyout", "ca.key", "-out", "ca.pem"]].concat();
    let ca = [&ca[..], &["-days", "2", "-subj", "/CN=weft-test-ca"]].concat();
    openssl(&ca);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for who in ["server", "client"] {
        let req = [&["req", "-new"][..], &ec].concat();
        let (key, csr) = (format!("{who}.key"), format!("{who}.csr"));
        let subj = format!("/CN=weft-test-{who}");
        openssl(&[&req[..], &["-keyout", &key, "-out", &csr, "-subj", &subj]].concat());
        let (pem, ext) = (format!("{who}.pem"), format!("{who}.ext"));
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &ext,
        ]);
    }
    Tls { ca: dir.join("ca.pem"), cert: dir.join("client.pem"), key: dir.join("client.key") }
}

/// Server side of [`make_tls`]'s material.
pub fn server_tls(dir: &Path) -> Tls {
    Tls { ca: dir.join("ca.pem"), cert: dir.join("server.pem"), key: dir.join("server.key") }
}
