//! Docker's networks on weft: Debian's real dockerd 20.10 (package
//! docker.io) with `weft docker-plugin` as its remote network and IPAM
//! driver, end to end.
//!
//! Each test starts its own dockerd inside a sandbox: the sandbox host's
//! network namespace (`--bridge=none --iptables=false`, so Docker itself
//! touches no network) and a private mount namespace in which a tmpfs
//! covers /run (so /run/docker/plugins, where dockerd finds plugins, is
//! the test's own) and a temporary directory covers /etc/docker. dockerd's
//! data, exec root, pidfile and API socket are in a temporary directory.
//! The image is busybox-static, imported with `docker import`.

mod harness;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::cluster::Cluster;
use harness::{to_run, Run, Sandbox, TcpProbe, WEFT};

const IMAGE: &str = "weft-busybox";

fn on_path(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
        .unwrap_or(false)
}

/// The packages these tests need, checked by what they install: a missing
/// one fails the test with its name.
fn require_packages() {
    for bin in ["dockerd", "docker", "containerd", "runc"] {
        assert!(on_path(bin), "{bin} not found: install Debian's docker.io package");
    }
    let busybox = std::fs::read("/bin/busybox")
        .expect("/bin/busybox not found: install Debian's busybox-static package");
    assert!(
        !has_interpreter(&busybox),
        "/bin/busybox is dynamically linked: install Debian's busybox-static package"
    );
}

/// Whether an ELF64 executable names a dynamic loader (a PT_INTERP
/// program header): a busybox image needs a static one.
fn has_interpreter(elf: &[u8]) -> bool {
    let num = |at: usize, len: usize| {
        elf.get(at..at + len)
            .map_or(0, |b| b.iter().rev().fold(0usize, |n, x| n << 8 | *x as usize))
    };
    let (phoff, phentsize, phnum) = (num(0x20, 8), num(0x36, 2), num(0x38, 2));
    (0..phnum).any(|i| num(phoff + i * phentsize, 4) == 3)
}

/// One simulated host running dockerd and the weft plugin.
struct DockerHost {
    /// The sandbox host of a single-host test (None: a cluster's host).
    sb: Option<Sandbox>,
    /// weft's state directory on this host.
    state_dir: PathBuf,
    /// weft's global options (cluster store, node name).
    weft_args: Vec<String>,
    dir: tempfile::TempDir,
    /// A process holding the private mount namespace (and the sandbox's
    /// network namespace) that dockerd and the plugin run in.
    holder: Child,
    dockerd: Option<Child>,
    plugin: Option<Child>,
}

impl DockerHost {
    fn new() -> DockerHost {
        let sb = Sandbox::new();
        let (ns, state) = (sb.host.path.clone(), sb.state_dir().to_path_buf());
        DockerHost::start(Some(sb), ns, state, Vec::new())
    }

    /// dockerd and the plugin on host `i` of a cluster (etcd store).
    fn in_cluster(c: &Cluster, i: usize) -> DockerHost {
        let h = &c.hosts[i];
        let mut args = c.client_args();
        args.extend(["--node".to_string(), h.name.clone()]);
        DockerHost::start(None, h.ns.path.clone(), h.state.path().to_path_buf(), args)
    }

