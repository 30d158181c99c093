//! Running `nft`: apply a batch, remove the table, read it back.
//!
//! The `nftables` crate provides the JSON schema; nft itself is run here
//! rather than through `nftables::helper`, because the helper lets nft's
//! stderr go to ours and reports only "did not return successfully",
//! while weft's errors must carry nft's reason.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::{
    check, publish, ruleset, ruleset_with_ports, FirewallError, Guards, NetRules, PortRule,
};

/// The table weft owns, in family `inet` (one table for IPv4 and IPv6).
pub const DEFAULT_TABLE: &str = "weft";

#[derive(Debug, Clone)]
pub struct Firewall {
    program: PathBuf,
    table: String,
    /// Run batches through libnftables in-process when it can be loaded.
    in_process: bool,
}

/// What is in weft's table right now, read back from the kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableStatus {
    pub present: bool,
    /// Total number of rules in all chains.
    pub rules: usize,
    /// Rules per chain.
    pub chains: BTreeMap<String, usize>,
    /// Elements per set, as nft prints them (`weft-a`, `weft-a . weft-a`,
    /// `10.89.0.0/24`).
    pub sets: BTreeMap<String, Vec<String>>,
    /// Elements per map, as `key : value` (`0.0.0.0/0 . tcp . 8080 : 10.89.0.2`).
    pub maps: BTreeMap<String, Vec<String>>,
}

impl Default for Firewall {
    fn default() -> Firewall {
        Firewall::new()
    }
}

impl Firewall {
    /// Table `inet weft`.
    pub fn new() -> Firewall {
        Firewall::with_table(DEFAULT_TABLE)
    }

    pub fn with_table(name: &str) -> Firewall {
        Firewall { program: find_nft(), table: name.to_string(), in_process: true }
    }

