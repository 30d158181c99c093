//! `weft firewall reload|show`: weft's nftables table from the store.

use std::path::Path;

use anyhow::Result;
use clap::Subcommand;
use weft_firewall::Firewall;

use crate::output;

#[derive(Subcommand)]
pub enum FirewallCommand {
    /// Rebuild weft's table (rules, network sets, published ports) from the
    /// store in one transaction: after someone flushed or deleted it.
    Reload,
    /// What is in weft's table now: rule count, set and map elements.
    Show {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

impl FirewallCommand {
    pub fn run(self, state_dir: &Path) -> Result<()> {
        match self {
            FirewallCommand::Reload => {
                let mut ctx = super::mutating(state_dir)?;
                // The table is rebuilt from this store alone: not over
                // another store's networks.
                let links = ctx.host()?.links()?;
                crate::ops::owner::check_namespace(&ctx, &links, &ctx.store.networks()?)?;
                ctx.sync_firewall()?;
                let st = Firewall::new().status()?;
                let ports: usize = st.maps.values().map(Vec::len).sum();
                crate::output::line(&format!(
                    "reloaded table inet {}: {} rules, {ports} port elements",
                    Firewall::new().table(),
                    st.rules
                ));
                Ok(())
            }
            FirewallCommand::Show { json } => {
                let st = Firewall::new().status()?;
                if json {
                    return output::json(&serde_json::json!({
                        "present": st.present, "rules": st.rules, "chains": st.chains,
                        "sets": st.sets, "maps": st.maps,
                    }));
                }
                if !st.present {
                    crate::output::line(&format!("no table inet {}", Firewall::new().table()));
                    return Ok(());
                }
                crate::output::line(&format!(
                    "table inet {}: {} rules",
                    Firewall::new().table(),
                    st.rules
                ));
                for (name, elems) in st.sets.iter().chain(&st.maps) {
                    crate::output::line(&format!("{name}:"));
                    for e in elems {
                        crate::output::line(&format!("  {e}"));
                    }
                }
                Ok(())
            }
        }
    }
}
