//! Latency of the attach and detach hot paths as the store fills up.
//!
//!     cargo run --release -p weft-store --example store_bench [N] [DIR]
//!
//! Attaches N endpoints (reserve + set_ready) to one network, then churns N
//! attach/detach cycles at that size, then detaches all N. For each phase it
//! prints p50/p99, and the medians of its first and last 10% to show whether
//! the cost grows with the number of endpoints. DIR defaults to a temporary
//! directory; point it at the disk that will hold /var/lib/weft.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{key, percentile, request, time};
use weft_model::network::NetworkSpec;
use weft_store::{SqliteStore, Store};

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

fn report(name: &str, samples: &[Duration]) {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let pct = |p: usize| percentile(&sorted, p);
    let tenth = (samples.len() / 10).max(1);
    // Slow outliers are nearly all WAL checkpoints (an fsync), which SQLite
    // runs in whichever commit pushes the log past 1000 pages.
    let slow = sorted.iter().filter(|d| **d > Duration::from_millis(1)).count();
    println!(
        "{name:<24} p50 {:>6.1} us  p99 {:>7.1} us  max {:>8.1} us  >1ms {slow:>3}  \
         median first 10% {:>6.1} us, last 10% {:>6.1} us",
        us(pct(50)),
        us(pct(99)),
        us(sorted[sorted.len() - 1]),
        us(median(&samples[..tenth])),
        us(median(&samples[samples.len() - tenth..])),
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(1000, |a| a.parse().expect("N is a number"));
    let tmp = tempfile::tempdir().expect("temporary directory");
    let dir = args.next().map_or_else(|| tmp.path().join("state"), PathBuf::from);
    let store = SqliteStore::open(&dir).expect("open store");
    let spec = NetworkSpec {
        name: "bench".into(),
        subnet: Some("10.200.0.0/16".parse().unwrap()),
        ..Default::default()
    };
    store.create_network(&spec, &[], 0).expect("create network");
    println!("store {}, N = {n}", store.path().display());

    let (mut reserve, mut ready, mut attach) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let r = request(&format!("c{i}"), None);
        let (ep, t1) = time(|| store.reserve_endpoint(&r).expect("reserve"));
        let ((), t2) = time(|| store.set_ready(&ep.key()).expect("set_ready"));
        reserve.push(t1);
        ready.push(t2);
        attach.push(t1 + t2);
    }
    println!("-- attach, store growing 0 -> {n}");
    report("reserve_endpoint", &reserve);
    report("set_ready", &ready);
    report("attach (reserve+ready)", &attach);

    let (mut attach, mut detach) = (Vec::new(), Vec::new());
    for i in 0..n {
        let name = format!("churn{i}");
        let r = request(&name, None);
        let (ep, t1) = time(|| store.reserve_endpoint(&r).expect("reserve"));
        let ((), t2) = time(|| store.set_ready(&ep.key()).expect("set_ready"));
        let (gone, t3) = time(|| store.remove_endpoint(&key(&name)).expect("remove"));
        assert!(gone.is_some());
        attach.push(t1 + t2);
        detach.push(t3);
    }
    println!("-- churn at {n} endpoints");
    report("attach (reserve+ready)", &attach);
    report("remove_endpoint", &detach);

    let mut detach = Vec::new();
    for i in 0..n {
        let k = key(&format!("c{i}"));
        let (gone, t) = time(|| store.remove_endpoint(&k).expect("remove"));
        assert!(gone.is_some());
        detach.push(t);
    }
    println!("-- detach, store shrinking {n} -> 0");
    report("remove_endpoint", &detach);

    // Each `weft attach` is a short process: open the store, one operation,
    // close. Nothing else holds the database open here, so every close is
    // the last one.
    drop(store);
    let cycles = (n / 5).max(1);
    let (mut attach, mut detach) = (Vec::new(), Vec::new());
    for i in 0..cycles {
        let r = request(&format!("p{i}"), None);
        let ((), t) = time(|| {
            let s = SqliteStore::open(&dir).expect("open store");
            let ep = s.reserve_endpoint(&r).expect("reserve");
            s.set_ready(&ep.key()).expect("set_ready");
        });
        attach.push(t);
    }
    for i in 0..cycles {
        let k = key(&format!("p{i}"));
        let ((), t) = time(|| {
            let s = SqliteStore::open(&dir).expect("open store");
            s.remove_endpoint(&k).expect("remove").expect("present");
        });
        detach.push(t);
    }
    println!("-- one store per operation (open, operate, close), {cycles} each");
    report("open+attach+close", &attach);
    report("open+remove+close", &detach);
}
