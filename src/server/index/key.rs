//! The identity of one version of a file: what the digest index is keyed by.

use std::fs::{File, Metadata};

/// Bytes of an encoded key (see [`FileKey::bytes`]).
pub const KEY_LEN: usize = 48;

/// One version of one file: device, inode, size, modification and change times (to the
/// nanosecond). Any write to the file changes its change time, so a digest remembered under
/// a key never describes other bytes unless someone forges the times *and* keeps the inode,
/// and even then the receiver's own hash catches it.
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

    /// The key from a `stat` of the file (a listing's look at an entry): the same as
    /// [`FileKey::of`] gives for the open file.
    #[cfg(unix)]
    #[allow(clippy::useless_conversion, clippy::unnecessary_cast)] // field types differ by target
    pub fn of_stat(st: &rustix::fs::Stat) -> FileKey {
        FileKey {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            size: u64::try_from(st.st_size).unwrap_or(0),
            mtime: (i64::from(st.st_mtime), st.st_mtime_nsec as i64),
            ctime: (i64::from(st.st_ctime), st.st_ctime_nsec as i64),
        }
    }

    /// Elsewhere: the volume and file index of the open handle (Windows), the last write
    /// and creation times (Windows has no change time in std). A file whose identity cannot
    /// be read gets an unknown one, which the index never stores or finds.
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

    /// Whether the file's identity could be read (an unknown one is never stored or found).
    pub fn known(&self) -> bool {
        (self.dev, self.ino) != UNKNOWN
    }

    /// The file's size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The key as fixed-size bytes whose byte order is a total order on keys (the on-disk
    /// index is sorted by it): device, inode, size, then each time as seconds (sign bit
    /// flipped) and nanoseconds, all big-endian.
    pub fn bytes(&self) -> [u8; KEY_LEN] {
        let mut out = [0u8; KEY_LEN];
        let secs = |s: i64| (s as u64 ^ (1 << 63)).to_be_bytes();
        out[0..8].copy_from_slice(&self.dev.to_be_bytes());
        out[8..16].copy_from_slice(&self.ino.to_be_bytes());
        out[16..24].copy_from_slice(&self.size.to_be_bytes());
        out[24..32].copy_from_slice(&secs(self.mtime.0));
        out[32..36].copy_from_slice(&(self.mtime.1 as u32).to_be_bytes());
        out[36..44].copy_from_slice(&secs(self.ctime.0));
        out[44..48].copy_from_slice(&(self.ctime.1 as u32).to_be_bytes());
        out
    }

    /// A made-up key, for tests of the index.
    #[cfg(test)]
    pub fn fake(n: u64) -> FileKey {
        FileKey { dev: 1, ino: n, size: n * 7, mtime: (1_700_000_000 + n as i64, 5), ctime: (-3, 999_999_999) }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_bytes_order_follows_the_fields() {
        let a = FileKey::fake(1);
        let mut b = a;
        b.mtime.0 = -5; // before 1970 sorts first
        assert!(b.bytes() < a.bytes());
        let mut c = a;
        c.ctime.1 += 1;
        assert_ne!(c.bytes(), a.bytes());
        assert_eq!(a.bytes(), FileKey::fake(1).bytes());
    }
}
