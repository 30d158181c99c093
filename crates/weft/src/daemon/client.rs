//! The CLI's side: hand the command to a running daemon when it can run it
//! exactly as this process would. Runs before argument parsing, so a
//! handed-over command costs this process little more than its start.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::{net_ns, socket_path, FileId, Reply, Request, VERSION};
use crate::ops::endpoint::NetnsRef;

/// How long the daemon may take to accept and check a command (it may be
/// busy with others). Past it the client leaves before saying `go`, so
/// nothing was run, and runs the command itself.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// After `go`: longer than any attach waits for the store's lock (10 s).
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// A reply is a command's output: small, but not bounded by much.
const MAX_REPLY: u64 = 16 << 20;

/// Settings that make the command different from what the daemon runs:
/// cluster settings, logs, test hooks.
const LOCAL_ENV: &[&str] = &[
    "WEFT_ETCD",
    "WEFT_NODE",
    "WEFT_CONFIG",
    "WEFT_ETCD_CA",
    "WEFT_ETCD_CERT",
    "WEFT_ETCD_KEY",
    "WEFT_LOG",
    "WEFT_BOOT_ID",
    "WEFT_FAILPOINT",
];

/// The default config file; it may name a cluster store.
const CONFIG_FILE: &str = "/etc/weft/weft.conf";

enum Mode {
    Off,
    Auto,
    Require,
}

/// Some(exit code) when the daemon ran the command; None to run it here.
pub fn forward() -> Option<ExitCode> {
    with_mode(try_forward)
}

/// The same for weft started as a CNI plugin, with its configuration.
pub fn forward_cni(config: &[u8]) -> Option<ExitCode> {
    with_mode(|| try_forward_cni(config))
}

fn with_mode(attempt: impl FnOnce() -> Result<ExitCode, String>) -> Option<ExitCode> {
    let mode = match std::env::var("WEFT_DAEMON").as_deref() {
        Ok("off") | Ok("0") => Mode::Off,
        Ok("require") => Mode::Require,
        _ => Mode::Auto,
    };
    if matches!(mode, Mode::Off) {
        return None;
    }
    match attempt() {
        Ok(code) => Some(code),
        Err(why) => match mode {
            Mode::Require => {
                eprintln!("weft: error: WEFT_DAEMON=require: {why}");
                Some(ExitCode::FAILURE)
            }
            _ => None,
        },
    }
}

/// Cluster settings, logs or test hooks make a command the CLI's own.
fn local_settings() -> Result<(), String> {
    if let Some(v) = LOCAL_ENV.iter().find(|v| std::env::var_os(v).is_some()) {
        return Err(format!("{v} is set"));
    }
    if std::path::Path::new(CONFIG_FILE).exists() {
        return Err(format!("{CONFIG_FILE} exists (it may name a cluster)"));
    }
    Ok(())
}

fn try_forward() -> Result<ExitCode, String> {
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.into_string())
        .collect::<Result<_, _>>()
        .map_err(|_| "arguments are not UTF-8".to_string())?;
    local_settings()?;
    let line = eligible(&args)?;
    send(args, line.state_dir, line.netns_file, None)
}

fn try_forward_cni(config: &[u8]) -> Result<ExitCode, String> {
    let command = std::env::var("CNI_COMMAND").unwrap_or_default();
    if command != "ADD" && command != "DEL" {
        return Err(format!("CNI {command} runs locally"));
    }
    local_settings()?;
    let config = std::str::from_utf8(config).map_err(|_| "configuration is not UTF-8")?;
    // A configuration the plugin would reject is its to report.
    let (conf, _) = weft_cni::NetConf::parse(config.as_bytes()).map_err(|e| e.msg)?;
    let netns_file = (command == "ADD")
        .then(|| std::env::var_os("CNI_NETNS").map(PathBuf::from).unwrap_or_default());
    let vars: Vec<(String, String)> =
        std::env::vars().filter(|(k, _)| k.starts_with("CNI_")).collect();
    let call = super::CniCall { vars, config: config.to_string() };
    send(Vec::new(), crate::cni::state_dir(&conf), netns_file, Some(call))
}

