//! One workload, run for weft and for the reference plugin in the same
//! run, interleaved so that machine noise hits both:
//!
//! - sequential: attach containers 0..N, then detach them in the same
//!   order; the tools take turns in blocks of `block` containers (which
//!   tool goes first rotates per block), each turn after a short pause so
//!   that the previous turn's deferred kernel work (the reference's device
//!   deletions wait ~20 ms for RCU in kernel threads) is not timed as the
//!   next tool's.
//!   N endpoints exist at the end of the attach phase, so the last 10% of
//!   attaches measure a network that already holds 0.9 N endpoints.
//! - parallel: W workers per tool, N containers in total; the tools take
//!   turns in rounds of `chunk` operations per worker (W processes of one
//!   tool at a time), attach phase then detach phase.
//!
//! Each tool has its own sandbox host namespace, state and containers; all
//! namespaces are made before timing starts and deleted afterwards.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::sandbox::{self, in_netns, Ns, NsSet};
use crate::tools::{Container, Op, Sample, Tool, NETWORK};

pub struct Env {
    pub weft_bin: PathBuf,
    pub cni_path: PathBuf,
    pub subnet: String,
    /// Per-run scratch directory (state dirs, host-local data).
    pub tmp: PathBuf,
    /// Every namespace name starts with this.
    pub prefix: String,
    /// Untimed attach+detach cycles per tool before each workload.
    pub warmup: usize,
    /// Which tools run: "weft" (CLI), "weftd" (CLI with `weft daemon`),
    /// "cni" (normally all three).
    pub tools: Vec<String>,
    /// Drive weft through the CNI protocol instead of its CLI.
    pub weft_via_cni: bool,
    /// Sequential: operations per tool per turn (1: strict alternation).
    pub block: usize,
    /// Pause before each tool's turn, so that the kernel's deferred work of
    /// the previous turn (another tool's, mostly: the reference's device
    /// deletions and process exits) is not charged to this one.
    pub settle: Duration,
    /// Each tool runs the whole workload (attach phase, detach phase)
    /// before the next starts, instead of taking turns: no tool's
    /// containers exist while another is timed. The order rotates from one
    /// workload to the next.
    pub one_tool_at_a_time: bool,
}

pub struct Spec {
    pub name: String,
    pub n: usize,
    /// 1: sequential.
    pub workers: usize,
    /// Parallel only: operations per worker before the other tool's turn.
    pub chunk: usize,
    /// One tool at a time: which tool goes first (the workload's number).
    pub rotation: usize,
}

pub struct ToolResult {
    pub key: &'static str,
    pub attach: Vec<Sample>,
    pub detach: Vec<Sample>,
    /// Successful attaches that got an address another container had.
    pub duplicate_addresses: usize,
    /// Attaches whose output did not show an address.
    pub missing_addresses: usize,
    /// veths left in the sandbox host after the detach phase.
    pub leftover_veths: usize,
    /// Endpoint / lease records left after the detach phase.
    pub leftover_records: usize,
    /// First few distinct error messages.
    pub errors: Vec<String>,
}

pub struct WorkloadResult {
    pub spec: Spec,
    pub tools: Vec<ToolResult>,
    pub wall: Duration,
    /// How busy the whole machine was during the timed phases (all CPUs,
    /// everything running on them, this benchmark included), in percent.
    pub machine_busy_pct: f64,
    pub loadavg_before: String,
    pub loadavg_after: String,
}

/// Waits (at most a minute) until the machine has been under 15% busy for
/// half a second. Deleting namespaces (the previous workload's, hundreds
/// at once) goes on in a kernel worker for seconds after `ip netns del`
/// returns, and whatever tool is timed first would pay for it.
fn wait_quiet(name: &str) {
    let t0 = Instant::now();
    loop {
        let (b0, t0j) = cpu_jiffies();
        std::thread::sleep(Duration::from_millis(500));
        let (b1, t1j) = cpu_jiffies();
        let busy = 100.0 * (b1 - b0) as f64 / (t1j - t0j).max(1) as f64;
        if busy < 15.0 || t0.elapsed() > Duration::from_secs(60) {
            eprintln!("[{name}] machine {busy:.0}% busy after {:.1} s", t0.elapsed().as_secs_f64());
            return;
        }
    }
}

/// (busy, total) jiffies of all CPUs from /proc/stat.
fn cpu_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().take(8).sum();
    // idle and iowait
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// One tool's side of a workload.
struct Side<'a> {
    tool: Tool,
    host: &'a Ns,
    containers: Vec<Container<'a>>,
    attach: Vec<Sample>,
    detach: Vec<Sample>,
}

