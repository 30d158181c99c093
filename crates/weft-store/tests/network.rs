//! Networks: uniqueness, overlap rules, subnet pool, removal, persistence.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{key, req, spec, spec6, store};
use ipnet::IpNet;
use weft_model::network::NetworkSpec;
use weft_model::ModelError;
use weft_store::{SqliteStore, Store, StoreError};

fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

#[test]
fn create_then_read_back_sorted() {
    let (_d, s) = store();
    let b = s.create_network(&spec("beta", "10.2.0.0/16"), &[], 7).unwrap();
    let a = s.create_network(&spec("alpha", "10.1.0.0/16"), &[], 8).unwrap();
    assert_eq!(b.gateway.to_string(), "10.2.0.1");
    assert_eq!(b.created, 7);
    assert_eq!(s.network("beta").unwrap(), Some(b.clone()));
    assert_eq!(s.network("gamma").unwrap(), None);
    assert_eq!(s.networks().unwrap(), vec![a, b]);
}

#[test]
fn duplicate_name_is_refused() {
    let (_d, s) = store();
    s.create_network(&spec("front", "10.1.0.0/16"), &[], 0).unwrap();
    let err = s.create_network(&spec("front", "10.2.0.0/16"), &[], 0).unwrap_err();
    assert!(matches!(&err, StoreError::NetworkExists(n) if n == "front"), "{err}");
}

#[test]
fn bridge_in_use_is_refused() {
    let (_d, s) = store();
    let mut a = spec("a", "10.1.0.0/16");
    a.bridge = Some("br0".into());
    s.create_network(&a, &[], 0).unwrap();
    let mut b = spec("b", "10.2.0.0/16");
    b.bridge = Some("br0".into());
    let err = s.create_network(&b, &[], 0).unwrap_err();
    assert!(
        matches!(&err, StoreError::BridgeInUse { bridge, network } if bridge == "br0" && network == "a"),
        "{err}"
    );
    // A default bridge name is checked too: "weft-d" is taken by hand here.
    let mut c = spec("c", "10.3.0.0/16");
    c.bridge = Some("weft-d".into());
    s.create_network(&c, &[], 0).unwrap();
    let err = s.create_network(&spec("d", "10.4.0.0/16"), &[], 0).unwrap_err();
    assert!(matches!(err, StoreError::BridgeInUse { .. }), "{err}");
}

#[test]
fn overlapping_v4_subnet_is_refused() {
    let (_d, s) = store();
    s.create_network(&spec("a", "10.1.0.0/16"), &[], 0).unwrap();
    for inner in ["10.1.2.0/24", "10.0.0.0/8", "10.1.0.0/16"] {
        let err = s.create_network(&spec("b", inner), &[], 0).unwrap_err();
        match err {
            StoreError::SubnetOverlap { subnet, network } => {
                assert_eq!(subnet.to_string(), inner);
                assert_eq!(network, "a");
            }
            other => panic!("{inner}: {other}"),
        }
    }
    s.create_network(&spec("b", "10.2.0.0/16"), &[], 0).unwrap();
}

#[test]
fn overlapping_v6_subnet_is_refused() {
    let (_d, s) = store();
    s.create_network(&spec6("a", "10.1.0.0/16", "fd00:1::/64"), &[], 0).unwrap();
    let err = s.create_network(&spec6("b", "10.2.0.0/16", "fd00:1::/48"), &[], 0).unwrap_err();
    assert!(
        matches!(&err, StoreError::SubnetOverlap { subnet, network }
            if subnet.to_string() == "fd00:1::/48" && network == "a"),
        "{err}"
    );
    s.create_network(&spec6("b", "10.2.0.0/16", "fd00:2::/64"), &[], 0).unwrap();
}

#[test]
fn overlapping_host_route_is_refused() {
    let (_d, s) = store();
    let host = nets(&["192.168.1.0/24", "fd12::/64"]);
    let err = s.create_network(&spec("a", "192.168.0.0/16"), &host, 0).unwrap_err();
    assert!(
        matches!(&err, StoreError::SubnetOverlapsHost { subnet, route }
            if subnet.to_string() == "192.168.0.0/16" && route.to_string() == "192.168.1.0/24"),
        "{err}"
    );
    let err = s.create_network(&spec6("a", "10.1.0.0/16", "fd12::/48"), &host, 0).unwrap_err();
    assert!(matches!(err, StoreError::SubnetOverlapsHost { .. }), "{err}");
    assert!(s.networks().unwrap().is_empty());
}

