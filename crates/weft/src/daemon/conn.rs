//! One client connection as the daemon sees it: lines in (the request,
//! then the go-ahead), each with a size limit and a deadline, and replies
//! out. A client never holds the daemon longer than its deadline, and a
//! worker thread never waits for a slow one (it hands it on instead).

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use super::Reply;

/// The longest line a client may send: a command line or a CNI
/// configuration takes a few KiB.
pub const MAX_LINE: usize = 256 * 1024;
/// How long a client has for each line (its request, then its go-ahead).
pub const LINE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a reply may take to write (a client that does not read).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Conn {
    pub stream: UnixStream,
    /// Read but not yet taken as a line.
    buf: Vec<u8>,
    deadline: Instant,
}

pub enum Got {
    Line(Vec<u8>),
    /// Nothing complete within the patience given; try again later.
    Slow,
    /// The client left, sent too much or took too long: done with it.
    Failed(&'static str),
}

impl Conn {
    pub fn new(stream: UnixStream) -> Conn {
        let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
        Conn { stream, buf: Vec::new(), deadline: Instant::now() + LINE_TIMEOUT }
    }

    /// The next line, waiting at most `patience` (never past the line's
    /// deadline). The deadline of the line after it starts then.
    pub fn line(&mut self, patience: Duration) -> Got {
        let until = (Instant::now() + patience).min(self.deadline);
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let rest = self.buf.split_off(end + 1);
                let mut line = std::mem::replace(&mut self.buf, rest);
                line.pop();
                self.deadline = Instant::now() + LINE_TIMEOUT;
                return Got::Line(line);
            }
            if self.buf.len() > MAX_LINE {
                return Got::Failed("the request is too large");
            }
            let now = Instant::now();
            if now >= self.deadline {
                return Got::Failed("the client sent nothing in time");
            }
            if now >= until {
                return Got::Slow;
            }
            if self.stream.set_read_timeout(Some(until - now)).is_err() {
                return Got::Failed("unreadable request");
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Got::Failed("the client left"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(_) => return Got::Failed("unreadable request"),
            }
        }
    }

    /// Sends one reply line; false if the client cannot be reached.
    pub fn send(&mut self, reply: &Reply) -> bool {
        let Ok(mut body) = serde_json::to_vec(reply) else {
            return false;
        };
        body.push(b'\n');
        self.stream.write_all(&body).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Conn, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        (Conn::new(a), b)
    }

    #[test]
    fn lines_one_at_a_time() {
        let (mut c, mut peer) = pair();
        peer.write_all(b"{\"a\":1}\ngo\nrest").unwrap();
        assert!(matches!(c.line(Duration::from_millis(50)), Got::Line(l) if l == b"{\"a\":1}"));
        assert!(matches!(c.line(Duration::from_millis(50)), Got::Line(l) if l == b"go"));
        assert!(matches!(c.line(Duration::from_millis(20)), Got::Slow), "no newline yet");
        peer.write_all(b"\n").unwrap();
        assert!(matches!(c.line(Duration::from_millis(50)), Got::Line(l) if l == b"rest"));
        drop(peer);
        assert!(matches!(c.line(Duration::from_millis(50)), Got::Failed("the client left")));
    }

    #[test]
    fn too_large_and_too_slow() {
        let (mut c, mut peer) = pair();
        let writer = std::thread::spawn(move || {
            let chunk = vec![b' '; 64 * 1024];
            while peer.write_all(&chunk).is_ok() {}
        });
        let got = c.line(LINE_TIMEOUT);
        assert!(matches!(got, Got::Failed("the request is too large")));
        drop(c);
        writer.join().unwrap();

        let (mut c, _peer) = pair();
        c.deadline = Instant::now() + Duration::from_millis(30);
        assert!(matches!(c.line(LINE_TIMEOUT), Got::Failed("the client sent nothing in time")));
    }
}
