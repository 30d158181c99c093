//! One real packet sent from inside a namespace, for `weft explain --probe`:
//! an ICMP echo request (raw socket), a UDP datagram or a TCP SYN, and what
//! came back. Sockets are opened on a thread that entered the namespace, so
//! the packet leaves from the container's own stack.

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::error::{DatapathError, Result};
use crate::netns::Netns;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeProto {
    Icmp,
    Udp(u16),
    Tcp(u16),
}

/// What the sender saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// An echo reply, a TCP connection, or a UDP answer.
    Answered { rtt: Duration },
    /// The destination's stack answered "nothing here": a TCP RST or an ICMP
    /// port unreachable. The packet got there.
    Refused,
    /// An ICMP error from somewhere on the way (host/net unreachable...).
    Unreachable(String),
    /// Nothing came back in time.
    Timeout,
    /// The sending stack refused at once (no route, no neighbour...).
    SendFailed(String),
}

/// ICMP and UDP probes go as a burst of this many packets, so that
/// interface counters tell them from stray traffic (ARP, ND, MLD).
pub const BURST: u16 = 5;

/// Sends the probe; returns what came back and how many packets were sent
/// (a TCP SYN counts once, though the kernel may retransmit it).
pub fn send_probe(
    ns: &Netns,
    dst: IpAddr,
    proto: ProbeProto,
    wait: Duration,
) -> Result<(ProbeOutcome, u16)> {
    ns.run(move || {
        let r = match proto {
            ProbeProto::Icmp => icmp_echo(dst, wait),
            ProbeProto::Udp(port) => udp(SocketAddr::new(dst, port), wait),
            ProbeProto::Tcp(port) => Ok((tcp(SocketAddr::new(dst, port), wait), 1)),
        };
        r.map_err(|e| DatapathError::Kernel { op: format!("probe {dst}"), cause: e })
    })
}

fn tcp(to: SocketAddr, wait: Duration) -> ProbeOutcome {
    let start = Instant::now();
    match TcpStream::connect_timeout(&to, wait) {
        Ok(_) => ProbeOutcome::Answered { rtt: start.elapsed() },
        Err(e) => classify(e),
    }
}

fn udp(to: SocketAddr, wait: Duration) -> io::Result<(ProbeOutcome, u16)> {
    let bind: SocketAddr = match to {
        SocketAddr::V4(_) => "0.0.0.0:0".parse().expect("literal"),
        SocketAddr::V6(_) => "[::]:0".parse().expect("literal"),
    };
    let s = UdpSocket::bind(bind)?;
    // Connected: an ICMP port unreachable comes back as ECONNREFUSED.
    s.connect(to)?;
    s.set_read_timeout(Some(wait))?;
    let start = Instant::now();
    for sent in 0..BURST {
        // A port unreachable for an earlier datagram fails this send.
        if let Err(e) = s.send(b"weft explain probe\n") {
            return Ok((classify(e), sent));
        }
    }
    let mut buf = [0u8; 512];
    let outcome = match s.recv(&mut buf) {
        Ok(_) => ProbeOutcome::Answered { rtt: start.elapsed() },
        Err(e) => classify(e),
    };
    Ok((outcome, BURST))
}

fn classify(e: io::Error) -> ProbeOutcome {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => ProbeOutcome::Refused,
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ProbeOutcome::Timeout,
        _ => match e.raw_os_error() {
            Some(libc::EHOSTUNREACH | libc::ENETUNREACH) => {
                ProbeOutcome::Unreachable(e.to_string())
            }
            _ => ProbeOutcome::SendFailed(e.to_string()),
        },
    }
}

