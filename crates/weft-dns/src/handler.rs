//! Answering one query that arrived on one network's gateway address.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};

use hickory_proto::op::{Header, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_server::authority::MessageResponseBuilder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};

use crate::pending::Pending;
use crate::upstream;
use crate::zone::{parse_reverse, NetZone, Zone};

/// Container answers change at once (attach, detach): let nobody cache them.
const TTL: u32 = 0;

pub(crate) type SharedZone = Arc<RwLock<Arc<Zone>>>;

/// Handles the queries of one network: only its names, never another's.
pub(crate) struct NetHandler {
    pub network: String,
    pub zone: SharedZone,
    pub upstreams: Arc<Vec<SocketAddr>>,
    /// Forwards in flight, shared by every network's handler.
    pub pending: Arc<Pending>,
}

/// What the network's own records say about a question.
#[derive(Debug, PartialEq, Eq)]
enum Local {
    /// The name is ours; these are its records of the asked type (maybe none).
    Records(Vec<Record>),
    /// Ours to answer, and it does not exist.
    NxDomain,
    /// Not ours: ask the upstream resolvers.
    Forward,
}

fn local(net: Option<&NetZone>, name: &Name, qtype: RecordType) -> Local {
    let Some(net) = net else {
        return Local::Forward;
    };
    let text = name.to_ascii();
    let text = text.strip_suffix('.').unwrap_or(&text);
    if let Some(ip) = parse_reverse(text) {
        return match net.reverse(ip) {
            Some(c) if matches!(qtype, RecordType::PTR | RecordType::ANY) => {
                match Name::from_ascii(format!("{c}.")) {
                    Ok(target) => Local::Records(vec![Record::from_rdata(
                        name.clone(),
                        TTL,
                        RData::PTR(PTR(target)),
                    )]),
                    Err(_) => Local::NxDomain,
                }
            }
            Some(_) => Local::Records(Vec::new()),
            None if net.covers(ip) => Local::NxDomain,
            None => Local::Forward,
        };
    }
    match net.lookup(text) {
        Some(addrs) => Local::Records(
            addrs
                .iter()
                .filter_map(|a| match (a, qtype) {
                    (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => Some(RData::A(A(*v4))),
                    (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => {
                        Some(RData::AAAA(AAAA(*v6)))
                    }
                    _ => None,
                })
                .map(|rd| Record::from_rdata(name.clone(), TTL, rd))
                .collect(),
        ),
        // A bare name is a container name or nothing: the upstream cannot
        // know it, and asking would leak container names off the host.
        None if name.num_labels() <= 1 => Local::NxDomain,
        None => Local::Forward,
    }
}

#[async_trait::async_trait]
impl RequestHandler for NetHandler {
    async fn handle_request<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let builder = MessageResponseBuilder::from_message_request(request);
        let mut header = Header::response_from_request(request.header());
        header.set_recursion_available(true);
        let query = match request.queries() {
            [q] if request.message_type() == MessageType::Query
                && request.op_code() == OpCode::Query =>
            {
                q
            }
            [_] => {
                return send(
                    &mut response,
                    builder.error_msg(request.header(), ResponseCode::NotImp),
                    header,
                )
                .await;
            }
            _ => {
                return send(
                    &mut response,
                    builder.error_msg(request.header(), ResponseCode::FormErr),
                    header,
                )
                .await;
            }
        };
        let name = Name::from(query.name().clone());
        let qtype = query.query_type();
        let zone = self.zone.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let net = zone.network(&self.network);
        // Another network's container can route to this gateway address
        // too (it is the host's): only this network's subnets get answers.
        if !net.is_some_and(|n| n.covers(request.src().ip())) {
            return send(
                &mut response,
                builder.error_msg(request.header(), ResponseCode::Refused),
                header,
            )
            .await;
        }
        match local(net, &name, qtype) {
            Local::Records(records) => {
                header.set_authoritative(true);
                let msg = builder.build(
                    header,
                    records.iter(),
                    std::iter::empty(),
                    std::iter::empty(),
                    std::iter::empty(),
                );
                send(&mut response, msg, header).await
            }
            Local::NxDomain => {
                header.set_authoritative(true);
                header.set_response_code(ResponseCode::NXDomain);
                send(&mut response, builder.build_no_records(header), header).await
            }
            // A network with no way out has none through its DNS either:
            // the question itself would carry data out (as Docker and
            // aardvark-dns do, internal networks get no forwarding).
            Local::Forward if net.is_some_and(NetZone::internal) => {
                send(
                    &mut response,
                    builder.error_msg(request.header(), ResponseCode::Refused),
                    header,
                )
                .await
            }
            Local::Forward => {
                let Some(_permit) = self.pending.take(request.src().ip()) else {
                    tracing::debug!("{}: too many queries in flight", request.src().ip());
                    header.set_response_code(ResponseCode::ServFail);
                    return send(&mut response, builder.build_no_records(header), header).await;
                };
                let mut q = Query::query(name, qtype);
                q.set_query_class(query.query_class());
                match upstream::forward(&self.upstreams, &q, request.recursion_desired()).await {
                    Some(up) => {
                        header.set_response_code(up.response_code());
                        header.set_truncated(up.truncated());
                        let msg = builder.build(
                            header,
                            up.answers().iter(),
                            up.name_servers().iter(),
                            std::iter::empty(),
                            up.additionals().iter(),
                        );
                        send(&mut response, msg, header).await
                    }
                    None => {
                        tracing::info!("{} {qtype}: no upstream answered: SERVFAIL", q.name());
                        header.set_response_code(ResponseCode::ServFail);
                        send(&mut response, builder.build_no_records(header), header).await
                    }
                }
            }
        }
    }
}

async fn send<'a, R: ResponseHandler>(
    response: &mut R,
    msg: hickory_server::authority::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    header: Header,
) -> ResponseInfo {
    match response.send_response(msg).await {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!("cannot send a DNS response: {e}");
            let mut h = header;
            h.set_response_code(ResponseCode::ServFail);
            h.into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_model::network::NetworkSpec;

    fn zone() -> Zone {
        let net = NetworkSpec { name: "a".into(), ..Default::default() }
            .build("10.1.0.0/24".parse().unwrap(), 0)
            .unwrap();
        let ep: weft_model::Endpoint = serde_json::from_value(serde_json::json!({
            "container": "web", "network": "a", "ifname": "eth0", "address": "10.1.0.2/24",
            "mac": "02:00:00:00:00:02", "gateway": null, "host_veth": "v", "netns": "/x",
            "state": "ready", "boot_id": "", "pid": 0, "created": 0, "aliases": ["www"]
        }))
        .unwrap();
        Zone::build(&[net], &[ep])
    }

    fn n(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    #[test]
    fn answers() {
        let z = zone();
        let net = z.network("a");
        let Local::Records(r) = local(net, &n("WEB."), RecordType::A) else { panic!() };
        assert_eq!(r[0].data(), &RData::A(A("10.1.0.2".parse().unwrap())));
        assert_eq!(local(net, &n("www."), RecordType::AAAA), Local::Records(Vec::new()));
        assert_eq!(local(net, &n("nobody."), RecordType::A), Local::NxDomain);
        assert_eq!(local(net, &n("example.com."), RecordType::A), Local::Forward);
        let Local::Records(r) = local(net, &n("2.0.1.10.in-addr.arpa."), RecordType::PTR) else {
            panic!()
        };
        assert_eq!(r[0].data(), &RData::PTR(PTR(n("web."))));
        assert_eq!(local(net, &n("9.0.1.10.in-addr.arpa."), RecordType::PTR), Local::NxDomain);
        assert_eq!(local(net, &n("8.8.8.8.in-addr.arpa."), RecordType::PTR), Local::Forward);
        assert_eq!(local(None, &n("web."), RecordType::A), Local::Forward);
    }
}
