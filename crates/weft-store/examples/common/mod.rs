//! What both store benchmarks share: the endpoint they attach, its key,
//! and timing helpers.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use weft_model::{EndpointKey, Mac};
use weft_store::EndpointRequest;

/// Endpoint `container`/eth0 on network "bench" (of `node` in a cluster).
pub fn request(container: &str, node: Option<&str>) -> EndpointRequest {
    EndpointRequest {
        network: "bench".into(),
        container: container.into(),
        ifname: "eth0".into(),
        netns: format!("/run/netns/{container}"),
        netns_id: None,
        ip: None,
        ip6: None,
        mac: Mac::derive(&["bench", container, "eth0"]),
        host_veth: weft_model::names::host_veth_name("bench", container, "eth0"),
        node: node.map(str::to_string),
        boot_id: "boot".into(),
        pid: std::process::id(),
        created: 0,
        ports: Vec::new(),
        aliases: Vec::new(),
    }
}

pub fn key(container: &str) -> EndpointKey {
    EndpointKey { network: "bench".into(), container: container.into(), ifname: "eth0".into() }
}

pub fn time<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let out = f();
    (out, t.elapsed())
}

/// The `p`th percentile of sorted samples.
pub fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}
