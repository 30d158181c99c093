use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use clap::Args;

use crate::daemon::server::RemoveOnDrop;
use crate::docker::{server, Plugin};
use crate::ops;

#[derive(Args)]
pub struct DockerPlugin {
    /// The socket dockerd finds the plugin by: `/run/docker/plugins/NAME.sock`
    /// makes the driver NAME (`docker network create -d NAME --ipam-driver NAME`).
    #[arg(long, default_value = "/run/docker/plugins/weft.sock")]
    socket: PathBuf,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

impl DockerPlugin {
    pub fn run(self, state_dir: &Path) -> Result<()> {
        let ctx = super::mutating(state_dir)?;
        // One plugin per state directory: two would hand out the same
        // addresses from their IPAM holds.
        let _lock = ops::context::try_lock(&state_dir.join("docker-plugin.lock"))
            .context("another weft docker-plugin serves this state directory")?;
        let listener = listen(&self.socket)?;
        let _remove = RemoveOnDrop(self.socket.clone());
        // SAFETY: the handler only stores to an atomic.
        unsafe {
            libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
            libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        }
        ops::reaper::run_in_thread();
        let plugin = Arc::new(Plugin::new(ctx));
        let handler: Arc<server::Handler> = {
            let plugin = Arc::clone(&plugin);
            Arc::new(move |method: &str, body: &[u8]| plugin.handle(method, body))
        };
        std::thread::spawn(move || server::serve(&listener, handler));
        eprintln!("weft docker-plugin: serving {}", self.socket.display());
        while !STOP.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100));
        }
        // Waits for the call being served: none is left half done.
        let _state = plugin.lock();
        let _ = std::fs::remove_file(&self.socket);
        ops::reaper::delete_now();
        eprintln!("weft docker-plugin: stopped");
        Ok(())
    }
}

/// The socket, created root-only from the start (no window in which
/// another user could connect).
fn listen(path: &Path) -> Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    match std::fs::symlink_metadata(path) {
        // A socket left by a killed plugin (the lock proves it is not ours).
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => bail!("{} exists and is not a socket", path.display()),
        Err(_) => {}
    }
    // SAFETY: umask only changes this process's file creation mask.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above, restoring it.
    unsafe { libc::umask(old) };
    let listener = bound.with_context(|| format!("listen on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}
