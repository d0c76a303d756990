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
use crate::protocol::message::{ErrorCode, ErrorReply, GetReply, Request};
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

pub(super) enum Attempt {
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
pub(super) enum Start {
    /// No partial file: create one (and its record).
    Fresh,
    /// Ferry's own partial file of this very download, this many bytes long.
    Resume(u64),
}

impl Start {
    /// The offset to ask the host for.
    pub(super) fn offset(self) -> u64 {
        match self {
            Start::Fresh => 0,
            Start::Resume(len) => len,
        }
    }
}

/// What to do after an attempt.
pub(super) enum Step {
    Done(Outcome),
    /// Ask again from offset 0 (the resume offset was refused, or a resumed file failed its
    /// checksum: the bytes resumed on may be what was wrong).
    Retry,
}

/// One download's destination on disk, checked and claimed (no other download in this
/// process writes it while this lives). Used by one-file downloads ([`download`]) and by many
/// files over one connection ([`super::tree`]): both go through the same partial file, record,
/// verification and placing.
pub(super) struct Target {
    /// Where the file goes: the request's `dest`, or the name the rules made of it.
    pub dest: PathBuf,
    pub renamed: Option<Renamed>,
    pub part: PathBuf,
    record: PartialRecord,
    overwrite: bool,
    restarted: bool,
    /// What [`Target::prepare`] last saw: no record on disk, or no partial file (so the record
    /// is written in place; one found there after all is replaced the careful way).
    no_record: bool,
    options: TargetOptions,
    _claim: PartialLock,
}

/// How a [`Target`] treats its folder; a folder download does per job what one file does per
/// file.
#[derive(Debug, Clone, Default)]
pub(super) struct TargetOptions {
    /// The canonical path of the destination's folder, when the caller knows it.
    pub canonical_folder: Option<PathBuf>,
    /// Do not ask the file system for its free space first (for small files, whose writes
    /// say soon enough when the disk is full).
    pub skip_space_check: bool,
    /// The caller flushes the destination's folder (the renames) itself, once for many files.
    pub folder_synced_by_caller: bool,
    /// The caller has just seen that nothing is at the destination (the rename still never
    /// replaces anything that appears meanwhile).
    pub dest_absent: bool,
}

impl Target {
    /// Checks where `req` would be saved and claims it; refuses an existing file (unless
    /// `req.overwrite`) and a case twin under case-insensitive rules.
    pub(super) fn open(conn: &Connection, req: &DownloadRequest) -> Result<Target, ClientError> {
        Self::open_with(conn, req, TargetOptions::default())
    }

    pub(super) fn open_with(
        conn: &Connection,
        req: &DownloadRequest,
        options: TargetOptions,
    ) -> Result<Target, ClientError> {
        let rules = conn.names;
        let (dest, renamed) = local_dest(req, rules)?;
        let exists = !options.dest_absent && fs::symlink_metadata(&dest).is_ok();
        if exists && dest.is_dir() {
            return Err(ClientError::BadDestination {
                path: dest.display().to_string(),
                reason: "it is a folder".into(),
            });
        }
        if !req.overwrite && exists {
            return Err(ClientError::Exists(dest));
        }
        // On a disk where case matters, under rules where it does not (saving for Windows).
        if rules.case_insensitive()
            && !exists
            && let Some(twin) = case_twin(&dest, rules)
        {
            return Err(ClientError::CaseTwin { dest, twin, rules });
        }
        // Held until the target is dropped: no other download in this process writes this file.
        let claim = match &options.canonical_folder {
            Some(folder) => PartialLock::claim_in(&dest, folder)?,
            None => PartialLock::claim(&dest)?,
        };
        let part = part_path(&dest);
        let record = PartialRecord::new(conn.peer().to_string(), conn.server().name.clone(), req.path.clone());
        Ok(Target {
            dest,
            renamed,
            part,
            record,
            overwrite: req.overwrite,
            restarted: false,
            no_record: false,
            options,
            _claim: claim,
        })
    }

    /// Decides how to start from what is on disk, touching nothing that is not ferry's own.
    pub(super) fn prepare(&mut self) -> Result<Start, ClientError> {
        let (dest, part) = (&self.dest, &self.part);
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
        let Some(existing) = existing else {
            // No partial file: a fresh start, whatever record may be left (it is replaced).
            self.no_record = true;
            return Ok(Start::Fresh);
        };
        let record = PartialRecord::load(dest)?;
        self.no_record = record.is_none();
        match (Some(existing), record) {
            (None, _) => Ok(Start::Fresh),
            (Some(_), None) => Err(ClientError::NotOurs(part.to_path_buf())),
            (Some(len), Some(r)) if r.path == self.record.path => Ok(Start::Resume(len)),
            (Some(_), Some(_)) if self.overwrite => {
                partial::discard(dest)?;
                Ok(Start::Fresh)
            }
            (Some(_), Some(r)) => {
                Err(ClientError::PartialOfOther { part: part.to_path_buf(), host: r.host, path: r.path })
            }
        }
    }

    /// How long beyond the usual to wait for the reply to a `get` from `offset`: a resuming
    /// host hashes the bytes we already have before it answers, and is silent meanwhile.
    pub(super) fn patience(offset: u64) -> Duration {
        Duration::from_secs(offset / PREFIX_HASH_RATE)
    }

