//! Answering `put`: a client's file, received into the hosted folder with the guarantees a
//! download has.
//!
//! ```text
//! client                                   host
//! {"op":"put","path":"a/b.bin","size":S} ─▶ checks: uploads allowed, path and name rules,
//!                                           confinement (no link on the way), nothing at
//!                                           a/b.bin, room for S - K bytes plus a margin
//!                                       ◀─ {"ok":true,"offset":K}   (K: ferry's partial file)
//! [S-K: u64 BE][bytes K..S][16-byte MD5] ─▶ writes a/b.bin.ferry-upload, hashing as it writes
//!                                       ◀─ {"ok":true,"md5":"…"}      renamed to a/b.bin
//!                                          or checksum_mismatch        partial file removed
//! ```
//!
//! - **Opt-in:** without [`ServerConfig::allow_upload`](super::ServerConfig) every `put` is
//!   `read_only`. With [`ServerConfig::upload_folder`](super::ServerConfig) only paths inside
//!   that folder are taken (`forbidden` otherwise).
//! - **Names:** every component must be a name the host's rules accept
//!   ([`crate::protocol::names::check`] under [`ServerConfig::upload_names`](super::ServerConfig)),
//!   else `bad_path`; names ending in [`PART_SUFFIX`] or [`RECORD_SUFFIX`] are ferry's own and
//!   refused too.
//! - **Confinement:** the parent folder is reached by [`disk::Folder::open`]: one handle per
//!   folder, no symbolic link on the way (even one that stays inside: `forbidden`). A missing
//!   folder is created only when the client asks (`"mkdirs":true`, a ferry extension), by the
//!   same walk; otherwise it is `not_found`, as the contract says.
//! - **Never replace:** anything already at the name is `exists`; the final rename refuses to
//!   replace a file that appeared meanwhile.
//! - **Room first:** `no_space` when the file system's free space is less than the bytes still
//!   to come plus [`SPACE_MARGIN`], before any byte is sent. A write that fails anyway (a full
//!   disk, a file size limit) removes the partial file and answers `no_space` (or `io`).
//! - **Partial files:** `NAME.ferry-upload`, next to a record `NAME.ferry-upload.json`
//!   written first (`{"kind":"ferry partial upload","path":…,"size":…}`). A `put` of the same
//!   path and size resumes from the partial file's length (the host hashes those bytes again,
//!   so the trailer is checked against the whole file); one for another size starts afresh. A
//!   partial file without ferry's record is not ferry's: it is never resumed, replaced or
//!   removed (`exists`). An interrupted upload (the client left, the host stopped) keeps its
//!   partial file for a resume; a mismatch removes it.
//! - **One upload per name at a time** (`exists` for a second one while the first runs).
//! - **Events:** [`ServerEvent::UploadStarted`], progress, then exactly one
//!   [`ServerEvent::UploadFinished`] or [`ServerEvent::TransferFailed`], even if the thread
//!   panics.

mod disk;

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader, Seek, SeekFrom};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use self::disk::{Folder, Kind};
use super::index::FileKey;
use super::reply::{self, BUF_LEN, Who, encode, encode_ok, send_all};
use super::stop_aware::StopAware;
use super::{ClientId, Root, ServerEvent, Shared, TransferId};
use crate::protocol::data::{self, CopyError, Digest, Md5};
use crate::protocol::frame;
use crate::protocol::message::{ErrorCode, ErrorReply, MismatchReply, PutDone, PutReply};
use crate::protocol::names::{self, Os};
use crate::protocol::path::{Escaped, split_request_path};
use crate::protocol::{Md5Digest, hex};

/// What the host appends to an uploaded file's name while it is being received.
pub const PART_SUFFIX: &str = ".ferry-upload";
/// The record beside a partial upload that marks it as ferry's own.
pub const RECORD_SUFFIX: &str = ".ferry-upload.json";
/// The `kind` of a record: what makes the JSON recognisably ferry's.
const RECORD_KIND: &str = "ferry partial upload";
/// A record larger than this is not one ferry wrote.
const MAX_RECORD: u64 = 16 * 1024;
/// Free space an upload must leave on the host's file system.
pub const SPACE_MARGIN: u64 = 16 * 1024 * 1024;
/// At most ~20 progress events a second per upload.
const PROGRESS_EVERY: Duration = Duration::from_millis(50);

