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

use std::os::unix::fs::PermissionsExt;
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
    /// The kernel boot id weft is told (`WEFT_BOOT_ID`) after a simulated
    /// reboot.
    boot_id: Option<String>,
}

/// A process in the host's network namespace and a new private mount
/// namespace: a tmpfs on /run (so /run/docker/plugins is the test's) and
/// `etc` on /etc/docker. Prints `ready` once set up.
fn spawn_holder(host_ns: &Path, etc: &Path) -> Child {
    let setup = format!(
        "mount -t tmpfs tmpfs /run && mkdir -p /run/docker/plugins && \
         mount --bind {etc} /etc/docker && echo ready && exec sleep infinity",
        etc = etc.display()
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
    holder
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
        let holder = spawn_holder(&host_ns, &dir.path().join("etc"));
        let mut h = DockerHost {
            sb,
            state_dir,
            weft_args,
            dir,
            holder,
            dockerd: None,
            plugin: None,
            boot_id: None,
        };
        h.start_plugin();
        h.start_dockerd(false);
        h.import_image();
        h
    }

    /// Kills every process of the host's mount namespace (dockerd,
    /// containerd, shims, containers, the plugin: all started by the test)
    /// and the namespace's holder.
    fn kill_all(&mut self) {
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
        for c in [self.dockerd.take(), self.plugin.take()].into_iter().flatten() {
            let mut c = c;
            let _ = c.wait();
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }

    /// A simulated reboot: every process of the host dies and its network
    /// namespace (links, bridges, nftables) is replaced by a fresh one; the
    /// disks stay (dockerd's data root, weft's state directory). weft is
    /// told a new boot id. dockerd and the plugin start again.
    fn reboot(&mut self, boot_id: &str) {
        self.kill_all();
        // dockerd's exec root is on /run, a tmpfs, on a real host.
        let exec = self.path("exec");
        std::fs::remove_dir_all(&exec).expect("clear the exec root");
        std::fs::create_dir(&exec).expect("exec root");
        let sb = self.sb.as_mut().expect("a single-host test");
        sb.host = harness::Netns::new("host");
        let ns = sb.host.path.clone();
        self.holder = spawn_holder(&ns, &self.path("etc"));
        self.boot_id = Some(boot_id.to_string());
        self.start_plugin();
        self.start_dockerd(false);
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
            .envs(self.boot_id.iter().map(|b| ("WEFT_BOOT_ID", b)))
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
        // Entering a mount namespace resets the root to the namespace's own;
        // --root keeps the holder's, which differs under chroot (the
        // fresh-machine runner).
        c.arg(format!("--mount=/proc/{pid}/ns/mnt"))
            .arg(format!("--net=/proc/{pid}/ns/net"))
            .arg(format!("--root=/proc/{pid}/root"))
            .arg(format!("--wd=/proc/{pid}/cwd"))
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
            .envs(self.boot_id.iter().map(|b| ("WEFT_BOOT_ID", b)))
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
    /// `docker network create -d weft --ipam-driver weft EXTRA... NAME`.
    fn create_weft_network(&self, name: &str, extra: &[&str]) -> String {
        let mut args = vec!["network", "create", "-d", "weft", "--ipam-driver", "weft"];
        args.extend_from_slice(extra);
        args.push(name);
        self.docker_ok(&args)
    }

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
        self.kill_all();
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
    h.create_weft_network("front", &[]);
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
    let from_host = |addr: &str, port: u16| {
        h.sb()
            .host
            .sh(&format!("busybox nc -w 2 {addr} {port} </dev/null || true"))
            .trim()
            .to_string()
    };
    assert_eq!(from_host("203.0.113.1", 8080), "hello");
    assert_eq!(from_host("127.0.0.1", 8080), "hello");
    // A host address in -p limits the port to it; udp and ranges are
    // recorded with the endpoint and in weft's maps.
    h.run(
        "local",
        &["--network", "front", "-p", "127.0.0.1:8081:80", "-p", "9000-9001:90-91/udp"],
        HELLO,
    );
    assert_eq!(from_host("127.0.0.1", 8081), "hello");
    assert_eq!(from_host("203.0.113.1", 8081), "");
    let eps = h.weft_endpoints();
    let ports: Vec<String> = eps
        .iter()
        .flat_map(|e| e["ports"].as_array().cloned().unwrap_or_default())
        .map(|p| {
            format!("{}:{}:{}>{}", p["protocol"], p["host_ip"], p["host_port"], p["container_port"])
        })
        .collect();
    for want in [
        r#""tcp":"127.0.0.1":8081>80"#,
        r#""udp":null:9000>90"#,
        r#""udp":null:9001>91"#,
        r#""tcp":null:8080>80"#,
    ] {
        assert!(ports.iter().any(|p| p == want), "{want} not in {ports:?}");
    }
    h.docker_ok(&["rm", "-f", "local"]);
    assert_eq!(h.exec_ok("db", "nc -w 2 203.0.113.1 8080 </dev/null").trim(), "hello");
    let out = h.sb().outside.as_ref().expect("outside");
    assert_eq!(out.sh("busybox nc -w 2 203.0.113.1 8080 </dev/null || true").trim(), "hello");

    // Connected to a second network that Docker makes its gateway (it
    // sorts by name), the published port still answers from outside.
    h.create_weft_network("aback", &[]);
    h.docker_ok(&["network", "connect", "aback", "web"]);
    let route = h.exec_ok("web", "ip route show default");
    let aback_gw = h.weft_network("aback")["gateway"].as_str().expect("gateway").to_string();
    assert!(route.contains(&aback_gw), "Docker did not move the gateway: {route}");
    assert_eq!(out.sh("busybox nc -w 2 203.0.113.1 8080 </dev/null || true").trim(), "hello");
    h.docker_ok(&["network", "disconnect", "aback", "web"]);
    h.docker_ok(&["network", "rm", "aback"]);
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
    h.create_weft_network(
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
    h.create_weft_network("b", &["--subnet", "10.71.0.0/24"]);
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
    h.create_weft_network("vault", &["--internal"]);
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
    h.create_weft_network("n", &["--subnet", "10.72.0.0/24"]);
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
        (
            &["run", "--rm", "--network", "n", "--ip", "10.72.0.1", IMAGE, "true"],
            "10.72.0.1 is the network's gateway",
        ),
    ];
    for (args, want) in bad {
        let err = h.docker_err(args);
        assert!(err.contains("weft: ") && err.contains(want), "docker {args:?}: {err}");
        assert_eq!(h.sb().snapshot(), before, "docker {args:?} left something behind");
    }
    // An address outside the subnet: Docker refuses it before asking weft.
    let err = h.docker_err(&["run", "--rm", "--network", "n", "--ip", "10.99.0.7", IMAGE, "true"]);
    assert!(err.contains("10.99.0.7"), "{err}");
    assert_eq!(h.sb().snapshot(), before, "--ip outside the subnet left something behind");
    // A network in use: Docker refuses to remove it, and weft refuses to
    // remove it under Docker.
    h.run("cc", &["--network", "n"], &["sleep", "1000"]);
    assert!(h.docker_err(&["network", "rm", "n"]).contains("active endpoints"));
    let name = format!("docker-{}", &h.network_id("n")[..12]);
    assert!(h.sb().weft_err(&["network", "rm", &name]).contains("endpoint"));
}

/// A plugin on its own socket in a temporary directory, without dockerd:
/// the protocol and the socket's protection, seen from a client.
struct LonePlugin {
    sb: Sandbox,
    dir: tempfile::TempDir,
    child: Child,
}

impl LonePlugin {
    fn start() -> LonePlugin {
        let sb = Sandbox::new();
        let dir = tempfile::tempdir().expect("tempdir");
        // Others may traverse it: only the socket's own mode protects it.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let child = sb
            .weft_cmd(&["docker-plugin", "--socket"])
            .arg(dir.path().join("weft.sock"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn weft docker-plugin");
        let p = LonePlugin { sb, dir, child };
        harness::eventually("the plugin's socket", || p.sock().exists());
        p
    }

    fn sock(&self) -> PathBuf {
        self.dir.path().join("weft.sock")
    }

    /// One POST on a fresh connection: status line and body.
    fn post(&self, path: &str, body: &str) -> (String, String) {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(self.sock()).expect("connect");
        write!(
            s,
            "POST /{path} HTTP/1.1\r\nHost: plugin\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        let (head, body) = out.split_once("\r\n\r\n").expect("an HTTP response");
        (head.lines().next().unwrap_or_default().to_string(), body.to_string())
    }

    /// Whether a process of user `nobody` (65534) can connect.
    fn nobody_connects(&self) -> bool {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::process::CommandExt;
        // SAFETY: a zeroed sockaddr_un is valid; the path fits (a tempdir).
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (d, b) in addr.sun_path.iter_mut().zip(self.sock().as_os_str().as_bytes()) {
            *d = *b as libc::c_char;
        }
        let mut cmd = Command::new("/bin/true");
        // SAFETY: only async-signal-safe system calls between fork and
        // exec; the child reports a refused connect as a failed spawn.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(65534) != 0
                    || libc::setuid(65534) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
                let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
                if libc::connect(fd, (&addr as *const libc::sockaddr_un).cast(), len) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The plugin hangs up on another user without answering.
                let req = b"POST /Plugin.Activate HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
                if libc::send(fd, req.as_ptr().cast(), req.len(), libc::MSG_NOSIGNAL) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let mut buf = [0u8; 16];
                if libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) <= 0 {
                    return Err(std::io::Error::from_raw_os_error(libc::ECONNRESET));
                }
                Ok(())
            });
        }
        cmd.status().is_ok_and(|s| s.success())
    }
}

impl Drop for LonePlugin {
    fn drop(&mut self) {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        let _ = &self.sb;
    }
}

#[test]
fn plugin_speaks_the_protocol_and_its_socket_is_root_only() {
    let p = LonePlugin::start();
    let meta = std::fs::metadata(p.sock()).expect("socket");
    use std::os::unix::fs::MetadataExt;
    assert_eq!((meta.mode() & 0o777, meta.uid()), (0o600, 0));

    let (status, body) = p.post("Plugin.Activate", "");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["Implements"], serde_json::json!(["NetworkDriver", "IpamDriver"]));
    // Unknown methods are 404, so Docker treats them as optional.
    assert_eq!(p.post("NetworkDriver.AllocateNetwork", "{}").0, "HTTP/1.1 404 Not Found");
    // A request weft cannot use: one line, under both protocols' names.
    let (status, body) = p.post("IpamDriver.RequestPool", "{not json");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let err = v["Err"].as_str().expect("Err");
    assert!(err.starts_with("weft: malformed request") && !err.contains('\n'), "{err}");
    assert_eq!(v["Error"], v["Err"]);

    // Another user cannot connect (0600), nor be served if the mode were
    // loosened (the plugin checks the peer's uid).
    assert!(!p.nobody_connects(), "user nobody connected to the plugin");
    std::fs::set_permissions(p.sock(), std::fs::Permissions::from_mode(0o666)).expect("chmod");
    assert!(!p.nobody_connects(), "user nobody was served by the plugin");
}

