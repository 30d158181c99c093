//! Published-port map elements written straight to nf_tables over netlink:
//! one batch (one transaction), no libnftables. Through nft, adding one
//! element cost loading libnftables and its libraries into the process and
//! reading the target maps with all their elements first (nft's overlap
//! check), which made `attach -p` 2.4 ms slower and grow with every port
//! published. The kernel checks overlaps itself and refuses the whole batch.
//!
//! Key layout of the maps (`daddr . l4proto . dport`, interval, concat):
//! each field in a 4-byte-aligned slot, big endian, the address first;
//! `KEY` holds each field's first value and `KEY_END` its last, so
//! `0.0.0.0/0` is 0.0.0.0 .. 255.255.255.255 and a port range first .. last.

use std::io;
use std::net::IpAddr;

use crate::publish::{Entry, Value};

const NETLINK_NETFILTER: i32 = 12;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFPROTO_INET: u8 = 1;

const NFTA_TABLE_NAME: u16 = 1;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_SET_ELEM_KEY_END: u16 = 10;
const NFTA_DATA_VALUE: u16 = 1;
const NLA_F_NESTED: u16 = 1 << 15;

const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 2;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Add,
    Delete,
}

/// Adds or deletes `entries` in table `inet <table>`, all or nothing.
pub(crate) fn apply(table: &str, entries: &[Entry], op: Op) -> io::Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let (kind, flags) = match op {
        Op::Add => (NFT_MSG_NEWSETELEM, NLM_F_CREATE),
        Op::Delete => (NFT_MSG_DELSETELEM, 0),
    };
    let mut batch = Vec::new();
    let mut seq = 1u32;
    push_msg(&mut batch, NFNL_MSG_BATCH_BEGIN, 0, seq, 0, NFNL_SUBSYS_NFTABLES, |_| {});
    let mut acked = Vec::new();
    for group in entries.chunk_by(|a, b| a.map == b.map) {
        seq += 1;
        acked.push(seq);
        let msg_type = (NFNL_SUBSYS_NFTABLES << 8) | kind;
        push_msg(&mut batch, msg_type, NLM_F_ACK | flags, seq, NFPROTO_INET, 0, |b| {
            attr_str(b, NFTA_SET_ELEM_LIST_TABLE, table);
            attr_str(b, NFTA_SET_ELEM_LIST_SET, group[0].map);
            nested(b, NFTA_SET_ELEM_LIST_ELEMENTS, |b| {
                for e in group {
                    nested(b, NFTA_LIST_ELEM, |b| element(b, e, op));
                }
            });
        });
    }
    seq += 1;
    push_msg(&mut batch, NFNL_MSG_BATCH_END, 0, seq, 0, NFNL_SUBSYS_NFTABLES, |_| {});
    let sock = Socket::open()?;
    sock.send(&batch)?;
    sock.await_acks(&acked)
}

/// Whether table `inet <table>` exists: one GETTABLE request, answered
/// with the table or ENOENT (microseconds, no listing of its contents).
pub(crate) fn table_exists(table: &str) -> io::Result<bool> {
    let mut msg = Vec::new();
    let msg_type = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE;
    push_msg(&mut msg, msg_type, NLM_F_ACK, 1, NFPROTO_INET, 0, |b| {
        attr_str(b, NFTA_TABLE_NAME, table);
    });
    let sock = Socket::open()?;
    sock.send(&msg)?;
    let mut buf = vec![0u8; 16384];
    // SAFETY: buf is valid for its length.
    let n = unsafe { libc::recv(sock.fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let msg = &buf[..n as usize];
    if msg.len() < 16 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "short nf_tables answer"));
    }
    let kind = u16::from_ne_bytes(msg[4..6].try_into().expect("2 bytes"));
    if kind == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE {
        return Ok(true);
    }
    if kind == NLMSG_ERROR && msg.len() >= 20 {
        return match -i32::from_ne_bytes(msg[16..20].try_into().expect("4 bytes")) {
            libc::ENOENT => Ok(false),
            0 => Ok(true),
            code => Err(io::Error::from_raw_os_error(code)),
        };
    }
    Err(io::Error::new(io::ErrorKind::InvalidData, format!("unexpected nf_tables answer {kind}")))
}

