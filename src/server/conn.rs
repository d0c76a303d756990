//! One client connection: `hello` (within a short deadline), then requests one at a time until
//! the client leaves, the connection idles out, or the server stops.

use std::io::{self, BufReader, Read};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use super::pin_limit::PinVerdict;
use super::reply::{self, Who, encode_ok, reply_error, send_all};
use super::send::{self, GetEnd};
use super::stop_aware::StopAware;
use super::{ClientId, Root, ServerEvent, Shared, Slot};
use crate::protocol::VERSION;
use crate::protocol::frame::{self, FrameError, MAX_REQUEST_LEN};
use crate::protocol::message::{Ack, ErrorCode, ErrorReply, HelloReply, ListReply, Request, parse_request};
use crate::protocol::path::Escaped;

/// The name this server gives in `hello`.
pub const SERVER_NAME: &str = concat!("ferry/", env!("CARGO_PKG_VERSION"));

/// At most this many turned-away connections are lingered over at once; more are answered
/// without waiting and closed.
const MAX_REJECTING: usize = 8;

/// Answers a client that gets no slot with `busy` at once, then closes. The answer is written
/// before the client's `hello` is read (it needs no slot, and a silent client gets it too);
/// a short-lived thread then drains what the client sends, so closing does not reset the
/// connection under the answer. The accept loop never waits for any of it.
pub(super) fn turn_away(shared: &Arc<Shared>, mut stream: TcpStream, peer: SocketAddr, message: String) {
    let reply = ErrorReply::new(ErrorCode::Busy, message);
    shared.sink.send(ServerEvent::ClientRejected { peer, reason: reply.message.clone() });
    let _ = stream.set_nodelay(true);
    if shared.rejecting.fetch_add(1, Ordering::SeqCst) >= MAX_REJECTING {
        shared.rejecting.fetch_sub(1, Ordering::SeqCst);
        // No thread to spare: a small answer into an empty socket buffer, then close.
        let _ = stream.set_nonblocking(true);
        let _ = reply_error(&mut stream, &mut Vec::new(), &reply);
        let _ = stream.shutdown(Shutdown::Write);
        return;
    }
    let shared2 = shared.clone();
    let spawned = thread::Builder::new().name("ferry-busy".into()).spawn(move || {
        let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
        let _ = reply_error(&mut stream, &mut Vec::new(), &reply);
        linger_close(stream);
        shared2.rejecting.fetch_sub(1, Ordering::SeqCst);
    });
    if spawned.is_err() {
        shared.rejecting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Closes gracefully: no more writes, then drain briefly so unread input does not turn the
/// close into a reset that could destroy the last reply before the peer reads it.
fn linger_close(mut stream: TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut sink = [0u8; 4096];
    for _ in 0..16 {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

/// How a connection ends, whatever ends it (a panic included): its slot is freed first, then,
/// if it was ever reported as connected, exactly one `ClientDisconnected` is sent.
struct ConnEnd {
    slot: Option<Slot>,
    peer: SocketAddr,
    greeted: bool,
    reason: Option<String>,
}

impl Drop for ConnEnd {
    fn drop(&mut self) {
        let Some(slot) = self.slot.take() else { return };
        let (shared, client) = (slot.shared.clone(), slot.client);
        drop(slot);
        if self.greeted {
            let reason = if thread::panicking() {
                Some("internal error: the connection's thread panicked".to_string())
            } else {
                self.reason.take()
            };
            shared.sink.send(ServerEvent::ClientDisconnected { client, peer: self.peer, reason });
        }
    }
}

/// Serves one connection to its end, then frees its slot and reports why it ended.
pub(super) fn serve_connection(slot: Slot, root: &Root, stream: TcpStream, peer: SocketAddr) {
    let (shared, client) = (slot.shared.clone(), slot.client);
    let mut end = ConnEnd { slot: Some(slot), peer, greeted: false, reason: None };
    end.reason = serve(&shared, root, stream, client, peer, &mut end.greeted);
}

fn describe_read_error(e: &FrameError, idle: Duration) -> String {
    match e {
        FrameError::Io(io) if is_timeout(io) => format!("idle for {} s, closed", idle.as_secs()),
        other => other.to_string(),
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

/// Reads from a socket until a fixed instant, however the bytes trickle in: a client cannot
/// keep a connection in `hello` by sending one byte at a time.
struct Deadline<'a> {
    stream: &'a TcpStream,
    until: Instant,
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        let mut stream = self.stream;
        stream.read(buf)
    }
}

fn serve(
    shared: &Shared,
    root: &Root,
    mut stream: TcpStream,
    client: ClientId,
    peer: SocketAddr,
    greeted: &mut bool,
) -> Option<String> {
    let config = &shared.config;
    let idle = config.idle_timeout;
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(config.hello_timeout.min(idle)));
    let mut out = Vec::with_capacity(4096);
    let mut buf: Vec<u8> = Vec::new();
    let greeting_instance: Option<String>;
    let reject = |stream: &mut TcpStream, out: &mut Vec<u8>, e: ErrorReply| {
        let _ = reply_error(stream, out, &e);
        shared.sink.send(ServerEvent::ClientRejected { peer, reason: e.message.clone() });
    };

    // 1. hello, complete within the hello deadline. Read straight from the socket (frames are
    // read exactly), so nothing the client sends after it is lost.
    let until = Instant::now() + config.hello_timeout;
    let payload = match frame::read_frame(&mut Deadline { stream: &stream, until }, MAX_REQUEST_LEN) {
        Ok(p) => p,
        Err(e @ FrameError::TooLarge { .. }) => {
            reject(&mut stream, &mut out, ErrorReply::new(ErrorCode::TooLarge, e.to_string()));
            return None;
        }
        Err(FrameError::Io(e)) if is_timeout(&e) && !shared.is_stopping() => {
            let secs = config.hello_timeout.as_secs_f64();
            shared.sink.send(ServerEvent::ClientRejected { peer, reason: format!("sent no hello within {secs} s") });
            return None;
        }
        Err(_) => return None,
    };
    match parse_request(&payload) {
        Ok(Request::Hello { version, pin, instance, .. }) => {
            greeting_instance = instance.filter(|i| i.len() <= 64).map(|i| Escaped(&i).to_string());
            if version != VERSION {
                let msg = format!("this server speaks protocol version {VERSION}, not {version}");
                reject(&mut stream, &mut out, ErrorReply::new(ErrorCode::UnsupportedVersion, msg));
                return None;
            }
            if let Some(expected) = &config.pin {
                let msg = match shared.pins.check(peer.ip(), expected, pin.as_ref(), Instant::now()) {
                    PinVerdict::Accepted => None,
                    PinVerdict::Wrong if pin.is_none() => Some("this server needs a PIN".to_string()),
                    PinVerdict::Wrong => Some("wrong PIN".to_string()),
                    PinVerdict::TooMany { retry_in } => Some(format!(
                        "too many wrong PINs just now; try again in {} s",
                        retry_in.as_secs_f64().ceil().max(1.0)
                    )),
                };
                if let Some(msg) = msg {
                    reject(&mut stream, &mut out, ErrorReply::new(ErrorCode::Unauthorized, msg));
                    return None;
                }
            }
            let hello = HelloReply { version: VERSION, server: SERVER_NAME.into(), name: root.name() };
            encode_ok(&mut out, &hello);
            if send_all(&mut stream, &out).is_err() {
                return None;
            }
        }
        Ok(_) => {
            reject(&mut stream, &mut out, ErrorReply::new(ErrorCode::BadRequest, "the first request must be hello"));
            return None;
        }
        Err(e) => {
            reject(&mut stream, &mut out, e);
            return None;
        }
    }
    let _ = stream.set_write_timeout(Some(idle));
    let Ok(read_half) = stream.try_clone().and_then(|s| StopAware::new(s, shared, idle)) else {
        return Some("cannot clone the socket".into());
    };
    let mut reader = BufReader::with_capacity(64 * 1024, read_half);
    // If the front is too far behind to hear of this connection, it is not told of its end.
    *greeted = shared.sink.offer(ServerEvent::ClientConnected { client, peer, instance: greeting_instance });

    // 2. requests, one at a time
    loop {
        let payload = match frame::read_frame(&mut reader, MAX_REQUEST_LEN) {
            Ok(p) => p,
            Err(FrameError::Closed) => return None,
            Err(e @ FrameError::TooLarge { .. }) => {
                let _ = reply_error(&mut stream, &mut out, &ErrorReply::new(ErrorCode::TooLarge, e.to_string()));
                return Some(e.to_string());
            }
            Err(e) => {
                if shared.is_stopping() {
                    return Some("server stopped".into());
                }
                return Some(describe_read_error(&e, idle));
            }
        };
        if shared.is_stopping() {
            return Some("server stopped".into());
        }
        let refuse = |stream: &mut TcpStream, out: &mut Vec<u8>, request: String, e: ErrorReply| {
            reply::refuse(shared, stream, out, Who { client, peer }, request, &e)
        };
        let sent = match parse_request(&payload) {
            Err(e) => refuse(&mut stream, &mut out, "?".into(), e),
            Ok(Request::Hello { .. }) => refuse(
                &mut stream,
                &mut out,
                "hello".into(),
                ErrorReply::new(ErrorCode::BadRequest, "hello was already received on this connection"),
            ),
            Ok(Request::Put { path, .. }) => refuse(
                &mut stream,
                &mut out,
                format!("put {}", Escaped(&path)),
                ErrorReply::new(ErrorCode::ReadOnly, "this server does not accept uploads"),
            ),
            Ok(Request::List { path }) => match root.list(&path) {
                Ok(entries) => {
                    encode_ok(&mut out, &ListReply { path, entries });
                    send_all(&mut stream, &out)
                }
                Err(e) => refuse(&mut stream, &mut out, format!("list {}", Escaped(&path)), e.to_reply()),
            },
            Ok(Request::Verdict { path, md5, ok }) => {
                shared.sink.send(ServerEvent::TransferConfirmed { client, path, md5, ok });
                encode_ok(&mut out, &Ack {});
                send_all(&mut stream, &out)
            }
            Ok(Request::Get { path, offset }) => {
                let req = send::GetRequest { client, peer, path: &path, offset };
                match send::handle_get(shared, root, &mut stream, &mut out, &mut buf, req) {
                    GetEnd::Continue => Ok(()),
                    GetEnd::Close(reason) => return Some(reason),
                }
            }
        };
        if let Err(e) = sent {
            return Some(format!("cannot answer: {e}"));
        }
    }
}
