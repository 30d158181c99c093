//! The topology for Graphviz (`weft topology --format dot | dot -Tpng`):
//! a cluster per host, a cluster per container namespace, the veth pair as
//! an edge into the bridge. Broken parts are red and dashed.

use std::fmt::Write;

use super::model::*;

pub fn render(t: &Topology) -> String {
    let mut o = String::new();
    o.push_str("graph weft {\n");
    o.push_str("  graph [rankdir=TB, fontname=\"monospace\", fontsize=10];\n");
    o.push_str("  node [shape=box, fontname=\"monospace\", fontsize=10];\n");
    o.push_str("  edge [fontname=\"monospace\", fontsize=9];\n");
    for (hi, h) in t.hosts.iter().enumerate() {
        let hid = format!("h{hi}");
        let _ = writeln!(o, "  subgraph \"cluster_{hid}\" {{");
        let label = if h.observed {
            format!("host {}", h.name)
        } else {
            format!("host {} (not observed)", h.name)
        };
        let _ = writeln!(o, "    label={};", q(&label));
        for u in &h.uplinks {
            let mut l = format!("{}\n{}", u.name, u.addresses.join("\n"));
            if let Some(g) = &u.gateway {
                let _ = write!(l, "\nvia {g}");
            }
            let _ = writeln!(
                o,
                "    {} [label={}, shape=cds];",
                q(&format!("{hid}/up/{}", u.name)),
                q(&l)
            );
        }
        for n in &h.networks {
            network(&mut o, &hid, n, h.observed);
        }
        o.push_str("  }\n");
    }
    o.push_str("}\n");
    o
}

fn network(o: &mut String, hid: &str, n: &NetView, observed: bool) {
    let br = format!("{hid}/br/{}", n.bridge.name);
    let mut label = format!("{}\nnetwork {} ({})\n{}", n.bridge.name, n.name, n.driver, n.subnet);
    for a in &n.bridge.addresses {
        let _ = write!(label, "\n{a}");
    }
    let bad = observed && !n.marks.is_empty();
    let _ = writeln!(o, "    {} [label={}, shape=box3d{}];", q(&br), q(&label), red(bad));
    if let Some(e) = &n.egress {
        let _ = writeln!(
            o,
            "    {} -- {} [label=\"NAT\", style=dashed];",
            q(&br),
            q(&format!("{hid}/up/{e}"))
        );
    }
    if let Some(v) = &n.vxlan {
        let vx = format!("{hid}/vx/{}", v.name);
        let l = format!("{}\nvxlan, {} remote entries", v.name, v.remote_entries);
        let _ = writeln!(o, "    {} [label={}, shape=hexagon{}];", q(&vx), q(&l), red(!v.up));
        let _ = writeln!(o, "    {} -- {};", q(&vx), q(&br));
    }
    for e in &n.endpoints {
        let ns = format!("{hid}/ns/{}", e.container);
        let ifn = format!("{ns}/{}", e.ifname);
        let veth = format!("{hid}/veth/{}", e.host_veth.name);
        let _ = writeln!(o, "    subgraph {} {{", q(&format!("cluster_{ns}")));
        let _ = writeln!(o, "      label={}; style=rounded;", q(&e.container));
        let mut l = format!("{}\n{}\n{}", e.ifname, e.address, e.mac);
        if let Some(a6) = &e.address6 {
            let _ = write!(l, "\n{a6}");
        }
        for p in &e.ports {
            let _ = write!(l, "\nport {p}");
        }
        if !e.aliases.is_empty() {
            let _ = write!(l, "\nalias {}", e.aliases.join(","));
        }
        let _ = writeln!(o, "      {} [label={}{}];", q(&ifn), q(&l), red(e.has_errors()));
        o.push_str("    }\n");
        let _ = writeln!(o, "    {} [label={}, shape=ellipse];", q(&veth), q(&e.host_veth.name));
        let _ = writeln!(o, "    {} -- {} [label=\"veth\"];", q(&ifn), q(&veth));
        let broken = observed && e.wire_broken();
        let style = if !observed {
            ", style=dotted"
        } else if broken {
            ", style=dashed, color=red"
        } else {
            ""
        };
        let _ = writeln!(o, "    {} -- {} [label=\"port\"{style}];", q(&veth), q(&br));
    }
}

fn red(bad: bool) -> &'static str {
    if bad {
        ", color=red, fontcolor=red"
    } else {
        ""
    }
}

/// A DOT quoted string.
fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