/// Sends one request and prints the daemon's answer.
fn send(
    args: Vec<String>,
    state_dir: PathBuf,
    netns_file: Option<PathBuf>,
    cni: Option<super::CniCall>,
) -> Result<ExitCode, String> {
    let cwd = std::env::current_dir().map_err(|e| format!("working directory: {e}"))?;
    let state_dir = cwd.join(state_dir);
    let sock = socket_path(&state_dir);
    let mut stream =
        UnixStream::connect(&sock).map_err(|e| format!("no daemon at {}: {e}", sock.display()))?;
    let state_dir_id = FileId::of(&state_dir).ok_or("state directory unreadable")?;
    // The command reports a missing namespace better than a refusal would.
    let container_ns = match netns_file {
        Some(p) => Some(FileId::of(&cwd.join(p)).ok_or("container namespace not found")?),
        None => None,
    };
    let req = Request {
        version: VERSION.to_string(),
        args,
        state_dir,
        cwd,
        net_ns: net_ns(),
        state_dir_id,
        container_ns,
        cni,
    };
    let mut body = serde_json::to_vec(&req).map_err(|e| e.to_string())?;
    body.push(b'\n');
    // Until the daemon has our `go`, it runs nothing: any failure before
    // is an Err (the command runs here instead, or is reported undone).
    let not_taken =
        |why: String| format!("the daemon did not take the command ({why}); nothing was run");
    let set = |s: &UnixStream, t| {
        s.set_read_timeout(Some(t))
            .and_then(|()| s.set_write_timeout(Some(t)))
            .map_err(|e| e.to_string())
    };
    set(&stream, READY_TIMEOUT)?;
    stream.write_all(&body).map_err(|e| not_taken(format!("send: {e}")))?;
    let mut reader = BufReader::new(&stream);
    match read_reply(&mut reader) {
        Ok(Reply::Ready) => {}
        Ok(Reply::Declined { why }) => return Err(why),
        Ok(Reply::Done { .. }) => return Err(not_taken("a reply out of turn".into())),
        Err(why) => return Err(not_taken(why)),
    }
    (&stream).write_all(b"go\n").map_err(|e| not_taken(format!("send: {e}")))?;
    set(&stream, REPLY_TIMEOUT)?;
    match read_reply(&mut reader) {
        Ok(Reply::Done { code, stdout, stderr }) => {
            let _ = std::io::stdout().write_all(stdout.as_bytes());
            let _ = std::io::stderr().write_all(stderr.as_bytes());
            Ok(ExitCode::from(code))
        }
        // It gave up waiting for our `go`: nothing was run.
        Ok(Reply::Declined { why }) => Err(why),
        Ok(Reply::Ready) => Ok(lost("a reply out of turn")),
        // The command was handed over: the daemon may have run part or
        // all of it, so running it again here could double it.
        Err(why) => Ok(lost(&why)),
    }
}

/// One reply line.
fn read_reply(reader: &mut BufReader<&UnixStream>) -> Result<Reply, String> {
    let mut line = Vec::new();
    match reader.by_ref().take(MAX_REPLY).read_until(b'\n', &mut line) {
        Ok(0) => Err("it closed the connection without a reply".into()),
        Ok(_) => serde_json::from_slice(&line).map_err(|e| format!("unreadable reply: {e}")),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Err("no reply in time".into())
        }
        Err(e) => Err(e.to_string()),
    }
}

fn lost(why: &str) -> ExitCode {
    eprintln!(
        "weft: error: the outcome is unknown: the weft daemon took the command but did not \
         say how it ended ({why}); `weft endpoint ls` shows what was done, `weft gc` repairs \
         a half-done one"
    );
    ExitCode::FAILURE
}

/// What the client needs to know of a command line the daemon runs.
#[derive(Debug)]
struct Line {
    state_dir: PathBuf,
    /// attach: the file of the container's namespace it will open.
    netns_file: Option<PathBuf>,
}