/// The paths being uploaded right now.
#[derive(Default)]
pub(super) struct Claims(Mutex<HashSet<String>>);

/// One upload's hold on its path; dropping it (however the upload ends) lets the path go.
struct Claim<'a> {
    claims: &'a Claims,
    key: String,
}

impl Claims {
    fn claim(&self, key: String) -> Option<Claim<'_>> {
        let mut held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        held.insert(key.clone()).then_some(Claim { claims: self, key })
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.claims.0.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.key);
    }
}

/// The record beside a partial upload.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    kind: String,
    path: String,
    size: u64,
}

pub(in crate::server) struct PutRequest<'a> {
    pub client: ClientId,
    pub peer: SocketAddr,
    pub path: &'a str,
    pub size: u64,
    pub mkdirs: bool,
}

/// Whether the connection can go on after a `put`.
pub(in crate::server) enum PutEnd {
    Continue,
    Close(String),
}

/// Where an upload goes: its folder (as path components) and the names it uses there.
struct Target<'a> {
    parent: Vec<&'a str>,
    name: &'a str,
    part: String,
    record: String,
}

/// Checks a `put` before anything on disk is touched.
fn check<'a>(shared: &Shared, path: &'a str) -> Result<Target<'a>, ErrorReply> {
    let config = &shared.config;
    if !config.allow_upload {
        return Err(ErrorReply::new(ErrorCode::ReadOnly, "this host does not take uploads"));
    }
    let parts = split_request_path(path).map_err(|e| ErrorReply::new(ErrorCode::BadPath, e.to_string()))?;
    let Some((&name, parent)) = parts.split_last() else {
        return Err(ErrorReply::new(ErrorCode::IsDirectory, "a put needs a file name, not the hosted folder"));
    };
    if let Some(folder) = config.upload_folder.as_deref().filter(|f| !f.is_empty()) {
        let inside = split_request_path(folder).is_ok_and(|f| parent.starts_with(&f));
        if !inside {
            let msg = format!("this host takes uploads into \"{}\" only", Escaped(folder));
            return Err(ErrorReply::new(ErrorCode::Forbidden, msg));
        }
    }
    for part in &parts {
        if let Err(problem) = names::check(part, config.upload_names) {
            let msg = format!("\"{}\": {problem}", Escaped(part));
            return Err(ErrorReply::new(ErrorCode::BadPath, msg));
        }
        #[cfg(windows)]
        if names::windows_special(part) {
            let msg = "the name reaches a device, a stream or another name on Windows";
            return Err(ErrorReply::new(ErrorCode::Forbidden, msg));
        }
    }
    if name.ends_with(PART_SUFFIX) || name.ends_with(RECORD_SUFFIX) {
        let msg = format!("names ending in {PART_SUFFIX} or {RECORD_SUFFIX} are ferry's partial uploads");
        return Err(ErrorReply::new(ErrorCode::BadPath, msg));
    }
    let record = format!("{name}{RECORD_SUFFIX}");
    let len = if Os::current() == Os::Windows { record.encode_utf16().count() } else { record.len() };
    if len > names::MAX_NAME {
        let most = names::MAX_NAME - RECORD_SUFFIX.len();
        let msg = format!("the name is too long for ferry's partial file beside it (at most {most})");
        return Err(ErrorReply::new(ErrorCode::BadPath, msg));
    }
    Ok(Target { parent: parent.to_vec(), name, part: format!("{name}{PART_SUFFIX}"), record })
}

/// How an upload starts on disk.
enum Start {
    Fresh,
    /// Ferry's own partial file of this very upload, this many bytes long.
    Resume(u64),
}

fn io_reply(action: &str, e: &io::Error) -> ErrorReply {
    if is_no_space(e) {
        return ErrorReply::new(ErrorCode::NoSpace, format!("the host's disk is full ({action})"));
    }
    ErrorReply::new(ErrorCode::Io, format!("{action}: {}", crate::format::io_words(e)))
}

fn is_no_space(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::FileTooLarge | io::ErrorKind::QuotaExceeded)
}

