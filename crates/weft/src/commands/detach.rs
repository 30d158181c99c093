use std::path::Path;

use anyhow::Result;
use clap::Args;

use crate::ops::{endpoint, Context};
use crate::output;

#[derive(Args)]
pub struct Detach {
    /// The network to unplug the container from.
    network: String,
    /// Container name or id.
    container: String,
    /// Only this interface (default: every interface of the container on the network).
    #[arg(long)]
    ifname: Option<String>,
}

impl Detach {
    pub fn run(self, state_dir: &Path) -> Result<()> {
        self.run_with(&mut super::mutating(state_dir)?)
    }

    /// Runs with an open context (the daemon keeps its contexts open).
    pub fn run_with(self, ctx: &mut Context) -> Result<()> {
        for ep in endpoint::detach(ctx, &self.network, &self.container, self.ifname.as_deref())? {
            output::line(&format!(
                "detached {} from {} ({} {} released)",
                ep.container,
                ep.network,
                ep.ifname,
                ep.address.addr()
            ));
        }
        Ok(())
    }
}