/// Options of attach and detach that take a value.
const VALUE_OPTIONS: &[&str] =
    &["--netns", "--pid", "--ifname", "--ip", "--ip6", "--mac", "-p", "--publish", "--alias"];

/// Accepts the command lines the daemon runs: the only global option is
/// `--state-dir`, the command `attach` or `detach` with its own options.
/// Anything else (or unsure) runs locally.
fn eligible(args: &[String]) -> Result<Line, String> {
    let mut state_dir: Option<PathBuf> = None;
    let mut command: Option<&str> = None;
    let mut positional: Vec<&str> = Vec::new();
    let mut netns: Option<&str> = None;
    let mut pid: Option<&str> = None;
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v)),
            _ => (a.as_str(), None),
        };
        let mut value = || inline.or_else(|| it.next().map(String::as_str));
        match name {
            "--state-dir" => state_dir = value().map(PathBuf::from),
            "--json" if command == Some("attach") => {}
            n if command.is_some() && VALUE_OPTIONS.contains(&n) => {
                let v = value().ok_or("option without value")?;
                match n {
                    "--netns" => netns = Some(v),
                    "--pid" => pid = Some(v),
                    _ => {}
                }
            }
            n if n.starts_with('-') => return Err(format!("{n} runs locally")),
            n if command.is_none() => command = Some(n),
            n => positional.push(n),
        }
    }
    let netns_file = match command {
        Some("attach") => {
            let [_network, container] = positional[..] else {
                return Err("attach needs NETWORK CONTAINER".into());
            };
            let netns = match (netns, pid) {
                (Some(p), None) => NetnsRef::Path(p.into()),
                (None, Some(pid)) => NetnsRef::Pid(pid.parse().map_err(|_| "--pid: not a number")?),
                (None, None) => NetnsRef::Named,
                (Some(_), Some(_)) => return Err("--netns and --pid".into()),
            };
            Some(netns.file(container))
        }
        Some("detach") if positional.len() == 2 && netns.is_none() && pid.is_none() => None,
        _ => return Err("only attach and detach run in the daemon".into()),
    };
    let state_dir = state_dir
        .or_else(|| std::env::var_os("WEFT_STATE_DIR").filter(|v| !v.is_empty()).map(Into::into))
        .unwrap_or_else(|| PathBuf::from("/var/lib/weft"));
    Ok(Line { state_dir, netns_file })
}

#[cfg(test)]
mod tests {
    use super::eligible;

    fn args(s: &str) -> Vec<String> {
        std::iter::once("weft").chain(s.split_whitespace()).map(String::from).collect()
    }

    use std::path::Path;

    #[test]
    fn attach_and_detach_with_state_dir_are_eligible() {
        let l = eligible(&args("--state-dir /s attach n c")).unwrap();
        assert_eq!(l.state_dir, Path::new("/s"));
        assert_eq!(l.netns_file.as_deref(), Some(Path::new("/var/run/netns/c")));
        let l = eligible(&args("detach n c --state-dir=/t")).unwrap();
        assert_eq!((l.state_dir.as_path(), l.netns_file), (Path::new("/t"), None));
        let l = eligible(&args("attach n c --netns /run/netns/x -p 80:80 --json --ip 10.0.0.9"))
            .unwrap();
        assert_eq!(l.netns_file.as_deref(), Some(Path::new("/run/netns/x")));
        let l = eligible(&args("attach --pid=42 n c")).unwrap();
        assert_eq!(l.netns_file.as_deref(), Some(Path::new("/proc/42/ns/net")));
    }

    #[test]
    fn other_commands_and_options_run_locally() {
        for a in [
            "network ls",
            "gc",
            "attach n c -v",
            "-vv attach n c",
            "--etcd http://x attach n c",
            "attach n c --node b",
            "--config /x attach n c",
            "attach --help",
            "attach n",
            "attach n c d",
            "attach n c --frobnicate",
            "detach n c --netns /x",
            "",
        ] {
            assert!(eligible(&args(a)).is_err(), "{a:?} should run locally");
        }
    }
}
