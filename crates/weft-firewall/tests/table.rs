//! weft's table in a real kernel, inside throwaway network namespaces.

mod sandbox;

use sandbox::{cmd, nft_text, ruleset_json, sandbox, set_sysctl, sysctl};
use weft_firewall::{sets, Firewall, Forwarding, Guards, NetRules, TableStatus};

fn net(i: usize, internal: bool, v6: bool) -> NetRules {
    NetRules {
        name: format!("n{i}"),
        bridge: format!("weft-n{i}"),
        subnet: format!("10.{}.{}.0/24", 100 + i / 256, i % 256).parse().unwrap(),
        subnet6: v6.then(|| format!("fd00:{i:x}::/64").parse().unwrap()),
        internal,
        open: false,
    }
}

/// One network with IPv6, one internal.
fn two() -> Vec<NetRules> {
    vec![net(0, false, true), net(1, true, false)]
}

/// Objects of one kind in a `nft -j list ...` document.
fn objects<'a>(
    doc: &'a serde_json::Value,
    kind: &'a str,
) -> impl Iterator<Item = &'a serde_json::Value> {
    doc["nftables"].as_array().unwrap().iter().filter_map(move |o| o.get(kind))
}

fn weft_json() -> serde_json::Value {
    serde_json::from_str(&cmd("nft -j list table inet weft")).unwrap()
}

#[test]
fn apply_then_read_back() {
    sandbox(|| {
        let fw = Firewall::new();
        fw.apply(&two()).unwrap();

        // Straight from nft, not through status().
        let doc = weft_json();
        assert_eq!(objects(&doc, "rule").count(), 10);
        let set = |name: &str| objects(&doc, "set").find(|s| s["name"] == name).unwrap().clone();
        assert_eq!(set(sets::BRIDGES)["elem"], serde_json::json!(["weft-n0", "weft-n1"]));
        assert_eq!(set(sets::INTERNAL)["elem"], serde_json::json!(["weft-n1"]));
        assert_eq!(
            set(sets::MASQ4)["elem"],
            serde_json::json!([{"prefix": {"addr": "10.100.0.0", "len": 24}}])
        );

        let st = fw.status().unwrap();
        assert!(st.present);
        assert_eq!(st.rules, 10);
        assert_eq!((st.chains["forward"], st.chains["postrouting"]), (8, 2));
        assert_eq!(st.sets[sets::BRIDGES], ["weft-n0", "weft-n1"]);
        assert_eq!(st.sets[sets::INTERNAL], ["weft-n1"]);
        assert_eq!(st.sets[sets::SAME_BRIDGE], ["weft-n0 . weft-n0", "weft-n1 . weft-n1"]);
        assert_eq!(st.sets[sets::MASQ4], ["10.100.0.0/24"]);
        assert_eq!(st.sets[sets::MASQ6], ["fd00::/64"]);
    });
}

#[test]
fn apply_is_idempotent() {
    sandbox(|| {
        let fw = Firewall::new();
        fw.apply(&two()).unwrap();
        let first = fw.status().unwrap();
        fw.apply(&two()).unwrap();
        assert_eq!(fw.status().unwrap(), first);
        assert_eq!(objects(&weft_json(), "rule").count(), 10);
    });
}

#[test]
fn rules_do_not_grow_with_networks() {
    sandbox(|| {
        let fw = Firewall::new();
        fw.apply(&two()).unwrap();
        let few = fw.status().unwrap();
        let many: Vec<NetRules> = (0..50).map(|i| net(i, i % 5 == 0, i % 2 == 0)).collect();
        fw.apply(&many).unwrap();
        let st = fw.status().unwrap();
        assert_eq!(st.rules, few.rules);
        assert_eq!(st.sets[sets::BRIDGES].len(), 50);
        assert_eq!(st.sets[sets::SAME_BRIDGE].len(), 50);
        assert_eq!(st.sets[sets::INTERNAL].len(), 10);
        // Adjacent /24s merge into wider prefixes: fewer elements, same addresses.
        assert!(!st.sets[sets::MASQ4].is_empty() && st.sets[sets::MASQ4].len() <= 40);
    });
}

