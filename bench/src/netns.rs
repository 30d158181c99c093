//! A named network namespace made for a benchmark, deleted on drop.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;

use anyhow::{bail, Context, Result};

pub struct Ns {
    pub name: String,
    /// `/run/netns/NAME`.
    pub path: String,
    file: File,
}

impl Ns {
    /// `ip netns add NAME`, with lo up.
    pub fn new(name: String) -> Result<Ns> {
        let out = Command::new("ip").args(["netns", "add", &name]).output().context("run ip")?;
        if !out.status.success() {
            bail!("ip netns add {name}: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        let path = format!("/run/netns/{name}");
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                let _ = Command::new("ip").args(["netns", "del", &name]).status();
                return Err(e).with_context(|| format!("open {path}"));
            }
        };
        let ns = Ns { name, path, file };
        ns.sh("ip link set lo up")?;
        Ok(ns)
    }

    /// A command that runs inside this namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        let fd = self.file.as_raw_fd();
        // SAFETY: only setns(2) on an fd this guard keeps open runs between
        // fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd
    }

    /// Runs a shell script inside; its stdout, or its stderr as the error.
    pub fn sh(&self, script: &str) -> Result<String> {
        let out = self.command("sh").args(["-c", script]).output().context("spawn sh")?;
        if !out.status.success() {
            bail!("`{script}` in {}: {}", self.name, String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Moves the calling thread into this namespace (threads made for it).
    pub fn enter(&self) -> Result<()> {
        // SAFETY: setns(2) on an open netns fd owned by this guard.
        if unsafe { libc::setns(self.file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("enter {}: {}", self.name, std::io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        // Processes started in the namespace (agents, servers) go first.
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.name]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    // SAFETY: plain kill(2) of a process inside our namespace.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}
