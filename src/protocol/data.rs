//! The data section: `N` as a u64 big-endian prefix, `N` raw bytes, then the 16-byte raw MD5 of
//! the whole file. The digest is computed while the bytes stream past, never by a second pass.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

pub use md5::{Digest, Md5};

use super::frame::{self, FrameError};
use super::{MD5_LEN, Md5Digest};

/// Default size of the reusable copy buffer: large enough that each chunk costs one read and
/// one write system call and little else.
pub const CHUNK: usize = 256 * 1024;

/// What can go wrong while copying the bytes of a data section.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The source ended before `expected` bytes (a shrunk file, or a peer that vanished).
    #[error("the data ended after {done} of {expected} bytes")]
    Incomplete { done: u64, expected: u64 },
    /// Reading the source failed.
    #[error("read failed after {done} bytes: {error}")]
    Read { done: u64, error: io::Error },
    /// Writing the destination failed.
    #[error("write failed after {done} bytes: {error}")]
    Write { done: u64, error: io::Error },
    /// The progress callback asked to stop.
    #[error("cancelled after {done} bytes")]
    Cancelled { done: u64 },
}

/// Finishes a hasher into a raw digest.
pub fn finish(hasher: Md5) -> Md5Digest {
    hasher.finalize().into()
}

/// MD5 of a byte slice (a convenience for tests and small data).
pub fn md5_of(bytes: &[u8]) -> Md5Digest {
    finish(Md5::new_with_prefix(bytes))
}

/// Copies exactly `len` bytes from `src` to `dst`, feeding each chunk to `hasher`, using the
/// caller's reusable `buf` (no allocation per chunk). `progress` sees the running count after
/// each chunk and returns `false` to cancel.
pub fn copy_hashed<R: Read + ?Sized, W: Write + ?Sized>(
    src: &mut R,
    dst: &mut W,
    len: u64,
    hasher: &mut Md5,
    buf: &mut [u8],
    progress: &mut dyn FnMut(u64) -> bool,
) -> Result<(), CopyError> {
    assert!(!buf.is_empty(), "copy buffer must not be empty");
    let mut done = 0u64;
    while done < len {
        let want = (len - done).min(buf.len() as u64) as usize;
        let n = match src.read(&mut buf[..want]) {
            Ok(0) => return Err(CopyError::Incomplete { done, expected: len }),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(CopyError::Read { done, error }),
        };
        dst.write_all(&buf[..n]).map_err(|error| CopyError::Write { done, error })?;
        hasher.update(&buf[..n]);
        done += n as u64;
        if !progress(done) {
            return Err(CopyError::Cancelled { done });
        }
    }
    Ok(())
}

/// Why [`fill`] stopped before the buffer was full.
#[derive(Debug)]
pub enum Short {
    /// The source ended.
    End,
    /// Reading failed.
    Failed(io::Error),
}

impl Short {
    /// The copy's error, `done` bytes into a section of `expected`.
    pub fn into_copy_error(self, done: u64, expected: u64) -> CopyError {
        match self {
            Short::End => CopyError::Incomplete { done, expected },
            Short::Failed(error) => CopyError::Read { done, error },
        }
    }
}

/// How long [`fill`] goes on gathering once it has some bytes: a slow link still shows
/// progress several times a second.
pub const FILL_WAIT: Duration = Duration::from_millis(100);

/// Reads into the whole of `buf` unless `src` ends or fails first, or [`FILL_WAIT`] has passed
/// with some bytes in hand; returns the bytes read and, when `src` ended or failed, why.
/// A socket read gives only what has arrived (over TLS, one 16 KiB record), and a file write, a
/// hand-over to the hashing thread and a progress report per piece cost more than the bytes:
/// filling the buffer first made an encrypted download 1.4x faster. The bytes read before a
/// failure are still returned, for the caller to keep.
///
/// A read that blocks is not cut short by [`FILL_WAIT`]: while the source stalls, the bytes in
/// hand wait with it (until more arrive, or the read fails and they are returned). So this is
/// for the receiving end of a download (the bytes are kept either way), not for the host's
/// side of an upload, whose partial file shows what has arrived.
pub fn fill<R: Read + ?Sized>(src: &mut R, buf: &mut [u8]) -> (usize, Option<Short>) {
    let started = Instant::now();
    let mut n = 0;
    while n < buf.len() && (n == 0 || started.elapsed() < FILL_WAIT) {
        match src.read(&mut buf[n..]) {
            Ok(0) => return (n, Some(Short::End)),
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return (n, Some(Short::Failed(error))),
        }
    }
    (n, None)
}

/// Writes the data section's size prefix.
pub fn write_header<W: Write + ?Sized>(w: &mut W, len: u64) -> io::Result<()> {
    w.write_all(&frame::encode_header(len))
}

