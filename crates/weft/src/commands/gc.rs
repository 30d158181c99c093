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
}

impl Gc {
    pub fn run(self, state_dir: &Path) -> Result<()> {
        let mut ctx = super::mutating(state_dir)?;
        let report = gc::run(&mut ctx)?;
        if self.json {
            return output::json(&report);
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
        crate::output::line(&format!("gc: {} repair(s)", report.count()));
        Ok(())
    }
}
