//! Remembers the MD5 of files already sent, keyed by the file's identity and change times, so a
//! file sent again need not be hashed again and can go out zero-copy.
//!
//! This is safe because the receiver always hashes what it got on its own: a stale digest can
//! only ever show up as a mismatch, never as a false "verified".

use std::collections::HashMap;
use std::fs::Metadata;
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
    #[cfg(unix)]
    pub fn of(meta: &Metadata) -> FileKey {
        use std::os::unix::fs::MetadataExt;
        FileKey {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    #[cfg(not(unix))]
    pub fn of(meta: &Metadata) -> FileKey {
        let t = |r: std::io::Result<std::time::SystemTime>| {
            r.ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or((0, 0), |d| (d.as_secs() as i64, d.subsec_nanos() as i64))
        };
        FileKey { dev: 0, ino: 0, size: meta.len(), mtime: t(meta.modified()), ctime: t(meta.created()) }
    }
}

/// A bounded map from file version to digest, shared by all connections.
#[derive(Default)]
pub struct DigestCache {
    map: Mutex<HashMap<FileKey, Md5Digest>>,
}

impl DigestCache {
    pub fn get(&self, key: &FileKey) -> Option<Md5Digest> {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).get(key).copied()
    }

    pub fn insert(&self, key: FileKey, digest: Md5Digest) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= CAPACITY {
            map.clear();
        }
        map.insert(key, digest);
    }
}
