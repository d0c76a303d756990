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
use super::{ClientId, Root, ServerEvent, Shared, Slot, pin_exchange, upload};
use crate::protocol::frame::{self, FrameError, MAX_REQUEST_LEN};
use crate::protocol::message::{Ack, ErrorCode, ErrorReply, HelloReply, ListReply, Request, parse_request};
use crate::protocol::path::Escaped;
use crate::protocol::{PLAIN_VERSION, VERSION};
use crate::transport::{self, Stream};

/// The name this server gives in `hello`.
pub const SERVER_NAME: &str = concat!("ferry/", env!("CARGO_PKG_VERSION"));

/// At most this many turned-away connections are lingered over at once; more are answered
/// without waiting and closed.
const MAX_REJECTING: usize = 8;

/// How long a turned-away encrypted client has for its TLS handshake.
const TURN_AWAY_HANDSHAKE: Duration = Duration::from_secs(2);

/// Answers a client that gets no slot with `busy` at once, then closes. On a plain host the
/// answer is written before the client's `hello` is read (it needs no slot, and a silent client
/// gets it too); an encrypted client first gets the TLS handshake (bounded), so it can read the
/// answer. A short-lived thread then drains what the client sends, so closing does not reset
/// the connection under the answer. The accept loop never waits for any of it.
pub(super) fn turn_away(shared: &Arc<Shared>, stream: TcpStream, peer: SocketAddr, message: String) {
    let reply = ErrorReply::new(ErrorCode::Busy, message);
    shared.sink.send(ServerEvent::ClientRejected { peer, reason: reply.message.clone() });
    let _ = stream.set_nodelay(true);
    if shared.rejecting.fetch_add(1, Ordering::SeqCst) >= MAX_REJECTING {
        shared.rejecting.fetch_sub(1, Ordering::SeqCst);
        if shared.tls.get().is_none() {
            // No thread to spare: a small answer into an empty socket buffer, then close. (An
            // encrypted client cannot read an answer before its handshake: it is just closed.)
            let _ = stream.set_nonblocking(true);
            let mut plain = Stream::Plain(stream);
            let _ = reply_error(&mut plain, &mut Vec::new(), &reply);
            let _ = plain.tcp().shutdown(Shutdown::Write);
        }
        return;
    }
    let shared2 = shared.clone();
    let spawned = thread::Builder::new().name("ferry-busy".into()).spawn(move || {
        let _ = stream.set_read_timeout(Some(TURN_AWAY_HANDSHAKE));
        let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
        let opened = match shared2.tls.get() {
            Some(tls) => tls.accept(stream).ok(),
            None => Some(Stream::Plain(stream)),
        };
        if let Some(mut stream) = opened {
            let _ = reply_error(&mut stream, &mut Vec::new(), &reply);
            linger_close(stream);
        }
        shared2.rejecting.fetch_sub(1, Ordering::SeqCst);
    });
    if spawned.is_err() {
        shared.rejecting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Closes gracefully: no more writes, then drain briefly so unread input does not turn the
/// close into a reset that could destroy the last reply before the peer reads it.
fn linger_close(mut stream: Stream) {
    stream.close();
    let _ = stream.tcp().set_read_timeout(Some(Duration::from_millis(500)));
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

/// The connection as this host speaks it: a TLS host answers a plain frame (first byte `0x00`,
/// where a TLS record starts with `0x16`) with `tls_required` and runs the handshake for
/// anything else; a plain host takes the socket as it is. `None` when the connection is over.
/// The caller's read timeout bounds the wait for the first byte and the handshake.
fn open(shared: &Shared, tcp: TcpStream, peer: SocketAddr) -> Option<Stream> {
    let rejected = |reason: String| shared.sink.send(ServerEvent::ClientRejected { peer, reason });
    let first = match transport::peek_first_byte(&tcp) {
        Ok(Some(b)) => b,
        Err(e) if is_timeout(&e) && !shared.is_stopping() => {
            let secs = shared.config.hello_timeout.as_secs_f64();
            rejected(format!("sent no hello within {secs} s"));
            return None;
        }
        _ => return None,
    };
    let Some(tls) = shared.tls.get() else {
        if first == transport::TLS_HANDSHAKE_BYTE {
            rejected("an encrypted (TLS) client reached this plain host; closed".into());
            return None;
        }
        return Some(Stream::Plain(tcp));
    };
    if first == 0x00 {
        let mut plain = Stream::Plain(tcp);
        // Read the plain frame first, so closing does not reset the connection under the reply.
        let _ = frame::read_frame(&mut plain, MAX_REQUEST_LEN);
        let msg = "this host speaks only encrypted connections (protocol version 2, TLS 1.3): \
            connect without --plain";
        let _ = reply_error(&mut plain, &mut Vec::new(), &ErrorReply::new(ErrorCode::TlsRequired, msg));
        linger_close(plain);
        rejected("a plain (version 1) client: answered tls_required".into());
        return None;
    }
    match tls.accept(tcp) {
        Ok(stream) => Some(stream),
        Err(e) => {
            rejected(format!("the TLS handshake failed: {e}"));
            None
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

/// Reads from a connection until a fixed instant, however the bytes trickle in: a client cannot
/// keep a connection in `hello` (or in the PIN exchange) by sending one byte at a time.
pub(super) struct Deadline<'a> {
    pub stream: &'a mut Stream,
    pub until: Instant,
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream.tcp().set_read_timeout(Some(left))?;
        self.stream.read(buf)
    }
}

fn serve(
    shared: &Shared,
    root: &Root,
    tcp: TcpStream,
    client: ClientId,
    peer: SocketAddr,
    greeted: &mut bool,
) -> Option<String> {
    let config = &shared.config;
    let idle = config.idle_timeout;
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_write_timeout(Some(config.hello_timeout.min(idle)));
    // The first byte, the TLS handshake and hello all fit in the hello deadline.
    let until = Instant::now() + config.hello_timeout;
    let _ = tcp.set_read_timeout(Some(config.hello_timeout));
    let mut stream = open(shared, tcp, peer)?;
    let version_spoken = if stream.is_tls() { VERSION } else { PLAIN_VERSION };
    let mut out = Vec::with_capacity(4096);
    let mut buf: Vec<u8> = Vec::new();
    let reject = |stream: &mut Stream, out: &mut Vec<u8>, e: ErrorReply| {
        let _ = reply_error(stream, out, &e);
        shared.sink.send(ServerEvent::ClientRejected { peer, reason: e.message.clone() });
    };

    // 1. hello, complete within the hello deadline. Read without a buffer (frames are read
    // exactly), so nothing the client sends after it is lost.
    let payload = match frame::read_frame(&mut Deadline { stream: &mut stream, until }, MAX_REQUEST_LEN) {
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
    let (version, pin, pake, greeting_instance) = match parse_request(&payload) {
        Ok(Request::Hello { version, pin, pake, instance, .. }) => {
            (version, pin, pake, instance.filter(|i| i.len() <= 64).map(|i| Escaped(&i).to_string()))
        }
        Ok(_) => {
            reject(&mut stream, &mut out, ErrorReply::new(ErrorCode::BadRequest, "the first request must be hello"));
            return None;
        }
        Err(e) => {
            reject(&mut stream, &mut out, e);
            return None;
        }
    };
    if version != version_spoken {
        let msg = match version_spoken {
            VERSION => format!("this host speaks protocol version {VERSION} inside TLS, not {version}"),
            _ => format!("this host speaks plain protocol version {PLAIN_VERSION} (--plain), not {version}"),
        };
        reject(&mut stream, &mut out, ErrorReply::new(ErrorCode::UnsupportedVersion, msg));
        return None;
    }
    match (&config.pin, stream.exporter()) {
        // Version 2 with a PIN: the PIN is proven by SPAKE2, never sent.
        (Some(expected), Some(exporter)) => {
            let hello = pin_exchange::Hello { pake, exporter, name: root.name() };
            if let Err(e) = pin_exchange::run(shared, &mut stream, &mut out, expected, hello, peer, until) {
                if let Some(reply) = &e.reply {
                    let _ = reply_error(&mut stream, &mut out, reply);
                }
                shared.sink.send(ServerEvent::ClientRejected { peer, reason: e.reason });
                return None;
            }
        }
        (expected, _) => {
            // Plain version 1 carries the PIN itself in hello.
            if let Some(expected) = expected {
                // A hello without a PIN guesses nothing (the first connect, a Nearby probe): it
                // is told a PIN is needed and costs no attempt.
                let msg =
                    match pin.as_ref().map(|given| shared.pins.check(peer.ip(), expected, Some(given), Instant::now()))
                    {
                        None => Some("this server needs a PIN".to_string()),
                        Some(PinVerdict::Accepted) => None,
                        Some(PinVerdict::Wrong) => Some("wrong PIN".to_string()),
                        Some(PinVerdict::TooMany { retry_in }) => Some(too_many(retry_in)),
                    };
                if let Some(msg) = msg {
                    reject(&mut stream, &mut out, ErrorReply::new(ErrorCode::Unauthorized, msg));
                    return None;
                }
            }
            let hello = HelloReply {
                version: version_spoken,
                server: SERVER_NAME.into(),
                name: root.name(),
                ..Default::default()
            };
            encode_ok(&mut out, &hello);
            if send_all(&mut stream, &out).is_err() {
                return None;
            }
        }
    }
    let _ = stream.tcp().set_write_timeout(Some(idle));
    // From here on reads go through a buffer (and notice a stop while they wait); answers are
    // written to the stream beneath it.
    let Ok(read_half) = StopAware::new(stream, shared, idle) else {
        return Some("cannot set the socket's timeout".into());
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
                let _ = reply_error(
                    &mut reader.get_mut().stream,
                    &mut out,
                    &ErrorReply::new(ErrorCode::TooLarge, e.to_string()),
                );
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
        let refuse = |stream: &mut Stream, out: &mut Vec<u8>, request: String, e: ErrorReply| {
            reply::refuse(shared, stream, out, Who { client, peer }, request, &e)
        };
        let stream = &mut reader.get_mut().stream;
        let sent = match parse_request(&payload) {
            Err(e) => refuse(stream, &mut out, "?".into(), e),
            Ok(Request::Confirm { .. }) => refuse(
                stream,
                &mut out,
                "confirm".into(),
                ErrorReply::new(ErrorCode::BadRequest, "confirm belongs to the PIN exchange right after hello"),
            ),
            Ok(Request::Hello { .. }) => refuse(
                stream,
                &mut out,
                "hello".into(),
                ErrorReply::new(ErrorCode::BadRequest, "hello was already received on this connection"),
            ),
            Ok(Request::Put { path, size, mkdirs }) => {
                let req = upload::PutRequest { client, peer, path: &path, size, mkdirs };
                match upload::handle_put(shared, root, &mut reader, &mut out, &mut buf, req) {
                    upload::PutEnd::Continue => Ok(()),
                    upload::PutEnd::Close(reason) => return Some(reason),
                }
            }
            Ok(Request::List { path }) => match list(shared, root, &path) {
                Ok(entries) => {
                    encode_ok(&mut out, &ListReply { path, entries });
                    send_all(stream, &out)
                }
                Err(e) => refuse(stream, &mut out, format!("list {}", Escaped(&path)), e.to_reply()),
            },
            Ok(Request::Verdict { path, md5, ok }) => {
                shared.sink.send(ServerEvent::TransferConfirmed { client, path, md5, ok });
                encode_ok(&mut out, &Ack {});
                send_all(stream, &out)
            }
            Ok(Request::Get { path, offset }) => {
                let req = send::GetRequest { client, peer, path: &path, offset };
                match send::handle_get(shared, root, stream, &mut out, &mut buf, req) {
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

/// A folder's entries, each file with its MD5 when the digest index knows it; the folder's
/// other files are then hashed in the background, so the next listing (and their first
/// download) finds them.
fn list(shared: &Shared, root: &Root, path: &str) -> Result<Vec<crate::protocol::message::Entry>, super::ResolveError> {
    let Some(indexer) = shared.indexer() else { return root.list(path) };
    let entries = root.list_with(path, &|key| indexer.index.get(key))?;
    if shared.config.index != super::IndexMode::Off
        && entries.iter().any(|e| e.kind == crate::protocol::message::EntryKind::File && e.md5.is_none())
    {
        indexer.listed(path);
    }
    Ok(entries)
}

/// The answer to a PIN that was not looked at.
pub(super) fn too_many(retry_in: Duration) -> String {
    format!("too many wrong PINs just now; try again in {} s", retry_in.as_secs_f64().ceil().max(1.0))
}
