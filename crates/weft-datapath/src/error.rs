use std::io;

pub type Result<T, E = DatapathError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    /// A netlink request the kernel refused; `op` says what weft was doing.
    #[error("{op}: {cause}")]
    Kernel { op: String, cause: io::Error },
    #[error("netns {path}: {why}")]
    Netns { path: String, why: String },
    #[error("interface {name} already exists and was not made by weft; choose another name with --bridge")]
    ForeignLink { name: String },
    /// An interface name the new veth pair needs is taken.
    #[error("{0}")]
    Exists(String),
    #[error("{0}")]
    Other(String),
}

impl DatapathError {
    pub fn errno(&self) -> Option<i32> {
        match self {
            DatapathError::Kernel { cause, .. } => cause.raw_os_error(),
            _ => None,
        }
    }

    pub fn is_exists(&self) -> bool {
        self.errno() == Some(libc::EEXIST)
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self.errno(), Some(libc::ENODEV) | Some(libc::ENOENT) | Some(libc::ESRCH))
    }
}

/// Adds context to a kernel error: `.op(|| format!("create bridge {name}"))`.
pub trait OpContext<T> {
    fn op(self, f: impl FnOnce() -> String) -> Result<T>;
}

impl<T> OpContext<T> for std::result::Result<T, io::Error> {
    fn op(self, f: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|cause| DatapathError::Kernel { op: f(), cause })
    }
}
