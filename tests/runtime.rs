//! weft under a real container runtime: runs tests/runtime/podman.sh (two
//! busybox containers on a weft network via Podman's CNI backend, inside a
//! throwaway sandbox namespace) with this build's binary. Fails, naming the
//! package, where Podman is not installed (`scripts/deps --test` installs it).

use std::path::Path;
use std::process::Command;

fn on_path(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
        .unwrap_or(false)
}

#[test]
fn podman_runs_two_containers_on_a_weft_network() {
    for (cmd, package) in [("podman", "podman"), ("runc", "runc"), ("busybox", "busybox-static")] {
        assert!(
            on_path(cmd),
            "{cmd} is not installed: apt-get install {package} (or scripts/deps --test)"
        );
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/runtime/podman.sh");
    let out = Command::new("bash")
        .arg(&script)
        .env("WEFT_BIN", env!("CARGO_BIN_EXE_weft"))
        .output()
        .expect("run tests/runtime/podman.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    print!("{stdout}");
    eprint!("{stderr}");
    assert!(
        out.status.success(),
        "{} failed ({}):\n{stdout}{stderr}",
        script.display(),
        out.status
    );
    assert!(stdout.lines().any(|l| l.starts_with("PASS: ")), "no PASS line:\n{stdout}");
}
