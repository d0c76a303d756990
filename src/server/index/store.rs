//! The digest index on disk: one file of fixed-size records sorted by key, read in place.
//!
//! ```text
//! +-------------------+---------------------------------------+-------------------------+
//! | header, 16 bytes  | N records, 64 bytes each, sorted by   | trailer, 24 bytes       |
//! | "FERRYIDX"        | key bytes, no key twice:              | N: u64 big-endian       |
//! | version: u32 BE   |   key: 48 bytes (see FileKey::bytes)  | MD5 of everything       |
//! | record len: u32 BE|   MD5: 16 raw bytes                   | before it (16 bytes)    |
//! +-------------------+---------------------------------------+-------------------------+
//! ```
//!
//! Memory stays small however many records there are: only every [`STRIDE`]th key is kept
//! (1,000,000 records: ~15,600 keys, 750 KB), and a lookup reads one block of at most
//! [`STRIDE`] records (4 KiB) from the file. A file that is short, long, out of order, of
//! another version or whose MD5 does not match is not used (and is rewritten at the next
//! flush). A new file is written beside the old one and renamed over it, so a reader (this
//! process or another) sees the old file or the new one, never half of one.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::key::KEY_LEN;
use crate::protocol::data::{Digest, Md5};
use crate::protocol::{MD5_LEN, Md5Digest};

const MAGIC: &[u8; 8] = b"FERRYIDX";
const VERSION: u32 = 1;
const HEADER_LEN: u64 = 16;
const TRAILER_LEN: u64 = 24;
pub const RECORD_LEN: usize = KEY_LEN + MD5_LEN;
/// One key in this many is kept in memory.
pub const STRIDE: usize = 64;

pub type Key = [u8; KEY_LEN];

/// An index file, open for lookups.
pub struct Disk {
    file: File,
    count: u64,
    /// The key of records 0, STRIDE, 2 * STRIDE, …
    sparse: Vec<Key>,
}

