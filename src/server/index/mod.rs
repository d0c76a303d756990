//! The host's digest index: the MD5 of files it has hashed, kept across restarts, so a file
//! is sent warm (no hashing, `sendfile` on plain connections) and listed with its digest.
//!
//! - [`key`]: what a digest is remembered under (device, inode, size, modification and change
//!   times).
//! - [`store`]: the file in the cache folder: sorted fixed-size records, read in place, so
//!   memory stays small for a million files.
//! - [`DigestIndex`]: that file plus the digests learned since it was written (bounded), what
//!   every connection asks.
//! - [`worker`]: the one low-priority thread that hashes what clients list (and, optionally,
//!   the whole folder when hosting starts), stepping aside while any file is being sent.
//!
//! Nothing here is trusted beyond an exact key match, and not even that far: the receiver
//! always hashes what it received on its own, so a stale or forged digest can only ever show
//! as a mismatch, never as a false "verified".

pub mod key;
mod store;
pub mod worker;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use key::FileKey;
use store::{Disk, Key};

use crate::protocol::Md5Digest;

/// Digests learned and not yet written are written once there are this many (or more: an
/// eighth of what the file holds, at most [`FLUSH_AT_MOST`], so a big index is not rewritten
/// for a handful of new files)…
const FLUSH_AT_LEAST: usize = 16 * 1024;
const FLUSH_AT_MOST: usize = 128 * 1024;
/// …or when none came for this long.
const FLUSH_AFTER: Duration = Duration::from_secs(2);
/// Without a file to write to (no cache folder, or writing failed), the digests in memory
/// start over past this many: the index is then only an optimisation for this run.
const MEMORY_ONLY_CAP: usize = 64 * 1024;
/// Past this many digests in the file, a flush starts the file over.
const MAX_RECORDS: u64 = 4_000_000;

/// Where ferry keeps what can be rebuilt: `FERRY_CACHE_DIR` if set (tests and benchmarks put
/// it under `target/`), else the user's cache folder (`~/.cache/ferry` on Linux).
pub fn cache_dir() -> Option<PathBuf> {
    match std::env::var_os("FERRY_CACHE_DIR") {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => dirs::cache_dir().map(|d| d.join("ferry")),
    }
}

/// The index file of the hosted folder `root` (its canonical path) inside `dir`: one file per
/// hosted folder, named after a hash of the folder's path.
pub fn index_path(dir: &Path, root: &Path) -> PathBuf {
    use sha2::{Digest, Sha256};
    let hash = Sha256::digest(root.as_os_str().as_encoded_bytes());
    let name: String = hash[..12].iter().map(|b| format!("{b:02x}")).collect();
    dir.join(format!("{name}.idx"))
}

/// The digests a host knows: the index file (if any) plus those learned since, shared by the
/// indexing worker and every connection.
pub struct DigestIndex {
    path: Option<PathBuf>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Learned since the file was written.
    fresh: HashMap<Key, Md5Digest>,
    /// Being written into a new file right now (still answered from here meanwhile).
    flushing: Option<Arc<Vec<(Key, Md5Digest)>>>,
    disk: Option<Arc<Disk>>,
    /// Writing failed once: memory only from then on.
    broken: bool,
    last_insert: Option<Instant>,
}

impl DigestIndex {
    /// An index kept in memory only.
    pub fn memory() -> DigestIndex {
        DigestIndex { path: None, state: Mutex::default() }
    }

