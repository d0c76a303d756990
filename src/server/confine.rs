//! Confinement: resolving a client's path inside the hosted folder without ever following,
//! reading or even `stat`-ing anything outside it.
//!
//! The path is first checked syntactically ([`split_request_path`]). It is then resolved one
//! component at a time from the (canonical) root: each component is `lstat`-ed inside a folder
//! already known to be inside the root; a symbolic link's target is read with `readlink` and its
//! components are pushed back onto the work list, so a link that points outside is caught
//! *lexically*, before anything it points at is touched. Link chains are followed up to
//! [`MAX_LINK_HOPS`] hops; loops end there as `forbidden`.

use std::ffi::OsString;
use std::fs::{self, File, Metadata};
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::protocol::message::{Entry, EntryKind, ErrorCode, ErrorReply, sort_entries};
use crate::protocol::path::{BadPath, join, split_request_path};

/// How many symbolic links one resolution may follow (Linux's own limit is 40).
pub const MAX_LINK_HOPS: usize = 40;

/// Why a path could not be resolved or opened.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("bad path: {0}")]
    BadPath(#[from] BadPath),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("no such file or folder")]
    NotFound,
    #[error("a component of the path is not a folder")]
    NotADirectory,
    #[error("it is a folder, not a file")]
    IsDirectory,
    #[error("{0}")]
    Io(io::Error),
}

impl ResolveError {
    fn from_io(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::NotFound => ResolveError::NotFound,
            io::ErrorKind::NotADirectory => ResolveError::NotADirectory,
            io::ErrorKind::PermissionDenied => ResolveError::Forbidden("permission denied"),
            _ => ResolveError::Io(e),
        }
    }

    /// The contract's answer for this error.
    pub fn to_reply(&self) -> ErrorReply {
        let code = match self {
            ResolveError::BadPath(_) => ErrorCode::BadPath,
            ResolveError::Forbidden(_) => ErrorCode::Forbidden,
            ResolveError::NotFound => ErrorCode::NotFound,
            ResolveError::NotADirectory => ErrorCode::NotADirectory,
            ResolveError::IsDirectory => ErrorCode::IsDirectory,
            ResolveError::Io(_) => ErrorCode::Io,
        };
        ErrorReply::new(code, self.to_string())
    }
}

/// The hosted folder.
#[derive(Debug, Clone)]
pub struct Root {
    path: PathBuf,
}

/// An open regular file inside the root.
pub struct Opened {
    pub file: File,
    pub meta: Metadata,
}

impl Root {
    /// Canonicalises `dir` (which must be a folder) as the root of confinement.
    pub fn new(dir: &Path) -> io::Result<Root> {
        let path = fs::canonicalize(dir)?;
        if !fs::metadata(&path)?.is_dir() {
            return Err(io::Error::new(io::ErrorKind::NotADirectory, format!("{} is not a folder", dir.display())));
        }
        Ok(Root { path })
    }

    /// The canonical path of the hosted folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The folder's own name, shown to clients.
    pub fn name(&self) -> String {
        self.path.file_name().map_or_else(|| "/".to_string(), |n| n.to_string_lossy().into_owned())
    }

    /// Resolves a protocol path to a real path inside the root with no symbolic link left in it.
    pub fn resolve(&self, rel: &str) -> Result<PathBuf, ResolveError> {
        let parts = split_request_path(rel)?;
        let mut pending: Vec<OsString> = parts.iter().rev().map(OsString::from).collect();
        let mut cur = self.path.clone();
        let mut depth = 0usize;
        let mut hops = 0usize;
        while let Some(name) = pending.pop() {
            if name == ".." {
                if depth == 0 {
                    return Err(ResolveError::Forbidden("the path leads outside the hosted folder"));
                }
                cur.pop();
                depth -= 1;
                continue;
            }
            if name.is_empty() || name == "." {
                continue;
            }
            let candidate = cur.join(&name);
            let meta = fs::symlink_metadata(&candidate).map_err(ResolveError::from_io)?;
            if meta.file_type().is_symlink() {
                hops += 1;
                if hops > MAX_LINK_HOPS {
                    return Err(ResolveError::Forbidden("too many symbolic links (a loop?)"));
                }
                let target = fs::read_link(&candidate).map_err(ResolveError::from_io)?;
                let rest = if target.is_absolute() {
                    // Only a link that names the root itself (lexically) may stay inside.
                    let Ok(rest) = target.strip_prefix(&self.path) else {
                        return Err(ResolveError::Forbidden("a symbolic link leads outside the hosted folder"));
                    };
                    cur = self.path.clone();
                    depth = 0;
                    rest.to_path_buf()
                } else {
                    target
                };
                let mut comps: Vec<OsString> = Vec::new();
                for c in rest.components() {
                    match c {
                        Component::Normal(n) => comps.push(n.to_os_string()),
                        Component::ParentDir => comps.push("..".into()),
                        Component::CurDir => {}
                        Component::RootDir | Component::Prefix(_) => {
                            return Err(ResolveError::Forbidden("a symbolic link leads outside the hosted folder"));
                        }
                    }
                }
                pending.extend(comps.into_iter().rev());
                continue;
            }
            if !meta.is_dir() && pending.iter().any(|p| p != "." && !p.is_empty()) {
                return Err(ResolveError::NotADirectory);
            }
            cur = candidate;
            depth += 1;
        }
        Ok(cur)
    }

    /// Opens a regular file for reading. Folders give `is_directory`; devices, FIFOs and
    /// sockets give `forbidden` (opening a FIFO could block the server).
    pub fn open_file(&self, rel: &str) -> Result<Opened, ResolveError> {
        let real = self.resolve(rel)?;
        let file = open_no_follow(&real).map_err(ResolveError::from_io)?;
        let meta = file.metadata().map_err(ResolveError::from_io)?;
        if meta.is_dir() {
            return Err(ResolveError::IsDirectory);
        }
        if !meta.is_file() {
            return Err(ResolveError::Forbidden("not a regular file"));
        }
        Ok(Opened { file, meta })
    }

