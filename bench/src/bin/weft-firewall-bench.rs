//! How long weft's firewall takes to rebuild its table (`Firewall::apply`)
//! for 2 and for 50 networks, in a throwaway network namespace of its own
//! (the machine's nftables are never touched). `make bench-firewall`.

use std::time::Instant;

use weft_firewall::{Firewall, NetRules};

fn net(i: usize, internal: bool, v6: bool) -> NetRules {
    NetRules {
        name: format!("n{i}"),
        bridge: format!("weft-n{i}"),
        subnet: format!("10.{}.{}.0/24", 100 + i / 256, i % 256).parse().unwrap(),
        subnet6: v6.then(|| format!("fd00:{i:x}::/64").parse().unwrap()),
        internal,
        open: false,
    }
}

fn main() -> anyhow::Result<()> {
    let runs = 20;
    std::thread::spawn(move || -> anyhow::Result<()> {
        // SAFETY: unshare takes no pointers; CLONE_NEWNET moves only this thread.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            anyhow::bail!(
                "unshare(CLONE_NEWNET): {} (run as root)",
                std::io::Error::last_os_error()
            );
        }
        let fw = Firewall::new();
        for n in [2, 50] {
            let nets: Vec<NetRules> = (0..n).map(|i| net(i, i % 5 == 0, i % 2 == 0)).collect();
            let mut ms = Vec::with_capacity(runs);
            for _ in 0..runs {
                let t = Instant::now();
                fw.apply(&nets)?;
                ms.push(t.elapsed().as_secs_f64() * 1e3);
            }
            ms.sort_by(f64::total_cmp);
            println!(
                "apply() with {n} networks: median {:.2} ms, min {:.2}, max {:.2} ({runs} runs)",
                ms[runs / 2],
                ms[0],
                ms[runs - 1]
            );
        }
        Ok(())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the benchmark thread panicked"))?
}
