//! Answering `get`: the reply, then one data section (size prefix, bytes, MD5 trailer).
//!
//! Three paths, one wire format:
//! - **small, cold or warm** (under 1 MiB): read the file into one reusable buffer behind the
//!   reply and the data prefix, hash it inline (unless the digest is remembered), append the
//!   trailer: a small file costs one write and never waits on Nagle's algorithm.
//! - **large, cold** (digest unknown): this thread reads each 256 KiB chunk and hands it to a
//!   hashing thread ([`crate::pipeline::HashPipe`]), while the same range goes to the socket by
//!   `sendfile(2)` on Linux, so the bytes are not copied through user space a second time
//!   (elsewhere they are written from the same buffer).
//! - **large, warm** (digest remembered for this exact file version, see
//!   [`super::index`]): `sendfile` only, zero-copy and without hashing (Linux; elsewhere
//!   the small-file path without hashing).
//!
//! On an encrypted connection (the default) the bytes must pass through TLS, so `sendfile` is
//! used only on plain ones; the encrypted paths write from the same buffers instead.
//!
//! Whatever the path, if the file changes while it is being sent (its size or change times
//! differ at the end), the connection is closed before the trailer: the client sees an
//! incomplete transfer rather than a digest that may not describe what it received.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::index::FileKey;
use super::reply::{self, BUF_LEN, Who, encode_ok, send_all};
use super::{ClientId, Root, ServerEvent, Shared, TransferId};
use crate::pipeline::{self, HashPipe};
use crate::protocol::data::{self, CopyError, Digest, Md5};
use crate::protocol::message::{ErrorCode, ErrorReply, GetReply};
use crate::protocol::path::Escaped;
use crate::protocol::{MD5_LEN, Md5Digest, frame};
use crate::transport::Stream;

/// Files at least this large go out by `sendfile` when their digest is known.
#[cfg(target_os = "linux")]
const ZERO_COPY_MIN: u64 = 1024 * 1024;
/// Bytes per `sendfile` call, so progress and stop requests are seen regularly.
#[cfg(target_os = "linux")]
const ZERO_COPY_CHUNK: u64 = 8 * 1024 * 1024;
/// At most ~20 progress events a second per transfer.
const PROGRESS_EVERY: Duration = Duration::from_millis(50);

pub(super) struct GetRequest<'a> {
    pub client: ClientId,
    pub peer: SocketAddr,
    pub path: &'a str,
    pub offset: u64,
}

/// Whether the connection can go on after a `get`.
pub(super) enum GetEnd {
    Continue,
    Close(String),
}

struct Progress<'a> {
    shared: &'a Shared,
    transfer: TransferId,
    total: u64,
    last: Instant,
    /// Whether the transfer's start was reported (else its progress is not either).
    reported: bool,
}

impl Progress<'_> {
    fn update(&mut self, done: u64) {
        if self.reported && self.last.elapsed() >= PROGRESS_EVERY {
            self.last = Instant::now();
            self.shared.sink.send(ServerEvent::TransferProgress { transfer: self.transfer, done, total: self.total });
        }
    }
}

/// Why sending stopped early. All of them close the connection: the data section cannot be
/// abandoned half-way without breaking the framing.
enum Abort {
    Shrank { sent: u64, expected: u64 },
    Changed,
    Read(io::Error),
    Write(io::Error),
    Stopping,
}

impl Abort {
    fn describe(&self) -> String {
        match self {
            Abort::Shrank { sent, expected } => {
                format!("the file shrank while it was sent ({sent} of {expected} bytes); connection closed")
            }
            Abort::Changed => "the file changed while it was sent; connection closed before the checksum".into(),
            Abort::Read(e) => format!("reading the file failed: {e}"),
            Abort::Write(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                "the client stopped reading (timed out)".into()
            }
            Abort::Write(e) => format!("the client went away: {e}"),
            Abort::Stopping => "server stopped".into(),
        }
    }
}

