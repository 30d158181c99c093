//! `weft topology`: draw what exists now, from the kernel and the store.

use std::path::Path;

use anyhow::Result;
use clap::{Args, ValueEnum};

use crate::diagnose;
use crate::ops::Context;

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Dot,
    Svg,
    Json,
}

#[derive(Args)]
pub struct Topology {
    /// Only this network.
    network: Option<String>,
    /// text (a drawing), dot (Graphviz), svg or json.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Width of the text drawing (default: the terminal's, else 100).
    #[arg(long)]
    width: Option<usize>,
}

impl Topology {
    pub fn run(self, state_dir: &Path) -> Result<()> {
        let mut ctx = Context::open(state_dir)?;
        let t = diagnose::topology(&mut ctx, self.network.as_deref())?;
        match self.format {
            Format::Text => {
                crate::output::text(&diagnose::render_text::render(&t, diagnose::width(self.width)))
            }
            Format::Dot => crate::output::text(&diagnose::render_dot::render(&t)),
            Format::Svg => crate::output::text(&diagnose::render_svg::render(&t)),
            Format::Json => crate::output::json(&t)?,
        }
        Ok(())
    }
}
