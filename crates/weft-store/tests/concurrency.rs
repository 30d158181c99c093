//! Several weft processes share one store: allocation must be serialized
//! across them, and contention must be waited out, never reported.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{req, spec};
use weft_store::{SqliteStore, Store};

const WORKERS: usize = 4;
const PER_WORKER: usize = 50;

fn reserve_batch(state: &Path, worker: usize) {
    let s = SqliteStore::open(state).unwrap();
    for i in 0..PER_WORKER {
        let e = s.reserve_endpoint(&req("shared", &format!("w{worker}-c{i}"))).unwrap();
        s.set_ready(&e.key()).unwrap();
    }
}

fn assert_all_distinct(state: &Path) {
    let s = SqliteStore::open(state).unwrap();
    let eps = s.endpoints(Some("shared")).unwrap();
    assert_eq!(eps.len(), WORKERS * PER_WORKER);
    let distinct: HashSet<_> = eps.iter().map(|e| e.address).collect();
    assert_eq!(distinct.len(), WORKERS * PER_WORKER, "an address was handed out twice");
    let macs: HashSet<_> = eps.iter().map(|e| e.mac).collect();
    assert_eq!(macs.len(), WORKERS * PER_WORKER);
}

#[test]
fn stores_on_threads_never_share_an_address() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_path_buf();
    SqliteStore::open(&state)
        .unwrap()
        .create_network(&spec("shared", "10.9.0.0/16"), &[], 0)
        .unwrap();
    let start = Arc::new(Barrier::new(WORKERS));
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (state, start) = (state.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                reserve_batch(&state, w);
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_all_distinct(&state);
}

#[test]
fn fresh_store_opened_by_many_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("new");
    let start = Arc::new(Barrier::new(8));
    let openers: Vec<_> = (0..8)
        .map(|i| {
            let (state, start) = (state.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                let s = SqliteStore::open(&state).unwrap();
                s.set_meta(&format!("k{i}"), "v").unwrap();
            })
        })
        .collect();
    for o in openers {
        o.join().unwrap();
    }
    let s = SqliteStore::open(&state).unwrap();
    for i in 0..8 {
        assert_eq!(s.meta(&format!("k{i}")).unwrap().as_deref(), Some("v"));
    }
}

/// The same race between real processes: this test re-runs its own binary
/// as the workers, which start together at an agreed instant.
#[test]
fn processes_never_share_an_address() {
    if let Ok(state) = std::env::var("WEFT_STORE_TEST_STATE") {
        let worker: usize = std::env::var("WEFT_STORE_TEST_WORKER").unwrap().parse().unwrap();
        let at: u128 = std::env::var("WEFT_STORE_TEST_START").unwrap().parse().unwrap();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis();
        thread::sleep(Duration::from_millis(at.saturating_sub(now) as u64));
        reserve_batch(Path::new(&state), worker);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_path_buf();
    SqliteStore::open(&state)
        .unwrap()
        .create_network(&spec("shared", "10.9.0.0/16"), &[], 0)
        .unwrap();
    let start = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() + 500;
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..WORKERS)
        .map(|w| {
            Command::new(&exe)
                .args(["--exact", "processes_never_share_an_address", "--test-threads=1"])
                .env("WEFT_STORE_TEST_STATE", &state)
                .env("WEFT_STORE_TEST_WORKER", w.to_string())
                .env("WEFT_STORE_TEST_START", start.to_string())
                .output()
                .unwrap()
        })
        .collect();
    for out in children {
        assert!(
            out.status.success(),
            "worker failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_all_distinct(&state);
}
