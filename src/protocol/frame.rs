//! Frames: an 8-byte big-endian length `N`, then `N` bytes of payload.

use std::io::{self, Read, Write};

use serde::Serialize;

/// Length of the size prefix in front of every frame.
pub const HEADER_LEN: usize = 8;

/// Largest request control frame a server accepts (the contract's limit).
pub const MAX_REQUEST_LEN: u64 = 64 * 1024;

/// Largest response control frame a client accepts (the contract's limit).
pub const MAX_RESPONSE_LEN: u64 = 64 * 1024 * 1024;

/// What can go wrong while reading a frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream ended cleanly before the first byte of a frame.
    #[error("the peer closed the connection")]
    Closed,
    /// The stream ended inside a frame's prefix or payload.
    #[error("the connection ended in the middle of a frame ({got} of {expected} bytes)")]
    Truncated { got: u64, expected: u64 },
    /// The length prefix announces more than the reader accepts; nothing was allocated.
    #[error("frame of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge { size: u64, max: u64 },
    /// Any other I/O failure (including a read timeout).
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl FrameError {
    /// True when the error means the stream can no longer be trusted to be at a frame boundary.
    pub fn breaks_framing(&self) -> bool {
        !matches!(self, FrameError::Closed)
    }
}

/// Encodes a frame's length prefix.
pub fn encode_header(len: u64) -> [u8; HEADER_LEN] {
    len.to_be_bytes()
}

/// Writes one frame (prefix and payload). The caller flushes.
pub fn write_frame<W: Write + ?Sized>(w: &mut W, payload: &[u8]) -> io::Result<()> {
    w.write_all(&encode_header(payload.len() as u64))?;
    w.write_all(payload)
}

/// Serialises `msg` as JSON and writes it as one control frame. The caller flushes.
pub fn write_control<W: Write + ?Sized, T: Serialize>(w: &mut W, msg: &T) -> io::Result<()> {
    let payload = serde_json::to_vec(msg).map_err(io::Error::other)?;
    write_frame(w, &payload)
}

/// Reads exactly `buf.len()` bytes, looping over short reads and retrying on `Interrupted`.
/// Returns how many bytes were read before the stream ended (equal to `buf.len()` on success).
pub fn read_full<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match r.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Reads a frame's 8-byte length prefix.
///
/// A stream that ends before its first byte gives [`FrameError::Closed`]; one that ends inside
/// the prefix gives [`FrameError::Truncated`].
pub fn read_header<R: Read + ?Sized>(r: &mut R) -> Result<u64, FrameError> {
    let mut head = [0u8; HEADER_LEN];
    let got = read_full(r, &mut head)?;
    match got {
        0 => Err(FrameError::Closed),
        HEADER_LEN => Ok(u64::from_be_bytes(head)),
        _ => Err(FrameError::Truncated { got: got as u64, expected: HEADER_LEN as u64 }),
    }
}

/// Reads one whole frame whose payload is at most `max` bytes.
///
/// The limit is checked against the prefix before any memory is reserved, so a hostile
/// `0xffff_ffff_ffff_ffff` prefix costs nothing.
pub fn read_frame<R: Read + ?Sized>(r: &mut R, max: u64) -> Result<Vec<u8>, FrameError> {
    let size = read_header(r)?;
    if size > max {
        return Err(FrameError::TooLarge { size, max });
    }
    let mut payload = vec![0u8; size as usize];
    let got = read_full(r, &mut payload)?;
    if got as u64 != size {
        return Err(FrameError::Truncated { got: got as u64, expected: size });
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    use crate::protocol::test_io::OneByte;

    /// A reader that fails with `Interrupted` before every successful read.
    struct Interrupting<R> {
        inner: R,
        flip: bool,
    }
    impl<R: Read> Read for Interrupting<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.flip = !self.flip;
            if self.flip {
                return Err(io::ErrorKind::Interrupted.into());
            }
            self.inner.read(buf)
        }
    }

    #[test]
    fn write_frame_emits_big_endian_prefix_then_payload() {
        let mut out = Vec::new();
        write_frame(&mut out, b"hello").unwrap();
        assert_eq!(out, b"\0\0\0\0\0\0\0\x05hello");
    }

    #[test]
    fn read_two_frames_stuck_together_in_one_buffer() {
        let mut wire = Vec::new();
        write_frame(&mut wire, b"{\"a\":1}").unwrap();
        write_frame(&mut wire, b"second").unwrap();
        wire.push(0xAA); // a leftover byte that belongs to whatever comes next
        let mut r = Cursor::new(wire);
        assert_eq!(read_frame(&mut r, 100).unwrap(), b"{\"a\":1}");
        assert_eq!(read_frame(&mut r, 100).unwrap(), b"second");
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, [0xAA]);
    }

    #[test]
    fn read_frame_delivered_one_byte_per_read() {
        let mut wire = Vec::new();
        write_frame(&mut wire, b"fragmented payload").unwrap();
        write_frame(&mut wire, b"").unwrap();
        let mut r = OneByte(Cursor::new(wire));
        assert_eq!(read_frame(&mut r, 100).unwrap(), b"fragmented payload");
        assert_eq!(read_frame(&mut r, 100).unwrap(), b"");
        assert!(matches!(read_frame(&mut r, 100), Err(FrameError::Closed)));
    }

    #[test]
    fn read_frame_retries_interrupted_reads() {
        let mut wire = Vec::new();
        write_frame(&mut wire, b"xyz").unwrap();
        let mut r = Interrupting { inner: OneByte(Cursor::new(wire)), flip: false };
        assert_eq!(read_frame(&mut r, 100).unwrap(), b"xyz");
    }

    #[test]
    fn read_empty_stream_is_closed_not_truncated() {
        let mut r = Cursor::new(Vec::<u8>::new());
        assert!(matches!(read_frame(&mut r, 100), Err(FrameError::Closed)));
    }

    #[test]
    fn read_incomplete_head() {
        let mut r = Cursor::new(vec![0u8, 0, 0]);
        match read_frame(&mut r, 100) {
            Err(FrameError::Truncated { got: 3, expected: 8 }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn read_incomplete_payload() {
        let mut wire = encode_header(10).to_vec();
        wire.extend_from_slice(b"abc");
        match read_frame(&mut Cursor::new(wire), 100) {
            Err(FrameError::Truncated { got: 3, expected: 10 }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn read_max_frame_len_is_accepted_and_one_more_refused() {
        let mut wire = Vec::new();
        write_frame(&mut wire, &[7u8; 16]).unwrap();
        assert_eq!(read_frame(&mut Cursor::new(wire.clone()), 16).unwrap().len(), 16);
        match read_frame(&mut Cursor::new(wire), 15) {
            Err(FrameError::TooLarge { size: 16, max: 15 }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn hostile_all_ff_prefix_is_refused_without_allocating() {
        // If this allocated u64::MAX bytes the test process would abort, not fail politely.
        let wire = [0xFFu8; 8];
        let err = read_frame(&mut Cursor::new(wire), MAX_REQUEST_LEN).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { size: u64::MAX, max: MAX_REQUEST_LEN }));
        assert!(err.to_string().contains("18446744073709551615"), "{err}");
    }
}
