//! Reading from a client so that a server stop is noticed while the read waits.
//!
//! `Server::stop` shuts every connection's socket down. On Linux and macOS that wakes a read
//! blocked on it; on Windows it does not (rust-lang/rust#121594), so a stop would wait for
//! each idle client's timeout. Reads here wait in slices of at most [`STOP_POLL`] and look
//! at the stop flag between them; without a stop, a read still gives up (`TimedOut`) only
//! after the whole idle timeout without a byte, as one long read timeout would.
//!
//! Windows documents that a receive ended by its timeout may leave the socket in an undefined
//! state. Only request frames are read here: a byte lost that way would fail the connection as
//! a malformed request, never alter a file (file data only flows to the client, MD5-checked).

use std::io::{self, Read};
use std::time::{Duration, Instant};

use super::Shared;
use crate::transport::Stream;

/// The longest a blocked read goes without looking at the stop flag.
pub(super) const STOP_POLL: Duration = Duration::from_millis(100);

/// A connection's read half, read in slices (see the module doc).
pub(super) struct StopAware<'a> {
    /// The connection (plain or TLS: a TLS read cut short by a slice keeps its partial record
    /// and goes on with the next one).
    pub(super) stream: Stream,
    shared: &'a Shared,
    idle: Duration,
}

impl<'a> StopAware<'a> {
    /// Sets the socket's read timeout to the slice: the socket must not be read elsewhere with
    /// the expectation of a longer one.
    pub(super) fn new(stream: Stream, shared: &'a Shared, idle: Duration) -> io::Result<StopAware<'a>> {
        stream.tcp().set_read_timeout(Some(idle.min(STOP_POLL).max(Duration::from_millis(1))))?;
        Ok(StopAware { stream, shared, idle })
    }
}

impl Read for StopAware<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let started = Instant::now();
        loop {
            match self.stream.read(buf) {
                Err(e)
                    if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
                        && !self.shared.is_stopping()
                        && started.elapsed() < self.idle => {}
                other => return other,
            }
        }
    }
}
