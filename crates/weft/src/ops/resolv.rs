//! `/etc/netns/NAME/resolv.conf` for containers in named namespaces (`ip
//! netns add NAME`): `ip netns exec NAME` mounts it over /etc/resolv.conf,
//! so processes in the container ask `weft dns` on the gateways of its
//! networks, as docker's containers ask its embedded server. weft owns only
//! a file it wrote (its first line says so); a file someone else wrote is
//! left alone. The file follows the namespace's endpoints: attach adds the
//! network's gateways, detach and gc rewrite it from what is left and
//! delete it with the last one.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use super::Context;

const MARK: &str =
    "# written by weft: the gateways of this container's networks, where `weft dns` \
                    answers (weft removes this file with the container's last endpoint)";

/// Where `ip netns exec` looks for per-namespace files.
const ETC_NETNS: &str = "/etc/netns";

/// The namespace's name when `netns` is a named one (`/var/run/netns/NAME`
/// or `/run/netns/NAME`).
pub fn netns_name(netns: &str) -> Option<&str> {
    let p = Path::new(netns);
    let dir = p.parent()?;
    let named = dir == Path::new("/var/run/netns") || dir == Path::new("/run/netns");
    named.then(|| p.file_name()?.to_str()).flatten().filter(|n| !n.starts_with('.'))
}

pub fn path(name: &str) -> PathBuf {
    Path::new(ETC_NETNS).join(name).join("resolv.conf")
}

enum Current {
    Absent,
    Ours(Vec<String>),
    Foreign,
}

fn read(name: &str) -> Result<Current> {
    match std::fs::read_to_string(path(name)) {
        Ok(t) if t.starts_with(MARK) => Ok(Current::Ours(
            t.lines()
                .filter_map(|l| l.strip_prefix("nameserver "))
                .map(|s| s.trim().to_string())
                .collect(),
        )),
        Ok(_) => Ok(Current::Foreign),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Current::Absent),
        Err(e) => Err(e).with_context(|| format!("read {}", path(name).display())),
    }
}

/// Adds `nameservers` to the namespace's file (creating it).
pub fn add(name: &str, nameservers: &[String]) -> Result<()> {
    let mut have = match read(name)? {
        Current::Foreign => {
            tracing::info!("{} was not written by weft: left as it is", path(name).display());
            return Ok(());
        }
        Current::Absent => Vec::new(),
        Current::Ours(v) => v,
    };
    let before = have.len();
    for n in nameservers {
        if !have.contains(n) {
            have.push(n.clone());
        }
    }
    if have.len() == before && before > 0 {
        return Ok(());
    }
    write(name, &have)
}

/// Rewrites weft's file for namespace `netns` from the endpoints still in
/// it; deletes it (and its directory, when empty) when none is left.
pub fn refresh(ctx: &Context, netns: &str) -> Result<()> {
    let Some(name) = netns_name(netns) else { return Ok(()) };
    // The common case, a container never given a file: one stat.
    if !path(name).exists() {
        return Ok(());
    }
    if !matches!(read(name)?, Current::Ours(_)) {
        return Ok(());
    }
    let nets = ctx.store.networks()?;
    let mut servers: Vec<String> = Vec::new();
    for ep in ctx.store.endpoints(None)?.iter().filter(|e| e.netns == netns && e.node == ctx.node) {
        for s in nets.iter().filter(|n| n.name == ep.network).flat_map(|n| n.nameservers()) {
            if !servers.contains(&s) {
                servers.push(s);
            }
        }
    }
    if servers.is_empty() {
        let p = path(name);
        std::fs::remove_file(&p).with_context(|| format!("remove {}", p.display()))?;
        // Only if empty: someone may keep other files for the namespace.
        let _ = std::fs::remove_dir(Path::new(ETC_NETNS).join(name));
        tracing::info!("removed {}", p.display());
        Ok(())
    } else {
        write(name, &servers)
    }
}

fn write(name: &str, servers: &[String]) -> Result<()> {
    let p = path(name);
    let dir = p.parent().expect("a file in a directory");
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let mut text = format!("{MARK}\n");
    for s in servers {
        text.push_str(&format!("nameserver {s}\n"));
    }
    // Whole or not at all: a reader never sees half a file.
    let tmp = dir.join(".resolv.conf.weft");
    std::fs::write(&tmp, text).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, &p).with_context(|| format!("write {}", p.display()))?;
    tracing::info!("wrote {} (nameserver {})", p.display(), servers.join(", "));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::netns_name;

    #[test]
    fn named_namespaces_only() {
        assert_eq!(netns_name("/var/run/netns/web"), Some("web"));
        assert_eq!(netns_name("/run/netns/db"), Some("db"));
        assert_eq!(netns_name("/proc/42/ns/net"), None);
        assert_eq!(netns_name("/var/run/netns/.x"), None);
        assert_eq!(netns_name("/tmp/netns/web"), None);
    }
}
