//! weft never plugs the host into itself (issue 12, item 7): a "container"
//! namespace that is the one weft runs in, or PID 1's, is refused with one
//! clear error by the CLI, the daemon and the CNI plugin, before anything
//! is made. The sandbox "host" namespace plays weft's own; the test
//! process's (weft's parent) and PID 1's are the real machine's, so those
//! attacks run with a crash point right after the store reservation: an
//! unfixed weft dies there, before any kernel change.

mod harness;

use std::process::Stdio;

use harness::cluster::Proc;
use harness::{eventually, one_error_line, to_run, Run, Sandbox};
use serde_json::json;

const REFUSAL: &str = "never the host";

fn sandbox() -> Sandbox {
    let sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "n", "--subnet", "10.79.0.0/24"]);
    sb
}

/// A process sitting in the sandbox host namespace (weft's own).
fn host_process(sb: &Sandbox) -> Proc {
    Proc(Some(sb.host.command("sleep").arg("60").spawn().expect("spawn sleep")))
}

fn attach(sb: &Sandbox, daemon: &str, args: &[&str]) -> Run {
    let mut cmd = sb.weft_cmd(&[&["attach", "n", "box"], args].concat());
    cmd.env("WEFT_DAEMON", daemon);
    // An unfixed weft is stopped right after reserving, before the kernel.
    cmd.env("WEFT_FAILPOINT", "attach-after-reserve");
    to_run(cmd.output().expect("spawn weft"))
}

/// What refusing PID 1's namespace looks like here: where this process
/// may not inspect PID 1 (it has fewer capabilities than init), weft may
/// not open its namespace either, and says so.
fn pid1_refusal() -> &'static str {
    if std::fs::metadata("/proc/1/ns/net").is_ok() {
        REFUSAL
    } else {
        "Permission denied"
    }
}

fn refused_everywhere(sb: &Sandbox, daemon: &str) {
    let own = sb.host.path.to_str().unwrap().to_string();
    let sleeper = host_process(sb);
    let pid = sleeper.0.as_ref().unwrap().id().to_string();
    let me = std::process::id().to_string();
    let before = sb.snapshot();
    let cases = [
        (vec!["--netns", own.as_str()], REFUSAL),
        (vec!["--pid", pid.as_str()], REFUSAL),
        (vec!["--pid", me.as_str()], REFUSAL),
        (vec!["--pid", "1"], pid1_refusal()),
    ];
    for (args, expected) in cases {
        let r = attach(sb, daemon, &args);
        let line = one_error_line(&r);
        assert!(line.contains(expected), "{args:?}: {line}");
        assert_eq!(before, sb.snapshot(), "{args:?}: the refused attach changed something");
    }
}

#[test]
fn the_cli_refuses_the_hosts_own_namespace() {
    let sb = sandbox();
    refused_everywhere(&sb, "off");
}

#[test]
fn the_daemon_refuses_the_hosts_own_namespace() {
    let sb = sandbox();
    let _daemon = Proc(Some(
        sb.weft_cmd(&["daemon"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap(),
    ));
    let sock = sb.state_dir().join("weft.sock");
    eventually("the daemon listens", || std::os::unix::net::UnixStream::connect(&sock).is_ok());
    // `require`: the daemon runs these itself or the command fails. No
    // crash point here (the CLI never hands test hooks to the daemon), so
    // PID 1 is left to the CLI test: only the sandbox's namespace is used.
    let own = sb.host.path.to_str().unwrap().to_string();
    let sleeper = host_process(&sb);
    let pid = sleeper.0.as_ref().unwrap().id().to_string();
    let before = sb.snapshot();
    for args in [["--netns", own.as_str()], ["--pid", pid.as_str()]] {
        let mut cmd = sb.weft_cmd(&[&["attach", "n", "box"], &args[..]].concat());
        cmd.env("WEFT_DAEMON", "require");
        let line = one_error_line(&to_run(cmd.output().unwrap()));
        assert!(line.contains(REFUSAL), "{args:?}: {line}");
        assert_eq!(before, sb.snapshot(), "{args:?}: the refused attach changed something");
    }
    // A plugin's ADD that the daemon runs.
    let env = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "box"),
        ("CNI_NETNS", own.as_str()),
        ("CNI_IFNAME", "eth0"),
        ("WEFT_DAEMON", "require"),
    ];
    let conf = json!({"cniVersion": "1.0.0", "name": "n", "type": "weft"});
    let r = sb.cni(&env, &conf);
    assert_eq!(r.stdout["code"], 4, "{}", r.raw);
    assert!(r.stdout["msg"].as_str().unwrap().contains(REFUSAL), "{}", r.raw);
    assert_eq!(before, sb.snapshot(), "the refused ADD changed something");
}

#[test]
fn the_cni_plugin_refuses_the_hosts_own_namespace() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    let own = sb.host.path.to_str().unwrap().to_string();
    let sleeper = host_process(&sb);
    let via_proc = format!("/proc/{}/ns/net", sleeper.0.as_ref().unwrap().id());
    let parent = format!("/proc/{}/ns/net", std::process::id());
    let cases = [
        (own.as_str(), REFUSAL),
        (via_proc.as_str(), REFUSAL),
        (parent.as_str(), REFUSAL),
        ("/proc/1/ns/net", pid1_refusal()),
    ];
    for (ns, expected) in cases {
        let env = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "box"),
            ("CNI_NETNS", ns),
            ("CNI_IFNAME", "eth0"),
            ("WEFT_FAILPOINT", "attach-after-reserve"),
        ];
        let conf = json!({"cniVersion": "1.0.0", "name": "n", "type": "weft",
                          "subnet": "10.79.1.0/24"});
        let r = sb.cni(&env, &conf);
        assert!(!r.ok, "{ns}: {}", r.raw);
        assert_eq!(r.stdout["code"], 4, "{ns}: {}", r.raw);
        assert!(r.stdout["msg"].as_str().unwrap().contains(expected), "{ns}: {}", r.raw);
        // No network was made for it either.
        assert_eq!(before, sb.snapshot(), "{ns}: the refused ADD changed something");
    }
}
