//! One download, on disk: ferry's own partial file beside the destination (see [`partial`]),
//! hashed as it is written, renamed into place only after its MD5 matches the trailer (and
//! after an fsync).

use std::fs::{self, File};
use std::io::{self, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::partial::{self, PartialLock, PartialRecord, part_path};
use super::{CancelToken, ClientError, Connection};
use crate::pipeline;
use crate::protocol::Md5Digest;
use crate::protocol::data::{self, CopyError, DataError, Digest, Md5, Verdict};
use crate::protocol::message::{ErrorCode, GetReply, Request};
use crate::protocol::names::{self, NameProblem, Os};
use crate::protocol::path::{Escaped, check_file_name};

/// What to download and where.
#[derive(Debug, Clone)]
pub struct DownloadRequest {
    /// The file's path on the host.
    pub path: String,
    /// The local file to create, or an existing folder to save into under the host's name. A
    /// file name that the name rules in force ([`super::ConnectOptions::names`]) do not accept
    /// is saved under the nearest name they do, and the outcome says so ([`Renamed`]); one that
    /// cannot be adjusted is refused. See [`local_dest`].
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
        /// Bytes that were already in the partial file (0 for a fresh download).
        resumed_from: u64,
        /// Set when the file was saved under another name than the one asked for.
        renamed: Option<Renamed>,
    },
    /// The digests differ; no file was created under the final name and the partial file is gone.
    Mismatch { expected: Md5Digest, actual: Md5Digest, size: u64 },
    /// Nothing was downloaded: `dest` already existed with the size and the MD5 that the
    /// host's listing gives for the file (see [`super::already_have`]). Only when not asked to
    /// replace it ([`DownloadRequest::overwrite`]).
    Identical { md5: Md5Digest, dest: PathBuf, size: u64 },
}

/// A file saved under another name than the one asked for, because the name rules in force
/// do not accept that one (`aux.txt` on Windows is saved as `aux_.txt`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renamed {
    /// The name asked for (the host's, or the one typed).
    pub asked: String,
    /// The name the file was saved under.
    pub saved: String,
    /// Why the asked name could not be used.
    pub why: NameProblem,
}

impl std::fmt::Display for Renamed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "saved as \"{}\" instead of \"{}\": {}", Escaped(&self.saved), Escaped(&self.asked), self.why)
    }
}

/// Where `req` is saved under the name rules `rules`, and whether that differs from the name
/// asked for. When `req.dest` is an existing folder the file goes into it under the host's
/// name (the last component of `req.path`), which never becomes a path before it passed the
/// rules (on Windows `a:b` would otherwise name drive A:). Otherwise `req.dest` is the file,
/// and its name is held to the same rules; a typed name that is not UTF-8 is the system's own
/// and is kept.
pub fn local_dest(req: &DownloadRequest, rules: Os) -> Result<(PathBuf, Option<Renamed>), ClientError> {
    let dest = &req.dest;
    let bad = |path: &Path, reason: String| ClientError::BadDestination { path: path.display().to_string(), reason };
    let (folder, name) = if dest.is_dir() {
        let name = req.path.rsplit('/').next().unwrap_or(&req.path);
        check_file_name(name).map_err(|e| {
            bad(dest, format!("the host's name {:?} cannot be a file name: {e}", Escaped(name).to_string()))
        })?;
        (dest.as_path(), name)
    } else {
        let Some(name) = dest.file_name() else { return Err(bad(dest, "it names no file".into())) };
        let Some(name) = name.to_str() else { return Ok((dest.clone(), None)) };
        (dest.parent().unwrap_or(Path::new("")), name)
    };
    match names::check(name, rules) {
        Ok(()) => Ok((folder.join(name), None)),
        Err(why) => match names::adjust(name, rules) {
            Some(saved) => Ok((folder.join(&saved), Some(Renamed { asked: name.to_string(), saved, why }))),
            None => Err(bad(dest, why.to_string())),
        },
    }
}

/// Another file in `dest`'s folder whose name differs from `dest`'s only in case: under rules
/// where case does not matter the two would be one file.
fn case_twin(dest: &Path, rules: Os) -> Option<PathBuf> {
    let name = dest.file_name()?.to_str()?;
    let key = names::fold(name, rules);
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::read_dir(dir).ok()?.flatten().find_map(|e| {
        let other = e.file_name().into_string().ok()?;
        (other != name && names::fold(&other, rules) == key).then(|| e.path())
    })
}

/// Bytes of the whole file that are on disk now, and the file's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
}

/// The slowest pace (bytes a second) at which a host is expected to hash the part of a file
/// a resumed download already has (a slow disk, a busy machine).
const PREFIX_HASH_RATE: u64 = 20_000_000;

enum Attempt {
    Verdict {
        verdict: Verdict,
        size: u64,
        offset: u64,
        file: File,
    },
    /// The host refused our resume offset (the file is shorter than our partial file now).
    OffsetRefused,
}