/// Decides how to start from what is beside the target, touching nothing that is not ferry's.
fn prepare(folder: &Folder, t: &Target<'_>, path: &str, size: u64) -> Result<Start, ErrorReply> {
    let inspect = |name: &str| folder.kind(name).map_err(|e| io_reply("cannot look at the folder", &e));
    if inspect(t.name)?.is_some() {
        let msg = format!("\"{}\" already exists on the host; ferry never replaces a file", Escaped(path));
        return Err(ErrorReply::new(ErrorCode::Exists, msg));
    }
    let not_ours = |name: &str| {
        let msg = format!("\"{}\" is in the way and ferry did not create it; it was left untouched", Escaped(name));
        ErrorReply::new(ErrorCode::Exists, msg)
    };
    let record_there = inspect(&t.record)?.is_some();
    let record = folder
        .read_small(&t.record, MAX_RECORD)
        .and_then(|b| serde_json::from_slice::<Record>(&b).ok())
        .filter(|r| r.kind == RECORD_KIND);
    let discard = |what: &str| folder.remove(what).map_err(|e| io_reply("cannot remove an old partial upload", &e));
    match (inspect(&t.part)?, record) {
        (None, None) if record_there => Err(not_ours(&t.record)),
        (None, None) => Ok(Start::Fresh),
        (None, Some(_)) => {
            discard(&t.record)?;
            Ok(Start::Fresh)
        }
        (Some(Kind::File { len }), Some(r)) if r.path == path && r.size == size && len <= size => {
            Ok(Start::Resume(len))
        }
        (Some(Kind::File { .. }), Some(_)) => {
            // Ferry's own, of another version of the file: start afresh.
            discard(&t.part)?;
            discard(&t.record)?;
            Ok(Start::Fresh)
        }
        (Some(_), _) => Err(not_ours(&t.part)),
    }
}

/// Removes ferry's partial file and then its record (so a partial file never lacks one).
fn discard(folder: &Folder, t: &Target<'_>) {
    if folder.remove(&t.part).is_ok() {
        let _ = folder.remove(&t.record);
    }
}

/// Opens the partial file: created after its record for a fresh upload, reopened and its
/// bytes hashed for a resumed one. Leaves it at its end.
fn open_part(
    folder: &Folder,
    t: &Target<'_>,
    record: &Record,
    start: &Start,
    hasher: &mut Md5,
    buf: &mut [u8],
) -> Result<File, ErrorReply> {
    match *start {
        Start::Fresh => {
            let json = serde_json::to_vec(record).expect("a record serialises");
            folder.write_new(&t.record, &json).map_err(|e| io_reply("cannot create the partial upload", &e))?;
            folder.create_new(&t.part).map_err(|e| {
                let _ = folder.remove(&t.record);
                io_reply("cannot create the partial upload", &e)
            })
        }
        Start::Resume(len) => {
            let mut file =
                folder.open_existing(&t.part).map_err(|e| io_reply("cannot reopen the partial upload", &e))?;
            let hashed = file
                .seek(SeekFrom::Start(0))
                .and_then(|_| {
                    data::copy_hashed(&mut file, &mut io::sink(), len, hasher, buf, &mut |_| true).map_err(
                        |e| match e {
                            CopyError::Read { error, .. } => error,
                            _ => io::Error::new(io::ErrorKind::UnexpectedEof, "the partial upload shrank"),
                        },
                    )
                })
                .and_then(|()| file.seek(SeekFrom::Start(len)));
            hashed.map_err(|e| io_reply("cannot read the partial upload", &e))?;
            Ok(file)
        }
    }
}

