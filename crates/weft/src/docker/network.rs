//! The network driver: Docker's networks and endpoints on weft's store,
//! bridges, veth pairs and published ports.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{anyhow, bail, Context as _, Result};
use ipnet::{Ipv4Net, Ipv6Net};
use serde_json::Value;
use weft_datapath::plug::{self, PlugSpec};
use weft_model::network::NetworkSpec;
use weft_model::{names, Driver, Endpoint, EndpointKey, Mac, Network, PortMapping, Proto};
use weft_store::EndpointRequest;

use super::types::{self, Empty};
use super::State;
use crate::ops::context::now;
use crate::ops::{self, endpoint, publish};

/// The weft interface name of every Docker endpoint (Docker renames the
/// container's end to ethN itself).
const IFNAME: &str = "eth";

/// An endpoint between CreateEndpoint and Join.
#[derive(Debug, Clone)]
pub struct Pending {
    network: String,
    ip: Ipv4Addr,
    ip6: Option<Ipv6Addr>,
    mac: Mac,
    ports: Vec<PortMapping>,
}

/// Docker's short ID (what `docker network ls` shows): 12 hex digits.
/// The whole ID must be hex: it becomes part of weft's records.
fn short(id: &str) -> Result<&str> {
    match id.get(..12) {
        Some(s) if id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(s),
        _ => bail!("malformed Docker ID {id:?}"),
    }
}

fn overlay_key(network_id: &str) -> String {
    format!("docker.network.{network_id}")
}

/// The weft network behind a Docker network.
fn weft_name(st: &State, network_id: &str) -> Result<String> {
    if let Some(ov) = st.ctx.store.meta(&overlay_key(network_id))?.filter(|s| !s.is_empty()) {
        return Ok(ov);
    }
    Ok(format!("docker-{}", short(network_id)?))
}

fn network_of(st: &State, network_id: &str) -> Result<Network> {
    let name = weft_name(st, network_id)?;
    st.ctx.store.network(&name)?.ok_or_else(|| {
        anyhow!(
            "weft has no network {name} for Docker network {}: was it created with \
             another weft state directory?",
            &network_id[..network_id.len().min(12)]
        )
    })
}

/// `-o` options: only the MTU and weft's overlay are understood; anything
/// else is refused rather than silently ignored.
fn driver_options(opts: &HashMap<String, Value>) -> Result<(Option<u32>, Option<String>)> {
    let (mut mtu, mut overlay) = (None, None);
    let generic = match opts.get(types::GENERIC) {
        None | Some(Value::Null) => return Ok((None, None)),
        Some(Value::Object(m)) => m,
        Some(v) => bail!("malformed driver options {v}"),
    };
    for (k, v) in generic {
        let v = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
        match k.as_str() {
            types::MTU => {
                mtu = Some(v.parse().map_err(|_| anyhow!("-o {k}={v}: not a number"))?);
            }
            types::OVERLAY => overlay = Some(v),
            _ => bail!(
                "unknown option -o {k} for the weft driver (it knows {}, {})",
                types::MTU,
                types::OVERLAY
            ),
        }
    }
    Ok((mtu, overlay))
}

/// At most one pool per family: a weft network has one subnet of each.
fn one_pool(data: Option<Vec<types::IpamData>>, family: &str) -> Result<Option<types::IpamData>> {
    let mut data = data.unwrap_or_default();
    if data.len() > 1 {
        bail!("a weft network has one {family} subnet; {} were given", data.len());
    }
    let d = data.pop();
    if d.as_ref().is_some_and(|d| d.aux_addresses.as_ref().is_some_and(|a| !a.is_empty())) {
        bail!("--aux-address is not supported by the weft driver");
    }
    Ok(d)
}

/// `ADDRESS/PREFIX` (or a bare address) to the address.
fn address_of(s: &str) -> Result<IpAddr> {
    let a = s.split('/').next().unwrap_or_default();
    a.parse().map_err(|_| anyhow!("malformed address {s:?}"))
}