pub(super) fn handle_get(
    shared: &Shared,
    root: &Root,
    stream: &mut Stream,
    out: &mut Vec<u8>,
    buf: &mut Vec<u8>,
    req: GetRequest<'_>,
) -> GetEnd {
    let GetRequest { client, peer, path, offset } = req;
    let refuse = |stream: &mut Stream, out: &mut Vec<u8>, e: ErrorReply| match reply::refuse(
        shared,
        stream,
        out,
        Who { client, peer },
        format!("get {}", Escaped(path)),
        &e,
    ) {
        Ok(()) => GetEnd::Continue,
        Err(e) => GetEnd::Close(format!("cannot answer: {e}")),
    };
    let opened = match root.open_file(path) {
        Ok(o) => o,
        Err(e) => return refuse(stream, out, e.to_reply()),
    };
    let size = opened.meta.len();
    if offset > size {
        let msg = format!("offset {offset} is beyond the end of the file ({size} bytes)");
        return refuse(stream, out, ErrorReply::new(ErrorCode::BadRequest, msg));
    }
    let key = FileKey::of(&opened.file, &opened.meta);
    let cached = shared.indexer().and_then(|i| i.index.get(&key));
    // The indexing worker waits while this file is sent.
    let _sending = shared.indexer().map(|i| i.sending());
    let transfer = shared.next_transfer.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // If the front is too far behind to hear of this transfer, it is not told of its progress
    // or its end either.
    let reported = shared.sink.offer(ServerEvent::TransferStarted {
        client,
        transfer,
        peer,
        path: path.to_string(),
        size,
        offset,
        warm: cached.is_some(),
    });
    let started = Instant::now();
    let mut end = TransferEnd { shared, transfer, ended: !reported };
    #[cfg(test)]
    crate::sink::panic_if_injected(path);

    // The reply and the data prefix, ready to go out with the first bytes.
    encode_ok(out, &GetReply { size, offset });
    out.extend_from_slice(&frame::encode_header(size - offset));

    let mut job = Sending {
        shared,
        stream,
        file: opened.file,
        key,
        size,
        offset,
        progress: Progress { shared, transfer, total: size, last: Instant::now(), reported },
    };
    let result = match cached {
        #[cfg(target_os = "linux")]
        Some(digest) if size - offset >= ZERO_COPY_MIN && !job.stream.is_tls() => job.zero_copy(out, digest),
        None if size >= pipeline::MIN_PIPELINED => job.pipelined(out),
        _ => job.buffered(out, buf, cached),
    };
    match result {
        Ok(md5) => {
            if cached.is_none()
                && let Some(i) = shared.indexer()
            {
                i.index.insert(&key, md5);
            }
            if reported {
                shared.sink.send(ServerEvent::TransferProgress { transfer, done: size, total: size });
                shared.sink.send(ServerEvent::TransferFinished {
                    transfer,
                    md5,
                    sent: size - offset,
                    elapsed: started.elapsed(),
                });
            }
            end.ended = true;
            GetEnd::Continue
        }
        Err(abort) => {
            let error = abort.describe();
            if reported {
                shared.sink.send(ServerEvent::TransferFailed { transfer, error: error.clone() });
            }
            end.ended = true;
            GetEnd::Close(error)
        }
    }
}

/// A started transfer ends in exactly one `TransferFinished` or `TransferFailed`: if the thread
/// panics before either is sent, dropping this sends `TransferFailed`.
struct TransferEnd<'a> {
    shared: &'a Shared,
    transfer: TransferId,
    ended: bool,
}

impl Drop for TransferEnd<'_> {
    fn drop(&mut self) {
        if !self.ended {
            let error = "internal error: the connection's thread panicked".to_string();
            self.shared.sink.send(ServerEvent::TransferFailed { transfer: self.transfer, error });
        }
    }
}

/// One file on its way out: what every sending path needs.
struct Sending<'a> {
    shared: &'a Shared,
    stream: &'a mut Stream,
    file: File,
    /// The version of the file that was opened; a different one at the end aborts the send.
    key: FileKey,
    size: u64,
    offset: u64,
    progress: Progress<'a>,
}

