//! weft as a CNI plugin: when CNI_COMMAND is set, the same binary speaks
//! the CNI protocol (config on stdin, result or error JSON on stdout, logs
//! only on stderr) over the same store, IPAM and datapath as the CLI.

mod add;
mod check;
mod errors;
mod gc;
mod status;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use weft_cni::{CniError, Code, Command, Invocation, NetConf, Version};

use crate::ops::{self, Context};

pub use errors::to_cni;

/// Entry point when the process was started as a CNI plugin.
pub fn main() -> ExitCode {
    let mut input = Vec::new();
    let read = std::io::stdin()
        .take(weft_cni::MAX_CONFIG_BYTES as u64 + 1)
        .read_to_end(&mut input)
        .map_err(|e| CniError::new(Code::Io, format!("read config from stdin: {e}")));
    if read.is_ok() {
        if let Some(code) = crate::daemon::client::forward_cni(&input) {
            return code;
        }
    }
    let mut version_hint = String::new();
    let (stdout, ok) = reply(read.and_then(|_| run(&input, &mut version_hint)), &version_hint);
    let _ = std::io::stdout().lock().write_all(stdout.as_bytes());
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// What the plugin prints for an outcome (result or error JSON), and
/// whether it succeeded.
pub fn reply(
    outcome: Result<Option<serde_json::Value>, CniError>,
    version_hint: &str,
) -> (String, bool) {
    match outcome {
        Ok(Some(v)) => (format!("{v}\n"), true),
        Ok(None) => (String::new(), true),
        Err(e) => {
            let e = e.in_version(version_hint);
            tracing::warn!(code = e.code, "{}", e.msg);
            (format!("{}\n", e.to_json()), false)
        }
    }
}

/// ADD or DEL with an open context: how `weft daemon` runs them for a
/// plugin process (the state directory was checked by then).
pub fn call_with(
    ctx: &mut Context,
    inv: &Invocation,
    input: &[u8],
    version_hint: &mut String,
) -> Result<Option<serde_json::Value>, CniError> {
    let (conf, v) = NetConf::parse(input)?;
    *version_hint = conf.cni_version.clone();
    match inv.command {
        Command::Add => add::add(ctx, inv, &conf, v).map(|r| Some(r.to_json(v))),
        Command::Del => add::del(ctx, inv, &conf).map(|()| None),
        _ => Err(CniError::new(Code::Internal, "only ADD and DEL run in the daemon")),
    }
}

fn run(input: &[u8], version_hint: &mut String) -> Result<Option<serde_json::Value>, CniError> {
    let inv = Invocation::from_vars(|k| std::env::var(k).ok())?;
    // Cluster settings (overlay networks) come from the environment or
    // weft's config file, as for the CLI: runtimes pass no flags.
    let env_path = |k: &str| std::env::var_os(k).map(PathBuf::from);
    let file = env_path("WEFT_CONFIG").unwrap_or_else(|| PathBuf::from("/etc/weft/weft.conf"));
    let flags = crate::config::Flags {
        etcd: std::env::var("WEFT_ETCD")
            .map(|v| v.split(',').map(str::to_string).collect())
            .unwrap_or_default(),
        node: std::env::var("WEFT_NODE").ok(),
        etcd_ca: env_path("WEFT_ETCD_CA"),
        etcd_cert: env_path("WEFT_ETCD_CERT"),
        etcd_key: env_path("WEFT_ETCD_KEY"),
        etcd_user: std::env::var("WEFT_ETCD_USER").ok(),
        etcd_password: std::env::var("WEFT_ETCD_PASSWORD").ok(),
    };
    let cluster = crate::config::Cluster::resolve(&file, flags)
        .map_err(|e| CniError::new(Code::InvalidConfig, format!("{e:#}")))?;
    ops::context::set_cluster(cluster);
    if inv.command == Command::Version {
        return Ok(Some(serde_json::to_value(weft_cni::version::info()).expect("serializes")));
    }
    let (conf, v) = NetConf::parse(input)?;
    *version_hint = conf.cni_version.clone();
    match inv.command {
        Command::Add => add::add(&mut mutating(&conf)?, &inv, &conf, v).map(|r| Some(r.to_json(v))),
        Command::Del => add::del(&mut mutating(&conf)?, &inv, &conf).map(|()| None),
        Command::Check => check::check(&inv, &conf, v).map(|()| None),
        Command::Status => status::status(&conf, v).map(|()| None),
        Command::Gc => gc::gc(&conf, v).map(|()| None),
        Command::Version => unreachable!("handled above"),
    }
}

pub fn state_dir(conf: &NetConf) -> PathBuf {
    conf.state_dir
        .clone()
        .or_else(|| std::env::var_os("WEFT_STATE_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/lib/weft"))
}

/// A context for a command that changes things (ADD, DEL, GC).
fn mutating(conf: &NetConf) -> Result<Context, CniError> {
    ops::context::require_net_admin()
        .map_err(|e| CniError::new(Code::NotAvailable, e.to_string()))?;
    let mut ctx = Context::open(&state_dir(conf)).map_err(to_cni)?;
    ops::gc::reclaim_after_reboot(&mut ctx).map_err(to_cni)?;
    Ok(ctx)
}

fn require(v: Version, ok: bool, what: &str) -> Result<(), CniError> {
    if ok {
        Ok(())
    } else {
        Err(CniError::new(
            Code::IncompatibleVersion,
            format!("{what} is not part of CNI {}; use a newer cniVersion", v.as_str()),
        ))
    }
}
