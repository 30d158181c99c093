//! Upstream resolvers: where names that are not containers go.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::runtime::TokioRuntimeProvider;
use hickory_proto::udp::UdpClientStream;
use hickory_proto::xfer::{DnsRequest, DnsRequestOptions, DnsRequestSender, FirstAnswer};
use hickory_proto::ProtoError;

/// How long one upstream gets before the next is asked.
const PATIENCE: Duration = Duration::from_secs(2);

/// `nameserver` lines of a resolv.conf, port 53.
pub fn from_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == "nameserver").then_some(())?;
            // A scoped IPv6 address (`fe80::1%eth0`) is not usable from here.
            let ip: IpAddr = w.next()?.parse().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .collect()
}

/// Asks the upstreams in turn for `query`; the first answer wins.
pub async fn forward(upstreams: &[SocketAddr], query: &Query, recursion: bool) -> Option<Message> {
    for up in upstreams {
        match ask(*up, query, recursion).await {
            Ok(m) => return Some(m),
            Err(e) => tracing::debug!("upstream {up}: {e}"),
        }
    }
    None
}

/// One upstream, one query, through hickory's UDP client: every query
/// gets a socket of its own on a random port and a random id (both from
/// `rand`'s thread generator, a CSPRNG seeded by the OS), and an answer
/// counts only from that upstream's address, with that id and that
/// question. Forwarded queries leave the host: a guessable id or port
/// would let an off-path host forge the answer.
async fn ask(up: SocketAddr, query: &Query, recursion: bool) -> Result<Message, ProtoError> {
    let mut client = UdpClientStream::builder(up, TokioRuntimeProvider::new())
        .with_timeout(Some(PATIENCE))
        .build()
        .await?;
    let mut msg = Message::new();
    msg.set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(recursion)
        .add_query(query.clone());
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    msg.set_edns(edns);
    let request = DnsRequest::new(msg, DnsRequestOptions::default());
    let answer = client.send_message(request).first_answer().await?;
    Ok(answer.into_message())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_resolv_conf() {
        let t = "# comment\nsearch lan\nnameserver 192.0.2.53\nnameserver  2001:db8::53\nnameserver fe80::1%eth0\noptions ndots:1\n";
        assert_eq!(
            from_resolv_conf(t),
            ["192.0.2.53:53".parse::<SocketAddr>().unwrap(), "[2001:db8::53]:53".parse().unwrap()]
        );
    }
}
