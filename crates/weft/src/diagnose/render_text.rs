//! The topology as a terminal drawing, like the seed's: container boxes in
//! rows above their network's bridge, each hanging from it by its host
//! veth. Rows wrap to the width, so 50 containers stay readable; problems
//! are flagged on the box (`!` error, `?` warning) and listed with a fix.

use std::fmt::Write;

use super::model::*;
use super::steps::wrap;

const INDENT: usize = 2;
const GAP: usize = 2;
/// A MAC address: the narrowest content a box must hold.
const MIN_INNER: usize = 17;
/// Networks with more containers are drawn one line per container.
const LADDER_OVER: usize = 8;

pub fn render(t: &Topology, width: usize) -> String {
    let mut out = String::new();
    for (i, h) in t.hosts.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        host(&mut out, h, width);
    }
    out
}

fn host(out: &mut String, h: &Host, width: usize) {
    if h.observed {
        let _ = writeln!(out, "host {}", h.name);
    } else {
        let _ = writeln!(
            out,
            "host {}  (another host: the store's records, not observed from here)",
            h.name
        );
    }
    for u in &h.uplinks {
        let mut line = format!("  uplink {}", u.name);
        for a in &u.addresses {
            let _ = write!(line, "  {a}");
        }
        if let Some(g) = &u.gateway {
            let _ = write!(line, "  default via {g}");
        }
        let _ = write!(line, "  mtu {}{}", u.mtu, if u.up { "" } else { "  DOWN" });
        let _ = writeln!(out, "{line}");
    }
    if h.observed && h.uplinks.is_empty() {
        let _ = writeln!(out, "  uplink none (no default route)");
    }
    if let Some(fw) = &h.firewall {
        if fw.present {
            let _ = writeln!(
                out,
                "  firewall table {}, forward chain {} rules",
                fw.table, fw.forward_rules
            );
        } else {
            let _ = writeln!(out, "  firewall table {} absent", fw.table);
        }
        marks(out, "firewall", &fw.marks, width);
    }
    if h.networks.is_empty() {
        let _ = writeln!(out, "  (no networks)");
    }
    for n in &h.networks {
        out.push('\n');
        network(out, n, h.observed, width);
    }
}

fn network(out: &mut String, n: &NetView, observed: bool, width: usize) {
    let mut head = format!("network {}  {}  {}", n.name, n.driver, n.subnet);
    if let Some(s6) = &n.subnet6 {
        let _ = write!(head, " {s6}");
    }
    let _ = write!(head, "  mtu {}", n.mtu);
    if n.internal {
        head.push_str("  internal (no way out)");
    } else if let Some(e) = &n.egress {
        let _ = write!(head, "  NAT out {e}");
    } else if observed {
        head.push_str("  no uplink");
    }
    let _ = writeln!(out, "{head}");

    if n.endpoints.is_empty() {
        let _ = writeln!(out, "{:INDENT$}(no containers)", "");
    } else if n.endpoints.len() > LADDER_OVER {
        ladder(out, n, observed, width);
    } else {
        drawing(out, n, observed, width);
    }
    let b = &n.bridge;
    let mut line = format!("{:INDENT$}bridge {}", "", b.name);
    if observed {
        if !b.present {
            line.push_str("  MISSING");
        } else {
            for a in &b.addresses {
                let _ = write!(line, "  {a}");
            }
            if let Some(m) = &b.mac {
                let _ = write!(line, "  {m}");
            }
            let _ = write!(line, "  {}", if b.up { "up" } else { "DOWN" });
            if let Some(m) = b.mtu {
                let _ = write!(line, "  mtu {m}");
            }
            let _ = write!(line, "  {} port{}", b.ports, if b.ports == 1 { "" } else { "s" });
        }
    } else {
        let _ = write!(line, "  gateway {}", n.gateway);
    }
    let _ = writeln!(out, "{line}");
    if let Some(v) = &n.vxlan {
        let _ = writeln!(
            out,
            "{:INDENT$}vxlan {}  {}  {} remote FDB entries",
            "",
            v.name,
            if v.up { "up" } else { "DOWN" },
            v.remote_entries
        );
    }
    marks(out, &n.name, &n.marks, width);
    for e in &n.endpoints {
        marks(out, &format!("{}/{}", e.container, e.ifname), &e.marks, width);
    }
}

