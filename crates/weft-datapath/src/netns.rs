//! Network namespace handles. weft works in a container's namespace through
//! a netlink socket opened there (it stays bound to that netns); code that
//! must run inside one does so on a short-lived thread (`run`).

use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use weft_model::endpoint::NetnsId;

use crate::error::{DatapathError, Result};
use crate::netlink::Netlink;

/// `_IO(0xb7, 0x3)` from linux/nsfs.h: asks an nsfs file for its type.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

pub struct Netns {
    file: File,
    path: PathBuf,
}

impl Netns {
    /// Opens a network namespace file (`/var/run/netns/NAME`,
    /// `/proc/PID/ns/net`) and checks that it really is one. The file is
    /// first opened with O_PATH, which never blocks and has no side
    /// effects (a FIFO would block a reading open until some writer came, a
    /// device could act on open), and only reopened for reading once its
    /// file system says it is a namespace. A relative path is kept as an
    /// absolute one: records outlive the working directory.
    pub fn open(path: impl AsRef<Path>) -> Result<Netns> {
        let path = absolute(path.as_ref());
        let shown = path.display().to_string();
        let fail = |why: String| DatapathError::Netns { path: shown.clone(), why };
        let handle = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| {
                fail(if e.kind() == std::io::ErrorKind::NotFound {
                    "does not exist".to_string()
                } else {
                    e.to_string()
                })
            })?;
        if !is_nsfs(&handle) {
            return Err(fail(format!("is {}, not a network namespace", file_kind(&handle))));
        }
        // The same inode, now readable: the ioctl below and setns need it.
        let file = File::open(format!("/proc/self/fd/{}", handle.as_raw_fd()))
            .map_err(|e| fail(format!("cannot open: {e}")))?;
        // SAFETY: NS_GET_NSTYPE takes no argument and only reads the fd's inode.
        let kind = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE) };
        if kind != libc::CLONE_NEWNET {
            return Err(fail("is a namespace of another kind, not a network namespace".into()));
        }
        Ok(Netns { file, path })
    }

    /// The namespace of a process.
    pub fn of_pid(pid: u32) -> Result<Netns> {
        let p = format!("/proc/{pid}/ns/net");
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return Err(DatapathError::Netns {
                path: p,
                why: format!("no process with pid {pid}"),
            });
        }
        Netns::open(p)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Runs `f` on a fresh thread that has entered this namespace. The
    /// caller's thread never changes namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
        let fd = self.fd();
        std::thread::scope(|s| {
            s.spawn(move || {
                // SAFETY: fd is an open netns file owned by self, alive for the scope.
                if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
                    return Err(DatapathError::Netns {
                        path: self.path.display().to_string(),
                        why: format!("cannot enter: {}", std::io::Error::last_os_error()),
                    });
                }
                f()
            })
            .join()
            .map_err(|_| DatapathError::Other("netns worker thread panicked".into()))?
        })
    }

    /// A netlink socket bound to this namespace. A socket belongs to the
    /// namespace it was created in, so this thread enters the namespace for
    /// the one socket() call and comes straight back: no code of anyone
    /// else runs in between, and it saves the thread (stack, malloc arena)
    /// that `run` costs, about 0.3 ms of an attach.
    pub fn netlink(&self) -> Result<Netlink> {
        let fail =
            |why: String| DatapathError::Netns { path: self.path.display().to_string(), why };
        let home = File::open("/proc/thread-self/ns/net")
            .map_err(|e| fail(format!("cannot open this thread's namespace: {e}")))?;
        // SAFETY: both fds are open netns files owned here or by self.
        if unsafe { libc::setns(self.fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(fail(format!("cannot enter: {}", std::io::Error::last_os_error())));
        }
        let socket = Netlink::new();
        // SAFETY: as above.
        if unsafe { libc::setns(home.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            // This thread would go on working in the container's namespace.
            eprintln!("weft: fatal: cannot return from {}", self.path.display());
            std::process::abort();
        }
        socket.map_err(|e| DatapathError::Kernel {
            op: format!("open netlink socket in {}", self.path.display()),
            cause: e,
        })
    }

    /// What identifies the namespace: equal ids mean the same namespace,
    /// whatever path reached it.
    pub fn id(&self) -> NetnsId {
        let m = self.file.metadata();
        m.map(|m| NetnsId { dev: m.dev(), ino: m.ino() }).unwrap_or(NetnsId { dev: 0, ino: 0 })
    }
}

/// `path` made absolute against the working directory (not canonicalized:
/// `/var/run/netns/x` stays what the user named).
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Whether `f` lives on nsfs, the file system of namespace files.
fn is_nsfs(f: &File) -> bool {
    /// NSFS_MAGIC from linux/magic.h.
    const NSFS_MAGIC: libc::__fsword_t = 0x6e73_6673;
    // SAFETY: statfs is plain data; fstatfs only writes into it.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: f is an open fd (O_PATH fds are accepted by fstatfs).
    let rc = unsafe { libc::fstatfs(f.as_raw_fd(), &mut st) };
    rc == 0 && st.f_type == NSFS_MAGIC
}

/// "a FIFO", "a directory", ... for the error about a path that is no namespace.
fn file_kind(f: &File) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    match f.metadata().map(|m| m.file_type()) {
        Ok(t) if t.is_fifo() => "a FIFO",
        Ok(t) if t.is_dir() => "a directory",
        Ok(t) if t.is_socket() => "a socket",
        Ok(t) if t.is_char_device() || t.is_block_device() => "a device",
        Ok(t) if t.is_file() => "a regular file",
        _ => "something else",
    }
}

/// A netlink socket in the caller's own namespace (weft's "host").
pub fn host_netlink() -> Result<Netlink> {
    Netlink::new().map_err(|e| DatapathError::Kernel { op: "open netlink socket".into(), cause: e })
}

/// Inode of the calling thread's network namespace.
pub fn current_inode() -> u64 {
    std::fs::metadata("/proc/thread-self/ns/net").map(|m| m.ino()).unwrap_or(0)
}

impl Netlink {
    /// The id this socket's namespace knows `ns` by (what a veth whose peer
    /// is there reports as `Link::peer_netnsid`), None when it has none.
    pub fn nsid_of(&mut self, ns: &Netns) -> Result<Option<i32>> {
        use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
        use netlink_packet_route::RouteNetlinkMessage;
        let mut m = NsidMessage::default();
        m.attributes.push(NsidAttribute::Fd(ns.fd() as u32));
        let answers = self.get(RouteNetlinkMessage::GetNsId(m)).map_err(|cause| {
            DatapathError::Kernel { op: format!("get the id of {}", ns.path.display()), cause }
        })?;
        for a in answers {
            if let RouteNetlinkMessage::NewNsId(m) = a {
                for attr in m.attributes {
                    if let NsidAttribute::Id(id) = attr {
                        return Ok((id >= 0).then_some(id));
                    }
                }
            }
        }
        Ok(None)
    }
}

/// The identity of the namespace a namespace file (or `/proc/PID/ns/net`)
/// names; None when it cannot be read.
pub fn id_of(path: impl AsRef<Path>) -> Option<NetnsId> {
    std::fs::metadata(path).ok().map(|m| NetnsId { dev: m.dev(), ino: m.ino() })
}