/// Why an index file was not used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read it: {0}")]
    Io(#[from] io::Error),
    #[error("it is damaged or of another version ({0})")]
    Corrupt(&'static str),
}

impl Disk {
    /// Opens and checks the index at `path`; `Ok(None)` if there is none.
    pub fn load(path: &Path) -> Result<Option<Disk>, LoadError> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let len = file.metadata()?.len();
        if len < HEADER_LEN + TRAILER_LEN || !(len - HEADER_LEN - TRAILER_LEN).is_multiple_of(RECORD_LEN as u64) {
            return Err(LoadError::Corrupt("its length is not a whole number of records"));
        }
        let count = (len - HEADER_LEN - TRAILER_LEN) / RECORD_LEN as u64;
        let mut hasher = Md5::new();
        let mut header = [0u8; HEADER_LEN as usize];
        read_exact_at(&file, &mut header, 0)?;
        if &header[0..8] != MAGIC
            || header[8..12] != VERSION.to_be_bytes()
            || header[12..16] != (RECORD_LEN as u32).to_be_bytes()
        {
            return Err(LoadError::Corrupt("not a ferry index of this version"));
        }
        hasher.update(header);
        let mut sparse = Vec::with_capacity(count.div_ceil(STRIDE as u64) as usize);
        let mut block = vec![0u8; RECORD_LEN * 1024];
        let mut prev: Option<Key> = None;
        let mut i = 0u64;
        while i < count {
            let n = (count - i).min(1024) as usize;
            let buf = &mut block[..n * RECORD_LEN];
            read_exact_at(&file, buf, HEADER_LEN + i * RECORD_LEN as u64)?;
            hasher.update(&*buf);
            for (j, rec) in buf.chunks_exact(RECORD_LEN).enumerate() {
                let key: Key = rec[..KEY_LEN].try_into().expect("a record holds a key");
                if prev.is_some_and(|p| p >= key) {
                    return Err(LoadError::Corrupt("its records are out of order"));
                }
                if (i + j as u64).is_multiple_of(STRIDE as u64) {
                    sparse.push(key);
                }
                prev = Some(key);
            }
            i += n as u64;
        }
        let mut trailer = [0u8; TRAILER_LEN as usize];
        read_exact_at(&file, &mut trailer, len - TRAILER_LEN)?;
        if trailer[0..8] != count.to_be_bytes() {
            return Err(LoadError::Corrupt("its record count is wrong"));
        }
        hasher.update(&trailer[0..8]);
        let sum: Md5Digest = hasher.finalize().into();
        if trailer[8..] != sum {
            return Err(LoadError::Corrupt("its checksum does not match"));
        }
        Ok(Some(Disk { file, count, sparse }))
    }

    /// How many digests the file holds.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// The digest recorded for `key`.
    pub fn get(&self, key: &Key) -> io::Result<Option<Md5Digest>> {
        // The last block whose first key is <= key.
        let block = match self.sparse.partition_point(|k| k <= key) {
            0 => return Ok(None),
            n => n - 1,
        };
        let first = (block * STRIDE) as u64;
        let n = (self.count - first).min(STRIDE as u64) as usize;
        let mut buf = [0u8; RECORD_LEN * STRIDE];
        let buf = &mut buf[..n * RECORD_LEN];
        read_exact_at(&self.file, buf, HEADER_LEN + first * RECORD_LEN as u64)?;
        let found = buf
            .chunks_exact(RECORD_LEN)
            .find(|rec| &rec[..KEY_LEN] == key)
            .map(|rec| rec[KEY_LEN..].try_into().expect("a record holds a digest"));
        Ok(found)
    }

    /// Every record in order, to `f`.
    fn for_each(&self, f: &mut dyn FnMut(&Key, &Md5Digest) -> io::Result<()>) -> io::Result<()> {
        let mut block = vec![0u8; RECORD_LEN * 1024];
        let mut i = 0u64;
        while i < self.count {
            let n = (self.count - i).min(1024) as usize;
            let buf = &mut block[..n * RECORD_LEN];
            read_exact_at(&self.file, buf, HEADER_LEN + i * RECORD_LEN as u64)?;
            for rec in buf.chunks_exact(RECORD_LEN) {
                f(rec[..KEY_LEN].try_into().expect("key"), rec[KEY_LEN..].try_into().expect("digest"))?;
            }
            i += n as u64;
        }
        Ok(())
    }

    /// Writes a new index at `path`: `old`'s records (when given) merged with `fresh`, then
    /// closes `old` and puts the new file in its place (see [`Disk::write_beside`]).
    #[cfg(test)]
    pub fn write(path: &Path, old: Option<Disk>, fresh: &[(Key, Md5Digest)], max: u64) -> io::Result<Disk> {
        let written = Disk::write_beside(path, old.as_ref(), fresh, max)?;
        drop(old);
        written.commit(path)
    }

    /// Writes a new index beside `path`: `old`'s records (when given) merged with `fresh`
    /// (sorted by key, no key twice; a fresh digest wins over an old one), at most `max`
    /// records (past it the old records are left out: the index starts over from the fresh
    /// ones), flushed to disk. [`Written::commit`] renames it over `path`; every handle on the
    /// old file must be closed first, since Windows cannot replace a file that is open.
    pub fn write_beside(path: &Path, old: Option<&Disk>, fresh: &[(Key, Md5Digest)], max: u64) -> io::Result<Written> {
        let old = old.filter(|d| d.count + fresh.len() as u64 <= max);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let tmp = temp_path(path);
        let file = fs::OpenOptions::new().read(true).write(true).create_new(true).open(&tmp)?;
        let result = (|| {
            let mut w = Writer {
                out: BufWriter::with_capacity(256 * 1024, &file),
                hasher: Md5::new(),
                count: 0,
                sparse: Vec::new(),
            };
            let mut header = [0u8; HEADER_LEN as usize];
            header[0..8].copy_from_slice(MAGIC);
            header[8..12].copy_from_slice(&VERSION.to_be_bytes());
            header[12..16].copy_from_slice(&(RECORD_LEN as u32).to_be_bytes());
            w.put(&header)?;
            let mut next = fresh.iter().peekable();
            if let Some(old) = old {
                old.for_each(&mut |key, md5| {
                    while let Some((k, m)) = next.next_if(|(k, _)| k < key) {
                        w.record(k, m)?;
                    }
                    match next.next_if(|(k, _)| k == key) {
                        Some((k, m)) => w.record(k, m),
                        None => w.record(key, md5),
                    }
                })?;
            }
            for (k, m) in next {
                w.record(k, m)?;
            }
            let count = w.count;
            w.hasher.update(count.to_be_bytes());
            let sum: Md5Digest = w.hasher.clone().finalize().into();
            w.out.write_all(&count.to_be_bytes())?;
            w.out.write_all(&sum)?;
            w.out.flush()?;
            let sparse = std::mem::take(&mut w.sparse);
            drop(w);
            file.sync_all()?;
            Ok((count, sparse))
        })();
        match result {
            Ok((count, sparse)) => Ok(Written { tmp, disk: Disk { file, count, sparse } }),
            Err(e) => {
                drop(file);
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }
}

/// A new index file written beside the one it replaces, not yet in its place.
pub struct Written {
    tmp: PathBuf,
    disk: Disk,
}

impl Written {
    /// Renames the new file over `path` and returns it, open for lookups.
    pub fn commit(self, path: &Path) -> io::Result<Disk> {
        match fs::rename(&self.tmp, path) {
            Ok(()) => Ok(self.disk),
            Err(e) => {
                drop(self.disk);
                let _ = fs::remove_file(&self.tmp);
                Err(e)
            }
        }
    }
}

struct Writer<'a> {
    out: BufWriter<&'a File>,
    hasher: Md5,
    count: u64,
    sparse: Vec<Key>,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.hasher.update(bytes);
        self.out.write_all(bytes)
    }

    fn record(&mut self, key: &Key, md5: &Md5Digest) -> io::Result<()> {
        if self.count.is_multiple_of(STRIDE as u64) {
            self.sparse.push(*key);
        }
        self.count += 1;
        self.put(key)?;
        self.put(md5)
    }
}