/// Container boxes in rows, each row over a stretch of the bridge.
fn drawing(out: &mut String, n: &NetView, observed: bool, width: usize) {
    let inner = box_inner(n, width);
    let boxw = inner + 4;
    // As many boxes as fit, the last one's veth label (hanging right of
    // its wire) included.
    let label = n.endpoints.iter().map(|e| e.host_veth.name.chars().count() + 2).max().unwrap_or(0);
    let fits = |k: usize| {
        INDENT + k * boxw + (k - 1) * GAP <= width
            && INDENT + (k - 1) * (boxw + GAP) + boxw / 2 + label <= width
    };
    let per_row = (2..=n.endpoints.len()).take_while(|&k| fits(k)).last().unwrap_or(1);
    let in_row = per_row.min(n.endpoints.len());
    let row_width = boxw * in_row + GAP * (in_row - 1);
    for row in n.endpoints.chunks(per_row) {
        boxes(out, row, inner, observed);
        bus(out, row, boxw, row_width, &n.bridge.name, width);
    }
}

/// Many containers: one line each, wired into the bridge drawn as a
/// vertical bus on the right.
///
/// ```text
///   web     eth0 172.30.0.10/24  02:00:00:00:00:10  --- vw60abb4d1eb11 ---+
///   db   !  eth0 172.30.0.11/24  02:00:00:00:00:11  -X- vw1ffdeb8e2f55 ---+
///                                                                         |
/// ```
fn ladder(out: &mut String, n: &NetView, observed: bool, width: usize) {
    let col = |f: &dyn Fn(&EndpointView) -> String| {
        n.endpoints.iter().map(|e| f(e).chars().count()).max().unwrap_or(0)
    };
    let iface = |e: &EndpointView| {
        let mut s = format!("{} {}", e.ifname, e.address);
        if let Some(a6) = &e.address6 {
            let _ = write!(s, " {a6}");
        }
        if !e.ports.is_empty() {
            let _ = write!(s, " {}", e.ports.join(","));
        }
        s
    };
    let (iw, vw) = (col(&iface), col(&|e| e.host_veth.name.clone()));
    let names = col(&|e| e.container.clone());
    // name, flag, interface, MAC, wire "-?- ", veth, " ---+"; the MAC
    // column goes first when names would not fit.
    let base = 2 + 2 + iw + 2 + 4 + vw + 5;
    let macs = INDENT + names + base + 19 <= width;
    let rest = base + if macs { 19 } else { 0 };
    let nw = names.min(width.saturating_sub(INDENT + rest)).max(8);
    for e in &n.endpoints {
        let flag = if e.has_errors() {
            '!'
        } else if !e.marks.is_empty() {
            '?'
        } else {
            ' '
        };
        let wire = if !observed {
            ':'
        } else if e.wire_broken() {
            'X'
        } else {
            '-'
        };
        let mac = if macs { format!("{}  ", e.mac) } else { String::new() };
        let _ = writeln!(
            out,
            "{:INDENT$}{}  {flag} {:<iw$}  {mac}-{wire}- {:<vw$} ---+",
            "",
            fit(&e.container, nw),
            iface(e),
            e.host_veth.name
        );
    }
    let bus = INDENT + nw + rest - 1;
    let _ = writeln!(out, "{:bus$}|", "");
    let label = format!("{} ", n.bridge.name);
    let _ = writeln!(out, "{:>w$}{}+", label, "=".repeat(3), w = bus.saturating_sub(3));
}

/// Inner width of the boxes: the widest content, within the terminal.
fn box_inner(n: &NetView, width: usize) -> usize {
    let widest = n
        .endpoints
        .iter()
        // The name's line also holds the mark flag.
        .flat_map(|e| {
            box_lines(e)
                .into_iter()
                .enumerate()
                .map(|(i, l)| l.chars().count() + 2 * usize::from(i == 0))
        })
        .max()
        .unwrap_or(0);
    let cap = width.saturating_sub(INDENT + 4).max(MIN_INNER);
    widest.clamp(MIN_INNER, cap)
}

