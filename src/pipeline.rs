//! Hashing off the I/O path: a named MD5 thread fed by the thread that moves the bytes.
//!
//! The I/O thread takes an empty buffer, fills it (from the socket or the file), hands it to
//! the hashing thread and takes the next empty one. A small fixed pool of buffers circulates
//! between the two, so memory stays flat whatever the file size and nothing is allocated per
//! chunk. On separate machines this makes a transfer run at the slower of the network and MD5,
//! instead of at their combined cost.

use std::io::{self, Read, Write};
use std::thread::{self, JoinHandle};

use crossbeam_channel::{Receiver, Sender, bounded};

use crate::protocol::Md5Digest;
use crate::protocol::data::{self, CopyError, Digest, Md5};

/// Buffers in flight between the I/O thread and the hashing thread.
pub const BUFFERS: usize = 4;
/// Transfers at least this long are worth a hashing thread; shorter ones hash inline.
pub const MIN_PIPELINED: u64 = 1024 * 1024;

/// A hashing thread and its pool of buffers.
pub struct HashPipe {
    full: Option<Sender<(Vec<u8>, usize)>>,
    empty: Receiver<Vec<u8>>,
    worker: Option<JoinHandle<Md5>>,
}

impl HashPipe {
    /// Starts a hashing thread that continues `hasher` (which may already hold a prefix).
    pub fn spawn(hasher: Md5, buffer_len: usize) -> io::Result<HashPipe> {
        let (full_tx, full_rx) = bounded::<(Vec<u8>, usize)>(BUFFERS);
        let (empty_tx, empty_rx) = bounded::<Vec<u8>>(BUFFERS);
        for _ in 0..BUFFERS {
            empty_tx.send(vec![0u8; buffer_len]).expect("room for every buffer");
        }
        let worker = thread::Builder::new().name("ferry-md5".into()).spawn(move || {
            let mut hasher = hasher;
            for (buf, n) in full_rx {
                hasher.update(&buf[..n]);
                // The I/O side may have given up already; then the buffer is simply freed.
                let _ = empty_tx.send(buf);
            }
            hasher
        })?;
        Ok(HashPipe { full: Some(full_tx), empty: empty_rx, worker: Some(worker) })
    }

    /// An empty buffer (waits while all of them are being hashed).
    pub fn take(&self) -> Vec<u8> {
        self.empty.recv().expect("the hashing thread returns every buffer")
    }

    /// Hands the first `n` bytes of `buf` to the hashing thread.
    pub fn hash(&self, buf: Vec<u8>, n: usize) {
        if let Some(tx) = &self.full {
            tx.send((buf, n)).expect("the hashing thread is alive");
        }
    }

    /// Waits for every queued buffer to be hashed and returns the digest.
    pub fn finish(mut self) -> Md5Digest {
        self.full.take();
        let hasher = self.worker.take().expect("finish once").join().expect("the hashing thread does not panic");
        data::finish(hasher)
    }
}

impl Drop for HashPipe {
    fn drop(&mut self) {
        self.full.take();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

/// [`data::copy_hashed`] with the hashing on its own thread: copies exactly `len` bytes from
/// `src` to `dst` and returns the digest of `hasher`'s prefix plus those bytes.
pub fn copy_pipelined<R: Read + ?Sized, W: Write + ?Sized>(
    src: &mut R,
    dst: &mut W,
    len: u64,
    hasher: Md5,
    buffer_len: usize,
    progress: &mut dyn FnMut(u64) -> bool,
) -> Result<Md5Digest, CopyError> {
    let pipe = HashPipe::spawn(hasher, buffer_len).map_err(|error| CopyError::Read { done: 0, error })?;
    let mut done = 0u64;
    while done < len {
        let mut buf = pipe.take();
        let want = (len - done).min(buf.len() as u64) as usize;
        // What arrived before a failure is written too (a later resume starts after it).
        let (n, short) = data::fill(src, &mut buf[..want]);
        dst.write_all(&buf[..n]).map_err(|error| CopyError::Write { done, error })?;
        pipe.hash(buf, n);
        done += n as u64;
        if let Some(short) = short {
            return Err(short.into_copy_error(done, len));
        }
        if !progress(done) {
            return Err(CopyError::Cancelled { done });
        }
    }
    Ok(pipe.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelined_copy_matches_inline_hashing() {
        let data: Vec<u8> = (0..3_000_001u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let mut out = Vec::new();
        let prefix = b"already here";
        let digest = copy_pipelined(
            &mut &data[..],
            &mut out,
            data.len() as u64,
            Md5::new_with_prefix(prefix),
            64 * 1024,
            &mut |_| true,
        )
        .unwrap();
        let mut whole = prefix.to_vec();
        whole.extend_from_slice(&data);
        assert_eq!(digest, data::md5_of(&whole));
        assert_eq!(out, data);
    }

    #[test]
    fn pipelined_copy_writes_whole_buffers_from_a_source_read_in_pieces() {
        /// Records each write's length.
        struct Writes(Vec<usize>, Vec<u8>);
        impl Write for Writes {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.push(buf.len());
                self.1.extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 256) as u8).collect();
        let mut src = crate::protocol::test_io::OneByte(&data[..]);
        let mut out = Writes(Vec::new(), Vec::new());
        let mut seen = Vec::new();
        let digest = copy_pipelined(&mut src, &mut out, 1000, Md5::new(), 300, &mut |d| {
            seen.push(d);
            true
        })
        .unwrap();
        assert_eq!(out.0, [300, 300, 300, 100]);
        assert_eq!(seen, [300, 600, 900, 1000]);
        assert_eq!((digest, out.1), (data::md5_of(&data), data));
    }

    #[test]
    fn pipelined_copy_keeps_what_arrived_before_the_source_failed() {
        let mut out = Vec::new();
        let src = &mut crate::protocol::test_io::ResetAfter(10);
        let err = copy_pipelined(src, &mut out, 100, Md5::new(), 64, &mut |_| true).unwrap_err();
        assert!(matches!(err, CopyError::Read { done: 10, .. }), "{err:?}");
        assert_eq!(out, [b'x'; 10], "a resume starts after them");
    }

    #[test]
    fn pipelined_copy_reports_a_short_source() {
        let err = copy_pipelined(&mut &[1u8; 10][..], &mut Vec::new(), 20, Md5::new(), 4, &mut |_| true).unwrap_err();
        assert!(matches!(err, CopyError::Incomplete { done: 10, expected: 20 }), "{err:?}");
    }

    #[test]
    fn pipelined_copy_can_be_cancelled() {
        let err =
            copy_pipelined(&mut &[1u8; 100][..], &mut Vec::new(), 100, Md5::new(), 10, &mut |d| d < 30).unwrap_err();
        assert!(matches!(err, CopyError::Cancelled { done: 30 }), "{err:?}");
    }
}
