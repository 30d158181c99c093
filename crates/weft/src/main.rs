//! weft: container networks for Linux. See README.md for a tour.

mod cni;
mod commands;
mod config;
mod daemon;
mod diagnose;
mod docker;
mod netavark;
mod ops;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

/// `weft --version`: the release, then which commit it was built from.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("WEFT_BUILD_INFO"), ")");

/// Options every command takes; `weft --help` lists them, a command's own
/// help leaves them out (as docker and podman do).
const GLOBAL: &str = "Global options";
const CLUSTER: &str = "Cluster options (global)";

#[derive(Parser)]
#[command(
    name = "weft",
    version = VERSION,
    about = "Container networks for Linux: bridges, veth pairs, IPAM, NAT, isolation",
    after_help = "Run 'weft COMMAND --help' for more on a command. Every command takes the \
                  global options above."
)]
pub struct Cli {
    /// Where weft keeps its state (an embedded database).
    #[arg(long, global = true, env = "WEFT_STATE_DIR", default_value = "/var/lib/weft",
          value_name = "DIR", help_heading = GLOBAL)]
    state_dir: PathBuf,
    /// etcd endpoints of the cluster store (comma-separated); without it weft
    /// manages this host alone with its embedded store.
    #[arg(long, global = true, env = "WEFT_ETCD", value_delimiter = ',', value_name = "URLS",
          help_heading = CLUSTER)]
    etcd: Vec<String>,
    /// This host's name in the cluster (default: the hostname).
    #[arg(long, global = true, env = "WEFT_NODE", help_heading = CLUSTER)]
    node: Option<String>,
    /// CA certificate to verify etcd's TLS certificate.
    #[arg(long, global = true, env = "WEFT_ETCD_CA", value_name = "FILE", help_heading = CLUSTER)]
    etcd_ca: Option<PathBuf>,
    /// Client certificate for etcd (with --etcd-key).
    #[arg(long, global = true, env = "WEFT_ETCD_CERT", requires = "etcd_key",
          value_name = "FILE", help_heading = CLUSTER)]
    etcd_cert: Option<PathBuf>,
    /// Client key for etcd.
    #[arg(long, global = true, env = "WEFT_ETCD_KEY", requires = "etcd_cert",
          value_name = "FILE", help_heading = CLUSTER)]
    etcd_key: Option<PathBuf>,
    /// User for etcd's authentication; the password comes from
    /// WEFT_ETCD_PASSWORD (or etcd_password in the config file), never
    /// from the command line.
    #[arg(long, global = true, env = "WEFT_ETCD_USER", value_name = "USER", help_heading = CLUSTER)]
    etcd_user: Option<String>,
    /// Config file with defaults for the cluster options (`key = value`
    /// lines: etcd, node, etcd_ca, etcd_cert, etcd_key, etcd_user,
    /// etcd_password).
    #[arg(long, global = true, env = "WEFT_CONFIG", default_value = "/etc/weft/weft.conf",
          value_name = "FILE", help_heading = GLOBAL)]
    config: PathBuf,
    /// Log what weft does to stderr (-vv for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = GLOBAL)]
    verbose: u8,
    #[command(subcommand)]
    command: commands::Command,
}

/// The command line parser: global options hidden from every command's
/// own help (they are in `weft --help`), still accepted everywhere.
pub fn cli_command() -> clap::Command {
    without_globals_in_commands(Cli::command())
}

/// The parser as the man pages show it: no `help` command.
pub fn man_command() -> clap::Command {
    without_globals_in_commands(Cli::command().disable_help_subcommand(true))
}

fn without_globals_in_commands(cmd: clap::Command) -> clap::Command {
    fn hide_globals(cmd: clap::Command, top: bool) -> clap::Command {
        let cmd = if top {
            cmd
        } else {
            cmd.mut_args(|a| {
                let global = matches!(
                    a.get_help_heading(),
                    Some(h) if h == GLOBAL || h == CLUSTER
                );
                if global {
                    a.hide(true)
                } else {
                    a
                }
            })
        };
        cmd.mut_subcommands(|s| hide_globals(s, false))
    }
    // Global options reach the subcommands when the parser is built.
    let mut cmd = cmd;
    cmd.build();
    hide_globals(cmd, true)
}

