//! One upload: a local file sent to a host that takes uploads (`put`), as one data section
//! hashed while it is read; the host renames it into place only if its own MD5 of the whole
//! file equals the trailer, and says so.
//!
//! A host holding a partial file of an earlier, interrupted upload of the same path and size
//! answers with its length as the offset: the bytes before it are hashed here from the local
//! file, and the host hashes its own, so the trailer is checked against the whole file. If
//! that check fails after a resume, the host has removed its partial file and the upload runs
//! once more from the start.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{CancelToken, ClientError, Connection, Progress};
use crate::protocol::data::{self, CopyError, Digest, Md5};
use crate::protocol::frame::{self, MAX_RESPONSE_LEN};
use crate::protocol::message::{ErrorCode, MismatchReply, PutDone, PutReply, Request, parse_reply};
use crate::protocol::{Md5Digest, hex};

/// The slowest pace (bytes a second) at which a host is expected to hash its partial file
/// before it answers a resumed `put`.
const PREFIX_HASH_RATE: u64 = 20_000_000;

/// What to upload and where.
#[derive(Debug, Clone)]
pub struct UploadRequest {
    /// The local file.
    pub local: PathBuf,
    /// Its path on the host (relative to the hosted folder, `/` between components).
    pub path: String,
    /// Ask the host to create missing folders on the way (`"mkdirs":true`).
    pub mkdirs: bool,
}

/// How an upload that ran to its end turned out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadOutcome {
    /// The host's MD5 of the whole file equals the one computed here; it is saved at `path`.
    Verified { md5: Md5Digest, path: String, size: u64, resumed_from: u64 },
    /// The host's MD5 differs from the one computed here (`host` is `None` when it did not
    /// say which it computed); it kept nothing.
    Mismatch { sent: Md5Digest, host: Option<Md5Digest>, size: u64 },
}

fn parse_md5(s: &str) -> Option<Md5Digest> {
    if s.len() != 32 {
        return None;
    }
    let mut d = [0u8; 16];
    for (i, byte) in d.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(d)
}

pub(super) fn upload(
    conn: &mut Connection,
    req: &UploadRequest,
    cancel: &CancelToken,
    progress: &mut dyn FnMut(Progress),
) -> Result<UploadOutcome, ClientError> {
    conn.watch(cancel);
    let mut file = File::open(&req.local).map_err(ClientError::local("cannot open", &req.local))?;
    let meta = file.metadata().map_err(ClientError::local("cannot inspect", &req.local))?;
    if !meta.is_file() {
        return Err(ClientError::BadDestination {
            path: req.local.display().to_string(),
            reason: "only regular files can be uploaded (folders with -r)".into(),
        });
    }
    let size = meta.len();
    let mut restarted = false;
    let result = loop {
        let mut offset = 0;
        let outcome = attempt(conn, req, &mut file, size, &mut offset, cancel, progress);
        match outcome {
            Ok(UploadOutcome::Mismatch { .. }) if !restarted && offset > 0 && !cancel.is_cancelled() => {
                // The host's partial file may be what is wrong; it was removed: once more from 0.
                restarted = true;
            }
            other => break other,
        }
    };
    conn.set_patience(Duration::ZERO);
    match result {
        Err(_) if cancel.is_cancelled() => Err(ClientError::Cancelled),
        other => other,
    }
}

