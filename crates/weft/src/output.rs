//! What users see: aligned tables for people, JSON (stable field names)
//! for scripts.

use anyhow::Result;
use serde::Serialize;
use weft_model::{Endpoint, Network};

/// A network as `inspect --json` shows it: the record plus its endpoints.
#[derive(Serialize)]
pub struct NetworkView {
    #[serde(flatten)]
    pub network: Network,
    pub endpoints: Vec<Endpoint>,
}

impl NetworkView {
    pub fn new(network: &Network, endpoints: Vec<Endpoint>) -> NetworkView {
        NetworkView { network: network.clone(), endpoints }
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
        None => println!("{s}"),
    })
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

pub fn endpoint_table(eps: &[Endpoint]) {
    let rows: Vec<Vec<String>> = eps
        .iter()
        .map(|e| {
            vec![
                e.container.clone(),
                e.network.clone(),
                e.ifname.clone(),
                e.address.to_string(),
                e.address6.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
                e.mac.to_string(),
                e.host_veth.clone(),
                format!("{:?}", e.state).to_lowercase(),
            ]
        })
        .collect();
    table(
        &["CONTAINER", "NETWORK", "IFNAME", "ADDRESS", "ADDRESS6", "MAC", "HOST VETH", "STATE"],
        &rows,
    );
}

pub fn network_details(v: &NetworkView) {
    let n = &v.network;
    println!("name:      {}", n.name);
    println!("driver:    {}", n.driver);
    println!("bridge:    {}", n.bridge);
    println!("subnet:    {} (gateway {})", n.subnet, n.gateway);
    if let (Some(s6), Some(g6)) = (n.subnet6, n.gateway6) {
        println!("subnet6:   {s6} (gateway {g6})");
    }
    println!("mtu:       {}", n.mtu);
    println!(
        "internal:  {}",
        if n.internal { "yes (no NAT, no route out)" } else { "no (outbound NAT)" }
    );
    println!("endpoints: {}", v.endpoints.len());
    if !v.endpoints.is_empty() {
        println!();
        endpoint_table(&v.endpoints);
    }
}
