//! The CNI_* environment a runtime sets for each invocation.

use weft_model::names::check_ifname;

use crate::error::{CniError, Code};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub command: Command,
    pub container_id: String,
    /// Empty on DEL when the runtime no longer has a namespace.
    pub netns: String,
    pub ifname: String,
    /// CNI_ARGS as key/value pairs (`IgnoreUnknown=1;IP=10.0.0.5`).
    pub args: Vec<(String, String)>,
}

fn invalid(msg: String) -> CniError {
    CniError::new(Code::InvalidEnvironment, msg)
}

impl Invocation {
    /// Reads and checks the variables the command needs; `get` is
    /// `std::env::var` in production.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Invocation, CniError> {
        let command = match get("CNI_COMMAND").as_deref() {
            Some("ADD") => Command::Add,
            Some("DEL") => Command::Del,
            Some("CHECK") => Command::Check,
            Some("STATUS") => Command::Status,
            Some("GC") => Command::Gc,
            Some("VERSION") => Command::Version,
            Some(other) => return Err(invalid(format!("unknown CNI_COMMAND {other:?}"))),
            None => return Err(invalid("CNI_COMMAND is not set".into())),
        };
        let per_container = matches!(command, Command::Add | Command::Del | Command::Check);
        let var = |name: &str, required: bool| -> Result<String, CniError> {
            let v = get(name).unwrap_or_default();
            if required && v.is_empty() {
                return Err(invalid(format!("{name} is required for this command")));
            }
            Ok(v)
        };
        let container_id = var("CNI_CONTAINERID", per_container)?;
        let netns = var("CNI_NETNS", matches!(command, Command::Add | Command::Check))?;
        let ifname = var("CNI_IFNAME", per_container)?;
        if per_container {
            check_container_id(&container_id)?;
            check_ifname(&ifname).map_err(|e| invalid(format!("CNI_IFNAME: {e}")))?;
        }
        let args = parse_args(&get("CNI_ARGS").unwrap_or_default())?;
        Ok(Invocation { command, container_id, netns, ifname, args })
    }

    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// The spec: "alphanumeric, plus underscore, period and hyphen", not empty.
fn check_container_id(id: &str) -> Result<(), CniError> {
    let ok = !id.is_empty()
        && id.len() <= 253
        && id.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "CNI_CONTAINERID {id:?} is invalid: use letters, digits, '_', '.' and '-'"
        )))
    }
}

fn parse_args(s: &str) -> Result<Vec<(String, String)>, CniError> {
    s.split(';')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(invalid(format!("CNI_ARGS: {p:?} is not KEY=VALUE"))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn inv(vars: &[(&str, &str)]) -> Result<Invocation, CniError> {
        let m: HashMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Invocation::from_vars(|k| m.get(k).cloned())
    }

    #[test]
    fn add_needs_container_netns_ifname() {
        let e = inv(&[("CNI_COMMAND", "ADD"), ("CNI_IFNAME", "eth0")]).unwrap_err();
        assert_eq!(e.code, 4);
        let ok = inv(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_NETNS", "/x"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", "IgnoreUnknown=1;IP=10.0.0.5"),
        ])
        .unwrap();
        assert_eq!(ok.arg("IP"), Some("10.0.0.5"));
    }

    #[test]
    fn del_tolerates_missing_netns() {
        let ok = inv(&[("CNI_COMMAND", "DEL"), ("CNI_CONTAINERID", "abc"), ("CNI_IFNAME", "eth0")]);
        assert_eq!(ok.unwrap().netns, "");
    }

    #[test]
    fn rejects_bad_values() {
        assert_eq!(inv(&[("CNI_COMMAND", "FROB")]).unwrap_err().code, 4);
        let bad_id =
            inv(&[("CNI_COMMAND", "DEL"), ("CNI_CONTAINERID", "a/b"), ("CNI_IFNAME", "eth0")]);
        assert_eq!(bad_id.unwrap_err().code, 4);
        let long_if = inv(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "a"),
            ("CNI_IFNAME", "a-very-long-interface"),
        ]);
        assert_eq!(long_if.unwrap_err().code, 4);
        assert!(inv(&[("CNI_COMMAND", "VERSION")]).is_ok());
    }
}
