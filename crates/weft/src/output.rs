//! What users see: aligned tables for people, JSON (stable field names)
//! for scripts.

use std::collections::HashSet;
use std::net::IpAddr;

use anyhow::Result;
use serde::Serialize;
use weft_model::{Endpoint, EndpointState, Network, PortMapping};

use crate::ops::Context;

/// A network as `inspect --json` shows it: the record plus its endpoints.
#[derive(Serialize)]
pub struct NetworkView {
    #[serde(flatten)]
    pub network: Network,
    pub endpoints: Vec<EndpointView>,
}

impl NetworkView {
    pub fn new(network: &Network, endpoints: Vec<EndpointView>) -> NetworkView {
        NetworkView { network: network.clone(), endpoints }
    }
}

/// An endpoint as users see it. `state` is `gone` when the container's
/// namespace or the host end of its veth pair no longer exists (what
/// `weft gc` removes); `attach_pid` is the weft process that made the
/// record (a dead one while `creating` means the attach crashed).
pub struct EndpointView {
    pub ep: Endpoint,
    pub gone: bool,
}

impl EndpointView {
    /// `ready` endpoints whose container is still there, `gone`, or `creating`.
    pub fn state(&self) -> &'static str {
        match (self.ep.state, self.gone) {
            (EndpointState::Creating, _) => "creating",
            (EndpointState::Ready, true) => "gone",
            (EndpointState::Ready, false) => "ready",
        }
    }

    pub fn value(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(&self.ep).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            if let Some(pid) = o.remove("pid") {
                o.insert("attach_pid".into(), pid);
            }
            o.insert("state".into(), self.state().into());
        }
        v
    }
}

impl Serialize for EndpointView {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value().serialize(s)
    }
}

/// Endpoints with their liveness: this host's ready ones are checked
/// against the kernel (namespace file, host veth), others are taken as
/// the store says.
pub fn endpoint_views(ctx: &mut Context, eps: Vec<Endpoint>) -> Vec<EndpointView> {
    let node = ctx.node.clone();
    let veths: Option<HashSet<String>> = ctx.host().ok().and_then(|nl| nl.links().ok()).map(|ls| {
        ls.into_iter()
            .filter(|l| l.alias.as_deref() != Some(weft_datapath::plug::RETIRED_ALIAS))
            .map(|l| l.name)
            .collect()
    });
    eps.into_iter()
        .map(|ep| {
            let gone = ep.state == EndpointState::Ready
                && ep.node == node
                && (!std::path::Path::new(&ep.netns).exists()
                    || veths.as_ref().is_some_and(|v| !v.contains(&ep.host_veth)));
            EndpointView { ep, gone }
        })
        .collect()
}

/// A published port as docker shows it: `8080->80/tcp`,
/// `127.0.0.1:5353->53/udp`, `[::1]:8000-8009->80-89/tcp`.
pub fn port_text(p: &PortMapping) -> String {
    let range = |a: u16, b: u16| if a == b { a.to_string() } else { format!("{a}-{b}") };
    let host = match p.host_ip {
        Some(IpAddr::V6(ip)) => format!("[{ip}]:"),
        Some(ip) => format!("{ip}:"),
        None => String::new(),
    };
    format!(
        "{host}{}->{}/{}",
        range(p.host_port, p.host_port_end),
        range(p.container_port, p.container_port_end),
        p.protocol
    )
}

/// Every published port of an endpoint, `-` for none.
pub fn ports_text(ports: &[PortMapping]) -> String {
    if ports.is_empty() {
        return "-".into();
    }
    ports.iter().map(port_text).collect::<Vec<_>>().join(", ")
}

fn list_or_dash(v: &[String]) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        v.join(",")
    }
}

std::thread_local! {
    /// Set while `weft daemon` runs a command for a client: the command's
    /// output goes back to the client instead of the daemon's stdout.
    static CAPTURE: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Prints one line of a command's results (stdout, or the daemon's client).
pub fn line(s: &str) {
    CAPTURE.with(|c| match c.borrow_mut().as_mut() {
        Some(buf) => {
            buf.push_str(s);
            buf.push('\n');
        }
        None => text(&format!("{s}\n")),
    })
}

