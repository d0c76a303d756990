//! The host's side of the PIN as a PAKE (version 2, [`crate::transport::pake`]): answer the
//! client's SPAKE2 message with the host's and a confirmation, then serve nothing until the
//! client's own confirmation proves it knows the PIN.
//!
//! Every exchange counts as a wrong guess until the client's confirmation arrives: a client
//! that learns from the host's confirmation that its guess was wrong simply leaves, and that
//! must cost it an attempt like any other wrong PIN.

use std::net::SocketAddr;
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::Shared;
use super::conn::{Deadline, SERVER_NAME, too_many};
use super::pin_limit::PinVerdict;
use super::reply::{encode_ok, send_all};
use crate::protocol::VERSION;
use crate::protocol::frame::{self, MAX_REQUEST_LEN};
use crate::protocol::message::{ConfirmReply, ErrorCode, ErrorReply, HelloReply, Request, Secret, parse_request};
use crate::transport::{Stream, pake};

/// What the client's `hello` brought, and what the host answers with after a good confirm.
pub(super) struct Hello {
    pub pake: Option<String>,
    pub exporter: [u8; 32],
    pub name: String,
}

/// Why the exchange ended without access: the answer to send (if the client is still there)
/// and the reason to report (never the PIN).
pub(super) struct Refusal {
    pub reply: Option<ErrorReply>,
    pub reason: String,
}

impl Refusal {
    fn answer(code: ErrorCode, message: &str) -> Refusal {
        Refusal { reply: Some(ErrorReply::new(code, message)), reason: message.to_string() }
    }
}

/// Runs the exchange after `hello`, the client's confirmation due by `until`; on success the
/// client has been told the folder's name.
pub(super) fn run(
    shared: &Shared,
    stream: &mut Stream,
    out: &mut Vec<u8>,
    pin: &Secret,
    hello: Hello,
    peer: SocketAddr,
    until: Instant,
) -> Result<(), Refusal> {
    let ip = peer.ip();
    // A hello without a PAKE message guesses nothing (the first connect, a Nearby probe): it
    // is told a PIN is needed and costs no attempt.
    let Some(msg_a) = hello.pake else {
        return Err(Refusal::answer(ErrorCode::Unauthorized, "this server needs a PIN"));
    };
    // A guess: counted as a wrong PIN now, through the host's limits, and forgiven on a good
    // confirmation. A client the limits hold back is not answered at all.
    if let PinVerdict::TooMany { retry_in } = shared.pins.check(ip, pin, None, Instant::now()) {
        return Err(Refusal::answer(ErrorCode::Unauthorized, &too_many(retry_in)));
    }
    let Ok(msg_a) = BASE64.decode(msg_a.as_bytes()) else {
        return Err(Refusal::answer(ErrorCode::BadRequest, "\"pake\" is not base64"));
    };
    let Ok((msg_b, host_confirm, state)) = pake::host_respond(pin.expose(), &msg_a, &hello.exporter) else {
        // Damaged on the way, or not from a ferry client: the exchange fails like a wrong PIN.
        return Err(Refusal::answer(ErrorCode::Unauthorized, "the PIN exchange failed (a malformed message)"));
    };
    let answer = HelloReply {
        version: VERSION,
        server: SERVER_NAME.into(),
        name: String::new(),
        pake: Some(BASE64.encode(msg_b)),
        confirm: Some(BASE64.encode(host_confirm)),
    };
    encode_ok(out, &answer);
    if send_all(stream, out).is_err() {
        return Err(Refusal { reply: None, reason: "the client left during the PIN exchange".into() });
    }
    let payload = match frame::read_frame(&mut Deadline { stream, until }, MAX_REQUEST_LEN) {
        Ok(p) => p,
        // A client that found the host's confirmation wrong stops here: a wrong PIN.
        Err(_) => return Err(Refusal { reply: None, reason: "wrong PIN (the client gave up)".into() }),
    };
    let mac = match parse_request(&payload) {
        Ok(Request::Confirm { mac }) => BASE64.decode(mac.as_bytes()).unwrap_or_default(),
        _ => return Err(Refusal::answer(ErrorCode::Unauthorized, "the PIN exchange needs confirm next")),
    };
    if !state.check(&mac) {
        return Err(Refusal::answer(ErrorCode::Unauthorized, "wrong PIN"));
    }
    shared.pins.forgive(ip);
    encode_ok(out, &ConfirmReply { name: hello.name });
    send_all(stream, out).map_err(|e| Refusal { reply: None, reason: format!("cannot answer confirm: {e}") })
}
