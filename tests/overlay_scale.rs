//! Scale benchmark of the overlay (not run by default: `cargo test --release
//! -p weft --test overlay_scale -- --ignored --nocapture`; release, since the
//! agent's memory is part of what it measures): 10 simulated hosts with
//! 50 containers each; time until every host holds an entry for all 450
//! remote containers and sampled pings between every pair of hosts work;
//! agent memory (RSS) and idle CPU.

mod harness;

use std::time::{Duration, Instant};

use harness::cluster::{eventually, Cluster};

const HOSTS: usize = 10;
const PER_HOST: usize = 50;

fn remote_entries(c: &Cluster, h: usize) -> usize {
    let out = c.hosts[h].ns.sh("ip -j neigh show dev vx-sc nud permanent");
    serde_json::from_str::<serde_json::Value>(&out).unwrap().as_array().unwrap().len()
}

/// (RSS in KiB, CPU ticks used) of a host's agent.
fn agent_usage(c: &Cluster, h: usize) -> (u64, u64) {
    let pid = c.hosts[h].agent.0.as_ref().unwrap().id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
    let ticks = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    (rss, ticks)
}

#[test]
#[ignore = "benchmark: 10 hosts x 50 containers"]
fn ten_hosts_fifty_containers_each() {
    let mut c = Cluster::new(HOSTS);
    c.weft_ok(0, &["network", "create", "sc", "--driver", "overlay", "--subnet", "10.93.0.0/22"]);
    for h in 0..HOSTS {
        eventually("overlay on host", Duration::from_secs(20), || {
            c.hosts[h].ns.try_sh("ip link show vx-sc")
        });
    }
    let start = Instant::now();
    let mut ips = vec![Vec::new(); HOSTS];
    for _ in 0..PER_HOST {
        for (h, list) in ips.iter_mut().enumerate() {
            list.push(c.attach(h, "sc").0);
        }
    }
    let attached = start.elapsed();
    let want = (HOSTS - 1) * PER_HOST;
    for h in 0..HOSTS {
        eventually("all remote entries", Duration::from_secs(60), || remote_entries(&c, h) >= want);
    }
    let converged = start.elapsed();
    // Sampled reachability: from one container of each host to the last
    // attached container of every other host.
    for a in 0..HOSTS {
        for (b, list) in ips.iter().enumerate().filter(|(b, _)| *b != a) {
            let ip = list.last().unwrap();
            assert!(c.c(a, 0).ping(ip), "host{a} cannot reach {ip} on host{b}");
        }
    }
    let reachable = start.elapsed();
    let before: Vec<(u64, u64)> = (0..HOSTS).map(|h| agent_usage(&c, h)).collect();
    std::thread::sleep(Duration::from_secs(10));
    let after: Vec<(u64, u64)> = (0..HOSTS).map(|h| agent_usage(&c, h)).collect();
    let rss_max = after.iter().map(|u| u.0).max().unwrap();
    let idle_ticks: u64 = after.iter().zip(&before).map(|(a, b)| a.1 - b.1).max().unwrap();
    println!(
        "scale: {HOSTS} hosts x {PER_HOST} containers: attached in {attached:?}, every host \
         had all {want} remote entries after {converged:?}, sampled pings ok after {reachable:?}; \
         agent RSS max {rss_max} KiB; idle CPU max {} ms over 10 s",
        idle_ticks * 10
    );
    assert!(rss_max <= 20 * 1024, "agent RSS {rss_max} KiB exceeds 20 MiB");
}