pub fn create_network(st: &mut State, req: types::CreateNetwork) -> Result<Empty> {
    let short = short(&req.network_id)?;
    let opts = req.options.unwrap_or_default();
    let (mtu, overlay) = driver_options(&opts)?;
    let internal = opts.get(types::INTERNAL).and_then(Value::as_bool).unwrap_or(false);
    let v4 = one_pool(req.ipv4_data, "IPv4")?.ok_or_else(|| {
        anyhow!("an IPv4 subnet is needed (weft networks are IPv4 or dual-stack)")
    })?;
    let v6 = one_pool(req.ipv6_data, "IPv6")?;
    let subnet: Ipv4Net = v4.pool.parse().map_err(|_| anyhow!("malformed subnet {:?}", v4.pool))?;
    let gateway = match address_of(&v4.gateway) {
        Ok(IpAddr::V4(g)) => Some(g),
        _ if v4.gateway.is_empty() => None,
        _ => bail!("malformed gateway {:?}", v4.gateway),
    };
    if let Some(name) = overlay {
        return adopt_overlay(st, &req.network_id, &name, subnet, internal, mtu);
    }
    let (subnet6, gateway6) = match &v6 {
        None => (None, None),
        Some(d) => {
            let s: Ipv6Net =
                d.pool.parse().map_err(|_| anyhow!("malformed subnet {:?}", d.pool))?;
            let g = match address_of(&d.gateway) {
                Ok(IpAddr::V6(g)) => Some(g),
                _ => None,
            };
            (Some(s), g)
        }
    };
    let spec = NetworkSpec {
        name: format!("docker-{short}"),
        subnet: Some(subnet),
        gateway,
        subnet6,
        gateway6,
        mtu,
        // What Docker's bridge driver calls its bridges.
        bridge: Some(format!("br-{short}")),
        internal,
        open: false,
        driver: None,
        vni: None,
    };
    ops::network::create(&mut st.ctx, &spec)?;
    Ok(Empty {})
}

/// `-o weft.overlay=NAME`: the Docker network is an existing weft overlay
/// (its bridge and VXLAN device are the agent's); the Docker network must
/// say the same subnet, so that Docker's view of the addresses is weft's.
fn adopt_overlay(
    st: &mut State,
    network_id: &str,
    name: &str,
    subnet: Ipv4Net,
    internal: bool,
    mtu: Option<u32>,
) -> Result<Empty> {
    let Some(net) = st.ctx.store.network(name)? else {
        bail!("weft has no overlay network {name} (create it first with `weft network create {name} --driver overlay`)");
    };
    if net.driver != Driver::Overlay {
        bail!("weft network {name} is not an overlay network");
    }
    if net.subnet != subnet {
        bail!(
            "weft overlay {name} has subnet {}: give --subnet {} to docker network create",
            net.subnet,
            net.subnet
        );
    }
    if internal != net.internal || mtu.is_some_and(|m| m != net.mtu) {
        bail!("--internal and the MTU of weft overlay {name} are its own; give neither");
    }
    st.ctx.store.set_meta(&overlay_key(network_id), name)?;
    Ok(Empty {})
}

pub fn delete_network(st: &mut State, req: types::NetworkRef) -> Result<Empty> {
    let key = overlay_key(&req.network_id);
    if st.ctx.store.meta(&key)?.is_some_and(|s| !s.is_empty()) {
        // The overlay is shared with other hosts and weft's own users.
        st.ctx.store.set_meta(&key, "")?;
        return Ok(Empty {});
    }
    let name = weft_name(st, &req.network_id)?;
    if st.ctx.store.network(&name)?.is_some() {
        ops::network::remove(&mut st.ctx, &name, false)?;
    }
    Ok(Empty {})
}

/// Docker's `-p` bindings as weft's port mappings.
fn port_mappings(opts: &HashMap<String, Value>) -> Result<Vec<PortMapping>> {
    let Some(v) = opts.get(types::PORT_MAP).filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let bindings: Vec<types::PortBinding> =
        serde_json::from_value(v.clone()).context("malformed port bindings")?;
    let mut out = Vec::new();
    for b in bindings {
        let protocol = match b.proto {
            6 => Proto::Tcp,
            17 => Proto::Udp,
            132 => Proto::Sctp,
            p => bail!("-p: unknown protocol number {p}"),
        };
        if b.host_port == 0 {
            bail!(
                "-p {}/{protocol}: weft publishes chosen host ports only; give -p HOSTPORT:{}",
                b.port,
                b.port
            );
        }
        if b.host_port_end != 0 && b.host_port_end != b.host_port {
            bail!(
                "-p {}-{}:{}: a range of host ports for one container port is not supported; give one host port",
                b.host_port,
                b.host_port_end,
                b.port
            );
        }
        let host_ip = match b.host_ip.as_str() {
            "" => None,
            s => Some(s.parse().map_err(|_| anyhow!("-p: malformed host address {s:?}"))?),
        };
        out.push(PortMapping { host_ip, ..PortMapping::single(protocol, b.host_port, b.port) });
    }
    Ok(out)
}

