//! The topology as a standalone SVG, laid out here (no Graphviz needed):
//! the same picture as the text drawing. Each host is a frame; each network
//! a row of container boxes wired to a bus per row, the buses joined to
//! the bridge bar at the bottom. Broken wires and boxes are red.

use std::fmt::Write;

use super::model::*;

const CHAR_W: f64 = 7.3;
const LINE_H: f64 = 16.0;
const PAD: f64 = 8.0;
const GAP: f64 = 16.0;
const MARGIN: f64 = 20.0;
const WIRE: f64 = 34.0;
const PER_ROW: usize = 5;
const RED: &str = "#c0392b";

pub fn render(t: &Topology) -> String {
    let boxw = box_width(t);
    let inner_w = PER_ROW as f64 * (boxw + GAP) - GAP;
    let width = inner_w + 4.0 * MARGIN;
    let mut body = String::new();
    let mut y = MARGIN;
    for h in &t.hosts {
        y = host(&mut body, h, y, boxw, inner_w) + MARGIN;
    }
    let mut o = String::new();
    let _ = writeln!(
        o,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w:.0}\" height=\"{y:.0}\" viewBox=\"0 0 {w:.0} {y:.0}\" font-family=\"monospace\" font-size=\"12\">",
        w = width
    );
    let _ = writeln!(o, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    o.push_str(&body);
    o.push_str("</svg>\n");
    o
}

fn box_width(t: &Topology) -> f64 {
    let chars = t
        .hosts
        .iter()
        .flat_map(|h| &h.networks)
        .flat_map(|n| &n.endpoints)
        .flat_map(|e| lines(e).into_iter().map(|l| l.chars().count()))
        .max()
        .unwrap_or(17)
        .max(17);
    chars as f64 * CHAR_W + 2.0 * PAD
}

fn lines(e: &EndpointView) -> Vec<String> {
    let mut v = vec![e.container.clone(), format!("{} {}", e.ifname, e.address), e.mac.clone()];
    v.extend(e.address6.clone());
    v.extend(e.ports.iter().map(|p| format!("port {p}")));
    if !e.aliases.is_empty() {
        v.push(format!("alias {}", e.aliases.join(",")));
    }
    v
}

/// Draws one host from `top`; returns where it ends.
fn host(o: &mut String, h: &Host, top: f64, boxw: f64, inner_w: f64) -> f64 {
    let x0 = MARGIN;
    let mut inner = String::new();
    let mut y = top + 22.0;
    let title = if h.observed {
        format!("host {}", h.name)
    } else {
        format!("host {} (not observed)", h.name)
    };
    text(&mut inner, x0 + PAD, y, &title, "bold", None);
    for u in &h.uplinks {
        y += LINE_H;
        let mut l = format!("uplink {} {}", u.name, u.addresses.join(" "));
        if let Some(g) = &u.gateway {
            let _ = write!(l, " via {g}");
        }
        text(&mut inner, x0 + PAD, y, &l, "", None);
    }
    if let Some(fw) = &h.firewall {
        y += LINE_H;
        let l = if fw.present {
            format!("firewall: table {}, forward chain {} rules", fw.table, fw.forward_rules)
        } else {
            format!("firewall: table {} absent", fw.table)
        };
        text(&mut inner, x0 + PAD, y, &l, "", (!fw.marks.is_empty()).then_some(RED));
    }
    for n in &h.networks {
        y = network(&mut inner, n, h.observed, x0 + MARGIN, y + 2.0 * LINE_H, boxw, inner_w);
    }
    let bottom = y + PAD * 2.0;
    let _ = writeln!(
        o,
        "<rect x=\"{x0}\" y=\"{top}\" width=\"{:.0}\" height=\"{:.0}\" rx=\"8\" fill=\"#f7f7f7\" stroke=\"#555\"/>",
        inner_w + 2.0 * MARGIN,
        bottom - top
    );
    o.push_str(&inner);
    bottom
}

