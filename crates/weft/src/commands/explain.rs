//! `weft explain SRC DST`: the path of one packet, step by step. Exits 0
//! when every step passes, 1 when one fails (naming it, why, and a fix).

use std::path::Path;

use anyhow::{bail, Result};
use clap::Args;

use crate::diagnose::{self, ExplainRequest, Proto};
use crate::ops::Context;

#[derive(Args)]
pub struct Explain {
    /// The sending container (name).
    src: String,
    /// The destination: a container name or an address.
    dst: String,
    /// Destination port (with --proto tcp, the default with a port, or udp).
    #[arg(long)]
    port: Option<u16>,
    /// Protocol of the packet (default: icmp, or tcp with --port).
    #[arg(long, value_enum)]
    proto: Option<Proto>,
    /// Also send a real packet and report where it was seen (interface counters).
    #[arg(long)]
    probe: bool,
    /// Print the steps as JSON.
    #[arg(long)]
    json: bool,
    /// Width of the text output (default: the terminal's, else 100).
    #[arg(long)]
    width: Option<usize>,
}

impl Explain {
    pub fn run(self, state_dir: &Path) -> Result<()> {
        let proto =
            self.proto.unwrap_or(if self.port.is_some() { Proto::Tcp } else { Proto::Icmp });
        match (proto, self.port) {
            (Proto::Icmp, Some(_)) => bail!("--port needs --proto tcp or udp"),
            (Proto::Tcp | Proto::Udp, None) => bail!("--proto {} needs --port", proto.name()),
            _ => {}
        }
        let mut ctx = Context::open(state_dir)?;
        let req = ExplainRequest {
            src: self.src,
            dst: self.dst,
            proto,
            port: self.port,
            probe: self.probe,
        };
        let e = diagnose::explain(&mut ctx, &req)?;
        if self.json {
            crate::output::json(&e)?;
        } else {
            crate::output::text(&diagnose::steps::render_text(&e, diagnose::width(self.width)));
        }
        if let Some((n, s)) = e.failure() {
            bail!(
                "explain {} -> {}: step {n} ({}) fails: {}",
                req.src,
                req.dst,
                s.step.name(),
                s.why.as_deref().unwrap_or("?")
            );
        }
        Ok(())
    }
}