/// How a download starts on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// No partial file: create one (and its record).
    Fresh,
    /// Ferry's own partial file of this very download, this many bytes long.
    Resume(u64),
}

/// One download in progress: what every step of it needs.
struct Transfer<'a> {
    conn: &'a mut Connection,
    req: &'a DownloadRequest,
    /// Where the file goes: `req.dest`, or the name the rules made of it.
    dest: &'a Path,
    part: &'a Path,
    record: PartialRecord,
    cancel: &'a CancelToken,
    progress: &'a mut dyn FnMut(Progress),
}

pub(super) fn download(
    conn: &mut Connection,
    req: &DownloadRequest,
    cancel: &CancelToken,
    progress: &mut dyn FnMut(Progress),
) -> Result<Outcome, ClientError> {
    let result = download_on(conn, req, cancel, progress);
    conn.set_patience(Duration::ZERO);
    result
}

fn download_on(
    conn: &mut Connection,
    req: &DownloadRequest,
    cancel: &CancelToken,
    progress: &mut dyn FnMut(Progress),
) -> Result<Outcome, ClientError> {
    cancel.attach(&conn.tcp);
    let rules = conn.names;
    let (dest, renamed) = local_dest(req, rules)?;
    let dest = &dest;
    if dest.is_dir() {
        return Err(ClientError::BadDestination { path: dest.display().to_string(), reason: "it is a folder".into() });
    }
    let exists = fs::symlink_metadata(dest).is_ok();
    if !req.overwrite && exists {
        // Maybe it is the very file: the host's listing may say its MD5.
        if let Some(md5) = identical(conn, &req.path, dest, cancel)? {
            let size = fs::metadata(dest).map_or(0, |m| m.len());
            return Ok(Outcome::Identical { md5, dest: dest.clone(), size });
        }
        return Err(ClientError::Exists(dest.clone()));
    }
    // On a disk where case matters, under rules where it does not (saving for Windows).
    if rules.case_insensitive()
        && !exists
        && let Some(twin) = case_twin(dest, rules)
    {
        return Err(ClientError::CaseTwin { dest: dest.clone(), twin, rules });
    }
    // Held until this function returns: no other download in this process writes this file.
    let _claim = PartialLock::claim(dest)?;
    let part = part_path(dest);
    let record = PartialRecord::new(conn.peer().to_string(), conn.server().name.clone(), req.path.clone());
    let mut t = Transfer { conn, req, dest, part: &part, record, cancel, progress };
    let mut restarted = false;
    loop {
        let start = t.prepare()?;
        match t.attempt(start)? {
            Attempt::Verdict { verdict, size, offset, file } if verdict.matches() => {
                file.sync_all().map_err(ClientError::local("cannot flush", &part))?;
                drop(file);
                place(&part, dest, req.overwrite)?;
                partial::forget(dest)?;
                return Ok(Outcome::Verified {
                    md5: verdict.actual,
                    dest: dest.clone(),
                    size,
                    resumed_from: offset,
                    renamed,
                });
            }
            Attempt::Verdict { verdict, size, offset, file } => {
                drop(file);
                partial::discard(dest)?;
                if offset > 0 && !restarted {
                    // The bytes we resumed on may be what is wrong: start once more from zero.
                    restarted = true;
                    continue;
                }
                return Ok(Outcome::Mismatch { expected: verdict.expected, actual: verdict.actual, size });
            }
            Attempt::OffsetRefused if !restarted => {
                restarted = true;
                partial::discard(dest)?;
            }
            Attempt::OffsetRefused => {
                return Err(ClientError::Protocol("the server refused a download from offset 0".into()));
            }
        }
    }
}

