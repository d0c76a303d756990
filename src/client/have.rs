//! "Already have it": whether a local file is already the host's file, by the MD5 the host's
//! listing carries, so that nothing is downloaded again.
//!
//! The listing's digest is the host's word, not a proof (see `PROTOCOL.md`, "Listing
//! digests"): a match here means the local bytes hash to what the host says its file hashes
//! to. That is the same claim a download's trailer makes, checked against the same digest.

use std::fs::{self, File};
use std::io;
use std::path::Path;

use super::{CancelToken, ClientError};
use crate::protocol::Md5Digest;
use crate::protocol::data::{self, CopyError, Digest, Md5};
use crate::protocol::message::{Entry, EntryKind};

/// Whether `local` already holds the file the host listed as `listed`: it is a regular file
/// (not a link) of the listed size, the listing carries an MD5, and the local file's MD5 is
/// that one. `Some(md5)` then; `None` when it is not or cannot be told (no digest in the
/// listing, no such local file, another size, another digest). Only a file of the right size
/// is read (hashed at disk speed); `cancel` stops that between chunks (`Cancelled`).
///
/// ```no_run
/// use ferry::client::{CancelToken, ConnectOptions, Connection, already_have};
///
/// let mut conn = Connection::connect("192.168.1.20", &ConnectOptions::remembering())?;
/// for entry in conn.list("photos")?.entries {
///     let local = std::path::Path::new("photos").join(&entry.name);
///     if let Some(md5) = already_have(&local, &entry, &CancelToken::new())? {
///         println!("{} is already here ({})", entry.name, ferry::protocol::hex(&md5));
///     }
/// }
/// # Ok::<(), ferry::client::ClientError>(())
/// ```
pub fn already_have(local: &Path, listed: &Entry, cancel: &CancelToken) -> Result<Option<Md5Digest>, ClientError> {
    let (EntryKind::File, Some(size), Some(expected)) = (listed.kind, listed.size, listed.digest()) else {
        return Ok(None);
    };
    match local_md5(local, size, cancel)? {
        Some(actual) if actual == expected => Ok(Some(actual)),
        _ => Ok(None),
    }
}

/// The MD5 of `local` when it is a regular file of exactly `size` bytes; `None` otherwise.
pub fn local_md5(local: &Path, size: u64, cancel: &CancelToken) -> Result<Option<Md5Digest>, ClientError> {
    match fs::symlink_metadata(local) {
        Ok(m) if m.is_file() && m.len() == size => {}
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ClientError::local("cannot inspect", local)(e)),
    }
    if cancel.is_cancelled() {
        return Err(ClientError::Cancelled);
    }
    let mut file = File::open(local).map_err(ClientError::local("cannot read", local))?;
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; data::CHUNK];
    let copied =
        data::copy_hashed(&mut file, &mut io::sink(), size, &mut hasher, &mut buf, &mut |_| !cancel.is_cancelled());
    match copied {
        Ok(()) => {}
        Err(CopyError::Cancelled { .. }) => return Err(ClientError::Cancelled),
        // It shrank while it was read: not the listed file (any more).
        Err(CopyError::Incomplete { .. }) => return Ok(None),
        Err(CopyError::Read { error, .. } | CopyError::Write { error, .. }) => {
            return Err(ClientError::local("cannot read", local)(error));
        }
    }
    // It grew while it was read: not the listed file either.
    if file.metadata().map_err(ClientError::local("cannot inspect", local))?.len() != size {
        return Ok(None);
    }
    Ok(Some(data::finish(hasher)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::hex;

    fn listed(size: u64, md5: Option<&str>) -> Entry {
        Entry { name: "f".into(), kind: EntryKind::File, size: Some(size), modified: None, md5: md5.map(Into::into) }
    }

    #[test]
    fn only_a_file_of_the_listed_size_and_digest_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"abc").unwrap();
        let abc = "900150983cd24fb0d6963f7d28e17f72";
        let cancel = CancelToken::new();
        assert_eq!(already_have(&path, &listed(3, Some(abc)), &cancel).unwrap().map(|d| hex(&d)).as_deref(), Some(abc));
        assert_eq!(already_have(&path, &listed(3, None), &cancel).unwrap(), None, "no digest listed");
        assert_eq!(already_have(&path, &listed(4, Some(abc)), &cancel).unwrap(), None, "another size");
        let other = "00000000000000000000000000000000";
        assert_eq!(already_have(&path, &listed(3, Some(other)), &cancel).unwrap(), None, "another digest");
        assert_eq!(already_have(&dir.path().join("none"), &listed(3, Some(abc)), &cancel).unwrap(), None);
        assert_eq!(already_have(dir.path(), &listed(3, Some(abc)), &cancel).unwrap(), None, "a folder");
        cancel.cancel();
        assert!(matches!(already_have(&path, &listed(3, Some(abc)), &cancel), Err(ClientError::Cancelled)));
    }
}
