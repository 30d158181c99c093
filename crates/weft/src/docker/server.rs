//! The plugin's HTTP/1.1 over a unix socket: just what Docker's plugin
//! client sends (POST, a JSON body with Content-Length, keep-alive). A
//! hand-written handler rather than an HTTP crate: a server for one local
//! client and a dozen fixed routes needs none of the rest.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What a route answers.
pub enum Reply {
    /// 200 with this JSON body.
    Json(Vec<u8>),
    /// A method weft does not implement: 404, so Docker treats it as
    /// optional (libnetwork's protocol rule).
    NotFound,
}

pub type Handler = dyn Fn(&str, &[u8]) -> Reply + Send + Sync;

/// Larger requests are refused: Docker's are a few hundred bytes.
const MAX_HEAD: usize = 16 * 1024;
const MAX_BODY: usize = 1024 * 1024;
/// An idle keep-alive connection is closed after this; Docker reconnects.
const IDLE: Duration = Duration::from_secs(120);
/// Connections served at once (a thread each); dockerd keeps a few.
const MAX_CONNECTIONS: usize = 64;
static OPEN: AtomicUsize = AtomicUsize::new(0);

/// One counted connection, uncounted when its thread ends (also by a panic).
struct Open;

impl Drop for Open {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves every connection on its own thread, until the listener fails.
pub fn serve(listener: &UnixListener, handler: Arc<Handler>) {
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                // The socket is root's (0600); this also holds if someone
                // loosens its mode.
                // SAFETY: geteuid cannot fail.
                let me = unsafe { libc::geteuid() };
                if crate::daemon::server::peer_uid(&stream) != Some(me) {
                    tracing::warn!("refused a plugin connection from another user");
                    continue;
                }
                if OPEN.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                    OPEN.fetch_sub(1, Ordering::SeqCst);
                    let mut s = stream;
                    let _ = respond(&mut s, "503 Service Unavailable", "text/plain", b"busy", true);
                    continue;
                }
                let handler = Arc::clone(&handler);
                std::thread::spawn(move || {
                    let _open = Open;
                    if let Err(e) = connection(stream, &*handler) {
                        tracing::debug!("plugin connection: {e}");
                    }
                });
            }
            Err(e) => {
                tracing::warn!("accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn connection(stream: UnixStream, handler: &Handler) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IDLE))?;
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let request = match read_request(&mut reader)? {
            Some(Ok(r)) => r,
            Some(Err((status, why))) => {
                respond(&mut out, status, "text/plain", why.as_bytes(), true)?;
                return Ok(());
            }
            None => return Ok(()),
        };
        let (status, body) = if request.method != "POST" {
            ("405 Method Not Allowed", b"POST only".to_vec())
        } else {
            match handler(request.path.trim_start_matches('/'), &request.body) {
                Reply::Json(b) => ("200 OK", b),
                Reply::NotFound => ("404 Not Found", b"{\"Err\":\"not implemented\"}".to_vec()),
            }
        };
        respond(&mut out, status, CONTENT_TYPE, &body, request.close)?;
        if request.close {
            return Ok(());
        }
    }
}

const CONTENT_TYPE: &str = "application/vnd.docker.plugins.v1+json";

struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
    close: bool,
}

type Bad = (&'static str, String);

/// One request; None at a clean end of the connection.
fn read_request(r: &mut impl BufRead) -> std::io::Result<Option<Result<Request, Bad>>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Ok(Some(Err(("400 Bad Request", "bad request line".into()))));
    };
    let (method, path) = (method.to_string(), path.to_string());
    let mut close = version == "HTTP/1.0";
    let mut length = 0usize;
    let mut head = line.len();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            return Ok(None);
        }
        head += h.len();
        if head > MAX_HEAD {
            return Ok(Some(Err((
                "431 Request Header Fields Too Large",
                "header too long".into(),
            ))));
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let Some((name, value)) = h.split_once(':') else {
            return Ok(Some(Err(("400 Bad Request", "bad header".into()))));
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => match value.parse() {
                Ok(n) if n <= MAX_BODY => length = n,
                _ => return Ok(Some(Err(("413 Payload Too Large", "bad Content-Length".into())))),
            },
            "transfer-encoding" => {
                return Ok(Some(Err((
                    "411 Length Required",
                    "chunked bodies are not supported".into(),
                ))))
            }
            "connection" => close = value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body)?;
    Ok(Some(Ok(Request { method, path, body, close })))
}

fn respond(
    w: &mut impl Write,
    status: &str,
    content_type: &str,
    body: &[u8],
    close: bool,
) -> std::io::Result<()> {
    let mut msg = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{}\r\n",
        body.len(),
        if close { "Connection: close\r\n" } else { "" }
    )
    .into_bytes();
    msg.extend_from_slice(body);
    w.write_all(&msg)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Option<Result<Request, Bad>> {
        read_request(&mut BufReader::new(raw.as_bytes())).expect("read")
    }

    #[test]
    fn reads_a_post_with_its_body() {
        let r = parse("POST /Plugin.Activate HTTP/1.1\r\nHost: \r\nContent-Length: 2\r\n\r\n{}")
            .expect("one request")
            .map_err(|e| e.1)
            .expect("valid");
        assert_eq!(
            (r.method.as_str(), r.path.as_str(), &r.body[..]),
            ("POST", "/Plugin.Activate", &b"{}"[..])
        );
        assert!(!r.close);
    }

    #[test]
    fn refuses_chunked_and_huge_bodies() {
        let chunked = parse("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(matches!(chunked, Some(Err(("411 Length Required", _)))));
        let huge = parse("POST /x HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n");
        assert!(matches!(huge, Some(Err(("413 Payload Too Large", _)))));
    }

    #[test]
    fn end_of_stream_is_no_request() {
        assert!(parse("").is_none());
    }
}
