//! The binary itself (issue 12, item 5): weft runs as root and parses
//! untrusted input, so it is position-independent (ASLR), and the static
//! build still finds etcd by host name (`localhost`, /etc/hosts) without
//! glibc's NSS modules.

mod harness;

use std::process::Stdio;
use std::time::{Duration, Instant};

use harness::cluster::Proc;
use harness::{to_run, Netns, WEFT};

/// ELF e_type and whether there is a PT_INTERP (a dynamic loader).
fn elf_kind(bytes: &[u8]) -> (u16, bool) {
    assert_eq!(&bytes[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(bytes[4], 2, "64-bit ELF expected");
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap());
    let e_type = u16_at(16);
    let (phoff, phentsize, phnum) = (u64_at(32) as usize, u16_at(54) as usize, u16_at(56));
    let interp = (0..phnum as usize).any(|i| u32_at(phoff + i * phentsize) == 3);
    (e_type, interp)
}

#[test]
fn weft_is_position_independent() {
    let bytes = std::fs::read(WEFT).expect("read the weft binary");
    let (e_type, interp) = elf_kind(&bytes);
    // ET_DYN: PIE (or static-pie); ET_EXEC (2) would load at a fixed address.
    assert_eq!(e_type, 3, "weft is linked position-dependent (ET_EXEC): no ASLR");
    eprintln!("weft is a {} PIE", if interp { "dynamic" } else { "static" });
    // And the kernel does place it at a new address each run.
    let aslr = std::fs::read_to_string("/proc/sys/kernel/randomize_va_space").unwrap();
    assert_ne!(aslr.trim(), "0", "ASLR is off on this machine (kernel.randomize_va_space=0)");
    assert_ne!(load_address(), load_address(), "weft was loaded at the same address twice");
}

/// Where a weft process has its binary mapped: weft as a CNI plugin waits
/// on stdin, so it stays alive while its maps are read.
fn load_address() -> String {
    let mut child = std::process::Command::new(WEFT)
        .env_clear()
        .env("CNI_COMMAND", "VERSION")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run weft");
    let maps = format!("/proc/{}/maps", child.id());
    let start = Instant::now();
    let found = loop {
        let text = std::fs::read_to_string(&maps).unwrap_or_default();
        if let Some(l) = text.lines().find(|l| l.ends_with("/weft")) {
            break l.split('-').next().unwrap().to_string();
        }
        assert!(start.elapsed() < Duration::from_secs(5), "no mapping of weft in {maps}:\n{text}");
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = child.kill();
    let _ = child.wait();
    found
}

/// etcd on the loopback of a fresh namespace; killed on drop.
struct Etcd {
    _proc: Proc,
    _dir: tempfile::TempDir,
    ns: Netns,
}

const PORT: u16 = 23790;

impl Etcd {
    fn start() -> Etcd {
        let ns = Netns::new("etcd");
        let dir = tempfile::tempdir().unwrap();
        let client = format!("http://127.0.0.1:{PORT}");
        let peer = format!("http://127.0.0.1:{}", PORT + 1);
        let child = ns
            .command("etcd")
            .args(["--name", "t", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("t={peer}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd (install etcd-server)");
        let etcd = Etcd { _proc: Proc(Some(child)), _dir: dir, ns };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !etcd
            .ns
            .try_sh(&format!("ETCDCTL_API=3 etcdctl --endpoints {client} endpoint health"))
        {
            assert!(Instant::now() < deadline, "etcd did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        etcd
    }
}

#[test]
fn the_binary_reaches_etcd_at_localhost_and_at_an_etc_hosts_name() {
    let etcd = Etcd::start();
    let state = tempfile::tempdir().unwrap();
    // A private mount namespace whose /etc/hosts names the etcd host: the
    // machine's own file is not touched.
    std::fs::create_dir_all(state.path().join("a")).unwrap();
    std::fs::create_dir_all(state.path().join("b")).unwrap();
    let hosts = state.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n127.0.0.1 etcd-by-name.test\n").unwrap();
    let script = format!(
        "set -e
         mount --bind {hosts} /etc/hosts
         {WEFT} --etcd http://localhost:{PORT} --node n1 --state-dir {state}/a \
             network create viahost --subnet 10.82.0.0/24 >/dev/null
         {WEFT} --etcd http://etcd-by-name.test:{PORT} --node n1 --state-dir {state}/b \
             network ls --json",
        hosts = hosts.display(),
        state = state.path().display(),
    );
    let r =
        to_run(etcd.ns.command("unshare").args(["--mount", "sh", "-c", &script]).output().unwrap());
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stdout.contains("\"viahost\""), "{}", r.stdout);
}
