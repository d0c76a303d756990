//! An upload's folder on disk, reached without following any symbolic link, and the few things
//! an upload does in it: look at a name, create or reopen ferry's partial file and its record,
//! rename a verified file into place without ever replacing one, remove ferry's own files.
//!
//! On Unix every operation works on a handle on the folder (`openat` and friends with
//! `O_NOFOLLOW`), opened by a walk from the hosted folder's handle that refuses any symbolic
//! link on the way, even one that stays inside: nothing can be swapped in between a check and
//! a write. A missing folder on the way is created (only when asked) by `mkdirat` on the
//! handle of the folder before it, then opened the same way. Elsewhere (Windows) the same
//! walk runs on paths and refuses reparse points.

use std::fs::File;
use std::io;

/// Why uploads refuse links where downloads follow those that stay inside.
pub(super) const LINK_ON_THE_WAY: &str = "uploads never go through a symbolic link";

/// What a name in the folder is, looked at without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    File {
        len: u64,
    },
    Dir,
    /// A symbolic link, a device, a FIFO, a socket.
    Other,
}

/// A folder inside the hosted folder, held open for one upload.
pub(super) struct Folder {
    #[cfg(unix)]
    fd: std::os::fd::OwnedFd,
    #[cfg(not(unix))]
    path: std::path::PathBuf,
}

#[cfg(unix)]
mod unix {
    use std::fs::File;
    use std::io;
    use std::os::fd::{AsFd, OwnedFd};

    use rustix::fs::{AtFlags, FileType, Mode, OFlags};
    use rustix::io::Errno;

    use super::{Folder, Kind, LINK_ON_THE_WAY};
    use crate::server::{ResolveError, Root};

    const DIR_FLAGS: OFlags = OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);

    impl Folder {
        /// Walks `parts` from the hosted folder, one `openat(O_NOFOLLOW)` per folder, creating
        /// a missing one when `create` is set. Any symbolic link on the way is `forbidden`.
        pub(in crate::server::upload) fn open(
            root: &Root,
            parts: &[&str],
            create: bool,
        ) -> Result<Folder, ResolveError> {
            let mut cur = rustix::fs::openat(root.dir_fd(), c".", DIR_FLAGS, Mode::empty()).map_err(err)?;
            for part in parts {
                let mut created = false;
                cur = loop {
                    match rustix::fs::openat(&cur, *part, DIR_FLAGS, Mode::empty()) {
                        Ok(fd) => break fd,
                        Err(Errno::NOENT) if create && !created => {
                            match rustix::fs::mkdirat(&cur, *part, Mode::from_raw_mode(0o777)) {
                                Ok(()) | Err(Errno::EXIST) => created = true,
                                Err(e) => return Err(err(e)),
                            }
                        }
                        // Not a folder, or a link (ELOOP under O_NOFOLLOW; ENOTDIR on some
                        // systems): say which.
                        Err(e @ (Errno::LOOP | Errno::NOTDIR | Errno::MLINK)) => {
                            return Err(match rustix::fs::statat(&cur, *part, AtFlags::SYMLINK_NOFOLLOW) {
                                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                                    ResolveError::Forbidden(LINK_ON_THE_WAY)
                                }
                                Ok(_) => ResolveError::NotADirectory,
                                Err(_) => err(e),
                            });
                        }
                        Err(e) => return Err(err(e)),
                    }
                };
            }
            Ok(Folder { fd: cur })
        }

        pub(in crate::server::upload) fn kind(&self, name: &str) -> io::Result<Option<Kind>> {
            match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => Ok(Some(match FileType::from_raw_mode(st.st_mode) {
                    FileType::RegularFile => Kind::File { len: u64::try_from(st.st_size).unwrap_or(0) },
                    FileType::Directory => Kind::Dir,
                    _ => Kind::Other,
                })),
                Err(Errno::NOENT) => Ok(None),
                Err(e) => Err(e.into()),
            }
        }

        /// Creates `name`, failing if anything is there (a link included).
        pub(in crate::server::upload) fn create_new(&self, name: &str) -> io::Result<File> {
            let flags = OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let fd: OwnedFd = rustix::fs::openat(&self.fd, name, flags, Mode::from_raw_mode(0o666))?;
            Ok(File::from(fd))
        }

        /// Opens an existing regular file for reading and writing, never through a link.
        pub(in crate::server::upload) fn open_existing(&self, name: &str) -> io::Result<File> {
            let flags = OFlags::RDWR | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
            let file = File::from(rustix::fs::openat(&self.fd, name, flags, Mode::empty())?);
            if !file.metadata()?.is_file() {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
            }
            // Back to blocking writes (the non-blocking open only kept a FIFO from hanging).
            rustix::fs::fcntl_setfl(&file, OFlags::empty())?;
            Ok(file)
        }

        pub(in crate::server::upload) fn remove(&self, name: &str) -> io::Result<()> {
            match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => Ok(()),
                Err(e) => Err(e.into()),
            }
        }

        /// Renames `from` to `to` unless `to` exists (then `AlreadyExists`): atomically where
        /// the system can (`renameat2(RENAME_NOREPLACE)`, `renameatx_np(RENAME_EXCL)`), else by
        /// a hard link (which fails if the name is taken) and an unlink.
        pub(in crate::server::upload) fn place(&self, from: &str, to: &str) -> io::Result<()> {
            #[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
            match rustix::fs::renameat_with(&self.fd, from, &self.fd, to, rustix::fs::RenameFlags::NOREPLACE) {
                Ok(()) => return Ok(()),
                Err(Errno::EXIST) => return Err(io::ErrorKind::AlreadyExists.into()),
                Err(Errno::INVAL | Errno::NOSYS | Errno::NOTSUP) => {} // this file system cannot
                Err(e) => return Err(e.into()),
            }
            match rustix::fs::linkat(&self.fd, from, &self.fd, to, AtFlags::empty()) {
                Ok(()) => self.remove(from),
                Err(Errno::EXIST) => Err(io::ErrorKind::AlreadyExists.into()),
                Err(e) => Err(e.into()),
            }
        }

        /// Flushes the folder itself (a rename into it survives a crash).
        pub(in crate::server::upload) fn sync(&self) {
            let _ = rustix::fs::fsync(&self.fd);
        }

        /// Bytes an unprivileged writer may still use on the folder's file system.
        pub(in crate::server::upload) fn free_space(&self) -> Option<u64> {
            let st = rustix::fs::fstatvfs(self.fd.as_fd()).ok()?;
            Some(st.f_bavail.saturating_mul(st.f_frsize))
        }
    }

    fn err(e: Errno) -> ResolveError {
        ResolveError::from_io(e.into())
    }
}

