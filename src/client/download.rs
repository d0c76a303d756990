//! One download, on disk: `NAME.part` beside the destination, hashed as it is written, renamed
//! into place only after its MD5 matches the trailer (and after an fsync).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::{CancelToken, ClientError, Connection};
use crate::pipeline;
use crate::protocol::Md5Digest;
use crate::protocol::data::{self, CopyError, DataError, Digest, Md5, Verdict};
use crate::protocol::message::{ErrorCode, GetReply, Request};

/// What to download and where.
#[derive(Debug, Clone)]
pub struct DownloadRequest {
    /// The file's path on the host.
    pub path: String,
    /// The local file to create.
    pub dest: PathBuf,
    /// Replace `dest` if it exists (otherwise an existing file is never touched).
    pub overwrite: bool,
}

/// How a download that ran to its end turned out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The MD5 computed here equals the host's; the file is at `dest`.
    Verified {
        md5: Md5Digest,
        dest: PathBuf,
        size: u64,
        /// Bytes that were already in `NAME.part` (0 for a fresh download).
        resumed_from: u64,
    },
    /// The digests differ; no file was created under the final name and the `.part` is gone.
    Mismatch { expected: Md5Digest, actual: Md5Digest, size: u64 },
}

/// Bytes of the whole file that are on disk now, and the file's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
}

/// `dest` with `.part` appended to its file name.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".part");
    dest.with_file_name(name)
}

enum Attempt {
    Verdict {
        verdict: Verdict,
        size: u64,
        offset: u64,
        file: File,
    },
    /// The host refused our resume offset (the file is shorter than our `.part` now).
    OffsetRefused,
}

