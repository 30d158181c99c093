//! Port publishing and DNS, weft against its peers in the same run.
//!
//! 1. Attach with one published port, N times in a row (default 200):
//!    `weft attach -p PORT:80` against the reference CNI `bridge` plugin
//!    chained with `portmap` (what a runtime runs for `-p`), each in its
//!    own sandbox host. Reports p50/p90 and the median of the first and
//!    last 20 (growth), and the rule count each leaves behind.
//! 2. DNS queries per second: `weft dns` against dnsmasq on the same
//!    network, same name, same load generator (dnsperf) from a container.
//!
//! Every namespace is named `$BENCH_PREFIX-...` and deleted at the end;
//! nothing runs in the machine's own namespace. Run as root via
//! bench/ports.sh. Environment: WEFT_BIN, CNI_PATH (/usr/lib/cni),
//! BENCH_PORTS_N (200), BENCH_DNS_SECS (5), BENCH_PREFIX, BENCH_PORTS_OUT.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use weft_bench::config::env_or as env;
use weft_bench::netns::Ns;
use weft_bench::numbers::median;

/// Rules in all of a namespace's nftables tables.
fn rule_count(ns: &Ns) -> usize {
    let out = ns.command("nft").args(["-j", "list", "ruleset"]).output();
    let v: Value =
        out.ok().and_then(|o| serde_json::from_slice(&o.stdout).ok()).unwrap_or_default();
    v["nftables"]
        .as_array()
        .map(|a| a.iter().filter(|o| o.get("rule").is_some()).count())
        .unwrap_or(0)
}

/// CPU time (user + system) of waited-for children so far, in ms.
fn children_cpu_ms() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    ms(ru.ru_utime) + ms(ru.ru_stime)
}

