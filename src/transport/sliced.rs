//! Reads that wait in short slices, so a flag set by another thread (a server stopping, a job
//! cancelled) is noticed while a read waits.
//!
//! Shutting a socket down wakes a read blocked on it on Linux and macOS, but not on Windows
//! (rust-lang/rust#121594). So the socket's read timeout is one slice of at most [`SLICE`], and
//! a read that times out looks at the flag and goes on waiting, until the whole idle time has
//! passed without a byte (then the timeout error, as one long read timeout would give) or the
//! flag is set (the same error; the caller knows why).
//!
//! Windows documents that a receive ended by its timeout may leave the socket in an undefined
//! state. A byte lost that way could only fail a frame (a malformed request or reply) or the
//! MD5 verdict of a file being received: nothing unverified is ever kept under its name. A TLS
//! read cut short by a slice keeps its partial record and goes on with the next one.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use super::Stream;

/// The longest a blocked read goes without looking at the flag.
pub const SLICE: Duration = Duration::from_millis(100);

/// Sets `stream`'s socket read timeout to the slice for an `idle` wait: the socket must not be
/// read elsewhere with the expectation of a longer one.
pub fn slice_reads(stream: &Stream, idle: Duration) -> io::Result<()> {
    stream.tcp().set_read_timeout(Some(idle.min(SLICE).max(Duration::from_millis(1))))
}

/// One read from `stream` (set up with [`slice_reads`]): what arrives first, or the timeout
/// error once `idle` passed without a byte or `stop()` is true.
pub fn read_in_slices(
    stream: &mut Stream,
    buf: &mut [u8],
    idle: Duration,
    stop: impl Fn() -> bool,
) -> io::Result<usize> {
    let started = Instant::now();
    loop {
        match stream.read(buf) {
            Err(e)
                if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
                    && !stop()
                    && started.elapsed() < idle => {}
            other => return other,
        }
    }
}
