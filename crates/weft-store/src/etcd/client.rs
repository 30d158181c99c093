//! The connection to etcd: TLS, time limits, and errors a user can act on.
//!
//! etcd-client connects lazily and, while no endpoint answers, its balancer
//! simply waits; so every request here runs under its own deadline, and a
//! deadline that passes is diagnosed with a plain TCP connect to say *why*
//! ("connection refused" rather than "timed out").

use std::future::Future;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, ConnectOptions, GetOptions, GetResponse, Identity, KeyValue,
    KvClient, TlsOptions, Txn, TxnOp, TxnOpResponse, TxnResponse,
};
use tokio::net::TcpStream;

use super::keys::Keys;
use super::EtcdConfig;
use crate::StoreError;

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the diagnosis of a silent etcd may take on top of the deadline.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// etcd's own limit on operations per transaction is 128.
pub const MAX_TXN_OPS: usize = 120;
/// Snapshots of large clusters exceed gRPC's default 4 MiB.
const MAX_RESPONSE: usize = 256 << 20;

/// Failure inside an operation, before the endpoints are attached.
pub enum Fail {
    Etcd(etcd_client::Error),
    /// No answer within [`REQUEST_TIMEOUT`].
    Timeout,
    Corrupt(String),
    Store(StoreError),
    /// What the operation read changed under it; it starts over.
    Stale,
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Fail {
        Fail::Store(e)
    }
}

impl From<weft_model::ModelError> for Fail {
    fn from(e: weft_model::ModelError) -> Fail {
        Fail::Store(StoreError::Invalid(e))
    }
}

/// Parses a stored JSON record; `what` names it in the error.
pub fn decode<T: serde::de::DeserializeOwned>(
    what: &dyn std::fmt::Display,
    json: &[u8],
) -> Result<T, Fail> {
    serde_json::from_slice(json).map_err(|e| Fail::Corrupt(format!("{what}: {e}")))
}

pub fn encode<T: serde::Serialize>(record: &T) -> Result<String, Fail> {
    serde_json::to_string(record).map_err(|e| Fail::Corrupt(format!("cannot encode record: {e}")))
}

pub fn key_str(kv: &KeyValue) -> Result<&str, Fail> {
    kv.key_str().map_err(|_| Fail::Corrupt(format!("key {:?} is not UTF-8", kv.key())))
}

/// A connected client with the key layout, shared by the sync store and
/// the async cluster API.
#[derive(Clone)]
pub struct Conn {
    client: Client,
    pub keys: Keys,
    /// The endpoints as the user gave them, for messages.
    endpoints: String,
    targets: Vec<String>,
    tls: bool,
}

impl Conn {
    /// Checks the settings and builds the client; nothing is sent yet.
    /// `long_lived` turns on HTTP/2 keep-alive pings, which let watches and
    /// lease renewals notice a dead etcd.
    pub async fn new(cfg: &EtcdConfig, long_lived: bool) -> Result<Conn, StoreError> {
        let endpoints = cfg.endpoints.join(",");
        if cfg.endpoints.is_empty() {
            return Err(StoreError::EtcdConfig("no etcd endpoint given (--etcd URL)".into()));
        }
        let mut opts = ConnectOptions::new().with_connect_timeout(CONNECT_TIMEOUT);
        if long_lived {
            // etcd refuses pings more often than every 5 s.
            opts = opts
                .with_keep_alive(Duration::from_secs(10), REQUEST_TIMEOUT)
                .with_keep_alive_while_idle(true);
        }
        if let Some((user, password)) = &cfg.user {
            opts = opts.with_user(user.clone(), password.clone());
        }
        let etc_hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        let (pinned, server_name) = super::hosts::pin(&cfg.endpoints, &etc_hosts);
        let tls = tls_options(cfg)?;
        let with_tls = tls.is_some();
        if let Some(mut tls) = tls {
            if let Some(name) = server_name {
                tls = tls.domain_name(name);
            }
            opts = opts.with_tls(tls);
        }
        let client = Client::connect(&pinned, Some(opts))
            .await
            .map_err(|e| StoreError::EtcdConfig(format!("endpoints {endpoints:?}: {e}")))?;
        let targets = pinned.iter().filter_map(|e| host_port(e)).collect();
        Ok(Conn { client, keys: Keys::new(&cfg.prefix), endpoints, targets, tls: with_tls })
    }

