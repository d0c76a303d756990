//! Answering `get`: the reply, then one data section (size prefix, bytes, MD5 trailer).
//!
//! Three paths, one wire format:
//! - **small, cold or warm** (under 1 MiB): read the file into one reusable buffer behind the
//!   reply and the data prefix, hash it inline (unless the digest is remembered), append the
//!   trailer: a small file costs one write and never waits on Nagle's algorithm.
//! - **large, cold** (digest unknown): this thread reads each 256 KiB chunk and hands it to a
//!   hashing thread ([`crate::pipeline::HashPipe`]), while the same range goes to the socket by
//!   `sendfile(2)`, so the bytes are not copied through user space a second time.
//! - **large, warm** (digest remembered for this exact file version, see
//!   [`super::digest_cache`]): `sendfile` only, zero-copy and without hashing.
//!
//! Whatever the path, if the file changes while it is being sent (its size or change times
//! differ at the end), the connection is closed before the trailer: the client sees an
//! incomplete transfer rather than a digest that may not describe what it received.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::conn::{BUF_LEN, encode_ok};
use super::digest_cache::FileKey;
use super::{ClientId, Root, ServerEvent, Shared, TransferId, send_all};
use crate::pipeline::{self, HashPipe};
use crate::protocol::data::{self, CopyError, Digest, Md5};
use crate::protocol::message::{ErrorCode, ErrorReply, GetReply};
use crate::protocol::path::Escaped;
use crate::protocol::{MD5_LEN, Md5Digest, frame};

/// Files at least this large go out by `sendfile` when their digest is known.
const ZERO_COPY_MIN: u64 = 1024 * 1024;
/// Bytes per `sendfile` call, so progress and stop requests are seen regularly.
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
}

