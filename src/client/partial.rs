//! ferry's partial files: where a download lives until it verifies, and how ferry knows a
//! partial file is its own.
//!
//! A download of `DEST` writes `DEST.ferry-part`, next to a small record `DEST.ferry-part.json`
//! naming the host and the path it comes from. The record is written before the partial file
//! is created (with `create_new`, so nothing already there is ever truncated), and removed
//! after the partial file was renamed into place or discarded. A partial file without a record
//! is not ferry's: it is never resumed, replaced or deleted, and the download is refused with a
//! message saying so. A record for another path is left alone too unless the person asked to
//! replace (`overwrite`).
//!
//! Within one process, two downloads never write the same partial file: [`PartialLock`]
//! claims it in a process-wide registry until the download ends.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use super::ClientError;
use crate::protocol::names::{self, Os};

/// What ferry appends to a destination's file name for its partial file.
pub const PART_SUFFIX: &str = ".ferry-part";
/// What ferry appends to the partial file's name for its record.
pub const RECORD_SUFFIX: &str = ".json";
/// The `kind` field of a record: what makes the JSON recognisably ferry's.
const RECORD_KIND: &str = "ferry partial download";

/// `dest` with [`PART_SUFFIX`] appended to its file name: where a download of `dest` lives
/// until it verifies.
pub fn part_path(dest: &Path) -> PathBuf {
    with_suffix(dest, PART_SUFFIX)
}

/// The record that marks [`part_path`] as ferry's own (`DEST.ferry-part.json`).
pub fn record_path(dest: &Path) -> PathBuf {
    with_suffix(&part_path(dest), RECORD_SUFFIX)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

/// The record kept next to a partial file: what it is a download of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartialRecord {
    kind: String,
    /// The host's address as it was reached.
    pub host: String,
    /// The name of the folder the host shares.
    pub folder: String,
    /// The file's path on the host.
    pub path: String,
}

impl PartialRecord {
    pub fn new(host: impl Into<String>, folder: impl Into<String>, path: impl Into<String>) -> PartialRecord {
        PartialRecord { kind: RECORD_KIND.into(), host: host.into(), folder: folder.into(), path: path.into() }
    }

    /// Reads the record of `dest`'s partial file: `Ok(None)` when there is none, an error when
    /// something is there that is not a record ferry wrote.
    pub fn load(dest: &Path) -> Result<Option<PartialRecord>, ClientError> {
        let path = record_path(dest);
        match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ClientError::local("cannot inspect", &path)(e)),
            Ok(m) if !m.is_file() || m.len() > 64 * 1024 => return Err(ClientError::NotOurs(path)),
            Ok(_) => {}
        }
        let bytes = fs::read(&path).map_err(ClientError::local("cannot read", &path))?;
        match serde_json::from_slice::<PartialRecord>(&bytes) {
            Ok(r) if r.kind == RECORD_KIND => Ok(Some(r)),
            _ => Err(ClientError::NotOurs(path)),
        }
    }

    /// Writes this record for `dest`, replacing only a record ferry wrote (the caller checked
    /// with [`PartialRecord::load`]); flushed to disk before the partial file is created.
    pub fn save(&self, dest: &Path) -> Result<(), ClientError> {
        let path = record_path(dest);
        let mut json = serde_json::to_vec_pretty(self).expect("a record serialises");
        json.push(b'\n');
        // A name of this process's own, so a stale one left by a crash is never in the way.
        let tmp = with_suffix(&path, &format!(".{}.tmp", std::process::id()));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(ClientError::local("cannot create", &tmp))?;
        let written = file.write_all(&json).and_then(|()| file.sync_all());
        drop(file);
        if let Err(e) = written.and_then(|()| fs::rename(&tmp, &path)) {
            let _ = fs::remove_file(&tmp);
            return Err(ClientError::local("cannot write", &path)(e));
        }
        Ok(())
    }
}

impl PartialRecord {
    /// [`PartialRecord::save`] where no record is expected (there is no partial file): written
    /// in place and flushed, without a temporary file. A crash half-way leaves a record without
    /// a partial file, which the next download of `dest` simply replaces; a record found there
    /// after all is replaced by [`PartialRecord::save`], as it would have been.
    pub fn save_new(&self, dest: &Path) -> Result<(), ClientError> {
        let path = record_path(dest);
        let mut json = serde_json::to_vec_pretty(self).expect("a record serialises");
        json.push(b'\n');
        let mut file = match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return self.save(dest),
            Err(e) => return Err(ClientError::local("cannot create", &path)(e)),
        };
        file.write_all(&json).and_then(|()| file.sync_all()).map_err(ClientError::local("cannot write", &path))
    }
}

