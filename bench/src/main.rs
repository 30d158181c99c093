//! weft-bench: times `weft attach` / `weft detach` against the reference
//! CNI `bridge` + `host-local` plugins, each operation a whole process, in
//! throwaway network namespaces. Run through `bench/attach.sh` (`make bench`).
//!
//! Configuration (environment):
//! - `WEFT_BIN`      weft binary (attach.sh sets it: scripts/weft-bin)
//! - `CNI_PATH`      reference plugins (default `/usr/lib/cni`)
//! - `BENCH_SEQ_N`   sequential sizes, comma-separated (default `200,1000`)
//! - `BENCH_PAR_N`   parallel workload size, 0 to skip (default `200`)
//! - `BENCH_WORKERS` parallel workers per tool (default `4`)
//! - `BENCH_CHUNK`   parallel: operations per worker per turn (default `10`)
//! - `BENCH_BLOCK`   sequential: operations per tool per turn (default `50`;
//!   `1` alternates the tools at every operation)
//! - `BENCH_SETTLE_MS` pause before each turn (default `50`), so that one
//!   tool's deferred kernel work (device deletion's RCU wait, process exit)
//!   is not measured as the next tool's time
//! - `BENCH_ORDER`   `alone` (default): each tool runs the whole workload
//!   by itself, then the next (order rotating per workload), so that no
//!   tool's containers exist while another tool is timed (the reference's
//!   keep sending IPv6 multicast that their bridge floods, see
//!   BENCHMARKS.md); `turns`: the tools take turns (blocks, rounds)
//! - `BENCH_WARMUP`  untimed cycles per tool before each workload (default `3`)
//! - `BENCH_SUBNET`  the /16 both tools use (default `10.88.0.0/16`)
//! - `BENCH_OUT`     JSON results (default `bench/results.json`)
//! - `BENCH_PREFIX`  prefix of every namespace made (default `wbench-PID`)
//! - `BENCH_TOOLS`   `weft,weftd,cni` (default): weft's CLI alone, weft's
//!   CLI with `weft daemon` running, the reference; a subset for profiling
//! - `BENCH_WEFT_VIA` `cli` (default) or `cni`: weft as a CNI plugin, the
//!   same protocol and process model as the reference plugin

mod report;
mod sandbox;
mod stats;
mod tools;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use weft_bench::config::{env_or, env_usize};
use weft_bench::interrupt;
use workload::{Env, Spec};

fn main() -> ExitCode {
    if std::env::args().any(|a| a == "-h" || a == "--help") {
        println!(
            "usage: weft-bench   (configured by environment; see bench/README or src/main.rs)"
        );
        return ExitCode::SUCCESS;
    }
    interrupt::install();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weft-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("must run as root (it creates network namespaces)");
    }
    let weft_bin = std::fs::canonicalize(env_or("WEFT_BIN", "target/release/weft"))
        .context("WEFT_BIN (build it with `cargo build --release -p weft`)")?;
    let cni_path = PathBuf::from(env_or("CNI_PATH", "/usr/lib/cni"));
    tools::check_executable(&weft_bin)?;
    tools::check_executable(&cni_path.join("bridge"))?;
    tools::check_executable(&cni_path.join("host-local"))?;

    let prefix = env_or("BENCH_PREFIX", &format!("wbench-{}", std::process::id()));
    let tmp = std::env::temp_dir().join(&prefix);
    std::fs::create_dir_all(&tmp)?;
    let env = Env {
        weft_bin,
        cni_path,
        subnet: env_or("BENCH_SUBNET", "10.88.0.0/16"),
        tmp: tmp.clone(),
        prefix,
        warmup: env_usize("BENCH_WARMUP", 3)?,
        tools: env_or("BENCH_TOOLS", "weft,weftd,cni")
            .split(',')
            .map(|t| t.trim().to_string())
            .collect(),
        weft_via_cni: env_or("BENCH_WEFT_VIA", "cli") == "cni",
        block: env_usize("BENCH_BLOCK", 50)?,
        settle: std::time::Duration::from_millis(env_usize("BENCH_SETTLE_MS", 50)? as u64),
        one_tool_at_a_time: match env_or("BENCH_ORDER", "alone").as_str() {
            "turns" => false,
            "alone" => true,
            other => bail!("BENCH_ORDER: `turns` or `alone`, not `{other}`"),
        },
    };
    if env.tools.is_empty()
        || env.tools.iter().any(|t| !["weft", "weftd", "cni"].contains(&t.as_str()))
    {
        bail!("BENCH_TOOLS: a comma-separated list of weft, weftd, cni");
    }
    let out = PathBuf::from(env_or("BENCH_OUT", "bench/results.json"));

    let mut specs = Vec::new();
    for n in env_or("BENCH_SEQ_N", "200,1000").split(',').filter(|s| !s.trim().is_empty()) {
        let n: usize = n.trim().parse().context("BENCH_SEQ_N")?;
        specs.push(Spec {
            name: format!("seq-{n}"),
            n,
            workers: 1,
            chunk: 1,
            rotation: specs.len(),
        });
    }
    let par_n = env_usize("BENCH_PAR_N", 200)?;
    let workers = env_usize("BENCH_WORKERS", 4)?;
    if par_n > 0 {
        specs.push(Spec {
            name: format!("par{workers}-{par_n}"),
            n: par_n,
            workers,
            chunk: env_usize("BENCH_CHUNK", 10)?,
            rotation: specs.len(),
        });
    }

    let machine = report::machine(&env);
    report::print_machine(&machine);
    let started = std::time::SystemTime::now();
    let mut results = Vec::new();
    let outcome = (|| -> Result<()> {
        for spec in specs {
            let r = workload::run(&env, spec)?;
            report::print_table(std::slice::from_ref(&r));
            results.push(r);
            // Written after every workload, so an interrupted run keeps
            // what it measured.
            report::write_json(&out, &machine, &env, started, &results)?;
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    outcome?;
    println!();
    println!("== all workloads ==");
    report::print_table(&results);
    report::print_targets(&results);
    println!("\nresults: {}", out.display());
    Ok(())
}
