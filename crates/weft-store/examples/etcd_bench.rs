//! Latency of the attach and detach hot paths of the cluster store.
//!
//!     cargo run --release -p weft-store --example etcd_bench [N] [DATA-DIR-BASE]
//!
//! Starts a private etcd on loopback (data on tmpfs, or under
//! DATA-DIR-BASE, e.g. /var/tmp, to include fsync), registers a node, and
//! attaches N endpoints (reserve_endpoint + set_ready) to one /16 overlay
//! network, then detaches them; prints p50/p99 of each. Then two hosts
//! attach N/2 endpoints each at the same moment, to show what contention
//! costs.

mod common;
#[path = "../tests/etcd_server/mod.rs"]
mod etcd_server;

use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::{key, percentile, request, time};
use etcd_server::EtcdServer;
use weft_model::network::NetworkSpec;
use weft_model::{Driver, Node};
use weft_store::etcd::Cluster;
use weft_store::{EtcdConfig, EtcdStore, Store};

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn report(name: &str, samples: &[Duration]) {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let pct = |p: usize| percentile(&sorted, p);
    println!(
        "{name:<28} n {:>4}  p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>6.2} ms",
        sorted.len(),
        ms(pct(50)),
        ms(pct(99)),
        ms(sorted[sorted.len() - 1]),
    );
}

fn node(name: &str) -> Node {
    Node {
        name: name.into(),
        underlay_ip: "127.0.0.1".parse().expect("address"),
        underlay_mtu: 1500,
        started: 0,
        lease: 0,
        version: "bench".into(),
    }
}

/// Attaches `containers` on `node`; returns reserve, ready and total times.
fn attach_all(s: &EtcdStore, node: &str, containers: &[String]) -> [Vec<Duration>; 3] {
    let (mut reserve, mut ready, mut attach) = (Vec::new(), Vec::new(), Vec::new());
    for c in containers {
        let (ep, t1) = time(|| s.reserve_endpoint(&request(c, Some(node))).expect("reserve"));
        let ((), t2) = time(|| s.set_ready(&ep.key()).expect("set_ready"));
        reserve.push(t1);
        ready.push(t2);
        attach.push(t1 + t2);
    }
    [reserve, ready, attach]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(200, |a| a.parse().expect("N is a number"));
    let base = args.next().map(PathBuf::from);
    let etcd = match &base {
        Some(b) => EtcdServer::start_in(b),
        None => EtcdServer::start(),
    };
    let cfg: EtcdConfig = etcd.config();
    println!("etcd {} (data under {}), N = {n}", etcd.url, etcd.dir().display());

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let cluster = rt.block_on(Cluster::connect(&cfg)).expect("connect");
    for name in ["a", "b"] {
        rt.block_on(cluster.register_node(&node(name), 60)).expect("register");
    }
    let (s, t) = time(|| EtcdStore::connect(&cfg, "a").expect("connect"));
    println!("connect                      {:>6.2} ms", ms(t));
    let spec = NetworkSpec {
        name: "bench".into(),
        subnet: Some("10.200.0.0/16".parse().expect("subnet")),
        driver: Some(Driver::Overlay),
        ..Default::default()
    };
    let ((), t) = time(|| drop(s.create_network(&spec, &[], 0).expect("create network")));
    println!("create_network               {:>6.2} ms", ms(t));

    let containers: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
    let [reserve, ready, attach] = attach_all(&s, "a", &containers);
    println!("-- one host, {n} attaches in a row");
    report("reserve_endpoint", &reserve);
    report("set_ready", &ready);
    report("attach (reserve+set_ready)", &attach);
    let mut detach = Vec::new();
    for c in &containers {
        let (gone, t) = time(|| s.remove_endpoint(&key(c)).expect("remove"));
        assert!(gone.is_some());
        detach.push(t);
    }
    report("remove_endpoint", &detach);

    // Two hosts at once: half each, started together.
    let start = Arc::new(Barrier::new(2));
    let workers: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|name| {
            let (cfg, start) = (cfg.clone(), start.clone());
            let mine: Vec<String> = (0..n / 2).map(|i| format!("{name}-c{i}")).collect();
            thread::spawn(move || {
                let s = EtcdStore::connect(&cfg, name).expect("connect");
                start.wait();
                attach_all(&s, name, &mine)
            })
        })
        .collect();
    let mut attach = Vec::new();
    for w in workers {
        let [_, _, a] = w.join().expect("worker");
        attach.extend(a);
    }
    println!("-- two hosts, {} attaches each, concurrently", n / 2);
    report("attach (reserve+set_ready)", &attach);
    let eps = s.endpoints(Some("bench")).expect("list");
    let distinct: std::collections::HashSet<_> = eps.iter().map(|e| e.address).collect();
    assert_eq!(distinct.len(), eps.len(), "an address was handed out twice");
}