/// The local MD5 of `dest` when the host lists `path` with that MD5 (and the same size). A
/// host that lists nothing useful (an older host, a folder it refuses to list, a digest it has
/// not computed yet) means "cannot tell": `None`.
fn identical(
    conn: &mut Connection,
    path: &str,
    dest: &Path,
    cancel: &CancelToken,
) -> Result<Option<Md5Digest>, ClientError> {
    let (folder, name) = path.rsplit_once('/').unwrap_or(("", path));
    let listing = match conn.list(folder) {
        Ok(l) => l,
        Err(ClientError::Server(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    match listing.entries.iter().find(|e| e.name == name) {
        Some(entry) => super::already_have(dest, entry, cancel),
        None => Ok(None),
    }
}

impl Transfer<'_> {
    /// Decides how to start from what is on disk, touching nothing that is not ferry's own.
    fn prepare(&self) -> Result<Start, ClientError> {
        let (dest, part) = (self.dest, self.part);
        let existing = match fs::symlink_metadata(part) {
            Ok(m) if m.is_file() => Some(m.len()),
            Ok(_) => {
                return Err(ClientError::BadDestination {
                    path: part.display().to_string(),
                    reason: "it exists and is not a regular file".into(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(ClientError::local("cannot inspect", part)(e)),
        };
        match (existing, PartialRecord::load(dest)?) {
            (None, _) => Ok(Start::Fresh),
            (Some(_), None) => Err(ClientError::NotOurs(part.to_path_buf())),
            (Some(len), Some(r)) if r.path == self.record.path => Ok(Start::Resume(len)),
            (Some(_), Some(_)) if self.req.overwrite => {
                partial::discard(dest)?;
                Ok(Start::Fresh)
            }
            (Some(_), Some(r)) => {
                Err(ClientError::PartialOfOther { part: part.to_path_buf(), host: r.host, path: r.path })
            }
        }
    }

    fn attempt(&mut self, start: Start) -> Result<Attempt, ClientError> {
        let (cancel, part) = (self.cancel, self.part);
        if cancel.is_cancelled() {
            return Err(ClientError::Cancelled);
        }
        let offset = match start {
            Start::Fresh => 0,
            Start::Resume(len) => len,
        };
        // Before its reply a resuming host hashes the `offset` bytes we already have, and is
        // silent meanwhile: allow for that (at a slow disk's pace) on top of the usual wait,
        // until the data prefix arrives.
        self.conn.set_patience(Duration::from_secs(offset / PREFIX_HASH_RATE));
        let reply = self.conn.request::<GetReply>(&Request::Get { path: self.req.path.clone(), offset });
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
        self.conn.poisoned = true;
        if got != offset || size < offset {
            return Err(ClientError::Protocol(format!(
                "asked for offset {offset}, the server answered offset {got} of a {size}-byte file"
            )));
        }
        check_space(part, size - offset)?;

        let mut file = match start {
            Start::Fresh => {
                // The record first, so a partial file on disk always has one.
                self.record.save(self.dest)?;
                partial::create(self.dest)?
            }
            Start::Resume(_) => partial::reopen(self.dest)?,
        };
        let hasher = Md5::new();
        // One buffer per connection, reused by every download on it.
        let mut buf = std::mem::take(&mut self.conn.buf);
        buf.resize(data::CHUNK, 0);
        let result = self.receive(&mut file, hasher, &mut buf, size, offset);
        self.conn.buf = buf;
        let (expected, actual) = result?;
        self.conn.poisoned = false;
        Ok(Attempt::Verdict { verdict: Verdict { expected, actual }, size, offset, file })
    }

    fn receive(
        &mut self,
        file: &mut File,
        mut hasher: Md5,
        buf: &mut [u8],
        size: u64,
        offset: u64,
    ) -> Result<(Md5Digest, Md5Digest), ClientError> {
        let Transfer { conn, part, cancel, progress, .. } = self;
        if offset > 0 {
            hash_existing(file, offset, &mut hasher, buf).map_err(ClientError::local("cannot read", *part))?;
        }
        file.set_len(offset).map_err(ClientError::local("cannot truncate", *part))?;
        file.seek(SeekFrom::Start(offset)).map_err(ClientError::local("cannot seek", *part))?;
        progress(Progress { done: offset, total: size });

        let header = data::read_header(&mut conn.reader, size - offset);
        let waited = conn.timeout;
        // The host is sending: a stall from here on is noticed after the usual time.
        conn.set_patience(Duration::ZERO);
        let timeout = conn.timeout;
        let len = match header {
            Ok(len) => len,
            Err(e) => return Err(ClientError::from_data(e, waited)),
        };
        let mut on_chunk = |done: u64| {
            progress(Progress { done: offset + done, total: size });
            !cancel.is_cancelled()
        };
        // Large transfers hash on their own thread, so receiving and writing never wait for MD5.
        let copied = if len >= pipeline::MIN_PIPELINED {
            pipeline::copy_pipelined(&mut conn.reader, file, len, hasher, data::CHUNK, &mut on_chunk)
        } else {
            data::copy_hashed(&mut conn.reader, file, len, &mut hasher, buf, &mut on_chunk)
                .map(|()| data::finish(hasher))
        };
        let actual = match copied {
            Ok(digest) => digest,
            Err(CopyError::Write { error, .. }) => return Err(ClientError::local("cannot write", *part)(error)),
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
}

/// Hashes the first `len` bytes of what is already on disk (a resumed download).
fn hash_existing(file: &mut File, len: u64, hasher: &mut Md5, buf: &mut [u8]) -> io::Result<()> {
    file.seek(SeekFrom::Start(0))?;
    data::copy_hashed(file, &mut io::sink(), len, hasher, buf, &mut |_| true).map_err(|e| match e {
        CopyError::Read { error, .. } => error,
        _ => io::Error::new(io::ErrorKind::UnexpectedEof, "the partial file shrank"),
    })
}

/// Refuses early when the destination's file system visibly lacks room.
fn check_space(part: &Path, need: u64) -> Result<(), ClientError> {
    let dir = match part.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Ok(available) = fs4::available_space(dir) else {
        return Ok(()); // unknown: let the writes tell
    };
    if need > available {
        return Err(ClientError::NoSpace { path: part.to_path_buf(), need, available });
    }
    Ok(())
}

/// Moves the verified partial file to its final name without ever replacing an existing file unless
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
