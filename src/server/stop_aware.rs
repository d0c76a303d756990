//! Reading from a client so that a server stop is noticed while the read waits.
//!
//! `Server::stop` shuts every connection's socket down, which does not wake a blocked read on
//! Windows: reads here wait in slices ([`crate::transport::sliced`]) and look at the stop flag
//! between them. Without a stop, a read still gives up (`TimedOut`) only after the whole idle
//! timeout without a byte.

use std::io::{self, Read};
use std::time::Duration;

use super::Shared;
use crate::transport::Stream;
use crate::transport::sliced::{read_in_slices, slice_reads};

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
        slice_reads(&stream, idle)?;
        Ok(StopAware { stream, shared, idle })
    }
}

impl Read for StopAware<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let shared = self.shared;
        read_in_slices(&mut self.stream, buf, self.idle, || shared.is_stopping())
    }
}
