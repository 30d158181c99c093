//! Sockets that hold ports in the calling thread's network namespace, read
//! with the kernel's sock_diag interface (what `ss` uses). Asking for
//! listening TCP sockets only lets the kernel walk its small table of
//! listeners; /proc/net/tcp walks the whole connection hash table instead,
//! several milliseconds per read on a host with much memory.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A socket that receives on `addr:port` (`0.0.0.0`/`::`: every address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    pub addr: IpAddr,
    pub port: u16,
}

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const TCP_ESTABLISHED_CLOSE: u32 = 7;
const TCP_LISTEN: u32 = 10;
const NLMSG_HDR: usize = 16;
/// struct inet_diag_req_v2.
const REQ_LEN: usize = 56;

/// Listening TCP sockets, IPv4 and IPv6.
pub fn tcp_listeners() -> io::Result<Vec<Bound>> {
    let mut out = dump(libc::AF_INET as u8, libc::IPPROTO_TCP as u8, 1 << TCP_LISTEN)?;
    out.extend(dump(libc::AF_INET6 as u8, libc::IPPROTO_TCP as u8, 1 << TCP_LISTEN)?);
    Ok(out)
}

/// UDP sockets that are bound and not connected: they take datagrams from
/// anyone (the kernel files them under TCP_CLOSE).
pub fn udp_receivers() -> io::Result<Vec<Bound>> {
    let states = 1 << TCP_ESTABLISHED_CLOSE;
    let mut out = dump(libc::AF_INET as u8, libc::IPPROTO_UDP as u8, states)?;
    out.extend(dump(libc::AF_INET6 as u8, libc::IPPROTO_UDP as u8, states)?);
    Ok(out)
}

fn dump(family: u8, protocol: u8, states: u32) -> io::Result<Vec<Bound>> {
    // SAFETY: socket takes no pointers; the fd is owned from here on.
    let fd = unsafe {
        libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_SOCK_DIAG)
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = [0u8; NLMSG_HDR + REQ_LEN];
    let len = req.len() as u32;
    req[0..4].copy_from_slice(&len.to_ne_bytes());
    req[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    req[6..8].copy_from_slice(&flags.to_ne_bytes());
    req[8..12].copy_from_slice(&1u32.to_ne_bytes());
    req[16] = family;
    req[17] = protocol;
    req[20..24].copy_from_slice(&states.to_ne_bytes());
    // SAFETY: sends `req`, a valid buffer of its length, to the kernel
    // (a netlink socket without an address sends to the kernel).
    if unsafe { libc::send(fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: receives into `buf`, which is writable for its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut msgs = &buf[..n as usize];
        while msgs.len() >= NLMSG_HDR {
            let mlen = u32::from_ne_bytes(msgs[0..4].try_into().expect("4 bytes")) as usize;
            let mtype = u16::from_ne_bytes(msgs[4..6].try_into().expect("2 bytes"));
            if mlen < NLMSG_HDR || mlen > msgs.len() {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "short sock_diag message"));
            }
            match mtype as i32 {
                libc::NLMSG_DONE => return Ok(out),
                libc::NLMSG_ERROR => {
                    let code = i32::from_ne_bytes(msgs[16..20].try_into().expect("4 bytes"));
                    return Err(io::Error::from_raw_os_error(-code));
                }
                _ => {
                    if let Some(b) = parse(&msgs[NLMSG_HDR..mlen]) {
                        out.push(b);
                    }
                }
            }
            // Messages are 4-byte aligned.
            msgs = msgs.get((mlen + 3) & !3..).unwrap_or_default();
        }
    }
}

/// struct inet_diag_msg: family, state, timer, retrans, then the socket id
/// (sport, dport big-endian; src, dst as four 32-bit words).
fn parse(m: &[u8]) -> Option<Bound> {
    let port = u16::from_be_bytes(m.get(4..6)?.try_into().ok()?);
    let src = m.get(8..24)?;
    let addr = match i32::from(*m.first()?) {
        libc::AF_INET => IpAddr::V4(Ipv4Addr::new(src[0], src[1], src[2], src[3])),
        libc::AF_INET6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(src).ok()?)),
        _ => return None,
    };
    Some(Bound { addr, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In a namespace of its own (root), so that no socket of the machine's
    /// is seen or touched.
    #[test]
    fn finds_listeners_and_udp_receivers() {
        std::thread::spawn(|| {
            // SAFETY: unshare takes no pointers; it moves this thread only.
            let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(
                rc,
                0,
                "unshare(CLONE_NEWNET): {} (run as root)",
                std::io::Error::last_os_error()
            );
            // A child forked from this thread starts in its namespace.
            let up = std::process::Command::new("ip").args(["link", "set", "lo", "up"]).status();
            assert!(up.unwrap().success());
            let l4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let l6 = std::net::TcpListener::bind("[::1]:0").unwrap();
            let u = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
            let connected = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            connected.connect(u.local_addr().unwrap()).unwrap();
            let tcp = tcp_listeners().unwrap();
            let b = |a: std::net::SocketAddr| Bound { addr: a.ip(), port: a.port() };
            assert!(tcp.contains(&b(l4.local_addr().unwrap())), "{tcp:?}");
            assert!(tcp.contains(&b(l6.local_addr().unwrap())), "{tcp:?}");
            assert_eq!(tcp.len(), 2);
            let udp = udp_receivers().unwrap();
            assert_eq!(udp, [b(u.local_addr().unwrap())]);
        })
        .join()
        .unwrap();
    }
}