    /// Connects and proves etcd answers: [`Conn::new`] and a ping. With
    /// several members, one that is down (killed, partitioned away) must
    /// not fail the command, so the members are tried one at a time, from
    /// one picked by process id (clients spread over the members); the
    /// first that answers serves this connection (a follower forwards
    /// writes to the leader). A long-lived user reconnects when it fails.
    pub async fn connect(cfg: &EtcdConfig, long_lived: bool) -> Result<Conn, StoreError> {
        let n = cfg.endpoints.len();
        if n < 2 {
            let conn = Conn::new(cfg, long_lived).await?;
            return match conn.ping().await {
                Ok(()) => Ok(conn),
                Err(e) => Err(conn.error(e).await),
            };
        }
        let start = std::process::id() as usize % n;
        let mut first_error = None;
        for i in 0..n {
            let one = EtcdConfig {
                endpoints: vec![cfg.endpoints[(start + i) % n].clone()],
                ..cfg.clone()
            };
            let mut conn = Conn::new(&one, long_lived).await?;
            match conn.ping().await {
                Ok(()) => {
                    // Messages name every member the user gave.
                    conn.endpoints = cfg.endpoints.join(",");
                    return Ok(conn);
                }
                Err(e) => {
                    let e = conn.error(e).await;
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(match first_error.expect("n >= 2 tries") {
            StoreError::Unreachable { why, .. } => {
                StoreError::Unreachable { endpoints: cfg.endpoints.join(","), why }
            }
            other => other,
        })
    }

    pub fn endpoints(&self) -> &str {
        &self.endpoints
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    fn kv(&self) -> KvClient {
        self.client.kv_client()
    }

    /// Turns an operation's failure into the error the user sees.
    pub async fn error(&self, fail: Fail) -> StoreError {
        match self.plain_error(fail).await {
            // A certificate the client rejects is named as such, not as an
            // unreachable etcd.
            StoreError::Unreachable { endpoints, why } if self.tls && is_cert_error(&why) => {
                StoreError::TlsHandshake { endpoints, why }
            }
            // etcd closes the connection on a certificate it does not like.
            StoreError::Unreachable { endpoints, mut why }
                if self.tls && !why.contains("refused") =>
            {
                why.push_str("; if etcd is up, check --etcd-ca, --etcd-cert and --etcd-key");
                StoreError::Unreachable { endpoints, why }
            }
            e => e,
        }
    }

    async fn plain_error(&self, fail: Fail) -> StoreError {
        let endpoints = self.endpoints.clone();
        match fail {
            Fail::Store(e) => e,
            Fail::Corrupt(what) => StoreError::Corrupt(format!("etcd {endpoints}: {what}")),
            Fail::Stale => StoreError::Contention("etcd request".into()),
            Fail::Timeout => {
                let why = self.diagnose().await;
                StoreError::Unreachable { endpoints, why }
            }
            Fail::Etcd(e) => match unreachable_why(&e) {
                Some(why) => StoreError::Unreachable { endpoints, why },
                None => StoreError::Etcd { endpoints, context: "request failed".into(), source: e },
            },
        }
    }

    /// Why nothing answered: a refused connection, or one that opens but
    /// carries no gRPC (a proxy, a TLS mismatch, a hung etcd).
    async fn diagnose(&self) -> String {
        let mut reasons = Vec::new();
        for t in &self.targets {
            let why = match tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(t)).await {
                Err(_) => format!("{t}: no answer to a TCP connect"),
                Ok(Err(e)) => format!("{t}: {e}"),
                Ok(Ok(_)) => format!(
                    "{t}: port open but no etcd answer within {} s (wrong port, or http/https mismatch?)",
                    REQUEST_TIMEOUT.as_secs()
                ),
            };
            reasons.push(why);
        }
        if reasons.is_empty() {
            return format!("no answer within {} s", REQUEST_TIMEOUT.as_secs());
        }
        reasons.join("; ")
    }

    /// One round trip that proves etcd answers.
    pub async fn ping(&self) -> Result<(), Fail> {
        let opts = GetOptions::new().with_count_only();
        timed(self.kv().get(self.keys.netlock(), Some(opts))).await.map(drop)
    }

    pub async fn get(&self, key: &str) -> Result<Option<KeyValue>, Fail> {
        let mut resp = timed(self.kv().get(key, None)).await?;
        Ok(resp.take_kvs().into_iter().next())
    }

    /// Every key starting with `prefix`, sorted by key.
    pub async fn get_prefix(&self, prefix: &str, keys_only: bool) -> Result<Vec<KeyValue>, Fail> {
        let mut opts = GetOptions::new().with_prefix();
        if keys_only {
            opts = opts.with_keys_only();
        }
        let kv = self.kv().max_decoding_message_size(MAX_RESPONSE);
        let mut resp = timed(async move { kv.clone().get(prefix, Some(opts)).await }).await?;
        Ok(resp.take_kvs())
    }

    pub async fn put(&self, key: &str, value: &str) -> Result<(), Fail> {
        timed(self.kv().put(key, value, None)).await.map(drop)
    }

    pub async fn txn(&self, txn: Txn) -> Result<TxnResponse, Fail> {
        let kv = self.kv().max_decoding_message_size(MAX_RESPONSE);
        timed(async move { kv.clone().txn(txn).await }).await
    }

    /// Several reads at one revision; returns the revision and each read's
    /// response, in order.
    pub async fn read(&self, ops: Vec<TxnOp>) -> Result<(i64, Vec<GetResponse>), Fail> {
        let resp = self.txn(Txn::new().when(Vec::<Compare>::new()).and_then(ops)).await?;
        Ok((revision(&resp), ranges(&resp)))
    }
}

/// Runs an etcd request under [`REQUEST_TIMEOUT`].
pub async fn timed<T>(fut: impl Future<Output = Result<T, etcd_client::Error>>) -> Result<T, Fail> {
    match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
        Ok(r) => r.map_err(Fail::Etcd),
        Err(_) => Err(Fail::Timeout),
    }
}

pub fn revision(resp: &TxnResponse) -> i64 {
    resp.header().map_or(0, |h| h.revision())
}

/// The responses of each range operation of a transaction, in order.
pub fn ranges(resp: &TxnResponse) -> Vec<GetResponse> {
    resp.op_responses()
        .into_iter()
        .filter_map(|r| match r {
            TxnOpResponse::Get(g) => Some(g),
            _ => None,
        })
        .collect()
}

/// `host:port` of an endpoint URL, for the TCP probe.
fn host_port(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let hostport = rest.split('/').next()?;
    if hostport.is_empty() {
        return None;
    }
    // IPv6 literals keep their brackets; a missing port is etcd's default.
    if hostport.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
        Some(hostport.to_string())
    } else {
        Some(format!("{hostport}:2379"))
    }
}

/// The reason to show when an error means etcd could not be reached, None
/// when etcd answered and refused.
fn unreachable_why(e: &etcd_client::Error) -> Option<String> {
    use etcd_client::Error as E;
    use tonic::Code;
    match e {
        E::TransportError(t) => Some(error_chain(t)),
        E::IoError(io) => Some(io.to_string()),
        // A status made by the client from a broken connection carries
        // the transport error as its source; one etcd sent does not.
        E::GRpcStatus(s) => match std::error::Error::source(s) {
            Some(src) => Some(error_chain(src)),
            None if matches!(s.code(), Code::Unavailable | Code::DeadlineExceeded) => {
                Some(s.message().to_string())
            }
            None => None,
        },
        _ => None,
    }
}

/// "a: b: c" for an error and its sources, without repeats.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        let s = err.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = err.source();
    }
    parts.join(": ")
}

