//! Real Podman 4.3 (Debian's, with runc) using weft as its network backend:
//! weft linked as `netavark` in a private helper directory. Each test runs
//! one scenario of tests/podman/run.sh in its own sandbox network namespace
//! with private storage, run root, network definitions and weft state (see
//! the script's header). A missing package fails the test with its name.

use std::path::Path;
use std::process::Command;

fn scenario(name: &str) {
    for (cmd, package) in [("podman", "podman"), ("runc", "runc"), ("conmon", "conmon")] {
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()));
        assert!(found, "{cmd} is not installed: apt-get install {package}");
    }
    assert!(
        Path::new("/bin/busybox").is_file(),
        "/bin/busybox is missing: apt-get install busybox-static"
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/podman/run.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(name)
        .env("WEFT_BIN", env!("CARGO_BIN_EXE_weft"))
        .output()
        .expect("run tests/podman/run.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    print!("{stdout}");
    eprint!("{stderr}");
    assert!(
        out.status.success(),
        "podman scenario {name} failed ({}):\n{stdout}{stderr}",
        out.status
    );
    assert!(stdout.lines().any(|l| l.starts_with("PASS: ")), "no PASS line:\n{stdout}");
}

#[test]
fn default_network_and_container_lifecycle() {
    scenario("default");
}

#[test]
fn created_networks_honour_subnet_gateway_mtu_ip_mac_internal() {
    scenario("created");
}

#[test]
fn published_ports_from_host_outside_and_hairpin() {
    scenario("ports");
}

#[test]
fn containers_resolve_names_and_aliases() {
    scenario("dns");
}

#[test]
fn two_networks_connect_disconnect() {
    scenario("multi");
}

#[test]
fn reload_after_flush_and_vanished_veth() {
    scenario("lifecycle");
}

#[test]
fn errors_are_one_line_and_leave_nothing() {
    scenario("errors");
}

#[test]
fn make_install_podman_and_uninstall() {
    scenario("install");
}
