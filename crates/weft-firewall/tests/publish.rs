//! Port publishing in a real kernel, inside throwaway network namespaces:
//! elements come and go, rules stay. Packets are tested end to end in the
//! repository's tests/ports.rs.

mod sandbox;

use sandbox::{cmd, sandbox};
use weft_firewall::{maps, publish, Firewall, Guards, NetRules, PortRule};

fn net() -> NetRules {
    NetRules {
        name: "a".into(),
        bridge: "weft-a".into(),
        subnet: "10.89.0.0/24".parse().unwrap(),
        subnet6: Some("fd00:a::/64".parse().unwrap()),
        internal: false,
        open: false,
    }
}

fn rule(spec: &str, host: u8) -> PortRule {
    PortRule {
        mapping: spec.parse().unwrap(),
        addr: format!("10.89.0.{host}").parse().unwrap(),
        addr6: Some(format!("fd00:a::{host:x}").parse().unwrap()),
    }
}

#[test]
fn elements_come_and_go_rules_stay() {
    sandbox(|| {
        let fw = Firewall::new();
        fw.apply_with_ports(&[net()], &[], Guards::default()).unwrap();
        let empty = fw.status().unwrap();
        assert_eq!(empty.rules, 10 + publish::RULES);
        assert!(empty.maps.values().all(Vec::is_empty), "{:?}", empty.maps);

        let a = [rule("8080:80", 2), rule("9000-9099:9000-9099/udp", 2)];
        let b = [rule("127.0.0.1:7000-7001:8000-8001/tcp", 3)];
        fw.publish(&a).unwrap();
        fw.publish(&b).unwrap();
        let st = fw.status().unwrap();
        assert_eq!(st.rules, empty.rules);
        assert_eq!(
            st.maps[maps::PUBLISH4],
            [
                "0.0.0.0/0 . tcp . 8080 : 10.89.0.2",
                "0.0.0.0/0 . udp . 9000-9099 : 10.89.0.2",
                "127.0.0.1 . tcp . 7000-7001 : 10.89.0.3",
            ]
        );
        assert_eq!(st.maps[maps::PUBLISH4_PORT].len(), 3, "{:?}", st.maps);
        assert_eq!(st.maps[maps::PUBLISH6].len(), 2, "{:?}", st.maps);

        // A clash fails whole: nothing of the batch is added.
        let clash = [rule("6000:60", 4), rule("8080:81", 4)];
        let e = fw.publish(&clash).unwrap_err().to_string();
        assert!(e.starts_with("nftables: publishing ports in table inet weft failed"), "{e}");
        assert_eq!(fw.status().unwrap(), st);

        // Unpublishing takes exactly its own elements.
        fw.unpublish(&a).unwrap();
        let st = fw.status().unwrap();
        assert_eq!(st.maps[maps::PUBLISH4], ["127.0.0.1 . tcp . 7000-7001 : 10.89.0.3"]);
        assert!(st.maps[maps::PUBLISH6].is_empty());
        fw.unpublish(&b).unwrap();
        assert_eq!(fw.status().unwrap(), empty);
    });
}

#[test]
fn rebuild_restores_ports_after_delete() {
    sandbox(|| {
        let fw = Firewall::new();
        let ports = [rule("8080:80", 2), rule("53:53/udp", 3)];
        fw.apply_with_ports(&[net()], &ports, Guards::default()).unwrap();
        let want = fw.status().unwrap();
        assert_eq!(want.maps[maps::PUBLISH4].len(), 2);
        cmd("nft delete table inet weft");
        fw.apply_with_ports(&[net()], &ports, Guards::default()).unwrap();
        assert_eq!(fw.status().unwrap(), want);
        cmd("nft flush table inet weft");
        fw.apply_with_ports(&[net()], &ports, Guards::default()).unwrap();
        assert_eq!(fw.status().unwrap(), want);
    });
}

#[test]
fn rules_do_not_grow_with_ports() {
    sandbox(|| {
        let fw = Firewall::new();
        fw.apply_with_ports(&[net()], &[], Guards::default()).unwrap();
        let before = fw.status().unwrap().rules;
        let ports: Vec<PortRule> =
            (0..200u16).map(|i| rule(&format!("{}:80", 10000 + i), 2 + (i % 200) as u8)).collect();
        for chunk in ports.chunks(1) {
            fw.publish(chunk).unwrap();
        }
        let st = fw.status().unwrap();
        assert_eq!(st.rules, before);
        assert_eq!(st.maps[maps::PUBLISH4].len(), 200);
    });
}

#[test]
fn library_and_nft_command_agree() {
    sandbox(|| {
        let ports = [rule("8080:80", 2), rule("9000-9009:9000-9009/udp", 3)];
        // Firewall::new() writes elements over netlink and runs batches
        // through libnftables; with_program always starts the nft command.
        let (lib, exec) = (Firewall::new(), Firewall::new().with_program("nft"));
        lib.apply_with_ports(&[net()], &ports, Guards::default()).unwrap();
        let by_lib = lib.status().unwrap();
        assert_eq!(exec.status().unwrap(), by_lib);
        exec.apply_with_ports(&[net()], &ports, Guards::default()).unwrap();
        assert_eq!(lib.status().unwrap(), by_lib);
        exec.unpublish(&ports[..1]).unwrap();
        lib.unpublish(&ports[1..]).unwrap();
        assert!(lib.status().unwrap().maps.values().all(Vec::is_empty));
        let e = exec.unpublish(&ports[..1]).unwrap_err().to_string();
        let l = lib.unpublish(&ports[..1]).unwrap_err().to_string();
        // The command's words and the kernel's errno: the same reason.
        for msg in [&e, &l] {
            assert!(msg.contains("No such file or directory") && !msg.contains('\n'), "{msg}");
        }
    });
}
