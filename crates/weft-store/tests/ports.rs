//! Published ports in the SQLite store: a host port is reserved with its
//! endpoint, in the same transaction, so two attaches (two processes) can
//! never both get it; detaching frees it.

mod common;

use std::sync::{Arc, Barrier};

use common::{key, req, spec, store};
use weft_model::PortMapping;
use weft_store::{SqliteStore, Store, StoreError};

fn ports(list: &[&str]) -> Vec<PortMapping> {
    list.iter().map(|p| p.parse().unwrap()).collect()
}

#[test]
fn a_published_port_is_refused_until_released() {
    let (_dir, s) = store();
    s.create_network(&spec("n", "10.1.0.0/24"), &[], 0).unwrap();
    let mut a = req("n", "a");
    a.ports = ports(&["8080:80", "9000-9010:9000-9010/udp"]);
    a.aliases = vec!["web".into()];
    let ep = s.reserve_endpoint(&a).unwrap();
    assert_eq!(ep.ports, a.ports);
    assert_eq!(s.endpoint(&key("n", "a")).unwrap().unwrap().aliases, ["web"]);

    for clash in ["8080:81", "10.0.0.1:8080:80", "9010:53/udp", "8000-9000:8000-9000"] {
        let mut b = req("n", "b");
        b.ports = ports(&[clash]);
        let e = s.reserve_endpoint(&b).unwrap_err();
        assert!(matches!(e, StoreError::PortInUse { .. }), "{clash}: {e}");
        assert!(e.to_string().contains("container \"a\""), "{e}");
        assert!(s.endpoint(&key("n", "b")).unwrap().is_none(), "{clash}: reserved anyway");
    }
    let mut b = req("n", "b");
    b.ports = ports(&["8080:80/udp", "8081:80", "9011:9011/udp"]);
    s.reserve_endpoint(&b).unwrap();

    s.remove_endpoint(&key("n", "a")).unwrap();
    let mut c = req("n", "c");
    c.ports = ports(&["8080:80"]);
    s.reserve_endpoint(&c).unwrap();
}

#[test]
fn concurrent_reservations_of_one_port_have_one_winner() {
    let (dir, s) = store();
    s.create_network(&spec("n", "10.2.0.0/24"), &[], 0).unwrap();
    let path = dir.path().to_path_buf();
    let start = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let (path, start) = (path.clone(), start.clone());
            std::thread::spawn(move || {
                // Its own connection, as another weft process would have.
                let s = SqliteStore::open(&path).unwrap();
                let mut r = req("n", &format!("c{i}"));
                r.ports = ports(&["7000:70"]);
                start.wait();
                s.reserve_endpoint(&r).is_ok()
            })
        })
        .collect();
    let won = handles.into_iter().map(|h| h.join().unwrap()).filter(|w| *w).count();
    assert_eq!(won, 1);
    assert_eq!(s.endpoints(None).unwrap().len(), 1);
}

#[test]
fn records_without_ports_still_parse() {
    let (_dir, s) = store();
    s.create_network(&spec("n", "10.3.0.0/24"), &[], 0).unwrap();
    let ep = s.reserve_endpoint(&req("n", "old")).unwrap();
    let json = serde_json::to_value(&ep).unwrap();
    assert!(json.get("ports").is_none() && json.get("aliases").is_none(), "{json}");
    let back: weft_model::Endpoint = serde_json::from_value(json).unwrap();
    assert!(back.ports.is_empty() && back.aliases.is_empty());
}