impl Sending<'_> {
    fn unchanged(&self) -> bool {
        self.file.metadata().map(|m| FileKey::of(&self.file, &m) == self.key).unwrap_or(false)
    }

    /// After each chunk: report progress, and give up if the server is stopping.
    fn sent_up_to(&mut self, pos: u64) -> Result<(), Abort> {
        self.progress.update(pos);
        if self.shared.is_stopping() { Err(Abort::Stopping) } else { Ok(()) }
    }

    /// Small files, or a known digest without `sendfile`: one buffer, the head leading the
    /// first write, hashing inline unless the digest is `cached`.
    fn buffered(&mut self, head: &[u8], buf: &mut Vec<u8>, cached: Option<Md5Digest>) -> Result<Md5Digest, Abort> {
        let (size, offset) = (self.size, self.offset);
        if buf.is_empty() {
            buf.resize(BUF_LEN, 0);
        }
        let mut hasher = match cached {
            Some(_) => None,
            None => Some(Md5::new()),
        };
        if offset > 0 {
            match hasher.as_mut() {
                Some(h) => hash_prefix(&mut self.file, offset, h, buf)?,
                None => {
                    self.file.seek(SeekFrom::Start(offset)).map_err(Abort::Read)?;
                }
            }
        }
        let len = size - offset;
        // The head (reply + data prefix) is small; it leads the first write.
        buf[..head.len()].copy_from_slice(head);
        let mut filled = head.len();
        let mut done = 0u64;
        loop {
            // Fill the buffer from the file (usually one read), hashing what arrives.
            while done < len && filled < buf.len() {
                let want = ((len - done) as usize).min(buf.len() - filled);
                let n = match self.file.read(&mut buf[filled..filled + want]) {
                    Ok(0) => {
                        let _ = send_all(self.stream, &buf[..filled]);
                        return Err(Abort::Shrank { sent: offset + done, expected: size });
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(Abort::Read(e)),
                };
                if let Some(h) = hasher.as_mut() {
                    h.update(&buf[filled..filled + n]);
                }
                filled += n;
                done += n as u64;
                if filled >= buf.len() / 2 {
                    break;
                }
            }
            if done == len {
                if !self.unchanged() {
                    let _ = send_all(self.stream, &buf[..filled]);
                    return Err(Abort::Changed);
                }
                let digest = match (hasher.take(), cached) {
                    (Some(h), _) => data::finish(h),
                    (None, Some(d)) => d,
                    (None, None) => unreachable!("either hashing or cached"),
                };
                if filled + MD5_LEN <= buf.len() {
                    buf[filled..filled + MD5_LEN].copy_from_slice(&digest);
                    send_all(self.stream, &buf[..filled + MD5_LEN]).map_err(Abort::Write)?;
                } else {
                    send_all(self.stream, &buf[..filled]).map_err(Abort::Write)?;
                    send_all(self.stream, &digest).map_err(Abort::Write)?;
                }
                return Ok(digest);
            }
            send_all(self.stream, &buf[..filled]).map_err(Abort::Write)?;
            filled = 0;
            self.sent_up_to(offset + done)?;
        }
    }

    /// Cold path for large files: a hashing thread digests what this thread reads, while the
    /// bytes themselves go to the socket by `sendfile` on Linux (elsewhere: by `write`).
    fn pipelined(&mut self, head: &[u8]) -> Result<Md5Digest, Abort> {
        let (size, offset) = (self.size, self.offset);
        let pipe = HashPipe::spawn(Md5::new(), BUF_LEN).map_err(Abort::Read)?;
        let mut pos = 0u64;
        let mut sending = false;
        while pos < size {
            if pos == offset && !sending {
                // Everything before the offset is hashed (a resumed transfer); now send.
                send_all(self.stream, head).map_err(Abort::Write)?;
                sending = true;
            }
            let mut buf = pipe.take();
            let limit = if sending { size } else { offset };
            let want = (limit - pos).min(buf.len() as u64) as usize;
            let n = loop {
                match read_at(&mut self.file, &mut buf[..want], pos) {
                    Ok(0) => return Err(Abort::Shrank { sent: pos.max(offset), expected: size }),
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(Abort::Read(e)),
                }
            };
            if sending {
                #[cfg(target_os = "linux")]
                let zero_copy = !self.stream.is_tls();
                #[cfg(not(target_os = "linux"))]
                let zero_copy = false;
                if zero_copy {
                    pipe.hash(buf, n);
                    #[cfg(target_os = "linux")]
                    sendfile_exact(self.stream.tcp(), &self.file, pos, n as u64, size)?;
                } else {
                    // Encrypted (or no sendfile): written from the buffer the hasher gets next.
                    send_all(self.stream, &buf[..n]).map_err(Abort::Write)?;
                    pipe.hash(buf, n);
                }
                self.sent_up_to(pos + n as u64)?;
            } else {
                pipe.hash(buf, n);
            }
            pos += n as u64;
        }
        if !sending {
            // An empty remainder (offset == size): the head still goes out.
            send_all(self.stream, head).map_err(Abort::Write)?;
        }
        let digest = pipe.finish();
        if !self.unchanged() {
            return Err(Abort::Changed);
        }
        send_all(self.stream, &digest).map_err(Abort::Write)?;
        Ok(digest)
    }

    /// Warm path for large files on Linux: the digest is known, the bytes go by `sendfile` only.
    #[cfg(target_os = "linux")]
    fn zero_copy(&mut self, head: &[u8], digest: Md5Digest) -> Result<Md5Digest, Abort> {
        send_all(self.stream, head).map_err(Abort::Write)?;
        let mut pos = self.offset;
        while pos < self.size {
            let count = (self.size - pos).min(ZERO_COPY_CHUNK);
            sendfile_exact(self.stream.tcp(), &self.file, pos, count, self.size)?;
            pos += count;
            self.sent_up_to(pos)?;
        }
        if !self.unchanged() {
            return Err(Abort::Changed);
        }
        send_all(self.stream, &digest).map_err(Abort::Write)?;
        Ok(digest)
    }
}