/// Echo request over a raw ICMP socket: root has CAP_NET_RAW, while the
/// unprivileged "ping socket" is off in fresh namespaces (ping_group_range).
fn icmp_echo(dst: IpAddr, wait: Duration) -> io::Result<(ProbeOutcome, u16)> {
    let (family, proto) = match dst {
        IpAddr::V4(_) => (libc::AF_INET, libc::IPPROTO_ICMP),
        IpAddr::V6(_) => (libc::AF_INET6, libc::IPPROTO_ICMPV6),
    };
    // SAFETY: plain socket(2); the result is checked before use.
    let fd = unsafe { libc::socket(family, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let id = (std::process::id() as u16) ^ 0x5746;
    let (addr, len) = sockaddr(dst);
    let start = Instant::now();
    for seq in 1..=BURST {
        let mut pkt = [0u8; 16];
        pkt[0] = if dst.is_ipv4() { 8 } else { 128 };
        pkt[4..6].copy_from_slice(&id.to_be_bytes());
        pkt[6..8].copy_from_slice(&seq.to_be_bytes());
        pkt[8..16].copy_from_slice(b"weftprob");
        if dst.is_ipv4() {
            let c = checksum(&pkt);
            pkt[2..4].copy_from_slice(&c.to_be_bytes());
        } // The kernel fills in ICMPv6 checksums on raw sockets.
          // SAFETY: pkt and addr are valid for the lengths given.
        let sent = unsafe {
            libc::sendto(
                sock.as_raw_fd(),
                pkt.as_ptr().cast(),
                pkt.len(),
                0,
                (&addr as *const libc::sockaddr_storage).cast(),
                len,
            )
        };
        if sent < 0 {
            return Ok((classify(io::Error::last_os_error()), seq - 1));
        }
    }
    Ok((echo_reply(&sock, dst, id, start, wait)?, BURST))
}

/// Waits for an echo reply with our identifier, or an error quoting it.
fn echo_reply(
    sock: &OwnedFd,
    dst: IpAddr,
    id: u16,
    start: Instant,
    wait: Duration,
) -> io::Result<ProbeOutcome> {
    let mut buf = [0u8; 1500];
    loop {
        let left = wait.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Ok(ProbeOutcome::Timeout);
        }
        set_timeout(sock, left)?;
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Ok(classify(io::Error::last_os_error()));
        }
        let mut icmp = &buf[..n as usize];
        if dst.is_ipv4() {
            // IPv4 raw sockets deliver the IP header too.
            let ihl = usize::from(icmp.first().copied().unwrap_or(0) & 0x0f) * 4;
            if icmp.len() < ihl + 8 {
                continue;
            }
            icmp = &icmp[ihl..];
        }
        if icmp.len() < 8 {
            continue;
        }
        let (kind, code) = (icmp[0], icmp[1]);
        let reply = if dst.is_ipv4() { 0 } else { 129 };
        if kind == reply && icmp[4..6] == id.to_be_bytes() {
            return Ok(ProbeOutcome::Answered { rtt: start.elapsed() });
        }
        // An error quoting our request: unreachable (v4 type 3, v6 type 1).
        let unreachable = if dst.is_ipv4() { 3 } else { 1 };
        if kind == unreachable && quotes_id(icmp, id, dst.is_ipv4()) {
            return Ok(ProbeOutcome::Unreachable(format!(
                "ICMP destination unreachable, code {code}"
            )));
        }
    }
}

/// Whether an ICMP error carries our echo request (same identifier).
fn quotes_id(icmp: &[u8], id: u16, v4: bool) -> bool {
    let inner = &icmp[8..];
    let off = if v4 { usize::from(inner.first().copied().unwrap_or(0) & 0x0f) * 4 } else { 40 };
    inner.get(off + 4..off + 6).is_some_and(|b| b == id.to_be_bytes())
}

fn set_timeout(sock: &OwnedFd, t: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: t.as_secs() as libc::time_t,
        // Zero would mean "wait forever".
        tv_usec: t.subsec_micros().max(1000) as libc::suseconds_t,
    };
    // SAFETY: tv is a valid timeval for the size given.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn sockaddr(ip: IpAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match ip {
        IpAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
            let sin = unsafe {
                &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_addr.s_addr = u32::from_ne_bytes(v4.octets());
            (ss, size_of::<libc::sockaddr_in>() as libc::socklen_t)
        }
        IpAddr::V6(v6) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in6.
            let sin6 = unsafe {
                &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_addr.s6_addr = v6.octets();
            (ss, size_of::<libc::sockaddr_in6>() as libc::socklen_t)
        }
    }
}

/// The Internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for pair in data.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_an_echo_request() {
        // type 8, code 0, id 1, seq 1: the checksum makes the sum 0xffff.
        let mut p = [8u8, 0, 0, 0, 0, 1, 0, 1];
        let c = checksum(&p);
        p[2..4].copy_from_slice(&c.to_be_bytes());
        assert_eq!(checksum(&p), 0);
    }
}