/// Answers one `put`, receiving its data section when it is accepted.
pub(in crate::server) fn handle_put(
    shared: &Shared,
    root: &Root,
    reader: &mut BufReader<StopAware<'_>>,
    out: &mut Vec<u8>,
    buf: &mut Vec<u8>,
    req: PutRequest<'_>,
) -> PutEnd {
    let PutRequest { client, peer, path, size, mkdirs } = req;
    let refuse = |reader: &mut BufReader<StopAware<'_>>, out: &mut Vec<u8>, e: ErrorReply| {
        let request = format!("put {}", Escaped(path));
        match reply::refuse(shared, &mut reader.get_mut().stream, out, Who { client, peer }, request, &e) {
            Ok(()) => PutEnd::Continue,
            Err(e) => PutEnd::Close(format!("cannot answer: {e}")),
        }
    };
    let target = match check(shared, path) {
        Ok(t) => t,
        Err(e) => return refuse(reader, out, e),
    };
    let Some(_claim) = shared.uploads.claim(names::fold(path, Os::current())) else {
        let msg = format!("\"{}\" is being uploaded by another connection right now", Escaped(path));
        return refuse(reader, out, ErrorReply::new(ErrorCode::Exists, msg));
    };
    // The indexing worker waits while a file is received, as while one is sent.
    let _receiving = shared.indexer().map(|i| i.sending());
    let folder = match Folder::open(root, &target.parent, mkdirs) {
        Ok(f) => f,
        Err(e) => return refuse(reader, out, e.to_reply()),
    };
    let start = match prepare(&folder, &target, path, size) {
        Ok(s) => s,
        Err(e) => return refuse(reader, out, e),
    };
    let offset = match start {
        Start::Fresh => 0,
        Start::Resume(len) => len,
    };
    let need = size - offset;
    if let Some(free) = folder.free_space()
        && need.saturating_add(SPACE_MARGIN) > free
    {
        let msg = format!(
            "not enough room on the host: {} to receive (and {} to spare), {} free",
            crate::format::size(need),
            crate::format::size(SPACE_MARGIN),
            crate::format::size(free)
        );
        return refuse(reader, out, ErrorReply::new(ErrorCode::NoSpace, msg));
    }
    if buf.is_empty() {
        buf.resize(BUF_LEN, 0);
    }
    let mut hasher = Md5::new();
    let record = Record { kind: RECORD_KIND.into(), path: path.to_string(), size };
    let mut file = match open_part(&folder, &target, &record, &start, &mut hasher, buf) {
        Ok(f) => f,
        Err(e) => return refuse(reader, out, e),
    };

    let transfer = shared.next_transfer.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let reported =
        shared.sink.offer(ServerEvent::UploadStarted { client, transfer, peer, path: path.to_string(), size, offset });
    let mut end = UploadEnd { shared, transfer, ended: !reported };
    #[cfg(test)]
    crate::sink::panic_if_injected(path);
    let started = Instant::now();
    let fail = |end: &mut UploadEnd<'_>, error: String| {
        end.fail(error.clone());
        PutEnd::Close(error)
    };

    encode_ok(out, &PutReply { offset });
    if let Err(e) = send_all(&mut reader.get_mut().stream, out) {
        return fail(&mut end, format!("cannot answer: {e}"));
    }
    let gone = |what: String| {
        if shared.is_stopping() {
            "server stopped; the partial upload is kept for a resume".to_string()
        } else {
            format!("{what}; the partial upload is kept for a resume")
        }
    };
    match frame::read_header(reader) {
        Ok(len) if len == need => {}
        Ok(len) => {
            let msg = format!("the data prefix says {len} bytes, the put announced {need}");
            let _ = reply::reply_error(
                &mut reader.get_mut().stream,
                out,
                &ErrorReply::new(ErrorCode::BadRequest, msg.clone()),
            );
            return fail(&mut end, msg);
        }
        Err(e) => return fail(&mut end, gone(format!("the client sent no data ({e})"))),
    }

    let mut last = Instant::now();
    let mut progress = |done: u64| {
        if reported && last.elapsed() >= PROGRESS_EVERY {
            last = Instant::now();
            shared.sink.send(ServerEvent::TransferProgress { transfer, done: offset + done, total: size });
        }
        !shared.is_stopping()
    };
    match data::copy_hashed(reader, &mut file, need, &mut hasher, buf, &mut progress) {
        Ok(()) => {}
        Err(CopyError::Write { error, .. }) => {
            drop(file);
            discard(&folder, &target);
            let e = io_reply("cannot write the upload", &error);
            let _ = reply::reply_error(&mut reader.get_mut().stream, out, &e);
            return fail(&mut end, format!("{}; the partial upload was removed", e.message));
        }
        Err(CopyError::Cancelled { .. }) => return fail(&mut end, gone(String::new())),
        Err(e @ (CopyError::Read { .. } | CopyError::Incomplete { .. })) => {
            let tampered = matches!(&e, CopyError::Read { error, .. } if crate::transport::is_integrity_failure(error));
            if tampered {
                let why = "the data was changed on the way (the encryption's integrity check caught it)";
                return fail(&mut end, gone(why.to_string()));
            }
            return fail(&mut end, gone(format!("the client went away: {e}")));
        }
    }
    let expected = match data::read_trailer(reader) {
        Ok(d) => d,
        Err(e) => return fail(&mut end, gone(format!("the client sent no checksum: {e}"))),
    };
    let actual = data::finish(hasher);
    if reported {
        shared.sink.send(ServerEvent::TransferProgress { transfer, done: size, total: size });
    }
    let answer = if actual == expected {
        match keep(&folder, &target, file, path) {
            Ok(key) => {
                // The host now knows this file's digest: its first download is sent warm.
                if let (Some(key), Some(i)) = (key, shared.indexer()) {
                    i.index.insert(&key, actual);
                }
                end.finish(expected, actual, need, started.elapsed());
                encode_ok(out, &PutDone { md5: hex(&actual) });
                send_all(&mut reader.get_mut().stream, out)
            }
            Err(e) => {
                end.fail(e.message.clone());
                reply::reply_error(&mut reader.get_mut().stream, out, &e)
            }
        }
    } else {
        drop(file);
        discard(&folder, &target);
        end.finish(expected, actual, need, started.elapsed());
        let message = format!(
            "the MD5 of what arrived ({}) differs from the client's ({}): the file was damaged in \
             transit and was not kept",
            hex(&actual),
            hex(&expected)
        );
        let reply = MismatchReply { ok: false, error: ErrorCode::ChecksumMismatch, message, md5: Some(hex(&actual)) };
        encode(out, &reply);
        send_all(&mut reader.get_mut().stream, out)
    };
    match answer {
        Ok(()) => PutEnd::Continue,
        Err(e) => PutEnd::Close(format!("cannot answer: {e}")),
    }
}

