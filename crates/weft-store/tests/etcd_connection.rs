//! Reaching etcd: TLS, and clear errors within seconds when it cannot be
//! reached, never a hang.

mod common;
mod etcd_server;

use std::time::{Duration, Instant};

use common::{req, spec};
use etcd_server::hosts::{host, on, rt};
use etcd_server::EtcdServer;
use weft_store::etcd::Cluster;
use weft_store::{EtcdConfig, EtcdStore, Store, StoreError};

#[test]
fn unreachable_etcd_is_a_clear_error_within_seconds() {
    let (port, _) = etcd_server::free_ports();
    let cfg = EtcdConfig::new(vec![format!("http://127.0.0.1:{port}")]);
    let t = Instant::now();
    let err = EtcdStore::connect(&cfg, "a").err().expect("nothing listens there");
    assert!(t.elapsed() < Duration::from_secs(5), "took {:?}", t.elapsed());
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.starts_with(&format!("etcd http://127.0.0.1:{port} unreachable: ")), "{msg}");
    assert!(msg.contains("refused") && msg.ends_with("(is etcd running? check --etcd)"), "{msg}");
    eprintln!("nothing listening: {msg}");

    let t = Instant::now();
    let err = rt().block_on(Cluster::connect(&cfg)).err().expect("nothing listens there");
    assert!(t.elapsed() < Duration::from_secs(5), "took {:?}", t.elapsed());
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err}");
}

#[test]
fn etcd_dying_midway_is_a_clear_error_within_seconds() {
    let etcd = EtcdServer::start();
    let (cfg, rt) = (etcd.config(), rt());
    let cluster = rt.block_on(Cluster::connect(&cfg)).unwrap();
    let h = host(&cfg, &rt, &cluster, "a");
    h.store.create_network(&spec("net", "10.8.0.0/24"), &[], 0).unwrap();
    drop(etcd);
    let t = Instant::now();
    let err = h.store.reserve_endpoint(&on("a", req("net", "c1"))).unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(5), "took {:?}", t.elapsed());
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err}");
    eprintln!("etcd killed: {err}");
}

#[test]
fn settings_errors_are_clear() {
    let none = EtcdConfig::new(vec![]);
    assert!(matches!(EtcdStore::connect(&none, "a"), Err(StoreError::EtcdConfig(_))));
    let http_tls = EtcdConfig {
        ca: Some("/nonexistent/ca.pem".into()),
        ..EtcdConfig::new(vec!["http://127.0.0.1:2379".into()])
    };
    let err = EtcdStore::connect(&http_tls, "a").err().unwrap();
    assert!(err.to_string().contains("needs https://"), "{err}");
    let missing = EtcdConfig { endpoints: vec!["https://127.0.0.1:2379".into()], ..http_tls };
    let err = EtcdStore::connect(&missing, "a").err().unwrap();
    assert!(matches!(err, StoreError::EtcdTls { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}

#[test]
fn tls_with_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let client = etcd_server::make_tls(dir.path());
    let etcd = EtcdServer::start_tls(&etcd_server::server_tls(dir.path()), &client);
    let cfg = EtcdConfig {
        ca: Some(client.ca.clone()),
        cert: Some(client.cert.clone()),
        key: Some(client.key.clone()),
        ..etcd.config()
    };
    let s = EtcdStore::connect(&cfg, "a").unwrap_or_else(|e| panic!("{e}\n{}", etcd.log()));
    s.create_network(&spec("secure", "10.40.0.0/24"), &[], 0).unwrap();
    assert_eq!(s.networks().unwrap().len(), 1);

    // Without a client certificate etcd refuses the handshake.
    let anonymous = EtcdConfig { cert: None, key: None, ..cfg };
    let t = Instant::now();
    let err = EtcdStore::connect(&anonymous, "a").err().expect("client certificate required");
    assert!(t.elapsed() < Duration::from_secs(5), "took {:?}", t.elapsed());
    assert!(
        matches!(err, StoreError::Unreachable { .. } | StoreError::TlsHandshake { .. }),
        "{err}"
    );
    eprintln!("without a client certificate: {err}");
}