    /// Lists a folder: folders first, then files, each by name. Names that are not UTF-8 or
    /// could never be requested (a backslash) are left out, as are special files and links
    /// that lead outside the folder or nowhere.
    pub fn list(&self, rel: &str) -> Result<Vec<Entry>, ResolveError> {
        let real = self.resolve(rel)?;
        let meta = fs::metadata(&real).map_err(ResolveError::from_io)?;
        if !meta.is_dir() {
            return Err(ResolveError::NotADirectory);
        }
        let mut entries = Vec::new();
        for item in fs::read_dir(&real).map_err(ResolveError::from_io)? {
            let Ok(item) = item else { continue };
            let Ok(name) = item.file_name().into_string() else { continue };
            if name.contains('\\') {
                continue;
            }
            let Ok(file_type) = item.file_type() else { continue };
            let meta = if file_type.is_symlink() {
                match self.resolve(&join(rel, &name)) {
                    Ok(target) => match fs::symlink_metadata(target) {
                        Ok(m) => m,
                        Err(_) => continue,
                    },
                    Err(_) => continue,
                }
            } else {
                match item.metadata() {
                    Ok(m) => m,
                    Err(_) => continue,
                }
            };
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs() as i64);
            if meta.is_dir() {
                entries.push(Entry { name, kind: EntryKind::Dir, size: None, modified });
            } else if meta.is_file() {
                entries.push(Entry { name, kind: EntryKind::File, size: Some(meta.len()), modified });
            }
        }
        sort_entries(&mut entries);
        Ok(entries)
    }
}

#[cfg(unix)]
fn open_no_follow(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    // O_NOFOLLOW: if the last component was swapped for a link since it was resolved, fail
    // instead of following it. O_NONBLOCK: never hang on a FIFO swapped in the same way.
    fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path)
}

#[cfg(not(unix))]
fn open_no_follow(path: &Path) -> io::Result<File> {
    File::open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> (tempfile::TempDir, Root, tempfile::TempDir) {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret.txt"), b"secret").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        fs::create_dir_all(p.join("sub/deeper")).unwrap();
        fs::write(p.join("a.txt"), b"a").unwrap();
        fs::write(p.join("sub/b.txt"), b"bb").unwrap();
        symlink("sub/b.txt", p.join("link_in")).unwrap();
        symlink("sub", p.join("dirlink")).unwrap();
        symlink(outside.path().join("secret.txt"), p.join("link_out_abs")).unwrap();
        symlink("../../../../../../../../etc/passwd", p.join("link_out_rel")).unwrap();
        symlink(outside.path(), p.join("dirlink_out")).unwrap();
        symlink("loop2", p.join("loop1")).unwrap();
        symlink("loop1", p.join("loop2")).unwrap();
        symlink("nowhere", p.join("dangling")).unwrap();
        symlink("deeper/..", p.join("sub/up")).unwrap();
        symlink("../..", p.join("sub/upup")).unwrap();
        let root = Root::new(p).unwrap();
        (dir, root, outside)
    }

    #[test]
    fn links_inside_the_folder_are_followed() {
        let (_d, root, _o) = tree();
        assert_eq!(fs::read(root.resolve("link_in").unwrap()).unwrap(), b"bb");
        assert_eq!(fs::read(root.resolve("dirlink/b.txt").unwrap()).unwrap(), b"bb");
        assert_eq!(root.resolve("sub/up").unwrap(), root.path().join("sub"));
    }

    #[test]
    fn links_leading_outside_are_forbidden() {
        let (_d, root, _o) = tree();
        for p in ["link_out_abs", "link_out_rel", "dirlink_out", "dirlink_out/secret.txt", "sub/upup", "sub/upup/x"] {
            assert!(matches!(root.resolve(p), Err(ResolveError::Forbidden(_))), "{p}");
            assert_eq!(root.open_file(p).err().unwrap().to_reply().error, ErrorCode::Forbidden, "{p}");
        }
    }

    #[test]
    fn link_loops_end_as_forbidden() {
        let (_d, root, _o) = tree();
        assert!(matches!(root.resolve("loop1"), Err(ResolveError::Forbidden(_))));
    }

    #[test]
    fn listing_hides_links_that_escape_loop_or_dangle() {
        let (_d, root, _o) = tree();
        let names: Vec<_> = root.list("").unwrap().into_iter().map(|e| (e.name, e.kind)).collect();
        assert_eq!(
            names,
            [
                ("dirlink".to_string(), EntryKind::Dir),
                ("sub".to_string(), EntryKind::Dir),
                ("a.txt".to_string(), EntryKind::File),
                ("link_in".to_string(), EntryKind::File),
            ]
        );
    }

    #[test]
    fn errors_map_to_the_contract_codes() {
        let (_d, root, _o) = tree();
        assert_eq!(root.open_file("nope").err().unwrap().to_reply().error, ErrorCode::NotFound);
        assert_eq!(root.open_file("sub").err().unwrap().to_reply().error, ErrorCode::IsDirectory);
        assert_eq!(root.open_file("a.txt/x").err().unwrap().to_reply().error, ErrorCode::NotADirectory);
        assert_eq!(root.list("a.txt").err().unwrap().to_reply().error, ErrorCode::NotADirectory);
        assert_eq!(root.open_file("../x").err().unwrap().to_reply().error, ErrorCode::BadPath);
        assert_eq!(root.open_file("dangling").err().unwrap().to_reply().error, ErrorCode::NotFound);
    }
}
