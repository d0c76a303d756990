//! What a connection ([`super::conn`]) and a `get` ([`super::send`]) both need: encoding an
//! answer, writing it in one piece, and refusing a request.

use std::io::{self, Write};
use std::net::SocketAddr;

use serde::Serialize;

use super::{ClientId, ServerEvent, Shared};
use crate::protocol::data;
use crate::protocol::frame;
use crate::protocol::message::{ErrorReply, Okay};
use crate::transport::Stream;

/// The size of the buffer each connection uses for file data (allocated once, on first use).
pub(super) const BUF_LEN: usize = data::CHUNK;

/// Who a request came from, for the events that name it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Who {
    pub client: ClientId,
    pub peer: SocketAddr,
}

/// Writes a whole buffer and flushes: every reply goes out in one write.
pub(super) fn send_all(stream: &mut Stream, buf: &[u8]) -> io::Result<()> {
    stream.write_all(buf)?;
    stream.flush()
}

/// Encodes a control frame into `out` (cleared first).
pub(super) fn encode<T: Serialize>(out: &mut Vec<u8>, msg: &T) {
    out.clear();
    frame::write_control(out, msg).expect("writing to a Vec cannot fail");
}

/// Encodes `{"ok":true, ...body}` into `out` (cleared first).
pub(super) fn encode_ok<T: Serialize>(out: &mut Vec<u8>, body: &T) {
    encode(out, &Okay::new(body));
}

/// Sends an error reply.
pub(super) fn reply_error(stream: &mut Stream, out: &mut Vec<u8>, e: &ErrorReply) -> io::Result<()> {
    encode(out, e);
    send_all(stream, out)
}

/// Reports a refused request and answers it with `e`; the connection stays usable.
pub(super) fn refuse(
    shared: &Shared,
    stream: &mut Stream,
    out: &mut Vec<u8>,
    who: Who,
    request: String,
    e: &ErrorReply,
) -> io::Result<()> {
    shared.sink.send(ServerEvent::RequestRefused { client: who.client, peer: who.peer, request, error: e.to_string() });
    reply_error(stream, out, e)
}
