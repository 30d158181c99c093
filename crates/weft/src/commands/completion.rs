//! `weft completion SHELL` (shell completion, as docker and podman have
//! it) and the hidden `weft man DIR` that `make install` uses to write the
//! man pages: both generated from the command line parser itself.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;

#[derive(Args)]
pub struct Completion {
    /// bash, zsh, fish, elvish or powershell.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

impl Completion {
    pub fn run(self) -> Result<()> {
        let mut cmd = crate::cli_command();
        let mut script = Vec::new();
        clap_complete::generate(self.shell, &mut cmd, "weft", &mut script);
        crate::output::text(&String::from_utf8_lossy(&script));
        Ok(())
    }
}

#[derive(Args)]
pub struct Man {
    /// Directory to write weft.1, weft-network.1, weft-network-create.1, ...
    dir: PathBuf,
}

impl Man {
    /// One page per command, named as git's are (`weft-network-create.1`).
    pub fn run(self) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("create {}", self.dir.display()))?;
        clap_mangen::generate_to(crate::man_command(), &self.dir)
            .with_context(|| format!("write man pages to {}", self.dir.display()))?;
        crate::output::line(&format!("wrote man pages to {}", self.dir.display()));
        Ok(())
    }
}
