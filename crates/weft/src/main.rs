//! weft: container networks for Linux. See README.md for a tour.

mod cni;
mod commands;
mod config;
mod daemon;
mod diagnose;
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
    /// etcd endpoints of the cluster store (comma-separated); without it weft
    /// manages this host alone with its embedded store.
    #[arg(long, global = true, env = "WEFT_ETCD", value_delimiter = ',')]
    etcd: Vec<String>,
    /// This host's name in the cluster (default: the hostname).
    #[arg(long, global = true, env = "WEFT_NODE")]
    node: Option<String>,
    /// CA certificate to verify etcd's TLS certificate.
    #[arg(long, global = true, env = "WEFT_ETCD_CA")]
    etcd_ca: Option<PathBuf>,
    /// Client certificate for etcd (with --etcd-key).
    #[arg(long, global = true, env = "WEFT_ETCD_CERT", requires = "etcd_key")]
    etcd_cert: Option<PathBuf>,
    /// Client key for etcd.
    #[arg(long, global = true, env = "WEFT_ETCD_KEY", requires = "etcd_cert")]
    etcd_key: Option<PathBuf>,
    /// User for etcd's authentication; the password comes from
    /// WEFT_ETCD_PASSWORD (or etcd_password in the config file), never
    /// from the command line.
    #[arg(long, global = true, env = "WEFT_ETCD_USER")]
    etcd_user: Option<String>,
    /// Config file with defaults for the options above (`key = value` lines:
    /// etcd, node, etcd_ca, etcd_cert, etcd_key, etcd_user, etcd_password).
    #[arg(long, global = true, env = "WEFT_CONFIG", default_value = "/etc/weft/weft.conf")]
    config: PathBuf,
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
    if let Some(code) = daemon::client::forward() {
        return code;
    }
    let cli = Cli::parse();
    init_logs(cli.verbose);
    let setup = config::Cluster::resolve(
        &cli.config,
        config::Flags {
            etcd: cli.etcd.clone(),
            node: cli.node.clone(),
            etcd_ca: cli.etcd_ca.clone(),
            etcd_cert: cli.etcd_cert.clone(),
            etcd_key: cli.etcd_key.clone(),
            etcd_user: cli.etcd_user.clone(),
            etcd_password: std::env::var("WEFT_ETCD_PASSWORD").ok(),
        },
    )
    .map(ops::context::set_cluster);
    let result = setup.and_then(|()| cli.command.run(&cli.state_dir));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", error_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// One line: the outermost context first, then its causes.
fn error_line(e: &anyhow::Error) -> String {
    let msg: Vec<String> = e.chain().map(|c| c.to_string()).collect();
    format!("weft: error: {}", msg.join(": "))
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