fn network(
    o: &mut String,
    n: &NetView,
    observed: bool,
    x0: f64,
    top: f64,
    boxw: f64,
    inner_w: f64,
) -> f64 {
    let mut head = format!("network {} ({}) {} mtu {}", n.name, n.driver, n.subnet, n.mtu);
    if n.internal {
        head.push_str(" internal");
    } else if let Some(e) = &n.egress {
        let _ = write!(head, " NAT out {e}");
    }
    text(o, x0, top, &head, "bold", None);
    let mut y = top + 10.0;
    let bus_color = if observed && !n.marks.is_empty() { RED } else { "#2c6e9e" };
    let mut buses = Vec::new();
    for row in n.endpoints.chunks(PER_ROW) {
        let h = row.iter().map(|e| lines(e).len()).max().unwrap_or(3) as f64 * LINE_H + PAD;
        for (i, e) in row.iter().enumerate() {
            let x = x0 + i as f64 * (boxw + GAP);
            let bad = observed && e.has_errors();
            let stroke = if bad { RED } else { "#333" };
            let _ = writeln!(
                o,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{boxw:.1}\" height=\"{h:.1}\" rx=\"4\" fill=\"white\" stroke=\"{stroke}\"/>"
            );
            for (li, l) in lines(e).iter().enumerate() {
                let weight = if li == 0 { "bold" } else { "" };
                text(
                    o,
                    x + PAD,
                    y + LINE_H * (li as f64 + 1.0) - 2.0,
                    l,
                    weight,
                    bad.then_some(RED),
                );
            }
            let cx = x + boxw / 2.0;
            let broken = observed && e.wire_broken();
            let dash = if !observed {
                " stroke-dasharray=\"2,3\""
            } else if broken {
                " stroke-dasharray=\"5,4\""
            } else {
                ""
            };
            let color = if broken { RED } else { "#333" };
            let _ = writeln!(
                o,
                "<line x1=\"{cx:.1}\" y1=\"{:.1}\" x2=\"{cx:.1}\" y2=\"{:.1}\" stroke=\"{color}\" stroke-width=\"2\"{dash}/>",
                y + h,
                y + h + WIRE
            );
            text(
                o,
                cx + 5.0,
                y + h + WIRE / 2.0 + 4.0,
                &e.host_veth.name,
                "",
                broken.then_some(RED),
            );
        }
        let by = y + h + WIRE;
        let _ = writeln!(
            o,
            "<line x1=\"{x0:.1}\" y1=\"{by:.1}\" x2=\"{:.1}\" y2=\"{by:.1}\" stroke=\"{bus_color}\" stroke-width=\"4\"/>",
            x0 + inner_w - MARGIN
        );
        buses.push(by);
        y = by + 18.0;
    }
    // The bridge bar, with every row's bus joined to it on the left.
    let bar_h = 2.0 * LINE_H + PAD;
    if let Some(first) = buses.first() {
        let _ = writeln!(
            o,
            "<line x1=\"{x0:.1}\" y1=\"{first:.1}\" x2=\"{x0:.1}\" y2=\"{y:.1}\" stroke=\"{bus_color}\" stroke-width=\"4\"/>"
        );
    }
    let _ = writeln!(
        o,
        "<rect x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{bar_h:.1}\" rx=\"4\" fill=\"#d6e6f2\" stroke=\"{bus_color}\" stroke-width=\"2\"/>",
        inner_w - MARGIN
    );
    let b = &n.bridge;
    let mut l1 = format!("bridge {}", b.name);
    if observed {
        if !b.present {
            l1.push_str(" MISSING");
        } else {
            let _ = write!(l1, " {} {}", b.addresses.join(" "), if b.up { "up" } else { "DOWN" });
        }
    }
    text(o, x0 + PAD, y + LINE_H, &l1, "bold", None);
    let l2 = match (&b.mac, b.mtu, &n.vxlan) {
        (_, _, Some(v)) => format!("vxlan {} ({} remote entries)", v.name, v.remote_entries),
        (Some(m), Some(mtu), None) => format!("{m} mtu {mtu}, {} ports", b.ports),
        _ => format!("gateway {}", n.gateway),
    };
    text(o, x0 + PAD, y + 2.0 * LINE_H - 2.0, &l2, "", None);
    y += bar_h;
    let mut all: Vec<(String, &Mark)> = n.marks.iter().map(|m| (n.name.clone(), m)).collect();
    for e in &n.endpoints {
        all.extend(e.marks.iter().map(|m| (format!("{}/{}", e.container, e.ifname), m)));
    }
    for (who, m) in all {
        y += LINE_H;
        let mut l = format!("{who}: {}", m.what);
        if let Some(f) = &m.fix {
            let _ = write!(l, " (fix: {f})");
        }
        let color = if m.level == Level::Error { RED } else { "#b9770e" };
        text(o, x0, y, &l, "", Some(color));
    }
    y
}

fn text(o: &mut String, x: f64, y: f64, s: &str, weight: &str, color: Option<&str>) {
    let mut attrs = String::new();
    if !weight.is_empty() {
        let _ = write!(attrs, " font-weight=\"{weight}\"");
    }
    if let Some(c) = color {
        let _ = write!(attrs, " fill=\"{c}\"");
    }
    let _ = writeln!(o, "<text x=\"{x:.1}\" y=\"{y:.1}\"{attrs}>{}</text>", esc(s));
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