#[test]
fn restarts_keep_endpoints_and_addresses() {
    let mut h = DockerHost::new();
    h.create_weft_network("r", &["--subnet", "10.74.0.0/24"]);
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
        h.create_weft_network("span", &["-o", "weft.overlay=ov", "--subnet", "10.90.0.0/24"]);
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

#[test]
fn dual_stack_network_gives_ipv6_addresses() {
    let h = DockerHost::new();
    h.create_weft_network(
        "dual",
        &["--ipv6", "--subnet", "10.75.0.0/24", "--subnet", "fd00:75::/64"],
    );
    let net = h.weft_network("dual");
    assert_eq!(net["subnet6"], "fd00:75::/64", "{net}");
    h.run("six", &["--network", "dual", "--ip6", "fd00:75::10"], &["sleep", "1000"]);
    h.run("other", &["--network", "dual"], &["sleep", "1000"]);
    let addrs = h.exec_ok("six", "ip -6 -o addr show eth0; ip -6 route show default");
    assert!(addrs.contains("fd00:75::10/64"), "{addrs}");
    assert!(
        addrs.contains(&format!("via {}", net["gateway6"].as_str().expect("gateway6"))),
        "{addrs}"
    );
    h.exec_ok("other", "ping -c 1 -W 2 fd00:75::10");
    let eps = h.weft_endpoints();
    assert!(eps.iter().any(|e| e["address6"] == "fd00:75::10/64"), "{eps:?}");

    // weft's network driver with Docker's own IPAM driver works too.
    h.docker_ok(&["network", "create", "-d", "weft", "--subnet", "10.78.0.0/24", "plain"]);
    h.run("plain1", &["--network", "plain"], &["sleep", "1000"]);
    h.run("plain2", &["--network", "plain"], &["sleep", "1000"]);
    h.exec_ok("plain1", "ping -c 1 -W 2 plain2");
    assert_eq!(h.weft_network("plain")["subnet"], "10.78.0.0/24");
}

#[test]
fn host_reboot_loses_no_endpoint_and_leaks_nothing() {
    let mut h = DockerHost::new();
    h.create_weft_network("boot", &["--subnet", "10.77.0.0/24"]);
    h.run("b1", &["--network", "boot"], &["sleep", "1000"]);
    h.run("b2", &["--network", "boot", "-p", "8080:80"], HELLO);
    let bridge = format!("br-{}", &h.network_id("boot")[..12]);

    h.reboot("simulated-boot-2");
    // weft's records of the old boot are gone (their namespaces and links
    // died with it); dockerd's containers are stopped, its network kept.
    harness::eventually("old boot's endpoints reclaimed", || h.weft_endpoints().is_empty());
    assert!(h.docker_ok(&["ps", "-q"]).is_empty());
    // Started again: the bridge is rebuilt, the ports are published again,
    // no address is handed out twice.
    h.docker_ok(&["start", "b1", "b2"]);
    assert!(h.sb().has_link(&bridge), "bridge {bridge} not rebuilt");
    let (a, b) = (h.ip_of("b1", "boot"), h.ip_of("b2", "boot"));
    assert_ne!(a, b);
    assert_eq!(h.weft_endpoints().len(), 2);
    h.exec_ok("b1", "ping -c 1 -W 2 b2");
    assert_eq!(h.sb().host.sh("busybox nc -w 2 127.0.0.1 8080 </dev/null || true").trim(), "hello");
    // weft gc agrees with dockerd: nothing stale, no link without an owner.
    let gc = h.weft_json(&["gc", "--json"]);
    for k in ["endpoints", "veths", "bridges"] {
        assert_eq!(gc[k].as_array().map(Vec::len), Some(0), "{gc}");
    }
    let veths = h.sb().host_link_names().into_iter().filter(|n| n.starts_with("vw")).count();
    assert_eq!(veths, 2);
}

#[test]
fn containers_started_at_once_get_distinct_addresses() {
    let h = DockerHost::new();
    h.create_weft_network("many", &[]);
    let names: Vec<String> = (0..8).map(|i| format!("m{i}")).collect();
    std::thread::scope(|s| {
        for n in &names {
            let h = &h;
            s.spawn(move || h.run(n, &["--network", "many"], &["sleep", "1000"]));
        }
    });
    let mut ips: Vec<String> = names.iter().map(|n| h.ip_of(n, "many")).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), names.len(), "duplicate addresses: {ips:?}");
    let eps = h.weft_endpoints();
    assert_eq!(eps.len(), names.len());
    let mut weft_ips: Vec<String> = eps
        .iter()
        .filter_map(|e| e["address"].as_str())
        .map(|a| a.split('/').next().unwrap_or_default().to_string())
        .collect();
    weft_ips.sort();
    assert_eq!(weft_ips, ips, "weft and Docker disagree on the addresses");
}
