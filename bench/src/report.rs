//! The readable table, the target check and `results.json`.

use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, Result};
use serde_json::{json, Value};

use weft_bench::numbers::round;

use crate::stats::Summary;
use crate::workload::{Env, ToolResult, WorkloadResult};

/// The targets for weft.
pub const TARGET_P50_MS: f64 = 3.0;
pub const TARGET_P99_MS: f64 = 10.0;
pub const TARGET_RATIO: f64 = 10.0;
/// "Flat" growth: the last 10% of attaches' median at most this many times
/// the first 10%'s (our threshold; the issue says "flat").
pub const TARGET_GROWTH: f64 = 1.25;

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

pub fn machine(env: &Env) -> Value {
    let cpuinfo = read("/proc/cpuinfo");
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':'])))
        .unwrap_or("unknown");
    let mem_kb: u64 = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let os = read("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string()))
        .unwrap_or_default();
    let weft_bin = env.weft_bin.to_string_lossy();
    json!({
        "cpu": cpu,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "memory_gib": (mem_kb as f64 / 1048576.0 * 10.0).round() / 10.0,
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "os": os,
        "loadavg_at_start": read("/proc/loadavg").trim(),
        "weft_bin": weft_bin,
        "weft_version": output(&weft_bin, &["--version"]),
        "weft_git": output("git", &["describe", "--always", "--dirty"]),
        "cni_plugins": format!(
            "containernetworking-plugins {}",
            output("dpkg-query", &["-W", "-f", "${Version}", "containernetworking-plugins"])
        ),
        "iptables": output("iptables", &["-V"]),
    })
}

pub fn print_machine(m: &Value) {
    let s = |k: &str| m[k].as_str().unwrap_or("").to_string();
    println!("weft-bench: each operation is one process (spawn to exit), both tools interleaved");
    println!(
        "machine: {} x {} CPUs, {} GiB, {} ({}), load {}",
        s("cpu"),
        m["cpus"],
        m["memory_gib"],
        s("os"),
        s("kernel"),
        s("loadavg_at_start")
    );
    println!(
        "weft: {} ({}) | reference: {} bridge+host-local, {}",
        s("weft_bin"),
        s("weft_git"),
        s("cni_plugins"),
        s("iptables")
    );
}

fn tool<'a>(r: &'a WorkloadResult, key: &str) -> Option<&'a ToolResult> {
    r.tools.iter().find(|t| t.key == key)
}

fn ratio(reference: f64, weft: f64) -> f64 {
    if weft > 0.0 {
        reference / weft
    } else {
        f64::NAN
    }
}

pub fn print_table(results: &[WorkloadResult]) {
    println!();
    println!(
        "{:<11} {:<6} {:<8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>9} {:>8} {:>7} {:>8} {:>8}",
        "workload",
        "op",
        "tool",
        "ok/n",
        "p50 ms",
        "p99 ms",
        "mean ms",
        "max ms",
        "first10%",
        "last10%",
        "growth",
        "cpu p50",
        "cpu grw"
    );
    for r in results {
        let label = if r.spec.workers > 1 {
            format!("{} ({}w)", r.spec.name, r.spec.workers)
        } else {
            r.spec.name.clone()
        };
        for (op, pick) in [("attach", 0), ("detach", 1)] {
            let mut sums = Vec::new();
            for (k, t) in r.tools.iter().enumerate() {
                let s = Summary::of(if pick == 0 { &t.attach } else { &t.detach });
                let first = k == 0;
                println!(
                    "{:<11} {:<6} {:<8} {:>9} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>9.2} {:>8.2} {:>6.2}x {:>8.2} {:>7.2}x",
                    if first && op == "attach" { label.as_str() } else { "" },
                    if first { op } else { "" },
                    label_of(t.key),
                    format!("{}/{}", s.count - s.failures, s.count),
                    s.p50,
                    s.p99,
                    s.mean,
                    s.max,
                    s.first10,
                    s.last10,
                    s.growth(),
                    s.cpu_p50,
                    s.cpu_growth()
                );
                sums.push(s);
            }
            let Some(c) = r.tools.iter().position(|t| t.key == "cni") else { continue };
            for (k, t) in r.tools.iter().enumerate().filter(|(k, _)| *k != c) {
                println!(
                    "{:<11} {:<6} {:<8} {:>9} {:>7.1}x {:>7.1}x {:>7.1}x {:>52.1}x",
                    "",
                    "",
                    format!("ref/{}", t.key),
                    "",
                    ratio(sums[c].p50, sums[k].p50),
                    ratio(sums[c].p99, sums[k].p99),
                    ratio(sums[c].mean, sums[k].mean),
                    ratio(sums[c].cpu_p50, sums[k].cpu_p50)
                );
            }
        }
        for t in &r.tools {
            let name = label_of(t.key);
            println!(
                "{:<11} {name}: duplicate addresses {}, missing {}, leftover veths {}, leftover records {}{}",
                "",
                t.duplicate_addresses,
                t.missing_addresses,
                t.leftover_veths,
                t.leftover_records,
                if t.errors.is_empty() {
                    String::new()
                } else {
                    format!(", errors: {}", t.errors.join(" | "))
                }
            );
        }
        println!(
            "{:<11} wall time {:.1} s; machine {:.0}% busy, load {} -> {}",
            "",
            r.wall.as_secs_f64(),
            r.machine_busy_pct,
            r.loadavg_before,
            r.loadavg_after
        );
    }
}

