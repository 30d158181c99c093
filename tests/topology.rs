//! `weft topology`: golden output (text and JSON) for a fixed scenario, the
//! marks for state that disagrees with the store, the other formats, and a
//! 50-container network that must stay within the width.
//!
//! Regenerate the golden files with `UPDATE_GOLDEN=1 cargo test --test topology`.

mod harness;

use std::path::PathBuf;

use std::time::Duration;

use harness::cluster::{eventually, Cluster};
use harness::Sandbox;
use serde_json::Value;

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden").join(name)
}

fn check_golden(name: &str, got: &str) {
    let path = golden_path(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert!(
        want == got,
        "{name} differs from the golden file\n--- want\n{want}\n--- got\n{got}\n(UPDATE_GOLDEN=1 rewrites it)"
    );
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string()
}

/// The fixed scenario: an uplink with a default route, network `front`
/// (two containers) and internal network `back` (one), fixed addresses and
/// MACs, fixed container names (namespaces given by path), traffic that
/// taught the bridges every MAC.
fn scenario() -> Sandbox {
    let mut sb = Sandbox::new();
    sb.host.sh("ip link add uplink0 type veth peer name uplink0p && ip link set uplink0p up && \
         ip addr add 203.0.113.1/24 dev uplink0 && ip link set uplink0 up && \
         ip route add default via 203.0.113.254");
    sb.weft_ok(&["network", "create", "front", "--subnet", "172.30.0.0/24"]);
    sb.weft_ok(&["network", "create", "back", "--subnet", "10.89.5.0/24", "--internal"]);
    for (net, name, ip, mac) in [
        ("front", "web", "172.30.0.10", "02:00:00:00:00:10"),
        ("front", "db", "172.30.0.11", "02:00:00:00:00:11"),
        ("back", "cache", "10.89.5.10", "02:00:00:00:00:30"),
    ] {
        let i = sb.container(name);
        let path = sb.c(i).path.display().to_string();
        sb.weft_ok(&["attach", net, name, "--netns", &path, "--ip", ip, "--mac", mac]);
    }
    assert!(sb.c(0).ping("172.30.0.11"), "web cannot reach db");
    assert!(sb.c(2).ping("10.89.5.1"), "cache cannot reach its gateway");
    sb
}

/// Names that differ between runs: the host's name and the namespaces'.
fn normalise(sb: &Sandbox, s: &str) -> String {
    let mut out = s.to_string();
    for (i, name) in ["web", "db", "cache"].iter().enumerate() {
        out = out.replace(&sb.c(i).path.display().to_string(), &format!("/var/run/netns/{name}"));
    }
    let host = hostname();
    out.lines()
        .map(|l| match l.strip_prefix(&format!("host {host}")) {
            Some(rest) => format!("host HOST{rest}"),
            None => l.replace(&format!("\"name\": \"{host}\""), "\"name\": \"HOST\""),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[test]
fn golden_text_and_json() {
    let sb = scenario();
    let text = sb.weft_ok(&["topology", "--width", "100"]);
    check_golden("topology.txt", &normalise(&sb, &text));
    let json = sb.weft_ok(&["topology", "--format", "json"]);
    let _: Value = serde_json::from_str(&json).expect("topology JSON");
    check_golden("topology.json", &normalise(&sb, &json));

    // One network only.
    let front = sb.weft_ok(&["topology", "front", "--width", "100"]);
    assert!(front.contains("network front") && !front.contains("network back"), "{front}");
    let err = sb.weft_err(&["topology", "nope"]);
    assert!(err.contains("network nope does not exist"), "{err}");
}

#[test]
fn dot_and_svg() {
    let sb = scenario();
    let dot = sb.weft_ok(&["topology", "--format", "dot"]);
    assert!(dot.starts_with("graph weft {") && dot.trim_end().ends_with('}'), "{dot}");
    for want in ["weft-front", "weft-back", "uplink0", "\"web\"", "172.30.0.11", "NAT"] {
        assert!(dot.contains(want), "dot lacks {want}: {dot}");
    }
    assert_eq!(dot.matches('{').count(), dot.matches('}').count(), "unbalanced dot: {dot}");

    let svg = sb.weft_ok(&["topology", "--format", "svg"]);
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""), "{svg}");
    assert!(svg.trim_end().ends_with("</svg>"));
    for want in [">web<", ">db<", ">cache<", "bridge weft-front", "uplink uplink0"] {
        assert!(svg.contains(want), "svg lacks {want}");
    }
    assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
}

fn marks_of(t: &Value, container: &str) -> Vec<String> {
    let nets = t["hosts"][0]["networks"].as_array().unwrap();
    let ep = nets
        .iter()
        .flat_map(|n| n["endpoints"].as_array().unwrap())
        .find(|e| e["container"] == container)
        .unwrap_or_else(|| panic!("no endpoint {container} in {t}"));
    ep["marks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["what"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn marks_state_that_disagrees_with_the_store() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "n", "--subnet", "172.24.0.0/24"]);
    let ids: Vec<usize> = ["a", "b", "c", "d"].iter().map(|t| sb.container(t)).collect();
    let eps: Vec<Value> = ids.iter().map(|&i| sb.attach("n", i, &[])).collect();
    let names: Vec<String> = ids.iter().map(|&i| sb.c(i).name.clone()).collect();
    let name = |i: usize| names[i].clone();
    let veth = |i: usize| eps[i]["host_veth"].as_str().unwrap().to_string();

    let t = sb.weft_json(&["topology", "--format", "json"]);
    for i in 0..4 {
        assert!(marks_of(&t, &name(i)).is_empty(), "healthy endpoint has marks: {t}");
    }

    sb.host.sh(&format!("ip link set {} down", veth(0)));
    sb.host.sh(&format!("ip link set {} nomaster", veth(1)));
    sb.c(ids[2]).sh("ip link set eth0 down");
    // The container vanishes without a detach: its netns and veth go.
    let gone = sb.containers.remove(ids[3]);
    drop(gone);
    // The kernel dismantles a deleted namespace (and its veth) a little later.
    for _ in 0..50 {
        if !sb.has_link(&veth(3)) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    let t = sb.weft_json(&["topology", "--format", "json"]);
    let has = |i: usize, needle: &str| {
        let m = marks_of(&t, &name(i));
        assert!(m.iter().any(|x| x.contains(needle)), "{} lacks mark {needle:?}: {m:?}", name(i));
    };
    has(0, "is down");
    has(1, "is not a port of weft-n");
    has(2, "eth0 is down in the container");
    has(3, "does not exist");
    has(3, "is missing");

    let text = sb.weft_ok(&["topology", "--width", "100"]);
    assert!(text.contains(&format!("X {}", veth(0))), "down veth not drawn broken:\n{text}");
    assert!(text.contains(&format!("X {}", veth(1))), "detached veth not drawn broken:\n{text}");
    assert!(text.contains(&format!("fix: ip link set {} up", veth(0))), "{text}");
    assert!(text.contains(&format!("ip link set {} master weft-n", veth(1))), "{text}");
    assert!(text.contains("fix: weft gc"), "{text}");
    assert!(text.lines().all(|l| l.chars().count() <= 100), "line over 100 columns:\n{text}");
}

#[test]
fn fifty_containers_fit_the_width() {
    let mut sb = Sandbox::new();
    sb.weft_ok(&["network", "create", "big", "--subnet", "172.25.0.0/24"]);
    let mut names = Vec::new();
    for i in 0..50 {
        let c = sb.container(&format!("c{i}"));
        sb.attach("big", c, &[]);
        names.push(sb.c(c).name.clone());
    }
    for width in ["80", "120"] {
        let text = sb.weft_ok(&["topology", "--width", width]);
        let w: usize = width.parse().unwrap();
        for l in text.lines() {
            assert!(l.chars().count() <= w, "line over {w} columns: {l:?}");
        }
        for n in &names {
            assert!(text.contains(n.as_str()), "{n} not drawn at width {w}");
        }
        // Rows of boxes side by side: well under a screenful per 10 containers.
        let lines = text.lines().count();
        assert!(lines <= if w >= 120 { 100 } else { 130 }, "{lines} lines for 50 containers");
    }
}

#[test]
fn overlay_shows_every_host() {
    let mut c = Cluster::new(2);
    c.weft_ok(0, &["network", "create", "ov", "--driver", "overlay", "--subnet", "10.92.0.0/24"]);
    for h in 0..2 {
        eventually("the overlay's VXLAN device", Duration::from_secs(10), || {
            c.hosts[h].ns.try_sh("ip link show vx-ov")
        });
    }
    let (_, a) = c.attach(0, "ov");
    let (ipb, b) = c.attach(1, "ov");
    eventually("host 0 learns the remote container", Duration::from_secs(10), || {
        c.hosts[0].ns.try_sh(&format!("ip neigh show dev vx-ov {ipb} | grep -q lladdr"))
    });
    let t: Value = serde_json::from_str(&c.weft_ok(0, &["topology", "--format", "json"])).unwrap();
    let hosts = t["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 2, "{t:#}");
    assert_eq!(hosts[0]["name"], c.hosts[0].name.as_str());
    assert_eq!(hosts[0]["observed"], true);
    assert_eq!(hosts[1]["name"], c.hosts[1].name.as_str());
    assert_eq!(hosts[1]["observed"], false);
    let net = &hosts[0]["networks"][0];
    assert_eq!(net["driver"], "overlay");
    assert_eq!(net["vxlan"]["name"], "vx-ov");
    assert_eq!(net["vxlan"]["remote_entries"], 1, "{net:#}");
    assert_eq!(net["endpoints"][0]["container"], c.c(0, a).name.as_str());
    assert_eq!(hosts[1]["networks"][0]["endpoints"][0]["container"], c.c(1, b).name.as_str());

    let text = c.weft_ok(0, &["topology", "--width", "100"]);
    assert!(text.contains("vxlan vx-ov  up  1 remote FDB entries"), "{text}");
    assert!(text.contains(&format!("host {}  (another host", c.hosts[1].name)), "{text}");
    assert!(text.contains(&c.c(1, b).name), "{text}");
}