/// Reads the data section's size prefix and checks it against the size the reply announced.
pub fn read_header<R: Read + ?Sized>(r: &mut R, expected: u64) -> Result<u64, DataError> {
    let len = frame::read_header(r)?;
    if len != expected {
        return Err(DataError::SizeDisagrees { announced: expected, prefix: len });
    }
    Ok(len)
}

/// Writes the 16-byte raw trailer.
pub fn write_trailer<W: Write + ?Sized>(w: &mut W, digest: &Md5Digest) -> io::Result<()> {
    w.write_all(digest)
}

/// Reads the 16-byte raw trailer.
pub fn read_trailer<R: Read + ?Sized>(r: &mut R) -> Result<Md5Digest, DataError> {
    let mut d = [0u8; MD5_LEN];
    let got = frame::read_full(r, &mut d).map_err(FrameError::Io)?;
    if got != MD5_LEN {
        return Err(DataError::NoTrailer);
    }
    Ok(d)
}

/// What can go wrong receiving a data section.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("the data prefix says {prefix} bytes but the reply announced {announced}")]
    SizeDisagrees { announced: u64, prefix: u64 },
    #[error(transparent)]
    Copy(#[from] CopyError),
    #[error("the connection ended before the checksum trailer (the file may have changed while it was sent)")]
    NoTrailer,
}

/// Writes a whole data section for `len` bytes of `src`. `hasher` must already hold the bytes
/// before the offset (for a resumed transfer), so the trailer covers the whole file.
pub fn write_section<R: Read + ?Sized, W: Write + ?Sized>(
    w: &mut W,
    src: &mut R,
    len: u64,
    mut hasher: Md5,
    buf: &mut [u8],
) -> Result<Md5Digest, CopyError> {
    write_header(w, len).map_err(|error| CopyError::Write { done: 0, error })?;
    copy_hashed(src, w, len, &mut hasher, buf, &mut |_| true)?;
    let digest = finish(hasher);
    write_trailer(w, &digest).map_err(|error| CopyError::Write { done: len, error })?;
    Ok(digest)
}

/// The result of receiving a data section: the digest the sender put in the trailer and the
/// one computed here over the same bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub expected: Md5Digest,
    pub actual: Md5Digest,
}

impl Verdict {
    pub fn matches(&self) -> bool {
        self.expected == self.actual
    }
}

