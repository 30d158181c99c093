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
    let mut version_hint = String::new();
    match run(&mut version_hint) {
        Ok(out) => {
            if let Some(v) = out {
                let mut stdout = std::io::stdout().lock();
                let _ = writeln!(stdout, "{v}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let e = e.in_version(&version_hint);
            println!("{}", e.to_json());
            tracing::warn!(code = e.code, "{}", e.msg);
            ExitCode::FAILURE
        }
    }
}

fn run(version_hint: &mut String) -> Result<Option<serde_json::Value>, CniError> {
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
    };
    let cluster = crate::config::Cluster::resolve(&file, flags)
        .map_err(|e| CniError::new(Code::InvalidConfig, format!("{e:#}")))?;
    ops::context::set_cluster(cluster);
    let mut input = Vec::new();
    std::io::stdin()
        .take(weft_cni::MAX_CONFIG_BYTES as u64 + 1)
        .read_to_end(&mut input)
        .map_err(|e| CniError::new(Code::Io, format!("read config from stdin: {e}")))?;
    if inv.command == Command::Version {
        return Ok(Some(serde_json::to_value(weft_cni::version::info()).expect("serializes")));
    }
    let (conf, v) = NetConf::parse(&input)?;
    *version_hint = conf.cni_version.clone();
    match inv.command {
        Command::Add => add::add(&inv, &conf, v).map(|r| Some(r.to_json(v))),
        Command::Del => add::del(&inv, &conf).map(|()| None),
        Command::Check => check::check(&inv, &conf, v).map(|()| None),
        Command::Status => status::status(&conf, v).map(|()| None),
        Command::Gc => gc::gc(&conf, v).map(|()| None),
        Command::Version => unreachable!("handled above"),
    }
}

fn state_dir(conf: &NetConf) -> PathBuf {
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