pub(super) fn download(
    conn: &mut Connection,
    req: &DownloadRequest,
    cancel: &CancelToken,
    progress: &mut dyn FnMut(Progress),
) -> Result<Outcome, ClientError> {
    cancel.attach(&conn.stream);
    let dest = &req.dest;
    if dest.file_name().is_none() {
        return Err(ClientError::BadDestination {
            path: dest.display().to_string(),
            reason: "it names no file".into(),
        });
    }
    if dest.is_dir() {
        return Err(ClientError::BadDestination { path: dest.display().to_string(), reason: "it is a folder".into() });
    }
    if !req.overwrite && fs::symlink_metadata(dest).is_ok() {
        return Err(ClientError::Exists(dest.clone()));
    }
    let part = part_path(dest);
    let mut restarted = false;
    loop {
        let offset = match fs::symlink_metadata(&part) {
            Ok(m) if m.is_file() => m.len(),
            Ok(_) => {
                return Err(ClientError::BadDestination {
                    path: part.display().to_string(),
                    reason: "it exists and is not a regular file".into(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(ClientError::local("cannot inspect", &part)(e)),
        };
        match attempt(conn, req, &part, offset, cancel, progress)? {
            Attempt::Verdict { verdict, size, offset, file } if verdict.matches() => {
                file.sync_all().map_err(ClientError::local("cannot flush", &part))?;
                drop(file);
                place(&part, dest, req.overwrite)?;
                return Ok(Outcome::Verified { md5: verdict.actual, dest: dest.clone(), size, resumed_from: offset });
            }
            Attempt::Verdict { verdict, size, offset, file } => {
                drop(file);
                fs::remove_file(&part).map_err(ClientError::local("cannot remove", &part))?;
                if offset > 0 && !restarted {
                    // The bytes we resumed on may be what is wrong: start once more from zero.
                    restarted = true;
                    continue;
                }
                return Ok(Outcome::Mismatch { expected: verdict.expected, actual: verdict.actual, size });
            }
            Attempt::OffsetRefused if !restarted => {
                restarted = true;
                fs::remove_file(&part).map_err(ClientError::local("cannot remove", &part))?;
            }
            Attempt::OffsetRefused => {
                return Err(ClientError::Protocol("the server refused a download from offset 0".into()));
            }
        }
    }
}

fn attempt(
    conn: &mut Connection,
    req: &DownloadRequest,
    part: &Path,
    offset: u64,
    cancel: &CancelToken,
    progress: &mut dyn FnMut(Progress),
) -> Result<Attempt, ClientError> {
    if cancel.is_cancelled() {
        return Err(ClientError::Cancelled);
    }
    let reply = conn.request::<GetReply>(&Request::Get { path: req.path.clone(), offset });
    let reply = match reply {
        Ok(r) => r,
        Err(_) if cancel.is_cancelled() => return Err(ClientError::Cancelled),
        Err(e) => return Err(e),
    };
    let GetReply { size, offset: got } = match reply {
        Ok(r) => r,
        Err(e) if e.error == ErrorCode::BadRequest && offset > 0 => return Ok(Attempt::OffsetRefused),
        Err(e) => return Err(ClientError::Server(e)),
    };
    // From here on a data section is in flight: any early return leaves the stream mid-section.
    conn.poisoned = true;
    if got != offset || size < offset {
        return Err(ClientError::Protocol(format!(
            "asked for offset {offset}, the server answered offset {got} of a {size}-byte file"
        )));
    }
    check_space(part, size - offset)?;

    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(offset == 0)
        .open(part)
        .map_err(ClientError::local("cannot create", part))?;
    let hasher = Md5::new();
    // One buffer per connection, reused by every download on it.
    let mut buf = std::mem::take(&mut conn.buf);
    buf.resize(data::CHUNK, 0);
    let result = receive(conn, part, &mut file, hasher, &mut buf, size, offset, cancel, progress);
    conn.buf = buf;
    let (expected, actual) = result?;
    conn.poisoned = false;
    Ok(Attempt::Verdict { verdict: Verdict { expected, actual }, size, offset, file })
}

#[allow(clippy::too_many_arguments)]
fn receive(
    conn: &mut Connection,
    part: &Path,
    file: &mut File,
    mut hasher: Md5,
    buf: &mut [u8],
    size: u64,
    offset: u64,
    cancel: &CancelToken,
    progress: &mut dyn FnMut(Progress),
) -> Result<(Md5Digest, Md5Digest), ClientError> {
    if offset > 0 {
        hash_existing(file, offset, &mut hasher, buf).map_err(ClientError::local("cannot read", part))?;
    }
    file.set_len(offset).map_err(ClientError::local("cannot truncate", part))?;
    file.seek(SeekFrom::Start(offset)).map_err(ClientError::local("cannot seek", part))?;
    progress(Progress { done: offset, total: size });

    let timeout = conn.timeout;
    let len = match data::read_header(&mut conn.reader, size - offset) {
        Ok(len) => len,
        Err(e) => return Err(ClientError::from_data(e, timeout)),
    };
    let mut on_chunk = |done: u64| {
        progress(Progress { done: offset + done, total: size });
        !cancel.is_cancelled()
    };
    // Large transfers hash on their own thread, so receiving and writing never wait for MD5.
    let copied = if len >= pipeline::MIN_PIPELINED {
        pipeline::copy_pipelined(&mut conn.reader, file, len, hasher, data::CHUNK, &mut on_chunk)
    } else {
        data::copy_hashed(&mut conn.reader, file, len, &mut hasher, buf, &mut on_chunk).map(|()| data::finish(hasher))
    };
    let actual = match copied {
        Ok(digest) => digest,
        Err(CopyError::Write { error, .. }) => return Err(ClientError::local("cannot write", part)(error)),
        Err(_) if cancel.is_cancelled() => return Err(ClientError::Cancelled),
        Err(e) => return Err(ClientError::from_data(DataError::Copy(e), timeout)),
    };
    let expected = match data::read_trailer(&mut conn.reader) {
        Ok(d) => d,
        Err(_) if cancel.is_cancelled() => return Err(ClientError::Cancelled),
        Err(e) => return Err(ClientError::from_data(e, timeout)),
    };
    Ok((expected, actual))
}

/// Hashes the first `len` bytes of what is already on disk (a resumed download).
fn hash_existing(file: &mut File, len: u64, hasher: &mut Md5, buf: &mut [u8]) -> io::Result<()> {
    file.seek(SeekFrom::Start(0))?;
    data::copy_hashed(file, &mut io::sink(), len, hasher, buf, &mut |_| true).map_err(|e| match e {
        CopyError::Read { error, .. } => error,
        _ => io::Error::new(io::ErrorKind::UnexpectedEof, "the .part file shrank"),
    })
}

/// Refuses early when the destination's file system visibly lacks room.
#[cfg(unix)]
fn check_space(part: &Path, need: u64) -> Result<(), ClientError> {
    use std::os::unix::ffi::OsStrExt;
    let dir = match part.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else { return Ok(()) };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Ok(()); // unknown: let the writes tell
    }
    let available = (st.f_bavail as u64).saturating_mul(st.f_frsize as u64);
    if need > available {
        return Err(ClientError::NoSpace { path: part.to_path_buf(), need, available });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_space(_part: &Path, _need: u64) -> Result<(), ClientError> {
    Ok(())
}

/// Moves the verified `.part` to its final name without ever replacing an existing file unless
/// asked to: a hard link fails atomically if the name is taken, where a rename would overwrite.
fn place(part: &Path, dest: &Path, overwrite: bool) -> Result<(), ClientError> {
    if overwrite {
        fs::rename(part, dest).map_err(ClientError::local("cannot rename into place", dest))?;
    } else {
        match fs::hard_link(part, dest) {
            Ok(()) => fs::remove_file(part).map_err(ClientError::local("cannot remove", part))?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(ClientError::Exists(dest.to_path_buf())),
            Err(_) => {
                // File systems without hard links: check, then rename (a narrow race remains).
                if fs::symlink_metadata(dest).is_ok() {
                    return Err(ClientError::Exists(dest.to_path_buf()));
                }
                fs::rename(part, dest).map_err(ClientError::local("cannot rename into place", dest))?;
            }
        }
    }
    if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty())
        && let Ok(d) = File::open(parent)
    {
        let _ = d.sync_all();
    }
    Ok(())
}