/// The system's CA bundle: `SSL_CERT_FILE` as OpenSSL reads it, else the
/// distribution's usual file.
fn system_roots() -> Option<std::path::PathBuf> {
    if let Some(f) = std::env::var_os("SSL_CERT_FILE").filter(|f| !f.is_empty()) {
        return Some(f.into());
    }
    [
        "/etc/ssl/certs/ca-certificates.crt", // Debian, Ubuntu, Arch, Alpine
        "/etc/pki/tls/certs/ca-bundle.crt",   // Fedora, RHEL
        "/etc/ssl/ca-bundle.pem",             // openSUSE
        "/etc/ssl/cert.pem",                  // others
    ]
    .iter()
    .map(std::path::PathBuf::from)
    .find(|p| p.is_file())
}

fn tls_options(cfg: &EtcdConfig) -> Result<Option<TlsOptions>, StoreError> {
    let https = cfg.endpoints.iter().any(|e| e.starts_with("https://"));
    let any_tls = cfg.ca.is_some() || cfg.cert.is_some() || cfg.key.is_some();
    if !https && !any_tls {
        return Ok(None);
    }
    if let Some(e) = cfg.endpoints.iter().find(|e| !e.starts_with("https://")) {
        return Err(StoreError::EtcdConfig(format!(
            "TLS (--etcd-ca/--etcd-cert/--etcd-key) needs https:// endpoints, got {e:?}"
        )));
    }
    let read = |what, path: &std::path::Path| {
        std::fs::read(path).map_err(|source| StoreError::EtcdTls {
            what,
            path: path.to_path_buf(),
            source,
        })
    };
    let mut tls = TlsOptions::new();
    let ca =
        match &cfg.ca {
            Some(ca) => read("CA certificate", ca)?,
            // An etcd with a certificate from a public or company CA the host
            // already trusts needs no --etcd-ca: the system's roots.
            None => match system_roots() {
                Some(bundle) => read("system CA bundle", &bundle)?,
                None => return Err(StoreError::EtcdConfig(
                    "https:// endpoints need the CA that signed etcd's certificate (--etcd-ca): \
                     this host has no system CA bundle"
                        .into(),
                )),
            },
        };
    tls = tls.ca_certificate(Certificate::from_pem(ca));
    match (&cfg.cert, &cfg.key) {
        (Some(cert), Some(key)) => {
            let cert = read("client certificate", cert)?;
            let key = read("client key", key)?;
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        (None, None) => {}
        _ => {
            return Err(StoreError::EtcdConfig(
                "a client certificate needs its key: give both --etcd-cert and --etcd-key".into(),
            ))
        }
    }
    Ok(Some(tls))
}

fn is_cert_error(why: &str) -> bool {
    ["certificate", "UnknownIssuer", "BadCertificate", "CertNotValid", "NotValidForName"]
        .iter()
        .any(|k| why.contains(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_targets() {
        assert_eq!(host_port("http://127.0.0.1:2379").as_deref(), Some("127.0.0.1:2379"));
        assert_eq!(host_port("https://etcd.example/").as_deref(), Some("etcd.example:2379"));
        assert_eq!(host_port("10.0.0.1:1234").as_deref(), Some("10.0.0.1:1234"));
        assert_eq!(host_port("http://[::1]:2379").as_deref(), Some("[::1]:2379"));
    }
}
