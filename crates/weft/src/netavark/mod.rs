//! weft as Podman's network backend: started as `netavark` (a symlink to
//! the weft binary in one of Podman's helper directories) or as `weft
//! netavark`, it speaks netavark's command line and JSON (Podman 4.3):
//!
//! ```text
//! netavark [--config DIR] [--rootless=false] [--aardvark-binary PATH] setup|teardown NETNS
//! ```
//!
//! with the network options on stdin. The state directory is weft's
//! default, /var/lib/weft, not `--config`: Podman's containers live in the
//! same store as every other weft endpoint. It is fixed because Podman
//! runs most teardowns from conmon's cleanup command, whose environment
//! is not the user's: a `WEFT_STATE_DIR` seen by the setup would be missing
//! at the teardown, which would then look in another store.

mod detached;
mod dns;
mod errors;
pub(crate) mod linger;
mod setup;
mod teardown;
mod types;

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};

pub use errors::one_line;

use crate::ops::Context;
use types::NetworkOptions;

/// Podman's JSON is small; more than this is not Podman.
const MAX_INPUT: u64 = 16 << 20;

#[derive(Parser)]
#[command(name = "netavark", version, about = "weft, speaking netavark's interface for Podman")]
struct Args {
    /// netavark's state directory; weft keeps its state in /var/lib/weft.
    #[arg(short, long, value_name = "DIR")]
    config: Option<PathBuf>,
    /// Podman's rootless mode (not supported by weft).
    #[arg(short, long, action = clap::ArgAction::Set, default_value_t = false)]
    rootless: bool,
    /// aardvark-dns for netavark; weft serves names itself.
    #[arg(short, long, value_name = "PATH")]
    aardvark_binary: Option<String>,
    /// Read the network options from this file instead of stdin.
    #[arg(short, long, value_name = "PATH")]
    file: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Plug the container into its networks; prints the status blocks.
    Setup { netns: PathBuf },
    /// Unplug the container from its networks.
    Teardown { netns: PathBuf },
    /// Print the version as JSON.
    Version,
    /// Remove Podman networks left idle (started by a teardown).
    #[command(hide = true)]
    Linger,
}

/// If this process was started as netavark (by name, or `weft netavark`),
/// the arguments netavark's parser gets.
pub fn invocation(args: &[OsString]) -> Option<Vec<OsString>> {
    let argv0 = args.first().map(std::path::Path::new)?;
    if argv0.file_name().is_some_and(|n| n == "netavark") {
        return Some(args.to_vec());
    }
    if args.get(1).is_some_and(|a| a == "netavark") {
        return Some(args[1..].to_vec());
    }
    None
}

/// Installed as `aardvark-dns` too, so that Podman finds a DNS helper and
/// enables names on its networks; weft's own DNS serves them (see `dns`),
/// so nothing runs this name but a version query.
pub fn is_aardvark(args: &[OsString]) -> bool {
    args.first()
        .map(std::path::Path::new)
        .and_then(|p| p.file_name())
        .is_some_and(|n| n == "aardvark-dns")
}

pub fn aardvark_main(args: &[OsString]) -> ExitCode {
    if args.iter().any(|a| a == "--version" || a == "-V" || a == "version") {
        println!("aardvark-dns {} (weft: names are served by weft dns)", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    eprintln!("weft: error: this is weft, not aardvark-dns; weft serves container names itself (`weft dns`)");
    ExitCode::FAILURE
}

pub fn main(args: Vec<OsString>) -> ExitCode {
    let args = match Args::try_parse_from(args) {
        Ok(a) => a,
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let msg = e.render().to_string();
            let first = msg.lines().next().unwrap_or("bad arguments").trim_start_matches("error: ");
            return fail(&anyhow::anyhow!("{first}"));
        }
    };
    match run(args) {
        Ok(Some(out)) => {
            let _ = std::io::stdout().lock().write_all(out.as_bytes());
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(e: &anyhow::Error) -> ExitCode {
    tracing::warn!("{}", one_line(e));
    let _ = writeln!(std::io::stdout().lock(), "{}", errors::reply(e));
    ExitCode::FAILURE
}

fn run(args: Args) -> Result<Option<String>> {
    if let Cmd::Version = args.command {
        let v = serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "commit": "weft",
            "build_time": "",
            "target": std::env::consts::ARCH,
        });
        return Ok(Some(format!("{v:#}\n")));
    }
    if let Cmd::Linger = args.command {
        return linger::run_child(Path::new(STATE_DIR)).map(|()| None);
    }
    tracing::debug!(config = ?args.config, aardvark = ?args.aardvark_binary, "netavark arguments");
    if args.rootless {
        bail!("rootless Podman is not supported by weft yet; use Podman's own netavark for it");
    }
    let input = read_input(args.file.as_deref())?;
    let opts = NetworkOptions::parse(&input)?;
    crate::ops::context::require_net_admin()?;
    let mut ctx = Context::open(Path::new(STATE_DIR))?;
    crate::ops::gc::reclaim_after_reboot(&mut ctx)?;
    // One Podman operation at a time: a teardown removing a network with
    // its last container must not race a setup plugging into it.
    let _lock = crate::ops::context::lock(&ctx.state_dir.join("podman.lock"))?;
    teardown::reclaim_vanished(&mut ctx)?;
    // Not this call's business: an idle network that cannot go now is
    // tried again by the next call (and reported by `weft gc`).
    if let Err(e) = linger::remove_expired(&mut ctx) {
        tracing::warn!("{}", one_line(&e));
    }
    match args.command {
        Cmd::Setup { netns } => {
            let blocks = setup::setup(&mut ctx, &netns, &opts)
                .with_context(|| format!("setup of {}", opts.container_name))?;
            Ok(Some(format!("{}\n", serde_json::to_string(&blocks)?)))
        }
        Cmd::Teardown { netns } => teardown::teardown(&mut ctx, &netns, &opts).map(|()| None),
        Cmd::Version | Cmd::Linger => unreachable!("handled above"),
    }
}

fn read_input(file: Option<&std::path::Path>) -> Result<Vec<u8>> {
    let mut input = Vec::new();
    match file {
        Some(f) => std::fs::File::open(f)
            .and_then(|fh| fh.take(MAX_INPUT).read_to_end(&mut input))
            .with_context(|| format!("read {}", f.display()))?,
        None => std::io::stdin()
            .take(MAX_INPUT)
            .read_to_end(&mut input)
            .context("read the network options from stdin")?,
    };
    Ok(input)
}

const STATE_DIR: &str = "/var/lib/weft";

/// Store key marking a network that Podman's setup created (its value:
/// Podman's network id; empty once released).
fn owner_key(network: &str) -> String {
    format!("podman-network:{network}")
}

/// Drops what marks `network` as made by Podman's setup, and idle: called
/// when the network is removed, by any means.
pub(crate) fn forget(ctx: &Context, network: &str) -> Result<()> {
    for key in [owner_key(network), linger::idle_key(network)] {
        if ctx.store.meta(&key)?.is_some_and(|v| !v.is_empty()) {
            ctx.store.set_meta(&key, "")?;
        }
    }
    Ok(())
}

fn owned(ctx: &Context, network: &str) -> Result<bool> {
    Ok(ctx.store.meta(&owner_key(network))?.is_some_and(|v| !v.is_empty()))
}