#[allow(clippy::too_many_arguments)]
fn attempt(
    conn: &mut Connection,
    req: &UploadRequest,
    file: &mut File,
    size: u64,
    resumed: &mut u64,
    cancel: &CancelToken,
    progress: &mut dyn FnMut(Progress),
) -> Result<UploadOutcome, ClientError> {
    if cancel.is_cancelled() {
        return Err(ClientError::Cancelled);
    }
    // A resuming host hashes its partial file before it answers, and is silent meanwhile.
    conn.set_patience(Duration::from_secs(size / PREFIX_HASH_RATE));
    let put = Request::Put { path: req.path.clone(), size, mkdirs: req.mkdirs };
    let PutReply { offset } = conn.request::<PutReply>(&put)?.map_err(ClientError::Server)?;
    conn.set_patience(Duration::ZERO);
    conn.poisoned = true;
    if offset > size {
        return Err(ClientError::Protocol(format!("the host asked to resume at byte {offset} of a {size}-byte file")));
    }
    *resumed = offset;
    let mut hasher = Md5::new();
    let mut buf = std::mem::take(&mut conn.buf);
    buf.resize(data::CHUNK, 0);
    let sent = send_section(conn, file, &mut hasher, &mut buf, size, offset, cancel, progress);
    conn.buf = buf;
    let digest = match sent {
        Ok(digest) => digest,
        Err(e) => return Err(after_failed_send(conn, e, req)),
    };
    let payload = frame::read_frame(&mut conn.reader, MAX_RESPONSE_LEN)
        .map_err(|e| ClientError::from_frame(e, conn.timeout()))?;
    conn.poisoned = false;
    let done = parse_reply::<PutDone>(&payload).map_err(|e| ClientError::Protocol(e.to_string()))?;
    match done {
        Ok(PutDone { md5 }) => match parse_md5(&md5) {
            Some(host) if host == digest => {
                Ok(UploadOutcome::Verified { md5: digest, path: req.path.clone(), size, resumed_from: offset })
            }
            host => Err(ClientError::Protocol(format!(
                "the host kept the file but reports MD5 {md5}, where {} was sent{}",
                hex(&digest),
                if host.is_none() { " (not an MD5)" } else { "" }
            ))),
        },
        Err(e) if e.error == ErrorCode::ChecksumMismatch => {
            let host =
                serde_json::from_slice::<MismatchReply>(&payload).ok().and_then(|m| m.md5).and_then(|m| parse_md5(&m));
            Ok(UploadOutcome::Mismatch { sent: digest, host, size })
        }
        Err(e) => Err(ClientError::Server(e)),
    }
}

/// The data section: prefix, the file's bytes from `offset` (hashing the ones before it
/// first), trailer. Returns the MD5 of the whole file as sent.
#[allow(clippy::too_many_arguments)]
fn send_section(
    conn: &mut Connection,
    file: &mut File,
    hasher: &mut Md5,
    buf: &mut [u8],
    size: u64,
    offset: u64,
    cancel: &CancelToken,
    progress: &mut dyn FnMut(Progress),
) -> Result<Md5Digest, Sending> {
    let local = |e: io::Error| Sending::Local(e);
    file.seek(SeekFrom::Start(0)).map_err(local)?;
    if offset > 0 {
        data::copy_hashed(file, &mut io::sink(), offset, hasher, buf, &mut |_| true).map_err(|e| match e {
            CopyError::Read { error, .. } => Sending::Local(error),
            _ => Sending::Local(io::Error::new(io::ErrorKind::UnexpectedEof, "the file shrank")),
        })?;
    }
    progress(Progress { done: offset, total: size });
    let stream = conn.reader.get_mut();
    data::write_header(stream, size - offset).map_err(Sending::Net)?;
    let mut on_chunk = |done: u64| {
        progress(Progress { done: offset + done, total: size });
        !cancel.is_cancelled()
    };
    let mut source = file.take(size - offset);
    match data::copy_hashed(&mut source, stream, size - offset, hasher, buf, &mut on_chunk) {
        Ok(()) => {}
        Err(CopyError::Write { error, .. }) => return Err(Sending::Net(error)),
        Err(CopyError::Read { error, .. }) => return Err(Sending::Local(error)),
        Err(CopyError::Incomplete { done, expected }) => {
            return Err(Sending::Local(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the file shrank while it was sent ({done} of {expected} bytes)"),
            )));
        }
        Err(CopyError::Cancelled { .. }) => return Err(Sending::Cancelled),
    }
    let digest = data::finish(hasher.clone());
    data::write_trailer(stream, &digest).and_then(|()| stream.flush()).map_err(Sending::Net)?;
    Ok(digest)
}

/// Why the data section could not be sent whole.
enum Sending {
    /// Reading the local file failed (or it shrank): the connection is closed mid-section, so
    /// the host keeps its partial file and no trailer is ever sent for bytes not read.
    Local(io::Error),
    /// The host stopped reading (it may have said why first).
    Net(io::Error),
    Cancelled,
}

/// A data section abandoned half-way: the connection cannot go on. A host that stopped reading
/// usually said why first (`no_space` when its disk filled up): read that answer if it is there.
fn after_failed_send(conn: &mut Connection, e: Sending, req: &UploadRequest) -> ClientError {
    let _ = conn.tcp.shutdown(std::net::Shutdown::Write);
    match e {
        Sending::Cancelled => ClientError::Cancelled,
        Sending::Local(error) => ClientError::Local { action: "cannot read", path: req.local.clone(), source: error },
        Sending::Net(error) => {
            conn.set_timeout(Duration::from_secs(2));
            let answer = frame::read_frame(&mut conn.reader, MAX_RESPONSE_LEN)
                .ok()
                .and_then(|p| parse_reply::<PutDone>(&p).ok())
                .and_then(|r| r.err());
            match answer {
                Some(reply) => ClientError::Server(reply),
                None => ClientError::from_io(error, conn.timeout()),
            }
        }
    }
}