fn box_lines(e: &EndpointView) -> Vec<String> {
    let mut v = vec![e.container.clone(), format!("{} {}", e.ifname, e.address), e.mac.clone()];
    v.extend(e.address6.clone());
    v.extend(e.ports.iter().map(|p| format!("port {p}")));
    if !e.aliases.is_empty() {
        v.push(format!("alias {}", e.aliases.join(",")));
    }
    v
}

fn fit(s: &str, w: usize) -> String {
    if s.chars().count() <= w {
        format!("{s:<w$}")
    } else {
        let cut: String = s.chars().take(w.saturating_sub(1)).collect();
        format!("{cut}~")
    }
}

fn boxes(out: &mut String, row: &[EndpointView], inner: usize, observed: bool) {
    let lines = row.iter().map(|e| box_lines(e).len()).max().unwrap_or(3);
    let boxw = inner + 4;
    let edge = || format!("+{}+", "-".repeat(boxw - 2));
    let mut rows: Vec<String> = vec![String::new(); lines + 4];
    for (i, e) in row.iter().enumerate() {
        let sep = if i == 0 { " ".repeat(INDENT) } else { " ".repeat(GAP) };
        let flag = if e.has_errors() {
            '!'
        } else if !e.marks.is_empty() {
            '?'
        } else {
            ' '
        };
        rows[0].push_str(&sep);
        rows[0].push_str(&edge());
        let content = box_lines(e);
        for l in 0..lines {
            let text = content.get(l).map(String::as_str).unwrap_or("");
            let cell = if l == 0 {
                format!("| {}{flag} |", fit(text, inner - 1))
            } else {
                format!("| {} |", fit(text, inner))
            };
            rows[l + 1].push_str(&sep);
            rows[l + 1].push_str(&cell);
        }
        // Bottom edge with the wire's attachment point in the middle.
        let mid = boxw / 2;
        let mut bottom: Vec<char> = edge().chars().collect();
        bottom[mid] = '+';
        rows[lines + 1].push_str(&sep);
        rows[lines + 1].extend(bottom);
        // The wire: '|' healthy, 'X' broken, ':' not observed.
        let wire = if !observed {
            ':'
        } else if e.wire_broken() {
            'X'
        } else {
            '|'
        };
        let label = format!("{wire} {}", e.host_veth.name);
        let col = INDENT + i * (boxw + GAP) + mid;
        let have = rows[lines + 2].chars().count();
        rows[lines + 2].push_str(&" ".repeat(col.saturating_sub(have).max(usize::from(have > 0))));
        rows[lines + 2].push_str(&label);
    }
    rows.truncate(lines + 3);
    for r in rows {
        let _ = writeln!(out, "{}", r.trim_end());
    }
}

/// The bridge as a bus under a row of boxes, a `+` where each wire joins.
fn bus(
    out: &mut String,
    row: &[EndpointView],
    boxw: usize,
    row_width: usize,
    bridge: &str,
    width: usize,
) {
    let mut line: Vec<char> = "=".repeat(row_width).chars().collect();
    for i in 0..row.len() {
        let col = i * (boxw + GAP) + boxw / 2;
        if col < line.len() {
            line[col] = '+';
        }
    }
    let bus: String = line.into_iter().collect();
    if INDENT + row_width + 1 + bridge.len() <= width {
        let _ = writeln!(out, "{:INDENT$}{bus} {bridge}", "");
    } else {
        let _ = writeln!(out, "{:INDENT$}{bus}", "");
    }
}

fn marks(out: &mut String, who: &str, marks: &[Mark], width: usize) {
    for m in marks {
        let flag = match m.level {
            Level::Error => '!',
            Level::Warning => '?',
        };
        let head = format!("{:INDENT$}{flag} ", "");
        let what = format!("{who}: {}", m.what);
        match &m.fix {
            Some(fix) if head.len() + what.len() + fix.len() + 9 <= width => {
                let _ = writeln!(out, "{head}{what}  (fix: {fix})");
            }
            Some(fix) => {
                wrap(out, &head, &what, INDENT + 2, width);
                let _ = writeln!(out, "{:INDENT$}  fix: {fix}", "");
            }
            None => wrap(out, &head, &what, INDENT + 2, width),
        }
    }
}
