//! The ferry wire format, version 1: pure code over [`std::io::Read`] and [`std::io::Write`].
//!
//! No sockets, threads or files live here; the engine ([`crate::server`], [`crate::client`])
//! drives these functions over a `TcpStream`, and the tests drive them over byte buffers.
//!
//! Every message in both directions is a frame with a fixed 8-byte big-endian length prefix:
//!
//! ```text
//!  control frame            data section (the bytes of one file)
//! +----------+---------+   +----------+-----------------------+------------------+
//! | N: u64be | N bytes |   | N: u64be | N raw bytes           | MD5: 16 raw bytes|
//! |          | JSON    |   | size-off | file[offset..size]    | of file[0..size] |
//! +----------+---------+   +----------+-----------------------+------------------+
//! ```
//!
//! A reader reads exactly 8 bytes, checks `N` against its limit *before* allocating, then reads
//! exactly `N` bytes, looping over short reads. That is the whole fix for "sticky packets": no
//! sleeps, no acknowledgement round trips, no fixed-size `recv` calls.
//!
//! ```
//! use ferry::protocol::{frame, message::Request};
//!
//! let mut wire = Vec::new();
//! frame::write_control(&mut wire, &Request::List { path: "docs".into() }).unwrap();
//! frame::write_control(&mut wire, &Request::Get { path: "docs/a.txt".into(), offset: 0 }).unwrap();
//!
//! // Both frames arrive "stuck together" in one buffer; the length prefixes split them apart.
//! let mut reader = &wire[..];
//! let first = frame::read_frame(&mut reader, frame::MAX_REQUEST_LEN).unwrap();
//! let second = frame::read_frame(&mut reader, frame::MAX_REQUEST_LEN).unwrap();
//! assert_eq!(ferry::protocol::message::parse_request(&first).unwrap(), Request::List { path: "docs".into() });
//! assert!(matches!(ferry::protocol::message::parse_request(&second).unwrap(), Request::Get { .. }));
//! assert!(reader.is_empty());
//! ```

pub mod data;
pub mod frame;
pub mod message;
pub mod names;
pub mod path;

/// The protocol version this build speaks: version 2, inside TLS 1.3.
pub const VERSION: u32 = 2;

/// The version spoken over plain TCP, only when both sides are told to (`--plain`).
pub const PLAIN_VERSION: u32 = 1;

/// Length of the raw MD5 trailer that ends every data section.
pub const MD5_LEN: usize = 16;

/// A raw MD5 digest.
pub type Md5Digest = [u8; MD5_LEN];

/// Lower-case hex of a digest, as `md5sum` prints it.
pub fn hex(digest: &Md5Digest) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(32);
    for b in digest {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Parses 32 hex digits into a digest.
pub fn parse_hex(s: &str) -> Option<Md5Digest> {
    let bytes = s.as_bytes();
    if bytes.len() != 32 {
        return None;
    }
    let mut out = [0u8; MD5_LEN];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// Readers that misbehave the way networks do, for the protocol's unit tests.
#[cfg(test)]
pub(crate) mod test_io {
    use std::io::{self, Read};

    /// A reader that hands out one byte per `read` call, like a very fragmented TCP stream.
    pub struct OneByte<R>(pub R);

    impl<R: Read> Read for OneByte<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(1);
            self.0.read(&mut buf[..n])
        }
    }

    /// A connection that is reset after `0` bytes, all `x`, handed out one per `read`.
    pub struct ResetAfter(pub usize);

    impl Read for ResetAfter {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::new(io::ErrorKind::ConnectionReset, "gone"));
            }
            buf[0] = b'x';
            self.0 -= 1;
            Ok(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_matches_md5sum_format() {
        let d: Md5Digest =
            [0xd4, 0x1d, 0x8c, 0xd9, 0x8f, 0x00, 0xb2, 0x04, 0xe9, 0x80, 0x09, 0x98, 0xec, 0xf8, 0x42, 0x7e];
        assert_eq!(hex(&d), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(parse_hex("d41d8cd98f00b204e9800998ecf8427e"), Some(d));
        assert_eq!(parse_hex("D41D8CD98F00B204E9800998ECF8427E"), Some(d));
        assert_eq!(parse_hex("d41d8c"), None);
        assert_eq!(parse_hex("z41d8cd98f00b204e9800998ecf8427e"), None);
    }
}