#[test]
fn pool_picks_next_free_24_skipping_host_routes() {
    let (_d, s) = store();
    let auto = |name: &str| NetworkSpec { name: name.into(), ..Default::default() };
    let a = s.create_network(&auto("a"), &[], 0).unwrap();
    assert_eq!(a.subnet.to_string(), "10.89.0.0/24");
    assert_eq!(a.gateway.to_string(), "10.89.0.1");
    s.create_network(&spec("fixed", "10.89.2.0/24"), &[], 0).unwrap();
    let host = nets(&["10.89.1.7/32", "10.89.3.0/25"]);
    let b = s.create_network(&auto("b"), &host, 0).unwrap();
    assert_eq!(b.subnet.to_string(), "10.89.4.0/24");
    // Removing a network frees its /24 for the next one.
    s.remove_network("a").unwrap();
    let c = s.create_network(&auto("c"), &[], 0).unwrap();
    assert_eq!(c.subnet.to_string(), "10.89.0.0/24");
}

#[test]
fn exhausted_pool_is_reported() {
    let (_d, s) = store();
    let auto = NetworkSpec { name: "a".into(), ..Default::default() };
    let err = s.create_network(&auto, &nets(&["10.89.0.0/16"]), 0).unwrap_err();
    assert!(matches!(err, StoreError::NoFreeSubnet), "{err}");
    assert!(err.to_string().contains("pass an explicit subnet"));
}

#[test]
fn invalid_spec_is_refused() {
    let (_d, s) = store();
    let err = s.create_network(&spec("bad name", "10.1.0.0/16"), &[], 0).unwrap_err();
    assert!(matches!(err, StoreError::Invalid(ModelError::BadNetworkName(_))), "{err}");
    let err = s.create_network(&spec("n", "10.1.0.1/16"), &[], 0).unwrap_err();
    assert!(matches!(err, StoreError::Invalid(ModelError::SubnetNotCanonical(..))), "{err}");
}

#[test]
fn remove_refuses_while_endpoints_exist() {
    let (_d, s) = store();
    let net = s.create_network(&spec("a", "10.1.0.0/16"), &[], 0).unwrap();
    s.reserve_endpoint(&req("a", "c1")).unwrap();
    s.reserve_endpoint(&req("a", "c2")).unwrap();
    let err = s.remove_network("a").unwrap_err();
    assert!(
        matches!(&err, StoreError::HasEndpoints { network, count: 2 } if network == "a"),
        "{err}"
    );
    s.remove_endpoint(&key("a", "c1")).unwrap();
    s.remove_endpoint(&key("a", "c2")).unwrap();
    assert_eq!(s.remove_network("a").unwrap(), net);
    assert_eq!(s.network("a").unwrap(), None);
    let err = s.remove_network("a").unwrap_err();
    assert!(matches!(&err, StoreError::NoSuchNetwork(n) if n == "a"), "{err}");
}

#[test]
fn state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    {
        let s = SqliteStore::open(&state).unwrap();
        s.create_network(&spec("a", "10.1.0.0/16"), &[], 0).unwrap();
        s.reserve_endpoint(&req("a", "c1")).unwrap();
        s.set_meta("boot_id", "b1").unwrap();
        s.set_meta("boot_id", "b2").unwrap();
    }
    let mode = std::fs::metadata(&state).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    let s = SqliteStore::open(&state).unwrap();
    assert_eq!(s.meta("boot_id").unwrap().as_deref(), Some("b2"));
    assert_eq!(s.meta("other").unwrap(), None);
    assert_eq!(s.endpoints(None).unwrap().len(), 1);
    // The hint survived too: the next address follows the last one.
    let e = s.reserve_endpoint(&req("a", "c2")).unwrap();
    assert_eq!(e.address.to_string(), "10.1.0.3/16");
}

#[test]
fn open_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "").unwrap();
    let err = SqliteStore::open(&file.join("state")).err().unwrap();
    assert!(matches!(err, StoreError::StateDir { .. }), "{err}");
    assert!(err.to_string().contains("not-a-dir/state"), "{err}");

    // weft.db is a directory: SQLite cannot open it.
    let state = dir.path().join("s");
    std::fs::create_dir_all(state.join("weft.db")).unwrap();
    let err = SqliteStore::open(&state).err().unwrap();
    let db = state.join("weft.db");
    assert!(matches!(err, StoreError::Db { .. }), "{err}");
    assert!(err.to_string().starts_with(&format!("store {}: ", db.display())), "{err}");
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(SqliteStore::open(dir.path()).unwrap());
    let conn = rusqlite::Connection::open(dir.path().join("weft.db")).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = SqliteStore::open(dir.path()).err().unwrap();
    assert!(matches!(err, StoreError::SchemaTooNew { found: 99, .. }), "{err}");
    assert!(err.to_string().contains("upgrade weft"), "{err}");
}

#[test]
fn corrupt_record_is_reported() {
    let (d, s) = store();
    s.create_network(&spec("a", "10.1.0.0/16"), &[], 0).unwrap();
    let conn = rusqlite::Connection::open(d.path().join("weft.db")).unwrap();
    conn.execute("UPDATE networks SET data = '{\"name\":1}'", []).unwrap();
    let err = s.network("a").unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    assert!(err.to_string().contains("network \"a\""), "{err}");
}