#[cfg(not(unix))]
mod portable {
    use std::fs::{self, File, OpenOptions};
    use std::io;

    use super::{Folder, Kind, LINK_ON_THE_WAY};
    use crate::server::{ResolveError, Root};

    impl Folder {
        pub(in crate::server::upload) fn open(
            root: &Root,
            parts: &[&str],
            create: bool,
        ) -> Result<Folder, ResolveError> {
            let mut cur = root.path().to_path_buf();
            for part in parts {
                let next = cur.join(part);
                let meta = match fs::symlink_metadata(&next) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                        match fs::create_dir(&next) {
                            Ok(()) => {}
                            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                            Err(e) => return Err(ResolveError::from_io(e)),
                        }
                        fs::symlink_metadata(&next).map_err(ResolveError::from_io)?
                    }
                    other => other.map_err(ResolveError::from_io)?,
                };
                if meta.file_type().is_symlink() || is_reparse_point(&meta) {
                    return Err(ResolveError::Forbidden(LINK_ON_THE_WAY));
                }
                if !meta.is_dir() {
                    return Err(ResolveError::NotADirectory);
                }
                cur = next;
            }
            Ok(Folder { path: cur })
        }

        pub(in crate::server::upload) fn kind(&self, name: &str) -> io::Result<Option<Kind>> {
            match fs::symlink_metadata(self.path.join(name)) {
                Ok(m) if m.file_type().is_symlink() || is_reparse_point(&m) => Ok(Some(Kind::Other)),
                Ok(m) if m.is_file() => Ok(Some(Kind::File { len: m.len() })),
                Ok(m) if m.is_dir() => Ok(Some(Kind::Dir)),
                Ok(_) => Ok(Some(Kind::Other)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        }

        pub(in crate::server::upload) fn create_new(&self, name: &str) -> io::Result<File> {
            OpenOptions::new().read(true).write(true).create_new(true).open(self.path.join(name))
        }

        pub(in crate::server::upload) fn open_existing(&self, name: &str) -> io::Result<File> {
            match self.kind(name)? {
                Some(Kind::File { .. }) => OpenOptions::new().read(true).write(true).open(self.path.join(name)),
                _ => Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file")),
            }
        }

        pub(in crate::server::upload) fn remove(&self, name: &str) -> io::Result<()> {
            match fs::remove_file(self.path.join(name)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        }

        pub(in crate::server::upload) fn place(&self, from: &str, to: &str) -> io::Result<()> {
            let (from, to) = (self.path.join(from), self.path.join(to));
            match fs::hard_link(&from, &to) {
                Ok(()) => fs::remove_file(&from),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
                Err(_) => {
                    // File systems without hard links: check, then rename (a narrow race remains).
                    if fs::symlink_metadata(&to).is_ok() {
                        return Err(io::ErrorKind::AlreadyExists.into());
                    }
                    fs::rename(&from, &to)
                }
            }
        }

        pub(in crate::server::upload) fn sync(&self) {}

        pub(in crate::server::upload) fn free_space(&self) -> Option<u64> {
            fs4::available_space(&self.path).ok()
        }
    }

    #[cfg(windows)]
    fn is_reparse_point(meta: &fs::Metadata) -> bool {
        use std::os::windows::fs::MetadataExt;
        const FILE_ATTRIBUTE_REPARSE_POINT: u32 = 0x400;
        meta.file_attributes() & FILE_ATTRIBUTE_REPARSE_POINT != 0
    }

    #[cfg(not(windows))]
    fn is_reparse_point(_meta: &fs::Metadata) -> bool {
        false
    }
}

impl Folder {
    /// Reads a small file of ferry's (its record); `None` when it is missing, too large or not
    /// a regular file.
    pub(super) fn read_small(&self, name: &str, max: u64) -> Option<Vec<u8>> {
        use std::io::Read;
        match self.kind(name) {
            Ok(Some(Kind::File { len })) if len <= max => {}
            _ => return None,
        }
        let mut bytes = Vec::new();
        let file: File = self.open_existing(name).ok()?;
        file.take(max + 1).read_to_end(&mut bytes).ok()?;
        Some(bytes)
    }

    /// Creates a small file (ferry's record) that must not exist yet, flushed to disk.
    pub(super) fn write_new(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        use std::io::Write;
        let mut file = self.create_new(name)?;
        let written = file.write_all(bytes).and_then(|()| file.sync_all());
        if written.is_err() {
            drop(file);
            let _ = self.remove(name);
        }
        written
    }
}
