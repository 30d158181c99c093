use std::path::Path;

use anyhow::Result;
use clap::Args;

use crate::ops::gc;
use crate::output;

#[derive(Args)]
pub struct Gc {
    /// Print what was repaired as JSON.
    #[arg(long)]
    json: bool,
    /// Record in this store every weft network and live container the
    /// kernel holds that the store does not know (a lost or damaged store,
    /// or another state directory's objects), and mark them as this
    /// store's.
    #[arg(long)]
    adopt: bool,
}

impl Gc {
    pub fn run(self, state_dir: &Path) -> Result<()> {
        let mut ctx = match super::mutating(state_dir) {
            Err(e) if self.adopt && is_damaged(&e) => {
                let aside = set_aside(state_dir)?;
                crate::output::line(&format!("set the damaged store aside as {}", aside.display()));
                super::mutating(state_dir)?
            }
            r => r?,
        };
        // First, so that gc does not rebuild an idle network's bridge that
        // went (a reboot) only to remove it; and before gc's exclusive
        // hold: Podman's lock comes before ownership.
        let idle = crate::netavark::linger::gc(&mut ctx)?;
        let mut report = gc::run(&mut ctx, self.adopt)?;
        report.idle_podman_networks = idle;
        // A live container whose address someone else holds is never
        // silently kept: gc fails until it is resolved.
        let conflicts = match report.conflicts.len() {
            0 => Ok(()),
            n => Err(anyhow::anyhow!(
                "{n} live container(s) conflict with other endpoints (first: {}); detach one side",
                report.conflicts[0]
            )),
        };
        if self.json {
            output::json(&report)?;
            return conflicts;
        }
        let show = |what: &str, v: &[String]| {
            for x in v {
                crate::output::line(&format!("{what} {x}"));
            }
        };
        show("removed endpoint", &report.endpoints);
        show("deleted veth", &report.veths);
        show("deleted bridge", &report.bridges);
        show("rebuilt network", &report.repaired);
        show("rebuilt firewall", &report.firewall);
        show("adopted", &report.adopted);
        show("removed idle Podman network", &report.idle_podman_networks);
        show("CONFLICT", &report.conflicts);
        crate::output::line(&format!("gc: {} repair(s)", report.count()));
        conflicts
    }
}

fn is_damaged(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<weft_store::StoreError>(),
        Some(weft_store::StoreError::Damaged { .. })
    )
}

/// Renames the damaged database and its log files out of the way (kept
/// for inspection); the store then starts empty and is rebuilt from the
/// kernel.
fn set_aside(state_dir: &Path) -> Result<std::path::PathBuf> {
    let stamp = crate::ops::context::now();
    let aside = state_dir.join(format!("weft.db.damaged-{stamp}"));
    for suffix in ["", "-wal", "-shm"] {
        let from = state_dir.join(format!("weft.db{suffix}"));
        let to = state_dir.join(format!("weft.db.damaged-{stamp}{suffix}"));
        match std::fs::rename(&from, &to) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(anyhow::Error::from(e).context(format!(
                    "set aside {} as {}",
                    from.display(),
                    to.display()
                )))
            }
            _ => {}
        }
    }
    Ok(aside)
}
