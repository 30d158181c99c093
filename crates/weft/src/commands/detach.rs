use std::path::Path;

use anyhow::Result;
use clap::Args;

use crate::ops::endpoint;

#[derive(Args)]
pub struct Detach {
    network: String,
    /// Container name or id.
    container: String,
    /// Only this interface (default: every interface of the container on the network).
    #[arg(long)]
    ifname: Option<String>,
}

impl Detach {
    pub fn run(self, state_dir: &Path) -> Result<()> {
        let mut ctx = super::mutating(state_dir)?;
        for ep in
            endpoint::detach(&mut ctx, &self.network, &self.container, self.ifname.as_deref())?
        {
            println!("{} {} {}", ep.container, ep.network, ep.address.addr());
        }
        Ok(())
    }
}