    /// Uses another `nft` binary (and never the library).
    pub fn with_program(mut self, program: impl Into<PathBuf>) -> Firewall {
        self.program = program.into();
        self.in_process = false;
        self
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Rebuilds the table from the complete list of networks, atomically:
    /// packets see either the old table or the new one. Idempotent, and it
    /// restores a table someone flushed or deleted. No networks: no table.
    pub fn apply(&self, nets: &[NetRules]) -> Result<(), FirewallError> {
        check(nets)?;
        let action = if nets.is_empty() { "removing" } else { "applying" };
        let batch = serde_json::to_string(&ruleset(&self.table, nets))
            .expect("an nftables batch always serializes");
        self.nft(&["-j", "-f", "-"], Some(&batch), action).map(drop)
    }

    /// Like [`Firewall::apply`], with port publishing: its fixed rules and
    /// maps, filled with `ports` (every published port of every endpoint),
    /// and the `guards` of the forwarding weft owns. This is what weft
    /// applies; it restores a deleted or flushed table with all published
    /// ports.
    pub fn apply_with_ports(
        &self,
        nets: &[NetRules],
        ports: &[PortRule],
        guards: Guards,
    ) -> Result<(), FirewallError> {
        check(nets)?;
        let action = if nets.is_empty() { "removing" } else { "applying" };
        let batch = serde_json::to_string(&ruleset_with_ports(&self.table, nets, ports, guards))
            .expect("an nftables batch always serializes");
        self.nft(&["-j", "-f", "-"], Some(&batch), action).map(drop)
    }

    /// Adds the map elements of `ports` in one transaction; rules are not
    /// touched. Fails as a whole (nothing added) if an element clashes with
    /// one present, or the table lacks the maps (then rebuild it with
    /// [`Firewall::apply_with_ports`]).
    pub fn publish(&self, ports: &[PortRule]) -> Result<(), FirewallError> {
        if ports.is_empty() {
            return Ok(());
        }
        if self.in_process {
            return self.elements(ports, crate::nfnl::Op::Add, "publishing ports in");
        }
        let batch = serde_json::to_string(&publish::publish_batch(&self.table, ports))
            .expect("an nftables batch always serializes");
        self.nft(&["-j", "-f", "-"], Some(&batch), "publishing ports in").map(drop)
    }

    /// Deletes exactly the map elements of `ports`, in one transaction.
    pub fn unpublish(&self, ports: &[PortRule]) -> Result<(), FirewallError> {
        if ports.is_empty() {
            return Ok(());
        }
        if self.in_process {
            return self.elements(ports, crate::nfnl::Op::Delete, "unpublishing ports in");
        }
        let batch = serde_json::to_string(&publish::unpublish_batch(&self.table, ports))
            .expect("an nftables batch always serializes");
        self.nft(&["-j", "-f", "-"], Some(&batch), "unpublishing ports in").map(drop)
    }

    /// Map elements through nf_tables netlink directly (see `nfnl`).
    fn elements(
        &self,
        ports: &[PortRule],
        op: crate::nfnl::Op,
        action: &'static str,
    ) -> Result<(), FirewallError> {
        crate::nfnl::apply(&self.table, &publish::entries(ports), op).map_err(|e| {
            FirewallError::Nft {
                action,
                table: format!("inet {}", self.table),
                message: match e.raw_os_error() {
                    Some(libc::ENOENT) => format!("{e}: no such element, map or table"),
                    Some(libc::EEXIST) => format!("{e}: an element overlaps one present"),
                    _ => e.to_string(),
                },
            }
        })
    }

    /// Removes the table if present; other tables are untouched.
    pub fn remove(&self) -> Result<(), FirewallError> {
        self.apply(&[])
    }

    /// Whether weft's table exists (gone after `nft flush ruleset`): a
    /// cheap check that needs neither nft nor libnftables.
    pub fn table_present(&self) -> Result<bool, FirewallError> {
        crate::nfnl::table_exists(&self.table).map_err(|e| FirewallError::Nft {
            action: "looking up",
            table: format!("inet {}", self.table),
            message: e.to_string(),
        })
    }

    pub fn status(&self) -> Result<TableStatus, FirewallError> {
        let listed = self.nft(&["-j", "list", "table", "inet", &self.table], None, "listing");
        let out = match listed {
            Ok(out) => out,
            // nft's only way to say "no such table".
            Err(FirewallError::Nft { message, .. })
                if message.contains("No such file or directory") =>
            {
                return Ok(TableStatus::default());
            }
            Err(e) => return Err(e),
        };
        parse_listing(&out)
            .map_err(|why| FirewallError::BadListing { table: format!("inet {}", self.table), why })
    }

    fn nft(
        &self,
        args: &[&str],
        stdin: Option<&str>,
        action: &'static str,
    ) -> Result<String, FirewallError> {
        if let Some(lib) = crate::libnft::lib().filter(|_| self.in_process) {
            // The same command as nft's arguments would give, minus `-j -f -`.
            let cmd = match stdin {
                Some(batch) => batch.to_string(),
                None => args.iter().filter(|a| **a != "-j").copied().collect::<Vec<_>>().join(" "),
            };
            return lib.run(&cmd).map_err(|stderr| FirewallError::Nft {
                action,
                table: format!("inet {}", self.table),
                message: condense(&stderr, std::os::unix::process::ExitStatusExt::from_raw(1 << 8)),
            });
        }
        let program = self.program.display().to_string();
        let mut child = Command::new(&self.program)
            .args(args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| match error.kind() {
                ErrorKind::NotFound => FirewallError::NftNotFound(program.clone()),
                _ => FirewallError::NftSpawn { program: program.clone(), error },
            })?;
        // nft reads all of its input before it writes anything, so writing
        // first and collecting output after cannot deadlock. If nft quits
        // early (broken pipe), its stderr says why: report that instead.
        let written = match (stdin, child.stdin.take()) {
            (Some(input), Some(mut pipe)) => pipe.write_all(input.as_bytes()),
            _ => Ok(()),
        };
        let spawn_err = |error| FirewallError::NftSpawn { program: program.clone(), error };
        let out = child.wait_with_output().map_err(spawn_err)?;
        if !out.status.success() {
            return Err(FirewallError::Nft {
                action,
                table: format!("inet {}", self.table),
                message: condense(&String::from_utf8_lossy(&out.stderr), out.status),
            });
        }
        written.map_err(spawn_err)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// `nft` from PATH, else from the sbin directories a non-root PATH lacks.
fn find_nft() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join("nft"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| Path::new("nft").to_path_buf())
}

/// nft's stderr as one line: its `Error:` lines without the `internal:0:0-0:`
/// location that JSON input gets, plus a hint for the common cause.
fn condense(stderr: &str, status: std::process::ExitStatus) -> String {
    let errors: Vec<&str> =
        stderr.lines().filter_map(|l| l.find("Error: ").map(|i| l[i + 7..].trim())).collect();
    let mut msg = if errors.is_empty() {
        let first = stderr.lines().map(str::trim).find(|l| !l.is_empty());
        first.map_or_else(|| format!("nft exited with {status}"), str::to_string)
    } else {
        errors.join("; ")
    };
    if msg.len() > 300 {
        let cut = (0..=300).rev().find(|&i| msg.is_char_boundary(i)).unwrap_or(0);
        msg.truncate(cut);
        msg.push_str("...");
    }
    if msg.contains("Operation not permitted") {
        msg.push_str("; run as root or with CAP_NET_ADMIN");
    }
    msg
}

fn parse_listing(out: &str) -> Result<TableStatus, String> {
    let doc: Value = serde_json::from_str(out).map_err(|e| e.to_string())?;
    let objects = doc["nftables"].as_array().ok_or("no \"nftables\" array")?;
    let mut st = TableStatus { present: true, ..TableStatus::default() };
    for obj in objects {
        if let Some(chain) = obj.get("chain") {
            st.chains.entry(str_field(chain, "name")?).or_default();
        } else if let Some(rule) = obj.get("rule") {
            *st.chains.entry(str_field(rule, "chain")?).or_default() += 1;
            st.rules += 1;
        } else if let Some(set) = obj.get("set") {
            let elems = match set.get("elem") {
                Some(Value::Array(a)) => a.iter().map(element).collect(),
                Some(one) => vec![element(one)],
                None => Vec::new(),
            };
            st.sets.insert(str_field(set, "name")?, elems);
        } else if let Some(map) = obj.get("map") {
            let elems = match map.get("elem") {
                Some(Value::Array(a)) => a.iter().map(element).collect(),
                _ => Vec::new(),
            };
            st.maps.insert(str_field(map, "name")?, elems);
        }
    }
    Ok(st)
}

fn str_field(obj: &Value, key: &str) -> Result<String, String> {
    obj[key].as_str().map(str::to_string).ok_or_else(|| format!("object without {key:?}: {obj}"))
}

/// A set element in nft's own notation.
fn element(v: &Value) -> String {
    if let Some(s) = v.as_str() {
        return s.to_string();
    }
    if let Some(p) = v.get("prefix") {
        return format!("{}/{}", element(&p["addr"]), p["len"]);
    }
    if let Some(Value::Array(parts)) = v.get("concat") {
        return parts.iter().map(element).collect::<Vec<_>>().join(" . ");
    }
    if let Some(Value::Array(r)) = v.get("range") {
        return r.iter().map(element).collect::<Vec<_>>().join("-");
    }
    if let Some(e) = v.get("elem") {
        return element(&e["val"]);
    }
    // A map element: [key, value].
    if let Some([k, val]) = v.as_array().map(Vec::as_slice) {
        return format!("{} : {}", element(k), element(val));
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn missing_nft_is_actionable() {
        let fw = Firewall::with_table("t").with_program("/nonexistent/nft");
        let err = fw.remove().unwrap_err().to_string();
        assert_eq!(err, "nftables: `/nonexistent/nft` not found; install the nftables package");
    }

    #[test]
    fn stderr_condensed_to_one_line() {
        let st = std::process::ExitStatus::from_raw(256);
        let e = "internal:0:0-0: Error: Invalid set.\n\ninternal:0:0-0: Error: Parsing command array at index 1 failed.\n";
        assert_eq!(condense(e, st), "Invalid set.; Parsing command array at index 1 failed.");
        let e = "netlink: Error: cache initialization failed: Operation not permitted\n";
        assert_eq!(
            condense(e, st),
            "cache initialization failed: Operation not permitted; run as root or with CAP_NET_ADMIN"
        );
        assert_eq!(condense("", st), "nft exited with exit status: 1");
    }

    #[test]
    fn parses_a_listing() {
        let out = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
          {"table": {"family": "inet", "name": "weft", "handle": 2}},
          {"set": {"family": "inet", "name": "bridges", "table": "weft", "type": "ifname", "elem": ["weft-a", "weft-b"]}},
          {"set": {"family": "inet", "name": "same_bridge", "table": "weft", "type": ["ifname", "ifname"], "elem": [{"concat": ["weft-a", "weft-a"]}]}},
          {"set": {"family": "inet", "name": "masq4", "table": "weft", "type": "ipv4_addr", "flags": ["interval"], "elem": [{"prefix": {"addr": "10.89.0.0", "len": 24}}]}},
          {"set": {"family": "inet", "name": "masq6", "table": "weft", "type": "ipv6_addr", "flags": ["interval"]}},
          {"chain": {"family": "inet", "table": "weft", "name": "forward"}},
          {"chain": {"family": "inet", "table": "weft", "name": "postrouting"}},
          {"rule": {"family": "inet", "table": "weft", "chain": "forward", "expr": []}},
          {"rule": {"family": "inet", "table": "weft", "chain": "forward", "expr": []}}]}"#;
        let st = parse_listing(out).unwrap();
        assert!(st.present);
        assert_eq!(st.rules, 2);
        assert_eq!(st.chains["forward"], 2);
        assert_eq!(st.chains["postrouting"], 0);
        assert_eq!(st.sets["bridges"], ["weft-a", "weft-b"]);
        assert_eq!(st.sets["same_bridge"], ["weft-a . weft-a"]);
        assert_eq!(st.sets["masq4"], ["10.89.0.0/24"]);
        assert!(st.sets["masq6"].is_empty());
    }
}
