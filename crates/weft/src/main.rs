//! weft: container networks for Linux. See README.md for a tour.

mod cni;
mod commands;
mod ops;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "weft",
    version,
    about = "Container networks for Linux: bridges, veth pairs, IPAM, NAT, isolation"
)]
struct Cli {
    /// Where weft keeps its state (an embedded database).
    #[arg(long, global = true, env = "WEFT_STATE_DIR", default_value = "/var/lib/weft")]
    state_dir: PathBuf,
    /// Log what weft does to stderr (-vv for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: commands::Command,
}

fn main() -> ExitCode {
    // Runtimes run CNI plugins with CNI_COMMAND set and no arguments.
    if std::env::var_os("CNI_COMMAND").is_some() {
        init_logs(0);
        return cni::main();
    }
    let cli = Cli::parse();
    init_logs(cli.verbose);
    match cli.command.run(&cli.state_dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the outermost context first, then its causes.
            let msg: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("weft: error: {}", msg.join(": "));
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr only: stdout carries results (JSON, CNI).
fn init_logs(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEFT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