/// One element: key, key end and, when adding, the value it maps to.
fn element(b: &mut Vec<u8>, e: &Entry, op: Op) {
    let (first, last) = key(e);
    nested(b, NFTA_SET_ELEM_KEY, |b| attr(b, NFTA_DATA_VALUE, &first));
    nested(b, NFTA_SET_ELEM_KEY_END, |b| attr(b, NFTA_DATA_VALUE, &last));
    if op == Op::Add {
        let data = match e.value {
            Value::Addr(IpAddr::V4(a)) => a.octets().to_vec(),
            Value::Addr(IpAddr::V6(a)) => a.octets().to_vec(),
            Value::Port(p) => p.to_be_bytes().to_vec(),
        };
        nested(b, NFTA_SET_ELEM_DATA, |b| attr(b, NFTA_DATA_VALUE, &data));
    }
}

/// First and last key of an element, each field in a 4-byte slot.
fn key(e: &Entry) -> (Vec<u8>, Vec<u8>) {
    let (lo, hi): (Vec<u8>, Vec<u8>) = match (e.host, e.v6) {
        (Some(IpAddr::V4(a)), _) => (a.octets().to_vec(), a.octets().to_vec()),
        (Some(IpAddr::V6(a)), _) => (a.octets().to_vec(), a.octets().to_vec()),
        (None, false) => (vec![0; 4], vec![0xff; 4]),
        (None, true) => (vec![0; 16], vec![0xff; 16]),
    };
    let proto = [proto_number(e.proto), 0, 0, 0];
    let port = |p: u16| {
        let [a, b] = p.to_be_bytes();
        [a, b, 0, 0]
    };
    let first = [lo.as_slice(), &proto, &port(e.ports.0)].concat();
    let last = [hi.as_slice(), &proto, &port(e.ports.1)].concat();
    (first, last)
}

fn proto_number(p: weft_model::Proto) -> u8 {
    match p {
        weft_model::Proto::Tcp => libc::IPPROTO_TCP as u8,
        weft_model::Proto::Udp => libc::IPPROTO_UDP as u8,
        weft_model::Proto::Sctp => libc::IPPROTO_SCTP as u8,
    }
}