/// Parses the command line. Help and version go to stdout; an argument
/// error is one `weft: error:` line (clap's tip folded into it) and exit 2.
fn parse_args() -> Result<Cli, ExitCode> {
    // clap builds only the commands on the way to the one given; the
    // parser with hidden globals builds them all, so it is made only when
    // help is shown (attach and detach are on the hot path).
    let parsed = Cli::try_parse();
    match parsed {
        Ok(cli) => Ok(cli),
        Err(e) => {
            use clap::error::ErrorKind as K;
            let help = |e: clap::Error| {
                let shown = cli_command().try_get_matches_from(std::env::args_os()).err();
                let _ = shown.filter(|s| s.kind() == e.kind()).unwrap_or(e).print();
            };
            if matches!(e.kind(), K::DisplayHelp | K::DisplayVersion) {
                help(e);
                return Err(ExitCode::SUCCESS);
            }
            if e.kind() == K::DisplayHelpOnMissingArgumentOrSubcommand {
                help(e);
                return Err(ExitCode::from(2));
            }
            eprintln!("weft: error: {}", usage_error_line(&e.render().to_string()));
            Err(ExitCode::from(2))
        }
    }
}

/// clap's several-line error as one line: the message, its tip, and where
/// to read more.
fn usage_error_line(rendered: &str) -> String {
    let mut msg = String::new();
    let mut usage = None;
    for l in rendered.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(m) = l.strip_prefix("error: ") {
            msg = m.trim_end_matches(':').to_string();
        } else if let Some(t) = l.strip_prefix("tip: ") {
            msg.push_str(&format!(" ({t})"));
        } else if let Some(u) = l.strip_prefix("Usage: ") {
            usage = u.split(" [OPTIONS]").next().map(|u| u.split(" <").next().unwrap_or(u));
            usage = usage.map(|u| u.split(" [").next().unwrap_or(u));
        } else if usage.is_none() && !l.starts_with("For more information") {
            // The missing arguments, one per line under the message.
            let sep = if msg.ends_with("provided") { ": " } else { ", " };
            msg.push_str(sep);
            msg.push_str(l);
        }
    }
    match usage {
        Some(u) => format!("{msg}; see '{} --help'", u.trim()),
        None => msg,
    }
}

fn main() -> ExitCode {
    // Podman runs its network backend as `netavark` (weft linked under
    // that name in a helper directory); `weft netavark ...` is the same.
    let args: Vec<_> = std::env::args_os().collect();
    if let Some(args) = netavark::invocation(&args) {
        init_logs(0);
        return netavark::main(args);
    }
    if netavark::is_aardvark(&args) {
        return netavark::aardvark_main(&args);
    }
    // Runtimes run CNI plugins with CNI_COMMAND set and no arguments.
    if std::env::var_os("CNI_COMMAND").is_some() {
        init_logs(0);
        return cni::main();
    }
    if let Some(code) = daemon::client::forward() {
        return code;
    }
    let cli = match parse_args() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    // `weft dns` says when it starts, fails a query and stops, by default
    // (its log has a line per event, not per request it answers well).
    let base = u8::from(matches!(cli.command, commands::Command::Dns(_)));
    init_logs(cli.verbose + base);
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
pub(crate) fn error_line(e: &anyhow::Error) -> String {
    let msg: Vec<String> = e.chain().map(|c| c.to_string()).collect();
    format!("weft: error: {}", msg.join(": "))
}

/// Logs go to stderr only: stdout carries results (JSON, CNI).
fn init_logs(verbose: u8) {
    // hickory logs every DNS query (two lines, with its name) at info and
    // malformed datagrams at info or warn: below -vv only its errors, or
    // a container could write to the host's log at its packet rate.
    let level = match verbose {
        0 => "warn,hickory_server=error,hickory_proto=error",
        1 => "info,hickory_server=error,hickory_proto=error",
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

#[cfg(test)]
mod tests {
    use super::usage_error_line;

    #[test]
    fn clap_errors_become_one_line() {
        let missing = "error: the following required arguments were not provided:\n  \
                       <NETWORK>\n  <CONTAINER>\n\nUsage: weft attach <NETWORK> <CONTAINER>\n\n\
                       For more information, try '--help'.\n";
        assert_eq!(
            usage_error_line(missing),
            "the following required arguments were not provided: <NETWORK>, <CONTAINER>; \
             see 'weft attach --help'"
        );
        let typo = "error: unrecognized subcommand 'netwrk'\n\n  tip: a similar subcommand \
                    exists: 'network'\n\nUsage: weft [OPTIONS] <COMMAND>\n\nFor more \
                    information, try '--help'.\n";
        assert_eq!(
            usage_error_line(typo),
            "unrecognized subcommand 'netwrk' (a similar subcommand exists: 'network'); \
             see 'weft --help'"
        );
    }
}