#[test]
fn foreign_tables_survive_apply_and_remove() {
    sandbox(|| {
        nft_text("table inet other {\n chain c {\n type filter hook input priority 0;\n counter\n }\n}\n");
        let fw = Firewall::new();
        fw.apply(&two()).unwrap();
        fw.remove().unwrap();
        let doc = ruleset_json();
        let tables: Vec<_> = objects(&doc, "table").map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(tables, ["other"]);
        assert_eq!(objects(&doc, "rule").filter(|r| r["table"] == "other").count(), 1);
    });
}

#[test]
fn apply_restores_a_deleted_or_flushed_table() {
    sandbox(|| {
        let fw = Firewall::new();
        fw.apply(&two()).unwrap();
        let want = fw.status().unwrap();

        cmd("nft delete table inet weft");
        assert!(!fw.status().unwrap().present);
        fw.apply(&two()).unwrap();
        assert_eq!(fw.status().unwrap(), want);

        cmd("nft flush table inet weft");
        assert_eq!(fw.status().unwrap().rules, 0);
        fw.apply(&two()).unwrap();
        assert_eq!(fw.status().unwrap(), want);
    });
}

#[test]
fn no_networks_means_no_table() {
    sandbox(|| {
        let fw = Firewall::new();
        fw.remove().unwrap(); // absent: still fine
        fw.apply(&two()).unwrap();
        fw.apply(&[]).unwrap();
        assert_eq!(fw.status().unwrap(), TableStatus::default());
        assert_eq!(objects(&ruleset_json(), "table").count(), 0);
    });
}

#[test]
fn nft_errors_are_one_line() {
    sandbox(|| {
        let long = "x".repeat(300);
        let err = Firewall::with_table(&long).apply(&two()).unwrap_err().to_string();
        let want = format!("nftables: applying table inet {long} failed: name too long, 256 characters maximum allowed");
        assert_eq!(err, want);
    });
}

#[test]
fn forwarding_changes_only_the_sandbox() {
    const V4: &str = "/proc/sys/net/ipv4/ip_forward";
    const V6: &str = "/proc/sys/net/ipv6/conf/all/forwarding";
    let outside = (sysctl(V4), sysctl(V6));
    let dir = std::env::temp_dir().join(format!("weft-fw-forwarding-{}", std::process::id()));
    sandbox(|| {
        let both = |v4: &str, v6: &str| sysctl(V4) == v4 && sysctl(V6) == v6;
        let sync = |v4, v6| {
            let f = Forwarding::prepare(&dir, v4, v6).unwrap();
            f.enable().unwrap();
            f.guards()
        };
        // A new namespace copies the host's IPv4 settings: start from off.
        set_sysctl(V4, "0");
        set_sysctl(V6, "0");
        assert_eq!(sync(true, false), Guards { forward4: true, forward6: false });
        assert!(both("1", "0"));
        assert_eq!(sync(true, true), Guards { forward4: true, forward6: true });
        assert_eq!(sync(true, true), Guards { forward4: true, forward6: true }, "still weft's");
        assert!(both("1", "1"));
        assert_eq!(sync(true, false), Guards { forward4: true, forward6: false });
        assert!(both("1", "0"), "IPv6 forwarding outlived the last IPv6 network");
        assert_eq!(sync(false, false), Guards::default());
        assert!(both("0", "0"));
        // On before weft: not weft's, so neither guarded nor turned off.
        set_sysctl(V4, "1");
        assert_eq!(sync(true, true), Guards { forward4: false, forward6: true });
        assert_eq!(sync(false, false), Guards::default());
        assert!(both("1", "0"));
    });
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!((sysctl(V4), sysctl(V6)), outside);
}
