//! A small synchronous rtnetlink client. Synchronous on purpose: weft's
//! commands are short-lived, and a blocking socket per namespace keeps an
//! attach to a few system calls without an async runtime.

use std::io;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

pub struct Netlink {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

const RECV_BUF: usize = 64 * 1024;

impl Netlink {
    /// Opens a socket in the calling thread's network namespace; it stays
    /// bound to that namespace for its whole life.
    pub fn new() -> io::Result<Netlink> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        // Extended acks make the kernel explain EINVAL and friends.
        let _ = socket.set_ext_ack(true);
        let _ = socket.set_netlink_get_strict_chk(true);
        Ok(Netlink { socket, seq: 0, buf: Vec::with_capacity(RECV_BUF) })
    }

    /// Sends one request and waits for its ACK (or error).
    pub fn exec(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        self.send(msg, NLM_F_REQUEST | NLM_F_ACK | flags)?;
        self.collect(false).map(|_| ())
    }

    /// Sends a dump request and returns every answer.
    pub fn dump(&mut self, msg: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.send(msg, NLM_F_REQUEST | NLM_F_DUMP)?;
        self.collect(true)
    }

    /// Sends a get request for one object and returns the answer(s).
    pub fn get(&mut self, msg: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.send(msg, NLM_F_REQUEST)?;
        self.collect(false)
    }

    fn send(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut bytes = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut bytes);
        self.socket.send(&bytes, 0)?;
        Ok(())
    }

    /// Reads answers to the last request until its ACK, error or Done.
    /// A get without ACK ends after the first datagram that holds an answer.
    fn collect(&mut self, dump: bool) -> io::Result<Vec<RouteNetlinkMessage>> {
        let mut out = Vec::new();
        loop {
            self.buf.clear();
            self.buf.reserve(RECV_BUF);
            self.socket.recv(&mut self.buf, 0)?;
            let mut off = 0;
            let mut finished = false;
            while off < self.buf.len() {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[off..])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = msg.header.length as usize;
                if len == 0 {
                    break;
                }
                off += (len + 3) & !3;
                if msg.header.sequence_number != self.seq {
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::InnerMessage(m) => {
                        out.push(m);
                        if !dump && msg.header.flags & netlink_packet_core::NLM_F_MULTIPART == 0 {
                            finished = true;
                        }
                    }
                    NetlinkPayload::Error(e) => {
                        if let Some(code) = e.code {
                            return Err(io::Error::from_raw_os_error(-code.get()));
                        }
                        finished = true;
                    }
                    NetlinkPayload::Done(_) => finished = true,
                    _ => {}
                }
            }
            if finished {
                return Ok(out);
            }
        }
    }
}