pub fn run(env: &Env, spec: Spec) -> Result<WorkloadResult> {
    let wall = Instant::now();
    let id = spec.name.replace('-', "");
    let dir = env.tmp.join(&id);
    std::fs::create_dir_all(&dir)?;
    let _cleanup_dir = RemoveDir(dir.clone());

    let tools: Vec<Tool> = [
        Tool::weft(&env.weft_bin, &dir.join("weft-state"), env.weft_via_cni, &env.subnet, false),
        Tool::weft(&env.weft_bin, &dir.join("weftd-state"), env.weft_via_cni, &env.subnet, true),
        Tool::cni(&env.cni_path, &env.subnet, &dir.join("cni-data")),
    ]
    .into_iter()
    .filter(|t| env.tools.iter().any(|k| k == t.key()))
    .collect();
    eprintln!("[{}] creating {} namespaces", spec.name, tools.len() * (spec.n + 1));
    let host_names: Vec<String> =
        tools.iter().map(|t| format!("{}-{id}-{}-host", env.prefix, t.key())).collect();
    let hosts = NsSet::create(&host_names)?;
    let id = id.as_str();
    let container_names: Vec<String> = tools
        .iter()
        .flat_map(|t| (0..spec.n).map(move |i| format!("{}-{id}-{}{i}", env.prefix, t.key())))
        .collect();
    // Declared after `hosts`, so dropped first: containers, then hosts.
    let containers = NsSet::create(&container_names)?;

    let mut sides: Vec<Side> = tools
        .into_iter()
        .enumerate()
        .map(|(t, tool)| Side {
            tool,
            host: &hosts.list[t],
            containers: (0..spec.n)
                .map(|i| Container { id: format!("c{i}"), ns: &containers.list[t * spec.n + i] })
                .collect(),
            attach: Vec::with_capacity(spec.n),
            detach: Vec::with_capacity(spec.n),
        })
        .collect();

    for side in &sides {
        side.tool
            .setup(side.host, &env.subnet)
            .with_context(|| format!("{} setup", side.tool.key()))?;
    }
    warm_up(&sides, env.warmup)?;
    wait_quiet(&spec.name);

    let loadavg_before = loadavg();
    let (busy0, total0) = cpu_jiffies();
    let epoch = Instant::now();
    // Taking turns: every tool in each phase. One at a time: each tool
    // alone through both phases, then a pause of a second for the kernel's
    // deferred work (and for what its containers still send: the
    // reference's get IPv6 link-local addresses, whose duplicate address
    // detection and router solicitations its bridge floods to every port
    // for seconds) before the next tool.
    let n_tools = sides.len();
    let groups: Vec<std::ops::Range<usize>> = if env.one_tool_at_a_time {
        (0..n_tools).map(|k| (spec.rotation + k) % n_tools).map(|t| t..t + 1).collect()
    } else {
        std::iter::once(0..n_tools).collect()
    };
    for (g, group) in groups.into_iter().enumerate() {
        if g > 0 {
            std::thread::sleep(Duration::from_secs(1));
            wait_quiet(&spec.name);
        }
        let sides = &mut sides[group];
        for op in [Op::Attach, Op::Detach] {
            eprintln!("[{}] {:?} phase ({})", spec.name, op, tool_keys(sides));
            if spec.workers <= 1 {
                sequential(sides, op, epoch, &spec.name, env.block.max(1), env.settle)?;
            } else {
                parallel(sides, op, epoch, spec.workers, spec.chunk.max(1), env.settle)?;
            }
        }
    }

    let (busy1, total1) = cpu_jiffies();
    let machine_busy_pct = 100.0 * (busy1 - busy0) as f64 / (total1 - total0).max(1) as f64;
    let loadavg_after = loadavg();

    let mut results = Vec::new();
    for side in sides {
        let ok_addrs: Vec<&String> =
            side.attach.iter().filter(|s| s.ok).filter_map(|s| s.addr.as_ref()).collect();
        let unique: HashSet<&String> = ok_addrs.iter().copied().collect();
        let ok = side.attach.iter().filter(|s| s.ok).count();
        let mut errors: Vec<String> = Vec::new();
        for e in side.attach.iter().chain(&side.detach).filter_map(|s| s.error.as_ref()) {
            if errors.len() < 5 && !errors.contains(e) {
                errors.push(e.clone());
            }
        }
        results.push(ToolResult {
            key: side.tool.key(),
            duplicate_addresses: ok_addrs.len() - unique.len(),
            missing_addresses: ok - ok_addrs.len(),
            leftover_veths: sandbox::veth_count(side.host)?,
            leftover_records: leftover_records(&side.tool, side.host)?,
            errors,
            attach: side.attach,
            detach: side.detach,
        });
    }
    drop(containers);
    drop(hosts);
    Ok(WorkloadResult {
        spec,
        tools: results,
        wall: wall.elapsed(),
        machine_busy_pct,
        loadavg_before,
        loadavg_after,
    })
}