/// Removes `dest`'s partial file and its record; only for a partial file known to be ferry's.
pub(super) fn discard(dest: &Path) -> Result<(), ClientError> {
    let part = part_path(dest);
    match fs::remove_file(&part) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(ClientError::local("cannot remove", &part)(e)),
    }
    forget(dest)
}

/// Removes `dest`'s record (after its partial file was renamed into place).
pub(super) fn forget(dest: &Path) -> Result<(), ClientError> {
    let record = record_path(dest);
    match fs::remove_file(&record) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ClientError::local("cannot remove", &record)(e)),
    }
}

/// Creates `dest`'s partial file, which must not exist (the caller checked; `create_new` makes
/// sure nothing appeared meanwhile).
pub(super) fn create(dest: &Path) -> Result<File, ClientError> {
    let part = part_path(dest);
    OpenOptions::new().read(true).write(true).create_new(true).open(&part).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            ClientError::NotOurs(part.clone())
        } else {
            ClientError::local("cannot create", &part)(e)
        }
    })
}

/// Opens `dest`'s existing partial file to resume it.
pub(super) fn reopen(dest: &Path) -> Result<File, ClientError> {
    let part = part_path(dest);
    OpenOptions::new().read(true).write(true).open(&part).map_err(ClientError::local("cannot open", &part))
}

/// The partial files that downloads in this process are writing.
static IN_USE: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

fn in_use() -> MutexGuard<'static, Option<HashSet<PathBuf>>> {
    // A panic while holding the lock cannot leave the set inconsistent (one insert or remove).
    IN_USE.lock().unwrap_or_else(|p| p.into_inner())
}

/// A claim on one destination's partial file for the length of one download; dropping it
/// releases the claim (on every path out of the download, panics included).
#[derive(Debug)]
#[must_use = "the claim is released when this is dropped"]
pub struct PartialLock {
    key: PathBuf,
}

impl PartialLock {
    /// Claims `dest`'s partial file, or says that another download in this process has it.
    pub fn claim(dest: &Path) -> Result<PartialLock, ClientError> {
        Self::claim_key(identity(&part_path(dest)), dest)
    }

    /// [`PartialLock::claim`] for a `dest` whose folder's canonical path the caller already
    /// knows (a folder download claims many files in few folders).
    pub(super) fn claim_in(dest: &Path, canonical_folder: &Path) -> Result<PartialLock, ClientError> {
        Self::claim_key(canonical_folder.join(folded_name(&part_path(dest))), dest)
    }

    fn claim_key(key: PathBuf, dest: &Path) -> Result<PartialLock, ClientError> {
        if in_use().get_or_insert_with(HashSet::new).insert(key.clone()) {
            Ok(PartialLock { key })
        } else {
            Err(ClientError::InUse(dest.to_path_buf()))
        }
    }
}

impl Drop for PartialLock {
    fn drop(&mut self) {
        if let Some(set) = in_use().as_mut() {
            set.remove(&self.key);
        }
    }
}

/// The file name of `part`, in lower case where this system ignores case.
fn folded_name(part: &Path) -> std::ffi::OsString {
    let name = part.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    match name.to_str() {
        Some(n) => names::fold(n, Os::current()).into(),
        None => name,
    }
}

/// One name for one partial file however its destination was spelled: the folder's canonical
/// path (links resolved) and the file name, in lower case where this system ignores case.
fn identity(part: &Path) -> PathBuf {
    let name = folded_name(part);
    let parent = match part.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let parent = dunce::canonicalize(&parent).or_else(|_| std::path::absolute(&parent)).unwrap_or(parent);
    parent.join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_names_carry_ferrys_own_suffix() {
        assert_eq!(part_path(Path::new("dir/a.txt")), Path::new("dir/a.txt.ferry-part"));
        assert_eq!(record_path(Path::new("a.txt")), Path::new("a.txt.ferry-part.json"));
    }

    #[test]
    fn a_claim_is_exclusive_until_dropped_however_the_destination_is_spelled() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("x.bin");
        let first = PartialLock::claim(&dest).unwrap();
        let other_spelling = dir.path().join(".").join("x.bin");
        assert!(matches!(PartialLock::claim(&other_spelling), Err(ClientError::InUse(_))));
        drop(first);
        let _again = PartialLock::claim(&other_spelling).unwrap();
    }

    #[test]
    fn records_round_trip_and_foreign_json_is_not_ours() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("x.bin");
        assert_eq!(PartialRecord::load(&dest).unwrap(), None);
        let rec = PartialRecord::new("127.0.0.1:7878", "shared", "sub/x.bin");
        rec.save(&dest).unwrap();
        assert_eq!(PartialRecord::load(&dest).unwrap(), Some(rec));
        fs::write(record_path(&dest), br#"{"host":"h","folder":"f","path":"p"}"#).unwrap();
        assert!(matches!(PartialRecord::load(&dest), Err(ClientError::NotOurs(_))));
    }
}