pub fn create_endpoint(
    st: &mut State,
    req: types::CreateEndpoint,
) -> Result<types::CreateEndpointReply> {
    short(&req.endpoint_id)?;
    let net = network_of(st, &req.network_id)?;
    let iface = req.interface.unwrap_or_default();
    let ip = match address_of(&iface.address) {
        Ok(IpAddr::V4(a)) => a,
        _ => bail!("an IPv4 address is needed for every endpoint; got {:?}", iface.address),
    };
    if !net.subnet.contains(&ip) {
        bail!("address {ip} is outside network {}'s subnet {}", net.name, net.subnet);
    }
    let ip6 = match address_of(&iface.address_ipv6) {
        Ok(IpAddr::V6(a)) => Some(a),
        _ if iface.address_ipv6.is_empty() => None,
        _ => bail!("malformed IPv6 address {:?}", iface.address_ipv6),
    };
    let opts = req.options.unwrap_or_default();
    let ports = port_mappings(&opts)?;
    let chosen_mac = iface.mac_address.is_empty();
    let mac = if chosen_mac {
        Mac::derive(&[&net.name, &req.endpoint_id, IFNAME])
    } else {
        iface.mac_address.parse().map_err(|_| anyhow!("malformed MAC {:?}", iface.mac_address))?
    };
    st.pending.insert(req.endpoint_id, Pending { network: net.name, ip, ip6, mac, ports });
    Ok(types::CreateEndpointReply {
        interface: chosen_mac
            .then(|| types::Interface { mac_address: mac.to_string(), ..Default::default() }),
    })
}

fn key(st: &State, network_id: &str, endpoint_id: &str) -> Result<EndpointKey> {
    Ok(EndpointKey {
        network: weft_name(st, network_id)?,
        container: endpoint_id.to_string(),
        ifname: IFNAME.to_string(),
    })
}

/// The endpoint record, then the veth pair in the bridge (its container
/// end left for Docker to move), then its ports; undone on any failure.
pub fn join(st: &mut State, req: types::Join) -> Result<types::JoinReply> {
    let p = st.pending.get(&req.endpoint_id).cloned().ok_or_else(|| {
        anyhow!(
            "endpoint {} was not created through this plugin process",
            short(&req.endpoint_id).unwrap_or("?")
        )
    })?;
    let net = network_of(st, &req.network_id)?;
    let ctx = &mut st.ctx;
    let bridge = endpoint::bridge_of(ctx, &net)?;
    // Docker gives a container's -p bindings to every endpoint it creates
    // for it (also on `docker network connect`); one endpoint, the first,
    // publishes them.
    let published = ctx
        .store
        .endpoints(None)?
        .into_iter()
        .any(|e| e.netns == req.sandbox_key && e.node == ctx.node && !e.ports.is_empty());
    let ports = if published { Vec::new() } else { p.ports.clone() };
    publish::check(&net, &ports)?;
    let host_veth = names::host_veth_name(&p.network, &req.endpoint_id, IFNAME);
    let peer = names::temp_peer_name(&host_veth);
    let ep = ctx.store.reserve_endpoint(&EndpointRequest {
        network: p.network.clone(),
        container: req.endpoint_id.clone(),
        ifname: IFNAME.to_string(),
        netns: req.sandbox_key.clone(),
        // Docker moves the interface itself; weft never opens this path.
        netns_id: None,
        ip: Some(p.ip),
        ip6: p.ip6,
        mac: p.mac,
        host_veth: host_veth.clone(),
        node: ctx.node.clone(),
        boot_id: ctx.boot_id.clone(),
        pid: std::process::id(),
        created: now(),
        ports,
        aliases: Vec::new(),
    })?;
    let alias = endpoint::endpoint_alias(&ep.key());
    let spec = PlugSpec {
        bridge_index: bridge.index,
        host_veth: &host_veth,
        alias: &alias,
        ifname: &peer,
        mac: ep.mac,
        host_mac: endpoint::host_veth_mac(&ep.key()),
        mtu: net.mtu,
        address: ep.address,
        address6: ep.address6,
        gateway: ep.gateway,
        gateway6: ep.gateway6,
    };
    let plugged = plug::plug_unmoved(ctx.host()?, &spec).map_err(anyhow::Error::from);
    endpoint::finish_plug(ctx, &ep, &net.bridge, &host_veth, plugged)?;
    st.pending.remove(&req.endpoint_id);
    Ok(types::JoinReply {
        interface_name: types::InterfaceName { src_name: peer, dst_prefix: "eth".into() },
        gateway: ep.gateway.map(|g| g.to_string()).unwrap_or_default(),
        gateway_ipv6: ep.gateway6.map(|g| g.to_string()).unwrap_or_default(),
        disable_gateway_service: net.internal,
    })
}

