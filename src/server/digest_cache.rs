//! Remembers the MD5 of files already sent, keyed by the file's identity and change times, so a
//! file sent again need not be hashed again and can go out zero-copy.
//!
//! This is safe because the receiver always hashes what it got on its own: a stale digest can
//! only ever show up as a mismatch, never as a false "verified".

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::sync::Mutex;

use crate::protocol::Md5Digest;

/// Most digests remembered; past it the cache starts over (it is only an optimisation).
const CAPACITY: usize = 16 * 1024;

/// The identity of one version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileKey {
    /// The key of the open `file` whose metadata is `meta`.
    #[cfg(unix)]
    pub fn of(_file: &File, meta: &Metadata) -> FileKey {
        use std::os::unix::fs::MetadataExt;
        FileKey {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// Elsewhere: the volume and file index of the open handle (Windows), the last write
    /// and creation times (Windows has no change time in std). A file whose identity cannot
    /// be read gets an unknown one, which the cache never stores or finds.
    #[cfg(not(unix))]
    pub fn of(file: &File, meta: &Metadata) -> FileKey {
        let t = |r: std::io::Result<std::time::SystemTime>| {
            r.ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or((0, 0), |d| (d.as_secs() as i64, d.subsec_nanos() as i64))
        };
        let (dev, ino) = identity(file).unwrap_or(UNKNOWN);
        FileKey { dev, ino, size: meta.len(), mtime: t(meta.modified()), ctime: t(meta.created()) }
    }

    fn known(&self) -> bool {
        (self.dev, self.ino) != UNKNOWN
    }
}

/// The identity a file gets when none can be read (never a real device and inode on Unix).
const UNKNOWN: (u64, u64) = (u64::MAX, u64::MAX);

#[cfg(windows)]
fn identity(file: &File) -> Option<(u64, u64)> {
    let info = winapi_util::file::information(file).ok()?;
    Some((info.volume_serial_number(), info.file_index()))
}

#[cfg(all(not(unix), not(windows)))]
fn identity(_file: &File) -> Option<(u64, u64)> {
    None
}

/// A bounded map from file version to digest, shared by all connections.
#[derive(Default)]
pub struct DigestCache {
    map: Mutex<HashMap<FileKey, Md5Digest>>,
}

impl DigestCache {
    pub fn get(&self, key: &FileKey) -> Option<Md5Digest> {
        if !key.known() {
            return None;
        }
        self.map.lock().unwrap_or_else(|p| p.into_inner()).get(key).copied()
    }

    pub fn insert(&self, key: FileKey, digest: Md5Digest) {
        if !key.known() {
            return;
        }
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= CAPACITY {
            map.clear();
        }
        map.insert(key, digest);
    }
}
