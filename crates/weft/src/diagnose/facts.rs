//! What `explain` says of a live link, the same way for SRC's side and
//! DST's: one line of facts, and the step for an interface that is gone.

use weft_datapath::link_detail::LinkDetail;
use weft_model::Endpoint;

use super::live::NsView;
use super::steps::{Step, StepKind};

/// Its addresses other than link-local ones, as `ip` prints them.
pub(super) fn shown_addrs(ns: &NsView, l: &LinkDetail) -> Vec<String> {
    ns.addrs_of(l.link.index)
        .iter()
        .filter(|a| !super::walk::is_link_local(a.addr()))
        .map(|a| a.to_string())
        .collect()
}

/// "LABEL up, ADDRESSES, MAC, mtu N" for a container's interface.
pub(super) fn interface(label: &str, ns: &NsView, l: &LinkDetail) -> String {
    let shown = shown_addrs(ns, l);
    format!(
        "{label} {}, {}, {}, mtu {}",
        up(l),
        if shown.is_empty() { "no address".into() } else { shown.join(" ") },
        l.link.mac.map(|m| m.to_string()).unwrap_or_default(),
        l.link.mtu
    )
}

/// "NAME up, carrier, port of BRIDGE[, STATE], mtu N" for a host veth, and
/// the name of the bridge it is a port of.
pub(super) fn veth(
    host: &NsView,
    v: &LinkDetail,
    port_state: Option<&str>,
) -> (String, Option<String>) {
    let master = v.link.master.map(|m| host.name_of(m));
    let state = port_state.map(|s| format!("{s}, ")).unwrap_or_default();
    let facts = format!(
        "{} {}, {}, {}, {state}mtu {}",
        v.link.name,
        up(v),
        if v.link.lower_up { "carrier" } else { "NO CARRIER" },
        master.as_deref().map_or_else(|| "in no bridge".into(), |m| format!("port of {m}")),
        v.link.mtu
    );
    (facts, master)
}

/// Why a veth is not a port of `bridge`.
pub(super) fn not_a_port(name: &str, bridge: &str, master: Option<String>) -> String {
    let now =
        master.map_or_else(|| "it is in no bridge".into(), |m| format!("it is a port of {m}"));
    format!("{name} is not a port of {bridge}: {now}")
}

/// The container's end of an endpoint's veth pair is gone.
pub(super) fn interface_gone(kind: StepKind, ep: &Endpoint) -> Step {
    Step::fail(
        kind,
        format!("no {} in {}", ep.ifname, ep.container),
        "the container's end of the veth pair is gone",
    )
    .fix(format!(
        "weft detach {n} {c} && weft attach {n} {c}",
        n = ep.network,
        c = ep.container
    ))
}

fn up(l: &LinkDetail) -> &'static str {
    if l.link.up {
        "up"
    } else {
        "DOWN"
    }
}