/// The weft variants: the CLI alone, the CLI with `weft daemon`.
const WEFT_KEYS: [&str; 2] = ["weft", "weftd"];

fn label_of(key: &str) -> &str {
    if key == "cni" {
        "ref"
    } else {
        key
    }
}

/// Each target and whether the weft variant `key` met it in a workload.
fn targets(r: &WorkloadResult, key: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let Some(w) = tool(r, key) else { return out };
    let c = tool(r, "cni");
    for (op, ws, cs) in
        [("attach", &w.attach, c.map(|c| &c.attach)), ("detach", &w.detach, c.map(|c| &c.detach))]
    {
        let sw = Summary::of(ws);
        out.push((
            format!("{op} p50 {:.2} ms <= {TARGET_P50_MS}", sw.p50),
            sw.p50 <= TARGET_P50_MS && sw.failures == 0,
        ));
        out.push((
            format!("{op} p99 {:.2} ms <= {TARGET_P99_MS}", sw.p99),
            sw.p99 <= TARGET_P99_MS && sw.failures == 0,
        ));
        if let Some(cs) = cs {
            let rp50 = ratio(Summary::of(cs).p50, sw.p50);
            out.push((
                format!("{op} ref/weft p50 {rp50:.1}x >= {TARGET_RATIO}x"),
                rp50 >= TARGET_RATIO,
            ));
        }
    }
    let sa = Summary::of(&w.attach);
    if r.spec.workers <= 1 {
        out.push((
            format!("attach growth {:.2}x <= {TARGET_GROWTH}x", sa.growth()),
            sa.growth() <= TARGET_GROWTH,
        ));
    }
    let failures = sa.failures + Summary::of(&w.detach).failures;
    out.push((format!("{key} failures {failures} == 0"), failures == 0));
    let clean = w.duplicate_addresses == 0 && w.leftover_veths == 0 && w.leftover_records == 0;
    out.push((format!("{key}: distinct addresses, nothing left after detach"), clean));
    out
}

pub fn print_targets(results: &[WorkloadResult]) {
    for key in WEFT_KEYS {
        if !results.iter().any(|r| tool(r, key).is_some()) {
            continue;
        }
        println!("\ntargets ({key}):");
        for r in results {
            println!("  {}:", r.spec.name);
            for (what, ok) in targets(r, key) {
                println!("    {} {what}", if ok { "PASS" } else { "MISS" });
            }
        }
    }
}

fn tool_json(t: &ToolResult) -> Value {
    let ms = |v: &[crate::tools::Sample]| -> Vec<Value> {
        v.iter()
            .map(|s| if s.ok { round(s.dur.as_secs_f64() * 1e3) } else { Value::Null })
            .collect()
    };
    let cpu = |v: &[crate::tools::Sample]| -> Vec<Value> {
        v.iter()
            .map(|s| if s.ok { round(s.cpu.as_secs_f64() * 1e3) } else { Value::Null })
            .collect()
    };
    json!({
        "attach": Summary::of(&t.attach).to_json(),
        "detach": Summary::of(&t.detach).to_json(),
        "duplicate_addresses": t.duplicate_addresses,
        "missing_addresses": t.missing_addresses,
        "leftover_veths": t.leftover_veths,
        "leftover_records": t.leftover_records,
        "errors": t.errors,
        // Per operation, in start order (null: failed).
        "samples_ms": { "attach": ms(&sorted(&t.attach)), "detach": ms(&sorted(&t.detach)) },
        "samples_cpu_ms": { "attach": cpu(&sorted(&t.attach)), "detach": cpu(&sorted(&t.detach)) },
    })
}