/// What [`plan_uploads`] found to send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadPlan {
    /// Each local file with its path on the host.
    pub files: Vec<(PathBuf, String)>,
    /// What was left out: special files, and links to folders (never followed).
    pub skipped: Vec<PathBuf>,
}

/// The uploads that send `locals` into the host's folder `to` (`""`: the hosted folder): a
/// file goes there under its own name; a folder (only when `recursive`) under its own name,
/// with everything in it, in name order. Names that are not UTF-8 cannot be sent and are an
/// error, as is a folder without `recursive`. Reads the local disk only.
pub fn plan_uploads(locals: &[PathBuf], to: &str, recursive: bool) -> Result<UploadPlan, String> {
    use crate::protocol::path::{Escaped, join, split_request_path};
    let to = to.trim_matches('/');
    if !to.is_empty() {
        split_request_path(to)
            .map_err(|e| format!("{:?} is not a folder path on the host: {e}", Escaped(to).to_string()))?;
    }
    let mut plan = UploadPlan::default();
    for local in locals {
        let meta =
            std::fs::metadata(local).map_err(|e| format!("{}: {}", local.display(), crate::format::io_words(&e)))?;
        let remote = join(to, &local_name(local)?);
        if meta.is_dir() {
            if !recursive {
                return Err(format!("{} is a folder: add -r to upload it with everything in it", local.display()));
            }
            walk(local, &remote, &mut plan)?;
        } else {
            plan.files.push((local.clone(), remote));
        }
    }
    Ok(plan)
}

/// A local file's or folder's own name, as it will be called on the host.
fn local_name(local: &Path) -> Result<String, String> {
    let named = match local.file_name() {
        Some(n) => Some(n.to_os_string()),
        // `.` or `..`: the folder's real name.
        None => std::fs::canonicalize(local).ok().and_then(|p| p.file_name().map(|n| n.to_os_string())),
    };
    let Some(name) = named else { return Err(format!("{} has no name to give it on the host", local.display())) };
    name.into_string().map_err(|n| format!("{}: the name is not valid UTF-8, which hosts cannot take", n.display()))
}

fn walk(dir: &Path, remote: &str, plan: &mut UploadPlan) -> Result<(), String> {
    use crate::protocol::path::join;
    let read = std::fs::read_dir(dir).map_err(|e| format!("{}: {}", dir.display(), crate::format::io_words(&e)))?;
    let mut entries: Vec<_> = read.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = local_name(&path)?;
        let Ok(kind) = entry.file_type() else { continue };
        let meta = if kind.is_symlink() { std::fs::metadata(&path).ok() } else { entry.metadata().ok() };
        match meta {
            Some(m) if m.is_dir() && !kind.is_symlink() => walk(&path, &join(remote, &name), plan)?,
            Some(m) if m.is_file() => plan.files.push((path, join(remote, &name))),
            _ => plan.skipped.push(path),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_sends_files_under_their_names_and_folders_with_everything_in_them() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::create_dir_all(p.join("album/deeper")).unwrap();
        std::fs::write(p.join("one.txt"), b"1").unwrap();
        std::fs::write(p.join("album/b.txt"), b"b").unwrap();
        std::fs::write(p.join("album/deeper/a.txt"), b"a").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(p.join("album"), p.join("album/loop")).unwrap();
        let plan = plan_uploads(&[p.join("one.txt"), p.join("album")], "/to/", true).unwrap();
        let remote: Vec<&str> = plan.files.iter().map(|(_, r)| r.as_str()).collect();
        assert_eq!(remote, ["to/one.txt", "to/album/b.txt", "to/album/deeper/a.txt"]);
        #[cfg(unix)]
        assert_eq!(plan.skipped, [p.join("album/loop")], "a link to a folder is not followed");
        assert!(plan_uploads(&[p.join("album")], "", false).unwrap_err().contains("-r"));
        assert!(plan_uploads(&[p.join("one.txt")], "../x", false).is_err());
        assert!(plan_uploads(&[p.join("missing")], "", false).is_err());
    }
}