impl Progress<'_> {
    fn update(&mut self, done: u64) {
        if self.last.elapsed() >= PROGRESS_EVERY {
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
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    buf: &mut Vec<u8>,
    req: GetRequest<'_>,
) -> GetEnd {
    let GetRequest { client, peer, path, offset } = req;
    let refuse = |stream: &mut TcpStream, out: &mut Vec<u8>, e: ErrorReply| match super::conn::refuse(
        shared,
        stream,
        out,
        (client, peer),
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
    let key = FileKey::of(&opened.meta);
    let cached = shared.digests.get(&key);
    let transfer = shared.next_transfer.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    shared.sink.send(ServerEvent::TransferStarted { client, transfer, peer, path: path.to_string(), size, offset });
    let started = Instant::now();
    let mut progress = Progress { shared, transfer, total: size, last: Instant::now() };

    // The reply and the data prefix, ready to go out with the first bytes.
    encode_ok(out, &GetReply { size, offset });
    out.extend_from_slice(&frame::encode_header(size - offset));

    let mut file = opened.file;
    let result = match cached {
        #[cfg(target_os = "linux")]
        Some(digest) if size - offset >= ZERO_COPY_MIN => {
            send_zero_copy(shared, stream, out, &mut file, key, size, offset, digest, &mut progress)
        }
        None if size >= pipeline::MIN_PIPELINED => {
            send_pipelined(shared, stream, out, &mut file, key, size, offset, &mut progress)
        }
        _ => send_buffered(shared, stream, out, buf, &mut file, key, size, offset, cached, &mut progress),
    };
    match result {
        Ok(md5) => {
            shared.digests.insert(key, md5);
            shared.sink.send(ServerEvent::TransferProgress { transfer, done: size, total: size });
            shared.sink.send(ServerEvent::TransferFinished {
                transfer,
                md5,
                sent: size - offset,
                elapsed: started.elapsed(),
            });
            GetEnd::Continue
        }
        Err(abort) => {
            let error = abort.describe();
            shared.sink.send(ServerEvent::TransferFailed { transfer, error: error.clone() });
            GetEnd::Close(error)
        }
    }
}

fn unchanged(file: &File, key: FileKey) -> bool {
    file.metadata().map(|m| FileKey::of(&m) == key).unwrap_or(false)
}

/// Reads and hashes the bytes before `offset` (a resumed transfer), leaving the file there.
fn hash_prefix(file: &mut File, offset: u64, hasher: &mut Md5, buf: &mut [u8]) -> Result<(), Abort> {
    data::copy_hashed(file, &mut io::sink(), offset, hasher, buf, &mut |_| true).map_err(|e| match e {
        CopyError::Read { error, .. } => Abort::Read(error),
        _ => Abort::Shrank { sent: 0, expected: offset },
    })
}

#[allow(clippy::too_many_arguments)]
fn send_buffered(
    shared: &Shared,
    stream: &mut TcpStream,
    head: &[u8],
    buf: &mut Vec<u8>,
    file: &mut File,
    key: FileKey,
    size: u64,
    offset: u64,
    cached: Option<Md5Digest>,
    progress: &mut Progress<'_>,
) -> Result<Md5Digest, Abort> {
    if buf.is_empty() {
        buf.resize(BUF_LEN, 0);
    }
    let mut hasher = match cached {
        Some(_) => None,
        None => Some(Md5::new()),
    };
    if offset > 0 {
        match hasher.as_mut() {
            Some(h) => hash_prefix(file, offset, h, buf)?,
            None => {
                file.seek(SeekFrom::Start(offset)).map_err(Abort::Read)?;
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
            let n = match file.read(&mut buf[filled..filled + want]) {
                Ok(0) => {
                    let _ = send_all(stream, &buf[..filled]);
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
            if !unchanged(file, key) {
                let _ = send_all(stream, &buf[..filled]);
                return Err(Abort::Changed);
            }
            let digest = match (hasher.take(), cached) {
                (Some(h), _) => data::finish(h),
                (None, Some(d)) => d,
                (None, None) => unreachable!("either hashing or cached"),
            };
            if filled + MD5_LEN <= buf.len() {
                buf[filled..filled + MD5_LEN].copy_from_slice(&digest);
                send_all(stream, &buf[..filled + MD5_LEN]).map_err(Abort::Write)?;
            } else {
                send_all(stream, &buf[..filled]).map_err(Abort::Write)?;
                send_all(stream, &digest).map_err(Abort::Write)?;
            }
            return Ok(digest);
        }
        send_all(stream, &buf[..filled]).map_err(Abort::Write)?;
        filled = 0;
        progress.update(offset + done);
        if shared.is_stopping() {
            return Err(Abort::Stopping);
        }
    }
}

/// Sends exactly `count` bytes of `file` from `pos` with `sendfile(2)`: no copy through user
/// space. A file that ends early is reported as shrunk.
#[cfg(target_os = "linux")]
fn sendfile_exact(stream: &TcpStream, file: &File, pos: u64, count: u64, size: u64) -> Result<(), Abort> {
    use std::os::fd::AsRawFd;
    let mut off = pos as libc::off_t;
    let end = pos + count;
    while (off as u64) < end {
        let want = (end - off as u64) as usize;
        // SAFETY: both descriptors are open for the duration of the call; `off` is a valid
        // off_t that sendfile advances (the file's own position is left alone).
        let n = unsafe { libc::sendfile(stream.as_raw_fd(), file.as_raw_fd(), &mut off, want) };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                // SO_SNDTIMEO expired: the client stopped reading.
                io::ErrorKind::WouldBlock => return Err(Abort::Write(io::ErrorKind::TimedOut.into())),
                _ => return Err(Abort::Write(e)),
            }
        }
        if n == 0 {
            return Err(Abort::Shrank { sent: off as u64, expected: size });
        }
    }
    Ok(())
}

/// Cold path for large files: a hashing thread digests what this thread reads, while the bytes
/// themselves go to the socket by `sendfile` (elsewhere: by `write`).
#[allow(clippy::too_many_arguments)]
fn send_pipelined(
    shared: &Shared,
    stream: &mut TcpStream,
    head: &[u8],
    file: &mut File,
    key: FileKey,
    size: u64,
    offset: u64,
    progress: &mut Progress<'_>,
) -> Result<Md5Digest, Abort> {
    use std::os::unix::fs::FileExt;
    let pipe = HashPipe::spawn(Md5::new(), BUF_LEN).map_err(Abort::Read)?;
    let mut pos = 0u64;
    let mut sending = false;
    while pos < size {
        if pos == offset && !sending {
            // Everything before the offset is hashed (a resumed transfer); now send.
            send_all(stream, head).map_err(Abort::Write)?;
            sending = true;
        }
        let mut buf = pipe.take();
        let limit = if sending { size } else { offset };
        let want = (limit - pos).min(buf.len() as u64) as usize;
        let n = loop {
            match file.read_at(&mut buf[..want], pos) {
                Ok(0) => return Err(Abort::Shrank { sent: pos.max(offset), expected: size }),
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Abort::Read(e)),
            }
        };
        if sending {
            #[cfg(target_os = "linux")]
            {
                pipe.hash(buf, n);
                sendfile_exact(stream, file, pos, n as u64, size)?;
            }
            #[cfg(not(target_os = "linux"))]
            {
                send_all(stream, &buf[..n]).map_err(Abort::Write)?;
                pipe.hash(buf, n);
            }
            progress.update(pos + n as u64);
            if shared.is_stopping() {
                return Err(Abort::Stopping);
            }
        } else {
            pipe.hash(buf, n);
        }
        pos += n as u64;
    }
    if !sending {
        // An empty remainder (offset == size): the head still goes out.
        send_all(stream, head).map_err(Abort::Write)?;
    }
    let digest = pipe.finish();
    if !unchanged(file, key) {
        return Err(Abort::Changed);
    }
    send_all(stream, &digest).map_err(Abort::Write)?;
    Ok(digest)
}

#[cfg(target_os = "linux")]
#[allow(clippy::too_many_arguments)]
fn send_zero_copy(
    shared: &Shared,
    stream: &mut TcpStream,
    head: &[u8],
    file: &mut File,
    key: FileKey,
    size: u64,
    offset: u64,
    digest: Md5Digest,
    progress: &mut Progress<'_>,
) -> Result<Md5Digest, Abort> {
    send_all(stream, head).map_err(Abort::Write)?;
    let mut pos = offset;
    while pos < size {
        let count = (size - pos).min(ZERO_COPY_CHUNK);
        sendfile_exact(stream, file, pos, count, size)?;
        pos += count;
        progress.update(pos);
        if shared.is_stopping() {
            return Err(Abort::Stopping);
        }
    }
    if !unchanged(file, key) {
        return Err(Abort::Changed);
    }
    send_all(stream, &digest).map_err(Abort::Write)?;
    Ok(digest)
}