/// A name beside `path` that no other writer (thread or process) uses at the same time.
fn temp_path(path: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}-{n}", std::process::id()));
    path.with_file_name(name)
}

#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], pos: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, pos)
}

#[cfg(windows)]
fn read_exact_at(file: &File, mut buf: &mut [u8], mut pos: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, pos) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut buf[n..];
                pos += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::index::key::FileKey;

    fn records(range: std::ops::Range<u64>) -> Vec<(Key, Md5Digest)> {
        let mut v: Vec<(Key, Md5Digest)> =
            range.map(|n| (FileKey::fake(n).bytes(), [(n % 251) as u8; MD5_LEN])).collect();
        v.sort();
        v
    }

    #[test]
    fn written_records_are_found_after_reloading_and_others_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.idx");
        assert!(Disk::load(&path).unwrap().is_none(), "no file is no index, not an error");
        let fresh = records(0..1000);
        Disk::write(&path, None, &fresh, u64::MAX).unwrap();
        let disk = Disk::load(&path).unwrap().unwrap();
        assert_eq!(disk.len(), 1000);
        for (k, m) in &fresh {
            assert_eq!(disk.get(k).unwrap(), Some(*m));
        }
        assert_eq!(disk.get(&FileKey::fake(5000).bytes()).unwrap(), None);
        assert_eq!(disk.get(&[0u8; KEY_LEN]).unwrap(), None, "before the first key");
        assert_eq!(disk.get(&[0xff; KEY_LEN]).unwrap(), None, "after the last key");
    }

    #[test]
    fn a_merge_keeps_old_records_and_fresh_digests_win() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.idx");
        let old = Disk::write(&path, None, &records(0..300), u64::MAX).unwrap();
        let mut fresh = records(200..500);
        for (_, m) in &mut fresh {
            m[0] ^= 0xff;
        }
        let merged = Disk::write(&path, Some(old), &fresh, u64::MAX).unwrap();
        assert_eq!(merged.len(), 500);
        drop(merged); // one handle on the file at a time: Windows cannot replace an open file
        let reloaded = Disk::load(&path).unwrap().unwrap();
        assert_eq!(reloaded.len(), 500);
        for (k, m) in records(0..200).iter().chain(&fresh) {
            assert_eq!(reloaded.get(k).unwrap(), Some(*m));
        }
        // Past the cap the old records are dropped, not the fresh ones.
        let capped = Disk::write(&path, Some(reloaded), &records(1000..1010), 100).unwrap();
        assert_eq!(capped.len(), 10);
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn a_damaged_or_truncated_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.idx");
        Disk::write(&path, None, &records(0..100), u64::MAX).unwrap();
        let good = fs::read(&path).unwrap();
        let mut flipped = good.clone();
        flipped[HEADER_LEN as usize + 10 * RECORD_LEN + 50] ^= 1; // a digest byte
        fs::write(&path, &flipped).unwrap();
        assert!(matches!(Disk::load(&path), Err(LoadError::Corrupt(_))));
        fs::write(&path, &good[..good.len() - 1]).unwrap();
        assert!(matches!(Disk::load(&path), Err(LoadError::Corrupt(_))));
        fs::write(&path, b"FERRYIDX but not really an index file at all, no").unwrap();
        assert!(matches!(Disk::load(&path), Err(LoadError::Corrupt(_))));
        fs::write(&path, &good).unwrap();
        assert_eq!(Disk::load(&path).unwrap().unwrap().len(), 100);
    }
}