fn tool_keys(sides: &[Side]) -> String {
    sides.iter().map(|s| s.tool.key()).collect::<Vec<_>>().join(", ")
}

/// A few untimed cycles on container 0 so that both tools start with warm
/// caches (binaries, the bridge, the CNI plugin's iptables chains).
fn warm_up(sides: &[Side], cycles: usize) -> Result<()> {
    let epoch = Instant::now();
    for _ in 0..cycles {
        for side in sides {
            for op in [Op::Attach, Op::Detach] {
                let s = in_netns(side.host, || side.tool.run(op, &side.containers[0], epoch))?;
                if !s.ok {
                    bail!(
                        "warm-up {op:?} with {} failed: {}",
                        side.tool.key(),
                        s.error.unwrap_or_default()
                    );
                }
            }
        }
    }
    Ok(())
}

/// Containers 0..N in blocks: each tool in turn runs the block's
/// operations back to back (which tool goes first rotates per block).
fn sequential(
    sides: &mut [Side],
    op: Op,
    epoch: Instant,
    name: &str,
    block: usize,
    settle: Duration,
) -> Result<()> {
    let n = sides[0].containers.len();
    let n_tools = sides.len();
    let mut reported = 0;
    for (b, first) in (0..n).step_by(block).enumerate() {
        weft_bench::interrupt::check()?;
        let range = first..(first + block).min(n);
        for k in 0..n_tools {
            let side = &mut sides[(b + k) % n_tools];
            std::thread::sleep(settle);
            let samples = in_netns(side.host, || {
                range
                    .clone()
                    .map(|i| side.tool.run(op, &side.containers[i], epoch))
                    .collect::<Vec<_>>()
            })?;
            match op {
                Op::Attach => side.attach.extend(samples),
                Op::Detach => side.detach.extend(samples),
            }
        }
        let done = range.end;
        if done * 10 / n > reported {
            reported = done * 10 / n;
            eprintln!("[{name}] {op:?} {done}/{n}");
        }
    }
    Ok(())
}

fn parallel(
    sides: &mut [Side],
    op: Op,
    epoch: Instant,
    workers: usize,
    chunk: usize,
    settle: Duration,
) -> Result<()> {
    let n = sides[0].containers.len();
    // Worker w owns containers w, w + W, w + 2W, ...
    let per_worker: Vec<Vec<usize>> =
        (0..workers).map(|w| (w..n).step_by(workers).collect()).collect();
    let rounds = per_worker.iter().map(|v| v.len().div_ceil(chunk)).max().unwrap_or(0);
    for r in 0..rounds {
        weft_bench::interrupt::check()?;
        let n_tools = sides.len();
        for k in 0..n_tools {
            let side = &mut sides[(r + k) % n_tools];
            std::thread::sleep(settle);
            let samples = std::thread::scope(|s| {
                let handles: Vec<_> = per_worker
                    .iter()
                    .map(|mine| {
                        let side = &*side;
                        let slice: Vec<usize> =
                            mine.iter().copied().skip(r * chunk).take(chunk).collect();
                        s.spawn(move || -> Result<Vec<Sample>> {
                            sandbox::enter(side.host)?;
                            Ok(slice
                                .iter()
                                .map(|&i| side.tool.run(op, &side.containers[i], epoch))
                                .collect())
                        })
                    })
                    .collect();
                let mut all = Vec::new();
                for h in handles {
                    all.extend(h.join().map_err(|_| anyhow::anyhow!("worker panicked"))??);
                }
                Ok::<_, anyhow::Error>(all)
            })?;
            match op {
                Op::Attach => side.attach.extend(samples),
                Op::Detach => side.detach.extend(samples),
            }
        }
    }
    Ok(())
}

/// weft's endpoint records, or host-local's leases, left after detach.
fn leftover_records(tool: &Tool, host: &Ns) -> Result<usize> {
    match tool {
        Tool::Weft { bin, state_dir, .. } => {
            let out = sandbox::run_in(
                host,
                &bin.to_string_lossy(),
                &["--state-dir", &state_dir.to_string_lossy(), "endpoint", "ls", "--json"],
            )?;
            let v: serde_json::Value = serde_json::from_str(&out).context("endpoint ls --json")?;
            Ok(v.as_array().map_or(0, Vec::len))
        }
        Tool::Cni { conf, .. } => {
            let v: serde_json::Value = serde_json::from_str(conf)?;
            let dir =
                PathBuf::from(v["ipam"]["dataDir"].as_str().unwrap_or_default()).join(NETWORK);
            let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(0) };
            // Leases are files named after the address.
            Ok(entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().parse::<std::net::IpAddr>().is_ok())
                .count())
        }
    }
}

struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
