//! One client connection: `hello`, then requests one at a time until the client leaves, the
//! connection idles out, or the server stops.

use std::io::{self, BufReader, Read};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::thread;
use std::time::Duration;

use super::reply::{self, Who, encode_ok, reply_error, send_all};
use super::send::{self, GetEnd};
use super::{ClientId, Root, ServerEvent, Shared};
use crate::protocol::VERSION;
use crate::protocol::frame::{self, FrameError, MAX_REQUEST_LEN};
use crate::protocol::message::{ErrorCode, ErrorReply, HelloReply, ListReply, Request, parse_request};
use crate::protocol::path::Escaped;

/// The name this server gives in `hello`.
pub const SERVER_NAME: &str = concat!("ferry/", env!("CARGO_PKG_VERSION"));

/// At most this many turned-away connections are answered at once; more are just closed.
const MAX_REJECTING: usize = 8;
/// How long a turned-away client has to send its `hello`.
const REJECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Wrong PINs from one address before answers slow down.
const FREE_PIN_TRIES: u32 = 3;

/// Answers a client past the connection cap with `busy`, on a short-lived thread so the accept
/// loop never waits for it.
pub(super) fn reject_busy(shared: &std::sync::Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    if shared.rejecting.fetch_add(1, Ordering::SeqCst) >= MAX_REJECTING {
        shared.rejecting.fetch_sub(1, Ordering::SeqCst);
        return; // dropping the stream closes it
    }
    let shared2 = shared.clone();
    let spawned = thread::Builder::new().name("ferry-busy".into()).spawn(move || {
        let mut stream = stream;
        let _ = stream.set_read_timeout(Some(REJECT_TIMEOUT));
        let _ = stream.set_write_timeout(Some(REJECT_TIMEOUT));
        let _ = stream.set_nodelay(true);
        // Read the hello first, so closing does not reset the connection under the reply.
        let _ = frame::read_frame(&mut stream, MAX_REQUEST_LEN);
        let max = shared2.config.max_clients;
        let reply =
            ErrorReply::new(ErrorCode::Busy, format!("the server is busy ({max} clients connected); try again later"));
        let _ = reply_error(&mut stream, &mut Vec::new(), &reply);
        linger_close(stream);
        shared2.sink.send(ServerEvent::ClientRejected { peer, reason: "busy".into() });
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

/// Serves one connection to its end, then unregisters it and reports why it ended.
pub(super) fn serve_connection(shared: &Shared, root: &Root, stream: TcpStream, client: ClientId, peer: SocketAddr) {
    let mut greeted = false;
    let reason = serve(shared, root, stream, client, peer, &mut greeted);
    shared.conns.lock().unwrap_or_else(|p| p.into_inner()).remove(&client);
    if greeted {
        shared.sink.send(ServerEvent::ClientDisconnected { client, peer, reason });
    }
}

fn describe_read_error(e: &FrameError, idle: Duration) -> String {
    match e {
        FrameError::Io(io) if matches!(io.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
            format!("idle for {} s, closed", idle.as_secs())
        }
        other => other.to_string(),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // The length is not secret; the bytes are compared without an early exit.
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Waits before answering a wrong PIN, longer with each recent failure from the same address.
fn pin_penalty(shared: &Shared, ip: IpAddr) -> Duration {
    let mut fails = shared.pin_failures.lock().unwrap_or_else(|p| p.into_inner());
    if fails.len() > 10_000 {
        fails.clear();
    }
    let n = fails.entry(ip).or_insert(0);
    *n += 1;
    if *n <= FREE_PIN_TRIES {
        Duration::ZERO
    } else {
        Duration::from_millis(250u64 << (*n - FREE_PIN_TRIES - 1).min(4)).min(Duration::from_secs(4))
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
    let idle = shared.config.idle_timeout;
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(idle));
    let _ = stream.set_write_timeout(Some(idle));
    let Ok(read_half) = stream.try_clone() else { return Some("cannot clone the socket".into()) };
    let mut reader = BufReader::with_capacity(64 * 1024, read_half);
    let mut out = Vec::with_capacity(4096);
    let mut buf: Vec<u8> = Vec::new();

    // 1. hello
    let payload = match frame::read_frame(&mut reader, MAX_REQUEST_LEN) {
        Ok(p) => p,
        Err(e @ FrameError::TooLarge { .. }) => {
            let _ = reply_error(&mut stream, &mut out, &ErrorReply::new(ErrorCode::TooLarge, e.to_string()));
            shared.sink.send(ServerEvent::ClientRejected { peer, reason: e.to_string() });
            return None;
        }
        Err(_) => return None,
    };
    let reject = |stream: &mut TcpStream, out: &mut Vec<u8>, e: ErrorReply| {
        let _ = reply_error(stream, out, &e);
        shared.sink.send(ServerEvent::ClientRejected { peer, reason: e.message.clone() });
    };
    match parse_request(&payload) {
        Ok(Request::Hello { version, pin, .. }) => {
            if version != VERSION {
                let msg = format!("this server speaks protocol version {VERSION}, not {version}");
                reject(&mut stream, &mut out, ErrorReply::new(ErrorCode::UnsupportedVersion, msg));
                return None;
            }
            if let Some(expected) = &shared.config.pin {
                let given = pin.as_ref().map_or(&b""[..], |p| p.0.as_bytes());
                if !constant_time_eq(given, expected.as_bytes()) {
                    thread::sleep(pin_penalty(shared, peer.ip()));
                    let msg = if pin.is_none() { "this server needs a PIN" } else { "wrong PIN" };
                    reject(&mut stream, &mut out, ErrorReply::new(ErrorCode::Unauthorized, msg));
                    return None;
                }
                shared.pin_failures.lock().unwrap_or_else(|p| p.into_inner()).remove(&peer.ip());
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
    *greeted = true;
    shared.sink.send(ServerEvent::ClientConnected { client, peer });

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
