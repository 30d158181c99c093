use std::path::Path;

use anyhow::Result;
use clap::Args;

#[derive(Args)]
pub struct Daemon {}

impl Daemon {
    pub fn run(self, state_dir: &Path) -> Result<()> {
        crate::daemon::server::run(state_dir)
    }
}