/// Reads at `pos` without relying on the file's own position where the system allows it.
#[cfg(unix)]
fn read_at(file: &mut File, buf: &mut [u8], pos: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, pos)
}

#[cfg(not(unix))]
fn read_at(file: &mut File, buf: &mut [u8], pos: u64) -> io::Result<usize> {
    file.seek(SeekFrom::Start(pos))?;
    file.read(buf)
}

/// Reads and hashes the bytes before `offset` (a resumed transfer), leaving the file there.
fn hash_prefix(file: &mut File, offset: u64, hasher: &mut Md5, buf: &mut [u8]) -> Result<(), Abort> {
    data::copy_hashed(file, &mut io::sink(), offset, hasher, buf, &mut |_| true).map_err(|e| match e {
        CopyError::Read { error, .. } => Abort::Read(error),
        _ => Abort::Shrank { sent: 0, expected: offset },
    })
}

/// Sends exactly `count` bytes of `file` from `pos` with `sendfile(2)`: no copy through user
/// space. A file that ends early is reported as shrunk.
#[cfg(target_os = "linux")]
fn sendfile_exact(stream: &std::net::TcpStream, file: &File, pos: u64, count: u64, size: u64) -> Result<(), Abort> {
    use rustix::io::Errno;
    let mut off = pos;
    let end = pos + count;
    while off < end {
        let want = usize::try_from(end - off).unwrap_or(usize::MAX);
        // `off` is advanced by the call; the file's own position is left alone.
        match rustix::fs::sendfile(stream, file, Some(&mut off), want) {
            Ok(0) => return Err(Abort::Shrank { sent: off, expected: size }),
            Ok(_) => {}
            Err(Errno::INTR) => {}
            // SO_SNDTIMEO expired: the client stopped reading.
            Err(Errno::AGAIN) => return Err(Abort::Write(io::ErrorKind::TimedOut.into())),
            Err(e) => return Err(Abort::Write(e.into())),
        }
    }
    Ok(())
}
