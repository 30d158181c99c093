//! Upstream resolvers: where names that are not containers go.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use tokio::net::UdpSocket;

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

async fn ask(up: SocketAddr, query: &Query, recursion: bool) -> std::io::Result<Message> {
    let bind: SocketAddr =
        if up.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let sock = UdpSocket::bind(bind).await?;
    sock.connect(up).await?;
    let id: u16 = rand_id();
    let mut msg = Message::new();
    msg.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(recursion)
        .add_query(query.clone());
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    msg.set_edns(edns);
    let bytes = msg.to_vec().map_err(std::io::Error::other)?;
    sock.send(&bytes).await?;
    let mut buf = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let n = tokio::time::timeout_at(deadline, sock.recv(&mut buf))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))??;
        // A stray or forged datagram is skipped, not taken for the answer.
        if let Ok(m) = Message::from_vec(&buf[..n]) {
            if m.id() == id && m.queries().first() == Some(query) {
                return Ok(m);
            }
        }
    }
}

/// A query id nobody can predict from the outside: forwarded queries leave
/// the host, where a guessed id would let a forged answer in.
fn rand_id() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish() as u16
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
