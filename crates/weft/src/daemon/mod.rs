//! `weft daemon`: an optional resident weft that runs `attach` and `detach`
//! for the CLI. A weft command is a short process, and starting one costs
//! more than the kernel work of an attach: loading the binary, opening the
//! database (rebuilding SQLite's WAL index, parsing the schema), compiling
//! statements, opening netlink sockets. The daemon pays that once; the CLI
//! finds its socket in the state directory and hands the command over.
//!
//! The client hands over only what the daemon would run exactly as the
//! client itself would: `attach` and `detach` (and, from weft running as a
//! CNI plugin, ADD and DEL) of single-host networks, from
//! a process in the daemon's network namespace, for the same state
//! directory and the same container namespace (both compared as files,
//! device and inode: `ip netns exec` gives every process its own mount
//! namespace, so paths alone prove nothing), without logging or test
//! hooks. Anything else, or no daemon, runs in the CLI as
//! before. `WEFT_DAEMON=off` never uses it; `WEFT_DAEMON=require` fails
//! rather than running locally.
//!
//! Protocol: one connection per command on `STATE_DIR/weft.sock` (mode
//! 0600), one JSON document per line. The client sends its [`Request`];
//! the daemon answers [`Reply::Declined`] (the client runs the command
//! itself) or [`Reply::Ready`]; the client says `go`, and only then does
//! the daemon run the command and answer [`Reply::Done`]. So a client
//! that gives up before `go` (its timeout) knows nothing was run, and a
//! client that said `go` and got no answer knows its outcome is unknown
//! and says so. Each line has a size limit and a deadline (`conn.rs`):
//! an idle or endless client holds up nobody.

pub mod client;
mod conn;
pub mod server;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Request {
    /// The client's weft version: a daemon of another version (weft was
    /// upgraded while it ran) declines.
    pub version: String,
    /// The client's whole command line, program name first.
    pub args: Vec<String>,
    /// The state directory the client resolved (absolute).
    pub state_dir: PathBuf,
    /// The client's working directory (for relative paths in `args`).
    pub cwd: PathBuf,
    /// The client's network namespace (inode).
    pub net_ns: u64,
    /// What the client sees at `state_dir`.
    pub state_dir_id: FileId,
    /// What the client sees as the container's namespace (attach, ADD).
    pub container_ns: Option<FileId>,
    /// A CNI call (the client runs as a plugin) instead of a command line.
    pub cni: Option<CniCall>,
}

/// A plugin's CNI ADD or DEL: its `CNI_*` variables and its configuration.
#[derive(Serialize, Deserialize)]
pub struct CniCall {
    pub vars: Vec<(String, String)>,
    pub config: String,
}

/// A file's device and inode.
#[derive(Serialize, Deserialize, PartialEq, Eq, Debug, Clone, Copy)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    pub fn of(path: &Path) -> Option<FileId> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| FileId { dev: m.dev(), ino: m.ino() })
    }
}

/// Inode of the calling thread's network namespace.
pub fn net_ns() -> u64 {
    weft_datapath::netns::current_inode()
}

#[derive(Serialize, Deserialize)]
pub enum Reply {
    /// Checked and ready to run: the client's `go` starts it.
    Ready,
    /// The command ran: what it printed and its exit code.
    Done { code: u8, stdout: String, stderr: String },
    /// Not for the daemon; the client runs it itself.
    Declined { why: String },
}

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join("weft.sock")
}