    fn start(
        sb: Option<Sandbox>,
        host_ns: PathBuf,
        state_dir: PathBuf,
        weft_args: Vec<String>,
    ) -> DockerHost {
        require_packages();
        let dir = tempfile::tempdir().expect("tempdir");
        for d in ["etc", "data", "exec", "rootfs/bin", "rootfs/etc", "rootfs/tmp"] {
            std::fs::create_dir_all(dir.path().join(d)).expect("mkdir");
        }
        std::fs::write(dir.path().join("daemon.json"), "{}").expect("daemon.json");
        let setup = format!(
            "mount -t tmpfs tmpfs /run && mkdir -p /run/docker/plugins && \
             mount --bind {etc} /etc/docker && echo ready && exec sleep infinity",
            etc = dir.path().join("etc").display()
        );
        let mut holder = Command::new("nsenter")
            .arg(format!("--net={}", host_ns.display()))
            .args(["unshare", "-m", "--propagation", "private", "sh", "-c", &setup])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn unshare");
        let mut ready = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(holder.stdout.take().expect("stdout"))
            .read_line(&mut ready)
            .expect("read holder");
        assert_eq!(ready.trim(), "ready", "private mount namespace setup failed");
        let mut h =
            DockerHost { sb, state_dir, weft_args, dir, holder, dockerd: None, plugin: None };
        h.start_plugin();
        h.start_dockerd(false);
        h.import_image();
        h
    }

    fn sb(&self) -> &Sandbox {
        self.sb.as_ref().expect("a single-host test")
    }

    fn sb_mut(&mut self) -> &mut Sandbox {
        self.sb.as_mut().expect("a single-host test")
    }

    /// weft on this host, in dockerd's mount namespace (it sees the
    /// containers' namespaces as dockerd mounted them).
    fn weft(&self, args: &[&str]) -> Run {
        let out = self
            .inside(WEFT)
            .args(&self.weft_args)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(args)
            .output()
            .expect("spawn weft");
        to_run(out)
    }