fn ok(out: Output, what: &str) -> Result<Vec<u8>> {
    if !out.status.success() {
        bail!("{what}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out.stdout)
}

struct Stats {
    p50: f64,
    p90: f64,
    mean: f64,
    first: f64,
    last: f64,
}

fn stats(ms: &[f64]) -> Stats {
    let mut s = ms.to_vec();
    s.sort_by(f64::total_cmp);
    let k = ms.len().min(20);
    Stats {
        p50: s[s.len() / 2],
        p90: s[s.len() * 9 / 10],
        mean: ms.iter().sum::<f64>() / ms.len() as f64,
        first: median(&ms[..k]),
        last: median(&ms[ms.len() - k..]),
    }
}

fn stats_json(s: &Stats, rules: usize) -> Value {
    json!({"p50_ms": s.p50, "p90_ms": s.p90, "mean_ms": s.mean, "first20_p50_ms": s.first,
           "last20_p50_ms": s.last, "growth": s.last / s.first, "rules_after": rules})
}

/// weft: `attach -p` N times; returns per-attach milliseconds.
fn weft_ports(
    prefix: &str,
    weft: &str,
    n: usize,
    publish: bool,
) -> Result<(Vec<f64>, Vec<f64>, usize)> {
    let tag = if publish { "w" } else { "b" };
    let host = Ns::new(format!("{prefix}-{tag}h"))?;
    let state = std::env::temp_dir().join(format!("{prefix}-weft-{tag}"));
    let st = state.to_str().unwrap().to_string();
    let w = |args: &[&str]| host.command(weft).arg("--state-dir").arg(&st).args(args).output();
    ok(w(&["network", "create", "pbench", "--subnet", "10.200.0.0/16"])?, "weft network create")?;
    let (mut ms, mut cpu) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut conts = Vec::with_capacity(n);
    for i in 0..n {
        conts.push(Ns::new(format!("{prefix}-{tag}c{i}"))?);
    }
    for (i, c) in conts.iter().enumerate() {
        let port = format!("{}:80", 20000 + i);
        let (t, c0) = (Instant::now(), children_cpu_ms());
        let path = &c.path;
        let mut args = vec!["attach", "pbench", &c.name, "--netns", &path];
        if publish {
            args.extend(["-p", &port]);
        }
        let out = w(&args)?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        cpu.push(children_cpu_ms() - c0);
        ok(out, "weft attach")?;
    }
    let rules = rule_count(&host);
    drop(conts);
    let _ = std::fs::remove_dir_all(&state);
    Ok((ms, cpu, rules))
}

/// bridge + portmap, as a runtime chains them for one published port.
fn cni_ports(prefix: &str, cni_path: &str, n: usize) -> Result<(Vec<f64>, Vec<f64>, usize)> {
    let host = Ns::new(format!("{prefix}-ch"))?;
    let data = std::env::temp_dir().join(format!("{prefix}-ipam"));
    let bridge_conf = json!({
        "cniVersion": "1.0.0", "name": "pbench", "type": "bridge", "bridge": "pbench0",
        "isGateway": true, "ipMasq": true,
        "ipam": {"type": "host-local", "subnet": "10.201.0.0/16", "dataDir": data,
                 "routes": [{"dst": "0.0.0.0/0"}]}
    });
    let run = |plugin: &str, id: &str, netns: &str, conf: &Value| -> Result<Value> {
        let mut child = host
            .command(&format!("{cni_path}/{plugin}"))
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", "ADD")
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", cni_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        child.stdin.take().unwrap().write_all(conf.to_string().as_bytes())?;
        let out = ok(child.wait_with_output()?, plugin)?;
        Ok(serde_json::from_slice(&out)?)
    };
    let mut conts = Vec::with_capacity(n);
    for i in 0..n {
        conts.push(Ns::new(format!("{prefix}-cc{i}"))?);
    }
    let (mut ms, mut cpu) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for (i, c) in conts.iter().enumerate() {
        let id = format!("ctr{i}");
        let (t, c0) = (Instant::now(), children_cpu_ms());
        let prev = run("bridge", &id, &c.path, &bridge_conf)?;
        let pm = json!({
            "cniVersion": "1.0.0", "name": "pbench", "type": "portmap", "snat": true,
            "capabilities": {"portMappings": true},
            "runtimeConfig": {"portMappings": [{"hostPort": 20000 + i, "containerPort": 80, "protocol": "tcp"}]},
            "prevResult": prev,
        });
        run("portmap", &id, &c.path, &pm)?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        cpu.push(children_cpu_ms() - c0);
    }
    let rules = rule_count(&host);
    drop(conts);
    let _ = std::fs::remove_dir_all(&data);
    Ok((ms, cpu, rules))
}

/// A fixed query for `svc` A IN, to see that a server is up (the load
/// itself is dnsperf's).
fn probe(ns: &Ns, server: &str) -> bool {
    let script = format!(
        "exec 3<>/dev/udp/{}/{} && printf '\\x12\\x34\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x03svc\\x00\\x00\\x01\\x00\\x01' >&3 && timeout 1 head -c 12 <&3 >/dev/null",
        server.split(':').next().unwrap(),
        server.split(':').nth(1).unwrap()
    );
    // Until the server listens, the query is refused: not worth a line.
    ns.command("bash")
        .args(["-c", &script])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// dnsperf from `client` against `server` for `secs`: queries per second and
/// mean latency (ms).
fn dnsperf(client: &Ns, server: &str, qfile: &Path, secs: u32) -> Result<(f64, f64)> {
    let (ip, port) = server.split_once(':').unwrap();
    let out = client
        .command("dnsperf")
        .args([
            "-s",
            ip,
            "-p",
            port,
            "-d",
            qfile.to_str().unwrap(),
            "-l",
            &secs.to_string(),
            "-c",
            "4",
            "-q",
            "64",
        ])
        .output()?;
    let text = String::from_utf8_lossy(&ok(out, "dnsperf")?).into_owned();
    let field = |key: &str| -> Option<f64> {
        let line = text.lines().find(|l| l.trim_start().starts_with(key))?;
        line.split(':').nth(1)?.split_whitespace().next()?.parse().ok()
    };
    let qps = field("Queries per second").context("dnsperf printed no qps")?;
    let lat = field("Average Latency (s)").unwrap_or(0.0) * 1e3;
    let lost = field("Queries lost").unwrap_or(0.0);
    if lost > 0.0 {
        eprintln!("  ({server}: {lost} queries lost)");
    }
    Ok((qps, lat))
}

fn dns_bench(prefix: &str, weft: &str, secs: u32) -> Result<Value> {
    let host = Ns::new(format!("{prefix}-dh"))?;
    let client = Ns::new(format!("{prefix}-dc"))?;
    let svc = Ns::new(format!("{prefix}-ds"))?;
    let state = std::env::temp_dir().join(format!("{prefix}-dns"));
    let st = state.to_str().unwrap().to_string();
    let w = |args: &[&str]| host.command(weft).arg("--state-dir").arg(&st).args(args).output();
    ok(w(&["network", "create", "dbench", "--subnet", "10.202.0.0/24"])?, "network create")?;
    ok(w(&["attach", "dbench", "client", "--netns", &client.path])?, "attach client")?;
    let ep: Value = serde_json::from_slice(&ok(
        w(&["attach", "dbench", "target", "--netns", &svc.path, "--alias", "svc", "--json"])?,
        "attach target",
    )?)?;
    let svc_ip = ep["address"].as_str().unwrap().split('/').next().unwrap().to_string();
    let qfile = std::env::temp_dir().join(format!("{prefix}-queries"));
    std::fs::write(&qfile, "svc A\n")?;

    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _weft = Kill(
        host.command(weft)
            .args(["--state-dir", &st, "dns", "--upstream", "127.0.0.1:9"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let pid = std::env::temp_dir().join(format!("{prefix}-dnsmasq.pid"));
    let _dnsmasq = Kill(
        host.command("dnsmasq")
            .args(["-k", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--bind-interfaces"])
            .args([
                "--listen-address=10.202.0.1",
                "--port=5353",
                "--user=root",
                "--cache-size=1000",
            ])
            .arg(format!("--host-record=svc,{svc_ip}"))
            .arg(format!("--pid-file={}", pid.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("run dnsmasq (apt-get install dnsmasq-base)")?,
    );
    let servers = [("weft dns", "10.202.0.1:53"), ("dnsmasq", "10.202.0.1:5353")];
    for (name, s) in servers {
        let start = Instant::now();
        while !probe(&client, s) {
            if start.elapsed() > Duration::from_secs(10) {
                bail!("{name} on {s} does not answer");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // Two rounds, alternating, so that a noisy moment hurts both alike.
    let mut res = [Vec::new(), Vec::new()];
    for _ in 0..2 {
        for (i, (_, s)) in servers.iter().enumerate() {
            res[i].push(dnsperf(&client, s, &qfile, secs)?);
        }
    }
    let _ = std::fs::remove_dir_all(&state);
    let _ = std::fs::remove_file(&qfile);
    let best =
        |r: &[(f64, f64)]| r.iter().copied().fold((0.0, 0.0), |a, b| if b.0 > a.0 { b } else { a });
    let (wq, wl) = best(&res[0]);
    let (dq, dl) = best(&res[1]);
    println!("DNS, {secs} s x 2 rounds, dnsperf -c 4 -q 64, best round:");
    println!("  weft dns  {wq:>10.0} queries/s  {wl:.3} ms mean latency");
    println!("  dnsmasq   {dq:>10.0} queries/s  {dl:.3} ms mean latency");
    Ok(json!({"weft_qps": wq, "weft_latency_ms": wl, "dnsmasq_qps": dq, "dnsmasq_latency_ms": dl,
              "rounds": {"weft": res[0], "dnsmasq": res[1]}}))
}

fn main() -> Result<()> {
    let n: usize = env("BENCH_PORTS_N", "200").parse()?;
    let secs: u32 = env("BENCH_DNS_SECS", "5").parse()?;
    let weft = env("WEFT_BIN", "target/release/weft");
    let weft = PathBuf::from(&weft).canonicalize().with_context(|| format!("WEFT_BIN {weft}"))?;
    let weft = weft.to_str().unwrap().to_string();
    let cni_path = env("CNI_PATH", "/usr/lib/cni");
    let prefix = env("BENCH_PREFIX", &format!("wpb-{}", std::process::id()));

    println!("attach with one published port, N={n} sequential");
    let (bms, bcpu, brules) = weft_ports(&prefix, &weft, n, false)?;
    let (wms, wcpu, wrules) = weft_ports(&prefix, &weft, n, true)?;
    let (cms, ccpu, crules) = cni_ports(&prefix, &cni_path, n)?;
    let (ws, cs, bs) = (stats(&wms), stats(&cms), stats(&bms));
    for (name, s, cpu, rules) in [
        ("weft -p", &ws, &wcpu, wrules),
        ("bridge+portmap", &cs, &ccpu, crules),
        ("(weft, no -p)", &bs, &bcpu, brules),
    ] {
        println!(
            "  {name:<15} p50 {:>7.2} ms  p90 {:>7.2} ms  first20 {:>7.2} -> last20 {:>7.2} ms (x{:.2})  cpu p50 {:>6.2} ms  {rules} rules after",
            s.p50,
            s.p90,
            s.first,
            s.last,
            s.last / s.first,
            median(cpu)
        );
    }
    let dns = dns_bench(&prefix, &weft, secs)?;
    let out = json!({
        "n": n,
        "attach_publish": {"weft": stats_json(&ws, wrules), "bridge_portmap": stats_json(&cs, crules),
                           "weft_without_port": stats_json(&bs, brules),
                           "cpu_p50_ms": {"weft": median(&wcpu), "bridge_portmap": median(&ccpu),
                                          "weft_without_port": median(&bcpu)}},
        "dns": dns,
        "samples_ms": {"weft": wms, "bridge_portmap": cms},
    });
    let path = env("BENCH_PORTS_OUT", "bench/ports-results.json");
    std::fs::write(&path, serde_json::to_string_pretty(&out)?)?;
    println!("results: {path}");
    Ok(())
}
