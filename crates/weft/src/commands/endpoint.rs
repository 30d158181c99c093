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
    #[arg(long, value_name = "NETWORK")]
    network: Option<String>,
    /// Print JSON (stable field names) instead of a table.
    #[arg(long)]
    json: bool,
}

impl EndpointCommand {
    pub fn run(self, state_dir: &Path) -> Result<()> {
        let EndpointCommand::Ls(c) = self;
        let mut ctx = Context::open(state_dir)?;
        if let Some(n) = &c.network {
            if ctx.store.network(n)?.is_none() {
                bail!("{}", crate::ops::network::missing(&ctx, n, None)?);
            }
        }
        let eps = ctx.store.endpoints(c.network.as_deref())?;
        let eps = output::endpoint_views(&mut ctx, eps);
        if c.json {
            output::json(&eps)
        } else {
            output::endpoint_table(&eps);
            Ok(())
        }
    }
}