    /// The index kept at `path`, loaded now. A file that cannot be used (damaged, another
    /// version, unreadable) is ignored, rebuilt from scratch, and said why in the second value.
    pub fn open(path: PathBuf) -> (DigestIndex, Option<String>) {
        let (disk, problem) = match Disk::load(&path) {
            Ok(disk) => (disk, None),
            Err(e) => (None, Some(format!("the digest index {} was not used ({e}); rebuilding it", path.display()))),
        };
        let state = State { disk: disk.map(Arc::new), ..Default::default() };
        (DigestIndex { path: Some(path), state: Mutex::new(state) }, problem)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where the index is kept (`None`: memory only).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The digest remembered for exactly this version of a file.
    pub fn get(&self, key: &FileKey) -> Option<Md5Digest> {
        if !key.known() {
            return None;
        }
        let k = key.bytes();
        let state = self.state();
        if let Some(d) = state.fresh.get(&k) {
            return Some(*d);
        }
        if let Some(f) = &state.flushing
            && let Ok(i) = f.binary_search_by(|(fk, _)| fk.cmp(&k))
        {
            return Some(f[i].1);
        }
        // A read error is a miss: the file is then hashed again, which is always safe.
        state.disk.as_ref().and_then(|d| d.get(&k).ok().flatten())
    }

    /// Remembers `digest` for this version of a file.
    pub fn insert(&self, key: &FileKey, digest: Md5Digest) {
        if !key.known() {
            return;
        }
        let persistent = self.path.is_some();
        let mut state = self.state();
        let cap = if persistent && !state.broken { 2 * FLUSH_AT_MOST } else { MEMORY_ONLY_CAP };
        if state.fresh.len() >= cap {
            state.fresh.clear();
        }
        state.fresh.insert(key.bytes(), digest);
        state.last_insert = Some(Instant::now());
    }

    /// How many digests it holds (those in the file, plus those learned since; a digest
    /// learned again for a file in the file counts twice until the next flush).
    pub fn len(&self) -> u64 {
        let state = self.state();
        state.disk.as_ref().map_or(0, |d| d.len()) + state.fresh.len() as u64
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether digests learned since the last flush should be written now: many of them, or
    /// some and none new for a moment (or `now`, when the host is stopping).
    pub fn flush_due(&self, now: bool) -> bool {
        let state = self.state();
        if self.path.is_none() || state.broken || state.fresh.is_empty() {
            return false;
        }
        let threshold =
            (state.disk.as_ref().map_or(0, |d| d.len()) / 8).clamp(FLUSH_AT_LEAST as u64, FLUSH_AT_MOST as u64);
        now || state.fresh.len() as u64 >= threshold || state.last_insert.is_some_and(|t| t.elapsed() >= FLUSH_AFTER)
    }

    /// Writes the digests learned since the last flush into a new index file. Only one thread
    /// (the indexing worker) flushes. On failure the index goes on in memory only.
    pub fn flush(&self) -> io::Result<()> {
        let Some(path) = &self.path else { return Ok(()) };
        let (fresh, disk) = {
            let mut state = self.state();
            if state.broken || state.fresh.is_empty() {
                return Ok(());
            }
            let mut fresh: Vec<(Key, Md5Digest)> = state.fresh.drain().collect();
            fresh.sort_unstable_by_key(|(k, _)| *k);
            let fresh = Arc::new(fresh);
            state.flushing = Some(fresh.clone());
            (fresh, state.disk.clone())
        };
        let written = Disk::write_beside(path, disk.as_deref(), &fresh, MAX_RECORDS);
        let mut state = self.state();
        // Windows cannot rename over a file that is open: the old file's handles close first
        // (lookups use it only under this lock, and this thread held the only other clone).
        drop(disk);
        let old = state.disk.take();
        drop(old);
        let written = written.and_then(|w| w.commit(path));
        state.flushing = None;
        match written {
            Ok(disk) => {
                state.disk = Some(Arc::new(disk));
                Ok(())
            }
            Err(e) => {
                // The old file is still in place (or none was): keep answering from it.
                state.disk = Disk::load(path).ok().flatten().map(Arc::new);
                state.broken = true;
                for (k, d) in fresh.iter() {
                    state.fresh.entry(*k).or_insert(*d);
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_survive_a_flush_and_a_reopen_and_other_versions_miss() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.idx");
        let (index, problem) = DigestIndex::open(path.clone());
        assert!(problem.is_none());
        for n in 0..100 {
            index.insert(&FileKey::fake(n), [n as u8; 16]);
        }
        assert!(index.flush_due(true));
        assert!(!index.flush_due(false), "100 fresh digests are not due yet");
        index.flush().unwrap();
        index.insert(&FileKey::fake(500), [7; 16]);
        assert_eq!(index.get(&FileKey::fake(3)), Some([3; 16]), "from the file");
        assert_eq!(index.get(&FileKey::fake(500)), Some([7; 16]), "from memory");
        index.flush().unwrap();
        drop(index);

        let (again, problem) = DigestIndex::open(path);
        assert!(problem.is_none());
        assert_eq!(again.len(), 101);
        assert_eq!(again.get(&FileKey::fake(99)), Some([99; 16]));
        assert_eq!(again.get(&FileKey::fake(500)), Some([7; 16]));
        assert_eq!(again.get(&FileKey::fake(101)), None);
    }

    #[test]
    fn a_damaged_index_is_reported_and_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.idx");
        std::fs::write(&path, vec![0x5a; 4096]).unwrap();
        let (index, problem) = DigestIndex::open(path.clone());
        assert!(problem.unwrap().contains("rebuilding"));
        assert!(index.is_empty());
        index.insert(&FileKey::fake(1), [1; 16]);
        index.flush().unwrap();
        let (again, problem) = DigestIndex::open(path);
        assert!(problem.is_none());
        assert_eq!(again.get(&FileKey::fake(1)), Some([1; 16]));
    }

    #[test]
    fn an_unwritable_index_goes_on_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the index's folder should be: nothing can be written there.
        std::fs::write(dir.path().join("blocker"), b"x").unwrap();
        let (index, _) = DigestIndex::open(dir.path().join("blocker/i.idx"));
        index.insert(&FileKey::fake(1), [1; 16]);
        assert!(index.flush().is_err());
        assert_eq!(index.get(&FileKey::fake(1)), Some([1; 16]));
        assert!(!index.flush_due(true), "no more attempts once writing failed");
    }
}