/// Writes to stdout as it is. When the reader has gone (`weft ... | head`)
/// weft stops quietly with the status a SIGPIPE would give (128 + 13);
/// results are printed after the work is done, so nothing is cut short.
/// (SIGPIPE itself stays ignored: it would kill weft writing to a closed
/// socket or to `nft`'s stdin mid-operation.)
pub fn text(s: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(s.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        eprintln!("weft: error: write to stdout: {e}");
        std::process::exit(1);
    }
}

/// Runs `f` with the results it prints collected, not printed.
pub fn capture<T>(f: impl FnOnce() -> T) -> (T, String) {
    CAPTURE.with(|c| *c.borrow_mut() = Some(String::new()));
    let r = f();
    (r, CAPTURE.with(|c| c.borrow_mut().take().unwrap_or_default()))
}

pub fn json<T: Serialize + ?Sized>(v: &T) -> Result<()> {
    line(&serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Prints rows as columns separated by two spaces, widths from the content.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        line(s.trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

pub fn network_table(views: &[NetworkView]) {
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|v| {
            let n = &v.network;
            vec![
                n.name.clone(),
                n.driver.to_string(),
                n.subnet.to_string(),
                n.gateway.to_string(),
                n.subnet6.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
                n.bridge.clone(),
                n.mtu.to_string(),
                if n.internal { "yes" } else { "no" }.into(),
                v.endpoints.len().to_string(),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "DRIVER",
            "SUBNET",
            "GATEWAY",
            "SUBNET6",
            "BRIDGE",
            "MTU",
            "INTERNAL",
            "ENDPOINTS",
        ],
        &rows,
    );
}

/// CONTAINER NETWORK IFNAME ADDRESS [ADDRESS6] MAC HOST VETH PORTS ALIASES
/// STATE; ADDRESS6 only when some endpoint has one.
pub fn endpoint_table(eps: &[EndpointView]) {
    let v6 = eps.iter().any(|e| e.ep.address6.is_some());
    let rows: Vec<Vec<String>> = eps
        .iter()
        .map(|v| {
            let e = &v.ep;
            let mut row = vec![
                e.container.clone(),
                e.network.clone(),
                e.ifname.clone(),
                e.address.to_string(),
            ];
            if v6 {
                row.push(e.address6.map(|a| a.to_string()).unwrap_or_else(|| "-".into()));
            }
            row.extend([
                e.mac.to_string(),
                e.host_veth.clone(),
                ports_text(&e.ports),
                list_or_dash(&e.aliases),
                v.state().to_string(),
            ]);
            row
        })
        .collect();
    let mut header = vec!["CONTAINER", "NETWORK", "IFNAME", "ADDRESS"];
    if v6 {
        header.push("ADDRESS6");
    }
    header.extend(["MAC", "HOST VETH", "PORTS", "ALIASES", "STATE"]);
    table(&header, &rows);
}

pub fn network_details(v: &NetworkView) {
    let n = &v.network;
    line(&format!("name:      {}", n.name));
    line(&format!("driver:    {}", n.driver));
    line(&format!("bridge:    {}", n.bridge));
    line(&format!("subnet:    {} (gateway {})", n.subnet, n.gateway));
    if let (Some(s6), Some(g6)) = (n.subnet6, n.gateway6) {
        line(&format!("subnet6:   {s6} (gateway {g6})"));
    }
    line(&format!("mtu:       {}", n.mtu));
    line(&format!(
        "internal:  {}",
        if n.internal { "yes (no NAT, no route out)" } else { "no (outbound NAT)" }
    ));
    line(&format!("endpoints: {}", v.endpoints.len()));
    let ports: Vec<String> = v
        .endpoints
        .iter()
        .flat_map(|e| e.ep.ports.iter().map(|p| format!("{} ({})", port_text(p), e.ep.container)))
        .collect();
    if !ports.is_empty() {
        line(&format!("ports:     {}", ports.join(", ")));
    }
    if !v.endpoints.is_empty() {
        line("");
        endpoint_table(&v.endpoints);
    }
}