    fn weft_json(&self, args: &[&str]) -> serde_json::Value {
        let r = self.weft(args);
        assert!(r.ok, "weft {args:?} failed: {}", r.stderr);
        serde_json::from_str(&r.stdout).expect("weft JSON")
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// A command run in the private mount namespace and the sandbox's
    /// network namespace.
    fn inside(&self, program: &str) -> Command {
        let pid = self.holder.id();
        let mut c = Command::new("nsenter");
        c.arg(format!("--mount=/proc/{pid}/ns/mnt"))
            .arg(format!("--net=/proc/{pid}/ns/net"))
            .arg(program);
        c
    }

    fn start_plugin(&mut self) {
        let log = std::fs::File::create(self.path("plugin.log")).expect("log");
        let child = self
            .inside(WEFT)
            .args(&self.weft_args)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(["-v", "docker-plugin"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn weft docker-plugin");
        self.plugin = Some(child);
        let sock = "/run/docker/plugins/weft.sock";
        self.wait("the plugin's socket", |h| {
            h.inside("test").args(["-S", sock]).status().is_ok_and(|s| s.success())
        });
    }

    fn stop_plugin(&mut self) {
        if let Some(mut p) = self.plugin.take() {
            // SAFETY: a signal to our own child.
            unsafe { libc::kill(p.id() as i32, libc::SIGTERM) };
            let _ = p.wait();
        }
    }

    fn start_dockerd(&mut self, live_restore: bool) {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.path("dockerd.log"))
            .expect("log");
        let mut cmd = self.inside("bash");
        // No CAP_SYS_RESOURCE here: limits dockerd and containerd can keep.
        cmd.args(["-c", "ulimit -n 1024 && ulimit -u 4096 && exec \"$@\"", "bash", "dockerd"])
            .arg(format!("--data-root={}", self.path("data").display()))
            .arg(format!("--exec-root={}", self.path("exec").display()))
            .arg(format!("--pidfile={}", self.path("dockerd.pid").display()))
            .arg(format!("--host=unix://{}", self.path("docker.sock").display()))
            .arg(format!("--config-file={}", self.path("daemon.json").display()))
            .args(["--bridge=none", "--iptables=false", "--ip6tables=false"]);
        if live_restore {
            cmd.arg("--live-restore");
        }
        let child = cmd.stdout(Stdio::null()).stderr(log).spawn().expect("spawn dockerd");
        self.dockerd = Some(child);
        self.wait("dockerd to answer", |h| h.docker(&["version"]).ok);
    }

    fn stop_dockerd(&mut self) {
        if let Some(mut d) = self.dockerd.take() {
            // SAFETY: a signal to our own child.
            unsafe { libc::kill(d.id() as i32, libc::SIGTERM) };
            let _ = d.wait();
        }
    }

    fn import_image(&self) {
        let root = self.path("rootfs");
        std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("copy busybox");
        for applet in ["sh", "sleep", "ip", "nc", "ping", "nslookup", "cat", "true", "echo"] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).expect("symlink");
        }
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .args(["-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn tar");
        let out = self
            .docker_cmd(&["import", "-", IMAGE])
            .stdin(tar.stdout.take().expect("tar stdout"))
            .output()
            .expect("docker import");
        assert!(tar.wait().is_ok_and(|s| s.success()), "tar of the image failed");
        assert!(out.status.success(), "docker import: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn wait(&mut self, what: &str, mut cond: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cond(self) {
            let died = [&mut self.dockerd, &mut self.plugin]
                .into_iter()
                .any(|c| c.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_some()));
            if died || Instant::now() > deadline {
                panic!(
                    "gave up waiting for {what}\ndockerd: {}\nplugin: {}",
                    tail(&self.path("dockerd.log")),
                    tail(&self.path("plugin.log"))
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn docker_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.arg(format!("--host=unix://{}", self.path("docker.sock").display())).args(args);
        c
    }

    fn docker(&self, args: &[&str]) -> Run {
        to_run(self.docker_cmd(args).output().expect("spawn docker"))
    }

    fn docker_ok(&self, args: &[&str]) -> String {
        let r = self.docker(args);
        assert!(
            r.ok,
            "docker {args:?} failed: {}\nplugin: {}",
            r.stderr,
            tail(&self.path("plugin.log"))
        );
        r.stdout.trim().to_string()
    }

    /// Docker's error for a command that must fail: one line, from weft.
    fn docker_err(&self, args: &[&str]) -> String {
        let r = self.docker(args);
        assert!(!r.ok, "docker {args:?} should have failed: {}", r.stdout);
        r.stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or_default().to_string()
    }

    /// A container that stays up (`docker run -d`).
    fn run(&self, name: &str, opts: &[&str], cmd: &[&str]) {
        let mut args = vec!["run", "-d", "--name", name];
        args.extend_from_slice(opts);
        args.push(IMAGE);
        args.extend_from_slice(cmd);
        self.docker_ok(&args);
    }

    fn exec(&self, name: &str, script: &str) -> Run {
        self.docker(&["exec", name, "sh", "-c", script])
    }

    fn exec_ok(&self, name: &str, script: &str) -> String {
        let r = self.exec(name, script);
        assert!(r.ok, "`{script}` in {name} failed: {}{}", r.stdout, r.stderr);
        r.stdout
    }

    fn ip_of(&self, name: &str, net: &str) -> String {
        let f = format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}");
        self.docker_ok(&["inspect", "-f", &f, name])
    }

    fn network_id(&self, net: &str) -> String {
        self.docker_ok(&["network", "inspect", "-f", "{{.Id}}", net])
    }

    /// weft's network behind a Docker network.
    fn weft_network(&self, net: &str) -> serde_json::Value {
        let name = format!("docker-{}", &self.network_id(net)[..12]);
        self.weft_json(&["network", "inspect", &name, "--json"])
    }

    fn weft_endpoints(&self) -> Vec<serde_json::Value> {
        self.weft_json(&["endpoint", "ls", "--json"]).as_array().expect("endpoints").clone()
    }
}

impl Drop for DockerHost {
    fn drop(&mut self) {
        if self.dockerd.is_some() {
            let ids = self.docker(&["ps", "-aq"]).stdout;
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids);
                let _ = self.docker(&args);
            }
        }
        self.stop_dockerd();
        self.stop_plugin();
        // Whatever dockerd left in the namespace (containerd, shims) goes
        // with the holder: all of it was started by this test.
        let mnt = std::fs::read_link(format!("/proc/{}/ns/mnt", self.holder.id())).ok();
        if let Ok(procs) = std::fs::read_dir("/proc") {
            for p in procs.flatten() {
                let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                    continue;
                };
                if pid as u32 != self.holder.id()
                    && mnt.is_some()
                    && std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok() == mnt
                {
                    // SAFETY: a process in the test's own mount namespace.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

fn tail(p: &Path) -> String {
    let s = std::fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// A TCP server in a container answering `hello` to each connection.
const HELLO: &[&str] = &["nc", "-ll", "-p", "80", "-e", "echo", "hello"];

#[test]
fn containers_on_a_weft_network_talk_by_name_publish_ports_and_get_out() {
    let mut h = DockerHost::new();
    h.sb_mut().wire_outside();
    h.docker_ok(&["network", "create", "-d", "weft", "--ipam-driver", "weft", "front"]);
    let net = h.weft_network("front");
    let short = &h.network_id("front")[..12];
    let bridge = format!("br-{short}");
    assert_eq!(net["bridge"], bridge.as_str(), "{net}");
    assert!(h.sb().has_link(&bridge), "bridge {bridge} missing");

    h.run("web", &["--network", "front", "-p", "8080:80"], HELLO);
    h.run("db", &["--network", "front"], &["sleep", "1000"]);
    let web_ip = h.ip_of("web", "front");
    assert!(net["subnet"].as_str().is_some_and(|s| s.starts_with("10.89.")), "{net}");
    assert_eq!(h.weft_endpoints().len(), 2);
    // The container's interface is the veth pair weft made, with weft's
    // address and gateway.
    let addr = h.exec_ok("web", "ip -4 -o addr show eth0");
    assert!(addr.contains(&format!("{web_ip}/24")), "{addr}");
    let route = h.exec_ok("web", "ip route show default");
    assert!(
        route.contains(&format!("via {}", net["gateway"].as_str().expect("gateway"))),
        "{route}"
    );

    // Names: Docker's embedded DNS works with a remote driver.
    let look = h.exec_ok("db", "nslookup web 127.0.0.11");
    assert!(look.contains(&web_ip), "{look}");
    h.exec_ok("db", "ping -c 1 -W 2 web");
    assert_eq!(h.exec_ok("db", "nc -w 2 web 80 </dev/null").trim(), "hello");

    // -p: from the host's own address, localhost, another container (via
    // the host address) and an outside namespace.
    let from_host = |addr: &str| {
        h.sb()
            .host
            .sh(&format!("busybox nc -w 2 {addr} 8080 </dev/null || true"))
            .trim()
            .to_string()
    };
    assert_eq!(from_host("203.0.113.1"), "hello");
    assert_eq!(from_host("127.0.0.1"), "hello");
    assert_eq!(h.exec_ok("db", "nc -w 2 203.0.113.1 8080 </dev/null").trim(), "hello");
    let out = h.sb().outside.as_ref().expect("outside");
    assert_eq!(out.sh("busybox nc -w 2 203.0.113.1 8080 </dev/null || true").trim(), "hello");

    // Outbound NAT: the outside sees the host's address.
    let probe = TcpProbe::listen(out, "203.0.113.2:9000", Duration::from_secs(5));
    h.exec_ok("db", "echo out | nc -w 2 203.0.113.2 9000");
    let (peer, got) = probe.accepted().expect("connection from the container");
    assert_eq!((peer.ip().to_string().as_str(), got.trim()), ("203.0.113.1", "out"));

    // Stopping the containers frees their endpoints; removing the network
    // removes weft's network and bridge.
    h.docker_ok(&["rm", "-f", "web", "db"]);
    assert!(h.weft_endpoints().is_empty(), "{:?}", h.weft_endpoints());
    h.docker_ok(&["network", "rm", "front"]);
    let nets = h.sb().weft_json(&["network", "ls", "--json"]);
    assert_eq!(nets.as_array().map(Vec::len), Some(0), "{nets}");
    harness::eventually("bridge deleted", || !h.sb().has_link(&bridge));
    harness::eventually("no veth left", || {
        !h.sb().host_link_names().iter().any(|n| n.starts_with("vw"))
    });
}

#[test]
fn subnet_gateway_mtu_fixed_ip_connect_and_isolation() {
    let h = DockerHost::new();
    let create = |name: &str, extra: &[&str]| {
        let mut args = vec!["network", "create", "-d", "weft", "--ipam-driver", "weft"];
        args.extend_from_slice(extra);
        args.push(name);
        h.docker_ok(&args);
    };
    create(
        "a",
        &[
            "--subnet",
            "10.70.0.0/24",
            "--gateway",
            "10.70.0.254",
            "-o",
            "com.docker.network.driver.mtu=1400",
        ],
    );
    create("b", &["--subnet", "10.71.0.0/24"]);
    let net = h.weft_network("a");
    assert_eq!(
        (net["gateway"].as_str(), net["mtu"].as_u64()),
        (Some("10.70.0.254"), Some(1400)),
        "{net}"
    );

    h.run("one", &["--network", "a", "--ip", "10.70.0.10"], &["sleep", "1000"]);
    h.run("two", &["--network", "b"], &["sleep", "1000"]);
    let link =
        h.exec_ok("one", "ip -o link show eth0; ip -4 -o addr show eth0; ip route show default");
    assert!(link.contains("mtu 1400"), "{link}");
    assert!(link.contains("10.70.0.10/24"), "{link}");
    assert!(link.contains("via 10.70.0.254"), "{link}");
    let two_ip = h.ip_of("two", "b");

    // Isolation: networks do not reach each other.
    assert!(!h.exec("one", &format!("ping -c 1 -W 1 {two_ip}")).ok, "a reached b");

    // connect / disconnect.
    h.docker_ok(&["network", "connect", "b", "one"]);
    let one_b = h.ip_of("one", "b");
    assert!(one_b.starts_with("10.71.0."), "{one_b}");
    h.exec_ok("one", &format!("ping -c 1 -W 2 {two_ip}"));
    h.exec_ok("two", "ping -c 1 -W 2 one");
    assert_eq!(h.weft_endpoints().len(), 3);
    h.docker_ok(&["network", "disconnect", "b", "one"]);
    assert!(!h.exec("one", "ip link show eth1").ok, "eth1 still in the container");
    assert_eq!(h.weft_endpoints().len(), 2);
    assert!(!h.exec("one", &format!("ping -c 1 -W 1 {two_ip}")).ok, "still reaches b");

    // A fixed address that another container holds is refused.
    let err = h.docker_err(&["run", "--rm", "--network", "a", "--ip", "10.70.0.10", IMAGE, "true"]);
    assert!(err.contains("weft: ") && err.contains("10.70.0.10"), "{err}");
    assert_eq!(h.weft_endpoints().len(), 2);
}

#[test]
fn internal_network_reaches_nothing_outside() {
    let mut h = DockerHost::new();
    h.sb_mut().wire_outside();
    h.docker_ok(&[
        "network",
        "create",
        "-d",
        "weft",
        "--ipam-driver",
        "weft",
        "--internal",
        "vault",
    ]);
    assert_eq!(h.weft_network("vault")["internal"], true);
    h.run("xx", &["--network", "vault"], &["sleep", "1000"]);
    h.run("yy", &["--network", "vault"], &["sleep", "1000"]);
    h.exec_ok("xx", "ping -c 1 -W 2 yy");
    let routes = h.exec_ok("xx", "ip route");
    assert!(!routes.contains("default"), "internal container has a default route: {routes}");
    assert!(!h.exec("xx", "ping -c 1 -W 1 203.0.113.2").ok, "internal container got out");
    // Docker did not give it a second network to get out by.
    assert!(!h.exec("xx", "ip link show eth1").ok);
}

#[test]
fn bad_input_fails_with_weft_s_message_and_leaves_nothing() {
    let h = DockerHost::new();
    h.docker_ok(&[
        "network",
        "create",
        "-d",
        "weft",
        "--ipam-driver",
        "weft",
        "--subnet",
        "10.72.0.0/24",
        "n",
    ]);
    let before = h.sb().snapshot();
    let bad: &[(&[&str], &str)] = &[
        (
            &["network", "create", "-d", "weft", "--ipam-driver", "weft", "-o", "color=red", "x"],
            "unknown option -o color",
        ),
        (
            &[
                "network",
                "create",
                "-d",
                "weft",
                "--ipam-driver",
                "weft",
                "--subnet",
                "10.72.0.0/25",
                "x",
            ],
            "overlaps weft network",
        ),
        (
            &[
                "network",
                "create",
                "-d",
                "weft",
                "--ipam-driver",
                "weft",
                "--subnet",
                "10.73.0.0/24",
                "--ip-range",
                "10.73.0.0/25",
                "x",
            ],
            "--ip-range is not supported",
        ),
        (
            &[
                "network",
                "create",
                "-d",
                "weft",
                "--ipam-driver",
                "weft",
                "-o",
                "com.docker.network.driver.mtu=big",
                "x",
            ],
            "not a number",
        ),
        (&["run", "--rm", "--network", "n", "-p", "80", IMAGE, "true"], "chosen host ports only"),
    ];
    for (args, want) in bad {
        let err = h.docker_err(args);
        assert!(err.contains("weft: ") && err.contains(want), "docker {args:?}: {err}");
        assert_eq!(h.sb().snapshot(), before, "docker {args:?} left something behind");
    }
    // A network in use: Docker refuses to remove it, and weft refuses to
    // remove it under Docker.
    h.run("cc", &["--network", "n"], &["sleep", "1000"]);
    assert!(h.docker_err(&["network", "rm", "n"]).contains("active endpoints"));
    let name = format!("docker-{}", &h.network_id("n")[..12]);
    assert!(h.sb().weft_err(&["network", "rm", &name]).contains("endpoint"));
}

#[test]
fn plugin_socket_is_root_only() {
    let h = DockerHost::new();
    let out = h
        .inside("stat")
        .args(["-c", "%a %U", "/run/docker/plugins/weft.sock"])
        .output()
        .expect("stat");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "600 root");
}

#[test]
fn restarts_keep_endpoints_and_addresses() {
    let mut h = DockerHost::new();
    h.docker_ok(&[
        "network",
        "create",
        "-d",
        "weft",
        "--ipam-driver",
        "weft",
        "--subnet",
        "10.74.0.0/24",
        "r",
    ]);
    h.run("pp", &["--network", "r"], &["sleep", "1000"]);
    h.run("qq", &["--network", "r"], &["sleep", "1000"]);

    // The plugin restarted while containers run: they keep talking, and
    // Docker's later calls find weft's records.
    h.stop_plugin();
    h.exec_ok("pp", "ping -c 1 -W 2 qq");
    h.start_plugin();
    h.run("ss", &["--network", "r"], &["sleep", "1000"]);
    let ips: Vec<String> = ["pp", "qq", "ss"].iter().map(|c| h.ip_of(c, "r")).collect();
    assert!(ips[2] != ips[0] && ips[2] != ips[1], "duplicate address: {ips:?}");
    h.docker_ok(&["rm", "-f", "ss"]);
    assert_eq!(h.weft_endpoints().len(), 2);

    // dockerd restarted without live-restore stops the containers as it
    // goes down: their endpoints go with them. Started again, they get
    // their network back.
    h.stop_dockerd();
    assert!(h.weft_endpoints().is_empty(), "{:?}", h.weft_endpoints());
    h.start_dockerd(true);
    h.docker_ok(&["start", "pp", "qq"]);
    assert_eq!(h.weft_endpoints().len(), 2);
    h.exec_ok("pp", "ping -c 1 -W 2 qq");

    // With live-restore the containers outlive dockerd, and so do their
    // endpoints; the restarted dockerd finds them as they were.
    h.stop_dockerd();
    assert_eq!(h.weft_endpoints().len(), 2, "endpoints lost with dockerd down");
    h.start_dockerd(true);
    h.exec_ok("pp", "ping -c 1 -W 2 qq");
    assert_eq!(h.weft_endpoints().len(), 2);
    h.docker_ok(&["rm", "-f", "pp", "qq"]);
    assert!(h.weft_endpoints().is_empty(), "{:?}", h.weft_endpoints());
    let gc = h.weft_json(&["gc", "--json"]);
    assert_eq!(gc["endpoints"].as_array().map(Vec::len), Some(0), "{gc}");
    harness::eventually("no veth left", || {
        !h.sb().host_link_names().iter().any(|n| n.starts_with("vw"))
    });
}

#[test]
fn overlay_network_spans_dockerds_on_two_hosts_without_swarm() {
    let cluster = Cluster::new(2);
    let ov = ["network", "create", "ov", "--driver", "overlay", "--subnet", "10.90.0.0/24"];
    cluster.weft_ok(0, &ov);
    // Declared after the cluster: dropped (dockerd stopped) before it.
    let hosts: Vec<DockerHost> = (0..2).map(|i| DockerHost::in_cluster(&cluster, i)).collect();
    for h in &hosts {
        harness::eventually("the agent built the overlay's bridge", || {
            h.weft(&["network", "inspect", "ov", "--json"]).ok
                && h.inside("ip")
                    .args(["link", "show", "vx-ov"])
                    .output()
                    .is_ok_and(|o| o.status.success())
        });
        h.docker_ok(&[
            "network",
            "create",
            "-d",
            "weft",
            "--ipam-driver",
            "weft",
            "-o",
            "weft.overlay=ov",
            "--subnet",
            "10.90.0.0/24",
            "span",
        ]);
    }
    hosts[0].run("alpha", &["--network", "span"], HELLO);
    hosts[1].run("beta", &["--network", "span"], &["sleep", "1000"]);
    let (a, b) = (hosts[0].ip_of("alpha", "span"), hosts[1].ip_of("beta", "span"));
    assert_ne!(a, b, "two hosts' dockerds got the same address");
    // weft knows both, each on its node.
    let eps = hosts[1].weft_endpoints();
    let nodes: Vec<&str> = eps.iter().filter_map(|e| e["node"].as_str()).collect();
    assert_eq!(nodes.len(), 2, "{eps:?}");
    assert_ne!(nodes[0], nodes[1], "{eps:?}");
    // By address across hosts (the VXLAN entries follow within moments).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !hosts[1].exec("beta", &format!("ping -c 1 -W 1 {a}")).ok {
        assert!(Instant::now() < deadline, "beta on host1 cannot reach alpha ({a}) on host0");
    }
    assert_eq!(hosts[1].exec_ok("beta", &format!("nc -w 2 {a} 80 </dev/null")).trim(), "hello");
    // Docker's DNS on host1 knows only host1's containers.
    assert!(!hosts[1].exec("beta", "nslookup alpha 127.0.0.11").ok);

    // Removing one host's Docker network leaves weft's overlay to the others.
    hosts[1].docker_ok(&["rm", "-f", "beta"]);
    hosts[1].docker_ok(&["network", "rm", "span"]);
    assert!(hosts[1].weft(&["network", "inspect", "ov"]).ok);
    assert_eq!(hosts[0].weft_endpoints().len(), 1);
}