fn teardown(st: &mut State, network_id: &str, endpoint_id: &str) -> Result<Option<Endpoint>> {
    let key = key(st, network_id, endpoint_id)?;
    let Some(ep) = st.ctx.store.endpoint(&key)? else {
        return Ok(None);
    };
    endpoint::teardown(&mut st.ctx, &ep)?;
    Ok(Some(ep))
}

/// Cuts the container off and frees its address (see `endpoint::teardown`).
/// A second Leave, or one for an endpoint weft no longer has, succeeds.
pub fn leave(st: &mut State, req: types::EndpointRef) -> Result<Empty> {
    teardown(st, &req.network_id, &req.endpoint_id)?;
    Ok(Empty {})
}

pub fn delete_endpoint(st: &mut State, req: types::EndpointRef) -> Result<Empty> {
    st.pending.remove(&req.endpoint_id);
    teardown(st, &req.network_id, &req.endpoint_id)?;
    Ok(Empty {})
}

/// What `docker network inspect` cannot show: weft's names for the endpoint.
pub fn oper_info(st: &mut State, req: types::EndpointRef) -> Result<types::OperInfo> {
    let mut value = HashMap::new();
    let key = key(st, &req.network_id, &req.endpoint_id)?;
    if let Some(ep) = st.ctx.store.endpoint(&key)? {
        value.insert("weft.network".into(), Value::String(ep.network));
        value.insert("weft.host_veth".into(), Value::String(ep.host_veth));
    }
    Ok(types::OperInfo { value })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn opts(v: Value) -> HashMap<String, Value> {
        serde_json::from_value(v).expect("options")
    }

    #[test]
    fn port_bindings_become_weft_mappings() {
        let o = opts(json!({ types::PORT_MAP: [
            {"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": 8080, "HostPortEnd": 8080},
            {"Proto": 17, "IP": "", "Port": 53, "HostIP": "127.0.0.1", "HostPort": 5353, "HostPortEnd": 5353},
            {"Proto": 132, "Port": 9, "HostPort": 9}
        ]}));
        let m = port_mappings(&o).expect("valid");
        assert_eq!(m[0], PortMapping::single(Proto::Tcp, 8080, 80));
        assert_eq!(
            m[1],
            PortMapping {
                host_ip: Some("127.0.0.1".parse().unwrap()),
                ..PortMapping::single(Proto::Udp, 5353, 53)
            }
        );
        assert_eq!(m[2].protocol, Proto::Sctp);
        assert!(port_mappings(&opts(json!({}))).expect("none").is_empty());
    }

    #[test]
    fn port_bindings_weft_cannot_honour_are_refused() {
        let ephemeral = opts(json!({ types::PORT_MAP: [{"Proto": 6, "Port": 80, "HostPort": 0}]}));
        assert!(port_mappings(&ephemeral).unwrap_err().to_string().contains("HOSTPORT:80"));
        let range = opts(
            json!({ types::PORT_MAP: [{"Proto": 6, "Port": 80, "HostPort": 8000, "HostPortEnd": 8009}]}),
        );
        assert!(port_mappings(&range).unwrap_err().to_string().contains("not supported"));
        let proto = opts(json!({ types::PORT_MAP: [{"Proto": 1, "Port": 80, "HostPort": 80}]}));
        assert!(port_mappings(&proto).is_err());
    }

    #[test]
    fn driver_options_know_mtu_and_overlay_only() {
        let o = opts(json!({ types::GENERIC: { types::MTU: "1400", types::OVERLAY: "ov" }}));
        assert_eq!(driver_options(&o).expect("valid"), (Some(1400), Some("ov".to_string())));
        let bad = opts(json!({ types::GENERIC: { "color": "red" }}));
        assert!(driver_options(&bad).unwrap_err().to_string().contains("unknown option -o color"));
        let nan = opts(json!({ types::GENERIC: { types::MTU: "big" }}));
        assert!(driver_options(&nan).is_err());
    }

    #[test]
    fn docker_ids_give_short_names() {
        assert_eq!(short("9a02949542065d7c7b4e597dd4a660b714e59d66").expect("hex"), "9a0294954206");
        assert!(short("../../etc/x").is_err());
        assert!(short("abc").is_err());
        assert!(short("9a02949542065d7c/x").is_err());
    }
}