/// Puts a verified partial file under its name (flushed first), never replacing anything, and
/// removes its record. On failure the partial file is removed. Returns the key the file's
/// digest is remembered under, taken from the handle that wrote the verified bytes (so a file
/// put at the name by someone else afterwards is never given this digest): after the rename on
/// Unix, where a rename changes the change time; before it elsewhere, where an open file cannot
/// be renamed and the rename changes none of the times the key holds.
fn keep(folder: &Folder, t: &Target<'_>, file: File, path: &str) -> Result<Option<FileKey>, ErrorReply> {
    let key_of = |file: &File| file.metadata().ok().map(|m| FileKey::of(file, &m));
    let synced = file.sync_all();
    #[cfg(not(unix))]
    let key = {
        let key = key_of(&file);
        drop(file);
        key
    };
    let placed = synced.and_then(|()| folder.place(&t.part, t.name));
    if let Err(e) = placed {
        discard(folder, t);
        if e.kind() == io::ErrorKind::AlreadyExists {
            let msg = format!(
                "\"{}\" appeared on the host while it was uploaded; ferry never replaces a file, so \
                 the upload was not kept",
                Escaped(path)
            );
            return Err(ErrorReply::new(ErrorCode::Exists, msg));
        }
        return Err(io_reply("cannot put the upload in place", &e));
    }
    let _ = folder.remove(&t.record);
    folder.sync();
    #[cfg(unix)]
    let key = key_of(&file);
    Ok(key)
}

/// A started upload ends in exactly one `UploadFinished` or `TransferFailed`: if the thread
/// panics before either is sent, dropping this sends `TransferFailed`.
struct UploadEnd<'a> {
    shared: &'a Shared,
    transfer: TransferId,
    ended: bool,
}

impl UploadEnd<'_> {
    fn fail(&mut self, error: String) {
        if !std::mem::replace(&mut self.ended, true) {
            self.shared.sink.send(ServerEvent::TransferFailed { transfer: self.transfer, error });
        }
    }

    fn finish(&mut self, expected: Md5Digest, actual: Md5Digest, received: u64, elapsed: Duration) {
        if !std::mem::replace(&mut self.ended, true) {
            let transfer = self.transfer;
            self.shared.sink.send(ServerEvent::UploadFinished { transfer, expected, actual, received, elapsed });
        }
    }
}

impl Drop for UploadEnd<'_> {
    fn drop(&mut self) {
        self.fail("internal error: the connection's thread panicked".to_string());
    }
}