    /// Takes the host's answer to `get` from `start.offset()` (already read from `conn`) and,
    /// if it is a data section, receives it into the partial file.
    pub(super) fn receive(
        &mut self,
        conn: &mut Connection,
        start: Start,
        reply: Result<GetReply, ErrorReply>,
        cancel: &CancelToken,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Attempt, ClientError> {
        let offset = start.offset();
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
        if !self.options.skip_space_check {
            check_space(&self.part, size - offset)?;
        }

        let mut file = match start {
            Start::Fresh => {
                // The record first, so a partial file on disk always has one.
                if self.no_record {
                    self.record.save_new(&self.dest)?;
                } else {
                    self.record.save(&self.dest)?;
                }
                partial::create(&self.dest)?
            }
            Start::Resume(len) => {
                let file = partial::reopen(&self.dest)?;
                if len == 0 {
                    // Nothing to keep (and anything that appeared since is not ours to keep).
                    file.set_len(0).map_err(ClientError::local("cannot truncate", &self.part))?;
                }
                file
            }
        };
        let hasher = Md5::new();
        // One buffer per connection, reused by every download on it.
        let mut buf = std::mem::take(&mut conn.buf);
        buf.resize(data::CHUNK, 0);
        let mut t = Transfer { conn, part: &self.part, cancel, progress };
        let result = t.receive(&mut file, hasher, &mut buf, size, offset);
        conn.buf = buf;
        let (expected, actual) = result?;
        conn.poisoned = false;
        Ok(Attempt::Verdict { verdict: Verdict { expected, actual }, size, offset, file })
    }

    /// Places a verified file, or discards a failed one; says whether to ask again from zero.
    pub(super) fn settle(&mut self, attempt: Attempt) -> Result<Step, ClientError> {
        let (dest, part) = (&self.dest, &self.part);
        match attempt {
            Attempt::Verdict { verdict, size, offset, file } if verdict.matches() => {
                file.sync_all().map_err(ClientError::local("cannot flush", part))?;
                drop(file);
                place(part, dest, self.overwrite, !self.options.folder_synced_by_caller)?;
                partial::forget(dest)?;
                Ok(Step::Done(Outcome::Verified {
                    md5: verdict.actual,
                    dest: dest.clone(),
                    size,
                    resumed_from: offset,
                    renamed: self.renamed.clone(),
                }))
            }
            Attempt::Verdict { verdict, size, offset, file } => {
                drop(file);
                partial::discard(dest)?;
                if offset > 0 && !self.restarted {
                    // The bytes we resumed on may be what is wrong: start once more from zero.
                    self.restarted = true;
                    return Ok(Step::Retry);
                }
                Ok(Step::Done(Outcome::Mismatch { expected: verdict.expected, actual: verdict.actual, size }))
            }
            Attempt::OffsetRefused if !self.restarted => {
                self.restarted = true;
                partial::discard(dest)?;
                Ok(Step::Retry)
            }
            Attempt::OffsetRefused => Err(ClientError::Protocol("the server refused a download from offset 0".into())),
        }
    }
}

/// Receiving one data section into a partial file.
struct Transfer<'a> {
    conn: &'a mut Connection,
    part: &'a Path,
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
    conn.watch(cancel);
    if !req.overwrite {
        let (dest, _) = local_dest(req, conn.names)?;
        if fs::symlink_metadata(&dest).is_ok_and(|m| !m.is_dir()) {
            // Maybe it is the very file: the host's listing may say its MD5.
            if let Some(md5) = identical(conn, &req.path, &dest, cancel)? {
                let size = fs::metadata(&dest).map_or(0, |m| m.len());
                return Ok(Outcome::Identical { md5, dest, size });
            }
        }
    }
    let mut target = Target::open(conn, req)?;
    loop {
        let start = target.prepare()?;
        if cancel.is_cancelled() {
            return Err(ClientError::Cancelled);
        }
        conn.set_patience(Target::patience(start.offset()));
        let reply = match conn.request::<GetReply>(&Request::Get { path: req.path.clone(), offset: start.offset() }) {
            Ok(r) => r,
            Err(_) if cancel.is_cancelled() => return Err(ClientError::Cancelled),
            Err(e) => return Err(e),
        };
        let attempt = target.receive(conn, start, reply, cancel, progress)?;
        match target.settle(attempt)? {
            Step::Done(outcome) => return Ok(outcome),
            Step::Retry => continue,
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
            file.set_len(offset).map_err(ClientError::local("cannot truncate", *part))?;
            file.seek(SeekFrom::Start(offset)).map_err(ClientError::local("cannot seek", *part))?;
        }
        progress(Progress { done: offset, total: size });

        let header = data::read_header(&mut conn.reader, size - offset);
        let waited = conn.timeout();
        // The host is sending: a stall from here on is noticed after the usual time.
        conn.set_patience(Duration::ZERO);
        let timeout = conn.timeout();
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
fn place(part: &Path, dest: &Path, overwrite: bool, sync_folder: bool) -> Result<(), ClientError> {
    if overwrite {
        fs::rename(part, dest).map_err(ClientError::local("cannot rename into place", dest))?;
    } else if !rename_no_replace(part, dest)? {
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
    if sync_folder && let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_folder_of(parent);
    }
    Ok(())
}

/// Flushes a folder's entries (the renames into it) to disk; best effort.
pub(super) fn sync_folder_of(folder: &Path) {
    if let Ok(d) = File::open(folder) {
        let _ = d.sync_all();
    }
}

/// Renames without ever replacing, in one step where the system can (Linux `renameat2` with
/// `RENAME_NOREPLACE`): `Ok(false)` where it cannot (the caller falls back to a hard link).
fn rename_no_replace(part: &Path, dest: &Path) -> Result<bool, ClientError> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::fs::{CWD, RenameFlags, renameat_with};
        match renameat_with(CWD, part, CWD, dest, RenameFlags::NOREPLACE) {
            Ok(()) => return Ok(true),
            Err(rustix::io::Errno::EXIST) => return Err(ClientError::Exists(dest.to_path_buf())),
            // Not supported by this file system or kernel: the portable way.
            Err(_) => {}
        }
    }
    let _ = (part, dest);
    Ok(false)
}
