//! Certificates for a cluster whose etcd is behind TLS
//! (`Cluster::with_tls`): a throwaway CA, a server certificate for etcd's
//! underlay address and a client certificate, made with `openssl` in a
//! temp dir. etcd serves https only and demands client certificates
//! (`--client-cert-auth`); agents and CLI run with `--etcd https://...
//! --etcd-ca --etcd-cert --etcd-key`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::cluster::ETCD_IP;

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