fn sorted(v: &[crate::tools::Sample]) -> Vec<crate::tools::Sample> {
    let mut v = v.to_vec();
    v.sort_by_key(|s| s.start);
    v
}

pub fn write_json(
    path: &Path,
    machine: &Value,
    env: &Env,
    started: SystemTime,
    results: &[WorkloadResult],
) -> Result<()> {
    let workloads: Vec<Value> = results
        .iter()
        .map(|r| {
            let c = tool(r, "cni");
            let mut doc = serde_json::Map::new();
            for key in WEFT_KEYS {
                let Some(w) = tool(r, key) else { continue };
                let mut ratios = serde_json::Map::new();
                if let Some(c) = c {
                    for (op, ws, cs) in
                        [("attach", &w.attach, &c.attach), ("detach", &w.detach, &c.detach)]
                    {
                        let (sw, sc) = (Summary::of(ws), Summary::of(cs));
                        ratios.insert(format!("{op}_p50"), round(ratio(sc.p50, sw.p50)));
                        ratios.insert(format!("{op}_p99"), round(ratio(sc.p99, sw.p99)));
                        ratios.insert(format!("{op}_mean"), round(ratio(sc.mean, sw.mean)));
                        ratios
                            .insert(format!("{op}_cpu_p50"), round(ratio(sc.cpu_p50, sw.cpu_p50)));
                    }
                }
                let targets: Vec<Value> = targets(r, key)
                    .into_iter()
                    .map(|(what, ok)| json!({"target": what, "met": ok}))
                    .collect();
                doc.insert(key.to_string(), tool_json(w));
                doc.insert(format!("ratio_ref_over_{key}"), Value::Object(ratios));
                doc.insert(format!("{key}_targets"), Value::Array(targets));
            }
            let mut v = json!({
                "name": r.spec.name,
                "kind": if r.spec.workers > 1 { "parallel" } else { "sequential" },
                "n": r.spec.n,
                "workers": r.spec.workers,
                "wall_s": round(r.wall.as_secs_f64()),
                "machine_busy_pct": round(r.machine_busy_pct),
                "loadavg_before": r.loadavg_before,
                "loadavg_after": r.loadavg_after,
                "reference": c.map(tool_json),
            });
            if let Value::Object(m) = &mut v {
                m.extend(doc);
            }
            v
        })
        .collect();
    let doc = json!({
        "started_unix": started.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "method": "each attach/detach is one process (spawn to exit, output read) run in a sandbox \
                   host netns; weft (CLI alone), weftd (CLI with `weft daemon` running, its CPU \
                   added to each operation's) and the reference CNI bridge+host-local (ipMasq, isGateway, /16) \
                   either (order `turns`) taking turns in blocks of `block` operations (sequential) \
                   or rounds of `chunk` operations per worker (parallel), each turn after a pause of \
                   `settle_ms`, or (order `alone`) one tool after the other, each through the whole \
                   workload, a 1 s pause between tools; sequential: attach 0..N then detach 0..N; \
                   times in ms; p = nearest rank",
        "machine": machine,
        "config": {
            "subnet": env.subnet,
            "warmup_cycles": env.warmup,
            "order": if env.one_tool_at_a_time { "alone" } else { "turns" },
            "block": env.block,
            "settle_ms": env.settle.as_millis() as u64,
            "cni_path": env.cni_path,
        },
        "targets": {
            "p50_ms": TARGET_P50_MS,
            "p99_ms": TARGET_P99_MS,
            "ratio_min": TARGET_RATIO,
            "growth_max": TARGET_GROWTH,
        },
        "loadavg_at_end": read("/proc/loadavg").trim(),
        "workloads": workloads,
    });
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")
        .with_context(|| format!("write {}", path.display()))
}
