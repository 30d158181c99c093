use std::path::Path;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};

use crate::ops::Context;
use crate::output;

#[derive(Subcommand)]
pub enum EndpointCommand {
    /// List endpoints.
    Ls(Ls),
}

#[derive(Args)]
pub struct Ls {
    /// Only endpoints of this network.
    #[arg(long)]
    network: Option<String>,
    #[arg(long)]
    json: bool,
}

impl EndpointCommand {
    pub fn run(self, state_dir: &Path) -> Result<()> {
        let EndpointCommand::Ls(c) = self;
        let ctx = Context::open(state_dir)?;
        if let Some(n) = &c.network {
            if ctx.store.network(n)?.is_none() {
                bail!("network {n} does not exist");
            }
        }
        let eps = ctx.store.endpoints(c.network.as_deref())?;
        if c.json {
            output::json(&eps)
        } else {
            output::endpoint_table(&eps);
            Ok(())
        }
    }
}
