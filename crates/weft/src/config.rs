//! Where the cluster store is: flags, then environment (clap reads both),
//! then the config file.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

pub struct Flags {
    pub etcd: Vec<String>,
    pub node: Option<String>,
    pub etcd_ca: Option<PathBuf>,
    pub etcd_cert: Option<PathBuf>,
    pub etcd_key: Option<PathBuf>,
    pub etcd_user: Option<String>,
    /// From the environment only (`WEFT_ETCD_PASSWORD`): a command line is
    /// visible to every user of the host.
    pub etcd_password: Option<String>,
}

/// The cluster settings of this invocation; `etcd` empty means single-host.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    pub etcd: Vec<String>,
    pub node: String,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub user: Option<String>,
    pub password: Option<String>,
}

impl Cluster {
    pub fn resolve(file: &Path, flags: Flags) -> Result<Option<Cluster>> {
        let mut c = Cluster {
            etcd: flags.etcd,
            node: flags.node.unwrap_or_default(),
            ca: flags.etcd_ca,
            cert: flags.etcd_cert,
            key: flags.etcd_key,
            user: flags.etcd_user,
            password: flags.etcd_password,
        };
        if file.exists() {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("read config {}", file.display()))?;
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let Some((k, v)) = line.split_once('=') else {
                    bail!("{}:{}: expected `key = value`", file.display(), n + 1);
                };
                let v = v.trim().trim_matches('"').to_string();
                match k.trim() {
                    "etcd" if c.etcd.is_empty() => {
                        c.etcd = v.split(',').map(|s| s.trim().to_string()).collect()
                    }
                    "node" if c.node.is_empty() => c.node = v,
                    "etcd_ca" if c.ca.is_none() => c.ca = Some(v.into()),
                    "etcd_cert" if c.cert.is_none() => c.cert = Some(v.into()),
                    "etcd_key" if c.key.is_none() => c.key = Some(v.into()),
                    "etcd_user" if c.user.is_none() => c.user = Some(v),
                    "etcd_password" if c.password.is_none() => c.password = Some(v),
                    "etcd" | "node" | "etcd_ca" | "etcd_cert" | "etcd_key" | "etcd_user"
                    | "etcd_password" => {}
                    other => bail!("{}:{}: unknown key {other:?}", file.display(), n + 1),
                }
            }
        }
        c.etcd.retain(|e| !e.is_empty());
        if c.etcd.is_empty() {
            return Ok(None);
        }
        if c.node.is_empty() {
            c.node = hostname();
        }
        Ok(Some(c))
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

impl Cluster {
    pub fn etcd_config(&self) -> weft_store::EtcdConfig {
        let mut c = weft_store::EtcdConfig::new(self.etcd.clone());
        c.ca = self.ca.clone();
        c.cert = self.cert.clone();
        c.key = self.key.clone();
        c.user = self.user.clone().map(|u| (u, self.password.clone().unwrap_or_default()));
        c
    }
}