/// Appends a netlink message with an nfgenmsg header; `body` writes the
/// attributes.
fn push_msg(
    b: &mut Vec<u8>,
    msg_type: u16,
    flags: u16,
    seq: u32,
    family: u8,
    res_id: u16,
    body: impl FnOnce(&mut Vec<u8>),
) {
    let start = b.len();
    b.extend_from_slice(&[0; 4]); // length, filled in below
    b.extend_from_slice(&msg_type.to_ne_bytes());
    b.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    b.extend_from_slice(&[family, 0]);
    b.extend_from_slice(&res_id.to_be_bytes());
    body(b);
    let len = (b.len() - start) as u32;
    b[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

fn attr(b: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = 4 + value.len();
    b.extend_from_slice(&(len as u16).to_ne_bytes());
    b.extend_from_slice(&kind.to_ne_bytes());
    b.extend_from_slice(value);
    b.resize(b.len() + (4 - len % 4) % 4, 0);
}

fn attr_str(b: &mut Vec<u8>, kind: u16, s: &str) {
    attr(b, kind, &[s.as_bytes(), &[0]].concat());
}

fn nested(b: &mut Vec<u8>, kind: u16, body: impl FnOnce(&mut Vec<u8>)) {
    let start = b.len();
    b.extend_from_slice(&[0; 2]);
    b.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
    body(b);
    let len = (b.len() - start) as u16;
    b[start..start + 2].copy_from_slice(&len.to_ne_bytes());
}

/// A NETLINK_NETFILTER socket of the calling thread's namespace.
struct Socket(std::os::fd::OwnedFd);

impl Socket {
    fn open() -> io::Result<Socket> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain socket(2); the fd is owned from here on.
        let fd = unsafe {
            libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, NETLINK_NETFILTER)
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by socket(2) and is not owned elsewhere.
        let sock = Socket(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) });
        // Never hang on a kernel that does not answer: a batch is acked
        // in microseconds.
        let tv = libc::timeval { tv_sec: 2, tv_usec: 0 };
        // SAFETY: a valid timeval for SO_RCVTIMEO on our own socket.
        unsafe {
            libc::setsockopt(
                sock.fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            );
        }
        Ok(sock)
    }

    fn fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.0.as_raw_fd()
    }

    fn send(&self, batch: &[u8]) -> io::Result<()> {
        // SAFETY: a zeroed sockaddr_nl is the kernel's address (pid 0).
        let mut to: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        to.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: batch and `to` are valid for the lengths given.
        let n = unsafe {
            libc::sendto(
                self.fd(),
                batch.as_ptr().cast(),
                batch.len(),
                0,
                (&to as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits for the kernel's answer to every message in `seqs`; the first
    /// error wins (the kernel has then rolled the whole batch back).
    fn await_acks(&self, seqs: &[u32]) -> io::Result<()> {
        let mut pending: Vec<u32> = seqs.to_vec();
        let mut buf = vec![0u8; 16384];
        while !pending.is_empty() {
            // SAFETY: buf is valid for its length.
            let n = unsafe { libc::recv(self.fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut msg = &buf[..n as usize];
            while msg.len() >= 16 {
                let len = u32::from_ne_bytes(msg[0..4].try_into().unwrap()) as usize;
                let kind = u16::from_ne_bytes(msg[4..6].try_into().unwrap());
                let seq = u32::from_ne_bytes(msg[8..12].try_into().unwrap());
                if len < 16 || len > msg.len() {
                    break;
                }
                if kind == NLMSG_ERROR && len >= 20 {
                    let code = i32::from_ne_bytes(msg[16..20].try_into().unwrap());
                    if code != 0 {
                        return Err(io::Error::from_raw_os_error(-code));
                    }
                    pending.retain(|s| *s != seq);
                }
                msg = &msg[(len + 3) & !3..];
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_model::Proto;

    fn entry(host: Option<&str>, v6: bool, ports: (u16, u16)) -> Entry {
        Entry {
            map: "publish4",
            v6,
            host: host.map(|h| h.parse().unwrap()),
            proto: Proto::Udp,
            ports,
            value: Value::Port(80),
        }
    }

    #[test]
    fn keys_are_aligned_fields_first_and_last() {
        let (first, last) = key(&entry(None, false, (9000, 9009)));
        assert_eq!(first, [0, 0, 0, 0, 17, 0, 0, 0, 0x23, 0x28, 0, 0]);
        assert_eq!(last, [255, 255, 255, 255, 17, 0, 0, 0, 0x23, 0x31, 0, 0]);
        let (first, last) = key(&entry(Some("127.0.0.1"), false, (53, 53)));
        assert_eq!(first, last);
        assert_eq!(first, [127, 0, 0, 1, 17, 0, 0, 0, 0, 53, 0, 0]);
        let (first, last) = key(&entry(None, true, (1, 1)));
        assert_eq!((first.len(), last.len()), (24, 24));
        assert_eq!(&last[..16], &[0xff; 16]);
    }

    #[test]
    fn attributes_are_padded_and_nested_lengths_cover_them() {
        let mut b = Vec::new();
        nested(&mut b, 3, |b| attr_str(b, 1, "weft"));
        // nested header 4 + attr header 4 + "weft\0" 5 + 3 padding.
        assert_eq!(b.len(), 16);
        assert_eq!(u16::from_ne_bytes([b[0], b[1]]), 16);
        assert_eq!(u16::from_ne_bytes([b[4], b[5]]), 9);
    }
}