/// Reads a whole data section of `expected_len` bytes into `out`. `hasher` must already hold
/// the bytes this side has before the offset.
pub fn read_section<R: Read + ?Sized, W: Write + ?Sized>(
    r: &mut R,
    out: &mut W,
    expected_len: u64,
    mut hasher: Md5,
    buf: &mut [u8],
    progress: &mut dyn FnMut(u64) -> bool,
) -> Result<Verdict, DataError> {
    let len = read_header(r, expected_len)?;
    copy_hashed(r, out, len, &mut hasher, buf, progress)?;
    let expected = read_trailer(r)?;
    Ok(Verdict { expected, actual: finish(hasher) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    use crate::protocol::test_io::{OneByte, ResetAfter};

    // Known answers from RFC 1321's test suite.
    #[test]
    fn md5_known_answers() {
        assert_eq!(super::super::hex(&md5_of(b"")), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(super::super::hex(&md5_of(b"abc")), "900150983cd24fb0d6963f7d28e17f72");
    }

    #[test]
    fn section_layout_is_prefix_bytes_raw_trailer() {
        let mut wire = Vec::new();
        let d = write_section(&mut wire, &mut &b"abc"[..], 3, Md5::new(), &mut [0; 2]).unwrap();
        assert_eq!(&wire[..8], &[0, 0, 0, 0, 0, 0, 0, 3]);
        assert_eq!(&wire[8..11], b"abc");
        assert_eq!(&wire[11..], &d);
        assert_eq!(wire.len(), 8 + 3 + 16);
    }

    #[test]
    fn section_round_trip_one_byte_at_a_time() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let mut wire = Vec::new();
        write_section(&mut wire, &mut &data[..], data.len() as u64, Md5::new(), &mut [0; 333]).unwrap();
        let mut out = Vec::new();
        let v = read_section(
            &mut OneByte(Cursor::new(wire)),
            &mut out,
            data.len() as u64,
            Md5::new(),
            &mut [0; 64],
            &mut |_| true,
        )
        .unwrap();
        assert!(v.matches());
        assert_eq!(v.actual, md5_of(&data));
        assert_eq!(out, data);
    }

    #[test]
    fn resumed_section_trailer_covers_the_whole_file() {
        let data = b"0123456789abcdef";
        let offset = 6;
        let mut wire = Vec::new();
        let sender_prefix = Md5::new_with_prefix(&data[..offset]);
        write_section(&mut wire, &mut &data[offset..], (data.len() - offset) as u64, sender_prefix, &mut [0; 4])
            .unwrap();
        assert_eq!(&wire[wire.len() - 16..], &md5_of(data));
        let mut out = data[..offset].to_vec();
        let receiver_prefix = Md5::new_with_prefix(&out);
        let v =
            read_section(&mut Cursor::new(wire), &mut out, 10, receiver_prefix, &mut [0; 4], &mut |_| true).unwrap();
        assert!(v.matches());
        assert_eq!(out, data);
    }

    #[test]
    fn a_flipped_byte_in_flight_is_a_mismatch() {
        let mut wire = Vec::new();
        write_section(&mut wire, &mut &b"important"[..], 9, Md5::new(), &mut [0; 16]).unwrap();
        wire[10] ^= 0x01;
        let v =
            read_section(&mut Cursor::new(wire), &mut Vec::new(), 9, Md5::new(), &mut [0; 16], &mut |_| true).unwrap();
        assert!(!v.matches());
        assert_eq!(v.expected, md5_of(b"important"));
    }

    #[test]
    fn prefix_disagreeing_with_announced_size_is_an_error() {
        let mut wire = Vec::new();
        write_section(&mut wire, &mut &b"abc"[..], 3, Md5::new(), &mut [0; 16]).unwrap();
        let err = read_section(&mut Cursor::new(wire), &mut Vec::new(), 4, Md5::new(), &mut [0; 16], &mut |_| true)
            .unwrap_err();
        assert!(matches!(err, DataError::SizeDisagrees { announced: 4, prefix: 3 }), "{err:?}");
    }

    #[test]
    fn a_source_read_in_pieces_fills_the_whole_buffer() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 256) as u8).collect();
        let mut src = OneByte(Cursor::new(&data));
        let mut buf = [0u8; 300];
        let (n, short) = fill(&mut src, &mut buf);
        assert!(short.is_none());
        assert_eq!(&buf[..n], &data[..300]);
        let mut rest = [0u8; 800];
        let (n, short) = fill(&mut src, &mut rest);
        assert!(matches!(short, Some(Short::End)));
        assert_eq!(&rest[..n], &data[300..]);
    }

    #[test]
    fn bytes_read_before_a_failure_are_returned_with_it() {
        let mut buf = [0u8; 64];
        let (n, short) = fill(&mut ResetAfter(5), &mut buf);
        assert_eq!((n, &buf[..n]), (5, &b"xxxxx"[..]));
        let err = short.unwrap().into_copy_error(5, 64);
        assert!(
            matches!(&err, CopyError::Read { done: 5, error } if error.kind() == io::ErrorKind::ConnectionReset),
            "{err:?}"
        );
    }

    #[test]
    fn stream_ending_inside_the_bytes_is_incomplete() {
        let mut wire = Vec::new();
        write_section(&mut wire, &mut &b"abcdef"[..], 6, Md5::new(), &mut [0; 16]).unwrap();
        wire.truncate(8 + 4);
        let err = read_section(&mut Cursor::new(wire), &mut Vec::new(), 6, Md5::new(), &mut [0; 16], &mut |_| true)
            .unwrap_err();
        assert!(matches!(err, DataError::Copy(CopyError::Incomplete { done: 4, expected: 6 })), "{err:?}");
    }

    #[test]
    fn stream_ending_inside_the_trailer_is_no_trailer() {
        let mut wire = Vec::new();
        write_section(&mut wire, &mut &b"abcdef"[..], 6, Md5::new(), &mut [0; 16]).unwrap();
        wire.truncate(wire.len() - 1);
        let err = read_section(&mut Cursor::new(wire), &mut Vec::new(), 6, Md5::new(), &mut [0; 16], &mut |_| true)
            .unwrap_err();
        assert!(matches!(err, DataError::NoTrailer), "{err:?}");
    }

    #[test]
    fn sender_refuses_to_pad_a_source_that_shrank() {
        let err = write_section(&mut Vec::new(), &mut &b"abc"[..], 10, Md5::new(), &mut [0; 16]).unwrap_err();
        assert!(matches!(err, CopyError::Incomplete { done: 3, expected: 10 }), "{err:?}");
    }

    #[test]
    fn progress_returning_false_cancels() {
        let data = [1u8; 100];
        let mut seen = Vec::new();
        let err = copy_hashed(&mut &data[..], &mut Vec::new(), 100, &mut Md5::new(), &mut [0; 30], &mut |d| {
            seen.push(d);
            d < 60
        })
        .unwrap_err();
        assert!(matches!(err, CopyError::Cancelled { done: 60 }));
        assert_eq!(seen, [30, 60]);
    }

    #[test]
    fn empty_section_is_prefix_and_trailer_only() {
        let mut wire = Vec::new();
        write_section(&mut wire, &mut &b""[..], 0, Md5::new(), &mut [0; 16]).unwrap();
        assert_eq!(wire.len(), 24);
        let v =
            read_section(&mut Cursor::new(wire), &mut Vec::new(), 0, Md5::new(), &mut [0; 16], &mut |_| true).unwrap();
        assert_eq!(super::super::hex(&v.actual), "d41d8cd98f00b204e9800998ecf8427e");
        assert!(v.matches());
    }
}
